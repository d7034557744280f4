//! Reading policy files: YAML or JSON, several documents per file (`---`), or a
//! kubectl `List`. Each object is checked in full and every problem is named with the
//! document, the object and the field; one bad object refuses the whole file, so
//! nothing is ever half-applied.

use std::collections::BTreeSet;

use ipnet::IpNet;
use thiserror::Error;

use crate::model::*;

#[derive(Debug, Error, PartialEq)]
#[error("{}", .problems.join("\n"))]
pub struct PolicyError {
    pub problems: Vec<String>,
}

/// Every policy in `text`, checked; or every problem found.
pub fn parse_documents(text: &str) -> Result<Vec<Policy>, PolicyError> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut n = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        n += 1;
        let value: serde_json::Value = match serde::Deserialize::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                // The parser cannot find the next document after a syntax error.
                problems.push(format!("document {n}: not YAML or JSON: {e}"));
                break;
            }
        };
        if value.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        let items = match value.get("kind").and_then(|k| k.as_str()) {
            Some("List") => match value.get("items").and_then(|i| i.as_array()) {
                Some(items) => items.clone(),
                None => {
                    problems.push(format!("document {n}: a List needs items"));
                    continue;
                }
            },
            _ => vec![value],
        };
        for (i, item) in items.into_iter().enumerate() {
            let at = if i == 0 && n > 0 {
                format!("document {n}")
            } else {
                format!("document {n} item {i}")
            };
            match one(item) {
                Ok(p) => out.push(p),
                Err(mut p) => {
                    for line in p.drain(..) {
                        problems.push(format!("{at}: {line}"));
                    }
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for p in &out {
        if !seen.insert((p.kind(), p.id())) {
            problems.push(format!("{} {} appears twice", p.kind(), p.id()));
        }
    }
    if out.is_empty() && problems.is_empty() {
        problems.push("no policy in the file".into());
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(PolicyError { problems })
    }
}

/// One object: its kind from `apiVersion`/`kind`, then every check.
fn one(v: serde_json::Value) -> Result<Policy, Vec<String>> {
    let api = v.get("apiVersion").and_then(|a| a.as_str()).unwrap_or("");
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    match (api, kind) {
        (K8S_API, "NetworkPolicy") => {
            let p: NetworkPolicy = serde_json::from_value(v).map_err(|e| vec![e.to_string()])?;
            let id = format!("NetworkPolicy {}/{}", p.namespace(), p.metadata.name);
            let problems = check_network_policy(&p);
            if problems.is_empty() {
                Ok(Policy::Namespaced(p))
            } else {
                Err(problems.into_iter().map(|x| format!("{id}: {x}")).collect())
            }
        }
        (WEFT_API, "ClusterPolicy") => {
            let p: ClusterPolicy = serde_json::from_value(v).map_err(|e| vec![e.to_string()])?;
            let id = format!("ClusterPolicy {}", p.metadata.name);
            let problems = check_cluster_policy(&p);
            if problems.is_empty() {
                Ok(Policy::Cluster(p))
            } else {
                Err(problems.into_iter().map(|x| format!("{id}: {x}")).collect())
            }
        }
        _ => Err(vec![format!(
            "apiVersion {api:?} kind {kind:?} is not a policy Weft knows \
             ({K8S_API} NetworkPolicy, {WEFT_API} ClusterPolicy)"
        )]),
    }
}

/// A DNS-1123 label or subdomain, as Kubernetes names objects and namespaces.
pub fn check_object_name(what: &str, name: &str, out: &mut Vec<String>) {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        out.push(format!(
            "{what} {name:?} is not a valid name (lower-case letters, digits, '-' and '.')"
        ));
    }
}

fn check_protocol(at: &str, p: &Option<String>, icmp: bool, out: &mut Vec<String>) {
    if let Some(p) = p {
        let known: &[&str] = if icmp {
            &["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"]
        } else {
            &["TCP", "UDP", "SCTP"]
        };
        if !known.contains(&p.as_str()) {
            out.push(format!(
                "{at}.protocol {p:?} is not one of {}",
                known.join(", ")
            ));
        }
    }
}

fn check_ports(at: &str, ports: &[PolicyPort], out: &mut Vec<String>) {
    for (i, p) in ports.iter().enumerate() {
        let here = format!("{at}.ports[{i}]");
        check_protocol(&here, &p.protocol, false, out);
        match (&p.port, p.end_port) {
            (Some(PortValue::Name(n)), _) => out.push(format!(
                "{here}.port {n:?}: named ports are not supported; give the number"
            )),
            (Some(PortValue::Number(n)), end) => {
                if !(1..=65535).contains(n) {
                    out.push(format!("{here}.port {n} is out of range (1 to 65535)"));
                }
                if let Some(e) = end {
                    if e < *n || e > 65535 {
                        out.push(format!("{here}.endPort {e} must be from port {n} to 65535"));
                    }
                }
            }
            (None, Some(_)) => out.push(format!("{here}.endPort needs a port")),
            (None, None) => {}
        }
    }
}

fn check_peers(at: &str, peers: &[Peer], out: &mut Vec<String>) {
    for (i, p) in peers.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let selectors = p.pod_selector.is_some() || p.namespace_selector.is_some();
        match &p.ip_block {
            Some(_) if selectors => out.push(format!(
                "{here}: ipBlock cannot be combined with podSelector or namespaceSelector"
            )),
            Some(b) => check_ip_block(&format!("{here}.ipBlock"), b, out),
            None if !selectors => out.push(format!(
                "{here}: needs podSelector, namespaceSelector or ipBlock"
            )),
            None => {}
        }
        if let Some(s) = &p.pod_selector {
            s.problems(&format!("{here}.podSelector"), out);
        }
        if let Some(s) = &p.namespace_selector {
            s.problems(&format!("{here}.namespaceSelector"), out);
        }
    }
}

