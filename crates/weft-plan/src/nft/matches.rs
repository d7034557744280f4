//! What a rule matches: addresses, interfaces, connection state, protocol, ports.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// Which address of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `ip saddr` (`ip6 saddr` in an `ip6` table)
    Source,
    /// `ip daddr` (`ip6 daddr`)
    Destination,
}

/// Which interface of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfaceSide {
    /// `iifname`: the one it came in on.
    In,
    /// `oifname`: the one it leaves by.
    Out,
}

/// What an address is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrMatch {
    /// Networks, written inline: the fewest prefixes that cover the same addresses, in
    /// order (the kernel merges an anonymous set's adjacent prefixes into ranges, and
    /// a range read back is split into these same prefixes). One network is written
    /// bare (`10.0.0.0/8`, a /32 or /128 as an address), more as an anonymous set
    /// (`{ a, b }`). Made by [`AddrMatch::nets`], which keeps that form. All of the
    /// table's family: an `ip6` table's rule matches IPv6 networks.
    Nets(BTreeSet<IpNet>),
    /// A named set of the table (`@s_…`).
    Set(String),
}

impl AddrMatch {
    pub fn net(net: impl Into<IpNet>) -> AddrMatch {
        AddrMatch::nets([net.into()])
    }

    pub fn nets<N: Into<IpNet>>(nets: impl IntoIterator<Item = N>) -> AddrMatch {
        let nets: Vec<IpNet> = nets.into_iter().map(Into::into).collect();
        AddrMatch::Nets(IpNet::aggregate(&nets).into_iter().collect())
    }

    /// The addresses from `first` to `last` (one family), as the fewest prefixes.
    pub fn range(first: IpAddr, last: IpAddr) -> Vec<IpNet> {
        match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                ipnet::Ipv4Subnets::new(a, b, 0).map(Into::into).collect()
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                ipnet::Ipv6Subnets::new(a, b, 0).map(Into::into).collect()
            }
            _ => Vec::new(),
        }
    }

    pub fn addrs<A: Into<IpAddr>>(addrs: impl IntoIterator<Item = A>) -> AddrMatch {
        AddrMatch::nets(addrs.into_iter().map(|a| IpNet::from(a.into())))
    }
}

/// A transport protocol, as `meta l4proto` and port matches name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    /// ICMP for IPv6 (`ipv6-icmp`, 58): only ever in an `ip6` table.
    Icmpv6,
    /// By number: what a protocol nft has no name for is written as.
    Number(u8),
}

impl Proto {
    /// Kubernetes' and Calico's spelling (`TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6`), any
    /// case, or nft's (`ipv6-icmp`).
    pub fn from_name(name: &str) -> Option<Proto> {
        Some(match name.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            "icmp" => Proto::Icmp,
            "icmpv6" | "ipv6-icmp" => Proto::Icmpv6,
            n => Proto::Number(n.parse().ok()?),
        })
    }

    /// The protocol's number (what the kernel keeps).
    pub fn number(&self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Number(n) => *n,
        }
    }

    /// The named protocol for a number, if nft has a name for it.
    pub fn from_number(n: u8) -> Proto {
        [
            Proto::Tcp,
            Proto::Udp,
            Proto::Sctp,
            Proto::Icmp,
            Proto::Icmpv6,
        ]
        .into_iter()
        .find(|p| p.number() == n)
        .unwrap_or(Proto::Number(n))
    }
}

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn one(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// `first..=last`, or one port when `last` is not above `first`.
    pub fn new(first: u16, last: u16) -> PortRange {
        PortRange {
            first,
            last: last.max(first),
        }
    }
}

/// One match of a rule; a rule matches when all of its matches do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `ip saddr 10.0.0.0/8`, `ip daddr != { … }`, `ip saddr @set`.
    Addr {
        side: Side,
        negated: bool,
        value: AddrMatch,
    },
    /// `iifname @set`, `oifname @set`.
    Iface { side: IfaceSide, set: String },
    /// `ct state established,related`.
    EstablishedOrRelated,
    /// `meta l4proto tcp`.
    Protocol(Proto),
    /// `tcp dport 80`, `udp dport 1000-2000`, `sctp dport { 80, 443 }`.
    DestinationPort {
        proto: Proto,
        ports: BTreeSet<PortRange>,
    },
    /// `icmp type 8` (listed back by name: `echo-request`); in an `ip6` table the
    /// ICMPv6 type (`icmpv6 type 128`).
    IcmpType(u8),
    /// `fib daddr type local`: addressed to one of this host's own addresses.
    LocalDestination,
    /// `ct status dnat`: a connection whose destination was translated (a published
    /// port's).
    Dnatted,
    /// `meta mark & BIT == BIT`: a bit of the packet's mark set, by a table that saw
    /// the packet earlier on this host.
    Mark(u32),
}

impl Match {
    pub fn addr(side: Side, value: AddrMatch) -> Match {
        Match::Addr {
            side,
            negated: false,
            value,
        }
    }

    pub fn not_addr(side: Side, value: AddrMatch) -> Match {
        Match::Addr {
            side,
            negated: true,
            value,
        }
    }

    pub fn saddr(value: AddrMatch) -> Match {
        Match::addr(Side::Source, value)
    }

    pub fn daddr(value: AddrMatch) -> Match {
        Match::addr(Side::Destination, value)
    }

    pub fn dports(proto: Proto, ports: impl IntoIterator<Item = PortRange>) -> Match {
        Match::DestinationPort {
            proto,
            ports: ports.into_iter().collect(),
        }
    }
}

/// ICMPv6 type names as nft lists them (`icmpv6 type echo-request`).
pub const ICMPV6_TYPES: &[(u8, &str)] = &[
    (1, "destination-unreachable"),
    (2, "packet-too-big"),
    (3, "time-exceeded"),
    (4, "parameter-problem"),
    (128, "echo-request"),
    (129, "echo-reply"),
    (130, "mld-listener-query"),
    (131, "mld-listener-report"),
    (132, "mld-listener-done"),
    (133, "nd-router-solicit"),
    (134, "nd-router-advert"),
    (135, "nd-neighbor-solicit"),
    (136, "nd-neighbor-advert"),
    (137, "nd-redirect"),
    (138, "router-renumbering"),
    (141, "ind-neighbor-solicit"),
    (142, "ind-neighbor-advert"),
    (143, "mld2-listener-report"),
];

/// ICMP type names as nft lists them (`icmp type echo-request`).
pub const ICMP_TYPES: &[(u8, &str)] = &[
    (0, "echo-reply"),
    (3, "destination-unreachable"),
    (4, "source-quench"),
    (5, "redirect"),
    (8, "echo-request"),
    (9, "router-advertisement"),
    (10, "router-solicitation"),
    (11, "time-exceeded"),
    (12, "parameter-problem"),
    (13, "timestamp-request"),
    (14, "timestamp-reply"),
    (15, "info-request"),
    (16, "info-reply"),
    (17, "address-mask-request"),
    (18, "address-mask-reply"),
];
