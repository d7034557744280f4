//! The plugin's entry point: environment and stdin in, result or error JSON out.

use std::io::Read;
use std::path::Path;

use ipnet::Ipv4Net;
use serde_json::json;
use weft_alloc::agent_api::{self, ask, ApiError};
use weft_alloc::hostfiles::{self, NodeNetwork};
use weft_alloc::policies::Attachment;
use weft_kernel::Linux;

use crate::attach::{self, Ipv6Side, Request};
use crate::ipam::{Claimant, Ipam};
use crate::spec::{
    AddResult, CniError, CniResult, Code, Mode, NetConf, PodIdentity, LATEST, SUPPORTED,
};
use crate::validate;

/// The environment a runtime sets (CNI_*), read once.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

impl Env {
    pub fn from_process() -> Env {
        let get = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            command: get("CNI_COMMAND"),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
        }
    }

    fn require(&self, name: &str, value: &str) -> CniResult<()> {
        if value.is_empty() {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("{name} is not set"),
            ));
        }
        match name {
            "CNI_CONTAINERID" => validate::container_id(value),
            "CNI_IFNAME" => validate::ifname(value),
            "CNI_NETNS" => validate::netns(value),
            _ => Ok(()),
        }
    }
}

/// What a run prints and how it exits.
pub struct Outcome {
    pub stdout: String,
    pub code: i32,
}

/// Runs one plugin invocation.
pub fn run(env: &Env, stdin: &[u8]) -> Outcome {
    let version = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str())
                .map(String::from)
        })
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_owned());
    match dispatch(env, stdin) {
        Ok(out) => Outcome {
            stdout: out,
            code: 0,
        },
        Err(e) => Outcome {
            stdout: e.to_json(&version).to_string(),
            code: 1,
        },
    }
}

fn dispatch(env: &Env, stdin: &[u8]) -> CniResult<String> {
    if env.command.is_empty() {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            "CNI_COMMAND is not set",
        ));
    }
    if env.command == "VERSION" {
        return Ok(json!({ "cniVersion": LATEST, "supportedVersions": SUPPORTED }).to_string());
    }
    if stdin.len() > validate::MAX_STDIN {
        return Err(CniError::new(
            Code::Decode,
            format!(
                "the network configuration is larger than {} bytes",
                validate::MAX_STDIN
            ),
        ));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command.as_str() {
        "ADD" => add(env, &conf),
        "DEL" => del(env, &conf).map(|()| String::new()),
        "CHECK" => check(env, &conf).map(|()| String::new()),
        "STATUS" => status(&conf).map(|()| String::new()),
        "GC" => gc(&conf).map(|()| String::new()),
        other => Err(CniError::new(
            Code::InvalidEnvironment,
            format!("unknown CNI_COMMAND {other:?}"),
        )),
    }
}

fn node(conf: &NetConf) -> CniResult<NodeNetwork> {
    let path = &conf.subnet_file;
    let text = std::fs::read_to_string(path).map_err(|e| {
        CniError::new(
            Code::TryAgainLater,
            format!(
                "cannot read the subnet file {}: is weftd running on this node?",
                path.display()
            ),
        )
        .with_details(e.to_string())
    })?;
    hostfiles::parse_subnet_env(&text).ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            format!(
                "the subnet file {} lacks FLANNEL_NETWORK/SUBNET/MTU",
                path.display()
            ),
        )
    })
}

fn ipam(conf: &NetConf, node: &NodeNetwork) -> CniResult<Ipam> {
    Ipam::open(
        &conf.data_dir,
        node.subnet,
        hostfiles::gateway(&node.subnet).addr(),
    )
}

