//! `weftd`'s life: start up, then keep the host in step with the store until told to stop.
//!
//! Start-up (`start`): connect to the store (retrying with backoff), read the network
//! config (waiting until there is a valid one), choose the external interface, claim the
//! subnet, write the host files, set up forwarding and masquerade, then plan and apply.
//!
//! Running (`serve`), three things wake the agent, and each leads to the same
//! `Agent::reconcile`: a store change (the in-memory picture is updated first, each
//! entry decoded once by `weft_model::keys`, `events`), a kernel change to something
//! Weft owns (a route, its VXLAN device, a neighbour or FDB entry, an address), and the
//! periodic resync. Reconcile asks the host planner (`weft_backends::host::plan`, via
//! `plan`) for one plan and hands each part to its manager, one per kind of kernel
//! state: `routes`, `overlay` (neighbour and FDB entries, segments), `firewall`,
//! `policy`, and the BGP speaker (`crate::bgp`). Each re-reads what Weft owns through
//! the [`Dataplane`] and changes only the difference, so a route deleted by hand or a
//! VXLAN device removed by an operator is back within a fraction of a second, and a
//! missed event cannot leave a wrong view behind. A reconcile makes no store request:
//! the node status (`publish`), the lease's renewal (`upkeep`), policy re-reads and
//! block releases run beside the loop (`serve`).
//!
//! What never happens: a bad config value, an unreadable lease or a lost store removes a
//! working route. Bad values are logged by key and the last good value is kept; while the
//! store is away the kernel is left as it is. On exit the routes and the lease stay, so
//! a restart finds everything in place and changes nothing.
//!
//! The agent's state is grouped by job: `View` (what the store says), `Runtime` (the
//! backend and the runtimes it needs), the managers (what each kind of kernel state was
//! last brought to) and `Last` (what was last logged or published).

mod blocks;
mod events;
mod firewall;
mod host;
mod named;
mod overlay;
mod plan;
mod policy;
mod publish;

pub use policy::PolicyEnforced;
mod reconcile;
mod routes;
mod serve;
mod start;
mod tunnel;
mod upkeep;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tracing::warn;
use weft_alloc::registry::Unreachable;
use weft_alloc::screen::Rejected;
use weft_alloc::{Lease, LeaseAttrs, NetworkConfig, Registry};
use weft_backends::{Backend, BackendSettings, NodeContext};
use weft_kernel::nft_sets::Family;
use weft_kernel::{Dataplane, Linux};
use weft_store::backoff::Backoff;
use weft_tunnel::Tunnel;

use crate::bgp::BgpRuntime;
use crate::error::AgentError;
use crate::health::Metrics;
use crate::AgentOptions;

/// Runs the agent on this host's kernel until `shutdown` completes.
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let metrics = Arc::new(Metrics::default());
    if opts.healthz_port != 0 {
        let addr = std::net::SocketAddr::new(opts.healthz_ip, opts.healthz_port);
        crate::health::spawn(addr, metrics.clone(), opts.resync_interval);
    }
    let dp: Arc<dyn Dataplane> = Arc::new(Linux::connect()?);
    let reader = dp.clone();
    metrics.policy_counters.set(Box::new(move || {
        // Both families' tables: a rule's drops are summed over them.
        [Family::Ip, Family::Ip6]
            .into_iter()
            .flat_map(|f| {
                reader
                    .set_table_counters(&weft_policy::render::table_id(f))
                    .unwrap_or_default()
            })
            .collect()
    }));
    // Subscribe before reading anything, so no change between the read and the watch is lost.
    let kernel_events = dp.watch()?;
    let (mut agent, revision) = Agent::start(opts, dp, metrics).await?;
    if let Some(listener) = agent.api_listener.take() {
        let node = agent.view.attrs.public_ip;
        let (feed, blocks) = crate::blocks_api::BlockService::new(
            agent.registry.clone(),
            node,
            agent.view.config.ipam,
        );
        agent.block_feed = Some(feed);
        let enforced = agent.policy.subscribe();
        crate::api::spawn(listener, agent.registry.clone(), node, blocks, enforced);
    }
    if agent.opts.docker {
        agent.spawn_docker();
    }
    if let Some(addr) = agent.opts.dns_listen {
        agent.spawn_dns(addr).await?;
    }
    agent.reconcile(Why::Start).await;
    agent.serve(revision, kernel_events, shutdown).await
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

