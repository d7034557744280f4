//! The one place a host's plan is made: a pure function from everything a node knows
//! (its lease and the leases that stand, the addresses it holds, the named networks and
//! their endpoints, the blocks and pools, its local settings) to one [`HostPlan`]:
//! the overlay device, routes of every origin, neighbour and FDB entries, the named
//! networks' segments, the firewall, and what the BGP speaker announces.
//!
//! The agent applies this plan; `weftctl diagnose` compares the kernel with the same
//! plan, so the two can never disagree about what a node should have. The policy table
//! is planned by `weft_policy::render` from the policy state, beside this plan (its
//! incremental updates are the policy manager's).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use weft_bgp::policy::{Own, OwnKind};
use weft_model::blocks::{Block, Pool};
use weft_model::named::NamedNetwork;
use weft_model::{Lease, NetworkConfig};
use weft_plan::firewall::{PoolRule, Published};
use weft_plan::link::OverlaySpec;
use weft_plan::{EncapFilter, FdbEntry, FirewallPlan, Neighbour, Route, SegmentPlan};

use crate::networks::{NamedContext, PlannedEndpoint};
use crate::{Backend, NodeContext, Unreachable};

/// Node-local settings the plan depends on besides the store (the agent's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalSettings {
    /// Masquerade traffic leaving the cluster network (`--ip-masq`).
    pub ip_masq: bool,
    /// Accept encapsulated traffic only from member nodes.
    pub encap_source_filter: bool,
    /// Whether IPv6 traffic leaving the cluster network is masqueraded (`--ipv6-masq`).
    pub ipv6_masq: weft_plan::firewall6::Masquerade6,
}

/// Everything a node's plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct HostInputs<'a> {
    pub config: &'a NetworkConfig,
    /// This node: its external interface, lease, overlay device index, learned routes.
    pub node: &'a NodeContext,
    /// The leases that stand (see `weft_model::screen`), this node's included.
    pub leases: &'a [Lease],
    /// Single addresses this node holds outside its subnet.
    pub held: &'a [Ipv4Addr],
    pub networks: &'a [NamedNetwork],
    pub endpoints: &'a [PlannedEndpoint],
    pub blocks: &'a [Block],
    pub pools: &'a [Pool],
    pub local: LocalSettings,
    /// Some cluster policy can allow traffic between named networks
    /// (`weft_policy::render::opens_between`): see [`NamedContext::between`].
    pub between_networks: bool,
}

/// Why a route is in the plan: what an operator is told when it is missing or wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The backend's: a route to a node's subnet (planned or learned), or this node's
    /// own blackhole.
    Backend,
    /// Block IPAM: a block (blackholed where held, routed elsewhere).
    Block,
    /// Block IPAM: an address used on another node than its block's.
    Borrowed,
    /// A routed named network's container on another node.
    Container,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Backend => "a node's subnet",
            Origin::Block => "a block",
            Origin::Borrowed => "a borrowed address",
            Origin::Container => "a routed container",
        })
    }
}

/// Things the plan could not route, each kind logged and published apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unrouted {
    /// Peers' subnets.
    pub peers: Vec<Unreachable>,
    /// Blocks and borrowed addresses.
    pub blocks: Vec<(Ipv4Net, String)>,
    /// Routed containers of named networks.
    pub containers: Vec<(Ipv4Addr, String)>,
}

/// What the host should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPlan {
    /// The backend's overlay device, if it has one.
    pub device: Option<OverlaySpec>,
    /// Every route Weft owns here, one per destination, sorted.
    pub routes: Vec<Route>,
    /// Where each route comes from, by destination.
    pub origins: BTreeMap<IpNet, Origin>,
    /// Permanent neighbour and FDB entries on the overlay device.
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<FdbEntry>,
    /// Neighbour and FDB entries on the IPv6 underlay's device (dual-stack vxlan; the
    /// agent makes the device itself from [`crate::Backend::overlay6`]).
    pub neighbours6: Vec<Neighbour>,
    pub fdb6: Vec<FdbEntry>,
    /// Named overlay networks with an endpoint here: devices and entries.
    pub segments: Vec<SegmentPlan>,
    pub firewall: FirewallPlan,
    /// The subnets iptables' FORWARD chain must accept where its policy is DROP (named
    /// networks and pools; the cluster network is checked at start).
    pub forward: Vec<Ipv4Net>,
    /// The user-space tunnel's forwarding table, for the backends that run one.
    pub tunnel: Option<weft_tunnel::Table>,
    pub unrouted: Unrouted,
}

