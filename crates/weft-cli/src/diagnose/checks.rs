//! The verdicts of `weftctl diagnose`, as plain functions of what was gathered: no I/O
//! here, so every verdict is unit-tested. This file holds the node-level checks
//! (config, lease, agent, forwarding, firewall, subnet file); the facts they judge are
//! in [`super::facts`], the data plane's checks in `plane`, the printing in
//! [`super::report`].

use std::time::Duration;

use weft_alloc::hostfiles;
use weft_alloc::screen::screen;
use weft_alloc::{Lease, NetworkConfig};

use super::facts::{own_lease, Facts, Finding, Level, Out, Planned};
use super::plane;
use crate::leases::human;

/// A lease that will run out sooner than this is worth a word: the agent renews an hour
/// before expiry, so a lease this close to it has missed its renewals.
const EXPIRY_WARNING: Duration = Duration::from_secs(600);

/// Every finding, in the order an operator would look: store, lease, agent, host, data
/// plane, host files.
pub fn findings(f: &Facts) -> Vec<Finding> {
    let mut out = Out(Vec::new());
    let cfg = match &f.config {
        Ok(cfg) => {
            out.add(
                Level::Ok,
                "network",
                match &cfg.ipv6 {
                    None => format!(
                        "{}, /{} subnets, backend {}",
                        cfg.network,
                        cfg.subnet_len,
                        cfg.backend.name()
                    ),
                    Some(v6) => format!(
                        "{}, /{} subnets; {}, /{} subnets; backend {}",
                        cfg.network,
                        cfg.subnet_len,
                        v6.network,
                        v6.subnet_len,
                        cfg.backend.name()
                    ),
                },
            );
            cfg
        }
        Err(e) => {
            out.add(Level::Fail, "network", e.clone());
            return out.0;
        }
    };
    for s in &f.skipped {
        out.add(
            Level::Warn,
            "lease",
            format!(
                "unreadable lease {}: {} (its subnet stays taken)",
                s.key, s.reason
            ),
        );
    }
    let own = own_lease(&f.leases, &f.public_ips);
    for r in screen(cfg, &f.leases).rejected {
        match own {
            // Every node ignores it, this one too, but it claims this node's addresses:
            // whoever wrote it expects traffic this node will keep.
            Some(o) if r.collides.contains(&o.subnet) => out.add(
                Level::Fail,
                "lease",
                format!("conflict with this node's subnet: {r}; every node ignores it"),
            ),
            _ => out.add(
                Level::Warn,
                "lease",
                format!("conflict: {r}; every node ignores it"),
            ),
        }
    }
    let Some(lease) = own else {
        let ips: Vec<String> = f.public_ips.iter().map(|ip| ip.to_string()).collect();
        // The subnet file names the subnet this node's agent holds: if a lease for it
        // names another node, the subnet was taken from under the agent.
        let taken = f
            .subnet_file
            .1
            .as_ref()
            .ok()
            .and_then(|t| weft_alloc::hostfiles::subnet_from_env(t))
            .and_then(|s| f.leases.iter().find(|l| l.subnet == s));
        let detail = match taken {
            Some(l) => format!(
                "this node's subnet {} (from its subnet file) is now leased to {}{}: weftd reports not ready and keeps its routes; delete that lease to give the subnet back, or restart weftd to claim another",
                l.subnet,
                l.attrs.public_ip,
                if l.is_reservation() { " as a reservation" } else { "" }
            ),
            None => format!(
                "no lease for this node (public IP {}): is weftd running here?",
                ips.join(" or ")
            ),
        };
        out.add(Level::Fail, "lease", detail);
        check_agent(&mut out, f);
        return out.0;
    };
    check_lease(&mut out, f, cfg, lease);
    check_reflectors(&mut out, f, cfg);
    check_agent(&mut out, f);
    check_host(&mut out, f, cfg.ipv6.is_some());
    for u in &f.unreachable {
        out.add(
            Level::Warn,
            "peer",
            format!("{} gets no route from this node: {}", u.subnet, u.reason),
        );
    }
    match &f.data_plane {
        Err(e) => out.add(Level::Fail, "data plane", e.clone()),
        Ok((planned, kernel)) => {
            plane::check(&mut out, f, lease, planned, kernel);
            check_subnet_file(&mut out, f, cfg, lease, planned);
        }
    }
    out.0
}

