//! Named networks on this host, planned beside the backend: what the store's networks
//! and endpoints ask of this node (pure).
//!
//! - **overlay**: a segment (bridge + VXLAN device, see [`weft_plan::segment`]) only where
//!   this node has an endpoint on the network; a static neighbour and FDB entry for every
//!   remote endpoint, so nothing is learned or flooded.
//! - **routed**: a /32 to each remote container the way the backend reaches the
//!   container's node (the route to its node's subnet, narrowed), or, with the bgp
//!   backend, the local containers' /32s announced to every peer instead. The /32 to a
//!   local container's veth belongs to its attachment (made with the veth, gone with it),
//!   as the CNI plugin's routed mode does it.
//! - every named network is isolated in the firewall (see [`IsolatedNet`]).

use std::net::Ipv4Addr;

use crate::no_route::NoRoute;
use ipnet::{IpNet, Ipv4Net};
use weft_model::named::{Endpoint, Mode, NamedNetwork};
use weft_model::Lease;
use weft_plan::firewall::IsolatedNet;
use weft_plan::{FdbEntry, MacAddr, Neighbour, Route, SegmentPlan, SegmentSpec};

/// VXLAN's outer headers (IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14).
pub const SEGMENT_OVERHEAD: u32 = 50;

/// One endpoint as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEndpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    pub endpoint: Endpoint,
}

/// What this node needs for its named networks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedPlan {
    pub segments: Vec<SegmentPlan>,
    pub routes: Vec<Route>,
    /// Local routed containers' /32s, for the BGP speaker to announce.
    pub announce: Vec<Ipv4Net>,
    pub isolated: Vec<IsolatedNet>,
    /// Remote routed containers that get no route, and why.
    pub unreachable: Vec<(Ipv4Addr, String)>,
}

/// Where this node stands, for planning its named networks.
#[derive(Debug, Clone)]
pub struct NamedContext<'a> {
    pub public_ip: Ipv4Addr,
    pub underlay: u32,
    pub underlay_mtu: u32,
    /// The leases that stand and the backend's routes to them.
    pub peers: &'a [Lease],
    pub backend_routes: &'a [Route],
    /// The bgp backend announces local /32s rather than every node routing them.
    pub announces: bool,
    /// Some cluster policy can allow traffic between named networks: a container of
    /// another network here may then talk to an overlay network's containers (or
    /// answer them), so the overlay networks this node carries no segment of have
    /// their containers routed by /32 the way the backend reaches their nodes, as
    /// routed containers are. Otherwise such a node carries nothing of them.
    pub between: bool,
}

/// The plan (pure): see the module's documentation.
pub fn plan(ctx: &NamedContext, nets: &[NamedNetwork], endpoints: &[PlannedEndpoint]) -> NamedPlan {
    let mut out = NamedPlan {
        isolated: isolation(nets),
        ..Default::default()
    };
    for net in nets {
        let on: Vec<&PlannedEndpoint> =
            endpoints.iter().filter(|e| e.network == net.name).collect();
        match net.mode {
            Mode::Overlay => match segment(ctx, net, &on) {
                Some(seg) => out.segments.push(seg),
                None if ctx.between => remote(ctx, &on, &mut out),
                None => {}
            },
            Mode::Routed => routed(ctx, &on, &mut out),
        }
    }
    out.routes.sort();
    out.announce.sort();
    out
}

/// Every named network, as the firewall isolates it.
pub fn isolation(nets: &[NamedNetwork]) -> Vec<IsolatedNet> {
    let mut out: Vec<_> = nets
        .iter()
        .map(|net| IsolatedNet {
            subnet: net.subnet,
            internal: net.internal,
            masquerade: !net.internal,
        })
        .collect();
    out.sort();
    out
}

fn segment(ctx: &NamedContext, net: &NamedNetwork, on: &[&PlannedEndpoint]) -> Option<SegmentPlan> {
    if !on.iter().any(|e| e.endpoint.node == ctx.public_ip) {
        return None;
    }
    let mut neighbours = Vec::new();
    let mut fdb = Vec::new();
    for e in on.iter().filter(|e| e.endpoint.node != ctx.public_ip) {
        let Some(mac) = e
            .endpoint
            .mac
            .as_deref()
            .and_then(|m| m.parse::<MacAddr>().ok())
        else {
            continue; // address held, container not attached yet
        };
        neighbours.push(Neighbour {
            ip: e.ip.into(),
            mac,
        });
        fdb.push(FdbEntry {
            mac,
            dst: e.endpoint.node.into(),
        });
    }
    neighbours.sort();
    fdb.sort();
    let gateway = (!net.internal)
        .then(|| Ipv4Net::new(net.gateway, net.subnet.prefix_len()).expect("prefix of a subnet"));
    Some(SegmentPlan {
        spec: SegmentSpec {
            network: net.name.clone(),
            vni: net.vni,
            local: ctx.public_ip,
            underlay: ctx.underlay,
            mtu: ctx.underlay_mtu - SEGMENT_OVERHEAD,
            gateway,
        },
        neighbours,
        fdb,
    })
}

