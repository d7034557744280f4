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
//!
//! This file holds start-up and the main loop; the agent's work on each wake-up lives in
//! `events` (store changes), `reconcile` (plan against kernel) and `upkeep` (the lease
//! and the external interface).

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
}

mod events;
mod reconcile;
mod upkeep;
