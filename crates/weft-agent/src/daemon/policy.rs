//! Network policy in the agent: the policies, identities and namespace labels under
//! the policy prefix, kept up to date from the store's watch one key at a time,
//! rendered for this node's endpoints ([`weft_policy::render`]) and applied to one
//! nftables table, `ip weftpol`, and in a dual-stack network to its IPv6 twin, `ip6
//! weftpol` (the same rules, matching the endpoints' IPv6 addresses), each brought up
//! to date the same way.
//!
//! The table's rules depend on the policies alone and its sets on the endpoints: a
//! new endpoint or label changes set elements in place, and the rules are reloaded
//! (whole, in one transaction) only when a policy changes. At start the agent reads
//! what the kernel has and changes only the difference, so a restart changes
//! nothing; a resync checks the rules' fingerprint (reading thousands of sets back
//! costs seconds of kernel time).
//!
//! What never happens: a store that cannot be read, a value that cannot be parsed, or
//! a change the kernel refuses opens or closes anything already loaded. The store
//! revision the table reflects is published ([`PolicyEnforced`]), so the socket answers
//! a CNI ADD's identity only once that container's rules are in place.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info, warn};
use weft_alloc::policies::{Changed, PolicyState};
use weft_kernel::dataplane::LinkSetting;
use weft_kernel::nft_sets::{self, count, Elements, Family, LoadedSets, SetTable, TableId};
use weft_kernel::{Dataplane, KernelError};
use weft_policy::render::{compile_in, table_id, Attachment, Compiled, LocalEndpoint};
use weft_store::Revision;

use super::{Agent, Why};
use crate::health::Metrics;

/// The store revision the loaded policy table reflects.
pub type PolicyEnforced = watch::Receiver<Revision>;

/// The endpoint at `ip` if it is one of node `me`'s, as its table dispatches it.
fn local_of(st: &PolicyState, ip: Ipv4Addr, me: Ipv4Addr) -> Option<LocalEndpoint> {
    let id = st.endpoints.get(&ip)?;
    (id.node == me && !id.interface.is_empty()).then(|| LocalEndpoint {
        endpoint: st.endpoint(ip).expect("present"),
        interface: id.interface.clone(),
        attachment: id.attachment,
        pending: id.pending,
    })
}

/// A record under the policy prefix as the watch delivered it: its key below the
/// prefix, its value (`None`: deleted) and its revision.
type Record = (String, Option<Vec<u8>>, Revision);

/// The policy table's manager: the policy state as the store has it, and what the
/// kernel's table holds, with its own state machine (read whole, then follow record by
/// record; update elements in place, or load whole) instead of flags on the agent.
pub(super) struct PolicyManager {
    /// Policies, identities and namespace labels, once read.
    state: Option<PolicyState>,
    /// Whether those policies can open the isolation between named networks
    /// (`weft_policy::render::opens_between`), kept as the policies change: asked at
    /// every store event and every plan, never recomputed there.
    opens: bool,
    /// The state must be read whole again (a watch resync, or a read that failed).
    relist: bool,
    /// While a whole read is under way beside the loop: the records the watch
    /// delivered meanwhile, replayed on top of the read's snapshot where newer.
    in_flight: Option<Vec<Record>>,
    /// The state changed since the table was last brought up to date.
    dirty: bool,
    /// A policy changed: the table's structure must be compiled again.
    rules_changed: bool,
    /// The endpoints whose identity changed since the table was last brought up to
    /// date, each as the table has it (`None`: absent then); `None`: something else
    /// changed, so every set is computed again.
    touched: Option<BTreeMap<Ipv4Addr, Option<weft_policy::Endpoint>>>,
    /// The IPv4 table.
    v4: FamilyTable,
    /// The IPv6 table, in a dual-stack network.
    v6: Option<FamilyTable>,
    /// Bridged endpoints are policed through br_netfilter, set (or found missing) once.
    bridge_hooks: bool,
    /// The same for IPv6, once the IPv6 table exists.
    bridge_hooks6: bool,
    /// The store revision the loaded table reflects (the socket waits on it).
    enforced: watch::Sender<Revision>,
    metrics: Arc<Metrics>,
}

