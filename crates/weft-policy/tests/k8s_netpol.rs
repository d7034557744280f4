//! Every case of `weft-conformance` (Kubernetes' own network policy e2e cases, and
//! Weft's cluster-policy cases) against the verdict engine: after each stage, `explain`'s
//! verdict for every pair of the nine pods on every probed protocol and port must be the
//! reachability the case expects. The same cases drive the lab (`weft`'s
//! `tests/lab_netpol.rs`), where packets must agree with them too.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use weft_conformance::{Case, Change, Origin, PolicyRef, Proto, Reach, PODS};
use weft_policy::verdict::{explain, Endpoint, Flow, Protocol, World};
use weft_policy::{parse_documents, Labels, Policy};

fn ip(pod: &str) -> Ipv4Addr {
    let i = PODS.iter().position(|p| *p == pod).unwrap();
    Ipv4Addr::new(10, 248, i as u8 / 3 + 1, i as u8 % 3 + 1)
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
            ip: ip(pod),
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

/// `explain`'s verdict for every pair on `probe`.
fn verdicts(st: &State, probe: weft_conformance::Probe) -> (Reach, Vec<String>) {
    let policies = st.policies();
    let mut got = Reach::all(true);
    let mut why = Vec::new();
    for from in PODS {
        for to in PODS.iter().filter(|t| **t != from) {
            let e = explain(
                &st.world,
                &policies,
                &Flow {
                    src: ip(from),
                    dst: ip(to),
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

fn run(case: &Case) {
    let mut st = State {
        world: world(),
        policies: BTreeMap::new(),
    };
    for (n, stage) in case.stages.iter().enumerate() {
        st.change(case.name, &stage.change);
        for (probe, want) in &stage.expect {
            let (got, why) = verdicts(&st, *probe);
            let wrong = want.differences(&got);
            assert!(
                wrong.is_empty(),
                "{} stage {} ({probe}):\nexpected\n{want:?}got\n{got:?}{}\n{}",
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

#[test]
fn every_upstream_case_holds() {
    let all = cases();
    let upstream: Vec<&Case> = all
        .iter()
        .filter(|c| matches!(c.origin, Origin::Kubernetes { .. }))
        .collect();
    assert_eq!(upstream.len(), 48);
    for c in upstream {
        run(c);
    }
}

#[test]
fn every_weft_case_holds() {
    for c in cases()
        .iter()
        .filter(|c| matches!(c.origin, Origin::Weft(_)))
    {
        run(c);
    }
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
