//! The cases of kubernetes/kubernetes `test/e2e/network/netpol/network_policy.go`, one
//! per `It(...)`, with its policies and expectations as upstream writes them (names of
//! policies included). Upstream selects namespaces by `kubernetes.io/metadata.name`,
//! which every namespace has.

use std::net::IpAddr;

use crate::{
    network_policy as np, Case, Change, Doc, Origin, PolicyRef, Reach, Stage, SCTP80, SCTP81,
    TCP80, TCP81, UDP80, UDP81,
};

/// The policies' target in most cases: `pod: a` (upstream's
/// `GenNetworkPolicyWithNameAndPodMatchLabel(..., {"pod": "a"}, ...)`).
const A: &str = "podSelector: {matchLabels: {pod: a}}";

fn tcp(test: &'static str) -> Origin {
    Origin::Kubernetes {
        context: "TCP",
        test,
    }
}

fn udp(test: &'static str) -> Origin {
    Origin::Kubernetes {
        context: "UDP",
        test,
    }
}

fn sctp(test: &'static str) -> Origin {
    Origin::Kubernetes {
        context: "SCTP",
        test,
    }
}

fn apply(docs: Vec<Doc>, expect: Vec<(crate::Probe, Reach)>) -> Stage {
    Stage {
        change: Change::Apply(docs),
        expect,
    }
}

fn case(name: &'static str, origin: Origin, stages: Vec<Stage>) -> Case {
    Case {
        name,
        origin,
        stages,
    }
}

/// Everything reachable.
fn open() -> Reach {
    Reach::all(true)
}

pub fn cases(ip: &dyn Fn(&str) -> IpAddr) -> Vec<Case> {
    let mut all = isolation();
    all.extend(selectors());
    all.extend(ports());
    all.extend(updates());
    all.extend(egress());
    all.extend(ip_blocks(ip));
    all.extend(protocols());
    all
}

/// Default deny and allow-all.
fn isolation() -> Vec<Case> {
    vec![
        case(
            "default_deny_ingress",
            tcp("should support a 'default-deny-ingress' policy"),
            vec![apply(
                vec![np("deny-ingress", "x", "{podSelector: {}, policyTypes: [Ingress]}")],
                vec![(TCP80, open().peer("*", "x", false))],
            )],
        ),
        case(
            "default_deny_all",
            tcp("should support a 'default-deny-all' policy"),
            vec![apply(
                vec![np(
                    "deny-all",
                    "x",
                    "{podSelector: {}, policyTypes: [Ingress, Egress]}",
                )],
                vec![(
                    TCP80,
                    open().peer("*", "x", false).peer("x", "*", false),
                )],
            )],
        ),
        case(
            "allow_ingress_to_one_target_in_a_default_deny_namespace",
            tcp("should enforce policy to allow ingress traffic for a target"),
            // Upstream (pods x/a, x/b, y/a) expects x/b isolated; x/c is too.
            vec![apply(
                vec![
                    np("deny-all", "x", "{podSelector: {}, policyTypes: [Ingress]}"),
                    np(
                        "allow-all-to-a",
                        "x",
                        &format!("{{{A}, ingress: [{{from: [{{podSelector: {{}}, namespaceSelector: {{}}}}]}}]}}"),
                    ),
                ],
                vec![(
                    TCP80,
                    open().peer("*", "x", false).peer("*", "x/a", true),
                )],
            )],
        ),
        case(
            "allow_ingress_from_pods_in_all_namespaces",
            tcp("should enforce policy to allow ingress traffic from pods in all namespaces"),
            vec![apply(
                vec![np(
                    "allow-from-another-ns",
                    "x",
                    &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{}}}}}}]}}]}}"),
                )],
                vec![(TCP80, open())],
            )],
        ),
        case(
            "allow_all",
            tcp("should support allow-all policy"),
            vec![apply(
                vec![np("allow-all", "x", "{podSelector: {}, ingress: [{}]}")],
                vec![(TCP80, open()), (TCP81, open())],
            )],
        ),
        case(
            "deny_ingress_from_pods_in_other_namespaces",
            tcp("should deny ingress from pods on other namespaces"),
            vec![apply(
                vec![np(
                    "deny-empty-policy",
                    "x",
                    "{podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {}}}]}]}",
                )],
                vec![(
                    TCP80,
                    open().peer("y", "x", false).peer("z", "x", false),
                )],
            )],
        ),
    ]
}

