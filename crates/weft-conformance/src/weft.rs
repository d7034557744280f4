//! Weft's own cases: its ordered cluster policies (Kubernetes has no suite for them; the
//! expectations follow docs/policy.md's order: Deny and Allow decide, Pass hands over to
//! the namespaced policies, Log goes on) and rule shapes the upstream file does not
//! probe. Each says so in its origin.

use crate::{
    cluster_policy as cp, network_policy as np, Case, Change, Origin, Reach, Stage, TCP80, TCP81,
    UDP80, UDP81,
};

const A: &str = "podSelector: {matchLabels: {pod: a}}";

fn one(
    name: &'static str,
    why: &'static str,
    change: Change,
    expect: Vec<(crate::Probe, Reach)>,
) -> Case {
    Case {
        name,
        origin: Origin::Weft(why),
        stages: vec![Stage { change, expect }],
    }
}

pub fn cases() -> Vec<Case> {
    let open = || Reach::all(true);
    vec![
        one(
            "one_rule_with_ports_across_protocols",
            "upstream has no rule whose ports mix protocols",
            Change::Apply(vec![np(
                "x-a-web-and-dns",
                "x",
                &format!("{{{A}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}], ports: [{{port: 80, protocol: TCP}}, {{port: 81, protocol: UDP}}]}}]}}"),
            )]),
            vec![
                (TCP80, open().peer("*", "x/a", false).peer("y", "x/a", true)),
                (UDP81, open().peer("*", "x/a", false).peer("y", "x/a", true)),
                (TCP81, open().peer("*", "x/a", false)),
                (UDP80, open().peer("*", "x/a", false)),
            ],
        ),
        one(
            "port_ranges_per_protocol",
            "upstream's netpol file has no endPort case",
            Change::Apply(vec![np(
                "x-a-ranges",
                "x",
                &format!("{{{A}, ingress: [{{ports: [{{port: 80, endPort: 80, protocol: TCP}}, {{port: 81, endPort: 90, protocol: UDP}}]}}]}}"),
            )]),
            vec![
                (TCP80, open()),
                (TCP81, open().peer("*", "x/a", false)),
                (UDP81, open()),
                (UDP80, open().peer("*", "x/a", false)),
            ],
        ),
        one(
            "an_empty_from_allows_every_source",
            "upstream never writes `from: []` (an empty list: every source, unlike `ingress: []`)",
            Change::Apply(vec![np(
                "x-a-empty-from",
                "x",
                &format!("{{{A}, ingress: [{{from: [], ports: [{{port: 80}}]}}]}}"),
            )]),
            vec![(TCP80, open()), (TCP81, open().peer("*", "x/a", false))],
        ),
        one(
            "cluster_deny_comes_before_a_namespaced_allow_and_order_decides",
            "Weft's ClusterPolicy",
            Change::Apply(vec![
                cp("deny-z-to-x", "{order: 20, namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, ingress: [{action: Deny, source: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}}]}"),
                cp("allow-z-a", "{order: 10, namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, ingress: [{action: Allow, source: {selector: {matchLabels: {pod: a}}, namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}}]}"),
                np("allow-all", "x", "{podSelector: {}, ingress: [{}]}"),
            ]),
            vec![(TCP80, open().peer("z", "x", false).peer("z/a", "x", true))],
        ),
        one(
            "cluster_pass_hands_over_to_namespaced_policies_and_log_goes_on",
            "Weft's ClusterPolicy",
            Change::Apply(vec![
                cp("first", "{order: 1, ingress: [{action: Log}, {action: Pass, source: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}}]}"),
                cp("then-deny-all", "{order: 2, ingress: [{action: Deny}]}"),
                np("x-from-y", "x", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]}]}"),
            ]),
            // Only traffic from y is passed on (then allowed into x by the
            // NetworkPolicy, and into y and z as they are not isolated).
            vec![(TCP80, Reach::all(false).peer("y", "*", true))],
        ),
        one(
            "cluster_ports",
            "Weft's ClusterPolicy",
            Change::Apply(vec![cp(
                "no-81-from-c",
                "{selector: {matchLabels: {pod: c}}, egress: [{action: Deny, protocol: TCP, destination: {ports: ['81:82']}}]}",
            )]),
            vec![(TCP81, open().peer("*/c", "*", false)), (TCP80, open())],
        ),
    ]
}
