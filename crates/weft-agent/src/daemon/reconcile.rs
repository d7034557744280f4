//! Reconcile: the backend's plan against what the kernel has, changing only the
//! difference, and reporting what changed (or was repaired) in the log.

use std::sync::atomic::Ordering;
use weft_bgp::policy::Own;

use tracing::{error, info, warn};
use weft_alloc::registry::NodeStatus;
use weft_alloc::screen::screen;
use weft_alloc::Lease;
use weft_backends::host::Unrouted;
use weft_plan::{Applied, LinkOutcome};

use super::{Agent, Why};

/// The IPv6 underlay devices' names (`weft-v6.<VNI>`): Weft's own, removed when unplanned.
const VXLAN6_PREFIX: &str = "weft-v6.";
use crate::options::IpipMode;

impl Agent {
    /// Plans from the current picture (one `HostPlan`, `weft_backends::host`) and hands
    /// each part to its manager, which applies the difference to the kernel. No store
    /// I/O happens here: the node status is handed to its publisher, so a store that
    /// hangs cannot delay a repair.
    pub(super) async fn reconcile(&mut self, why: Why) {
        if why.is_repair() {
            self.check_external().await;
        }
        let Some(device_changed) = self.reconcile_overlay(why).await else {
            // Without the device no plan can be right; everything stays as it is.
            return;
        };
        let device_changed = self.reconcile_overlay6(why).await || device_changed;
        self.check_lease_taken();
        let peers = self.standing_leases();
        let picture = self.picture();
        let announce = self.announcements(&picture, &peers);
        // Woken by the kernel or the timer, but routes were learned meanwhile: what
        // changes now is news (a full apply, logged as such), not a repair of drift.
        let why = match self.sync_bgp(&peers, announce).await {
            true if why.is_repair() => Why::Store,
            _ => why,
        };
        let mut plan = self.host_plan(&picture, &peers);
        if let (Some(t), Some(table)) = (&self.runtime.tunnel, plan.tunnel.take()) {
            t.set_table(table);
        }
        self.log_unrouted(&plan.unrouted);
        self.firewall.apply(self.dp.as_ref(), false, &plan.firewall);
        self.reconcile_policy(why);
        let (dp, metrics) = (self.dp.as_ref(), self.metrics.as_ref());
        let entries_changed = (self.overlay)
            .entries(
                dp,
                metrics,
                why,
                self.view.node.overlay,
                (&plan.neighbours, &plan.fdb),
            )
            .await;
        let entries_changed = (self.overlay)
            .entries(
                dp,
                metrics,
                why,
                self.view.node.overlay6,
                (&plan.neighbours6, &plan.fdb6),
            )
            .await
            || entries_changed;
        self.firewall
            .ensure_forward(self.dp.as_ref(), &plan.forward);
        let any_named = !self.view.named.networks.is_empty();
        let named_changed = (self.overlay)
            .segments(dp, metrics, why, &plan.segments, any_named)
            .await;
        let hold = self.routes.hold_learned;
        let routes_changed = match (self.routes)
            .apply(self.dp.as_ref(), why, &plan.routes, hold)
            .await
        {
            Ok(report) => {
                log_applied(
                    "route",
                    why,
                    &report.applied,
                    Some(report.elapsed.as_millis()),
                );
                self.count(&report.applied)
            }
            Err(e) => {
                error!(error = %e, "cannot read or change routes; will retry");
                false
            }
        };
        let m = &self.metrics;
        if (device_changed || entries_changed || named_changed || routes_changed) && why.is_repair()
        {
            m.repairs.fetch_add(1, Ordering::Relaxed);
        }
        m.routes.store(plan.routes.len() as u64, Ordering::Relaxed);
        m.peers.store(
            self.view.peers.len().saturating_sub(1) as u64,
            Ordering::Relaxed,
        );
        m.unreachable_peers
            .store(plan.unrouted.peers.len() as u64, Ordering::Relaxed);
        m.reconciled();
        if let Some(rt) = self.runtime.bgp.as_mut() {
            rt.write_status(&self.metrics);
        }
        self.offer_status();
    }

    /// Logs what the plan could not route, each thing once until it changes.
    fn log_unrouted(&mut self, u: &Unrouted) {
        if u.peers != self.last.unreachable {
            for p in &u.peers {
                warn!(subnet = %p.subnet, reason = %p.reason, "no route to peer");
            }
            self.last.unreachable = u.peers.clone();
        }
        if u.blocks != self.last.blocks_unreachable {
            for (dst, reason) in &u.blocks {
                warn!(%dst, %reason, "no route to a block or borrowed address");
            }
            self.last.blocks_unreachable = u.blocks.clone();
        }
        if u.containers != self.last.named_unreachable {
            for (ip, why) in &u.containers {
                warn!(%ip, reason = %why, "no route to a routed container");
            }
            self.last.named_unreachable = u.containers.clone();
        }
    }

