//! vxlan: flannel's layout, wire-compatible with it.
//!
//! One device `weft.<VNI>` (VNI 1, UDP port 8472 by default, learning off) holding this
//! node's `<subnet>.0/32`, with a VTEP MAC derived from the node's public IP and the VNI,
//! so it stays the same across restarts and recreations and peers never hold a stale one.
//! The MAC is published in the lease: `"BackendData":{"VNI":1,"VtepMAC":"..."}`.
//!
//! Per remote node, in flannel's order: a permanent neighbour entry (remote `.0` to the
//! remote VTEP MAC), a permanent FDB entry (that MAC to the remote public IP), and the
//! route `<remote subnet> via <remote .0> dev weft.<VNI> onlink`.
//!
//! With `DirectRouting` (Calico's `CrossSubnet`), a peer on the same L2 segment gets a
//! plain route via its public IP instead: no encapsulation where none is needed.
//!
//! Dual stack, flannel's layout: a node with a public IPv6 address also has
//! `weft-v6.<VNI>` over the IPv6 underlay (its VTEP MAC published as `BackendV6Data`),
//! and a peer that has one too gets, on that device, a neighbour entry (its IPv6
//! subnet's first address to its IPv6 VTEP MAC), an FDB entry (that MAC to its public
//! IPv6 address) and `<IPv6 subnet> via <first address> dev weft-v6.<VNI> onlink`.
//! Where either node has no IPv6 underlay, the IPv4 device carries the peer's IPv6
//! subnet instead (its first address resolved to the same VTEP MAC as the IPv4 one).
//! With `DirectRouting`, a peer on the same IPv6 segment gets a plain IPv6 route.

use std::net::IpAddr;

use weft_model::backend_options::VxlanOptions;
use weft_model::{BackendKind, Lease, NetworkConfig};
use weft_plan::link::{OverlaySpec, VxlanSpec};
use weft_plan::{FdbEntry, MacAddr, Neighbour, Route};

use crate::hostgw::direct_route;
use crate::no_route::NoRoute;
use crate::{Backend, BackendPlan, BackendSettings, NodeContext, Unreachable};

pub use weft_model::backend_options::DEFAULT_VNI;
/// The Linux kernel's (and flannel's) default VXLAN port; 4789 is IANA's.
pub use weft_model::backend_options::DEFAULT_VXLAN_PORT as DEFAULT_PORT;

pub struct Vxlan {
    vni: u32,
    port: u16,
    direct_routing: bool,
    mtu: Option<u32>,
    mac: MacAddr,
    /// The IPv6 underlay device's VTEP MAC, where the node has one (dual stack and a
    /// public IPv6 address).
    mac6: Option<MacAddr>,
    tx_checksum_off: bool,
}

impl Vxlan {
    /// Options come from the validated config (`VNI`, `Port`, `DirectRouting`, `MTU`):
    /// vxlan's own, or bgp's cross-subnet VXLAN.
    pub fn new(cfg: &NetworkConfig, settings: &BackendSettings) -> Vxlan {
        let o = cfg.options.vxlan().copied().unwrap_or(VxlanOptions {
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
            mtu: None,
            direct_routing: false,
        });
        Vxlan {
            vni: o.vni,
            port: o.port,
            direct_routing: o.direct_routing,
            mtu: o.mtu,
            mac: vtep_mac(settings.public_ip, o.vni),
            mac6: cfg
                .ipv6
                .as_ref()
                .and(settings.public_ipv6)
                .map(|ip| vtep_mac(ip, o.vni)),
            tx_checksum_off: settings.tx_checksum_off,
        }
    }

    pub fn vni(&self) -> u32 {
        self.vni
    }

    pub fn device_name(&self) -> String {
        format!("weft.{}", self.vni)
    }

    /// The IPv6 underlay's device (flannel's `flannel-v6.<VNI>`).
    pub fn device6_name(&self) -> String {
        format!("weft-v6.{}", self.vni)
    }
}

