//! `weftd`'s life: start up, then keep the host in step with the store until told to stop.
//!
//! Start-up: connect to the store (retrying with backoff), read the network config
//! (waiting until there is a valid one), choose the external interface, claim the
//! subnet, write the host files, set up forwarding and masquerade, then plan and apply.
//!
//! Running, three things wake the agent, and each leads to the same [`Agent::reconcile`]:
//! a store change (the in-memory picture of the leases is updated first), a kernel change
//! to something Weft owns (a route, its VXLAN device, a neighbour or FDB entry, an
//! address), and the periodic resync. Reconcile re-reads everything Weft owns from the
//! kernel, compares it with the backend's plan and changes only the difference, so a
//! route deleted by hand or a VXLAN device removed by an operator is back within a
//! fraction of a second, and a missed event cannot leave a wrong view behind.
//!
//! What never happens: a bad config value, an unreadable lease or a lost store removes a
//! working route. Bad values are logged by key and the last good value is kept; while the
//! store is away the kernel is left as it is. On exit the routes and the lease stay, so
//! a restart finds everything in place and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use weft_alloc::address::AddressClaim;
use weft_alloc::registry::{AcquireError, NodeStatus, RegistryError, Unreachable};
use weft_alloc::{pool, Lease, LeaseAttrs, NetworkConfig, Registry};
use weft_backends::{Backend, BackendSettings, NodeContext};
use weft_kernel::diff::Applied;
use weft_kernel::link::{LinkOutcome, OverlaySpec};
use weft_kernel::monitor::{self, KernelEvent};
use weft_kernel::nft::{self, EncapFilter, FirewallPlan};
use weft_kernel::{sysctl, Kernel, KernelError};
use weft_store::{KeyValue, WatchEvent};

use crate::bgp::BgpRuntime;
use crate::bigtcp;
use crate::health::Metrics;
use crate::hostfiles::{self, NodeNetwork};
use crate::options::IpipMode;
use crate::AgentOptions;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weft_tunnel::{Table, Tunnel, DEVICE};

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("cannot claim a subnet: {0}")]
    Acquire(AcquireError),
    #[error("{0}")]
    Backend(String),
    #[error("cannot write {path}: {source}")]
    HostFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("host setup failed: {0}")]
    HostSetup(String),
}

/// What woke a reconcile; decides how changes are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Start,
    Store,
    /// The BGP speaker's learned routes changed.
    Learned,
    Kernel,
    Resync,
}

impl Why {
    /// Changes made for these reasons repair drift someone else caused.
    fn is_repair(self) -> bool {
        matches!(self, Why::Kernel | Why::Resync)
    }
}

