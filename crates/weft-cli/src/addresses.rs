//! `weftctl addresses`: single addresses held outside any node's subnet (announced as
//! /32s by the bgp backend), and who holds them.

use weft_alloc::Registry;

pub async fn run(registry: &Registry) -> Result<i32, crate::CliError> {
    let held = registry.addresses().await?;
    println!("{:<16} {:<16} CONTAINER", "ADDRESS", "NODE");
    for (ip, claim) in held {
        println!("{:<16} {:<16} {}", ip, claim.node, claim.container_id);
    }
    Ok(0)
}