fn add(env: &Env, conf: &NetConf) -> CniResult<String> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    attach::validate_netns(Path::new(&env.netns))?;
    let node = node(conf)?;
    let ipam = ipam(conf, &node)?;
    let wanted = conf.requested_ips(&env.args)?;
    if wanted.len() > 1 {
        return Err(CniError::new(
            Code::InvalidConfig,
            "asked for more than one IPv4 address; Weft gives one per interface",
        ));
    }
    let who = Claimant {
        container_id: &env.container_id,
        ifname: &env.ifname,
        network: &conf.name,
    };
    let wanted = wanted.first().copied();
    // Read (and refused if bad) before anything is allocated.
    let identity = conf.identity(&env.args, &env.container_id)?;
    if node.ipam_blocks {
        return add_from_blocks(env, conf, &node, &who, wanted, identity.as_ref());
    }
    let outside = wanted.filter(|ip| !node.subnet.contains(ip));
    let (ipam, ip) = match outside {
        None => {
            let ip = ipam.allocate(&who, wanted)?;
            (ipam, ip)
        }
        Some(ip) => (claim_outside(conf, &node, &who, ip)?, ip),
    };
    let undo = || {
        // Nothing half-made stays behind: the address goes back to the pool.
        let _ = ipam.release(&env.container_id, &env.ifname);
        if outside.is_some() {
            let _ = release_outside(conf, &env.container_id, ip);
        }
    };
    attach_and_answer(env, conf, &node, ip, identity.as_ref(), undo)
}

/// Attaches the container with `ip` and prints the result; on failure runs `undo`
/// (which gives the address back) and returns the error.
fn attach_and_answer(
    env: &Env,
    conf: &NetConf,
    node: &NodeNetwork,
    ip: std::net::Ipv4Addr,
    identity: Option<&PodIdentity>,
    undo: impl FnOnce(),
) -> CniResult<String> {
    let gateway = hostfiles::gateway(&node.subnet);
    let address = Ipv4Net::new(ip, node.subnet.prefix_len()).expect("valid prefix");
    let mtu = conf.mtu.unwrap_or(node.mtu);
    // Dual stack: the IPv6 address at the IPv4 one's offset in the node's IPv6 subnet.
    // An address outside the node's subnet (a fixed one, a block's) has no mirror: IPv4
    // only.
    let ipv6 = node.ipv6.as_ref().and_then(|v6| {
        v6.mirror(&node.subnet, ip).map(|address| Ipv6Side {
            address,
            gateway: hostfiles::gateway_v6(&v6.subnet),
        })
    });
    let req = Request {
        mode: conf.mode,
        bridge: &conf.bridge,
        hairpin: conf.hairpin_mode,
        netns: Path::new(&env.netns),
        ifname: &env.ifname,
        container_id: &env.container_id,
        address,
        gateway,
        mtu,
        gso_max_size: node.gso_max_size,
        ipv6,
    };
    // Who it is, for network policy, before its interface exists: the agent answers
    // once the container's rules are loaded, so no packet ever reaches it unpoliced.
    let veth = attach::host_veth_name(&env.container_id, &env.ifname);
    let ip6 = ipv6.as_ref().map(|v6| v6.address.addr());
    if let Err(e) = identify(env, conf, identity, (ip, ip6), &veth) {
        undo();
        return Err(e);
    }
    let attached = on_host(async |host| attach::add(&host, &req).await);
    let (host, ctr) = match attached {
        Ok(x) => x,
        Err(e) => {
            let _ = forget(conf, &env.container_id, &env.ifname);
            undo();
            return Err(e);
        }
    };
    let mut interfaces = Vec::new();
    interfaces.extend(host.bridge);
    interfaces.push(host.veth);
    interfaces.push(ctr);
    let (address, gw) = match conf.mode {
        Mode::Bridge => (address, gateway.addr()),
        Mode::Routed => (Ipv4Net::new(ip, 32).expect("/32"), attach::ROUTED_GATEWAY),
    };
    let result = AddResult {
        container_interface: interfaces.len() - 1,
        interfaces,
        address,
        gateway: gw,
        ipv6: ipv6.map(|v6| match conf.mode {
            Mode::Bridge => (v6.address, v6.gateway.addr()),
            Mode::Routed => (
                ipnet::Ipv6Net::from(v6.address.addr()),
                attach::ROUTED_GATEWAY6,
            ),
        }),
        mtu,
    };
    Ok(result.to_json(&conf.cni_version).to_string())
}

