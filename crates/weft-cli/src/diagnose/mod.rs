//! `weftctl diagnose`: is this node's part of the network as it should be?
//!
//! Run on a node (in its network namespace), it reads the store, asks the agent's
//! `/healthz`, and compares what the backend's planner says the node should have (the
//! same pure function the agent plans with) with what the kernel holds: routes,
//! neighbour and FDB entries, the overlay device, forwarding, the firewall table and
//! the subnet file. It changes nothing. Each finding is one line (`ok`, `warn`, `FAIL`);
//! the exit code is 1 when anything failed. `-o json` prints one JSON object per node
//! instead. With `--lab NAME` it runs itself in each lab host's namespace, with that
//! host's files and ports.

pub mod checks;
pub mod facts;
mod plane;
pub mod report;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clap::Args;
use weft_alloc::blocks::{Block, Pool};
use weft_alloc::named::NamedNetwork;
use weft_alloc::registry::{entry, Change};
use weft_alloc::{BackendKind, NetworkConfig, Registry};
use weft_backends::host::{self, HostInputs, LocalSettings};
use weft_backends::networks::PlannedEndpoint;
use weft_backends::{BackendSettings, NodeContext};
use weft_kernel::prelude::*;
use weft_kernel::{Dataplane, Linux};
use weft_plan::iface::IfaceSpec;

use crate::leases::Output;
use crate::CliError;
use facts::{Facts, KernelState, Planned, Seen, Unseen};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weftctl --store etcd --etcd-endpoints http://10.0.0.1:2379 diagnose --healthz-port 9462\n  weftctl --lab weft diagnose --host h1\n  weftctl diagnose -o json"
)]
pub struct DiagnoseArgs {
    /// This node's public IP (its lease's PublicIP); by default any address of this host.
    #[arg(long)]
    pub public_ip: Option<Ipv4Addr>,
    /// The agent's subnet file (its `--subnet-file`).
    #[arg(long, default_value = "/run/flannel/subnet.env")]
    pub subnet_file: PathBuf,
    /// Ask the agent's `/healthz` on this port (its `--healthz-port`); 0: do not ask.
    #[arg(long, default_value_t = 0)]
    pub healthz_port: u16,
    /// The agent's BGP status file (its `--bgp-status-file`), read for the bgp backend.
    #[arg(long, default_value = "/run/weft/bgp-status.json")]
    pub bgp_status_file: PathBuf,
    /// The agent's `--healthz-ip`.
    #[arg(long, default_value = "127.0.0.1")]
    pub healthz_ip: IpAddr,
    /// With `--lab`: only this host (`h1`, `h2`, ...); by default every host.
    #[arg(long)]
    pub host: Option<String>,
    /// Output format: a line per finding, or one JSON object per node (for probes).
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Diagnoses the node this runs on; returns the exit code.
pub async fn run(registry: &Registry, args: DiagnoseArgs) -> Result<i32, CliError> {
    let facts = match Linux::connect() {
        Ok(linux) => gather(registry, &args, Ok(&linux)).await,
        Err(e) => gather(registry, &args, Err(Unseen::of(e))).await,
    };
    let findings = checks::findings(&facts);
    let (text, code) = match args.output {
        Output::Table => {
            let who = match args.public_ip {
                Some(ip) => format!("node {ip}"),
                None => "this node".to_string(),
            };
            report::render(&format!("weft diagnose: {who}"), &findings)
        }
        Output::Json => report::render_json(args.public_ip, &findings),
    };
    print!("{text}");
    Ok(code)
}

/// Diagnoses this node when its store cannot be reached: what can be checked locally is,
/// the rest is marked skipped (exit 1: the store is down).
pub async fn run_without_store(args: DiagnoseArgs, store_error: String) -> Result<i32, CliError> {
    let kernel = Linux::connect().map_err(Unseen::of);
    let facts = Facts {
        config: Err("the store is unreachable".into()),
        public_ips: args.public_ip.into_iter().collect(),
        leases: Vec::new(),
        skipped: Vec::new(),
        expires_in: None,
        unreachable: Vec::new(),
        health: (args.healthz_port != 0)
            .then(|| healthz(SocketAddr::new(args.healthz_ip, args.healthz_port))),
        forwarding: kernel.as_ref().map_err(Clone::clone).and_then(|k| {
            k.forwarding()
                .map_err(|e| Unseen(format!("cannot read net.ipv4.ip_forward: {e}")))
        }),
        forwarding6: kernel.as_ref().map_err(Clone::clone).and_then(|k| {
            k.ipv6_forwarding()
                .map_err(|e| Unseen(format!("cannot read net.ipv6.conf.all.forwarding: {e}")))
        }),
        firewall: kernel
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|k| k.firewall_loaded().map_err(Unseen::of)),
        subnet_file: (
            args.subnet_file.clone(),
            std::fs::read_to_string(&args.subnet_file).map_err(Unseen::of),
        ),
        bgp_status: None,
        data_plane: Err("needs the store".into()),
    };
    let findings = checks::findings_without_store(&facts, &store_error);
    let (text, code) = match args.output {
        Output::Table => report::render("weft diagnose: this node (store unreachable)", &findings),
        Output::Json => report::render_json(args.public_ip, &findings),
    };
    print!("{text}");
    Ok(code)
}

