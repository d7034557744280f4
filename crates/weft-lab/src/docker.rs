//! A real `dockerd` per lab host (`weftctl lab up --docker`): Debian's docker.io, run in
//! the host's network namespace and in a mount namespace of its own (kept across daemon
//! restarts), where the host's plugin folder is bind-mounted over `/run/docker/plugins`
//! (Docker looks for plugins in that one fixed folder, so each daemon must see only its
//! own host's `weft.sock`). Live restore is on: containers outlive a daemon restart.
//! Each daemon has its own data root, exec root, pid file and socket under the host's
//! lab folder, and an image made without a registry (`docker import` of a busybox root
//! filesystem), tagged [`IMAGE`] and `busybox`.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{LabError, LabResult};
use crate::state::LabState;
use crate::{sh, topology};

/// The image every lab daemon has.
pub const IMAGE: &str = "weft/busybox";
/// The busybox applets the image links.
const APPLETS: &[&str] = &[
    "sh", "ping", "ip", "sleep", "cat", "nc", "ifconfig", "route", "wget", "hostname", "ls",
    "echo", "true", "arping", "httpd", "timeout", "nslookup",
];

pub fn socket(lab: &LabState, i: u32) -> PathBuf {
    lab.host_dir(i).join("docker.sock")
}

/// `DOCKER_HOST` for host `i`'s daemon.
pub fn docker_host(lab: &LabState, i: u32) -> String {
    format!("unix://{}", socket(lab, i).display())
}

/// The folder host `i`'s agent serves its plugin socket in.
pub fn plugin_dir(lab: &LabState, i: u32) -> PathBuf {
    lab.host_dir(i).join("plugins")
}

/// Where host `i`'s agent answers container names, and its dockerd sends the names
/// its embedded DNS does not know (`dockerd --dns`): the host's own address, which
/// every container reaches through its gateway.
pub fn resolver(lab: &LabState, i: u32) -> std::net::Ipv4Addr {
    topology::host_ip(i, lab.subnets)
}

/// The agent options that make it Docker's driver and name resolver on host `i`.
pub fn agent_args(lab: &LabState, i: u32) -> Vec<String> {
    vec![
        "--docker".into(),
        format!("--docker-plugin-dir={}", plugin_dir(lab, i).display()),
        format!("--docker-socket={}", socket(lab, i).display()),
        format!("--dns-listen={}", resolver(lab, i)),
        format!("--resolv-conf={}", resolv_conf(lab, i).display()),
    ]
}

