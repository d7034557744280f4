//! `weftctl network init|show`: the cluster network's config; and `network
//! create|list|show NAME|delete`: named networks (see [`crate::networks`]).

use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use weft_alloc::named::Mode;
use weft_alloc::{BackendKind, NetworkConfig, Registry};

use crate::leases::Output;
use crate::networks;

/// `weftctl network init`'s options: flannel's config keys, and Weft's.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The cluster network, split into one subnet per node.
    #[arg(long, value_parser = crate::prefix::parse)]
    pub network: Ipv4Net,
    /// Dual stack: the cluster's IPv6 network (flannel's `IPv6Network`, with
    /// `EnableIPv6`), split into one IPv6 subnet per node beside its IPv4 one.
    #[arg(long)]
    pub ipv6_network: Option<String>,
    /// Dual stack: prefix length of each node's IPv6 subnet (default: flannel's, /64).
    #[arg(long, requires = "ipv6_network")]
    pub ipv6_subnet_len: Option<u8>,
    /// The data plane: host-gw (routes via peers on one L2 segment), vxlan, udp, ipip,
    /// or bgp (announce subnets to peers and routers).
    #[arg(long, default_value = "host-gw", value_parser = backend_parser())]
    pub backend: BackendKind,
    /// Prefix length of each node's subnet (default: flannel's, /24).
    #[arg(long)]
    pub subnet_len: Option<u8>,
    /// The first subnet leases are drawn from (default: the network's second).
    #[arg(long)]
    pub subnet_min: Option<std::net::Ipv4Addr>,
    /// The last subnet leases are drawn from (default: the network's last).
    #[arg(long)]
    pub subnet_max: Option<std::net::Ipv4Addr>,
    /// vxlan: the VXLAN network identifier (default 1).
    #[arg(long)]
    pub vni: Option<u32>,
    /// vxlan: the UDP port (default 8472; 4789 is IANA's); udp: the UDP port (default 8285).
    #[arg(long)]
    pub port: Option<u16>,
    /// vxlan, udp, ipip: route directly to peers on the same L2 segment, encapsulate only the rest.
    #[arg(long)]
    pub direct_routing: bool,
    /// The MTU containers get (default: the external interface's minus the overhead).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// bgp: the cluster's AS number (default 64512).
    #[arg(long)]
    pub asn: Option<u32>,
    /// bgp: a node (by public IP) that reflects routes for the others; repeat for
    /// several. Turns the full mesh off.
    #[arg(long)]
    pub route_reflector: Vec<std::net::Ipv4Addr>,
    /// bgp: the nodes whose labels (weftd --node-labels) match reflect routes for the
    /// others, in Calico's selector syntax ("route-reflector == 'true'"). Turns the full
    /// mesh off.
    #[arg(long, value_parser = |s: &str| weft_model::selector::Selector::parse(s))]
    pub route_reflector_selector: Option<weft_model::selector::Selector>,
    /// bgp: the reflectors' shared cluster id (RFC 4456; Calico's
    /// routeReflectorClusterID), e.g. 244.0.0.1; default: each reflector's router id.
    #[arg(long)]
    pub route_reflector_cluster_id: Option<std::net::Ipv4Addr>,
    /// bgp: reach nodes off this node's L2 segment through VXLAN ("vxlan") or not at
    /// all ("none", the default).
    #[arg(long, value_parser = ["vxlan", "none"])]
    pub cross_subnet: Option<String>,
    /// Where containers' addresses come from: "subnets" (each node's leased subnet,
    /// flannel's model) or "blocks" (blocks of the pools claimed on demand, Calico's;
    /// create a pool with `weftctl pool create`).
    #[arg(long, default_value = "subnets", value_parser = ["subnets", "blocks"])]
    pub ipam: String,
    /// blocks: never borrow an address from another node's block.
    #[arg(long)]
    pub strict_affinity: bool,
    /// Replace an existing config.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Write the network config (flannel's JSON format) to the store.
    #[command(
        after_help = "Examples:\n  weftctl network init --network 10.244.0.0/16 --backend host-gw\n  weftctl network init --network 10.244.0.0/16 --ipv6-network fd00:10:244::/56 --backend host-gw   (dual stack)\n  weftctl network init --network 10.244.0.0/16 --backend vxlan --vni 1 --port 4789 --direct-routing\n  weftctl network init --network 10.244.0.0/16 --backend bgp --asn 64512 --route-reflector 192.168.77.1\n  weftctl network init --network 10.244.0.0/16 --backend vxlan --mtu 1400 --force   (replace the config)\n  weftctl network init --network 10.244.0.0/16 --backend bgp --ipam blocks"
    )]
    Init(InitArgs),
    /// Without NAME: print the cluster network's config, and whether it is valid.
    /// With NAME: a named network and its endpoints.
    #[command(
        after_help = "Example:\n  weftctl network show        (the cluster config)\n  weftctl network show blue -o json"
    )]
    Show {
        name: Option<String>,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Create a named network (as `docker network create -d weft` does), usable on
    /// every host.
    #[command(
        after_help = "Examples:\n  weftctl network create blue --subnet 10.50.0.0/24\n  weftctl network create green --subnet 10.60.0.0/24 --mode routed\n  weftctl network create closed --subnet 10.52.0.0/24 --vni 5000 --internal"
    )]
    Create {
        name: String,
        /// Its own address range: overlapping no other network nor the cluster network.
        #[arg(long, value_parser = crate::prefix::parse)]
        subnet: Ipv4Net,
        /// overlay: one L2 segment across hosts on a VNI of its own (Docker overlay's
        /// model); routed: a /32 per container routed by the cluster's backend (Calico's).
        #[arg(long, default_value = "overlay", value_parser = ["overlay", "routed"])]
        mode: String,
        /// overlay: the VXLAN identifier (default: the lowest free from 4096).
        #[arg(long)]
        vni: Option<u32>,
        /// The containers' gateway (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// No way out: no gateway, no masquerade.
        #[arg(long)]
        internal: bool,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List named networks.
    #[command(after_help = "Example:\n  weftctl network list -o json")]
    List {
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a named network; refused while it has endpoints (they are named).
    #[command(after_help = "Example:\n  weftctl network delete blue")]
    Delete { name: String },
}

pub async fn run(registry: &Registry, cmd: NetworkCmd) -> Result<i32, crate::CliError> {
    match cmd {
        NetworkCmd::Init(args) => init(registry, args).await,
        NetworkCmd::Create {
            name,
            subnet,
            mode,
            vni,
            gateway,
            internal,
            output,
        } => {
            let mode: Mode = mode.parse().map_err(|e: weft_alloc::named::UnknownMode| {
                crate::CliError::Usage(e.to_string())
            })?;
            let req = networks::request(name, subnet, mode, vni, gateway, internal);
            networks::create(registry, req, output).await
        }
        NetworkCmd::List { output } => networks::list(registry, output).await,
        NetworkCmd::Show {
            name: Some(name),
            output,
        } => networks::show(registry, &name, output).await,
        NetworkCmd::Delete { name } => networks::delete(registry, &name).await,
        NetworkCmd::Show { name: None, .. } => show_config(registry).await,
    }
}

/// `weftctl network init`: the config written as flannel's JSON, refused over an
/// existing one unless forced.
async fn init(registry: &Registry, args: InitArgs) -> Result<i32, crate::CliError> {
    let InitArgs {
        network,
        ipv6_network,
        ipv6_subnet_len,
        backend,
        subnet_len,
        subnet_min,
        subnet_max,
        vni,
        port,
        direct_routing,
        mtu,
        asn,
        route_reflector,
        route_reflector_selector,
        route_reflector_cluster_id,
        cross_subnet,
        ipam,
        strict_affinity,
        force,
    } = args;
    if strict_affinity && ipam != "blocks" {
        return Err(crate::CliError::Usage(
            "--strict-affinity applies only with --ipam blocks".into(),
        ));
    }
    check_applies(
        backend,
        &[
            ("--vni", vni.is_some()),
            ("--port", port.is_some()),
            ("--direct-routing", direct_routing),
            ("--asn", asn.is_some()),
            ("--route-reflector", !route_reflector.is_empty()),
            (
                "--route-reflector-selector",
                route_reflector_selector.is_some(),
            ),
            (
                "--route-reflector-cluster-id",
                route_reflector_cluster_id.is_some(),
            ),
            ("--cross-subnet", cross_subnet.is_some()),
        ],
        cross_subnet.as_deref() == Some("vxlan"),
    )?;
    let mut json = serde_json::json!({ "Network": network.to_string(), "Backend": { "Type": backend.name() } });
    if let Some(l) = subnet_len {
        json["SubnetLen"] = l.into();
    }
    if let Some(m) = subnet_min {
        json["SubnetMin"] = m.to_string().into();
    }
    if let Some(m) = subnet_max {
        json["SubnetMax"] = m.to_string().into();
    }
    if let Some(v6) = ipv6_network {
        json["EnableIPv6"] = true.into();
        json["IPv6Network"] = v6.into();
    }
    if let Some(l) = ipv6_subnet_len {
        json["IPv6SubnetLen"] = l.into();
    }
    if ipam == "blocks" {
        json["IPAM"] = ipam.into();
    }
    if strict_affinity {
        json["StrictAffinity"] = true.into();
    }
    let b = &mut json["Backend"];
    if let Some(v) = vni {
        b["VNI"] = v.into();
    }
    if let Some(p) = port {
        b["Port"] = p.into();
    }
    if direct_routing {
        b["DirectRouting"] = true.into();
    }
    if let Some(m) = mtu {
        b["MTU"] = m.into();
    }
    if let Some(a) = asn {
        b["ASN"] = a.into();
    }
    if !route_reflector.is_empty() {
        b["RouteReflectors"] = route_reflector.iter().map(|r| r.to_string()).collect();
    }
    if let Some(s) = route_reflector_selector {
        b["RouteReflectorSelector"] = s.to_string().into();
    }
    if let Some(id) = route_reflector_cluster_id {
        b["RouteReflectorClusterID"] = id.to_string().into();
    }
    if let Some(c) = cross_subnet {
        b["CrossSubnet"] = c.into();
    }
    let cfg = NetworkConfig::parse(json.to_string().as_bytes())?;
    let existing = registry.raw_config().await?;
    if existing.is_some() && !force {
        return Err(crate::CliError::ConfigExists(registry.keys().config()));
    }
    let before = existing.and_then(|raw| NetworkConfig::parse(&raw).ok());
    registry.put_config(&cfg).await?;
    println!("{}", cfg.to_json());
    if let Some(before) = before {
        warn_of_ipam_change(registry, &before, &cfg).await?;
    }
    Ok(0)
}

/// Says what a change of IPAM model on a running cluster asks of its nodes: block IPAM
/// attaches containers routed, so a node whose CNI config is bridged refuses every new
/// container until its config says `"mode": "routed"` (and back the other way is
/// harmless). Containers keep the addresses they have either way.
async fn warn_of_ipam_change(
    registry: &Registry,
    before: &NetworkConfig,
    after: &NetworkConfig,
) -> Result<(), crate::CliError> {
    if !moves_to_blocks(before, after) {
        return Ok(()); // nothing to warn of, however many nodes run
    }
    let nodes = registry
        .leases()
        .await?
        .leases
        .iter()
        .filter(|l| !l.is_reservation())
        .count();
    if let Some(warning) = ipam_change_warning(before, after, nodes) {
        eprintln!("weftctl: warning: {warning}");
    }
    Ok(())
}

/// Whether the config moves from per-node subnets to blocks (the one change of model
/// that asks something of the nodes).
fn moves_to_blocks(before: &NetworkConfig, after: &NetworkConfig) -> bool {
    before.ipam == weft_alloc::IpamModel::Subnets
        && matches!(after.ipam, weft_alloc::IpamModel::Blocks { .. })
}

/// The warning for a change of IPAM model with `nodes` nodes running (pure).
fn ipam_change_warning(
    before: &NetworkConfig,
    after: &NetworkConfig,
    nodes: usize,
) -> Option<String> {
    if !moves_to_blocks(before, after) || nodes == 0 {
        return None;
    }
    Some(format!(
        "the IPAM model changed from subnets to blocks with {nodes} node(s) running: block IPAM \
         attaches containers routed, so every node's CNI config must say \"mode\": \"routed\" before \
         its next container, or that container is refused; containers running now keep their \
         addresses (docs/ipam.md). Make sure a pool exists: weftctl pool list"
    ))
}

/// `weftctl network show`: the stored config as written, and whether it is valid
/// (exit 2 when not).
async fn show_config(registry: &Registry) -> Result<i32, crate::CliError> {
    let raw = registry
        .raw_config()
        .await?
        .ok_or_else(|| crate::CliError::NoConfig(registry.keys().config()))?;
    println!("{}", String::from_utf8_lossy(&raw).trim_end());
    match NetworkConfig::parse(&raw) {
        Ok(c) => {
            let pool = weft_alloc::pool::size(&c);
            eprintln!(
                "valid: {} subnets of /{} from {} to {}, backend {}",
                pool, c.subnet_len, c.subnet_min, c.subnet_max, c.backend
            );
            if let Some(v6) = &c.ipv6 {
                eprintln!(
                    "dual stack: {} IPv6 subnets of /{} from {} to {}",
                    v6.size(),
                    v6.subnet_len,
                    v6.subnet_min,
                    v6.subnet_max
                );
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("INVALID: {e}");
            Ok(2)
        }
    }
}

/// `--backend`'s parser: the backends by name, listed in `--help`.
fn backend_parser() -> impl clap::builder::TypedValueParser<Value = BackendKind> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = BackendKind::ALL.iter().map(|b| b.name()).collect();
    clap::builder::PossibleValuesParser::new(names)
        .map(|s| s.parse::<BackendKind>().expect("one of the listed names"))
}

/// The backends each `network init` option applies to.
fn applies_to(option: &str, backend: BackendKind, cross_subnet_vxlan: bool) -> bool {
    use BackendKind::*;
    match option {
        "--vni" => backend == Vxlan || (backend == Bgp && cross_subnet_vxlan),
        "--port" => matches!(backend, Vxlan | Udp) || (backend == Bgp && cross_subnet_vxlan),
        "--direct-routing" => matches!(backend, Vxlan | Udp | Ipip),
        "--asn"
        | "--route-reflector"
        | "--route-reflector-selector"
        | "--route-reflector-cluster-id"
        | "--cross-subnet" => backend == Bgp,
        _ => true,
    }
}

/// Refuses options the backend would ignore, naming the backends they are for.
fn check_applies(
    backend: BackendKind,
    given: &[(&str, bool)],
    cross_subnet_vxlan: bool,
) -> Result<(), crate::CliError> {
    let wrong: Vec<String> = given
        .iter()
        .filter(|(opt, set)| *set && !applies_to(opt, backend, cross_subnet_vxlan))
        .map(|(opt, _)| {
            let for_: Vec<String> = BackendKind::ALL
                .iter()
                .filter(|b| applies_to(opt, **b, true))
                .map(|b| match (*b, *opt) {
                    (BackendKind::Bgp, "--vni" | "--port") => {
                        "bgp with --cross-subnet vxlan".into()
                    }
                    (b, _) => b.name().to_owned(),
                })
                .collect();
            format!("{opt} (for {})", for_.join(", "))
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    Err(crate::CliError::Usage(format!(
        "the {} backend does not use {}",
        backend.name(),
        wrong.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_cannot_apply_are_refused_and_named() {
        let e = check_applies(
            BackendKind::HostGw,
            &[("--vni", true), ("--direct-routing", true)],
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("the host-gw backend does not use --vni (for vxlan, bgp with --cross-subnet vxlan); --direct-routing (for vxlan, udp, ipip)"),
            "{e}"
        );
        assert!(check_applies(BackendKind::Bgp, &[("--vni", true)], false).is_err());
        assert!(check_applies(
            BackendKind::Bgp,
            &[("--vni", true), ("--cross-subnet", true)],
            true
        )
        .is_ok());
        assert!(check_applies(BackendKind::Vxlan, &[("--route-reflector", true)], false).is_err());
        assert!(check_applies(
            BackendKind::Udp,
            &[("--port", true), ("--direct-routing", true)],
            false
        )
        .is_ok());
    }

    #[test]
    fn a_move_to_blocks_on_a_running_cluster_is_warned_of() {
        let cfg = |ipam: &str| {
            NetworkConfig::parse(
                format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"host-gw"}}{ipam}}}"#)
                    .as_bytes(),
            )
            .unwrap()
        };
        let (subnets, blocks) = (cfg(""), cfg(r#","IPAM":"blocks""#));
        let said = ipam_change_warning(&subnets, &blocks, 3).expect("a warning");
        assert!(
            said.contains("3 node(s) running") && said.contains("\"mode\": \"routed\""),
            "{said}"
        );
        assert_eq!(
            ipam_change_warning(&subnets, &blocks, 0),
            None,
            "no node to break"
        );
        assert_eq!(
            ipam_change_warning(&blocks, &subnets, 3),
            None,
            "back is harmless"
        );
        assert_eq!(
            ipam_change_warning(&subnets, &subnets, 3),
            None,
            "no change"
        );
    }
}
