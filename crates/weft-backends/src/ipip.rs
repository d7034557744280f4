//! ipip with the kernel's module: a one-to-many `ipip` device `weft.ipip` holding this
//! node's `<subnet>.0/32`, and per peer `<subnet> via <peer public IP> dev weft.ipip
//! onlink` (Calico's IPIP mode). MTU: external - 20, or the config's `MTU`. With
//! `DirectRouting`, same-segment peers get plain routes instead.
//!
//! This path cannot run on a kernel without the module (the agent then falls back to
//! [`crate::tunnel::UserTunnel`], whose packets are identical); its netlink message is
//! tested in `weft-kernel`, its plan here.

use ipnet::Ipv4Net;
use weft_model::{BackendKind, Lease, NetworkConfig};
use weft_plan::link::{IpipSpec, OverlaySpec};
use weft_plan::Route;

use crate::hostgw::direct_route;
use crate::{Backend, BackendPlan, NodeContext, Unreachable};

pub const DEVICE: &str = "weft.ipip";

pub struct KernelIpip {
    direct_routing: bool,
    mtu: Option<u32>,
}

impl KernelIpip {
    pub fn new(cfg: &NetworkConfig) -> Self {
        KernelIpip {
            direct_routing: cfg.options.direct_routing(),
            mtu: cfg.options.mtu(),
        }
    }
}

impl Backend for KernelIpip {
    fn kind(&self) -> BackendKind {
        BackendKind::Ipip
    }

    fn mtu(&self, external_mtu: u32) -> u32 {
        self.mtu
            .unwrap_or(external_mtu - BackendKind::Ipip.mtu_overhead())
    }

    fn overlay(&self, node: &NodeContext) -> Option<OverlaySpec> {
        Some(OverlaySpec::Ipip(IpipSpec {
            name: DEVICE.into(),
            local: node.lease.attrs.public_ip,
            underlay: node.external.index,
            mtu: self.mtu(node.external.mtu),
            address: Ipv4Net::new(node.lease.subnet.network(), 32).expect("/32"),
        }))
    }

    fn plan(&self, node: &NodeContext, peers: &[Lease]) -> BackendPlan {
        let mut plane = BackendPlan::default();
        let Some(dev) = node.overlay else {
            return plane;
        };
        for peer in peers.iter().filter(|p| p.subnet != node.lease.subnet) {
            if let Some(reason) = peer.attrs.backend_mismatch(BackendKind::Ipip) {
                plane.unreachable.push(Unreachable {
                    subnet: peer.subnet.into(),
                    reason,
                });
                continue;
            }
            let direct = self
                .direct_routing
                .then(|| direct_route(node, peer).ok())
                .flatten();
            plane.routes.push(direct.unwrap_or(Route::onlink(
                peer.subnet,
                peer.attrs.public_ip,
                dev,
            )));
        }
        plane.routes.sort();
        plane
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{lease, node};

    #[test]
    fn routes_via_peers_onlink_through_the_device() {
        let cfg = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"ipip","DirectRouting":true}}"#,
        )
        .unwrap();
        let b = KernelIpip::new(&cfg);
        let mut n = node("ipip");
        n.overlay = Some(11);
        let plane = b.plan(
            &n,
            &[
                n.lease.clone(),
                lease("10.244.2.0/24", "192.168.1.2", "ipip"),
                lease("10.244.3.0/24", "172.16.0.3", "ipip"),
            ],
        );
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.2.0/24 via 192.168.1.2 dev #7",
                "10.244.3.0/24 via 172.16.0.3 dev #11 onlink"
            ]
        );
        let Some(OverlaySpec::Ipip(spec)) = b.overlay(&n) else {
            panic!()
        };
        assert_eq!(
            (spec.name.as_str(), spec.mtu, spec.underlay),
            ("weft.ipip", 1480, 7)
        );
    }
}