/// What can be judged without the store (it is down): the agent, forwarding, the
/// firewall and the subnet file on their own; the rest is marked skipped.
pub fn findings_without_store(f: &Facts, store_error: &str) -> Vec<Finding> {
    let mut out = Out(Vec::new());
    out.add(Level::Fail, "store", store_error.to_owned());
    check_agent(&mut out, f);
    check_host(&mut out, f, false);
    match &f.subnet_file.1 {
        Ok(text) => match weft_alloc::hostfiles::subnet_from_env(text) {
            Some(subnet) => out.add(
                Level::Ok,
                "subnet file",
                format!("{} names {subnet}", f.subnet_file.0.display()),
            ),
            None => out.add(
                Level::Fail,
                "subnet file",
                format!("{} names no FLANNEL_SUBNET", f.subnet_file.0.display()),
            ),
        },
        Err(e) => out.add(
            Level::Fail,
            "subnet file",
            format!("{}: {e}", f.subnet_file.0.display()),
        ),
    }
    for what in ["network", "lease", "data plane"] {
        out.add(Level::Skip, what, "needs the store");
    }
    out.0
}

/// Forwarding (of both families in a dual-stack network) and the firewall table.
fn check_host(out: &mut Out, f: &Facts, dual: bool) {
    match &f.forwarding {
        Ok(true) => out.add(Level::Ok, "forwarding", "net.ipv4.ip_forward = 1"),
        Ok(false) => out.add(
            Level::Fail,
            "forwarding",
            "net.ipv4.ip_forward = 0: this host forwards no container traffic",
        ),
        Err(e) => out.add(Level::Fail, "forwarding", e.clone()),
    }
    if dual {
        match &f.forwarding6 {
            Ok(true) => out.add(Level::Ok, "forwarding", "net.ipv6.conf.all.forwarding = 1"),
            Ok(false) => out.add(
                Level::Fail,
                "forwarding",
                "net.ipv6.conf.all.forwarding = 0: this host forwards no container IPv6 traffic",
            ),
            Err(e) => out.add(Level::Fail, "forwarding", e.clone()),
        }
    }
    match &f.firewall {
        Ok(true) => out.add(Level::Ok, "firewall", "nftables table ip weft is loaded"),
        Ok(false) => out.add(
            Level::Fail,
            "firewall",
            "no nftables table ip weft: forwarding and masquerade rules are missing",
        ),
        Err(e) => out.add(Level::Warn, "firewall", e.clone()),
    }
}

/// bgp: a route reflector that is no node's public IP reflects nothing, and its clients
/// learn no routes at all.
fn check_reflectors(out: &mut Out, f: &Facts, cfg: &NetworkConfig) {
    let weft_alloc::BackendOptions::Bgp(bgp) = &cfg.options else {
        return;
    };
    for rr in &bgp.route_reflectors {
        if !f.leases.iter().any(|l| l.attrs.public_ip == *rr) {
            out.add(
                Level::Fail,
                "bgp",
                format!("route reflector {rr} is no node's public IP: its clients learn no routes (fix RouteReflectors with weftctl network init --force)"),
            );
        }
    }
    if let Some(sel) = &bgp.route_reflector_selector {
        if bgp.route_reflectors.is_empty() && !f.leases.iter().any(|l| sel.matches(&l.attrs.labels))
        {
            out.add(
                Level::Fail,
                "bgp",
                format!("RouteReflectorSelector {sel} matches no node's labels: the mesh is off and no node reflects, so none learns another's routes (label a node with weftd --node-labels)"),
            );
        }
    }
}

fn check_lease(out: &mut Out, f: &Facts, cfg: &NetworkConfig, lease: &Lease) {
    let term = match f.expires_in {
        None => "a reservation (never expires)".to_string(),
        Some(d) => format!("expires in {}", human(d)),
    };
    let level = match f.expires_in {
        Some(d) if d < EXPIRY_WARNING => Level::Warn,
        _ => Level::Ok,
    };
    out.add(
        level,
        "lease",
        match (lease.ipv6_subnet, lease.attrs.public_ipv6) {
            (Some(v6), Some(ip6)) => format!(
                "{} and {v6} for {} and {ip6}, {term}",
                lease.subnet, lease.attrs.public_ip
            ),
            (Some(v6), None) => format!(
                "{} and {v6} for {} (no public IPv6 address), {term}",
                lease.subnet, lease.attrs.public_ip
            ),
            _ => format!("{} for {}, {term}", lease.subnet, lease.attrs.public_ip),
        },
    );
    if cfg.ipv6.is_some() && lease.ipv6_subnet.is_none() {
        out.add(
            Level::Warn,
            "lease",
            "the network is dual stack but this node's lease has no IPv6 subnet: its agent has not claimed one yet (restart it, or see its log)",
        );
    }
    if lease.attrs.backend_type != cfg.backend.name() {
        out.add(
            Level::Warn,
            "lease",
            format!(
                "the lease says backend {:?} but the network is {}: restart weftd to switch",
                lease.attrs.backend_type,
                cfg.backend.name()
            ),
        );
    }
}

