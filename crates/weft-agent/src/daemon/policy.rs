//! Network policy in the agent: the policies, identities and namespace labels under
//! the policy prefix, kept up to date from the store's watch one key at a time,
//! rendered for this node's endpoints ([`weft_policy::render`]) and applied to one
//! nftables table.
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

use tokio::sync::watch;
use tracing::{error, info, warn};
use weft_alloc::policies::{Changed, PolicyState};
use weft_kernel::dataplane::LinkSetting;
use weft_kernel::nft_sets::{self, Elements, LoadedSets, SetTable};
use weft_kernel::KernelError;
use weft_policy::render::{compile, Attachment, Local, TABLE};
use weft_store::Revision;

use super::{Agent, Why};

/// The store revision the loaded policy table reflects.
pub type PolicyEnforced = watch::Receiver<Revision>;

/// The endpoint at `ip` if it is one of node `me`'s, as its table dispatches it.
fn local_of(st: &PolicyState, ip: Ipv4Addr, me: Ipv4Addr) -> Option<Local> {
    let id = st.endpoints.get(&ip)?;
    (id.node == me && !id.interface.is_empty()).then(|| Local {
        endpoint: st.endpoint(ip).expect("present"),
        interface: id.interface.clone(),
        attachment: id.attachment,
        pending: id.pending,
    })
}

/// How many elements a change holds, for the log.
fn count(e: &Elements) -> usize {
    e.values().map(|s| s.len()).sum()
}

