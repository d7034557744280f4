//! Policy as nftables rules for the endpoints of one node.
//!
//! One table, `ip weftpol`, split in two parts that change at different speeds:
//!
//! - **The structure** (chains, rules, empty named sets and maps) depends on the
//!   policies alone. A chain pair per namespace that has NetworkPolicies
//!   (`in_ns_x`/`out_ns_x`, then `in_ns_x_np`/`out_ns_x_np`), and `in_default`/
//!   `out_default` for endpoints of every other namespace. Each follows the verdict
//!   engine ([`crate::verdict`]) rule for rule: cluster policies in order (Allow, Deny,
//!   Log, Pass), then the namespace's NetworkPolicies (any rule allows; selected and
//!   nothing allows: drop; not selected: allowed). A rule applies to the endpoints its
//!   policy selects through a named set of their addresses (`ip daddr @s_…`), and its
//!   peers are named sets too, one per distinct selection. Every rule has a counter and
//!   a comment naming its policy and rule. It is loaded whole, in one transaction
//!   (delete and recreate), and carries a fingerprint so an unchanged structure is
//!   never reloaded.
//! - **The elements**: which addresses each set holds, and the dispatch sets. The
//!   forward chain accepts established and related traffic first, then sends a packet
//!   to the chain of its endpoint's namespace: by interface (`in_ns_x_if`/
//!   `out_ns_x_if`: routed endpoints, each with a host-side interface of its own) or by
//!   address (`in_ns_x_ip`/`out_ns_x_ip`: bridged endpoints, whose traffic crosses a
//!   bridge and reaches the IP forward hook through br_netfilter with the bridge as
//!   its interface). An egress chain returns when its policies allow (the
//!   destination's ingress still decides) and drops when not; an ingress chain
//!   accepts or drops. An endpoint in no set (no identity) is not policed. Adding an
//!   endpoint, or changing labels, changes elements only: the agent sends the
//!   difference, and the rules stay as they are.
//! - **Held endpoints**: one whose labels are not known yet (a Docker container, whose
//!   labels the driver can only read once Docker has finished attaching it) is in
//!   `held_if`/`held_ip` while some policy could select it: any cluster policy, or a
//!   NetworkPolicy of its namespace. The forward chain drops its traffic both ways
//!   before anything else, so it is never reachable, nor reaches anything, under
//!   policies that were not its own.
//!
//! Why sets per namespace and not one verdict map keyed by interface: an element of a
//! verdict map that jumps to a chain makes the kernel validate the whole table again
//! on every change (milliseconds with thousands of rules), where a plain set element
//! costs tens of microseconds; a container's ADD waits for its elements.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use weft_plan::nft::{
    AddrMatch, Chain, Element, Family, Hook, IfaceSide, Match, PortRange, Proto, Rule, RuleId, Set,
    SetKey, Side, Table, Verdict,
};

use crate::model::*;
use crate::selector::{LabelSelector, Labels};
use crate::verdict::{Endpoint, World};
use std::net::{IpAddr, Ipv4Addr};

pub const TABLE: &str = "weftpol";

/// The policy table of `family`: `ip weftpol`, and in a dual-stack network its twin
/// `ip6 weftpol` (the same chains and set names, IPv6 addresses in the sets).
pub fn table_id(family: Family) -> weft_plan::nft::TableId {
    weft_plan::nft::TableId::new(family, TABLE)
}

/// An endpoint's address in `family`'s table (an endpoint without an IPv6 address is
/// in no set of the IPv6 table: it has no IPv6 traffic).
fn addr_in(e: &Endpoint, family: Family) -> Option<IpAddr> {
    match family {
        Family::Ip => Some(e.ip.into()),
        Family::Ip6 => e.ip6.map(Into::into),
    }
}
/// The chain that marks what a cluster policy allows between named networks.
pub const BETWEEN: &str = "between";
pub use weft_plan::firewall::BETWEEN_NETWORKS_MARK;
/// The comment of the rules that drop a held endpoint's traffic.
pub const HELD: &str = "held: labels not known yet";

/// The elements of each named set, by name.
pub use weft_plan::nft::Elements;

/// How a local endpoint's traffic reaches the forward hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attachment {
    /// Its own host-side interface: dispatched by interface.
    #[default]
    Routed,
    /// A port of a bridge: dispatched by address.
    Bridged,
}

impl Attachment {
    pub fn is_routed(&self) -> bool {
        *self == Attachment::Routed
    }
}

/// A local endpoint: its identity, its host-side interface and how it is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub endpoint: Endpoint,
    pub interface: String,
    pub attachment: Attachment,
    /// Its labels are not known yet: held (see the module's text).
    pub pending: bool,
}

/// Which endpoints a named set holds: those matching `pod` (any if `None`) in the
/// namespaces matching `namespaces`, or, with no namespace selector, in `same_ns` (any
/// namespace if that is `None` too, as cluster policies select).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub pod: Option<LabelSelector>,
    pub namespaces: Option<LabelSelector>,
    pub same_ns: Option<String>,
    /// And any one of these (a union: the endpoints some policy isolates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<LabelSelector>,
}

impl Selection {
    fn matches(&self, e: &Endpoint, ns_labels: &Labels) -> bool {
        let ns_ok = match (&self.namespaces, &self.same_ns) {
            (Some(s), _) => s.matches(ns_labels),
            (None, Some(ns)) => &e.namespace == ns,
            (None, None) => true,
        };
        ns_ok
            && self.pod.as_ref().is_none_or(|s| s.matches(&e.labels))
            && (self.any.is_empty() || self.any.iter().any(|s| s.matches(&e.labels)))
    }

