//! What the node's firewall must do, as a value: the kernel side renders it as one
//! nftables table and loads it atomically.

use ipnet::Ipv4Net;

/// What the rules must do.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallPlan {
    /// The whole cluster network.
    pub network: Ipv4Net,
    /// This node's subnet.
    pub local_subnet: Ipv4Net,
    /// Masquerade traffic leaving the cluster network (flannel's `--ip-masq`).
    pub ip_masq: bool,
    /// Accept encapsulated traffic only from member nodes.
    pub encap: Option<EncapFilter>,
    /// Named networks (Docker's): each reaches no other, nor the cluster network.
    pub isolated: Vec<IsolatedNet>,
    /// Block IPAM's pools: forwarded like the cluster network.
    pub pools: Vec<PoolRule>,
    /// Ports published to this node's containers (`docker run -p`), sorted.
    pub published: Vec<Published>,
    /// The IPv6 table's plan in a dual-stack network ([`crate::firewall6`]).
    pub ipv6: Option<crate::firewall6::Firewall6Plan>,
}

/// A published port: `host_ip:host_port` (any local address when none) forwarded to
/// `to:port`, a container of this node on `subnet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Published {
    pub proto: crate::nft::Proto,
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub host_port: u16,
    pub to: std::net::Ipv4Addr,
    pub port: u16,
    /// The container's network: a connection from it to its own published port
    /// (hairpin) is masqueraded, so the answer comes back the way it went.
    pub subnet: Ipv4Net,
}

/// A pool as the firewall sees it (Calico's IP pool with `natOutgoing`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolRule {
    pub cidr: Ipv4Net,
    /// Masquerade what leaves the pools and the cluster network for the outside.
    pub nat_outgoing: bool,
}

/// A named network's subnet as the firewall sees it. No connection may start from it
/// into another named network or the cluster network, nor from those into it (Docker's
/// isolation between networks); replies to connections it may make pass.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IsolatedNet {
    pub subnet: Ipv4Net,
    /// No way out at all (Docker's `--internal`): only its own subnet.
    pub internal: bool,
    /// Masquerade what leaves it for the outside (not `internal`).
    pub masquerade: bool,
}

/// Drops encapsulated packets (UDP to `port`) whose source is not a current node.
#[derive(Debug, Clone, PartialEq)]
pub struct EncapFilter {
    pub port: u16,
    /// Every node's public IP, sorted (the rendering must be deterministic).
    pub members: Vec<std::net::Ipv4Addr>,
}

use crate::nft::{AddrMatch, Chain, Hook, Match, PortRange, Proto, Rule, Table, Verdict};

/// The name of the forwarding and masquerade table (`ip weft`).
pub const TABLE: &str = "weft";

/// The packet mark bit the policy table (`weftpol`, earlier on the forward hook) sets on
/// a new connection that a cluster policy allows across named networks: the isolation
/// between networks lets exactly those pass. Weft's only mark bit; Kubernetes uses
/// 0x4000 and 0x8000, Calico the upper 16 bits it is configured with.
pub const BETWEEN_NETWORKS_MARK: u32 = 0x0100_0000;

/// Multicast: never masqueraded.
fn multicast() -> Ipv4Net {
    Ipv4Net::new(std::net::Ipv4Addr::new(224, 0, 0, 0), 4).expect("a valid prefix")
}

/// The table that does what `p` says, its comment `weft FINGERPRINT`.
pub fn table(p: &FirewallPlan) -> Table {
    let mut t = Table::new(TABLE);
    let mut forward = Chain::base("forward", Hook::Forward { offset: 0 });
    // Published ports first: reachable from anywhere, as Docker's are, whatever the
    // isolation between networks says about the sources.
    forward.rules = p
        .published
        .iter()
        .map(|x| {
            Rule::new(
                vec![
                    Match::daddr(AddrMatch::addrs([x.to])),
                    Match::dports(x.proto, [PortRange::one(x.port)]),
                    Match::Dnatted,
                ],
                Verdict::Accept,
            )
        })
        .collect();
    forward.rules.extend(isolation(p));
    for net in std::iter::once(p.network).chain(p.pools.iter().map(|r| r.cidr)) {
        forward.push(Rule::new(
            vec![Match::saddr(AddrMatch::net(net))],
            Verdict::Accept,
        ));
        forward.push(Rule::new(
            vec![Match::daddr(AddrMatch::net(net))],
            Verdict::Accept,
        ));
    }
    t.chains.push(forward);
    if let Some(f) = &p.encap {
        let mut input = Chain::base("input", Hook::Input);
        let mut m = vec![Match::dports(Proto::Udp, [PortRange::one(f.port)])];
        if !f.members.is_empty() {
            m.push(Match::not_addr(
                crate::nft::Side::Source,
                AddrMatch::addrs(f.members.iter().copied()),
            ));
        }
        input.push(
            Rule::new(m, Verdict::Drop)
                .counted()
                .comment("encapsulated traffic from a non-member"),
        );
        t.chains.push(input);
    }
    if !p.published.is_empty() {
        t.chains.extend(published(p));
    }
    let nat = masquerade(p);
    if !nat.is_empty() {
        let mut post = Chain::base("postrouting", Hook::Postrouting);
        post.rules = nat;
        t.chains.push(post);
    }
    t.comment = format!("weft {}", t.fingerprint());
    t
}

