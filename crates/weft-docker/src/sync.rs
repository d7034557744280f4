//! Keeping the local daemon's networks and the store's in step, every few seconds:
//!
//! - a network Docker created here is registered in the store under the name Docker
//!   gave it (the driver only learns its ID);
//! - a network in the store that this daemon lacks is created in it (driver and IPAM
//!   `weft`), so `docker run --net NAME` works on every host without creating it again;
//! - a Weft network this daemon has but the store no longer does (removed on another
//!   host) is removed here, once no container uses it;
//! - addresses this node holds for endpoints the daemon no longer has (a crash of
//!   dockerd or of the agent in between) are released after a grace period, and host
//!   veths without an endpoint are deleted;
//! - endpoints of this node still held for network policy, or never recorded (the
//!   agent restarted before Join's task read their labels), get their identity (see
//!   [`crate::identity`]), and those not named yet their names (see [`crate::names`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::driver::{Driver, Registered, HOST_PREFIX};
use crate::engine::{DockerNetwork, Engine, EngineError};

/// Why a pass could not run: the daemon's or the store's listing failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] weft_store::StoreError),
}

/// How long an address may be held for an endpoint the daemon does not show.
pub const GRACE: Duration = Duration::from_secs(15);
/// How often a network Docker is creating here is looked for while it waits for its name.
pub const PENDING_POLL: Duration = Duration::from_millis(20);
/// How long a network Docker created may stay unnamed before it is given up.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Sync {
    pub driver: Driver,
    pub engine: Engine,
    /// The plugin's name (the driver name networks are created with).
    pub plugin: String,
    /// Addresses seen without an endpoint, since when.
    orphans: BTreeMap<(String, Ipv4Addr), Instant>,
    /// Networks the local dockerd refused to create (logged once each).
    refused: BTreeSet<String>,
    /// Host veths seen without an endpoint record, since when.
    stray_veths: BTreeMap<String, Instant>,
    pending_since: BTreeMap<String, Instant>,
    /// Endpoints whose identity this sync has seen recorded (not looked at again).
    identified: BTreeSet<String>,
}

impl Sync {
    pub fn new(driver: Driver, engine: Engine, plugin: &str) -> Sync {
        Sync {
            driver,
            engine,
            plugin: plugin.to_owned(),
            orphans: BTreeMap::new(),
            stray_veths: BTreeMap::new(),
            refused: BTreeSet::new(),
            pending_since: BTreeMap::new(),
            identified: BTreeSet::new(),
        }
    }