/// Where the plugin remembers that it told the agent a container's identity (its
/// address), so DEL tells the agent to forget it.
fn identity_marker(conf: &NetConf, container_id: &str, ifname: &str) -> std::path::PathBuf {
    conf.data_dir
        .join("identities")
        .join(format!("{container_id}-{ifname}"))
}

/// Records the container's identity through the agent, if the runtime gave one and the
/// node's agent serves its socket (a node without it enforces no policy; an agent that
/// serves it but does not answer fails the ADD: try again later).
fn identify(
    env: &Env,
    conf: &NetConf,
    identity: Option<&PodIdentity>,
    (ip, ipv6): (std::net::Ipv4Addr, Option<std::net::Ipv6Addr>),
    host_veth: &str,
) -> CniResult<()> {
    let Some(id) = identity else {
        return Ok(());
    };
    if !conf.agent_socket.exists() {
        return Ok(());
    }
    let req = agent_api::Request::Identify {
        ip,
        ipv6,
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        labels: id.labels.clone(),
        interface: host_veth.to_owned(),
        attachment: match conf.mode {
            Mode::Bridge => Attachment::Bridged,
            Mode::Routed => Attachment::Routed,
        },
    };
    ask(&conf.agent_socket, &req).map_err(|why| {
        agent_error(
            format!("cannot record the identity of {}/{}", id.namespace, id.name),
            why,
        )
    })?;
    let marker = identity_marker(conf, &env.container_id, &env.ifname);
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            CniError::new(Code::Io, format!("cannot create {}", dir.display()))
                .with_details(e.to_string())
        })?;
    }
    // The address, and the network (GC forgets only its own network's identities).
    std::fs::write(&marker, format!("{ip} {}", conf.name)).map_err(|e| {
        CniError::new(Code::Io, format!("cannot write {}", marker.display()))
            .with_details(e.to_string())
    })
}

/// Tells the agent to forget an identity this plugin recorded; the marker goes last,
/// so an unreachable agent makes DEL fail and the runtime retry.
fn forget(conf: &NetConf, container_id: &str, ifname: &str) -> CniResult<()> {
    let marker = identity_marker(conf, container_id, ifname);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    if let Some(Ok(ip)) = text.split_whitespace().next().map(str::parse) {
        ask(&conf.agent_socket, &agent_api::Request::Forget { ip })
            .map_err(|why| agent_error(format!("cannot forget the identity of {ip}"), why))?;
    }
    let _ = std::fs::remove_file(&marker);
    Ok(())
}

/// The handle a block allocation is recorded under: the network, container and
/// interface, so GC can collect a network's addresses by prefix.
fn block_handle(conf: &NetConf, container_id: &str, ifname: &str) -> String {
    format!("{}/{container_id}/{ifname}", conf.name)
}

/// An agent's refusal as a CNI error: what the agent says may succeed later (it, or its
/// store, did not answer) is "try again later".
fn agent_error(what: String, why: ApiError) -> CniError {
    let code = if why.try_again {
        Code::TryAgainLater
    } else {
        Code::AddressUnavailable
    };
    CniError::new(code, what).with_details(why.message)
}

