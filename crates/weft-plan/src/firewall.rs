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
    /// Named networks (Docker's): each reaches no other, nor the cluster network.
    pub isolated: Vec<IsolatedNet>,
    /// Block IPAM's pools: forwarded like the cluster network.
    pub pools: Vec<PoolRule>,
}

/// A pool as the firewall sees it (Calico's IP pool with `natOutgoing`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolRule {
    pub cidr: Ipv4Net,
    /// Masquerade what leaves the pools and the cluster network for the outside.
    pub nat_outgoing: bool,
}

/// A named network's subnet as the firewall sees it. No connection may start from it
/// into another named network or the cluster network, nor from those into it (Docker's
/// isolation between networks); replies to connections it may make pass.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IsolatedNet {
    pub subnet: Ipv4Net,
    /// No way out at all (Docker's `--internal`): only its own subnet.
    pub internal: bool,
    /// Masquerade what leaves it for the outside (not `internal`).
    pub masquerade: bool,
}

/// Drops encapsulated packets (UDP to `port`) whose source is not a current node.
#[derive(Debug, Clone, PartialEq)]
pub struct EncapFilter {
    pub port: u16,
    /// Every node's public IP, sorted (the rendering must be deterministic).
    pub members: Vec<std::net::Ipv4Addr>,
}
