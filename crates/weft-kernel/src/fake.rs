//! An in-memory host for testing decision code without root: [`FakeNet`] keeps links,
//! addresses, routes, neighbour and FDB entries, settings and the firewall of each
//! network namespace it is asked about, and answers like the kernel (a duplicate route
//! is `EEXIST`, a gateway off every connected network `ENETUNREACH`, a missing device
//! `ENODEV`). It models state only: to have an operation or a single route refused,
//! wrap it (or any dataplane) in [`crate::faults::Faulty`].
//!
//! A test holds the [`FakeNet`] and hands [`FakeNet::host`] (or a namespace's view) to
//! the code under test as its [`Dataplane`]; it then reads the state back, or changes it
//! behind the code's back as an operator would.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::sync::mpsc;
use weft_plan::iface::{Addr6Info, AddrInfo, LinkInfo};
use weft_plan::link::{must_recreate, VxlanState};
use weft_plan::route::RouteChange;
use weft_plan::{
    Applied, Change, FdbEntry, FirewallPlan, LinkOutcome, MacAddr, Neighbour, OverlaySpec, Refusal,
    Route, RouteKind,
};

use crate::dataplane::{Dataplane, LinkSetting, LinkUpdate, VethPair};
use crate::error::KernelError;
use crate::monitor::KernelEvent;
use crate::nft_sets::{Elements, LoadedSets, SetTable, TableId};
use crate::prelude::*;
use crate::sysctl::setting_file;

/// What kind of link a fake link is.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeLinkKind {
    /// A link the test made (an external interface).
    Device,
    Bridge,
    Veth {
        peer: String,
    },
    Vxlan(VxlanState),
    Ipip {
        local: Ipv4Addr,
    },
    Tun,
}

#[derive(Debug, Clone)]
pub struct FakeLink {
    pub info: LinkInfo,
    pub kind: FakeLinkKind,
    pub controller: Option<u32>,
    pub gso_max_size: Option<u32>,
}

impl FakeLink {
    /// What reading the link returns (its bridge included).
    pub fn info(&self) -> LinkInfo {
        LinkInfo {
            controller: self.controller,
            ..self.info.clone()
        }
    }
}

/// One route in a fake namespace, and whether it carries Weft's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeRoute {
    pub route: Route,
    pub weft: bool,
}

#[derive(Debug, Default)]
struct Namespace {
    links: BTreeMap<u32, FakeLink>,
    addresses: Vec<AddrInfo>,
    addresses6: Vec<Addr6Info>,
    routes: BTreeMap<IpNet, FakeRoute>,
    default_dev: Option<u32>,
    neighbours: BTreeMap<(u32, std::net::IpAddr), MacAddr>,
    fdb: BTreeMap<(u32, MacAddr), std::net::IpAddr>,
    settings: BTreeMap<String, String>,
    forwarding: bool,
    firewall: Option<FirewallPlan>,
    /// Tables with named sets, by name, as loaded and updated since.
    tables: BTreeMap<TableId, SetTable>,
}

#[derive(Debug, Default)]
struct World {
    /// `None`: the host's own namespace.
    namespaces: BTreeMap<Option<PathBuf>, Namespace>,
    next_index: u32,
    /// Every change made through a dataplane (not by the test), in order.
    journal: Vec<String>,
    events: Option<mpsc::Sender<KernelEvent>>,
}

/// An in-memory host. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct FakeNet(Arc<Mutex<World>>);

/// One namespace's view of a [`FakeNet`]: what the code under test holds.
#[derive(Debug, Clone)]
pub struct FakeDataplane {
    net: FakeNet,
    ns: Option<PathBuf>,
}

fn refused(op: &'static str, errno: i32) -> KernelError {
    KernelError::Refused {
        op,
        refusal: Refusal::Errno(errno),
    }
}

impl FakeNet {
    pub fn new() -> FakeNet {
        FakeNet::default()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().expect("fake world lock")
    }

    /// The host namespace's view, to hand to the code under test.
    pub fn host(&self) -> FakeDataplane {
        self.view(None)
    }

    /// Another namespace's view (made on first use).
    pub fn namespace(&self, path: &Path) -> FakeDataplane {
        self.view(Some(path.to_owned()))
    }

    fn view(&self, ns: Option<PathBuf>) -> FakeDataplane {
        self.world().namespaces.entry(ns.clone()).or_default();
        FakeDataplane {
            net: self.clone(),
            ns,
        }
    }