/// Pod and namespace selectors on ingress.
fn selectors() -> Vec<Case> {
    vec![
        case(
            "allow_from_pods_in_the_server_namespace_by_pod_selector",
            tcp("should enforce policy to allow traffic from pods within server namespace based on PodSelector"),
            vec![apply(
                vec![np("x-a-allows-x-b", "x", &format!("{{{A}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("*", "x/a", false).peer("x/b", "x/a", true))],
            )],
        ),
        case(
            "allow_only_from_a_different_namespace_by_namespace_selector",
            tcp("should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector"),
            vec![apply(
                vec![np("allow-client-a-via-ns-selector", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("x", "x/a", false).peer("z", "x/a", false))],
            )],
        ),
        case(
            "pod_selector_with_match_expressions",
            tcp("should enforce policy based on PodSelector with MatchExpressions"),
            vec![apply(
                vec![np("x-a-allows-x-b", "x", &format!("{{{A}, ingress: [{{from: [{{podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b]}}]}}}}]}}]}}"))],
                vec![(TCP80, open().peer("*", "x/a", false).peer("x/b", "x/a", true))],
            )],
        ),
        case(
            "namespace_selector_with_match_expressions",
            tcp("should enforce policy based on NamespaceSelector with MatchExpressions"),
            vec![apply(
                vec![np("allow-ns-y-match-selector", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: kubernetes.io/metadata.name, operator: In, values: [y]}}]}}}}]}}]}}"))],
                vec![(TCP80, open().peer("x", "x/a", false).peer("z", "x/a", false))],
            )],
        ),
        case(
            "pod_selector_or_namespace_selector",
            tcp("should enforce policy based on PodSelector or NamespaceSelector"),
            vec![apply(
                vec![np("allow-ns-y-match-selector", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}}]}}}}, {{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("x/c", "x/a", false))],
            )],
        ),
        case(
            "pod_selector_and_namespace_selector",
            tcp("should enforce policy based on PodSelector and NamespaceSelector"),
            vec![apply(
                vec![np("allow-ns-y-podselector-and-nsselector", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}}]}}, podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("*", "x/a", false).peer("y/b", "x/a", true).peer("z/b", "x/a", true))],
            )],
        ),
        case(
            "multiple_pod_selectors_and_namespace_selectors",
            tcp("should enforce policy based on Multiple PodSelectors and NamespaceSelectors"),
            // Upstream (pods x/a, x/b, y/a, y/b, y/c) expects y/a blocked; z/a is too.
            vec![apply(
                vec![np("allow-ns-y-z-pod-b-c", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}}]}}, podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b, c]}}]}}}}]}}]}}"))],
                vec![(TCP80, open().peer("x", "x/a", false).peer("*/a", "x/a", false))],
            )],
        ),
        case(
            "any_pod_selectors",
            tcp("should enforce policy based on any PodSelectors"),
            vec![apply(
                vec![np("allow-ns-x-pod-b-c", "x", &format!("{{{A}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}, {{podSelector: {{matchLabels: {{pod: c}}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("*", "x/a", false).peer("x/b", "x/a", true).peer("x/c", "x/a", true))],
            )],
        ),
        case(
            "a_pod_in_a_different_namespace_by_pod_and_namespace_selector",
            tcp("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector"),
            vec![apply(
                vec![np("allow-ns-y-pod-a-via-namespace-pod-selector", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("*", "x/a", false).peer("y/a", "x/a", true))],
            )],
        ),
        case(
            "namespace_selector_on_the_default_namespace_label",
            tcp("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label"),
            vec![apply(
                vec![np("allow-client-a-via-ns-selector-for-immutable-ns-label", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("x", "x/a", false).peer("z", "x/a", false))],
            )],
        ),
    ]
}

/// Ports, numbered and named.
fn ports() -> Vec<Case> {
    let from_y_on = |port: u16| {
        format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}], ports: [{{port: {port}, protocol: TCP}}]}}]}}")
    };
    let allowed_from_y = || open().peer("x", "x/a", false).peer("z", "x/a", false);
    vec![
        case(
            "ports_only_81_from_namespace_y",
            tcp("should enforce policy based on Ports"),
            vec![apply(
                vec![np("allow-client-a-via-ns-selector", "x", &from_y_on(81))],
                vec![(TCP81, allowed_from_y())],
            )],
        ),
        case(
            "stacked_policies_with_overlapping_pod_selectors_add_up",
            tcp("should enforce multiple, stacked policies with overlapping podSelectors"),
            vec![
                apply(
                    vec![np("allow-client-a-via-ns-selector", "x", &from_y_on(81))],
                    vec![
                        (TCP81, allowed_from_y()),
                        (TCP80, open().peer("*", "x/a", false)),
                    ],
                ),
                apply(
                    vec![np("allow-client-a-via-ns-selector-80", "x", &from_y_on(80))],
                    vec![(TCP80, allowed_from_y())],
                ),
            ],
        ),
        case(
            "ingress_on_one_named_port",
            tcp("should allow ingress access on one named port"),
            vec![refused(np("allow-all", "x", "{podSelector: {}, ingress: [{ports: [{port: serve-81-tcp}]}]}"))],
        ),
        case(
            "ingress_from_a_namespace_on_one_named_port",
            tcp("should allow ingress access from namespace on one named port"),
            vec![refused(np("allow-client-a-via-ns-selector-80", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}], ports: [{{port: serve-80-tcp, protocol: TCP}}]}}]}}")))],
        ),
        case(
            "egress_on_one_named_port",
            tcp("should allow egress access on one named port"),
            vec![refused(np("allow-egress", "x", "{podSelector: {}, policyTypes: [Egress], egress: [{ports: [{port: serve-80-tcp}]}]}"))],
        ),
        case(
            "ingress_any_port_on_one_protocol",
            tcp("should enforce ingress policy allowing any port traffic to a server on a specific protocol"),
            vec![apply(
                vec![np("allow-ingress-by-proto", "x", &format!("{{{A}, ingress: [{{ports: [{{protocol: TCP}}]}}]}}"))],
                vec![(TCP80, open()), (UDP80, open().peer("*", "x/a", false))],
            )],
        ),
        case(
            "ingress_allow_all_takes_precedence",
            tcp("should enforce multiple ingress policies with ingress allow-all policy taking precedence"),
            vec![
                apply(
                    vec![np("allow-ingress-port-80", "x", "{podSelector: {}, ingress: [{ports: [{port: 80}]}]}")],
                    vec![(TCP81, open().peer("*", "x", false))],
                ),
                apply(
                    vec![np("allow-ingress", "x", "{podSelector: {}, ingress: [{}]}")],
                    vec![(TCP81, open())],
                ),
            ],
        ),
        case(
            "egress_allow_all_takes_precedence",
            tcp("should enforce multiple egress policies with egress allow-all policy taking precedence"),
            vec![
                apply(
                    vec![np("allow-egress-port-80", "x", "{podSelector: {}, policyTypes: [Egress], egress: [{ports: [{port: 80}]}]}")],
                    vec![(TCP81, open().peer("x", "*", false))],
                ),
                apply(
                    vec![np("allow-egress", "x", "{podSelector: {}, policyTypes: [Egress], egress: [{}]}")],
                    vec![(TCP81, open())],
                ),
            ],
        ),
    ]
}