/// Block IPAM (`WEFT_IPAM=blocks` in the subnet file): the node's agent takes the
/// address from a block (one store round trip), then it is recorded here, then the
/// container is attached routed. A plugin killed between the agent's answer and the
/// record leaves an allocation under this container's handle: a retried ADD gets the
/// same address back, and GC (which asks the agent by handle) collects it.
fn add_from_blocks(
    env: &Env,
    conf: &NetConf,
    node: &NodeNetwork,
    who: &Claimant,
    wanted: Option<std::net::Ipv4Addr>,
    identity: Option<&PodIdentity>,
) -> CniResult<String> {
    if conf.mode != Mode::Routed {
        return Err(CniError::new(
            Code::InvalidConfig,
            "this node takes container addresses from blocks (WEFT_IPAM=blocks in the subnet file), \
             which are routed as /32s: the network config needs \"mode\": \"routed\"",
        ));
    }
    let handle = block_handle(conf, who.container_id, who.ifname);
    let what = match wanted {
        Some(ip) => format!("cannot assign {ip}"),
        None => "no address from the pools".to_owned(),
    };
    let reply = ask(
        &conf.agent_socket,
        &agent_api::Request::Allocate {
            handle: handle.clone(),
            ip: wanted,
        },
    )
    .map_err(|why| agent_error(what, why))?;
    let ip = reply.ip.ok_or_else(|| {
        CniError::new(Code::Io, "weftd answered an allocation without an address")
    })?;
    let free = || {
        let _ = ask(
            &conf.agent_socket,
            &agent_api::Request::Free {
                handle: handle.clone(),
                ip,
            },
        );
    };
    let records = Ipam::blocks(&conf.data_dir)?;
    if let Err(e) = records.allocate(who, Some(ip)) {
        free();
        return Err(e);
    }
    attach_and_answer(env, conf, node, ip, identity, || {
        let _ = records.release(who.container_id, who.ifname);
        free();
    })
}

/// Gives back, through the agent, what this container interface holds from blocks, then
/// its record (so an unreachable agent loses nothing: DEL or GC retries).
fn free_from_blocks(conf: &NetConf, container_id: &str, ifname: &str) -> CniResult<()> {
    let records = Ipam::blocks(&conf.data_dir)?;
    let Some(a) = records.find(container_id, ifname)? else {
        return Ok(());
    };
    let req = agent_api::Request::Free {
        handle: block_handle(conf, container_id, ifname),
        ip: a.ip,
    };
    ask(&conf.agent_socket, &req)
        .map_err(|why| agent_error(format!("cannot give {} back to its block", a.ip), why))?;
    records.release(container_id, ifname)?;
    Ok(())
}

/// An address outside the node's subnet (routed mode): claimed cluster-wide by the node's
/// agent, then recorded locally. Returns the record's pool.
fn claim_outside(
    conf: &NetConf,
    node: &NodeNetwork,
    who: &Claimant,
    ip: std::net::Ipv4Addr,
) -> CniResult<Ipam> {
    let refuse = |why: String| {
        CniError::new(Code::AddressUnavailable, format!("cannot assign {ip}")).with_details(why)
    };
    if conf.mode != Mode::Routed {
        return Err(refuse(format!(
            "it is outside this node's subnet {}; only \"mode\": \"routed\" can hold such an address",
            node.subnet
        )));
    }
    let req = agent_api::Request::Claim {
        ip,
        container_id: who.container_id.to_owned(),
    };
    ask(&conf.agent_socket, &req).map_err(|e| refuse(e.message))?;
    let pool = Ipam::outside(&conf.data_dir)?;
    match pool.allocate(who, Some(ip)) {
        Ok(_) => Ok(pool),
        Err(e) => {
            let _ = release_outside(conf, who.container_id, ip);
            Err(e)
        }
    }
}

/// Asks the agent to give up `ip` for this container.
fn release_outside(conf: &NetConf, container_id: &str, ip: std::net::Ipv4Addr) -> CniResult<()> {
    let req = agent_api::Request::Release {
        ip,
        container_id: container_id.to_owned(),
    };
    ask(&conf.agent_socket, &req).map(|_| ()).map_err(|why| {
        CniError::new(
            Code::TryAgainLater,
            format!("cannot release {ip} held outside the node's subnet"),
        )
        .with_details(why.message)
    })
}

