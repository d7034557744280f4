//! The running agent's loop: what wakes it, and how bursts collapse into one reconcile.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use weft_alloc::policies::PolicyState;
use weft_kernel::monitor::KernelEvent;
use weft_store::Revision;
use weft_store::StoreError;

use super::upkeep::Renewal;
use super::{Agent, Why};
use crate::error::AgentError;

/// How long a burst of kernel changes (an interface flap, our own changes) is left to
/// settle before everything is read again.
const KERNEL_SETTLE: Duration = Duration::from_millis(50);

/// How many store events taken at once make a burst, worth waiting for the rest of
/// before planning (a container's join writes two or three).
const BURST: usize = 4;

/// How long a burst waits for its next event (a pause this long ends it).
const BURST_GAP: Duration = Duration::from_millis(20);

/// The longest a burst is coalesced from its first event: under a steady stream of
/// changes (one every few milliseconds, never a 20 ms pause) the plan is still applied
/// at least this often, instead of waiting for the stream to stop.
const BURST_MOST: Duration = Duration::from_millis(50);

/// How long to wait for one more event of a burst: none before a burst is one (`taken`
/// below [`BURST`]), up to [`BURST_GAP`] after, and `None` (plan now) once `elapsed`
/// since its first event reaches [`BURST_MOST`].
fn burst_wait(taken: usize, elapsed: Duration) -> Option<Duration> {
    if taken < BURST {
        return Some(Duration::ZERO);
    }
    let left = BURST_MOST.checked_sub(elapsed).filter(|l| !l.is_zero())?;
    Some(left.min(BURST_GAP))
}