impl HostPlan {
    /// Why `dst` is in the plan, if it is.
    pub fn origin(&self, dst: &IpNet) -> Option<Origin> {
        self.origins.get(dst).copied()
    }
}

/// What this node announces with the bgp backend (its subnet, the addresses it holds
/// outside any standing lease, its routed containers, its blocks and borrowed
/// addresses); empty for the other backends. Pure, and apart from [`plan`] because the
/// speaker must know it before the routes it learns can be planned.
/// Each prefix comes with what it is, which peers' export policies choose by.
pub fn announcements(backend: &dyn Backend, inputs: &HostInputs) -> Vec<Own> {
    if backend.bgp().is_none() {
        return Vec::new();
    }
    let ctx = context(backend, inputs, &[]);
    let mut out = vec![Own::new(inputs.node.lease.subnet, OwnKind::Subnet)];
    let tagged = |kind| move |p: Ipv4Net| Own::new(p, kind);
    out.extend(
        announceable(inputs.held, inputs.leases)
            .into_iter()
            .map(tagged(OwnKind::Borrowed)),
    );
    out.extend(
        crate::networks::plan(&ctx, inputs.networks, inputs.endpoints)
            .announce
            .into_iter()
            .map(tagged(OwnKind::Named)),
    );
    let blocks: BTreeSet<Ipv4Net> = inputs.blocks.iter().map(|b| b.cidr).collect();
    out.extend(
        crate::blocks::plan(&ctx, inputs.blocks)
            .announce
            .into_iter()
            .map(|p| match blocks.contains(&p) {
                true => Own::new(p, OwnKind::Block),
                false => Own::new(p, OwnKind::Borrowed),
            }),
    );
    out
}

/// The plan (pure): see the module's documentation. Routes of every origin are merged
/// so that each destination has one route: the backend's first, then blocks, then
/// routed containers (a borrowed address on a pool-backed Docker network is both a
/// borrowed block address and a routed container, routed alike).
pub fn plan(backend: &dyn Backend, inputs: &HostInputs) -> HostPlan {
    let node = inputs.node;
    let mut base = backend.plan(node, inputs.leases);
    let backend_routes = std::mem::take(&mut base.routes);
    let ctx = context(backend, inputs, &backend_routes);
    let named = crate::networks::plan(&ctx, inputs.networks, inputs.endpoints);
    let blocks = crate::blocks::plan(&ctx, inputs.blocks);

    let mut origins = BTreeMap::new();
    let mut routes = Vec::new();
    let block_cidrs: BTreeSet<Ipv4Net> = inputs.blocks.iter().map(|b| b.cidr).collect();
    let block_origin = |r: &Route| match matches!(r.dst, IpNet::V4(d) if block_cidrs.contains(&d)) {
        true => Origin::Block,
        false => Origin::Borrowed,
    };
    let tagged = backend_routes
        .iter()
        .map(|r| (*r, Origin::Backend))
        .chain(blocks.routes.iter().map(|r| (*r, block_origin(r))))
        .chain(named.routes.iter().map(|r| (*r, Origin::Container)));
    for (route, origin) in tagged {
        if let std::collections::btree_map::Entry::Vacant(slot) = origins.entry(route.dst) {
            slot.insert(origin);
            routes.push(route);
        }
    }
    routes.sort();

    let mut forward: Vec<Ipv4Net> = named.isolated.iter().map(|i| i.subnet).collect();
    forward.extend(inputs.pools.iter().map(|p| p.cidr));
    forward.sort();
    forward.dedup();
    HostPlan {
        device: backend.overlay(node),
        routes,
        origins,
        neighbours: base.neighbours,
        fdb: base.fdb,
        neighbours6: base.neighbours6,
        fdb6: base.fdb6,
        segments: named.segments,
        firewall: firewall(backend, inputs, named.isolated),
        forward,
        tunnel: base.tunnel,
        unrouted: Unrouted {
            peers: base.unreachable,
            blocks: blocks.unreachable,
            containers: named.unreachable,
        },
    }
}