    /// Makes the backend's overlay device (if it has one) exist as planned and records
    /// its index for planning. `Some(changed)`; `None` when it could not be made. Where
    /// the kernel lacks IP-in-IP and the operator left the choice to Weft, the backend
    /// becomes user-space IP-in-IP (the same packets on the wire) and its device is made
    /// instead: the one change of backend a reconcile makes, once.
    async fn reconcile_overlay(&mut self, why: Why) -> Option<bool> {
        self.view.node.overlay = None;
        loop {
            let Some(spec) = self.runtime.backend.overlay(&self.view.node) else {
                return Some(false);
            };
            let err = match self.ensure_overlay(&spec).await {
                Ok((index, outcome)) => {
                    log_device(&spec, &outcome, why);
                    self.view.node.overlay = Some(index);
                    return Some(outcome != LinkOutcome::Unchanged);
                }
                Err(e) if e.is_unsupported() && self.may_fall_back() => e,
                Err(e) => {
                    error!(dev = %spec.name(), error = %e, "cannot set up the overlay device; leaving the data plane as it is");
                    return None;
                }
            };
            warn!(error = %err, "no kernel IP-in-IP here; running IP-in-IP in user space (same packets on the wire)");
            self.runtime.ipip_user_space = true;
            self.runtime.backend = weft_backends::build(
                &self.view.config,
                &self.settings(self.view.attrs.public_ip, self.view.attrs.public_ipv6),
            );
        }
    }

    /// Makes the IPv6 underlay's device exist where the backend wants one (dual-stack
    /// vxlan on a node with a public IPv6 address) and records its index; removes one
    /// left over where it wants none (IPv6 switched off, another backend). Whether
    /// anything changed. A device that cannot be made leaves the IPv6 subnets to the
    /// IPv4 device (the plan falls back to it without the index).
    async fn reconcile_overlay6(&mut self, why: Why) -> bool {
        let had = self.view.node.overlay6.take();
        let Some(spec) = self.runtime.backend.overlay6(&self.view.node) else {
            // A leftover is looked for where there can be one: the device this agent
            // made, or one an earlier run left (at start and on the resync). An
            // IPv4-only node's reconciles dump no links for it.
            if had.is_none() && !matches!(why, Why::Start | Why::Resync) {
                return false;
            }
            let Ok(links) = self.dp.links().await else {
                return false;
            };
            let mut removed = false;
            for l in links.iter().filter(|l| l.name.starts_with(VXLAN6_PREFIX)) {
                match self.dp.del_link(l.index).await {
                    Ok(()) => {
                        info!(dev = %l.name, "removed the IPv6 underlay's device: no longer planned");
                        removed = true;
                    }
                    Err(e) => {
                        warn!(dev = %l.name, error = %e, "cannot remove an unplanned overlay device")
                    }
                }
            }
            return removed;
        };
        match self.dp.ensure_overlay(&spec).await {
            Ok((index, outcome)) => {
                log_device(&spec, &outcome, why);
                self.view.node.overlay6 = Some(index);
                outcome != LinkOutcome::Unchanged
            }
            Err(e) => {
                error!(dev = %spec.name(), error = %e, "cannot set up the IPv6 underlay's device; IPv6 goes through the IPv4 device meanwhile");
                false
            }
        }
    }

    /// The leases that stand (see [`weft_alloc::screen`]); each one that does not is
    /// logged once, by key, with what it would have cut.
    fn standing_leases(&mut self) -> Vec<Lease> {
        let screened = screen(&self.view.config, self.view.peers.values());
        if screened.rejected != self.last.rejected {
            let own = self.view.node.lease.subnet;
            for r in &screened.rejected {
                let key = self.registry.keys().lease_key(&r.lease);
                if r.collides.contains(&own) {
                    warn!(key, lease = %r, "ignoring a lease that overlaps this node's subnet; no node routes to it");
                } else {
                    warn!(key, lease = %r, "ignoring a lease that cannot stand; no node routes to it");
                }
            }
            self.last.rejected = screened.rejected;
        }
        screened.standing
    }