/// Upstream's named ports: Weft refuses them (its endpoints carry no port names), with
/// an error naming the field, and nothing changes.
fn refused(doc: Doc) -> Stage {
    Stage {
        change: Change::Refused {
            docs: vec![doc],
            error: "named ports are not supported",
        },
        expect: vec![(TCP80, open()), (TCP81, open())],
    }
}

/// Policies changed, labels changed, policies deleted, while traffic runs.
fn updates() -> Vec<Case> {
    vec![
        case(
            "updated_policy",
            tcp("should enforce updated policy"),
            vec![
                apply(
                    vec![np("allow-all-mutate-to-deny-all", "x", "{podSelector: {}, ingress: [{}]}")],
                    vec![(TCP81, open())],
                ),
                apply(
                    vec![np("allow-all-mutate-to-deny-all", "x", "{podSelector: {}, policyTypes: [Ingress], ingress: []}")],
                    vec![(TCP81, open().peer("*", "x", false))],
                ),
            ],
        ),
        case(
            "ingress_from_an_updated_namespace",
            tcp("should allow ingress access from updated namespace"),
            vec![
                apply(
                    vec![np("allow-client-a-via-ns-selector", "x", &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns2: updated}}}}}}]}}]}}"))],
                    vec![(TCP80, open().peer("*", "x/a", false))],
                ),
                Stage {
                    change: Change::LabelNamespace { namespace: "y", key: "ns2", value: "updated" },
                    expect: vec![(TCP80, open().peer("*", "x/a", false).peer("y", "*", true))],
                },
            ],
        ),
        case(
            "ingress_from_an_updated_pod",
            tcp("should allow ingress access from updated pod"),
            vec![
                apply(
                    vec![np("allow-client-a-via-pod-selector", "x", &format!("{{{A}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b, pod2: updated}}}}}}]}}]}}"))],
                    vec![(TCP80, open().peer("*", "x/a", false))],
                ),
                Stage {
                    change: Change::LabelPod { pod: "x/b", key: "pod2", value: "updated" },
                    expect: vec![(TCP80, open().peer("*", "x/a", false).peer("x/b", "x/a", true))],
                },
            ],
        ),
        case(
            "deny_ingress_to_an_updated_pod",
            tcp("should deny ingress access to updated pod"),
            vec![
                apply(
                    vec![np("deny-ingress-via-label-selector", "x", "{podSelector: {matchLabels: {target: isolated}}, policyTypes: [Ingress]}")],
                    vec![(TCP80, open())],
                ),
                Stage {
                    change: Change::LabelPod { pod: "x/a", key: "target", value: "isolated" },
                    expect: vec![(TCP80, open().peer("*", "x/a", false))],
                },
            ],
        ),
        case(
            "stop_enforcing_deleted_policies",
            tcp("should stop enforcing policies after they are deleted"),
            vec![
                apply(
                    vec![np("deny-all", "x", "{podSelector: {}, policyTypes: [Ingress, Egress]}")],
                    vec![(TCP80, open().peer("x", "*", false).peer("*", "x", false))],
                ),
                Stage {
                    change: Change::Delete(vec![PolicyRef::Namespaced("x".into(), "deny-all".into())]),
                    expect: vec![(TCP80, open())],
                },
            ],
        ),
        case(
            "ingress_and_egress_are_controlled_independently",
            tcp("should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector"),
            vec![
                apply(
                    vec![np("allow-egress-for-target", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{}}]}}"))],
                    vec![(TCP80, open())],
                ),
                apply(
                    vec![np("deny-ingress-via-label-selector", "x", &format!("{{{A}, policyTypes: [Ingress]}}"))],
                    vec![(TCP80, open().peer("*", "x/a", false))],
                ),
            ],
        ),
    ]
}

