//! Block IPAM on the agent's socket: addresses for the CNI plugin's containers, taken
//! from this node's blocks with the node's picture of them ([`BlockCache`]), so an
//! allocation from a block the node holds is one store round trip.
//!
//! The agent's main loop feeds the picture ([`BlockFeed`]): every store change under
//! the IPAM prefix and the config's IPAM model. It never waits for the socket: changes
//! go through a bounded channel, and if it fills the picture is marked stale and read
//! again on the next request. Requests are served one at a time, in order: two ADDs
//! on one node never race each other for an address.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Mutex};
use tracing::{info, warn};
use weft_alloc::agent_api::ApiError;
use weft_alloc::block_cache::BlockCache;
use weft_alloc::blocks::BlockError;
use weft_alloc::{IpamModel, Registry};
use weft_store::WatchEvent;

/// Store changes held for the picture before it is marked stale instead.
const FEED_DEPTH: usize = 1024;
/// A handle longer than this is refused (the CNI plugin's are far shorter).
const MAX_HANDLE: usize = 512;

/// The agent's end: what it tells the socket.
pub struct BlockFeed {
    prefix: String,
    events: mpsc::Sender<WatchEvent>,
    stale: Arc<AtomicBool>,
    model: watch::Sender<IpamModel>,
}

impl BlockFeed {
    /// Passes a store change on if it concerns pools or blocks (or is a full resync).
    pub fn event(&self, event: &WatchEvent) {
        let relevant = match event {
            WatchEvent::Put(kv) => kv.key.starts_with(&self.prefix),
            WatchEvent::Delete { key, .. } => key.starts_with(&self.prefix),
            WatchEvent::Resync { .. } => true,
        };
        if relevant && self.events.try_send(event.clone()).is_err() {
            self.stale.store(true, Ordering::Relaxed);
        }
    }

    /// The config's IPAM model, when it changes.
    pub fn model(&self, model: IpamModel) {
        self.model
            .send_if_modified(|m| std::mem::replace(m, model) != model);
    }
}

/// The socket's end.
pub struct BlockService {
    registry: Registry,
    node: Ipv4Addr,
    model: watch::Receiver<IpamModel>,
    stale: Arc<AtomicBool>,
    state: Mutex<(BlockCache, mpsc::Receiver<WatchEvent>)>,
}

impl BlockService {
    pub fn new(registry: Registry, node: Ipv4Addr, model: IpamModel) -> (BlockFeed, BlockService) {
        let (tx, rx) = mpsc::channel(FEED_DEPTH);
        let (model_tx, model_rx) = watch::channel(model);
        let stale = Arc::new(AtomicBool::new(false));
        let feed = BlockFeed {
            prefix: registry.keys().ipam(),
            events: tx,
            stale: stale.clone(),
            model: model_tx,
        };
        let service = BlockService {
            registry,
            node,
            model: model_rx,
            stale,
            state: Mutex::new((BlockCache::default(), rx)),
        };
        (feed, service)
    }

    fn strict(&self) -> Result<bool, ApiError> {
        match *self.model.borrow() {
            IpamModel::Blocks { strict_affinity } => Ok(strict_affinity),
            IpamModel::Subnets => Err(ApiError::refused(
                "this cluster's IPAM is per-node subnets (the network config has no \"IPAM\": \"blocks\"); \
                 addresses come from the node's subnet",
            )),
        }
    }

