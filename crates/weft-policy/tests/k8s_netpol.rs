//! Kubernetes' own network policy end-to-end cases (kubernetes/kubernetes,
//! `test/e2e/network/netpol/network_policy.go`: namespaces x, y, z labelled `ns=<name>`,
//! pods a, b, c labelled `pod=<name>`, servers on 80 and 81 over TCP and UDP) as truth
//! tables of the verdict engine, written the way that suite writes them: everything
//! reachable, then the expectations the policy changes. The same cases will drive the
//! lab's probes; here they pin the semantics `explain` and the data plane follow.

use std::net::Ipv4Addr;

use weft_policy::verdict::{explain, Endpoint, Flow, Protocol, World};
use weft_policy::{parse_documents, Labels, Policy};

const NS: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn ip(ns: usize, pod: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 248, ns as u8 + 1, pod as u8 + 1)
}

fn world() -> World {
    let mut w = World::default();
    for (n, ns) in NS.iter().enumerate() {
        w.namespaces.insert(
            ns.to_string(),
            Labels::from([("ns".into(), ns.to_string())]),
        );
        for (p, pod) in PODS.iter().enumerate() {
            w.endpoints.push(Endpoint {
                name: format!("{ns}/{pod}"),
                namespace: ns.to_string(),
                labels: Labels::from([("pod".into(), pod.to_string())]),
                ip: ip(n, p),
            });
        }
    }
    w
}

fn index(name: &str) -> usize {
    let (ns, pod) = name.split_once('/').unwrap();
    NS.iter().position(|n| *n == ns).unwrap() * 3 + PODS.iter().position(|p| *p == pod).unwrap()
}

fn name(i: usize) -> String {
    format!("{}/{}", NS[i / 3], PODS[i % 3])
}

/// Expected reachability, 9 x 9 (from row to column), self pairs not checked.
struct Reach([[bool; 9]; 9]);

impl Reach {
    fn all(v: bool) -> Reach {
        Reach([[v; 9]; 9])
    }
    /// Everything into `to` (Kubernetes' ExpectAllIngress).
    fn ingress(mut self, to: &str, v: bool) -> Reach {
        let t = index(to);
        for f in 0..9 {
            self.0[f][t] = v;
        }
        self
    }
    /// Everything out of `from` (ExpectAllEgress).
    fn egress(mut self, from: &str, v: bool) -> Reach {
        let f = index(from);
        for t in 0..9 {
            self.0[f][t] = v;
        }
        self
    }
    fn set(mut self, from: &str, to: &str, v: bool) -> Reach {
        self.0[index(from)][index(to)] = v;
        self
    }
    /// Every pod of namespace `from_ns` into `to`.
    fn namespace_into(mut self, from_ns: &str, to: &str, v: bool) -> Reach {
        for p in PODS {
            self = self.set(&format!("{from_ns}/{p}"), to, v);
        }
        self
    }
}

