//! Every case of `weft-conformance` (Kubernetes' own network policy e2e cases, and
//! Weft's cluster-policy cases) against the verdict engine: after each stage, `explain`'s
//! verdict for every pair of the nine pods on every probed protocol and port must be the
//! reachability the case expects, over IPv4 and again over IPv6 (the pods' IPv6
//! addresses, upstream's `ipBlock`s built from them as upstream builds them for an IPv6
//! cluster). The same cases drive the lab (`weft`'s `tests/lab_netpol.rs`), where
//! packets must agree with them too.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use weft_conformance::{Case, Change, Origin, PolicyRef, Proto, Reach, PODS};
use weft_policy::verdict::{explain, Endpoint, Flow, Protocol, World};
use weft_policy::{parse_documents, Labels, Policy};

fn ip4(pod: &str) -> Ipv4Addr {
    let i = PODS.iter().position(|p| *p == pod).unwrap();
    Ipv4Addr::new(10, 248, i as u8 / 3 + 1, i as u8 % 3 + 1)
}

fn ip6(pod: &str) -> Ipv6Addr {
    let i = PODS.iter().position(|p| *p == pod).unwrap() as u16;
    Ipv6Addr::new(0xfd00, 0x10, 0x248, i / 3 + 1, 0, 0, 0, i % 3 + 1)
}

/// Which family the flows are of.
#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

/// A pod's address in `family`.
fn addr(family: Family, pod: &str) -> IpAddr {
    match family {
        Family::V4 => ip4(pod).into(),
        Family::V6 => ip6(pod).into(),
    }
}

fn ip(pod: &str) -> IpAddr {
    addr(Family::V4, pod)
}

/// The nine pods, labelled `pod=<name>`, in namespaces labelled `ns=<name>` (and, as
/// every namespace, by their name).
fn world() -> World {
    let mut w = World::default();
    for pod in PODS {
        let (ns, name) = pod.split_once('/').unwrap();
        w.namespaces
            .insert(ns.into(), Labels::from([("ns".into(), ns.into())]));
        w.endpoints.push(Endpoint {
            name: pod.into(),
            namespace: ns.into(),
            labels: Labels::from([("pod".into(), name.into())]),
            ip: ip4(pod),
            ip6: Some(ip6(pod)),
        });
    }
    w
}

fn protocol(p: Proto) -> Protocol {
    match p {
        Proto::Tcp => Protocol::Tcp,
        Proto::Udp => Protocol::Udp,
        Proto::Sctp => Protocol::Sctp,
    }
}

/// The world and policies a case has made so far.
struct State {
    world: World,
    policies: BTreeMap<PolicyRef, Policy>,
}

impl State {
    fn policies(&self) -> Vec<Policy> {
        self.policies.values().cloned().collect()
    }

    /// Makes one stage's change, as the store would take it.
    fn change(&mut self, case: &str, change: &Change) {
        match change {
            Change::Apply(docs) => {
                for d in docs {
                    let mut parsed = parse_documents(&d.yaml)
                        .unwrap_or_else(|e| panic!("{case}: {} is refused: {e}", d.id));
                    assert_eq!(parsed.len(), 1);
                    self.policies.insert(d.id.clone(), parsed.remove(0));
                }
            }
            Change::Delete(ids) => {
                for id in ids {
                    assert!(self.policies.remove(id).is_some(), "{case}: no {id}");
                }
            }
            Change::LabelPod { pod, key, value } => {
                let e = self.world.endpoints.iter_mut().find(|e| e.name == *pod);
                e.unwrap().labels.insert((*key).into(), (*value).into());
            }
            Change::LabelNamespace {
                namespace,
                key,
                value,
            } => {
                let labels = self.world.namespaces.get_mut(*namespace).unwrap();
                labels.insert((*key).into(), (*value).into());
            }
            Change::Refused { docs, error } => {
                let text: Vec<&str> = docs.iter().map(|d| d.yaml.as_str()).collect();
                let e = parse_documents(&text.join("---\n"))
                    .err()
                    .unwrap_or_else(|| panic!("{case}: taken, but Weft refuses it"));
                assert!(
                    e.to_string().contains(error),
                    "{case}: refused as {e:?}, not with {error:?}"
                );
            }
        }
    }
}

