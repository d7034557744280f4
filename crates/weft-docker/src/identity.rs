//! Network policy for Docker endpoints: who a container is, recorded in the store as
//! the CNI plugin records a pod. Its namespace is its network's name; its labels are
//! the container's labels (`docker run --label app=db`).
//!
//! Docker passes a driver no labels, and its daemon keeps a starting container locked
//! until Join has returned, so Join cannot ask who is joining. Join therefore records
//! the endpoint *held* (labels not known yet: its node drops its traffic both ways while
//! any policy could select it, see `weft_policy::render`) and answers once its node
//! enforces that. Then a task asks the daemon which container the endpoint belongs to
//! (the network's inspection shows it once Join has returned) and its labels (the
//! container list, which takes no container lock), and records them. The sync does
//! the same for any endpoint of this node still held or not recorded, so an agent
//! restart in between loses nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use tracing::{info, warn};
use weft_alloc::named::{short, Mode, NamedNetwork};
use weft_alloc::policies::{Attachment, Identity};
use weft_store::backoff::Backoff;
use weft_store::Revision;

use crate::driver::Driver;
use crate::error::DriverError;

/// How long Join waits for its node to enforce the held endpoint (as the agent's
/// socket waits for a CNI container's rules).
pub const ENFORCE_WAIT: Duration = Duration::from_secs(10);
/// How long the task after Join keeps asking the daemon for the container.
const READ_FOR: Duration = Duration::from_secs(30);

/// The policy side of the agent, for the driver: the store revision its node's
/// policy table reflects.
pub type Enforced = tokio::sync::watch::Receiver<Revision>;

/// Whether a network's name can be a policy namespace (a DNS label). Endpoints of
/// other networks get no identity, and so no policy.
pub fn namespace_of(net: &NamedNetwork) -> Option<&str> {
    let mut problems = Vec::new();
    weft_policy::parse::check_object_name("namespace", &net.name, &mut problems);
    problems.is_empty().then_some(net.name.as_str())
}

/// The container labels a selector can match: those that are valid Kubernetes labels
/// (Docker allows any text; `maintainer=Jane Doe <jane@…>` is not one). The rest are
/// returned by key, to be named in the log.
pub fn usable_labels(all: BTreeMap<String, String>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut dropped = Vec::new();
    let kept = all
        .into_iter()
        .filter(|(k, v)| {
            let one = BTreeMap::from([(k.clone(), v.clone())]);
            let ok = weft_policy::selector::label_problems(&one).is_empty();
            if !ok {
                dropped.push(k.clone());
            }
            ok
        })
        .collect();
    (kept, dropped)
}

impl Driver {
    fn identity(
        &self,
        net: &NamedNetwork,
        ns: &str,
        name: &str,
        host_iface: &str,
        labels: BTreeMap<String, String>,
        pending: bool,
    ) -> Identity {
        Identity {
            name: format!("{ns}/{name}"),
            namespace: ns.to_owned(),
            labels,
            ipv6: None,
            node: self.host.public_ip,
            interface: host_iface.to_owned(),
            attachment: match net.mode {
                Mode::Overlay => Attachment::Bridged,
                Mode::Routed => Attachment::Routed,
            },
            pending,
        }
    }

    /// Join's part: records the endpoint held and waits until this node enforces
    /// that. Nothing to do where the driver runs without the agent's policy.
    pub(crate) async fn hold(
        &self,
        net: &NamedNetwork,
        ip: Ipv4Addr,
        endpoint_id: &str,
        host_iface: &str,
    ) -> Result<(), DriverError> {
        let (Some(enforced), Some(ns)) = (&self.enforced, namespace_of(net)) else {
            return Ok(());
        };
        let id = self.identity(
            net,
            ns,
            short(endpoint_id),
            host_iface,
            BTreeMap::new(),
            true,
        );
        let written = self
            .registry
            .put_identity(ip, &id)
            .await
            .map_err(|source| DriverError::Record {
                name: id.name.clone(),
                ip,
                source: Box::new(source),
            })?;
        let mut enforced = enforced.clone();
        let in_place = tokio::time::timeout(ENFORCE_WAIT, enforced.wait_for(|r| *r >= written))
            .await
            .is_ok_and(|r| r.is_ok());
        match in_place {
            true => Ok(()),
            false => Err(DriverError::NotEnforced {
                name: id.name,
                ip,
                within: ENFORCE_WAIT,
            }),
        }
    }