    // ---- setting the scene, and changing it as an operator would ----

    /// Adds an up link of the test's own (an external interface) with an address; if
    /// `default` it carries the default route. Returns its index.
    pub fn add_interface(&self, name: &str, address: Ipv4Net, mtu: u32, default: bool) -> u32 {
        let mut w = self.world();
        let index = w.new_index();
        let ns = w.ns(&None);
        ns.links.insert(
            index,
            FakeLink {
                info: LinkInfo {
                    index,
                    name: name.into(),
                    mtu,
                    up: true,
                    mac: None,
                    controller: None,
                },
                kind: FakeLinkKind::Device,
                controller: None,
                gso_max_size: None,
            },
        );
        ns.addresses.push(AddrInfo {
            index,
            addr: address.addr(),
            prefix_len: address.prefix_len(),
        });
        if default {
            ns.default_dev = Some(index);
        }
        index
    }

    /// Deletes a route by hand, as an operator would; whether there was one.
    pub fn delete_route(&self, dst: impl Into<IpNet>) -> bool {
        self.world().ns(&None).routes.remove(&dst.into()).is_some()
    }

    /// Adds a Weft-marked route by hand (someone else's stale entry).
    pub fn put_weft_route(&self, route: Route) {
        self.world()
            .ns(&None)
            .routes
            .insert(route.dst, FakeRoute { route, weft: true });
    }

    /// Deletes a link by hand (with its addresses, routes and entries).
    pub fn delete_link(&self, name: &str) -> bool {
        let mut w = self.world();
        let ns = w.ns(&None);
        let Some(index) = ns.index_of(name) else {
            return false;
        };
        ns.remove_link(index);
        true
    }

    /// Sends a kernel event to whoever watches.
    pub fn notify(&self, event: KernelEvent) {
        if let Some(tx) = &self.world().events {
            let _ = tx.try_send(event);
        }
    }

    // ---- reading the state back ----

    /// Every route in the host namespace.
    pub fn routes(&self) -> Vec<FakeRoute> {
        self.routes_in(None)
    }

    pub fn routes_in(&self, ns: Option<&Path>) -> Vec<FakeRoute> {
        self.world()
            .ns(&ns.map(Path::to_owned))
            .routes
            .values()
            .copied()
            .collect()
    }

    /// Weft's routes in the host namespace.
    pub fn weft_routes(&self) -> Vec<Route> {
        self.routes()
            .into_iter()
            .filter(|r| r.weft)
            .map(|r| r.route)
            .collect()
    }

    pub fn link(&self, name: &str) -> Option<FakeLink> {
        self.link_in(None, name)
    }

    pub fn link_in(&self, ns: Option<&Path>, name: &str) -> Option<FakeLink> {
        let mut w = self.world();
        let ns = w.ns(&ns.map(Path::to_owned));
        let index = ns.index_of(name)?;
        ns.links.get(&index).cloned()
    }

    pub fn links_in(&self, ns: Option<&Path>) -> Vec<FakeLink> {
        self.world()
            .ns(&ns.map(Path::to_owned))
            .links
            .values()
            .cloned()
            .collect()
    }

    pub fn addresses_in(&self, ns: Option<&Path>, index: u32) -> Vec<Ipv4Net> {
        self.world().ns(&ns.map(Path::to_owned)).addresses_of(index)
    }

    pub fn addresses6_in(&self, ns: Option<&Path>, index: u32) -> Vec<Ipv6Net> {
        self.world()
            .ns(&ns.map(Path::to_owned))
            .all_addresses_of(index)
            .into_iter()
            .filter_map(|a| match a {
                IpNet::V6(a) => Some(a),
                IpNet::V4(_) => None,
            })
            .collect()
    }

    pub fn neighbours_in(&self, ns: Option<&Path>, index: u32) -> Vec<Neighbour> {
        self.world()
            .ns(&ns.map(Path::to_owned))
            .neighbours_of(index)
    }

    pub fn fdb(&self, index: u32) -> Vec<FdbEntry> {
        self.world().ns(&None).fdb_of(index)
    }

    /// A `/proc/sys` or `/sys` file's value as last written.
    pub fn setting(&self, file: &str) -> Option<String> {
        self.world().ns(&None).settings.get(file).cloned()
    }