    /// The set's name: a hash of what it selects, so the same selection anywhere in
    /// any policy is one set, and its name does not move when others come and go.
    fn name(&self) -> String {
        let text = serde_json::to_string(self).expect("a selection serializes");
        format!("s_{:016x}", fnv(text.as_bytes()))
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The table's structure for a set of policies, with what its sets select. Depends on
/// the policies alone, so the agent keeps it while only endpoints change.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Which family's table: the same policies make both, each matching its own
    /// family's addresses.
    pub family: Family,
    /// The table with its sets empty. Its comment is the fingerprint, and so is the
    /// forward chain's first rule's (which `nft -j` shows).
    pub table: Table,
    /// Each named set and what it selects.
    pub selections: BTreeMap<String, Selection>,
    /// Namespaces with chains of their own (the others use `in_default`/`out_default`).
    pub namespaces: BTreeSet<String>,
    /// Whether any cluster policy exists (it may select any endpoint).
    pub has_cluster: bool,
    /// The sets an endpoint can be in, found from its labels and namespace: by one
    /// label each selection requires, or by its namespace; the rest are `unindexed`.
    by_label: HashMap<(String, String), Vec<String>>,
    by_namespace: HashMap<String, Vec<String>>,
    unindexed: Vec<String>,
}

fn dir_word(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// `in_ns_x`, `out_default`, …
fn chain_name(dir: Direction, ns: Option<&str>) -> String {
    let d = match dir {
        Direction::Ingress => "in",
        Direction::Egress => "out",
    };
    match ns {
        Some(ns) => format!(
            "{d}_ns_{}",
            ns.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        ),
        None => format!("{d}_default"),
    }
}

/// Collects the named sets while rendering rules for a table of the family it holds.
struct Sets(BTreeMap<String, Selection>, Family);

impl Sets {
    fn named(&mut self, s: Selection) -> String {
        let name = s.name();
        self.0.entry(name.clone()).or_insert(s);
        name
    }
}

/// A selector that selects everything is no selector (one set for both spellings).
fn some_selector(s: &LabelSelector) -> Option<LabelSelector> {
    (s != &LabelSelector::default()).then(|| s.clone())
}

/// Whether some cluster policy can open the isolation between named networks: one with
/// an ingress Allow rule (see [`between_chain`]). Without one, nothing crosses, and a
/// host needs no way to the networks it carries nothing of.
pub fn opens_between(policies: &[Policy]) -> bool {
    policies.iter().any(|p| match p {
        Policy::Cluster(c) => {
            c.types().contains(&Direction::Ingress)
                && c.spec.ingress.iter().any(|r| r.action == Action::Allow)
        }
        Policy::Namespaced(_) => false,
    })
}

/// The IPv4 structure for `policies` (see the module's text).
pub fn compile(policies: &[Policy]) -> Compiled {
    compile_in(policies, Family::Ip)
}

/// The structure of `family`'s table for `policies`. In the IPv6 table a rule whose
/// addresses (an `ipBlock`, a cluster rule's `nets`) are all IPv4 matches nothing and
/// is left out, and so are ICMP rules (ICMP is IPv4's; ICMPv6 has its own numbers):
/// the rules each family keeps are those that can match its packets.
pub fn compile_in(policies: &[Policy], family: Family) -> Compiled {
    let mut clusters: Vec<&ClusterPolicy> = policies
        .iter()
        .filter_map(|p| match p {
            Policy::Cluster(c) => Some(c),
            _ => None,
        })
        .collect();
    clusters
        .sort_by(|a, b| (a.spec.order, &a.metadata.name).cmp(&(b.spec.order, &b.metadata.name)));
    let mut by_ns: BTreeMap<&str, Vec<&NetworkPolicy>> = BTreeMap::new();
    for p in policies {
        if let Policy::Namespaced(n) = p {
            by_ns.entry(n.namespace()).or_default().push(n);
        }
    }
    // By name: the same policies make the same table (and fingerprint) in whatever
    // order they were read, so a restart reloads nothing and `weftctl policy apply`
    // can compute the fingerprint every node will load.
    for nps in by_ns.values_mut() {
        nps.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    let mut sets = Sets(BTreeMap::new(), family);
    let mut chains = Vec::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        chains.extend(namespace_chains(&mut sets, &clusters, dir, None, &[]));
        for (ns, nps) in &by_ns {
            chains.extend(namespace_chains(&mut sets, &clusters, dir, Some(ns), nps));
        }
    }
    // Only when some cluster policy can allow a flow in: otherwise nothing crosses.
    let opens = opens_between(policies);
    if opens {
        chains.push(between_chain(&mut sets, &clusters));
    }
    let mut table = Table::in_family(family, TABLE);
    // The kernel finds a set by name by walking the table's sets in the order they
    // were made, and every element change names its set: so the sets most changes
    // touch come first. The held and dispatch sets (every local endpoint), then the
    // selections no label narrows (a whole namespace, unions), then the rest. With
    // thousands of sets this walk is most of what adding an endpoint costs.
    let set = |name: String, key| Set { name, key };
    table.sets.push(set("held_if".into(), SetKey::Ifname));
    table.sets.push(set("held_ip".into(), family.addr_key()));
    let forward = forward_chain(&mut table, by_ns.keys().copied(), opens);
    let narrowed = |s: &Selection| s.pod.as_ref().is_some_and(|p| !p.match_labels.is_empty());
    let broad = sets.0.iter().filter(|(_, s)| !narrowed(s));
    for (name, _) in broad.chain(sets.0.iter().filter(|(_, s)| narrowed(s))) {
        table.sets.push(set(name.clone(), family.addr_key()));
    }
    table.chains = chains;
    table.chains.push(forward);
    let fingerprint = format!("{TABLE} {}", table.fingerprint());
    table.comment = fingerprint.clone();
    if let Some(first) = table.chains.last_mut().and_then(|f| f.rules.first_mut()) {
        first.comment = Some(fingerprint);
    }
    let (by_label, by_namespace, unindexed) = index(&sets);
    Compiled {
        family,
        by_label,
        by_namespace,
        unindexed,
        table,
        selections: sets.0,
        namespaces: by_ns.keys().map(|s| s.to_string()).collect(),
        has_cluster: !clusters.is_empty(),
    }
}

/// The forward chain: held endpoints dropped first, then a jump per direction and
/// namespace through its dispatch sets (egress first: it returns when allowed), whose
/// sets it adds to `table`.
fn forward_chain<'a>(
    table: &mut Table,
    namespaces: impl Iterator<Item = &'a str> + Clone,
    between: bool,
) -> Chain {
    let set = |name: String, key| Set { name, key };
    let mut forward = Chain::base("forward", Hook::Forward { offset: -5 });
    forward.push(Rule::new(
        vec![Match::EstablishedOrRelated],
        Verdict::Accept,
    ));
    let held = || RuleId {
        kind: "Held".into(),
        object: String::new(),
        rule: "labels not known yet".into(),
    };
    let iface = |side, set: &str| Match::Iface {
        side,
        set: set.to_owned(),
    };
    let by_addr = |side, set: &str| Match::addr(side, AddrMatch::Set(set.to_owned()));
    for m in [
        iface(IfaceSide::In, "held_if"),
        iface(IfaceSide::Out, "held_if"),
        by_addr(Side::Source, "held_ip"),
        by_addr(Side::Destination, "held_ip"),
    ] {
        forward.push(
            Rule::new(vec![m], Verdict::Drop)
                .counted()
                .comment(HELD)
                .id(held()),
        );
    }
    if between {
        forward.push(Rule::new(vec![], Verdict::Jump(BETWEEN.into())));
    }
    for dir in [Direction::Egress, Direction::Ingress] {
        let (ifside, side) = match dir {
            Direction::Egress => (IfaceSide::In, Side::Source),
            Direction::Ingress => (IfaceSide::Out, Side::Destination),
        };
        let namespaces = std::iter::once(None).chain(namespaces.clone().map(Some));
        for chain in namespaces.map(|ns| chain_name(dir, ns)) {
            let (by_if, by_ip) = (format!("{chain}_if"), format!("{chain}_ip"));
            forward.push(Rule::new(
                vec![iface(ifside, &by_if)],
                Verdict::Jump(chain.clone()),
            ));
            forward.push(Rule::new(
                vec![by_addr(side, &by_ip)],
                Verdict::Jump(chain.clone()),
            ));
            table.sets.push(set(by_if, SetKey::Ifname));
            table.sets.push(set(by_ip, table.family.addr_key()));
        }
    }
    forward
}

/// Where a changed endpoint's sets are found: by one of the selector's labels, by the
/// namespace a selection is confined to, or among the rest (checked every time).
type SelectionIndex = (
    HashMap<(String, String), Vec<String>>,
    HashMap<String, Vec<String>>,
    Vec<String>,
);

/// The selections indexed (see [`SelectionIndex`]).
fn index(sets: &Sets) -> SelectionIndex {
    let mut by_label: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut by_namespace: HashMap<String, Vec<String>> = HashMap::new();
    let mut unindexed = Vec::new();
    for (name, s) in &sets.0 {
        let label = s.pod.as_ref().and_then(|p| p.match_labels.iter().next());
        match (label, &s.namespaces, &s.same_ns) {
            (Some((k, v)), _, _) => by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .push(name.clone()),
            (None, None, Some(ns)) => by_namespace
                .entry(ns.clone())
                .or_default()
                .push(name.clone()),
            _ => unindexed.push(name.clone()),
        }
    }
    (by_label, by_namespace, unindexed)
}

/// Which address is the endpoint's, and which the peer's, in a chain of `dir`.
fn sides(dir: Direction) -> (Side, Side) {
    match dir {
        Direction::Ingress => (Side::Destination, Side::Source),
        Direction::Egress => (Side::Source, Side::Destination),
    }
}

/// A rule with a counter and a comment; with an id when it is a user's rule.
fn counted(matches: Vec<Match>, verdict: Verdict, comment: &str, id: Option<RuleId>) -> Rule {
    let r = Rule::new(matches, verdict).counted().comment(comment);
    match id {
        Some(id) => r.id(id),
        None => r,
    }
}

/// The id of a policy's rule: its kind, its name and which rule.
fn rule_id(kind: &str, object: &str, rule: String) -> RuleId {
    RuleId {
        kind: kind.into(),
        object: object.into(),
        rule,
    }
}

/// One namespace's chains for one direction (`ns` `None`: namespaces without
/// NetworkPolicies, where the cluster policies decide or nothing isolates): the
/// cluster policies' chain, then (with a namespace) its NetworkPolicies' chain.
fn namespace_chains(
    sets: &mut Sets,
    clusters: &[&ClusterPolicy],
    dir: Direction,
    ns: Option<&str>,
    nps: &[&NetworkPolicy],
) -> Vec<Chain> {
    // Allowed: ingress accepts, egress returns (the destination's ingress still decides).
    let allow = match dir {
        Direction::Ingress => Verdict::Accept,
        Direction::Egress => Verdict::Return,
    };
    let name = chain_name(dir, ns);
    let np_chain = format!("{name}_np");
    let (to_np, to_np_why) = match ns {
        Some(_) => (Verdict::Goto(np_chain.clone()), "to the NetworkPolicies"),
        None => (allow.clone(), "not isolated"),
    };
    let mut chain = Chain::regular(&name);
    cluster_rules(&mut chain, sets, clusters, dir, &to_np);
    chain.push(counted(vec![], to_np, to_np_why, None));
    let Some(ns) = ns else { return vec![chain] };
    let mut np = Chain::regular(np_chain);
    np.rules = network_policy_rules(sets, dir, ns, nps);
    vec![chain, np]
}

/// The cluster policies' rules for `dir`, in order, into `chain` (`to_np`: where a Pass
/// goes).
fn cluster_rules(
    chain: &mut Chain,
    sets: &mut Sets,
    clusters: &[&ClusterPolicy],
    dir: Direction,
    to_np: &Verdict,
) {
    let allow = match dir {
        Direction::Ingress => Verdict::Accept,
        Direction::Egress => Verdict::Return,
    };
    let verdict = |c: &ClusterPolicy, action: Action| {
        Some(match action {
            Action::Allow => allow.clone(),
            Action::Deny => Verdict::Drop,
            Action::Log => Verdict::Log {
                prefix: format!("weft {}: ", c.metadata.name),
            },
            Action::Pass => to_np.clone(),
        })
    };
    ordered_cluster_rules(chain, sets, clusters, dir, verdict);
}

/// The `between` chain: the destination's ingress cluster rules, in order, as every
/// node sees them (the sets hold every endpoint, wherever it runs). When the rule that
/// decides is an Allow, the packet is marked [`BETWEEN_NETWORKS_MARK`], which the
/// isolation between named networks (`ip weft`) lets pass; any other decision leaves
/// the mark alone and the isolation as it is. It only marks: the verdicts themselves
/// are the namespace chains', where the endpoints are.
fn between_chain(sets: &mut Sets, clusters: &[&ClusterPolicy]) -> Chain {
    let mut chain = Chain::regular(BETWEEN);
    let verdict = |_: &ClusterPolicy, action: Action| match action {
        Action::Allow => Some(Verdict::MarkReturn(BETWEEN_NETWORKS_MARK)),
        Action::Deny | Action::Pass => Some(Verdict::Return),
        Action::Log => None,
    };
    ordered_cluster_rules(&mut chain, sets, clusters, Direction::Ingress, verdict);
    chain
}

/// The cluster policies' rules for `dir`, in order, each with the verdict `verdict`
/// gives its action (none: no rule).
fn ordered_cluster_rules(
    chain: &mut Chain,
    sets: &mut Sets,
    clusters: &[&ClusterPolicy],
    dir: Direction,
    verdict: impl Fn(&ClusterPolicy, Action) -> Option<Verdict>,
) {
    let (me, _) = sides(dir);
    for c in clusters.iter().filter(|c| c.types().contains(&dir)) {
        let subjects = Selection {
            pod: some_selector(&c.spec.selector),
            namespaces: c.spec.namespace_selector.clone(),
            same_ns: None,
            any: Vec::new(),
        };
        let guard = if subjects.pod.is_none() && subjects.namespaces.is_none() {
            None
        } else {
            Some(Match::addr(me, AddrMatch::Set(sets.named(subjects))))
        };
        let rules = match dir {
            Direction::Ingress => &c.spec.ingress,
            Direction::Egress => &c.spec.egress,
        };
        for (i, r) in rules.iter().enumerate() {
            // A rule that cannot match this family's packets is not in its table.
            let Some(rule_matches) = cluster_rule_match(sets, r) else {
                continue;
            };
            let matches: Vec<Match> = guard.iter().cloned().chain(rule_matches).collect();
            let which = format!("{}[{i}]", dir_word(dir));
            let comment = format!("ClusterPolicy {} {which}", c.metadata.name);
            let id = Some(rule_id("ClusterPolicy", &c.metadata.name, which));
            let everything = matches.is_empty();
            let Some(verdict) = verdict(c, r.action) else {
                continue;
            };
            chain.push(counted(matches, verdict, &comment, id));
            if r.action == Action::Pass && everything {
                return;
            }
        }
    }
}

/// A namespace's NetworkPolicies for `dir`: any rule allows; selected and nothing
/// allows: dropped; not selected: allowed.
fn network_policy_rules(
    sets: &mut Sets,
    dir: Direction,
    ns: &str,
    nps: &[&NetworkPolicy],
) -> Vec<Rule> {
    let (me, peer) = sides(dir);
    let allow = match dir {
        Direction::Ingress => Verdict::Accept,
        Direction::Egress => Verdict::Return,
    };
    let selecting: Vec<&&NetworkPolicy> = nps.iter().filter(|n| n.types().contains(&dir)).collect();
    let guards: Vec<Option<Match>> = selecting
        .iter()
        .map(|n| {
            // With no pod selector: every endpoint dispatched here is of this namespace.
            let pod = some_selector(&n.spec.pod_selector)?;
            let set = sets.named(Selection {
                pod: Some(pod),
                namespaces: None,
                same_ns: Some(ns.to_owned()),
                any: Vec::new(),
            });
            Some(Match::addr(me, AddrMatch::Set(set)))
        })
        .collect();
    let mut rules = Vec::new();
    // The endpoints no policy here isolates leave at once, past one lookup, rather
    // than past every guarded rule (unless some policy selects the whole namespace).
    if !selecting.is_empty() && guards.iter().all(Option::is_some) {
        let isolated = sets.named(Selection {
            pod: None,
            namespaces: None,
            same_ns: Some(ns.to_owned()),
            any: selecting
                .iter()
                .map(|n| n.spec.pod_selector.clone())
                .collect(),
        });
        let not_isolated = Match::not_addr(me, AddrMatch::Set(isolated));
        rules.push(counted(
            vec![not_isolated],
            allow.clone(),
            "not isolated",
            None,
        ));
    }
    for (n, guard) in selecting.iter().zip(&guards) {
        let id = format!("{ns}/{}", n.metadata.name);
        let policy_rules: Vec<(&[Peer], &[PolicyPort])> = match dir {
            Direction::Ingress => n
                .spec
                .ingress
                .iter()
                .flatten()
                .map(|r| (&r.from[..], &r.ports[..]))
                .collect(),
            Direction::Egress => n
                .spec
                .egress
                .iter()
                .flatten()
                .map(|r| (&r.to[..], &r.ports[..]))
                .collect(),
        };
        for (i, (peers, ports)) in policy_rules.into_iter().enumerate() {
            let peer_alts: Vec<Vec<Match>> = if peers.is_empty() {
                vec![Vec::new()]
            } else {
                peers
                    .iter()
                    .filter_map(|p| peer_match(sets, ns, p, peer))
                    .collect()
            };
            let which = format!("{}[{i}]", dir_word(dir));
            let comment = format!("NetworkPolicy {id} {which}");
            for pa in &peer_alts {
                for po in port_matches(ports) {
                    let matches = guard.iter().cloned().chain(pa.clone()).chain(po).collect();
                    let rid = rule_id("NetworkPolicy", &id, which.clone());
                    rules.push(counted(matches, allow.clone(), &comment, Some(rid)));
                }
            }
        }
    }
    for (n, guard) in selecting.iter().zip(&guards) {
        let id = format!("{ns}/{}", n.metadata.name);
        let rid = rule_id("NetworkPolicy", &id, format!("{} isolation", dir_word(dir)));
        let comment = format!("isolated by {id}");
        rules.push(counted(
            guard.iter().cloned().collect(),
            Verdict::Drop,
            &comment,
            Some(rid),
        ));
    }
    rules.push(counted(vec![], allow, "not isolated", None));
    rules
}

/// A NetworkPolicy peer's matches (`side`: the peer's address); `None` for an ipBlock
/// that cannot be read (refused at apply) or of the other family (it matches nothing
/// in this table).
fn peer_match(sets: &mut Sets, policy_ns: &str, p: &Peer, side: Side) -> Option<Vec<Match>> {
    if let Some(b) = &p.ip_block {
        let (cidr, except) = b.nets()?;
        if !sets.1.holds(cidr.addr()) {
            return None;
        }
        let mut m = vec![Match::addr(side, AddrMatch::net(cidr))];
        if !except.is_empty() {
            m.push(Match::not_addr(side, AddrMatch::nets(except)));
        }
        return Some(m);
    }
    let namespaces = p.namespace_selector.clone();
    let same_ns = namespaces.is_none().then(|| policy_ns.to_owned());
    let set = sets.named(Selection {
        pod: p.pod_selector.as_ref().and_then(some_selector),
        namespaces,
        same_ns,
        any: Vec::new(),
    });
    Some(vec![Match::addr(side, AddrMatch::Set(set))])
}

/// A protocol as a policy names it (`TCP` when unnamed); one no rule can match (refused
/// at apply) as protocol 255, which no packet carries.
fn proto(name: Option<&str>) -> Proto {
    Proto::from_name(name.unwrap_or("TCP")).unwrap_or(Proto::Number(255))
}

/// The port alternatives of a NetworkPolicy rule (one empty: any port of any protocol).
fn port_matches(ports: &[PolicyPort]) -> Vec<Vec<Match>> {
    if ports.is_empty() {
        return vec![Vec::new()];
    }
    ports
        .iter()
        .map(|p| {
            let proto = proto(p.protocol.as_deref());
            let m = match p.port {
                None => Match::Protocol(proto),
                Some(PortValue::Number(n)) => {
                    let first = u16::try_from(n);
                    let last = u16::try_from(p.end_port.unwrap_or(n));
                    match (first, last) {
                        (Ok(first), Ok(last)) => {
                            Match::dports(proto, [PortRange::new(first, last)])
                        }
                        // Out of range: refused at apply.
                        _ => Match::Protocol(Proto::Number(255)),
                    }
                }
                // A named port is refused at apply.
                Some(PortValue::Name(_)) => Match::Protocol(Proto::Number(255)),
            };
            vec![m]
        })
        .collect()
}

/// A cluster rule's matches (none: matches everything); `None` when it can match no
/// packet of the table's family (ICMP, or only the other family's `nets`).
fn cluster_rule_match(sets: &mut Sets, r: &ClusterRule) -> Option<Vec<Match>> {
    let family = sets.1;
    let mut m = Vec::new();
    // ICMP is IPv4's and ICMPv6 IPv6's: each rule is in its own family's table only.
    let named = r.protocol.as_deref().map(|p| proto(Some(p)));
    match (family, named) {
        (Family::Ip6, Some(Proto::Icmp)) | (Family::Ip, Some(Proto::Icmpv6)) => return None,
        _ => {}
    }
    if let Some(p) = &r.protocol {
        m.push(Match::Protocol(proto(Some(p))));
    }
    if let Some(t) = r.icmp_type {
        m.push(Match::IcmpType(t));
    }
    for (e, side) in [
        (&r.source, Side::Source),
        (&r.destination, Side::Destination),
    ] {
        let Some(e) = e else { continue };
        if e.selector.is_some() || e.namespace_selector.is_some() {
            let set = sets.named(Selection {
                pod: e.selector.as_ref().and_then(some_selector),
                namespaces: e.namespace_selector.clone(),
                same_ns: None,
                any: Vec::new(),
            });
            m.push(Match::addr(side, AddrMatch::Set(set)));
        }
        if !e.nets.is_empty() {
            // Refused at apply when unreadable.
            let nets: Vec<ipnet::IpNet> = e
                .nets
                .iter()
                .filter_map(|n| {
                    n.parse::<ipnet::IpNet>()
                        .ok()
                        .or_else(|| n.parse::<IpAddr>().ok().map(Into::into))
                })
                .filter(|n| family.holds(n.addr()))
                .collect();
            if nets.is_empty() {
                return None;
            }
            m.push(Match::addr(side, AddrMatch::nets(nets)));
        }
        if !e.ports.is_empty() {
            let ranges = e.ports.iter().filter_map(|p| port_range(p));
            let ranges = ranges.map(|(lo, hi)| PortRange::new(lo, hi));
            m.push(Match::dports(proto(r.protocol.as_deref()), ranges));
        }
    }
    Some(m)
}

/// Endpoints by namespace and by label, so a set's members are found without matching
/// every selector against every endpoint.
struct Index<'a> {
    world: &'a World,
    ns_labels: HashMap<&'a str, Labels>,
    by_ns: HashMap<&'a str, Vec<usize>>,
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
}

