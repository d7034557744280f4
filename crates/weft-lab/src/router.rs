//! `lab up --router bird|gobgp`: a real BGP router in the underlay namespace, peered with
//! every host (it accepts any host of the underlay as a neighbour, so hosts added later
//! peer too), announcing one route of its own (`ROUTER_PREFIX`). The hosts learn of it
//! from the store (an external BGP peer for every node), as an operator would configure
//! a top-of-rack router. BIRD also installs what it learns into the underlay's kernel.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{LabError, LabResult};
use crate::topology;

/// The router's AS (the cluster's is 64512).
pub const ROUTER_ASN: u32 = 64513;
/// A prefix the router announces to the hosts.
pub const ROUTER_PREFIX: &str = "10.250.0.0/24";
/// The store key of the router as an external peer.
pub const PEER_KEY: &str = "/coreos.com/network/weft/bgp/peers/lab-router";

fn io(path: &Path) -> impl Fn(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn bird_conf(password: Option<&str>) -> String {
    let password = password
        .map(|p| format!("  password \"{}\";\n", p.replace('"', "\\\"")))
        .unwrap_or_default();
    format!(
        "router id {gw};\nprotocol device {{}}\n\
         protocol kernel {{ ipv4 {{ export all; }}; }}\n\
         protocol static {{ ipv4; route {ROUTER_PREFIX} blackhole; }}\n\
         protocol bgp hosts {{\n  local as {ROUTER_ASN};\n  neighbor range 192.168.0.0/16 as 64512;\n  \
         dynamic name \"host\";\n{password}  ipv4 {{ import all; export all; }};\n}}\n",
        gw = topology::UNDERLAY_GW
    )
}

fn gobgp_conf() -> String {
    format!(
        "[global.config]\n  as = {ROUTER_ASN}\n  router-id = \"{gw}\"\n\n\
         [[peer-groups]]\n  [peer-groups.config]\n    peer-group-name = \"hosts\"\n    peer-as = 64512\n\n\
         [[dynamic-neighbors]]\n  [dynamic-neighbors.config]\n    prefix = \"192.168.0.0/16\"\n    peer-group = \"hosts\"\n",
        gw = topology::UNDERLAY_GW
    )
}

/// Starts the router in namespace `ul`, its files in `dir`; BIRD wants `password` from
/// every host when given.
pub fn start(kind: &str, ul: &str, dir: &Path, password: Option<&str>) -> LabResult<()> {
    match kind {
        "bird" => {
            let conf = dir.join("bird.conf");
            std::fs::write(&conf, bird_conf(password)).map_err(io(&conf))?;
            // BIRD puts itself in the background once its config is loaded.
            let out = Command::new("ip")
                .args(["netns", "exec", ul, "bird", "-c"])
                .arg(&conf)
                .arg("-s")
                .arg(dir.join("bird.ctl"))
                .output()
                .map_err(io(&conf))?;
            if !out.status.success() {
                return Err(LabError::Usage(format!(
                    "bird did not start: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        "gobgp" => {
            let conf = dir.join("gobgp.toml");
            std::fs::write(&conf, gobgp_conf()).map_err(io(&conf))?;
            let log = dir.join("gobgpd.log");
            let file = std::fs::File::create(&log).map_err(io(&log))?;
            let sock = dir.join("gobgp.sock");
            Command::new("ip")
                .args(["netns", "exec", ul, "gobgpd", "-f"])
                .arg(&conf)
                .arg(format!("--api-hosts=unix://{}", sock.display()))
                .arg("--pprof-disable")
                .stdin(Stdio::null())
                .stdout(file.try_clone().map_err(io(&log))?)
                .stderr(file)
                .spawn()
                .map_err(io(&log))?;
            // Announce the router's own prefix once its API answers.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let out = Command::new("gobgp")
                    .arg("--target")
                    .arg(format!("unix://{}", sock.display()))
                    .args(["global", "rib", "add", "-a", "ipv4", ROUTER_PREFIX])
                    .output()
                    .map_err(io(&sock))?;
                if out.status.success() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(LabError::Usage(format!(
                        "gobgpd did not come up: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        other => {
            return Err(LabError::Usage(format!(
                "--router must be bird or gobgp, not {other}"
            )))
        }
    }
    println!("router: {kind} in {ul}, AS {ROUTER_ASN}, announcing {ROUTER_PREFIX}");
    Ok(())
}

/// The store value that makes every host peer with the router.
pub fn peer_value() -> String {
    format!(
        "{{\"PeerIP\":\"{}\",\"ASNumber\":{ROUTER_ASN}}}",
        topology::UNDERLAY_GW
    )
}

/// `lab router ARGS`: the router's own CLI on its control socket (birdc for BIRD, gobgp
/// for GoBGP), so a reader sees the router's view as its operator would.
pub fn ask(lab: &str, args: &[String]) -> LabResult<i32> {
    let dir = crate::state::dir(lab);
    crate::state::LabState::load(lab)?;
    let (bird, gobgp) = (dir.join("bird.ctl"), dir.join("gobgp.sock"));
    let mut cmd = if bird.exists() {
        let mut c = Command::new("birdc");
        c.arg("-s").arg(&bird);
        c
    } else if gobgp.exists() {
        let mut c = Command::new("gobgp");
        c.arg("--target").arg(format!("unix://{}", gobgp.display()));
        c
    } else {
        return Err(LabError::Usage(format!(
            "lab {lab:?} has no router (make it with lab up --router bird|gobgp)"
        )));
    };
    let status = cmd.args(args).status().map_err(io(&dir))?;
    Ok(status.code().unwrap_or(1))
}
