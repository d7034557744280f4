//! What a peer may send us and what we send it, as plain values: the import filter
//! (prefix rules, and what no outside router may ever announce), the export policy
//! (which kinds of this node's prefixes, with which communities), and the communities
//! themselves in the notation routers print (`64512:100`, `64512:1:2`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use ipnet::Ipv4Net;
use thiserror::Error;

/// What a prefix this node originates stands for: an export policy chooses by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnKind {
    /// The node's subnet (its lease).
    Subnet,
    /// A block of block IPAM the node holds.
    Block,
    /// A single address the node holds outside its subnet and blocks (a borrowed block
    /// address, an address held outside subnets), as a /32.
    Borrowed,
    /// A routed container of a named (Docker) network, as a /32.
    Named,
    /// The whole cluster network, for routers that want one route for it.
    Aggregate,
}

impl OwnKind {
    pub const ALL: [OwnKind; 5] = [
        OwnKind::Subnet,
        OwnKind::Block,
        OwnKind::Borrowed,
        OwnKind::Named,
        OwnKind::Aggregate,
    ];

    /// The name in a peer record's `Export` list.
    pub fn name(self) -> &'static str {
        match self {
            OwnKind::Subnet => "Subnet",
            OwnKind::Block => "Blocks",
            OwnKind::Borrowed => "Borrowed",
            OwnKind::Named => "Named",
            OwnKind::Aggregate => "Aggregate",
        }
    }

    /// What every peer gets unless told otherwise: every prefix the node holds, and not
    /// the aggregate (a router taking the aggregate from every node sends a container's
    /// traffic to any node, one hop longer).
    pub fn default_export() -> BTreeSet<OwnKind> {
        OwnKind::ALL
            .into_iter()
            .filter(|k| *k != OwnKind::Aggregate)
            .collect()
    }
}

impl FromStr for OwnKind {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        OwnKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| PolicyError::OwnKind(s.to_owned()))
    }
}

/// A prefix this node originates, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Own {
    pub prefix: Ipv4Net,
    pub kind: OwnKind,
}

impl Own {
    pub fn new(prefix: Ipv4Net, kind: OwnKind) -> Own {
        Own { prefix, kind }
    }
}

/// Why a policy value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("{0:?} is not one of Subnet, Blocks, Borrowed, Named, Aggregate")]
    OwnKind(String),
    #[error("{0:?} is not a prefix rule (\"10.200.0.0/16\", \"10.200.0.0/16 le 24\", \"10.200.0.0/16 ge 24 le 28\")")]
    Rule(String),
    #[error("{0:?} is not a community (two numbers from 0 to 65535: \"64512:100\")")]
    Community(String),
    #[error("{0:?} is not a large community (three numbers from 0 to 4294967295: \"64512:1:2\")")]
    LargeCommunity(String),
}

/// A prefix rule: prefixes inside `net`, with a length from `ge` (default: `net`'s) to
/// `le` (default 32). `10.200.0.0/16` takes 10.200.0.0/16 and everything inside it;
/// `10.200.0.0/16 le 24` only down to /24s (the `ge`/`le` of router prefix lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixRule {
    pub net: Ipv4Net,
    pub ge: Option<u8>,
    pub le: Option<u8>,
}

impl PrefixRule {
    pub fn matches(&self, prefix: &Ipv4Net) -> bool {
        let len = prefix.prefix_len();
        self.net.contains(prefix)
            && len >= self.ge.unwrap_or(self.net.prefix_len())
            && len <= self.le.unwrap_or(32)
    }
}

impl From<Ipv4Net> for PrefixRule {
    fn from(net: Ipv4Net) -> Self {
        PrefixRule {
            net,
            ge: None,
            le: None,
        }
    }
}

impl FromStr for PrefixRule {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::Rule(s.to_owned());
        let mut words = s.split_whitespace();
        let net: Ipv4Net = words.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let mut rule = PrefixRule::from(net.trunc());
        if net.trunc() != net {
            return Err(bad());
        }
        while let Some(w) = words.next() {
            let n: u8 = words
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| (net.prefix_len()..=32).contains(n))
                .ok_or_else(bad)?;
            match w {
                "ge" if rule.ge.is_none() => rule.ge = Some(n),
                "le" if rule.le.is_none() => rule.le = Some(n),
                _ => return Err(bad()),
            }
        }
        if rule.ge.unwrap_or(0) > rule.le.unwrap_or(32) {
            return Err(bad());
        }
        Ok(rule)
    }
}