fn del(env: &Env, conf: &NetConf) -> CniResult<()> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    // An address held outside the subnet is released cluster-wide first; if the agent
    // cannot be reached the record stays, and the runtime's retry of DEL finishes it.
    let outside = Ipam::outside(&conf.data_dir)?;
    if let Some(a) = outside.find(&env.container_id, &env.ifname)? {
        release_outside(conf, &env.container_id, a.ip)?;
        outside.release(&env.container_id, &env.ifname)?;
    }
    free_from_blocks(conf, &env.container_id, &env.ifname)?;
    forget(conf, &env.container_id, &env.ifname)?;
    // The subnet file may be gone (weftd stopped): allocations are freed wherever they are.
    for pool in Ipam::everywhere(&conf.data_dir)? {
        pool.release(&env.container_id, &env.ifname)?;
    }
    on_host(async |host| attach::del(&host, &env.container_id, &env.ifname).await)
}

fn check(env: &Env, conf: &NetConf) -> CniResult<()> {
    if !conf.at_least("0.4.0") {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "CHECK needs CNI version 0.4.0 or later, not {}",
                conf.cni_version
            ),
        ));
    }
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    let node = node(conf)?;
    let records = if node.ipam_blocks {
        Ipam::blocks(&conf.data_dir)?
    } else {
        ipam(conf, &node)?
    };
    let alloc = records
        .find(&env.container_id, &env.ifname)?
        .ok_or_else(|| {
            CniError::new(
                Code::UnknownContainer,
                format!(
                    "no address is allocated to {}/{}",
                    env.container_id, env.ifname
                ),
            )
        })?;
    let netns = Path::new(&env.netns);
    on_host(async |host| attach::check(&host, netns, &env.ifname, alloc.ip).await)
}

fn status(conf: &NetConf) -> CniResult<()> {
    if !conf.at_least("1.1.0") {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "STATUS needs CNI version 1.1.0",
        ));
    }
    node(conf)
        .map(|_| ())
        .map_err(|e| CniError::new(Code::NotAvailable, e.msg).with_details(e.details))
}

fn gc(conf: &NetConf) -> CniResult<()> {
    if !conf.at_least("1.1.0") {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "GC needs CNI version 1.1.0",
        ));
    }
    let valid: Vec<(String, String)> = conf
        .valid_attachments
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    for pool in Ipam::everywhere(&conf.data_dir)? {
        pool.gc(&conf.name, &valid)?;
    }
    // Addresses held outside the subnet: released cluster-wide first, the record last,
    // so an unreachable agent loses nothing (the next GC tries again).
    let outside = Ipam::outside(&conf.data_dir)?;
    for a in outside.stale(&conf.name, &valid)? {
        release_outside(conf, &a.container_id, a.ip)?;
        outside.release(&a.container_id, &a.ifname)?;
    }
    // Block IPAM: the agent collects by handle first (it also finds an address whose
    // ADD was killed before the record was written), then the records go. Stale records
    // are never dropped without the agent (the subnet file may be gone meanwhile).
    let records = Ipam::blocks(&conf.data_dir)?;
    let stale_records = !records.stale(&conf.name, &valid)?.is_empty();
    if stale_records || node(conf).is_ok_and(|n| n.ipam_blocks) {
        let keep: Vec<String> = conf
            .valid_attachments
            .as_deref()
            .unwrap_or_default()
            .iter()
            // No interface named: every interface of that container stays.
            .map(|a| block_handle(conf, &a.container_id, &a.ifname))
            .collect();
        let req = agent_api::Request::Collect {
            prefix: format!("{}/", conf.name),
            keep,
        };
        ask(&conf.agent_socket, &req).map_err(|why| {
            agent_error(
                "cannot collect the addresses of gone containers".into(),
                why,
            )
        })?;
    }
    records.gc(&conf.name, &valid)?;
    forget_gone(conf, &valid)
}

/// GC: forgets the identities this network recorded for containers the runtime no
/// longer lists (each through the agent first, its marker last).
fn forget_gone(conf: &NetConf, valid: &[(String, String)]) -> CniResult<()> {
    let dir = conf.data_dir.join("identities");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let kept: Vec<String> = valid.iter().map(|(c, i)| format!("{c}-{i}")).collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let mut words = text.split_whitespace();
        let (Some(ip), Some(network)) = (words.next(), words.next()) else {
            continue; // an older marker without its network: DEL still forgets it
        };
        if network != conf.name || kept.contains(&name) {
            continue;
        }
        if let Ok(ip) = ip.parse() {
            ask(&conf.agent_socket, &agent_api::Request::Forget { ip })
                .map_err(|why| agent_error(format!("cannot forget the identity of {ip}"), why))?;
        }
        let _ = std::fs::remove_file(entry.path());
    }
    Ok(())
}

