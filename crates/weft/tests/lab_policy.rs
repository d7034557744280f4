//! End to end, in network namespaces: network policy's identities. Containers attached
//! by the real CNI plugin with kubelet's `K8S_POD_NAMESPACE`/`K8S_POD_NAME` and labels
//! in `args.cni.labels` are recorded through their node's agent (namespace, name,
//! labels, node, host interface), listed by `weftctl endpoint list` with the policies
//! that select them, explained by `weftctl policy explain`, and forgotten on DEL (and by
//! CNI GC once the runtime no longer lists the container); bad
//! labels refuse the ADD and leave nothing.
//! - Enforcement (routed attachment): containers in namespaces x, y, z on two hosts
//!   serving TCP 80 and 81; for each policy set, every pair and port is probed and must
//!   agree with `weftctl policy explain`, whose verdicts the cases also pin; a container
//!   added while a deny policy exists is never reachable, probed from before its ADD;
//!   a cluster Log rule writes its prefix to the kernel log and lets the packet on.
//! - With etcd and the agents stopped the loaded rules keep enforcing; restarted agents
//!   load nothing new and the traffic is as before.

mod common;

use std::process::{Command, Stdio};

use common::*;
use weft_testkit::require_root;

fn cni(lab: &Lab, h: &str, ctr: &str, command: &str, args: &str, labels: &str) -> (bool, String) {
    cni_with(lab, h, ctr, command, args, labels, serde_json::json!({}))
}

/// The plugin with `labels` (`k=v,…`) in `args.cni.labels` and kubelet's `args`.
fn cni_with(
    lab: &Lab,
    h: &str,
    ctr: &str,
    command: &str,
    args: &str,
    labels: &str,
    extra: serde_json::Value,
) -> (bool, String) {
    let labels: Vec<serde_json::Value> = labels
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            serde_json::json!({"key": k, "value": v})
        })
        .collect();
    let mut conf = serde_json::json!({"args": {"cni": {"labels": labels}}});
    if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    cni_call(lab, h, ctr, command, conf, args)
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
    lab.apply_policy(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]\n",
    );
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

    // GC forgets what the runtime no longer lists: y/b's container is not among h2's.
    let gc = serde_json::json!({"cni.dev/valid-attachments": [{"containerID": "other", "ifname": "eth0"}]});
    let (ok, out) = cni_with(&lab, "h2", &yb, "GC", "", "", gc);
    assert!(ok, "{out}");
    let list = lab.ok(
        lab.store_cmd(&["endpoint", "list", "-o", "json"]),
        "endpoint list",
    );
    assert!(!list.contains("\"y/b\""), "{list}");
}

/// TCP servers on 80 and 81 in each container's namespace, killed on drop.
struct Servers(Vec<std::process::Child>);

