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
//! Which sessions to run is a pure function of the leases and the config
//! ([`Bgp::peers`]); the agent hands the result to the speaker after every change.

use std::net::Ipv4Addr;

use weft_alloc::{BackendKind, Lease, NetworkConfig};
use weft_bgp::rib::PeerKind;
use weft_kernel::Route;

use crate::{Backend, DataPlane, NodeContext, Unreachable};

/// Calico's default AS for the cluster.
pub const DEFAULT_ASN: u32 = 64512;

pub struct Bgp {
    pub asn: u32,
    pub reflectors: Vec<Ipv4Addr>,
}

/// A session the node should have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WantedPeer {
    pub address: Ipv4Addr,
    pub asn: u32,
    pub kind: PeerKind,
}

impl Bgp {
    pub fn new(cfg: &NetworkConfig) -> Self {
        let reflectors = cfg
            .backend_options
            .get("RouteReflectors")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        Bgp {
            asn: cfg
                .backend_u64("ASN")
                .map(|a| a as u32)
                .unwrap_or(DEFAULT_ASN),
            reflectors,
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
            .filter(|l| l.attrs.backend_type == BackendKind::Bgp.name())
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
                    PeerKind::Mesh
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

    fn bgp(&self) -> Option<&Bgp> {
        Some(self)
    }

    fn plan(&self, node: &NodeContext, _peers: &[Lease]) -> DataPlane {
        let mut plane = DataPlane::default();
        plane.routes.push(Route::blackhole(node.lease.subnet));
        let ext = &node.external;
        for (prefix, next_hop) in &node.learned {
            if *prefix == node.lease.subnet {
                continue;
            }
            if ext.network.contains(next_hop) && *next_hop != ext.addr {
                plane.routes.push(Route {
                    dst: *prefix,
                    via: Some(*next_hop),
                    dev: ext.index,
                    onlink: false,
                });
            } else {
                plane.unreachable.push(Unreachable {
                    subnet: *prefix,
                    reason: format!(
                        "learned over BGP via {next_hop}, which is not on {} ({})",
                        ext.name, ext.network
                    ),
                });
            }
        }
        plane.routes.sort();
        plane
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cfg, lease, node};

    #[test]
    fn mesh_and_reflector_topologies() {
        let leases = [
            lease("10.244.1.0/24", "192.168.1.1", "bgp"),
            lease("10.244.2.0/24", "192.168.1.2", "bgp"),
            lease("10.244.3.0/24", "192.168.1.3", "bgp"),
            lease("10.244.4.0/24", "192.168.1.4", "vxlan"),
        ];
        let me: Ipv4Addr = "192.168.1.1".parse().unwrap();
        let mesh = Bgp::new(&cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#,
        ));
        let p = mesh.peers(me, &leases);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|w| w.kind == PeerKind::Mesh && w.asn == 64512));
        let rr = Bgp::new(&cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","ASN":65001,"RouteReflectors":["192.168.1.1"]}}"#,
        ));
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
                kind: PeerKind::Mesh
            }],
            "clients talk to the reflector only"
        );
    }

    #[test]
    fn blackhole_own_block_and_routes_via_next_hops() {
        let b = Bgp::new(&cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#,
        ));
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
        let plane = b.plan(&n, &[]);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "blackhole 10.244.1.0/24",
                "10.244.2.0/24 via 192.168.1.2 dev #7"
            ]
        );
        assert_eq!(plane.unreachable.len(), 1);
        assert_eq!(b.mtu(1500), 1500, "no encapsulation, no overhead");
    }
}