fn check_agent(out: &mut Out, f: &Facts) {
    match &f.health {
        None => out.add(
            Level::Skip,
            "agent",
            "not asked: pass --healthz-port (weftd's --healthz-port)",
        ),
        Some(Ok(body)) => out.add(
            Level::Ok,
            "agent",
            format!("/healthz: {}", body.lines().next().unwrap_or("ok").trim()),
        ),
        Some(Err(e)) => out.add(Level::Fail, "agent", e.clone()),
    }
}

fn check_subnet_file(
    out: &mut Out,
    f: &Facts,
    cfg: &NetworkConfig,
    lease: &Lease,
    planned: &Planned,
) {
    let (path, text) = &f.subnet_file;
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            return out.add(
                Level::Fail,
                "subnet file",
                format!("{}: {e}", path.display()),
            )
        }
    };
    let Some(file) = hostfiles::parse_subnet_env(text) else {
        return out.add(
            Level::Fail,
            "subnet file",
            format!("{} is not a complete subnet file", path.display()),
        );
    };
    let mut problems = Vec::new();
    if file.network != cfg.network {
        problems.push(format!(
            "FLANNEL_NETWORK={} but the network is {}",
            file.network, cfg.network
        ));
    }
    if file.subnet != lease.subnet {
        problems.push(format!(
            "FLANNEL_SUBNET is in {} but the lease is {}",
            file.subnet, lease.subnet
        ));
    }
    if file.mtu != planned.mtu {
        let effect = if file.mtu > planned.mtu {
            "containers would send packets that do not fit"
        } else {
            "containers would send smaller packets than the path allows"
        };
        problems.push(format!(
            "FLANNEL_MTU={} but the backend's MTU is {}: {effect}",
            file.mtu, planned.mtu
        ));
    }
    if problems.is_empty() {
        out.add(
            Level::Ok,
            "subnet file",
            format!("{} matches the lease (MTU {})", path.display(), file.mtu),
        );
    }
    for p in problems {
        out.add(
            Level::Fail,
            "subnet file",
            format!("{}: {p}", path.display()),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diagnose::facts::{KernelState, Unseen};
    use weft_alloc::registry::{Skipped, Unreachable};
    use weft_alloc::LeaseAttrs;
    use weft_backends::host::{HostPlan, Origin};
    use weft_plan::iface::LinkInfo;
    use weft_plan::FirewallPlan;
    use weft_plan::{FdbEntry, Neighbour, Route};

    fn lease(subnet: &str, ip: &str) -> Lease {
        Lease {
            subnet: subnet.parse().unwrap(),
            ipv6_subnet: None,
            attrs: LeaseAttrs {
                labels: Default::default(),
                public_ip: ip.parse().unwrap(),
                public_ipv6: None,
                backend_type: "host-gw".into(),
                backend_data: serde_json::Value::Null,
                backend_v6_data: serde_json::Value::Null,
            },
            store_lease: Some(7),
            mod_revision: 1,
        }
    }

    fn route(dst: &str, via: &str) -> Route {
        Route::via(
            dst.parse::<ipnet::Ipv4Net>().unwrap(),
            via.parse::<std::net::Ipv4Addr>().unwrap(),
            2,
        )
    }

    /// A host plan of the backend's routes alone.
    fn host_plan(routes: Vec<Route>) -> HostPlan {
        HostPlan {
            neighbours6: Vec::new(),
            fdb6: Vec::new(),
            device: None,
            origins: routes.iter().map(|r| (r.dst, Origin::Backend)).collect(),
            routes,
            neighbours: vec![],
            fdb: vec![],
            segments: vec![],
            firewall: FirewallPlan {
                network: "10.244.0.0/16".parse().unwrap(),
                local_subnet: "10.244.1.0/24".parse().unwrap(),
                ip_masq: true,
                encap: None,
                isolated: vec![],
                pools: vec![],
                published: vec![],
                ipv6: None,
            },
            forward: vec![],
            tunnel: None,
            unrouted: Default::default(),
        }
    }

    /// A host-gw node, 10.244.1.0/24 on 192.168.77.1, with one peer, all as planned.
    pub(crate) fn healthy() -> Facts {
        let routes = vec![route("10.244.2.0/24", "192.168.77.2")];
        Facts {
            config: NetworkConfig::parse(
                br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
            )
            .map_err(Unseen::of),
            public_ips: vec!["192.168.77.1".parse().unwrap()],
            leases: vec![
                lease("10.244.1.0/24", "192.168.77.1"),
                lease("10.244.2.0/24", "192.168.77.2"),
            ],
            skipped: vec![],
            expires_in: Some(Duration::from_secs(86_000)),
            unreachable: vec![],
            health: Some(Ok("ok".into())),
            bgp_status: None,
            forwarding: Ok(true),
            forwarding6: Ok(true),
            firewall: Ok(true),
            subnet_file: (
                "/run/flannel/subnet.env".into(),
                Ok("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n".into()),
            ),
            data_plane: Ok((
                Planned {
                device: None,
                mtu: 1500,
                learns: false,
                plan: Some(host_plan(routes.clone())),
                others_blocks: vec![],
            },
                KernelState {
                routes,
                neighbours: None,
                fdb: None,
                neighbours6: None,
                fdb6: None,
                segments: vec![],
                links: vec![LinkInfo {
                    index: 2,
                    name: "eth0".into(),
                    mtu: 1500,
                    up: true,
                    mac: None,
                    controller: None,
                }],
            },
            )),
        }
    }

    fn of(f: &Facts, level: Level) -> Vec<String> {
        findings(f)
            .into_iter()
            .filter(|x| x.level == level)
            .map(|x| format!("{}: {}", x.what, x.detail))
            .collect()
    }

    #[test]
    fn a_node_as_planned_passes() {
        let all = findings(&healthy());
        assert!(all.iter().all(|f| f.level == Level::Ok), "{all:#?}");
        let (text, code) = crate::diagnose::report::render("weft diagnose: this node", &all);
        assert_eq!(code, 0);
        assert!(
            text.contains("  ok    routes       1 as planned\n"),
            "{text}"
        );
        assert!(text.ends_with("0 problems, 0 warnings\n"), "{text}");
    }

    #[test]
    fn a_reflector_no_node_has_is_named() {
        let mut f = healthy();
        f.config = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","RouteReflectors":["192.168.77.99"]}}"#,
        )
        .map_err(Unseen::of);
        let fails = of(&f, Level::Fail);
        assert!(
            fails
                .iter()
                .any(|d| d.contains("route reflector 192.168.77.99 is no node's public IP")),
            "{fails:#?}"
        );
    }

    #[test]
    fn a_reflector_selector_no_node_matches_is_named() {
        let mut f = healthy();
        f.config = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","RouteReflectorSelector":"route-reflector == 'true'"}}"#,
        )
        .map_err(Unseen::of);
        let says = "RouteReflectorSelector route-reflector == 'true' matches no node's labels";
        assert!(of(&f, Level::Fail).iter().any(|d| d.contains(says)));
        for l in f.leases.iter_mut() {
            l.attrs.labels = [("route-reflector".into(), "true".into())].into();
        }
        assert!(!of(&f, Level::Fail).iter().any(|d| d.contains(says)));
    }

    #[test]
    fn the_store_down_leaves_the_local_checks() {
        let all = findings_without_store(
            &healthy(),
            "cannot reach etcd http://x:2379: connection refused",
        );
        let (text, code) = crate::diagnose::report::render("weft diagnose", &all);
        assert_eq!(code, 1);
        assert!(
            text.contains("FAIL  store        cannot reach etcd"),
            "{text}"
        );
        assert!(text.contains("ok    forwarding"), "{text}");
        assert!(
            text.contains("skip  data plane   needs the store"),
            "{text}"
        );
    }

    #[test]
    fn bgp_sessions_and_learned_routes() {
        let mut f = healthy();
        let Ok((p, _)) = f.data_plane.as_mut() else {
            panic!()
        };
        // bgp: routes to other nodes are learned, none planned.
        p.learns = true;
        p.plan.as_mut().unwrap().routes.clear();
        f.bgp_status = Some(Ok(r#"{"peers":[
            {"address":"192.168.77.2","type":"node-to-node mesh","state":"Established","info":"Established","received":1,"advertised":1},
            {"address":"192.168.77.254","type":"global","state":"Active","info":"connect: refused","received":0,"advertised":0}]}"#.into()));
        f.leases.push(lease("10.244.3.0/24", "192.168.77.3"));
        f.leases.push(lease("10.244.4.0/24", "192.168.77.4"));
        f.unreachable = vec![Unreachable {
            subnet: "10.244.4.0/24".parse().unwrap(),
            reason: "no session".into(),
        }];
        assert_eq!(
            of(&f, Level::Fail),
            [
                "bgp: 192.168.77.254 (global) Active: connect: refused",
                "route: no route learned for 10.244.3.0/24 (node 192.168.77.3)",
            ]
        );
        assert!(of(&f, Level::Ok).contains(
            &"bgp: 192.168.77.2 (node-to-node mesh) Established, 1 received, 1 advertised"
                .to_string()
        ));
        f.bgp_status = Some(Err(
            "cannot read /run/weft/bgp-status.json: No such file".into()
        ));
        assert!(of(&f, Level::Fail)
            .contains(&"bgp: cannot read /run/weft/bgp-status.json: No such file".to_string()));
    }

    #[test]
    fn bgp_needs_a_learned_route_for_every_other_node_s_block() {
        let mut f = healthy();
        f.bgp_status = Some(Ok(r#"{"peers":[]}"#.into()));
        let Ok((p, _)) = f.data_plane.as_mut() else {
            panic!()
        };
        p.learns = true;
        p.plan.as_mut().unwrap().routes.clear();
        p.others_blocks = vec![(
            "10.248.0.64/26".parse().unwrap(),
            "192.168.77.2".parse().unwrap(),
        )];
        assert_eq!(
            of(&f, Level::Fail),
            ["route: no route learned for block 10.248.0.64/26 (node 192.168.77.2)"]
        );
        let Ok((_, k)) = f.data_plane.as_mut() else {
            panic!()
        };
        k.routes.push(route("10.248.0.64/26", "192.168.77.2"));
        assert!(of(&f, Level::Fail).is_empty(), "{:?}", of(&f, Level::Fail));
        // A route the plan does not name is the sessions', not stale.
        assert!(of(&f, Level::Warn).is_empty(), "{:?}", of(&f, Level::Warn));
    }

    #[test]
    fn route_drift_is_named() {
        let mut f = healthy();
        let peer3 = lease("10.244.3.0/24", "192.168.77.3");
        f.leases.push(peer3);
        let Ok((p, _)) = f.data_plane.as_mut() else {
            panic!()
        };
        p.plan.as_mut().unwrap().routes = vec![
            route("10.244.2.0/24", "192.168.77.2"),
            route("10.244.3.0/24", "192.168.77.3"),
        ];
        let Ok((_, k)) = f.data_plane.as_mut() else {
            panic!()
        };
        k.routes = vec![
            route("10.244.2.0/24", "192.168.77.9"),
            route("10.244.9.0/24", "192.168.77.2"),
        ];
        assert_eq!(
            of(&f, Level::Fail),
            [
                "route: wrong: the kernel has 10.244.2.0/24 via 192.168.77.9 dev eth0, the plan says 10.244.2.0/24 via 192.168.77.2 dev eth0",
                "route: missing: 10.244.3.0/24 via 192.168.77.3 dev eth0",
            ]
        );
        assert_eq!(
            of(&f, Level::Warn),
            ["route: stale: 10.244.9.0/24 via 192.168.77.2 dev eth0 (no lease calls for it)"]
        );
        assert!(findings(&f).iter().any(|x| x.level == Level::Fail));
    }

    #[test]
    fn no_config_stops_at_the_config() {
        let mut f = healthy();
        f.config = Err("no network config at /coreos.com/network/config".into());
        let all = findings(&f);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].level, Level::Fail);
    }

    #[test]
    fn a_node_without_a_lease_says_which_addresses_it_looked_for() {
        let mut f = healthy();
        f.public_ips = vec!["192.168.77.5".parse().unwrap()];
        f.health = Some(Err("no agent answers on 127.0.0.1:9462".into()));
        f.subnet_file.1 = Err("No such file or directory".into());
        assert_eq!(
            of(&f, Level::Fail),
            [
                "lease: no lease for this node (public IP 192.168.77.5): is weftd running here?",
                "agent: no agent answers on 127.0.0.1:9462",
            ]
        );
        // Its subnet file names a subnet another node's lease now holds: taken.
        f.subnet_file.1 = Ok("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n".into());
        assert!(of(&f, Level::Fail)[0].contains(
            "this node's subnet 10.244.1.0/24 (from its subnet file) is now leased to 192.168.77.1"
        ));
    }

    #[test]
    fn host_settings_and_files() {
        let mut f = healthy();
        f.forwarding = Ok(false);
        f.firewall = Ok(false);
        f.subnet_file.1 = Ok("FLANNEL_NETWORK=10.245.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n".into());
        let fails = of(&f, Level::Fail);
        assert_eq!(fails.len(), 4, "{fails:#?}");
        assert!(fails[0].starts_with("forwarding: net.ipv4.ip_forward = 0"));
        assert!(fails[1].starts_with("firewall: no nftables table ip weft"));
        assert!(fails[2].contains("FLANNEL_NETWORK=10.245.0.0/16 but the network is 10.244.0.0/16"));
        assert!(fails[3].contains("FLANNEL_MTU=1450 but the backend's MTU is 1500"));
        f.subnet_file.1 = Err("No such file or directory (os error 2)".into());
        assert!(of(&f, Level::Fail).contains(
            &"subnet file: /run/flannel/subnet.env: No such file or directory (os error 2)"
                .to_string()
        ));
    }

    #[test]
    fn lease_terms() {
        let mut f = healthy();
        f.expires_in = Some(Duration::from_secs(90));
        assert_eq!(
            of(&f, Level::Warn),
            ["lease: 10.244.1.0/24 for 192.168.77.1, expires in 1m30s"]
        );
        f.expires_in = None;
        f.unreachable = vec![Unreachable {
            subnet: "10.244.2.0/24".parse().unwrap(),
            reason: "not on the same L2 subnet".into(),
        }];
        f.skipped = vec![Skipped {
            key: "/coreos.com/network/subnets/10.244.7.0-24".into(),
            reason: "not JSON".into(),
        }];
        let warns = of(&f, Level::Warn);
        assert_eq!(
            warns,
            [
                "lease: unreadable lease /coreos.com/network/subnets/10.244.7.0-24: not JSON (its subnet stays taken)",
                "peer: 10.244.2.0/24 gets no route from this node: not on the same L2 subnet",
            ]
        );
        assert!(of(&f, Level::Ok).contains(
            &"lease: 10.244.1.0/24 for 192.168.77.1, a reservation (never expires)".to_string()
        ));
        assert!(
            findings(&f).iter().all(|x| x.level != Level::Fail),
            "warnings are not failures"
        );
    }

    #[test]
    fn overlay_device_and_entries() {
        let mut f = healthy();
        let mac: weft_plan::MacAddr = "02:00:00:00:00:02".parse().unwrap();
        let Ok((p, _)) = f.data_plane.as_mut() else {
            panic!()
        };
        p.device = Some(("weft.1".into(), 1450));
        p.mtu = 1450;
        let plane = p.plan.as_mut().unwrap();
        plane.neighbours = vec![Neighbour {
            ip: "10.244.2.0".parse().unwrap(),
            mac,
        }];
        plane.fdb = vec![FdbEntry {
            mac,
            dst: "192.168.77.2".parse().unwrap(),
        }];
        f.subnet_file.1 = Ok("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n".into());
        let Ok((_, k)) = f.data_plane.as_mut() else {
            panic!()
        };
        k.neighbours = Some(vec![]);
        k.fdb = Some(vec![FdbEntry {
            mac,
            dst: "192.168.77.3".parse().unwrap(),
        }]);
        // No device: that is the finding; no plan is compared without it.
        assert_eq!(
            of(&f, Level::Fail),
            ["device: weft.1 is missing (weftd recreates it while it runs)"]
        );
        let Ok((_, k)) = f.data_plane.as_mut() else {
            panic!()
        };
        k.links.push(LinkInfo {
            index: 5,
            name: "weft.1".into(),
            mtu: 1450,
            up: true,
            mac: None,
            controller: None,
        });
        assert_eq!(
            of(&f, Level::Fail),
            [
                "neighbour: missing: 10.244.2.0 lladdr 02:00:00:00:00:02",
                "fdb: wrong, should be: 02:00:00:00:00:02 dst 192.168.77.2",
            ]
        );
        assert!(of(&f, Level::Ok).contains(&"device: weft.1 is up, MTU 1450".to_string()));
    }
}