impl PolicyManager {
    pub(super) fn new(metrics: Arc<Metrics>) -> PolicyManager {
        PolicyManager {
            state: None,
            opens: false,
            relist: false,
            in_flight: None,
            dirty: false,
            rules_changed: false,
            touched: None,
            v4: FamilyTable::new(Family::Ip),
            v6: None,
            bridge_hooks: false,
            bridge_hooks6: false,
            enforced: watch::channel(0).0,
            metrics,
        }
    }

    /// The store revision the loaded table reflects, as it changes.
    pub(super) fn subscribe(&self) -> PolicyEnforced {
        self.enforced.subscribe()
    }

    /// The store revision the loaded table reflects now.
    #[cfg(test)]
    pub(super) fn enforced(&self) -> Revision {
        *self.enforced.borrow()
    }

    /// Whether the policies read so far can open the isolation between named networks
    /// (the host plan then routes overlay networks it carries nothing of).
    pub(super) fn opens_between(&self) -> bool {
        self.opens
    }

    /// The policy state as read, if it was.
    #[cfg(test)]
    pub(super) fn state(&self) -> Option<&PolicyState> {
        self.state.as_ref()
    }

    /// The state must be read whole again (a watch resync rebuilt everything else).
    pub(super) fn relist(&mut self) {
        self.relist = true;
    }

