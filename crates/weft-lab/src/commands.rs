//! `weftctl lab ...`: build, inspect and tear down a lab.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::etcd::{EtcdOptions, EtcdServer};
use clap::{Args, Subcommand, ValueEnum};
use weft_kernel::bigtcp::BIG_TCP_SIZE;

use crate::error::{LabError, LabResult};
use crate::state::{self, LabState};
use crate::{agents, cni, ping, sh, topology};

#[derive(Debug, Clone, Args)]
pub struct LabName {
    /// The lab's name; namespaces are called NAME-h1, NAME-c1, NAME-ul, ...
    #[arg(long, env = "WEFT_LAB", default_value = "weft")]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabStore {
    Embedded,
    Etcd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CniMode {
    /// A host bridge holding the gateway (flannel's style).
    Bridge,
    /// A /32 route and proxy ARP per container (Calico's style).
    Routed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentAction {
    Start,
    Stop,
    Restart,
}

/// How `lab probe` prints its cells (`-o`, as every weftctl listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeOutput {
    /// A matrix per port.
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EtcdAction {
    Start,
    Stop,
    /// SIGSTOP: it keeps its connections and answers nothing (a partitioned member).
    Pause,
    /// SIGCONT: a paused one answers again.
    Resume,
}

/// `weftctl lab up`'s options.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub lab: LabName,
    #[arg(long, default_value_t = 3)]
    pub hosts: u32,
    #[arg(long, default_value = "host-gw", value_parser = ["host-gw", "vxlan", "udp", "ipip", "bgp"])]
    pub backend: String,
    #[arg(long, value_enum, default_value = "embedded")]
    pub store: LabStore,
    /// etcd: run this many members as one cluster, each in a namespace of its own on
    /// the underlay (192.168.77.241 on); every agent gets all their endpoints.
    #[arg(long, default_value_t = 1)]
    pub etcd_members: u32,
    /// The cluster network.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub network: String,
    /// An extra option for every agent (repeatable), e.g. --agent-arg=--resync-interval=5s.
    #[arg(long, allow_hyphen_values = true)]
    pub agent_arg: Vec<String>,
    /// Spread the hosts over this many underlay subnets, routed by the underlay namespace.
    #[arg(long, default_value_t = 1)]
    pub subnets: u32,
    /// vxlan, udp, ipip: route directly between hosts on one subnet, encapsulate across subnets.
    #[arg(long)]
    pub direct_routing: bool,
    /// vxlan: the VNI.
    #[arg(long)]
    pub vni: Option<u32>,
    /// bgp: run a real BGP router (BIRD 2 or GoBGP) in the underlay namespace, peered
    /// with every host.
    #[arg(long, value_parser = ["bird", "gobgp"])]
    pub router: Option<String>,
    /// bird: the router wants this TCP MD5 password from every host (the hosts' peer
    /// record must then name it: `weftctl bgp peer add ... --password-file`).
    #[arg(long, requires = "router")]
    pub router_password: Option<String>,
    /// bgp: a host (by its underlay address) that reflects routes for the others.
    #[arg(long)]
    pub route_reflector: Vec<String>,
    /// bgp: the hosts whose labels match reflect routes for the others (Calico's
    /// selector syntax: "route-reflector == 'true'").
    #[arg(long)]
    pub route_reflector_selector: Option<String>,
    /// bgp: the reflectors' shared cluster id (RFC 4456), e.g. 244.0.0.1.
    #[arg(long)]
    pub route_reflector_cluster_id: Option<String>,
    /// A host's labels, as HOST:LABELS (`h1:route-reflector=true,rack=r1`), given to its
    /// agent as --node-labels; repeat for other hosts.
    #[arg(long, value_parser = node_labels)]
    pub node_labels: Vec<(u32, String)>,
    /// bgp: reach hosts on other underlay subnets through VXLAN (`vxlan`).
    #[arg(long, value_parser = ["vxlan", "none"])]
    pub cross_subnet: Option<String>,
    /// vxlan or udp: the UDP port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Run the agents without --ip-masq (no NAT, so no connection tracking).
    #[arg(long)]
    pub no_ip_masq: bool,
    /// How the `weft` CNI plugin attaches containers.
    #[arg(long, value_enum, default_value = "bridge")]
    pub cni_mode: CniMode,
    /// Where containers' addresses come from: "blocks" makes a pool (`--pool`,
    /// `--block-size`) and attaches containers routed.
    #[arg(long, default_value = "subnets", value_parser = ["subnets", "blocks"])]
    pub ipam: String,
    /// blocks: the pool's range.
    #[arg(long, default_value = "10.248.0.0/16")]
    pub pool: String,
    /// blocks: the pool's block size.
    #[arg(long, default_value_t = 26)]
    pub block_size: u8,
    /// Run a real dockerd on every host, the agents serving the `weft` Docker driver
    /// (`weftctl lab exec hN docker ...` talks to that host's daemon).
    #[arg(long)]
    pub docker: bool,
    /// The address families of the underlay and the cluster network: `4`, or `dual`
    /// (the hosts also on fd00:192:168:77::/64, the cluster network also on
    /// fd00:10:244::/56, every container with both). `6` (IPv6 only) is refused: Weft's
    /// cluster network needs IPv4 today.
    #[arg(long, default_value = "4", value_parser = ["4", "6", "dual"])]
    pub ip_family: String,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build a lab: N hosts on one underlay, a container per host, weftd on each host;
    /// wait until every container reaches every other and print the ping matrix.
    #[command(
        after_help = "Example:\n  weftctl lab up --hosts 3 --backend vxlan --store etcd\n  weftctl lab up --name bgp --backend bgp --router bird\n  weftctl lab up --name dk --docker"
    )]
    Up(Box<UpArgs>),
    /// Print the container ping matrix; exit non-zero if any pair fails.
    #[command(after_help = "Example:\n  weftctl lab ping --wait 10")]
    Ping {
        #[command(flatten)]
        lab: LabName,
        /// Keep trying for this many seconds until every pair answers.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Ask the lab's router (--router) with its own CLI: birdc or gobgp, the arguments
    /// passed on.
    #[command(
        after_help = "Example:\n  weftctl lab router show route all      (BIRD)\n  weftctl lab router global rib          (GoBGP)"
    )]
    Router {
        #[command(flatten)]
        lab: LabName,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Run a command in a lab namespace: h1 (host), c1 (container) or ul (underlay).
    #[command(
        after_help = "Example:\n  weftctl lab exec h1 ip route\n  weftctl lab exec c1 ping -c 1 10.244.3.2"
    )]
    Exec {
        #[command(flatten)]
        lab: LabName,
        node: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Start, stop or restart a host's agent.
    #[command(after_help = "Example:\n  weftctl lab agent h2 restart")]
    Agent {
        #[command(flatten)]
        lab: LabName,
        /// The host, e.g. h1.
        host: String,
        #[arg(value_enum)]
        action: AgentAction,
    },
    /// Start, stop or restart a host's dockerd (labs made with --docker). Stopping
    /// keeps the containers' records; `restart` is how a daemon upgrade looks.
    #[command(after_help = "Example:\n  weftctl lab dockerd h2 restart")]
    Dockerd {
        #[command(flatten)]
        lab: LabName,
        host: String,
        #[arg(value_enum)]
        action: AgentAction,
    },
    /// Kill the lab's etcd (an outage), or start it again on its data (etcd labs); with
    /// --member, one member of a cluster (`lab up --etcd-members`).
    #[command(
        after_help = "Example:\n  weftctl lab etcd stop\n  weftctl lab etcd stop --member 2"
    )]
    Etcd {
        #[command(flatten)]
        lab: LabName,
        #[arg(value_enum)]
        action: EtcdAction,
        /// The member (1..=N) of a cluster; every member when not given.
        #[arg(long)]
        member: Option<u32>,
    },
    /// Add or remove a host.
    #[command(subcommand)]
    Host(HostCommand),
    /// Add or remove a container with an identity (network policy's namespace, name and
    /// labels), attached by the `weft` CNI plugin as kubelet would, with servers in it.
    #[command(
        subcommand,
        after_help = "Example:\n  weftctl lab container add x/a --host h1 --label pod=a --serve tcp:80\n  weftctl lab container list"
    )]
    Container(ContainerCommand),
    /// Try every container added with `lab container add` from every other, on each
    /// port it serves, and print the matrix per port: `.` reachable, `X` blocked, `!`
    /// where the traffic disagrees with `weftctl policy explain`; exit 1 if any does.
    #[command(after_help = "Example:
  weftctl lab probe
  weftctl lab probe --ports tcp:80,udp:80 -o json")]
    Probe {
        #[command(flatten)]
        lab: LabName,
        /// Only these ports (default: each container's own).
        #[arg(long, default_value = "")]
        ports: String,
        /// How long a probe waits for an answer.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Probe at once, without first waiting for every host to enforce the
        /// policies in the store.
        #[arg(long)]
        no_wait: bool,
        /// Probe the containers' IPv6 addresses (a dual-stack lab); `explain` is
        /// asked of the IPv6 flows.
        #[arg(long)]
        ipv6: bool,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: ProbeOutput,
    },
    /// Serve TCP and UDP ports in the current namespace until killed (what `lab
    /// container add --serve` runs in the container).
    #[command(
        hide = true,
        after_help = "Example:\n  weftctl lab serve tcp:80,udp:80"
    )]
    Serve {
        #[command(flatten)]
        lab: LabName,
        ports: String,
    },
    /// Remove every namespace, process and file of the lab.
    #[command(after_help = "Example:\n  weftctl lab down --name weft")]
    Down {
        #[command(flatten)]
        lab: LabName,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Attach a container on a host as NAMESPACE/NAME with labels, and serve ports in it.
    #[command(
        after_help = "Example:\n  weftctl lab container add x/a --host h1 --label pod=a --serve tcp:80,tcp:81,udp:80,udp:81"
    )]
    Add {
        #[command(flatten)]
        lab: LabName,
        /// NAMESPACE/NAME, as kubelet passes them (K8S_POD_NAMESPACE, K8S_POD_NAME).
        id: String,
        #[arg(long)]
        host: String,
        /// KEY=VALUE (repeatable), passed in the network config's `args.cni.labels`.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Ports to serve: tcp:80,udp:81,...
        #[arg(long, default_value = "")]
        serve: String,
    },
    /// Detach a container (CNI DEL) and remove it.
    #[command(after_help = "Example:\n  weftctl lab container remove x/a")]
    Remove {
        #[command(flatten)]
        lab: LabName,
        id: String,
    },
    /// List the containers with their host, address and labels.
    #[command(after_help = "Example:\n  weftctl lab container list")]
    List {
        #[command(flatten)]
        lab: LabName,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Add the next host (and its container) to a running lab.
    #[command(after_help = "Example:\n  weftctl lab host add")]
    Add {
        #[command(flatten)]
        lab: LabName,
    },
    /// Stop a host's agent, delete its lease and remove its namespaces.
    #[command(after_help = "Example:\n  weftctl lab host remove h3")]
    Remove {
        #[command(flatten)]
        lab: LabName,
        host: String,
    },
}

