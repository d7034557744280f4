//! Store events: how each change to the store updates the agent's picture of the
//! network, and whether the plan may have changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use ipnet::Ipv4Net;
use tracing::{debug, error, info, warn};
use weft_alloc::address::AddressClaim;
use weft_alloc::registry::{entry, Change, Entry};
use weft_alloc::{Lease, NetworkConfig};
use weft_store::{KeyValue, WatchEvent};

use super::Agent;

impl Agent {
    /// Updates the picture from one store change; returns whether the plan may change.
    /// The key and value are decoded once (`weft_model::keys`) and each kind goes to
    /// its own handler; an unreadable value keeps the last good one.
    pub(super) async fn on_event(&mut self, event: WatchEvent) -> bool {
        self.metrics.store_events.fetch_add(1, Ordering::Relaxed);
        if let Some(feed) = &self.block_feed {
            feed.event(&event);
        }
        let (entry, revision) = match &event {
            WatchEvent::Put(kv) => (entry(kv), kv.mod_revision),
            WatchEvent::Delete { key, revision } => (
                Entry {
                    key,
                    value: None,
                    mod_revision: *revision,
                    lease: None,
                },
                *revision,
            ),
            WatchEvent::Resync { kvs, revision } => {
                info!(
                    revision,
                    "store history was compacted; rebuilding from a full listing"
                );
                self.on_resync(kvs).await;
                return true;
            }
        };
        let key = entry.key;
        match self.registry.keys().decode(entry) {
            Change::Config(Some(Ok(c))) => self.take_config(c),
            Change::Config(Some(Err(e))) => {
                error!(error = %e, "new network config rejected; keeping the last good one");
                false
            }
            Change::Config(None) => {
                error!(key, "network config deleted; keeping the last good one");
                false
            }
            Change::Lease(_, Some(Ok(lease))) => self.on_lease(lease),
            Change::Lease(_, Some(Err(e))) => {
                // Keep whatever we knew of that subnet: a garbled write must not cut it off.
                warn!(key, reason = %e, "skipping unreadable lease; keeping the previous value");
                false
            }
            Change::Lease(subnet, None) => {
                // A dual-stack key names both subnets: a deleted key that is not the one
                // this subnet's lease is held under (a racing claim that gave way) takes
                // nothing away.
                let deleted = key
                    .strip_prefix(&self.registry.keys().subnets())
                    .and_then(weft_model::pool::parse_lease_key_name)
                    .map(|(_, v6)| v6);
                match self.view.peers.get(&subnet) {
                    Some(held) if deleted.is_some_and(|v6| v6 != held.ipv6_subnet) => {
                        debug!(
                            key,
                            "a key of this subnet other than its lease's was deleted"
                        );
                        false
                    }
                    _ => self.on_lease_deleted(subnet).await,
                }
            }
            Change::Address(ip, Some(Ok(c))) => self.on_address(ip, Some(c)),
            Change::Address(_, Some(Err(_))) => {
                warn!(key, "ignoring an unreadable address claim");
                false
            }
            Change::Address(ip, None) => self.on_address(ip, None),
            Change::Network(name, value) => self.on_network(&name, value),
            Change::Endpoint(network, ip, value) => self.on_endpoint(network, ip, value),
            Change::Pool(name, value) => self.on_pool(&name, value),
            Change::Block(cidr, value) => self.on_block(cidr, value),
            Change::Policy(rest, value) => {
                // A policy that opens networks to each other (or closes them) changes
                // the host plan too (see `NamedContext::between`).
                let opened = self.policy.opens_between();
                self.policy.on_record(&rest, value.as_deref(), revision);
                self.policy.opens_between() != opened
            }
            Change::BgpPeer(key, value) => match (self.runtime.bgp.as_mut(), value) {
                (Some(b), Some(v)) => b.on_put(&key, &v),
                (Some(b), None) => b.on_delete(&key),
                (None, _) => false,
            },
            Change::Other { unreadable_key } => {
                if unreadable_key {
                    warn!(key, "ignoring a key whose name cannot be read");
                }
                false // status records, VNI claims and anything else under the prefix
            }
        }
    }

