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

#[cfg(test)]
mod tests {
    //! The wait against an embedded store: two nodes with live leases, their statuses
    //! written as their agents would.
    use std::sync::Arc;

    use weft_alloc::registry::NodeStatus;
    use weft_alloc::{LeaseAttrs, NetworkConfig};

    use super::*;

    #[tokio::test]
    async fn waits_for_every_node_and_names_those_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = weft_store::embedded::EmbeddedStore::open(dir.path().join("s.db")).unwrap();
        let registry = Registry::new(Arc::new(store), weft_store::DEFAULT_PREFIX);
        let cfg =
            NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#)
                .unwrap();
        registry.put_config(&cfg).await.unwrap();
        let mut leases = Vec::new();
        for ip in ["192.168.1.1", "192.168.1.2"] {
            let attrs = LeaseAttrs {
                labels: Default::default(),
                public_ip: ip.parse().unwrap(),
                public_ipv6: None,
                backend_type: "host-gw".into(),
                backend_data: serde_json::Value::Null,
                backend_v6_data: serde_json::Value::Null,
            };
            let ttl = Duration::from_secs(3600);
            leases.push(
                registry
                    .acquire(&cfg, &attrs, weft_alloc::registry::Previous::default(), ttl)
                    .await
                    .unwrap(),
            );
        }
        let policy = weft_policy::parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n",
        )
        .unwrap();
        registry.apply_policies(&policy).await.unwrap();
        let loaded = |fingerprint: &str| NodeStatus {
            policy: Some(fingerprint.to_owned()),
            ..Default::default()
        };
        let current = compile(&policy).fingerprint().to_owned();
        // The first node loaded the rules, the second still has the ones before.
        registry
            .put_status(&leases[0], &loaded(&current))
            .await
            .unwrap();
        registry
            .put_status(&leases[1], &loaded("weftpol older"))
            .await
            .unwrap();
        match wait(&registry, Duration::from_millis(300)).await {
            Err(CliError::NotEnforced { nodes, .. }) => {
                assert_eq!(nodes, ["192.168.1.2".parse::<Ipv4Addr>().unwrap()])
            }
            other => panic!("{other:?}"),
        }
        registry
            .put_status(&leases[1], &loaded(&current))
            .await
            .unwrap();
        wait(&registry, Duration::from_millis(300)).await.unwrap();
    }
}