fn policies(yaml: &str) -> Vec<Policy> {
    parse_documents(yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks the engine's table against `want` for `protocol`/`port`; prints both on a miss.
fn check(case: &str, ps: &[Policy], protocol: Protocol, port: u16, want: &Reach) {
    let w = world();
    let mut got = [[false; 9]; 9];
    let mut wrong = Vec::new();
    for (f, row) in got.iter_mut().enumerate() {
        for (t, cell) in row.iter_mut().enumerate() {
            if f == t {
                continue;
            }
            let flow = Flow {
                src: w.endpoints[f].ip,
                dst: w.endpoints[t].ip,
                protocol,
                port,
            };
            let e = explain(&w, ps, &flow);
            *cell = e.allowed;
            if e.allowed != want.0[f][t] {
                wrong.push(format!(
                    "{} -> {}: got {}, want {} (egress: {}; ingress: {})",
                    name(f),
                    name(t),
                    e.allowed,
                    want.0[f][t],
                    e.egress.decided_by,
                    e.ingress.decided_by
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{case} ({protocol:?}/{port}):\n{}\n{}",
        render(&got),
        wrong.join("\n")
    );
}

fn render(m: &[[bool; 9]; 9]) -> String {
    let mut s = String::from("      ");
    for t in 0..9 {
        s += &format!("{:>5}", name(t));
    }
    s.push('\n');
    for (f, row) in m.iter().enumerate() {
        s += &format!("{:>5} ", name(f));
        for (t, ok) in row.iter().enumerate() {
            s += &format!(
                "{:>5}",
                if f == t {
                    "-"
                } else if *ok {
                    "."
                } else {
                    "X"
                }
            );
        }
        s.push('\n');
    }
    s
}

const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n";

fn np(name: &str, ns: &str, spec: &str) -> String {
    format!("{HEAD}metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n")
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;

#[test]
fn default_deny_ingress() {
    let p = policies(&np(
        "deny-ingress",
        "x",
        "{podSelector: {}, policyTypes: [Ingress]}",
    ));
    let mut want = Reach::all(true);
    for pod in PODS {
        want = want.ingress(&format!("x/{pod}"), false);
    }
    check("default-deny-ingress", &p, TCP, 80, &want);
    check("default-deny-ingress", &p, UDP, 81, &want);
}

#[test]
fn default_deny_all() {
    let p = policies(&np(
        "deny-all",
        "x",
        "{podSelector: {}, policyTypes: [Ingress, Egress]}",
    ));
    let mut want = Reach::all(true);
    for pod in PODS {
        want = want
            .ingress(&format!("x/{pod}"), false)
            .egress(&format!("x/{pod}"), false);
    }
    check("default-deny-all", &p, TCP, 80, &want);
}

#[test]
fn default_deny_egress() {
    let p = policies(&np(
        "deny-egress",
        "x",
        "{podSelector: {}, policyTypes: [Egress]}",
    ));
    let mut want = Reach::all(true);
    for pod in PODS {
        want = want.egress(&format!("x/{pod}"), false);
    }
    check("default-deny-egress", &p, TCP, 80, &want);
}

#[test]
fn allow_from_pods_in_the_server_namespace_by_pod_selector() {
    let p = policies(&np(
        "x-a-from-b",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .set("x/b", "x/a", true);
    check("podSelector", &p, TCP, 80, &want);
}

#[test]
fn allow_only_from_a_different_namespace_by_namespace_selector() {
    let p = policies(&np(
        "x-a-from-y",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .namespace_into("y", "x/a", true);
    check("namespaceSelector", &p, TCP, 80, &want);
}

#[test]
fn pod_selector_with_match_expressions() {
    let p = policies(&np(
        "x-a-expr",
        "x",
        "{podSelector: {matchExpressions: [{key: pod, operator: In, values: [a]}]}, ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b]}]}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .set("x/b", "x/a", true);
    check("podSelector matchExpressions", &p, TCP, 80, &want);
}

#[test]
fn namespace_selector_with_match_expressions() {
    let p = policies(&np(
        "x-a-ns-expr",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y]}]}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .namespace_into("y", "x/a", true);
    check("namespaceSelector matchExpressions", &p, TCP, 80, &want);
}

#[test]
fn pod_selector_or_namespace_selector() {
    let p = policies(&np(
        "x-a-or",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}}, {podSelector: {matchLabels: {pod: b}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .namespace_into("y", "x/a", true)
        .namespace_into("z", "x/a", true)
        .set("x/b", "x/a", true);
    check("podSelector or namespaceSelector", &p, TCP, 80, &want);
}

#[test]
fn pod_selector_and_namespace_selector() {
    let p = policies(&np(
        "x-a-and",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}, podSelector: {matchLabels: {pod: b}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .set("y/b", "x/a", true)
        .set("z/b", "x/a", true);
    check("podSelector and namespaceSelector", &p, TCP, 80, &want);
}

#[test]
fn multiple_pod_selectors_and_namespace_selectors() {
    let p = policies(&np(
        "x-a-multi",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}, podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .set("y/b", "x/a", true)
        .set("y/c", "x/a", true)
        .set("z/b", "x/a", true)
        .set("z/c", "x/a", true);
    check("multiple selectors", &p, TCP, 80, &want);
}

#[test]
fn any_pod_selectors() {
    let p = policies(&np(
        "x-a-any",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}, {podSelector: {matchLabels: {pod: c}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .set("x/b", "x/a", true)
        .set("x/c", "x/a", true);
    check("any podSelectors", &p, TCP, 80, &want);
}

#[test]
fn a_pod_in_a_different_namespace_by_pod_and_namespace_selector() {
    let p = policies(&np(
        "x-a-from-y-a",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .set("y/a", "x/a", true);
    check("pod in another namespace", &p, TCP, 80, &want);
}

#[test]
fn ports_only_81_from_namespace_y() {
    let p = policies(&np(
        "x-a-81",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 81, protocol: TCP}]}]}",
    ));
    let blocked = Reach::all(true).ingress("x/a", false);
    check("port 80 closed", &p, TCP, 80, &blocked);
    let open = Reach::all(true)
        .ingress("x/a", false)
        .namespace_into("y", "x/a", true);
    check("port 81 open from y", &p, TCP, 81, &open);
    check("UDP 81 is another protocol", &p, UDP, 81, &blocked);
}

#[test]
fn stacked_policies_with_overlapping_pod_selectors_add_up() {
    let p = policies(&format!(
        "{}---\n{}",
        np(
            "x-a-80-from-y",
            "x",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]}"
        ),
        np(
            "x-a-81-from-z",
            "x",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 81}]}]}"
        )
    ));
    let on80 = Reach::all(true)
        .ingress("x/a", false)
        .namespace_into("y", "x/a", true);
    let on81 = Reach::all(true)
        .ingress("x/a", false)
        .namespace_into("z", "x/a", true);
    check("stacked, 80", &p, TCP, 80, &on80);
    check("stacked, 81", &p, TCP, 81, &on81);
}

#[test]
fn allow_all_ingress() {
    let p = policies(&np("allow-all", "x", "{podSelector: {}, ingress: [{}]}"));
    check("allow-all", &p, TCP, 80, &Reach::all(true));
}

#[test]
fn ingress_allow_all_takes_precedence_over_a_narrower_policy() {
    let narrow = np(
        "x-a-80",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{port: 80}]}]}",
    );
    let p = policies(&narrow);
    check(
        "only 80",
        &p,
        TCP,
        81,
        &Reach::all(true).ingress("x/a", false),
    );
    let p = policies(&format!(
        "{narrow}---\n{}",
        np(
            "allow-all",
            "x",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{}]}"
        )
    ));
    check("allow-all added", &p, TCP, 81, &Reach::all(true));
}

#[test]
fn egress_allow_all_takes_precedence_over_a_narrower_policy() {
    let narrow = np(
        "x-a-egress-80",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, egress: [{ports: [{port: 80}]}], policyTypes: [Egress]}",
    );
    let p = policies(&narrow);
    check(
        "egress only 80",
        &p,
        TCP,
        81,
        &Reach::all(true).egress("x/a", false),
    );
    check("egress 80", &p, TCP, 80, &Reach::all(true));
    let p = policies(&format!(
        "{narrow}---\n{}",
        np(
            "allow-all-egress",
            "x",
            "{podSelector: {matchLabels: {pod: a}}, egress: [{}], policyTypes: [Egress]}"
        )
    ));
    check("egress allow-all added", &p, TCP, 81, &Reach::all(true));
}

#[test]
fn ingress_and_egress_together() {
    let p = policies(&np(
        "x-a-both",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress, Egress], ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}], egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .egress("x/a", false)
        .set("x/b", "x/a", true)
        .set("x/a", "x/b", true);
    check("ingress and egress", &p, TCP, 80, &want);
}

#[test]
fn egress_to_a_server_in_another_namespace_by_pod_and_namespace_selector() {
    let p = policies(&np(
        "x-a-to-y-a",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]}]}",
    ));
    let want = Reach::all(true)
        .egress("x/a", false)
        .set("x/a", "y/a", true);
    check("egress by selectors", &p, TCP, 80, &want);
}

