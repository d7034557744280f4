//! Addresses on Weft's own links. An overlay device holds exactly one: its node's
//! subnet `.0` as a /32 (flannel's layout), so anything else found on it goes.

use ipnet::Ipv4Net;

use crate::diff::{diff, Change};

/// The changes that make `current` (a link's IPv4 addresses) equal to `desired`, keyed
/// by address and prefix length: the kernel holds `10.244.1.0/32` and `10.244.1.0/24`
/// as two addresses, so a new prefix length is a removal and an addition.
pub fn plan_addresses(desired: &[Ipv4Net], current: &[Ipv4Net]) -> Vec<Change<Ipv4Net>> {
    diff(
        desired.iter().map(|a| (*a, *a)),
        current.iter().map(|a| (*a, *a)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_address() {
        let want: Ipv4Net = "10.244.1.0/32".parse().unwrap();
        let other_len: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let stale: Ipv4Net = "10.244.9.0/32".parse().unwrap();
        assert!(plan_addresses(&[want], &[want]).is_empty());
        assert_eq!(
            plan_addresses(&[want], &[other_len, stale]),
            [
                Change::Remove(other_len),
                Change::Remove(stale),
                Change::Add(want)
            ]
        );
    }
}
