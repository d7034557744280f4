//! The verdict for a flow, and why: Kubernetes' NetworkPolicy semantics, after Weft's
//! cluster policies.
//!
//! A flow from A to B is allowed when A's egress allows it and B's ingress allows it
//! (a side outside the cluster has no say). For one side:
//!
//! 1. Cluster policies that select the endpoint for that direction, lowest `order`
//!    first (ties by name), each rule in turn: the first rule that matches the flow
//!    decides with `Allow` or `Deny`; `Log` records and goes on; `Pass` skips the
//!    remaining cluster policies. No match goes on too.
//! 2. Then Kubernetes': an endpoint no NetworkPolicy of its namespace selects (for that
//!    direction) is not isolated, so allowed; a selected one is allowed only if some
//!    rule of some selecting policy allows the flow (policies add up, none subtracts).
//!
//! A rule's `from`/`to` entry matches: an `ipBlock` by address (outside its `except`s);
//! a `podSelector` alone, endpoints in the policy's own namespace; a
//! `namespaceSelector` alone, every endpoint of the matching namespaces; both, the
//! matching endpoints of the matching namespaces. Empty `from`/`to` matches anyone,
//! empty `ports` any port. Namespaces carry `kubernetes.io/metadata.name` as
//! Kubernetes sets it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::model::*;
use crate::selector::{LabelSelector, Labels};

/// A container endpoint with its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// `namespace/name` as `explain` shows it.
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub ip: Ipv4Addr,
    /// Its IPv6 address in a dual-stack network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
}

impl Endpoint {
    /// Whether `ip` is one of its addresses.
    pub fn has(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => a == self.ip,
            IpAddr::V6(a) => Some(a) == self.ip6,
        }
    }
}

/// Every endpoint and namespace the verdict may look at.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub endpoints: Vec<Endpoint>,
    /// Labels given to namespaces (any namespace also has its name label).
    pub namespaces: BTreeMap<String, Labels>,
    /// The named networks (Docker's), by name and subnet: each is isolated from the
    /// others and from the cluster network. Empty where there are none.
    pub isolated: Vec<(String, ipnet::Ipv4Net)>,
    /// The cluster network and the pools: one side of that isolation, together.
    pub cluster: Vec<ipnet::Ipv4Net>,
}

/// The name [`World::side_of`] gives the cluster network and pools.
pub const CLUSTER_NETWORK: &str = "the cluster network";

impl World {
    /// The endpoint with address `ip` (of either family).
    pub fn endpoint(&self, ip: impl Into<IpAddr>) -> Option<&Endpoint> {
        let ip = ip.into();
        self.endpoints.iter().find(|e| e.has(ip))
    }

    /// Which side of the isolation between networks `ip` is on: a named network's
    /// name, [`CLUSTER_NETWORK`], or `None` outside both. Named networks are IPv4 only,
    /// so an IPv6 flow never crosses between them.
    pub fn side_of(&self, ip: IpAddr) -> Option<&str> {
        let IpAddr::V4(ip) = ip else { return None };
        self.isolated
            .iter()
            .find(|(_, net)| net.contains(&ip))
            .map(|(name, _)| name.as_str())
            .or_else(|| {
                self.cluster
                    .iter()
                    .any(|n| n.contains(&ip))
                    .then_some(CLUSTER_NETWORK)
            })
    }

    /// A namespace's labels, with `kubernetes.io/metadata.name`.
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        let mut l = self.namespaces.get(ns).cloned().unwrap_or_default();
        l.insert("kubernetes.io/metadata.name".into(), ns.into());
        l
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    /// ICMP for IPv6: an IPv6 flow's, as ICMP is an IPv4 one's.
    Icmpv6,
}

