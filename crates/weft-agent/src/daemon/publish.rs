//! This node's status in the store (`weftctl ipam check`, `diagnose` and `leases` read
//! it), written from a task of its own: the agent's loop only hands over the latest
//! status and goes on, so a store that hangs (a paused etcd answers nothing for the
//! client's whole timeout) never holds up a repair of the kernel.

use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;
use weft_alloc::registry::NodeStatus;
use weft_alloc::{Lease, Registry};

/// The latest status to publish, and the lease it is published under.
type Wanted = Option<(Lease, NodeStatus)>;

pub(super) struct StatusPublisher {
    tx: watch::Sender<Wanted>,
}

impl StatusPublisher {
    /// Starts the writer task; it lives as long as this handle.
    pub(super) fn spawn(registry: Registry) -> StatusPublisher {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(write_latest(registry, rx));
        StatusPublisher { tx }
    }

    /// Hands over the status to publish; returns at once. A status equal to the last
    /// one handed over wakes nothing.
    pub(super) fn offer(&self, lease: &Lease, status: NodeStatus) {
        self.tx.send_if_modified(|wanted| {
            let same = wanted
                .as_ref()
                .is_some_and(|(l, s)| l.subnet == lease.subnet && *s == status);
            if !same {
                *wanted = Some((lease.clone(), status));
            }
            !same
        });
    }
}

/// Writes each status handed over, the newest only; one that could not be written is
/// tried again a second later (or as soon as a newer one arrives).
async fn write_latest(registry: Registry, mut rx: watch::Receiver<Wanted>) {
    while rx.changed().await.is_ok() {
        loop {
            let Some((lease, status)) = rx.borrow_and_update().clone() else {
                break;
            };
            match registry.put_status(&lease, &status).await {
                Ok(()) => break,
                Err(e) => {
                    debug!(error = %e, "cannot publish node status; will retry");
                    let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
                }
            }
        }
    }
}
