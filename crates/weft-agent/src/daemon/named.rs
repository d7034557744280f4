//! Named networks (Docker's) in the agent: the store's networks and endpoints followed
//! like leases, planned with `weft_backends::networks` and applied through the same
//! dataplane. Each overlay network present here is a segment (bridge + VXLAN device)
//! whose neighbour and FDB entries are diffed like the cluster device's; segments no
//! longer planned are deleted; routes to remote routed containers join the route plan.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tracing::{error, info, warn};
use weft_alloc::named::{Endpoint, NamedNetwork};
use weft_alloc::registry::DecodeError;
use weft_alloc::registry::{entry, Change};
use weft_backends::networks::PlannedEndpoint;
use weft_plan::segment::segment_vni;
use weft_plan::SegmentPlan;
use weft_store::KeyValue;

use super::reconcile::log_applied;
use super::{Agent, Why};

/// How long a segment stays after its last local endpoint is gone.
pub(super) const SEGMENT_GRACE: Duration = Duration::from_secs(10);

/// What the store says about named networks.
#[derive(Debug, Default)]
pub(super) struct Named {
    pub networks: BTreeMap<String, NamedNetwork>,
    pub endpoints: BTreeMap<(String, Ipv4Addr), Endpoint>,
}

impl Named {
    pub fn planned_endpoints(&self) -> Vec<PlannedEndpoint> {
        self.endpoints
            .iter()
            .map(|((network, ip), e)| PlannedEndpoint {
                network: network.clone(),
                ip: *ip,
                endpoint: e.clone(),
            })
            .collect()
    }

    pub fn networks(&self) -> Vec<NamedNetwork> {
        self.networks.values().cloned().collect()
    }
}

impl Agent {
    /// Serves the Docker driver and runs its sync with the local dockerd, each in a
    /// task of its own (see `weft_docker`).
    pub(super) fn spawn_docker(&self) {
        let ext = &self.view.node.external;
        let driver = weft_docker::Driver {
            registry: self.registry.clone(),
            dp: self.dp.clone(),
            host: weft_docker::HostFacts {
                public_ip: self.view.attrs.public_ip,
                underlay: ext.index,
                underlay_mtu: ext.mtu,
                routed_mtu: self.plane.backend.mtu(ext.mtu),
            },
            local: Default::default(),
            own_netns: "/proc/self/ns/net".into(),
            engine: Some(weft_docker::Engine::new(&self.opts.docker_socket)),
            enforced: Some(self.policy.subscribe()),
        };
        let socket =
            weft_docker::server::socket_path(&self.opts.docker_plugin_dir, weft_docker::PLUGIN);
        let served = driver.clone();
        tokio::spawn(async move {
            if let Err(e) = weft_docker::server::serve(&socket, served).await {
                error!(socket = %socket.display(), error = %e, "cannot serve the Docker driver");
            }
        });
        let engine = weft_docker::Engine::new(&self.opts.docker_socket);
        let sync = weft_docker::sync::Sync::new(driver, engine, weft_docker::PLUGIN);
        tokio::spawn(sync.run(std::time::Duration::from_secs(1)));
    }

    /// Follows one named network (`None`: deleted); whether the picture changed.
    pub(super) fn on_network(
        &mut self,
        name: &str,
        value: Option<Result<NamedNetwork, DecodeError>>,
    ) -> bool {
        match value {
            Some(Ok(net)) => {
                let changed = self.view.named.networks.get(&net.name) != Some(&net);
                if changed {
                    info!(network = %net.name, subnet = %net.subnet, mode = %net.mode, vni = net.vni, "named network");
                }
                self.view.named.networks.insert(net.name.clone(), net);
                changed
            }
            Some(Err(e)) => {
                // Keep the last good value of anything unreadable.
                warn!(network = name, error = %e, "ignoring an unreadable named network or endpoint");
                false
            }
            None => {
                let gone = self.view.named.networks.remove(name);
                if let Some(n) = &gone {
                    info!(network = %n.name, "named network deleted");
                }
                gone.is_some()
            }
        }
    }

    /// Follows one endpoint of a named network (`None`: deleted); whether the picture
    /// changed.
    pub(super) fn on_endpoint(
        &mut self,
        network: String,
        ip: Ipv4Addr,
        value: Option<Result<Endpoint, DecodeError>>,
    ) -> bool {
        let endpoints = &mut self.view.named.endpoints;
        match value {
            Some(Ok(e)) => endpoints.insert((network, ip), e.clone()) != Some(e),
            Some(Err(e)) => {
                warn!(network, %ip, error = %e, "ignoring an unreadable named network or endpoint");
                false
            }
            None => endpoints.remove(&(network, ip)).is_some(),
        }
    }