#[test]
fn ingress_any_port_on_one_protocol() {
    let p = policies(&np(
        "x-a-tcp",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{protocol: TCP}]}]}",
    ));
    check("TCP any port", &p, TCP, 81, &Reach::all(true));
    check(
        "UDP closed",
        &p,
        UDP,
        80,
        &Reach::all(true).ingress("x/a", false),
    );
}

#[test]
fn egress_to_a_cidr_block() {
    // x/a may only reach y/b's address (an ipBlock /32).
    let p = policies(&np(
        "x-a-cidr",
        "x",
        &format!(
            "{{podSelector: {{matchLabels: {{pod: a}}}}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {}/32}}}}]}}]}}",
            ip(1, 1)
        ),
    ));
    let want = Reach::all(true)
        .egress("x/a", false)
        .set("x/a", "y/b", true);
    check("egress ipBlock", &p, TCP, 80, &want);
}

#[test]
fn egress_cidr_with_an_except_clause() {
    // Everything in 10.248.0.0/16 but namespace z's /24.
    let p = policies(&np(
        "x-a-except",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.248.0.0/16, except: [10.248.3.0/24]}}]}]}",
    ));
    let mut want = Reach::all(true);
    for pod in PODS {
        want = want.set("x/a", &format!("z/{pod}"), false);
    }
    check("ipBlock except", &p, TCP, 80, &want);
}

