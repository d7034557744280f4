//! udp, and ipip where the kernel has no `ipip` module: the user-space tunnel.
//!
//! The whole cluster network is routed into the TUN `weft0` (one route, protocol 77),
//! which holds this node's `<subnet>.0/32`; the tunnel's table maps each peer subnet to
//! the peer's public IP. flannel's `udp` wire format (whole IP packets in UDP to port
//! 8285) or RFC 2003 IP-in-IP, identical to a kernel `ipip` device's packets, so a
//! cluster can mix kernel and user-space IP-in-IP nodes. MTU: external - 28 (udp) or -
//! 20 (ipip), or the config's `MTU`.
//!
//! With `DirectRouting`, a peer on the same L2 segment gets a plain route via its public
//! IP (more specific than the network route), so only the others are encapsulated.

use ipnet::Ipv4Net;
use weft_model::{BackendKind, Lease, NetworkConfig};
use weft_plan::link::{OverlaySpec, TunSpec};
use weft_plan::Route;
use weft_tunnel::{Encap, Table};

use crate::hostgw::direct_route;
use crate::{Backend, BackendPlan, NodeContext, Unreachable};

pub struct UserTunnel {
    kind: BackendKind,
    encap: Encap,
    network: Ipv4Net,
    direct_routing: bool,
    mtu: Option<u32>,
}

impl UserTunnel {
    pub fn udp(cfg: &NetworkConfig) -> Self {
        let port = match &cfg.options {
            weft_model::BackendOptions::Udp(u) => u.port,
            _ => weft_tunnel::DEFAULT_UDP_PORT,
        };
        Self::new(cfg, BackendKind::Udp, Encap::Udp { port })
    }

    pub fn ipip(cfg: &NetworkConfig) -> Self {
        Self::new(cfg, BackendKind::Ipip, Encap::Ipip)
    }

    fn new(cfg: &NetworkConfig, kind: BackendKind, encap: Encap) -> Self {
        UserTunnel {
            kind,
            encap,
            network: cfg.network,
            direct_routing: cfg.options.direct_routing(),
            mtu: cfg.options.mtu(),
        }
    }

    pub fn encap(&self) -> Encap {
        self.encap
    }
}

impl Backend for UserTunnel {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn mtu(&self, external_mtu: u32) -> u32 {
        self.mtu.unwrap_or(external_mtu - self.kind.mtu_overhead())
    }

    fn overlay(&self, node: &NodeContext) -> Option<OverlaySpec> {
        Some(OverlaySpec::Tun(TunSpec {
            name: weft_tunnel::DEVICE.into(),
            mtu: self.mtu(node.external.mtu),
            address: Ipv4Net::new(node.lease.subnet.network(), 32).expect("/32"),
        }))
    }

    fn user_space_encap(&self) -> Option<Encap> {
        Some(self.encap)
    }

    fn plan(&self, node: &NodeContext, peers: &[Lease]) -> BackendPlan {
        let mut plane = BackendPlan::default();
        let Some(dev) = node.overlay else {
            return plane;
        };
        let own = &node.lease;
        let mut table = Table::new(self.network, own.subnet, own.attrs.public_ip);
        plane.routes.push(Route::device(self.network, dev));
        for peer in peers.iter().filter(|p| p.subnet != own.subnet) {
            if let Some(reason) = peer.attrs.backend_mismatch(self.kind) {
                plane.unreachable.push(Unreachable {
                    subnet: peer.subnet.into(),
                    reason,
                });
                continue;
            }
            if peer.attrs.public_ip == own.attrs.public_ip {
                plane.unreachable.push(Unreachable {
                    subnet: peer.subnet.into(),
                    reason: format!(
                        "peer claims this node's own public IP {} (stale lease?)",
                        own.attrs.public_ip
                    ),
                });
                continue;
            }
            table.add_peer(peer.subnet, peer.attrs.public_ip);
            if self.direct_routing {
                if let Ok(r) = direct_route(node, peer) {
                    plane.routes.push(r);
                }
            }
        }
        plane.routes.sort();
        plane.tunnel = Some(table);
        plane
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cfg, lease, node};