/// Egress, alone and with ingress.
fn egress() -> Vec<Case> {
    let to_y_a = "{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}, podSelector: {matchLabels: {pod: a}}}";
    let from_x_a = "{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, podSelector: {matchLabels: {pod: a}}}";
    vec![
        case(
            "deny_egress_by_pod_selector",
            tcp("should deny egress from pods based on PodSelector"),
            vec![apply(
                vec![np("deny-egress-pod-a", "x", &format!("{{{A}, policyTypes: [Egress]}}"))],
                vec![(TCP80, open().peer("x/a", "*", false))],
            )],
        ),
        case(
            "deny_egress_from_a_namespace",
            tcp("should deny egress from all pods in a namespace"),
            vec![apply(
                vec![np("deny-egress-ns-x", "x", "{podSelector: {}, policyTypes: [Egress]}")],
                vec![(TCP80, open().peer("x", "*", false))],
            )],
        ),
        case(
            "ingress_and_egress_together",
            tcp("should work with Ingress, Egress specified together"),
            vec![apply(
                vec![np("allow-client-a-via-pod-selector", "x", &format!("{{{A}, policyTypes: [Egress, Ingress], ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}], egress: [{{ports: [{{port: 80}}]}}]}}"))],
                vec![
                    (TCP80, open().peer("*", "x/a", false).peer("x/b", "x/a", true)),
                    (TCP81, open().peer("*", "x/a", false).peer("x/a", "*", false).peer("x/b", "x/a", true)),
                ],
            )],
        ),
        case(
            "client_side_egress_deny_wins_over_server_allow",
            tcp("should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)"),
            vec![apply(
                vec![
                    np("allow-to-ns-y-pod-a", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{to_y_a}]}}]}}")),
                    np("allow-from-xa-on-ya-match-selector", "y", &format!("{{{A}, ingress: [{{from: [{from_x_a}]}}]}}")),
                    np("allow-from-xa-on-yb-match-selector", "y", &format!("{{podSelector: {{matchLabels: {{pod: b}}}}, ingress: [{{from: [{from_x_a}]}}]}}")),
                ],
                vec![(
                    TCP80,
                    open()
                        .peer("x/a", "*", false)
                        .peer("*", "y/a", false)
                        .peer("x/a", "y/a", true)
                        .peer("*", "y/b", false),
                )],
            )],
        ),
        case(
            "egress_to_a_server_in_another_namespace_by_pod_and_namespace_selector",
            tcp("should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector"),
            vec![apply(
                vec![np("allow-to-ns-y-pod-a", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{to_y_a}]}}]}}"))],
                vec![(TCP80, open().peer("x/a", "*", false).peer("x/a", "y/a", true))],
            )],
        ),
        case(
            "egress_namespace_selector_not_in_on_the_default_namespace_label",
            tcp("should enforce policy based on NamespaceSelector with MatchExpressions using default ns label"),
            vec![apply(
                vec![np("allow-ns-y-match-selector-for-immutable-ns-label", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{{namespaceSelector: {{matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}}]}}}}]}}]}}"))],
                vec![(TCP80, open().peer("x/a", "y", false))],
            )],
        ),
    ]
}

