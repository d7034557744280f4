//! Fault injection around any dataplane: [`Faulty`] wraps a [`Dataplane`] (the fake, or
//! a real one in a namespace) and refuses the operations a test names, with the errno
//! it names, until healed; everything else passes through to the wrapped dataplane.
//! The fake itself only models state ([`crate::fake`]); what fails, and when, is here.
//!
//! A test keeps the [`Faults`] handle and hands `Faulty::new(dataplane, faults.clone())`
//! to the code under test.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::mpsc;
use weft_plan::iface::{Addr6Info, AddrInfo, LinkInfo};
use weft_plan::route::RouteChange;
use weft_plan::{
    Applied, Change, FdbEntry, FirewallPlan, LinkOutcome, Neighbour, OverlaySpec, Refusal, Route,
};

use crate::dataplane::{Dataplane, LinkSetting, LinkUpdate, VethPair};
use crate::error::KernelError;
use crate::monitor::KernelEvent;
use crate::nft_sets::{Elements, LoadedSets, RuleCounter, SetTable, TableId};
use crate::prelude::*;

/// An operation a test can have refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultOp {
    ReadLinks,
    ReadAddresses,
    ReadRoutes,
    ReadNeighbours,
    ReadFdb,
    /// Creating or changing an overlay device.
    Overlay,
    Bridge,
    Veth,
    /// Changing a link's state, or deleting it; and its offloads.
    SetLink,
    Address,
    /// Adding a route without Weft's mark.
    AddRoute,
    /// Applying a batch of Weft's routes (the whole batch fails, not single changes).
    RouteBatch,
    /// Each neighbour or FDB change (reported one by one, as the kernel does).
    Neighbour,
    Sysctl,
    Firewall,
    Watch,
    /// Entering another namespace.
    Enter,
}

#[derive(Debug, Default)]
struct State {
    ops: BTreeMap<FaultOp, Refusal>,
    routes: BTreeMap<IpNet, i32>,
}

/// The faults in force. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

impl Faults {
    pub fn new() -> Faults {
        Faults::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("faults lock")
    }

    /// Refuses `op` with `errno` until [`Faults::heal`].
    pub fn fail(&self, op: FaultOp, errno: i32) {
        self.state().ops.insert(op, Refusal::Errno(errno));
    }

    pub fn heal(&self, op: FaultOp) {
        self.state().ops.remove(&op);
    }

    /// Refuses every change to the route for `dst` with `errno`; the rest still apply.
    pub fn refuse_route(&self, dst: impl Into<IpNet>, errno: i32) {
        self.state().routes.insert(dst.into(), errno);
    }

    pub fn accept_route(&self, dst: impl Into<IpNet>) {
        self.state().routes.remove(&dst.into());
    }

    fn refusal(&self, op: FaultOp) -> Option<Refusal> {
        self.state().ops.get(&op).cloned()
    }

    fn check(&self, op: FaultOp, what: &'static str) -> Result<(), KernelError> {
        match self.refusal(op) {
            Some(refusal) => Err(KernelError::Refused { op: what, refusal }),
            None => Ok(()),
        }
    }
}

/// A dataplane that refuses what its [`Faults`] say and passes the rest through. `D`
/// may be unsized: another namespace's view is a `Faulty<dyn Dataplane>`.
pub struct Faulty<D: ?Sized> {
    faults: Faults,
    inner: Box<D>,
}

impl<D> Faulty<D> {
    pub fn new(inner: D, faults: Faults) -> Faulty<D> {
        Faulty {
            faults,
            inner: Box::new(inner),
        }
    }
}

impl<D: ?Sized> std::fmt::Debug for Faulty<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty")
            .field("faults", &self.faults)
            .finish()
    }
}

