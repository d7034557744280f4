//! A node's picture of the pools and blocks, kept by its agent so that an allocation
//! from a block the node already holds costs one store round trip: the
//! compare-and-swap itself.
//!
//! The picture is read in one listing (pools and blocks share a prefix), then follows
//! the store's watch ([`BlockCache::apply`]) and every write made through it. It may
//! still be behind (another node borrowed from our block a moment ago, or claimed the
//! block we think free): then the write fails, the picture is read again and the choice
//! made again, so being behind costs a round trip, never a duplicate. An answer that
//! refuses (no address left, address taken) is only given from a fresh reading.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_store::{Revision, StoreError, WatchEvent};

use crate::blocks::{pick, Block, BlockAt, BlockError, Choice, Pool, MAX_RACES};
use crate::registry::Registry;

/// Pools and blocks as last read or written, each block with its revision.
#[derive(Debug, Default, Clone)]
pub struct BlockCache {
    loaded: bool,
    /// The revision of the listing: older watch events are already in it.
    listed_at: Revision,
    pools: Vec<Pool>,
    blocks: BTreeMap<Ipv4Net, BlockAt>,
}

impl BlockCache {
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The blocks as the picture has them.
    pub fn blocks(&self) -> impl Iterator<Item = &BlockAt> {
        self.blocks.values()
    }

    /// Forgets the picture: the next call reads the store.
    pub fn invalidate(&mut self) {
        self.loaded = false;
    }

    fn set(&mut self, at: BlockAt) {
        if self
            .blocks
            .get(&at.block.cidr)
            .is_none_or(|old| old.revision < at.revision)
        {
            self.blocks.insert(at.block.cidr, at);
        }
    }

    /// Follows one store change; anything it cannot follow exactly (a pool changed, an
    /// unreadable block, a compacted history) makes the next call read the store.
    pub fn apply(&mut self, registry: &Registry, event: &WatchEvent) {
        if !self.loaded || event.revision() <= self.listed_at {
            return;
        }
        let blocks = registry.keys().blocks();
        match event {
            WatchEvent::Put(kv) if kv.key.starts_with(&blocks) => match Registry::parse_block(kv) {
                Some(at) => self.set(at),
                None => self.loaded = false,
            },
            WatchEvent::Delete { key, revision } if key.starts_with(&blocks) => {
                let cidr = crate::pool::parse_key_name(&key[blocks.len()..]);
                if let Some(cidr) = cidr {
                    if self
                        .blocks
                        .get(&cidr)
                        .is_some_and(|b| b.revision < *revision)
                    {
                        self.blocks.remove(&cidr);
                    }
                }
            }
            WatchEvent::Put(kv) if kv.key.starts_with(&registry.keys().pools()) => {
                self.loaded = false
            }
            WatchEvent::Delete { key, .. } if key.starts_with(&registry.keys().pools()) => {
                self.loaded = false
            }
            WatchEvent::Resync { .. } => self.loaded = false,
            _ => {}
        }
    }

    /// The address `handle` already holds, if any (a retried request).
    fn held_by(&self, handle: &str) -> Option<Ipv4Addr> {
        self.blocks.values().find_map(|b| {
            b.block
                .allocations
                .iter()
                .find(|(_, a)| a.handle == handle)
                .map(|(ip, _)| *ip)
        })
    }

    /// Every address used on `node` (from its blocks or borrowed), with its handle.
    pub fn used_on(&self, node: Ipv4Addr) -> Vec<(Ipv4Addr, String)> {
        self.blocks
            .values()
            .flat_map(|b| b.block.allocations.iter())
            .filter(|(_, a)| a.node == node)
            .map(|(ip, a)| (*ip, a.handle.clone()))
            .collect()
    }
}

/// A block nobody can read: kept in the picture as taken and unusable (releasing, of no
/// pool), so it is never claimed (its key exists) nor allocated from.
fn unreadable(cidr: Ipv4Net, revision: Revision) -> BlockAt {
    BlockAt {
        block: Block {
            releasing: true,
            ..Block::claimed(cidr, String::new(), Ipv4Addr::UNSPECIFIED)
        },
        revision,
    }
}

impl Registry {
    /// Reads every pool and block in one listing, unless the picture is current;
    /// whether it read.
    async fn load(&self, c: &mut BlockCache) -> Result<bool, StoreError> {
        if c.loaded {
            return Ok(false);
        }
        let listing = self.store().list(&self.keys().ipam()).await?;
        let (pools, blocks) = (self.keys().pools(), self.keys().blocks());
        c.pools.clear();
        c.blocks.clear();
        for kv in &listing.kvs {
            if kv.key.starts_with(&pools) {
                if let Ok(p) = serde_json::from_slice::<Pool>(&kv.value) {
                    c.pools.push(p);
                }
            } else if let Some(name) = kv.key.strip_prefix(&blocks) {
                match (Registry::parse_block(kv), crate::pool::parse_key_name(name)) {
                    (Some(at), _) => c.set(at),
                    (None, Some(cidr)) => c.set(unreadable(cidr, kv.mod_revision)),
                    (None, None) => {}
                }
            }
        }
        c.pools.sort_by(|a, b| a.name.cmp(&b.name));
        c.listed_at = listing.revision;
        c.loaded = true;
        Ok(true)
    }

