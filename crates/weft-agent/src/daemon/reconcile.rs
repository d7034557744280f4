//! Reconcile: the backend's plan against what the kernel has, changing only the
//! difference, and reporting what changed (or was repaired) in the log.

use super::*;

impl Agent {
    /// Makes the backend's overlay device (and, for a TUN, the tunnel behind it) exist
    /// as specified; returns its index.
    pub(super) async fn ensure_overlay(
        &mut self,
        spec: &OverlaySpec,
    ) -> Result<(u32, LinkOutcome), KernelError> {
        match spec {
            OverlaySpec::Vxlan(s) => self.kernel.ensure_vxlan(s).await,
            OverlaySpec::Ipip(s) => self.kernel.ensure_ipip(s).await,
            OverlaySpec::Tun(s) => {
                let existed = self.kernel.link_index(&s.name).await?.is_some();
                let started = self.ensure_tunnel(!existed && self.tunnel.is_some());
                let (index, outcome) = self.kernel.ensure_tun(s).await?;
                Ok((
                    index,
                    match outcome {
                        // A device that did not exist was made by opening the tunnel.
                        _ if !existed => LinkOutcome::Created,
                        LinkOutcome::Unchanged if started == Some(Started::Replaced) => {
                            LinkOutcome::Updated("tunnel restarted".into())
                        }
                        other => other,
                    },
                ))
            }
        }
    }

