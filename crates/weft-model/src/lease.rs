//! A node's claim on a subnet, stored in flannel's format at `<prefix>/subnets/<key name>`:
//! `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{...}}`.

use std::net::Ipv4Addr;

use crate::{LeaseId, Revision};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// What a lease says about its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    #[serde(rename = "PublicIP")]
    pub public_ip: Ipv4Addr,
    #[serde(rename = "PublicIPv6", default)]
    pub public_ipv6: Option<std::net::Ipv6Addr>,
    #[serde(rename = "BackendType", default)]
    pub backend_type: String,
    /// Per-backend data (VXLAN's VTEP MAC, for example); `null` for host-gw.
    #[serde(rename = "BackendData", default)]
    pub backend_data: serde_json::Value,
    /// The backend's data for the IPv6 side where it keeps a device of its own
    /// (flannel's vxlan over an IPv6 underlay: `flannel-v6.1`'s VTEP MAC); left out
    /// otherwise, as flannel leaves it out.
    #[serde(
        rename = "BackendV6Data",
        default,
        skip_serializing_if = "serde_json::Value::is_null"
    )]
    pub backend_v6_data: serde_json::Value,
    /// The node's labels (`--node-labels`), which peer and route reflector selectors
    /// choose by; left out when there are none, so a lease without labels is byte for
    /// byte flannel's.
    #[serde(
        rename = "Labels",
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub labels: crate::selector::NodeLabels,
}

impl LeaseAttrs {
    /// Whether the node behind this lease runs `kind`, read as flannel writes it:
    /// flannel's udp backend leaves `BackendType` out (`{"PublicIP":…,"PublicIPv6":null}`,
    /// still so in current flannel), so in a udp network an empty type is udp.
    pub fn runs(&self, kind: crate::BackendKind) -> bool {
        self.backend_type == kind.name()
            || (self.backend_type.is_empty() && kind == crate::BackendKind::Udp)
    }

    /// Why a node running `kind` cannot route to this lease's node, if it cannot for
    /// its backend: another backend, or a reservation nobody has taken yet.
    pub fn backend_mismatch(&self, kind: crate::BackendKind) -> Option<String> {
        if self.runs(kind) {
            None
        } else if self.backend_type.is_empty() {
            Some(format!(
                "reserved for {}, which has not taken it yet (no backend type)",
                self.public_ip
            ))
        } else {
            Some(format!(
                "peer runs backend {:?}, not {}",
                self.backend_type,
                kind.name()
            ))
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("lease attributes serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A lease as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub subnet: Ipv4Net,
    /// The node's IPv6 subnet in a dual-stack network (flannel keeps it in the key:
    /// `10.244.1.0-24&fd00:10:244:1::-64`).
    pub ipv6_subnet: Option<Ipv6Net>,
    pub attrs: LeaseAttrs,
    /// The store lease behind the TTL; `None` for a reservation, which never expires.
    pub store_lease: Option<LeaseId>,
    /// For compare-and-swap on renewal.
    pub mod_revision: Revision,
}

impl Lease {
    pub fn is_reservation(&self) -> bool {
        self.store_lease.is_none()
    }

    /// The lease's key name under `subnets/` (both families' subnets where it has two).
    pub fn key_name(&self) -> String {
        crate::pool::lease_key_name(&self.subnet, self.ipv6_subnet.as_ref())
    }
}