fn check_ip_block(at: &str, b: &IpBlock, out: &mut Vec<String>) {
    let Ok(cidr) = b.cidr.parse::<IpNet>() else {
        out.push(format!(
            "{at}.cidr {:?} is not an IPv4 or IPv6 CIDR",
            b.cidr
        ));
        return;
    };
    if cidr != cidr.trunc() {
        out.push(format!("{at}.cidr {cidr} has host bits set"));
    }
    for e in &b.except {
        match e.parse::<IpNet>() {
            Ok(x) if cidr.contains(&x) && x != cidr => {}
            Ok(x) => out.push(format!("{at}.except {x} is not strictly inside {cidr}")),
            Err(_) => out.push(format!("{at}.except {e:?} is not a CIDR")),
        }
    }
}

/// Every problem of a NetworkPolicy.
pub fn check_network_policy(p: &NetworkPolicy) -> Vec<String> {
    let mut out = Vec::new();
    check_object_name("metadata.name", &p.metadata.name, &mut out);
    check_object_name("metadata.namespace", p.namespace(), &mut out);
    p.spec.pod_selector.problems("spec.podSelector", &mut out);
    if let Some(t) = &p.spec.policy_types {
        if t.is_empty() {
            out.push("spec.policyTypes is empty: list Ingress, Egress or both".into());
        }
    }
    for (i, r) in p.spec.ingress.iter().flatten().enumerate() {
        check_peers(&format!("spec.ingress[{i}].from"), &r.from, &mut out);
        check_ports(&format!("spec.ingress[{i}]"), &r.ports, &mut out);
    }
    for (i, r) in p.spec.egress.iter().flatten().enumerate() {
        check_peers(&format!("spec.egress[{i}].to"), &r.to, &mut out);
        check_ports(&format!("spec.egress[{i}]"), &r.ports, &mut out);
    }
    out
}

fn check_entity(at: &str, e: &EntityMatch, ports_allowed: bool, out: &mut Vec<String>) {
    if let Some(s) = &e.selector {
        s.problems(&format!("{at}.selector"), out);
    }
    if let Some(s) = &e.namespace_selector {
        s.problems(&format!("{at}.namespaceSelector"), out);
    }
    for n in &e.nets {
        if n.parse::<IpNet>().is_err() {
            out.push(format!("{at}.nets {n:?} is not an IPv4 or IPv6 CIDR"));
        }
    }
    for p in &e.ports {
        if port_range(p).is_none() {
            out.push(format!(
                "{at}.ports {p:?} is not a port or range like \"80\" or \"8000:8080\""
            ));
        }
    }
    if !ports_allowed && !e.ports.is_empty() {
        out.push(format!("{at}.ports: only a destination has ports"));
    }
}

