//! Weft's data planes.
//!
//! A backend decides, from this node's lease and every peer's, what the host should look
//! like: its overlay device, routes, neighbour and FDB entries, in the vocabulary of
//! [`weft_plan`]. The decision is a pure function ([`Backend::plan`]); the agent hands the
//! result to the kernel's dataplane (weft-kernel), which changes only
//! the difference. Backends sit between the store and the kernel and depend on neither
//! the agent nor the kernel crate. Peers a backend cannot reach are reported, never given
//! a broken route.

pub mod bgp;
pub mod blocks;
pub mod host;
pub mod hostgw;
pub mod ipip;
pub mod networks;
pub mod no_route;
pub mod tunnel;
pub mod vxlan;

use std::net::Ipv4Addr;

use weft_model::{BackendKind, Lease, NetworkConfig};
use weft_plan::iface::ExternalInterface;
use weft_plan::link::OverlaySpec;
use weft_plan::{FdbEntry, Neighbour, Route};

/// What the node knows about itself when planning.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub external: ExternalInterface,
    pub lease: Lease,
    /// The overlay device's index, once the agent has made it (see [`Backend::overlay`]).
    pub overlay: Option<u32>,
    /// The IPv6 underlay's device's index, where the backend has one and the agent has
    /// made it (see [`Backend::overlay6`]).
    pub overlay6: Option<u32>,
    /// Routes learned over BGP (prefix, next hop), for the bgp backend.
    pub learned: Vec<(ipnet::Ipv4Net, Ipv4Addr)>,
}

/// A peer that gets no route, and why (published as-is in the node's status).
pub use weft_model::status::Unreachable;

/// The host state a backend wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendPlan {
    pub routes: Vec<Route>,
    /// Permanent neighbour entries on the overlay device.
    pub neighbours: Vec<Neighbour>,
    /// FDB entries on the overlay device.
    pub fdb: Vec<FdbEntry>,
    /// Neighbour and FDB entries on the IPv6 underlay's device ([`Backend::overlay6`]).
    pub neighbours6: Vec<Neighbour>,
    pub fdb6: Vec<FdbEntry>,
    /// The forwarding table of the user-space tunnel, for the backends that run one.
    pub tunnel: Option<weft_tunnel::Table>,
    pub unreachable: Vec<Unreachable>,
}

/// One data plane.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Published in this node's lease as `BackendData` (flannel's field).
    fn backend_data(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Published as `BackendV6Data` where the backend keeps a device of its own for
    /// IPv6 (flannel's layout for vxlan over an IPv6 underlay); nothing otherwise.
    fn backend_v6_data(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The MTU containers should use given the external interface's MTU.
    fn mtu(&self, external_mtu: u32) -> u32 {
        external_mtu - self.kind().mtu_overhead()
    }

    /// The overlay device this node needs, if the backend uses one. The agent creates or
    /// repairs it before planning and passes its index in [`NodeContext::overlay`].
    fn overlay(&self, _node: &NodeContext) -> Option<OverlaySpec> {
        None
    }

    /// A second device carrying the IPv6 subnets over the IPv6 underlay, where the
    /// backend keeps one (vxlan in a dual-stack network on a node with a public IPv6
    /// address: flannel's `flannel-v6.<VNI>`). The agent makes it after [`Backend::overlay`]
    /// and passes its index in [`NodeContext::overlay6`]; it removes one left over.
    fn overlay6(&self, _node: &NodeContext) -> Option<OverlaySpec> {
        None
    }

    /// Whether this backend may encapsulate some packets. An outer IPv4 header cannot
    /// describe a BIG TCP super-packet (over 64 KiB), so BIG TCP is only for backends
    /// that never encapsulate.
    fn encapsulates(&self) -> bool {
        true
    }

    /// The BGP backend, for the agent to run its speaker.
    fn bgp(&self) -> Option<&bgp::Bgp> {
        None
    }

    /// The wire format of the user-space tunnel this backend runs, if it runs one.
    fn user_space_encap(&self) -> Option<weft_tunnel::Encap> {
        None
    }

    /// The UDP port encapsulated traffic arrives on, if any: only member nodes may use it.
    fn encap_port(&self) -> Option<u16> {
        None
    }

    /// What the host should look like with these peers (every lease, our own included).
    fn plan(&self, node: &NodeContext, peers: &[Lease]) -> BackendPlan;
}

/// Node-local settings a backend needs besides the network config.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub public_ip: Ipv4Addr,
    /// The node's public IPv6 address in a dual-stack network, if it has one.
    pub public_ipv6: Option<std::net::Ipv6Addr>,
    /// Turn TX checksum offload off on the overlay device.
    pub tx_checksum_off: bool,
    /// Run IP-in-IP in user space (the kernel has no `ipip` module, or the operator asked).
    pub ipip_user_space: bool,
}

