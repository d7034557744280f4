//! Block IPAM (Calico's model): pools carved into small blocks that nodes claim when they
//! need addresses, beside flannel's one subnet per node.
//!
//! ```text
//! <prefix>/weft/ipam/pools/default          {"Name":"default","CIDR":"10.248.0.0/16","BlockSize":26,"NatOutgoing":true,"Disabled":false}
//! <prefix>/weft/ipam/blocks/10.248.0.64-26  {"CIDR":"10.248.0.64/26","Pool":"default","Node":"192.168.77.1","Allocations":{"10.248.0.66":{"Handle":"ctr1/eth0","Node":"192.168.77.1"}}}
//! ```
//!
//! Every change is one compare-and-swap on one key: a block is claimed by creating its
//! key (two nodes never hold one block), an address is taken or given back by rewriting
//! its block at the revision it was read at (two allocations never share an address),
//! and an empty block is released by marking it `Releasing` at its revision and then
//! deleting it (an allocation that slipped in between makes the mark fail). A node
//! allocates from its own blocks first, claims a free block when those are full, and
//! borrows a single address from another node's block when the pool has no free block
//! (unless `strict_affinity`); a borrowed address is recorded with the borrower, which
//! announces it as a /32.
//!
//! The decisions (which block, which address) are pure functions of a snapshot; the
//! store calls retry them on a lost race.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::Revision;

/// Calico's default block size.
pub const DEFAULT_BLOCK_SIZE: u8 = 26;

/// An address pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CIDR")]
    pub cidr: Ipv4Net,
    #[serde(rename = "BlockSize")]
    pub block_size: u8,
    #[serde(rename = "NatOutgoing", default)]
    pub nat_outgoing: bool,
    #[serde(rename = "Disabled", default)]
    pub disabled: bool,
}

/// Why a pool cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Name(#[from] crate::named::BadName),
    #[error("pool {0} has host bits set; did you mean {trunc}?", trunc = .0.trunc())]
    HostBits(Ipv4Net),
    #[error("block size /{0} is out of range (/20 to /32)")]
    BlockSizeRange(u8),
    #[error("block size /{block_size} is larger than the pool {cidr}")]
    BlockLarger { block_size: u8, cidr: Ipv4Net },
    #[error("pool {cidr} overlaps pool {name:?} ({other})")]
    Overlaps {
        cidr: Ipv4Net,
        name: String,
        other: Ipv4Net,
    },
}

impl Pool {
    /// Checks a pool to be created (pure): sizes, alignment, overlap with `others`.
    pub fn check(&self, others: &[Pool]) -> Result<(), PoolError> {
        crate::named::check_name(&self.name)?;
        let cidr = self.cidr;
        if cidr != cidr.trunc() {
            return Err(PoolError::HostBits(cidr));
        }
        if !(20..=32).contains(&self.block_size) {
            return Err(PoolError::BlockSizeRange(self.block_size));
        }
        if self.block_size < cidr.prefix_len() {
            return Err(PoolError::BlockLarger {
                block_size: self.block_size,
                cidr,
            });
        }
        if let Some(o) = others
            .iter()
            .find(|o| o.cidr.contains(&cidr) || cidr.contains(&o.cidr))
        {
            return Err(PoolError::Overlaps {
                cidr,
                name: o.name.clone(),
                other: o.cidr,
            });
        }
        Ok(())
    }

    /// Every block of the pool, in address order.
    pub fn blocks(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.cidr
            .subnets(self.block_size)
            .expect("block size checked against the pool")
    }

    /// The block `ip` falls in, if it is in the pool.
    pub fn block_of(&self, ip: Ipv4Addr) -> Option<Ipv4Net> {
        self.cidr.contains(&ip).then(|| {
            Ipv4Net::new(ip, self.block_size)
                .expect("block size <= 32")
                .trunc()
        })
    }
}

/// One address taken from a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Who holds it: the container and interface (`ID/eth0`), for release and GC.
    #[serde(rename = "Handle")]
    pub handle: String,
    /// The node it is used on (another than the block's for a borrowed address).
    #[serde(rename = "Node")]
    pub node: Ipv4Addr,
}