    pub fn forwarding(&self) -> bool {
        self.world().ns(&None).forwarding
    }

    pub fn firewall(&self) -> Option<FirewallPlan> {
        self.world().ns(&None).firewall.clone()
    }

    /// An `ip` set table as it stands: its structure, then an `add element` line for
    /// each set with elements.
    pub fn nft_table(&self, table: &str) -> Option<String> {
        self.nft_table_of(&TableId::new(crate::nft_sets::Family::Ip, table))
    }

    /// A set table of either family as it stands (see [`FakeNet::nft_table`]).
    pub fn nft_table_of(&self, table: &TableId) -> Option<String> {
        self.world()
            .ns(&None)
            .tables
            .get(table)
            .map(|t| t.table.script() + &crate::nft_sets::statements(table, "add", &t.elements))
    }

    /// Every change the code under test made, in order (`"add route 10.244.2.0/24 ..."`).
    pub fn journal(&self) -> Vec<String> {
        self.world().journal.clone()
    }

    pub fn clear_journal(&self) {
        self.world().journal.clear();
    }
}

impl World {
    fn new_index(&mut self) -> u32 {
        self.next_index = self.next_index.max(1) + 1;
        self.next_index
    }

    fn ns(&mut self, ns: &Option<PathBuf>) -> &mut Namespace {
        self.namespaces.entry(ns.clone()).or_default()
    }

    fn log(&mut self, entry: String) {
        self.journal.push(entry);
    }
}

impl Namespace {
    fn index_of(&self, name: &str) -> Option<u32> {
        self.links
            .values()
            .find(|l| l.info.name == name)
            .map(|l| l.info.index)
    }

    fn addresses_of(&self, index: u32) -> Vec<Ipv4Net> {
        self.addresses
            .iter()
            .filter(|a| a.index == index)
            .filter_map(|a| Ipv4Net::new(a.addr, a.prefix_len).ok())
            .collect()
    }

    /// Both families' addresses of a link.
    fn all_addresses_of(&self, index: u32) -> Vec<IpNet> {
        let v6 = self
            .addresses6
            .iter()
            .filter(|a| a.index == index)
            .filter_map(|a| Ipv6Net::new(a.addr, a.prefix_len).ok())
            .map(IpNet::V6);
        self.addresses_of(index)
            .into_iter()
            .map(IpNet::V4)
            .chain(v6)
            .collect()
    }

    fn neighbours_of(&self, index: u32) -> Vec<Neighbour> {
        self.neighbours
            .iter()
            .filter(|((i, _), _)| *i == index)
            .map(|((_, ip), mac)| Neighbour { ip: *ip, mac: *mac })
            .collect()
    }

    fn fdb_of(&self, index: u32) -> Vec<FdbEntry> {
        self.fdb
            .iter()
            .filter(|((i, _), _)| *i == index)
            .map(|((_, mac), dst)| FdbEntry {
                mac: *mac,
                dst: *dst,
            })
            .collect()
    }

    fn remove_link(&mut self, index: u32) {
        self.links.remove(&index);
        self.addresses.retain(|a| a.index != index);
        self.addresses6.retain(|a| a.index != index);
        self.routes.retain(|_, r| r.route.dev() != Some(index));
        self.neighbours.retain(|(i, _), _| *i != index);
        self.fdb.retain(|(i, _), _| *i != index);
    }

    /// Whether the kernel would take `route`: its device exists, and a plain gateway
    /// lies in a network connected to it.
    fn admits(&self, route: &Route) -> Result<(), i32> {
        let Some(dev) = route.dev() else {
            return Ok(());
        };
        if !self.links.contains_key(&dev) {
            return Err(libc::ENODEV);
        }
        if let RouteKind::Via { gateway, .. } = route.kind {
            let connected = self
                .all_addresses_of(dev)
                .iter()
                .any(|net| net.trunc().contains(&gateway))
                || self.routes.values().any(|r| {
                    r.route.kind == RouteKind::Device { dev } && r.route.dst.contains(&gateway)
                });
            if !connected {
                return Err(libc::ENETUNREACH);
            }
        }
        Ok(())
    }
}