impl Servers {
    fn start(netns: &str) -> std::process::Child {
        let code = [
            "import socket,threading",
            "def serve(p):",
            "    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)",
            "    s.bind(('0.0.0.0',p)); s.listen(64)",
            "    while True:",
            "        c,_=s.accept(); c.close()",
            "for p in (80,81): threading.Thread(target=serve,args=(p,),daemon=True).start()",
            "threading.Event().wait()",
        ]
        .join("\n");
        Command::new("ip")
            .args(["netns", "exec", netns, "python3", "-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Which (to address, port) pairs answer from `netns`, probed at once (1 s each).
fn probe(netns: &str, targets: &[(String, u16)]) -> Vec<bool> {
    let list: Vec<String> = targets
        .iter()
        .map(|(a, p)| format!("('{a}',{p})"))
        .collect();
    let code = [
        "import socket,concurrent.futures as f".to_owned(),
        "def t(x):".into(),
        "    s=socket.socket(); s.settimeout(1)".into(),
        "    try:".into(),
        "        s.connect(x); return '1'".into(),
        "    except Exception: return '0'".into(),
        "    finally: s.close()".into(),
        format!(
            "print(''.join(f.ThreadPoolExecutor(32).map(t,[{}])))",
            list.join(",")
        ),
    ]
    .join("\n");
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "python3", "-c", &code])
        .output()
        .unwrap();
    text(&out.stdout).trim().chars().map(|c| c == '1').collect()
}

struct Ctr {
    name: String,
    netns: String,
    ip: String,
}

/// Probes every pair on 80 and 81 until traffic agrees with `policy explain` (the
/// agents load a change within moments; 10 tries a second apart); returns the verdicts
/// by (from, to, port) for the case's own expectations.
fn matrix_agrees_with_explain(
    lab: &Lab,
    ctrs: &[Ctr],
    case: &str,
) -> Vec<(String, String, u16, bool)> {
    let mut last = String::new();
    for _ in 0..10 {
        match matrix(lab, ctrs) {
            Ok(m) => return m,
            Err(wrong) => last = wrong,
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("{case}: traffic disagrees with explain:\n{last}");
}

fn matrix(lab: &Lab, ctrs: &[Ctr]) -> Result<Vec<(String, String, u16, bool)>, String> {
    let mut out = Vec::new();
    let mut wrong = Vec::new();
    for from in ctrs {
        let targets: Vec<(String, u16)> = ctrs
            .iter()
            .filter(|c| c.name != from.name)
            .flat_map(|c| [(c.ip.clone(), 80), (c.ip.clone(), 81)])
            .collect();
        let got = probe(&from.netns, &targets);
        assert_eq!(got.len(), targets.len(), "probe from {}", from.name);
        for ((ip, port), ok) in targets.iter().zip(got) {
            let to = ctrs.iter().find(|c| &c.ip == ip).unwrap();
            let said = lab.store_cmd(&[
                "policy",
                "explain",
                &from.name,
                &to.name,
                "--port",
                &port.to_string(),
            ]);
            let allowed = said.status.code() == Some(0);
            if allowed != ok {
                wrong.push(format!(
                    "{} -> {}:{port}: traffic {}, explain {}\n{}",
                    from.name,
                    to.name,
                    if ok { "passes" } else { "blocked" },
                    if allowed { "allows" } else { "denies" },
                    text(&said.stdout)
                ));
            }
            out.push((from.name.clone(), to.name.clone(), *port, ok));
        }
    }
    if wrong.is_empty() {
        Ok(out)
    } else {
        Err(wrong.join("\n"))
    }
}

fn verdict(m: &[(String, String, u16, bool)], from: &str, to: &str, port: u16) -> bool {
    m.iter()
        .find(|(f, t, p, _)| f == from && t == to && *p == port)
        .map(|x| x.3)
        .unwrap_or_else(|| panic!("no probe {from} -> {to}:{port}"))
}

#[test]
fn policies_are_enforced_as_explained_routed() {
    require_root!("policies_are_enforced_as_explained_routed");
    let lab = Lab::up_with("pe", "embedded", 2, &["--cni-mode", "routed"]);
    let mut servers = Servers(Vec::new());
    let mut ctrs = Vec::new();
    for (i, (h, ns, name)) in [
        ("h1", "x", "a"),
        ("h2", "x", "b"),
        ("h1", "y", "a"),
        ("h2", "y", "b"),
        ("h2", "z", "a"),
    ]
    .iter()
    .enumerate()
    {
        let netns = format!("{}-c{}", lab.name, 20 + i);
        weft_testkit::netns::sh(&["ip", "netns", "add", &netns]);
        servers.0.push(Servers::start(&netns));
        let ip = attach_routed(&lab, h, &netns, &pod(ns, name), name);
        ctrs.push(Ctr {
            name: format!("{ns}/{name}"),
            netns,
            ip,
        });
    }
    for ns in ["x", "y", "z"] {
        lab.ok(
            lab.store_cmd(&["namespace", "label", ns, &format!("ns={ns}")]),
            "label",
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500)); // the servers listen

    let m = matrix_agrees_with_explain(&lab, &ctrs, "no policy");
    assert!(
        m.iter().all(|x| x.3),
        "nothing is isolated: everything passes"
    );

    lab.apply_policy("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-ingress, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n");
    // `policy apply` returned once both nodes enforce it: the first connections after
    // it are judged by the new rules, from either host (no retry).
    let to_xa = [(ctrs[0].ip.clone(), 80)];
    assert_eq!(
        probe(&ctrs[2].netns, &to_xa),
        [false],
        "y/a (h1) reached x/a after apply returned"
    );
    assert_eq!(
        probe(&ctrs[3].netns, &to_xa),
        [false],
        "y/b (h2) reached x/a after apply returned"
    );
    let m = matrix_agrees_with_explain(&lab, &ctrs, "default-deny-ingress in x");
    assert!(!verdict(&m, "y/a", "x/a", 80) && !verdict(&m, "x/b", "x/a", 81));
    assert!(
        verdict(&m, "x/a", "y/b", 80),
        "egress and other namespaces untouched"
    );

    lab.apply_policy("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-81-from-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 81}]}]\n");
    let m = matrix_agrees_with_explain(&lab, &ctrs, "x/a: 81 from y only");
    assert!(verdict(&m, "y/b", "x/a", 81) && !verdict(&m, "y/b", "x/a", 80));
    assert!(!verdict(&m, "z/a", "x/a", 81) && !verdict(&m, "x/b", "x/a", 81));

    lab.apply_policy("apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: z-not-to-y}\nspec:\n  order: 5\n  namespaceSelector: {matchLabels: {ns: z}}\n  egress: [{action: Deny, destination: {namespaceSelector: {matchLabels: {ns: y}}}}]\n");
    let m = matrix_agrees_with_explain(&lab, &ctrs, "cluster deny z to y, egress");
    assert!(!verdict(&m, "z/a", "y/a", 80) && verdict(&m, "y/a", "z/a", 80));

    // Log: the kernel logs a new connection into x with the policy's name, and lets it
    // on to the rules after (y/b still reaches x/a on 81).
    let policy = format!("log-{}", lab.name);
    lab.apply_policy(&format!("apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {{name: {policy}}}\nspec:\n  order: 1\n  namespaceSelector: {{matchLabels: {{ns: x}}}}\n  ingress: [{{action: Log, protocol: TCP, destination: {{ports: [\"81\"]}}}}]\n"));
    let x_a = ctrs[0].ip.clone();
    let logged = {
        let _log = KernelLogFromNamespaces::on();
        lab.wait_until(
            "y/b to reach x/a on 81",
            std::time::Duration::from_secs(10),
            || probe(&ctrs[3].netns, &[(x_a.clone(), 81)]) == [true],
        );
        let want = format!("weft {policy}: ");
        let mut found = String::new();
        lab.wait_until(
            "the kernel log line",
            std::time::Duration::from_secs(5),
            || {
                let log = text(&Command::new("dmesg").output().unwrap().stdout);
                found = log
                    .lines()
                    .filter(|l| l.contains(&want))
                    .collect::<Vec<_>>()
                    .join("\n");
                !found.is_empty()
            },
        );
        found
    };
    assert!(
        logged.contains(&format!("SRC={} DST={x_a}", ctrs[3].ip)) && logged.contains("DPT=81"),
        "{logged}"
    );
    lab.ok(
        lab.store_cmd(&["policy", "delete", "--cluster", &policy]),
        "policy delete",
    );

    // Policy before the first packet: with x denying ingress, a new x container (its
    // address fixed, its server up) probed from y/a from before its ADD to a second
    // after it is never reached: an nft counter in its own namespace, set before its
    // interface exists, counts every TCP packet to port 80 delivered to it, and stays 0.
    let netns = format!("{}-c30", lab.name);
    weft_testkit::netns::sh(&["ip", "netns", "add", &netns]);
    servers.0.push(Servers::start(&netns));
    let nft = |script: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &netns, "nft", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "nft {script}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    nft("add table inet delivered { chain in { type filter hook input priority 0; tcp dport 80 counter; }; }");
    let delivered = || {
        let listed = nft("list table inet delivered");
        listed
            .split("counter packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no counter in {listed}"))
    };
    let subnet = lab.subnet_of("h1");
    let base: Vec<u8> = subnet
        .split('/')
        .next()
        .unwrap()
        .split('.')
        .map(|o| o.parse().unwrap())
        .collect();
    let fixed = format!("{}.{}.{}.200", base[0], base[1], base[2]);
    let code = format!(
        "import socket,time\nok=0\nfirst=time.time()\nend=first+4\nwhile time.time()<end:\n    s=socket.socket(); s.settimeout(0.05)\n    try:\n        s.connect(('{fixed}',80)); ok+=1\n    except Exception: pass\n    finally: s.close()\n    last=time.time()\nprint(ok, first, last)\n"
    );
    let prober = Command::new("ip")
        .args(["netns", "exec", &ctrs[2].netns, "python3", "-c", &code])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let add_start = now();
    let conf = serde_json::json!({"mode": "routed", "runtimeConfig": {"ips": [fixed]}});
    let (ok, out) = cni_with(&lab, "h1", &netns, "ADD", &pod("x", "c"), "pod=c", conf);
    assert!(ok, "{out}");
    let add_end = now();
    let got = text(&prober.wait_with_output().unwrap().stdout);
    let fields: Vec<f64> = got.split_whitespace().map(|f| f.parse().unwrap()).collect();
    let (connected, first, last) = (fields[0], fields[1], fields[2]);
    assert!(
        first < add_start && last > add_end + 1.0,
        "the probes span the ADD ({first} .. {last} around {add_start} .. {add_end})"
    );
    assert_eq!(
        connected, 0.0,
        "a connection reached the new container before its policy"
    );
    assert_eq!(
        delivered(),
        0,
        "packets reached the new container's interface before its policy"
    );
    // And it is reachable once allowed by a policy.
    lab.apply_policy("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c-from-all, namespace: x}\nspec: {podSelector: {matchLabels: {pod: c}}, ingress: [{}]}\n");
    lab.wait_until(
        "the new container allowed",
        std::time::Duration::from_secs(10),
        || probe(&ctrs[2].netns, &[(fixed.clone(), 80)]) == [true],
    );
    assert!(delivered() > 0, "the counter counts what does arrive");

    // A node whose agent is down cannot enforce a change: `apply` says so, naming it,
    // once its timeout passes (the change stays written); `--no-wait` does not wait.
    let leases: serde_json::Value =
        serde_json::from_str(&lab.ok(lab.store_cmd(&["leases", "-o", "json"]), "leases")).unwrap();
    let h2_subnet = lab.subnet_of("h2");
    let h2_ip = leases["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["subnet"] == h2_subnet.as_str())
        .map(|l| l["public_ip"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no lease {h2_subnet} in {leases}"));
    lab.ok(lab.lab(&["agent"], &["h2", "stop"]), "agent stop");
    let file = std::env::temp_dir().join(format!("{}-late.yaml", lab.name));
    std::fs::write(&file, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: late, namespace: z}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n").unwrap();
    let file = file.to_str().unwrap();
    let out = lab.store_cmd(&["policy", "apply", "-f", file, "--timeout", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(
        said.contains("not enforced within 2s by") && said.contains(&h2_ip),
        "{said}"
    );
    let out = lab.store_cmd(&["policy", "delete", "z/late", "--no-wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    lab.ok(lab.lab(&["agent"], &["h2", "start"]), "agent start");
    // Back, it loads the store's rules, and a change waits for it again.
    lab.apply_policy("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: late, namespace: z}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n");
}

/// Attaches `netns` on host `h` in routed mode with kubelet's `args` and the label
/// `pod=POD`; its address.
fn attach_routed(lab: &Lab, h: &str, netns: &str, args: &str, pod: &str) -> String {
    let conf = serde_json::json!({"mode": "routed"});
    let (ok, out) = cni_with(lab, h, netns, "ADD", args, &format!("pod={pod}"), conf);
    assert!(ok, "{out}");
    cni_address(&out)
}

/// A store outage and agent restarts change no rule: with etcd stopped and the agents
/// stopped, the loaded rules keep enforcing; agents started again (etcd back) render the
/// same tables and load nothing; the traffic never changes.
#[test]
fn enforcement_survives_an_outage_and_restarts_unchanged() {
    require_root!("enforcement_survives_an_outage_and_restarts_unchanged");
    let lab = Lab::up_with("po", "etcd", 2, &["--cni-mode", "routed"]);
    let mut servers = Servers(Vec::new());
    let mut ctrs = Vec::new();
    for (i, (h, ns, name)) in [("h1", "x", "a"), ("h2", "y", "b"), ("h2", "x", "b")]
        .iter()
        .enumerate()
    {
        let netns = format!("{}-c{}", lab.name, 40 + i);
        weft_testkit::netns::sh(&["ip", "netns", "add", &netns]);
        servers.0.push(Servers::start(&netns));
        let ip = attach_routed(&lab, h, &netns, &pod(ns, name), name);
        ctrs.push(Ctr {
            name: format!("{ns}/{name}"),
            netns,
            ip,
        });
    }
    lab.ok(lab.store_cmd(&["namespace", "label", "y", "ns=y"]), "label");
    lab.apply_policy("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-from-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]\n");
    std::thread::sleep(std::time::Duration::from_millis(500)); // the servers listen
    let before = matrix_agrees_with_explain(&lab, &ctrs, "before the outage");
    assert!(verdict(&before, "y/b", "x/a", 80) && !verdict(&before, "x/b", "x/a", 80));
    // The table as loaded, its counters left out (they go on counting: the same table).
    let table = |h: &str| {
        let t = text(
            &lab.exec(h, &["nft", "list", "table", "ip", "weftpol"])
                .stdout,
        );
        let mut out = Vec::new();
        let mut words = t.split(' ').peekable();
        while let Some(w) = words.next() {
            if w == "packets" || w == "bytes" {
                words.next();
                continue;
            }
            out.push(w);
        }
        out.join(" ")
    };
    let (t1, t2) = (table("h1"), table("h2"));

    // The store goes, then the agents: the kernel keeps enforcing.
    lab.ok(lab.lab(&["etcd"], &["stop"]), "etcd stop");
    for h in ["h1", "h2"] {
        lab.ok(lab.lab(&["agent"], &[h, "stop"]), "agent stop");
    }
    for from in &ctrs {
        let targets: Vec<(String, u16)> = ctrs
            .iter()
            .filter(|c| c.name != from.name)
            .map(|c| (c.ip.clone(), 80))
            .collect();
        let got = probe(&from.netns, &targets);
        for ((ip, port), ok) in targets.iter().zip(got) {
            let to = ctrs.iter().find(|c| &c.ip == ip).unwrap();
            assert_eq!(
                ok,
                verdict(&before, &from.name, &to.name, *port),
                "{} -> {}:{port} changed during the outage",
                from.name,
                to.name
            );
        }
    }

    // Back: the same tables, not reloaded, and the same traffic.
    let logged: Vec<usize> = ["h1", "h2"].iter().map(|h| lab.log(h).len()).collect();
    lab.ok(lab.lab(&["etcd"], &["start"]), "etcd start");
    for h in ["h1", "h2"] {
        lab.ok(lab.lab(&["agent"], &[h, "start"]), "agent start");
    }
    let after = matrix_agrees_with_explain(&lab, &ctrs, "after the restarts");
    assert_eq!(after, before);
    assert_eq!(
        (table("h1"), table("h2")),
        (t1, t2),
        "the rules are as they were"
    );
    for (h, from) in ["h1", "h2"].iter().zip(logged) {
        let log = lab.log(h);
        let since = log.get(from..).unwrap_or_default();
        assert!(since.contains("ready"), "{h} restarted:\n{since}");
        assert!(
            !since.contains("loaded network policy rules"),
            "{h} reloaded its rules after the restart:\n{since}"
        );
    }
}

/// While alive, the kernel logs what nftables' `log` matches in every network
/// namespace (`net.netfilter.nf_log_all_netns`, off by default: the lab's hosts are
/// namespaces). Restores the previous setting when dropped, even on failure.
struct KernelLogFromNamespaces(String);

impl KernelLogFromNamespaces {
    const KNOB: &str = "/proc/sys/net/netfilter/nf_log_all_netns";

    fn on() -> Self {
        let was = std::fs::read_to_string(Self::KNOB).expect("nf_log_all_netns");
        std::fs::write(Self::KNOB, "1").expect("nf_log_all_netns");
        KernelLogFromNamespaces(was)
    }
}

impl Drop for KernelLogFromNamespaces {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::KNOB, self.0.trim());
    }
}
