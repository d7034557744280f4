//! The one southbound boundary: everything Weft asks of a host's network stack.
//!
//! Decision code (the agent's reconcile, `weftctl diagnose`, the CNI plugin's attach)
//! computes values from [`weft_plan`] and hands them to a [`Dataplane`]; it never builds
//! a netlink message. Two implementations: [`crate::linux::Linux`] (rtnetlink, nftables,
//! `/proc/sys`) and `fake::FakeNet` (feature `fake`), an in-memory host that records state and
//! can be told to refuse, so the decision code is tested without root.
//!
//! The boundary is split by kernel object, one trait each, as the Linux implementation's
//! files are: [`Links`], [`Addresses`], [`Routes`], [`Neighbours`], [`Sysctls`],
//! [`Firewall`], [`Offloads`], [`Namespaces`] (events and other namespaces).
//! [`Attach`] is what attaching a container takes (the CNI plugin and the Docker driver
//! ask for only that); [`Dataplane`] is the sum (the agent, `weftctl diagnose`). Any
//! type with every part is both. Reads return what Weft needs as plan values; writes
//! are idempotent where the object has a natural identity (`ensure_*`, `apply_*`),
//! plain otherwise (`add_*`). Callers bring the traits in with
//! `use weft_kernel::prelude::*`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::mpsc;
use weft_plan::iface::{self, Addr6Info, AddrInfo, ExternalInterface, IfaceSpec, LinkInfo};
use weft_plan::neigh::{plan_fdb, plan_neighbours};
use weft_plan::route::{plan, RouteChange};
use weft_plan::{
    Applied, Change, FdbEntry, FirewallPlan, LinkOutcome, MacAddr, Neighbour, OverlaySpec, Route,
    SegmentSpec, VxlanSpec,
};

use crate::error::KernelError;
use crate::monitor::KernelEvent;
use crate::nft_sets::{Elements, LoadedSets, RuleCounter, SetTable, TableId};

/// What one route reconciliation did, and how long it took.
#[derive(Debug, Default, Clone)]
pub struct ApplyReport {
    pub applied: Applied<Route>,
    pub elapsed: Duration,
}

impl ApplyReport {
    pub fn changed(&self) -> bool {
        self.applied.changed()
    }
}

/// A veth pair whose peer is made directly inside another namespace under its final name
/// (the CNI plugin's container link): nothing with a temporary name is ever visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    /// The host side's name.
    pub host: String,
    /// The host side's MAC, when it must be fixed (routed mode's `ee:ee:ee:ee:ee:ee`).
    pub host_mac: Option<MacAddr>,
    /// The peer's name inside `peer_netns`.
    pub peer: String,
    pub peer_netns: PathBuf,
    pub mtu: u32,
    /// BIG TCP: the IPv4 GSO/GRO limit both sides are made with.
    pub gso_max_size: Option<u32>,
}

/// A change to an existing link's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkUpdate {
    pub up: bool,
    /// Make it a port of this bridge.
    pub controller: Option<u32>,
}

/// A per-link setting under `/proc/sys` or `/sys` that the CNI plugin turns on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkSetting {
    /// `net.ipv4.conf.DEV.proxy_arp = 1`: the host answers the container's ARP for any
    /// address (routed mode).
    ProxyArp(String),
    /// `net.ipv4.neigh.DEV.proxy_delay = 0`: and answers at once.
    ProxyDelayZero(String),
    /// The bridge port reflects frames back to where they came from (hairpin mode).
    Hairpin(String),
    /// `net.bridge.bridge-nf-call-iptables = 1` (br_netfilter): IPv4 crossing a bridge
    /// passes the IP hooks too, where network policy sees it (as kube-proxy requires).
    BridgeCallsIptables,
    /// `net.bridge.bridge-nf-call-ip6tables = 1`: the same for IPv6 (a dual-stack node's
    /// IPv6 policy table sees bridged traffic only with it).
    BridgeCallsIp6tables,
    /// `net.ipv6.conf.all.forwarding = 1`: a dual-stack node forwards its containers'
    /// IPv6 traffic (and, as any IPv6 router, stops taking router advertisements on
    /// interfaces whose `accept_ra` is 1).
    Ipv6Forwarding,
}

