//! Containers with an identity, for network policy: `lab container add` attaches a
//! container on a host through the real plugin, as kubelet would (its namespace and
//! name in `CNI_ARGS`, its labels in `args.cni.labels`), and starts servers in it;
//! `lab probe` tries every container from every other on every served port and prints
//! the matrix the way Kubernetes' network policy tests write their truth tables, with
//! `weftctl policy explain`'s verdict beside each cell.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cni;
use crate::error::{LabError, LabResult};
use crate::sh;
use crate::state::LabState;

/// A served port: `tcp:80`, `udp:81`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    pub udp: bool,
    pub port: u16,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", if self.udp { "udp" } else { "tcp" }, self.port)
    }
}

/// `tcp:80,udp:81` (a bare number is TCP).
pub fn parse_ports(s: &str) -> LabResult<Vec<Port>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let p = p.trim();
            let (proto, num) = p.split_once(':').unwrap_or(("tcp", p));
            let udp = match proto {
                "tcp" => false,
                "udp" => true,
                _ => {
                    return Err(LabError::Usage(format!(
                        "{p:?}: the protocol is tcp or udp"
                    )))
                }
            };
            let port = num
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| LabError::Usage(format!("{p:?}: not a port (1-65535)")))?;
            Ok(Port { udp, port })
        })
        .collect()
}

/// A container added with `lab container add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub host: u32,
    /// Its network namespace, also its container ID: `LAB-pN`.
    pub netns: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 address in a dual-stack lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    pub labels: BTreeMap<String, String>,
    pub serve: Vec<Port>,
}

/// `LAB-pN` for the `n`th container added.
pub fn pod_ns(lab: &str, n: u32) -> String {
    format!("{lab}-p{n}")
}

/// Attaches `namespace/name` on host `host` with `labels`, serving `serve`.
pub fn add(
    state: &mut LabState,
    host: u32,
    id: &str,
    labels: BTreeMap<String, String>,
    serve: Vec<Port>,
) -> LabResult<Pod> {
    let Some((namespace, name)) = id.split_once('/') else {
        return Err(LabError::Usage(format!("{id:?}: give NAMESPACE/NAME")));
    };
    if state.pods.contains_key(id) {
        return Err(LabError::Usage(format!(
            "{id} is already in lab {}",
            state.name
        )));
    }
    if !state.hosts.contains(&host) {
        return Err(LabError::Usage(format!(
            "lab {} has no host h{host}",
            state.name
        )));
    }
    let n = (1..)
        .find(|n| {
            !state
                .pods
                .values()
                .any(|p| p.netns == pod_ns(&state.name, *n))
        })
        .expect("a free number");
    let netns = pod_ns(&state.name, n);
    sh::run(&["ip", "netns", "add", &netns])?;
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={netns}"
    );
    let cni_labels: Vec<serde_json::Value> = labels
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
        .collect();
    let extra = serde_json::json!({"args": {"cni": {"labels": cni_labels}}});
    let added = cni::call_as(state, host, &netns, "ADD", Some(&args), &extra).and_then(|r| {
        let ip = cni::address(&r).ok_or_else(|| {
            LabError::Usage(format!(
                "the plugin's ADD result for {id} has no address: {r}"
            ))
        })?;
        Ok((ip, cni::address6(&r)))
    });
    let (ip, ip6) = match added {
        Ok(ip) => ip,
        Err(e) => {
            let _ = sh::run(&["ip", "netns", "del", &netns]);
            return Err(e);
        }
    };
    sh::ip_in(&netns, &["link", "set", "lo", "up"])?;
    if !serve.is_empty() {
        start_servers(&netns, &serve)?;
    }
    let pod = Pod {
        host,
        netns,
        ip,
        ip6,
        labels,
        serve,
    };
    state.pods.insert(id.to_owned(), pod.clone());
    state.save()?;
    Ok(pod)
}