impl LabCommand {
    /// The lab this command is about (`--name`, or `weftctl --lab NAME lab ...`).
    pub fn lab_mut(&mut self) -> &mut LabName {
        match self {
            LabCommand::Up(args) => &mut args.lab,
            LabCommand::Ping { lab, .. }
            | LabCommand::Exec { lab, .. }
            | LabCommand::Router { lab, .. }
            | LabCommand::Agent { lab, .. }
            | LabCommand::Dockerd { lab, .. }
            | LabCommand::Etcd { lab, .. }
            | LabCommand::Host(HostCommand::Add { lab })
            | LabCommand::Container(ContainerCommand::Add { lab, .. })
            | LabCommand::Container(ContainerCommand::Remove { lab, .. })
            | LabCommand::Container(ContainerCommand::List { lab })
            | LabCommand::Probe { lab, .. }
            | LabCommand::Serve { lab, .. }
            | LabCommand::Host(HostCommand::Remove { lab, .. })
            | LabCommand::Down { lab } => lab,
        }
    }
}

const SUBNET_WAIT: Duration = Duration::from_secs(30);
const CONVERGE_WAIT: Duration = Duration::from_secs(60);

/// Runs a lab command; returns the process exit code.
pub fn run(cmd: LabCommand) -> LabResult<i32> {
    match cmd {
        LabCommand::Up(args) => up(spec_of(*args)),
        LabCommand::Ping { lab, wait } => ping(&lab.name, wait),
        LabCommand::Exec { lab, node, command } => exec(&lab.name, &node, &command),
        LabCommand::Router { lab, command } => crate::router::ask(&lab.name, &command),
        LabCommand::Agent { lab, host, action } => agent(&lab.name, &host, action),
        LabCommand::Etcd {
            lab,
            action,
            member,
        } => etcd(&lab.name, action, member),
        LabCommand::Host(HostCommand::Add { lab }) => host_add(&lab.name),
        LabCommand::Dockerd { lab, host, action } => dockerd(&lab.name, &host, action),
        LabCommand::Host(HostCommand::Remove { lab, host }) => {
            let mut state = LabState::load(&lab.name)?;
            let i = host_of(&state, &host)?;
            remove_host(&mut state, i)?;
            println!("removed h{i}");
            Ok(0)
        }
        LabCommand::Down { lab } => {
            down(&lab.name)?;
            Ok(0)
        }
        LabCommand::Container(cmd) => crate::pods::run(cmd),
        LabCommand::Probe {
            lab,
            ports,
            timeout_ms,
            ipv6,
            output,
            ..
        } => {
            let state = LabState::load(&lab.name)?;
            let ports = crate::pods::parse_ports(&ports)?;
            let timeout = Duration::from_millis(timeout_ms);
            let cells = crate::pods::probe(&state, &ports, timeout, ipv6);
            crate::pods::print(&cells, output);
            Ok(0)
        }
        LabCommand::Serve { ports, .. } => {
            crate::pods::serve(&crate::pods::parse_ports(&ports)?)?;
            Ok(0)
        }
    }
}