/// Diagnoses the hosts of lab `name`, each from inside its namespace.
pub fn run_lab(name: &str, args: &DiagnoseArgs) -> Result<i32, CliError> {
    let state = weft_lab::LabState::load(name)?;
    let hosts: Vec<u32> = match &args.host {
        Some(h) => vec![weft_lab::topology::host_index(name, h)
            .filter(|i| state.hosts.contains(i))
            .ok_or_else(|| CliError::NoLabHost {
                lab: name.to_owned(),
                host: h.clone(),
            })?],
        None => state.hosts.clone(),
    };
    let me = std::env::current_exe().map_err(CliError::io("cannot find weftctl itself"))?;
    let mut code = 0;
    for i in hosts {
        let status = Command::new("ip")
            .args(["netns", "exec", &weft_lab::topology::host_ns(name, i)])
            .arg(&me)
            .args(state.store_args())
            .arg("diagnose")
            .arg(format!("--public-ip={}", state.host_ip(i)))
            .arg(format!(
                "--bgp-status-file={}",
                state.bgp_status_file(i).display()
            ))
            .arg(format!("--subnet-file={}", state.subnet_file(i).display()))
            .arg(format!(
                "--healthz-port={}",
                weft_lab::topology::HEALTHZ_PORT
            ))
            .arg(match args.output {
                Output::Table => "--output=table",
                Output::Json => "--output=json",
            })
            .status()
            .map_err(CliError::io(format!("cannot enter host h{i}'s namespace")))?;
        code = code.max(status.code().unwrap_or(1));
    }
    Ok(code)
}