/// Detaches `namespace/name` (CNI DEL, as a runtime would) and removes its namespace.
pub fn remove(state: &mut LabState, id: &str) -> LabResult<()> {
    let pod = state
        .pods
        .get(id)
        .cloned()
        .ok_or_else(|| LabError::Usage(format!("no container {id} in lab {}", state.name)))?;
    let (namespace, name) = id.split_once('/').unwrap_or(("", id));
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={}",
        pod.netns
    );
    if let Err(e) = cni::call_as(
        state,
        pod.host,
        &pod.netns,
        "DEL",
        Some(&args),
        &serde_json::json!({}),
    ) {
        eprintln!("warning: {e}");
    }
    crate::commands::kill_namespace(&pod.netns);
    state.pods.remove(id);
    state.save()
}

/// Runs `weftctl lab serve PORTS` in `netns`, detached (it dies with the namespace).
fn start_servers(netns: &str, serve: &[Port]) -> LabResult<()> {
    let me = std::env::current_exe().map_err(|source| LabError::Io {
        path: "the weftctl executable".into(),
        source,
    })?;
    let ports: Vec<String> = serve.iter().map(Port::to_string).collect();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(&me)
        .args(["lab", "serve", &ports.join(",")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().map_err(|source| LabError::Spawn {
        cmd: format!("{} lab serve", me.display()),
        source,
    })?;
    // Listening before the caller probes.
    let netns_path = format!("/run/netns/{netns}");
    for _ in 0..100 {
        let all = weft_kernel::netns::run_in(Path::new(&netns_path), || {
            serve
                .iter()
                .all(|p| !p.udp || UdpSocket::bind(("0.0.0.0", p.port)).is_err())
                && serve.iter().all(|p| {
                    p.udp
                        || TcpStream::connect_timeout(
                            &SocketAddr::from(([127, 0, 0, 1], p.port)),
                            Duration::from_millis(100),
                        )
                        .is_ok()
                })
        })
        .unwrap_or(false);
        if all {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(LabError::Usage(format!(
        "the servers in {netns} did not start listening"
    )))
}

/// A socket address on every address of both families (`[::]`, which takes IPv4 too),
/// or of IPv4 alone where the namespace has no IPv6.
fn any_addr<S>(port: u16, bind: impl Fn(SocketAddr) -> std::io::Result<S>) -> std::io::Result<S> {
    bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))
}

/// Serves `ports` until killed, over both families: TCP accepts and answers `weft`,
/// UDP echoes.
pub fn serve(ports: &[Port]) -> LabResult<()> {
    let mut threads = Vec::new();
    for p in ports.iter().copied() {
        let bound = |source| LabError::Io {
            path: format!("listen on {p}"),
            source,
        };
        if p.udp {
            let sock = any_addr(p.port, UdpSocket::bind).map_err(bound)?;
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }));
        } else {
            let l = any_addr(p.port, TcpListener::bind).map_err(bound)?;
            threads.push(std::thread::spawn(move || {
                for mut c in l.incoming().flatten() {
                    let _ = c.write_all(b"weft\n");
                }
            }));
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// One probe: from a container to another's port.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "CellJson")]
pub struct Cell {
    pub from: String,
    pub to: String,
    pub port: String,
    pub reachable: bool,
    /// Whether `weftctl policy explain` allows the flow (`None`: not asked).
    pub explained: Option<bool>,
}

impl Cell {
    /// Whether the traffic did what `explain` says (`None`: not asked).
    pub fn agrees(&self) -> Option<bool> {
        self.explained.map(|allows| allows == self.reachable)
    }
}

/// A cell as `lab probe -o json` prints it: explain's verdict and whether the traffic
/// agreed with it (the field a script checks) apart.
#[derive(Serialize)]
struct CellJson {
    from: String,
    to: String,
    port: String,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain_allows: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agrees: Option<bool>,
}

impl From<Cell> for CellJson {
    fn from(c: Cell) -> CellJson {
        let agrees = c.agrees();
        CellJson {
            from: c.from,
            to: c.to,
            port: c.port,
            reachable: c.reachable,
            explain_allows: c.explained,
            agrees,
        }
    }
}

/// Whether `to:port` answers from inside `netns` within `timeout`.
fn reach(netns: &str, to: std::net::IpAddr, port: Port, timeout: Duration) -> bool {
    let path = format!("/run/netns/{netns}");
    weft_kernel::netns::run_in(Path::new(&path), || {
        let addr = SocketAddr::from((to, port.port));
        if port.udp {
            let local = match to {
                std::net::IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                std::net::IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            };
            let Ok(s) = UdpSocket::bind(local) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 64];
            s.connect(addr).is_ok() && s.send(b"probe").is_ok() && s.recv(&mut buf).is_ok()
        } else {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(mut c) => {
                    let _ = c.set_read_timeout(Some(timeout));
                    let mut buf = [0u8; 8];
                    c.read(&mut buf).is_ok_and(|n| n > 0)
                }
                Err(_) => false,
            }
        }
    })
    .unwrap_or(false)
}