impl FakeDataplane {
    fn world(&self) -> MutexGuard<'_, World> {
        self.net.world()
    }

    /// Applies changes to one of a namespace's keyed tables of entries on a link
    /// (neighbours by IP, FDB entries by MAC), refusing as the kernel would.
    fn apply_entries<T: Copy + std::fmt::Debug, K: Ord, V>(
        &self,
        what: &str,
        index: u32,
        changes: Vec<Change<T>>,
        table: fn(&mut Namespace) -> &mut BTreeMap<(u32, K), V>,
        entry: fn(&T) -> (K, V),
    ) -> Applied<T> {
        let mut w = self.world();
        let mut applied = Applied::default();
        for change in changes {
            let ns = w.ns(&self.ns);
            let has_link = ns.links.contains_key(&index);
            let (key, value) = entry(change.item());
            let result = match change {
                _ if !has_link => Err(Refusal::Errno(libc::ENODEV)),
                Change::Add(_) | Change::Replace(_) => {
                    table(ns).insert((index, key), value);
                    Ok(())
                }
                Change::Remove(_) => match table(ns).remove(&(index, key)) {
                    Some(_) => Ok(()),
                    None => Err(Refusal::Errno(libc::ENOENT)),
                },
            };
            if result.is_ok() {
                w.log(format!("{what} {change:?}"));
            }
            applied.record(change, result);
        }
        applied
    }

    /// The [`FakeNet`] this view belongs to.
    pub fn net(&self) -> &FakeNet {
        &self.net
    }

    fn ensure_vxlan(
        &self,
        w: &mut World,
        spec: &weft_plan::VxlanSpec,
    ) -> Result<(u32, LinkOutcome), KernelError> {
        let state = |index| VxlanState {
            index,
            is_vxlan: true,
            vni: Some(spec.vni),
            port: Some(spec.port),
            local: Some(spec.local),
            underlay: Some(spec.underlay),
            learning: Some(false),
            proxy: Some(spec.proxy),
            mac: Some(spec.mac),
            mtu: spec.mtu,
            up: true,
        };
        let existing = {
            let ns = w.ns(&self.ns);
            ns.index_of(&spec.name).map(|i| ns.links[&i].clone())
        };
        let (outcome, old) = match existing {
            None => (LinkOutcome::Created, None),
            Some(link) => {
                let have = match &link.kind {
                    FakeLinkKind::Vxlan(s) => VxlanState {
                        mtu: link.info.mtu,
                        up: link.info.up,
                        mac: link.info.mac,
                        ..s.clone()
                    },
                    _ => VxlanState::default(),
                };
                match must_recreate(spec, &have) {
                    Some(why) => (LinkOutcome::Recreated(why), Some(link.info.index)),
                    None => {
                        let mut what = Vec::new();
                        if have.mtu != spec.mtu {
                            what.push(format!("mtu {} -> {}", have.mtu, spec.mtu));
                        }
                        if have.mac != Some(spec.mac) {
                            what.push(format!("mac -> {}", spec.mac));
                        }
                        if !have.up {
                            what.push("up".into());
                        }
                        let l = w
                            .ns(&self.ns)
                            .links
                            .get_mut(&link.info.index)
                            .expect("link");
                        l.info.mtu = spec.mtu;
                        l.info.mac = Some(spec.mac);
                        l.info.up = true;
                        return Ok((link.info.index, LinkOutcome::updated(what)));
                    }
                }
            }
        };
        let index = self.replace_link(w, old, &spec.name, spec.mtu, Some(spec.mac), |i| {
            FakeLinkKind::Vxlan(state(i))
        });
        Ok((index, outcome))
    }

    /// Removes link `old` (if any) and makes a new, up link in its place.
    fn replace_link(
        &self,
        w: &mut World,
        old: Option<u32>,
        name: &str,
        mtu: u32,
        mac: Option<MacAddr>,
        kind: impl FnOnce(u32) -> FakeLinkKind,
    ) -> u32 {
        if let Some(old) = old {
            w.ns(&self.ns).remove_link(old);
        }
        let index = w.new_index();
        let link = FakeLink {
            info: LinkInfo {
                index,
                name: name.to_owned(),
                mtu,
                up: true,
                mac,
                controller: None,
            },
            kind: kind(index),
            controller: None,
            gso_max_size: None,
        };
        w.ns(&self.ns).links.insert(index, link);
        index
    }

    fn ensure_plain(
        &self,
        w: &mut World,
        name: &str,
        mtu: u32,
        kind: FakeLinkKind,
        create: bool,
    ) -> Result<(u32, LinkOutcome), KernelError> {
        let existing = w.ns(&self.ns).index_of(name);
        match existing {
            Some(index) if w.ns(&self.ns).links[&index].kind == kind => {
                let l = w.ns(&self.ns).links.get_mut(&index).expect("link");
                let mut what = Vec::new();
                if l.info.mtu != mtu {
                    what.push(format!("mtu {} -> {mtu}", l.info.mtu));
                    l.info.mtu = mtu;
                }
                if !l.info.up {
                    what.push("up".into());
                    l.info.up = true;
                }
                Ok((index, LinkOutcome::updated(what)))
            }
            _ if !create => Err(KernelError::Missing(name.to_owned())),
            existing => {
                let index = self.replace_link(w, existing, name, mtu, None, |_| kind);
                Ok((
                    index,
                    if existing.is_some() {
                        LinkOutcome::Recreated(format!("not the {name} Weft wants"))
                    } else {
                        LinkOutcome::Created
                    },
                ))
            }
        }
    }
}