fn routed(ctx: &NamedContext, on: &[&PlannedEndpoint], out: &mut NamedPlan) {
    for e in on {
        if e.endpoint.node == ctx.public_ip {
            if ctx.announces && !e.endpoint.host_iface.is_empty() {
                out.announce.push(Ipv4Net::from(e.ip));
            }
            continue;
        }
        if ctx.announces {
            continue; // learned from the holder's announcement
        }
        route_to(ctx, e, out);
    }
}

/// An overlay network without a segment here (see [`NamedContext::between`]): a /32
/// to each of its containers, toward its node (with the bgp backend too: overlay
/// containers are not announced, the route to their node's subnet is known).
fn remote(ctx: &NamedContext, on: &[&PlannedEndpoint], out: &mut NamedPlan) {
    for e in on.iter().filter(|e| !e.endpoint.host_iface.is_empty()) {
        route_to(ctx, e, out);
    }
}

fn route_to(ctx: &NamedContext, e: &PlannedEndpoint, out: &mut NamedPlan) {
    match toward(ctx, e.endpoint.node) {
        Ok(kind) => out.routes.push(Route {
            dst: Ipv4Net::from(e.ip).into(),
            kind,
        }),
        Err(why) => out.unreachable.push((e.ip, why.to_string())),
    }
}

