//! Policy as nftables rules for the endpoints of one node (routed attachment: each
//! endpoint has a host-side interface of its own).
//!
//! One table, `ip weftpol`, loaded whole in one transaction (`nft -f`, delete and
//! recreate, atomic). Its forward chain accepts established and related traffic first,
//! then dispatches by interface through two verdict maps: a packet coming in from a
//! local endpoint's interface jumps to that endpoint's egress chain, which returns when
//! its policies allow it (and drops when not); a packet going out to a local endpoint's
//! interface jumps to its ingress chain, which accepts or drops. An endpoint in neither
//! map (no identity) is not policed. Each chain follows the verdict engine
//! ([`crate::verdict`]) rule for rule: cluster policies in order (Allow, Deny, Log, Pass),
//! then the NetworkPolicies selecting it (any rule allows; selected and nothing allows:
//! drop; not selected: allowed). Peers are the addresses of the endpoints their
//! selectors match, as anonymous sets; every rule has a counter and a comment naming
//! its policy and rule.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::model::*;
use crate::verdict::{Endpoint, World};

pub const TABLE: &str = "weftpol";

/// A local endpoint: its identity and its host-side interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub endpoint: Endpoint,
    pub interface: String,
}

fn selected_ips(
    world: &World,
    sel: Option<&crate::selector::LabelSelector>,
    ns_sel: Option<&crate::selector::LabelSelector>,
    same_ns: Option<&str>,
) -> BTreeSet<Ipv4Addr> {
    world
        .endpoints
        .iter()
        .filter(|e| match (ns_sel, same_ns) {
            (Some(s), _) => s.matches(&world.namespace_labels(&e.namespace)),
            (None, Some(ns)) => e.namespace == ns,
            (None, None) => true,
        })
        .filter(|e| sel.is_none_or(|s| s.matches(&e.labels)))
        .map(|e| e.ip)
        .collect()
}

fn set(ips: &BTreeSet<Ipv4Addr>) -> String {
    let v: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", v.join(", "))
}

/// `addr` is `saddr` or `daddr`: the peer's side. Each alternative is one match text;
/// `None` if the peer can match nothing (an empty selection).
fn peer_match(world: &World, policy_ns: &str, p: &Peer, addr: &str) -> Option<String> {
    if let Some(b) = &p.ip_block {
        let (cidr, except) = b.nets()?;
        let mut m = format!("ip {addr} {cidr}");
        if !except.is_empty() {
            let e: Vec<String> = except.iter().map(|n| n.to_string()).collect();
            write!(m, " ip {addr} != {{ {} }}", e.join(", ")).ok();
        }
        return Some(m);
    }
    let ips = selected_ips(
        world,
        p.pod_selector.as_ref(),
        p.namespace_selector.as_ref(),
        Some(policy_ns),
    );
    (!ips.is_empty()).then(|| format!("ip {addr} {}", set(&ips)))
}

/// The port alternatives of a NetworkPolicy rule (`None`: any port of any protocol).
fn port_matches(ports: &[PolicyPort]) -> Vec<Option<String>> {
    if ports.is_empty() {
        return vec![None];
    }
    ports
        .iter()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            Some(match p.port {
                None => format!("meta l4proto {proto}"),
                Some(PortValue::Number(n)) => match p.end_port {
                    Some(e) if e != n => format!("{proto} dport {n}-{e}"),
                    _ => format!("{proto} dport {n}"),
                },
                Some(PortValue::Name(_)) => "meta l4proto 255".into(), // refused at apply
            })
        })
        .collect()
}

fn quote(s: &str) -> String {
    s.replace('"', "'")
}

/// The table as loaded: its script, and the fingerprint its comment carries (an agent
/// restart that renders the same rules loads nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub script: String,
    pub fingerprint: String,
}

/// [`render`] with its fingerprint in the table's comment.
pub fn render_table(world: &World, policies: &[Policy], locals: &[Local]) -> Rendered {
    let body = render(world, policies, locals);
    let h = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let fingerprint = format!("weftpol {h:016x}");
    let script = body.replacen(
        &format!("table ip {TABLE} {{\n"),
        &format!("table ip {TABLE} {{\n  comment \"{fingerprint}\"\n"),
        1,
    );
    Rendered {
        script,
        fingerprint,
    }
}

