//! Network policy in the agent: the policies, identities and namespace labels read
//! from the store whenever something under the policy prefix changes, rendered for
//! this node's endpoints ([`weft_policy::render`]) and loaded as one nftables table.
//!
//! What never happens: a store that cannot be read, or a table the kernel refuses,
//! changes nothing that is loaded (no rule opens or closes). An agent restart renders
//! the same table and, its fingerprint matching, loads nothing. The store revision of
//! the last table loaded is published ([`PolicyEnforced`]), so the socket can answer a
//! CNI ADD's identity only once that container's rules are in place.

use tokio::sync::watch;
use tracing::{error, info, warn};
use weft_policy::render::{render_table, Local, TABLE};
use weft_store::{Revision, WatchEvent};

use super::{Agent, Why};

/// The store revision the loaded policy table reflects.
pub type PolicyEnforced = watch::Receiver<Revision>;

impl Agent {
    /// Says, once per interface, that a bridged endpoint's policy is not enforced: the
    /// rules match an endpoint's own interface, which traffic through a bridge does not
    /// present to the IP forward hook (routed attachment only, for now).
    async fn warn_bridged(&mut self, locals: &[Local]) {
        let Ok(links) = self.dp.links().await else {
            return;
        };
        for l in locals {
            let bridged = links
                .iter()
                .any(|k| k.name == l.interface && k.controller.is_some());
            if bridged && self.last.policy_bridged.insert(l.interface.clone()) {
                warn!(endpoint = %l.endpoint.name, interface = %l.interface, "network policy is not enforced for a bridged endpoint (routed attachment only, for now)");
            }
        }
    }

    /// Notes a store change under the policy prefix; `None` if it is not one.
    pub(super) fn on_policy_event(&mut self, event: &WatchEvent) -> Option<bool> {
        let prefix = self.registry.policy_prefix();
        let hit = match event {
            WatchEvent::Put(kv) => kv.key.starts_with(&prefix),
            WatchEvent::Delete { key, .. } => key.starts_with(&prefix),
            WatchEvent::Resync { .. } => false, // rebuilt with everything else
        };
        hit.then(|| {
            self.last.policy_stale = true;
            true
        })
    }

    /// Reads the policy state if it changed, renders this node's table and loads it if
    /// it differs from what was loaded last (at start and resync: from what the kernel
    /// has, which costs an `nft list`). A reconcile for anything else, with the state
    /// unchanged since the last load, renders nothing.
    pub(super) async fn reconcile_policy(&mut self, why: Why) {
        let check_kernel = matches!(why, Why::Start | Why::Resync);
        if !self.last.policy_stale && self.last.policy_loaded && !check_kernel {
            if let Some(st) = &self.view.policy {
                self.plane.policy_enforced.send_replace(st.revision);
            }
            return;
        }
        if self.last.policy_stale || self.view.policy.is_none() {
            match self.registry.policy_state().await {
                Ok(st) => {
                    for (key, why) in &st.unreadable {
                        warn!(key, error = %why, "ignoring an unreadable policy record");
                    }
                    self.view.policy = Some(st);
                    self.last.policy_stale = false;
                    self.last.policy_loaded = false;
                }
                Err(e) => {
                    warn!(error = %e, "cannot read network policies; enforcement stays as it is");
                    return;
                }
            }
        }
        let Some(st) = &self.view.policy else { return };
        let me = self.view.attrs.public_ip;
        let world = st.world();
        let locals: Vec<Local> = world
            .endpoints
            .iter()
            .filter_map(|e| {
                let id = st.endpoints.get(&e.ip)?;
                (id.node == me && !id.interface.is_empty()).then(|| Local {
                    endpoint: e.clone(),
                    interface: id.interface.clone(),
                })
            })
            .collect();
        let rendered = render_table(&world, &st.policies, &locals);
        let revision = st.revision;
        if !check_kernel && self.last.policy_fingerprint.as_ref() == Some(&rendered.fingerprint) {
            self.plane.policy_enforced.send_replace(revision);
            self.last.policy_loaded = true;
            return;
        }
        match self
            .dp
            .load_nft_table(TABLE, &rendered.script, &rendered.fingerprint)
        {
            Ok(loaded) => {
                if loaded {
                    info!(
                        endpoints = locals.len(),
                        policies = st.policies.len(),
                        "loaded network policy rules"
                    );
                }
                self.plane.policy_enforced.send_replace(revision);
                self.last.policy_fingerprint = Some(rendered.fingerprint);
                self.last.policy_loaded = true;
                if loaded && !locals.is_empty() {
                    self.warn_bridged(&locals).await;
                }
            }
            Err(e) => {
                error!(error = %e, "cannot load network policy rules; the previous ones stay")
            }
        }
    }
}
