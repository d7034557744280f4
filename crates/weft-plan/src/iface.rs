//! Choosing the external interface: the one whose address peers use to reach this node.
//!
//! As flannel: `--iface` may name an interface, give one of its addresses, or (Weft's
//! addition, flannel's `--iface-regex`) a pattern matched against names and addresses;
//! several may be given and the first that fits wins. Without any, the interface of the
//! default route is used. The choice is a pure function of a snapshot of links,
//! addresses and the default route, so it is tested without a kernel.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use regex::Regex;
use thiserror::Error;

/// How the operator named the interface.
#[derive(Debug, Clone)]
pub enum IfaceSpec {
    Name(String),
    Address(Ipv4Addr),
    Pattern(Regex),
}

impl fmt::Display for IfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfaceSpec::Name(n) => write!(f, "name {n}"),
            IfaceSpec::Address(a) => write!(f, "address {a}"),
            IfaceSpec::Pattern(p) => write!(f, "pattern /{p}/"),
        }
    }
}

/// An `--iface` value that names nothing an interface could be.
#[derive(Debug, Error)]
pub enum BadIfaceSpec {
    #[error("bad interface pattern {given:?}: {source}")]
    Pattern { given: String, source: regex::Error },
    #[error("{0:?} is neither an IPv4 address, an interface name nor a pattern")]
    Neither(String),
}

impl std::str::FromStr for IfaceSpec {
    type Err = BadIfaceSpec;

    /// An IPv4 address, a plain interface name, or anything with regex
    /// metacharacters (`eth.*`, `^ens[0-9]+$`) as a pattern.
    fn from_str(s: &str) -> Result<Self, BadIfaceSpec> {
        if let Ok(ip) = s.parse() {
            return Ok(IfaceSpec::Address(ip));
        }
        if s.chars().any(|c| "*?[]^$+()|\\{}".contains(c)) {
            return Regex::new(s)
                .map(IfaceSpec::Pattern)
                .map_err(|source| BadIfaceSpec::Pattern {
                    given: s.to_owned(),
                    source,
                });
        }
        if s.is_empty() || s.len() > 15 || s.contains('/') || s.contains(char::is_whitespace) {
            return Err(BadIfaceSpec::Neither(s.to_owned()));
        }
        Ok(IfaceSpec::Name(s.to_owned()))
    }
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    pub mac: Option<crate::MacAddr>,
    /// The bridge this link is a port of, if any.
    pub controller: Option<u32>,
}

/// An IPv4 address on a link.
#[derive(Debug, Clone, PartialEq)]
pub struct AddrInfo {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// An IPv6 address on a link.
#[derive(Debug, Clone, PartialEq)]
pub struct Addr6Info {
    pub index: u32,
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl Addr6Info {
    /// Whether peers could reach this node at the address: not link-local, loopback or
    /// multicast (flannel's choice of the public IPv6 address alike).
    pub fn is_reachable(&self) -> bool {
        let a = self.addr;
        !(a.is_loopback() || a.is_multicast() || a.is_unspecified() || a.is_unicast_link_local())
    }
}

/// The chosen interface.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalInterface {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// The address peers reach this node at (unless `--public-ip` overrides it).
    pub addr: Ipv4Addr,
    /// The on-link network of `addr`: peers inside it are one L2 hop away.
    pub network: Ipv4Net,
    /// The interface's first reachable IPv6 address with its on-link prefix, where it
    /// has one ([`with_ipv6`]): the node's public IPv6 address unless `--public-ipv6`
    /// overrides it, and host-gw's test of which peers are one hop away over IPv6.
    pub ipv6: Option<Ipv6Net>,
}

/// `external` with its IPv6 address from a snapshot of the host's IPv6 addresses.
pub fn with_ipv6(mut external: ExternalInterface, addrs: &[Addr6Info]) -> ExternalInterface {
    external.ipv6 = addrs
        .iter()
        .find(|a| a.index == external.index && a.is_reachable())
        .and_then(|a| Ipv6Net::new(a.addr, a.prefix_len).ok());
    external
}

#[derive(Debug, Error, PartialEq)]
pub enum IfaceError {
    #[error("no interface matches {specs}; interfaces with IPv4 addresses here: {available}")]
    NoMatch { specs: String, available: String },
    #[error(
        "no default route to take the interface from; pass --iface (interfaces here: {available})"
    )]
    NoDefaultRoute { available: String },
    #[error("interface {name} (of the default route) has no IPv4 address; pass --iface")]
    NoAddress { name: String },
}

fn describe(links: &[LinkInfo], addrs: &[AddrInfo]) -> String {
    let list: Vec<String> = addrs
        .iter()
        .filter_map(|a| {
            let l = links.iter().find(|l| l.index == a.index)?;
            (!a.addr.is_loopback()).then(|| format!("{} ({}/{})", l.name, a.addr, a.prefix_len))
        })
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn external(link: &LinkInfo, a: &AddrInfo) -> ExternalInterface {
    ExternalInterface {
        index: link.index,
        name: link.name.clone(),
        mtu: link.mtu,
        addr: a.addr,
        network: Ipv4Net::new(a.addr, a.prefix_len)
            .expect("valid prefix")
            .trunc(),
        ipv6: None,
    }
}

/// Picks the external interface from a snapshot of the host.
/// A container interface's host-side veth name: stable, so DEL finds it and the agent
/// can tell whether a block address's container is still attached.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let h = crate::hash::fnv1a(container_id.bytes().chain([0]).chain(ifname.bytes()));
    format!("weft{:011x}", h & 0xfff_ffff_ffff)
}