/// The whole table for `locals` (sorted by interface for a stable text).
pub fn render(world: &World, policies: &[Policy], locals: &[Local]) -> String {
    let mut locals: Vec<&Local> = locals.iter().collect();
    locals.sort_by(|a, b| a.interface.cmp(&b.interface));
    let mut chains = String::new();
    let (mut ins, mut outs) = (Vec::new(), Vec::new());
    for (n, l) in locals.iter().enumerate() {
        for dir in [Direction::Ingress, Direction::Egress] {
            let name = format!(
                "ep{n}_{}",
                if dir == Direction::Ingress {
                    "in"
                } else {
                    "out"
                }
            );
            chains += &chain(world, policies, &l.endpoint, dir, &name);
            let entry = format!("\"{}\" : jump {name}", quote(&l.interface));
            match dir {
                Direction::Ingress => ins.push(entry),
                Direction::Egress => outs.push(entry),
            }
        }
    }
    let map = |name: &str, entries: &[String]| {
        let elements = if entries.is_empty() {
            String::new()
        } else {
            format!("    elements = {{ {} }}\n", entries.join(", "))
        };
        format!("  map {name} {{\n    type ifname : verdict\n{elements}  }}\n")
    };
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n{}{}{chains}  chain forward {{\n    type filter hook forward priority filter - 5; policy accept;\n    ct state established,related accept\n    iifname vmap @from_endpoint\n    oifname vmap @to_endpoint\n  }}\n}}\n",
        map("to_endpoint", &ins),
        map("from_endpoint", &outs),
    )
}

