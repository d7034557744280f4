//! `weftctl addresses`: single addresses held outside any node's subnet (announced as
//! /32s by the bgp backend), and who holds them, sorted by address.

use weft_alloc::Registry;

use crate::output::{print_json, Output};

pub async fn run(registry: &Registry, output: Output) -> Result<i32, crate::CliError> {
    let mut held = registry.addresses().await?;
    held.sort_by_key(|(ip, _)| *ip);
    match output {
        Output::Json => print_json(
            &held
                .iter()
                .map(|(ip, c)| {
                    serde_json::json!({"address": ip.to_string(), "node": c.node.to_string(), "container_id": c.container_id})
                })
                .collect(),
        ),
        Output::Table => {
            println!("{:<16} {:<16} CONTAINER", "ADDRESS", "NODE");
            for (ip, claim) in held {
                println!("{:<16} {:<16} {}", ip, claim.node, claim.container_id);
            }
        }
    }
    Ok(0)
}
