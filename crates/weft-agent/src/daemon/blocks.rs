//! Block IPAM in the agent: the store's blocks followed like leases and planned with
//! `weft_backends::blocks` (blackholes for this node's blocks, routes to the others',
//! borrowed /32s), their routes joined to the one route plan.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use ipnet::Ipv4Net;
use tracing::{info, warn};
use weft_alloc::blocks::{Block, Pool};
use weft_alloc::registry::DecodeError;
use weft_alloc::registry::Orphan;
use weft_alloc::registry::{entry, Change};
use weft_alloc::Registry;
use weft_plan::iface::host_veth_name;
use weft_store::KeyValue;

use super::Agent;

impl Agent {
    /// Follows one pool (`None`: deleted); whether the picture changed.
    pub(super) fn on_pool(&mut self, name: &str, value: Option<Result<Pool, DecodeError>>) -> bool {
        match value {
            Some(Ok(p)) => {
                let old = self.view.pools.insert(p.name.clone(), p.clone());
                old != Some(p)
            }
            Some(Err(e)) => {
                warn!(pool = name, error = %e, "ignoring an unreadable pool; keeping the previous value");
                false
            }
            None => self.view.pools.remove(name).is_some(),
        }
    }

    /// Follows one block (`None`: deleted); whether the picture changed.
    pub(super) fn on_block(
        &mut self,
        cidr: Ipv4Net,
        value: Option<Result<Block, DecodeError>>,
    ) -> bool {
        match value {
            Some(Ok(b)) => self.view.blocks.insert(b.cidr, b.clone()) != Some(b),
            Some(Err(e)) => {
                // The last good value stays: a garbled write must not cut a block off.
                warn!(block = %cidr, error = %e, "ignoring an unreadable block; keeping the previous value");
                false
            }
            None => self.view.blocks.remove(&cidr).is_some(),
        }
    }

    /// The pools and blocks as a full listing has them (start, or after compaction);
    /// an unreadable one keeps its last good value.
    pub(super) fn load_blocks(&mut self, kvs: &[KeyValue]) {
        let mut pools = BTreeMap::new();
        let mut blocks = BTreeMap::new();
        for kv in kvs {
            match self.registry.keys().decode(entry(kv)) {
                Change::Pool(name, Some(read)) => {
                    let p = read.ok().or_else(|| self.view.pools.get(&name).cloned());
                    pools.extend(p.map(|p| (p.name.clone(), p)));
                }
                Change::Block(cidr, Some(read)) => {
                    let b = read.ok().or_else(|| self.view.blocks.get(&cidr).cloned());
                    blocks.extend(b.map(|b| (b.cidr, b)));
                }
                _ => {}
            }
        }
        self.view.pools = pools;
        self.view.blocks = blocks;
    }

    /// Gives back the blocks this node holds, and those of nodes that left (no lease),
    /// that have stayed empty for the grace period (`--block-release-grace`); each
    /// release is one compare-and-swap, so an allocation that lands meanwhile keeps the
    /// block, and agents racing to release a gone node's block release it once.
    ///
    /// The store's part runs in a task of its own, so the loop never waits on the
    /// store; the future returned ends with it (the loop lets it run detached).
    pub(super) fn release_empty_blocks(&mut self) -> impl std::future::Future<Output = ()> {
        let task = self.release_task();
        async move {
            if let Some(t) = task {
                let _ = t.await;
            }
        }
    }

    fn release_task(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let me = self.view.attrs.public_ip;
        let alive: Vec<Ipv4Addr> = self
            .view
            .peers
            .values()
            .map(|l| l.attrs.public_ip)
            .collect();
        let empty: Vec<Ipv4Net> = self
            .view
            .blocks
            .values()
            .filter(|b| b.node == me || !alive.contains(&b.node))
            .filter(|b| b.allocations.is_empty() && !b.releasing)
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
        if due.is_empty() || self.releasing.as_ref().is_some_and(|t| !t.is_finished()) {
            return None;
        }
        // A released block leaves the picture through the watch.
        let task = tokio::spawn(release_blocks(self.registry.clone(), due));
        self.releasing = Some(task.abort_handle());
        Some(task)
    }

    /// Finds the block addresses used on this node whose container interface (the CNI
    /// plugin's host veth, named from the handle `network/container/ifname`) has been
    /// missing for the grace period, and reports them in the node status for `weftctl
    /// ipam check`. Nothing is freed here: a runtime's GC or the operator decides.
    pub(super) async fn find_orphans(&mut self) {
        let me = self.view.attrs.public_ip;
        let used: Vec<(Ipv4Addr, String, String)> = self
            .view
            .blocks
            .values()
            .flat_map(|b| b.allocations.iter())
            .filter(|(_, a)| a.node == me)
            .filter_map(|(ip, a)| {
                let mut parts = a.handle.rsplitn(3, '/');
                let (ifname, ctr) = (parts.next()?, parts.next()?);
                parts.next()?;
                Some((*ip, a.handle.clone(), host_veth_name(ctr, ifname)))
            })
            .collect();
        let links = if used.is_empty() {
            Vec::new()
        } else {
            match self.dp.links().await {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "cannot list links to look for orphaned addresses; will retry");
                    return;
                }
            }
        };
        let now = Instant::now();
        let missing: Vec<(Ipv4Addr, String)> = used
            .into_iter()
            .filter(|(_, _, veth)| !links.iter().any(|l| &l.name == veth))
            .map(|(ip, handle, _)| (ip, handle))
            .collect();
        let since = &mut self.last.orphans_since;
        since.retain(|k, _| missing.contains(k));
        let grace = self.opts.block_release_grace;
        let orphans: Vec<Orphan> = missing
            .into_iter()
            .filter(|k| now.duration_since(*since.entry(k.clone()).or_insert(now)) >= grace)
            .map(|(ip, handle)| Orphan { ip, handle })
            .collect();
        for o in orphans.iter().filter(|o| !self.last.orphans.contains(o)) {
            warn!(ip = %o.ip, handle = %o.handle, "an address from a block has no container interface here; weftctl ipam check lists it");
        }
        self.last.orphans = orphans;
    }
}

/// Releases the blocks `due` (each one compare-and-swap, so one used again meanwhile
/// stays).
async fn release_blocks(registry: Registry, due: Vec<Ipv4Net>) {
    let blocks = match registry.blocks().await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "cannot read the blocks to release empty ones; will retry");
            return;
        }
    };
    for b in blocks.iter().filter(|b| due.contains(&b.block.cidr)) {
        match registry.release_block(b).await {
            Ok(true) => {
                info!(block = %b.block.cidr, pool = %b.block.pool, "released an empty block")
            }
            Ok(false) => {} // used again meanwhile
            Err(e) => {
                warn!(block = %b.block.cidr, error = %e, "cannot release an empty block; will retry")
            }
        }
    }
}
