//! bgp: Calico's model. Every node is a router: it announces its subnet over BGP and
//! installs what it learns as plain routes (protocol 77) via the announcing node; no
//! encapsulation. Its own subnet gets a blackhole route, so traffic for an address no
//! container holds stops at the node instead of following its default route.
//!
//! Options (`Backend` in the network config): `ASN` (64512), `RouteReflectors` (a list of
//! node public IPs; empty: full node-to-node mesh). With reflectors, the mesh is off:
//! reflectors peer with each other (non-clients) and with every other node (their
//! clients); other nodes peer only with the reflectors (RFC 4456).
//!
//! `CrossSubnet: "vxlan"` (Calico's VXLAN `CrossSubnet`): a route whose next hop is a
//! Weft node off this node's L2 segment goes through a VXLAN device laid out as the vxlan
//! backend's (`weft.<VNI>`, the peer's `.0` and VTEP MAC from its lease, a permanent
//! neighbour and FDB entry); next hops on the segment still get plain routes. Without
//! it such a route is reported unreachable: a router would drop it anyway.
//!
//! Which sessions to run is a pure function of the leases and the config
//! ([`Bgp::peers`]); the agent hands the result to the speaker after every change.

use std::net::Ipv4Addr;

use weft_bgp::rib::PeerKind;
use weft_model::backend_options::BackendOptions;
use weft_model::screen::overlap;
use weft_model::{BackendKind, Lease, NetworkConfig};
use weft_plan::link::OverlaySpec;
use weft_plan::{FdbEntry, Neighbour, Route};

use crate::no_route::NoRoute;
use crate::vxlan::{peer_vtep, Vxlan};
use crate::{Backend, BackendPlan, BackendSettings, NodeContext, Unreachable};

/// Calico's default AS for the cluster.
pub use weft_model::backend_options::DEFAULT_ASN;

pub struct Bgp {
    pub asn: u32,
    pub reflectors: Vec<Ipv4Addr>,
    /// How to reach next hops off this node's segment (`CrossSubnet: "vxlan"`).
    pub cross_subnet: Option<Vxlan>,
}

/// A session the node should have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WantedPeer {
    pub address: Ipv4Addr,
    pub asn: u32,
    pub kind: PeerKind,
}

impl Bgp {
    pub fn new(cfg: &NetworkConfig, settings: &BackendSettings) -> Self {
        let (asn, reflectors, cross_subnet) = match &cfg.options {
            BackendOptions::Bgp(b) => (b.asn, b.route_reflectors.clone(), b.cross_subnet.is_some()),
            _ => (DEFAULT_ASN, Vec::new(), false),
        };
        Bgp {
            asn,
            reflectors,
            cross_subnet: cross_subnet.then(|| Vxlan::new(cfg, settings)),
        }
    }

    /// Whether this node reflects routes for the others.
    pub fn is_reflector(&self, me: Ipv4Addr) -> bool {
        self.reflectors.contains(&me)
    }