/// Every problem of a ClusterPolicy.
pub fn check_cluster_policy(p: &ClusterPolicy) -> Vec<String> {
    let mut out = Vec::new();
    check_object_name("metadata.name", &p.metadata.name, &mut out);
    if p.metadata.namespace.is_some() {
        out.push("metadata.namespace: a ClusterPolicy is cluster-wide; remove it".into());
    }
    p.spec.selector.problems("spec.selector", &mut out);
    if let Some(s) = &p.spec.namespace_selector {
        s.problems("spec.namespaceSelector", &mut out);
    }
    for (dir, rules) in [("ingress", &p.spec.ingress), ("egress", &p.spec.egress)] {
        for (i, r) in rules.iter().enumerate() {
            let here = format!("spec.{dir}[{i}]");
            check_protocol(&here, &r.protocol, true, &mut out);
            let has_ports = r.destination.as_ref().is_some_and(|d| !d.ports.is_empty());
            if has_ports && !matches!(r.protocol.as_deref(), Some("TCP" | "UDP" | "SCTP")) {
                out.push(format!("{here}: ports need protocol TCP, UDP or SCTP"));
            }
            if r.icmp_type.is_some() && !matches!(r.protocol.as_deref(), Some("ICMP" | "ICMPv6")) {
                out.push(format!("{here}.icmpType needs protocol ICMP or ICMPv6"));
            }
            if let Some(s) = &r.source {
                check_entity(&format!("{here}.source"), s, false, &mut out);
            }
            if let Some(d) = &r.destination {
                check_entity(&format!("{here}.destination"), d, true, &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_documents_both_kinds_and_a_list() {
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: weft.dev/v1
kind: ClusterPolicy
metadata: {name: no-metadata}
spec:
  order: 10
  egress:
  - action: Deny
    protocol: TCP
    destination: {nets: [169.254.169.254/32], ports: ["80"]}
---
{"kind": "List", "items": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "allow-a"}, "spec": {"podSelector": {"matchLabels": {"pod": "a"}}}}]}
"#;
        let p = parse_documents(text).unwrap();
        let ids: Vec<String> = p
            .iter()
            .map(|p| format!("{} {}", p.kind(), p.id()))
            .collect();
        assert_eq!(
            ids,
            [
                "NetworkPolicy x/deny-all",
                "ClusterPolicy no-metadata",
                "NetworkPolicy default/allow-a"
            ]
        );
    }

    #[test]
    fn every_problem_is_named_and_nothing_is_taken() {
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: Bad_Name, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: a, operator: In}]}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}, podSelector: {}}, {}]
    ports: [{port: http}, {protocol: ICMP, port: 80, endPort: 70}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: typo}
spec: {podSelecter: {}}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
---
apiVersion: weft.dev/v1
kind: ClusterPolicy
metadata: {name: c, namespace: x}
spec:
  ingress: [{action: Deny, protocol: UDP, icmpType: 3, source: {ports: ["80"]}}]
"#;
        let e = parse_documents(text).unwrap_err();
        let want = [
            "document 1: NetworkPolicy x/Bad_Name: metadata.name \"Bad_Name\" is not a valid name (lower-case letters, digits, '-' and '.')",
            "document 1: NetworkPolicy x/Bad_Name: spec.podSelector.matchExpressions[0]: In needs at least one value",
            "document 1: NetworkPolicy x/Bad_Name: spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector",
            "document 1: NetworkPolicy x/Bad_Name: spec.ingress[0].from[1]: needs podSelector, namespaceSelector or ipBlock",
            "document 1: NetworkPolicy x/Bad_Name: spec.ingress[0].ports[0].port \"http\": named ports are not supported; give the number",
            "document 1: NetworkPolicy x/Bad_Name: spec.ingress[0].ports[1].protocol \"ICMP\" is not one of TCP, UDP, SCTP",
            "document 1: NetworkPolicy x/Bad_Name: spec.ingress[0].ports[1].endPort 70 must be from port 80 to 65535",
        ];
        for w in want {
            assert!(
                e.problems.iter().any(|p| p == w),
                "missing {w:?} in {:#?}",
                e.problems
            );
        }
        let joined = e.problems.join("\n");
        assert!(
            joined.contains("document 2: unknown field `podSelecter`"),
            "{joined}"
        );
        assert!(
            joined.contains("document 3: apiVersion \"v1\" kind \"Pod\" is not a policy"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "document 4: ClusterPolicy c: metadata.namespace: a ClusterPolicy is cluster-wide"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("spec.ingress[0].icmpType needs protocol ICMP or ICMPv6"),
            "{joined}"
        );
        assert!(
            joined.contains("spec.ingress[0].source.ports: only a destination has ports"),
            "{joined}"
        );
        // An except outside the block is named too.
        let b = IpBlock {
            cidr: "10.0.0.0/8".into(),
            except: vec!["11.0.0.0/8".into()],
        };
        let mut p = Vec::new();
        check_ip_block("x", &b, &mut p);
        assert_eq!(p, ["x.except 11.0.0.0/8 is not strictly inside 10.0.0.0/8"]);
    }

    #[test]
    fn duplicates_garbage_and_empty_files_are_refused() {
        let one = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {}\n";
        let e = parse_documents(&format!("{one}---\n{one}")).unwrap_err();
        assert_eq!(e.problems, ["NetworkPolicy default/a appears twice"]);
        assert!(parse_documents("{{{").unwrap_err().problems[0]
            .starts_with("document 1: not YAML or JSON"));
        assert_eq!(
            parse_documents("").unwrap_err().problems,
            ["no policy in the file"]
        );
    }
}