/// Everything diagnose judges, from the store, the agent and the kernel (`Err` when no
/// dataplane could be had: the kernel's facts then say why).
async fn gather(registry: &Registry, args: &DiagnoseArgs, kernel: Seen<&dyn Dataplane>) -> Facts {
    let mut config = registry.config().await.map_err(Unseen::of);
    let (leases, skipped) = match registry.leases().await {
        Ok(snap) => (snap.leases, snap.skipped),
        Err(e) => {
            // Nothing after this can be judged without the leases.
            config = config.and(Err(Unseen(format!("cannot list the leases: {e}"))));
            (Vec::new(), Vec::new())
        }
    };
    let public_ips = match (args.public_ip, &kernel) {
        (Some(ip), _) => vec![ip],
        (None, Ok(k)) => k
            .ipv4_addresses()
            .await
            .map(|a| a.into_iter().map(|a| a.addr).collect())
            .unwrap_or_default(),
        (None, Err(_)) => Vec::new(),
    };
    let own = facts::own_lease(&leases, &public_ips).cloned();
    let (mut expires_in, mut unreachable) = (None, Vec::new());
    if let Some(lease) = &own {
        expires_in = registry.expires_in(lease).await.ok().flatten();
        if let Ok(statuses) = registry.statuses().await {
            unreachable = statuses
                .into_iter()
                .find(|(subnet, _)| *subnet == lease.subnet)
                .map(|(_, st)| st.unreachable)
                .unwrap_or_default();
        }
    }
    let data_plane = match (&config, &own, &kernel) {
        (Ok(cfg), Some(lease), Ok(k)) => data_plane(*k, registry, cfg, lease, &leases).await,
        (_, _, Err(e)) => Err(e.clone()),
        // Not looked at: the findings stop at the missing config or lease.
        _ => Err("no plan without a config and a lease".into()),
    };
    let bgp_status = matches!(&config, Ok(c) if c.backend == BackendKind::Bgp).then(|| {
        std::fs::read_to_string(&args.bgp_status_file).map_err(|e| {
            Unseen(format!(
                "cannot read {}: {e} (is weftd running with the bgp backend?)",
                args.bgp_status_file.display()
            ))
        })
    });
    Facts {
        config,
        public_ips,
        leases,
        skipped,
        expires_in,
        unreachable,
        health: (args.healthz_port != 0)
            .then(|| healthz(SocketAddr::new(args.healthz_ip, args.healthz_port))),
        forwarding: kernel.clone().and_then(|k| {
            k.forwarding()
                .map_err(|e| Unseen(format!("cannot read net.ipv4.ip_forward: {e}")))
        }),
        forwarding6: kernel.clone().and_then(|k| {
            k.ipv6_forwarding()
                .map_err(|e| Unseen(format!("cannot read net.ipv6.conf.all.forwarding: {e}")))
        }),
        firewall: kernel.and_then(|k| k.firewall_loaded().map_err(Unseen::of)),
        subnet_file: (
            args.subnet_file.clone(),
            std::fs::read_to_string(&args.subnet_file).map_err(Unseen::of),
        ),
        bgp_status,
        data_plane,
    }
}

/// What the store holds besides leases that this node's plan depends on.
#[derive(Debug, Default)]
struct Stored {
    networks: Vec<NamedNetwork>,
    endpoints: Vec<PlannedEndpoint>,
    blocks: Vec<Block>,
    pools: Vec<Pool>,
    /// Addresses held outside subnets, by node.
    held: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Some cluster policy can open the isolation between named networks.
    between_networks: bool,
}

/// Reads named networks with their endpoints, blocks, pools and held addresses: one
/// listing per kind, decoded as the agent decodes them (`weft_model::keys`).
async fn stored(registry: &Registry) -> Seen<Stored> {
    let keys = registry.keys();
    let mut out = Stored::default();
    for prefix in [
        keys.networks(),
        keys.endpoints(),
        keys.ipam(),
        keys.addresses(),
    ] {
        let listing = registry.store().list(&prefix).await.map_err(|e| {
            Unseen(format!(
                "cannot read named networks, blocks or held addresses: {e}"
            ))
        })?;
        for kv in &listing.kvs {
            match keys.decode(entry(kv)) {
                Change::Network(_, Some(Ok(net))) => out.networks.push(net),
                Change::Endpoint(network, ip, Some(Ok(endpoint))) => {
                    out.endpoints.push(PlannedEndpoint {
                        network,
                        ip,
                        endpoint,
                    })
                }
                Change::Block(_, Some(Ok(block))) => out.blocks.push(block),
                Change::Pool(_, Some(Ok(pool))) => out.pools.push(pool),
                Change::Address(ip, Some(Ok(claim))) => out.held.push((ip, claim.node)),
                // Unreadable: left out of the plan (the agent keeps its last good value,
                // which diagnose cannot know; its routes then show as stale).
                _ => {}
            }
        }
    }
    let policies = registry
        .policy_state()
        .await
        .map_err(|e| Unseen(format!("cannot read network policies: {e}")))?;
    out.between_networks = weft_policy::render::opens_between(&policies.policies);
    Ok(out)
}

