//! The Linux [`Dataplane`]: rtnetlink for links, addresses, routes, neighbours and FDB
//! entries, one file per object; `/proc/sys` for sysctls; nftables (and iptables'
//! FORWARD policy) for the firewall; `ethtool` for the one offload netlink cannot set.
//!
//! A [`Linux`] is bound to the network namespace its netlink socket was opened in: the
//! caller's ([`Linux::connect`]) or another one ([`Dataplane::enter`]); the work that
//! needs a socket or file of its own (route batches, sysctls, the event monitor) runs
//! in that namespace too.

mod addresses;
mod links;
mod neigh;
mod offload;
mod routes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net};
use netlink_sys::protocols::NETLINK_ROUTE;
use rtnetlink::Handle;
use tokio::sync::mpsc;
use weft_plan::iface::{Addr6Info, AddrInfo, LinkInfo};
use weft_plan::route::RouteChange;
use weft_plan::{
    Applied, Change, FdbEntry, FirewallPlan, LinkOutcome, Neighbour, OverlaySpec, Refusal, Route,
};

use crate::dataplane::{Dataplane, LinkSetting, LinkUpdate, VethPair};
use crate::error::KernelError;
use crate::monitor::{self, KernelEvent};
use crate::nft_sets::{Elements, LoadedSets, SetTable, TableId};
use crate::own::Owned;
use crate::prelude::*;
use crate::{netns, nft, nft_netlink, nft_sets, sysctl};

pub use routes::BLACKHOLE_METRIC;

/// The kernel's answer as a [`Refusal`]: its errno when it gave one.
pub(crate) fn refusal(e: rtnetlink::Error) -> Refusal {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.code.is_some() => Refusal::Errno(-m.raw_code()),
        other => Refusal::Other(other.to_string()),
    }
}

/// Names the operation a netlink error came from.
pub(crate) fn nl(op: &'static str) -> impl Fn(rtnetlink::Error) -> KernelError {
    move |e| KernelError::Refused {
        op,
        refusal: refusal(e),
    }
}

pub(crate) fn errno_is(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// How many times a dump the kernel interrupted is started again.
const DUMP_TRIES: usize = 5;

/// Every message of the dump `request` starts, named `op` in an error. A dump that a
/// concurrent change interrupts (EBUSY: a table changed while it was read, as when a
/// container's veth comes or goes) is simply started again, for every kind of object.
pub(crate) async fn dump<M, S>(
    op: &'static str,
    request: impl Fn() -> S,
) -> Result<Vec<M>, KernelError>
where
    S: futures::Stream<Item = Result<M, rtnetlink::Error>>,
{
    use futures::TryStreamExt;
    let mut tries = 0;
    loop {
        tries += 1;
        match request().try_collect::<Vec<M>>().await {
            Err(e) if tries < DUMP_TRIES && errno_is(&e, libc::EBUSY) => continue,
            other => return other.map_err(nl(op)),
        }
    }
}

/// A netlink connection in one network namespace, and what goes with it.
#[derive(Clone)]
pub struct Linux {
    handle: Handle,
    /// The namespace this dataplane works in; `None`: the caller's.
    netns: Option<PathBuf>,
    own: Arc<Owned>,
}

impl Linux {
    /// Opens a netlink connection in the caller's namespace; must be called inside a
    /// tokio runtime.
    pub fn connect() -> Result<Self, KernelError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(KernelError::Socket)?;
        tokio::spawn(conn);
        Ok(Linux {
            handle,
            netns: None,
            own: Arc::default(),
        })
    }

    /// Opens a netlink connection inside the namespace at `netns` (the socket is made on
    /// a thread that joined it; the caller stays where it is). Inside a tokio runtime.
    pub fn connect_in(netns: &Path) -> Result<Self, KernelError> {
        let socket = netns::run_in(netns, || netlink_sys::Socket::new(NETLINK_ROUTE))?
            .map_err(KernelError::Socket)?;
        let socket = crate::sys::tokio_socket(socket).map_err(KernelError::Socket)?;
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(Linux {
            handle,
            netns: Some(netns.to_owned()),
            own: Arc::default(),
        })
    }

    /// Runs `f` in its namespace's context (on a thread that joined it, or right
    /// here), off the runtime's workers: `f` is blocking work (an `nft` process, a
    /// netfilter socket, a `/proc/sys` write).
    fn in_own_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, KernelError> {
        off_the_workers(|| match &self.netns {
            Some(ns) => Ok(netns::run_in(ns, f)?),
            None => Ok(f()),
        })
    }
}