/// Where this node stands for the named networks' and blocks' plans.
fn context<'a>(
    backend: &dyn Backend,
    inputs: &HostInputs<'a>,
    backend_routes: &'a [Route],
) -> NamedContext<'a> {
    let ext = &inputs.node.external;
    NamedContext {
        public_ip: inputs.node.lease.attrs.public_ip,
        underlay: ext.index,
        underlay_mtu: ext.mtu,
        peers: inputs.leases,
        backend_routes,
        announces: backend.bgp().is_some(),
        between: inputs.between_networks,
    }
}

/// The single addresses this node may announce as /32s: none inside a subnet that
/// stands (a claim written by hand into another node's subnet would take one of its
/// addresses away from it).
pub fn announceable(held: &[Ipv4Addr], standing: &[Lease]) -> Vec<Ipv4Net> {
    held.iter()
        .filter(|ip| !standing.iter().any(|l| l.subnet.contains(*ip)))
        .map(|ip| Ipv4Net::from(*ip))
        .collect()
}

/// What the firewall must do: forwarding and masquerade for the cluster network and the
/// pools, isolation of the named networks, and which nodes may send encapsulated
/// traffic (only those whose lease stands, and this one).
fn firewall(
    backend: &dyn Backend,
    inputs: &HostInputs,
    isolated: Vec<weft_plan::firewall::IsolatedNet>,
) -> FirewallPlan {
    let me = inputs.node.lease.attrs.public_ip;
    let encap = backend
        .encap_port()
        .filter(|_| inputs.local.encap_source_filter)
        .map(|port| {
            let mut members: Vec<_> = inputs.leases.iter().map(|l| l.attrs.public_ip).collect();
            members.push(me);
            members.sort();
            members.dedup();
            EncapFilter { port, members }
        });
    let mut pools: Vec<PoolRule> = inputs
        .pools
        .iter()
        .map(|p| PoolRule {
            cidr: p.cidr,
            nat_outgoing: p.nat_outgoing,
        })
        .collect();
    pools.sort();
    FirewallPlan {
        network: inputs.config.network,
        local_subnet: inputs.node.lease.subnet,
        ip_masq: inputs.local.ip_masq,
        encap,
        isolated,
        pools,
        published: published(inputs),
        ipv6: inputs
            .config
            .ipv6
            .as_ref()
            .map(|v6| weft_plan::firewall6::Firewall6Plan {
                network: v6.network,
                masquerade: inputs
                    .local
                    .ipv6_masq
                    .applies(&v6.network, inputs.local.ip_masq),
                encap: encap6(backend, inputs),
            }),
    }
}

/// The member filter on the IPv6 underlay, where the backend encapsulates over it (an
/// IPv6 overlay device of its own): the nodes' public IPv6 addresses, this one's too.
fn encap6(
    backend: &dyn Backend,
    inputs: &HostInputs,
) -> Option<weft_plan::firewall6::EncapFilter6> {
    let port = backend
        .encap_port()
        .filter(|_| inputs.local.encap_source_filter)?;
    backend.overlay6(inputs.node)?;
    let mut members: Vec<_> = inputs
        .leases
        .iter()
        .chain(std::iter::once(&inputs.node.lease))
        .filter_map(|l| l.attrs.public_ipv6)
        .collect();
    members.sort();
    members.dedup();
    Some(weft_plan::firewall6::EncapFilter6 { port, members })
}

