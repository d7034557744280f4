//! `weftctl pool create|list|show|delete` and `weftctl ipam blocks`: block IPAM's pools
//! and the blocks nodes hold (see [`weft_alloc::blocks`]).

use clap::Subcommand;
use ipnet::Ipv4Net;
use serde_json::json;
use weft_alloc::blocks::{BlockAt, Pool, DEFAULT_BLOCK_SIZE};
use weft_alloc::Registry;

use crate::output::{print_json, Output};
use crate::CliError;

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Create an address pool, carved into blocks nodes claim when they need addresses.
    #[command(
        after_help = "Example:\n  weftctl pool create default --cidr 10.248.0.0/16 --block-size 26 --nat-outgoing"
    )]
    Create {
        name: String,
        #[arg(long, value_parser = crate::prefix::parse)]
        cidr: Ipv4Net,
        /// Prefix length of each block (Calico's default: 26, 64 addresses).
        #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
        block_size: u8,
        /// Masquerade what leaves the pool for the outside.
        #[arg(long)]
        nat_outgoing: bool,
        /// Create it disabled: no new block is claimed from it.
        #[arg(long)]
        disabled: bool,
    },
    /// List pools, with how many blocks are held and addresses used.
    #[command(after_help = "Example:\n  weftctl pool list -o json")]
    List {
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// A pool and its blocks.
    #[command(after_help = "Example:\n  weftctl pool show default")]
    Show {
        name: String,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a pool; refused while any of its blocks is held (they are named).
    #[command(after_help = "Example:\n  weftctl pool delete default")]
    Delete { name: String },
}

fn pool_json(p: &Pool, blocks: &[&BlockAt]) -> serde_json::Value {
    json!({
        "name": p.name,
        "cidr": p.cidr.to_string(),
        "block_size": p.block_size,
        "nat_outgoing": p.nat_outgoing,
        "disabled": p.disabled,
        "blocks": blocks.iter().map(|b| block_json(b)).collect::<Vec<_>>(),
    })
}

fn block_json(b: &BlockAt) -> serde_json::Value {
    let size = 1usize << (32 - b.block.cidr.prefix_len());
    json!({
        "block": b.block.cidr.to_string(),
        "pool": b.block.pool,
        "node": b.block.node.to_string(),
        "used": b.block.used(),
        "free": size - b.block.used(),
        "borrowed": b.block.allocations.values().filter(|a| a.node != b.block.node).count(),
    })
}

pub async fn run(registry: &Registry, cmd: PoolCmd) -> Result<i32, CliError> {
    match cmd {
        PoolCmd::Create {
            name,
            cidr,
            block_size,
            nat_outgoing,
            disabled,
        } => {
            let pool = Pool {
                name,
                cidr,
                block_size,
                nat_outgoing,
                disabled,
            };
            registry
                .create_pool(&pool)
                .await
                .map_err(CliError::Blocks)?;
            println!(
                "created pool {} ({}, blocks of /{}, {} blocks)",
                pool.name,
                pool.cidr,
                pool.block_size,
                pool.blocks().count()
            );
            Ok(0)
        }
        PoolCmd::List { output } => {
            let pools = registry.pools().await?;
            let blocks = registry.blocks().await?;
            let of = |p: &Pool| -> Vec<&BlockAt> {
                blocks.iter().filter(|b| b.block.pool == p.name).collect()
            };
            match output {
                Output::Json => print_json(&pools.iter().map(|p| pool_json(p, &of(p))).collect()),
                Output::Table => {
                    println!(
                        "{:<14} {:<18} {:>5} {:>7} {:>6}  NAT  DISABLED",
                        "NAME", "CIDR", "BLOCK", "BLOCKS", "USED"
                    );
                    for p in &pools {
                        let held = of(p);
                        let used: usize = held.iter().map(|b| b.block.used()).sum();
                        println!(
                            "{:<14} {:<18} {:>5} {:>7} {:>6}  {:<4} {}",
                            p.name,
                            p.cidr.to_string(),
                            format!("/{}", p.block_size),
                            held.len(),
                            used,
                            if p.nat_outgoing { "yes" } else { "no" },
                            if p.disabled { "yes" } else { "no" }
                        );
                    }
                }
            }
            Ok(0)
        }
        PoolCmd::Show { name, output } => {
            let pool = registry
                .pools()
                .await?
                .into_iter()
                .find(|p| p.name == name)
                .ok_or_else(|| {
                    CliError::Blocks(weft_alloc::blocks::BlockError::UnknownPool(name.clone()))
                })?;
            let blocks = registry.blocks().await?;
            let mut held: Vec<&BlockAt> = blocks.iter().filter(|b| b.block.pool == name).collect();
            held.sort_by_key(|b| b.block.cidr.network());
            match output {
                Output::Json => print_json(&pool_json(&pool, &held)),
                Output::Table => {
                    println!(
                        "pool {} {} (blocks of /{})",
                        pool.name, pool.cidr, pool.block_size
                    );
                    print_blocks(&held);
                }
            }
            Ok(0)
        }
        PoolCmd::Delete { name } => {
            let p = registry
                .delete_pool(&name)
                .await
                .map_err(CliError::Blocks)?;
            println!("deleted pool {} ({})", p.name, p.cidr);
            Ok(0)
        }
    }
}

fn print_blocks(blocks: &[&BlockAt]) {
    println!(
        "{:<18} {:<14} {:<15} {:>5} {:>5} {:>8}",
        "BLOCK", "POOL", "NODE", "USED", "FREE", "BORROWED"
    );
    for b in blocks {
        let j = block_json(b);
        println!(
            "{:<18} {:<14} {:<15} {:>5} {:>5} {:>8}",
            b.block.cidr.to_string(),
            b.block.pool,
            b.block.node.to_string(),
            j["used"].to_string(),
            j["free"].to_string(),
            j["borrowed"].to_string()
        );
    }
}

/// `weftctl ipam blocks`: every block, which node holds it, used and free.
pub async fn blocks(registry: &Registry, output: Output) -> Result<i32, CliError> {
    let mut blocks = registry.blocks().await?;
    blocks.sort_by_key(|b| b.block.cidr.network());
    match output {
        Output::Json => print_json(&blocks.iter().map(block_json).collect()),
        Output::Table => print_blocks(&blocks.iter().collect::<Vec<_>>()),
    }
    Ok(0)
}
