//! Which leases stand. A lease in the store is only a claim; before any node routes to
//! it, it must be one the network config could have handed out, and it must not overlap
//! a lease that stands. One bad write (a /25 inside a node's /24, a subnet outside the
//! network) must never cut a working node in half, so every node screens every lease the
//! same way, with a deterministic rule, and routes only what passes.
//!
//! A lease stands when:
//! 1. its subnet lies inside the Network;
//! 2. it has the configured prefix length (`SubnetLen`);
//! 3. a claim (a lease with a TTL) lies within `SubnetMin`..=`SubnetMax`; a reservation
//!    (no TTL, written by an operator) may lie anywhere in the Network.
//!
//! Overlaps follow: leases of the configured size are aligned prefixes of one length,
//! and the store holds one key per subnet, so two standing leases can never overlap. A
//! lease that overlaps a standing one is therefore always the one rejected (rule 1 or 2),
//! whichever was written first or last, and the rejection names the leases it collides
//! with, so logs, `weftctl leases` and `weftctl diagnose` can say whose range it covers.

use std::fmt;

use ipnet::Ipv4Net;

use crate::{Lease, NetworkConfig};

/// Why a lease does not stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    OutsideNetwork { network: Ipv4Net },
    WrongSize { want: u8 },
    OutsidePool,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::OutsideNetwork { network } => write!(f, "outside the network {network}"),
            Rejection::WrongSize { want } => write!(f, "not a /{want} (the network's subnet size)"),
            Rejection::OutsidePool => f.write_str("a claim outside SubnetMin..SubnetMax"),
        }
    }
}

/// A lease that does not stand: why, and the standing leases whose range it overlaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub lease: Lease,
    pub why: Rejection,
    pub collides: Vec<Ipv4Net>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.lease.subnet, self.why)?;
        if !self.collides.is_empty() {
            let c: Vec<String> = self.collides.iter().map(|n| n.to_string()).collect();
            write!(f, "; overlaps {}", c.join(", "))?;
        }
        Ok(())
    }
}

/// The leases that stand, and the ones that do not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Screened {
    /// In the order given.
    pub standing: Vec<Lease>,
    /// In the order given.
    pub rejected: Vec<Rejected>,
}

/// Why `lease` cannot stand under `cfg`, if it cannot.
pub fn rejection(cfg: &NetworkConfig, lease: &Lease) -> Option<Rejection> {
    let s = lease.subnet;
    if !cfg.network.contains(&s) {
        Some(Rejection::OutsideNetwork {
            network: cfg.network,
        })
    } else if s.prefix_len() != cfg.subnet_len {
        Some(Rejection::WrongSize {
            want: cfg.subnet_len,
        })
    } else if !lease.is_reservation() && (s.addr() < cfg.subnet_min || s.addr() > cfg.subnet_max) {
        Some(Rejection::OutsidePool)
    } else {
        None
    }
}

/// Screens `leases` under `cfg`.
pub fn screen<'a>(cfg: &NetworkConfig, leases: impl IntoIterator<Item = &'a Lease>) -> Screened {
    let mut out = Screened::default();
    let mut bad = Vec::new();
    for lease in leases {
        match rejection(cfg, lease) {
            Some(why) => bad.push((lease, why)),
            None => out.standing.push(lease.clone()),
        }
    }
    out.rejected = bad
        .into_iter()
        .map(|(lease, why)| Rejected {
            collides: out
                .standing
                .iter()
                .map(|l| l.subnet)
                .filter(|s| overlap(s, &lease.subnet))
                .collect(),
            lease: lease.clone(),
            why,
        })
        .collect();
    out
}

/// Whether two prefixes share an address.
pub fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LeaseAttrs;

    fn cfg(json: &str) -> NetworkConfig {
        NetworkConfig::parse(json.as_bytes()).unwrap()
    }

    fn lease(subnet: &str, rev: i64, ttl: bool) -> Lease {
        Lease {
            subnet: subnet.parse().unwrap(),
            ipv6_subnet: None,
            attrs: LeaseAttrs {
                labels: Default::default(),
                public_ip: "192.168.1.1".parse().unwrap(),
                public_ipv6: None,
                backend_type: "host-gw".into(),
                backend_data: serde_json::Value::Null,
                backend_v6_data: serde_json::Value::Null,
            },
            store_lease: ttl.then_some(1),
            mod_revision: rev,
        }
    }

    fn subnets(l: &[Lease]) -> Vec<String> {
        l.iter().map(|l| l.subnet.to_string()).collect()
    }

    #[test]
    fn every_rule_names_its_reason_and_the_leases_it_would_cut() {
        let c = cfg(
            r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","SubnetMax":"10.244.20.0","Backend":{"Type":"host-gw"}}"#,
        );
        let leases = [
            lease("10.244.11.0/24", 5, true),
            // Written before the /24 or after it: the /25 never stands.
            lease("10.244.11.0/25", 1, true),
            lease("10.244.11.128/25", 9, false),
            lease("10.245.0.0/24", 3, true),
            lease("10.244.30.0/24", 4, true),
            lease("10.244.31.0/24", 4, false),
            lease("10.244.0.0/16", 4, false),
        ];
        let s = screen(&c, &leases);
        assert_eq!(subnets(&s.standing), ["10.244.11.0/24", "10.244.31.0/24"]);
        let why: Vec<String> = s.rejected.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            why,
            [
                "10.244.11.0/25: not a /24 (the network's subnet size); overlaps 10.244.11.0/24",
                "10.244.11.128/25: not a /24 (the network's subnet size); overlaps 10.244.11.0/24",
                "10.245.0.0/24: outside the network 10.244.0.0/16",
                "10.244.30.0/24: a claim outside SubnetMin..SubnetMax",
                "10.244.0.0/16: not a /24 (the network's subnet size); overlaps 10.244.11.0/24, 10.244.31.0/24",
            ]
        );
    }

    #[test]
    fn overlap_is_shared_addresses() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(overlap(&n("10.244.2.0/24"), &n("10.244.2.128/25")));
        assert!(overlap(&n("10.244.2.128/25"), &n("10.244.2.0/24")));
        assert!(overlap(&n("10.244.0.0/16"), &n("10.244.2.0/24")));
        assert!(!overlap(&n("10.244.3.0/24"), &n("10.244.2.0/24")));
    }
}