impl<'a> Index<'a> {
    fn new(world: &'a World) -> Self {
        let mut ix = Index {
            world,
            ns_labels: HashMap::new(),
            by_ns: HashMap::new(),
            by_label: HashMap::new(),
        };
        for (i, e) in world.endpoints.iter().enumerate() {
            ix.ns_labels
                .entry(&e.namespace)
                .or_insert_with(|| world.namespace_labels(&e.namespace));
            ix.by_ns.entry(&e.namespace).or_default().push(i);
            for (k, v) in &e.labels {
                ix.by_label.entry((k, v)).or_default().push(i);
            }
        }
        ix
    }

    fn select<'s>(&'s self, s: &'s Selection, family: Family) -> BTreeSet<Element> {
        const NONE: &[usize] = &[];
        let mut narrowest: Option<&'s [usize]> = None;
        let mut narrow = |c: &'s [usize]| {
            if narrowest.is_none_or(|n| c.len() < n.len()) {
                narrowest = Some(c);
            }
        };
        if let (None, Some(ns)) = (&s.namespaces, &s.same_ns) {
            narrow(self.by_ns.get(ns.as_str()).map_or(NONE, |v| v));
        }
        if let Some(p) = &s.pod {
            for (k, v) in &p.match_labels {
                narrow(
                    self.by_label
                        .get(&(k.as_str(), v.as_str()))
                        .map_or(NONE, |v| v),
                );
            }
        }
        let all: Vec<usize>;
        let candidates = match narrowest {
            Some(c) => c,
            None => {
                all = (0..self.world.endpoints.len()).collect();
                &all
            }
        };
        candidates
            .iter()
            .map(|&i| &self.world.endpoints[i])
            .filter(|e| s.matches(e, &self.ns_labels[e.namespace.as_str()]))
            .filter_map(|e| addr_in(e, family).map(Element::Addr))
            .collect()
    }
}

