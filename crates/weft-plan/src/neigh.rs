//! Neighbour and FDB entries Weft programs on its overlay device.
//!
//! For VXLAN (flannel's layout) each remote node needs both: the neighbour entry resolves
//! the remote subnet's `.0` (the next hop of the onlink route) to the remote VTEP's MAC,
//! and the FDB entry tells the VXLAN device which underlay IP that MAC lives behind.
//! Both are permanent, and every permanent entry on Weft's own device is Weft's.

use std::net::IpAddr;

use crate::diff::{diff, Change};
use crate::mac::MacAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neighbour {
    /// Either family: in a dual-stack network the peer's IPv6 subnet's first address
    /// resolves to the same VTEP MAC as its IPv4 one.
    pub ip: IpAddr,
    pub mac: MacAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: MacAddr,
    /// The remote VTEP's underlay address.
    pub dst: IpAddr,
}

/// The changes that turn `current` into `desired` neighbour entries, keyed by IP (the
/// kernel holds one entry per address on a device). The agent applies them; `weftctl
/// diagnose` reports them: both must key alike.
pub fn plan_neighbours(desired: &[Neighbour], current: &[Neighbour]) -> Vec<Change<Neighbour>> {
    diff(
        desired.iter().map(|n| (n.ip, *n)),
        current.iter().map(|n| (n.ip, *n)),
    )
}

/// The same for FDB entries, keyed by MAC (one remote VTEP per MAC).
pub fn plan_fdb(desired: &[FdbEntry], current: &[FdbEntry]) -> Vec<Change<FdbEntry>> {
    diff(
        desired.iter().map(|e| (e.mac, *e)),
        current.iter().map(|e| (e.mac, *e)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_by_ip_and_by_mac() {
        let (m1, m2): (MacAddr, MacAddr) = (
            "02:00:00:00:00:01".parse().unwrap(),
            "02:00:00:00:00:02".parse().unwrap(),
        );
        let n = |mac| Neighbour {
            ip: "10.244.2.0".parse().unwrap(),
            mac,
        };
        // A new MAC for the same address replaces the entry.
        assert_eq!(
            plan_neighbours(&[n(m2)], &[n(m1)]),
            [Change::Replace(n(m2))]
        );
        let e = |dst: &str| FdbEntry {
            mac: m1,
            dst: dst.parse().unwrap(),
        };
        // A new underlay address for the same MAC replaces the entry.
        assert_eq!(
            plan_fdb(&[e("192.168.77.3")], &[e("192.168.77.2")]),
            [Change::Replace(e("192.168.77.3"))]
        );
        assert!(plan_fdb(&[e("192.168.77.2")], &[e("192.168.77.2")]).is_empty());
    }
}
