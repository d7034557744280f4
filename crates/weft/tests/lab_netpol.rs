//! End to end, in network namespaces: the policy truth tables of `weft-conformance`
//! (Kubernetes' own network policy e2e cases, and Weft's cluster-policy cases) on three
//! hosts, in both CNI attachment modes; four of them over the vxlan, udp, ipip and
//! bgp backends; and those four with the `ipBlock` cases over IPv6 in a dual-stack lab
//! (the pods' IPv6 addresses probed, the blocks built from them as upstream builds them
//! for an IPv6 cluster).
//!
//! The world is the upstream suite's: namespaces x, y, z labelled `ns=<name>`, pods a,
//! b, c labelled `pod=<name>`, each serving TCP and UDP on 80 and 81, spread so that
//! every case has same-host and cross-host pairs (pod a on h1, b on h2, c on h3). Each
//! stage of a case is made as an operator would (`weftctl policy apply|delete`,
//! `weftctl endpoint label`, `weftctl namespace label`), then `weftctl lab probe` tries
//! every pair on the stage's protocols and ports: the packets must give exactly the
//! matrix the case expects, and, checked apart, `explain`'s verdicts too. Input Weft
//! refuses (named ports) must fail with the error the case names and change no traffic.
//! With every policy deleted everything is reachable again; the packets a default-deny
//! dropped show in the agent's `/metrics` under the policy and rule.
//!
//! The lab probes TCP and UDP. SCTP cannot be probed here (this kernel has no SCTP
//! sockets), so the three cases probing SCTP run in the verdict tier only; the cases
//! that matter on a node without SCTP ("SCTP is never taken for TCP", "an SCTP-only
//! policy still isolates") probe TCP and run here.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use common::*;
use weft_conformance::{Case, Change, PolicyRef, Probe, Proto, Reach, PODS};
use weft_testkit::require_root;

/// The cases that probe only SCTP, which this lab cannot (see the module doc).
const SCTP_ONLY: [&str; 3] = [
    "sctp_default_deny_ingress",
    "sctp_ports",
    "sctp_pod_and_namespace_selector",
];

/// A 3-host lab with the nine pods (`ipv6`: dual stack); their addresses, IPv6 ones
/// with `ipv6`.
fn world(mode: &str, backend: &str, ipv6: bool) -> (Lab, BTreeMap<String, IpAddr>) {
    let family = if ipv6 { "dual" } else { "4" };
    let lab = Lab::up_with(
        &format!(
            "np{}{}{}",
            &mode[..1],
            &backend[..2],
            if ipv6 { "6" } else { "" }
        ),
        "embedded",
        3,
        &[
            "--cni-mode",
            mode,
            "--backend",
            backend,
            "--ip-family",
            family,
        ],
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
    }
    for pod in PODS {
        let (_, name) = pod.split_once('/').unwrap();
        let host = format!("h{}", name.as_bytes()[0] - b'a' + 1);
        let out = lab.ok(
            lab.lab(
                &["container", "add"],
                &[
                    pod,
                    "--host",
                    &host,
                    "--label",
                    &format!("pod={name}"),
                    "--serve",
                    "tcp:80,tcp:81,udp:80,udp:81",
                ],
            ),
            "container add",
        );
        let ip: Ipv4Addr = out
            .split(": ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {out:?}"));
        ips.insert(pod.to_string(), ip.into());
    }
    if ipv6 {
        // The IPv6 addresses the plugin gave, as the lab keeps them.
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("/run/weft-lab/{}/lab.json", lab.name)).unwrap(),
        )
        .unwrap();
        for pod in PODS {
            let ip6 = state["pods"][pod]["ip6"]
                .as_str()
                .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
                .unwrap_or_else(|| panic!("{pod} has no IPv6 address: {state}"));
            ips.insert(pod.to_string(), ip6.into());
        }
    }
    (lab, ips)
}

/// One probe round: per probe, the matrix the packets gave and the one `explain` gave
/// (at the pods' IPv6 addresses with `ipv6`).
fn probe(lab: &Lab, probes: &[Probe], ipv6: bool) -> BTreeMap<Probe, (Reach, Reach)> {
    let ports: Vec<String> = probes.iter().map(Probe::to_string).collect();
    let ports = ports.join(",");
    let mut args = vec![
        "--lab",
        &lab.name,
        "lab",
        "probe",
        "--ports",
        &ports,
        "--timeout-ms",
        "800",
        "-o",
        "json",
    ];
    if ipv6 {
        args.push("--ipv6");
    }
    let out = lab.ctl(&args);
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lab probe -o json: {e}\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let mut out: BTreeMap<Probe, (Reach, Reach)> = probes
        .iter()
        .map(|p| (*p, (Reach::all(false), Reach::all(false))))
        .collect();
    for c in cells {
        let port = c["port"].as_str().unwrap();
        let probe = *probes.iter().find(|p| p.to_string() == port).unwrap();
        let (from, to) = (c["from"].as_str().unwrap(), c["to"].as_str().unwrap());
        let (traffic, explained) = out.get_mut(&probe).unwrap();
        traffic.set(from, to, c["reachable"].as_bool().unwrap());
        let e = c["explain_allows"].as_bool();
        explained.set(from, to, e.unwrap_or_else(|| panic!("no verdict in {c}")));
    }
    out
}

