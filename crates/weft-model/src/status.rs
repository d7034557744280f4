//! What an agent publishes about its own view of the network, for `weftctl leases`,
//! `diagnose` and `ipam check`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// What an agent reports about its own view, for `weftctl leases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    #[serde(rename = "PublicIP")]
    pub public_ip: Option<Ipv4Addr>,
    #[serde(rename = "Backend")]
    pub backend: String,
    /// Peers this node cannot route to, with the reason.
    #[serde(rename = "Unreachable", default)]
    pub unreachable: Vec<Unreachable>,
    /// Block IPAM: addresses used on this node whose container interface has been
    /// gone for a while (a killed ADD, a missed DEL), for `weftctl ipam check`.
    #[serde(rename = "Orphans", default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<Orphan>,
    /// The fingerprint of the network policy rules this node's table holds (`None`:
    /// none loaded yet): `weftctl policy apply` waits until every node's equals the
    /// fingerprint of the policies in the store. It changes only with the rules, not
    /// with each endpoint, so publishing it costs a write per policy change.
    #[serde(rename = "Policy", default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// An address recorded in a block on this node with no container interface for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    #[serde(rename = "IP")]
    pub ip: Ipv4Addr,
    #[serde(rename = "Handle")]
    pub handle: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unreachable {
    /// The peer's subnet of the family that has no route (its IPv6 subnet where only
    /// IPv6 cannot be carried).
    #[serde(rename = "Subnet")]
    pub subnet: ipnet::IpNet,
    #[serde(rename = "Reason")]
    pub reason: String,
}
