//! bgp: Calico's model. Every node is a router: it announces its subnet over BGP and
//! installs what it learns as plain routes (protocol 77) via the announcing node; no
//! encapsulation. Its own subnet gets a blackhole route, so traffic for an address no
//! container holds stops at the node instead of following its default route.
//!
//! Options (`Backend` in the network config): `ASN` (64512), `RouteReflectors` (a list of
//! node public IPs) and `RouteReflectorSelector` (nodes by label, Calico's model);
//! neither: full node-to-node mesh. With reflectors, the mesh is off:
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
use weft_model::selector::{NodeLabels, Selector};
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
    /// Nodes whose lease labels match reflect too.
    pub reflector_selector: Option<Selector>,
    /// The reflectors' shared cluster id (none: each one's router id).
    pub cluster_id: Option<Ipv4Addr>,
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
        match &cfg.options {
            BackendOptions::Bgp(b) => Bgp {
                asn: b.asn,
                reflectors: b.route_reflectors.clone(),
                reflector_selector: b.route_reflector_selector.clone(),
                cluster_id: b.route_reflector_cluster_id,
                cross_subnet: b.cross_subnet.is_some().then(|| Vxlan::new(cfg, settings)),
            },
            _ => Bgp {
                asn: DEFAULT_ASN,
                reflectors: Vec::new(),
                reflector_selector: None,
                cluster_id: None,
                cross_subnet: None,
            },
        }
    }

    /// Whether the node with this address and these labels reflects routes for the
    /// others: listed in `RouteReflectors`, or its labels match `RouteReflectorSelector`.
    pub fn is_reflector(&self, node: Ipv4Addr, labels: &NodeLabels) -> bool {
        self.reflectors.contains(&node)
            || self
                .reflector_selector
                .as_ref()
                .is_some_and(|s| s.matches(labels))
    }

    /// Whether reflectors are configured at all (then the mesh is off, even while no
    /// node matches the selector yet: a cluster told to use reflectors never falls
    /// back to a mesh that may not scale).
    fn reflection(&self) -> bool {
        !self.reflectors.is_empty() || self.reflector_selector.is_some()
    }

    /// The cluster-internal sessions `me` (with labels `mine`) should run, from every
    /// node's lease (which carries its labels).
    pub fn peers(&self, me: Ipv4Addr, mine: &NodeLabels, leases: &[Lease]) -> Vec<WantedPeer> {
        let me_reflects = self.is_reflector(me, mine);
        let mut out: Vec<WantedPeer> = leases
            .iter()
            .filter(|l| l.attrs.runs(BackendKind::Bgp))
            .filter(|l| l.attrs.public_ip != me)
            .filter_map(|l| {
                let ip = l.attrs.public_ip;
                let it_reflects = self.is_reflector(ip, &l.attrs.labels);
                let kind = if !self.reflection() {
                    PeerKind::Mesh
                } else if me_reflects {
                    if it_reflects {
                        PeerKind::Mesh
                    } else {
                        PeerKind::RrClient
                    }
                } else if it_reflects {
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
                    subnet: (*prefix).into(),
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
                subnet: (*prefix).into(),
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
        Neighbour { ip: gw.into(), mac },
        FdbEntry {
            mac,
            dst: next_hop.into(),
        },
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
        let none = NodeLabels::new();
        let p = mesh.peers(me, &none, &leases);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|w| w.kind == PeerKind::Mesh && w.asn == 64512));
        let rr = Bgp::new(
            &cfg(
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","ASN":65001,"RouteReflectors":["192.168.1.1"]}}"#,
            ),
            &settings(),
        );
        let at_rr = rr.peers(me, &none, &leases);
        assert_eq!(
            at_rr
                .iter()
                .filter(|w| w.kind == PeerKind::RrClient)
                .count(),
            2
        );
        let at_client = rr.peers("192.168.1.2".parse().unwrap(), &none, &leases);
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

    /// Calico's reflectors by label: the node whose lease carries the label reflects,
    /// the others are its clients and peer with nothing else; with the selector set and
    /// no node matching yet, there is no mesh to fall back to.
    #[test]
    fn reflectors_chosen_by_label() {
        let labelled = |subnet, ip, labels: &str| {
            let mut l = lease(subnet, ip, "bgp");
            l.attrs.labels = weft_model::selector::parse_labels(labels).unwrap();
            l
        };
        let leases = [
            labelled("10.244.1.0/24", "192.168.1.1", "route-reflector=true"),
            labelled("10.244.2.0/24", "192.168.1.2", "rack=r1"),
            labelled("10.244.3.0/24", "192.168.1.3", ""),
        ];
        let rr = Bgp::new(
            &cfg(
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","RouteReflectorSelector":"route-reflector == 'true'","RouteReflectorClusterID":"244.0.0.1"}}"#,
            ),
            &settings(),
        );
        assert_eq!(rr.cluster_id, Some("244.0.0.1".parse().unwrap()));
        let mine = leases[0].attrs.labels.clone();
        let at_rr = rr.peers("192.168.1.1".parse().unwrap(), &mine, &leases);
        assert!(at_rr.iter().all(|w| w.kind == PeerKind::RrClient) && at_rr.len() == 2);
        let at_client = rr.peers(
            "192.168.1.2".parse().unwrap(),
            &leases[1].attrs.labels,
            &leases,
        );
        assert_eq!(at_client.len(), 1);
        assert_eq!(at_client[0].kind, PeerKind::RouteReflector);
        let nobody = Bgp::new(
            &cfg(
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","RouteReflectorSelector":"route-reflector == 'yes'"}}"#,
            ),
            &settings(),
        );
        assert!(nobody
            .peers("192.168.1.2".parse().unwrap(), &NodeLabels::new(), &leases)
            .is_empty());
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
        let far_mac =
            crate::vxlan::vtep_mac("172.16.0.3".parse::<std::net::Ipv4Addr>().unwrap(), 1);
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