/// Links: the overlay devices, bridges, veth pairs.
#[async_trait]
pub trait Links: Send + Sync {
    /// Every link, with index, name, MTU, state and MAC.
    async fn links(&self) -> Result<Vec<LinkInfo>, KernelError>;

    /// A link by name, if it exists.
    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, KernelError>;

    /// Makes the overlay device match `spec`: created if missing (a TUN device must
    /// already be open: its tunnel makes it), recreated if a property that cannot change
    /// in place differs, else adjusted in place; then its one address. Fails with
    /// [`KernelError::Unsupported`] when the kernel lacks the link type.
    async fn ensure_overlay(&self, spec: &OverlaySpec) -> Result<(u32, LinkOutcome), KernelError>;

    /// Makes the bridge `name` exist and be up; returns it.
    async fn ensure_bridge(&self, name: &str, mtu: u32) -> Result<LinkInfo, KernelError>;

    /// Creates a veth pair; [`KernelError::Exists`] when either name is taken.
    async fn add_veth(&self, pair: &VethPair) -> Result<(), KernelError>;

    async fn set_link(&self, index: u32, update: LinkUpdate) -> Result<(), KernelError>;

    /// Deletes a link; one already gone is fine.
    async fn del_link(&self, index: u32) -> Result<(), KernelError>;

    /// A link's index by name, if it exists.
    async fn link_index(&self, name: &str) -> Result<Option<u32>, KernelError> {
        Ok(self.link(name).await?.map(|l| l.index))
    }
}

/// Addresses of both families.
#[async_trait]
pub trait Addresses: Send + Sync {
    /// Every IPv4 address, with its link.
    async fn ipv4_addresses(&self) -> Result<Vec<AddrInfo>, KernelError>;

    /// Every IPv6 address, with its link.
    async fn ipv6_addresses(&self) -> Result<Vec<Addr6Info>, KernelError>;

    /// Adds an address to a link; one already there is fine.
    async fn ensure_address(&self, index: u32, address: IpNet) -> Result<(), KernelError>;

    /// The IPv4 addresses of one link.
    async fn addresses_of(&self, index: u32) -> Result<Vec<Ipv4Net>, KernelError> {
        Ok(self
            .ipv4_addresses()
            .await?
            .into_iter()
            .filter(|a| a.index == index)
            .filter_map(|a| Ipv4Net::new(a.addr, a.prefix_len).ok())
            .collect())
    }
}

/// Routes: Weft's (marked, batched, diffed) and single unmarked ones of an attachment.
#[async_trait]
pub trait Routes: Send + Sync {
    /// The output interface of the main table's IPv4 default route, if any.
    async fn default_route_dev(&self) -> Result<Option<u32>, KernelError>;

    /// Weft's routes in the main table: those with protocol [`weft_plan::WEFT_PROTO`].
    async fn weft_routes(&self) -> Result<Vec<Route>, KernelError>;

    /// Applies route changes with Weft's mark; a change the kernel refuses is reported
    /// in [`Applied::failed`] and the rest still apply.
    async fn apply_route_changes(
        &self,
        changes: Vec<RouteChange>,
    ) -> Result<Applied<Route>, KernelError>;

    /// Adds one route *without* Weft's mark: it belongs to an attachment (a container's
    /// /32 on its veth, a container's own routes) and goes with its link, so the agent's
    /// route reconcile must never see it as its own.
    async fn add_route(&self, route: &Route) -> Result<(), KernelError>;

    /// Makes Weft's routes equal to `desired`, changing only the difference.
    async fn apply_routes(&self, desired: &[Route]) -> Result<ApplyReport, KernelError> {
        let start = Instant::now();
        let changes = plan(desired, &self.weft_routes().await?);
        let applied = self.apply_route_changes(changes).await?;
        Ok(ApplyReport {
            applied,
            elapsed: start.elapsed(),
        })
    }

    /// Turns `previous`, a plan the kernel was last seen to hold in full, into `desired`
    /// without reading the kernel's routes first. For a stream of learned routes: reading
    /// 10,000 routes back before each burst would cost more than the burst. A change the
    /// kernel refuses here (someone else's edit) shows as failed, and the caller goes
    /// back to [`Routes::apply_routes`].
    async fn apply_route_delta(
        &self,
        desired: &[Route],
        previous: &[Route],
    ) -> Result<ApplyReport, KernelError> {
        let start = Instant::now();
        let applied = self.apply_route_changes(plan(desired, previous)).await?;
        Ok(ApplyReport {
            applied,
            elapsed: start.elapsed(),
        })
    }
}