impl Compiled {
    /// Every set's and map's elements for `world` and this node's `locals`.
    pub fn elements<'l>(
        &self,
        world: &World,
        locals: impl IntoIterator<Item = &'l LocalEndpoint>,
    ) -> Elements {
        let ix = Index::new(world);
        let mut out: Elements = self
            .selections
            .iter()
            .map(|(name, s)| (name.clone(), ix.select(s, self.family)))
            .collect();
        out.extend(self.dispatch(locals));
        out
    }

    /// Where a local endpoint is dispatched: the sets (held, or its namespace's
    /// chains') and its key in them, its interface (routed) or address (bridged); `None`
    /// for a bridged endpoint without an address of the table's family (in no set).
    fn dispatch_of(&self, l: &LocalEndpoint) -> Option<(Vec<String>, Element)> {
        let ns = self
            .namespaces
            .contains(&l.endpoint.namespace)
            .then_some(l.endpoint.namespace.as_str());
        let (key, kind) = match l.attachment {
            // An interface name is at most 15 bytes, or there is no such interface.
            Attachment::Routed => (Element::Iface(l.interface.clone()), "if"),
            Attachment::Bridged => (Element::Addr(addr_in(&l.endpoint, self.family)?), "ip"),
        };
        if l.pending && (self.has_cluster || ns.is_some()) {
            return Some((vec![format!("held_{kind}")], key));
        }
        let sets = [Direction::Ingress, Direction::Egress]
            .into_iter()
            .map(|dir| format!("{}_{kind}", chain_name(dir, ns)))
            .collect();
        Some((sets, key))
    }

    /// The dispatch sets for this node's `locals`: each endpoint's interface (routed)
    /// or address (bridged) in the sets of its namespace's chains.
    fn dispatch<'l>(&self, locals: impl IntoIterator<Item = &'l LocalEndpoint>) -> Elements {
        let mut out = Elements::new();
        for dir in [Direction::Ingress, Direction::Egress] {
            let namespaces =
                std::iter::once(None).chain(self.namespaces.iter().map(|n| Some(n.as_str())));
            for chain in namespaces.map(|ns| chain_name(dir, ns)) {
                out.insert(format!("{chain}_if"), BTreeSet::new());
                out.insert(format!("{chain}_ip"), BTreeSet::new());
            }
        }
        out.insert("held_if".into(), BTreeSet::new());
        out.insert("held_ip".into(), BTreeSet::new());
        for (sets, key) in locals.into_iter().filter_map(|l| self.dispatch_of(l)) {
            for set in sets {
                out.entry(set).or_default().insert(key.clone());
            }
        }
        out
    }

    /// The sets an endpoint with these labels in this namespace may be in.
    fn candidates<'s>(&'s self, e: &'s Endpoint) -> impl Iterator<Item = &'s String> {
        e.labels
            .iter()
            .filter_map(|(k, v)| self.by_label.get(&(k.clone(), v.clone())))
            .chain(self.by_namespace.get(&e.namespace))
            .flatten()
    }

    /// What changes in `current` (this structure's elements for an earlier world) when
    /// the endpoints in `changed` came, went or were relabelled (each given as it was
    /// in `current` and as it is, `None` where absent), and the local endpoints in
    /// `local_changes` likewise: the new contents of just the sets that differ. Only
    /// the sets either version may be in are looked at, so one endpoint costs a few
    /// selector matches, not one per set or per local endpoint. `ns_labels` gives a
    /// namespace's labels (they must not have changed: that needs
    /// [`Compiled::elements`]).
    pub fn changed_elements(
        &self,
        current: &Elements,
        changed: &[(Ipv4Addr, Option<Endpoint>, Option<Endpoint>)],
        ns_labels: &dyn Fn(&str) -> Labels,
        local_changes: &[(Option<LocalEndpoint>, Option<LocalEndpoint>)],
    ) -> Elements {
        let mut out = Elements::new();
        for (ip, was_e, now_e) in changed {
            // Its address in this table before and after (the key is the IPv4 one).
            let (was_text, now_text) = match self.family {
                Family::Ip => (
                    Some(Element::Addr((*ip).into())),
                    Some(Element::Addr((*ip).into())),
                ),
                Family::Ip6 => (
                    was_e
                        .as_ref()
                        .and_then(|e| addr_in(e, Family::Ip6))
                        .map(Element::Addr),
                    now_e
                        .as_ref()
                        .and_then(|e| addr_in(e, Family::Ip6))
                        .map(Element::Addr),
                ),
            };
            let now = now_e.as_ref().map(|e| (e, ns_labels(&e.namespace)));
            let names: BTreeSet<&String> = [was_e, now_e]
                .into_iter()
                .flatten()
                .flat_map(|e| self.candidates(e))
                .chain(&self.unindexed)
                .collect();
            for name in names {
                let sel = &self.selections[name];
                let have = out.get(name).or_else(|| current.get(name));
                let holds = |t: &Option<Element>| {
                    t.as_ref()
                        .is_some_and(|t| have.is_some_and(|h| h.contains(t)))
                };
                let is =
                    now_text.is_some() && now.as_ref().is_some_and(|(e, ns)| sel.matches(e, ns));
                // An address it no longer has (its IPv6 one changed) leaves too.
                let stale = was_text != now_text && holds(&was_text);
                if stale || holds(&now_text) != is {
                    let have = have.cloned().unwrap_or_default();
                    let set = out.entry(name.clone()).or_insert(have);
                    if let (true, Some(t)) = (stale, &was_text) {
                        set.remove(t);
                    }
                    if let Some(t) = &now_text {
                        if is {
                            set.insert(t.clone());
                        } else {
                            set.remove(t);
                        }
                    }
                }
            }
        }
        let mut edit = |set: String, key: Element, present: bool| {
            let have = out.get(&set).or_else(|| current.get(&set));
            if have.is_some_and(|h| h.contains(&key)) != present {
                let have = have.cloned().unwrap_or_default();
                let elems = out.entry(set).or_insert(have);
                if present {
                    elems.insert(key);
                } else {
                    elems.remove(&key);
                }
            }
        };
        for (was, now) in local_changes {
            for (l, present) in [(was, false), (now, true)] {
                if let Some((sets, key)) = l.as_ref().and_then(|l| self.dispatch_of(l)) {
                    for set in sets {
                        edit(set, key.clone(), present);
                    }
                }
            }
        }
        // An endpoint that left a set and came back changed nothing.
        out.retain(|name, elems| current.get(name) != Some(elems));
        out
    }
}