/// The forward rules that keep named networks apart: for each, connections into it
/// only from itself and out of it only to the outside (or nowhere, when internal).
/// Established traffic first, so replies to what a network may start pass; then what
/// a cluster policy allows between networks (see [`BETWEEN_NETWORKS_MARK`]).
fn isolation(p: &FirewallPlan) -> Vec<Rule> {
    if p.isolated.is_empty() {
        return Vec::new();
    }
    let all = AddrMatch::nets(
        p.isolated
            .iter()
            .map(|n| n.subnet)
            .chain([p.network])
            .chain(p.pools.iter().map(|r| r.cidr)),
    );
    let mut rules = vec![
        Rule::new(vec![Match::EstablishedOrRelated], Verdict::Accept),
        Rule::new(vec![Match::Mark(BETWEEN_NETWORKS_MARK)], Verdict::Accept)
            .counted()
            .comment("allowed between networks by a cluster policy"),
    ];
    for n in &p.isolated {
        let sub = AddrMatch::net(n.subnet);
        let s = n.subnet;
        rules.push(
            Rule::new(
                vec![
                    Match::daddr(sub.clone()),
                    Match::not_addr(crate::nft::Side::Source, sub.clone()),
                ],
                Verdict::Drop,
            )
            .counted()
            .comment(format!("into named network {s}")),
        );
        if n.internal {
            rules.push(
                Rule::new(
                    vec![
                        Match::saddr(sub.clone()),
                        Match::not_addr(crate::nft::Side::Destination, sub.clone()),
                    ],
                    Verdict::Drop,
                )
                .counted()
                .comment(format!("out of internal network {s}")),
            );
        } else {
            rules.push(
                Rule::new(
                    vec![
                        Match::saddr(sub.clone()),
                        Match::daddr(all.clone()),
                        Match::not_addr(crate::nft::Side::Destination, sub.clone()),
                    ],
                    Verdict::Drop,
                )
                .counted()
                .comment(format!("from named network {s}")),
            );
            rules.push(Rule::new(vec![Match::saddr(sub)], Verdict::Accept));
        }
    }
    rules
}

/// A masquerade of what leaves `from` for anything but `inside`.
fn masq(from: Ipv4Net, inside: impl IntoIterator<Item = Ipv4Net>) -> Rule {
    Rule::new(
        vec![
            Match::saddr(AddrMatch::net(from)),
            Match::not_addr(crate::nft::Side::Destination, AddrMatch::nets(inside)),
        ],
        Verdict::Masquerade,
    )
}

/// The chains of published ports: one regular chain of DNAT rules, entered from
/// prerouting (connections from elsewhere) and output (from the host itself).
fn published(p: &FirewallPlan) -> Vec<Chain> {
    let mut dnat = Chain::regular("published");
    for x in &p.published {
        let to_host = match x.host_ip {
            Some(ip) => Match::daddr(AddrMatch::addrs([ip])),
            None => Match::LocalDestination,
        };
        dnat.push(
            Rule::new(
                vec![
                    to_host,
                    Match::dports(x.proto, [PortRange::one(x.host_port)]),
                ],
                Verdict::Dnat {
                    addr: x.to,
                    port: x.port,
                },
            )
            .counted(),
        );
    }
    let entry = |name: &str, hook| {
        let mut c = Chain::base(name, hook);
        c.push(Rule::new(vec![], Verdict::Jump("published".into())));
        c
    };
    vec![
        dnat,
        entry("prerouting", Hook::Prerouting),
        entry("output", Hook::Output),
    ]
}

