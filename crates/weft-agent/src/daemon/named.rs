//! Named networks (Docker's) in the agent: the store's networks and endpoints followed
//! like leases, and the Docker driver it serves. They are planned inside the host plan
//! (`weft_backends::host`), their segments applied by the overlay manager
//! (`daemon::overlay`), their routes with every other route.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use tracing::{error, info, warn};
use weft_alloc::named::{Endpoint, NamedNetwork};
use weft_alloc::registry::DecodeError;
use weft_alloc::registry::{entry, Change};
use weft_backends::networks::PlannedEndpoint;
use weft_store::KeyValue;

use super::Agent;
use crate::error::AgentError;

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
                routed_mtu: self.runtime.backend.mtu(ext.mtu),
            },
            local: std::sync::Arc::new(std::sync::Mutex::new(weft_docker::driver::DriverState {
                nudge: self.docker_nudge.clone(),
                ..Default::default()
            })),
            own_netns: "/proc/self/ns/net".into(),
            engine: Some(weft_docker::Engine::new(&self.opts.docker_socket)),
            enforced: Some(self.policy.subscribe()),
        };
        let socket =
            weft_docker::server::socket_path(&self.opts.docker_plugin_dir, weft_docker::PLUGIN);
        let served = driver.clone();
        match weft_docker::server::listen(&socket) {
            Ok(listener) => {
                tokio::spawn(async move {
                    if let Err(e) = weft_docker::server::serve_on(listener, &socket, served).await {
                        error!(socket = %socket.display(), error = %e, "cannot serve the Docker driver");
                    }
                });
            }
            Err(e) => {
                error!(socket = %socket.display(), error = %e, "cannot serve the Docker driver")
            }
        }
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
                    self.docker_nudge.notify_one();
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
                    self.docker_nudge.notify_one();
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
            Some(Ok(e)) => {
                let old = endpoints.insert((network, ip), e.clone());
                self.names_dirty |= old.as_ref() != Some(&e);
                // Names alone (recorded just after a container starts) change no plan.
                !old.is_some_and(|o| o.same_but_names(&e))
            }
            Some(Err(e)) => {
                warn!(network, %ip, error = %e, "ignoring an unreadable named network or endpoint");
                false
            }
            None => {
                let gone = endpoints.remove(&(network, ip)).is_some();
                self.names_dirty |= gone;
                gone
            }
        }
    }

    /// Gives the resolver the endpoints as they now are, if they changed.
    pub(super) fn publish_names(&mut self) {
        if !std::mem::take(&mut self.names_dirty) {
            return;
        }
        let directory = weft_dns::Directory::new(
            self.view
                .named
                .endpoints
                .iter()
                .map(|((network, ip), e)| (network.as_str(), *ip, e)),
        );
        self.names.send_replace(std::sync::Arc::new(directory));
    }

    /// Serves container names on `addr` (see `weft_dns`); an address that cannot be
    /// bound stops the agent at start, with the reason.
    pub(super) async fn spawn_dns(&mut self, addr: std::net::SocketAddr) -> Result<(), AgentError> {
        let socket = weft_dns::server::bind(addr).await?;
        self.publish_names();
        let directory = self.names.subscribe();
        let upstream = weft_dns::upstream::Upstream {
            resolv_conf: self.opts.resolv_conf.clone(),
            own: addr,
        };
        tokio::spawn(async move {
            if let Err(e) = weft_dns::serve(socket, directory, upstream).await {
                error!(error = %e, "container names no longer resolve");
            }
        });
        Ok(())
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
        self.names_dirty = true;
    }
}
