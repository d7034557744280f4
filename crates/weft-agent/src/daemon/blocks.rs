//! Block IPAM in the agent: the store's blocks followed like leases and planned with
//! `weft_backends::blocks` (blackholes for this node's blocks, routes to the others',
//! borrowed /32s), their routes joined to the one route plan.

use std::collections::BTreeMap;
use std::time::Instant;

use ipnet::Ipv4Net;
use tracing::{info, warn};
use weft_alloc::blocks::Block;
use weft_alloc::Lease;
use weft_backends::blocks::{plan, BlockPlan};
use weft_plan::Route;
use weft_store::{KeyValue, WatchEvent};

use super::Agent;

impl Agent {
    /// Follows one store change if it is about a block; `None` if it is not.
    pub(super) fn on_block_event(&mut self, event: &WatchEvent) -> Option<bool> {
        let prefix = self.registry.blocks_prefix();
        match event {
            WatchEvent::Put(kv) if kv.key.starts_with(&prefix) => Some(self.on_block_put(kv)),
            WatchEvent::Delete { key, .. } if key.starts_with(&prefix) => {
                let name = &key[prefix.len()..];
                Some(
                    weft_alloc::pool::parse_key_name(name)
                        .is_some_and(|b| self.view.blocks.remove(&b).is_some()),
                )
            }
            _ => None,
        }
    }

    fn on_block_put(&mut self, kv: &KeyValue) -> bool {
        match serde_json::from_slice::<Block>(&kv.value) {
            Ok(b) => self.view.blocks.insert(b.cidr, b.clone()) != Some(b),
            Err(e) => {
                // The last good value stays: a garbled write must not cut a block off.
                warn!(key = %kv.key, error = %e, "ignoring an unreadable block; keeping the previous value");
                false
            }
        }
    }

    /// The blocks as a full listing has them (start, or after compaction).
    pub(super) fn load_blocks(&mut self, kvs: &[KeyValue]) {
        let prefix = self.registry.blocks_prefix();
        let mut fresh = BTreeMap::new();
        for kv in kvs.iter().filter(|kv| kv.key.starts_with(&prefix)) {
            match serde_json::from_slice::<Block>(&kv.value) {
                Ok(b) => {
                    fresh.insert(b.cidr, b);
                }
                Err(_) => {
                    let name = &kv.key[prefix.len()..];
                    if let Some(old) = weft_alloc::pool::parse_key_name(name)
                        .and_then(|c| self.view.blocks.get(&c))
                    {
                        fresh.insert(old.cidr, old.clone());
                    }
                }
            }
        }
        self.view.blocks = fresh;
    }

    pub(super) fn block_plan(&self, peers: &[Lease], backend_routes: &[Route]) -> BlockPlan {
        let blocks: Vec<Block> = self.view.blocks.values().cloned().collect();
        plan(&self.plan_context(peers, backend_routes), &blocks)
    }

    /// Gives back the blocks this node holds that have stayed empty for the grace
    /// period (`--block-release-grace`); each release is one compare-and-swap, so an
    /// allocation that lands meanwhile keeps the block.
    pub(super) async fn release_empty_blocks(&mut self) {
        let me = self.view.attrs.public_ip;
        let empty: Vec<Ipv4Net> = self
            .view
            .blocks
            .values()
            .filter(|b| b.node == me && b.allocations.is_empty() && !b.releasing)
            .map(|b| b.cidr)
            .collect();
        let since = &mut self.last.blocks_empty_since;
        since.retain(|c, _| empty.contains(c));
        let due: Vec<Ipv4Net> = empty
            .iter()
            .filter(|c| {
                since.entry(**c).or_insert_with(Instant::now).elapsed()
                    >= self.opts.block_release_grace
            })
            .copied()
            .collect();
        if due.is_empty() {
            return;
        }
        let blocks = match self.registry.blocks().await {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot read the blocks to release empty ones; will retry");
                return;
            }
        };
        for b in blocks.iter().filter(|b| due.contains(&b.block.cidr)) {
            match self.registry.release_block(b).await {
                Ok(true) => {
                    info!(block = %b.block.cidr, pool = %b.block.pool, "released an empty block");
                    self.last.blocks_empty_since.remove(&b.block.cidr);
                }
                Ok(false) => {} // used again meanwhile
                Err(e) => {
                    warn!(block = %b.block.cidr, error = %e, "cannot release an empty block; will retry")
                }
            }
        }
    }

    /// The blocks and borrowed addresses the bgp backend announces for this node.
    pub(super) fn block_announcements(&self) -> Vec<Ipv4Net> {
        if self.plane.backend.bgp().is_none() {
            return Vec::new();
        }
        self.block_plan(&[], &[]).announce
    }
}