#[async_trait]
impl Links for FakeDataplane {
    async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).links.values().map(FakeLink::info).collect())
    }

    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        let mut w = self.world();
        let ns = w.ns(&self.ns);
        Ok(ns.index_of(name).map(|i| ns.links[&i].info()))
    }

    async fn ensure_overlay(&self, spec: &OverlaySpec) -> Result<(u32, LinkOutcome), KernelError> {
        let mut w = self.world();
        let (index, outcome) = match spec {
            OverlaySpec::Vxlan(s) => self.ensure_vxlan(&mut w, s)?,
            OverlaySpec::Ipip(s) => self.ensure_plain(
                &mut w,
                &s.name,
                s.mtu,
                FakeLinkKind::Ipip { local: s.local },
                true,
            )?,
            OverlaySpec::Tun(s) => {
                self.ensure_plain(&mut w, &s.name, s.mtu, FakeLinkKind::Tun, false)?
            }
        };
        let ns = w.ns(&self.ns);
        let readdressed = spec
            .address()
            .is_some_and(|a| ns.addresses_of(index) != [a]);
        if let (true, Some(address)) = (readdressed, spec.address()) {
            ns.addresses.retain(|a| a.index != index);
            ns.addresses.push(AddrInfo {
                index,
                addr: address.addr(),
                prefix_len: address.prefix_len(),
            });
        }
        let outcome = match outcome {
            LinkOutcome::Unchanged if readdressed => {
                LinkOutcome::Updated(format!("address {}", spec.address().expect("readdressed")))
            }
            other => other,
        };
        if outcome != LinkOutcome::Unchanged {
            w.log(format!("overlay {} {outcome}", spec.name()));
        }
        Ok((index, outcome))
    }

    async fn ensure_bridge(&self, name: &str, mtu: u32) -> Result<LinkInfo, KernelError> {
        let mut w = self.world();
        let (index, outcome) = self.ensure_plain(&mut w, name, mtu, FakeLinkKind::Bridge, true)?;
        if outcome == LinkOutcome::Created {
            w.log(format!("bridge {name}"));
        }
        Ok(w.ns(&self.ns).links[&index].info.clone())
    }

    async fn add_veth(&self, pair: &VethPair) -> Result<(), KernelError> {
        let mut w = self.world();
        let peer_ns = Some(pair.peer_netns.clone());
        if w.ns(&self.ns).index_of(&pair.host).is_some()
            || w.ns(&peer_ns).index_of(&pair.peer).is_some()
        {
            return Err(KernelError::Exists(format!(
                "{} or {} (in {})",
                pair.host,
                pair.peer,
                pair.peer_netns.display()
            )));
        }
        for (ns, name, peer, mac) in [
            (&self.ns, &pair.host, &pair.peer, pair.host_mac),
            (&peer_ns, &pair.peer, &pair.host, None),
        ] {
            let index = w.new_index();
            let mac = mac.or_else(|| Some(MacAddr::derived(name.as_bytes())));
            w.ns(ns).links.insert(
                index,
                FakeLink {
                    info: LinkInfo {
                        index,
                        name: name.clone(),
                        mtu: pair.mtu,
                        up: false,
                        mac,
                        controller: None,
                    },
                    kind: FakeLinkKind::Veth { peer: peer.clone() },
                    controller: None,
                    gso_max_size: pair.gso_max_size,
                },
            );
        }
        w.log(format!("veth {} / {}", pair.host, pair.peer));
        Ok(())
    }

    async fn set_link(&self, index: u32, update: LinkUpdate) -> Result<(), KernelError> {
        let mut w = self.world();
        let link = w
            .ns(&self.ns)
            .links
            .get_mut(&index)
            .ok_or_else(|| refused("set link", libc::ENODEV))?;
        link.info.up |= update.up;
        if update.controller.is_some() {
            link.controller = update.controller;
        }
        let name = link.info.name.clone();
        w.log(format!("set {name} {update:?}"));
        Ok(())
    }

    async fn del_link(&self, index: u32) -> Result<(), KernelError> {
        let mut w = self.world();
        let ns = w.ns(&self.ns);
        let Some(link) = ns.links.get(&index).cloned() else {
            return Ok(());
        };
        ns.remove_link(index);
        // A veth's peer goes with it, wherever it is.
        if let FakeLinkKind::Veth { peer } = &link.kind {
            for ns in w.namespaces.values_mut() {
                if let Some(i) = ns.index_of(peer) {
                    ns.remove_link(i);
                }
            }
        }
        w.log(format!("delete link {}", link.info.name));
        Ok(())
    }
}