    /// Runs [`Sync::once`] every `every`, logging failures (dockerd not up yet, store
    /// unreachable) and carrying on.
    /// Passes every `every`, at once when nudged (see [`crate::driver::DriverState::nudge`]),
    /// and every [`PENDING_POLL`] while a network Docker is creating here waits for its
    /// name (Docker lists it only once its create call, which the driver is inside,
    /// returns).
    pub async fn run(mut self, every: Duration) {
        let nudge = self.driver.local.lock().expect("lock").nudge.clone();
        let mut down = false;
        loop {
            match self.once().await {
                Ok(()) if down => {
                    info!(socket = %self.engine.socket().display(), "dockerd reachable again");
                    down = false;
                }
                Ok(()) => {}
                Err(e) if !down => {
                    warn!(error = %e, "cannot sync networks with dockerd; retrying");
                    down = true;
                }
                Err(_) => {}
            }
            let pending = !self.driver.local.lock().expect("lock").pending.is_empty();
            let wait = if pending { PENDING_POLL } else { every };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = nudge.notified() => {}
            }
        }
    }

    /// One pass.
    pub async fn once(&mut self) -> Result<(), SyncError> {
        let docker = self.engine.networks(&self.plugin).await?;
        self.register_pending(&docker).await;
        let store = self.driver.registry.networks().await?;
        let in_store: BTreeSet<&str> = store.iter().map(|n| n.name.as_str()).collect();
        {
            let mut local = self.driver.local.lock().expect("lock");
            for d in docker.iter().filter(|d| in_store.contains(d.name.as_str())) {
                local.names.insert(d.id.clone(), d.name.clone());
            }
        }
        let here: BTreeSet<&str> = docker.iter().map(|d| d.name.as_str()).collect();
        for net in store.iter().filter(|n| !here.contains(n.name.as_str())) {
            match self.engine.create_network(net, &self.plugin).await {
                Ok(()) => {
                    self.refused.remove(&net.name);
                    info!(network = %net.name, "network created in the local Docker")
                }
                Err(EngineError::Refused { status: 409, .. }) => {}
                // Tried again every pass; said once until it works.
                Err(e) if self.refused.insert(net.name.clone()) => {
                    warn!(network = %net.name, error = %e, "cannot create the network in the local Docker; retrying quietly")
                }
                Err(_) => {}
            }
        }
        let pending: BTreeSet<String> = self
            .driver
            .local
            .lock()
            .expect("lock")
            .pending
            .keys()
            .cloned()
            .collect();
        for d in docker
            .iter()
            .filter(|d| !in_store.contains(d.name.as_str()) && !pending.contains(&d.id))
        {
            if d.endpoint_ids().is_empty() {
                match self.engine.remove_network(&d.id).await {
                    Ok(()) => {
                        info!(network = %d.name, "network removed from the store elsewhere; removed from the local Docker")
                    }
                    Err(e) => {
                        warn!(network = %d.name, error = %e, "cannot remove a network the store no longer has")
                    }
                }
            } else {
                warn!(network = %d.name, "network removed from the store but containers here still use it");
            }
        }
        self.collect(&docker).await;
        self.identify(&docker).await;
        Ok(())
    }

    /// Names each endpoint of this node not named yet (in a task: reading a starting
    /// container's aliases waits for its start), and records the identity of each that
    /// has none, or is held.
    async fn identify(&mut self, docker: &[DockerNetwork]) {
        let policy = self.driver.enforced.is_some();
        let live: BTreeSet<String> = docker.iter().flat_map(|d| d.endpoint_ids()).collect();
        self.identified.retain(|e| live.contains(e));
        let me = self.driver.host.public_ip;
        for d in docker {
            let todo: Vec<String> = d
                .endpoint_ids()
                .into_iter()
                .filter(|e| !self.identified.contains(e))
                .collect();
            if todo.is_empty() {
                continue;
            }
            let Ok(Some(net)) = self.driver.registry.network(&d.name).await else {
                continue;
            };
            let Ok(eps) = self.driver.registry.endpoints(&net.name).await else {
                continue;
            };
            for (ip, e) in eps.iter().filter(|(_, e)| e.node == me) {
                if !todo.contains(&e.endpoint_id) {
                    continue;
                }
                if e.container.is_empty() {
                    // Not marked done: a task that gives up is started again at a
                    // later pass (one at a time: see `DriverState::identifying`).
                    self.driver.identify_soon(
                        d.id.clone(),
                        e.endpoint_id.clone(),
                        net.clone(),
                        *ip,
                        e.host_iface.clone(),
                    );
                    continue;
                }
                if !policy {
                    self.identified.insert(e.endpoint_id.clone());
                    continue;
                }
                let recorded = match self.driver.registry.identity(*ip).await {
                    Ok(id) => id.is_some_and(|i| i.node == me && !i.pending),
                    Err(_) => continue,
                };
                let Some((cid, name)) = d.container_of(&e.endpoint_id) else {
                    continue;
                };
                if recorded
                    || self
                        .driver
                        .record_labels(&net, *ip, &e.host_iface, &cid, &name)
                        .await
                        .is_ok()
                {
                    self.identified.insert(e.endpoint_id.clone());
                }
            }
        }
    }

    async fn register_pending(&mut self, docker: &[DockerNetwork]) {
        let mut pending: Vec<_> = self
            .driver
            .local
            .lock()
            .expect("lock")
            .pending
            .clone()
            .into_iter()
            .collect();
        // In the order Docker created them: the first gets the lowest free VNI.
        pending.sort_by_key(|(_, p)| p.seq);
        for (id, p) in pending {
            let since = *self
                .pending_since
                .entry(id.clone())
                .or_insert_with(Instant::now);
            let Some(d) = docker.iter().find(|d| d.id == id) else {
                if since.elapsed() > PENDING_TIMEOUT {
                    warn!(
                        docker_id = weft_alloc::named::short(&id),
                        "Docker never finished creating a network; forgetting it"
                    );
                    self.forget(&id);
                }
                continue;
            };
            self.pending_since.remove(&id);
            match self.driver.register(&id, &d.name).await {
                Ok(Registered::Created(net)) => {
                    info!(network = %net.name, subnet = %net.subnet, mode = %net.mode, vni = net.vni, "network registered")
                }
                Ok(Registered::Bound(name)) => {
                    info!(network = %name, "network known to the store already")
                }
                Err(e) => {
                    error!(network = %d.name, subnet = %p.subnet, error = %e, "cannot register the network")
                }
            }
        }
    }

    fn forget(&mut self, id: &str) {
        self.driver.local.lock().expect("lock").pending.remove(id);
        self.pending_since.remove(id);
    }

    /// Releases what this node holds for endpoints the daemon no longer has.
    async fn collect(&mut self, docker: &[DockerNetwork]) {
        let me = self.driver.host.public_ip;
        let live: BTreeSet<String> = docker.iter().flat_map(|d| d.endpoint_ids()).collect();
        let Ok(nets) = self.driver.registry.networks().await else {
            return;
        };
        let mut seen = BTreeSet::new();
        let mut veths = BTreeSet::new();
        for net in &nets {
            let Ok(eps) = self.driver.registry.endpoints(&net.name).await else {
                return;
            };
            for (ip, e) in eps.into_iter().filter(|(_, e)| e.node == me) {
                if !e.host_iface.is_empty() {
                    veths.insert(e.host_iface.clone());
                }
                if !e.endpoint_id.is_empty() && live.contains(&e.endpoint_id) {
                    continue;
                }
                let key = (net.name.clone(), ip);
                seen.insert(key.clone());
                let since = *self.orphans.entry(key).or_insert_with(Instant::now);
                if since.elapsed() < GRACE {
                    continue;
                }
                self.driver.forget_identity(ip).await;
                match self.driver.registry.release_docker_address(net, ip).await {
                    Ok(_) => {
                        info!(network = %net.name, %ip, "released an address no container uses (collected)")
                    }
                    Err(e) => {
                        warn!(network = %net.name, %ip, error = %e, "cannot release an orphaned address")
                    }
                }
            }
        }
        self.orphans.retain(|k, _| seen.contains(k));
        // Host veths of endpoints that are gone (after the grace period: a Join in
        // progress has made its veth but not yet recorded it).
        let Ok(links) = self.driver.dp.links().await else {
            return;
        };
        let strays: BTreeSet<String> = links
            .iter()
            .filter(|l| l.name.starts_with(HOST_PREFIX) && !veths.contains(&l.name))
            .map(|l| l.name.clone())
            .collect();
        self.stray_veths.retain(|k, _| strays.contains(k));
        for l in links.iter().filter(|l| strays.contains(&l.name)) {
            let since = *self
                .stray_veths
                .entry(l.name.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() >= GRACE && self.driver.dp.del_link(l.index).await.is_ok() {
                info!(dev = %l.name, "deleted the veth of an endpoint that is gone");
            }
        }
    }
}
