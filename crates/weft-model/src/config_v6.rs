//! The IPv6 half of a dual-stack network config, in flannel's keys: `EnableIPv6`,
//! `IPv6Network`, `IPv6SubnetLen` (flannel's default: 64, or the network's prefix + 2
//! for networks smaller than /62, the smallest useful network a /124), `IPv6SubnetMin`,
//! `IPv6SubnetMax` (the second and the last subnet by default, as for IPv4).
//!
//! Kept apart from the IPv4 checks because every bound here is 128-bit arithmetic and
//! every message must say which family's field is wrong: a config that mixes the families
//! (an IPv4 prefix in `IPv6Network`, an IPv6 one in `Network`) is refused with the field
//! named.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

/// flannel's default `IPv6SubnetLen` for networks of /62 or larger.
pub const DEFAULT_SUBNET_LEN: u8 = 64;

/// The longest per-node IPv6 subnet: /126 leaves a gateway and two containers, as /30
/// does for IPv4.
pub const MAX_SUBNET_LEN: u8 = 126;

/// The validated IPv6 side of the network config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Config {
    pub network: Ipv6Net,
    pub subnet_len: u8,
    pub subnet_min: Ipv6Addr,
    pub subnet_max: Ipv6Addr,
}

/// The raw fields, as stored.
pub(crate) struct RawV6<'a> {
    pub network: Option<&'a str>,
    pub subnet_len: Option<u8>,
    pub subnet_min: Option<&'a str>,
    pub subnet_max: Option<&'a str>,
}

impl Ipv6Config {
    /// Checks the raw fields, pushing one message per problem.
    pub(crate) fn validate(raw: RawV6, problems: &mut Vec<String>) -> Option<Ipv6Config> {
        let network = network(raw.network, problems);
        let min = raw
            .subnet_min
            .and_then(|s| address("IPv6SubnetMin", s, problems));
        let max = raw
            .subnet_max
            .and_then(|s| address("IPv6SubnetMax", s, problems));
        let network = network?;
        let before = problems.len();
        let subnet_len = subnet_len(network, raw.subnet_len, problems);
        let (subnet_min, subnet_max) = bounds(network, subnet_len, min, max, problems);
        (problems.len() == before).then_some(Ipv6Config {
            network,
            subnet_len,
            subnet_min,
            subnet_max,
        })
    }

    /// How many addresses one subnet spans, as a shift (128 - length).
    fn host_bits(&self) -> u32 {
        128 - u32::from(self.subnet_len)
    }

    /// Every subnet between the bounds, in address order (lazily: a /48 of /64s holds
    /// 65,536 of them).
    pub fn subnets(&self) -> impl Iterator<Item = Ipv6Net> + '_ {
        let shift = self.host_bits();
        let first = u128::from(self.subnet_min) >> shift;
        let last = u128::from(self.subnet_max) >> shift;
        (first..=last).map(move |i| {
            Ipv6Net::new(Ipv6Addr::from(i << shift), self.subnet_len).expect("length <= 128")
        })
    }

    /// How many subnets the bounds hold (saturating: a /8 of /126s does not fit a u64).
    pub fn size(&self) -> u64 {
        let shift = self.host_bits();
        let n = (u128::from(self.subnet_max) >> shift) - (u128::from(self.subnet_min) >> shift);
        u64::try_from(n + 1).unwrap_or(u64::MAX)
    }

    /// Whether `subnet` is one this config hands out.
    pub fn contains(&self, subnet: &Ipv6Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && subnet.network() == subnet.addr()
            && subnet.addr() >= self.subnet_min
            && subnet.addr() <= self.subnet_max
    }
}

fn address(field: &str, s: &str, problems: &mut Vec<String>) -> Option<Ipv6Addr> {
    match s.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => Some(ip),
        Ok(std::net::IpAddr::V4(_)) => {
            problems.push(format!(
                "{field} {s:?} is an IPv4 address: IPv6 fields take IPv6 addresses"
            ));
            None
        }
        Err(_) => {
            problems.push(format!("{field} {s:?} is not an IPv6 address"));
            None
        }
    }
}