#[async_trait]
impl Addresses for FakeDataplane {
    async fn ipv4_addresses(&self) -> Result<Vec<AddrInfo>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).addresses.clone())
    }

    async fn ipv6_addresses(&self) -> Result<Vec<Addr6Info>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).addresses6.clone())
    }

    async fn ensure_address(&self, index: u32, address: IpNet) -> Result<(), KernelError> {
        let mut w = self.world();
        let ns = w.ns(&self.ns);
        if !ns.links.contains_key(&index) {
            return Err(refused("add address", libc::ENODEV));
        }
        if !ns.all_addresses_of(index).contains(&address) {
            match address {
                IpNet::V4(a) => ns.addresses.push(AddrInfo {
                    index,
                    addr: a.addr(),
                    prefix_len: a.prefix_len(),
                }),
                IpNet::V6(a) => ns.addresses6.push(Addr6Info {
                    index,
                    addr: a.addr(),
                    prefix_len: a.prefix_len(),
                }),
            }
            w.log(format!("address {address} on #{index}"));
        }
        Ok(())
    }
}

#[async_trait]
impl Routes for FakeDataplane {
    async fn default_route_dev(&self) -> Result<Option<u32>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).default_dev)
    }

    async fn weft_routes(&self) -> Result<Vec<Route>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns)
            .routes
            .values()
            .filter(|r| r.weft)
            .map(|r| r.route)
            .collect())
    }

    async fn apply_route_changes(
        &self,
        changes: Vec<RouteChange>,
    ) -> Result<Applied<Route>, KernelError> {
        let mut w = self.world();
        let mut applied = Applied::default();
        for change in changes {
            let r = *change.item();
            let ns = w.ns(&self.ns);
            let result = match change {
                Change::Add(_) if ns.routes.contains_key(&r.dst) => Err(libc::EEXIST),
                Change::Add(_) | Change::Replace(_) => ns.admits(&r).map(|()| {
                    ns.routes.insert(
                        r.dst,
                        FakeRoute {
                            route: r,
                            weft: true,
                        },
                    );
                }),
                Change::Remove(_) => match ns.routes.get(&r.dst) {
                    Some(have) if have.weft && have.route == r => {
                        ns.routes.remove(&r.dst);
                        Ok(())
                    }
                    _ => Err(libc::ESRCH),
                },
            };
            if result.is_ok() {
                w.log(match change {
                    Change::Add(r) => format!("add route {r}"),
                    Change::Replace(r) => format!("replace route {r}"),
                    Change::Remove(r) => format!("remove route {r}"),
                });
            }
            applied.record(change, result.map_err(Refusal::Errno));
        }
        Ok(applied)
    }

    async fn add_route(&self, route: &Route) -> Result<(), KernelError> {
        let mut w = self.world();
        let ns = w.ns(&self.ns);
        if ns.routes.contains_key(&route.dst) {
            return Err(refused("add route", libc::EEXIST));
        }
        ns.admits(route).map_err(|e| refused("add route", e))?;
        ns.routes.insert(
            route.dst,
            FakeRoute {
                route: *route,
                weft: false,
            },
        );
        w.log(format!("add unmarked route {route}"));
        Ok(())
    }
}

