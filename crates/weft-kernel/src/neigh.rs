//! Neighbour and FDB entries Weft programs on its overlay device.
//!
//! For VXLAN (flannel's layout) each remote node needs both: the neighbour entry resolves
//! the remote subnet's `.0` (the next hop of the onlink route) to the remote VTEP's MAC,
//! and the FDB entry tells the VXLAN device which underlay IP that MAC lives behind.
//! Both are permanent, and every permanent entry on Weft's own device is Weft's.

use std::net::Ipv4Addr;

use crate::mac::MacAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: MacAddr,
    /// The remote VTEP's underlay address.
    pub dst: Ipv4Addr,
}
