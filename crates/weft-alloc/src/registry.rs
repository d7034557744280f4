//! The network's shared state in a [`Store`], under flannel's key layout:
//!
//! ```text
//! <prefix>/config                  network config (flannel JSON)
//! <prefix>/subnets/10.244.3.0-24   one lease per node, bound to a store lease (TTL)
//! <prefix>/weft/status/<subnet>    what each node's agent reports (Weft's own addition)
//! <prefix>/weft/addresses/<ip>     single addresses held outside a node's subnet
//! <prefix>/weft/bgp/peers/<name>   BGP peers outside the cluster
//! ```
//!
//! The default prefix is flannel's `/coreos.com/network`, so `etcdctl` habits carry over.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use rand::seq::IndexedRandom;

use thiserror::Error;
use weft_store::{KeyValue, Revision, Store, StoreError};

use crate::config::{ConfigError, NetworkConfig};
use crate::lease::{Lease, LeaseAttrs};
use crate::pool;

pub use weft_store::DEFAULT_PREFIX;

/// flannel picks at random among the first this-many free subnets, so nodes starting
/// together rarely collide yet the pool fills from the bottom.
const RANDOM_WINDOW: usize = 100;
/// Lost races before giving up; each loss means another node got a subnet.
const MAX_ATTEMPTS: usize = 32;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no network config at {key}; write one with `weftctl network init`")]
    NoConfig { key: String },
    #[error("config at {key}: {source}")]
    Config {
        key: String,
        #[source]
        source: ConfigError,
    },
}

#[derive(Debug, Error)]
pub enum AcquireError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "subnet pool exhausted: all {size} subnets of /{len} between {min} and {max} are leased"
    )]
    Exhausted {
        size: u64,
        len: u8,
        min: Ipv4Addr,
        max: Ipv4Addr,
    },
    #[error(
        "IPv6 subnet pool exhausted: all {size} subnets of /{len} between {min} and {max} are leased"
    )]
    ExhaustedV6 {
        size: u64,
        len: u8,
        min: Ipv6Addr,
        max: Ipv6Addr,
    },
    #[error("gave up claiming a subnet after {0} lost races")]
    Contention(usize),
}

impl AcquireError {
    pub fn is_transient(&self) -> bool {
        match self {
            AcquireError::Store(e) => e.is_transient(),
            AcquireError::Exhausted { .. } | AcquireError::ExhaustedV6 { .. } => false,
            AcquireError::Contention(_) => true,
        }
    }
}

/// The subnets a node held before (its subnet file's), tried first when it claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Previous {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

impl From<Option<Ipv4Net>> for Previous {
    fn from(v4: Option<Ipv4Net>) -> Previous {
        Previous { v4, v6: None }
    }
}

/// flannel's choice of a subnet, for either family: `previous` where the config hands
/// it out and nobody holds it, else one at random among the first free ones; `None`
/// when none is free.
fn choose<T: Copy + Eq + std::hash::Hash>(
    previous: Option<T>,
    handed_out: impl Fn(&T) -> bool,
    taken: &HashSet<T>,
    all: impl Iterator<Item = T>,
) -> Option<T> {
    if let Some(p) = previous.filter(|p| handed_out(p) && !taken.contains(p)) {
        return Some(p);
    }
    let free: Vec<T> = all
        .filter(|s| !taken.contains(s))
        .take(RANDOM_WINDOW)
        .collect();
    free.choose(&mut rand::rng()).copied()
}

/// A lease key whose value could not be read; reported, never acted on.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
}

/// Every lease at one revision.
#[derive(Debug, Clone, Default)]
pub struct LeaseSnapshot {
    pub leases: Vec<Lease>,
    pub skipped: Vec<Skipped>,
    /// Subnets with a key, readable or not: none of them may be handed out again.
    pub taken: HashSet<Ipv4Net>,
    /// The same for the IPv6 subnets of dual-stack keys.
    pub taken_v6: HashSet<Ipv6Net>,
    pub revision: Revision,
}

pub use weft_model::keys::{Change, DecodeError, Entry, Keys};
pub use weft_model::status::{NodeStatus, Orphan, Unreachable};

/// A stored key and value as the model's decoder takes it.
pub fn entry(kv: &KeyValue) -> Entry<'_> {
    Entry {
        key: &kv.key,
        value: Some(&kv.value),
        mod_revision: kv.mod_revision,
        lease: kv.lease,
    }
}