/// The resolv.conf host `i`'s agent forwards other names to: none, as the lab has no
/// way out (a name that is no container's fails at once instead of after a timeout).
pub fn resolv_conf(lab: &LabState, i: u32) -> PathBuf {
    lab.host_dir(i).join("resolv.conf")
}

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs `docker ARGS` against host `i`'s daemon.
pub fn docker(lab: &LabState, i: u32, args: &[&str]) -> LabResult<String> {
    let out = Command::new("docker")
        .env("DOCKER_HOST", docker_host(lab, i))
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: format!("docker {}", args.join(" ")),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: format!("docker {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts host `i`'s daemon and waits until it answers; imports the image.
pub fn start(lab: &LabState, i: u32) -> LabResult<()> {
    if sh::output(&["which", "dockerd"])
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Err(LabError::Usage(
            "--docker needs dockerd (Debian's docker.io; scripts/setup installs it)".into(),
        ));
    }
    let dir = lab.host_dir(i);
    let plugins = plugin_dir(lab, i);
    std::fs::create_dir_all(&plugins).map_err(io(&plugins))?;
    let log_path = dir.join("dockerd.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(&log_path))?;
    let conf = resolv_conf(lab, i);
    std::fs::write(&conf, "# the lab has no upstream resolver\n").map_err(io(&conf))?;
    let mnt = mount_ns(lab, i)?;
    let d = dir.display();
    let args = format!(
        "--data-root {d}/docker-data --exec-root {d}/docker-exec --pidfile {d}/docker.pid \
         -H unix://{d}/docker.sock --storage-driver vfs \
         --default-ulimit nofile=16384:16384 --default-ulimit nproc=32768:32768 \
         --default-runtime runc --bridge none --live-restore --log-level warn --dns {dns}",
        dns = resolver(lab, i)
    );
    // `ip netns exec` would remount /sys and hide the cgroup mounts dockerd needs:
    // enter the network namespace and the host's own mount namespace instead.
    let netns = format!("--net=/run/netns/{}", topology::host_ns(&lab.name, i));
    let mntns = format!("--mount={}", mnt.display());
    Command::new("nsenter")
        .args([netns.as_str(), mntns.as_str(), "dockerd"])
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io(&log_path))?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|source| LabError::Spawn {
            cmd: "dockerd".into(),
            source,
        })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while docker(lab, i, &["version", "--format", "{{.Server.Version}}"]).is_err() {
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(LabError::Timeout(format!(
                "h{i}'s dockerd did not answer within 60 s: {}",
                tail.join(" | ")
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let image = image_tar(lab)?;
    docker(lab, i, &["import", &image.display().to_string(), IMAGE])?;
    // Also as `busybox`, so the commands in the docs run as written.
    docker(lab, i, &["tag", IMAGE, "busybox"])?;
    Ok(())
}

/// Host `i`'s mount namespace, made once and kept (bound to a file) until the host is
/// removed: the daemon keeps its containers' network namespaces mounted in it, so a
/// restarted daemon (live restore) finds them. In it, the host's plugin folder is
/// mounted over `/run/docker/plugins`.
fn mount_ns(lab: &LabState, i: u32) -> LabResult<PathBuf> {
    let dir = lab.host_dir(i).join("mntns");
    let file = dir.join("mnt");
    if file.exists()
        && sh::output(&["nsenter", &format!("--mount={}", file.display()), "true"])
            .is_ok_and(|o| o.status.success())
    {
        return Ok(file);
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let d = dir.display().to_string();
    // A namespace file must sit on a private mount (or it could propagate into itself).
    sh::run(&["mount", "--bind", &d, &d])?;
    sh::run(&["mount", "--make-private", &d])?;
    File::create(&file).map_err(io(&file))?;
    let plugins = plugin_dir(lab, i);
    let script = format!(
        "mkdir -p /run/docker/plugins && mount --bind {} /run/docker/plugins",
        plugins.display()
    );
    let unshare = format!("--mount={}", file.display());
    sh::run(&[
        "unshare",
        &unshare,
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ])?;
    Ok(file)
}

/// Releases host `i`'s mount namespace (after its daemon has stopped).
fn drop_mount_ns(lab: &LabState, i: u32) {
    let dir = lab.host_dir(i).join("mntns");
    for p in [dir.join("mnt"), dir.clone()] {
        let _ = sh::output(&["umount", &p.display().to_string()]);
    }
}

/// A busybox root filesystem as a tar, made once per lab.
fn image_tar(lab: &LabState) -> LabResult<PathBuf> {
    let tar = lab.dir().join("busybox.tar");
    if tar.exists() {
        return Ok(tar);
    }
    let root = lab.dir().join("busybox-root");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(io(&bin))?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .map_err(io(std::path::Path::new("/bin/busybox")))?;
    for a in APPLETS {
        let link = bin.join(a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).map_err(io(&link))?;
        }
    }
    sh::run(&[
        "tar",
        "-C",
        &root.display().to_string(),
        "-cf",
        &tar.display().to_string(),
        ".",
    ])?;
    Ok(tar)
}

/// The pid of host `i`'s daemon, if it runs.
pub fn pid(lab: &LabState, i: u32) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lab.host_dir(i).join("docker.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// Stops host `i`'s daemon: its containers first (their processes live outside the
/// host's namespace), then the daemon, which stops the containerd it started, then its
/// mount namespace. `keep_containers` leaves the containers running (live restore) and
/// the mount namespace in place: a daemon restart.
pub fn stop(lab: &LabState, i: u32, keep_containers: bool) -> LabResult<bool> {
    let Some(pid) = pid(lab, i) else {
        if !keep_containers {
            drop_mount_ns(lab, i);
        }
        return Ok(false);
    };
    if !keep_containers {
        if let Ok(ids) = docker(lab, i, &["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = docker(lab, i, &args);
            }
        }
    }
    weft_kernel::sys::signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        weft_kernel::sys::reap(pid);
        if Instant::now() > deadline {
            weft_kernel::sys::signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !keep_containers {
        drop_mount_ns(lab, i);
    }
    Ok(true)
}