    /// Locks the picture and brings it up to what the feed has said.
    async fn picture(
        &self,
    ) -> tokio::sync::MutexGuard<'_, (BlockCache, mpsc::Receiver<WatchEvent>)> {
        let mut state = self.state.lock().await;
        let (cache, rx) = &mut *state;
        while let Ok(ev) = rx.try_recv() {
            cache.apply(&self.registry, &ev);
        }
        if self.stale.swap(false, Ordering::Relaxed) {
            cache.invalidate();
        }
        state
    }

    /// An address for `handle`: `wanted` if given, else the next free one.
    pub async fn allocate(
        &self,
        handle: &str,
        wanted: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, ApiError> {
        check_handle(handle)?;
        let strict = self.strict()?;
        let mut state = self.picture().await;
        let cache = &mut state.0;
        let got = match wanted {
            None => {
                self.registry
                    .allocate_cached(cache, self.node, handle, strict)
                    .await
            }
            Some(ip) => self
                .registry
                .allocate_fixed_cached(cache, self.node, ip, handle)
                .await
                .map(|()| ip),
        };
        let ip = got.map_err(said)?;
        info!(%ip, handle, "address from a block");
        Ok(ip)
    }

    /// Gives `ip` back if `handle` holds it.
    pub async fn free(&self, handle: &str, ip: Ipv4Addr) -> Result<bool, ApiError> {
        check_handle(handle)?;
        let mut state = self.picture().await;
        let freed = self
            .registry
            .release_cached(&mut state.0, ip, handle)
            .await
            .map_err(said)?;
        if freed {
            info!(%ip, handle, "address back to its block");
        }
        Ok(freed)
    }

    /// Gives back every address used on this node whose handle starts with `prefix`
    /// and is not in `keep` (CNI GC), read fresh from the store.
    pub async fn collect(&self, prefix: &str, keep: &[String]) -> Result<Vec<Ipv4Addr>, ApiError> {
        if prefix.is_empty() {
            return Err(ApiError::refused(
                "Collect needs a handle prefix (the CNI network's name and '/')",
            ));
        }
        let mut state = self.picture().await;
        let cache = &mut state.0;
        cache.invalidate();
        self.registry
            .load_blocks_into(cache)
            .await
            .map_err(|e| said(e.into()))?;
        let stale: Vec<(Ipv4Addr, String)> = cache
            .used_on(self.node)
            .into_iter()
            .filter(|(_, h)| {
                // A kept handle ending in '/' keeps every interface of its container.
                h.starts_with(prefix)
                    && !keep
                        .iter()
                        .any(|k| k == h || (k.ends_with('/') && h.starts_with(k.as_str())))
            })
            .collect();
        let mut freed = Vec::new();
        for (ip, handle) in stale {
            match self.registry.release_cached(cache, ip, &handle).await {
                Ok(true) => {
                    info!(%ip, handle, "collected an address whose container is gone");
                    freed.push(ip);
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(%ip, handle, error = %e, "cannot collect an address; the next GC retries");
                    return Err(said(e));
                }
            }
        }
        Ok(freed)
    }
}

/// An allocator's error as the plugin reports it: a store that does not answer (nothing
/// was written) and a lost race are worth trying again; the rest is refused.
fn said(e: BlockError) -> ApiError {
    match e {
        BlockError::Store(s) => ApiError::transient(format!(
            "the store did not answer ({s}); nothing was allocated or freed"
        )),
        e @ BlockError::Contended(_) => ApiError::transient(e.to_string()),
        other => ApiError::refused(other.to_string()),
    }
}

fn check_handle(handle: &str) -> Result<(), ApiError> {
    if handle.is_empty() || handle.len() > MAX_HANDLE || handle.chars().any(char::is_control) {
        return Err(ApiError::refused(format!(
            "a handle must be 1 to {MAX_HANDLE} printable characters, not {handle:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_alloc::blocks::Pool;
    use weft_store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn collect_keeps_what_the_runtime_lists_and_frees_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(EmbeddedStore::open(dir.path().join("s.db")).unwrap());
        let registry = Registry::new(store, "/t");
        registry
            .create_pool(&Pool {
                name: "p".into(),
                cidr: "10.248.0.0/24".parse().unwrap(),
                block_size: 26,
                nat_outgoing: false,
                disabled: false,
            })
            .await
            .unwrap();
        let node: Ipv4Addr = "192.0.2.1".parse().unwrap();
        let model = IpamModel::Blocks {
            strict_affinity: false,
        };
        let (_feed, svc) = BlockService::new(registry, node, model);
        let mut ips = Vec::new();
        for h in [
            "net/a/eth0",
            "net/b/eth0",
            "net/b/eth1",
            "net/gone/eth0",
            "other/x/eth0",
        ] {
            ips.push(svc.allocate(h, None).await.unwrap());
        }
        // Asked again, the same address.
        assert_eq!(svc.allocate("net/a/eth0", None).await.unwrap(), ips[0]);
        let keep = vec!["net/a/eth0".to_owned(), "net/b/".to_owned()];
        let freed = svc.collect("net/", &keep).await.unwrap();
        assert_eq!(freed, [ips[3]], "only the gone container of this network");
        assert!(
            svc.collect("", &keep).await.is_err(),
            "a prefix is required"
        );
        assert!(svc.allocate("bad\nhandle", None).await.is_err());
    }
}
