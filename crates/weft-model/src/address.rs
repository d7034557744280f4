//! A single address a node holds from outside its own subnet, as stored.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Who holds a claimed address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressClaim {
    /// The holding node's public IP (its BGP next hop).
    #[serde(rename = "Node")]
    pub node: Ipv4Addr,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
}