impl<D: ?Sized> Faulty<D> {
    /// Each change refused with `op`'s refusal, when it has one; else `None`.
    fn refuse_each<T>(
        &self,
        op: FaultOp,
        changes: Vec<Change<T>>,
    ) -> Result<Applied<T>, Vec<Change<T>>> {
        match self.faults.refusal(op) {
            Some(refusal) => {
                let mut applied = Applied::default();
                for c in changes {
                    applied.record(c, Err(refusal.clone()));
                }
                Ok(applied)
            }
            None => Err(changes),
        }
    }
}

#[async_trait]
impl<D: Links + ?Sized> Links for Faulty<D> {
    async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        self.faults.check(FaultOp::ReadLinks, "list links")?;
        self.inner.links().await
    }

    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        self.faults.check(FaultOp::ReadLinks, "read link")?;
        self.inner.link(name).await
    }

    async fn ensure_overlay(&self, spec: &OverlaySpec) -> Result<(u32, LinkOutcome), KernelError> {
        self.faults
            .check(FaultOp::Overlay, "set up the overlay device")?;
        self.inner.ensure_overlay(spec).await
    }

    async fn ensure_bridge(&self, name: &str, mtu: u32) -> Result<LinkInfo, KernelError> {
        self.faults.check(FaultOp::Bridge, "create bridge")?;
        self.inner.ensure_bridge(name, mtu).await
    }

    async fn add_veth(&self, pair: &VethPair) -> Result<(), KernelError> {
        self.faults.check(FaultOp::Veth, "create veth pair")?;
        self.inner.add_veth(pair).await
    }

    async fn set_link(&self, index: u32, update: LinkUpdate) -> Result<(), KernelError> {
        self.faults.check(FaultOp::SetLink, "set link")?;
        self.inner.set_link(index, update).await
    }

    async fn del_link(&self, index: u32) -> Result<(), KernelError> {
        self.faults.check(FaultOp::SetLink, "delete link")?;
        self.inner.del_link(index).await
    }
}

#[async_trait]
impl<D: Addresses + ?Sized> Addresses for Faulty<D> {
    async fn ipv4_addresses(&self) -> Result<Vec<AddrInfo>, KernelError> {
        self.faults
            .check(FaultOp::ReadAddresses, "list addresses")?;
        self.inner.ipv4_addresses().await
    }

    async fn ipv6_addresses(&self) -> Result<Vec<Addr6Info>, KernelError> {
        self.faults
            .check(FaultOp::ReadAddresses, "list addresses")?;
        self.inner.ipv6_addresses().await
    }

    async fn ensure_address(&self, index: u32, address: IpNet) -> Result<(), KernelError> {
        self.faults.check(FaultOp::Address, "add address")?;
        self.inner.ensure_address(index, address).await
    }
}

#[async_trait]
impl<D: Routes + ?Sized> Routes for Faulty<D> {
    async fn default_route_dev(&self) -> Result<Option<u32>, KernelError> {
        self.faults.check(FaultOp::ReadRoutes, "list routes")?;
        self.inner.default_route_dev().await
    }

    async fn weft_routes(&self) -> Result<Vec<Route>, KernelError> {
        self.faults.check(FaultOp::ReadRoutes, "list routes")?;
        self.inner.weft_routes().await
    }

    async fn apply_route_changes(
        &self,
        changes: Vec<RouteChange>,
    ) -> Result<Applied<Route>, KernelError> {
        self.faults.check(FaultOp::RouteBatch, "apply routes")?;
        let refused = self.faults.state().routes.clone();
        let (no, go): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|c| refused.contains_key(&c.item().dst));
        let mut applied = self.inner.apply_route_changes(go).await?;
        for c in no {
            let errno = refused[&c.item().dst];
            applied.record(c, Err(Refusal::Errno(errno)));
        }
        Ok(applied)
    }

    async fn add_route(&self, route: &Route) -> Result<(), KernelError> {
        self.faults.check(FaultOp::AddRoute, "add route")?;
        self.inner.add_route(route).await
    }
}

