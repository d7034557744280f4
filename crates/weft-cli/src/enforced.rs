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

/// The fingerprint of the rules the policies now in the store make.
async fn wanted(registry: &Registry) -> Result<String, CliError> {
    let st = registry.policy_state().await?;
    Ok(compile(&st.policies).fingerprint().to_owned())
}

/// The nodes (by public IP) with a live lease whose agent has not reported `want`, and
/// what every such node reported (`None`: nothing yet).
async fn behind(
    registry: &Registry,
    want: &str,
) -> Result<Vec<(Ipv4Addr, Option<String>)>, CliError> {
    let leases = registry.leases().await?.leases;
    let statuses = registry.statuses().await?;
    Ok(leases
        .iter()
        // A reservation has no agent behind it (yet).
        .filter(|l| !l.is_reservation())
        .filter_map(|l| {
            let loaded = statuses
                .iter()
                .find(|(subnet, _)| *subnet == l.subnet)
                .and_then(|(_, s)| s.policy.clone());
            (loaded.as_deref() != Some(want)).then_some((l.attrs.public_ip, loaded))
        })
        .collect())
}

/// Waits until every node with a live lease reports the rules of the policies in the
/// store, or `within` has passed (an error naming the nodes). The policies are read and
/// compiled again only when what the nodes report changes (another writer's change
/// shows there first), not at every look at the statuses.
pub async fn wait(registry: &Registry, within: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + within;
    let mut want = wanted(registry).await?;
    let mut last = None;
    loop {
        let nodes = behind(registry, &want).await?;
        if nodes.is_empty() {
            return Ok(());
        }
        if last.as_ref().is_some_and(|l| *l != nodes) {
            want = wanted(registry).await?;
        }
        if Instant::now() >= deadline {
            return Err(CliError::NotEnforced {
                nodes: nodes.into_iter().map(|(ip, _)| ip).collect(),
                within,
            });
        }
        last = Some(nodes);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