/// Permanent neighbour entries and FDB entries.
#[async_trait]
pub trait Neighbours: Send + Sync {
    /// Permanent IPv4 neighbour entries on a link.
    async fn neighbours(&self, index: u32) -> Result<Vec<Neighbour>, KernelError>;

    /// FDB entries (MAC to remote VTEP) on a VXLAN link.
    async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>, KernelError>;

    async fn apply_neighbour_changes(
        &self,
        index: u32,
        changes: Vec<Change<Neighbour>>,
    ) -> Result<Applied<Neighbour>, KernelError>;

    async fn apply_fdb_changes(
        &self,
        index: u32,
        changes: Vec<Change<FdbEntry>>,
    ) -> Result<Applied<FdbEntry>, KernelError>;

    /// Makes the permanent neighbours on `index` equal to `desired`.
    async fn apply_neighbours(
        &self,
        index: u32,
        desired: &[Neighbour],
    ) -> Result<Applied<Neighbour>, KernelError> {
        let changes = plan_neighbours(desired, &self.neighbours(index).await?);
        self.apply_neighbour_changes(index, changes).await
    }

    /// Makes the FDB entries on `index` equal to `desired`.
    async fn apply_fdb(
        &self,
        index: u32,
        desired: &[FdbEntry],
    ) -> Result<Applied<FdbEntry>, KernelError> {
        let changes = plan_fdb(desired, &self.fdb(index).await?);
        self.apply_fdb_changes(index, changes).await
    }

    /// Adds one permanent neighbour entry (a container's entry for its fixed gateway).
    async fn add_neighbour(&self, index: u32, n: Neighbour) -> Result<(), KernelError> {
        let applied = self
            .apply_neighbour_changes(index, vec![Change::Add(n)])
            .await?;
        match applied.failed.into_iter().next() {
            Some((_, refusal)) => Err(KernelError::Refused {
                op: "add neighbour",
                refusal,
            }),
            None => Ok(()),
        }
    }
}

/// Settings under `/proc/sys` and `/sys` (blocking file writes: the Linux side runs
/// them off the runtime's workers).
pub trait Sysctls: Send + Sync {
    /// Whether IPv4 forwarding is on.
    fn forwarding(&self) -> Result<bool, KernelError>;

    /// Turns IPv4 forwarding on; whether it changed anything.
    fn ensure_forwarding(&self) -> Result<bool, KernelError>;

    /// Whether IPv6 forwarding is on (`net.ipv6.conf.all.forwarding`).
    fn ipv6_forwarding(&self) -> Result<bool, KernelError>;

    fn set_link_setting(&self, setting: &LinkSetting) -> Result<(), KernelError>;
}

/// nftables tables (Weft's firewall and the policy table) and iptables' FORWARD accept
/// rules (blocking: an `nft` process or a netfilter socket, run off the runtime's
/// workers on Linux).
pub trait Firewall: Send + Sync {
    /// Loads the firewall table for `plan` unless the loaded one is the same; whether
    /// it loaded.
    fn apply_firewall(&self, plan: &FirewallPlan) -> Result<bool, KernelError>;

    /// Whether Weft's firewall table is loaded.
    fn firewall_loaded(&self) -> Result<bool, KernelError>;

    /// Loads a table with named sets whole (structure, then elements) in one
    /// transaction ([`crate::nft_sets`]).
    fn load_set_table(&self, table: &SetTable) -> Result<(), KernelError>;

    /// A loaded set table's fingerprint and elements (`None`: not loaded). Costly
    /// with thousands of sets (nft and the kernel walk them all): at start only.
    fn set_table(&self, table: &TableId) -> Result<Option<LoadedSets>, KernelError>;

    /// A loaded set table's fingerprint alone (its comment), cheap at any size.
    fn set_table_fingerprint(&self, table: &TableId) -> Result<Option<String>, KernelError>;

    /// The counters of a set table's commented rules (for `/metrics`), cheap at any
    /// size; empty if it is not loaded.
    fn set_table_counters(&self, table: &TableId) -> Result<Vec<RuleCounter>, KernelError>;