#[async_trait]
impl Neighbours for FakeDataplane {
    async fn neighbours(&self, index: u32) -> Result<Vec<Neighbour>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).neighbours_of(index))
    }

    async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).fdb_of(index))
    }

    async fn apply_neighbour_changes(
        &self,
        index: u32,
        changes: Vec<Change<Neighbour>>,
    ) -> Result<Applied<Neighbour>, KernelError> {
        Ok(self.apply_entries(
            "neighbour",
            index,
            changes,
            |ns| &mut ns.neighbours,
            |n| (n.ip, n.mac),
        ))
    }

    async fn apply_fdb_changes(
        &self,
        index: u32,
        changes: Vec<Change<FdbEntry>>,
    ) -> Result<Applied<FdbEntry>, KernelError> {
        Ok(self.apply_entries("fdb", index, changes, |ns| &mut ns.fdb, |f| (f.mac, f.dst)))
    }
}

impl Sysctls for FakeDataplane {
    fn forwarding(&self) -> Result<bool, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).forwarding)
    }

    fn ensure_forwarding(&self) -> Result<bool, KernelError> {
        let mut w = self.world();
        let ns = w.ns(&self.ns);
        let changed = !ns.forwarding;
        ns.forwarding = true;
        Ok(changed)
    }

    fn ipv6_forwarding(&self) -> Result<bool, KernelError> {
        let mut w = self.world();
        let file = format!("/proc/sys/{}", crate::sysctl::FORWARDING6);
        Ok(w.ns(&self.ns).settings.get(&file).is_some_and(|v| v == "1"))
    }

    fn set_link_setting(&self, setting: &LinkSetting) -> Result<(), KernelError> {
        let mut w = self.world();
        let (file, value) = setting_file(setting);
        // As the kernel's: writing what is already there changes nothing.
        if w.ns(&self.ns)
            .settings
            .insert(file.clone(), value.into())
            .as_deref()
            != Some(value)
        {
            w.log(format!("{file} = {value}"));
        }
        Ok(())
    }
}

impl Firewall for FakeDataplane {
    fn apply_firewall(&self, plan: &FirewallPlan) -> Result<bool, KernelError> {
        let mut w = self.world();
        let ns = w.ns(&self.ns);
        if ns.firewall.as_ref() == Some(plan) {
            return Ok(false);
        }
        ns.firewall = Some(plan.clone());
        w.log("firewall".into());
        Ok(true)
    }

    fn load_set_table(&self, table: &SetTable) -> Result<(), KernelError> {
        let mut w = self.world();
        w.ns(&self.ns).tables.insert(table.id(), table.clone());
        w.log(format!("nft table {}", table.id()));
        Ok(())
    }

    fn set_table(&self, table: &TableId) -> Result<Option<LoadedSets>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).tables.get(table).map(|t| LoadedSets {
            fingerprint: t.fingerprint().to_owned(),
            elements: t.elements.clone(),
            counters: Vec::new(),
        }))
    }

    fn set_table_fingerprint(&self, table: &TableId) -> Result<Option<String>, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns)
            .tables
            .get(table)
            .map(|t| t.fingerprint().to_owned()))
    }

    fn set_table_counters(
        &self,
        table: &TableId,
    ) -> Result<Vec<crate::nft_sets::RuleCounter>, KernelError> {
        let _ = table; // the fake counts no packets
        Ok(Vec::new())
    }

    fn remove_set_table(&self, table: &TableId) -> Result<(), KernelError> {
        let mut w = self.world();
        if w.ns(&self.ns).tables.remove(table).is_some() {
            w.log(format!("nft delete table {table}"));
        }
        Ok(())
    }

    fn update_set_table(
        &self,
        table: &TableId,
        add: &Elements,
        remove: &Elements,
    ) -> Result<(), KernelError> {
        let mut w = self.world();
        let Some(t) = w.ns(&self.ns).tables.get_mut(table) else {
            return Err(KernelError::Firewall(crate::nft::NftError::Refused {
                cmd: "nft",
                stderr: format!("Error: No such file or directory (table {table})"),
            }));
        };
        for (name, elems) in remove {
            if let Some(have) = t.elements.get_mut(name) {
                have.retain(|e| !elems.contains(e));
            }
        }
        for (name, elems) in add {
            t.elements
                .entry(name.clone())
                .or_default()
                .extend(elems.iter().cloned());
        }
        w.log(format!("nft elements {table}"));
        Ok(())
    }

    fn firewall_loaded(&self) -> Result<bool, KernelError> {
        let mut w = self.world();
        Ok(w.ns(&self.ns).firewall.is_some())
    }

    fn ensure_iptables_forward(&self, _network: &Ipv4Net) -> Result<usize, KernelError> {
        // The fake host has no iptables FORWARD policy of DROP to work around.
        Ok(0)
    }
}

