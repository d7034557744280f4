//! A named overlay network's segment on one host (Docker overlay's model): a bridge the
//! local containers' veths are ports of, and a VXLAN device on it that carries the
//! segment to the other hosts. The VXLAN device learns nothing and floods nothing: every
//! remote container is a static FDB entry (its MAC behind its host's address) and a
//! static neighbour entry the device answers ARP from (`proxy`), both from the store.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::neigh::{FdbEntry, Neighbour};

/// Names of a segment's links start with these; Weft deletes those it no longer plans.
pub const BRIDGE_PREFIX: &str = "weftbr-";
pub const VXLAN_PREFIX: &str = "weftvx-";

/// The UDP port of named overlay networks (IANA's VXLAN port, as Docker's overlay).
pub const SEGMENT_PORT: u16 = 4789;

/// One named overlay network on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    /// The network's name (for logs).
    pub network: String,
    pub vni: u32,
    /// The local VTEP address (the node's public IP).
    pub local: Ipv4Addr,
    /// The underlay interface.
    pub underlay: u32,
    /// The MTU of the bridge, the VXLAN device and the containers' links.
    pub mtu: u32,
    /// The gateway the bridge holds (the same on every host), with the subnet's prefix
    /// length; `None` for an internal network, which has no way out.
    pub gateway: Option<Ipv4Net>,
}

impl SegmentSpec {
    pub fn bridge(&self) -> String {
        format!("{BRIDGE_PREFIX}{}", self.vni)
    }

    pub fn vxlan(&self) -> String {
        format!("{VXLAN_PREFIX}{}", self.vni)
    }
}

/// A segment as planned: its links and the entries for every remote container on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlan {
    pub spec: SegmentSpec,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<FdbEntry>,
}

/// The VNI a segment link's name carries, if it is one.
pub fn segment_vni(name: &str) -> Option<u32> {
    name.strip_prefix(BRIDGE_PREFIX)
        .or_else(|| name.strip_prefix(VXLAN_PREFIX))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_and_say_their_vni() {
        let s = SegmentSpec {
            network: "blue".into(),
            vni: super::super::link::MAX_NAMED_VNI,
            local: "192.168.1.1".parse().unwrap(),
            underlay: 2,
            mtu: 1450,
            gateway: None,
        };
        assert!(s.bridge().len() <= 15 && s.vxlan().len() <= 15, "IFNAMSIZ");
        assert_eq!(segment_vni(&s.vxlan()), Some(s.vni));
        assert_eq!(segment_vni("weft.1"), None);
    }
}
