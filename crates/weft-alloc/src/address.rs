//! Single addresses a node holds from outside its own subnet (a container that asked for
//! a fixed address), claimed cluster-wide so no two nodes ever hold the same one:
//!
//! ```text
//! <prefix>/weft/addresses/10.244.0.7   {"Node":"192.168.77.1","ContainerID":"..."}
//! ```
//!
//! The node that holds one announces it as a /32 (Calico's borrowed addresses; the bgp
//! backend). Which addresses qualify is decided here, purely: inside the Network, but
//! outside the range leases are drawn from (`SubnetMin`..`SubnetMax`) and outside every
//! lease or reservation. With flannel's defaults that is the Network's first subnet
//! (10.244.0.0/24 of 10.244.0.0/16), which no lease ever covers; so a later lease can
//! never collide with a claimed address either.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use thiserror::Error;
use weft_store::{KeyValue, StoreError};

use crate::config::{BackendKind, NetworkConfig};
use crate::lease::Lease;
use crate::pool;
use crate::registry::Registry;

pub use weft_model::address::AddressClaim;

#[derive(Debug, Error)]
pub enum ClaimError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{ip} cannot be held outside a node's subnet: {reason}")]
    Unusable { ip: Ipv4Addr, reason: Unclaimable },
    #[error("{ip} is already held by container {} on node {}", .holder.container_id, .holder.node)]
    Taken { ip: Ipv4Addr, holder: AddressClaim },
}

/// Why an address may not be held as a single address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Unclaimable {
    #[error("only the bgp backend announces single addresses, and this network runs {0}")]
    NotBgp(&'static str),
    #[error("it is outside the Network {0}")]
    Outside(Ipv4Net),
    #[error("it is the network or broadcast address of {0}")]
    NetworkOrBroadcast(Ipv4Net),
    #[error("{block} is in the range leases are drawn from ({min} to {max}); use an address outside it, or one of the node's own subnet")]
    InLeaseRange {
        block: Ipv4Net,
        min: Ipv4Addr,
        max: Ipv4Addr,
    },
    #[error("it is inside {subnet}, leased to {node}")]
    Leased { subnet: Ipv4Net, node: Ipv4Addr },
    #[error("its claim in the store is unreadable; remove it with weftctl")]
    Unreadable,
}

/// Why `ip` may not be claimed as a single address under `cfg` with these leases, if so.
pub fn check(cfg: &NetworkConfig, leases: &[Lease], ip: Ipv4Addr) -> Result<(), Unclaimable> {
    if cfg.backend != BackendKind::Bgp {
        return Err(Unclaimable::NotBgp(cfg.backend.name()));
    }
    if !cfg.network.contains(&ip) {
        return Err(Unclaimable::Outside(cfg.network));
    }
    if ip == cfg.network.network() || ip == cfg.network.broadcast() {
        return Err(Unclaimable::NetworkOrBroadcast(cfg.network));
    }
    let block = Ipv4Net::new(ip, cfg.subnet_len)
        .expect("subnet length <= 32")
        .trunc();
    if pool::contains(cfg, &block) {
        return Err(Unclaimable::InLeaseRange {
            block,
            min: cfg.subnet_min,
            max: cfg.subnet_max,
        });
    }
    if let Some(l) = leases.iter().find(|l| l.subnet.contains(&ip)) {
        return Err(Unclaimable::Leased {
            subnet: l.subnet,
            node: l.attrs.public_ip,
        });
    }
    Ok(())
}

impl Registry {
    fn address_key(&self, ip: Ipv4Addr) -> String {
        format!("{}{ip}", self.keys().addresses())
    }

    /// A claim as stored; `None` for anything unreadable.
    pub fn parse_address(&self, kv: &KeyValue) -> Option<(Ipv4Addr, AddressClaim)> {
        match self.keys().decode(crate::registry::entry(kv)) {
            crate::registry::Change::Address(ip, Some(Ok(c))) => Some((ip, c)),
            _ => None,
        }
    }