/// A peer's IPv6 underlay VTEP, from its lease's `BackendV6Data` (flannel's field).
pub(crate) fn peer_vtep6(peer: &Lease, vni: u32) -> Result<MacAddr, NoRoute> {
    vtep_in(&peer.attrs.backend_v6_data, vni)
}

/// The VTEP MAC for a device on a node's public address (IPv4, or IPv6 for the IPv6
/// underlay's device): a function of that address and the VNI only.
pub fn vtep_mac(public_ip: impl Into<IpAddr>, vni: u32) -> MacAddr {
    MacAddr::derived(format!("weft-vtep {} {vni}", public_ip.into()).as_bytes())
}

/// A peer's VTEP, from its lease's backend data.
pub(crate) fn peer_vtep(peer: &Lease, vni: u32) -> Result<MacAddr, NoRoute> {
    vtep_in(&peer.attrs.backend_data, vni)
}

/// The VTEP MAC a lease's backend data (`{"VNI":…,"VtepMAC":…}`, flannel's) names, for
/// a device on `vni`.
fn vtep_in(data: &serde_json::Value, vni: u32) -> Result<MacAddr, NoRoute> {
    let peer_vni = data
        .get("VNI")
        .and_then(|v| v.as_u64())
        .unwrap_or(DEFAULT_VNI as u64);
    if peer_vni != vni as u64 {
        return Err(NoRoute::VniMismatch {
            peer: peer_vni,
            ours: vni,
        });
    }
    let mac = data
        .get("VtepMAC")
        .and_then(|m| m.as_str())
        .ok_or(NoRoute::NoVtepMac)?;
    mac.parse().map_err(NoRoute::BadVtepMac)
}

impl Backend for Vxlan {
    fn kind(&self) -> BackendKind {
        BackendKind::Vxlan
    }

    fn backend_data(&self) -> serde_json::Value {
        serde_json::json!({ "VNI": self.vni, "VtepMAC": self.mac.to_string() })
    }

    fn backend_v6_data(&self) -> serde_json::Value {
        match self.mac6 {
            Some(mac) => serde_json::json!({ "VNI": self.vni, "VtepMAC": mac.to_string() }),
            None => serde_json::Value::Null,
        }
    }

    fn overlay6(&self, node: &NodeContext) -> Option<OverlaySpec> {
        self.spec6(node).map(OverlaySpec::Vxlan)
    }

    fn mtu(&self, external_mtu: u32) -> u32 {
        self.mtu
            .unwrap_or(external_mtu - BackendKind::Vxlan.mtu_overhead())
    }

    fn overlay(&self, node: &NodeContext) -> Option<OverlaySpec> {
        Some(OverlaySpec::Vxlan(self.spec(node)))
    }

    fn encap_port(&self) -> Option<u16> {
        Some(self.port)
    }

    fn plan(&self, node: &NodeContext, peers: &[Lease]) -> BackendPlan {
        self.plan_vxlan(node, peers)
    }
}

impl Vxlan {
    /// The VXLAN device this node needs.
    pub fn spec(&self, node: &NodeContext) -> VxlanSpec {
        let subnet = node.lease.subnet;
        VxlanSpec {
            name: self.device_name(),
            vni: self.vni,
            port: self.port,
            local: node.external.addr.into(),
            underlay: node.external.index,
            mac: self.mac,
            mtu: self.mtu(node.external.mtu),
            address: Some(ipnet::Ipv4Net::new(subnet.network(), 32).expect("/32")),
            proxy: false,
            tx_checksum_off: self.tx_checksum_off,
        }
    }

    /// The IPv6 underlay's device, where this node has one to make: a dual-stack
    /// network and a public IPv6 address (flannel's `flannel-v6.<VNI>`, with its MTU
    /// 20 bytes below the IPv4 device's for the larger outer header).
    pub fn spec6(&self, node: &NodeContext) -> Option<VxlanSpec> {
        let mac = self.mac6?;
        let local = node.lease.attrs.public_ipv6?;
        node.lease.ipv6_subnet?;
        Some(VxlanSpec {
            name: self.device6_name(),
            vni: self.vni,
            port: self.port,
            local: local.into(),
            underlay: node.external.index,
            mac,
            mtu: self.mtu(node.external.mtu) - 20,
            address: None,
            proxy: false,
            tx_checksum_off: self.tx_checksum_off,
        })
    }

