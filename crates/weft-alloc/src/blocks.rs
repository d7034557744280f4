//! Block IPAM in the store: pools and blocks (their types in [`weft_model::blocks`]),
//! claimed, taken from, given back and released, each change one compare-and-swap on
//! one key (see the model's documentation for the layout and the rules).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;
use weft_store::{KeyValue, StoreError};

pub use weft_model::blocks::*;

use crate::registry::Registry;

/// A lost race is retried this many times before the caller is told to try later.
pub(crate) const MAX_RACES: usize = 64;

/// The key name of a block (`10.248.0.64-26`, flannel's subnet key style).
fn key_name(block: &Ipv4Net) -> String {
    crate::pool::key_name(block)
}

#[derive(Debug, Error)]
pub enum BlockError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid pool: {0}")]
    Invalid(String),
    #[error("invalid pool: {0}")]
    Pool(#[from] weft_model::blocks::PoolError),
    #[error("no pool named {0:?}")]
    UnknownPool(String),
    #[error("pool {name:?} has blocks in use: {}", .blocks.join(", "))]
    InUse { name: String, blocks: Vec<String> },
    #[error("no address left: every pool is full{}", if *.strict { " (strict affinity: no borrowing)" } else { "" })]
    Exhausted { strict: bool },
    #[error("{ip} is in no enabled pool")]
    NoPool { ip: Ipv4Addr },
    #[error("{ip} is already held by {holder} on node {node}")]
    Taken {
        ip: Ipv4Addr,
        holder: String,
        node: Ipv4Addr,
    },
    #[error("the store kept changing under {0} attempts; try again")]
    Contended(usize),
}

impl Registry {
    pub(crate) fn block_key(&self, block: &Ipv4Net) -> String {
        format!("{}{}", self.keys().blocks(), key_name(block))
    }