    /// Every readable claim.
    pub async fn addresses(&self) -> Result<Vec<(Ipv4Addr, AddressClaim)>, StoreError> {
        let listing = self.store().list(&self.keys().addresses()).await?;
        Ok(listing
            .kvs
            .iter()
            .filter_map(|kv| self.parse_address(kv))
            .collect())
    }

    /// Claims `ip` for `claim`: create-if-absent, so of two racing claims one wins.
    /// Claiming again what one already holds succeeds (a retried CNI ADD).
    pub async fn claim_address(
        &self,
        cfg: &NetworkConfig,
        ip: Ipv4Addr,
        claim: &AddressClaim,
    ) -> Result<(), ClaimError> {
        let leases = self.leases().await?.leases;
        check(cfg, &leases, ip).map_err(|reason| ClaimError::Unusable { ip, reason })?;
        let key = self.address_key(ip);
        let value = serde_json::to_vec(claim).expect("claim serializes");
        if self.store().create(&key, &value, None).await?.is_some() {
            return Ok(());
        }
        let holder = self
            .store()
            .get(&key)
            .await?
            .and_then(|kv| serde_json::from_slice::<AddressClaim>(&kv.value).ok());
        match holder {
            Some(h) if &h == claim => Ok(()),
            Some(holder) => Err(ClaimError::Taken { ip, holder }),
            None => Err(ClaimError::Unusable {
                ip,
                reason: Unclaimable::Unreadable,
            }),
        }
    }

    /// Gives `ip` up if `container_id` holds it; `Ok(false)` if it did not (already
    /// released, or someone else's).
    pub async fn release_address(
        &self,
        ip: Ipv4Addr,
        container_id: &str,
    ) -> Result<bool, StoreError> {
        let key = self.address_key(ip);
        let Some(kv) = self.store().get(&key).await? else {
            return Ok(false);
        };
        match serde_json::from_slice::<AddressClaim>(&kv.value) {
            Ok(c) if c.container_id == container_id => self.store().delete(&key).await,
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseAttrs;

    fn cfg(json: &str) -> NetworkConfig {
        NetworkConfig::parse(json.as_bytes()).unwrap()
    }

    const BGP: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn which_addresses_qualify() {
        let c = cfg(BGP);
        assert_eq!(check(&c, &[], ip("10.244.0.7")), Ok(()));
        let no = |s: &str, leases: &[Lease]| check(&c, leases, ip(s)).unwrap_err().to_string();
        assert!(no("10.245.0.7", &[]).contains("outside the Network"));
        assert!(no("10.244.0.0", &[]).contains("network or broadcast"));
        assert!(no("10.244.3.7", &[])
            .contains("range leases are drawn from (10.244.1.0 to 10.244.255.0)"));
        let reserved = Lease {
            subnet: "10.244.0.0/28".parse().unwrap(),
            ipv6_subnet: None,
            attrs: LeaseAttrs {
                labels: Default::default(),
                public_ip: ip("192.168.1.9"),
                public_ipv6: None,
                backend_type: "bgp".into(),
                backend_data: serde_json::Value::Null,
                backend_v6_data: serde_json::Value::Null,
            },
            store_lease: None,
            mod_revision: 1,
        };
        assert!(no("10.244.0.7", &[reserved]).contains("leased to 192.168.1.9"));
        let hostgw = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
        assert!(check(&hostgw, &[], ip("10.244.0.7"))
            .unwrap_err()
            .to_string()
            .contains("only the bgp backend"));
    }

    #[test]
    fn claims_round_trip_as_json() {
        let c = AddressClaim {
            node: ip("192.168.77.1"),
            container_id: "abc".into(),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"Node":"192.168.77.1","ContainerID":"abc"}"#);
        let req = crate::agent_api::Request::Claim {
            ip: ip("10.244.0.7"),
            container_id: "abc".into(),
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"Claim":{"IP":"10.244.0.7","ContainerID":"abc"}}"#
        );
    }
}