impl Protocol {
    fn named(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Icmp => "ICMP",
            Protocol::Icmpv6 => "ICMPv6",
        }
    }

    /// ICMP of either family (its `port` is the ICMP type).
    pub fn is_icmp(self) -> bool {
        matches!(self, Protocol::Icmp | Protocol::Icmpv6)
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            "ICMP" => Some(Protocol::Icmp),
            "ICMPV6" => Some(Protocol::Icmpv6),
            _ => None,
        }
    }
}

/// A new connection: destination port (for ICMP, the ICMP type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
}

/// One direction's verdict at one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// The endpoint deciding (`None`: outside the cluster, no say).
    pub endpoint: Option<String>,
    pub allowed: bool,
    /// The cluster policies and NetworkPolicies that select the endpoint this way.
    pub selected_by: Vec<String>,
    /// What decided, in words (`NetworkPolicy x/allow-a ingress[0]`, ...).
    pub decided_by: String,
    /// `Log` rules the flow passed.
    pub logged: Vec<String>,
    /// A cluster policy's Allow rule decided (what opens the isolation between
    /// networks).
    #[serde(skip)]
    pub cluster_allow: bool,
}

/// A flow from one named network to another (or to or from the cluster network).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Between {
    pub from: String,
    pub to: String,
    pub allowed: bool,
    pub decided_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub egress: Side,
    pub ingress: Side,
    /// Present when the flow crosses the isolation between networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub between: Option<Between>,
    pub allowed: bool,
}

/// The verdict for `flow` under `policies`, with the reasons. A flow between named
/// networks (or between one and the cluster network) also needs the destination's
/// ingress to be decided by a ClusterPolicy's Allow rule: Docker's isolation between
/// networks stays total unless a cluster policy, written by whoever runs the
/// cluster, opens it for chosen flows.
pub fn explain(world: &World, policies: &[Policy], flow: &Flow) -> Explanation {
    let egress = side(world, policies, flow, Direction::Egress);
    let ingress = side(world, policies, flow, Direction::Ingress);
    let between = match (world.side_of(flow.src), world.side_of(flow.dst)) {
        (Some(from), Some(to)) if from != to => Some(Between {
            from: from.to_owned(),
            to: to.to_owned(),
            allowed: ingress.cluster_allow,
            decided_by: if ingress.cluster_allow {
                format!("opened by {}", ingress.decided_by)
            } else {
                "networks are isolated from each other; only a ClusterPolicy ingress rule that allows the flow opens them".to_owned()
            },
        }),
        _ => None,
    };
    Explanation {
        allowed: egress.allowed && ingress.allowed && between.as_ref().is_none_or(|b| b.allowed),
        egress,
        ingress,
        between,
    }
}