/// `explain`'s verdict for every pair on `probe`, over `family`.
fn verdicts(st: &State, probe: weft_conformance::Probe, family: Family) -> (Reach, Vec<String>) {
    let policies = st.policies();
    let mut got = Reach::all(true);
    let mut why = Vec::new();
    for from in PODS {
        for to in PODS.iter().filter(|t| **t != from) {
            let e = explain(
                &st.world,
                &policies,
                &Flow {
                    src: addr(family, from),
                    dst: addr(family, to),
                    protocol: protocol(probe.proto),
                    port: probe.port,
                },
            );
            got.set(from, to, e.allowed);
            why.push(format!(
                "{from} -> {to}: egress {}; ingress {}",
                e.egress.decided_by, e.ingress.decided_by
            ));
        }
    }
    (got, why)
}

fn run(case: &Case, family: Family) {
    let mut st = State {
        world: world(),
        policies: BTreeMap::new(),
    };
    for (n, stage) in case.stages.iter().enumerate() {
        st.change(case.name, &stage.change);
        for (probe, want) in &stage.expect {
            let (got, why) = verdicts(&st, *probe, family);
            let wrong = want.differences(&got);
            let over = if family == Family::V6 { "IPv6" } else { "IPv4" };
            assert!(
                wrong.is_empty(),
                "{} over {over} stage {} ({probe}):\nexpected\n{want:?}got\n{got:?}{}\n{}",
                case.name,
                n + 1,
                wrong.join("\n"),
                why.iter()
                    .filter(|w| wrong
                        .iter()
                        .any(|x| x.starts_with(w.split(':').next().unwrap())))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

fn cases() -> Vec<Case> {
    weft_conformance::cases(&ip)
}

/// Every upstream case over `family`, its `ipBlock`s built from that family's
/// addresses.
fn upstream_cases_hold(family: Family) {
    let all = weft_conformance::cases(&|pod| addr(family, pod));
    let upstream: Vec<&Case> = all
        .iter()
        .filter(|c| matches!(c.origin, Origin::Kubernetes { .. }))
        .collect();
    assert_eq!(upstream.len(), 48);
    for c in upstream {
        run(c, family);
    }
}

#[test]
fn every_upstream_case_holds() {
    upstream_cases_hold(Family::V4);
}

/// Upstream runs the same suite on IPv6 clusters: the same matrices hold.
#[test]
fn every_upstream_case_holds_over_ipv6() {
    upstream_cases_hold(Family::V6);
}

#[test]
fn every_weft_case_holds() {
    for family in [Family::V4, Family::V6] {
        for c in cases()
            .iter()
            .filter(|c| matches!(c.origin, Origin::Weft(_)))
        {
            run(c, family);
        }
    }
}

/// An IPv4 `ipBlock` says nothing of IPv6 flows and the reverse: a policy allowing
/// egress only to y/b's IPv4 address gives x/a no IPv6 peer at all.
#[test]
fn an_ip_block_matches_its_own_family_only() {
    let mut st = State {
        world: world(),
        policies: BTreeMap::new(),
    };
    let yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: v4-only, namespace: x}}\nspec: {{podSelector: {{matchLabels: {{pod: a}}}}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: \"{}/32\"}}}}]}}]}}",
        ip4("y/b")
    );
    let p = parse_documents(&yaml).unwrap().remove(0);
    st.policies
        .insert(PolicyRef::Namespaced("x".into(), "v4-only".into()), p);
    let policies = st.policies();
    let allowed = |family, to: &str| {
        let f = Flow {
            src: addr(family, "x/a"),
            dst: addr(family, to),
            protocol: Protocol::Tcp,
            port: 80,
        };
        explain(&st.world, &policies, &f).allowed
    };
    assert!(allowed(Family::V4, "y/b"));
    assert!(
        !allowed(Family::V6, "y/b"),
        "an IPv4 block allows no IPv6 flow"
    );
    assert!(
        !allowed(Family::V6, "x/b"),
        "x/a is isolated for egress in both families"
    );
}

/// The case's documents after its first stage, parsed.
fn first_stage_policies(name: &str) -> Vec<Policy> {
    let all = cases();
    let case = all.iter().find(|c| c.name == name).unwrap();
    let Change::Apply(docs) = &case.stages[0].change else {
        panic!("{name} applies first");
    };
    docs.iter()
        .flat_map(|d| parse_documents(&d.yaml).unwrap())
        .collect()
}

fn flow(from: &str, to: &str, protocol: Protocol, port: u16) -> Flow {
    Flow {
        src: ip(from),
        dst: ip(to),
        protocol,
        port,
    }
}

#[test]
fn explain_names_the_cluster_rule_that_decides() {
    let p = first_stage_policies("cluster_deny_comes_before_a_namespaced_allow_and_order_decides");
    let e = explain(&world(), &p, &flow("z/b", "x/a", Protocol::Tcp, 80));
    assert_eq!(
        e.ingress.decided_by,
        "ClusterPolicy deny-z-to-x ingress[0]: Deny"
    );
    assert!(e
        .ingress
        .selected_by
        .contains(&"NetworkPolicy x/allow-all".to_string()));
}

#[test]
fn explain_lists_log_rules_and_the_namespaced_rule_after_a_pass() {
    let p = first_stage_policies("cluster_pass_hands_over_to_namespaced_policies_and_log_goes_on");
    let e = explain(&world(), &p, &flow("y/a", "x/a", Protocol::Tcp, 80));
    assert_eq!(e.ingress.logged, ["ClusterPolicy first ingress[0]"]);
    assert_eq!(
        e.ingress.decided_by,
        "NetworkPolicy x/x-from-y ingress[0] allows"
    );
}

/// ICMP types are not probed by the lab (it probes TCP and UDP), so this one is the
/// verdict engine's alone.
#[test]
fn cluster_icmp_type_and_ports() {
    let p = parse_documents(
        "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: no-ping-no-81}\nspec:\n  egress:\n  - action: Deny\n    protocol: ICMP\n    icmpType: 8\n  - action: Deny\n    protocol: TCP\n    destination: {ports: [\"81:82\"]}\n",
    )
    .unwrap();
    let w = world();
    for (protocol, port, allowed) in [
        (Protocol::Icmp, 8, false),
        (Protocol::Icmp, 0, true),
        (Protocol::Tcp, 81, false),
        (Protocol::Tcp, 82, false),
        (Protocol::Tcp, 80, true),
    ] {
        let e = explain(&w, &p, &flow("x/a", "y/b", protocol, port));
        assert_eq!(e.allowed, allowed, "{protocol:?}/{port}");
    }
}

/// ICMPv6 is its own protocol (Calico's `ICMPv6`), with its own types: a rule denying
/// IPv6 echo requests (type 128) leaves IPv4 pings and other ICMPv6 types alone, and
/// an ICMP rule says nothing of ICMPv6.
#[test]
fn cluster_icmpv6_types() {
    let p = parse_documents(
        "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: no-ping6}\nspec:\n  egress:\n  - action: Deny\n    protocol: ICMPv6\n    icmpType: 128\n  - action: Deny\n    protocol: ICMP\n    icmpType: 13\n",
    )
    .unwrap();
    let w = world();
    let over6 = |protocol, port| Flow {
        src: addr(Family::V6, "x/a"),
        dst: addr(Family::V6, "y/b"),
        protocol,
        port,
    };
    assert!(!explain(&w, &p, &over6(Protocol::Icmpv6, 128)).allowed);
    assert!(explain(&w, &p, &over6(Protocol::Icmpv6, 129)).allowed);
    assert!(
        explain(&w, &p, &over6(Protocol::Icmpv6, 13)).allowed,
        "ICMP's 13 is not ICMPv6's"
    );
    assert!(explain(&w, &p, &flow("x/a", "y/b", Protocol::Icmp, 8)).allowed);
    assert!(!explain(&w, &p, &flow("x/a", "y/b", Protocol::Icmp, 13)).allowed);
}
