//! Starting and stopping the lab's agents: one `weftd` per host namespace, detached from
//! `weftctl` (its own process group) so it keeps running after `weftctl lab up` returns.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{LabError, LabResult};
use crate::state::LabState;
use crate::topology;

/// A Weft binary (`weftd`, `weft`): `$env` if set, else next to the running `weftctl`.
pub fn sibling(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    let me = std::env::current_exe().unwrap_or_default();
    let dir = me.parent().map(PathBuf::from).unwrap_or_default();
    // Test binaries live in target/*/deps; the real binaries one level up.
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(name))
}

/// The `weftd` binary: `WEFT_WEFTD`, else next to the running `weftctl`.
pub fn weftd_path() -> PathBuf {
    sibling("weftd", "WEFT_WEFTD")
}

fn pid_file(lab: &LabState, i: u32) -> PathBuf {
    lab.host_dir(i).join("weftd.pid")
}

/// The agent's pid if it is running.
pub fn running_pid(lab: &LabState, i: u32) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(lab, i))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// Whether `pid` is a live (not zombie) weftd.
fn alive(pid: u32) -> bool {
    // Reap it first if it is our own exited child.
    weft_kernel::sys::reap(pid);
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // While `ip netns exec` turns into weftd, cmdline reads empty for a moment: accept
    // that; reject only a process that is plainly something else (a reused pid).
    state != Some("Z") && (cmd.is_empty() || String::from_utf8_lossy(&cmd).contains("weftd"))
}

pub fn start(lab: &LabState, i: u32) -> LabResult<u32> {
    if let Some(pid) = running_pid(lab, i) {
        return Ok(pid);
    }
    let dir = lab.host_dir(i);
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let log_path = dir.join("weftd.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| LabError::Io {
            path: log_path.display().to_string(),
            source,
        })?;
    let weftd = weftd_path();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &topology::host_ns(&lab.name, i)])
        .arg(&weftd)
        .args(lab.store_args())
        .arg(format!("--subnet-file={}", lab.subnet_file(i).display()))
        .arg(format!(
            "--docker-opts-file={}",
            dir.join("docker.env").display()
        ))
        .arg(format!(
            "--bgp-status-file={}",
            lab.bgp_status_file(i).display()
        ))
        .arg(format!("--api-socket={}", dir.join("weftd.sock").display()))
        .args(lab.ip_masq.then_some("--ip-masq"))
        .arg("--resync-interval=10s")
        .arg(format!("--healthz-port={}", topology::HEALTHZ_PORT))
        .args(if lab.docker {
            crate::docker::agent_args(lab, i)
        } else {
            Vec::new()
        })
        .args(
            lab.node_labels
                .get(&i)
                .map(|l| format!("--node-labels={l}")),
        )
        .args(&lab.agent_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|source| LabError::Io {
            path: log_path.display().to_string(),
            source,
        })?)
        .stderr(log)
        .process_group(0);
    let child = cmd.spawn().map_err(|source| LabError::Spawn {
        cmd: weftd.display().to_string(),
        source,
    })?;
    let pid = child.id();
    std::fs::write(pid_file(lab, i), format!("{pid}\n")).map_err(|source| LabError::Io {
        path: pid_file(lab, i).display().to_string(),
        source,
    })?;
    Ok(pid)
}

/// Stops host `i`'s agent (SIGTERM, then SIGKILL after 10 s). Returns whether one ran.
pub fn stop(lab: &LabState, i: u32) -> LabResult<bool> {
    let Some(pid) = running_pid(lab, i) else {
        return Ok(false);
    };
    // A pid we verified is a weftd.
    weft_kernel::sys::signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > deadline {
            weft_kernel::sys::signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(pid_file(lab, i));
    Ok(true)
}

/// The last lines of host `i`'s agent log, for error messages.
fn log_tail(lab: &LabState, i: u32) -> String {
    let log = std::fs::read_to_string(lab.host_dir(i).join("weftd.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(8).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Waits until the agent has written its subnet file.
pub fn wait_subnet(
    lab: &LabState,
    i: u32,
    within: Duration,
) -> LabResult<weft_alloc::hostfiles::NodeNetwork> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(n) = lab.host_network(i) {
            return Ok(n);
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(lab.host_dir(i).join("weftd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            return Err(LabError::Timeout(format!(
                "host h{i}'s agent wrote no subnet file within {within:?}; its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        if running_pid(lab, i).is_none() {
            return Err(LabError::Usage(format!(
                "host h{i}'s agent is not running; its log ends:\n{}",
                log_tail(lab, i)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the agent logs that it is ready (after `from` bytes of its log).
pub fn wait_ready(lab: &LabState, i: u32, from: u64, within: Duration) -> LabResult<()> {
    let path = lab.host_dir(i).join("weftd.log");
    let deadline = Instant::now() + within;
    loop {
        let log = std::fs::read(&path).unwrap_or_default();
        let new =
            String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default()).into_owned();
        if new.contains(" ready") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout(format!(
                "host h{i}'s agent not ready within {within:?}; see {}",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Current size of an agent's log, to wait for what comes after it.
pub fn log_len(lab: &LabState, i: u32) -> u64 {
    std::fs::metadata(lab.host_dir(i).join("weftd.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}