/// The lab `lab up` makes: the network config's `weftctl network init` arguments, the
/// pool to create with block IPAM, and everything else as given.
fn spec_of(args: UpArgs) -> LabSpec {
    let UpArgs {
        lab,
        hosts,
        backend,
        store,
        etcd_members,
        network,
        agent_arg,
        subnets,
        direct_routing,
        vni,
        port,
        no_ip_masq,
        cni_mode,
        route_reflector,
        route_reflector_selector,
        route_reflector_cluster_id,
        node_labels,
        cross_subnet,
        router,
        router_password,
        docker,
        ipam,
        pool,
        block_size,
        ip_family,
    } = args;
    let blocks = ipam == "blocks";
    let mut init: Vec<String> = [
        "network",
        "init",
        "--network",
        &network,
        "--backend",
        &backend,
    ]
    .map(String::from)
    .to_vec();
    if ip_family == "dual" {
        init.extend(["--ipv6-network".into(), topology::NETWORK6.into()]);
    }
    if direct_routing {
        init.push("--direct-routing".into());
    }
    if let Some(v) = vni {
        init.extend(["--vni".into(), v.to_string()]);
    }
    if let Some(p) = port {
        init.extend(["--port".into(), p.to_string()]);
    }
    for r in route_reflector {
        init.extend(["--route-reflector".into(), r]);
    }
    if let Some(s) = route_reflector_selector {
        init.extend(["--route-reflector-selector".into(), s]);
    }
    if let Some(id) = route_reflector_cluster_id {
        init.extend(["--route-reflector-cluster-id".into(), id]);
    }
    if let Some(c) = cross_subnet {
        init.extend(["--cross-subnet".into(), c]);
    }
    if blocks {
        init.extend(["--ipam".into(), ipam]);
    }
    let pool = blocks.then(|| {
        ["pool", "create", "default", "--cidr", &pool, "--block-size"]
            .map(String::from)
            .into_iter()
            .chain([block_size.to_string(), "--nat-outgoing".into()])
            .collect()
    });
    LabSpec {
        name: lab.name,
        hosts,
        backend,
        store,
        etcd_members,
        network,
        agent_args: agent_arg,
        node_labels: node_labels.into_iter().collect(),
        subnets,
        init,
        ip_masq: !no_ip_masq,
        cni_mode: match cni_mode {
            _ if blocks => "routed".into(),
            CniMode::Bridge => "bridge".into(),
            CniMode::Routed => "routed".into(),
        },
        pool,
        router,
        router_password,
        docker,
        ip_family,
    }
}

fn ping(lab: &str, wait: u64) -> LabResult<i32> {
    let state = LabState::load(lab)?;
    let m = converge(&state, Duration::from_secs(wait));
    print!("{}", m.render());
    Ok(if m.all_ok() { 0 } else { 1 })
}

fn exec(lab: &str, node: &str, command: &[String]) -> LabResult<i32> {
    let ns = topology::node_ns(lab, node)
        .ok_or_else(|| LabError::Usage(format!("unknown node {node:?}: use h1, c1 or ul")))?;
    // A lab that does not exist is named as every other lab command names it, not
    // left to `ip netns exec` to report a missing file.
    let state = LabState::load(lab)?;
    if !Path::new("/run/netns").join(&ns).exists() {
        return Err(LabError::Usage(format!("lab {lab:?} has no node {node}")));
    }
    let mut cmd = Command::new("ip");
    // A host's commands talk to that host's dockerd (labs made with --docker).
    if let (true, Some(i)) = (state.docker, topology::host_index(lab, node)) {
        cmd.env("DOCKER_HOST", crate::docker::docker_host(&state, i));
    }
    let status = cmd
        .args(["netns", "exec", &ns])
        .args(command)
        .status()
        .map_err(|source| LabError::Spawn {
            cmd: command.join(" "),
            source,
        })?;
    Ok(status.code().unwrap_or(1))
}