/// The host plan for this node (`weft_backends::host::plan`, as the agent makes it),
/// and Weft's objects in the kernel; the first thing that could not be read or
/// planned, as the reason.
async fn data_plane(
    kernel: &dyn Dataplane,
    registry: &Registry,
    cfg: &NetworkConfig,
    lease: &weft_alloc::Lease,
    leases: &[weft_alloc::Lease],
) -> Seen<(Planned, KernelState)> {
    let stored = stored(registry).await?;
    let links = kernel.links().await.map_err(Unseen::of)?;
    let public_ip = lease.attrs.public_ip;
    // The agent falls back to IP-in-IP in user space (over TUN) where the kernel has no
    // `ipip`; which one runs shows in which device exists.
    let ipip_user_space = !links.iter().any(|l| l.name == weft_backends::ipip::DEVICE);
    let settings = BackendSettings {
        public_ip,
        public_ipv6: lease.attrs.public_ipv6,
        // Only the device's name and MTU are judged, not its offloads.
        tx_checksum_off: false,
        ipip_user_space,
    };
    let backend = weft_backends::build(cfg, &settings);
    // The agent's external interface holds its public IP, unless `--public-ip` overrode
    // it; then the default route's interface is the best guess.
    let external = match kernel
        .external_interface(&[IfaceSpec::Address(public_ip)])
        .await
    {
        Ok(e) => Ok(e),
        Err(_) => kernel.external_interface(&[]).await,
    };
    let external = external.map_err(|e| Unseen(format!("no external interface: {e}")))?;
    let mut node = NodeContext {
        external,
        lease: lease.clone(),
        overlay: None,
        overlay6: None,
        // bgp: what the sessions learned is judged apart (every peer's subnet and
        // block must have a route), not planned here.
        learned: Vec::new(),
    };
    let spec = backend.overlay(&node);
    node.overlay = spec
        .as_ref()
        .and_then(|s| links.iter().find(|l| l.name == s.name()))
        .map(|l| l.index);
    // The IPv6 underlay's device, where the backend has one: the agent plans with its
    // index when it exists, and falls back to the IPv4 device when it does not.
    node.overlay6 = backend
        .overlay6(&node)
        .and_then(|s| links.iter().find(|l| l.name == s.name()))
        .map(|l| l.index);
    // The agent plans with the leases that stand; so does its check.
    let peers = weft_alloc::screen::screen(cfg, leases).standing;
    let held: Vec<Ipv4Addr> = stored
        .held
        .iter()
        .filter(|(_, n)| *n == public_ip)
        .map(|(ip, _)| *ip)
        .collect();
    let inputs = HostInputs {
        config: cfg,
        node: &node,
        leases: &peers,
        held: &held,
        networks: &stored.networks,
        endpoints: &stored.endpoints,
        blocks: &stored.blocks,
        pools: &stored.pools,
        // The firewall is judged by its table's presence, not its rules.
        local: LocalSettings::default(),
        between_networks: stored.between_networks,
    };
    // Without its device no plan can be right; the device's absence is the finding.
    let plan = match (&spec, node.overlay) {
        (Some(_), None) => None,
        _ => Some(host::plan(backend.as_ref(), &inputs)),
    };
    let planned = Planned {
        device: spec.as_ref().map(|s| (s.name().to_string(), s.mtu())),
        mtu: backend.mtu(node.external.mtu),
        learns: backend.bgp().is_some(),
        plan,
        // Blocks of other nodes that hold a lease that stands: a node that left
        // announces nothing, and its blocks are released after the grace period.
        others_blocks: stored
            .blocks
            .iter()
            .filter(|b| b.node != public_ip && !b.releasing)
            .filter(|b| peers.iter().any(|l| l.attrs.public_ip == b.node))
            .map(|b| (b.cidr, b.node))
            .collect(),
    };
    let read = async {
        let routes = kernel.weft_routes().await?;
        let (neighbours, fdb) = match node.overlay {
            Some(index) => (
                Some(kernel.neighbours(index).await?),
                Some(kernel.fdb(index).await?),
            ),
            None => (None, None),
        };
        let (neighbours6, fdb6) = match node.overlay6 {
            Some(index) => (
                Some(kernel.neighbours(index).await?),
                Some(kernel.fdb(index).await?),
            ),
            None => (None, None),
        };
        let mut segments = Vec::new();
        for seg in planned.plan.iter().flat_map(|p| &p.segments) {
            let entries = match links.iter().find(|l| l.name == seg.spec.vxlan()) {
                Some(l) => Some((
                    kernel.neighbours(l.index).await?,
                    kernel.fdb(l.index).await?,
                )),
                None => None,
            };
            segments.push(entries);
        }
        Ok::<_, weft_kernel::KernelError>(KernelState {
            routes,
            neighbours,
            fdb,
            neighbours6,
            fdb6,
            segments,
            links,
        })
    }
    .await
    .map_err(Unseen::of)?;
    Ok((planned, read))
}