/// Probes every container from every other on `ports` (each container's own served
/// ports if empty), all at once; at their IPv6 addresses with `ipv6` (a container
/// without one is left out).
pub fn probe(state: &LabState, ports: &[Port], timeout: Duration, ipv6: bool) -> Vec<Cell> {
    let pods: Vec<(&String, &Pod)> = state
        .pods
        .iter()
        .filter(|(_, p)| !ipv6 || p.ip6.is_some())
        .collect();
    let mut jobs = Vec::new();
    for (from, fp) in &pods {
        for (to, tp) in &pods {
            if from == to {
                continue;
            }
            let served: &[Port] = if ports.is_empty() { &tp.serve } else { ports };
            for p in served {
                let ip = match (ipv6, tp.ip6) {
                    (true, Some(a)) => a.into(),
                    _ => tp.ip.into(),
                };
                jobs.push(((*from).clone(), (*to).clone(), fp.netns.clone(), ip, *p));
            }
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(from, to, netns, ip, p)| {
                s.spawn(move || Cell {
                    reachable: reach(&netns, ip, p, timeout),
                    from,
                    to,
                    port: p.to_string(),
                    explained: None,
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// The cells as tables, one per port: `.` reachable, `X` not (Kubernetes' notation);
/// a cell where the traffic and `explain` disagree is marked `!`.
pub fn render(cells: &[Cell]) -> String {
    let mut names: Vec<&str> = cells
        .iter()
        .flat_map(|c| [c.from.as_str(), c.to.as_str()])
        .collect();
    names.sort();
    names.dedup();
    let mut ports: Vec<&str> = cells.iter().map(|c| c.port.as_str()).collect();
    ports.sort();
    ports.dedup();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(1).max(6) + 1;
    let mut s = String::new();
    for port in ports {
        let _ = write!(s, "{:<width$}", port);
        for n in &names {
            let _ = write!(s, "{n:>width$}");
        }
        s.push('\n');
        for from in &names {
            let _ = write!(s, "{from:<width$}");
            for to in &names {
                let cell = cells
                    .iter()
                    .find(|c| c.port == port && c.from == *from && c.to == *to);
                let mark = match cell {
                    None => "-",
                    Some(c) if c.agrees() == Some(false) => "!",
                    Some(c) if c.reachable => ".",
                    Some(_) => "X",
                };
                let _ = write!(s, "{mark:>width$}");
            }
            s.push('\n');
        }
        s.push('\n');
    }
    let wrong = cells.iter().filter(|c| c.agrees() == Some(false)).count();
    let open = cells.iter().filter(|c| c.reachable).count();
    let _ = write!(s, "{open} of {} probes reachable", cells.len());
    if cells.iter().any(|c| c.explained.is_some()) {
        let _ = write!(s, "; {wrong} disagree with explain");
    }
    s.push('\n');
    s
}

/// Prints the cells as tables or JSON.
pub fn print(cells: &[Cell], output: crate::ProbeOutput) {
    match output {
        crate::ProbeOutput::Table => print!("{}", render(cells)),
        crate::ProbeOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(cells).expect("cells serialize")
        ),
    }
}

/// `lab container add|remove|list`.
pub fn run(cmd: crate::ContainerCommand) -> LabResult<i32> {
    use crate::ContainerCommand::*;
    match cmd {
        Add {
            lab,
            id,
            host,
            labels,
            serve,
        } => {
            let mut state = LabState::load(&lab.name)?;
            let i = crate::topology::host_index(&state.name, &host)
                .or_else(|| host.strip_prefix('h').and_then(|n| n.parse().ok()))
                .ok_or_else(|| LabError::Usage(format!("--host {host:?}: use h1, h2, ...")))?;
            let labels = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| LabError::Usage(format!("--label {l:?}: use KEY=VALUE")))
                })
                .collect::<LabResult<BTreeMap<_, _>>>()?;
            let pod = add(&mut state, i, &id, labels, parse_ports(&serve)?)?;
            println!("{id} on h{i}: {} ({})", pod.ip, pod.netns);
            Ok(0)
        }
        Remove { lab, id } => {
            let mut state = LabState::load(&lab.name)?;
            remove(&mut state, &id)?;
            println!("removed {id}");
            Ok(0)
        }
        List { lab } => {
            let state = LabState::load(&lab.name)?;
            println!(
                "{:<16} {:<5} {:<15} {:<12} LABELS",
                "CONTAINER", "HOST", "ADDRESS", "NETNS"
            );
            for (id, p) in &state.pods {
                let labels: Vec<String> =
                    p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "{id:<16} h{:<4} {:<15} {:<12} {}",
                    p.host,
                    p.ip,
                    p.netns,
                    labels.join(",")
                );
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_ports("tcp:80, udp:81,82").unwrap(),
            [
                Port {
                    udp: false,
                    port: 80
                },
                Port {
                    udp: true,
                    port: 81
                },
                Port {
                    udp: false,
                    port: 82
                }
            ]
        );
        let e = parse_ports("sctp:80").unwrap_err().to_string();
        assert!(e.contains("sctp:80"), "{e}");
        assert!(parse_ports("tcp:0").is_err() && parse_ports("udp:x").is_err());
    }

    #[test]
    fn the_matrix_marks_disagreement() {
        let c = |from: &str, to: &str, reachable, explained| Cell {
            from: from.into(),
            to: to.into(),
            port: "tcp:80".into(),
            reachable,
            explained,
        };
        let s = render(&[
            c("x/a", "x/b", true, Some(true)),
            c("x/b", "x/a", true, Some(false)),
        ]);
        assert!(s.contains("tcp:80"), "{s}");
        let rows: Vec<&str> = s.lines().collect();
        assert!(
            rows[1].starts_with("x/a") && rows[1].trim_end().ends_with('.'),
            "{s}"
        );
        assert!(rows[2].starts_with("x/b") && rows[2].contains('!'), "{s}");
        assert!(
            s.contains("2 of 2 probes reachable; 1 disagree with explain"),
            "{s}"
        );
        // As JSON: explain's verdict, and whether the traffic agreed, apart.
        let json = serde_json::to_value(c("x/b", "x/a", true, Some(false))).unwrap();
        assert_eq!(json["explain_allows"], false);
        assert_eq!(json["agrees"], false);
        let json = serde_json::to_value(c("x/a", "x/b", false, Some(false))).unwrap();
        assert_eq!(json["agrees"], true);
        let json = serde_json::to_value(c("x/a", "x/b", false, None)).unwrap();
        assert!(json.get("agrees").is_none() && json.get("explain_allows").is_none());
    }
}