    fn plan_vxlan(&self, node: &NodeContext, peers: &[Lease]) -> BackendPlan {
        let mut plane = BackendPlan::default();
        let Some(dev) = node.overlay else {
            return plane;
        };
        for peer in peers.iter().filter(|p| p.subnet != node.lease.subnet) {
            let unreachable = |reason: String| Unreachable {
                subnet: peer.subnet.into(),
                reason,
            };
            if let Some(why) = peer.attrs.backend_mismatch(BackendKind::Vxlan) {
                plane.unreachable.push(unreachable(why));
                continue;
            }
            if self.direct_routing {
                if let Ok(route) = direct_route(node, peer) {
                    plane.routes.push(route);
                    self.plan_v6(node, peer, dev, &mut plane);
                    continue;
                }
            }
            if peer.attrs.public_ip == node.lease.attrs.public_ip {
                let why = NoRoute::OwnAddress(peer.attrs.public_ip.into());
                plane.unreachable.push(unreachable(why.to_string()));
                continue;
            }
            match peer_vtep(peer, self.vni) {
                Err(why) => plane.unreachable.push(unreachable(why.to_string())),
                Ok(mac) => {
                    let gw = peer.subnet.network();
                    plane.neighbours.push(Neighbour { ip: gw.into(), mac });
                    plane.fdb.push(FdbEntry {
                        mac,
                        dst: peer.attrs.public_ip.into(),
                    });
                    plane.routes.push(Route::onlink(peer.subnet, gw, dev));
                    self.plan_v6(node, peer, dev, &mut plane);
                }
            }
        }
        for list in [&mut plane.neighbours, &mut plane.neighbours6] {
            list.sort();
            list.dedup();
        }
        for list in [&mut plane.fdb, &mut plane.fdb6] {
            list.sort();
            list.dedup();
        }
        plane.routes.sort();
        plane
    }