    #[test]
    fn one_route_into_the_tun_and_a_table_of_peers() {
        let b = UserTunnel::udp(&cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#,
        ));
        assert_eq!(b.encap(), Encap::Udp { port: 8285 });
        assert_eq!(b.mtu(1500), 1472);
        let mut n = node("udp");
        n.overlay = Some(9);
        let peers = [
            n.lease.clone(),
            lease("10.244.2.0/24", "192.168.1.2", "udp"),
            lease("10.244.3.0/24", "172.16.0.3", "udp"),
            lease("10.244.4.0/24", "192.168.1.4", "vxlan"),
        ];
        let plane = b.plan(&n, &peers);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(routes, ["10.244.0.0/16 dev #9"]);
        let t = plane.tunnel.unwrap();
        assert_eq!(
            t.lookup("10.244.3.9".parse().unwrap()),
            Some("172.16.0.3".parse().unwrap())
        );
        assert_eq!(t.lookup("10.244.4.9".parse().unwrap()), None);
        assert!(
            !t.is_member("192.168.1.4".parse().unwrap()),
            "another backend's node is no member"
        );
        assert_eq!(plane.unreachable.len(), 1);
        let Some(OverlaySpec::Tun(spec)) = b.overlay(&n) else {
            panic!()
        };
        assert_eq!(
            (
                spec.name.as_str(),
                spec.mtu,
                spec.address.to_string().as_str()
            ),
            ("weft0", 1472, "10.244.1.0/32")
        );
    }

    /// Leases exactly as flannel's own backends write them.
    fn flannel(subnet: &str, value: &str) -> Lease {
        let mut l = lease(subnet, "192.168.1.9", "udp");
        l.attrs = weft_model::LeaseAttrs::decode(value.as_bytes()).unwrap();
        l
    }

    #[test]
    fn flannel_udp_nodes_are_udp_peers_and_others_are_not() {
        // flannel's udp backend writes no BackendType (v0.20 to this day).
        let udp = flannel(
            "10.244.5.0/24",
            r#"{"PublicIP":"192.168.1.5","PublicIPv6":null}"#,
        );
        let vxlan = flannel(
            "10.244.6.0/24",
            r#"{"PublicIP":"192.168.1.6","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"6e:2c:39:a6:2d:31"}}"#,
        );
        let b = UserTunnel::udp(&cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#,
        ));
        let mut n = node("udp");
        n.overlay = Some(9);
        let plane = b.plan(&n, &[n.lease.clone(), udp, vxlan]);
        let t = plane.tunnel.unwrap();
        assert_eq!(
            t.lookup("10.244.5.9".parse().unwrap()),
            Some("192.168.1.5".parse().unwrap())
        );
        assert!(t.is_member("192.168.1.5".parse().unwrap()));
        assert_eq!(t.lookup("10.244.6.9".parse().unwrap()), None);
        assert_eq!(plane.unreachable.len(), 1, "{:?}", plane.unreachable);
        // In an ipip network an empty type is nobody's.
        let ipip = UserTunnel::ipip(&cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}"#,
        ));
        let udp = flannel(
            "10.244.5.0/24",
            r#"{"PublicIP":"192.168.1.5","PublicIPv6":null}"#,
        );
        let plane = ipip.plan(&n, &[n.lease.clone(), udp]);
        assert_eq!(
            plane.tunnel.unwrap().lookup("10.244.5.9".parse().unwrap()),
            None
        );
    }

    #[test]
    fn cross_subnet_routes_neighbours_directly() {
        let b = UserTunnel::ipip(&cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"ipip","DirectRouting":true}}"#,
        ));
        assert_eq!(b.mtu(1500), 1480);
        let mut n = node("ipip");
        n.overlay = Some(9);
        let peers = [
            lease("10.244.2.0/24", "192.168.1.2", "ipip"),
            lease("10.244.3.0/24", "172.16.0.3", "ipip"),
        ];
        let plane = b.plan(&n, &peers);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.0.0/16 dev #9",
                "10.244.2.0/24 via 192.168.1.2 dev #7"
            ]
        );
    }
}
