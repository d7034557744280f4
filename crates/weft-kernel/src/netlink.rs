//! Reading and changing the kernel over rtnetlink.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::stream::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkIpIp, LinkMessageBuilder, LinkUnspec, LinkVxlan, RouteMessageBuilder};
use thiserror::Error;

use crate::bigtcp;
use crate::diff::{Applied, Change};
use crate::iface::{self, AddrInfo, ExternalInterface, IfaceError, IfaceSpec, LinkInfo};
use crate::link::{must_recreate, IpipSpec, LinkOutcome, TunSpec, VxlanSpec, VxlanState};
use crate::mac::MacAddr;
use crate::neigh::{plan_fdb, plan_neighbours, FdbEntry, Neighbour};
use crate::netns::{self, NetnsError};
use crate::route::{plan, Route, RouteChange, WEFT_PROTO};

const MAIN_TABLE: u8 = 254;
/// The metric of Weft's blackhole routes.
pub const BLACKHOLE_METRIC: u32 = 100_000;

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink {op}: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error(transparent)]
    Iface(#[from] IfaceError),
    #[error("link {0} vanished right after it was created")]
    Vanished(String),
    #[error("link {0} does not exist")]
    Missing(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("this kernel cannot make {kind} links ({source})")]
    Unsupported {
        kind: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
}

impl KernelError {
    /// True when the kernel lacks the link type (no module): a fallback may apply.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, KernelError::Unsupported { .. })
    }
}

/// [`Kernel::ensure_big_tcp`] on any rtnetlink handle (the CNI plugin has its own).
pub async fn ensure_big_tcp(
    handle: &Handle,
    index: u32,
    wanted: u32,
) -> Result<Option<u32>, KernelError> {
    let mut stream = handle.link().get().match_index(index).execute();
    let link = stream
        .try_next()
        .await
        .map_err(nl("read link"))?
        .ok_or_else(|| KernelError::Missing(format!("#{index}")))?;
    let Some(limits) = bigtcp::Limits::of(&link) else {
        return Ok(None);
    };
    let target = limits.target(wanted);
    if !limits.at(target) {
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes.extend(bigtcp::attributes(target));
        handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl("set the IPv4 GSO/GRO limits"))?;
    }
    Ok(Some(target))
}

/// Runs `f` to completion on a current-thread runtime of its own, with a netlink handle
/// opened in the calling thread's network namespace: for short-lived synchronous callers
/// (the CNI plugin, tools working inside another namespace through [`netns::run_in`]).
/// The error is only the runtime's or the socket's; `f`'s own result comes back as is.
pub fn block_on<R, F: std::future::Future<Output = R>>(
    f: impl FnOnce(Handle) -> F,
) -> std::io::Result<R> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(f(handle).await)
    })
}

fn nl(op: &'static str) -> impl Fn(rtnetlink::Error) -> KernelError {
    move |source| KernelError::Netlink { op, source }
}

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

/// A netlink connection in the caller's network namespace.
#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
}