fn agent(lab: &str, host: &str, action: AgentAction) -> LabResult<i32> {
    let state = LabState::load(lab)?;
    let i = host_of(&state, host)?;
    if let (AgentAction::Start, Some(pid)) = (action, agents::running_pid(&state, i)) {
        println!("h{i}: agent already running (pid {pid}); nothing to do");
        return Ok(0);
    }
    if matches!(action, AgentAction::Stop | AgentAction::Restart) {
        let was = agents::stop(&state, i)?;
        println!(
            "h{i}: agent {}",
            if was { "stopped" } else { "was not running" }
        );
    }
    if matches!(action, AgentAction::Start | AgentAction::Restart) {
        let from = agents::log_len(&state, i);
        let pid = agents::start(&state, i)?;
        agents::wait_ready(&state, i, from, SUBNET_WAIT)?;
        println!("h{i}: agent running (pid {pid})");
    }
    Ok(0)
}

fn etcd(lab: &str, action: EtcdAction, member: Option<u32>) -> LabResult<i32> {
    let mut state = LabState::load(lab)?;
    if state.store_kind() != weft_store::options::StoreKind::Etcd {
        return Err(LabError::Usage(format!(
            "lab {lab} runs on the embedded store, not etcd"
        )));
    }
    if state.etcd_members > 1 {
        let members: Vec<u32> = match member {
            Some(n) if (1..=state.etcd_members).contains(&n) => vec![n],
            Some(n) => {
                return Err(LabError::Usage(format!(
                    "lab {lab} has etcd members 1 to {}, not {n}",
                    state.etcd_members
                )))
            }
            None => (1..=state.etcd_members).collect(),
        };
        for n in members {
            match action {
                EtcdAction::Pause | EtcdAction::Resume => {
                    let Some(&pid) = state.etcd_member_pids.get(&n) else {
                        println!("etcd member {n} is not running");
                        continue;
                    };
                    pause_or_resume(pid, action);
                    println!(
                        "etcd member {n} {}",
                        if action == EtcdAction::Pause {
                            "paused"
                        } else {
                            "resumed"
                        }
                    );
                }
                EtcdAction::Stop => {
                    let was = stop_member(&mut state, n)?;
                    println!(
                        "etcd member {n} {}",
                        if was { "killed" } else { "was not running" }
                    );
                }
                EtcdAction::Start if state.etcd_member_pids.contains_key(&n) => {
                    println!("etcd member {n} is running")
                }
                EtcdAction::Start => start_member(&mut state, n)?,
            }
        }
        return Ok(0);
    }
    if member.is_some() {
        return Err(LabError::Usage(format!(
            "lab {lab} runs one etcd: --member is for labs up with --etcd-members"
        )));
    }
    match action {
        EtcdAction::Pause | EtcdAction::Resume => match state.etcd_pid {
            Some(pid) => {
                pause_or_resume(pid, action);
                println!(
                    "etcd {}",
                    if action == EtcdAction::Pause {
                        "paused"
                    } else {
                        "resumed"
                    }
                );
            }
            None => println!("etcd is not running"),
        },
        EtcdAction::Stop => {
            let was = stop_etcd(&mut state)?;
            println!("etcd {}", if was { "killed" } else { "was not running" });
        }
        EtcdAction::Start if state.etcd_pid.is_some() => println!("etcd is running"),
        EtcdAction::Start => start_etcd(&mut state)?,
    }
    Ok(0)
}

fn host_add(lab: &str) -> LabResult<i32> {
    let mut state = LabState::load(lab)?;
    let i = state.hosts.iter().max().copied().unwrap_or(0) + 1;
    // A host that cannot be set up whole is removed again.
    let added = add_host(&mut state, i).and_then(|()| attach_container(&mut state, i));
    let n = added.inspect_err(|_| {
        if let Err(e) = remove_host(&mut state, i) {
            eprintln!("could not remove the half-made h{i}: {e}");
        }
    })?;
    println!("added h{i} ({}) with subnet {}", state.host_ip(i), n.subnet);
    Ok(0)
}

fn dockerd(lab: &str, host: &str, action: AgentAction) -> LabResult<i32> {
    let state = LabState::load(lab)?;
    if !state.docker {
        return Err(LabError::Usage(format!(
            "lab {} runs no dockerd (make it with lab up --docker)",
            state.name
        )));
    }
    let i = host_of(&state, host)?;
    if matches!(action, AgentAction::Stop | AgentAction::Restart) {
        let was = crate::docker::stop(&state, i, true)?;
        println!(
            "h{i}: dockerd {}",
            if was { "stopped" } else { "was not running" }
        );
    }
    if matches!(action, AgentAction::Start | AgentAction::Restart) {
        if crate::docker::pid(&state, i).is_some() {
            println!("h{i}: dockerd already running; nothing to do");
        } else {
            crate::docker::start(&state, i)?;
            println!("h{i}: dockerd started");
        }
    }
    Ok(0)
}

fn host_of(state: &LabState, host: &str) -> LabResult<u32> {
    topology::host_index(&state.name, host)
        .filter(|i| state.hosts.contains(i))
        .ok_or_else(|| {
            LabError::Usage(format!(
                "lab {} has no host {host:?} (hosts: {:?})",
                state.name, state.hosts
            ))
        })
}

fn check_name(name: &str) -> LabResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LabError::Usage(format!(
            "lab name {name:?}: use up to 24 letters, digits, - or _"
        )))
    }
}