    /// The table reflects `revision`: the socket's waiters and `/metrics` hear it.
    fn mark_enforced(&self, revision: Revision) {
        self.enforced.send_replace(revision);
        self.metrics
            .policy_revision
            .store(revision.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bridged endpoints' traffic reaches the IP forward hook only through
    /// br_netfilter: turned on once for each family with a policy table (and said so),
    /// or warned about where the kernel has no such setting.
    fn ensure_bridge_hooks(&mut self, dp: &dyn Dataplane) {
        let bridged = self
            .v4
            .locals
            .values()
            .any(|l| l.attachment == Attachment::Bridged);
        if !bridged {
            return;
        }
        if !self.bridge_hooks {
            self.bridge_hooks = true;
            match dp.set_link_setting(&LinkSetting::BridgeCallsIptables) {
                Ok(()) => info!("bridged traffic passes the IP hooks (net.bridge.bridge-nf-call-iptables = 1), where network policy sees it"),
                Err(e) => warn!(error = %e, "network policy cannot see traffic between bridged endpoints of this node (load br_netfilter)"),
            }
        }
        if self.v6.is_some() && !self.bridge_hooks6 {
            self.bridge_hooks6 = true;
            match dp.set_link_setting(&LinkSetting::BridgeCallsIp6tables) {
                Ok(()) => info!("bridged IPv6 traffic passes the IP hooks (net.bridge.bridge-nf-call-ip6tables = 1), where network policy sees it"),
                Err(e) => warn!(error = %e, "network policy cannot see IPv6 traffic between bridged endpoints of this node (load br_netfilter)"),
            }
        }
    }

    /// Whether the policy table waits for a reconcile (a store change under the policy
    /// prefix since it was last brought up to date).
    pub(super) fn pending(&self) -> bool {
        self.dirty || self.relist
    }

    /// Takes in a record under the policy prefix (`rest`: its key below the prefix;
    /// `value` `None`: deleted) at store `revision`. It changes no route, only the
    /// policy table (see [`Agent::policy_pending`]), which the serve loop brings up to
    /// date on its own.
    pub(super) fn on_record(&mut self, rest: &str, value: Option<&[u8]>, revision: Revision) {
        if let Some(buffered) = self.in_flight.as_mut() {
            buffered.push((rest.to_owned(), value.map(<[u8]>::to_vec), revision));
        }
        let Some(st) = self.state.as_mut() else {
            // Nothing read yet: the read under way (with this record replayed on it),
            // or the next one, brings it.
            self.relist |= self.in_flight.is_none();
            return;
        };
        // The endpoint as the table has it, before this change.
        let before = rest
            .strip_prefix("endpoints/")
            .and_then(|ip| ip.parse().ok())
            .map(|ip| (ip, st.endpoint(ip)));
        match st.read_entry(rest, value) {
            Ok(changed) => {
                st.revision = revision;
                self.dirty = true;
                match changed {
                    Changed::Policies => {
                        self.rules_changed = true;
                        self.touched = None;
                        self.opens = weft_policy::render::opens_between(&st.policies);
                    }
                    Changed::Endpoint(_) => {
                        if let (Some(t), Some((ip, was))) = (self.touched.as_mut(), before) {
                            t.entry(ip).or_insert(was);
                        }
                    }
                    Changed::Namespace => self.touched = None,
                    Changed::Nothing => {}
                }
            }
            Err(why) => {
                warn!(key = rest, error = %why, "ignoring an unreadable policy record; the previous value stays")
            }
        }
    }

    /// The fingerprint of the rules the kernel's IPv4 table holds, once one is loaded,
    /// and only while the IPv6 twin (in a dual-stack network) holds the same policies'
    /// rules too: a node whose IPv6 table the kernel refused does not say it enforces
    /// them (`policy apply` names it).
    pub(super) fn loaded_fingerprint(&self) -> Option<&str> {
        let v6_current = self.v6.as_ref().is_none_or(|t| {
            let loaded = t.table.as_ref().map(|l| l.fingerprint.as_str());
            loaded.is_some() && loaded == t.compiled.as_ref().map(Compiled::fingerprint)
        });
        self.v4
            .table
            .as_ref()
            .filter(|_| v6_current)
            .map(|t| t.fingerprint.as_str())
    }

    /// Whether the policy state must be read whole from the store (never read yet,
    /// or a watch resync): the serve loop reads it in a task of its own.
    pub(super) fn needs_read(&self) -> bool {
        self.relist || self.state.is_none()
    }

    /// A whole read starts beside the loop: it covers every record written so far,
    /// and the records delivered until it ends are kept to be replayed on it.
    pub(super) fn begin_read(&mut self) {
        self.relist = false;
        self.in_flight = Some(Vec::new());
    }

    /// The read begun could not be had: read again.
    pub(super) fn read_failed(&mut self) {
        self.in_flight = None;
        self.relist = true;
    }

    /// Takes a policy state read whole from the store, with the records the watch
    /// delivered while it was read replayed where they are newer than its snapshot:
    /// the table is compared with it at the next policy reconcile. A watch resync that
    /// came meanwhile leaves a read still to do ([`PolicyManager::needs_read`]).
    pub(super) fn take_state(&mut self, mut st: PolicyState) {
        for (key, why) in &st.unreadable {
            warn!(key, error = %why, "ignoring an unreadable policy record");
        }
        for (rest, value, revision) in self.in_flight.take().unwrap_or_default() {
            if revision > st.revision {
                // An unreadable one was logged when it arrived; the snapshot's stays.
                if st.read_entry(&rest, value.as_deref()).is_ok() {
                    st.revision = revision;
                }
            }
        }
        self.opens = weft_policy::render::opens_between(&st.policies);
        self.state = Some(st);
        self.dirty = true;
        self.rules_changed = true;
        self.touched = None;
    }

    /// Brings the policy tables up to date: element changes alone when the rules are
    /// the same (only the changed endpoints' sets when nothing else changed), a whole
    /// load when they are not (or nothing is loaded). Compared at start with what the
    /// kernel has (an `nft -j list`), at a resync with the kernel's fingerprint and the
    /// elements as last applied, otherwise with what was last applied; nothing at all
    /// when nothing changed. `ipv6`: the network is dual stack, so the IPv6 twin is
    /// kept too (and removed when it no longer is).
    pub(super) fn reconcile(&mut self, dp: &dyn Dataplane, me: Ipv4Addr, why: Why, ipv6: bool) {
        let check_kernel = matches!(why, Why::Start | Why::Resync);
        if self.needs_read() {
            // Read by the serve loop off its own path (`take_policy_state`); until
            // then the loaded tables stay as they are.
            return;
        }
        if self.state.is_none() {
            return;
        }
        self.set_ipv6(dp, ipv6, check_kernel);
        let Some(st) = &self.state else { return };
        let revision = st.revision;
        let all_loaded =
            self.v4.table.is_some() && self.v6.as_ref().is_none_or(|t| t.table.is_some());
        if !self.dirty && !check_kernel && all_loaded {
            self.mark_enforced(revision);
            return;
        }
        let recompile = self.rules_changed;
        self.rules_changed = false;
        let touched = if check_kernel {
            None
        } else {
            self.touched.as_ref()
        };
        let mut ok = true;
        for t in std::iter::once(&mut self.v4).chain(self.v6.as_mut()) {
            if recompile || t.compiled.is_none() {
                t.compiled = Some(compile_in(&st.policies, t.family));
            }
            let done = touched.is_some_and(|touched| t.update_touched(dp, st, touched, me));
            if !done {
                ok &= t.apply_whole(dp, st, me, why, &self.metrics);
            }
        }
        if !ok {
            return;
        }
        self.mark_enforced(revision);
        self.dirty = false;
        self.touched = Some(Default::default());
        self.ensure_bridge_hooks(dp);
    }

    /// Keeps the IPv6 table while the network is dual stack, and removes it (once,
    /// or at a start or resync that finds one) when it is not.
    fn set_ipv6(&mut self, dp: &dyn Dataplane, ipv6: bool, check_kernel: bool) {
        match (ipv6, self.v6.is_some()) {
            (true, false) => {
                self.v6 = Some(FamilyTable::new(Family::Ip6));
                self.dirty = true;
            }
            (false, had) if had || check_kernel => {
                self.v6 = None;
                let id = table_id(Family::Ip6);
                match dp.set_table_fingerprint(&id) {
                    Ok(None) => {}
                    _ => match dp.remove_set_table(&id) {
                        Ok(()) => {
                            info!(table = %id, "removed the IPv6 network policy table: the network is IPv4 only")
                        }
                        Err(e) => {
                            warn!(table = %id, error = %e, "cannot remove the IPv6 network policy table")
                        }
                    },
                }
            }
            _ => {}
        }
    }
}

/// One family's policy table: its structure for the policies as they are, what the
/// kernel has, and this node's endpoints as it dispatches them.
struct FamilyTable {
    family: Family,
    id: TableId,
    /// The structure for the policies as they are.
    compiled: Option<Compiled>,
    /// What the kernel's table has, as last loaded, updated or read.
    table: Option<LoadedSets>,
    /// This node's endpoints as that table dispatches them.
    locals: BTreeMap<Ipv4Addr, LocalEndpoint>,
}

impl FamilyTable {
    fn new(family: Family) -> FamilyTable {
        FamilyTable {
            family,
            id: table_id(family),
            compiled: None,
            table: None,
            locals: BTreeMap::new(),
        }
    }

    /// Only some endpoints changed and the kernel has the table as last applied: just
    /// their elements (a container's ADD waits for this). Whether that was all.
    fn update_touched(
        &mut self,
        dp: &dyn Dataplane,
        st: &PolicyState,
        touched: &BTreeMap<Ipv4Addr, Option<weft_policy::Endpoint>>,
        me: Ipv4Addr,
    ) -> bool {
        let (Some(compiled), Some(table)) = (&self.compiled, self.table.as_mut()) else {
            return false;
        };
        if table.fingerprint != compiled.fingerprint() {
            return false;
        }
        let changed: Vec<_> = touched
            .iter()
            .map(|(ip, was)| (*ip, was.clone(), st.endpoint(*ip)))
            .collect();
        let locals = &mut self.locals;
        let local_changes: Vec<_> = touched
            .keys()
            .map(|ip| {
                let now = local_of(st, *ip, me);
                let was = match &now {
                    Some(l) => locals.insert(*ip, l.clone()),
                    None => locals.remove(ip),
                };
                (was, now)
            })
            .collect();
        let names = weft_policy::World {
            endpoints: Vec::new(),
            namespaces: st.namespaces.clone(),
            ..Default::default()
        };
        let ns = |n: &str| names.namespace_labels(n);
        let fresh = compiled.changed_elements(&table.elements, &changed, &ns, &local_changes);
        let before: Elements = fresh
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    table.elements.get(k).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let (add, remove) = nft_sets::changes(&before, &fresh);
        if let Err(e) = dp.update_set_table(&self.id, &add, &remove) {
            warn!(table = %self.id, error = %e, "cannot update the network policy sets; checking the whole table");
            return false;
        }
        if !add.is_empty() || !remove.is_empty() {
            info!(
                table = %self.id,
                endpoints = changed.len(),
                added = count(&add),
                removed = count(&remove),
                "updated network policy sets"
            );
        }
        table.elements.extend(fresh);
        true
    }

    /// The table as the kernel has it, as far as this pass needs to know: read at
    /// start, checked by fingerprint at a resync, else as last applied.
    fn loaded(&self, dp: &dyn Dataplane, why: Why) -> Option<LoadedSets> {
        let id = &self.id;
        match (why, &self.table) {
            // At a resync the rules are checked by fingerprint alone (reading every
            // set back costs seconds at thousands of sets); the elements as applied.
            (Why::Resync, Some(last)) => match dp.set_table_fingerprint(id) {
                Ok(Some(f)) if f == last.fingerprint => Some(last.clone()),
                Ok(_) => None,
                Err(e) => {
                    warn!(table = %id, error = %e, "cannot read the loaded network policy table; loading it whole");
                    None
                }
            },
            // At start, what the kernel has, elements and all: a restart changes nothing.
            (Why::Start | Why::Resync, _) => dp.set_table(id).unwrap_or_else(|e| {
                warn!(table = %id, error = %e, "cannot read the loaded network policy table; loading it whole");
                None
            }),
            _ => self.table.clone(),
        }
    }

    /// Compares the whole table this node wants with what is loaded and changes the
    /// difference: its elements where the rules are the same, else a whole load.
    /// Whether the kernel has it now.
    fn apply_whole(
        &mut self,
        dp: &dyn Dataplane,
        st: &PolicyState,
        me: Ipv4Addr,
        why: Why,
        metrics: &Metrics,
    ) -> bool {
        let Some(compiled) = &self.compiled else {
            return false;
        };
        let locals: BTreeMap<Ipv4Addr, LocalEndpoint> = st
            .endpoints
            .keys()
            .filter_map(|ip| Some((*ip, local_of(st, *ip, me)?)))
            .collect();
        let wanted = LoadedSets {
            fingerprint: compiled.fingerprint().to_owned(),
            elements: compiled.elements(&st.world(), locals.values()),
            counters: Vec::new(),
        };
        let whole = SetTable {
            table: compiled.table.clone(),
            elements: wanted.elements.clone(),
        };
        let (policies, endpoints) = (st.policies.len(), locals.len());
        let applied = match self.loaded(dp, why) {
            Some(k) if k.fingerprint == wanted.fingerprint => {
                update_or_load(dp, &k.elements, &whole)
            }
            _ => dp.load_set_table(&whole).inspect(|_| {
                info!(table = %self.id, endpoints, policies, "loaded network policy rules");
            }),
        };
        if let Err(e) = applied {
            error!(table = %self.id, error = %e, "cannot load network policy rules; the previous ones stay");
            return false;
        }
        // The rules' ids change with the structure alone: not on an element update (a
        // container's ADD waits for it). The IPv6 table's rules are a subset of the
        // IPv4 one's, under the same ids.
        let before = self.table.as_ref().map(|t| t.fingerprint.as_str());
        if self.family == Family::Ip && before != Some(wanted.fingerprint.as_str()) {
            metrics.policy_counters.set_ids(whole.table.rule_ids());
        }
        self.table = Some(wanted);
        self.locals = locals;
        true
    }
}

/// The elements of `whole` changed in place from `loaded` (the rules are the same); a
/// whole load if the kernel refuses the update.
fn update_or_load(
    dp: &dyn Dataplane,
    loaded: &Elements,
    whole: &SetTable,
) -> Result<(), KernelError> {
    let (add, remove) = nft_sets::changes(loaded, &whole.elements);
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    match dp.update_set_table(&whole.id(), &add, &remove) {
        Ok(()) => {
            info!(
                added = count(&add),
                removed = count(&remove),
                "updated network policy sets"
            );
            Ok(())
        }
        Err(e) => {
            warn!(error = %e, "cannot update the network policy sets; loading the table whole");
            dp.load_set_table(whole)
        }
    }
}

impl Agent {
    /// Reads the policy state now (start-up, before the loop runs); a store that does
    /// not answer leaves it to the loop.
    pub(super) async fn load_policy_now(&mut self) {
        match self.registry.policy_state().await {
            Ok(st) => {
                self.policy.begin_read();
                self.policy.take_state(st)
            }
            Err(e) => {
                warn!(error = %e, "cannot read network policies; enforcement stays as it is until they can be read")
            }
        }
    }

    /// Brings the policy table up to date (see [`PolicyManager::reconcile`]).
    pub(super) fn reconcile_policy(&mut self, why: Why) {
        let me = self.view.attrs.public_ip;
        let ipv6 = self.view.config.ipv6.is_some();
        self.policy.reconcile(self.dp.as_ref(), me, why, ipv6);
    }

    /// The policy table alone brought up to date (a policy record changed, nothing
    /// else), and the status offered: the rules' fingerprint is part of it (`policy
    /// apply` waits on it). A whole reconcile offers the status once, at its end.
    pub(super) fn reconcile_policy_alone(&mut self) {
        self.reconcile_policy(Why::Store);
        self.offer_status();
    }

    /// Whether the policy table waits for a reconcile.
    pub(super) fn policy_pending(&self) -> bool {
        self.policy.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str) -> Vec<u8> {
        format!(r#"{{"Name":"x/{name}","Namespace":"x","Labels":{{"pod":"{name}"}},"Node":"192.168.1.1","Interface":"weft{name}"}}"#)
            .into_bytes()
    }

    /// Records the watch delivers while a whole read is under way are not lost when
    /// the read's older snapshot arrives; those the snapshot already holds are not
    /// replayed over it.
    #[test]
    fn records_during_a_read_are_replayed_on_its_snapshot() {
        let mut m = PolicyManager::new(Arc::new(Metrics::default()));
        m.begin_read();
        m.on_record("endpoints/10.248.0.1", Some(&identity("a")), 4);
        m.on_record("endpoints/10.248.0.2", Some(&identity("b")), 12);
        m.on_record("endpoints/10.248.0.3", Some(&identity("c")), 13);
        m.on_record("endpoints/10.248.0.3", None, 14);
        assert!(m.needs_read(), "nothing read yet");
        // The snapshot was listed at revision 10: it holds a (written at 4), not b.
        let mut snapshot = PolicyState {
            revision: 10,
            ..Default::default()
        };
        snapshot
            .read_entry("endpoints/10.248.0.1", Some(&identity("a")))
            .unwrap();
        m.take_state(snapshot);
        let st = m.state().unwrap();
        let ips: Vec<String> = st.endpoints.keys().map(|ip| ip.to_string()).collect();
        assert_eq!(ips, ["10.248.0.1", "10.248.0.2"]);
        assert_eq!(st.revision, 14);
        assert!(!m.needs_read());

        // A watch resync during a read leaves another read to do; a failed read too.
        m.begin_read();
        m.relist();
        m.take_state(PolicyState::default());
        assert!(m.needs_read());
        m.begin_read();
        m.read_failed();
        assert!(m.needs_read());
    }
}