    /// Every readable pool, by name.
    pub async fn pools(&self) -> Result<Vec<Pool>, StoreError> {
        let listing = self.store().list(&self.keys().pools()).await?;
        let mut pools: Vec<Pool> = listing
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pools)
    }

    /// Creates a pool: checked, then create-if-absent.
    pub async fn create_pool(&self, pool: &Pool) -> Result<(), BlockError> {
        let others = self.pools().await?;
        if others.iter().any(|o| o.name == pool.name) {
            return Err(BlockError::Invalid(format!("pool {:?} exists", pool.name)));
        }
        pool.check(&others)?;
        // The cluster network is leased out as node subnets: a pool inside it would hand
        // out addresses a lease also covers.
        let cluster = self
            .raw_config()
            .await?
            .and_then(|raw| crate::NetworkConfig::parse(&raw).ok());
        if let Some(c) =
            cluster.filter(|c| c.network.contains(&pool.cidr) || pool.cidr.contains(&c.network))
        {
            return Err(BlockError::Invalid(format!(
                "pool {} overlaps the cluster network {}, which nodes lease subnets from; \
                 use a range outside it",
                pool.cidr, c.network
            )));
        }
        let key = format!("{}{}", self.keys().pools(), pool.name);
        let value = serde_json::to_vec(pool).expect("pool serializes");
        match self.store().create(&key, &value, None).await? {
            Some(_) => Ok(()),
            None => Err(BlockError::Invalid(format!("pool {:?} exists", pool.name))),
        }
    }

    /// Deletes a pool none of whose blocks is held; names the ones that are.
    pub async fn delete_pool(&self, name: &str) -> Result<Pool, BlockError> {
        let pool = self
            .pools()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| BlockError::UnknownPool(name.to_owned()))?;
        let held: Vec<String> = self
            .blocks()
            .await?
            .into_iter()
            .filter(|b| b.block.pool == name)
            .map(|b| format!("{} ({} on {})", b.block.cidr, b.block.used(), b.block.node))
            .collect();
        if !held.is_empty() {
            return Err(BlockError::InUse {
                name: name.to_owned(),
                blocks: held,
            });
        }
        self.store()
            .delete(&format!("{}{name}", self.keys().pools()))
            .await?;
        Ok(pool)
    }

    pub(crate) fn parse_block(kv: &KeyValue) -> Option<BlockAt> {
        Some(BlockAt {
            block: serde_json::from_slice(&kv.value).ok()?,
            revision: kv.mod_revision,
        })
    }

    /// Every readable block, with its revision.
    pub async fn blocks(&self) -> Result<Vec<BlockAt>, StoreError> {
        let listing = self.store().list(&self.keys().blocks()).await?;
        Ok(listing.kvs.iter().filter_map(Self::parse_block).collect())
    }

    /// Takes an address for `handle` on `node`: from its own blocks, a newly claimed
    /// block, or borrowed (see [`pick`]), reading the store first. The agent keeps a
    /// [`BlockCache`](crate::block_cache::BlockCache) instead and calls
    /// [`Registry::allocate_cached`] (one round trip).
    pub async fn allocate_from_blocks(
        &self,
        node: Ipv4Addr,
        handle: &str,
        strict: bool,
    ) -> Result<Ipv4Addr, BlockError> {
        let mut cache = crate::block_cache::BlockCache::default();
        self.allocate_cached(&mut cache, node, handle, strict).await
    }

    /// Takes the fixed address `ip` for `handle` on `node`: from its block if that block
    /// is this node's or free (claimed then), borrowed from another node's otherwise.
    pub async fn allocate_fixed(
        &self,
        node: Ipv4Addr,
        ip: Ipv4Addr,
        handle: &str,
    ) -> Result<(), BlockError> {
        let mut cache = crate::block_cache::BlockCache::default();
        self.allocate_fixed_cached(&mut cache, node, ip, handle)
            .await
    }

    /// Gives `ip` back if `handle` holds it; `Ok(false)` if it did not.
    pub async fn release_from_blocks(
        &self,
        ip: Ipv4Addr,
        handle: &str,
    ) -> Result<bool, BlockError> {
        let mut cache = crate::block_cache::BlockCache::default();
        self.release_cached(&mut cache, ip, handle).await
    }

    /// Releases `block` if it is still empty at the revision it was read: marks it
    /// releasing (so no allocation can land in it), then deletes it. Whether it went.
    pub async fn release_block(&self, b: &BlockAt) -> Result<bool, StoreError> {
        if b.block.used() > 0 {
            return Ok(false);
        }
        let mut marked = b.block.clone();
        marked.releasing = true;
        let value = serde_json::to_vec(&marked).expect("block serializes");
        let key = self.block_key(&b.block.cidr);
        if self
            .store()
            .compare_and_swap(&key, &value, b.revision, None)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        self.store().delete(&key).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, cidr: &str, size: u8) -> Pool {
        Pool {
            name: name.into(),
            cidr: cidr.parse().unwrap(),
            block_size: size,
            nat_outgoing: false,
            disabled: false,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn block(cidr: &str, node: &str, used: &[&str]) -> Block {
        Block {
            cidr: cidr.parse().unwrap(),
            pool: "p".into(),
            node: ip(node),
            allocations: used
                .iter()
                .map(|a| {
                    (
                        ip(a),
                        Allocation {
                            handle: "h".into(),
                            node: ip(node),
                        },
                    )
                })
                .collect(),
            releasing: false,
        }
    }

    #[test]
    fn pools_are_checked() {
        let p = pool("p", "10.248.0.0/16", 26);
        assert!(p.check(&[]).is_ok());
        assert!(pool("q", "10.248.128.0/17", 26)
            .check(std::slice::from_ref(&p))
            .unwrap_err()
            .to_string()
            .contains("overlaps"));
        assert!(pool("q", "10.249.0.1/24", 26)
            .check(&[])
            .unwrap_err()
            .to_string()
            .contains("host bits"));
        assert!(pool("q", "10.249.0.0/24", 19)
            .check(&[])
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(pool("q", "10.249.0.0/28", 26)
            .check(&[])
            .unwrap_err()
            .to_string()
            .contains("larger than the pool"));
        assert_eq!(
            p.block_of(ip("10.248.1.70")),
            Some("10.248.1.64/26".parse().unwrap())
        );
        assert_eq!(p.blocks().count(), 1024);
    }

    #[test]
    fn own_blocks_first_then_a_free_block_then_borrowing() {
        let pools = [pool("p", "10.248.0.0/30", 31)]; // two blocks of two addresses
        let me = ip("192.168.1.1");
        // Nothing held: claim the first block.
        assert_eq!(
            pick::<Block>(me, &pools, &[], false),
            Some(Choice::Claim {
                pool: "p".into(),
                block: "10.248.0.0/31".parse().unwrap()
            })
        );
        // A block with room: use it.
        let mine = block("10.248.0.0/31", "192.168.1.1", &["10.248.0.0"]);
        assert_eq!(
            pick(me, &pools, std::slice::from_ref(&mine), false),
            Some(Choice::Own {
                block: mine.cidr,
                ip: ip("10.248.0.1")
            })
        );
        // Full, and the other block is another node's with room: borrow, unless strict.
        let full = block(
            "10.248.0.0/31",
            "192.168.1.1",
            &["10.248.0.0", "10.248.0.1"],
        );
        let theirs = block("10.248.0.2/31", "192.168.1.2", &["10.248.0.2"]);
        let all = [full, theirs.clone()];
        assert_eq!(
            pick(me, &pools, &all, false),
            Some(Choice::Borrow {
                block: theirs.cidr,
                ip: ip("10.248.0.3")
            })
        );
        assert_eq!(pick(me, &pools, &all, true), None);
        // A disabled pool gives nothing; a releasing block is not used.
        let mut off = pools.clone();
        off[0].disabled = true;
        assert_eq!(pick::<Block>(me, &off, &[], false), None);
        let mut going = mine.clone();
        going.releasing = true;
        assert_eq!(
            pick(me, &pools, &[going], true),
            Some(Choice::Claim {
                pool: "p".into(),
                block: "10.248.0.2/31".parse().unwrap()
            })
        );
    }
}