impl Kernel {
    /// Opens a netlink connection; must be called inside a tokio runtime.
    pub fn connect() -> Result<Self, KernelError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(KernelError::Socket)?;
        tokio::spawn(conn);
        Ok(Kernel { handle })
    }

    pub async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        let msgs: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list links"))?;
        Ok(msgs
            .into_iter()
            .map(|m| {
                let mut info = LinkInfo {
                    index: m.header.index,
                    name: String::new(),
                    mtu: 1500,
                    up: m.header.flags.contains(LinkFlags::Up),
                };
                for a in m.attributes {
                    match a {
                        LinkAttribute::IfName(n) => info.name = n,
                        LinkAttribute::Mtu(mtu) => info.mtu = mtu,
                        _ => {}
                    }
                }
                info
            })
            .collect())
    }

    pub async fn ipv4_addresses(&self) -> Result<Vec<AddrInfo>, KernelError> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list addresses"))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                let addr = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })?;
                Some(AddrInfo {
                    index: m.header.index,
                    addr,
                    prefix_len: m.header.prefix_len,
                })
            })
            .collect())
    }

    async fn ipv4_routes(&self) -> Result<Vec<RouteMessage>, KernelError> {
        let req = RouteMessageBuilder::<Ipv4Addr>::new().build();
        self.handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list routes"))
    }

    /// The output interface of the main table's IPv4 default route, if any.
    pub async fn default_route_dev(&self) -> Result<Option<u32>, KernelError> {
        Ok(self.ipv4_routes().await?.into_iter().find_map(|m| {
            let main = m.header.table == MAIN_TABLE;
            (main && m.header.destination_prefix_length == 0)
                .then(|| oif(&m))
                .flatten()
        }))
    }

    /// Chooses the external interface (see [`iface::choose`]).
    pub async fn external_interface(
        &self,
        specs: &[IfaceSpec],
    ) -> Result<ExternalInterface, KernelError> {
        let (links, addrs, dev) = (
            self.links().await?,
            self.ipv4_addresses().await?,
            self.default_route_dev().await?,
        );
        Ok(iface::choose(specs, &links, &addrs, dev)?)
    }

    /// Weft's routes in the main table: those with protocol [`WEFT_PROTO`].
    pub async fn weft_routes(&self) -> Result<Vec<Route>, KernelError> {
        Ok(self
            .ipv4_routes()
            .await?
            .iter()
            .filter_map(to_route)
            .collect())
    }

    /// Makes Weft's routes equal to `desired`, changing only the difference.
    pub async fn apply_routes(&self, desired: &[Route]) -> Result<ApplyReport, KernelError> {
        let start = Instant::now();
        let changes = plan(desired, &self.weft_routes().await?);
        Self::apply_changes(changes, start).await
    }

    /// Turns `previous`, a plan the kernel was last seen to hold in full, into `desired`
    /// without reading the kernel's routes first. For a stream of learned routes: reading
    /// 10,000 routes back before each burst would cost more than the burst. Whoever
    /// calls it keeps the full [`Kernel::apply_routes`] for everything else; a change the
    /// kernel refuses here (someone else's edit) shows as failed, and the caller goes
    /// back to it.
    pub async fn apply_route_delta(
        &self,
        desired: &[Route],
        previous: &[Route],
    ) -> Result<ApplyReport, KernelError> {
        let start = Instant::now();
        Self::apply_changes(plan(desired, previous), start).await
    }

    async fn apply_changes(
        changes: Vec<RouteChange>,
        start: Instant,
    ) -> Result<ApplyReport, KernelError> {
        let applied = tokio::task::spawn_blocking(move || crate::batch::apply(&changes, message))
            .await
            .expect("batch task")
            .map_err(KernelError::Socket)?;
        Ok(ApplyReport {
            applied,
            elapsed: start.elapsed(),
        })
    }

    /// A link's index by name, if it exists.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, KernelError> {
        Ok(self.link_by_name(name).await?.map(|m| m.header.index))
    }

    /// Raises (or lowers) a link's IPv4 GSO and GRO limits to `wanted`, capped by what
    /// the device can segment; changes nothing when they are already there. Returns the
    /// limit in force afterwards, `None` when the kernel does not report one (too old for
    /// BIG TCP).
    pub async fn ensure_big_tcp(
        &self,
        index: u32,
        wanted: u32,
    ) -> Result<Option<u32>, KernelError> {
        ensure_big_tcp(&self.handle, index, wanted).await
    }

    /// [`Kernel::ensure_big_tcp`] on a link of another network namespace, for tools (the
    /// lab) that run outside it. Blocks; runs on a thread of its own that enters the
    /// namespace, so the caller's namespace is untouched.
    pub fn ensure_big_tcp_in(
        netns: &std::path::Path,
        link: &str,
        wanted: u32,
    ) -> Result<Option<u32>, KernelError> {
        netns::run_in(netns, || {
            block_on(|handle| async move {
                let kernel = Kernel { handle };
                let index = kernel
                    .link_index(link)
                    .await?
                    .ok_or_else(|| KernelError::Missing(link.to_owned()))?;
                kernel.ensure_big_tcp(index, wanted).await
            })
            .map_err(KernelError::Socket)?
        })?
    }

    /// A link by name, if it exists.
    async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, KernelError> {
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match stream.try_next().await {
            Ok(link) => Ok(link),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => Ok(None),
            Err(e) => Err(nl("read link")(e)),
        }
    }

    /// Makes the VXLAN device match `spec`: created if missing, recreated if a property
    /// that cannot change in place differs, else adjusted in place; then its address.
    /// Returns its index and what it took.
    pub async fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<(u32, LinkOutcome), KernelError> {
        let mut outcome = LinkOutcome::Unchanged;
        let existing = self
            .link_by_name(&spec.name)
            .await?
            .map(|m| vxlan_state(&m));
        let index = match existing {
            Some(have) => match must_recreate(spec, &have) {
                Some(why) => {
                    self.handle
                        .link()
                        .del(have.index)
                        .execute()
                        .await
                        .map_err(nl("delete link"))?;
                    outcome = LinkOutcome::Recreated(why);
                    self.create_vxlan(spec).await?
                }
                None => {
                    let mut what = Vec::new();
                    let mut set = LinkUnspec::new_with_index(have.index);
                    if have.mtu != spec.mtu {
                        what.push(format!("mtu {} -> {}", have.mtu, spec.mtu));
                        set = set.mtu(spec.mtu);
                    }
                    if have.mac != Some(spec.mac) {
                        what.push(format!("mac -> {}", spec.mac));
                        set = set.address(spec.mac.0.to_vec());
                    }
                    if !have.up {
                        what.push("up".into());
                        set = set.up();
                    }
                    if !what.is_empty() {
                        self.set_link(set).await?;
                        outcome = LinkOutcome::Updated(what.join(", "));
                    }
                    have.index
                }
            },
            None => {
                outcome = LinkOutcome::Created;
                self.create_vxlan(spec).await?
            }
        };
        if self.ensure_only_address(index, spec.address).await? && outcome == LinkOutcome::Unchanged
        {
            outcome = LinkOutcome::Updated(format!("address {}", spec.address));
        }
        if spec.tx_checksum_off && outcome != LinkOutcome::Unchanged {
            set_tx_checksum_off(&spec.name);
        }
        Ok((index, outcome))
    }

    async fn create_vxlan(&self, spec: &VxlanSpec) -> Result<u32, KernelError> {
        let msg = LinkVxlan::new(&spec.name, spec.vni)
            .dev(spec.underlay)
            .port(spec.port)
            .local(spec.local)
            .learning(false)
            .mtu(spec.mtu)
            .address(spec.mac.0.to_vec())
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl("create vxlan link"))?;
        let link = self.link_by_name(&spec.name).await?;
        link.map(|l| l.header.index)
            .ok_or(KernelError::Vanished(spec.name.clone()))
    }

    /// Sets MTU and up state of an existing link in place; says what changed.
    async fn adjust_link(&self, m: &LinkMessage, mtu: u32) -> Result<Option<String>, KernelError> {
        let have_mtu = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(v) => Some(*v),
            _ => None,
        });
        let mut what = Vec::new();
        let mut set = LinkUnspec::new_with_index(m.header.index);
        if have_mtu != Some(mtu) {
            what.push(format!("mtu {have_mtu:?} -> {mtu}"));
            set = set.mtu(mtu);
        }
        if !m.header.flags.contains(LinkFlags::Up) {
            what.push("up".into());
            set = set.up();
        }
        if what.is_empty() {
            return Ok(None);
        }
        self.set_link(set).await?;
        Ok(Some(what.join(", ")))
    }

    async fn set_link(&self, set: LinkMessageBuilder<LinkUnspec>) -> Result<(), KernelError> {
        self.handle
            .link()
            .set(set.build())
            .execute()
            .await
            .map_err(nl("set link"))
    }

    /// Makes the (already opened) TUN device match `spec`: MTU, up, only its address.
    pub async fn ensure_tun(&self, spec: &TunSpec) -> Result<(u32, LinkOutcome), KernelError> {
        let m = self
            .link_by_name(&spec.name)
            .await?
            .ok_or_else(|| KernelError::Missing(spec.name.clone()))?;
        let mut outcome = match self.adjust_link(&m, spec.mtu).await? {
            Some(what) => LinkOutcome::Updated(what),
            None => LinkOutcome::Unchanged,
        };
        if self
            .ensure_only_address(m.header.index, spec.address)
            .await?
            && outcome == LinkOutcome::Unchanged
        {
            outcome = LinkOutcome::Updated(format!("address {}", spec.address));
        }
        Ok((m.header.index, outcome))
    }

    /// Makes the kernel IP-in-IP device match `spec`, creating it if missing. Fails with
    /// [`KernelError::Unsupported`] when the kernel has no `ipip` module.
    pub async fn ensure_ipip(&self, spec: &IpipSpec) -> Result<(u32, LinkOutcome), KernelError> {
        let existing = self.link_by_name(&spec.name).await?;
        let (index, mut outcome) = match existing {
            Some(m) if ipip_matches(&m, spec) => {
                let outcome = match self.adjust_link(&m, spec.mtu).await? {
                    Some(what) => LinkOutcome::Updated(what),
                    None => LinkOutcome::Unchanged,
                };
                (m.header.index, outcome)
            }
            Some(m) => {
                self.handle
                    .link()
                    .del(m.header.index)
                    .execute()
                    .await
                    .map_err(nl("delete link"))?;
                let index = self.create_ipip(spec).await?;
                (
                    index,
                    LinkOutcome::Recreated("not the ipip device Weft wants".into()),
                )
            }
            None => (self.create_ipip(spec).await?, LinkOutcome::Created),
        };
        if self.ensure_only_address(index, spec.address).await? && outcome == LinkOutcome::Unchanged
        {
            outcome = LinkOutcome::Updated(format!("address {}", spec.address));
        }
        Ok((index, outcome))
    }

    async fn create_ipip(&self, spec: &IpipSpec) -> Result<u32, KernelError> {
        match self
            .handle
            .link()
            .add(ipip_link_message(spec))
            .execute()
            .await
        {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -95 || e.raw_code() == -libc_enodev() =>
            {
                return Err(KernelError::Unsupported {
                    kind: "ipip",
                    source: rtnetlink::Error::NetlinkError(e),
                })
            }
            Err(e) => return Err(nl("create ipip link")(e)),
        }
        let link = self.link_by_name(&spec.name).await?;
        link.map(|l| l.header.index)
            .ok_or(KernelError::Vanished(spec.name.clone()))
    }

    /// Makes `address` the only IPv4 address on the link. Returns whether it changed anything.
    async fn ensure_only_address(&self, index: u32, address: Ipv4Net) -> Result<bool, KernelError> {
        let have: Vec<AddrInfo> = self
            .ipv4_addresses()
            .await?
            .into_iter()
            .filter(|a| a.index == index)
            .collect();
        let mut changed = false;
        for a in &have {
            if a.addr != address.addr() || a.prefix_len != address.prefix_len() {
                let msgs: Vec<_> = self
                    .handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .set_address_filter(a.addr.into())
                    .execute()
                    .try_collect()
                    .await
                    .map_err(nl("read address"))?;
                for m in msgs {
                    self.handle
                        .address()
                        .del(m)
                        .execute()
                        .await
                        .map_err(nl("delete address"))?;
                }
                changed = true;
            }
        }
        if !have
            .iter()
            .any(|a| a.addr == address.addr() && a.prefix_len == address.prefix_len())
        {
            self.handle
                .address()
                .add(index, address.addr().into(), address.prefix_len())
                .execute()
                .await
                .map_err(nl("add address"))?;
            changed = true;
        }
        Ok(changed)
    }

    /// Permanent IPv4 neighbour entries on a link.
    pub async fn neighbours(&self, index: u32) -> Result<Vec<Neighbour>, KernelError> {
        let msgs: Vec<_> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list neighbours"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
            .filter_map(|m| {
                Some(Neighbour {
                    ip: neigh_ip(m)?,
                    mac: neigh_mac(m)?,
                })
            })
            .collect())
    }

    /// FDB entries (MAC to remote VTEP) on a VXLAN link.
    pub async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>, KernelError> {
        let msgs: Vec<_> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list fdb"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| {
                Some(FdbEntry {
                    mac: neigh_mac(m)?,
                    dst: neigh_ip(m)?,
                })
            })
            .collect())
    }

    /// Makes the permanent neighbours on `index` equal to `desired`.
    pub async fn apply_neighbours(
        &self,
        index: u32,
        desired: &[Neighbour],
    ) -> Result<Applied<Neighbour>, KernelError> {
        let changes = plan_neighbours(desired, &self.neighbours(index).await?);
        Ok(apply_each(changes, async |change| match change {
            Change::Add(n) | Change::Replace(n) => {
                let req = self
                    .handle
                    .neighbours()
                    .add(index, n.ip.into())
                    .link_layer_address(&n.mac.0);
                req.state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
            }
            Change::Remove(n) => {
                let mut m = NeighbourMessage::default();
                m.header.family = AddressFamily::Inet;
                m.header.ifindex = index;
                m.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                        n.ip,
                    )));
                self.handle.neighbours().del(m).execute().await
            }
        })
        .await)
    }

    /// Makes the FDB entries on `index` equal to `desired`.
    pub async fn apply_fdb(
        &self,
        index: u32,
        desired: &[FdbEntry],
    ) -> Result<Applied<FdbEntry>, KernelError> {
        let changes = plan_fdb(desired, &self.fdb(index).await?);
        Ok(apply_each(changes, async |change| match change {
            Change::Add(f) | Change::Replace(f) => {
                let req = self
                    .handle
                    .neighbours()
                    .add_bridge(index, &f.mac.0)
                    .flags(NeighbourFlags::Own);
                req.destination(f.dst.into()).replace().execute().await
            }
            Change::Remove(f) => {
                let mut m = NeighbourMessage::default();
                m.header.family = AddressFamily::Bridge;
                m.header.ifindex = index;
                m.header.flags = NeighbourFlags::Own;
                m.attributes
                    .push(NeighbourAttribute::LinkLayerAddress(f.mac.0.to_vec()));
                m.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                        f.dst,
                    )));
                self.handle.neighbours().del(m).execute().await
            }
        })
        .await)
    }
}