    /// Starts the user-space tunnel if it is not running (or `force`); says whether it
    /// started one, and whether that replaced another.
    pub(super) fn ensure_tunnel(&mut self, force: bool) -> Option<Started> {
        let encap = self.backend.user_space_encap()?;
        let healthy = self
            .tunnel
            .as_ref()
            .is_some_and(|t| t.is_alive() && t.encap == encap);
        if healthy && !force {
            return None;
        }
        let started = if self.tunnel.is_some() {
            Started::Replaced
        } else {
            Started::Fresh
        };
        if let Some(old) = self.tunnel.take() {
            // Joining its threads takes up to half a second; not on the async runtime.
            tokio::task::spawn_blocking(move || drop(old));
        }
        let queues = match self.opts.tunnel_queues {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let table = Table::new(
            self.config.network,
            self.node.lease.subnet,
            self.attrs.public_ip,
        );
        match Tunnel::start(DEVICE, encap, queues, table, self.metrics.tunnel.clone()) {
            Ok(t) => {
                self.tunnel = Some(t);
                Some(started)
            }
            Err(e) => {
                error!(error = %e, "cannot start the user-space tunnel; will retry");
                None
            }
        }
    }

    /// Plans from the current picture and applies the difference to the kernel.
    pub(super) async fn reconcile(&mut self, why: Why) {
        if why.is_repair() {
            self.check_external().await;
        }
        let mut changed = false;
        self.node.overlay = None;
        if let Some(spec) = self.backend.overlay(&self.node) {
            match self.ensure_overlay(&spec).await {
                Ok((index, outcome)) => {
                    changed |= outcome != LinkOutcome::Unchanged;
                    match &outcome {
                        LinkOutcome::Unchanged => {}
                        LinkOutcome::Created if why == Why::Start => {
                            info!(dev = %spec.name(), mtu = spec.mtu(), "created overlay device")
                        }
                        other => {
                            warn!(dev = %spec.name(), outcome = %other, ?why, "repaired overlay device")
                        }
                    }
                    self.node.overlay = Some(index);
                }
                Err(e) if e.is_unsupported() && self.opts.ipip_mode == IpipMode::Auto => {
                    warn!(error = %e, "no kernel IP-in-IP here; running IP-in-IP in user space (same packets on the wire)");
                    self.ipip_user_space = true;
                    match weft_backends::build(
                        &self.config,
                        &settings(&self.opts, self.attrs.public_ip, true),
                    ) {
                        Ok(b) => self.backend = b,
                        Err(e) => return error!(error = %e, "cannot switch to user-space IP-in-IP"),
                    }
                    return Box::pin(self.reconcile(why)).await;
                }
                Err(e) => {
                    // Without the device no plan can be right; leave everything as it is.
                    error!(dev = %spec.name(), error = %e, "cannot set up the overlay device; leaving the data plane as it is");
                    return;
                }
            }
        }
        let peers: Vec<Lease> = self
            .peers
            .values()
            .filter(|l| self.config.network.contains(&l.subnet))
            .cloned()
            .collect();
        let mut learned_moved = false;
        if let (Some(rt), Some(bgp)) = (self.bgp.as_mut(), self.backend.bgp()) {
            let mut own = vec![self.node.lease.subnet];
            own.extend(self.held.iter().map(|ip| Ipv4Net::from(*ip)));
            rt.sync(bgp, &peers, own).await;
            let learned = rt.learned();
            learned_moved = learned != self.node.learned;
            self.node.learned = learned;
        }
        // Woken by the kernel or the timer, but routes were learned meanwhile: what
        // changes now is news (a full apply, logged as such), not a repair of drift.
        let why = if why.is_repair() && learned_moved {
            Why::Store
        } else {
            why
        };
        let mut plane = self.backend.plan(&self.node, &peers);
        if let (Some(t), Some(table)) = (&self.tunnel, plane.tunnel.take()) {
            t.set_table(table);
        }
        if plane.unreachable != self.last_unreachable {
            for u in &plane.unreachable {
                warn!(subnet = %u.subnet, reason = %u.reason, "no route to peer");
            }
            self.last_unreachable = plane.unreachable.clone();
        }
        self.apply_firewall(false);
        if let Some(index) = self.node.overlay {
            match self.kernel.apply_neighbours(index, &plane.neighbours).await {
                Ok(a) => {
                    changed |= self.count(&a);
                    log_applied("neighbour", why, &a, None)
                }
                Err(e) => error!(error = %e, "cannot read or change neighbours; will retry"),
            }
            match self.kernel.apply_fdb(index, &plane.fdb).await {
                Ok(a) => {
                    changed |= self.count(&a);
                    log_applied("fdb entry", why, &a, None)
                }
                Err(e) => error!(error = %e, "cannot read or change FDB entries; will retry"),
            }
        }
        let took_all = match self.apply_route_plan(why, &plane.routes).await {
            Ok(report) => {
                changed |= self.count(&report.applied);
                log_applied(
                    "route",
                    why,
                    &report.applied,
                    Some(report.elapsed.as_millis() as u64),
                );
                report.applied.failed.is_empty()
            }
            Err(e) => {
                error!(error = %e, "cannot read or change routes; will retry");
                false
            }
        };
        let m = &self.metrics;
        if changed && why.is_repair() {
            m.repairs.fetch_add(1, Ordering::Relaxed);
        }
        m.routes.store(plane.routes.len() as u64, Ordering::Relaxed);
        m.peers
            .store(self.peers.len().saturating_sub(1) as u64, Ordering::Relaxed);
        m.unreachable_peers
            .store(plane.unreachable.len() as u64, Ordering::Relaxed);
        m.reconciled();
        if took_all {
            self.routes_in_kernel = Some(plane.routes);
        }
        if let Some(rt) = self.bgp.as_mut() {
            rt.write_status();
        }
        self.publish_status().await;
    }

    /// Applies a route plan. Learned routes stream in: they change only what moved since
    /// the last plan the kernel took in full, without reading it all back first; if the
    /// kernel refuses some of that (someone else's edit), it is read and diffed after all.
    /// Everything else is read and diffed.
    pub(super) async fn apply_route_plan(
        &mut self,
        why: Why,
        routes: &[weft_kernel::Route],
    ) -> Result<weft_kernel::netlink::ApplyReport, KernelError> {
        let base = self.routes_in_kernel.take();
        if let (Why::Learned, Some(base)) = (why, base) {
            let delta = self.kernel.apply_route_delta(routes, &base).await?;
            if delta.applied.failed.is_empty() {
                return Ok(delta);
            }
            log_applied("route", why, &delta.applied, None);
        }
        self.kernel.apply_routes(routes).await
    }

    pub(super) async fn publish_status(&mut self) {
        let status = NodeStatus {
            public_ip: Some(self.attrs.public_ip),
            backend: self.backend.kind().name().into(),
            unreachable: self.last_unreachable.clone(),
        };
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        match self.registry.put_status(&self.node.lease, &status).await {
            Ok(()) => self.last_status = Some(status),
            Err(e) => debug!(error = %e, "cannot publish node status"),
        }
    }
}

/// Logs what a diff changed; `elapsed_ms` when the caller timed it.
fn log_applied<T: std::fmt::Debug>(
    what: &str,
    why: Why,
    applied: &Applied<T>,
    elapsed_ms: Option<u64>,
) {
    if applied.changed() {
        let (added, replaced, removed) = (applied.added, applied.replaced, applied.removed);
        if why.is_repair() {
            warn!(
                added,
                replaced,
                removed,
                ?why,
                "repaired {what}s: the kernel had drifted from the plan"
            );
        } else {
            info!(added, replaced, removed, elapsed_ms, "applied {what} plan");
        }
    }
    for (change, err) in &applied.failed {
        error!(?change, error = %err, "kernel refused a {what} change");
    }
}