/// Runs blocking work so that it holds up no other task: on a worker of a
/// multi-threaded runtime (the agent's two), `block_in_place` first hands the worker's
/// other tasks to another worker; on a current-thread runtime (the CNI plugin, `weftctl`)
/// or outside any runtime there are no other workers, and it just runs.
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs `f` to completion on a current-thread runtime of its own, with a [`Linux`]
/// dataplane for the calling thread's namespace: for short-lived synchronous callers
/// (the CNI plugin, tools working inside another namespace through [`netns::run_in`]).
/// `f`'s error is the caller's, as long as a [`KernelError`] converts into it.
pub fn block_on<R, E, F>(f: impl FnOnce(Linux) -> F) -> Result<R, E>
where
    E: From<KernelError>,
    F: std::future::Future<Output = Result<R, E>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(KernelError::Socket)?;
    rt.block_on(async { f(Linux::connect()?).await })
}

/// [`Dataplane::ensure_big_tcp`] on a link of another network namespace, for tools (the
/// lab) that run outside it. Blocks; the caller's namespace is untouched.
pub fn ensure_big_tcp_in(
    netns: &Path,
    link: &str,
    wanted: u32,
) -> Result<Option<u32>, KernelError> {
    netns::run_in(netns, || {
        block_on(|linux| async move {
            let index = linux
                .link_index(link)
                .await?
                .ok_or_else(|| KernelError::Missing(link.to_owned()))?;
            linux.ensure_big_tcp(index, wanted).await
        })
    })?
}

#[async_trait]
impl Links for Linux {
    async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        links::all(&self.handle).await
    }

    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        Ok(links::by_name(&self.handle, name)
            .await?
            .map(|m| links::info(&m)))
    }

    async fn ensure_overlay(&self, spec: &OverlaySpec) -> Result<(u32, LinkOutcome), KernelError> {
        let (index, outcome) = match spec {
            OverlaySpec::Vxlan(s) => links::ensure_vxlan(&self.handle, s).await?,
            OverlaySpec::Ipip(s) => links::ensure_ipip(&self.handle, s).await?,
            OverlaySpec::Tun(s) => links::ensure_tun(&self.handle, s).await?,
        };
        self.own.note_link(index);
        let readdressed = match spec.address() {
            Some(address) => addresses::ensure_only(&self.handle, index, address).await?,
            None => false,
        };
        let outcome = match (outcome, spec.address()) {
            (LinkOutcome::Unchanged, Some(address)) if readdressed => {
                LinkOutcome::Updated(format!("address {address}"))
            }
            (other, _) => other,
        };
        if let OverlaySpec::Vxlan(s) = spec {
            if s.tx_checksum_off && outcome != LinkOutcome::Unchanged {
                let name = s.name.clone();
                self.in_own_netns(move || offload::set_tx_checksum_off(&name))?;
            }
        }
        Ok((index, outcome))
    }

    async fn ensure_bridge(&self, name: &str, mtu: u32) -> Result<LinkInfo, KernelError> {
        links::ensure_bridge(&self.handle, name, mtu).await
    }

    async fn add_veth(&self, pair: &VethPair) -> Result<(), KernelError> {
        links::add_veth(&self.handle, pair).await
    }

    async fn set_link(&self, index: u32, update: LinkUpdate) -> Result<(), KernelError> {
        links::set(&self.handle, index, update).await
    }

    async fn del_link(&self, index: u32) -> Result<(), KernelError> {
        links::del(&self.handle, index).await
    }
}

#[async_trait]
impl Addresses for Linux {
    async fn ipv4_addresses(&self) -> Result<Vec<AddrInfo>, KernelError> {
        addresses::all(&self.handle).await
    }

    async fn ipv6_addresses(&self) -> Result<Vec<Addr6Info>, KernelError> {
        addresses::all_v6(&self.handle).await
    }

    async fn ensure_address(&self, index: u32, address: IpNet) -> Result<(), KernelError> {
        addresses::ensure(&self.handle, index, address).await
    }
}

#[async_trait]
impl Routes for Linux {
    async fn default_route_dev(&self) -> Result<Option<u32>, KernelError> {
        routes::default_dev(&self.handle).await
    }

    async fn weft_routes(&self) -> Result<Vec<Route>, KernelError> {
        routes::weft(&self.handle).await
    }

    async fn apply_route_changes(
        &self,
        changes: Vec<RouteChange>,
    ) -> Result<Applied<Route>, KernelError> {
        let (netns, own) = (self.netns.clone(), self.own.clone());
        tokio::task::spawn_blocking(move || {
            let apply = || crate::batch::apply(&changes, routes::message, &own);
            match netns {
                Some(ns) => netns::run_in(&ns, apply)?.map_err(KernelError::Socket),
                None => apply().map_err(KernelError::Socket),
            }
        })
        .await
        .expect("route batch task")
    }