    /// Removes a set table, if it is loaded.
    fn remove_set_table(&self, table: &TableId) -> Result<(), KernelError>;

    /// Removes `remove` from and adds `add` to a loaded set table's sets and maps, in
    /// one transaction; its rules stay as they are.
    fn update_set_table(
        &self,
        table: &TableId,
        add: &Elements,
        remove: &Elements,
    ) -> Result<(), KernelError>;

    /// Where iptables' FORWARD policy is DROP (Docker sets it), accept rules for the
    /// cluster network; how many were inserted.
    fn ensure_iptables_forward(&self, network: &Ipv4Net) -> Result<usize, KernelError>;
}

/// Per-link offloads (BIG TCP).
#[async_trait]
pub trait Offloads: Send + Sync {
    /// Raises (or lowers) a link's IPv4 GSO and GRO limits to `wanted`, capped by what
    /// the device can segment. The limit in force afterwards; `None` when the kernel
    /// reports none (too old for BIG TCP).
    async fn ensure_big_tcp(&self, index: u32, wanted: u32) -> Result<Option<u32>, KernelError>;
}

/// Kernel events and other namespaces.
pub trait Namespaces: Send + Sync {
    /// Starts listening for changes to what Weft owns (see [`crate::monitor`]).
    fn watch(&self) -> Result<mpsc::Receiver<KernelEvent>, KernelError>;

    /// The same host's view from inside another network namespace (a container's).
    fn enter(&self, netns: &Path) -> Result<Box<dyn Dataplane>, KernelError>;
}

/// What attaching a container takes (the CNI plugin, the Docker driver): links,
/// addresses, single routes and neighbour entries, per-link settings and offloads, and
/// entering the container's namespace. They ask for only this.
#[async_trait]
pub trait Attach:
    Links + Addresses + Routes + Neighbours + Sysctls + Offloads + Namespaces
{
    /// Makes a named overlay network's links match `spec` (see [`weft_plan::segment`]):
    /// the bridge, holding the gateway unless the network is internal, and the VXLAN
    /// device as its port, with no address, no learning and ARP answered from its
    /// neighbour entries. Returns the bridge's and the VXLAN device's indices.
    async fn ensure_segment(
        &self,
        spec: &SegmentSpec,
    ) -> Result<(u32, u32, LinkOutcome), KernelError> {
        let bridge = self.ensure_bridge(&spec.bridge(), spec.mtu).await?;
        if let Some(gw) = spec.gateway {
            self.ensure_address(bridge.index, gw.into()).await?;
        }
        let vxlan = VxlanSpec {
            name: spec.vxlan(),
            vni: spec.vni,
            port: weft_plan::segment::SEGMENT_PORT,
            local: spec.local.into(),
            underlay: spec.underlay,
            mac: MacAddr::derived(format!("{}/{}", spec.vni, spec.local).as_bytes()),
            mtu: spec.mtu,
            address: None,
            tx_checksum_off: false,
            proxy: true,
        };
        let (index, outcome) = self.ensure_overlay(&OverlaySpec::Vxlan(vxlan)).await?;
        let port = self.link(&spec.vxlan()).await?;
        if port.is_none_or(|p| p.controller != Some(bridge.index) || !p.up) {
            self.set_link(
                index,
                LinkUpdate {
                    up: true,
                    controller: Some(bridge.index),
                },
            )
            .await?;
        }
        Ok((bridge.index, index, outcome))
    }
}

impl<T: Links + Addresses + Routes + Neighbours + Sysctls + Offloads + Namespaces> Attach for T {}

/// Everything Weft does to a host's network stack, the sum of the traits above (the
/// agent and `weftctl diagnose` take it). See the module's documentation.
#[async_trait]
pub trait Dataplane: Attach + Firewall {
    /// Chooses the external interface (see [`iface::choose`]), with its IPv6 address.
    async fn external_interface(
        &self,
        specs: &[IfaceSpec],
    ) -> Result<ExternalInterface, KernelError> {
        let (links, addrs, dev) = (
            self.links().await?,
            self.ipv4_addresses().await?,
            self.default_route_dev().await?,
        );
        let chosen = iface::choose(specs, &links, &addrs, dev)?;
        Ok(iface::with_ipv6(chosen, &self.ipv6_addresses().await?))
    }
}

impl<T: Attach + Firewall> Dataplane for T {}