/// One endpoint's chain for one direction.
fn chain(world: &World, policies: &[Policy], me: &Endpoint, dir: Direction, name: &str) -> String {
    // The peer's address field.
    let peer = match dir {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    // Allowed: ingress accepts, egress returns (the destination's ingress still decides).
    let allow = match dir {
        Direction::Ingress => "accept",
        Direction::Egress => "return",
    };
    let mut s = format!("  chain {name} {{\n");
    let mut rule = |m: &str, verdict: &str, comment: &str| {
        writeln!(
            s,
            "    {m}{}counter {verdict} comment \"{}\"",
            if m.is_empty() { "" } else { " " },
            quote(comment)
        )
        .ok();
    };
    // Cluster policies.
    let cluster = crate::verdict::cluster_for(world, policies, me, dir);
    let k8s = format!("{name}_k8s");
    'cluster: for c in &cluster {
        let rules = match dir {
            Direction::Ingress => &c.spec.ingress,
            Direction::Egress => &c.spec.egress,
        };
        for (i, r) in rules.iter().enumerate() {
            let Some(m) = cluster_rule_match(world, r) else {
                continue; // selects nobody: never matches
            };
            let comment = format!("ClusterPolicy {} {}[{i}]", c.metadata.name, dir_word(dir));
            match r.action {
                Action::Allow => rule(&m, allow, &comment),
                Action::Deny => rule(&m, "drop", &comment),
                Action::Log => rule(
                    &m,
                    &format!("log prefix \"weft {}: \"", quote(&c.metadata.name)),
                    &comment,
                ),
                Action::Pass => {
                    rule(&m, &format!("goto {k8s}"), &comment);
                    if m.is_empty() {
                        break 'cluster;
                    }
                }
            }
        }
    }
    rule("", &format!("goto {k8s}"), "to the NetworkPolicies");
    s += "  }\n";
    // NetworkPolicies of the endpoint's namespace.
    let selecting = crate::verdict::namespaced_for(policies, me, dir);
    let mut t = format!("  chain {k8s} {{\n");
    if selecting.is_empty() {
        writeln!(t, "    counter {allow} comment \"not isolated\"").ok();
    } else {
        for n in &selecting {
            let id = format!("{}/{}", n.namespace(), n.metadata.name);
            let rules: Vec<(&[Peer], &[PolicyPort])> = match dir {
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
            for (i, (peers, ports)) in rules.into_iter().enumerate() {
                let peer_alts: Vec<Option<String>> = if peers.is_empty() {
                    vec![None]
                } else {
                    peers
                        .iter()
                        .filter_map(|p| peer_match(world, n.namespace(), p, peer))
                        .map(Some)
                        .collect()
                };
                for pa in &peer_alts {
                    for po in port_matches(ports) {
                        let m: Vec<&str> = [pa.as_deref(), po.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect();
                        writeln!(
                            t,
                            "    {}{}counter {allow} comment \"NetworkPolicy {} {}[{i}]\"",
                            m.join(" "),
                            if m.is_empty() { "" } else { " " },
                            quote(&id),
                            dir_word(dir)
                        )
                        .ok();
                    }
                }
            }
        }
        let ids: Vec<String> = selecting
            .iter()
            .map(|n| format!("{}/{}", n.namespace(), n.metadata.name))
            .collect();
        writeln!(
            t,
            "    counter drop comment \"isolated by {}\"",
            quote(&ids.join(", "))
        )
        .ok();
    }
    t += "  }\n";
    s + &t
}

fn dir_word(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// A cluster rule's match text (`Some("")`: matches everything); `None` if a selector
/// in it selects no endpoint (it can never match).
fn cluster_rule_match(world: &World, r: &ClusterRule) -> Option<String> {
    let mut m = Vec::new();
    if let Some(p) = &r.protocol {
        m.push(format!("meta l4proto {}", p.to_ascii_lowercase()));
    }
    if let Some(t) = r.icmp_type {
        m.push(format!("icmp type {t}"));
    }
    for (e, addr) in [(&r.source, "saddr"), (&r.destination, "daddr")] {
        let Some(e) = e else { continue };
        if e.selector.is_some() || e.namespace_selector.is_some() {
            let ips = selected_ips(
                world,
                e.selector.as_ref(),
                e.namespace_selector.as_ref(),
                None,
            );
            if ips.is_empty() {
                return None;
            }
            m.push(format!("ip {addr} {}", set(&ips)));
        }
        if !e.nets.is_empty() {
            m.push(format!("ip {addr} {{ {} }}", e.nets.join(", ")));
        }
        if !e.ports.is_empty() {
            let proto = r.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
            let ranges: Vec<String> = e
                .ports
                .iter()
                .filter_map(|p| port_range(p))
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            m.push(format!("{proto} dport {{ {} }}", ranges.join(", ")));
        }
    }
    Some(m.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;
    use crate::selector::Labels;

    fn world() -> (World, Vec<Local>) {
        let mut w = World::default();
        for (i, (ns, pod)) in [("x", "a"), ("y", "b")].iter().enumerate() {
            w.endpoints.push(Endpoint {
                name: format!("{ns}/{pod}"),
                namespace: ns.to_string(),
                labels: Labels::from([("pod".into(), pod.to_string())]),
                ip: format!("10.248.0.{}", i + 1).parse().unwrap(),
            });
        }
        let locals = vec![Local {
            endpoint: w.endpoints[0].clone(),
            interface: "weft00000000001".into(),
        }];
        (w, locals)
    }

    #[test]
    fn selected_endpoints_get_their_rules_and_a_final_drop() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80}]}]}\n",
        )
        .unwrap();
        let t = render_table(&w, &ps, &locals);
        let s = &t.script;
        assert!(s.contains(&format!("comment \"{}\"", t.fingerprint)), "{s}");
        assert!(s.contains("\"weft00000000001\" : jump ep0_in"), "{s}");
        assert!(
            s.contains("ip saddr { 10.248.0.1, 10.248.0.2 } tcp dport 80 counter accept comment \"NetworkPolicy x/a ingress[0]\""),
            "{s}"
        );
        assert!(
            s.contains("counter drop comment \"isolated by x/a\""),
            "{s}"
        );
        // Egress is not isolated by this policy.
        assert!(
            s.contains("chain ep0_out_k8s {\n    counter return comment \"not isolated\""),
            "{s}"
        );
        // The same input renders the same table; another does not.
        assert_eq!(render_table(&w, &ps, &locals), t);
        assert_ne!(render_table(&w, &[], &locals).fingerprint, t.fingerprint);
    }

    #[test]
    fn cluster_actions_become_verdicts_in_order() {
        let (w, locals) = world();
        let ps = parse_documents(
            "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: c}\nspec:\n  ingress:\n  - action: Log\n  - action: Pass\n    source: {nets: [10.9.0.0/16]}\n  - action: Deny\n    protocol: ICMP\n    icmpType: 8\n",
        )
        .unwrap();
        let s = render(&w, &ps, &locals);
        let log = s.find("counter log prefix \"weft c: \" comment \"ClusterPolicy c ingress[0]\"");
        let pass = s.find("ip saddr { 10.9.0.0/16 } counter goto ep0_in_k8s comment \"ClusterPolicy c ingress[1]\"");
        let deny = s.find(
            "meta l4proto icmp icmp type 8 counter drop comment \"ClusterPolicy c ingress[2]\"",
        );
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
        let s = render(&w, &ps, &locals);
        assert!(!s.contains("counter accept comment \"NetworkPolicy"), "{s}");
        assert!(
            s.contains("counter drop comment \"isolated by x/a\""),
            "{s}"
        );
    }
}
