//! End to end, in network namespaces: Kubernetes' own network policy cases
//! (kubernetes/kubernetes `test/e2e/network/netpol`: namespaces x, y, z labelled
//! `ns=<name>`, pods a, b, c labelled `pod=<name>`, each serving TCP and UDP on 80 and
//! 81) as lab truth tables, on three hosts, in both CNI attachment modes; and four of
//! them over the vxlan, udp, ipip and bgp backends.
//!
//! The pods are spread so that every case has same-host and cross-host pairs (pod a on
//! h1, b on h2, c on h3). For each case the policies are applied with `weftctl policy
//! apply` and `weftctl lab probe` tries all 288 (pair, port) cells: every cell must
//! agree with `weftctl policy explain`, whose verdicts `weft-policy`'s
//! `tests/k8s_netpol.rs` pins to the expectations Kubernetes' suite writes for the
//! same cases. Each case must also block something (so nothing passes vacuously), and
//! with the policies deleted everything is reachable again. The packets a default-deny
//! dropped show in the agent's `/metrics` under the policy and rule.

mod common;

use std::collections::BTreeMap;

use common::*;
use weft_testkit::require_root;

struct Doc {
    /// `policy delete` arguments.
    delete: Vec<String>,
    yaml: String,
}

fn np(name: &str, ns: &str, spec: &str) -> Doc {
    Doc {
        delete: vec![format!("{ns}/{name}")],
        yaml: format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        ),
    }
}

fn cluster(name: &str, spec: &str) -> Doc {
    Doc {
        delete: vec!["--cluster".into(), name.into()],
        yaml: format!("apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n"),
    }
}

