//! host-gw: a plain route to each peer's subnet via the peer's public IP; in a dual-stack
//! network also to its IPv6 subnet via its public IPv6 address.
//!
//! No encapsulation, so no overhead, but the peer must be one L2 hop away: its public IP
//! must lie in the external interface's on-link network (for IPv6, the on-link prefix of
//! the interface's IPv6 address). A peer elsewhere would need a gateway that knows
//! nothing of container subnets, so it gets no route and is reported, per family.

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
                    subnet: peer.subnet.into(),
                    reason,
                }),
            }
            if peer.attrs.runs(BackendKind::HostGw) {
                if let (Some(_), Some(v6)) = (node.lease.ipv6_subnet, peer.ipv6_subnet) {
                    match direct_route_v6(node, peer, v6) {
                        Ok(r) => plane.routes.push(r),
                        Err(why) => plane.unreachable.push(Unreachable {
                            subnet: v6.into(),
                            reason: why.to_string(),
                        }),
                    }
                }
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
        return Err(NoRoute::OwnAddress(ip.into()));
    }
    if !ext.network.contains(&ip) {
        return Err(NoRoute::OffSegment {
            ip: ip.into(),
            iface: ext.name.clone(),
            network: ext.network.into(),
        });
    }
    Ok(Route::via(peer.subnet, ip, ext.index))
}

/// The plain IPv6 route to a peer's IPv6 subnet `v6`, via its public IPv6 address on
/// the same IPv6 segment, or why there can be none.
pub(crate) fn direct_route_v6(
    node: &NodeContext,
    peer: &Lease,
    v6: ipnet::Ipv6Net,
) -> Result<Route, NoRoute> {
    let ext = &node.external;
    let ip = peer.attrs.public_ipv6.ok_or(NoRoute::NoPeerIpv6)?;
    let own = ext.ipv6.ok_or_else(|| NoRoute::NoOwnIpv6 {
        iface: ext.name.clone(),
    })?;
    if Some(ip) == node.lease.attrs.public_ipv6 || ip == own.addr() {
        return Err(NoRoute::OwnAddress(ip.into()));
    }
    if !own.trunc().contains(&ip) {
        return Err(NoRoute::OffSegment {
            ip: ip.into(),
            iface: ext.name.clone(),
            network: own.trunc().into(),
        });
    }
    Ok(Route::via(v6, ip, ext.index))
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

    /// A lease exactly as flanneld v0.20.2 (dual stack, host-gw, etcd) created it in a
    /// mixed lab (2026-12-07): its key and value, read through the store's one decoder,
    /// routed in both families.
    #[test]
    fn a_lease_flanneld_wrote_is_routed_in_both_families() {
        let keys = weft_model::keys::Keys::new("/coreos.com/network");
        let entry = weft_model::keys::Entry {
            key: "/coreos.com/network/subnets/10.244.96.0-24&fd00:10:244:45::-64",
            value: Some(br#"{"PublicIP":"192.168.77.3","PublicIPv6":"fd00:192:168:77::3","BackendType":"host-gw"}"#),
            mod_revision: 9,
            lease: Some(4),
        };
        let weft_model::keys::Change::Lease(_, Some(Ok(theirs))) = keys.decode(entry) else {
            panic!("flannel's lease does not decode");
        };
        let mut n = node();
        n.external.ipv6 = Some("fd00:192:168:77::1/64".parse().unwrap());
        n.external.network = "192.168.77.0/24".parse().unwrap();
        n.lease.attrs.public_ip = "192.168.77.1".parse().unwrap();
        n.lease.ipv6_subnet = Some("fd00:10:244:2a::/64".parse().unwrap());
        n.lease.attrs.public_ipv6 = Some("fd00:192:168:77::1".parse().unwrap());
        let plane = HostGw.plan(&n, &[n.lease.clone(), theirs]);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.96.0/24 via 192.168.77.3 dev #7",
                "fd00:10:244:45::/64 via fd00:192:168:77::3 dev #7"
            ]
        );
    }

    /// A dual-stack peer: both families routed via its address of that family; a peer
    /// with no IPv6 address, or off the IPv6 segment, loses only its IPv6 route.
    #[test]
    fn ipv6_subnets_via_peers_ipv6_addresses() {
        let mut n = node();
        n.external.ipv6 = Some("fd00:77::1/64".parse().unwrap());
        n.lease.ipv6_subnet = Some("fd00:10:244:1::/64".parse().unwrap());
        n.lease.attrs.public_ipv6 = Some("fd00:77::1".parse().unwrap());
        let dual = |v4: &str, ip: &str, v6: &str, ip6: Option<&str>| {
            let mut l = lease(v4, ip, "host-gw");
            l.ipv6_subnet = Some(v6.parse().unwrap());
            l.attrs.public_ipv6 = ip6.map(|a| a.parse().unwrap());
            l
        };
        let peers = [
            n.lease.clone(),
            dual(
                "10.244.2.0/24",
                "192.168.1.2",
                "fd00:10:244:2::/64",
                Some("fd00:77::2"),
            ),
            dual("10.244.3.0/24", "192.168.1.3", "fd00:10:244:3::/64", None),
            dual(
                "10.244.4.0/24",
                "192.168.1.4",
                "fd00:10:244:4::/64",
                Some("fd00:99::4"),
            ),
            lease("10.244.5.0/24", "192.168.1.5", "host-gw"),
        ];
        let plane = HostGw.plan(&n, &peers);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.2.0/24 via 192.168.1.2 dev #7",
                "10.244.3.0/24 via 192.168.1.3 dev #7",
                "10.244.4.0/24 via 192.168.1.4 dev #7",
                "10.244.5.0/24 via 192.168.1.5 dev #7",
                "fd00:10:244:2::/64 via fd00:77::2 dev #7",
            ]
        );
        let why: Vec<_> = plane
            .unreachable
            .iter()
            .map(|u| format!("{}: {}", u.subnet, u.reason))
            .collect();
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(
            why[0].starts_with("fd00:10:244:3::/64: peer published no IPv6"),
            "{why:?}"
        );
        assert!(
            why[1].contains("fd00:99::4 is not on the same L2 subnet as eth0 (fd00:77::/64)"),
            "{why:?}"
        );

        // This node has no IPv6 address on its interface: every IPv6 subnet is named.
        n.external.ipv6 = None;
        let plane = HostGw.plan(&n, &peers);
        assert!(plane.routes.iter().all(|r| !r.is_v6()));
        assert!(plane
            .unreachable
            .iter()
            .any(|u| u.reason.contains("eth0 has no global IPv6")));
    }
}