/// Retries `f` with exponential backoff (0.5 s up to 2 s) while it fails transiently,
/// logging each failure with what is being waited for. The cap is short on purpose: an
/// agent started while the store is away must be ready within seconds of its return,
/// not up to a whole long backoff later.
async fn with_backoff<T, E: std::fmt::Display>(
    what: &str,
    mut f: impl AsyncFnMut() -> Result<T, E>,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) => {
                let delay = backoff.next_delay();
                warn!("{what}: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What the store says: the config in force, this node, every lease.
struct View {
    /// The last valid config; an invalid update never replaces it.
    config: NetworkConfig,
    /// This node's lease attributes as it publishes them.
    attrs: LeaseAttrs,
    node: NodeContext,
    /// Every readable lease by subnet, our own included.
    peers: BTreeMap<Ipv4Net, Lease>,
    /// Single addresses this node holds outside its subnet (announced as /32s).
    held: BTreeSet<Ipv4Addr>,
    /// Named networks and their endpoints.
    named: named::Named,
    /// Block IPAM's blocks, by CIDR.
    blocks: BTreeMap<Ipv4Net, weft_alloc::blocks::Block>,
    /// Block IPAM's pools, by name.
    pools: BTreeMap<String, weft_alloc::blocks::Pool>,
}

/// The data plane this node runs: the backend, and the runtimes some backends need.
struct Runtime {
    backend: Box<dyn Backend>,
    /// IP-in-IP runs in user space (asked for, or the kernel has no `ipip`).
    ipip_user_space: bool,
    /// The IPv4 GSO/GRO limit in force with `--big-tcp` (published in the subnet file).
    big_tcp: Option<u32>,
    /// The user-space tunnel, for the backends that run one.
    tunnel: Option<Tunnel>,
    /// The BGP speaker, for the bgp backend.
    bgp: Option<BgpRuntime>,
}

/// What was last applied or published, so that unchanged things are not redone.
#[derive(Default)]
struct Last {
    unreachable: Vec<Unreachable>,
    /// The leases last found not to stand, so each is logged once.
    rejected: Vec<Rejected>,
    /// This node's empty blocks, since when (released after the grace period).
    blocks_empty_since: BTreeMap<Ipv4Net, std::time::Instant>,
    /// Block addresses used here whose container interface is missing, since when.
    orphans_since: BTreeMap<(Ipv4Addr, String), std::time::Instant>,
    /// Those missing for longer than the grace period (published in the node status).
    orphans: Vec<weft_alloc::registry::Orphan>,
    /// Blocks and borrowed addresses last found without a route, logged once each.
    blocks_unreachable: Vec<(Ipv4Net, String)>,
    /// Routed containers last found without a route, so each is logged once.
    named_unreachable: Vec<(Ipv4Addr, String)>,
}

pub(crate) struct Agent {
    opts: AgentOptions,
    registry: Registry,
    dp: Arc<dyn Dataplane>,
    view: View,
    runtime: Runtime,
    last: Last,
    metrics: Arc<Metrics>,
    /// The release of empty blocks under way, off the agent's loop.
    releasing: Option<tokio::task::AbortHandle>,
    /// The routes' manager.
    routes: routes::RouteManager,
    /// The overlay entries' manager (the cluster device's and the segments').
    overlay: overlay::OverlayManager,
    /// The firewall's manager.
    firewall: firewall::FirewallManager,
    /// The policy table's manager (its state, cache and table).
    policy: policy::PolicyManager,
    /// Writes this node's status to the store, off the agent's loop.
    status: publish::StatusPublisher,
    /// What the socket's block IPAM is told of store changes (when it serves).
    block_feed: Option<crate::blocks_api::BlockFeed>,
    /// The agent socket, bound by `start` just before the subnet file is written (so a
    /// CNI plugin that finds the file finds the socket), served by `run`.
    api_listener: Option<tokio::net::UnixListener>,
    /// Wakes the Docker sync when the store's named networks change (see
    /// `weft_docker::driver::DriverState::nudge`).
    docker_nudge: Arc<tokio::sync::Notify>,
    /// The names directory the resolver answers from (`--dns-listen`), and whether the
    /// endpoints changed since it was last published.
    names: tokio::sync::watch::Sender<Arc<weft_dns::Directory>>,
    names_dirty: bool,
}

impl Agent {
    /// The settings the backend is built with, for this node at `public_ip` (and
    /// `public_ipv6` in a dual-stack network).
    fn settings(&self, public_ip: Ipv4Addr, public_ipv6: Option<Ipv6Addr>) -> BackendSettings {
        settings(
            &self.opts,
            public_ip,
            public_ipv6,
            self.runtime.ipip_user_space,
        )
    }
}

/// The address peers reach this node at over IPv6 in a dual-stack network:
/// `--public-ipv6`, else the external interface's first global IPv6 address; none where
/// the network is IPv4 only.
fn public_ipv6(
    opts: &AgentOptions,
    config: &weft_alloc::NetworkConfig,
    external: &weft_plan::iface::ExternalInterface,
) -> Option<Ipv6Addr> {
    config.ipv6.as_ref()?;
    opts.public_ipv6.or(external.ipv6.map(|n| n.addr()))
}

fn settings(
    opts: &AgentOptions,
    public_ip: Ipv4Addr,
    public_ipv6: Option<Ipv6Addr>,
    ipip_user_space: bool,
) -> BackendSettings {
    BackendSettings {
        public_ip,
        public_ipv6,
        tx_checksum_off: !opts.vxlan_tx_checksum_offload,
        ipip_user_space,
    }
}