    /// A peer's IPv6 subnet, in a dual-stack network, by the first way that works: a
    /// plain route on one IPv6 segment (DirectRouting); the IPv6 underlay's devices,
    /// where both nodes have one (flannel's layout: the peer's `BackendV6Data` names its
    /// VTEP); else inside the IPv4 device, to the peer's IPv4 VTEP.
    fn plan_v6(&self, node: &NodeContext, peer: &Lease, dev: u32, plane: &mut BackendPlan) {
        let (Some(_), Some(v6)) = (node.lease.ipv6_subnet, peer.ipv6_subnet) else {
            return;
        };
        if self.direct_routing {
            if let Ok(r) = crate::hostgw::direct_route_v6(node, peer, v6) {
                plane.routes.push(r);
                return;
            }
        }
        let gw6 = v6.network();
        if let (Some(dev6), Ok(mac), Some(ip6)) = (
            node.overlay6,
            peer_vtep6(peer, self.vni),
            peer.attrs.public_ipv6,
        ) {
            plane.neighbours6.push(Neighbour {
                ip: gw6.into(),
                mac,
            });
            plane.fdb6.push(FdbEntry {
                mac,
                dst: ip6.into(),
            });
            plane.routes.push(Route::onlink(v6, gw6, dev6));
            return;
        }
        match peer_vtep(peer, self.vni) {
            Ok(mac) => {
                plane.neighbours.push(Neighbour {
                    ip: gw6.into(),
                    mac,
                });
                plane.fdb.push(FdbEntry {
                    mac,
                    dst: peer.attrs.public_ip.into(),
                });
                plane.routes.push(Route::onlink(v6, gw6, dev));
            }
            Err(why) => plane.unreachable.push(Unreachable {
                subnet: v6.into(),
                reason: why.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::LeaseAttrs;
    use weft_plan::iface::ExternalInterface;

    fn lease(subnet: &str, ip: &str, data: serde_json::Value) -> Lease {
        Lease {
            subnet: subnet.parse().unwrap(),
            ipv6_subnet: None,
            attrs: LeaseAttrs {
                labels: Default::default(),
                public_ip: ip.parse().unwrap(),
                public_ipv6: None,
                backend_type: "vxlan".into(),
                backend_data: data,
                backend_v6_data: serde_json::Value::Null,
            },
            store_lease: Some(1),
            mod_revision: 1,
        }
    }

    fn vtep(ip: &str) -> serde_json::Value {
        serde_json::json!({"VNI": 1, "VtepMAC": vtep_mac(ip.parse::<IpAddr>().unwrap(), 1).to_string()})
    }

    fn backend(json: &str) -> Vxlan {
        let cfg = NetworkConfig::parse(json.as_bytes()).unwrap();
        Vxlan::new(
            &cfg,
            &BackendSettings {
                public_ip: "192.168.1.1".parse().unwrap(),
                public_ipv6: None,
                tx_checksum_off: false,
                ipip_user_space: false,
            },
        )
    }

    fn node() -> NodeContext {
        NodeContext {
            external: ExternalInterface {
                index: 2,
                name: "eth0".into(),
                mtu: 1500,
                addr: "192.168.1.1".parse().unwrap(),
                network: "192.168.1.0/24".parse().unwrap(),
                ipv6: None,
            },
            lease: lease("10.244.1.0/24", "192.168.1.1", vtep("192.168.1.1")),
            overlay: Some(9),
            overlay6: None,
            learned: Vec::new(),
        }
    }

    #[test]
    fn flannel_layout_per_peer() {
        let b = backend(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let n = node();
        let peers = [
            n.lease.clone(),
            lease("10.244.2.0/24", "192.168.2.7", vtep("192.168.2.7")),
        ];
        let plane = b.plan(&n, &peers);
        let mac = vtep_mac("192.168.2.7".parse::<IpAddr>().unwrap(), 1);
        assert_eq!(
            plane.neighbours,
            [Neighbour {
                ip: "10.244.2.0".parse().unwrap(),
                mac
            }]
        );
        assert_eq!(
            plane.fdb,
            [FdbEntry {
                mac,
                dst: "192.168.2.7".parse().unwrap()
            }]
        );
        assert_eq!(
            plane.routes[0].to_string(),
            "10.244.2.0/24 via 10.244.2.0 dev #9 onlink"
        );
        let spec = b.spec(&n);
        assert_eq!(
            (spec.name.as_str(), spec.vni, spec.port, spec.mtu),
            ("weft.1", 1, 8472, 1450)
        );
        assert_eq!(spec.address, Some("10.244.1.0/32".parse().unwrap()));
        assert_eq!(b.backend_data()["VtepMAC"], vtep("192.168.1.1")["VtepMAC"]);
    }

    /// The lease flanneld v0.20.2 (dual stack, vxlan, etcd) wrote in a mixed lab
    /// (2026-12-07), through the store's decoder: its IPv4 subnet through weft.1 to its
    /// `BackendData` VTEP, its IPv6 subnet through weft-v6.1 to its `BackendV6Data` VTEP
    /// at its public IPv6 address.
    #[test]
    fn a_dual_stack_lease_flanneld_wrote_uses_both_devices() {
        let keys = weft_model::keys::Keys::new("/coreos.com/network");
        let entry = weft_model::keys::Entry {
            key: "/coreos.com/network/subnets/10.244.10.0-24&fd00:10:244:3f::-64",
            value: Some(br#"{"PublicIP":"192.168.77.3","PublicIPv6":"fd00:192:168:77::3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"72:cb:e4:fe:c2:6a"},"BackendV6Data":{"VNI":1,"VtepMAC":"72:cf:5f:a9:dd:91"}}"#),
            mod_revision: 9,
            lease: Some(4),
        };
        let weft_model::keys::Change::Lease(_, Some(Ok(theirs))) = keys.decode(entry) else {
            panic!("flannel's lease does not decode");
        };
        let b = backend(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let mut n = node();
        n.lease.ipv6_subnet = Some("fd00:10:244:25::/64".parse().unwrap());
        n.overlay6 = Some(11);
        let plane = b.plan(&n, &[n.lease.clone(), theirs]);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.10.0/24 via 10.244.10.0 dev #9 onlink",
                "fd00:10:244:3f::/64 via fd00:10:244:3f:: dev #11 onlink"
            ]
        );
        assert_eq!(plane.fdb[0].mac.to_string(), "72:cb:e4:fe:c2:6a");
        assert_eq!(plane.fdb[0].dst.to_string(), "192.168.77.3");
        assert_eq!(plane.fdb6[0].mac.to_string(), "72:cf:5f:a9:dd:91");
        assert_eq!(plane.fdb6[0].dst.to_string(), "fd00:192:168:77::3");
    }

    /// Dual stack with an IPv6 underlay on both sides (flannel's layout): the peer's
    /// IPv6 subnet through `weft-v6.1`, to the VTEP its `BackendV6Data` names at its
    /// public IPv6 address; this node publishes its own.
    #[test]
    fn ipv6_underlay_device_in_flannels_layout() {
        let cfg = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}"#,
        )
        .unwrap();
        let b = Vxlan::new(
            &cfg,
            &BackendSettings {
                public_ip: "192.168.1.1".parse().unwrap(),
                public_ipv6: Some("fd00:77::1".parse().unwrap()),
                tx_checksum_off: false,
                ipip_user_space: false,
            },
        );
        let mut n = node();
        n.lease.ipv6_subnet = Some("fd00:10:244:1::/64".parse().unwrap());
        n.lease.attrs.public_ipv6 = Some("fd00:77::1".parse().unwrap());
        n.overlay6 = Some(11);
        let spec = b.spec6(&n).unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.local.to_string(), spec.mtu),
            ("weft-v6.1", "fd00:77::1".to_string(), 1430)
        );
        assert_eq!(
            b.backend_v6_data()["VtepMAC"],
            vtep_mac("fd00:77::1".parse::<IpAddr>().unwrap(), 1).to_string()
        );
        let mac6 = vtep_mac("fd00:77::7".parse::<IpAddr>().unwrap(), 1);
        let mut peer = lease("10.244.2.0/24", "192.168.2.7", vtep("192.168.2.7"));
        peer.ipv6_subnet = Some("fd00:10:244:2::/64".parse().unwrap());
        peer.attrs.public_ipv6 = Some("fd00:77::7".parse().unwrap());
        peer.attrs.backend_v6_data = serde_json::json!({"VNI": 1, "VtepMAC": mac6.to_string()});
        let plane = b.plan(&n, &[n.lease.clone(), peer.clone()]);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.2.0/24 via 10.244.2.0 dev #9 onlink",
                "fd00:10:244:2::/64 via fd00:10:244:2:: dev #11 onlink"
            ]
        );
        assert_eq!(
            plane.neighbours6,
            [Neighbour {
                ip: "fd00:10:244:2::".parse().unwrap(),
                mac: mac6
            }]
        );
        assert_eq!(
            plane.fdb6,
            [FdbEntry {
                mac: mac6,
                dst: "fd00:77::7".parse().unwrap()
            }]
        );
        assert_eq!(plane.neighbours.len(), 1, "only the IPv4 entry on weft.1");
        // A peer without an IPv6 VTEP (a Weft node with no public IPv6 address): its
        // IPv6 subnet inside weft.1.
        peer.attrs.backend_v6_data = serde_json::Value::Null;
        let plane = b.plan(&n, &[n.lease.clone(), peer]);
        assert!(plane
            .routes
            .iter()
            .any(|r| r.to_string() == "fd00:10:244:2::/64 via fd00:10:244:2:: dev #9 onlink"));
        assert!(plane.neighbours6.is_empty() && plane.fdb6.is_empty());
    }

    /// Dual stack: the peer's IPv6 subnet through the same device and VTEP (one FDB
    /// entry), or, with DirectRouting on one IPv6 segment, a plain IPv6 route.
    #[test]
    fn ipv6_subnets_ride_the_same_tunnel() {
        let b = backend(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let mut n = node();
        n.lease.ipv6_subnet = Some("fd00:10:244:1::/64".parse().unwrap());
        let mut peer = lease("10.244.2.0/24", "192.168.1.7", vtep("192.168.1.7"));
        peer.ipv6_subnet = Some("fd00:10:244:2::/64".parse().unwrap());
        peer.attrs.public_ipv6 = Some("fd00:77::7".parse().unwrap());
        let peers = [n.lease.clone(), peer];
        let plane = b.plan(&n, &peers);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.2.0/24 via 10.244.2.0 dev #9 onlink",
                "fd00:10:244:2::/64 via fd00:10:244:2:: dev #9 onlink"
            ]
        );
        let mac = vtep_mac("192.168.1.7".parse::<IpAddr>().unwrap(), 1);
        let ips: Vec<String> = plane.neighbours.iter().map(|x| x.ip.to_string()).collect();
        assert_eq!(ips, ["10.244.2.0", "fd00:10:244:2::"]);
        assert!(plane.neighbours.iter().all(|x| x.mac == mac));
        assert_eq!(plane.fdb.len(), 1, "one VTEP, one FDB entry");

        let direct = backend(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#,
        );
        n.external.ipv6 = Some("fd00:77::1/64".parse().unwrap());
        let plane = direct.plan(&n, &peers);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.2.0/24 via 192.168.1.7 dev #2",
                "fd00:10:244:2::/64 via fd00:77::7 dev #2"
            ]
        );
    }

    #[test]
    fn direct_routing_only_on_the_segment() {
        let b = backend(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true,"VNI":7,"Port":4789}}"#,
        );
        let mut n = node();
        n.lease.attrs.backend_data = serde_json::json!({"VNI": 7, "VtepMAC": "02:00:00:00:00:01"});
        let near = lease(
            "10.244.2.0/24",
            "192.168.1.2",
            serde_json::json!({"VNI": 7, "VtepMAC": "02:00:00:00:00:02"}),
        );
        let far = lease(
            "10.244.3.0/24",
            "192.168.9.3",
            serde_json::json!({"VNI": 7, "VtepMAC": "02:00:00:00:00:03"}),
        );
        let plane = b.plan(&n, &[near, far]);
        let routes: Vec<String> = plane.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "10.244.2.0/24 via 192.168.1.2 dev #2",
                "10.244.3.0/24 via 10.244.3.0 dev #9 onlink"
            ]
        );
        assert_eq!(plane.fdb.len(), 1, "only the far peer is encapsulated");
        assert_eq!(b.spec(&n).port, 4789);
    }

    #[test]
    fn bad_backend_data_is_reported_not_routed() {
        let b = backend(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let peers = [
            lease(
                "10.244.2.0/24",
                "192.168.2.2",
                serde_json::json!({"VNI": 1}),
            ),
            lease(
                "10.244.3.0/24",
                "192.168.2.3",
                serde_json::json!({"VNI": 2, "VtepMAC": "02:00:00:00:00:03"}),
            ),
            lease(
                "10.244.4.0/24",
                "192.168.2.4",
                serde_json::json!({"VNI": 1, "VtepMAC": "nope"}),
            ),
        ];
        let plane = b.plan(&node(), &peers);
        assert!(plane.routes.is_empty() && plane.fdb.is_empty() && plane.neighbours.is_empty());
        let why: Vec<_> = plane
            .unreachable
            .iter()
            .map(|u| u.reason.as_str())
            .collect();
        assert!(
            why[0].contains("no VtepMAC") && why[1].contains("VNI 2") && why[2].contains("VtepMAC"),
            "{why:?}"
        );
    }

    #[test]
    fn mac_is_stable_and_mtu_configurable() {
        assert_eq!(
            vtep_mac("10.0.0.1".parse::<IpAddr>().unwrap(), 1),
            vtep_mac("10.0.0.1".parse::<IpAddr>().unwrap(), 1)
        );
        assert_ne!(
            vtep_mac("10.0.0.1".parse::<IpAddr>().unwrap(), 1),
            vtep_mac("10.0.0.1".parse::<IpAddr>().unwrap(), 2)
        );
        let b = backend(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","MTU":1400}}"#);
        assert_eq!(b.mtu(9000), 1400);
    }
}