/// How the backend reaches `node`: its route to the node's subnet (shared with block
/// IPAM's plan).
pub(crate) fn toward(ctx: &NamedContext, node: Ipv4Addr) -> Result<weft_plan::RouteKind, NoRoute> {
    let lease = ctx
        .peers
        .iter()
        .find(|l| l.attrs.public_ip == node)
        .ok_or(NoRoute::NoLease(node))?;
    ctx.backend_routes
        .iter()
        .find(|r| r.dst == IpNet::V4(lease.subnet) && !r.is_blackhole())
        .map(|r| r.kind)
        .ok_or(NoRoute::NoBackendRoute {
            node,
            subnet: lease.subnet,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::lease;

    fn net(name: &str, subnet: &str, mode: Mode, vni: u32) -> NamedNetwork {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        NamedNetwork {
            name: name.into(),
            gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
            subnet,
            mode,
            vni,
            internal: false,
        }
    }

    fn ep(network: &str, ip: &str, node: &str, mac: Option<&str>, iface: &str) -> PlannedEndpoint {
        PlannedEndpoint {
            network: network.into(),
            ip: ip.parse().unwrap(),
            endpoint: Endpoint {
                node: node.parse().unwrap(),
                endpoint_id: "e".into(),
                mac: mac.map(String::from),
                host_iface: iface.into(),
                ports: Vec::new(),
                container: String::new(),
                names: Vec::new(),
            },
        }
    }

    fn ctx<'a>(peers: &'a [Lease], routes: &'a [Route], announces: bool) -> NamedContext<'a> {
        NamedContext {
            public_ip: "192.168.1.1".parse().unwrap(),
            underlay: 7,
            underlay_mtu: 1500,
            peers,
            backend_routes: routes,
            announces,
            between: false,
        }
    }

    #[test]
    fn overlay_segments_only_where_there_are_local_endpoints() {
        let blue = net("blue", "10.50.0.0/24", Mode::Overlay, 4096);
        let red = net("red", "10.51.0.0/24", Mode::Overlay, 4097);
        let eps = [
            ep(
                "blue",
                "10.50.0.2",
                "192.168.1.1",
                Some("02:00:00:00:00:02"),
                "wv1",
            ),
            ep(
                "blue",
                "10.50.0.3",
                "192.168.1.2",
                Some("02:00:00:00:00:03"),
                "wv2",
            ),
            ep("blue", "10.50.0.4", "192.168.1.3", None, ""),
            ep(
                "red",
                "10.51.0.2",
                "192.168.1.2",
                Some("02:00:00:00:00:09"),
                "wv3",
            ),
        ];
        let p = plan(&ctx(&[], &[], false), &[blue, red], &eps);
        assert_eq!(
            p.segments.len(),
            1,
            "no local endpoint on red: none of its state here"
        );
        let s = &p.segments[0];
        assert_eq!(
            (s.spec.bridge().as_str(), s.spec.vxlan().as_str()),
            ("weftbr-4096", "weftvx-4096")
        );
        assert_eq!(s.spec.mtu, 1450);
        assert_eq!(s.spec.gateway, Some("10.50.0.1/24".parse().unwrap()));
        // Only the remote, attached endpoint: the local one is learned by the bridge.
        assert_eq!(
            s.neighbours,
            [Neighbour {
                ip: "10.50.0.3".parse().unwrap(),
                mac: "02:00:00:00:00:03".parse().unwrap()
            }]
        );
        assert_eq!(s.fdb[0].dst, "192.168.1.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            p.isolated.len(),
            2,
            "every network is isolated, here or not"
        );
        assert!(p.routes.is_empty());
    }

    #[test]
    fn routed_endpoints_follow_the_backend_or_are_announced() {
        let green = net("green", "10.60.0.0/24", Mode::Routed, 0);
        let eps = [
            ep("green", "10.60.0.2", "192.168.1.1", None, "wv1"),
            ep("green", "10.60.0.3", "192.168.1.2", None, "wv2"),
            ep("green", "10.60.0.4", "192.168.9.9", None, "wv3"),
        ];
        let peers = [lease("10.244.2.0/24", "192.168.1.2", "host-gw")];
        let routes = [Route::via(
            "10.244.2.0/24".parse::<Ipv4Net>().unwrap(),
            "192.168.1.2".parse::<std::net::Ipv4Addr>().unwrap(),
            7,
        )];
        let p = plan(
            &ctx(&peers, &routes, false),
            std::slice::from_ref(&green),
            &eps,
        );
        assert_eq!(
            p.routes,
            [Route::via(
                "10.60.0.3/32".parse::<ipnet::Ipv4Net>().unwrap(),
                "192.168.1.2".parse::<std::net::Ipv4Addr>().unwrap(),
                7
            )],
            "the local container's /32 is its attachment's, not the plan's"
        );
        assert_eq!(
            p.unreachable.len(),
            1,
            "a node without a lease gets no route"
        );
        assert!(p.announce.is_empty());

        let p = plan(&ctx(&peers, &routes, true), &[green], &eps);
        assert!(p.routes.is_empty(), "bgp: remote /32s are learned");
        assert_eq!(p.announce, ["10.60.0.2/32".parse::<Ipv4Net>().unwrap()]);
    }

    /// Once a cluster policy can open networks to each other, an overlay network this
    /// node has no segment of is routed by /32 toward its containers' nodes (so a
    /// container here can reach them, or answer them); one it has a segment of is not
    /// (the segment reaches them); a held address is not.
    #[test]
    fn overlay_containers_are_routed_where_policy_opens_networks() {
        let blue = net("blue", "10.50.0.0/24", Mode::Overlay, 4096);
        let red = net("red", "10.51.0.0/24", Mode::Overlay, 4097);
        let mac = Some("02:00:00:00:00:02");
        let eps = [
            ep("blue", "10.50.0.2", "192.168.1.1", mac, "wv1"),
            ep("blue", "10.50.0.3", "192.168.1.2", mac, "wv2"),
            ep("red", "10.51.0.2", "192.168.1.2", mac, "wv3"),
            ep("red", "10.51.0.3", "192.168.1.2", None, ""),
        ];
        let peers = [lease("10.244.2.0/24", "192.168.1.2", "host-gw")];
        let routes = [Route::via(
            "10.244.2.0/24".parse::<Ipv4Net>().unwrap(),
            "192.168.1.2".parse::<std::net::Ipv4Addr>().unwrap(),
            7,
        )];
        let nets = [blue, red];
        let closed = plan(&ctx(&peers, &routes, false), &nets, &eps);
        assert!(closed.routes.is_empty(), "{:?}", closed.routes);
        let mut open_ctx = ctx(&peers, &routes, false);
        open_ctx.between = true;
        let open = plan(&open_ctx, &nets, &eps);
        assert_eq!(
            open.routes,
            [Route::via(
                "10.51.0.2/32".parse::<ipnet::Ipv4Net>().unwrap(),
                "192.168.1.2".parse::<std::net::Ipv4Addr>().unwrap(),
                7
            )]
        );
        assert_eq!(open.segments.len(), 1, "still no segment of red");
        // With the bgp backend too: overlay containers are not announced.
        open_ctx.announces = true;
        assert_eq!(plan(&open_ctx, &nets, &eps).routes, open.routes);
    }
}
