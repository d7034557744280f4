//! BIG TCP for IPv4: GSO and GRO packets larger than 64 KiB on the links a container's
//! traffic crosses.
//!
//! A TCP socket builds super-packets as large as its route's device allows
//! (`gso_ipv4_max_size`, 64 KiB unless raised). Every further device a super-packet is
//! sent through checks the same limit and cuts anything larger into MTU-sized packets in
//! software, so the limit must be raised on *every* link of the path (container veth,
//! host bridge, external interface) or not at all; and never where a packet is
//! encapsulated, since an outer IPv4 header cannot describe more than 64 KiB (the
//! kernel then segments in software, which is far slower than no BIG TCP). Per-packet
//! costs of each hop are then paid a third as often; byte costs stay the same.

use netlink_packet_route::link::{LinkAttribute, LinkMessage};

/// The limit Weft asks for: 192 KiB, as Cilium uses for IPv4 BIG TCP.
pub const BIG_TCP_SIZE: u32 = 196_608;
/// The kernel's default (and the limit of an IPv4 packet's length field).
pub const LEGACY_SIZE: u32 = 65_536;

/// A link's IPv4 segmentation limits as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest super-packet the device (or its driver) can segment.
    pub tso_max: u32,
    pub gso_ipv4_max: u32,
    pub gro_ipv4_max: u32,
}

impl Limits {
    /// Reads the limits from a link dump; a kernel too old to report them has none.
    pub fn of(link: &LinkMessage) -> Option<Limits> {
        let (mut tso, mut gso, mut gro) = (None, None, None);
        for a in &link.attributes {
            match a {
                LinkAttribute::TsoMaxSize(v) => tso = Some(*v),
                LinkAttribute::GsoIpv4MaxSize(v) => gso = Some(*v),
                LinkAttribute::GroIpv4MaxSize(v) => gro = Some(*v),
                _ => {}
            }
        }
        Some(Limits {
            tso_max: tso?,
            gso_ipv4_max: gso?,
            gro_ipv4_max: gro?,
        })
    }

    /// The limit to set for `wanted`: capped by what the device can segment, never
    /// below the kernel's default.
    pub fn target(&self, wanted: u32) -> u32 {
        wanted.min(self.tso_max).max(LEGACY_SIZE)
    }

    /// Whether both limits are already at `target`.
    pub fn at(&self, target: u32) -> bool {
        self.gso_ipv4_max == target && self.gro_ipv4_max == target
    }
}

/// The attributes that set both IPv4 limits, on a new link or an existing one.
pub fn attributes(size: u32) -> [LinkAttribute; 2] {
    [
        LinkAttribute::GsoIpv4MaxSize(size),
        LinkAttribute::GroIpv4MaxSize(size),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.attributes = attrs;
        m
    }

    #[test]
    fn reads_the_three_limits() {
        let m = link(vec![
            LinkAttribute::Mtu(1500),
            LinkAttribute::TsoMaxSize(524_280),
            LinkAttribute::GsoIpv4MaxSize(65_536),
            LinkAttribute::GroIpv4MaxSize(65_536),
        ]);
        let l = Limits::of(&m).unwrap();
        assert_eq!(l.tso_max, 524_280);
        assert!(l.at(65_536));
        assert!(!l.at(BIG_TCP_SIZE));
        // An old kernel reports none of them.
        assert_eq!(Limits::of(&link(vec![LinkAttribute::Mtu(1500)])), None);
    }

    #[test]
    fn the_target_is_capped_by_the_device() {
        let l = |tso_max| Limits {
            tso_max,
            gso_ipv4_max: LEGACY_SIZE,
            gro_ipv4_max: LEGACY_SIZE,
        };
        assert_eq!(l(524_280).target(BIG_TCP_SIZE), BIG_TCP_SIZE);
        assert_eq!(l(131_072).target(BIG_TCP_SIZE), 131_072);
        // A NIC that cannot segment more than 64 KiB keeps the default.
        assert_eq!(l(65_536).target(BIG_TCP_SIZE), LEGACY_SIZE);
        assert_eq!(l(16_384).target(BIG_TCP_SIZE), LEGACY_SIZE);
        // Turning it off again.
        assert_eq!(l(524_280).target(LEGACY_SIZE), LEGACY_SIZE);
    }

    #[test]
    fn attributes_set_both_limits() {
        assert_eq!(
            attributes(BIG_TCP_SIZE),
            [
                LinkAttribute::GsoIpv4MaxSize(BIG_TCP_SIZE),
                LinkAttribute::GroIpv4MaxSize(BIG_TCP_SIZE)
            ]
        );
    }
}