/// A block and its allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    #[serde(rename = "CIDR")]
    pub cidr: Ipv4Net,
    #[serde(rename = "Pool")]
    pub pool: String,
    /// The node the block is affine to.
    #[serde(rename = "Node")]
    pub node: Ipv4Addr,
    #[serde(rename = "Allocations", default)]
    pub allocations: BTreeMap<Ipv4Addr, Allocation>,
    /// Being released: no allocation may be made from it.
    #[serde(
        rename = "Releasing",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub releasing: bool,
}

impl Block {
    /// The block with `ip` taken by `handle`, used on `node`.
    pub fn taking(mut self, ip: Ipv4Addr, handle: &str, node: Ipv4Addr) -> Block {
        self.allocations.insert(
            ip,
            Allocation {
                handle: handle.to_owned(),
                node,
            },
        );
        self
    }

    /// A block just claimed by `node`, with no address taken yet.
    pub fn claimed(cidr: Ipv4Net, pool: String, node: Ipv4Addr) -> Block {
        Block {
            cidr,
            pool,
            node,
            allocations: BTreeMap::new(),
            releasing: false,
        }
    }

    /// The first free address of the block (the whole block is usable: it is routed as
    /// a unit, never bridged, so there is no network or broadcast address to keep).
    pub fn free(&self) -> Option<Ipv4Addr> {
        ipnet::Ipv4AddrRange::new(self.cidr.network(), self.cidr.broadcast())
            .find(|ip| !self.allocations.contains_key(ip))
    }

    pub fn used(&self) -> usize {
        self.allocations.len()
    }
}

/// A block as read, with the revision its rewrite must compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockAt {
    pub block: Block,
    pub revision: Revision,
}

/// What `pick` chose (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// An address from a block this node holds.
    Own { block: Ipv4Net, ip: Ipv4Addr },
    /// Claim this free block first, then take its first address.
    Claim { pool: String, block: Ipv4Net },
    /// Borrow from another node's block (announced as a /32).
    Borrow { block: Ipv4Net, ip: Ipv4Addr },
}

/// Where `node`'s next address comes from, given every pool and block (pure): its own
/// blocks first (lowest address), then the first free block of the first enabled pool
/// that has one, then (unless `strict`) a free address in another node's block.
pub fn pick<B: std::borrow::Borrow<Block>>(
    node: Ipv4Addr,
    pools: &[Pool],
    blocks: &[B],
    strict: bool,
) -> Option<Choice> {
    let blocks: Vec<&Block> = blocks.iter().map(|b| b.borrow()).collect();
    let usable = |b: &&&Block| {
        !b.releasing
            && pools
                .iter()
                .any(|p| p.name == b.pool && !p.disabled && p.cidr.contains(&b.cidr))
    };
    let mut mine: Vec<&Block> = blocks
        .iter()
        .filter(usable)
        .filter(|b| b.node == node)
        .copied()
        .collect();
    mine.sort_by_key(|b| b.cidr.network());
    if let Some((b, ip)) = mine.iter().find_map(|b| b.free().map(|ip| (b, ip))) {
        return Some(Choice::Own { block: b.cidr, ip });
    }
    let taken: std::collections::BTreeSet<Ipv4Net> = blocks.iter().map(|b| b.cidr).collect();
    for p in pools.iter().filter(|p| !p.disabled) {
        if let Some(block) = p.blocks().find(|b| !taken.contains(b)) {
            return Some(Choice::Claim {
                pool: p.name.clone(),
                block,
            });
        }
    }
    if strict {
        return None;
    }
    let mut others: Vec<&Block> = blocks
        .iter()
        .filter(usable)
        .filter(|b| b.node != node)
        .copied()
        .collect();
    others.sort_by_key(|b| b.cidr.network());
    others
        .iter()
        .find_map(|b| b.free().map(|ip| Choice::Borrow { block: b.cidr, ip }))
}

/// The pool a named network takes its addresses from: a routed network whose subnet
/// is exactly a pool's range (Docker's routed mode on block IPAM).
pub fn pool_of<'a>(net: &crate::named::NamedNetwork, pools: &'a [Pool]) -> Option<&'a Pool> {
    (net.mode == crate::named::Mode::Routed)
        .then(|| pools.iter().find(|p| p.cidr == net.subnet))
        .flatten()
}

/// How a Docker endpoint's block allocation is marked: `docker:NETWORK/…`. A CNI handle
/// is `network/container/ifname`, and a CNI network's name has no ':'.
pub fn docker_handle_prefix(network: &str) -> String {
    format!("docker:{network}/")
}
