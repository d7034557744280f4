//! nftables as values: the tables Weft loads, with their sets, chains and rules.
//!
//! Both of Weft's tables are built as a [`Table`]: the forwarding and masquerade table
//! (`ip weft`, from a [`crate::FirewallPlan`] by [`crate::firewall::table`]) and the
//! policy table (`ip weftpol`, by the policy renderer). Only weft-kernel turns a table
//! into something the kernel takes: the `nft -f` script of [`Table::script`] for a
//! whole table (one transaction: create, delete, recreate), netlink for set elements.
//! It reads a loaded table back into the same values, so a test can load a table and
//! compare what the kernel kept with what was meant, value for value.
//!
//! A rule carries a [`RuleId`] where it enforces something a user wrote (a policy's
//! rule): `/metrics` labels a rule's counter with its id, looked up by the rule's chain
//! and comment in the table the agent loaded, never by reading the comment's words.
//!
//! Only what Weft writes is modelled: tables of family `ip` or `ip6` ([`Family`]: the
//! policy table has an IPv6 twin in a dual-stack network), sets of addresses or interface
//! names, matches on addresses, interfaces, connection state, protocol and ports, and
//! the destination NAT of published ports.

mod elements;
mod matches;
mod text;

use std::collections::BTreeMap;

pub use elements::{changes, count, Element, ElementError, Elements};
pub use matches::{AddrMatch, IfaceSide, Match, PortRange, Proto, Side, ICMPV6_TYPES, ICMP_TYPES};

/// A table's address family. nftables keeps the families' tables apart: an `ip` table
/// sees IPv4 packets only, an `ip6` table IPv6 ones, and in each an address match is on
/// that family's header (`ip saddr`, `ip6 saddr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    #[default]
    Ip,
    Ip6,
}

impl Family {
    /// nft's word for it (`ip`, `ip6`), in commands and in address matches.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// The key of a set of this family's addresses.
    pub fn addr_key(self) -> SetKey {
        match self {
            Family::Ip => SetKey::Ipv4Addr,
            Family::Ip6 => SetKey::Ipv6Addr,
        }
    }

    /// Whether `addr` is of this family.
    pub fn holds(self, addr: std::net::IpAddr) -> bool {
        addr.is_ipv4() == (self == Family::Ip)
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A table as the kernel tells tables apart: by family and name (`ip6 weftpol`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    pub family: Family,
    pub name: String,
}

impl TableId {
    pub fn new(family: Family, name: impl Into<String>) -> TableId {
        TableId {
            family,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// What a set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetKey {
    /// IPv4 addresses (`type ipv4_addr`).
    Ipv4Addr,
    /// IPv6 addresses (`type ipv6_addr`).
    Ipv6Addr,
    /// Interface names (`type ifname`).
    Ifname,
}

/// A named set, declared empty: its elements change apart from the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub key: SetKey,
}

/// Which hook a base chain is on, with its type and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `type filter hook forward priority filter + offset`.
    Forward { offset: i32 },
    /// `type filter hook input priority filter`.
    Input,
    /// `type nat hook postrouting priority srcnat`.
    Postrouting,
    /// `type nat hook prerouting priority dstnat` (published ports, from outside).
    Prerouting,
    /// `type nat hook output priority dstnat` (published ports, from the host itself).
    Output,
}

impl Hook {
    /// The chain's priority as a number (what the kernel keeps and lists).
    pub fn priority(&self) -> i32 {
        match self {
            Hook::Forward { offset } => *offset,
            Hook::Input => 0,
            Hook::Postrouting => 100,
            Hook::Prerouting | Hook::Output => -100,
        }
    }
}

/// A chain: a base chain (on a hook, policy accept) or one that rules jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn regular(name: impl Into<String>) -> Chain {
        Chain {
            name: name.into(),
            hook: None,
            rules: Vec::new(),
        }
    }

    pub fn base(name: impl Into<String>, hook: Hook) -> Chain {
        Chain {
            hook: Some(hook),
            ..Chain::regular(name)
        }
    }

    /// Appends a rule; returns the chain for chaining.
    pub fn push(&mut self, rule: Rule) -> &mut Chain {
        self.rules.push(rule);
        self
    }
}

