//! Why a planner gives a peer, a block or a container no route: each reason a variant,
//! published as its message in the node's status (`weftctl leases`, `diagnose`).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoRoute {
    #[error("peer claims this node's own public IP {0} (stale lease?)")]
    OwnAddress(IpAddr),
    #[error("peer {ip} is not on the same L2 subnet as {iface} ({network}); host-gw needs one L2 segment")]
    OffSegment {
        ip: IpAddr,
        iface: String,
        network: IpNet,
    },
    #[error("peer published no IPv6 address (PublicIPv6); its IPv6 subnet needs one to be routed directly")]
    NoPeerIpv6,
    #[error("{iface} has no global IPv6 address; host-gw routes IPv6 subnets only between nodes on one IPv6 segment")]
    NoOwnIpv6 { iface: String },
    #[error("peer uses VNI {peer}, this node {ours}")]
    VniMismatch { peer: u64, ours: u32 },
    #[error("peer's lease has no VtepMAC")]
    NoVtepMac,
    #[error("peer's VtepMAC: {0}")]
    BadVtepMac(weft_plan::mac::BadMac),
    #[error("{0} is no Weft node to tunnel to")]
    NotANode(Ipv4Addr),
    #[error("node {0} holds no lease that stands")]
    NoLease(Ipv4Addr),
    #[error("the backend has no route of its own to node {node} ({subnet}); routed networks need host-gw, vxlan or bgp")]
    NoBackendRoute { node: Ipv4Addr, subnet: Ipv4Net },
}