#[test]
fn an_address_in_both_cidr_and_except_is_allowed_by_another_peer() {
    let p = policies(&np(
        "x-a-overlap",
        "x",
        &format!(
            "{{podSelector: {{matchLabels: {{pod: a}}}}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: 10.248.0.0/16, except: [10.248.3.0/24]}}}}, {{ipBlock: {{cidr: {}/32}}}}]}}]}}",
            ip(2, 0)
        ),
    ));
    let want = Reach::all(true)
        .set("x/a", "z/b", false)
        .set("x/a", "z/c", false);
    check("cidr and except overlap", &p, TCP, 80, &want);
}

#[test]
fn ingress_and_egress_are_controlled_independently() {
    let p = policies(&format!(
        "{}---\n{}",
        np(
            "x-a-egress-deny",
            "x",
            "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}"
        ),
        np(
            "x-a-ingress-from-b",
            "x",
            "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress], ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}"
        )
    ));
    let want = Reach::all(true)
        .egress("x/a", false)
        .ingress("x/a", false)
        .set("x/b", "x/a", true);
    check("independent directions", &p, TCP, 80, &want);
}

#[test]
fn client_side_egress_deny_wins_over_server_allow() {
    let p = policies(&format!(
        "{}---\n{}",
        np(
            "x-a-no-egress",
            "x",
            "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}"
        ),
        np(
            "y-b-from-x-a",
            "y",
            "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]}"
        )
    ));
    let want = Reach::all(true).egress("x/a", false).ingress("y/b", false);
    check("client egress deny", &p, TCP, 80, &want);
}

#[test]
fn namespace_selector_on_the_default_namespace_label() {
    let p = policies(&np(
        "x-a-from-y-by-name",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]}]}",
    ));
    let want = Reach::all(true)
        .ingress("x/a", false)
        .namespace_into("y", "x/a", true);
    check("kubernetes.io/metadata.name", &p, TCP, 80, &want);
}

#[test]
fn ports_with_end_port() {
    let p = policies(&np(
        "x-a-range",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{port: 80, endPort: 81}]}]}",
    ));
    check("80 in range", &p, TCP, 80, &Reach::all(true));
    check("81 in range", &p, TCP, 81, &Reach::all(true));
    check(
        "82 outside",
        &p,
        TCP,
        82,
        &Reach::all(true).ingress("x/a", false),
    );
}

#[test]
fn udp_only_policy() {
    let p = policies(&np(
        "x-a-udp-81",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{protocol: UDP, port: 81}]}]}",
    ));
    check("UDP 81", &p, UDP, 81, &Reach::all(true));
    check(
        "UDP 80",
        &p,
        UDP,
        80,
        &Reach::all(true).ingress("x/a", false),
    );
    check(
        "TCP 81",
        &p,
        TCP,
        81,
        &Reach::all(true).ingress("x/a", false),
    );
}