#[async_trait]
impl<D: Neighbours + ?Sized> Neighbours for Faulty<D> {
    async fn neighbours(&self, index: u32) -> Result<Vec<Neighbour>, KernelError> {
        self.faults
            .check(FaultOp::ReadNeighbours, "list neighbours")?;
        self.inner.neighbours(index).await
    }

    async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>, KernelError> {
        self.faults.check(FaultOp::ReadFdb, "list fdb")?;
        self.inner.fdb(index).await
    }

    async fn apply_neighbour_changes(
        &self,
        index: u32,
        changes: Vec<Change<Neighbour>>,
    ) -> Result<Applied<Neighbour>, KernelError> {
        match self.refuse_each(FaultOp::Neighbour, changes) {
            Ok(refused) => Ok(refused),
            Err(changes) => self.inner.apply_neighbour_changes(index, changes).await,
        }
    }

    async fn apply_fdb_changes(
        &self,
        index: u32,
        changes: Vec<Change<FdbEntry>>,
    ) -> Result<Applied<FdbEntry>, KernelError> {
        match self.refuse_each(FaultOp::Neighbour, changes) {
            Ok(refused) => Ok(refused),
            Err(changes) => self.inner.apply_fdb_changes(index, changes).await,
        }
    }
}

impl<D: Sysctls + ?Sized> Sysctls for Faulty<D> {
    fn forwarding(&self) -> Result<bool, KernelError> {
        self.faults.check(FaultOp::Sysctl, "net/ipv4/ip_forward")?;
        self.inner.forwarding()
    }

    fn ensure_forwarding(&self) -> Result<bool, KernelError> {
        self.faults.check(FaultOp::Sysctl, "net/ipv4/ip_forward")?;
        self.inner.ensure_forwarding()
    }

    fn ipv6_forwarding(&self) -> Result<bool, KernelError> {
        self.faults
            .check(FaultOp::Sysctl, "net/ipv6/conf/all/forwarding")?;
        self.inner.ipv6_forwarding()
    }

    fn set_link_setting(&self, setting: &LinkSetting) -> Result<(), KernelError> {
        self.faults.check(FaultOp::Sysctl, "write setting")?;
        self.inner.set_link_setting(setting)
    }
}

impl<D: Firewall + ?Sized> Firewall for Faulty<D> {
    fn apply_firewall(&self, plan: &FirewallPlan) -> Result<bool, KernelError> {
        self.faults
            .check(FaultOp::Firewall, "load nftables rules")?;
        self.inner.apply_firewall(plan)
    }

    fn firewall_loaded(&self) -> Result<bool, KernelError> {
        self.faults
            .check(FaultOp::Firewall, "list nftables tables")?;
        self.inner.firewall_loaded()
    }

    fn load_set_table(&self, table: &SetTable) -> Result<(), KernelError> {
        self.faults
            .check(FaultOp::Firewall, "load an nftables table")?;
        self.inner.load_set_table(table)
    }

    fn set_table(&self, table: &TableId) -> Result<Option<LoadedSets>, KernelError> {
        self.faults
            .check(FaultOp::Firewall, "list an nftables table")?;
        self.inner.set_table(table)
    }

    fn set_table_fingerprint(&self, table: &TableId) -> Result<Option<String>, KernelError> {
        self.faults
            .check(FaultOp::Firewall, "read an nftables table's comment")?;
        self.inner.set_table_fingerprint(table)
    }

    fn set_table_counters(&self, table: &TableId) -> Result<Vec<RuleCounter>, KernelError> {
        self.faults
            .check(FaultOp::Firewall, "read an nftables table's counters")?;
        self.inner.set_table_counters(table)
    }

    fn remove_set_table(&self, table: &TableId) -> Result<(), KernelError> {
        self.faults
            .check(FaultOp::Firewall, "remove an nftables table")?;
        self.inner.remove_set_table(table)
    }