/// `IPv6Network`: an IPv6 CIDR with no host bits.
fn network(raw: Option<&str>, problems: &mut Vec<String>) -> Option<Ipv6Net> {
    let Some(s) = raw else {
        problems.push("IPv6Network is missing (EnableIPv6 is true)".into());
        return None;
    };
    if let Ok(n) = s.parse::<Ipv6Net>() {
        if n.network() != n.addr() {
            problems.push(format!(
                "IPv6Network {s} has host bits set (did you mean {}?)",
                n.trunc()
            ));
            return None;
        }
        return Some(n);
    }
    let message = match s.split_once('/') {
        _ if s.parse::<ipnet::Ipv4Net>().is_ok() => format!(
            "IPv6Network {s:?} is an IPv4 CIDR: it belongs in Network, IPv6Network takes one such as fd00:10:244::/56"
        ),
        Some((addr, len)) if addr.parse::<Ipv6Addr>().is_ok() => format!(
            "IPv6Network {s:?} has prefix length /{len}: an IPv6 prefix is /0 to /128"
        ),
        _ => format!("IPv6Network {s:?} is not an IPv6 CIDR such as fd00:10:244::/56"),
    };
    problems.push(message);
    None
}

/// `IPv6SubnetLen`: flannel's default (64, or the network's prefix + 2 for networks
/// smaller than /62); at least one subnet, at most /126.
fn subnet_len(network: Ipv6Net, raw: Option<u8>, problems: &mut Vec<String>) -> u8 {
    let len = match raw.filter(|&l| l > 0) {
        Some(l) => l,
        None if network.prefix_len() > 124 => {
            problems.push(format!(
                "IPv6Network {network} is too small: the smallest useful network is a /124"
            ));
            return MAX_SUBNET_LEN;
        }
        None if network.prefix_len() <= 62 => DEFAULT_SUBNET_LEN,
        None => network.prefix_len() + 2,
    };
    if len < network.prefix_len() {
        problems.push(format!(
            "IPv6SubnetLen /{len} is larger than the IPv6Network /{}: not even one subnet fits",
            network.prefix_len()
        ));
    } else if len > MAX_SUBNET_LEN {
        problems.push(format!(
            "IPv6SubnetLen /{len} is out of range: at most /{MAX_SUBNET_LEN}"
        ));
    }
    len
}