/// The cases, by the names `tests/k8s_netpol.rs` gives them. `ip` gives a pod's address.
fn cases(ip: &dyn Fn(&str) -> String) -> Vec<(&'static str, Vec<Doc>)> {
    const A: &str = "podSelector: {matchLabels: {pod: a}}";
    vec![
        ("default_deny_ingress", vec![np("deny-ingress", "x", "{podSelector: {}, policyTypes: [Ingress]}")]),
        ("default_deny_all", vec![np("deny-all", "x", "{podSelector: {}, policyTypes: [Ingress, Egress]}")]),
        ("default_deny_egress", vec![np("deny-egress", "x", "{podSelector: {}, policyTypes: [Egress]}")]),
        ("allow_from_pods_in_the_server_namespace_by_pod_selector", vec![np("x-a-from-b", "x", &format!("{{{A}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"))]),
        ("allow_only_from_a_different_namespace_by_namespace_selector", vec![np("x-a-from-y", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}]}}]}}"))]),
        ("pod_selector_with_match_expressions", vec![np("x-a-expr", "x", "{podSelector: {matchExpressions: [{key: pod, operator: In, values: [a]}]}, ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b]}]}}]}]}")]),
        ("namespace_selector_with_match_expressions", vec![np("x-a-ns-expr", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: In, values: [y]}}]}}}}]}}]}}"))]),
        ("pod_selector_or_namespace_selector", vec![np("x-a-or", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}}}, {{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"))]),
        ("pod_selector_and_namespace_selector", vec![np("x-a-and", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}, podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"))]),
        ("multiple_pod_selectors_and_namespace_selectors", vec![np("x-a-multi", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}, podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b, c]}}]}}}}]}}]}}"))]),
        ("any_pod_selectors", vec![np("x-a-any", "x", &format!("{{{A}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}, {{podSelector: {{matchLabels: {{pod: c}}}}}}]}}]}}"))]),
        ("a_pod_in_a_different_namespace_by_pod_and_namespace_selector", vec![np("x-a-from-y-a", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}]}}]}}"))]),
        ("ports_only_81_from_namespace_y", vec![np("x-a-81", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: 81, protocol: TCP}}]}}]}}"))]),
        ("stacked_policies_with_overlapping_pod_selectors_add_up", vec![
            np("x-a-80-from-y", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: 80}}]}}]}}")),
            np("x-a-81-from-z", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: z}}}}}}], ports: [{{port: 81}}]}}]}}")),
        ]),
        ("ingress_allow_all_takes_precedence_over_a_narrower_policy", vec![
            np("x-a-80", "x", &format!("{{{A}, ingress: [{{ports: [{{port: 80}}]}}]}}")),
            np("allow-all", "x", &format!("{{{A}, ingress: [{{}}]}}")),
            // and something that does block, so the case is not vacuous
            np("x-b-none", "x", "{podSelector: {matchLabels: {pod: b}}, policyTypes: [Ingress]}"),
        ]),
        ("egress_allow_all_takes_precedence_over_a_narrower_policy", vec![
            np("x-a-egress-80", "x", &format!("{{{A}, egress: [{{ports: [{{port: 80}}]}}], policyTypes: [Egress]}}")),
            np("allow-all-egress", "x", &format!("{{{A}, egress: [{{}}], policyTypes: [Egress]}}")),
            np("x-b-no-egress", "x", "{podSelector: {matchLabels: {pod: b}}, policyTypes: [Egress]}"),
        ]),
        ("egress_only_80", vec![np("x-a-egress-80", "x", &format!("{{{A}, egress: [{{ports: [{{port: 80}}]}}], policyTypes: [Egress]}}"))]),
        ("ingress_and_egress_together", vec![np("x-a-both", "x", &format!("{{{A}, policyTypes: [Ingress, Egress], ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}], egress: [{{to: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"))]),
        ("egress_to_a_server_in_another_namespace_by_pod_and_namespace_selector", vec![np("x-a-to-y-a", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}]}}]}}"))]),
        ("ingress_any_port_on_one_protocol", vec![np("x-a-tcp", "x", &format!("{{{A}, ingress: [{{ports: [{{protocol: TCP}}]}}]}}"))]),
        ("egress_to_a_cidr_block", vec![np("x-a-cidr", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {}/32}}}}]}}]}}", ip("y/b")))]),
        ("egress_cidr_with_an_except_clause", vec![np("x-a-except", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{}/32, {}/32]}}}}]}}]}}", ip("z/b"), ip("z/c")))]),
        ("an_address_in_both_cidr_and_except_is_allowed_by_another_peer", vec![np("x-a-overlap", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{}/32, {}/32]}}}}, {{ipBlock: {{cidr: {}/32}}}}]}}]}}", ip("z/b"), ip("z/c"), ip("z/c")))]),
        ("ingress_and_egress_are_controlled_independently", vec![
            np("x-a-egress-deny", "x", &format!("{{{A}, policyTypes: [Egress]}}")),
            np("x-a-ingress-from-b", "x", &format!("{{{A}, policyTypes: [Ingress], ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}")),
        ]),
        ("client_side_egress_deny_wins_over_server_allow", vec![
            np("x-a-no-egress", "x", &format!("{{{A}, policyTypes: [Egress]}}")),
            np("y-allow-all", "y", "{podSelector: {}, ingress: [{}]}"),
        ]),
        ("namespace_selector_on_the_default_namespace_label", vec![np("x-a-from-y-by-name", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}]}}]}}"))]),
        ("ports_with_end_port", vec![np("x-a-range", "x", &format!("{{{A}, ingress: [{{ports: [{{port: 80, endPort: 80, protocol: TCP}}, {{port: 81, endPort: 90, protocol: UDP}}]}}]}}"))]),
        ("udp_only_policy", vec![np("x-a-udp", "x", &format!("{{{A}, ingress: [{{ports: [{{protocol: UDP, port: 81}}]}}]}}"))]),
        ("empty_from_is_not_the_same_as_no_rule", vec![np("x-a-empty-from", "x", &format!("{{{A}, ingress: [{{from: [], ports: [{{port: 80}}]}}]}}"))]),
        ("cluster_deny_comes_before_a_namespaced_allow_and_order_decides", vec![
            cluster("deny-z", "{order: 20, selector: {matchLabels: {pod: a}}, ingress: [{action: Deny, source: {namespaceSelector: {matchLabels: {ns: z}}}}]}"),
            cluster("allow-z-b", "{order: 10, selector: {matchLabels: {pod: a}}, ingress: [{action: Allow, source: {selector: {matchLabels: {pod: b}}, namespaceSelector: {matchLabels: {ns: z}}}}]}"),
            np("x-allow-all", "x", "{podSelector: {}, ingress: [{}]}"),
        ]),
        ("cluster_pass_hands_over_to_namespaced_policies_and_log_goes_on", vec![
            cluster("pass-y", "{order: 1, namespaceSelector: {matchLabels: {ns: x}}, ingress: [{action: Log}, {action: Pass, source: {namespaceSelector: {matchLabels: {ns: y}}}}, {action: Deny, protocol: UDP}]}"),
            np("x-from-y-80", "x", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80, protocol: UDP}]}]}"),
        ]),
        ("cluster_ports", vec![cluster("no-81", "{selector: {matchLabels: {pod: c}}, egress: [{action: Deny, protocol: TCP, destination: {ports: ['81']}}]}")]),
    ]
}