    /// After Join: reads who the container is from the daemon (asking again while
    /// Docker finishes the attachment) and records its names (see [`crate::names`])
    /// and, where policy runs, its labels.
    pub(crate) fn identify_soon(
        &self,
        docker_network: String,
        endpoint_id: String,
        net: NamedNetwork,
        ip: Ipv4Addr,
        host_iface: String,
    ) {
        let policy = self.enforced.is_some() && namespace_of(&net).is_some();
        let me = self.clone();
        if !self
            .local
            .lock()
            .expect("lock")
            .identifying
            .insert(endpoint_id.clone())
        {
            return; // a task is on it already
        }
        tokio::spawn(async move {
            me.identify(&docker_network, &endpoint_id, &net, ip, &host_iface, policy)
                .await;
            me.local
                .lock()
                .expect("lock")
                .identifying
                .remove(&endpoint_id);
        });
    }

    /// The task of [`Driver::identify_soon`].
    async fn identify(
        &self,
        docker_network: &str,
        endpoint_id: &str,
        net: &NamedNetwork,
        ip: Ipv4Addr,
        host_iface: &str,
        policy: bool,
    ) {
        let start = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
        let mut last = String::new();
        while start.elapsed() < READ_FOR {
            backoff.wait().await;
            let found = match self.engine.as_ref() {
                Some(engine) => engine.network(docker_network).await,
                None => return,
            };
            let container = match found {
                Ok(Some(d)) => d.container_of(endpoint_id),
                Ok(None) => return, // the network is gone
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let Some((cid, name)) = container else {
                // Removed before Docker finished attaching it: nothing to record.
                if self.endpoint(net, endpoint_id).await.is_err() {
                    return;
                }
                continue;
            };
            if let Err(e) = self.record_names(net, ip, endpoint_id, &cid, &name).await {
                last = e.to_string();
                continue;
            }
            if !policy {
                return;
            }
            match self.record_labels(net, ip, host_iface, &cid, &name).await {
                Ok(()) => return,
                Err(e) => last = e.to_string(),
            }
        }
        warn!(network = %net.name, %ip, endpoint = short(endpoint_id), error = %last,
            "cannot read who the container is; the sync tries again (until then its name does not resolve on other hosts, and policy holds it)");
    }

    /// Records the identity of the container `cid` (named `name`) at `ip`: its
    /// labels as the daemon has them.
    pub(crate) async fn record_labels(
        &self,
        net: &NamedNetwork,
        ip: Ipv4Addr,
        host_iface: &str,
        cid: &str,
        name: &str,
    ) -> Result<(), DriverError> {
        let Some(ns) = namespace_of(net) else {
            return Ok(());
        };
        let engine = self.engine.as_ref().ok_or(DriverError::NoEngine)?;
        let labels = engine
            .container_labels(cid)
            .await?
            .ok_or_else(|| DriverError::NoContainer(short(cid).to_owned()))?;
        let (labels, dropped) = usable_labels(labels);
        if !dropped.is_empty() {
            warn!(container = %name, labels = %dropped.join(", "),
                "container labels that are not valid Kubernetes labels are not used by network policy");
        }
        let id = self.identity(net, ns, name, host_iface, labels, false);
        self.registry
            .put_identity(ip, &id)
            .await
            .map_err(|source| DriverError::Record {
                name: id.name.clone(),
                ip,
                source: Box::new(source),
            })?;
        info!(endpoint = %id.name, %ip, "Docker endpoint identity recorded from its labels");
        Ok(())
    }

    /// Forgets the identity at `ip` if this node recorded it.
    pub(crate) async fn forget_identity(&self, ip: Ipv4Addr) {
        match self.registry.identity(ip).await {
            Ok(Some(id)) if id.node == self.host.public_ip => {
                if let Err(e) = self.registry.delete_identity(ip).await {
                    warn!(%ip, error = %e, "cannot forget a Docker endpoint's identity");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_a_selector_cannot_match_are_left_out_and_named() {
        let all = BTreeMap::from([
            ("app".to_owned(), "db".to_owned()),
            ("com.docker.compose.service".to_owned(), "db".to_owned()),
            (
                "maintainer".to_owned(),
                "Jane Doe <jane@example.org>".to_owned(),
            ),
        ]);
        let (kept, dropped) = usable_labels(all);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(dropped, vec!["maintainer".to_owned()]);
    }
}