    fn update_set_table(
        &self,
        table: &TableId,
        add: &Elements,
        remove: &Elements,
    ) -> Result<(), KernelError> {
        self.faults
            .check(FaultOp::Firewall, "change nftables set elements")?;
        self.inner.update_set_table(table, add, remove)
    }

    fn ensure_iptables_forward(&self, network: &Ipv4Net) -> Result<usize, KernelError> {
        self.faults
            .check(FaultOp::Firewall, "insert iptables FORWARD rules")?;
        self.inner.ensure_iptables_forward(network)
    }
}

#[async_trait]
impl<D: Offloads + ?Sized> Offloads for Faulty<D> {
    async fn ensure_big_tcp(&self, index: u32, wanted: u32) -> Result<Option<u32>, KernelError> {
        self.faults
            .check(FaultOp::SetLink, "set the IPv4 GSO/GRO limits")?;
        self.inner.ensure_big_tcp(index, wanted).await
    }
}

impl<D: Namespaces + ?Sized> Namespaces for Faulty<D> {
    fn watch(&self) -> Result<mpsc::Receiver<KernelEvent>, KernelError> {
        self.faults.check(FaultOp::Watch, "watch kernel events")?;
        self.inner.watch()
    }

    /// The other namespace's view, under the same faults.
    fn enter(&self, netns: &Path) -> Result<Box<dyn Dataplane>, KernelError> {
        self.faults.check(FaultOp::Enter, "enter a namespace")?;
        let inner: Box<dyn Dataplane> = self.inner.enter(netns)?;
        Ok(Box::new(Faulty {
            faults: self.faults.clone(),
            inner,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeNet;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn faults_are_told_and_healed() {
        let fake = FakeNet::new();
        let faults = Faults::new();
        let dp = Faulty::new(fake.host(), faults.clone());
        faults.fail(FaultOp::ReadRoutes, libc::EBUSY);
        let err = dp.weft_routes().await.unwrap_err();
        assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");
        assert!(
            fake.host().weft_routes().await.is_ok(),
            "the fake itself refuses nothing"
        );
        faults.heal(FaultOp::ReadRoutes);
        assert!(dp.weft_routes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_route_fails_alone_and_the_rest_apply() {
        let fake = FakeNet::new();
        fake.add_interface("eth0", net("192.168.0.1/24"), 1500, true);
        let faults = Faults::new();
        let dp = Faulty::new(fake.host(), faults.clone());
        faults.refuse_route(net("10.244.2.0/24"), libc::EINVAL);
        let route = |dst: &str| Route::blackhole(net(dst));
        let applied = dp
            .apply_route_changes(vec![
                Change::Add(route("10.244.1.0/24")),
                Change::Add(route("10.244.2.0/24")),
            ])
            .await
            .unwrap();
        assert_eq!(applied.added, 1);
        assert_eq!(applied.failed.len(), 1);
        assert_eq!(applied.failed[0].1, Refusal::Errno(libc::EINVAL));
        assert_eq!(fake.host().weft_routes().await.unwrap().len(), 1);
        faults.fail(FaultOp::Neighbour, libc::EPERM);
        let n = Neighbour {
            ip: "10.244.1.0".parse().unwrap(),
            mac: "02:00:00:00:00:01".parse().unwrap(),
        };
        let applied = dp
            .apply_neighbour_changes(1, vec![Change::Add(n)])
            .await
            .unwrap();
        assert_eq!(applied.failed.len(), 1, "each change refused, none applied");
    }

    #[tokio::test]
    async fn another_namespace_is_entered_under_the_same_faults() {
        let fake = FakeNet::new();
        let faults = Faults::new();
        let dp = Faulty::new(fake.host(), faults.clone());
        let inside = dp.enter(Path::new("/run/netns/c1")).unwrap();
        faults.fail(FaultOp::ReadLinks, libc::EIO);
        assert!(inside.links().await.is_err());
        faults.fail(FaultOp::Enter, libc::ENOENT);
        assert!(dp.enter(Path::new("/run/netns/c2")).is_err());
    }
}