    /// This node's lease deleted: claim again; a peer's: it left.
    async fn on_lease_deleted(&mut self, subnet: Ipv4Net) -> bool {
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

    /// Takes a config as stored: refused (and the last good one kept) when invalid.
    /// The watch's path decodes first ([`Agent::on_event`]); tests hand bytes here.
    #[cfg(test)]
    pub(super) fn on_config(&mut self, value: &[u8]) -> bool {
        match NetworkConfig::parse(value) {
            Ok(c) => self.take_config(c),
            Err(e) => {
                error!(error = %e, "new network config rejected; keeping the last good one");
                false
            }
        }
    }

    /// Takes a new valid config if it can apply without a restart.
    pub(super) fn take_config(&mut self, c: NetworkConfig) -> bool {
        match c {
            c if c == self.view.config => false,
            c => {
                if c.network != self.view.config.network
                    || c.subnet_len != self.view.config.subnet_len
                    || c.backend != self.view.config.backend
                {
                    warn!(network = %c.network, backend = %c.backend, "network config changed in a way that needs a restart of every agent; running on the previous one until then");
                    return false;
                }
                let backend = weft_backends::build(
                    &c,
                    &self.settings(self.view.attrs.public_ip, self.view.attrs.public_ipv6),
                );
                if self.opts.big_tcp && backend.encapsulates() {
                    error!("new network config encapsulates, which --big-tcp cannot carry; keeping the last good one");
                    return false;
                }
                info!("network config updated");
                if let Some(feed) = &self.block_feed {
                    feed.model(c.ipam);
                }
                self.runtime.backend = backend;
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

    pub(super) fn on_lease(&mut self, lease: Lease) -> bool {
        {
            {
                if let Some(held) = self.view.peers.get(&lease.subnet) {
                    if held.ipv6_subnet != lease.ipv6_subnet
                        && held.mod_revision < lease.mod_revision
                    {
                        // Another key for the same IPv4 subnet (two nodes racing with
                        // different IPv6 subnets): the later one gives way and deletes
                        // its key (`Registry::acquire`); the lease held stays.
                        debug!(subnet = %lease.subnet, "a second key for a subnet already leased; keeping the first");
                        return false;
                    }
                }
                if lease.subnet == self.view.node.lease.subnet {
                    if lease.attrs != self.view.attrs {
                        warn!(subnet = %lease.subnet, public_ip = %lease.attrs.public_ip, "our subnet's lease was overwritten by another writer");
                    }
                    self.view.node.lease.mod_revision = lease.mod_revision;
                    self.view.node.lease.store_lease = lease.store_lease;
                }
                let changed = self
                    .view
                    .peers
                    .get(&lease.subnet)
                    .map(|l| (&l.attrs, l.ipv6_subnet))
                    != Some((&lease.attrs, lease.ipv6_subnet));
                if changed {
                    info!(subnet = %lease.subnet, public_ip = %lease.attrs.public_ip, backend = %lease.attrs.backend_type, "peer lease");
                }
                self.view.peers.insert(lease.subnet, lease);
                changed
            }
        }
    }

    pub(super) async fn on_resync(&mut self, kvs: &[KeyValue]) {
        let mut fresh = BTreeMap::new();
        self.view.held.clear();
        self.load_named(kvs);
        self.load_blocks(kvs);
        self.policy.relist();
        for kv in kvs {
            match self.registry.keys().decode(entry(kv)) {
                Change::Address(ip, Some(Ok(c))) => {
                    self.on_address(ip, Some(c));
                }
                Change::Config(Some(Ok(c))) => {
                    self.take_config(c);
                }
                Change::Config(Some(Err(e))) => {
                    error!(error = %e, "new network config rejected; keeping the last good one")
                }
                Change::Lease(_, Some(Ok(l))) => {
                    fresh.insert(l.subnet, l);
                }
                Change::Lease(subnet, Some(Err(e))) => {
                    warn!(key = %kv.key, reason = %e, "skipping unreadable lease; keeping the previous value");
                    if let Some(old) = self.view.peers.get(&subnet) {
                        fresh.insert(old.subnet, old.clone());
                    }
                }
                _ => {}
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