/// The binary's `main`: reads the process's environment and stdin, prints, exits.
/// What `weft --help` (or `weft version`) prints to a person: runtimes never pass
/// arguments, they set `CNI_COMMAND`.
pub const USAGE: &str = "weft: Weft's CNI plugin (network config \"type\": \"weft\").

Container runtimes (Kubernetes, containerd, CRI-O, Podman) call it with CNI_COMMAND,
CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_ARGS in the environment and the network
configuration on stdin, and read its JSON answer on stdout. Commands: ADD, DEL, CHECK,
STATUS, GC, VERSION. Install it in the runtime's CNI plugin directory (e.g.
/opt/cni/bin/weft) and see docs/cni.md for the configuration.
";

/// Whether a person (not a runtime) asked for help: arguments and no CNI_COMMAND.
pub fn wants_usage(args: &[String], command: &str) -> bool {
    command.is_empty()
        && args.iter().any(|a| {
            matches!(
                a.as_str(),
                "-h" | "--help" | "help" | "version" | "--version"
            )
        })
}

pub fn main() -> i32 {
    let env = Env::from_process();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if wants_usage(&args, &env.command) {
        print!("{USAGE}");
        println!("supported CNI versions: {}", SUPPORTED.join(", "));
        return 0;
    }
    let mut stdin = Vec::new();
    if env.command != "VERSION" || !atty_stdin() {
        // One byte past the limit is enough to refuse it; the rest is never read.
        let limit = validate::MAX_STDIN as u64 + 1;
        let _ = std::io::stdin().take(limit).read_to_end(&mut stdin);
    }
    let out = run(&env, &stdin);
    if !out.stdout.is_empty() {
        println!("{}", out.stdout);
    }
    out.code
}

fn atty_stdin() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdin())
}

/// Runs `f` on this host's kernel, on a runtime of its own: the plugin is a short-lived
/// synchronous process.
fn on_host<T>(f: impl AsyncFnOnce(Linux) -> CniResult<T>) -> CniResult<T> {
    weft_kernel::linux::block_on(|linux| f(linux))
}

#[cfg(test)]
mod tests {
    //! Input that must be refused before any side effect: no root needed, since nothing
    //! is read, allocated or created.
    use super::*;

    fn conf(dir: &Path) -> String {
        json!({
            "cniVersion": "1.0.0",
            "name": "net",
            "type": "weft",
            "dataDir": dir.join("data"),
            "subnetFile": dir.join("subnet.env"),
        })
        .to_string()
    }

    fn env(command: &str, id: &str, ifname: &str) -> Env {
        Env {
            command: command.into(),
            container_id: id.into(),
            netns: "/run/netns/none".into(),
            ifname: ifname.into(),
            args: String::new(),
        }
    }

