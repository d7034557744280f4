//! The lab, driven as a user drives it, for the end-to-end tests. Every lab gets a unique
//! name and is torn down by `Drop`, also when an assertion fails.
#![allow(dead_code)] // each test file uses its own share of the helpers

pub mod docker;
pub mod intruder;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");
pub const WEFTD: &str = env!("CARGO_BIN_EXE_weftd");

pub struct Lab {
    pub name: String,
}

impl Lab {
    pub fn up(tag: &str, store: &str, hosts: u32) -> Lab {
        Lab::up_with(tag, store, hosts, &[])
    }

    pub fn up_with(tag: &str, store: &str, hosts: u32, extra: &[&str]) -> Lab {
        let lab = Lab {
            name: format!("t{}{tag}", std::process::id() % 100_000),
        };
        let hosts = hosts.to_string();
        let mut args = vec![
            "lab", "up", "--name", &lab.name, "--hosts", &hosts, "--store", store,
        ];
        args.extend_from_slice(extra);
        let out = lab.ctl(&args);
        assert!(
            out.status.success(),
            "lab up failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        lab
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(WEFTCTL)
            .args(args)
            .env("WEFT_WEFTD", WEFTD)
            .output()
            .expect("run weftctl")
    }

    /// `weftctl lab <sub> --name LAB <rest>`.
    pub fn lab(&self, sub: &[&str], rest: &[&str]) -> Output {
        let mut args = vec!["lab"];
        args.extend_from_slice(sub);
        args.extend_from_slice(&["--name", &self.name]);
        args.extend_from_slice(rest);
        self.ctl(&args)
    }

    pub fn ok(&self, out: Output, what: &str) -> String {
        assert!(
            out.status.success(),
            "{what} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `weftctl policy apply -f` of `yaml`, which must succeed.
    pub fn apply_policy(&self, yaml: &str) {
        let file = std::env::temp_dir().join(format!("{}-apply.yaml", self.name));
        std::fs::write(&file, yaml).unwrap();
        self.ok(
            self.store_cmd(&["policy", "apply", "-f", file.to_str().unwrap()]),
            "policy apply",
        );
        let _ = std::fs::remove_file(&file);
    }

    pub fn store_cmd(&self, args: &[&str]) -> Output {
        let mut all = vec!["--lab", self.name.as_str()];
        all.extend_from_slice(args);
        self.ctl(&all)
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// Weft's routes (proto 77) in a host namespace. `ip` must succeed: a check that a
    /// route is absent must not pass on an `ip` that failed.
    pub fn weft_routes(&self, host: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns(host), "route", "show", "proto", "77"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip route show in {host}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn subnet_of(&self, host: &str) -> String {
        let env = std::fs::read_to_string(format!("/run/weft-lab/{}/{host}/subnet.env", self.name))
            .unwrap();
        let line = env
            .lines()
            .find(|l| l.starts_with("FLANNEL_SUBNET="))
            .unwrap();
        let gw = &line["FLANNEL_SUBNET=".len()..];
        let (ip, len) = gw.split_once('/').unwrap();
        let mut o: Vec<u8> = ip.split('.').map(|p| p.parse().unwrap()).collect();
        o[3] -= 1;
        format!("{}.{}.{}.{}/{len}", o[0], o[1], o[2], o[3])
    }

    pub fn log(&self, host: &str) -> String {
        std::fs::read_to_string(format!("/run/weft-lab/{}/{host}/weftd.log", self.name))
            .unwrap_or_default()
    }

    pub fn ping_all(&self, wait: u64) {
        let out = self.lab(&["ping"], &["--wait", &wait.to_string()]);
        self.ok(out, "ping matrix");
    }

    pub fn wait_until(&self, what: &str, within: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.lab(&["down"], &[]);
    }
}

/// A lab container's address: the second address of its host's subnet.
pub fn container_addr(subnet: &str) -> String {
    let ip = subnet.split('/').next().unwrap();
    let (head, last) = ip.rsplit_once('.').unwrap();
    format!("{head}.{}", last.parse::<u8>().unwrap() + 2)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn monitor_routes(lab: &Lab, host: &str) -> Child {
    Command::new("ip")
        .args(["-4", "-n", &lab.ns(host), "monitor", "route"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

impl Lab {
    /// Runs a command inside one of the lab's namespaces (`h1`, `c2`, `ul`).
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// A host's counter for its VXLAN device (`tx_packets`, `rx_packets`).
    pub fn vxlan_counter(&self, host: &str, counter: &str) -> u64 {
        let out = self.exec(
            host,
            &[
                "cat",
                &format!("/sys/class/net/weft.1/statistics/{counter}"),
            ],
        );
        text(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no weft.1 counter on {host}"))
    }

    /// GET `path` from host's agent (`/healthz`, `/metrics`): status and body.
    pub fn agent_http(&self, host: &str, path: &str) -> (u16, String) {
        let script = format!(
            "import urllib.request, urllib.error\ntry:\n  r = urllib.request.urlopen('http://127.0.0.1:9462{path}', timeout=5); print(r.status); print(r.read().decode())\nexcept urllib.error.HTTPError as e:\n  print(e.code); print(e.read().decode())"
        );
        let out = text(&self.exec(host, &["python3", "-c", &script]).stdout);
        let (status, body) = out.split_once('\n').unwrap_or((&out, ""));
        (status.trim().parse().unwrap_or(0), body.trim().to_owned())
    }

    /// A metric's value from host's `/metrics`.
    pub fn metric(&self, host: &str, name: &str) -> u64 {
        let (_, body) = self.agent_http(host, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} on {host}:\n{body}"))
    }

    /// The first packet tcpdump (`-l -n -c 1`, plus `args`: interface, filter, ...) sees
    /// in namespace `node` while container `ctr` pings `to`; tcpdump's text output.
    pub fn capture_while_pinging(&self, node: &str, args: &[&str], ctr: &str, to: &str) -> String {
        let dump = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(node),
                "timeout",
                "20",
                "tcpdump",
                "-l",
                "-n",
                "-c",
                "1",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Give tcpdump time to attach its filter before the first ping.
        std::thread::sleep(Duration::from_millis(800));
        for _ in 0..5 {
            self.ping_from(ctr, to, 1);
        }
        text(&dump.wait_with_output().unwrap().stdout)
    }

    /// `n` pings from a container; true if any answered.
    pub fn ping_from(&self, ctr: &str, to: &str, n: u32) -> bool {
        let n = n.to_string();
        self.exec(ctr, &["ping", "-c", &n, "-i", "0.05", "-W", "1", "-q", to])
            .status
            .success()
    }
}

/// Watches every kind of kernel object Weft owns in a host namespace: IPv4 routes,
/// neighbour entries, links and FDB entries. `stop` returns the lines that concern Weft.
pub struct KernelWatch {
    children: Vec<Child>,
}

impl KernelWatch {
    pub fn start(lab: &Lab, host: &str) -> KernelWatch {
        let ns = lab.ns(host);
        let spawn = |args: &[&str]| {
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let children = vec![
            spawn(&["ip", "-4", "monitor", "route", "neigh", "link"]),
            spawn(&["bridge", "monitor", "fdb"]),
        ];
        std::thread::sleep(Duration::from_millis(300));
        KernelWatch { children }
    }

    pub fn stop(self) -> Vec<String> {
        let mut lines = Vec::new();
        for mut c in self.children {
            c.kill().unwrap();
            let out = text(&c.wait_with_output().unwrap().stdout);
            // Weft's objects: proto 77 routes, anything on weft.1, permanent entries.
            lines.extend(
                out.lines()
                    .filter(|l| {
                        l.contains("proto 77")
                            || l.contains("weft.")
                            || l.contains("PERMANENT")
                            || l.contains("permanent")
                    })
                    .map(str::to_owned),
            );
        }
        lines
    }
}

const RECEIVER: &str = r#"
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())
"#;

const SENDER: &str = r#"
import socket, hashlib, random, sys, time
data = random.Random(7).randbytes(100 * 1024 * 1024)
for _ in range(50):
    try:
        c = socket.create_connection((sys.argv[1], 5001), timeout=60); break
    except OSError:
        time.sleep(0.1)
c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest())
"#;

/// Copies 100 MB from c1 to c2 over TCP; both ends' length and SHA-256 must agree.
pub fn big_copy_arrives_intact(lab: &Lab, c2_addr: &str) {
    let server = Command::new("ip")
        .args(["netns", "exec", &lab.ns("c2"), "python3", "-c", RECEIVER])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sent = lab.exec("c1", &["python3", "-c", SENDER, c2_addr]);
    let got = server.wait_with_output().unwrap();
    let (sent, got) = (text(&sent.stdout), text(&got.stdout));
    assert!(sent.starts_with("104857600 "), "sender: {sent}");
    assert_eq!(sent.trim(), got.trim(), "100 MB copy must arrive intact");
}

/// A ping from `ctr` to `to` every 50 ms until stopped; `stop` says how many were sent
/// and how many answered.
pub struct Pinger(std::process::Child);

impl Pinger {
    pub fn start(lab: &Lab, ctr: &str, to: &str) -> Pinger {
        Pinger::run(&["ip", "netns", "exec", &lab.ns(ctr)], to)
    }

    /// The same from network namespace `netns` with more `ping` options (`-I ADDR`).
    pub fn in_netns(netns: &str, options: &[&str], to: &str) -> Pinger {
        let mut enter = vec!["ip", "netns", "exec", netns, "ping"];
        enter.extend_from_slice(options);
        let child = Command::new(enter[0])
            .args(&enter[1..])
            .args(["-i", "0.05", "-W", "1", to])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Pinger(child)
    }

    /// The same from the network namespace of process `pid` (a Docker container's).
    pub fn from_pid(pid: &str, to: &str) -> Pinger {
        Pinger::run(&["nsenter", &format!("--net=/proc/{pid}/ns/net")], to)
    }

    /// `ping` every 50 ms to `to`, run under the namespace-entering command `enter`.
    fn run(enter: &[&str], to: &str) -> Pinger {
        let child = Command::new(enter[0])
            .args(&enter[1..])
            .args(["ping", "-i", "0.05", "-W", "1", to])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Pinger(child)
    }

    pub fn stop(self) -> (u32, u32) {
        let pid = self.0.id().to_string();
        // SIGINT: ping prints its summary.
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let out = text(&self.0.wait_with_output().unwrap().stdout);
        let summary = out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("no ping summary in {out:?}"));
        let num = |word: &str| -> u32 {
            let before = summary.split(word).next().unwrap();
            before.trim().rsplit(' ').next().unwrap().parse().unwrap()
        };
        (num(" packets transmitted"), num(" received"))
    }
}

/// Stops every pinger: each sent more than `at_least` and lost none.
pub fn assert_no_ping_lost(pings: impl IntoIterator<Item = Pinger>, at_least: u32) {
    for p in pings {
        let (sent, received) = p.stop();
        assert!(sent > at_least, "the ping ran ({sent} sent)");
        assert_eq!(sent, received, "no ping lost");
    }
}

/// Stops every watch (one per host, in `hosts`' order): none saw Weft's kernel objects change.
pub fn assert_kernels_quiet(hosts: &[&str], watches: Vec<KernelWatch>) {
    for (h, w) in hosts.iter().zip(watches) {
        let changes = w.stop();
        assert!(changes.is_empty(), "{h} changed its kernel: {changes:#?}");
    }
}

/// Runs the real `weft` CNI plugin as a runtime would, in host `h`'s namespace, for the
/// container namespace `ctr` (interface eth0, container ID `ctr`): the host's subnet
/// file, data directory and agent socket, with `extra` fields merged into the config
/// and `cni_args` as `CNI_ARGS`. Whether it succeeded, and what it printed.
/// The first address of a CNI ADD's result, without its prefix length.
pub fn cni_address(answer: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(answer).unwrap();
    v["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

pub fn cni_call(
    lab: &Lab,
    h: &str,
    ctr: &str,
    command: &str,
    extra: serde_json::Value,
    cni_args: &str,
) -> (bool, String) {
    use std::io::Write;
    let dir = format!("/run/weft-lab/{}/{h}", lab.name);
    let mut conf = serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "weft",
        "type": "weft",
        "subnetFile": format!("{dir}/subnet.env"),
        "dataDir": format!("{dir}/cni"),
        "agentSocket": format!("{dir}/weftd.sock"),
    });
    if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns(h), env!("CARGO_BIN_EXE_weft")])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", ctr)
        .env("CNI_NETNS", format!("/run/netns/{ctr}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", cni_args)
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), text(&out.stdout))
}
