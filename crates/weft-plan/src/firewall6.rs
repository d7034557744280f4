//! The IPv6 side of the node's firewall in a dual-stack network: its own table,
//! `ip6 weft`, beside the IPv4 `ip weft` (nftables keeps the families apart, and so a
//! cluster without IPv6 has no IPv6 table at all).
//!
//! It does for the IPv6 cluster network what the IPv4 table does for the IPv4 one:
//! accepts its forwarded traffic, and masquerades what leaves it for the outside, where
//! masquerading is wanted (see [`Masquerade6`]), and, where the backend encapsulates
//! over the IPv6 underlay (vxlan's `weft-v6.<VNI>`), drops encapsulated datagrams from
//! any source that is not a node, as the IPv4 table does on its own underlay. Named
//! networks, pools and published ports are IPv4 only today, so none of them appears
//! here.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::hash::fnv1a;

/// The name of the IPv6 table (`ip6 weft`).
pub const TABLE6: &str = "weft";

/// Whether IPv6 traffic leaving the cluster network is masqueraded (`weftd --ipv6-masq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Masquerade6 {
    /// As `--ip-masq` says, but only for a unique local network (fc00::/7): such
    /// addresses are never routed on the Internet, while a global network is meant to
    /// be reached as it is.
    #[default]
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for Masquerade6 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Masquerade6::Auto),
            "always" => Ok(Masquerade6::Always),
            "never" => Ok(Masquerade6::Never),
            _ => Err(format!("{s:?}: one of auto, always, never")),
        }
    }
}

impl Masquerade6 {
    /// Whether `network`'s traffic to the outside is masqueraded, given `--ip-masq`.
    pub fn applies(self, network: &Ipv6Net, ip_masq: bool) -> bool {
        match self {
            Masquerade6::Always => true,
            Masquerade6::Never => false,
            Masquerade6::Auto => ip_masq && is_unique_local(network),
        }
    }
}

/// Whether every address of `network` is a unique local one (fc00::/7, RFC 4193).
pub fn is_unique_local(network: &Ipv6Net) -> bool {
    let ula: Ipv6Net = "fc00::/7".parse().expect("a valid prefix");
    ula.contains(network)
}

/// What the IPv6 table must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall6Plan {
    /// The cluster's IPv6 network.
    pub network: Ipv6Net,
    /// Masquerade what leaves it for the outside.
    pub masquerade: bool,
    /// Accept encapsulated traffic over IPv6 only from member nodes.
    pub encap: Option<EncapFilter6>,
}

/// Drops UDP to `port` over IPv6 whose source is not a node's public IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncapFilter6 {
    pub port: u16,
    /// Every node's public IPv6 address, sorted (the rendering must be deterministic).
    pub members: Vec<Ipv6Addr>,
}

impl Firewall6Plan {
    /// The table as an `nft -f` script that replaces it whole, its comment `weft
    /// FINGERPRINT` (the loader skips a table whose comment already matches).
    pub fn script(&self) -> String {
        format!(
            "table ip6 {TABLE6}\ndelete table ip6 {TABLE6}\ntable ip6 {TABLE6} {{\n  comment \"{}\"\n{}}}\n",
            self.comment(),
            self.body()
        )
    }

    /// The comment the loaded table carries when it is this plan's.
    pub fn comment(&self) -> String {
        format!("weft {:016x}", fnv1a(self.body().bytes()))
    }

    fn body(&self) -> String {
        let n = self.network;
        let mut s = format!(
            "  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    ip6 saddr {n} accept\n    ip6 daddr {n} accept\n  }}\n"
        );
        if let Some(f) = &self.encap {
            let port = f.port;
            let members: Vec<String> = f.members.iter().map(Ipv6Addr::to_string).collect();
            let from = match members.len() {
                0 => String::new(),
                _ => format!(" ip6 saddr != {{ {} }}", members.join(", ")),
            };
            s += &format!(
                "  chain input {{\n    type filter hook input priority 0; policy accept;\n    udp dport {port}{from} counter drop comment \"encapsulated traffic from a non-member\"\n  }}\n"
            );
        }
        if self.masquerade {
            // Multicast and the cluster network itself keep their addresses.
            s += &format!(
                "  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    ip6 saddr {n} ip6 daddr != {{ {n}, ff00::/8 }} masquerade\n  }}\n"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_local_networks_are_masqueraded_by_default() {
        let ula: Ipv6Net = "fd00:10:244::/56".parse().unwrap();
        let global: Ipv6Net = "2001:db8:244::/56".parse().unwrap();
        assert!(Masquerade6::Auto.applies(&ula, true));
        assert!(!Masquerade6::Auto.applies(&ula, false), "--ip-masq off");
        assert!(!Masquerade6::Auto.applies(&global, true));
        assert!(Masquerade6::Always.applies(&global, false));
        assert!(!Masquerade6::Never.applies(&ula, true));
        assert_eq!("always".parse(), Ok(Masquerade6::Always));
        assert!("yes".parse::<Masquerade6>().unwrap_err().contains("auto"));
    }

    #[test]
    fn the_script_replaces_the_table_and_names_its_fingerprint() {
        let p = Firewall6Plan {
            network: "fd00:10:244::/56".parse().unwrap(),
            masquerade: true,
            encap: None,
        };
        let s = p.script();
        assert!(
            s.starts_with("table ip6 weft\ndelete table ip6 weft\n"),
            "{s}"
        );
        assert!(s.contains(&format!("comment \"{}\"", p.comment())));
        assert!(s.contains(
            "ip6 saddr fd00:10:244::/56 ip6 daddr != { fd00:10:244::/56, ff00::/8 } masquerade"
        ));
        let plain = Firewall6Plan {
            masquerade: false,
            ..p.clone()
        };
        assert!(!plain.script().contains("masquerade"));
        assert_ne!(plain.comment(), p.comment());
    }

    #[test]
    fn encapsulated_traffic_over_ipv6_only_from_members() {
        let mut p = Firewall6Plan {
            network: "fd00:10:244::/56".parse().unwrap(),
            masquerade: false,
            encap: Some(EncapFilter6 {
                port: 8472,
                members: vec!["fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()],
            }),
        };
        assert!(
            p.script().contains("udp dport 8472 ip6 saddr != { fd00::1, fd00::2 } counter drop comment \"encapsulated traffic from a non-member\""),
            "{}",
            p.script()
        );
        p.encap = Some(EncapFilter6 {
            port: 8472,
            members: Vec::new(),
        });
        assert!(
            p.script().contains("udp dport 8472 counter drop"),
            "no member: all dropped"
        );
    }
}