/// Checks a stage's expectations: `explain` at once, the packets until they agree or
/// 15 s pass (an agent loads a change within moments; label changes are not part of the
/// enforcement wait `lab probe` does first).
fn check(lab: &Lab, what: &str, expect: &[(Probe, Reach)], ipv6: bool) {
    let probes: Vec<Probe> = expect.iter().map(|(p, _)| *p).collect();
    let start = std::time::Instant::now();
    loop {
        let got = probe(lab, &probes, ipv6);
        let mut wrong = String::new();
        for (p, want) in expect {
            let (traffic, explained) = &got[p];
            let bad = want.differences(explained);
            assert!(
                bad.is_empty(),
                "{what} ({p}): explain differs from the case:\nexpected\n{want:?}explain\n{explained:?}{}",
                bad.join("\n")
            );
            let bad = want.differences(traffic);
            if !bad.is_empty() {
                wrong += &format!(
                    "{what} ({p}): the packets differ from the case:\nexpected\n{want:?}packets\n{traffic:?}{}\n",
                    bad.join("\n")
                );
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(start.elapsed().as_secs() < 15, "after 15 s: {wrong}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

fn policy_file(
    lab: &Lab,
    dir: &std::path::Path,
    case: &str,
    docs: &[weft_conformance::Doc],
) -> String {
    let text: Vec<&str> = docs.iter().map(|d| d.yaml.as_str()).collect();
    let file = dir.join(format!("{case}-{}.yaml", lab.name));
    std::fs::write(&file, text.join("---\n")).unwrap();
    file.to_str().unwrap().to_owned()
}

fn delete(lab: &Lab, id: &PolicyRef) {
    let args: Vec<String> = match id {
        PolicyRef::Namespaced(ns, name) => vec![format!("{ns}/{name}")],
        PolicyRef::Cluster(name) => vec!["--cluster".into(), name.clone()],
    };
    let mut all = vec!["--lab", lab.name.as_str(), "policy", "delete"];
    all.extend(args.iter().map(String::as_str));
    lab.ok(lab.ctl(&all), "policy delete");
}

/// Runs one case's stages, then undoes it (policies deleted, labels removed).
fn run_case(lab: &Lab, dir: &std::path::Path, case: &Case, ipv6: bool) {
    let mut present: Vec<PolicyRef> = Vec::new();
    let mut undo: Vec<Vec<String>> = Vec::new();
    let ctl = |args: &[&str], what: &str| {
        let mut all = vec!["--lab", lab.name.as_str()];
        all.extend_from_slice(args);
        lab.ok(lab.ctl(&all), what)
    };
    for (n, stage) in case.stages.iter().enumerate() {
        let what = format!("{} stage {}", case.name, n + 1);
        match &stage.change {
            Change::Apply(docs) => {
                let file = policy_file(lab, dir, case.name, docs);
                ctl(&["policy", "apply", "-f", &file], &what);
                for d in docs {
                    if !present.contains(&d.id) {
                        present.push(d.id.clone());
                    }
                }
            }
            Change::Delete(ids) => {
                for id in ids {
                    delete(lab, id);
                    present.retain(|p| p != id);
                }
            }
            Change::LabelPod { pod, key, value } => {
                ctl(
                    &["endpoint", "label", pod, &format!("{key}={value}")],
                    &what,
                );
                undo.push(vec![
                    "endpoint".into(),
                    "label".into(),
                    pod.to_string(),
                    format!("{key}-"),
                ]);
            }
            Change::LabelNamespace {
                namespace,
                key,
                value,
            } => {
                ctl(
                    &["namespace", "label", namespace, &format!("{key}={value}")],
                    &what,
                );
                undo.push(vec![
                    "namespace".into(),
                    "label".into(),
                    namespace.to_string(),
                    format!("{key}-"),
                ]);
            }
            Change::Refused { docs, error } => {
                let file = policy_file(lab, dir, case.name, docs);
                let out = lab.ctl(&["--lab", &lab.name, "policy", "apply", "-f", &file]);
                let err = text(&out.stderr);
                assert!(
                    !out.status.success() && err.contains(error),
                    "{what}: policy apply should refuse with {error:?}: {}\n{err}",
                    out.status
                );
            }
        }
        check(lab, &what, &stage.expect, ipv6);
        if case.name == "default_deny_ingress" {
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
    }
    for id in &present {
        delete(lab, id);
    }
    for args in &undo {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&args, "label removed");
    }
}

/// Every pair reachable on every served port.
fn everything_open(lab: &Lab, why: &str, ipv6: bool) {
    let all = [
        weft_conformance::TCP80,
        weft_conformance::TCP81,
        weft_conformance::UDP80,
        weft_conformance::UDP81,
    ];
    let expect: Vec<(Probe, Reach)> = all.iter().map(|p| (*p, Reach::all(true))).collect();
    check(lab, why, &expect, ipv6);
}

/// The cases named in `only` (all but the SCTP-only ones with `None`) on a 3-host lab
/// with `backend`; with `ipv6`, a dual-stack lab probed over IPv6.
fn run_cases(mode: &str, backend: &str, only: Option<&[&str]>, ipv6: bool) -> Lab {
    let (lab, ips) = world(mode, backend, ipv6);
    everything_open(&lab, "before any policy", ipv6);
    let dir = tempfile::tempdir().unwrap();
    let mut all = weft_conformance::cases(&|pod| ips[pod]);
    let (sctp, rest): (Vec<Case>, Vec<Case>) = all
        .drain(..)
        .partition(|c| c.probes().iter().all(|p| p.proto == Proto::Sctp));
    let sctp: Vec<&str> = sctp.iter().map(|c| c.name).collect();
    assert_eq!(
        sctp, SCTP_ONLY,
        "only the SCTP cases are left to the verdict tier"
    );
    let mut run = rest;
    if let Some(only) = only {
        run.retain(|c| only.contains(&c.name));
        assert_eq!(run.len(), only.len(), "unknown case in {only:?}");
    }
    for case in &run {
        run_case(&lab, dir.path(), case, ipv6);
    }
    everything_open(&lab, "with every policy deleted", ipv6);
    lab
}

#[test]
fn kubernetes_cases_hold_on_three_hosts_routed() {
    require_root!("kubernetes_cases_hold_on_three_hosts_routed");
    run_cases("routed", "host-gw", None, false);
}

#[test]
fn kubernetes_cases_hold_on_three_hosts_bridged() {
    require_root!("kubernetes_cases_hold_on_three_hosts_bridged");
    run_cases("bridge", "host-gw", None, false);
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
        run_cases(mode, backend, Some(&some), false);
    }
}

/// The policy table's IPv6 twin, judged by upstream's matrices: in a dual-stack lab
/// (vxlan over the IPv6 underlay, in both attachment modes) the same cases, and
/// upstream's three `ipBlock` cases with blocks of the pods' IPv6 addresses, probed at
/// those addresses. Without the twin every IPv6 pair stays reachable and the first deny
/// fails; in bridge mode, without br_netfilter's IPv6 hook
/// (`bridge-nf-call-ip6tables`) the same-host pairs do.
#[test]
fn cases_hold_over_ipv6_in_a_dual_stack_lab() {
    require_root!("cases_hold_over_ipv6_in_a_dual_stack_lab");
    let some = [
        "default_deny_ingress",
        "pod_selector_and_namespace_selector",
        "client_side_egress_deny_wins_over_server_allow",
        "cluster_deny_comes_before_a_namespaced_allow_and_order_decides",
        "egress_to_a_cidr_block",
        "egress_cidr_with_an_except_clause",
        "an_address_in_both_cidr_and_except_is_allowed_by_another_rule",
    ];
    run_cases("bridge", "vxlan", Some(&some), true);
    let lab = run_cases("routed", "vxlan", Some(&some), true);

    // ICMPv6 is policed as such (the lab's probes are TCP and UDP, so by ping): a
    // cluster rule denying x/a's IPv6 echo requests stops its ping -6 and nothing else.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/weft-lab/{}/lab.json", lab.name)).unwrap(),
    )
    .unwrap();
    let pod = |p: &str, field: &str| state["pods"][p][field].as_str().unwrap().to_owned();
    // Each endpoint is recorded with the IPv6 address its container's interface has.
    let listed = lab.ok(
        lab.store_cmd(&["endpoint", "list", "-o", "json"]),
        "endpoint list",
    );
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    for p in PODS {
        let held = text(
            &std::process::Command::new("ip")
                .args([
                    "-n",
                    &pod(p, "netns"),
                    "-6",
                    "addr",
                    "show",
                    "dev",
                    "eth0",
                    "scope",
                    "global",
                ])
                .output()
                .unwrap()
                .stdout,
        );
        let e = listed.iter().find(|e| e["name"] == p).unwrap();
        let v6 = e["ipv6_address"]
            .as_str()
            .unwrap_or_else(|| panic!("{p}: {e}"));
        assert!(
            held.contains(&format!("inet6 {v6}/")),
            "{p} is recorded as {v6}: {held}"
        );
    }
    let ping = |from: &str, to: &str, field: &str| {
        let to = pod(to, field);
        let flag = if field == "ip6" { "-6" } else { "-4" };
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod(from, "netns"),
                "ping",
                flag,
                "-c",
                "1",
                "-W",
                "1",
                &to,
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        ping("x/a", "y/b", "ip6"),
        "x/a pings y/b over IPv6 before the rule"
    );
    lab.apply_policy(
        "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: no-ping6}\nspec:\n  selector: {matchLabels: {pod: a}}\n  egress:\n  - action: Deny\n    protocol: ICMPv6\n    icmpType: 128\n",
    );
    lab.wait_until(
        "x/a's IPv6 pings to be denied",
        std::time::Duration::from_secs(10),
        || !ping("x/a", "y/b", "ip6"),
    );
    assert!(ping("x/a", "y/b", "ip"), "IPv4 pings are not ICMPv6");
    assert!(ping("x/b", "y/b", "ip6"), "only x/a is selected");
}