    /// Rebuilds the named networks from a full listing (start, or after compaction).
    pub(super) fn load_named(&mut self, kvs: &[KeyValue]) {
        let mut fresh = Named::default();
        for kv in kvs {
            match self.registry.keys().decode(entry(kv)) {
                Change::Network(_, Some(Ok(net))) => {
                    fresh.networks.insert(net.name.clone(), net);
                }
                Change::Endpoint(name, ip, Some(Ok(e))) => {
                    fresh.endpoints.insert((name, ip), e);
                }
                _ => {}
            }
        }
        self.view.named = fresh;
    }

    /// Applies the named overlay networks' segments (links and entries) and removes
    /// those no longer planned; whether anything changed.
    pub(super) async fn reconcile_segments(&mut self, why: Why, segments: &[SegmentPlan]) -> bool {
        let mut changed = false;
        let mut keep = BTreeSet::new();
        for seg in segments {
            keep.insert(seg.spec.vni);
            let vxlan = match self.dp.ensure_segment(&seg.spec).await {
                Ok((_, vxlan, outcome)) => {
                    if outcome != weft_plan::LinkOutcome::Unchanged {
                        info!(network = %seg.spec.network, vni = seg.spec.vni, %outcome, "named network segment");
                        changed = true;
                    }
                    vxlan
                }
                Err(e) => {
                    error!(network = %seg.spec.network, error = %e, "cannot set up the network's segment; will retry");
                    continue;
                }
            };
            match self.dp.apply_neighbours(vxlan, &seg.neighbours).await {
                Ok(a) => {
                    changed |= self.count(&a);
                    log_applied("segment neighbour", why, &a, None);
                }
                Err(e) => error!(error = %e, "cannot read or change a segment's neighbours"),
            }
            match self.dp.apply_fdb(vxlan, &seg.fdb).await {
                Ok(a) => {
                    changed |= self.count(&a);
                    log_applied("segment fdb entry", why, &a, None);
                }
                Err(e) => error!(error = %e, "cannot read or change a segment's FDB entries"),
            }
        }
        // Segments of networks with no endpoint here any more (or deleted), once they
        // have stayed unplanned for a while: a container joining as the store's news of
        // its address is still on its way must not lose the bridge it was just put on.
        // Only a host that has or had a named network can have a segment to remove:
        // no link dump on every reconcile of a host without any (the resync still looks).
        let look = !self.view.named.networks.is_empty()
            || !self.last.segments_unplanned.is_empty()
            || matches!(why, Why::Start | Why::Resync);
        if !look {
            return changed;
        }
        if let Ok(links) = self.dp.links().await {
            let unplanned: Vec<_> = links
                .into_iter()
                .filter(|l| segment_vni(&l.name).is_some_and(|v| !keep.contains(&v)))
                .collect();
            self.last
                .segments_unplanned
                .retain(|name, _| unplanned.iter().any(|l| &l.name == name));
            for l in unplanned {
                let since = *self
                    .last
                    .segments_unplanned
                    .entry(l.name.clone())
                    .or_insert_with(Instant::now);
                if since.elapsed() < SEGMENT_GRACE {
                    continue;
                }
                match self.dp.del_link(l.index).await {
                    Ok(()) => {
                        info!(dev = %l.name, "removed a segment no endpoint here uses");
                        changed = true;
                    }
                    Err(e) => warn!(dev = %l.name, error = %e, "cannot remove an unused segment"),
                }
            }
        }
        changed
    }

    /// Where iptables' FORWARD policy is DROP, named subnets and block IPAM's pools need
    /// accept rules as the cluster network does; checked when the set of them changes.
    pub(super) fn ensure_named_forward(&mut self, subnets: &[Ipv4Net]) {
        if subnets == self.last.named_forward {
            return;
        }
        for s in subnets {
            match self.dp.ensure_iptables_forward(s) {
                Ok(n) if n > 0 => {
                    info!(subnet = %s, rules = n, "inserted iptables FORWARD accept rules for a named network or pool")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(subnet = %s, error = %e, "cannot check iptables' FORWARD chain; will retry");
                    return;
                }
            }
        }
        self.last.named_forward = subnets.to_vec();
    }
}
