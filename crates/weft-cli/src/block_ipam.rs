//! `weftctl ipam show ADDRESS|check|release`: block IPAM's consistency tools. `show`
//! says who holds an address; `check` lists what [`weft_alloc::block_check`] finds
//! (exit 1 if anything); `release` frees only what `check` lists, never what is in use.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::json;
use weft_alloc::block_check::{self, Problem};
use weft_alloc::blocks::BlockAt;
use weft_alloc::Registry;

use crate::output::{print_json, Output};
use crate::CliError;

/// The handle's parts as the CNI plugin writes them (`network/container/ifname`); a
/// Docker endpoint's (`docker:network/…`) names only its network.
fn parts(handle: &str) -> (String, String, String) {
    if let Some((net, _)) = handle
        .strip_prefix("docker:")
        .and_then(|rest| rest.split_once('/'))
    {
        return (net.to_owned(), "(a Docker endpoint)".into(), String::new());
    }
    let mut p = handle.rsplitn(3, '/');
    let ifname = p.next().unwrap_or_default().to_owned();
    let ctr = p.next().unwrap_or_default().to_owned();
    let net = p.next().unwrap_or_default().to_owned();
    (net, ctr, ifname)
}

/// `ipam show ADDRESS`: its block, the block's node, and who uses it.
pub async fn show(registry: &Registry, ip: Ipv4Addr, output: Output) -> Result<i32, CliError> {
    let blocks = registry.blocks().await?;
    let Some(b) = blocks.iter().find(|b| b.block.cidr.contains(&ip)) else {
        let pools = registry.pools().await?;
        let why = match pools.iter().find(|p| p.cidr.contains(&ip)) {
            Some(p) => format!(
                "{ip} is in pool {:?}, in no block claimed yet: free",
                p.name
            ),
            None => format!("{ip} is in no pool"),
        };
        return Err(CliError::Usage(why));
    };
    let used = b.block.allocations.get(&ip);
    let j = json!({
        "address": ip.to_string(),
        "block": b.block.cidr.to_string(),
        "block_node": b.block.node.to_string(),
        "pool": b.block.pool,
        "used": used.is_some(),
        "node": used.map(|a| a.node.to_string()),
        "handle": used.map(|a| a.handle.clone()),
        "network": used.map(|a| parts(&a.handle).0),
        "container": used.map(|a| parts(&a.handle).1),
        "ifname": used.map(|a| parts(&a.handle).2),
        "borrowed": used.is_some_and(|a| a.node != b.block.node),
    });
    match output {
        Output::Json => print_json(&j),
        Output::Table => {
            println!(
                "address   {ip}\nblock     {} (pool {}, node {})",
                b.block.cidr, b.block.pool, b.block.node
            );
            match used {
                None => println!("used      no (free)"),
                Some(a) => {
                    let (net, ctr, ifname) = parts(&a.handle);
                    let borrowed = if a.node != b.block.node {
                        " (borrowed)"
                    } else {
                        ""
                    };
                    println!(
                        "node      {}{borrowed}\ncontainer {ctr}\ninterface {ifname}\nnetwork   {net}\nhandle    {}",
                        a.node, a.handle
                    );
                }
            }
        }
    }
    Ok(0)
}

async fn findings(registry: &Registry) -> Result<(Vec<BlockAt>, Vec<Problem>), CliError> {
    let pools = registry.pools().await?;
    let blocks = registry.blocks().await?;
    let alive: BTreeSet<Ipv4Addr> = registry
        .leases()
        .await?
        .leases
        .iter()
        .map(|l| l.attrs.public_ip)
        .collect();
    let statuses: Vec<_> = registry
        .statuses()
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let plain: Vec<_> = blocks.iter().map(|b| b.block.clone()).collect();
    let problems = block_check::check(&pools, &plain, &alive, &statuses);
    Ok((blocks, problems))
}

/// `ipam check`: every finding; exit 1 if there is one.
pub async fn check(registry: &Registry, output: Output) -> Result<i32, CliError> {
    let (blocks, problems) = findings(registry).await?;
    match output {
        Output::Json => print_json(&serde_json::to_value(&problems).expect("serializes")),
        Output::Table if problems.is_empty() => {
            let used: usize = blocks.iter().map(|b| b.block.used()).sum();
            println!(
                "ok: {} blocks, {used} addresses, every one with its node and container",
                blocks.len()
            );
        }
        Output::Table => {
            for p in &problems {
                println!("{p}");
            }
            let n = problems.len();
            let noun = if n == 1 { "problem" } else { "problems" };
            println!("{n} {noun}; `weftctl ipam release ADDRESS|BLOCK` frees what is listed");
        }
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

/// `ipam release TARGET`: an address or block `check` lists; anything else is refused.
pub async fn release(registry: &Registry, target: &str) -> Result<i32, CliError> {
    let (blocks, problems) = findings(registry).await?;
    if let Ok(ip) = target.parse::<Ipv4Addr>() {
        let Some((_, handle)) = problems
            .iter()
            .filter_map(Problem::releasable_address)
            .find(|(a, _)| *a == ip)
        else {
            let holder = blocks
                .iter()
                .find_map(|b| b.block.allocations.get(&ip))
                .map(|a| {
                    format!(
                        "it is used by {} on node {}, which is there",
                        a.handle, a.node
                    )
                })
                .unwrap_or_else(|| "it is not in use".into());
            return Err(CliError::Usage(format!(
                "refusing to release {ip}: {holder}; only what `weftctl ipam check` lists is released"
            )));
        };
        let freed = registry
            .release_from_blocks(ip, handle)
            .await
            .map_err(CliError::Blocks)?;
        println!(
            "{}",
            if freed {
                format!("released {ip} ({handle})")
            } else {
                format!("{ip} was released meanwhile")
            }
        );
        return Ok(0);
    }
    let cidr: Ipv4Net = target.parse().map_err(|_| {
        CliError::Usage(format!(
            "{target:?} is neither an address nor a block (CIDR)"
        ))
    })?;
    let gone = problems
        .iter()
        .any(|p| matches!(p, Problem::BlockNodeGone { block, .. } if *block == cidr));
    let Some(b) = blocks.iter().find(|b| b.block.cidr == cidr) else {
        return Err(CliError::Usage(format!("no block {cidr}")));
    };
    if !gone {
        return Err(CliError::Usage(format!(
            "refusing to release block {cidr}: its node {} is there (it gives the block back itself once empty)",
            b.block.node
        )));
    }
    if b.block.used() > 0 {
        let used: Vec<String> = b
            .block
            .allocations
            .keys()
            .map(|ip| ip.to_string())
            .collect();
        return Err(CliError::Usage(format!(
            "refusing to release block {cidr}: addresses in use: {} (release them first)",
            used.join(", ")
        )));
    }
    if registry.release_block(b).await? {
        println!("released block {cidr}");
        Ok(0)
    } else {
        Err(CliError::Usage(format!(
            "block {cidr} changed meanwhile; run `weftctl ipam check` again"
        )))
    }
}
