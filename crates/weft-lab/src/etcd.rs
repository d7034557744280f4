//! Starts a throw-away etcd server: for the contract tests and for the lab.
//!
//! The server gets its own data directory, listens only where it is told (loopback by
//! default), and is killed when the handle is dropped, or when the thread that started it
//! dies, so a crashed test never leaves an etcd behind.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start an etcd.
#[derive(Debug, Default)]
pub struct EtcdOptions<'a> {
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<&'a str>,
    /// The client port (peer port = client + 1); free ports when `None`.
    pub client_port: Option<u16>,
    /// Where etcd's output goes; discarded when `None`.
    pub log: Option<&'a Path>,
    /// Outlive the caller (the lab's etcd); take its pid with [`EtcdServer::detach`].
    /// Otherwise etcd dies with the thread that started it.
    pub detached: bool,
    /// Serve clients over TLS, requiring client certificates signed by `ca`.
    pub tls: Option<ServerTls>,
    /// A member of a cluster, not a cluster of one.
    pub member: Option<Member>,
}

/// One member of an etcd cluster: its name and the whole cluster's peer URLs
/// (`e1=http://192.168.77.241:2380,e2=…`, etcd's `--initial-cluster`).
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub initial_cluster: String,
}

/// The server side of etcd's client TLS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A running etcd child process.
pub struct EtcdServer {
    child: Child,
    /// The client URL, e.g. `http://127.0.0.1:23791`.
    pub endpoint: String,
    data_dir: PathBuf,
    owns_dir: bool,
}

fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

impl EtcdServer {
    /// Starts etcd on loopback with free ports and a fresh temporary data directory.
    pub fn start_loopback() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "weft-etcd-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        Self::start_loopback_with(&dir, None)
    }

    /// As [`EtcdServer::start_loopback`], serving clients over TLS with `tls` when given.
    pub fn start_loopback_with(dir: &Path, tls: Option<ServerTls>) -> std::io::Result<Self> {
        let opts = EtcdOptions {
            tls,
            ..Default::default()
        };
        let mut server = Self::start(Ipv4Addr::LOCALHOST.into(), dir, opts)?;
        server.owns_dir = true;
        Ok(server)
    }

    /// Starts etcd as `opts` say, listening on `ip`, keeping data in `data_dir`.
    pub fn start(ip: IpAddr, data_dir: &Path, opts: EtcdOptions<'_>) -> std::io::Result<Self> {
        let EtcdOptions {
            netns,
            client_port,
            log,
            detached,
            tls,
            member,
        } = opts;
        let (client, peer) = match client_port {
            Some(p) => (p, p + 1),
            None => (free_port(ip)?, free_port(ip)?),
        };
        std::fs::create_dir_all(data_dir)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://{ip}:{client}");
        let peer_url = format!("http://{ip}:{peer}");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        let (name, initial) = match &member {
            Some(m) => (m.name.clone(), m.initial_cluster.clone()),
            None => ("weft".to_owned(), format!("weft={peer_url}")),
        };
        cmd.arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null());
        if let Some(t) = &tls {
            cmd.arg(format!("--cert-file={}", t.cert.display()))
                .arg(format!("--key-file={}", t.key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        match log {
            Some(path) => {
                let f = std::fs::File::create(path)?;
                cmd.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        if !detached {
            weft_kernel::sys::die_with_parent(&mut cmd);
        } else {
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start etcd (is etcd-server installed?): {e}"),
            )
        })?;
        let mut server = EtcdServer {
            child,
            endpoint: client_url,
            data_dir: data_dir.to_path_buf(),
            owns_dir: false,
        };
        server.wait_ready(netns, ip, client)?;
        Ok(server)
    }

    /// Waits until etcd accepts connections. The probe runs in a thread that joins
    /// `netns` first: an address inside a lab namespace must never be dialled from the
    /// machine's own namespace.
    fn wait_ready(&mut self, netns: Option<&str>, ip: IpAddr, port: u16) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let ns_file = match netns {
            Some(ns) => Some(std::fs::File::open(format!("/run/netns/{ns}"))?),
            None => None,
        };
        let probe = std::thread::spawn(move || -> std::io::Result<bool> {
            if let Some(f) = &ns_file {
                // Only this probe thread changes namespace.
                weft_kernel::sys::setns(f)?;
            }
            while Instant::now() < deadline {
                if std::net::TcpStream::connect_timeout(
                    &(ip, port).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
                {
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(false)
        });
        let ready = probe
            .join()
            .map_err(|_| std::io::Error::other("etcd readiness probe panicked"))??;
        if let Some(status) = self.child.try_wait()? {
            return Err(std::io::Error::other(format!(
                "etcd exited early: {status}"
            )));
        }
        if ready {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "etcd did not start listening within 20 s",
            ))
        }
    }

    /// Leaves the server running and returns its pid; the caller stops it later.
    pub fn detach(self) -> u32 {
        let pid = self.child.id();
        std::mem::forget(self);
        pid
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
