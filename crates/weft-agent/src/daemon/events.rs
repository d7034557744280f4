//! Store events: how each change to the store updates the agent's picture of the
//! network, and whether the plan may have changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use tracing::{error, info, warn};
use weft_alloc::address::AddressClaim;
use weft_alloc::{pool, NetworkConfig};
use weft_store::{KeyValue, WatchEvent};

use super::Agent;

impl Agent {
    fn is_lease_key(&self, key: &str) -> bool {
        key.starts_with(&self.registry.subnets_prefix())
    }

    /// Updates the picture from one store change; returns whether the plan may change.
    pub(super) async fn on_event(&mut self, event: WatchEvent) -> bool {
        self.metrics.store_events.fetch_add(1, Ordering::Relaxed);
        if let Some(feed) = &self.block_feed {
            feed.event(&event);
        }
        if let Some(changed) = self.on_named_event(&event) {
            return changed;
        }
        if let Some(changed) = self.on_block_event(&event) {
            return changed;
        }
        if let Some(changed) = self.on_policy_event(&event) {
            return changed;
        }
        match event {
            WatchEvent::Put(kv) if kv.key == self.registry.config_key() => {
                self.on_config(&kv.value)
            }
            WatchEvent::Delete { key, .. } if key == self.registry.config_key() => {
                error!(key, "network config deleted; keeping the last good one");
                false
            }
            WatchEvent::Put(kv) if self.is_lease_key(&kv.key) => self.on_lease_put(&kv),
            WatchEvent::Delete { key, .. } if self.is_lease_key(&key) => {
                let name = key.trim_start_matches(&self.registry.subnets_prefix());
                let Some(subnet) = pool::parse_key_name(name) else {
                    return false;
                };
                if subnet == self.view.node.lease.subnet {
                    warn!(%subnet, "our own lease was deleted; claiming a subnet again");
                    self.reacquire().await;
                    return true;
                }
                let gone = self.view.peers.remove(&subnet);
                if let Some(l) = &gone {
                    info!(%subnet, public_ip = %l.attrs.public_ip, "peer left");
                }
                gone.is_some()
            }
            WatchEvent::Put(kv) if kv.key.starts_with(&self.registry.bgp_peers_prefix()) => {
                match self.plane.bgp.as_mut() {
                    Some(b) => b.on_put(&kv.key, &kv.value),
                    None => false,
                }
            }
            WatchEvent::Delete { key, .. }
                if key.starts_with(&self.registry.bgp_peers_prefix()) =>
            {
                self.plane.bgp.as_mut().is_some_and(|b| b.on_delete(&key))
            }
            WatchEvent::Put(kv) if kv.key.starts_with(&self.registry.addresses_prefix()) => {
                match self.registry.parse_address(&kv.key, &kv.value) {
                    Some((ip, c)) => self.on_address(ip, Some(c)),
                    None => {
                        warn!(key = %kv.key, "ignoring an unreadable address claim");
                        false
                    }
                }
            }
            WatchEvent::Delete { key, .. }
                if key.starts_with(&self.registry.addresses_prefix()) =>
            {
                match key
                    .trim_start_matches(&self.registry.addresses_prefix())
                    .parse()
                {
                    Ok(ip) => self.on_address(ip, None),
                    Err(_) => false,
                }
            }
            WatchEvent::Resync { kvs, revision } => {
                info!(
                    revision,
                    "store history was compacted; rebuilding from a full listing"
                );
                self.on_resync(kvs).await;
                true
            }
            _ => false, // status records and anything else under the prefix
        }
    }

    /// Follows one single-address claim (`None`: released); whether ours changed.
    pub(super) fn on_address(&mut self, ip: Ipv4Addr, claim: Option<AddressClaim>) -> bool {
        let ours = claim.is_some_and(|c| c.node == self.view.attrs.public_ip);
        let changed = if ours {
            self.view.held.insert(ip)
        } else {
            self.view.held.remove(&ip)
        };
        if changed {
            info!(%ip, held = ours, "address outside the subnet");
        }
        changed
    }