/// The postrouting rules: hairpin for published ports, named networks', flannel's for
/// the cluster network, Calico's `natOutgoing` for pools.
fn masquerade(p: &FirewallPlan) -> Vec<Rule> {
    let net = p.network;
    let mut rules: Vec<Rule> = p
        .published
        .iter()
        .map(|x| {
            Rule::new(
                vec![
                    Match::saddr(AddrMatch::net(x.subnet)),
                    Match::daddr(AddrMatch::addrs([x.to])),
                    Match::dports(x.proto, [PortRange::one(x.port)]),
                    Match::Dnatted,
                ],
                Verdict::Masquerade,
            )
        })
        .collect();
    // Inside: the cluster network, the pools and the named networks. Traffic between
    // them keeps its source address (what a cluster policy between networks matches
    // at the destination); only what leaves for the outside is masqueraded.
    let named: Vec<Ipv4Net> = p.isolated.iter().map(|n| n.subnet).collect();
    let inside: Vec<Ipv4Net> = named
        .iter()
        .copied()
        .chain(p.pools.iter().map(|r| r.cidr))
        .chain([net, multicast()])
        .collect();
    rules.extend(
        p.isolated
            .iter()
            .filter(|n| n.masquerade)
            .map(|n| masq(n.subnet, inside.iter().copied())),
    );
    if p.ip_masq {
        // flannel's four rules: pods talking to pods (or to named networks) keep their
        // addresses; pods going out are masqueraded (multicast excepted); traffic from
        // outside to this node's pods is left alone; traffic from outside to other
        // nodes' pods is masqueraded.
        let (from_pods, not_pods) = (
            Match::saddr(AddrMatch::net(net)),
            Match::not_addr(crate::nft::Side::Source, AddrMatch::net(net)),
        );
        rules.push(Rule::new(
            vec![
                from_pods.clone(),
                Match::daddr(AddrMatch::nets(std::iter::once(net).chain(named))),
            ],
            Verdict::Return,
        ));
        rules.push(masq(net, [multicast()]));
        rules.push(Rule::new(
            vec![
                not_pods.clone(),
                Match::daddr(AddrMatch::net(p.local_subnet)),
            ],
            Verdict::Return,
        ));
        rules.push(Rule::new(
            vec![not_pods, Match::daddr(AddrMatch::net(net))],
            Verdict::Masquerade,
        ));
    }
    // Calico's natOutgoing: from a pool to anything but the inside.
    for r in p.pools.iter().filter(|r| r.nat_outgoing) {
        rules.push(masq(r.cidr, inside.iter().copied()));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(p: &FirewallPlan) -> String {
        table(p).script()
    }

    fn plan(masq: bool) -> FirewallPlan {
        FirewallPlan {
            network: "10.244.0.0/16".parse().unwrap(),
            local_subnet: "10.244.3.0/24".parse().unwrap(),
            ip_masq: masq,
            encap: None,
            isolated: Vec::new(),
            pools: Vec::new(),
            published: Vec::new(),
            ipv6: None,
        }
    }

    /// Published ports: DNAT from prerouting and output (any local address, or the one
    /// given), accepted in forward before isolation, hairpin masqueraded.
    #[test]
    fn published_ports_are_forwarded_before_isolation() {
        let mut p = plan(false);
        p.isolated = vec![IsolatedNet {
            subnet: "10.50.0.0/24".parse().unwrap(),
            internal: false,
            masquerade: true,
        }];
        p.published = vec![
            Published {
                proto: crate::nft::Proto::Tcp,
                host_ip: None,
                host_port: 8080,
                to: "10.50.0.2".parse().unwrap(),
                port: 80,
                subnet: "10.50.0.0/24".parse().unwrap(),
            },
            Published {
                proto: crate::nft::Proto::Udp,
                host_ip: Some("192.168.77.1".parse().unwrap()),
                host_port: 5353,
                to: "10.50.0.2".parse().unwrap(),
                port: 53,
                subnet: "10.50.0.0/24".parse().unwrap(),
            },
        ];
        let s = render(&p);
        for line in [
            "fib daddr type local tcp dport 8080 counter dnat to 10.50.0.2:80",
            "ip daddr 192.168.77.1 udp dport 5353 counter dnat to 10.50.0.2:53",
            "type nat hook prerouting priority dstnat; policy accept;\n    jump published",
            "type nat hook output priority -100; policy accept;\n    jump published",
            "ip saddr 10.50.0.0/24 ip daddr 10.50.0.2 tcp dport 80 ct status dnat masquerade fully-random",
        ] {
            assert!(s.contains(line), "{line:?} in\n{s}");
        }
        let accept = s
            .find("ip daddr 10.50.0.2 tcp dport 80 ct status dnat accept")
            .unwrap();
        let isolation = s
            .find("ip daddr 10.50.0.0/24 ip saddr != 10.50.0.0/24")
            .unwrap();
        assert!(accept < isolation, "{s}");
    }

    #[test]
    fn encapsulated_traffic_only_from_members() {
        let mut p = plan(false);
        p.encap = Some(EncapFilter {
            port: 8472,
            members: vec![
                "192.168.1.1".parse().unwrap(),
                "192.168.1.2".parse().unwrap(),
            ],
        });
        let s = render(&p);
        assert!(
            s.contains("udp dport 8472 ip saddr != { 192.168.1.1, 192.168.1.2 } counter drop"),
            "{s}"
        );
        p.encap = Some(EncapFilter {
            port: 4789,
            members: vec![],
        });
        assert!(render(&p).contains("udp dport 4789 counter drop"));
    }

    #[test]
    fn named_networks_are_isolated_before_anything_is_accepted() {
        let mut p = plan(false);
        let net = |s: &str, internal| IsolatedNet {
            subnet: s.parse().unwrap(),
            internal,
            masquerade: !internal,
        };
        p.isolated = vec![net("10.50.0.0/24", false), net("10.52.0.0/24", true)];
        let s = render(&p);
        let lines: Vec<&str> = s.lines().map(str::trim).collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in\n{s}"))
        };
        let established = at("ct state established,related accept");
        // What the policy table marked as allowed between networks, before any drop.
        let marked = at("meta mark & 0x01000000 == 0x01000000 counter accept");
        let into = at("ip daddr 10.50.0.0/24 ip saddr != 10.50.0.0/24 counter drop");
        assert!(established < marked && marked < into, "{s}");
        let across = at("ip saddr 10.50.0.0/24 ip daddr { 10.50.0.0/24, 10.52.0.0/24, 10.244.0.0/16 } ip daddr != 10.50.0.0/24 counter drop");
        let out = at("ip saddr 10.50.0.0/24 accept");
        let internal = at("ip saddr 10.52.0.0/24 ip daddr != 10.52.0.0/24 counter drop");
        let cluster = at("ip saddr 10.244.0.0/16 accept");
        assert!(established < into && into < across && across < out, "{s}");
        assert!(
            internal < cluster && out < cluster,
            "isolation comes before the cluster's accepts:\n{s}"
        );
        // Out of the network masqueraded, never within it nor to the other networks and
        // the cluster network (a policy between networks sees the real source); nothing
        // out of an internal one.
        assert!(s.contains("ip saddr 10.50.0.0/24 ip daddr != { 10.50.0.0/24, 10.52.0.0/24, 10.244.0.0/16, 224.0.0.0/4 } masquerade fully-random"), "{s}");
        assert!(
            !s.contains("ip saddr 10.52.0.0/24 ip daddr != { 10.52.0.0/24"),
            "{s}"
        );
        assert!(
            !s.contains("ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade"),
            "no --ip-masq: no cluster NAT\n{s}"
        );
    }

    #[test]
    fn pools_are_forwarded_and_nat_outgoing_masquerades_only_leaving_traffic() {
        let mut p = plan(false);
        p.pools = vec![
            PoolRule {
                cidr: "10.248.0.0/16".parse().unwrap(),
                nat_outgoing: true,
            },
            PoolRule {
                cidr: "10.249.0.0/24".parse().unwrap(),
                nat_outgoing: false,
            },
        ];
        let s = render(&p);
        assert!(
            s.contains("ip saddr 10.248.0.0/16 accept\n    ip daddr 10.248.0.0/16 accept"),
            "{s}"
        );
        assert!(s.contains("ip daddr 10.249.0.0/24 accept"), "{s}");
        assert!(
            s.contains("ip saddr 10.248.0.0/16 ip daddr != { 10.244.0.0/16, 10.248.0.0/16, 10.249.0.0/24, 224.0.0.0/4 } masquerade fully-random"),
            "{s}"
        );
        assert!(
            !s.contains("ip saddr 10.249.0.0/24 ip daddr !="),
            "no natOutgoing: no NAT\n{s}"
        );
    }

    #[test]
    fn masquerade_never_between_pods() {
        let s = render(&plan(true));
        let lines: Vec<&str> = s.lines().map(str::trim).collect();
        let first_nat = lines.iter().position(|l| l.contains("masquerade")).unwrap();
        let pod_to_pod = lines
            .iter()
            .position(|l| *l == "ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return")
            .unwrap();
        assert!(
            pod_to_pod < first_nat,
            "pod-to-pod return comes before any masquerade:\n{s}"
        );
        assert!(s.contains("ip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return"));
    }

    #[test]
    fn no_nat_chain_without_ip_masq_and_fingerprint_tracks_content() {
        let off = render(&plan(false));
        assert!(!off.contains("postrouting"));
        assert!(
            off.contains("ip saddr 10.244.0.0/16 accept")
                && off.contains("ip daddr 10.244.0.0/16 accept")
        );
        assert_ne!(table(&plan(false)).comment, table(&plan(true)).comment);
        assert_eq!(
            render(&plan(true)),
            render(&plan(true)),
            "rendering is deterministic"
        );
    }
}
