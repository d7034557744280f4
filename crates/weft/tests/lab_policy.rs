//! End to end, in network namespaces: network policy's identities. Containers attached
//! by the real CNI plugin with kubelet's `K8S_POD_NAMESPACE`/`K8S_POD_NAME` and labels
//! in `args.cni.labels` are recorded through their node's agent (namespace, name,
//! labels, node, host interface), listed by `weftctl endpoint list` with the policies
//! that select them, explained by `weftctl policy explain`, and forgotten on DEL; bad
//! labels refuse the ADD and leave nothing. (Enforcement is not built yet.)

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use weft_testkit::require_root;

fn cni(lab: &Lab, h: &str, ctr: &str, command: &str, args: &str, labels: &str) -> (bool, String) {
    let dir = format!("/run/weft-lab/{}/{h}", lab.name);
    let labels: Vec<serde_json::Value> = labels
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            serde_json::json!({"key": k, "value": v})
        })
        .collect();
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "weft", "type": "weft",
        "subnetFile": format!("{dir}/subnet.env"), "dataDir": format!("{dir}/cni"),
        "agentSocket": format!("{dir}/weftd.sock"),
        "args": {"cni": {"labels": labels}},
    });
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns(h), env!("CARGO_BIN_EXE_weft")])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", ctr)
        .env("CNI_NETNS", format!("/run/netns/{ctr}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args)
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), text(&out.stdout))
}

fn pod(ns: &str, name: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID=x"
    )
}

#[test]
fn identities_recorded_listed_explained_and_forgotten() {
    require_root!("identities_recorded_listed_explained_and_forgotten");
    let lab = Lab::up("pol", "embedded", 2);
    let (xa, yb) = (format!("{}-c10", lab.name), format!("{}-c11", lab.name));
    for c in [&xa, &yb] {
        weft_testkit::netns::sh(&["ip", "netns", "add", c]);
    }
    let (ok, out) = cni(&lab, "h1", &xa, "ADD", &pod("x", "a"), "pod=a,app=web");
    assert!(ok, "{out}");
    let (ok, out) = cni(&lab, "h2", &yb, "ADD", &pod("y", "b"), "pod=b");
    assert!(ok, "{out}");
    lab.ok(
        lab.store_cmd(&["namespace", "label", "y", "ns=y"]),
        "namespace label",
    );

    let list = lab.ok(
        lab.store_cmd(&["endpoint", "list", "-o", "json"]),
        "endpoint list",
    );
    let eps: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let xa_ep = eps
        .iter()
        .find(|e| e["name"] == "x/a")
        .expect("x/a recorded");
    assert_eq!(xa_ep["node"], "192.168.77.1");
    assert_eq!(xa_ep["labels"]["app"], "web");
    let state = lab.ok(
        lab.store_cmd(&[
            "store",
            "get",
            &format!(
                "/coreos.com/network/weft/policy/endpoints/{}",
                xa_ep["address"].as_str().unwrap()
            ),
        ]),
        "store get",
    );
    let veth = weft_plan::iface::host_veth_name(&xa, "eth0");
    assert!(
        state.contains(&format!("\"Interface\":\"{veth}\"")),
        "{state}"
    );
    assert!(eps
        .iter()
        .any(|e| e["name"] == "y/b" && e["node"] == "192.168.77.2"));

    // A policy selecting x/a: explain names it, and answers by name.
    let file = std::env::temp_dir().join(format!("{}-p.yaml", lab.name));
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]\n",
    )
    .unwrap();
    lab.ok(
        lab.store_cmd(&["policy", "apply", "-f", file.to_str().unwrap()]),
        "apply",
    );
    let _ = std::fs::remove_file(&file);
    let said = lab.ok(
        lab.store_cmd(&["policy", "explain", "y/b", "x/a", "--port", "80"]),
        "explain",
    );
    assert!(
        said.contains("NetworkPolicy x/web-from-y ingress[0] allows"),
        "{said}"
    );
    let denied = lab.store_cmd(&["policy", "explain", "y/b", "x/a", "--port", "81"]);
    assert_eq!(denied.status.code(), Some(3), "{}", text(&denied.stdout));
    let list = lab.ok(lab.store_cmd(&["endpoint", "list"]), "endpoint list");
    assert!(
        list.lines()
            .any(|l| l.starts_with("x/a") && l.contains("NetworkPolicy x/web-from-y")),
        "{list}"
    );

    // Bad labels: the agent refuses them, the ADD fails and leaves nothing.
    let bad = format!("{}-c12", lab.name);
    weft_testkit::netns::sh(&["ip", "netns", "add", &bad]);
    let (ok, out) = cni(&lab, "h1", &bad, "ADD", &pod("x", "c"), "pod=-no-");
    assert!(!ok && out.contains("is not a label value"), "{out}");
    let links = text(&lab.exec("h1", &["ip", "-o", "link"]).stdout);
    assert!(
        !links.contains(&weft_plan::iface::host_veth_name(&bad, "eth0")),
        "{links}"
    );

    // DEL forgets.
    let (ok, out) = cni(&lab, "h1", &xa, "DEL", &pod("x", "a"), "pod=a,app=web");
    assert!(ok, "{out}");
    let list = lab.ok(
        lab.store_cmd(&["endpoint", "list", "-o", "json"]),
        "endpoint list",
    );
    assert!(!list.contains("\"x/a\""), "{list}");
    assert!(list.contains("\"y/b\""), "{list}");
}