    /// Takes a new config if it is valid and can apply without a restart.
    pub(super) fn on_config(&mut self, value: &[u8]) -> bool {
        match NetworkConfig::parse(value) {
            Err(e) => {
                error!(error = %e, "new network config rejected; keeping the last good one");
                false
            }
            Ok(c) if c == self.view.config => false,
            Ok(c) => {
                if c.network != self.view.config.network
                    || c.subnet_len != self.view.config.subnet_len
                    || c.backend != self.view.config.backend
                {
                    warn!(network = %c.network, backend = %c.backend, "network config changed in a way that needs a restart of every agent; running on the previous one until then");
                    return false;
                }
                let backend = weft_backends::build(&c, &self.settings(self.view.attrs.public_ip));
                if self.opts.big_tcp && backend.encapsulates() {
                    error!("new network config encapsulates, which --big-tcp cannot carry; keeping the last good one");
                    return false;
                }
                info!("network config updated");
                if let Some(feed) = &self.block_feed {
                    feed.model(c.ipam);
                }
                self.plane.backend = backend;
                self.view.config = c;
                // What other programs read follows at once (MTU, masquerade): the subnet
                // file and Docker's options; the devices follow in the reconcile.
                if let Err(e) = self.write_host_files() {
                    error!(error = %e, "cannot rewrite the host files for the new config; will retry at the resync");
                }
                true
            }
        }
    }

    pub(super) fn on_lease_put(&mut self, kv: &KeyValue) -> bool {
        match self.registry.parse_lease(kv) {
            Err(s) => {
                // Keep whatever we knew of that subnet: a garbled write must not cut it off.
                warn!(key = %s.key, reason = %s.reason, "skipping unreadable lease; keeping the previous value");
                false
            }
            Ok(lease) => {
                if lease.subnet == self.view.node.lease.subnet {
                    if lease.attrs != self.view.attrs {
                        warn!(subnet = %lease.subnet, public_ip = %lease.attrs.public_ip, "our subnet's lease was overwritten by another writer");
                    }
                    self.view.node.lease.mod_revision = lease.mod_revision;
                    self.view.node.lease.store_lease = lease.store_lease;
                }
                let changed =
                    self.view.peers.get(&lease.subnet).map(|l| &l.attrs) != Some(&lease.attrs);
                if changed {
                    info!(subnet = %lease.subnet, public_ip = %lease.attrs.public_ip, backend = %lease.attrs.backend_type, "peer lease");
                }
                self.view.peers.insert(lease.subnet, lease);
                changed
            }
        }
    }

    pub(super) async fn on_resync(&mut self, kvs: Vec<KeyValue>) {
        let mut fresh = BTreeMap::new();
        self.view.held.clear();
        self.load_named(&kvs);
        self.load_blocks(&kvs);
        self.last.policy_relist = true;
        for kv in &kvs {
            if let Some((ip, c)) = self.registry.parse_address(&kv.key, &kv.value) {
                self.on_address(ip, Some(c));
                continue;
            }
            if kv.key == self.registry.config_key() {
                self.on_config(&kv.value);
            } else if self.is_lease_key(&kv.key) {
                match self.registry.parse_lease(kv) {
                    Ok(l) => {
                        fresh.insert(l.subnet, l);
                    }
                    Err(s) => {
                        warn!(key = %s.key, reason = %s.reason, "skipping unreadable lease; keeping the previous value");
                        let name = kv.key.trim_start_matches(&self.registry.subnets_prefix());
                        if let Some(old) =
                            pool::parse_key_name(name).and_then(|n| self.view.peers.get(&n))
                        {
                            fresh.insert(old.subnet, old.clone());
                        }
                    }
                }
            }
        }
        let own_gone = !fresh.contains_key(&self.view.node.lease.subnet);
        self.view.peers = fresh;
        if own_gone {
            warn!(subnet = %self.view.node.lease.subnet, "our lease is gone; claiming a subnet again");
            self.reacquire().await;
        }
    }
}