/// `--node-labels HOST:LABELS`: the host's number and its labels, checked as weftd
/// checks them.
fn node_labels(s: &str) -> Result<(u32, String), String> {
    let (host, labels) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: give HOST:LABELS, e.g. h1:route-reflector=true"))?;
    let n = host
        .strip_prefix('h')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{host:?} is not a host (h1, h2, ...)"))?;
    weft_model::selector::parse_labels(labels).map_err(|e| e.to_string())?;
    Ok((n, labels.to_owned()))
}

/// Everything `lab up` was asked for.
struct LabSpec {
    name: String,
    hosts: u32,
    backend: String,
    store: LabStore,
    /// How many etcd members (1: the single etcd in the underlay namespace).
    etcd_members: u32,
    network: String,
    agent_args: Vec<String>,
    /// Each host's --node-labels, by host number.
    node_labels: std::collections::BTreeMap<u32, String>,
    subnets: u32,
    /// The `weftctl network init ...` arguments.
    init: Vec<String>,
    /// Block IPAM: the `weftctl pool create ...` arguments.
    pool: Option<Vec<String>>,
    ip_masq: bool,
    cni_mode: String,
    /// `bird` or `gobgp`: a BGP router in the underlay namespace.
    router: Option<String>,
    /// The TCP MD5 password the router wants (bird only).
    router_password: Option<String>,
    docker: bool,
    /// `4` or `dual`.
    ip_family: String,
}

fn up(spec: LabSpec) -> LabResult<i32> {
    let name = spec.name.clone();
    check(&spec)?;
    // From here on everything this call makes is removed again if a later step fails
    // (a config `network init` refuses, an etcd that does not start, a host that cannot
    // be set up): a failed `lab up` leaves nothing behind.
    build(spec).inspect_err(|_| {
        if let Err(e) = down(&name) {
            eprintln!("could not remove what the failed lab up made: {e}");
        }
    })
}

/// Everything about `lab up` that can be refused before anything is made.
fn check(spec: &LabSpec) -> LabResult<()> {
    let name = spec.name.as_str();
    check_name(name)?;
    if !(1..=topology::MAX_SUBNETS).contains(&spec.subnets) {
        return Err(LabError::Usage(format!(
            "--subnets must be 1 to {}",
            topology::MAX_SUBNETS
        )));
    }
    // Before the root check: it makes nothing, and says what is wrong with the
    // options whoever runs it.
    dry_run_store(spec)?;
    if !weft_kernel::sys::is_root() {
        return Err(LabError::Usage(
            "the lab needs root: it creates network namespaces".into(),
        ));
    }
    if !(1..=topology::MAX_HOSTS).contains(&spec.hosts) {
        return Err(LabError::Usage(format!(
            "--hosts must be 1 to {}",
            topology::MAX_HOSTS
        )));
    }
    if state::dir(name).join("lab.json").exists()
        || sh::namespaces()?.contains(&topology::underlay_ns(name))
    {
        return Err(LabError::Exists(name.to_owned()));
    }
    if weft_alloc::BackendKind::from_str(&spec.backend).is_err() {
        let known: Vec<_> = weft_alloc::BackendKind::ALL
            .iter()
            .map(|k| k.name())
            .collect();
        return Err(LabError::Usage(format!(
            "unknown backend {:?}; one of {}",
            spec.backend,
            known.join(", ")
        )));
    }
    if spec.router_password.is_some() && spec.router.as_deref() != Some("bird") {
        return Err(LabError::Usage(
            "--router-password is for --router bird (the lab's GoBGP takes none)".into(),
        ));
    }
    if let Some(r) = &spec.router {
        if spec.backend != "bgp" {
            return Err(LabError::Usage(format!(
                "--router {r} peers with the hosts over BGP: it needs --backend bgp, not {}",
                spec.backend
            )));
        }
    }
    if spec.etcd_members != 1 && spec.store != LabStore::Etcd {
        return Err(LabError::Usage("--etcd-members is for --store etcd".into()));
    }
    if !(1..=7).contains(&spec.etcd_members) || spec.etcd_members.is_multiple_of(2) {
        return Err(LabError::Usage(format!(
            "--etcd-members {}: give an odd number from 1 to 7 (a majority must survive a member's loss)",
            spec.etcd_members
        )));
    }
    if spec.ip_family == "6" {
        return Err(LabError::Usage(
            "--ip-family 6: an IPv6-only cluster network is not supported yet (Weft's needs IPv4 beside IPv6); use --ip-family dual".into(),
        ));
    }
    if spec.network.parse::<ipnet::Ipv4Net>().is_err() {
        return Err(LabError::Usage(format!(
            "--network {:?} is not an IPv4 prefix like 10.244.0.0/16",
            spec.network
        )));
    }
    Ok(())
}

/// Makes lab `spec.name` (validated, not yet existing).
fn build(spec: LabSpec) -> LabResult<i32> {
    let LabSpec {
        name,
        hosts,
        backend,
        store,
        etcd_members,
        network,
        agent_args,
        node_labels,
        subnets,
        init,
        pool,
        ip_masq,
        cni_mode,
        router,
        router_password,
        docker,
        ip_family,
    } = spec;
    let name = name.as_str();
    let dir = state::dir(name);
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut state = LabState {
        name: name.to_owned(),
        backend: backend.clone(),
        store: match store {
            LabStore::Embedded => "embedded".into(),
            LabStore::Etcd => "etcd".into(),
        },
        network: network.clone(),
        hosts: vec![],
        etcd_pid: None,
        etcd_members: if etcd_members > 1 { etcd_members } else { 0 },
        etcd_member_pids: Default::default(),
        agent_args,
        node_labels,
        subnets,
        ip_masq,
        cni_mode,
        docker,
        containers: Default::default(),
        ip_family,
        containers6: Default::default(),
        pods: Default::default(),
    };
    state.save()?;

    let ul = make_underlay(name, subnets, state.dual_stack())?;

    if store == LabStore::Etcd {
        start_etcd(&mut state)?;
    }
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    store_command(&state, &init)?;
    if let Some(pool) = &pool {
        let pool: Vec<&str> = pool.iter().map(String::as_str).collect();
        store_command(&state, &pool)?;
    }
    if let Some(kind) = &router {
        crate::router::start(kind, &ul, &dir, router_password.as_deref())?;
        let value = crate::router::peer_value();
        store_command(&state, &["store", "put", crate::router::PEER_KEY, &value])?;
    }

    for i in 1..=hosts {
        add_host(&mut state, i)?;
    }
    for i in 1..=hosts {
        let n = attach_container(&mut state, i)?;
        let addr = state
            .containers
            .get(&i)
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!(
            "h{i} {}  subnet {}  container c{i} {addr} ({})",
            state.host_ip(i),
            n.subnet,
            state.cni_mode
        );
    }
    let m = converge(&state, CONVERGE_WAIT);
    print!("{}", m.render());
    if m.all_ok() {
        println!("lab {name} is up. Try: weftctl --lab {name} leases; weftctl --lab {name} diagnose; weftctl lab exec --name {name} h1 ip route");
        Ok(0)
    } else {
        eprintln!(
            "some pairs cannot reach each other; agent logs are in {}",
            dir.display()
        );
        Ok(1)
    }
}