/// What a rule does with a packet that matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
    /// `masquerade fully-random` (source NAT to the outgoing interface's address).
    Masquerade,
    /// `log prefix "…"`, then on to the next rule.
    Log {
        prefix: String,
    },
    /// `dnat to 10.50.0.2:80` (a published port to its container).
    Dnat {
        addr: std::net::Ipv4Addr,
        port: u16,
    },
    /// `meta mark set meta mark | BIT return`: sets a bit of the packet's mark (for a
    /// later table to see) and returns.
    MarkReturn(u32),
}

/// What a rule enforces, as `/metrics` labels its counter: the kind of object a user
/// wrote (`NetworkPolicy`, `ClusterPolicy`, `Held`), the object (`x/a`), and which of
/// its rules (`ingress[0]`, `egress isolation`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId {
    pub kind: String,
    pub object: String,
    pub rule: String,
}

/// One rule: all its matches, then an optional counter, then its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub counter: bool,
    pub verdict: Verdict,
    pub comment: Option<String>,
    /// What it enforces, when it enforces something a user wrote. Kept by the agent,
    /// not by the kernel (which keeps the comment).
    pub id: Option<RuleId>,
}

impl Rule {
    /// A rule without a counter or comment. A protocol match that another match
    /// implies (`meta l4proto tcp` beside `tcp dport 80`, `meta l4proto icmp` beside
    /// `icmp type 8`) is left out, as the kernel leaves it out when it lists the rule.
    pub fn new(mut matches: Vec<Match>, verdict: Verdict) -> Rule {
        let implied: Vec<Proto> = matches
            .iter()
            .filter_map(|m| match m {
                Match::DestinationPort { proto, .. } => Some(*proto),
                Match::IcmpType(_) => Some(Proto::Icmp),
                _ => None,
            })
            .collect();
        // An ICMP type match implies its family's ICMP, whichever that is.
        let implied: Vec<Proto> = implied
            .into_iter()
            .flat_map(|p| match p {
                Proto::Icmp => vec![Proto::Icmp, Proto::Icmpv6],
                p => vec![p],
            })
            .collect();
        matches.retain(|m| !matches!(m, Match::Protocol(p) if implied.contains(p)));
        Rule {
            matches,
            counter: false,
            verdict,
            comment: None,
            id: None,
        }
    }

    pub fn counted(mut self) -> Rule {
        self.counter = true;
        self
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Rule {
        self.comment = Some(comment.into());
        self
    }

    pub fn id(mut self, id: RuleId) -> Rule {
        self.id = Some(id);
        self
    }
}

/// A table, with its comment (where Weft keeps a fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub comment: String,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

impl Table {
    /// A table of family `ip`.
    pub fn new(name: impl Into<String>) -> Table {
        Table::in_family(Family::Ip, name)
    }

    pub fn in_family(family: Family, name: impl Into<String>) -> Table {
        Table {
            family,
            name: name.into(),
            comment: String::new(),
            sets: Vec::new(),
            chains: Vec::new(),
        }
    }

    pub fn id(&self) -> TableId {
        TableId::new(self.family, self.name.clone())
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The ids of the rules that carry one, by chain and comment: how a counter read
    /// from the kernel (which keeps chain and comment) is labelled.
    pub fn rule_ids(&self) -> BTreeMap<(String, String), RuleId> {
        self.chains
            .iter()
            .flat_map(|c| c.rules.iter().map(move |r| (c, r)))
            .filter_map(|(c, r)| {
                let comment = r.comment.clone()?;
                Some(((c.name.clone(), comment), r.id.clone()?))
            })
            .collect()
    }

    /// This table as the kernel keeps it: without the rule ids, which only the agent's
    /// copy carries.
    pub fn as_loaded(&self) -> Table {
        let mut t = self.clone();
        for r in t.chains.iter_mut().flat_map(|c| c.rules.iter_mut()) {
            r.id = None;
        }
        t
    }

    /// A stable fingerprint of the sets, chains and rules (not the comment), to put in
    /// the comment: a table whose loaded fingerprint matches need not be loaded again.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", crate::hash::fnv1a(self.body().bytes()))
    }
}

#[cfg(test)]
mod tests;
