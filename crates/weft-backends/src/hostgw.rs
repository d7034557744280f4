//! host-gw: a plain route to each peer's subnet via the peer's public IP.
//!
//! No encapsulation, so no overhead, but the peer must be one L2 hop away: its public IP
//! must lie in the external interface's on-link network. A peer elsewhere would need a
//! gateway that knows nothing of container subnets, so it gets no route and is reported.

use weft_model::{BackendKind, Lease};
use weft_plan::Route;

use crate::no_route::NoRoute;
use crate::{Backend, BackendPlan, NodeContext, Unreachable};

pub struct HostGw;

impl Backend for HostGw {
    fn kind(&self) -> BackendKind {
        BackendKind::HostGw
    }

    fn encapsulates(&self) -> bool {
        false
    }

    fn plan(&self, node: &NodeContext, peers: &[Lease]) -> BackendPlan {
        let mut plane = BackendPlan::default();
        for peer in peers.iter().filter(|p| p.subnet != node.lease.subnet) {
            let route = match peer.attrs.backend_mismatch(BackendKind::HostGw) {
                Some(why) => Err(why),
                None => direct_route(node, peer).map_err(|e| e.to_string()),
            };
            match route {
                Ok(r) => plane.routes.push(r),
                Err(reason) => plane.unreachable.push(Unreachable {
                    subnet: peer.subnet,
                    reason,
                }),
            }
        }
        plane.routes.sort();
        plane
    }
}

/// The plain route to a peer one L2 hop away (host-gw, and VXLAN's DirectRouting), or why
/// there can be none.
pub(crate) fn direct_route(node: &NodeContext, peer: &Lease) -> Result<Route, NoRoute> {
    let ext = &node.external;
    let ip = peer.attrs.public_ip;
    if ip == node.lease.attrs.public_ip {
        return Err(NoRoute::OwnAddress(ip));
    }
    if !ext.network.contains(&ip) {
        return Err(NoRoute::OffSegment {
            ip,
            iface: ext.name.clone(),
            network: ext.network,
        });
    }
    Ok(Route::via(peer.subnet, ip, ext.index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::lease;

    fn node() -> NodeContext {
        crate::testing::node("host-gw")
    }

    #[test]
    fn routes_via_peers_on_the_segment_only() {
        let n = node();
        let peers = [
            n.lease.clone(),
            lease("10.244.3.0/24", "192.168.1.3", "host-gw"),
            lease("10.244.2.0/24", "192.168.1.2", "host-gw"),
            lease("10.244.9.0/24", "172.16.0.9", "host-gw"),
            lease("10.244.8.0/24", "192.168.1.8", "vxlan"),
        ];
        let plane = HostGw.plan(&n, &peers);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.2.0/24 via 192.168.1.2 dev #7",
                "10.244.3.0/24 via 192.168.1.3 dev #7"
            ]
        );
        let why: Vec<_> = plane
            .unreachable
            .iter()
            .map(|u| (u.subnet.to_string(), u.reason.clone()))
            .collect();
        assert_eq!(why.len(), 2);
        assert!(
            why[0]
                .1
                .contains("not on the same L2 subnet as eth0 (192.168.1.0/24)"),
            "{why:?}"
        );
        assert!(why[1].1.contains("vxlan"), "{why:?}");
        assert_eq!(HostGw.mtu(1500), 1500);
    }
}