    /// Writes `next` over `prev` at `prev`'s revision (or creates it when `prev` is
    /// `None`); the picture follows a win and is dropped on a loss.
    async fn write_block(
        &self,
        c: &mut BlockCache,
        prev: Option<Revision>,
        next: Block,
    ) -> Result<bool, StoreError> {
        let key = self.block_key(&next.cidr);
        let value = serde_json::to_vec(&next).expect("block serializes");
        let won = match prev {
            None => self.store().create(&key, &value, None).await?,
            Some(rev) => {
                self.store()
                    .compare_and_swap(&key, &value, rev, None)
                    .await?
            }
        };
        match won {
            Some(revision) => {
                c.set(BlockAt {
                    block: next,
                    revision,
                });
                Ok(true)
            }
            None => {
                c.loaded = false;
                Ok(false)
            }
        }
    }

    /// An address for `handle` on `node` (see [`pick`]): the one it already holds if
    /// the request is retried, else from the node's blocks, a newly claimed block, or
    /// borrowed. From a current picture, one round trip.
    pub async fn allocate_cached(
        &self,
        c: &mut BlockCache,
        node: Ipv4Addr,
        handle: &str,
        strict: bool,
    ) -> Result<Ipv4Addr, BlockError> {
        for _ in 0..MAX_RACES {
            let fresh = self.load(c).await?;
            if let Some(ip) = c.held_by(handle) {
                return Ok(ip);
            }
            let blocks: Vec<&Block> = c.blocks.values().map(|b| &b.block).collect();
            let choice = pick(node, &c.pools, &blocks, strict);
            let (prev, next, ip) = match choice {
                None if fresh => return Err(BlockError::Exhausted { strict }),
                None => {
                    c.loaded = false; // a pool may have been added, a block freed
                    continue;
                }
                Some(Choice::Own { block, ip } | Choice::Borrow { block, ip }) => {
                    let at = &c.blocks[&block];
                    (Some(at.revision), at.block.clone(), ip)
                }
                Some(Choice::Claim { pool, block }) => {
                    (None, Block::claimed(block, pool, node), block.network())
                }
            };
            if self
                .write_block(c, prev, next.taking(ip, handle, node))
                .await?
            {
                return Ok(ip);
            }
        }
        Err(BlockError::Contended(MAX_RACES))
    }

    /// The fixed address `ip` for `handle` on `node`: from its block if that block is
    /// this node's or free (claimed then), borrowed from another node's otherwise.
    pub async fn allocate_fixed_cached(
        &self,
        c: &mut BlockCache,
        node: Ipv4Addr,
        ip: Ipv4Addr,
        handle: &str,
    ) -> Result<(), BlockError> {
        for _ in 0..MAX_RACES {
            let fresh = self.load(c).await?;
            let Some(pool) = c.pools.iter().find(|p| !p.disabled && p.cidr.contains(&ip)) else {
                if fresh {
                    return Err(BlockError::NoPool { ip });
                }
                c.loaded = false;
                continue;
            };
            let cidr = pool.block_of(ip).expect("ip is in the pool");
            let (prev, next) = match c.blocks.get(&cidr) {
                None => (None, Block::claimed(cidr, pool.name.clone(), node)),
                Some(at) if at.block.pool.is_empty() => {
                    return Err(BlockError::Invalid(format!(
                        "block {cidr} in the store is unreadable"
                    )))
                }
                Some(at) => {
                    if let Some(a) = at.block.allocations.get(&ip) {
                        if a.handle == handle {
                            return Ok(()); // a retried request
                        }
                        if fresh {
                            return Err(BlockError::Taken {
                                ip,
                                holder: a.handle.clone(),
                                node: a.node,
                            });
                        }
                        c.loaded = false;
                        continue;
                    }
                    if at.block.releasing {
                        // Deleted in a moment; then the block is free to claim.
                        c.loaded = false;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    (Some(at.revision), at.block.clone())
                }
            };
            if self
                .write_block(c, prev, next.taking(ip, handle, node))
                .await?
            {
                return Ok(());
            }
        }
        Err(BlockError::Contended(MAX_RACES))
    }

    /// Gives `ip` back if `handle` holds it; `Ok(false)` if it did not (checked on a
    /// fresh reading).
    pub async fn release_cached(
        &self,
        c: &mut BlockCache,
        ip: Ipv4Addr,
        handle: &str,
    ) -> Result<bool, BlockError> {
        for _ in 0..MAX_RACES {
            let fresh = self.load(c).await?;
            let held = c.blocks.values().find(|b| {
                b.block.cidr.contains(&ip)
                    && b.block
                        .allocations
                        .get(&ip)
                        .is_some_and(|a| a.handle == handle)
            });
            let Some(at) = held else {
                if fresh {
                    return Ok(false);
                }
                c.loaded = false;
                continue;
            };
            let (prev, mut next) = (at.revision, at.block.clone());
            next.allocations.remove(&ip);
            if self.write_block(c, Some(prev), next).await? {
                return Ok(true);
            }
        }
        Err(BlockError::Contended(MAX_RACES))
    }

    /// Reads the picture if it is not current (for callers that list it).
    pub async fn load_blocks_into(&self, c: &mut BlockCache) -> Result<(), StoreError> {
        self.load(c).await.map(|_| ())
    }
}