/// The cases named in `only` (all with `None`) on a 3-host lab with `backend`.
fn run_cases(mode: &str, backend: &str, only: Option<&[&str]>) {
    let lab = Lab::up_with(
        &format!("np{}{}", &mode[..1], &backend[..2]),
        "embedded",
        3,
        &["--cni-mode", mode, "--backend", backend],
    );
    let mut ips = BTreeMap::new();
    for ns in ["x", "y", "z"] {
        lab.ok(
            lab.ctl(&[
                "--lab",
                &lab.name,
                "namespace",
                "label",
                ns,
                &format!("ns={ns}"),
            ]),
            "namespace label",
        );
        for (h, pod) in ["a", "b", "c"].iter().enumerate() {
            let id = format!("{ns}/{pod}");
            let host = format!("h{}", h + 1);
            let label = format!("pod={pod}");
            let out = lab.ok(
                lab.lab(
                    &["container", "add"],
                    &[
                        &id,
                        "--host",
                        &host,
                        "--label",
                        &label,
                        "--serve",
                        "tcp:80,tcp:81,udp:80,udp:81",
                    ],
                ),
                "container add",
            );
            let ip = out
                .split(": ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap()
                .to_string();
            ips.insert(id, ip);
        }
    }
    let ip = |id: &str| ips[id].clone();
    let everything_open = |why: &str| {
        let (open, table) = probe(&lab, 15);
        assert!(
            open == 288,
            "{mode}: {why}: all 288 probes should pass:\n{table}"
        );
    };
    everything_open("before any policy");
    let dir = tempfile::tempdir().unwrap();
    let mut all = cases(&ip);
    assert!(all.len() >= 25, "at least 25 of Kubernetes' cases");
    if let Some(only) = only {
        all.retain(|(name, _)| only.contains(name));
        assert_eq!(all.len(), only.len(), "unknown case in {only:?}");
    }
    for (name, docs) in all {
        let file = dir.path().join(format!("{name}.yaml"));
        let text: Vec<&str> = docs.iter().map(|d| d.yaml.as_str()).collect();
        std::fs::write(&file, text.join("---\n")).unwrap();
        lab.ok(
            lab.ctl(&[
                "--lab",
                &lab.name,
                "policy",
                "apply",
                "-f",
                file.to_str().unwrap(),
            ]),
            name,
        );
        let (open, table) = probe(&lab, 15);
        assert!(
            open < 288,
            "{mode}: {name}: the policies should block something:\n{table}"
        );
        if name == "default_deny_ingress" {
            // The packets it dropped, counted per policy and rule where x/a lives.
            let (_, metrics) = lab.agent_http("h1", "/metrics");
            let row = "weft_policy_denied_packets_total{kind=\"NetworkPolicy\",policy=\"x/deny-ingress\",rule=\"ingress isolation\"} ";
            let n: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix(row))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {row} in\n{metrics}"));
            assert!(n > 0, "{metrics}");
        }
        for d in &docs {
            let mut args = vec!["--lab", &lab.name, "policy", "delete"];
            args.extend(d.delete.iter().map(String::as_str));
            lab.ok(lab.ctl(&args), "policy delete");
        }
    }
    everything_open("with every policy deleted");
}

/// Probes until the traffic agrees with `explain` in every cell (the agents load the
/// rules within moments of the store change) or `within` seconds pass, which fails the
/// test with the matrix; the number of reachable cells and the matrix.
fn probe(lab: &Lab, within: u64) -> (usize, String) {
    let start = std::time::Instant::now();
    loop {
        let out = lab.ctl(&["--lab", &lab.name, "lab", "probe", "--timeout-ms", "800"]);
        let table = text(&out.stdout);
        if out.status.success() {
            let open = table
                .lines()
                .last()
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in\n{table}{}", text(&out.stderr)));
            return (open, table);
        }
        assert!(
            start.elapsed().as_secs() < within,
            "traffic disagrees with explain (`!`) after {within} s:\n{table}{}",
            text(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn kubernetes_cases_hold_on_three_hosts_routed() {
    require_root!("kubernetes_cases_hold_on_three_hosts_routed");
    run_cases("routed", "host-gw", None);
}

#[test]
fn kubernetes_cases_hold_on_three_hosts_bridged() {
    require_root!("kubernetes_cases_hold_on_three_hosts_bridged");
    run_cases("bridge", "host-gw", None);
}

/// Enforcement sits on the containers' own side of the node (their veths, or their
/// addresses on the bridge), so the backend that carried a packet must not matter: a
/// few cases, both directions and a cluster policy, over each encapsulating backend
/// (ipip in the kernel where it has the module, in user space where not) and BGP,
/// in both attachment modes between them.
#[test]
fn cases_hold_on_every_backend() {
    require_root!("cases_hold_on_every_backend");
    let some = [
        "default_deny_ingress",
        "pod_selector_and_namespace_selector",
        "client_side_egress_deny_wins_over_server_allow",
        "cluster_deny_comes_before_a_namespaced_allow_and_order_decides",
    ];
    for (backend, mode) in [
        ("vxlan", "routed"),
        ("udp", "bridge"),
        ("ipip", "routed"),
        ("bgp", "bridge"),
    ] {
        run_cases(mode, backend, Some(&some));
    }
}