/// The backend for a validated config: every [`BackendKind`] has one, and the config's
/// validation already refused options a backend cannot take.
pub fn build(cfg: &NetworkConfig, settings: &BackendSettings) -> Box<dyn Backend> {
    match cfg.backend {
        BackendKind::HostGw => Box::new(hostgw::HostGw),
        BackendKind::Vxlan => Box::new(vxlan::Vxlan::new(cfg, settings)),
        BackendKind::Udp => Box::new(tunnel::UserTunnel::udp(cfg)),
        BackendKind::Ipip if settings.ipip_user_space => Box::new(tunnel::UserTunnel::ipip(cfg)),
        BackendKind::Ipip => Box::new(ipip::KernelIpip::new(cfg)),
        BackendKind::Bgp => Box::new(bgp::Bgp::new(cfg, settings)),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A node and leases for the backends' unit tests.
    use super::*;
    use weft_model::LeaseAttrs;

    pub fn lease(subnet: &str, ip: &str, backend: &str) -> Lease {
        Lease {
            subnet: subnet.parse().unwrap(),
            ipv6_subnet: None,
            attrs: LeaseAttrs {
                labels: Default::default(),
                public_ip: ip.parse().unwrap(),
                public_ipv6: None,
                backend_type: backend.into(),
                backend_data: serde_json::Value::Null,
                backend_v6_data: serde_json::Value::Null,
            },
            store_lease: Some(1),
            mod_revision: 1,
        }
    }

    /// A block of pool `p` held by `node`, with addresses (`ip`, used on `node`).
    pub fn block(cidr: &str, node: &str, allocs: &[(&str, &str)]) -> weft_model::blocks::Block {
        let claimed = weft_model::blocks::Block::claimed(
            cidr.parse().unwrap(),
            "p".into(),
            node.parse().unwrap(),
        );
        allocs.iter().fold(claimed, |b, (ip, n)| {
            b.taking(ip.parse().unwrap(), "h", n.parse().unwrap())
        })
    }

    /// The settings of node 192.168.1.1.
    pub fn settings() -> BackendSettings {
        BackendSettings {
            public_ip: "192.168.1.1".parse().unwrap(),
            public_ipv6: None,
            tx_checksum_off: false,
            ipip_user_space: false,
        }
    }

    /// A validated config from JSON.
    pub fn cfg(json: &str) -> NetworkConfig {
        NetworkConfig::parse(json.as_bytes()).unwrap()
    }

    /// Node 192.168.1.1 on eth0 (#7, 192.168.1.0/24) holding 10.244.1.0/24.
    pub fn node(backend: &str) -> NodeContext {
        NodeContext {
            external: weft_plan::iface::ExternalInterface {
                index: 7,
                name: "eth0".into(),
                mtu: 1500,
                addr: "192.168.1.1".parse().unwrap(),
                network: "192.168.1.0/24".parse().unwrap(),
                ipv6: None,
            },
            lease: lease("10.244.1.0/24", "192.168.1.1", backend),
            overlay: None,
            overlay6: None,
            learned: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{cfg, settings};
    use super::*;

    #[test]
    fn only_routing_backends_never_encapsulate() {
        let encapsulates = |backend: &str| {
            let json = format!(r#"{{"Network":"10.244.0.0/16","Backend":{backend}}}"#);
            build(&cfg(&json), &settings()).encapsulates()
        };
        assert!(!encapsulates(r#"{"Type":"host-gw"}"#));
        assert!(!encapsulates(r#"{"Type":"bgp"}"#));
        assert!(encapsulates(r#"{"Type":"bgp","CrossSubnet":"vxlan"}"#));
        assert!(encapsulates(r#"{"Type":"vxlan"}"#));
        assert!(encapsulates(r#"{"Type":"vxlan","DirectRouting":true}"#));
        assert!(encapsulates(r#"{"Type":"udp"}"#));
        assert!(encapsulates(r#"{"Type":"ipip"}"#));
    }
}