    /// Whether this node's subnet is leased to another node now (a reservation or a
    /// lease written over ours). The agent does not fight over it: it reports not ready
    /// in `/healthz` and keeps its data plane, until the lease is deleted (it then claims
    /// the subnet again) or it is restarted (it then claims another).
    fn check_lease_taken(&mut self) {
        let own = self.view.node.lease.subnet;
        let taken = self
            .view
            .peers
            .get(&own)
            .filter(|l| l.attrs.public_ip != self.view.attrs.public_ip)
            .map(|l| {
                format!(
                    "this node's subnet {own} is now leased to {}; delete that lease to give it back, or restart weftd to claim another",
                    l.attrs.public_ip
                )
            });
        let mut slot = self.metrics.lease_taken.lock().expect("lock");
        if *slot != taken {
            match &taken {
                Some(why) => error!("{why}"),
                None => info!(subnet = %own, "this node's subnet is its own again"),
            }
            *slot = taken;
        }
    }

    fn may_fall_back(&self) -> bool {
        self.opts.ipip_mode == IpipMode::Auto && !self.runtime.ipip_user_space
    }

    /// Brings the BGP speaker in step with the leases and what this node announces,
    /// and takes its learned routes; whether they moved since the last plan.
    async fn sync_bgp(&mut self, peers: &[Lease], announce: Vec<Own>) -> bool {
        let (Some(rt), Some(bgp)) = (self.runtime.bgp.as_mut(), self.runtime.backend.bgp()) else {
            return false;
        };
        rt.sync(
            bgp,
            peers,
            announce,
            self.view.config.network,
            &self.opts.node_labels,
        )
        .await;
        // Whether to hold the kernel's other routes, read before the learned routes: once
        // the initial exchange is over, every route it brought has been published.
        self.routes.hold_learned = !rt.initial_exchange_over();
        let learned = rt.learned();
        let moved = learned != self.view.node.learned;
        self.view.node.learned = learned;
        moved
    }

    /// Hands this node's status (peers and blocks it has no route for, orphaned
    /// addresses) to the publisher; no store I/O here.
    pub(super) fn offer_status(&self) {
        let status = NodeStatus {
            public_ip: Some(self.view.attrs.public_ip),
            backend: self.runtime.backend.kind().name().into(),
            // Peers and, for `weftctl ipam check`, blocks this node has no route for.
            unreachable: self
                .last
                .unreachable
                .iter()
                .cloned()
                .chain(self.last.blocks_unreachable.iter().map(|(subnet, reason)| {
                    weft_alloc::registry::Unreachable {
                        subnet: (*subnet).into(),
                        reason: reason.clone(),
                    }
                }))
                .collect(),
            orphans: self.last.orphans.clone(),
            policy: self.policy.loaded_fingerprint().map(str::to_owned),
        };
        self.status.offer(&self.view.node.lease, status);
    }
}

/// Says what making an overlay device take: its creation at start, a repair later.
fn log_device(spec: &weft_plan::OverlaySpec, outcome: &LinkOutcome, why: Why) {
    match outcome {
        LinkOutcome::Unchanged => {}
        LinkOutcome::Created if why == Why::Start => {
            info!(dev = %spec.name(), mtu = spec.mtu(), "created overlay device")
        }
        other => warn!(dev = %spec.name(), outcome = %other, ?why, "repaired overlay device"),
    }
}

/// `what` in the plural, as a log line says it ("fdb entries", "routes").
fn plural(what: &str) -> String {
    match what.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{what}s"),
    }
}

/// Logs what a diff changed; `elapsed_ms` when the caller timed it.
pub(super) fn log_applied<T: std::fmt::Debug>(
    what: &str,
    why: Why,
    applied: &Applied<T>,
    elapsed_ms: Option<u128>,
) {
    if applied.changed() {
        let (added, replaced, removed) = (applied.added, applied.replaced, applied.removed);
        if why.is_repair() {
            warn!(
                added,
                replaced,
                removed,
                ?why,
                "repaired {}: the kernel had drifted from the plan",
                plural(what)
            );
        } else {
            info!(
                added,
                replaced,
                removed,
                elapsed_ms = elapsed_ms.map(|m| m as u64),
                "applied {what} plan"
            );
        }
    }
    for (change, err) in &applied.failed {
        error!(?change, error = %err, "kernel refused a {what} change");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_are_pluralised_as_english_does() {
        assert_eq!(super::plural("route"), "routes");
        assert_eq!(super::plural("fdb entry"), "fdb entries");
        assert_eq!(super::plural("segment neighbour"), "segment neighbours");
    }
}