/// A whole table: its structure and its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub table: Table,
    pub elements: Elements,
}

impl Rendered {
    /// The script that deletes and recreates the table with its sets empty.
    pub fn structure(&self) -> String {
        self.table.script()
    }

    /// The table's fingerprint (its comment).
    pub fn fingerprint(&self) -> &str {
        &self.table.comment
    }
}

impl Compiled {
    /// The script that deletes and recreates the table with its sets empty.
    pub fn structure(&self) -> String {
        self.table.script()
    }

    /// The table's fingerprint (its comment).
    pub fn fingerprint(&self) -> &str {
        &self.table.comment
    }
}

/// The table for `policies`, `world` and this node's `locals`.
pub fn render_table(world: &World, policies: &[Policy], locals: &[LocalEndpoint]) -> Rendered {
    let c = compile(policies);
    let elements = c.elements(world, locals);
    Rendered {
        table: c.table,
        elements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;

    fn addrs(a: &[&str]) -> BTreeSet<Element> {
        a.iter()
            .map(|a| Element::Addr(a.parse().unwrap()))
            .collect()
    }

    fn iface(name: &str) -> Element {
        Element::Iface(name.into())
    }

    fn world() -> (World, Vec<LocalEndpoint>) {
        let mut w = World::default();
        for (i, (ns, pod)) in [("x", "a"), ("y", "b")].iter().enumerate() {
            w.endpoints.push(Endpoint {
                name: format!("{ns}/{pod}"),
                namespace: ns.to_string(),
                labels: Labels::from([("pod".into(), pod.to_string())]),
                ip: format!("10.248.0.{}", i + 1).parse().unwrap(),
                ip6: Some(format!("fd00:248::{}", i + 1).parse().unwrap()),
            });
        }
        let locals = vec![LocalEndpoint {
            endpoint: w.endpoints[0].clone(),
            interface: "weft00000000001".into(),
            attachment: Attachment::Routed,
            pending: false,
        }];
        (w, locals)
    }

    /// The last set a rule line refers to (its peer), and its elements.
    fn set_in<'a>(r: &'a Rendered, line_with: &str) -> &'a BTreeSet<Element> {
        let text = r.structure();
        let line = text
            .lines()
            .find(|l| l.contains(line_with))
            .unwrap_or_else(|| panic!("no line with {line_with}:\n{}", r.structure()));
        let at = line.rfind('@').expect("a named set") + 1; // the peer's, after the guard
        let name: String = line[at..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        &r.elements[&name]
    }

    #[test]
    fn the_same_policies_in_any_order_make_the_same_table() {
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b, namespace: x}\nspec: {podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{port: 81}]}]}\n",
        )
        .unwrap();
        let reversed: Vec<Policy> = ps.iter().rev().cloned().collect();
        let (one, other) = (compile(&ps), compile(&reversed));
        assert_eq!(one.fingerprint(), other.fingerprint());
        assert_eq!(one.structure(), other.structure());
    }

    /// The `between` chain: the destination's ingress cluster rules in order, an Allow
    /// marking the packet for the isolation between networks and returning, a Deny or
    /// Pass returning unmarked, a Log left out; jumped to before the dispatch. None
    /// without a cluster ingress Allow (nothing could open the isolation).
    #[test]
    fn cluster_ingress_allows_mark_what_may_cross_networks() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: db}\nspec:\n  order: 5\n  selector: {matchLabels: {pod: b}}\n  ingress:\n  - {action: Log}\n  - {action: Deny, protocol: UDP}\n  - action: Allow\n    protocol: TCP\n    source: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}\n    destination: {ports: [\"80\"]}\n",
        )
        .unwrap();
        let t = render_table(&w, &ps, &locals);
        let between = t
            .table
            .chains
            .iter()
            .find(|c| c.name == BETWEEN)
            .expect("a between chain");
        let verdicts: Vec<&Verdict> = between.rules.iter().map(|r| &r.verdict).collect();
        assert_eq!(
            verdicts,
            [
                &Verdict::Return,
                &Verdict::MarkReturn(BETWEEN_NETWORKS_MARK)
            ],
            "{}",
            t.structure()
        );
        let s = t.structure();
        assert!(
            s.contains("meta mark set meta mark | 0x01000000 return"),
            "{s}"
        );
        let forward = t.table.chains.iter().find(|c| c.name == "forward").unwrap();
        let jump = forward
            .rules
            .iter()
            .position(|r| r.verdict == Verdict::Jump(BETWEEN.into()))
            .expect("jumped to");
        let dispatch = forward
            .rules
            .iter()
            .position(|r| matches!(&r.verdict, Verdict::Jump(c) if c != BETWEEN))
            .unwrap();
        assert!(jump < dispatch);
        // The Allow applies where the policy does (pod=b, y/b) and from namespace x.
        assert!(set_in(&t, "0x01000000").contains(&Element::Addr("10.248.0.1".parse().unwrap())));
        // Egress-only and NetworkPolicy-only sets of policies open nothing.
        let closed = parse_documents(
            "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: out}\nspec: {egress: [{action: Allow}]}\n",
        )
        .unwrap();
        let t = render_table(&w, &closed, &locals);
        assert!(
            t.table.chains.iter().all(|c| c.name != BETWEEN),
            "{}",
            t.structure()
        );
    }

    /// Kubernetes' SCTP cases: an SCTP port is matched as SCTP, never as TCP (the
    /// lab's TCP probes hold the other half: such a rule opens no TCP port).
    #[test]
    fn an_sctp_port_is_matched_as_sctp() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: 81, protocol: SCTP}]}]}\n",
        )
        .unwrap();
        let s = render_table(&w, &ps, &locals).structure();
        assert!(s.contains("sctp dport 81"), "{s}");
        assert!(!s.contains("tcp dport"), "{s}");
    }

    #[test]
    fn selected_endpoints_get_their_rules_and_a_final_drop() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80}]}]}\n",
        )
        .unwrap();
        let t = render_table(&w, &ps, &locals);
        let s = &t.structure();
        assert!(
            s.contains(&format!("comment \"{}\"", t.fingerprint())),
            "{s}"
        );
        assert!(
            t.elements["in_ns_x_if"].contains(&iface("weft00000000001"))
                && t.elements["out_ns_x_if"].contains(&iface("weft00000000001")),
            "{:?}",
            t.elements
        );
        assert_eq!(
            set_in(
                &t,
                "tcp dport 80 counter accept comment \"NetworkPolicy x/a ingress[0]\""
            ),
            &addrs(&["10.248.0.1", "10.248.0.2"])
        );
        assert!(
            s.contains("counter drop comment \"isolated by x/a\""),
            "{s}"
        );
        // Egress is not isolated by this policy.
        assert!(
            s.contains("chain out_ns_x_np {\n    counter return comment \"not isolated\""),
            "{s}"
        );
        // The same input renders the same table; another does not.
        assert_eq!(render_table(&w, &ps, &locals), t);
        assert_ne!(
            render_table(&w, &[], &locals).fingerprint(),
            t.fingerprint()
        );
        assert!(
            s.contains(&format!(
                "established,related accept comment \"{}\"",
                t.fingerprint()
            )),
            "{s}"
        );
    }

    #[test]
    fn endpoints_and_labels_change_elements_not_the_structure() {
        let (mut w, mut locals) = world();
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]}\n",
        )
        .unwrap();
        let before = render_table(&w, &ps, &locals);
        // A new client in x, and a bridged local endpoint.
        w.endpoints.push(Endpoint {
            name: "x/c".into(),
            namespace: "x".into(),
            labels: Labels::from([("role".into(), "client".into())]),
            ip: "10.248.0.3".parse().unwrap(),
            ip6: None,
        });
        locals.push(LocalEndpoint {
            endpoint: w.endpoints[2].clone(),
            interface: "weft00000000003".into(),
            attachment: Attachment::Bridged,
            pending: false,
        });
        let after = render_table(&w, &ps, &locals);
        assert_eq!(before.structure(), after.structure());
        assert_eq!(after.elements["in_ns_x_ip"], addrs(&["10.248.0.3"]));
        assert!(before.elements["in_ns_x_ip"].is_empty());
        let clients = set_in(&after, "NetworkPolicy x/a ingress[0]");
        assert_eq!(clients, &addrs(&["10.248.0.3"]));
        assert!(set_in(&before, "NetworkPolicy x/a ingress[0]").is_empty());
        // Only what a policy isolates goes past the fast path ("not isolated" first).
        assert!(after
            .structure()
            .contains("chain in_ns_x_np {\n    ip daddr != @"));
        assert_eq!(set_in(&after, "!= @"), &addrs(&["10.248.0.1"]));
    }

    #[test]
    fn changed_elements_agree_with_a_full_render() {
        let (mut w, mut locals) = world();
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {role: client}}}, {namespaceSelector: {}}]}]}\n",
        )
        .unwrap();
        let c = compile(&ps);
        let mut current = c.elements(&w, &locals);
        // y/b relabelled a client of x, a new local endpoint, x/a gone.
        let was_b = w.endpoints[1].clone();
        w.endpoints[1].namespace = "x".into();
        w.endpoints[1].labels = Labels::from([("role".into(), "client".into())]);
        w.endpoints.push(Endpoint {
            name: "x/c".into(),
            namespace: "x".into(),
            labels: Labels::from([("pod".into(), "a".into())]),
            ip: "10.248.0.3".parse().unwrap(),
            ip6: None,
        });
        let was_local = locals.pop();
        locals = vec![LocalEndpoint {
            endpoint: w.endpoints[2].clone(),
            interface: "weft00000000003".into(),
            attachment: Attachment::Routed,
            pending: false,
        }];
        let local_changes = vec![(was_local, None), (None, Some(locals[0].clone()))];
        let gone = w.endpoints.remove(0);
        let changed: Vec<(Ipv4Addr, Option<Endpoint>, Option<Endpoint>)> = vec![
            (gone.ip, Some(gone.clone()), None),
            (w.endpoints[0].ip, Some(was_b), Some(w.endpoints[0].clone())),
            (w.endpoints[1].ip, None, Some(w.endpoints[1].clone())),
        ];
        let ns = |n: &str| w.namespace_labels(n);
        let delta = c.changed_elements(&current, &changed, &ns, &local_changes);
        assert!(!delta.is_empty());
        current.extend(delta);
        assert_eq!(current, c.elements(&w, &locals));
        // Nothing changed: nothing to do.
        let same: Vec<_> = changed[1..]
            .iter()
            .map(|(ip, _, now)| (*ip, now.clone(), now.clone()))
            .collect();
        let same_locals = vec![(Some(locals[0].clone()), Some(locals[0].clone()))];
        assert!(c
            .changed_elements(&current, &same, &ns, &same_locals)
            .is_empty());
        // A local endpoint now held: out of its chains' sets, into held_if alone.
        let mut held = locals[0].clone();
        held.pending = true;
        let delta = c.changed_elements(
            &current,
            &[],
            &ns,
            &[(Some(locals[0].clone()), Some(held.clone()))],
        );
        current.extend(delta);
        assert_eq!(current, c.elements(&w, [&held]));
    }

    #[test]
    fn cluster_actions_become_verdicts_in_order() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: c}\nspec:\n  ingress:\n  - action: Log\n  - action: Pass\n    source: {nets: [10.9.0.0/16]}\n  - action: Deny\n    protocol: ICMP\n    icmpType: 8\n",
        )
        .unwrap();
        let s = render_table(&w, &ps, &locals).structure();
        let chain = &s[s.find("chain in_default {").expect("default chain")..];
        let log =
            chain.find("counter log prefix \"weft c: \" comment \"ClusterPolicy c ingress[0]\"");
        let pass = chain
            .find("ip saddr 10.9.0.0/16 counter accept comment \"ClusterPolicy c ingress[1]\"");
        let deny = chain.find("icmp type 8 counter drop comment \"ClusterPolicy c ingress[2]\"");
        assert!(log.is_some() && pass.is_some() && deny.is_some(), "{s}");
        assert!(log < pass && pass < deny, "in the policy's order:\n{s}");
    }

    #[test]
    fn a_selector_matching_nobody_allows_nobody() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {pod: nobody}}}]}]}\n",
        )
        .unwrap();
        let t = render_table(&w, &ps, &locals);
        assert!(set_in(&t, "NetworkPolicy x/a ingress[0]").is_empty());
        assert!(
            t.structure()
                .contains("counter drop comment \"isolated by x/a\""),
            "{}",
            t.structure()
        );
    }

    #[test]
    fn a_pending_endpoint_is_held_only_where_a_policy_could_select_it() {
        let (w, mut locals) = world();
        locals[0].pending = true;
        let held = |t: &Rendered| t.elements["held_if"].contains(&iface("weft00000000001"));
        let dispatched = |t: &Rendered| {
            t.elements
                .iter()
                .any(|(n, e)| n != "held_if" && e.contains(&iface("weft00000000001")))
        };
        // No policy at all: nothing to wait for, dispatched as usual.
        let t = render_table(&w, &[], &locals);
        assert!(!held(&t) && dispatched(&t));
        // A NetworkPolicy in another namespace cannot select it.
        let other = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: y}\nspec: {podSelector: {}}\n",
        )
        .unwrap();
        let t = render_table(&w, &other, &locals);
        assert!(!held(&t) && dispatched(&t));
        // One in its namespace, or any cluster policy, may: held, and only held.
        for doc in [
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {matchLabels: {pod: z}}}\n",
            "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: c}\nspec: {selector: {matchLabels: {pod: z}}, ingress: [{action: Deny}]}\n",
        ] {
            let ps = parse_documents(doc).unwrap();
            let t = render_table(&w, &ps, &locals);
            assert!(held(&t) && !dispatched(&t), "{doc}");
            // Dropped both ways, before anything else in the forward chain.
            let text = t.structure();
            let fwd = &text[text.find("chain forward").unwrap()..];
            let first_dispatch = fwd.find("jump").unwrap();
            for m in ["iifname @held_if", "oifname @held_if", "ip saddr @held_ip", "ip daddr @held_ip"] {
                let at = fwd.find(&format!("{m} counter drop")).expect(m);
                assert!(at < first_dispatch, "{fwd}");
            }
            // Its labels read: dispatched, with the same structure.
            locals[0].pending = false;
            let read = render_table(&w, &ps, &locals);
            assert!(!held(&read) && dispatched(&read));
            assert_eq!(read.structure(), t.structure());
            locals[0].pending = true;
        }
    }

    #[test]
    fn every_rule_a_user_wrote_carries_its_id() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}\n---\napiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: c}\nspec: {ingress: [{action: Deny, protocol: UDP}]}\n",
        )
        .unwrap();
        let ids = render_table(&w, &ps, &locals).table.rule_ids();
        let seen: BTreeSet<(String, String, String)> = ids
            .values()
            .map(|id| (id.kind.clone(), id.object.clone(), id.rule.clone()))
            .collect();
        let l = |k: &str, p: &str, r: &str| (k.to_owned(), p.to_owned(), r.to_owned());
        for want in [
            l("NetworkPolicy", "x/a", "ingress isolation"),
            l("NetworkPolicy", "x/a", "ingress[0]"),
            l("ClusterPolicy", "c", "ingress[0]"),
            l("Held", "", "labels not known yet"),
        ] {
            assert!(seen.contains(&want), "{want:?} in {seen:?}");
        }
    }
}
