//! Links Weft owns, described as values. Their names start with `weft` (the VXLAN device
//! is `weft.<VNI>`), and nothing else is ever created, changed or deleted.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::mac::MacAddr;

/// The largest VXLAN identifier (24 bits).
pub const MAX_NAMED_VNI: u32 = (1 << 24) - 1;

/// The VXLAN device as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    /// UDP destination port (8472 as flannel and the kernel default, or 4789).
    pub port: u16,
    /// The local VTEP address: the node's public IPv4 address, or its public IPv6 one
    /// for the IPv6 underlay's device (flannel's `flannel-v6.<VNI>`).
    pub local: std::net::IpAddr,
    /// The underlay interface the encapsulated packets leave by.
    pub underlay: u32,
    pub mac: MacAddr,
    pub mtu: u32,
    /// The address the device holds: this node's subnet's `.0`, as a /32 (the cluster
    /// network's device); `None` for a named network's, a bridge port with no address.
    pub address: Option<Ipv4Net>,
    /// Turn TX checksum offload off (the kernel bug that delays VXLAN traffic).
    pub tx_checksum_off: bool,
    /// The device answers ARP itself from its neighbour entries (named overlay
    /// networks: no ARP crosses the underlay).
    pub proxy: bool,
}

/// Weft's TUN device (`weft0`) as it should be. The user-space tunnel opens (and thereby
/// creates) it; the kernel side sets its MTU, state and address like any other link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunSpec {
    pub name: String,
    pub mtu: u32,
    /// This node's subnet's `.0`, as a /32 (source of ICMP errors and host traffic).
    pub address: Ipv4Net,
}

/// A one-to-many kernel IP-in-IP device (`ip link add NAME type ipip local LOCAL dev
/// UNDERLAY`): no fixed remote, the peer is each route's gateway (`onlink`). TTL is
/// inherited from the inner packet and path MTU discovery is on, the kernel defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipSpec {
    pub name: String,
    pub local: Ipv4Addr,
    pub underlay: u32,
    pub mtu: u32,
    pub address: Ipv4Net,
}

/// The overlay device a backend needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlaySpec {
    Vxlan(VxlanSpec),
    Tun(TunSpec),
    Ipip(IpipSpec),
}

impl OverlaySpec {
    pub fn name(&self) -> &str {
        match self {
            OverlaySpec::Vxlan(s) => &s.name,
            OverlaySpec::Tun(s) => &s.name,
            OverlaySpec::Ipip(s) => &s.name,
        }
    }

    /// The one address the device holds, if any.
    pub fn address(&self) -> Option<Ipv4Net> {
        match self {
            OverlaySpec::Vxlan(s) => s.address,
            OverlaySpec::Tun(s) => Some(s.address),
            OverlaySpec::Ipip(s) => Some(s.address),
        }
    }

    pub fn mtu(&self) -> u32 {
        match self {
            OverlaySpec::Vxlan(s) => s.mtu,
            OverlaySpec::Tun(s) => s.mtu,
            OverlaySpec::Ipip(s) => s.mtu,
        }
    }
}

/// What making a link match its spec took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    Unchanged,
    Created,
    /// Deleted and created again: a property that cannot be changed in place differed.
    Recreated(String),
    /// Changed in place (MTU, MAC, state, address).
    Updated(String),
}

impl LinkOutcome {
    /// `Updated` with what changed in place, or `Unchanged` when nothing did.
    pub fn updated(what: Vec<String>) -> LinkOutcome {
        if what.is_empty() {
            LinkOutcome::Unchanged
        } else {
            LinkOutcome::Updated(what.join(", "))
        }
    }
}

impl fmt::Display for LinkOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkOutcome::Unchanged => f.write_str("unchanged"),
            LinkOutcome::Created => f.write_str("created"),
            LinkOutcome::Recreated(why) => write!(f, "recreated ({why})"),
            LinkOutcome::Updated(what) => write!(f, "updated ({what})"),
        }
    }
}

/// The properties of an existing VXLAN link that matter to Weft.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VxlanState {
    pub index: u32,
    pub is_vxlan: bool,
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<std::net::IpAddr>,
    pub underlay: Option<u32>,
    pub learning: Option<bool>,
    pub proxy: Option<bool>,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub up: bool,
}

/// Why an existing link must be recreated, if it must (pure, tested).
pub fn must_recreate(spec: &VxlanSpec, have: &VxlanState) -> Option<String> {
    if !have.is_vxlan {
        return Some("not a vxlan device".into());
    }
    let mut why = Vec::new();
    if have.vni != Some(spec.vni) {
        why.push(format!("VNI {:?} != {}", have.vni, spec.vni));
    }
    if have.port != Some(spec.port) {
        why.push(format!("port {:?} != {}", have.port, spec.port));
    }
    if have.local != Some(spec.local) {
        why.push(format!("local {:?} != {}", have.local, spec.local));
    }
    if have.underlay != Some(spec.underlay) {
        why.push(format!(
            "underlay device {:?} != {}",
            have.underlay, spec.underlay
        ));
    }
    if have.learning != Some(false) {
        why.push("learning on".into());
    }
    if have.proxy.unwrap_or(false) != spec.proxy {
        why.push(format!("proxy {:?} != {}", have.proxy, spec.proxy));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VxlanSpec {
        VxlanSpec {
            name: "weft.1".into(),
            vni: 1,
            port: 8472,
            local: "192.168.1.1".parse().unwrap(),
            underlay: 2,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            mtu: 1450,
            address: Some("10.244.1.0/32".parse().unwrap()),
            tx_checksum_off: false,
            proxy: false,
        }
    }

    #[test]
    fn recreate_only_for_fixed_properties() {
        let s = spec();
        let ok = VxlanState {
            index: 9,
            is_vxlan: true,
            vni: Some(1),
            port: Some(8472),
            local: Some(s.local),
            underlay: Some(2),
            learning: Some(false),
            proxy: Some(false),
            mac: Some(s.mac),
            mtu: 1400,
            up: false,
        };
        assert_eq!(
            must_recreate(&s, &ok),
            None,
            "MTU and state change in place"
        );
        let moved = VxlanState {
            local: Some("192.168.1.9".parse().unwrap()),
            ..ok.clone()
        };
        assert!(must_recreate(&s, &moved).unwrap().contains("local"));
        let other_vni = VxlanState {
            vni: Some(7),
            learning: Some(true),
            ..ok
        };
        let why = must_recreate(&s, &other_vni).unwrap();
        assert!(why.contains("VNI") && why.contains("learning"), "{why}");
    }
}