fn side(world: &World, policies: &[Policy], flow: &Flow, dir: Direction) -> Side {
    let (me_ip, peer_ip) = match dir {
        Direction::Egress => (flow.src, flow.dst),
        Direction::Ingress => (flow.dst, flow.src),
    };
    let Some(me) = world.endpoint(me_ip) else {
        return Side {
            endpoint: None,
            allowed: true,
            selected_by: Vec::new(),
            decided_by: format!("{me_ip} is outside the cluster: no {dir:?} policy"),
            logged: Vec::new(),
            cluster_allow: false,
        };
    };
    let mut out = Side {
        endpoint: Some(me.name.clone()),
        allowed: true,
        selected_by: Vec::new(),
        decided_by: String::new(),
        logged: Vec::new(),
        cluster_allow: false,
    };
    // 1. Cluster policies, in order.
    let cluster = cluster_for(world, policies, me, dir);
    out.selected_by.extend(
        cluster
            .iter()
            .map(|c| format!("ClusterPolicy {}", c.metadata.name)),
    );
    'cluster: for c in &cluster {
        let rules = match dir {
            Direction::Ingress => &c.spec.ingress,
            Direction::Egress => &c.spec.egress,
        };
        for (i, r) in rules.iter().enumerate() {
            if !cluster_rule_matches(world, r, flow) {
                continue;
            }
            let here = format!("ClusterPolicy {} {}[{i}]", c.metadata.name, dir_name(dir));
            match r.action {
                Action::Allow | Action::Deny => {
                    // The namespaced policies are not consulted, but they are named.
                    out.selected_by
                        .extend(namespaced_selecting(policies, me, dir));
                    out.allowed = r.action == Action::Allow;
                    out.cluster_allow = out.allowed;
                    out.decided_by = format!("{here}: {:?}", r.action);
                    return out;
                }
                Action::Log => out.logged.push(here),
                Action::Pass => break 'cluster,
            }
        }
    }
    // 2. Kubernetes' NetworkPolicies of the endpoint's namespace.
    let selecting = namespaced_for(policies, me, dir);
    out.selected_by.extend(
        selecting
            .iter()
            .map(|n| format!("NetworkPolicy {}/{}", n.namespace(), n.metadata.name)),
    );
    if selecting.is_empty() {
        out.decided_by = format!(
            "no NetworkPolicy selects {} for {dir:?}: not isolated",
            me.name
        );
        return out;
    }
    for n in &selecting {
        let found = match dir {
            Direction::Ingress => n.spec.ingress.iter().flatten().position(|r| {
                peers_match(world, n.namespace(), &r.from, peer_ip) && ports_match(&r.ports, flow)
            }),
            Direction::Egress => n.spec.egress.iter().flatten().position(|r| {
                peers_match(world, n.namespace(), &r.to, peer_ip) && ports_match(&r.ports, flow)
            }),
        };
        if let Some(i) = found {
            out.decided_by = format!(
                "NetworkPolicy {}/{} {}[{i}] allows",
                n.namespace(),
                n.metadata.name,
                dir_name(dir)
            );
            return out;
        }
    }
    out.allowed = false;
    out.decided_by = format!(
        "isolated for {dir:?} by {} and no rule allows this flow",
        selecting
            .iter()
            .map(|n| format!("{}/{}", n.namespace(), n.metadata.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

/// Every policy that selects `e`, in either direction (`weftctl endpoint list`).
pub fn selected_by(world: &World, policies: &[Policy], e: &Endpoint) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .filter(|p| match p {
            Policy::Cluster(c) => !c.types().is_empty() && cluster_selects(world, c, e),
            Policy::Namespaced(n) => {
                n.namespace() == e.namespace && n.spec.pod_selector.matches(&e.labels)
            }
        })
        .map(|p| format!("{} {}", p.kind(), p.id()))
        .collect();
    out.sort();
    out
}

fn dir_name(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

fn namespaced_selecting(policies: &[Policy], me: &Endpoint, dir: Direction) -> Vec<String> {
    namespaced_for(policies, me, dir)
        .iter()
        .map(|n| format!("NetworkPolicy {}/{}", n.namespace(), n.metadata.name))
        .collect()
}

/// The cluster policies selecting `me` for `dir`, in the order they apply (lower
/// `order` first, ties by name). Shared with [`crate::render`].
pub(crate) fn cluster_for<'a>(
    world: &World,
    policies: &'a [Policy],
    me: &Endpoint,
    dir: Direction,
) -> Vec<&'a ClusterPolicy> {
    let mut cluster: Vec<&ClusterPolicy> = policies
        .iter()
        .filter_map(|p| match p {
            Policy::Cluster(c) => Some(c),
            _ => None,
        })
        .filter(|c| c.types().contains(&dir) && cluster_selects(world, c, me))
        .collect();
    cluster.sort_by(|a, b| (a.spec.order, &a.metadata.name).cmp(&(b.spec.order, &b.metadata.name)));
    cluster
}

/// The NetworkPolicies of `me`'s namespace selecting it for `dir`.
pub(crate) fn namespaced_for<'a>(
    policies: &'a [Policy],
    me: &Endpoint,
    dir: Direction,
) -> Vec<&'a NetworkPolicy> {
    policies
        .iter()
        .filter_map(|p| match p {
            Policy::Namespaced(n) => Some(n),
            _ => None,
        })
        .filter(|n| {
            n.namespace() == me.namespace
                && n.types().contains(&dir)
                && n.spec.pod_selector.matches(&me.labels)
        })
        .collect()
}