impl fmt::Display for PrefixRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.net)?;
        if let Some(g) = self.ge {
            write!(f, " ge {g}")?;
        }
        if let Some(l) = self.le {
            write!(f, " le {l}")?;
        }
        Ok(())
    }
}

/// Which prefixes a peer's routes may be for. A prefix no `accept` rule matches (when
/// there are any), or overlapping a `deny_overlapping` net, is not taken: it is counted
/// as filtered and never reaches the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportFilter {
    /// Only prefixes one of these matches (empty: any).
    pub accept: Vec<PrefixRule>,
    /// Never a prefix overlapping one of these (for an external router: the cluster
    /// network, so no router can take a node's containers' traffic).
    pub deny_overlapping: Vec<Ipv4Net>,
}

impl ImportFilter {
    pub fn allows(&self, prefix: &Ipv4Net) -> bool {
        let inside = self.accept.is_empty() || self.accept.iter().any(|a| a.matches(prefix));
        let overlaps = self
            .deny_overlapping
            .iter()
            .any(|d| d.contains(prefix) || prefix.contains(d));
        inside && !overlaps
    }
}

/// A community (RFC 1997), printed as routers print it: `AS:value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Community(pub u32);

impl FromStr for Community {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| PolicyError::Community(s.to_owned()))?;
        match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(a), Ok(b)) => Ok(Community(((a as u32) << 16) | b as u32)),
            _ => Err(PolicyError::Community(s.to_owned())),
        }
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// A large community (RFC 8092): global administrator, two local values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LargeCommunity(pub [u32; 3]);

impl FromStr for LargeCommunity {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let parts: Vec<u32> = s
            .split(':')
            .map(|p| p.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| PolicyError::LargeCommunity(s.to_owned()))?;
        match parts[..] {
            [a, b, c] => Ok(LargeCommunity([a, b, c])),
            _ => Err(PolicyError::LargeCommunity(s.to_owned())),
        }
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a}:{b}:{c}")
    }
}

/// What a peer is sent of this node's own prefixes, and tagged how. Routes reflected
/// for other nodes are not touched (a reflector passes them on as they came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPolicy {
    pub kinds: BTreeSet<OwnKind>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

impl Default for ExportPolicy {
    fn default() -> Self {
        ExportPolicy {
            kinds: OwnKind::default_export(),
            communities: Vec::new(),
            large_communities: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_rules_take_lengths() {
        let inside: PrefixRule = "10.200.0.0/16".parse().unwrap();
        assert!(inside.matches(&net("10.200.0.0/16")));
        assert!(inside.matches(&net("10.200.7.9/32")));
        assert!(!inside.matches(&net("10.0.0.0/8")));
        let upto24: PrefixRule = "10.200.0.0/16 le 24".parse().unwrap();
        assert!(upto24.matches(&net("10.200.7.0/24")));
        assert!(!upto24.matches(&net("10.200.7.0/25")));
        let band: PrefixRule = "10.200.0.0/16 ge 24 le 28".parse().unwrap();
        assert!(!band.matches(&net("10.200.0.0/16")));
        assert!(band.matches(&net("10.200.1.16/28")));
        assert_eq!(band.to_string(), "10.200.0.0/16 ge 24 le 28");
        for bad in [
            "10.200.0.0/33",
            "10.200.0.1/16",
            "10.200.0.0/16 le",
            "10.200.0.0/16 le 8",
            "10.200.0.0/16 ge 28 le 24",
            "10.200.0.0/16 eq 24",
            "10.200.0.0/16 le 24 le 25",
        ] {
            assert!(bad.parse::<PrefixRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn communities_read_and_print_as_routers_do() {
        let c: Community = "64512:100".parse().unwrap();
        assert_eq!(c.0, (64512 << 16) | 100);
        assert_eq!(c.to_string(), "64512:100");
        for bad in ["64512", "65536:1", "a:b", "1:2:3"] {
            assert!(bad.parse::<Community>().is_err(), "{bad}");
        }
        let l: LargeCommunity = "4200000000:1:2".parse().unwrap();
        assert_eq!(l.to_string(), "4200000000:1:2");
        for bad in ["1:2", "1:2:3:4", "4294967296:1:2"] {
            assert!(bad.parse::<LargeCommunity>().is_err(), "{bad}");
        }
    }

    #[test]
    fn export_kinds_by_name_and_default_without_the_aggregate() {
        assert_eq!("Blocks".parse::<OwnKind>().unwrap(), OwnKind::Block);
        assert!("blocks".parse::<OwnKind>().is_err());
        let d = OwnKind::default_export();
        assert!(d.contains(&OwnKind::Subnet) && !d.contains(&OwnKind::Aggregate));
    }
}