    #[test]
    fn bad_identifiers_are_refused_before_anything_is_touched() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("subnet.env"),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        )
        .unwrap();
        let stdin = conf(d.path());
        let long = "x".repeat(100_000);
        for (cmd, id, ifname, what) in [
            ("ADD", "a\nb", "eth0", "CNI_CONTAINERID"),
            ("ADD", "a\0b", "eth0", "CNI_CONTAINERID"),
            ("ADD", "abc", "eth0\n", "CNI_IFNAME"),
            ("ADD", "abc", "1234567890123456", "CNI_IFNAME"),
            ("ADD", "abc", long.as_str(), "CNI_IFNAME"),
            ("DEL", "a b", "eth0", "CNI_CONTAINERID"),
            ("CHECK", "abc", "a/b", "CNI_IFNAME"),
        ] {
            let out = run(&env(cmd, id, ifname), stdin.as_bytes());
            assert_eq!(out.code, 1, "{cmd} {id:?} {ifname:?}");
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(v["code"], 4, "{}", out.stdout);
            assert!(
                v["msg"].as_str().unwrap().starts_with(what),
                "{}",
                out.stdout
            );
        }
        assert!(!d.path().join("data").exists(), "no IPAM state was made");
    }

    #[test]
    fn oversized_or_hostile_configurations_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut big = conf(d.path()).into_bytes();
        big.pop();
        big.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(1 << 20)).bytes());
        let out = run(&env("ADD", "abc", "eth0"), &big);
        assert!(out.stdout.contains("larger than"), "{}", out.stdout);
        let bad_name = conf(d.path()).replace("\"net\"", "\"a/../b\"");
        let out = run(&env("ADD", "abc", "eth0"), bad_name.as_bytes());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["code"], 7, "{}", out.stdout);
        assert!(!d.path().join("data").exists());
    }

    /// Strings a runtime could hand over: anything, and near misses of valid values.
    fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            "[a-z0-9./:_ -]{0,20}",
            Just("eth0".to_string()),
            Just("c0ffee".to_string()),
            // Never a real namespace: an ADD that got that far would attach in the
            // machine's own namespace.
            Just("/run/netns/weft-fuzz-none".to_string()),
            Just("x".repeat(5000)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 400,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0c41),
            failure_persistence: None,
            ..Default::default()
        })]

        /// The bounded fuzz run of the plugin (part of the suite): random environments
        /// and configurations, valid and not. It never panics, every failure is CNI
        /// error JSON with a message, and no address is ever left held: nothing that
        /// gets past validation here can attach (no namespace is real), so whatever ADD
        /// claimed it must have given back. DEL, which would touch the host's links, is
        /// left to the namespace tests, and no `CNI_NETNS` drawn here is a namespace.
        #[test]
        fn fuzzed_calls_never_panic_or_leak(
            command in proptest::prelude::prop_oneof![
                proptest::prelude::Just("ADD"), proptest::prelude::Just("CHECK"),
                proptest::prelude::Just("STATUS"), proptest::prelude::Just("GC"),
                proptest::prelude::Just("VERSION"), proptest::prelude::Just("BOGUS"),
                proptest::prelude::Just(""),
            ],
            id in hostile(),
            ifname in hostile(),
            netns in hostile(),
            args in hostile(),
            name in hostile(),
            version in proptest::prelude::prop_oneof![
                proptest::prelude::Just("1.1.0".to_string()),
                proptest::prelude::Just("0.3.0".to_string()),
                hostile(),
            ],
            mode in hostile(),
            ips in proptest::collection::vec(hostile(), 0..3),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            use_raw in proptest::prelude::any::<bool>(),
        ) {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(
                d.path().join("subnet.env"),
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
            )
            .unwrap();
            let stdin = if use_raw {
                raw
            } else {
                json!({
                    "cniVersion": version, "name": name, "type": "weft", "mode": mode,
                    "dataDir": d.path().join("data"), "subnetFile": d.path().join("subnet.env"),
                    "agentSocket": d.path().join("none.sock"),
                    "runtimeConfig": {"ips": ips},
                })
                .to_string()
                .into_bytes()
            };
            let env = Env {
                command: command.into(),
                container_id: id,
                netns,
                ifname,
                args,
            };
            let out = run(&env, &stdin);
            if out.code != 0 {
                let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                proptest::prop_assert!(v["code"].as_u64().is_some_and(|c| c > 0));
                proptest::prop_assert!(!v["msg"].as_str().unwrap_or_default().is_empty());
            } else {
                proptest::prop_assert!(command != "ADD", "an ADD cannot succeed here");
            }
            for pool in Ipam::everywhere(&d.path().join("data")).unwrap() {
                proptest::prop_assert!(pool.list().unwrap().is_empty(), "an address stayed held");
            }
        }
    }
}