/// `IPv6SubnetMin` and `IPv6SubnetMax`: inside the network, aligned, in order.
fn bounds(
    network: Ipv6Net,
    subnet_len: u8,
    min: Option<Ipv6Addr>,
    max: Option<Ipv6Addr>,
    problems: &mut Vec<String>,
) -> (Ipv6Addr, Ipv6Addr) {
    let shift = 128 - u32::from(subnet_len.clamp(network.prefix_len(), 128));
    let size: u128 = 1u128.checked_shl(shift).unwrap_or(0);
    let start = u128::from(network.network());
    let last = u128::from(network.broadcast());
    let second = if network.prefix_len() < subnet_len {
        start + size
    } else {
        start
    };
    let final_one = last - (size.wrapping_sub(1));
    let check = |name: &str, ip: Option<Ipv6Addr>, default: u128, problems: &mut Vec<String>| {
        let Some(ip) = ip else {
            return Ipv6Addr::from(default);
        };
        if !network.contains(&ip) {
            problems.push(format!("{name} {ip} is outside the IPv6Network {network}"));
        } else if size != 0 && u128::from(ip) % size != 0 {
            problems.push(format!(
                "{name} {ip} is not aligned to a /{subnet_len} boundary"
            ));
        }
        ip
    };
    let subnet_min = check("IPv6SubnetMin", min, second, problems);
    let subnet_max = check("IPv6SubnetMax", max, final_one, problems);
    if subnet_min > subnet_max {
        problems.push(format!(
            "IPv6SubnetMin {subnet_min} is above IPv6SubnetMax {subnet_max}"
        ));
    }
    (subnet_min, subnet_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(
        network: &str,
        len: Option<u8>,
        min: Option<&str>,
        max: Option<&str>,
    ) -> Result<Ipv6Config, Vec<String>> {
        let mut problems = Vec::new();
        let c = Ipv6Config::validate(
            RawV6 {
                network: Some(network),
                subnet_len: len,
                subnet_min: min,
                subnet_max: max,
            },
            &mut problems,
        );
        c.ok_or(problems)
    }

    #[test]
    fn flannel_defaults() {
        let c = v6("fd00:10:244::/56", None, None, None).unwrap();
        assert_eq!(c.subnet_len, 64);
        assert_eq!(c.subnet_min.to_string(), "fd00:10:244:1::");
        assert_eq!(c.subnet_max.to_string(), "fd00:10:244:ff::");
        assert_eq!(c.size(), 255);
        let all: Vec<_> = c.subnets().take(2).map(|s| s.to_string()).collect();
        assert_eq!(all, ["fd00:10:244:1::/64", "fd00:10:244:2::/64"]);
        assert!(c.contains(&"fd00:10:244:ff::/64".parse().unwrap()));
        assert!(
            !c.contains(&"fd00:10:244::/64".parse().unwrap()),
            "the first is left out"
        );
        assert!(!c.contains(&"fd00:10:244:1::/65".parse().unwrap()));
    }

    #[test]
    fn a_huge_pool_is_counted_without_overflow() {
        let c = v6("fd00::/8", Some(126), None, None).unwrap();
        assert_eq!(c.size(), u64::MAX);
        assert_eq!(c.subnets().nth(1).unwrap().to_string(), "fd00::8/126");
    }

    #[test]
    fn bad_input_names_the_field() {
        let p = v6("fd00::/129", None, None, None).unwrap_err();
        assert!(
            p[0].contains("IPv6Network") && p[0].contains("/129"),
            "{p:?}"
        );
        let p = v6("10.244.0.0/16", None, None, None).unwrap_err();
        assert!(
            p[0].contains("IPv4 CIDR") && p[0].contains("IPv6Network"),
            "{p:?}"
        );
        let p = v6("fd00:10:244::/64", Some(56), None, None).unwrap_err();
        assert!(
            p[0].contains("IPv6SubnetLen /56") && p[0].contains("not even one"),
            "{p:?}"
        );
        let p = v6("fd00::/56", Some(127), None, None).unwrap_err();
        assert!(p[0].contains("at most /126"), "{p:?}");
        let p = v6("fd00::1/56", None, None, None).unwrap_err();
        assert!(p[0].contains("host bits"), "{p:?}");
        let p = v6("fd00::/56", None, Some("10.0.0.0"), Some("fd00:0:0:1::1")).unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.contains("IPv6SubnetMin \"10.0.0.0\" is an IPv4")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("IPv6SubnetMax fd00:0:0:1::1 is not aligned")),
            "{p:?}"
        );
        let p = v6(
            "fd00::/56",
            None,
            Some("fd00:0:0:9::"),
            Some("fd00:0:0:3::"),
        )
        .unwrap_err();
        assert!(p[0].contains("above IPv6SubnetMax"), "{p:?}");
        let p = v6("fd00::/56", None, Some("fd01::"), None).unwrap_err();
        assert!(p[0].contains("outside the IPv6Network"), "{p:?}");
    }

    #[test]
    fn a_network_as_long_as_its_subnets_is_one_subnet() {
        let c = v6("fd00:1:2:3::/64", Some(64), None, None).unwrap();
        assert_eq!(c.size(), 1);
        assert_eq!(c.subnets().next().unwrap().to_string(), "fd00:1:2:3::/64");
    }

    /// flannel's defaults for small networks: split in four (the first left out), and
    /// nothing smaller than a /124.
    #[test]
    fn small_networks_split_in_four_as_flannel_does() {
        let c = v6("fd00:1:2:3::/64", None, None, None).unwrap();
        assert_eq!((c.subnet_len, c.size()), (66, 3));
        let c = v6("fd00::/62", None, None, None).unwrap();
        assert_eq!(c.subnet_len, 64);
        let p = v6("fd00::/125", None, None, None).unwrap_err();
        assert!(
            p[0].contains("too small: the smallest useful network is a /124"),
            "{p:?}"
        );
    }
}
