//! Names and addresses in a lab. Predictable on purpose, so an operator can
//! `ip netns exec weft-h2 ip route` without asking the lab.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The underlay network all hosts share (one L2 segment, as host-gw needs).
pub const UNDERLAY_PREFIX: u8 = 24;
/// The bridge's own address in the underlay namespace: the hosts' default gateway and
/// where the lab's etcd listens.
pub const UNDERLAY_GW: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 254);
pub const ETCD_PORT: u16 = 2379;
/// Every lab agent serves `/healthz` and `/metrics` on its host's 127.0.0.1 at this port.
pub const HEALTHZ_PORT: u16 = 9462;
/// Hosts are numbered 1..=MAX_HOSTS.
pub const MAX_HOSTS: u32 = 200;

/// The namespace of etcd member `n` (1-based) of a lab run with `--etcd-members`.
pub fn etcd_member_ns(lab: &str, n: u32) -> String {
    format!("{lab}-e{n}")
}

/// Etcd member `n`'s address on the first underlay subnet: `192.168.77.24<n>`, above
/// every host's.
pub fn etcd_member_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, 240 + n as u8)
}

pub fn underlay_ns(lab: &str) -> String {
    format!("{lab}-ul")
}

pub fn host_ns(lab: &str, i: u32) -> String {
    format!("{lab}-h{i}")
}

pub fn container_ns(lab: &str, i: u32) -> String {
    format!("{lab}-c{i}")
}

/// Which underlay subnet host `i` sits on when the lab has `subnets` of them.
pub fn underlay_of(i: u32, subnets: u32) -> u32 {
    (i - 1) % subnets.max(1)
}

/// Underlay subnet `s`'s gateway: the underlay namespace's address on bridge `br<s>`.
/// Subnet 0's is [`UNDERLAY_GW`].
pub fn underlay_gw(s: u32) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77 + s as u8, 254)
}

/// Host `i`'s underlay address: `192.168.<77 + its subnet>.<i>`.
pub fn host_ip(i: u32, subnets: u32) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77 + underlay_of(i, subnets) as u8, i as u8)
}

/// The IPv6 underlay's prefix length (dual-stack labs).
pub const UNDERLAY_PREFIX6: u8 = 64;

/// Underlay subnet `s`'s IPv6 gateway in a dual-stack lab: the IPv4 one's digits in an
/// IPv6 address, `192.168.77.254` -> `fd00:192:168:77::fe` (digits read as hex, so
/// the two are told apart at a glance but read alike).
pub fn underlay_gw6(s: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x192, 0x168, 0x77 + s as u16, 0, 0, 0, 0xfe)
}

/// Host `i`'s IPv6 underlay address: `fd00:192:168:<77 + its subnet>::<i in hex>`.
pub fn host_ip6(i: u32, subnets: u32) -> Ipv6Addr {
    let s = underlay_of(i, subnets) as u16;
    Ipv6Addr::new(0xfd00, 0x192, 0x168, 0x77 + s, 0, 0, 0, i as u16)
}

/// A dual-stack lab's IPv6 cluster network.
pub const NETWORK6: &str = "fd00:10:244::/56";

/// The bridge of underlay subnet `s` in the underlay namespace.
pub fn underlay_bridge(s: u32) -> String {
    format!("br{s}")
}

/// At most this many underlay subnets (192.168.77.0/24 to 192.168.84.0/24).
pub const MAX_SUBNETS: u32 = 8;

/// The link in the underlay namespace that leads to host `i`.
pub fn underlay_port(i: u32) -> String {
    format!("h{i}")
}

/// Parses `h2`, `c2`, `ul` (or a full namespace name of this lab) into a namespace.
pub fn node_ns(lab: &str, node: &str) -> Option<String> {
    let short = node.strip_prefix(&format!("{lab}-")).unwrap_or(node);
    if short == "ul" {
        return Some(underlay_ns(lab));
    }
    let (kind, num) = short.split_at(1.min(short.len()));
    let i: u32 = num.parse().ok()?;
    match kind {
        "h" => Some(host_ns(lab, i)),
        "c" => Some(container_ns(lab, i)),
        _ => None,
    }
}

/// Host number of `h2` / `LAB-h2`.
pub fn host_index(lab: &str, node: &str) -> Option<u32> {
    let short = node.strip_prefix(&format!("{lab}-")).unwrap_or(node);
    short.strip_prefix('h')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert_eq!(node_ns("weft", "h2").as_deref(), Some("weft-h2"));
        assert_eq!(node_ns("weft", "weft-c3").as_deref(), Some("weft-c3"));
        assert_eq!(node_ns("weft", "ul").as_deref(), Some("weft-ul"));
        assert_eq!(node_ns("weft", "x1"), None);
        assert_eq!(host_index("lab", "lab-h12"), Some(12));
        assert_eq!(host_ip(3, 1).to_string(), "192.168.77.3");
        assert_eq!(host_ip(4, 2).to_string(), "192.168.78.4");
        assert_eq!(host_ip(5, 2).to_string(), "192.168.77.5");
        assert_eq!(underlay_gw(1).to_string(), "192.168.78.254");
        assert_eq!(host_ip6(3, 1).to_string(), "fd00:192:168:77::3");
        assert_eq!(host_ip6(4, 2).to_string(), "fd00:192:168:78::4");
        assert_eq!(underlay_gw6(0).to_string(), "fd00:192:168:77::fe");
    }
}
