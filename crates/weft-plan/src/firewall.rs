//! What the node's firewall must do, as a value: the kernel side renders it as one
//! nftables table and loads it atomically.

use ipnet::Ipv4Net;

/// What the rules must do.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallPlan {
    /// The whole cluster network.
    pub network: Ipv4Net,
    /// This node's subnet.
    pub local_subnet: Ipv4Net,
    /// Masquerade traffic leaving the cluster network (flannel's `--ip-masq`).
    pub ip_masq: bool,
    /// Accept encapsulated traffic only from member nodes.
    pub encap: Option<EncapFilter>,
}

/// Drops encapsulated packets (UDP to `port`) whose source is not a current node.
#[derive(Debug, Clone, PartialEq)]
pub struct EncapFilter {
    pub port: u16,
    /// Every node's public IP, sorted (the rendering must be deterministic).
    pub members: Vec<std::net::Ipv4Addr>,
}