/// `ipBlock` peers, built from pods' addresses as upstream builds them: a pod's
/// address as a host prefix (`/32`, `/128` for IPv6), and the `/4` that holds it.
fn ip_blocks(ip: &dyn Fn(&str) -> IpAddr) -> Vec<Case> {
    let host = |a: IpAddr| format!("\"{a}/{}\"", if a.is_ipv4() { 32 } else { 128 });
    let x_b = host(ip("x/b"));
    let y_b = host(ip("y/b"));
    let large_except_x_b = np(
        "allow-client-a-via-cidr-egress-rule",
        "x",
        &format!(
            "{{{A}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: \"{}\", except: [{x_b}]}}}}]}}]}}",
            crate::large_cidr(ip("x/b"))
        ),
    );
    vec![
        case(
            "egress_to_a_cidr_block",
            tcp("should allow egress access to server in CIDR block"),
            vec![apply(
                vec![np("allow-client-a-via-cidr-egress-rule", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {y_b}}}}}]}}]}}"))],
                vec![(TCP80, open().peer("x/a", "*", false).peer("x/a", "y/b", true))],
            )],
        ),
        case(
            "egress_cidr_with_an_except_clause",
            tcp("should enforce except clause while egress access to server in CIDR block"),
            vec![apply(
                vec![large_except_x_b.clone()],
                vec![(TCP80, open().peer("x/a", "x/b", false))],
            )],
        ),
        case(
            "an_address_in_both_cidr_and_except_is_allowed_by_another_rule",
            tcp("should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed"),
            // Upstream's second step updates the same policy to allow x/b alone.
            vec![
                apply(
                    vec![large_except_x_b],
                    vec![(TCP80, open().peer("x/a", "x/b", false))],
                ),
                apply(
                    vec![np("allow-client-a-via-cidr-egress-rule", "x", &format!("{{{A}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {x_b}}}}}]}}]}}"))],
                    vec![(TCP80, open().peer("x/a", "*", false).peer("x/a", "x/b", true))],
                ),
            ],
        ),
    ]
}