impl Agent {
    /// Follows the store from `revision` on, the kernel's events and the timers until
    /// `shutdown` completes. Returns only then, or when the store watch ends.
    pub(super) async fn serve(
        mut self,
        revision: Revision,
        mut kernel_events: mpsc::Receiver<KernelEvent>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let peers = self.view.peers.len().saturating_sub(1);
        info!(peers, "ready");
        crate::notify::ready(&format!("serving; {peers} peers"));
        let watch_prefix = format!("{}/", self.opts.store.etcd_prefix.trim_end_matches('/'));
        let mut watch = self
            .registry
            .store()
            .watch(&watch_prefix, revision + 1)
            .await
            .map_err(|e| AgentError::Watch(Box::new(e)))?;
        let mut bgp_routes = self.runtime.bgp.as_ref().map(|b| b.subscribe());
        // Session states change without a reconcile; the status file follows every 2 s.
        let mut bgp_status = tokio::time::interval(Duration::from_secs(2));
        let mut resync = tokio::time::interval(self.opts.resync_interval);
        resync.tick().await;
        let renew_every =
            (self.opts.subnet_lease_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut renew = tokio::time::interval(renew_every);
        renew.tick().await;
        tokio::pin!(shutdown);
        // The policy state read whole (a watch resync, or unread at start), in a task
        // of its own: the loop never waits on the store.
        let mut policy_read: Option<JoinHandle<Result<PolicyState, StoreError>>> = None;
        // The lease's renewal, likewise.
        let mut renewing: Option<JoinHandle<Renewal>> = None;
        // When the kernel's latest burst of changes is re-read (see KERNEL_SETTLE).
        let mut settle: Option<tokio::time::Instant> = None;

        loop {
            if policy_read.is_none() && self.policy.needs_read() {
                self.policy.begin_read();
                let registry = self.registry.clone();
                policy_read = Some(tokio::spawn(async move {
                    let read = registry.policy_state().await;
                    if read.is_err() {
                        // Not again at once: the store just failed.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    read
                }));
            }
            tokio::select! {
                read = async { policy_read.as_mut().expect("guarded").await }, if policy_read.is_some() => {
                    policy_read = None;
                    match read {
                        Ok(Ok(st)) => {
                            let opened = self.policy.opens_between();
                            self.policy.take_state(st);
                            if self.policy.opens_between() != opened {
                                self.reconcile(Why::Store).await;
                            } else {
                                self.reconcile_policy_alone();
                            }
                        }
                        Ok(Err(e)) => {
                            self.policy.read_failed();
                            warn!(error = %e, "cannot read network policies; enforcement stays as it is; will retry");
                        }
                        Err(e) => {
                            self.policy.read_failed();
                            error!(error = %e, "the policy read failed");
                        }
                    }
                }
                _ = &mut shutdown => {
                    info!("stopping; routes and lease stay in place for the next start");
                    return Ok(());
                }
                event = watch.next() => {
                    let Some(event) = event else {
                        error!("store watch ended; the kernel is left as it is");
                        return Err(AgentError::WatchEnded);
                    };
                    let first = tokio::time::Instant::now();
                    let mut dirty = self.on_event(event).await;
                    // Coalesce a burst of events into one plan: take what has already
                    // arrived, and only once it is a burst (BURST events at once) wait a
                    // little for the rest, never longer than BURST_MOST in all. A
                    // container's few records (its endpoint, its identity, whose Join
                    // or ADD waits for its rules) are planned at once.
                    let mut taken = 1;
                    while let Some(wait) = burst_wait(taken, first.elapsed()) {
                        match tokio::time::timeout(wait, watch.next()).await {
                            Ok(Some(more)) => {
                                dirty |= self.on_event(more).await;
                                taken += 1;
                            }
                            _ => break,
                        }
                    }
                    self.publish_names();
                    if dirty {
                        self.reconcile(Why::Store).await;
                    } else if self.policy_pending() {
                        // Only policy changed (a container's identity, whose ADD waits):
                        // the policy table alone, not the whole plan.
                        self.reconcile_policy_alone();
                    }
                }
                event = kernel_events.recv() => {
                    match event {
                        Some(KernelEvent::Lost) | None => {
                            warn!("lost the kernel event monitor; re-reading everything and resubscribing");
                            kernel_events = self.dp.watch().unwrap_or_else(|e| {
                                error!(error = %e, "cannot resubscribe to kernel events; relying on the periodic resync");
                                mpsc::channel(1).1
                            });
                        }
                        Some(ev) => debug!(?ev, "kernel change"),
                    }
                    // Let a burst (an interface flap, our own changes) settle, then
                    // re-read all. The loop goes on meanwhile: a store event (a joining
                    // container's identity, whose Join waits for its rules) is not held
                    // up behind a veth's link events.
                    settle.get_or_insert_with(|| tokio::time::Instant::now() + KERNEL_SETTLE);
                }
                _ = async { tokio::time::sleep_until(settle.expect("guarded")).await }, if settle.is_some() => {
                    settle = None;
                    while kernel_events.try_recv().is_ok() {}
                    self.reconcile(Why::Kernel).await;
                }
                _ = resync.tick() => {
                    if let Err(e) = self.setup_host() {
                        warn!(error = %e, "host setup check failed; will retry");
                    }
                    if let Err(e) = self.write_host_files() {
                        warn!(error = %e, "cannot write the host files; will retry");
                    }
                    drop(self.release_empty_blocks());
                    self.find_orphans().await;
                    self.reconcile(Why::Resync).await;
                }
                _ = renew.tick(), if renewing.is_none() => {
                    renewing = Some(tokio::spawn(super::upkeep::check_renewal(
                        self.registry.clone(),
                        self.view.node.lease.clone(),
                        self.opts.subnet_lease_renew_margin,
                        self.opts.subnet_lease_ttl,
                    )));
                }
                outcome = async { renewing.as_mut().expect("guarded").await }, if renewing.is_some() => {
                    renewing = None;
                    if let Ok(Renewal::Lost) = outcome {
                        self.reacquire().await;
                    }
                }
                _ = bgp_status.tick(), if self.runtime.bgp.is_some() => {
                    if let Some(rt) = self.runtime.bgp.as_mut() {
                        rt.write_status(&self.metrics);
                    }
                }
                changed = bgp_change(&mut bgp_routes) => {
                    if !changed {
                        bgp_routes = None;
                    }
                    // No waiting for a burst to end: the speaker publishes once per burst it
                    // has taken in, and whatever changes while this plan is applied is
                    // coalesced by the watch into the next one.
                    self.reconcile(Why::Learned).await;
                }
            }
        }
    }
}

/// Waits for the BGP speaker's learned routes to change (forever without a speaker);
/// false when the speaker is gone.
async fn bgp_change(
    rx: &mut Option<tokio::sync::watch::Receiver<BTreeMap<Ipv4Net, weft_bgp::speaker::Learned>>>,
) -> bool {
    match rx.as_mut() {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few events are planned at once; a burst waits for more, but a steady stream
    /// of them is planned at least every BURST_MOST.
    #[test]
    fn a_burst_waits_for_more_but_never_past_its_bound() {
        let ms = Duration::from_millis;
        assert_eq!(
            burst_wait(1, ms(0)),
            Some(Duration::ZERO),
            "what has arrived only"
        );
        assert_eq!(burst_wait(BURST - 1, ms(30)), Some(Duration::ZERO));
        assert_eq!(burst_wait(BURST, ms(0)), Some(BURST_GAP));
        assert_eq!(burst_wait(BURST, ms(40)), Some(ms(10)), "only what is left");
        assert_eq!(
            burst_wait(500, BURST_MOST),
            None,
            "a steady stream is planned now"
        );
        assert_eq!(burst_wait(500, ms(200)), None);
    }
}