/// Retries `f` with exponential backoff (0.5 s up to 10 s) while it fails transiently,
/// logging each failure with what is being waited for.
async fn with_backoff<T, E: std::fmt::Display>(
    what: &str,
    mut f: impl AsyncFnMut() -> Result<T, E>,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut delay = Duration::from_millis(500);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) => {
                warn!("{what}: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

fn settings(
    opts: &AgentOptions,
    public_ip: std::net::Ipv4Addr,
    ipip_user_space: bool,
) -> BackendSettings {
    BackendSettings {
        public_ip,
        tx_checksum_off: !opts.vxlan_tx_checksum_offload,
        ipip_user_space,
    }
}

/// Runs the agent until `shutdown` completes.
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let store = with_backoff(
        &format!("{} unreachable", opts.store.describe()),
        async || opts.store.connect().await,
        |e| e.is_transient(),
    )
    .await
    .map_err(|e| AgentError::HostSetup(format!("cannot open {}: {e}", opts.store.describe())))?;
    info!(store = %opts.store.describe(), prefix = %opts.store.etcd_prefix, "connected to the store");
    let registry = Registry::new(store, &opts.store.etcd_prefix);

    let config = with_backoff(
        "waiting for a valid network config",
        async || registry.config().await,
        |_: &RegistryError| true,
    )
    .await
    .expect("retried until valid");
    info!(network = %config.network, subnet_len = config.subnet_len, backend = %config.backend, "network config");

    let metrics = Arc::new(Metrics::default());
    if opts.healthz_port != 0 {
        let addr = std::net::SocketAddr::new(opts.healthz_ip, opts.healthz_port);
        let (m, resync) = (metrics.clone(), opts.resync_interval);
        tokio::spawn(async move {
            if let Err(e) = crate::health::serve(addr, m, resync).await {
                error!(%addr, error = %e, "cannot serve /healthz and /metrics");
            }
        });
    }
    let kernel = Kernel::connect()?;
    // Subscribe before reading anything, so no change between the read and the watch is lost.
    let mut kernel_events = monitor::watch()?;
    let external = kernel.external_interface(&opts.iface).await?;
    let public_ip = opts.public_ip.unwrap_or(external.addr);
    info!(iface = %external.name, addr = %external.addr, public_ip = %public_ip, mtu = external.mtu, "external interface");
    let ipip_user_space = opts.ipip_mode == IpipMode::UserSpace;
    let backend = weft_backends::build(&config, &settings(&opts, public_ip, ipip_user_space))
        .map_err(AgentError::Backend)?;
    let big_tcp = if opts.big_tcp {
        bigtcp::check(backend.as_ref())?;
        bigtcp::enable(&kernel, &external).await?
    } else {
        None
    };

    let attrs = LeaseAttrs {
        public_ip,
        public_ipv6: None,
        backend_type: backend.kind().name().to_owned(),
        backend_data: backend.backend_data(),
    };
    let previous = std::fs::read_to_string(&opts.subnet_file)
        .ok()
        .and_then(|t| hostfiles::subnet_from_env(&t));
    let lease = with_backoff(
        "claiming a subnet",
        async || {
            registry
                .acquire(&config, &attrs, previous, opts.subnet_lease_ttl)
                .await
        },
        |e| e.is_transient(),
    )
    .await
    .map_err(AgentError::Acquire)?;
    info!(subnet = %lease.subnet, reused = previous == Some(lease.subnet), reservation = lease.is_reservation(), "subnet lease held");

    let mut agent = Agent {
        node: NodeContext {
            external,
            lease,
            overlay: None,
            learned: Vec::new(),
        },
        registry,
        kernel,
        backend,
        config,
        attrs,
        peers: BTreeMap::new(),
        last_unreachable: Vec::new(),
        held: BTreeSet::new(),
        routes_in_kernel: None,
        last_firewall: None,
        last_status: None,
        tunnel: None,
        ipip_user_space,
        big_tcp,
        bgp: None,
        metrics,
        opts,
    };
    agent.write_host_files()?;

    let snapshot = with_backoff(
        "listing leases",
        async || agent.registry.leases().await,
        |e| e.is_transient(),
    )
    .await
    .map_err(|e| AgentError::HostSetup(e.to_string()))?;
    for s in &snapshot.skipped {
        warn!(key = %s.key, reason = %s.reason, "skipping unreadable lease");
    }
    agent.peers = snapshot.leases.into_iter().map(|l| (l.subnet, l)).collect();
    match agent.registry.addresses().await {
        Ok(claims) => {
            for (ip, c) in claims {
                agent.on_address(ip, Some(c));
            }
        }
        Err(e) => warn!(error = %e, "cannot list held addresses; will follow the store watch"),
    }
    if !agent.opts.api_socket.as_os_str().is_empty() {
        let (path, registry) = (agent.opts.api_socket.clone(), agent.registry.clone());
        let node = agent.attrs.public_ip;
        tokio::spawn(async move {
            if let Err(e) = crate::api::serve(&path, registry, node).await {
                error!(socket = %path.display(), error = %e, "cannot serve address claims");
            }
        });
    }
    if let Some(bgp) = agent.backend.bgp() {
        let mut rt = BgpRuntime::start(
            bgp,
            agent.attrs.public_ip,
            agent.opts.bgp_status_file.clone(),
        )
        .await
        .map_err(|e| AgentError::HostSetup(format!("cannot start the BGP speaker: {e}")))?;
        let prefix = agent.registry.bgp_peers_prefix();
        match agent.registry.store().list(&prefix).await {
            Ok(listing) => {
                for kv in listing.kvs {
                    rt.on_put(&kv.key, &kv.value);
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot list external BGP peers; will follow the store watch")
            }
        }
        agent.bgp = Some(rt);
    }
    // After the leases: the firewall's member list must be whole from its first load.
    agent.setup_host()?;
    agent.reconcile(Why::Start).await;
    info!(peers = agent.peers.len().saturating_sub(1), "ready");

    let watch_prefix = format!("{}/", agent.opts.store.etcd_prefix.trim_end_matches('/'));
    let mut watch = agent
        .registry
        .store()
        .watch(&watch_prefix, snapshot.revision + 1)
        .await
        .map_err(|e| AgentError::HostSetup(format!("cannot watch the store: {e}")))?;
    let mut bgp_routes = agent.bgp.as_ref().map(|b| b.subscribe());
    // Session states change without a reconcile; the status file follows every 2 s.
    let mut bgp_status = tokio::time::interval(Duration::from_secs(2));
    let mut resync = tokio::time::interval(agent.opts.resync_interval);
    resync.tick().await;
    let renew_every =
        (agent.opts.subnet_lease_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut renew = tokio::time::interval(renew_every);
    renew.tick().await;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("stopping; routes and lease stay in place for the next start");
                return Ok(());
            }
            event = watch.next() => {
                let Some(event) = event else {
                    error!("store watch ended; the kernel is left as it is");
                    return Err(AgentError::HostSetup("store watch ended".into()));
                };
                let mut dirty = agent.on_event(event).await;
                // Coalesce a burst of events into one plan.
                while let Ok(Some(more)) = tokio::time::timeout(Duration::from_millis(20), watch.next()).await {
                    dirty |= agent.on_event(more).await;
                }
                if dirty {
                    agent.reconcile(Why::Store).await;
                }
            }
            event = kernel_events.recv() => {
                match event {
                    Some(KernelEvent::Lost) | None => {
                        warn!("lost the kernel event monitor; re-reading everything and resubscribing");
                        kernel_events = monitor::watch().unwrap_or_else(|e| {
                            error!(error = %e, "cannot resubscribe to kernel events; relying on the periodic resync");
                            mpsc::channel(1).1
                        });
                    }
                    Some(ev) => debug!(?ev, "kernel change"),
                }
                // Let a burst (an interface flap, our own changes) settle, then re-read all.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while kernel_events.try_recv().is_ok() {}
                agent.reconcile(Why::Kernel).await;
            }
            _ = resync.tick() => {
                if let Err(e) = agent.setup_host() {
                    warn!(error = %e, "host setup check failed; will retry");
                }
                agent.reconcile(Why::Resync).await;
            }
            _ = renew.tick() => agent.renew_if_due().await,
            _ = bgp_status.tick(), if agent.bgp.is_some() => {
                if let Some(rt) = agent.bgp.as_mut() {
                    rt.write_status();
                }
            }
            changed = bgp_change(&mut bgp_routes) => {
                if !changed {
                    bgp_routes = None;
                }
                // No waiting for a burst to end: the speaker publishes once per burst it
                // has taken in, and whatever changes while this plan is applied is
                // coalesced by the watch into the next one.
                agent.reconcile(Why::Learned).await;
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

/// How [`Agent::ensure_tunnel`] started the user-space tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Started {
    Fresh,
    /// A running (dead or outdated) tunnel was replaced: a repair.
    Replaced,
}

struct Agent {
    opts: AgentOptions,
    registry: Registry,
    kernel: Kernel,
    backend: Box<dyn Backend>,
    /// The last valid config; an invalid update never replaces it.
    config: NetworkConfig,
    attrs: LeaseAttrs,
    node: NodeContext,
    /// Every readable lease by subnet, our own included.
    peers: BTreeMap<Ipv4Net, Lease>,
    last_unreachable: Vec<Unreachable>,
    /// Single addresses this node holds outside its subnet (announced as /32s).
    held: BTreeSet<Ipv4Addr>,
    /// The last route plan, if the kernel took all of it: the base for applying
    /// learned routes as a difference.
    routes_in_kernel: Option<Vec<weft_kernel::Route>>,
    last_firewall: Option<FirewallPlan>,
    last_status: Option<NodeStatus>,
    /// The user-space tunnel, for the backends that run one.
    tunnel: Option<Tunnel>,
    /// IP-in-IP runs in user space (asked for, or the kernel has no `ipip`).
    ipip_user_space: bool,
    /// The IPv4 GSO/GRO limit in force with `--big-tcp` (published in the subnet file).
    big_tcp: Option<u32>,
    /// The BGP speaker, for the bgp backend.
    bgp: Option<BgpRuntime>,
    metrics: Arc<Metrics>,
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

impl Agent {
    fn node_network(&self) -> NodeNetwork {
        NodeNetwork {
            network: self.config.network,
            subnet: self.node.lease.subnet,
            mtu: self.backend.mtu(self.node.external.mtu),
            ip_masq: self.opts.ip_masq,
            gso_max_size: self.big_tcp,
        }
    }

    fn write_host_files(&self) -> Result<(), AgentError> {
        let n = self.node_network();
        for (path, content) in [
            (&self.opts.subnet_file, hostfiles::render_subnet_env(&n)),
            (
                &self.opts.docker_opts_file,
                hostfiles::render_docker_opts(&n),
            ),
        ] {
            let wrote =
                hostfiles::write_atomic(path, &content).map_err(|source| AgentError::HostFile {
                    path: path.display().to_string(),
                    source,
                })?;
            if wrote {
                info!(path = %path.display(), mtu = n.mtu, "wrote host file");
            }
        }
        Ok(())
    }

    /// Forwarding and the iptables FORWARD-DROP workaround. Idempotent.
    fn setup_host(&mut self) -> Result<(), AgentError> {
        if sysctl::ensure_forwarding().map_err(|e| AgentError::HostSetup(e.to_string()))? {
            info!("enabled net.ipv4.ip_forward");
        }
        let inserted = nft::ensure_iptables_forward(&self.config.network)
            .map_err(|e| AgentError::HostSetup(e.to_string()))?;
        if inserted > 0 {
            info!(
                rules = inserted,
                "iptables FORWARD policy is DROP; inserted accept rules for the cluster network"
            );
        }
        self.apply_firewall(true);
        Ok(())
    }

    /// Loads the nftables table when its plan changed (or when `force`d, which still
    /// loads nothing if the kernel's table carries the same fingerprint).
    fn apply_firewall(&mut self, force: bool) {
        let encap = self
            .backend
            .encap_port()
            .filter(|_| self.opts.encap_source_filter)
            .map(|port| {
                let mut members: Vec<_> = self.peers.values().map(|l| l.attrs.public_ip).collect();
                members.push(self.attrs.public_ip);
                members.sort();
                members.dedup();
                EncapFilter { port, members }
            });
        let plan = FirewallPlan {
            network: self.config.network,
            local_subnet: self.node.lease.subnet,
            ip_masq: self.opts.ip_masq,
            encap,
        };
        if !force && self.last_firewall.as_ref() == Some(&plan) {
            return;
        }
        match nft::apply(&plan) {
            Ok(loaded) => {
                if loaded {
                    let members = plan.encap.as_ref().map(|e| e.members.len());
                    info!(table = nft::TABLE, ip_masq = plan.ip_masq, encap_members = ?members, "loaded nftables rules");
                }
                self.last_firewall = Some(plan);
            }
            Err(e) => error!(error = %e, "cannot load nftables rules; will retry"),
        }
    }

    fn is_lease_key(&self, key: &str) -> bool {
        key.starts_with(&self.registry.subnets_prefix())
    }

    /// Counts what an applied diff changed; returns whether it changed anything.
    fn count<T>(&self, applied: &Applied<T>) -> bool {
        let changes = (applied.added + applied.replaced + applied.removed) as u64;
        self.metrics
            .kernel_changes
            .fetch_add(changes, Ordering::Relaxed);
        self.metrics
            .kernel_failures
            .fetch_add(applied.failed.len() as u64, Ordering::Relaxed);
        applied.changed()
    }

    /// Updates the picture from one store change; returns whether the plan may change.
    async fn on_event(&mut self, event: WatchEvent) -> bool {
        self.metrics.store_events.fetch_add(1, Ordering::Relaxed);
        match event {
            WatchEvent::Put(kv) if kv.key == self.registry.config_key() => {
                self.on_config(&kv.value)
            }
            WatchEvent::Delete { key, .. } if key == self.registry.config_key() => {
                error!(key, "network config deleted; keeping the last good one");
                false
            }
            WatchEvent::Put(kv) if self.is_lease_key(&kv.key) => self.on_lease_put(&kv),
            WatchEvent::Delete { key, .. } if self.is_lease_key(&key) => {
                let name = key.trim_start_matches(&self.registry.subnets_prefix());
                let Some(subnet) = pool::parse_key_name(name) else {
                    return false;
                };
                if subnet == self.node.lease.subnet {
                    warn!(%subnet, "our own lease was deleted; claiming a subnet again");
                    self.reacquire().await;
                    return true;
                }
                let gone = self.peers.remove(&subnet);
                if let Some(l) = &gone {
                    info!(%subnet, public_ip = %l.attrs.public_ip, "peer left");
                }
                gone.is_some()
            }
            WatchEvent::Put(kv) if kv.key.starts_with(&self.registry.bgp_peers_prefix()) => {
                match self.bgp.as_mut() {
                    Some(b) => b.on_put(&kv.key, &kv.value),
                    None => false,
                }
            }
            WatchEvent::Delete { key, .. }
                if key.starts_with(&self.registry.bgp_peers_prefix()) =>
            {
                self.bgp.as_mut().is_some_and(|b| b.on_delete(&key))
            }
            WatchEvent::Put(kv) if kv.key.starts_with(&self.registry.addresses_prefix()) => {
                match self.registry.parse_address(&kv.key, &kv.value) {
                    Some((ip, c)) => self.on_address(ip, Some(c)),
                    None => {
                        warn!(key = %kv.key, "ignoring an unreadable address claim");
                        false
                    }
                }
            }
            WatchEvent::Delete { key, .. }
                if key.starts_with(&self.registry.addresses_prefix()) =>
            {
                match key
                    .trim_start_matches(&self.registry.addresses_prefix())
                    .parse()
                {
                    Ok(ip) => self.on_address(ip, None),
                    Err(_) => false,
                }
            }
            WatchEvent::Resync { kvs, revision } => {
                info!(
                    revision,
                    "store history was compacted; rebuilding from a full listing"
                );
                self.on_resync(kvs).await;
                true
            }
            _ => false, // status records and anything else under the prefix
        }
    }

    /// Follows one single-address claim (`None`: released); whether ours changed.
    fn on_address(&mut self, ip: Ipv4Addr, claim: Option<AddressClaim>) -> bool {
        let ours = claim.is_some_and(|c| c.node == self.attrs.public_ip);
        let changed = if ours {
            self.held.insert(ip)
        } else {
            self.held.remove(&ip)
        };
        if changed {
            info!(%ip, held = ours, "address outside the subnet");
        }
        changed
    }

    /// Takes a new config if it is valid and can apply without a restart.
    fn on_config(&mut self, value: &[u8]) -> bool {
        match NetworkConfig::parse(value) {
            Err(e) => {
                error!(error = %e, "new network config rejected; keeping the last good one");
                false
            }
            Ok(c) if c == self.config => false,
            Ok(c) => {
                if c.network != self.config.network
                    || c.subnet_len != self.config.subnet_len
                    || c.backend != self.config.backend
                {
                    warn!(network = %c.network, backend = %c.backend, "network config changed in a way that needs a restart of every agent; running on the previous one until then");
                    return false;
                }
                match weft_backends::build(
                    &c,
                    &settings(&self.opts, self.attrs.public_ip, self.ipip_user_space),
                ) {
                    Ok(backend) if self.opts.big_tcp && backend.encapsulates() => {
                        error!("new network config encapsulates, which --big-tcp cannot carry; keeping the last good one");
                        false
                    }
                    Ok(backend) => {
                        info!("network config updated");
                        self.backend = backend;
                        self.config = c;
                        true
                    }
                    Err(e) => {
                        error!(error = %e, "new network config rejected; keeping the last good one");
                        false
                    }
                }
            }
        }
    }

    fn on_lease_put(&mut self, kv: &KeyValue) -> bool {
        match self.registry.parse_lease(kv) {
            Err(s) => {
                // Keep whatever we knew of that subnet: a garbled write must not cut it off.
                warn!(key = %s.key, reason = %s.reason, "skipping unreadable lease; keeping the previous value");
                false
            }
            Ok(lease) => {
                if lease.subnet == self.node.lease.subnet {
                    if lease.attrs != self.attrs {
                        warn!(subnet = %lease.subnet, public_ip = %lease.attrs.public_ip, "our subnet's lease was overwritten by another writer");
                    }
                    self.node.lease.mod_revision = lease.mod_revision;
                    self.node.lease.store_lease = lease.store_lease;
                }
                let changed = self.peers.get(&lease.subnet).map(|l| &l.attrs) != Some(&lease.attrs);
                if changed {
                    info!(subnet = %lease.subnet, public_ip = %lease.attrs.public_ip, backend = %lease.attrs.backend_type, "peer lease");
                }
                self.peers.insert(lease.subnet, lease);
                changed
            }
        }
    }

    async fn on_resync(&mut self, kvs: Vec<KeyValue>) {
        let mut fresh = BTreeMap::new();
        self.held.clear();
        for kv in &kvs {
            if let Some((ip, c)) = self.registry.parse_address(&kv.key, &kv.value) {
                self.on_address(ip, Some(c));
                continue;
            }
            if kv.key == self.registry.config_key() {
                self.on_config(&kv.value);
            } else if self.is_lease_key(&kv.key) {
                match self.registry.parse_lease(kv) {
                    Ok(l) => {
                        fresh.insert(l.subnet, l);
                    }
                    Err(s) => {
                        warn!(key = %s.key, reason = %s.reason, "skipping unreadable lease; keeping the previous value");
                        let name = kv.key.trim_start_matches(&self.registry.subnets_prefix());
                        if let Some(old) =
                            pool::parse_key_name(name).and_then(|n| self.peers.get(&n))
                        {
                            fresh.insert(old.subnet, old.clone());
                        }
                    }
                }
            }
        }
        let own_gone = !fresh.contains_key(&self.node.lease.subnet);
        self.peers = fresh;
        if own_gone {
            warn!(subnet = %self.node.lease.subnet, "our lease is gone; claiming a subnet again");
            self.reacquire().await;
        }
    }

    /// Claims a subnet again (ours, if still free) after losing the lease.
    async fn reacquire(&mut self) {
        let ttl = self.opts.subnet_lease_ttl;
        let previous = Some(self.node.lease.subnet);
        match self
            .registry
            .acquire(&self.config, &self.attrs, previous, ttl)
            .await
        {
            Ok(lease) => {
                if lease.subnet != self.node.lease.subnet {
                    warn!(old = %self.node.lease.subnet, new = %lease.subnet, "subnet changed; containers on the old subnet must be restarted");
                } else {
                    info!(subnet = %lease.subnet, "subnet lease held again");
                }
                self.peers.insert(lease.subnet, lease.clone());
                self.node.lease = lease;
                if let Err(e) = self.write_host_files() {
                    error!(error = %e, "cannot update host files");
                }
            }
            Err(e) => {
                error!(error = %e, "cannot claim a subnet now; will retry at the next renewal check")
            }
        }
    }

    async fn renew_if_due(&mut self) {
        let lease = self.node.lease.clone();
        if lease.is_reservation() {
            return;
        }
        let left = match self.registry.expires_in(&lease).await {
            Ok(left) => left,
            Err(e) => {
                warn!(error = %e, "cannot read the lease's TTL; will retry");
                return;
            }
        };
        match left {
            Some(left) if left > self.opts.subnet_lease_renew_margin => {}
            Some(_) => match self.registry.renew(&lease).await {
                Ok(true) => {
                    info!(subnet = %lease.subnet, ttl = ?self.opts.subnet_lease_ttl, "renewed subnet lease")
                }
                Ok(false) => self.reacquire().await,
                Err(e) => warn!(error = %e, "lease renewal failed; retrying"),
            },
            None => self.reacquire().await,
        }
    }

    /// Follows a change of the external interface. When its address moved (and no
    /// `--public-ip` pins it), this node's lease is rewritten in place: same subnet, new
    /// public IP and VTEP, and every peer updates its entries for this node.
    async fn check_external(&mut self) {
        let ext = match self.kernel.external_interface(&self.opts.iface).await {
            Ok(ext) => ext,
            Err(e) => {
                warn!(error = %e, "cannot read the external interface; keeping the current one");
                return;
            }
        };
        if ext == self.node.external {
            return;
        }
        if self.opts.big_tcp && ext.index != self.node.external.index {
            match bigtcp::enable(&self.kernel, &ext).await {
                Ok(size) => self.big_tcp = size,
                Err(e) => warn!(error = %e, "cannot raise the new external interface's GSO limit"),
            }
            if let Err(e) = self.write_host_files() {
                warn!(error = %e, "cannot rewrite the host files");
            }
        }
        if ext.addr == self.node.external.addr || self.opts.public_ip.is_some() {
            info!(iface = %ext.name, mtu = ext.mtu, "external interface changed");
            self.node.external = ext;
            return;
        }
        let backend = match weft_backends::build(
            &self.config,
            &settings(&self.opts, ext.addr, self.ipip_user_space),
        ) {
            Ok(b) => b,
            Err(e) => return error!(error = %e, "cannot follow the new public IP"),
        };
        let attrs = LeaseAttrs {
            public_ip: ext.addr,
            backend_data: backend.backend_data(),
            ..self.attrs.clone()
        };
        match self.registry.update_lease(&self.node.lease, &attrs).await {
            Ok(Some(lease)) => {
                warn!(old = %self.attrs.public_ip, new = %ext.addr, subnet = %lease.subnet, "public IP changed; lease updated, subnet kept");
                self.peers.insert(lease.subnet, lease.clone());
                self.node = NodeContext {
                    external: ext,
                    lease,
                    overlay: self.node.overlay,
                    learned: std::mem::take(&mut self.node.learned),
                };
                self.backend = backend;
                self.attrs = attrs;
            }
            Ok(None) => {
                warn!("our lease changed while updating the public IP; claiming again");
                self.reacquire().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot update the lease with the new public IP; will retry")
            }
        }
    }

    /// Makes the backend's overlay device (and, for a TUN, the tunnel behind it) exist
    /// as specified; returns its index.
    async fn ensure_overlay(
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
    fn ensure_tunnel(&mut self, force: bool) -> Option<Started> {
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
    async fn reconcile(&mut self, why: Why) {
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
    async fn apply_route_plan(
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

    async fn publish_status(&mut self) {
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