    /// The cluster-internal sessions `me` should run, from every node's lease.
    pub fn peers(&self, me: Ipv4Addr, leases: &[Lease]) -> Vec<WantedPeer> {
        let mut out: Vec<WantedPeer> = leases
            .iter()
            .filter(|l| l.attrs.runs(BackendKind::Bgp))
            .map(|l| l.attrs.public_ip)
            .filter(|ip| *ip != me)
            .filter_map(|ip| {
                let kind = if self.reflectors.is_empty() {
                    PeerKind::Mesh
                } else if self.is_reflector(me) {
                    if self.is_reflector(ip) {
                        PeerKind::Mesh
                    } else {
                        PeerKind::RrClient
                    }
                } else if self.is_reflector(ip) {
                    PeerKind::RouteReflector
                } else {
                    return None;
                };
                Some(WantedPeer {
                    address: ip,
                    asn: self.asn,
                    kind,
                })
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Backend for Bgp {
    fn kind(&self) -> BackendKind {
        BackendKind::Bgp
    }

    /// Only with `CrossSubnet`: peers off the segment are reached through VXLAN.
    fn encapsulates(&self) -> bool {
        self.cross_subnet.is_some()
    }

    fn bgp(&self) -> Option<&Bgp> {
        Some(self)
    }

    fn backend_data(&self) -> serde_json::Value {
        match &self.cross_subnet {
            Some(vx) => vx.backend_data(),
            None => serde_json::Value::Null,
        }
    }

    fn mtu(&self, external_mtu: u32) -> u32 {
        match &self.cross_subnet {
            // Some paths are encapsulated: every container gets the smaller MTU.
            Some(vx) => vx.mtu(external_mtu),
            None => external_mtu,
        }
    }

    fn overlay(&self, node: &NodeContext) -> Option<OverlaySpec> {
        self.cross_subnet.as_ref()?.overlay(node)
    }

    fn encap_port(&self) -> Option<u16> {
        self.cross_subnet.as_ref()?.encap_port()
    }

    fn plan(&self, node: &NodeContext, peers: &[Lease]) -> BackendPlan {
        let mut plane = BackendPlan::default();
        plane.routes.push(Route::blackhole(node.lease.subnet));
        let ext = &node.external;
        for (prefix, next_hop) in &node.learned {
            if *prefix == node.lease.subnet {
                continue;
            }
            if overlap(prefix, &node.lease.subnet) {
                // A route learned for part of this node's own subnet (or a range that
                // covers it) would send some of its own containers' traffic elsewhere.
                plane.unreachable.push(Unreachable {
                    subnet: *prefix,
                    reason: format!(
                        "learned over BGP via {next_hop}, but it overlaps this node's subnet {}",
                        node.lease.subnet
                    ),
                });
                continue;
            }
            if ext.network.contains(next_hop) && *next_hop != ext.addr {
                plane.routes.push(Route::via(*prefix, *next_hop, ext.index));
                continue;
            }
            let off_segment = format!(
                "learned over BGP via {next_hop}, which is not on {} ({})",
                ext.name, ext.network
            );
            let reason = match (&self.cross_subnet, node.overlay) {
                (None, _) => off_segment,
                (Some(_), None) => format!("{off_segment}; the VXLAN device is not up yet"),
                (Some(vx), Some(dev)) => match encapsulated(vx, dev, peers, *prefix, *next_hop) {
                    Ok((route, neighbour, fdb)) => {
                        plane.routes.push(route);
                        plane.neighbours.push(neighbour);
                        plane.fdb.push(fdb);
                        continue;
                    }
                    Err(why) => format!("{off_segment}, and {why}"),
                },
            };
            plane.unreachable.push(Unreachable {
                subnet: *prefix,
                reason,
            });
        }
        plane.routes.sort();
        plane.neighbours.sort();
        plane.neighbours.dedup();
        plane.fdb.sort();
        plane.fdb.dedup();
        plane
    }
}

/// The route, neighbour and FDB entry that carry `prefix` to the Weft node `next_hop`
/// through the VXLAN device `dev`, as the vxlan backend lays them out.
fn encapsulated(
    vx: &Vxlan,
    dev: u32,
    peers: &[Lease],
    prefix: ipnet::Ipv4Net,
    next_hop: Ipv4Addr,
) -> Result<(Route, Neighbour, FdbEntry), NoRoute> {
    let peer = peers
        .iter()
        .find(|l| l.attrs.public_ip == next_hop)
        .ok_or(NoRoute::NotANode(next_hop))?;
    let mac = peer_vtep(peer, vx.vni())?;
    let gw = peer.subnet.network();
    Ok((
        Route::onlink(prefix, gw, dev),
        Neighbour { ip: gw, mac },
        FdbEntry { mac, dst: next_hop },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cfg, lease, node, settings};

    #[test]
    fn mesh_and_reflector_topologies() {
        let leases = [
            lease("10.244.1.0/24", "192.168.1.1", "bgp"),
            lease("10.244.2.0/24", "192.168.1.2", "bgp"),
            lease("10.244.3.0/24", "192.168.1.3", "bgp"),
            lease("10.244.4.0/24", "192.168.1.4", "vxlan"),
        ];
        let me: Ipv4Addr = "192.168.1.1".parse().unwrap();
        let mesh = Bgp::new(
            &cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#),
            &settings(),
        );
        let p = mesh.peers(me, &leases);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|w| w.kind == PeerKind::Mesh && w.asn == 64512));
        let rr = Bgp::new(
            &cfg(
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","ASN":65001,"RouteReflectors":["192.168.1.1"]}}"#,
            ),
            &settings(),
        );
        let at_rr = rr.peers(me, &leases);
        assert_eq!(
            at_rr
                .iter()
                .filter(|w| w.kind == PeerKind::RrClient)
                .count(),
            2
        );
        let at_client = rr.peers("192.168.1.2".parse().unwrap(), &leases);
        assert_eq!(
            at_client,
            [WantedPeer {
                address: me,
                asn: 65001,
                kind: PeerKind::RouteReflector
            }],
            "clients talk to the reflector only"
        );
    }

    #[test]
    fn blackhole_own_block_and_routes_via_next_hops() {
        let b = Bgp::new(
            &cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#),
            &settings(),
        );
        let mut n = node("bgp");
        n.learned = vec![
            (
                "10.244.2.0/24".parse().unwrap(),
                "192.168.1.2".parse().unwrap(),
            ),
            (
                "10.244.9.0/24".parse().unwrap(),
                "172.16.0.9".parse().unwrap(),
            ),
        ];
        // Learned for parts of this node's own subnet, or a range covering it: never.
        for hostile in ["10.244.1.5/32", "10.244.1.128/25", "10.244.0.0/16"] {
            n.learned
                .push((hostile.parse().unwrap(), "192.168.1.3".parse().unwrap()));
        }
        let plane = b.plan(&n, &[]);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "blackhole 10.244.1.0/24",
                "10.244.2.0/24 via 192.168.1.2 dev #7"
            ]
        );
        assert_eq!(plane.unreachable.len(), 4);
        assert!(plane.unreachable[1..].iter().all(|u| u
            .reason
            .contains("overlaps this node's subnet 10.244.1.0/24")));
        assert_eq!(b.mtu(1500), 1500, "no encapsulation, no overhead");
        assert!(b.overlay(&n).is_none());
    }

    #[test]
    fn cross_subnet_next_hops_go_through_vxlan() {
        let b = Bgp::new(
            &cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","CrossSubnet":"vxlan"}}"#),
            &settings(),
        );
        let mut n = node("bgp");
        let Some(OverlaySpec::Vxlan(spec)) = b.overlay(&n) else {
            panic!("a VXLAN device")
        };
        assert_eq!(
            (spec.name.as_str(), spec.vni, spec.mtu),
            ("weft.1", 1, 1450)
        );
        assert_eq!(b.mtu(1500), 1450);
        assert_eq!(b.backend_data()["VNI"], 1);
        let far_mac = crate::vxlan::vtep_mac("172.16.0.3".parse().unwrap(), 1);
        let mut far = lease("10.244.3.0/24", "172.16.0.3", "bgp");
        far.attrs.backend_data = serde_json::json!({"VNI": 1, "VtepMAC": far_mac.to_string()});
        let peers = [lease("10.244.2.0/24", "192.168.1.2", "bgp"), far];
        let learned = |p: &str, nh: &str| (p.parse().unwrap(), nh.parse().unwrap());
        n.learned = vec![
            learned("10.244.2.0/24", "192.168.1.2"),
            learned("10.244.3.0/24", "172.16.0.3"),
            learned("10.244.200.7/32", "172.16.0.3"),
            learned("10.250.0.0/24", "172.16.9.9"),
        ];
        let plane = b.plan(&n, &peers);
        assert_eq!(plane.unreachable.len(), 3, "the device is not up yet");
        n.overlay = Some(9);
        let plane = b.plan(&n, &peers);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "blackhole 10.244.1.0/24",
                "10.244.2.0/24 via 192.168.1.2 dev #7",
                "10.244.3.0/24 via 10.244.3.0 dev #9 onlink",
                "10.244.200.7/32 via 10.244.3.0 dev #9 onlink",
            ]
        );
        assert_eq!(
            plane.neighbours,
            [Neighbour {
                ip: "10.244.3.0".parse().unwrap(),
                mac: far_mac
            }]
        );
        assert_eq!(
            plane.fdb,
            [FdbEntry {
                mac: far_mac,
                dst: "172.16.0.3".parse().unwrap()
            }]
        );
        assert_eq!(plane.unreachable.len(), 1);
        assert!(
            plane.unreachable[0].reason.contains("no Weft node"),
            "{:?}",
            plane.unreachable
        );
    }
}
