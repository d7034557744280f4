//! Names and addresses in a lab. Predictable on purpose, so an operator can
//! `ip netns exec weft-h2 ip route` without asking the lab.

use std::net::Ipv4Addr;

/// The underlay network all hosts share (one L2 segment, as host-gw needs).
pub const UNDERLAY_PREFIX: u8 = 24;
/// The bridge's own address in the underlay namespace: the hosts' default gateway and
/// where the lab's etcd listens.
pub const UNDERLAY_GW: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 254);
pub const ETCD_PORT: u16 = 2379;
/// Hosts are numbered 1..=MAX_HOSTS.
pub const MAX_HOSTS: u32 = 200;
/// The container's interface on the host side.
pub const HOST_CTR_LINK: &str = "ctr0";

pub fn underlay_ns(lab: &str) -> String {
    format!("{lab}-ul")
}

pub fn host_ns(lab: &str, i: u32) -> String {
    format!("{lab}-h{i}")
}

pub fn container_ns(lab: &str, i: u32) -> String {
    format!("{lab}-c{i}")
}

pub fn host_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, i as u8)
}

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
        assert_eq!(host_ip(3).to_string(), "192.168.77.3");
    }
}