pub fn choose(
    specs: &[IfaceSpec],
    links: &[LinkInfo],
    addrs: &[AddrInfo],
    default_route_dev: Option<u32>,
) -> Result<ExternalInterface, IfaceError> {
    let link_of = |index: u32| links.iter().find(|l| l.index == index);
    let first_addr = |index: u32| addrs.iter().find(|a| a.index == index);
    if specs.is_empty() {
        let available = describe(links, addrs);
        let index = default_route_dev.ok_or(IfaceError::NoDefaultRoute { available })?;
        let link = link_of(index).ok_or(IfaceError::NoAddress {
            name: format!("#{index}"),
        })?;
        let a = first_addr(index).ok_or(IfaceError::NoAddress {
            name: link.name.clone(),
        })?;
        return Ok(external(link, a));
    }
    for spec in specs {
        let found = match spec {
            IfaceSpec::Name(n) => links
                .iter()
                .find(|l| &l.name == n)
                .and_then(|l| Some((l, first_addr(l.index)?))),
            IfaceSpec::Address(ip) => addrs
                .iter()
                .find(|a| a.addr == *ip)
                .and_then(|a| Some((link_of(a.index)?, a))),
            IfaceSpec::Pattern(re) => {
                addrs
                    .iter()
                    .filter(|a| !a.addr.is_loopback())
                    .find_map(|a| {
                        let l = link_of(a.index)?;
                        (re.is_match(&l.name) || re.is_match(&a.addr.to_string())).then_some((l, a))
                    })
            }
        };
        if let Some((l, a)) = found {
            return Ok(external(l, a));
        }
    }
    Err(IfaceError::NoMatch {
        specs: specs
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        available: describe(links, addrs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> (Vec<LinkInfo>, Vec<AddrInfo>) {
        let links = vec![
            LinkInfo {
                index: 1,
                name: "lo".into(),
                mtu: 65536,
                up: true,
                mac: None,
                controller: None,
            },
            LinkInfo {
                index: 2,
                name: "eth0".into(),
                mtu: 1500,
                up: true,
                mac: None,
                controller: None,
            },
            LinkInfo {
                index: 3,
                name: "ens4".into(),
                mtu: 9000,
                up: true,
                mac: None,
                controller: None,
            },
        ];
        let addrs = vec![
            AddrInfo {
                index: 1,
                addr: "127.0.0.1".parse().unwrap(),
                prefix_len: 8,
            },
            AddrInfo {
                index: 2,
                addr: "192.168.1.10".parse().unwrap(),
                prefix_len: 24,
            },
            AddrInfo {
                index: 3,
                addr: "10.0.0.5".parse().unwrap(),
                prefix_len: 16,
            },
        ];
        (links, addrs)
    }

    fn spec(s: &str) -> IfaceSpec {
        s.parse().unwrap()
    }

    #[test]
    fn default_route_interface_when_nothing_given() {
        let (l, a) = host();
        let e = choose(&[], &l, &a, Some(3)).unwrap();
        assert_eq!(
            (e.name.as_str(), e.mtu, e.network.to_string()),
            ("ens4", 9000, "10.0.0.0/16".into())
        );
        assert!(matches!(
            choose(&[], &l, &a, None),
            Err(IfaceError::NoDefaultRoute { .. })
        ));
    }

    #[test]
    fn by_name_address_or_pattern_first_match_wins() {
        let (l, a) = host();
        assert_eq!(
            choose(&[spec("eth0")], &l, &a, None)
                .unwrap()
                .addr
                .to_string(),
            "192.168.1.10"
        );
        assert_eq!(
            choose(&[spec("10.0.0.5")], &l, &a, None).unwrap().name,
            "ens4"
        );
        assert_eq!(
            choose(&[spec("^ens[0-9]+$")], &l, &a, None).unwrap().name,
            "ens4"
        );
        assert_eq!(
            choose(&[spec("^192\\.168\\..*")], &l, &a, None)
                .unwrap()
                .name,
            "eth0"
        );
        assert_eq!(
            choose(&[spec("wlan0"), spec("eth0")], &l, &a, None)
                .unwrap()
                .name,
            "eth0"
        );
    }

    #[test]
    fn no_match_names_what_exists() {
        let (l, a) = host();
        let err = choose(&[spec("wlan0")], &l, &a, Some(2))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("name wlan0") && err.contains("eth0 (192.168.1.10/24)"),
            "{err}"
        );
        assert!(!err.contains("127.0.0.1"));
        assert!("bad name with space".parse::<IfaceSpec>().is_err());
        assert!("([".parse::<IfaceSpec>().is_err());
    }
}