    async fn add_route(&self, route: &Route) -> Result<(), KernelError> {
        routes::add_unowned(&self.handle, route).await
    }
}

#[async_trait]
impl Neighbours for Linux {
    async fn neighbours(&self, index: u32) -> Result<Vec<Neighbour>, KernelError> {
        neigh::neighbours(&self.handle, index).await
    }

    async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>, KernelError> {
        neigh::fdb(&self.handle, index).await
    }

    async fn apply_neighbour_changes(
        &self,
        index: u32,
        changes: Vec<Change<Neighbour>>,
    ) -> Result<Applied<Neighbour>, KernelError> {
        Ok(neigh::apply_neighbours(&self.handle, index, changes).await)
    }

    async fn apply_fdb_changes(
        &self,
        index: u32,
        changes: Vec<Change<FdbEntry>>,
    ) -> Result<Applied<FdbEntry>, KernelError> {
        Ok(neigh::apply_fdb(&self.handle, index, changes).await)
    }
}

impl Sysctls for Linux {
    fn forwarding(&self) -> Result<bool, KernelError> {
        self.in_own_netns(|| sysctl::read(sysctl::FORWARDING).map(|v| v == "1"))?
    }

    fn ensure_forwarding(&self) -> Result<bool, KernelError> {
        self.in_own_netns(sysctl::ensure_forwarding)?
    }

    fn ipv6_forwarding(&self) -> Result<bool, KernelError> {
        self.in_own_netns(|| sysctl::read(sysctl::FORWARDING6).map(|v| v == "1"))?
    }

    fn set_link_setting(&self, setting: &LinkSetting) -> Result<(), KernelError> {
        let setting = setting.clone();
        self.in_own_netns(move || sysctl::set_link_setting(&setting))?
    }
}

impl Firewall for Linux {
    fn apply_firewall(&self, plan: &FirewallPlan) -> Result<bool, KernelError> {
        self.in_own_netns(|| nft::apply(plan))?
            .map_err(KernelError::from)
    }

    fn load_set_table(&self, table: &SetTable) -> Result<(), KernelError> {
        self.in_own_netns(|| nft_sets::load(table))?
            .map_err(KernelError::from)
    }

    fn set_table(&self, table: &TableId) -> Result<Option<LoadedSets>, KernelError> {
        self.in_own_netns(|| nft_sets::read(table))?
            .map_err(KernelError::from)
    }

    fn set_table_fingerprint(&self, table: &TableId) -> Result<Option<String>, KernelError> {
        self.in_own_netns(|| nft_netlink::table_comment(table))?
            .map_err(|e| nft_netlink::refused(&format!("cannot read table {table}"), e).into())
    }

    fn set_table_counters(
        &self,
        table: &TableId,
    ) -> Result<Vec<crate::nft_sets::RuleCounter>, KernelError> {
        self.in_own_netns(|| nft_netlink::rule_counters(table))?
            .map_err(|e| {
                nft_netlink::refused(&format!("cannot read the rules of table {table}"), e).into()
            })
    }

    fn remove_set_table(&self, table: &TableId) -> Result<(), KernelError> {
        self.in_own_netns(|| nft_sets::remove(table))?
            .map_err(KernelError::from)
    }

    fn update_set_table(
        &self,
        table: &TableId,
        add: &Elements,
        remove: &Elements,
    ) -> Result<(), KernelError> {
        self.in_own_netns(|| nft_sets::update(table, add, remove))?
            .map_err(KernelError::from)
    }

    fn firewall_loaded(&self) -> Result<bool, KernelError> {
        self.in_own_netns(nft::table_loaded)?
            .map_err(KernelError::from)
    }

    fn ensure_iptables_forward(&self, network: &Ipv4Net) -> Result<usize, KernelError> {
        self.in_own_netns(|| nft::ensure_iptables_forward(network))?
            .map_err(KernelError::from)
    }
}

#[async_trait]
impl Offloads for Linux {
    async fn ensure_big_tcp(&self, index: u32, wanted: u32) -> Result<Option<u32>, KernelError> {
        offload::ensure_big_tcp(&self.handle, index, wanted).await
    }
}

impl Namespaces for Linux {
    fn watch(&self) -> Result<mpsc::Receiver<KernelEvent>, KernelError> {
        monitor::watch(self.netns.as_deref(), self.own.clone())
    }

    fn enter(&self, netns: &Path) -> Result<Box<dyn Dataplane>, KernelError> {
        Ok(Box::new(Linux::connect_in(netns)?))
    }
}