/// UDP and SCTP: upstream's protocol cases in its TCP block, and its UDP and SCTP blocks.
fn protocols() -> Vec<Case> {
    let from_y_on_81 = |proto: &str| {
        format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}], ports: [{{port: 81, protocol: {proto}}}]}}]}}")
    };
    let y_a_only = format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}]}}]}}");
    let deny_x = || np("deny-all", "x", "{podSelector: {}, policyTypes: [Ingress]}");
    let mut out = vec![
        case(
            "sctp_is_never_taken_for_tcp",
            tcp("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP"),
            vec![apply(
                vec![
                    np("deny-ingress", "x", "{podSelector: {}, policyTypes: [Ingress]}"),
                    np("allow-only-sctp-ingress-on-port-81", "x", &format!("{{{A}, ingress: [{{ports: [{{port: 81, protocol: SCTP}}]}}]}}")),
                ],
                vec![(TCP81, open().peer("*", "x", false))],
            )],
        ),
        case(
            "an_sctp_only_policy_still_isolates",
            tcp("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP"),
            vec![apply(
                vec![np("allow-only-sctp-ingress-on-port-80", "x", &format!("{{{A}, ingress: [{{ports: [{{port: 80, protocol: SCTP}}]}}]}}"))],
                vec![(TCP81, open().peer("*", "x/a", false))],
            )],
        ),
        case(
            "a_udp_only_policy_does_not_allow_tcp",
            tcp("should not allow access by TCP when a policy specifies only UDP"),
            vec![apply(
                vec![np("allow-only-udp-ingress-on-port-81", "x", &format!("{{{A}, ingress: [{{ports: [{{port: 81, protocol: UDP}}]}}]}}"))],
                vec![(TCP81, open().peer("*", "x/a", false))],
            )],
        ),
    ];
    for (name, origin, probe80, probe81, proto) in [
        (
            "udp",
            udp as fn(&'static str) -> Origin,
            UDP80,
            UDP81,
            "UDP",
        ),
        ("sctp", sctp, SCTP80, SCTP81, "SCTP"),
    ] {
        let names: [&'static str; 3] = match name {
            "udp" => [
                "udp_default_deny_ingress",
                "udp_ports",
                "udp_pod_and_namespace_selector",
            ],
            _ => [
                "sctp_default_deny_ingress",
                "sctp_ports",
                "sctp_pod_and_namespace_selector",
            ],
        };
        out.push(case(
            names[0],
            origin("should support a 'default-deny-ingress' policy"),
            vec![apply(
                vec![deny_x()],
                vec![(probe80, open().peer("*", "x", false))],
            )],
        ));
        out.push(case(
            names[1],
            origin("should enforce policy based on Ports"),
            vec![apply(
                vec![np(
                    "allow-ingress-on-port-81-ns-x",
                    "x",
                    &from_y_on_81(proto),
                )],
                vec![(
                    probe81,
                    open().peer("x", "x/a", false).peer("z", "x/a", false),
                )],
            )],
        ));
        out.push(case(
            names[2],
            origin("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector"),
            vec![apply(
                vec![np("allow-ns-y-pod-a-via-namespace-pod-selector", "x", &y_a_only)],
                vec![(probe80, open().peer("*", "x/a", false).peer("y/a", "x/a", true))],
            )],
        ));
    }
    out
}