/// The lab's underlay: a namespace standing for the hosts' switch, one bridge per
/// subnet (routed between them where there are several); its namespace's name.
fn make_underlay(name: &str, subnets: u32, dual: bool) -> LabResult<String> {
    let ul = topology::underlay_ns(name);
    sh::run(&["ip", "netns", "add", &ul])?;
    sh::ip_in(&ul, &["link", "set", "lo", "up"])?;
    // The underlay stands for the hosts' physical switch, which runs no host firewall.
    // With br_netfilter in the kernel, a bridge in a new namespace hands every frame to
    // the IPv4/IPv6/ARP firewall hooks by default: a per-frame cost (measured at about
    // 10% of host-gw's throughput here) that no real network adds. Without br_netfilter
    // the keys do not exist (`-e`), and there is nothing to turn off.
    let off =
        ["iptables", "ip6tables", "arptables"].map(|k| format!("net.bridge.bridge-nf-call-{k}=0"));
    let mut args = vec!["sysctl", "-q", "-e", "-w"];
    args.extend(off.iter().map(String::as_str));
    sh::in_ns(&ul, &args)?;
    for s in 0..subnets {
        let br = topology::underlay_bridge(s);
        sh::ip_in(&ul, &["link", "add", &br, "type", "bridge"])?;
        sh::ip_in(&ul, &["link", "set", &br, "up"])?;
        let gw = format!("{}/{}", topology::underlay_gw(s), topology::UNDERLAY_PREFIX);
        sh::ip_in(&ul, &["addr", "add", &gw, "dev", &br])?;
        if dual {
            let gw6 = format!(
                "{}/{}",
                topology::underlay_gw6(s),
                topology::UNDERLAY_PREFIX6
            );
            sh::ip_in(&ul, &["addr", "add", &gw6, "dev", &br, "nodad"])?;
            println!("underlay {ul}: bridge {br} {gw} {gw6}");
        } else {
            println!("underlay {ul}: bridge {br} {gw}");
        }
    }
    if subnets > 1 {
        // The underlay namespace routes between its subnets (and nowhere else: it has
        // no other links and no default route).
        sh::in_ns(&ul, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
        if dual {
            sh::in_ns(
                &ul,
                &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
            )?;
        }
    }
    Ok(ul)
}

/// Starts the lab's etcd in its underlay namespace (its data kept in the lab's folder,
/// so a restart finds the store as it was) and records its pid; with `--etcd-members`,
/// every member in a namespace of its own.
fn start_etcd(state: &mut LabState) -> LabResult<()> {
    if state.etcd_members > 1 {
        for n in 1..=state.etcd_members {
            attach_member(state, n)?;
        }
        for n in 1..=state.etcd_members {
            start_member(state, n)?;
        }
        return Ok(());
    }
    let dir = state::dir(&state.name);
    let ul = topology::underlay_ns(&state.name);
    let log = dir.join("etcd.log");
    let opts = EtcdOptions {
        netns: Some(&ul),
        client_port: Some(topology::ETCD_PORT),
        log: Some(&log),
        detached: true,
        tls: None,
        member: None,
    };
    let server = EtcdServer::start(topology::UNDERLAY_GW.into(), &dir.join("etcd"), opts).map_err(
        |source| LabError::Io {
            path: "etcd".into(),
            source,
        },
    )?;
    println!("etcd on {} (in {ul})", server.endpoint);
    state.etcd_pid = Some(server.detach());
    state.save()
}

/// Etcd member `n`'s namespace, on the first underlay bridge with its own address (a
/// machine of its own, as a real cluster's members are).
fn attach_member(state: &LabState, n: u32) -> LabResult<()> {
    let ns = topology::etcd_member_ns(&state.name, n);
    let ul = topology::underlay_ns(&state.name);
    let port = format!("etcd{n}");
    sh::run(&["ip", "netns", "add", &ns])?;
    sh::ip_in(&ns, &["link", "set", "lo", "up"])?;
    sh::ip_in(
        &ul,
        &[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    )?;
    let br = topology::underlay_bridge(0);
    sh::ip_in(&ul, &["link", "set", &port, "master", &br, "up"])?;
    let addr = format!(
        "{}/{}",
        topology::etcd_member_ip(n),
        topology::UNDERLAY_PREFIX
    );
    sh::ip_in(&ns, &["addr", "add", &addr, "dev", "eth0"])?;
    sh::ip_in(&ns, &["link", "set", "eth0", "up"])?;
    Ok(())
}

/// Starts etcd member `n` in its namespace (its data in the lab's folder, so a member
/// started again rejoins with what it had) and records its pid.
fn start_member(state: &mut LabState, n: u32) -> LabResult<()> {
    let dir = state::dir(&state.name);
    let ns = topology::etcd_member_ns(&state.name, n);
    let log = dir.join(format!("etcd-e{n}.log"));
    let peer = |m: u32| {
        format!(
            "e{m}=http://{}:{}",
            topology::etcd_member_ip(m),
            topology::ETCD_PORT + 1
        )
    };
    let opts = EtcdOptions {
        netns: Some(&ns),
        client_port: Some(topology::ETCD_PORT),
        log: Some(&log),
        detached: true,
        tls: None,
        member: Some(crate::etcd::Member {
            name: format!("e{n}"),
            initial_cluster: (1..=state.etcd_members)
                .map(peer)
                .collect::<Vec<_>>()
                .join(","),
        }),
    };
    let ip = topology::etcd_member_ip(n);
    let server =
        EtcdServer::start(ip.into(), &dir.join(format!("etcd-e{n}")), opts).map_err(|source| {
            LabError::Io {
                path: format!("etcd member {n}"),
                source,
            }
        })?;
    println!("etcd member {n} on {} (in {ns})", server.endpoint);
    state.etcd_member_pids.insert(n, server.detach());
    state.save()
}

/// Kills etcd member `n` at once, as a crash would.
fn stop_member(state: &mut LabState, n: u32) -> LabResult<bool> {
    let Some(pid) = state.etcd_member_pids.remove(&n) else {
        return Ok(false);
    };
    kill_and_reap(pid);
    state.save()?;
    Ok(true)
}

/// SIGSTOP or SIGCONT to an etcd.
fn pause_or_resume(pid: u32, action: EtcdAction) {
    let sig = if action == EtcdAction::Pause {
        libc::SIGSTOP
    } else {
        libc::SIGCONT
    };
    weft_kernel::sys::signal(pid, sig);
}

/// SIGKILL, then waits (up to 5 s) until the process is gone.
fn kill_and_reap(pid: u32) {
    weft_kernel::sys::signal(pid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        weft_kernel::sys::reap(pid);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the lab's etcd at once (no graceful stop: an outage as a crash causes it).
fn stop_etcd(state: &mut LabState) -> LabResult<bool> {
    let Some(pid) = state.etcd_pid.take() else {
        return Ok(false);
    };
    weft_kernel::sys::signal(pid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        weft_kernel::sys::reap(pid);
        std::thread::sleep(Duration::from_millis(20));
    }
    state.save()?;
    Ok(true)
}

/// Pings until every pair answers or `within` passes; returns the last matrix.
fn converge(state: &LabState, within: Duration) -> ping::Matrix {
    let deadline = Instant::now() + within;
    loop {
        let m = ping::matrix(state);
        if m.all_ok() || Instant::now() >= deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Runs a `weftctl` store command against the lab's store.
/// The weftctl beside this executable (or this one).
fn weftctl() -> LabResult<std::path::PathBuf> {
    let me = std::env::current_exe().map_err(|source| LabError::Io {
        path: "current executable".into(),
        source,
    })?;
    Ok([
        me.with_file_name("weftctl"),
        me.parent()
            .map(|p| p.join("../weftctl"))
            .unwrap_or_default(),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or(me))
}

/// Runs the lab's `network init` (and `pool create`) against a scratch store, so a
/// config weftctl would refuse is refused before anything is made, with weftctl's own
/// words.
fn dry_run_store(spec: &LabSpec) -> LabResult<()> {
    let scratch = std::env::temp_dir().join(format!(
        "weft-lab-check-{}-{}",
        spec.name.as_str(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|source| LabError::Io {
        path: scratch.display().to_string(),
        source,
    })?;
    let db = scratch.join("store.db");
    let ctl = weftctl()?;
    let mut result = Ok(());
    for args in std::iter::once(&spec.init).chain(spec.pool.as_ref()) {
        let out = Command::new(&ctl)
            .args(["--store", "embedded", "--store-path"])
            .arg(&db)
            .args(args)
            .env_remove("WEFT_STORE")
            .output()
            .map_err(|source| LabError::Spawn {
                cmd: ctl.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why
                .trim()
                .trim_start_matches("weftctl: ")
                .trim_start_matches("error: ");
            result = Err(LabError::Usage(why.to_owned()));
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn store_command(state: &LabState, args: &[&str]) -> LabResult<String> {
    let mut all = vec![
        weftctl()?.to_string_lossy().into_owned(),
        "--lab".into(),
        state.name.clone(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    sh::run(&refs)
}

fn add_host(state: &mut LabState, i: u32) -> LabResult<()> {
    let (ul, ns) = (
        topology::underlay_ns(&state.name),
        topology::host_ns(&state.name, i),
    );
    let port = topology::underlay_port(i);
    let _ = sh::ip_in(&ul, &["link", "del", &port]); // a leftover of a removed host, if any
    sh::run(&["ip", "netns", "add", &ns])?;
    sh::ip_in(
        &ul,
        &[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    )?;
    let s = topology::underlay_of(i, state.subnets);
    sh::ip_in(
        &ul,
        &[
            "link",
            "set",
            &port,
            "master",
            &topology::underlay_bridge(s),
            "up",
        ],
    )?;
    // The underlay is the lab's wire and switch: like real ones it passes frames of any
    // size, so BIG TCP (`--agent-arg=--big-tcp`) is bounded by the hosts alone.
    let ul_path = std::path::Path::new("/run/netns").join(&ul);
    for link in [port.clone(), topology::underlay_bridge(s)] {
        weft_kernel::linux::ensure_big_tcp_in(&ul_path, &link, BIG_TCP_SIZE)?;
    }
    sh::ip_in(&ns, &["link", "set", "lo", "up"])?;
    sh::ip_in(&ns, &["link", "set", "eth0", "up"])?;
    let addr = format!("{}/{}", state.host_ip(i), topology::UNDERLAY_PREFIX);
    sh::ip_in(&ns, &["addr", "add", &addr, "dev", "eth0"])?;
    sh::ip_in(
        &ns,
        &[
            "route",
            "add",
            "default",
            "via",
            &topology::underlay_gw(s).to_string(),
        ],
    )?;
    if state.dual_stack() {
        let addr6 = format!(
            "{}/{}",
            topology::host_ip6(i, state.subnets),
            topology::UNDERLAY_PREFIX6
        );
        sh::ip_in(&ns, &["addr", "add", &addr6, "dev", "eth0", "nodad"])?;
        sh::ip_in(
            &ns,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &topology::underlay_gw6(s).to_string(),
            ],
        )?;
    }
    state.hosts.push(i);
    state.save()?;
    if state.docker {
        crate::docker::start(state, i)?;
    }
    agents::start(state, i)?;
    Ok(())
}

/// Creates host `i`'s container once its agent has a subnet.
/// Creates host `i`'s container once its agent has a subnet, and attaches it through
/// the `weft` CNI plugin as a runtime would.
fn attach_container(state: &mut LabState, i: u32) -> LabResult<weft_alloc::hostfiles::NodeNetwork> {
    let n = agents::wait_subnet(state, i, SUBNET_WAIT)?;
    sh::run(&[
        "ip",
        "netns",
        "add",
        &topology::container_ns(&state.name, i),
    ])?;
    let result = cni::call(state, i, "ADD")?;
    let addr = cni::address(&result).ok_or_else(|| {
        LabError::Usage(format!(
            "the plugin's ADD result for c{i} has no address: {result}"
        ))
    })?;
    state.containers.insert(i, addr);
    if state.dual_stack() {
        let addr6 = cni::address6(&result).ok_or_else(|| {
            LabError::Usage(format!(
                "the plugin's ADD result for c{i} has no IPv6 address in a dual-stack lab: {result}"
            ))
        })?;
        state.containers6.insert(i, addr6);
    }
    state.save()?;
    Ok(n)
}

fn remove_host(state: &mut LabState, i: u32) -> LabResult<()> {
    // As a runtime would when the container goes: DEL first.
    if let Err(e) = cni::call(state, i, "DEL") {
        eprintln!("warning: {e}");
    }
    state.containers.remove(&i);
    state.containers6.remove(&i);
    let pods: Vec<String> = state
        .pods
        .iter()
        .filter(|(_, p)| p.host == i)
        .map(|(id, _)| id.clone())
        .collect();
    for id in pods {
        crate::pods::remove(state, &id)?;
    }
    crate::docker::stop(state, i, false)?;
    agents::stop(state, i)?;
    if let Some(n) = state.host_network(i) {
        // A host that never got far may hold no lease: not a reason to stop cleaning.
        if let Err(e) = store_command(
            state,
            &["leases", "delete", "--force", &n.subnet.to_string()],
        ) {
            eprintln!("warning: {e}");
        }
    }
    // Deleting a namespace frees its devices asynchronously; delete the underlay's end of
    // the host's link now, so the name is free for the next host at once.
    let _ = sh::ip_in(
        &topology::underlay_ns(&state.name),
        &["link", "del", &topology::underlay_port(i)],
    );
    for ns in [
        topology::container_ns(&state.name, i),
        topology::host_ns(&state.name, i),
    ] {
        kill_namespace(&ns);
    }
    state.hosts.retain(|&h| h != i);
    state.save()?;
    let _ = std::fs::remove_dir_all(state.host_dir(i));
    Ok(())
}

/// Kills whatever still runs in a namespace, then deletes it.
pub(crate) fn kill_namespace(ns: &str) {
    if let Ok(pids) = sh::run(&["ip", "netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            // These processes run inside the lab's own namespace.
            weft_kernel::sys::signal(pid, libc::SIGKILL);
        }
    }
    let _ = sh::run(&["ip", "netns", "del", ns]);
}

/// Whether `ns` is one of lab `name`'s namespaces (and not another lab's).
fn belongs(name: &str, ns: &str) -> bool {
    let Some(rest) = ns.strip_prefix(name).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    rest == "ul"
        || (rest.len() > 1
            && rest[1..].chars().all(|c| c.is_ascii_digit())
            && matches!(&rest[..1], "h" | "c" | "p" | "e"))
}

fn down(name: &str) -> LabResult<()> {
    check_name(name)?;
    let state = LabState::load(name).ok();
    if let Some(state) = &state {
        for &i in &state.hosts {
            crate::docker::stop(state, i, false)?;
            agents::stop(state, i)?;
        }
    }
    let mut removed = 0;
    for ns in sh::namespaces()?.into_iter().filter(|ns| belongs(name, ns)) {
        kill_namespace(&ns);
        removed += 1;
    }
    if let Some(pid) = state.as_ref().and_then(|s| s.etcd_pid) {
        // The lab's own etcd, started detached by `lab up`.
        weft_kernel::sys::signal(pid, libc::SIGKILL);
    }
    for pid in state.iter().flat_map(|s| s.etcd_member_pids.values()) {
        // Its members, in namespaces of their own (deleted above).
        weft_kernel::sys::signal(*pid, libc::SIGKILL);
    }
    let dir = state::dir(name);
    let had_dir = dir.exists();
    if had_dir {
        std::fs::remove_dir_all(&dir).map_err(|source| LabError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    println!(
        "lab {name}: removed {removed} namespaces{}",
        if had_dir { " and its state" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::belongs;

    #[test]
    fn down_only_touches_its_own_namespaces() {
        assert!(
            belongs("weft", "weft-ul") && belongs("weft", "weft-h12") && belongs("weft", "weft-c1")
        );
        assert!(
            belongs("weft", "weft-p3"),
            "containers added with `lab container add`"
        );
        assert!(belongs("weft", "weft-e2"), "etcd members");
        assert!(
            !belongs("weft", "weft-2-h1")
                && !belongs("weft", "weftx-h1")
                && !belongs("weft", "weft-hx")
        );
        assert!(!belongs("weft", "weft-h") && !belongs("weft", "other"));
    }
}