fn cluster_selects(world: &World, c: &ClusterPolicy, e: &Endpoint) -> bool {
    c.spec.selector.matches(&e.labels)
        && c.spec
            .namespace_selector
            .as_ref()
            .is_none_or(|s| s.matches(&world.namespace_labels(&e.namespace)))
}

fn peers_match(world: &World, policy_ns: &str, peers: &[Peer], ip: IpAddr) -> bool {
    peers.is_empty() || peers.iter().any(|p| peer_matches(world, policy_ns, p, ip))
}

fn peer_matches(world: &World, policy_ns: &str, p: &Peer, ip: IpAddr) -> bool {
    if let Some(b) = &p.ip_block {
        let Some((cidr, except)) = b.nets() else {
            return false;
        };
        return cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip));
    }
    let Some(e) = world.endpoint(ip) else {
        return false; // selectors select endpoints, never outside addresses
    };
    let ns_ok = match &p.namespace_selector {
        Some(s) => s.matches(&world.namespace_labels(&e.namespace)),
        None => e.namespace == policy_ns,
    };
    ns_ok && p.pod_selector.as_ref().is_none_or(|s| s.matches(&e.labels))
}

fn ports_match(ports: &[PolicyPort], flow: &Flow) -> bool {
    ports.is_empty()
        || ports.iter().any(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            proto == flow.protocol.named()
                && match p.port {
                    None => true,
                    Some(PortValue::Number(n)) => {
                        let end = p.end_port.unwrap_or(n);
                        (n..=end).contains(&u32::from(flow.port))
                    }
                    Some(PortValue::Name(_)) => false, // refused at apply
                }
        })
}

fn entity_matches(world: &World, m: &EntityMatch, ip: IpAddr, port: Option<u16>) -> bool {
    let ep = world.endpoint(ip);
    let sel_ok = |s: &Option<LabelSelector>, f: &dyn Fn(&Endpoint) -> Labels| match s {
        None => true,
        Some(s) => ep.is_some_and(|e| s.matches(&f(e))),
    };
    sel_ok(&m.selector, &|e| e.labels.clone())
        && sel_ok(&m.namespace_selector, &|e| {
            world.namespace_labels(&e.namespace)
        })
        && (m.nets.is_empty()
            || m.nets
                .iter()
                .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
                .any(|n| n.contains(&ip)))
        && (m.ports.is_empty()
            || port.is_some_and(|p| {
                m.ports
                    .iter()
                    .filter_map(|r| port_range(r))
                    .any(|(lo, hi)| (lo..=hi).contains(&p))
            }))
}