#[async_trait]
impl Offloads for FakeDataplane {
    async fn ensure_big_tcp(&self, index: u32, wanted: u32) -> Result<Option<u32>, KernelError> {
        let mut w = self.world();
        let link = w
            .ns(&self.ns)
            .links
            .get_mut(&index)
            .ok_or_else(|| KernelError::Missing(format!("#{index}")))?;
        link.gso_max_size = Some(wanted);
        Ok(Some(wanted))
    }
}

impl Namespaces for FakeDataplane {
    fn watch(&self) -> Result<mpsc::Receiver<KernelEvent>, KernelError> {
        let mut w = self.world();
        let (tx, rx) = mpsc::channel(1);
        w.events = Some(tx);
        Ok(rx)
    }

    fn enter(&self, netns: &Path) -> Result<Box<dyn Dataplane>, KernelError> {
        Ok(Box::new(self.net.namespace(netns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn routes_behave_as_the_kernel_s() {
        let fake = FakeNet::new();
        let eth0 = fake.add_interface("eth0", net("192.168.1.1/24"), 1500, true);
        let dp = fake.host();
        let good = Route::via(
            net("10.244.2.0/24"),
            "192.168.1.2".parse::<Ipv4Addr>().unwrap(),
            eth0,
        );
        let off_net = Route::via(
            net("10.244.3.0/24"),
            "172.16.0.3".parse::<Ipv4Addr>().unwrap(),
            eth0,
        );
        let no_dev = Route::onlink(
            net("10.244.4.0/24"),
            "10.244.4.0".parse::<Ipv4Addr>().unwrap(),
            99,
        );
        let report = dp.apply_routes(&[good, off_net, no_dev]).await.unwrap();
        assert_eq!(report.applied.added, 1);
        let errnos: Vec<_> = report
            .applied
            .failed
            .iter()
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(
            errnos,
            [
                Refusal::Errno(libc::ENETUNREACH),
                Refusal::Errno(libc::ENODEV)
            ]
        );
        assert_eq!(fake.weft_routes(), [good]);
        // The same plan again changes nothing.
        fake.clear_journal();
        assert!(!dp.apply_routes(&[good]).await.unwrap().changed());
        assert!(fake.journal().is_empty());
        // A route without the mark is not Weft's to read or remove.
        let theirs = Route::device(net("10.244.9.9/32"), eth0);
        dp.add_route(&theirs).await.unwrap();
        assert_eq!(dp.weft_routes().await.unwrap(), [good]);
        dp.apply_routes(&[]).await.unwrap();
        assert_eq!(
            fake.routes(),
            [FakeRoute {
                route: theirs,
                weft: false
            }]
        );
    }

    #[tokio::test]
    async fn a_watcher_hears_what_the_test_announces() {
        let fake = FakeNet::new();
        let mut events = fake.host().watch().unwrap();
        fake.notify(KernelEvent::Route);
        assert_eq!(events.recv().await, Some(KernelEvent::Route));
    }

    #[tokio::test]
    async fn a_veth_peer_is_born_in_its_namespace_and_dies_with_its_host_side() {
        let fake = FakeNet::new();
        let dp = fake.host();
        let ctr = Path::new("/run/netns/c1");
        let pair = VethPair {
            host: "weftabc".into(),
            host_mac: None,
            peer: "eth0".into(),
            peer_netns: ctr.into(),
            mtu: 1450,
            gso_max_size: None,
        };
        dp.add_veth(&pair).await.unwrap();
        assert!(matches!(
            dp.add_veth(&pair).await,
            Err(KernelError::Exists(_))
        ));
        let inside = dp.enter(ctr).unwrap();
        assert!(inside.link("eth0").await.unwrap().is_some());
        assert!(dp.link("eth0").await.unwrap().is_none());
        let host = dp.link_index("weftabc").await.unwrap().unwrap();
        dp.del_link(host).await.unwrap();
        assert!(inside.link("eth0").await.unwrap().is_none());
    }
}
