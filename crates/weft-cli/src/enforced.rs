//! Waiting until every node enforces the policies in the store. An agent publishes the
//! fingerprint of the rules its table holds in its status (`weft_model::NodeStatus`);
//! the policies' own fingerprint is computed here by the same compiler
//! (`weft_policy::render::compile`), so "enforced" is judged by what each node says it
//! loaded, not by time. `policy apply` and `delete` wait for it (unless `--no-wait`), and
//! `lab probe` before it probes.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weft_alloc::Registry;
use weft_policy::render::compile;

use crate::CliError;

/// The nodes (by public IP) with a live lease whose agent has not reported the rules
/// of the policies now in the store.
pub async fn behind(registry: &Registry) -> Result<Vec<Ipv4Addr>, CliError> {
    let st = registry.policy_state().await?;
    let want = compile(&st.policies).fingerprint().to_owned();
    let leases = registry.leases().await?.leases;
    let statuses = registry.statuses().await?;
    Ok(leases
        .iter()
        // A reservation has no agent behind it (yet).
        .filter(|l| !l.is_reservation())
        .filter(|l| {
            let loaded = statuses
                .iter()
                .find(|(subnet, _)| *subnet == l.subnet)
                .and_then(|(_, s)| s.policy.as_deref());
            loaded != Some(want.as_str())
        })
        .map(|l| l.attrs.public_ip)
        .collect())
}

/// Waits until [`behind`] is empty, or `within` has passed (an error naming the nodes).
pub async fn wait(registry: &Registry, within: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + within;
    loop {
        let nodes = behind(registry).await?;
        if nodes.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::NotEnforced { nodes, within });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