fn cluster_rule_matches(world: &World, r: &ClusterRule, flow: &Flow) -> bool {
    if let Some(p) = &r.protocol {
        if p != flow.protocol.named() {
            return false;
        }
    }
    if let Some(t) = r.icmp_type {
        if !flow.protocol.is_icmp() || u16::from(t) != flow.port {
            return false;
        }
    }
    let port = (!flow.protocol.is_icmp()).then_some(flow.port);
    r.source
        .as_ref()
        .is_none_or(|s| entity_matches(world, s, flow.src, None))
        && r.destination
            .as_ref()
            .is_none_or(|d| entity_matches(world, d, flow.dst, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;

    /// blue (10.50.0.0/24): web; red (10.60.0.0/24): db, app=db; the cluster network
    /// (10.244.0.0/16): a pod.
    fn world() -> World {
        let e = |name: &str, ns: &str, app: &str, ip: &str| Endpoint {
            name: name.into(),
            namespace: ns.into(),
            labels: Labels::from([("app".into(), app.into())]),
            ip: ip.parse().unwrap(),
            ip6: None,
        };
        World {
            endpoints: vec![
                e("blue/web", "blue", "web", "10.50.0.2"),
                e("red/db", "red", "db", "10.60.0.2"),
                e("default/pod", "default", "pod", "10.244.1.2"),
            ],
            isolated: vec![
                ("blue".into(), "10.50.0.0/24".parse().unwrap()),
                ("red".into(), "10.60.0.0/24".parse().unwrap()),
            ],
            cluster: vec!["10.244.0.0/16".parse().unwrap()],
            ..Default::default()
        }
    }

    fn flow(src: &str, dst: &str, port: u16) -> Flow {
        Flow {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: Protocol::Tcp,
            port,
        }
    }

    const WEB_TO_DB: &str = "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: web-to-db}\nspec:\n  order: 20\n  selector: {matchLabels: {app: db}}\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: blue}}}\n    destination: {ports: [\"5432\"]}\n";

    #[test]
    fn networks_stay_isolated_unless_a_cluster_ingress_allow_decides() {
        let w = world();
        // No policy: both sides allow, the isolation does not.
        let e = explain(&w, &[], &flow("10.50.0.2", "10.60.0.2", 5432));
        assert!(e.egress.allowed && e.ingress.allowed && !e.allowed);
        let b = e.between.expect("crosses");
        assert_eq!(
            (b.from.as_str(), b.to.as_str(), b.allowed),
            ("blue", "red", false)
        );
        // To and from the cluster network too; within a network, and to the outside,
        // no isolation at all.
        assert!(!explain(&w, &[], &flow("10.244.1.2", "10.50.0.2", 80)).allowed);
        assert!(!explain(&w, &[], &flow("10.50.0.2", "10.244.1.2", 80)).allowed);
        let within = explain(&w, &[], &flow("10.50.0.2", "10.50.0.3", 80));
        assert!(within.allowed && within.between.is_none());
        assert!(explain(&w, &[], &flow("10.50.0.2", "8.8.8.8", 53))
            .between
            .is_none());

        let ps = parse_documents(WEB_TO_DB).unwrap();
        let e = explain(&w, &ps, &flow("10.50.0.2", "10.60.0.2", 5432));
        assert!(e.allowed, "{e:?}");
        assert_eq!(
            e.between.unwrap().decided_by,
            "opened by ClusterPolicy web-to-db ingress[0]: Allow"
        );
        // Only what the rule allows: another port, the other way, another network.
        assert!(!explain(&w, &ps, &flow("10.50.0.2", "10.60.0.2", 80)).allowed);
        assert!(!explain(&w, &ps, &flow("10.60.0.2", "10.50.0.2", 5432)).allowed);
        assert!(!explain(&w, &ps, &flow("10.244.1.2", "10.60.0.2", 5432)).allowed);
    }

    #[test]
    fn an_earlier_deny_or_pass_keeps_networks_apart() {
        let w = world();
        for earlier in ["Deny", "Pass"] {
            let text = format!(
                "{WEB_TO_DB}---\napiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {{name: first}}\nspec:\n  order: 1\n  ingress: [{{action: {earlier}}}]\n"
            );
            let ps = parse_documents(&text).unwrap();
            let e = explain(&w, &ps, &flow("10.50.0.2", "10.60.0.2", 5432));
            assert!(!e.allowed, "{earlier}: {e:?}");
            assert!(!e.between.unwrap().allowed, "{earlier}");
        }
        // A NetworkPolicy that allows it does not open the isolation.
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: red}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}\n";
        let ps = parse_documents(np).unwrap();
        let e = explain(&w, &ps, &flow("10.50.0.2", "10.60.0.2", 5432));
        assert!(e.ingress.allowed && !e.allowed, "{e:?}");
    }
}