/// The ports published to this node's containers, from their endpoints' records.
fn published(inputs: &HostInputs) -> Vec<Published> {
    let me = inputs.node.lease.attrs.public_ip;
    let mut out: Vec<Published> = inputs
        .endpoints
        .iter()
        .filter(|e| e.endpoint.node == me)
        .filter_map(|e| {
            let net = inputs.networks.iter().find(|n| n.name == e.network)?;
            Some(e.endpoint.ports.iter().map(move |p| Published {
                proto: weft_plan::nft::Proto::from_number(p.proto.number()),
                host_ip: p.host_ip,
                host_port: p.host_port,
                to: e.ip,
                port: p.port,
                subnet: net.subnet,
            }))
        })
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{block, cfg, lease, node, settings};
    use weft_model::named::{Endpoint, Mode};

    /// A borrowed address on a pool-backed routed network is both a borrowed block
    /// address and a routed container: one route, from the block's plan.
    #[test]
    fn one_route_per_destination_across_origins() {
        let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
        let backend = crate::build(&c, &settings());
        let me = node("host-gw");
        let leases = [
            me.lease.clone(),
            lease("10.244.2.0/24", "192.168.1.2", "host-gw"),
        ];
        let green = NamedNetwork {
            name: "green".into(),
            subnet: "10.248.0.0/24".parse().unwrap(),
            gateway: "10.248.0.1".parse().unwrap(),
            mode: Mode::Routed,
            vni: 0,
            internal: false,
        };
        let eps = [PlannedEndpoint {
            network: "green".into(),
            ip: "10.248.0.5".parse().unwrap(),
            endpoint: Endpoint {
                node: "192.168.1.2".parse().unwrap(),
                endpoint_id: "e".into(),
                mac: None,
                host_iface: "wv1".into(),
                ports: Vec::new(),
                container: String::new(),
                names: Vec::new(),
            },
        }];
        let blocks = [
            block(
                "10.248.0.0/26",
                "192.168.1.1",
                &[("10.248.0.5", "192.168.1.2")],
            ),
            block("10.248.0.64/26", "192.168.1.2", &[]),
        ];
        let pools = [Pool {
            name: "p".into(),
            cidr: "10.248.0.0/24".parse().unwrap(),
            block_size: 26,
            nat_outgoing: true,
            disabled: false,
        }];
        let inputs = HostInputs {
            config: &c,
            node: &me,
            leases: &leases,
            held: &[],
            networks: std::slice::from_ref(&green),
            endpoints: &eps,
            blocks: &blocks,
            pools: &pools,
            local: LocalSettings::default(),
            between_networks: false,
        };
        let p = plan(backend.as_ref(), &inputs);
        let dsts: Vec<String> = p.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(
            dsts,
            [
                "10.244.2.0/24",
                "10.248.0.0/26",
                "10.248.0.5/32",
                "10.248.0.64/26"
            ]
        );
        let origin = |d: &str| p.origin(&d.parse().unwrap());
        assert_eq!(origin("10.244.2.0/24"), Some(Origin::Backend));
        assert_eq!(origin("10.248.0.0/26"), Some(Origin::Block));
        assert_eq!(origin("10.248.0.5/32"), Some(Origin::Borrowed));
        assert_eq!(
            p.forward.len(),
            1,
            "the pool and the network are one subnet"
        );
        assert_eq!(p.firewall.pools.len(), 1);
        assert_eq!(p.firewall.isolated.len(), 1);
    }

    #[test]
    fn held_addresses_inside_a_standing_lease_are_not_announced() {
        let leases = [lease("10.244.2.0/24", "192.168.1.2", "bgp")];
        let held = ["10.244.2.9".parse().unwrap(), "10.99.0.1".parse().unwrap()];
        assert_eq!(
            announceable(&held, &leases),
            ["10.99.0.1/32".parse::<Ipv4Net>().unwrap()]
        );
    }
}