/// Reads and writes the network's state in a store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    keys: Keys,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, prefix: &str) -> Self {
        Registry {
            store,
            keys: Keys::new(prefix),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The key layout, and the decoder of stored entries (`weft_model::keys`).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The key prefix everything lives under (`/coreos.com/network` by default).
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Reads and validates the network config.
    pub async fn config(&self) -> Result<NetworkConfig, RegistryError> {
        let key = self.keys().config();
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or(RegistryError::NoConfig { key: key.clone() })?;
        NetworkConfig::parse(&kv.value).map_err(|source| RegistryError::Config { key, source })
    }

    /// Reads the config as stored, without validating it.
    pub async fn raw_config(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .store
            .get(&self.keys().config())
            .await?
            .map(|kv| kv.value))
    }

    pub async fn put_config(&self, cfg: &NetworkConfig) -> Result<(), StoreError> {
        self.store
            .put(&self.keys().config(), cfg.to_json().as_bytes(), None)
            .await?;
        Ok(())
    }

    /// Turns a lease key and value into a [`Lease`], or says what is wrong with it.
    pub fn parse_lease(&self, kv: &KeyValue) -> Result<Lease, Skipped> {
        let skip = |reason: String| Skipped {
            key: kv.key.clone(),
            reason,
        };
        match self.keys.decode(entry(kv)) {
            Change::Lease(_, Some(Ok(lease))) => Ok(lease),
            Change::Lease(_, Some(Err(e))) => Err(skip(e.to_string())),
            _ => {
                let name = kv
                    .key
                    .strip_prefix(&self.keys().subnets())
                    .unwrap_or(&kv.key);
                Err(skip(format!(
                    "key name {name:?} is not a subnet like 10.244.1.0-24"
                )))
            }
        }
    }

    /// Every lease, with unreadable ones listed apart.
    pub async fn leases(&self) -> Result<LeaseSnapshot, StoreError> {
        let listing = self.store.list(&self.keys().subnets()).await?;
        let mut snap = LeaseSnapshot {
            revision: listing.revision,
            ..Default::default()
        };
        for kv in &listing.kvs {
            let name = kv
                .key
                .strip_prefix(&self.keys().subnets())
                .unwrap_or(&kv.key);
            match pool::parse_lease_key_name(name) {
                Some((subnet, v6)) => {
                    snap.taken.insert(subnet);
                    snap.taken_v6.extend(v6);
                }
                // A key whose IPv6 part cannot be read still takes its IPv4 subnet.
                None => snap.taken.extend(
                    name.split_once('&')
                        .and_then(|(v4, _)| pool::parse_key_name(v4)),
                ),
            }
            match self.parse_lease(kv) {
                Ok(l) => snap.leases.push(l),
                Err(s) => snap.skipped.push(s),
            }
        }
        Ok(snap)
    }

    /// Claims a subnet for the node with `attrs`, flannel's way: the lease that already
    /// carries this node's public IP, else `previous` (from the subnet file) if still
    /// free, else a random free one; in a dual-stack network an IPv6 subnet beside it,
    /// chosen the same way. Claims are create-if-absent, so two racing nodes never both
    /// win; the loser tries again.
    ///
    /// Re-claiming an unchanged lease writes nothing, so peers see no event. A node's
    /// lease whose IPv6 side no longer fits the config (IPv6 just switched on or off,
    /// or its subnet outside the new bounds) is given up and claimed again under the
    /// new key, keeping its IPv4 subnet where nobody took it in between.
    pub async fn acquire(
        &self,
        cfg: &NetworkConfig,
        attrs: &LeaseAttrs,
        previous: Previous,
        ttl: Duration,
    ) -> Result<Lease, AcquireError> {
        let mut previous = previous;
        for _ in 0..MAX_ATTEMPTS {
            let snap = self.leases().await?;
            let mine = snap
                .leases
                .iter()
                .find(|l| l.attrs.public_ip == attrs.public_ip && pool::contains(cfg, &l.subnet));
            if let Some(existing) = mine {
                let v6_fits = match (&cfg.ipv6, &existing.ipv6_subnet) {
                    (None, None) => true,
                    (Some(v6), Some(s)) => v6.contains(s),
                    _ => false,
                };
                if !v6_fits {
                    tracing::info!(key = %self.keys().lease_key(existing), "the lease's IPv6 subnet does not fit the config; claiming it again");
                    previous.v4 = Some(existing.subnet);
                    self.store.delete(&self.keys().lease_key(existing)).await?;
                    continue;
                }
                if let Some(lease) = self.reclaim(existing, attrs, ttl).await? {
                    return Ok(lease);
                }
                continue;
            }
            let candidate_v6 = match &cfg.ipv6 {
                None => None,
                Some(v6) => Some(
                    choose(
                        previous.v6,
                        |p| v6.contains(p),
                        &snap.taken_v6,
                        v6.subnets(),
                    )
                    .ok_or(AcquireError::ExhaustedV6 {
                        size: v6.size(),
                        len: v6.subnet_len,
                        min: v6.subnet_min,
                        max: v6.subnet_max,
                    })?,
                ),
            };
            let candidate = choose(
                previous.v4,
                |p| pool::contains(cfg, p),
                &snap.taken,
                pool::subnets(cfg),
            )
            .ok_or(AcquireError::Exhausted {
                size: pool::size(cfg),
                len: cfg.subnet_len,
                min: cfg.subnet_min,
                max: cfg.subnet_max,
            })?;
            let store_lease = self.store.grant(ttl).await?;
            let mut lease = Lease {
                subnet: candidate,
                ipv6_subnet: candidate_v6,
                attrs: attrs.clone(),
                store_lease: Some(store_lease),
                mod_revision: 0,
            };
            let key = self.keys().lease_key(&lease);
            match self
                .store
                .create(&key, &attrs.encode(), Some(store_lease))
                .await?
            {
                Some(rev) if candidate_v6.is_some() && self.lost_dual_race(&lease, rev).await? => {
                    tracing::debug!(key, "another node claimed one of these subnets under another key first; trying others");
                    let _ = self.store.delete(&key).await;
                    let _ = self.store.revoke(store_lease).await;
                }
                Some(rev) => {
                    lease.mod_revision = rev;
                    return Ok(lease);
                }
                None => {
                    tracing::debug!(subnet = %candidate, "lost the race for a subnet; trying another");
                    let _ = self.store.revoke(store_lease).await;
                }
            }
        }
        Err(AcquireError::Contention(MAX_ATTEMPTS))
    }

    /// Whether another key, created before ours (at `rev`), holds either of `lease`'s
    /// subnets. A dual-stack key names both subnets, so two nodes choosing the same IPv4
    /// subnet with different IPv6 ones (or the reverse) both succeed at create-if-absent:
    /// the later one gives way, as it would have lost the race for one key.
    async fn lost_dual_race(&self, lease: &Lease, rev: Revision) -> Result<bool, StoreError> {
        let ours = self.keys().lease_key(lease);
        let listing = self.store.list(&self.keys().subnets()).await?;
        Ok(listing.kvs.iter().any(|kv| {
            let name = kv
                .key
                .strip_prefix(&self.keys().subnets())
                .unwrap_or(&kv.key);
            let Some((v4, v6)) = pool::parse_lease_key_name(name) else {
                return false;
            };
            kv.key != ours
                && kv.create_revision < rev
                && (v4 == lease.subnet || (v6.is_some() && v6 == lease.ipv6_subnet))
        }))
    }

    /// Takes over a lease that already names this node. `Ok(None)`: it changed under us.
    async fn reclaim(
        &self,
        existing: &Lease,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let key = self.keys().lease_key(existing);
        let alive = match existing.store_lease {
            Some(id) => self.store.keep_alive(id).await?.map(|_| id),
            None => None,
        };
        if existing.is_reservation() || alive.is_some() {
            if &existing.attrs == attrs {
                return Ok(Some(existing.clone()));
            }
            let rev = self
                .store
                .compare_and_swap(&key, &attrs.encode(), existing.mod_revision, alive)
                .await?;
            return Ok(rev.map(|mod_revision| Lease {
                attrs: attrs.clone(),
                mod_revision,
                ..existing.clone()
            }));
        }
        // The store lease is gone (expired in the meantime): bind the key to a new one.
        let id = self.store.grant(ttl).await?;
        match self
            .store
            .compare_and_swap(&key, &attrs.encode(), existing.mod_revision, Some(id))
            .await?
        {
            Some(mod_revision) => Ok(Some(Lease {
                attrs: attrs.clone(),
                store_lease: Some(id),
                mod_revision,
                ..existing.clone()
            })),
            None => {
                let _ = self.store.revoke(id).await;
                Ok(None)
            }
        }
    }

    /// Rewrites this node's own lease with new attributes (its public IP moved), keeping
    /// subnet and TTL. `Ok(None)`: the lease changed under us and must be claimed again.
    pub async fn update_lease(
        &self,
        lease: &Lease,
        attrs: &LeaseAttrs,
    ) -> Result<Option<Lease>, StoreError> {
        let key = self.keys().lease_key(lease);
        let rev = self
            .store
            .compare_and_swap(&key, &attrs.encode(), lease.mod_revision, lease.store_lease)
            .await?;
        Ok(rev.map(|mod_revision| Lease {
            attrs: attrs.clone(),
            mod_revision,
            ..lease.clone()
        }))
    }

    /// Refreshes a lease's TTL. `Ok(false)`: the lease is gone and must be claimed again.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        match lease.store_lease {
            None => Ok(self
                .store
                .get(&self.keys().lease_key(lease))
                .await?
                .is_some()),
            Some(id) => Ok(self.store.keep_alive(id).await?.is_some()),
        }
    }

    /// Time left on a lease; `None` for reservations (and leases already gone).
    pub async fn expires_in(&self, lease: &Lease) -> Result<Option<Duration>, StoreError> {
        match lease.store_lease {
            None => Ok(None),
            Some(id) => self.store.time_to_live(id).await,
        }
    }

    /// Removes the lease of `subnet` (the node leaves; peers drop their routes to it),
    /// under whichever key holds it: a dual-stack lease's key names its IPv6 subnet too.
    pub async fn delete_lease(&self, subnet: &Ipv4Net) -> Result<bool, StoreError> {
        let _ = self.store.delete(&self.status_key(subnet)).await;
        let listing = self.store.list(&self.keys().subnets()).await?;
        let mut existed = false;
        for kv in &listing.kvs {
            let name = kv
                .key
                .strip_prefix(&self.keys().subnets())
                .unwrap_or(&kv.key);
            if pool::parse_lease_key_name(name).is_some_and(|(v4, _)| v4 == *subnet) {
                existed |= self.store.delete(&kv.key).await?;
            }
        }
        Ok(existed)
    }

    /// Reserves `subnet` for the node with `public_ip`: a lease without TTL.
    pub async fn reserve(&self, subnet: &Ipv4Net, public_ip: Ipv4Addr) -> Result<(), StoreError> {
        // flannel's own form: no backend type, so flannel's vxlan and host-gw skip it
        // until the node itself takes it over and writes its full lease (as Weft's
        // agents do on start); a backend type with no backend data (no VTEP MAC) stalls
        // flannel's vxlan backend.
        let attrs = LeaseAttrs {
            labels: Default::default(),
            public_ip,
            public_ipv6: None,
            backend_type: String::new(),
            backend_data: serde_json::Value::Null,
            backend_v6_data: serde_json::Value::Null,
        };
        self.store
            .put(&self.keys().lease(subnet), &attrs.encode(), None)
            .await?;
        Ok(())
    }

    fn status_key(&self, subnet: &Ipv4Net) -> String {
        format!("{}{}", self.keys().status(), pool::key_name(subnet))
    }

    /// Publishes this node's view, bound to its lease so it vanishes with it.
    pub async fn put_status(&self, lease: &Lease, status: &NodeStatus) -> Result<(), StoreError> {
        let value = serde_json::to_vec(status).expect("status serializes");
        let key = self.status_key(&lease.subnet);
        if self
            .store
            .get(&key)
            .await?
            .is_some_and(|kv| kv.value == value)
        {
            return Ok(());
        }
        self.store.put(&key, &value, lease.store_lease).await?;
        Ok(())
    }

    /// Every node's published view, by subnet.
    pub async fn statuses(&self) -> Result<Vec<(Ipv4Net, NodeStatus)>, StoreError> {
        let listing = self.store.list(&self.keys().status()).await?;
        Ok(listing
            .kvs
            .iter()
            .filter_map(|kv| {
                let subnet = pool::parse_key_name(kv.key.strip_prefix(&self.keys().status())?)?;
                Some((subnet, serde_json::from_slice(&kv.value).ok()?))
            })
            .collect())
    }
}
