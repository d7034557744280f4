//! A table in nft's own syntax: what `nft -f` loads and `nft list table` prints.

use std::fmt::{self, Display, Formatter};

use super::{
    AddrMatch, Chain, Family, Hook, IfaceSide, Match, PortRange, Proto, Rule, Set, SetKey, Side,
    Table, Verdict,
};

/// A comment as nft takes it: no double quotes inside.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "'"))
}

impl Display for Proto {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Sctp => f.write_str("sctp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Icmpv6 => f.write_str("ipv6-icmp"),
            Proto::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Display for PortRange {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One item bare, more as an anonymous set `{ a, b }`.
fn one_or_set<T: Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let several = items.len() > 1;
    let list: Vec<String> = items.map(|i| i.to_string()).collect();
    if several {
        format!("{{ {} }}", list.join(", "))
    } else {
        list.join("")
    }
}

impl Display for AddrMatch {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            AddrMatch::Set(name) => write!(f, "@{name}"),
            AddrMatch::Nets(nets) => {
                let shown = nets.iter().map(|n| {
                    if n.prefix_len() == n.max_prefix_len() {
                        n.addr().to_string()
                    } else {
                        n.to_string()
                    }
                });
                f.write_str(&one_or_set(shown))
            }
        }
    }
}

/// A match or rule as it reads in a table of `family` (address matches name it).
struct InFamily<'a, T>(&'a T, Family);

impl Display for Match {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        InFamily(self, Family::Ip).fmt(f)
    }
}

impl Display for InFamily<'_, Match> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let family = self.1;
        match self.0 {
            Match::Addr {
                side,
                negated,
                value,
            } => {
                let field = match side {
                    Side::Source => "saddr",
                    Side::Destination => "daddr",
                };
                let op = if *negated { "!= " } else { "" };
                write!(f, "{family} {field} {op}{value}")
            }
            Match::Iface { side, set } => {
                let key = match side {
                    IfaceSide::In => "iifname",
                    IfaceSide::Out => "oifname",
                };
                write!(f, "{key} @{set}")
            }
            Match::EstablishedOrRelated => f.write_str("ct state established,related"),
            Match::Protocol(p) => write!(f, "meta l4proto {p}"),
            Match::DestinationPort { proto, ports } => {
                write!(f, "{proto} dport {}", one_or_set(ports.iter()))
            }
            Match::IcmpType(t) if family == Family::Ip6 => write!(f, "icmpv6 type {t}"),
            Match::IcmpType(t) => write!(f, "icmp type {t}"),
            Match::LocalDestination => f.write_str("fib daddr type local"),
            Match::Dnatted => f.write_str("ct status dnat"),
            Match::Mark(bit) => write!(f, "meta mark & {bit:#010x} == {bit:#010x}"),
        }
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Masquerade => f.write_str("masquerade fully-random"),
            Verdict::Log { prefix } => write!(f, "log prefix {}", quoted(prefix)),
            Verdict::Dnat { addr, port } => write!(f, "dnat to {addr}:{port}"),
            Verdict::MarkReturn(bit) => write!(f, "meta mark set meta mark | {bit:#010x} return"),
        }
    }
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        InFamily(self, Family::Ip).fmt(f)
    }
}

impl Rule {
    /// The rule as it reads in a table of `family`.
    pub fn text(&self, family: Family) -> String {
        InFamily(self, family).to_string()
    }
}

impl Display for InFamily<'_, Rule> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (rule, family) = (self.0, self.1);
        for m in &rule.matches {
            write!(f, "{} ", InFamily(m, family))?;
        }
        if rule.counter {
            f.write_str("counter ")?;
        }
        write!(f, "{}", rule.verdict)?;
        if let Some(c) = &rule.comment {
            write!(f, " comment {}", quoted(c))?;
        }
        Ok(())
    }
}

impl Display for Hook {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Hook::Forward { offset: 0 } => f.write_str("type filter hook forward priority filter"),
            Hook::Forward { offset } if *offset < 0 => write!(
                f,
                "type filter hook forward priority filter - {}",
                offset.unsigned_abs()
            ),
            Hook::Forward { offset } => {
                write!(f, "type filter hook forward priority filter + {offset}")
            }
            Hook::Input => f.write_str("type filter hook input priority filter"),
            Hook::Postrouting => f.write_str("type nat hook postrouting priority srcnat"),
            Hook::Prerouting => f.write_str("type nat hook prerouting priority dstnat"),
            Hook::Output => f.write_str("type nat hook output priority -100"),
        }
    }
}

impl Display for Set {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let key = match self.key {
            SetKey::Ipv4Addr => "ipv4_addr",
            SetKey::Ipv6Addr => "ipv6_addr",
            SetKey::Ifname => "ifname",
        };
        writeln!(f, "  set {} {{\n    type {key}\n  }}", self.name)
    }
}

impl Display for InFamily<'_, Chain> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let chain = self.0;
        writeln!(f, "  chain {} {{", chain.name)?;
        if let Some(h) = &chain.hook {
            writeln!(f, "    {h}; policy accept;")?;
        }
        for r in &chain.rules {
            writeln!(f, "    {}", InFamily(r, self.1))?;
        }
        writeln!(f, "  }}")
    }
}

impl Table {
    /// The sets and chains, as they go inside `table ip NAME { … }`.
    pub fn body(&self) -> String {
        let sets = self.sets.iter().map(|s| s.to_string());
        let chains = self
            .chains
            .iter()
            .map(|c| InFamily(c, self.family).to_string());
        sets.chain(chains).collect()
    }

    /// The `nft -f` script that replaces the table whole in one transaction: make it
    /// if absent (so the delete cannot fail), delete it, make it anew.
    pub fn script(&self) -> String {
        let id = self.id();
        format!(
            "table {id}\ndelete table {id}\ntable {id} {{\n  comment {}\n{}}}\n",
            quoted(&self.comment),
            self.body()
        )
    }
}
