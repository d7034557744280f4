//! The per-node subnets a config allows, and how they are named in the store.
//!
//! flannel stores a lease for `10.5.52.0/24` under the key `.../subnets/10.5.52.0-24`.

use std::net::Ipv4Addr;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::NetworkConfig;

/// Every subnet between `SubnetMin` and `SubnetMax`, in address order.
pub fn subnets(cfg: &NetworkConfig) -> impl Iterator<Item = Ipv4Net> + '_ {
    let step = 1u64 << (32 - cfg.subnet_len);
    let first = u32::from(cfg.subnet_min) as u64;
    let last = u32::from(cfg.subnet_max) as u64;
    (first..=last).step_by(step as usize).map(move |a| {
        Ipv4Net::new(Ipv4Addr::from(a as u32), cfg.subnet_len).expect("prefix length <= 32")
    })
}

/// How many subnets the pool holds.
pub fn size(cfg: &NetworkConfig) -> u64 {
    let step = 1u64 << (32 - cfg.subnet_len);
    (u32::from(cfg.subnet_max) as u64 - u32::from(cfg.subnet_min) as u64) / step + 1
}

/// Whether `subnet` is one the config hands out.
pub fn contains(cfg: &NetworkConfig, subnet: &Ipv4Net) -> bool {
    subnet.prefix_len() == cfg.subnet_len
        && subnet.network() == subnet.addr()
        && subnet.addr() >= cfg.subnet_min
        && subnet.addr() <= cfg.subnet_max
}

/// A dual-stack lease's key name, flannel's: `10.5.52.0-24&fd00:10:244:1::-64`; the
/// IPv4 form alone without an IPv6 subnet.
pub fn lease_key_name(subnet: &Ipv4Net, ipv6: Option<&Ipv6Net>) -> String {
    match ipv6 {
        None => key_name(subnet),
        Some(v6) => format!("{}&{}-{}", key_name(subnet), v6.addr(), v6.prefix_len()),
    }
}

/// A lease's key name read back: its IPv4 subnet and, after `&`, its IPv6 one; `None`
/// for anything else (host bits, a bad length, another family on either side).
pub fn parse_lease_key_name(name: &str) -> Option<(Ipv4Net, Option<Ipv6Net>)> {
    let Some((v4, v6)) = name.split_once('&') else {
        return Some((parse_key_name(name)?, None));
    };
    let (ip, len) = v6.rsplit_once('-')?;
    let net = Ipv6Net::new(ip.parse().ok()?, len.parse().ok()?).ok()?;
    (net.network() == net.addr()).then_some((parse_key_name(v4)?, Some(net)))
}

/// `10.5.52.0/24` -> `10.5.52.0-24`.
pub fn key_name(subnet: &Ipv4Net) -> String {
    format!("{}-{}", subnet.addr(), subnet.prefix_len())
}

/// `10.5.52.0-24` -> `10.5.52.0/24`, `None` for anything else.
pub fn parse_key_name(name: &str) -> Option<Ipv4Net> {
    let (ip, len) = name.split_once('-')?;
    let net = Ipv4Net::new(ip.parse().ok()?, len.parse().ok()?).ok()?;
    (net.network() == net.addr()).then_some(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendKind;
    use proptest::prelude::*;

    #[test]
    fn key_names_round_trip() {
        let n: Ipv4Net = "10.5.52.0/24".parse().unwrap();
        assert_eq!(key_name(&n), "10.5.52.0-24");
        assert_eq!(parse_key_name("10.5.52.0-24"), Some(n));
        for bad in ["10.5.52.0/24", "10.5.52.1-24", "x-24", "10.5.52.0-33", ""] {
            assert_eq!(parse_key_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn dual_stack_key_names_are_flannels() {
        let v4: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let v6: Ipv6Net = "fd00:10:244:1::/64".parse().unwrap();
        let name = lease_key_name(&v4, Some(&v6));
        assert_eq!(name, "10.244.1.0-24&fd00:10:244:1::-64");
        assert_eq!(parse_lease_key_name(&name), Some((v4, Some(v6))));
        assert_eq!(parse_lease_key_name("10.244.1.0-24"), Some((v4, None)));
        for bad in [
            "10.244.1.0-24&fd00:10:244:1::1-64",
            "10.244.1.0-24&fd00::-129",
            "10.244.1.0-24&10.0.0.0-8",
            "10.244.1.0-24&",
            "fd00::-64&10.244.1.0-24",
        ] {
            assert_eq!(parse_lease_key_name(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Pool subnets are inside the network and the bounds, aligned, and disjoint.
        #[test]
        fn pool_subnets_respect_bounds(prefix in 8u8..=28, extra in 0u8..=6, base in any::<u32>()) {
            let network = Ipv4Net::new(Ipv4Addr::from(base), prefix).unwrap().trunc();
            let mut cfg = NetworkConfig::new(network, BackendKind::HostGw).unwrap();
            cfg.subnet_len = (prefix + extra).clamp(cfg.subnet_len.min(prefix + 2), 30).max(prefix);
            let step = 1u64 << (32 - cfg.subnet_len);
            let net_start = u32::from(network.network()) as u64;
            cfg.subnet_min = Ipv4Addr::from((net_start + if step < (1u64 << (32 - prefix)) { step } else { 0 }) as u32);
            cfg.subnet_max = Ipv4Addr::from((u32::from(network.broadcast()) as u64 + 1 - step) as u32);
            prop_assume!(cfg.subnet_min <= cfg.subnet_max);
            let all: Vec<_> = subnets(&cfg).take(5000).collect();
            prop_assert_eq!(all.len() as u64, size(&cfg).min(5000));
            for w in all.windows(2) {
                prop_assert!(w[0].broadcast() < w[1].network(), "overlap {} {}", w[0], w[1]);
            }
            for s in &all {
                prop_assert!(network.contains(s));
                prop_assert!(contains(&cfg, s));
                prop_assert_eq!(parse_key_name(&key_name(s)), Some(*s));
            }
        }
    }
}