/// Asks `/healthz`: the body for 200, the reason otherwise.
fn healthz(addr: SocketAddr) -> Seen<String> {
    let timeout = Duration::from_secs(3);
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        Unseen(format!(
            "no agent answers on {addr}: {e} (is weftd running with --healthz-port?)"
        ))
    })?;
    conn.set_read_timeout(Some(timeout)).ok();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| Unseen(format!("cannot ask {addr}: {e}")))?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .map_err(|e| Unseen(format!("no answer from {addr}: {e}")))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body.trim().to_string())
    } else {
        Err(Unseen(format!(
            "/healthz on {addr}: {status}: {}",
            body.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    //! Gathering from a fake host and an embedded store: no root, no agent.
    use std::sync::Arc;

    use weft_alloc::hostfiles::{self, NodeNetwork};
    use weft_alloc::LeaseAttrs;
    use weft_kernel::fake::FakeNet;
    use weft_plan::{FirewallPlan, Route};

    use super::facts::{Finding, Level};
    use super::*;

    struct Node {
        fake: FakeNet,
        registry: Registry,
        args: DiagnoseArgs,
        peer_route: Route,
        _dir: tempfile::TempDir,
    }

    /// A host-gw node at 192.168.1.1 as the agent leaves it: its lease, a peer's,
    /// forwarding, the firewall, the peer's route and the subnet file.
    async fn node() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = weft_store::embedded::EmbeddedStore::open(dir.path().join("s.db")).unwrap();
        let registry = Registry::new(Arc::new(store), weft_store::DEFAULT_PREFIX);
        let cfg =
            NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#)
                .unwrap();
        registry.put_config(&cfg).await.unwrap();
        let attrs = |ip: &str| LeaseAttrs {
            labels: Default::default(),
            public_ip: ip.parse().unwrap(),
            public_ipv6: None,
            backend_type: "host-gw".into(),
            backend_data: serde_json::Value::Null,
            backend_v6_data: serde_json::Value::Null,
        };
        let ttl = Duration::from_secs(3600);
        let own = registry
            .acquire(
                &cfg,
                &attrs("192.168.1.1"),
                weft_alloc::registry::Previous::default(),
                ttl,
            )
            .await
            .unwrap();
        let peer = registry
            .acquire(
                &cfg,
                &attrs("192.168.1.2"),
                weft_alloc::registry::Previous::default(),
                ttl,
            )
            .await
            .unwrap();

        let fake = FakeNet::new();
        let eth0 = fake.add_interface("eth0", "192.168.1.1/24".parse().unwrap(), 1500, true);
        let host = fake.host();
        host.ensure_forwarding().unwrap();
        host.apply_firewall(&FirewallPlan {
            network: cfg.network,
            local_subnet: own.subnet,
            ip_masq: false,
            encap: None,
            isolated: Vec::new(),
            pools: Vec::new(),
            published: Vec::new(),
            ipv6: None,
        })
        .unwrap();
        let peer_route = Route::via(
            peer.subnet,
            "192.168.1.2".parse::<std::net::Ipv4Addr>().unwrap(),
            eth0,
        );
        host.apply_routes(&[peer_route]).await.unwrap();
        let subnet_file = dir.path().join("subnet.env");
        let env = hostfiles::render_subnet_env(&NodeNetwork {
            network: cfg.network,
            subnet: own.subnet,
            mtu: 1500,
            ip_masq: false,
            gso_max_size: None,
            ipam_blocks: false,
            ipv6: None,
        });
        std::fs::write(&subnet_file, env).unwrap();
        let args = DiagnoseArgs {
            public_ip: Some("192.168.1.1".parse().unwrap()),
            subnet_file,
            healthz_port: 0,
            bgp_status_file: dir.path().join("bgp.json"),
            healthz_ip: "127.0.0.1".parse().unwrap(),
            host: None,
            output: Output::Table,
        };
        Node {
            fake,
            registry,
            args,
            peer_route,
            _dir: dir,
        }
    }

    fn at(findings: &[Finding], level: Level) -> Vec<String> {
        findings
            .iter()
            .filter(|f| f.level == level)
            .map(|f| format!("{}: {}", f.what, f.detail))
            .collect()
    }

    #[tokio::test]
    async fn a_node_as_planned_passes_and_drift_is_named() {
        let n = node().await;
        let host = n.fake.host();
        let facts = gather(&n.registry, &n.args, Ok(&host)).await;
        let findings = checks::findings(&facts);
        assert!(at(&findings, Level::Fail).is_empty(), "{findings:#?}");
        assert!(at(&findings, Level::Ok)
            .iter()
            .any(|f| f.starts_with("route") || f.starts_with("routes")));

        // Drift by hand: the peer's route is gone.
        assert!(n.fake.delete_route(n.peer_route.dst));
        let facts = gather(&n.registry, &n.args, Ok(&host)).await;
        let fails = at(&checks::findings(&facts), Level::Fail);
        assert_eq!(
            fails,
            [format!(
                "route: missing: {} via 192.168.1.2 dev eth0",
                n.peer_route.dst
            )]
        );
    }

    /// The node of [`node`] with block IPAM, a routed and an overlay named network:
    /// the kernel as the agent leaves it, written out by hand (a blackhole for its own
    /// block, the peer's block and its routed container via the peer, the overlay
    /// network's segment with the peer's endpoint's entries).
    async fn node_with_everything() -> (Node, u32) {
        let n = node().await;
        let store = n.registry.store();
        for (key, value) in [
            (
                format!("{}p", n.registry.keys().pools()),
                r#"{"Name":"p","CIDR":"10.248.0.0/24","BlockSize":26,"NatOutgoing":true}"#,
            ),
            (
                format!("{}10.248.0.0-26", n.registry.keys().blocks()),
                r#"{"CIDR":"10.248.0.0/26","Pool":"p","Node":"192.168.1.1","Allocations":{"10.248.0.1":{"Handle":"k8s/c1/eth0","Node":"192.168.1.1"}}}"#,
            ),
            (
                format!("{}10.248.0.64-26", n.registry.keys().blocks()),
                r#"{"CIDR":"10.248.0.64/26","Pool":"p","Node":"192.168.1.2","Allocations":{"10.248.0.65":{"Handle":"k8s/c2/eth0","Node":"192.168.1.2"}}}"#,
            ),
            (
                format!("{}green", n.registry.keys().networks()),
                r#"{"Name":"green","Subnet":"10.60.0.0/24","Gateway":"10.60.0.1","Mode":"routed"}"#,
            ),
            (
                format!("{}green/10.60.0.3", n.registry.keys().endpoints()),
                r#"{"Node":"192.168.1.2","EndpointID":"e2","HostIface":"wv2"}"#,
            ),
            (
                format!("{}blue", n.registry.keys().networks()),
                r#"{"Name":"blue","Subnet":"10.50.0.0/24","Gateway":"10.50.0.1","Mode":"overlay","VNI":4096}"#,
            ),
            (
                format!("{}blue/10.50.0.2", n.registry.keys().endpoints()),
                r#"{"Node":"192.168.1.1","EndpointID":"e1","MAC":"02:00:00:00:00:02","HostIface":"wv1"}"#,
            ),
            (
                format!("{}blue/10.50.0.3", n.registry.keys().endpoints()),
                r#"{"Node":"192.168.1.2","EndpointID":"e3","MAC":"02:00:00:00:00:03","HostIface":"wv3"}"#,
            ),
        ] {
            store.put(&key, value.as_bytes(), None).await.unwrap();
        }
        let host = n.fake.host();
        let eth0 = n.fake.link("eth0").unwrap().info().index;
        let peer = "192.168.1.2".parse().unwrap();
        let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
        host.apply_routes(&[
            n.peer_route,
            Route::blackhole(net("10.248.0.0/26")),
            Route::via(net("10.248.0.64/26"), peer, eth0),
            Route::via(net("10.60.0.3/32"), peer, eth0),
        ])
        .await
        .unwrap();
        let spec = weft_plan::SegmentSpec {
            network: "blue".into(),
            vni: 4096,
            local: "192.168.1.1".parse().unwrap(),
            underlay: eth0,
            mtu: 1450,
            gateway: Some("10.50.0.1/24".parse().unwrap()),
        };
        let (_, vxlan, _) = host.ensure_segment(&spec).await.unwrap();
        let mac = "02:00:00:00:00:03".parse().unwrap();
        host.apply_neighbours(
            vxlan,
            &[weft_plan::Neighbour {
                ip: "10.50.0.3".parse().unwrap(),
                mac,
            }],
        )
        .await
        .unwrap();
        host.apply_fdb(vxlan, &[weft_plan::FdbEntry { mac, dst: peer }])
            .await
            .unwrap();
        (n, vxlan)
    }

    #[tokio::test]
    async fn blocks_and_named_networks_diagnose_clean_and_drift_is_named() {
        let (n, vxlan) = node_with_everything().await;
        let host = n.fake.host();
        let facts = gather(&n.registry, &n.args, Ok(&host)).await;
        let findings = checks::findings(&facts);
        assert!(at(&findings, Level::Fail).is_empty(), "{findings:#?}");
        assert!(at(&findings, Level::Warn).is_empty(), "{findings:#?}");
        assert!(
            at(&findings, Level::Ok).contains(&"routes: 4 as planned".to_string()),
            "{findings:#?}"
        );

        // A block's blackhole and the routed container's /32 deleted by hand, the
        // segment's neighbour entry flushed.
        assert!(n
            .fake
            .delete_route("10.248.0.0/26".parse::<ipnet::Ipv4Net>().unwrap()));
        assert!(n
            .fake
            .delete_route("10.60.0.3/32".parse::<ipnet::Ipv4Net>().unwrap()));
        host.apply_neighbours(vxlan, &[]).await.unwrap();
        let facts = gather(&n.registry, &n.args, Ok(&host)).await;
        assert_eq!(
            at(&checks::findings(&facts), Level::Fail),
            [
                "route: missing: 10.60.0.3/32 via 192.168.1.2 dev eth0 (a routed container)",
                "route: missing: blackhole 10.248.0.0/26 (a block)",
                "segment: missing: blue: neighbour 10.50.0.3 lladdr 02:00:00:00:00:03",
            ]
        );

        // The segment's device removed: named as such.
        assert!(n.fake.delete_link("weftvx-4096"));
        let facts = gather(&n.registry, &n.args, Ok(&host)).await;
        assert!(at(&checks::findings(&facts), Level::Fail).contains(
            &"segment: weftvx-4096 of network blue is missing (weftd recreates it while it runs)"
                .to_string()
        ),);
    }

    #[tokio::test]
    async fn diagnose_changes_nothing() {
        let n = node().await;
        n.fake.delete_route(n.peer_route.dst);
        n.fake.clear_journal();
        let host = n.fake.host();
        let _ = gather(&n.registry, &n.args, Ok(&host)).await;
        assert!(n.fake.journal().is_empty(), "{:?}", n.fake.journal());
        assert!(n.fake.weft_routes().is_empty());
    }

    #[tokio::test]
    async fn without_a_kernel_the_store_checks_still_run() {
        let n = node().await;
        let facts = gather(&n.registry, &n.args, Err("no netlink here".into())).await;
        let findings = checks::findings(&facts);
        assert!(at(&findings, Level::Ok)
            .iter()
            .any(|f| f.starts_with("lease")));
        let fails = at(&findings, Level::Fail);
        assert!(
            fails.iter().any(|f| f == "data plane: no netlink here"),
            "{fails:?}"
        );
        assert!(
            fails.iter().any(|f| f.starts_with("forwarding")),
            "{fails:?}"
        );
    }
}