/// Applies changes one by one, recording each outcome; a refused change does not stop
/// the rest.
async fn apply_each<T: Copy>(
    changes: Vec<Change<T>>,
    op: impl AsyncFn(Change<T>) -> Result<(), rtnetlink::Error>,
) -> Applied<T> {
    let mut applied = Applied::default();
    for change in changes {
        let result = op(change).await;
        applied.record(change, result);
    }
    applied
}

const fn libc_enodev() -> i32 {
    19 // ENODEV: "no such device", what a lookup of a missing link returns
}

fn neigh_ip(m: &NeighbourMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        // An FDB entry (family AF_BRIDGE) carries its IPv4 destination as raw bytes:
        // the parser cannot tell the address family from the message's.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) if b.len() == 4 => {
            Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        _ => None,
    })
}

fn neigh_mac(m: &NeighbourMessage) -> Option<MacAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => MacAddr::from_slice(b),
        _ => None,
    })
}

/// Reads the properties Weft cares about from a link dump.
fn vxlan_state(m: &LinkMessage) -> VxlanState {
    let mut s = VxlanState {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Mtu(mtu) => s.mtu = *mtu,
            LinkAttribute::Address(mac) => s.mac = MacAddr::from_slice(mac),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        NlLinkInfo::Kind(InfoKind::Vxlan) => s.is_vxlan = true,
                        NlLinkInfo::Data(InfoData::Vxlan(attrs)) => {
                            for v in attrs {
                                match v {
                                    InfoVxlan::Id(id) => s.vni = Some(*id),
                                    InfoVxlan::Port(p) => s.port = Some(*p),
                                    InfoVxlan::Local(ip) => s.local = Some(*ip),
                                    InfoVxlan::Link(l) => s.underlay = Some(*l),
                                    InfoVxlan::Learning(l) => s.learning = Some(*l),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// The RTM_NEWLINK message for Weft's kernel IP-in-IP device (pure, tested).
pub fn ipip_link_message(spec: &IpipSpec) -> LinkMessage {
    LinkIpIp::new(&spec.name)
        .local(spec.local)
        .dev(spec.underlay)
        .ttl(0)
        .pmtudisc(true)
        .mtu(spec.mtu)
        .up()
        .build()
}

/// Whether an existing link is the IP-in-IP device `spec` describes.
fn ipip_matches(m: &LinkMessage, spec: &IpipSpec) -> bool {
    let mut kind = false;
    let mut local = None;
    for a in &m.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for info in infos {
                match info {
                    NlLinkInfo::Kind(InfoKind::IpIp) => kind = true,
                    NlLinkInfo::Data(InfoData::IpTunnel(attrs)) => {
                        for t in attrs {
                            if let InfoIpTunnel::Local(std::net::IpAddr::V4(ip)) = t {
                                local = Some(*ip);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    kind && local == Some(spec.local)
}

/// Turns TX checksum offload off with ethtool; logged, never fatal.
fn set_tx_checksum_off(dev: &str) {
    match std::process::Command::new("ethtool")
        .args(["-K", dev, "tx", "off"])
        .output()
    {
        Ok(o) if o.status.success() => tracing::info!(dev, "turned TX checksum offload off"),
        Ok(o) => {
            tracing::warn!(dev, error = %String::from_utf8_lossy(&o.stderr).trim(), "cannot turn TX checksum offload off")
        }
        Err(e) => {
            tracing::warn!(dev, error = %e, "cannot run ethtool to turn TX checksum offload off")
        }
    }
}

fn oif(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// Reads a kernel route back as a [`Route`] if it is Weft's.
fn to_route(m: &RouteMessage) -> Option<Route> {
    if m.header.protocol != RouteProtocol::from(WEFT_PROTO) || m.header.table != MAIN_TABLE {
        return None;
    }
    let dst_ip = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })?;
    let via = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    });
    let dst = Ipv4Net::new(dst_ip, m.header.destination_prefix_length).ok()?;
    if m.header.kind == RouteType::BlackHole {
        return Some(Route::blackhole(dst));
    }
    Some(Route {
        dst,
        via,
        dev: oif(m)?,
        onlink: m.header.flags.contains(RouteFlags::Onlink),
    })
}

/// The netlink message for a Weft route.
fn message(r: &Route) -> RouteMessage {
    if r.is_blackhole() {
        return RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(r.dst.addr(), r.dst.prefix_len())
            .protocol(RouteProtocol::from(WEFT_PROTO))
            .scope(RouteScope::Universe)
            .kind(RouteType::BlackHole)
            // Behind any other route for the same prefix (the bridge's connected route in
            // bridge mode): the blackhole only catches what nothing else takes.
            .priority(BLACKHOLE_METRIC)
            .build();
    }
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .output_interface(r.dev)
        .protocol(RouteProtocol::from(WEFT_PROTO))
        .kind(RouteType::Unicast);
    b = match r.via {
        Some(gw) => b.gateway(gw).scope(RouteScope::Universe),
        None => b.scope(RouteScope::Link),
    };
    if r.onlink {
        b = b.onlink();
    }
    b.build()
}

#[cfg(test)]
mod ipip_tests {
    //! The kernel IP-in-IP path cannot run on a kernel without the `ipip` module (this
    //! project's CI machine); its netlink message is checked here byte for byte instead.
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    #[test]
    fn ipip_message_says_what_ip_link_add_would() {
        let spec = IpipSpec {
            name: "weft.ipip".into(),
            local: "192.168.77.1".parse().unwrap(),
            underlay: 5,
            mtu: 1480,
            address: "10.244.1.0/32".parse().unwrap(),
        };
        let msg = ipip_link_message(&spec);
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        // IFLA_IFNAME (3) with the name, IFLA_MTU (4) with 1480, and inside IFLA_LINKINFO
        // the kind "ipip" must be present as raw attributes on the wire.
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"weft.ipip\0"));
        assert!(has(b"ipip"));
        assert!(has(&[8, 0, 4, 0, 0xc8, 0x05, 0, 0]), "IFLA_MTU 1480");
        assert!(has(&[8, 0, 2, 0, 192, 168, 77, 1]), "IFLA_IPTUN_LOCAL");
        assert!(has(&[8, 0, 1, 0, 5, 0, 0, 0]), "IFLA_IPTUN_LINK");
        assert!(has(&[5, 0, 4, 0, 0, 0, 0, 0]), "IFLA_IPTUN_TTL 0 (inherit)");
        assert!(has(&[5, 0, 10, 0, 1, 0, 0, 0]), "IFLA_IPTUN_PMTUDISC on");

        let parsed = LinkMessage::parse(&bytes[..]).unwrap();
        assert!(parsed.header.flags.contains(LinkFlags::Up));
        assert!(ipip_matches(&parsed, &spec));
        let moved = IpipSpec {
            local: "192.168.77.9".parse().unwrap(),
            ..spec
        };
        assert!(
            !ipip_matches(&parsed, &moved),
            "another local address means recreate"
        );
    }
}