#[test]
fn empty_from_is_not_the_same_as_no_rule() {
    // `ingress: []` isolates with nothing allowed; `ingress: [{}]` allows everything.
    let p = policies(&np("none", "y", "{podSelector: {}, ingress: []}"));
    let mut want = Reach::all(true);
    for pod in PODS {
        want = want.ingress(&format!("y/{pod}"), false);
    }
    check("ingress: []", &p, TCP, 80, &want);
}

// Cluster policies: order, Deny before namespaced allows, Pass to namespaced policies,
// Log goes on.

const CP: &str = "apiVersion: weft.dev/v1\nkind: ClusterPolicy\n";

#[test]
fn cluster_deny_comes_before_a_namespaced_allow_and_order_decides() {
    let p = policies(&format!(
        "{CP}metadata: {{name: deny-z-to-x}}\nspec:\n  order: 20\n  namespaceSelector: {{matchLabels: {{ns: x}}}}\n  ingress:\n  - action: Deny\n    source: {{namespaceSelector: {{matchLabels: {{ns: z}}}}}}\n---\n{CP}metadata: {{name: allow-z-a}}\nspec:\n  order: 10\n  namespaceSelector: {{matchLabels: {{ns: x}}}}\n  ingress:\n  - action: Allow\n    source: {{selector: {{matchLabels: {{pod: a}}}}, namespaceSelector: {{matchLabels: {{ns: z}}}}}}\n---\n{}",
        np("allow-all", "x", "{podSelector: {}, ingress: [{}]}")
    ));
    let mut want = Reach::all(true);
    for pod in PODS {
        let to = format!("x/{pod}");
        want = want.namespace_into("z", &to, false).set("z/a", &to, true);
    }
    check("cluster order", &p, TCP, 80, &want);
    // explain names the deciding rule.
    let w = world();
    let e = weft_policy::explain(
        &w,
        &p,
        &Flow {
            src: ip(2, 1),
            dst: ip(0, 0),
            protocol: TCP,
            port: 80,
        },
    );
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
fn cluster_pass_hands_over_to_namespaced_policies_and_log_goes_on() {
    let p = policies(&format!(
        "{CP}metadata: {{name: first}}\nspec:\n  order: 1\n  ingress:\n  - action: Log\n  - action: Pass\n    source: {{namespaceSelector: {{matchLabels: {{ns: y}}}}}}\n---\n{CP}metadata: {{name: then-deny-all}}\nspec:\n  order: 2\n  ingress: [{{action: Deny}}]\n---\n{}",
        np("x-from-y", "x", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}")
    ));
    // Only traffic from y is passed on (then allowed into x by the NetworkPolicy, and
    // into y and z as they are not isolated); everything else is denied.
    let mut want = Reach::all(false);
    for t in 0..9 {
        for p2 in PODS {
            want = want.set(&format!("y/{p2}"), &name(t), true);
        }
    }
    check("pass and deny", &p, TCP, 80, &want);
    let w = world();
    let e = weft_policy::explain(
        &w,
        &p,
        &Flow {
            src: ip(1, 0),
            dst: ip(0, 0),
            protocol: TCP,
            port: 80,
        },
    );
    assert_eq!(e.ingress.logged, ["ClusterPolicy first ingress[0]"]);
    assert_eq!(
        e.ingress.decided_by,
        "NetworkPolicy x/x-from-y ingress[0] allows"
    );
}

#[test]
fn cluster_icmp_type_and_ports() {
    let p = policies(&format!(
        "{CP}metadata: {{name: no-ping-no-81}}\nspec:\n  egress:\n  - action: Deny\n    protocol: ICMP\n    icmpType: 8\n  - action: Deny\n    protocol: TCP\n    destination: {{ports: [\"81:82\"]}}\n"
    ));
    check(
        "echo request denied",
        &p,
        Protocol::Icmp,
        8,
        &Reach::all(false),
    );
    check(
        "other ICMP passes",
        &p,
        Protocol::Icmp,
        0,
        &Reach::all(true),
    );
    check("TCP 81 denied", &p, TCP, 81, &Reach::all(false));
    check("TCP 80 passes", &p, TCP, 80, &Reach::all(true));
}