impl Agent {
    /// The table reflects `revision`: the socket's waiters and `/metrics` hear it.
    fn mark_enforced(&self, revision: Revision) {
        self.plane.policy_enforced.send_replace(revision);
        self.metrics
            .policy_revision
            .store(revision.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bridged endpoints' traffic reaches the IP forward hook only through
    /// br_netfilter: turned on once (and said so), or warned about where the kernel
    /// has no such setting.
    fn ensure_bridge_hooks(&mut self) {
        if self.last.policy_bridge_hooks
            || !self
                .last
                .policy_locals
                .values()
                .any(|l| l.attachment == Attachment::Bridged)
        {
            return;
        }
        self.last.policy_bridge_hooks = true;
        match self.dp.set_link_setting(&LinkSetting::BridgeCallsIptables) {
            Ok(()) => info!("bridged traffic passes the IP hooks (net.bridge.bridge-nf-call-iptables = 1), where network policy sees it"),
            Err(e) => warn!(error = %e, "network policy cannot see traffic between bridged endpoints of this node (load br_netfilter)"),
        }
    }

    /// Whether the policy table waits for a reconcile (a store change under the policy
    /// prefix since it was last brought up to date).
    pub(super) fn policy_pending(&self) -> bool {
        self.last.policy_dirty || self.last.policy_relist
    }

    /// Takes in a record under the policy prefix (`rest`: its key below the prefix;
    /// `value` `None`: deleted) at store `revision`. It changes no route, only the
    /// policy table (see [`Agent::policy_pending`]), which the serve loop brings up to
    /// date on its own.
    pub(super) fn on_policy(&mut self, rest: &str, value: Option<&[u8]>, revision: Revision) {
        let Some(st) = self.view.policy.as_mut() else {
            self.last.policy_relist = true;
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
                self.last.policy_dirty = true;
                match changed {
                    Changed::Policies => {
                        self.last.policy_rules_changed = true;
                        self.last.policy_touched = None;
                    }
                    Changed::Endpoint(_) => {
                        if let (Some(t), Some((ip, was))) =
                            (self.last.policy_touched.as_mut(), before)
                        {
                            t.entry(ip).or_insert(was);
                        }
                    }
                    Changed::Namespace => self.last.policy_touched = None,
                    Changed::Nothing => {}
                }
            }
            Err(why) => {
                warn!(key = rest, error = %why, "ignoring an unreadable policy record; the previous value stays")
            }
        }
    }

    /// Whether the policy state must be read whole from the store (never read yet,
    /// or a watch resync): the serve loop reads it in a task of its own.
    pub(super) fn needs_policy_read(&self) -> bool {
        self.last.policy_relist || self.view.policy.is_none()
    }

    /// Takes a policy state read whole from the store: the table is compared with it
    /// at the next policy reconcile.
    pub(super) fn take_policy_state(&mut self, st: PolicyState) {
        for (key, why) in &st.unreadable {
            warn!(key, error = %why, "ignoring an unreadable policy record");
        }
        self.view.policy = Some(st);
        self.last.policy_relist = false;
        self.last.policy_dirty = true;
        self.last.policy_rules_changed = true;
        self.last.policy_touched = None;
    }

    /// Reads the policy state now (start-up, before the loop runs); a store that does
    /// not answer leaves it to the loop.
    pub(super) async fn load_policy_now(&mut self) {
        match self.registry.policy_state().await {
            Ok(st) => self.take_policy_state(st),
            Err(e) => {
                warn!(error = %e, "cannot read network policies; enforcement stays as it is until they can be read")
            }
        }
    }

    /// Brings the policy table up to date: element changes alone when the rules are
    /// the same (only the changed endpoints' sets when nothing else changed), a whole
    /// load when they are not (or nothing is loaded). Compared at start with what the
    /// kernel has (an `nft -j list`), at a resync with the kernel's fingerprint and the
    /// elements as last applied, otherwise with what was last applied; nothing at all
    /// when nothing changed.
    pub(super) async fn reconcile_policy(&mut self, why: Why) {
        let check_kernel = matches!(why, Why::Start | Why::Resync);
        if self.needs_policy_read() {
            // Read by the serve loop off its own path (`take_policy_state`); until
            // then the loaded table stays as it is.
            return;
        }
        let Some(st) = &self.view.policy else { return };
        let revision = st.revision;
        if !self.last.policy_dirty && !check_kernel && self.last.policy_table.is_some() {
            self.mark_enforced(revision);
            return;
        }
        if self.last.policy_rules_changed || self.last.policy_compiled.is_none() {
            self.last.policy_compiled = Some(compile(&st.policies));
            self.last.policy_rules_changed = false;
        }
        let compiled = self.last.policy_compiled.as_ref().expect("compiled above");
        let me = self.view.attrs.public_ip;
        // Only some endpoints changed, and the kernel has the table as last applied:
        // just their elements (a container's ADD waits for this).
        if let (false, Some(touched), Some(table)) = (
            check_kernel,
            &self.last.policy_touched,
            self.last.policy_table.as_mut(),
        ) {
            if table.fingerprint == compiled.fingerprint {
                let changed: Vec<_> = touched
                    .iter()
                    .map(|(ip, was)| (*ip, was.clone(), st.endpoint(*ip)))
                    .collect();
                let locals = &mut self.last.policy_locals;
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
                };
                let ns = |n: &str| names.namespace_labels(n);
                let fresh =
                    compiled.changed_elements(&table.elements, &changed, &ns, &local_changes);
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
                match self.dp.update_set_table(TABLE, &add, &remove) {
                    Ok(()) => {
                        if !add.is_empty() || !remove.is_empty() {
                            info!(
                                endpoints = changed.len(),
                                added = count(&add),
                                removed = count(&remove),
                                "updated network policy sets"
                            );
                        }
                        table.elements.extend(fresh);
                        self.mark_enforced(revision);
                        self.last.policy_dirty = false;
                        self.last.policy_touched = Some(Default::default());
                        self.ensure_bridge_hooks();
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot update the network policy sets; checking the whole table");
                    }
                }
            }
        }
        let locals: BTreeMap<Ipv4Addr, Local> = st
            .endpoints
            .keys()
            .filter_map(|ip| Some((*ip, local_of(st, *ip, me)?)))
            .collect();
        let world = st.world();
        let wanted = LoadedSets {
            fingerprint: compiled.fingerprint.clone(),
            elements: compiled.elements(&world, locals.values()),
            counters: Vec::new(),
        };
        let known = match (why, &self.last.policy_table) {
            // At a resync the rules are checked by fingerprint alone (reading every
            // set back costs seconds at thousands of sets); the elements as applied.
            (Why::Resync, Some(last)) => match self.dp.set_table_fingerprint(TABLE) {
                Ok(Some(f)) if f == last.fingerprint => Some(last.clone()),
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "cannot read the loaded network policy table; loading it whole");
                    None
                }
            },
            // At start, what the kernel has, elements and all: a restart changes nothing.
            _ if check_kernel => self.dp.set_table(TABLE).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the loaded network policy table; loading it whole");
                None
            }),
            _ => self.last.policy_table.clone(),
        };
        let whole = SetTable {
            name: TABLE.to_owned(),
            structure: compiled.structure.clone(),
            fingerprint: wanted.fingerprint.clone(),
            elements: wanted.elements.clone(),
        };
        let (policies, endpoints) = (st.policies.len(), locals.len());
        let applied: Result<(), KernelError> = match known {
            Some(k) if k.fingerprint == wanted.fingerprint => {
                let (add, remove) = nft_sets::changes(&k.elements, &wanted.elements);
                if add.is_empty() && remove.is_empty() {
                    Ok(())
                } else {
                    match self.dp.update_set_table(TABLE, &add, &remove) {
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
                            self.dp.load_set_table(&whole)
                        }
                    }
                }
            }
            _ => self.dp.load_set_table(&whole).inspect(|_| {
                info!(endpoints, policies, "loaded network policy rules");
            }),
        };
        match applied {
            Ok(()) => {
                self.mark_enforced(revision);
                self.last.policy_table = Some(wanted);
                self.last.policy_dirty = false;
                self.last.policy_touched = Some(Default::default());
                self.last.policy_locals = locals;
                self.ensure_bridge_hooks();
            }
            Err(e) => {
                error!(error = %e, "cannot load network policy rules; the previous ones stay")
            }
        }
    }
}
