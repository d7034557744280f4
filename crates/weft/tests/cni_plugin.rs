//! The `weft` CNI plugin driven as a runtime drives it: CNI_* in the environment, the
//! network config on stdin, in network namespaces this test makes. Covers every
//! supported version, both attachment modes, the error codes, 100 concurrent ADDs, a
//! plugin killed mid-ADD, and chaining with the real reference plugins (portmap,
//! bandwidth) from Debian's containernetworking-plugins.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use weft_testkit::require_root;

use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_weft");
const CNI_PATH: &str = "/usr/lib/cni";

/// A node: a host namespace with a subnet file, and container namespaces on demand.
struct Node {
    tag: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
}

struct Call {
    code: i32,
    out: Value,
}

impl Node {
    fn new(tag: &str, subnet: &str) -> Node {
        let tag = format!("t{}{tag}", std::process::id() % 100_000);
        let dir = tempfile::tempdir().unwrap();
        let gw = subnet.replace(".0/", ".1/");
        std::fs::write(
            dir.path().join("subnet.env"),
            format!("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET={gw}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"),
        )
        .unwrap();
        let mut node = Node {
            tag,
            dir,
            namespaces: vec![],
        };
        let host = node.netns("host");
        ip(&["-n", &host, "link", "set", "lo", "up"]);
        node
    }

    /// Creates (once) and returns the namespace `<tag>-<name>`.
    fn netns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.tag);
        if !self.namespaces.contains(&ns) {
            ip(&["netns", "add", &ns]);
            self.namespaces.push(ns.clone());
        }
        ns
    }

    fn conf(&self, version: &str, mode: &str) -> Value {
        json!({
            "cniVersion": version, "name": "weftnet", "type": "weft", "mode": mode,
            "subnetFile": self.dir.path().join("subnet.env"), "dataDir": self.data_dir(),
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    /// Starts a plugin binary in the host namespace as a runtime would, config on stdin.
    fn spawn(
        &self,
        plugin: &str,
        command: &str,
        conf: &Value,
        id: &str,
        netns: &str,
        extra: &[(&str, &str)],
    ) -> std::process::Child {
        let host = format!("{}-host", self.tag);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host, plugin])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_PATH", CNI_PATH)
            .env("CNI_COMMAND", command)
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if !id.is_empty() {
            cmd.env("CNI_CONTAINERID", id);
        }
        if !netns.is_empty() {
            cmd.env("CNI_NETNS", netns);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child
    }

    /// Runs a plugin binary to completion; its exit code and JSON answer.
    fn call(
        &self,
        plugin: &str,
        command: &str,
        conf: &Value,
        id: &str,
        netns: &str,
        extra: &[(&str, &str)],
    ) -> Call {
        let out = self
            .spawn(plugin, command, conf, id, netns, extra)
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        Call {
            code: out.status.code().unwrap_or(-1),
            out: serde_json::from_str(text.trim()).unwrap_or(Value::Null),
        }
    }

    fn weft(&self, command: &str, conf: &Value, id: &str, ns: &str) -> Call {
        let path = if ns.is_empty() {
            String::new()
        } else {
            format!("/run/netns/{ns}")
        };
        self.call(PLUGIN, command, conf, id, &path, &[])
    }

    fn allocations(&self) -> usize {
        std::fs::read_dir(self.data_dir())
            .map(|dirs| {
                dirs.flatten()
                    .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
                    .filter(|f| {
                        f.file_name()
                            .to_string_lossy()
                            .parse::<std::net::Ipv4Addr>()
                            .is_ok()
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

fn address(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn every_version_add_check_del() {
    require_root!("every_version_add_check_del");
    let mut node = Node::new("a", "10.244.9.0/24");
    for (i, version) in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let ns = node.netns(&format!("c{i}"));
        let conf = node.conf(version, "bridge");
        let id = format!("ctr-{i}");
        let add = node.weft("ADD", &conf, &id, &ns);
        assert_eq!(add.code, 0, "{version} ADD: {}", add.out);
        assert_eq!(add.out["cniVersion"], version);
        assert_eq!(
            add.out["ips"][0].get("version").is_some(),
            version.starts_with("0."),
            "{}",
            add.out
        );
        assert_eq!(add.out["ips"][0]["gateway"], "10.244.9.1");
        let iface = add.out["ips"][0]["interface"].as_u64().unwrap() as usize;
        assert_eq!(
            add.out["interfaces"][iface]["sandbox"],
            format!("/run/netns/{ns}")
        );
        let addr = address(&add.out);
        assert!(
            in_ns(
                &ns,
                &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.244.9.1"]
            )
            .status
            .success(),
            "{version}: container reaches its gateway"
        );
        let check = node.weft("CHECK", &conf, &id, &ns);
        if version == "0.3.1" {
            assert_eq!(
                check.out["code"], 1,
                "CHECK does not exist in 0.3.1: {}",
                check.out
            );
        } else {
            assert_eq!(check.code, 0, "{version} CHECK: {}", check.out);
        }
        assert_eq!(node.weft("DEL", &conf, &id, &ns).code, 0);
        assert_eq!(
            node.weft("DEL", &conf, &id, &ns).code,
            0,
            "DEL twice is fine"
        );
        assert!(
            !ip(&["-n", &ns, "addr"]).contains(&addr),
            "{version}: address gone from the container"
        );
    }
    assert_eq!(node.allocations(), 0);
    let conf = node.conf("1.1.0", "bridge");
    assert_eq!(
        node.weft("DEL", &conf, "never-seen", "").code,
        0,
        "DEL of an unknown container succeeds"
    );
    let version = node.weft("VERSION", &conf, "", "");
    assert!(version.out["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "0.4.0"));
    assert_eq!(node.weft("STATUS", &conf, "", "").code, 0);
    let mut gone = conf.clone();
    gone["subnetFile"] = "/nonexistent/subnet.env".into();
    assert_eq!(
        node.weft("STATUS", &gone, "", "").out["code"],
        50,
        "STATUS without a lease: not available"
    );
}

#[test]
fn errors_carry_the_right_codes() {
    require_root!("errors_carry_the_right_codes");
    let mut node = Node::new("b", "10.244.8.0/24");
    let ns = node.netns("c");
    let conf = node.conf("1.0.0", "bridge");
    let host = format!("{}-host", node.tag);
    let raw = |stdin: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host, PLUGIN])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    let netns = format!("/run/netns/{ns}");
    let full = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "x"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let (code, out) = raw("{not json", &full);
    assert_eq!(
        (code != 0, out["code"].as_u64()),
        (true, Some(6)),
        "malformed config: {out}"
    );
    let (_, out) = raw(r#"{"cniVersion":"7.0.0","name":"n","type":"weft"}"#, &full);
    assert_eq!(out["code"], 1, "unsupported version: {out}");
    let (_, out) = raw(&conf.to_string(), &full[..1]);
    assert_eq!(out["code"], 4, "missing CNI_CONTAINERID: {out}");
    assert!(out["msg"].as_str().unwrap().contains("CNI_CONTAINERID"));
    let (_, out) = raw(&conf.to_string(), &[]);
    assert_eq!(out["code"], 4, "missing CNI_COMMAND: {out}");
    let bad = node.call(PLUGIN, "ADD", &conf, "x", "/run/netns/does-not-exist", &[]);
    assert_eq!(bad.out["code"], 4, "bad netns path: {}", bad.out);
    let not_ns = node.call(PLUGIN, "ADD", &conf, "x", "/etc/hostname", &[]);
    assert_eq!(
        not_ns.out["code"], 4,
        "a file that is no netns: {}",
        not_ns.out
    );
    assert_eq!(node.allocations(), 0, "failed ADDs leave no allocation");

    // Fixed addresses: outside the node's subnet, and taken.
    let outside = node.call(
        PLUGIN,
        "ADD",
        &conf,
        "x",
        &netns,
        &[("CNI_ARGS", "IP=10.244.99.5")],
    );
    assert_eq!(outside.out["code"], 100, "{}", outside.out);
    assert!(outside.out["details"].as_str().unwrap().contains("outside"));
    let mut fixed = conf.clone();
    fixed["runtimeConfig"] = json!({"ips": ["10.244.8.77/24"]});
    let first = node.call(PLUGIN, "ADD", &fixed, "x", &netns, &[]);
    assert_eq!(address(&first.out), "10.244.8.77", "{}", first.out);
    let ns2 = node.netns("c2");
    let taken = node.call(
        PLUGIN,
        "ADD",
        &fixed,
        "y",
        &format!("/run/netns/{ns2}"),
        &[],
    );
    assert_eq!(taken.out["code"], 100, "{}", taken.out);
    assert!(taken.out["msg"]
        .as_str()
        .unwrap()
        .contains("already assigned"));
}

#[test]
fn routed_mode_calico_layout() {
    require_root!("routed_mode_calico_layout");
    let mut node = Node::new("r", "10.244.7.0/24");
    let host = node.netns("host");
    // A default route, as every real host has (proxy ARP answers for routable addresses).
    ip(&[
        "-n", &host, "link", "add", "up0", "type", "veth", "peer", "name", "up1",
    ]);
    ip(&["-n", &host, "link", "set", "up0", "up"]);
    ip(&["-n", &host, "addr", "add", "192.168.99.1/24", "dev", "up0"]);
    let conf = node.conf("1.1.0", "routed");
    let (a, b) = (node.netns("a"), node.netns("b"));
    let ra = node.weft("ADD", &conf, "ra", &a);
    let rb = node.weft("ADD", &conf, "rb", &b);
    assert_eq!((ra.code, rb.code), (0, 0), "{} {}", ra.out, rb.out);
    assert_eq!(ra.out["ips"][0]["gateway"], "169.254.1.1");
    assert!(ra.out["ips"][0]["address"]
        .as_str()
        .unwrap()
        .ends_with("/32"));
    let host_if = &ra.out["interfaces"][0];
    assert_eq!(host_if["mac"], "ee:ee:ee:ee:ee:ee");
    let routes = ip(&["-n", &a, "route"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0")
            && routes.contains("169.254.1.1 dev eth0"),
        "{routes}"
    );
    let (addr_a, addr_b) = (address(&ra.out), address(&rb.out));
    let host_routes = ip(&["-n", &host, "route"]);
    assert!(
        host_routes.contains(&format!(
            "{addr_a} dev {}",
            host_if["name"].as_str().unwrap()
        )),
        "{host_routes}"
    );
    let proxy = in_ns(
        &host,
        &[
            "cat",
            &format!(
                "/proc/sys/net/ipv4/conf/{}/proxy_arp",
                host_if["name"].as_str().unwrap()
            ),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&proxy.stdout).trim(), "1");
    in_ns(&host, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(
        in_ns(&a, &["ping", "-c", "1", "-W", "2", &addr_b])
            .status
            .success(),
        "routed containers reach each other"
    );
    assert!(
        in_ns(&host, &["ping", "-c", "1", "-W", "2", &addr_a])
            .status
            .success(),
        "the host reaches a routed container"
    );
    assert_eq!(node.weft("DEL", &conf, "ra", &a).code, 0);
    assert!(
        !ip(&["-n", &host, "route"]).contains(&format!("{addr_a} dev")),
        "host route gone with the container"
    );
}

#[test]
fn hundred_concurrent_adds_then_dels() {
    require_root!("hundred_concurrent_adds_then_dels");
    let mut node = Node::new("h", "10.244.6.0/24");
    let conf = node.conf("1.0.0", "bridge");
    let names: Vec<String> = (0..100).map(|i| node.netns(&format!("p{i}"))).collect();
    let node = &node;
    let results: Vec<Call> = std::thread::scope(|s| {
        let jobs: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let conf = conf.clone();
                s.spawn(move || node.weft("ADD", &conf, &format!("p{i}"), ns))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let mut addrs: Vec<String> = results
        .iter()
        .map(|r| {
            assert_eq!(r.code, 0, "{}", r.out);
            address(&r.out)
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 100, "100 ADDs, 100 distinct addresses");
    assert_eq!(node.allocations(), 100);
    std::thread::scope(|s| {
        for (i, ns) in names.iter().enumerate() {
            let conf = conf.clone();
            s.spawn(move || assert_eq!(node.weft("DEL", &conf, &format!("p{i}"), ns).code, 0));
        }
    });
    assert_eq!(node.allocations(), 0, "100 DELs free everything");
}

#[test]
fn killed_mid_add_is_repaired() {
    require_root!("killed_mid_add_is_repaired");
    let mut node = Node::new("k", "10.244.5.0/24");
    let conf = node.conf("1.1.0", "bridge");
    // Kill later each round, until a kill has landed in the middle of an ADD: the
    // plugin died by the signal after claiming an address or making its veth.
    let mut landed_mid_add = 0;
    for round in 0..40u64 {
        if landed_mid_add >= 2 && round >= 8 {
            break;
        }
        let ns = node.netns(&format!("k{round}"));
        let id = format!("kill-{round}");
        let mut child = node.spawn(PLUGIN, "ADD", &conf, &id, &format!("/run/netns/{ns}"), &[]);
        std::thread::sleep(Duration::from_micros(250 * round));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let killed = std::os::unix::process::ExitStatusExt::signal(&status) == Some(9);
        let host = format!("{}-host", node.tag);
        let veth_name = weft_cni::attach::host_veth_name(&id, "eth0");
        let veth = ip(&["-n", &host, "link", "show"]).contains(&veth_name);
        if killed && (node.allocations() > 0 || veth) {
            landed_mid_add += 1;
        }
        // Whatever state the kill left, ADD again succeeds with one address ...
        let again = node.weft("ADD", &conf, &id, &ns);
        assert_eq!(
            again.code, 0,
            "round {round}: ADD after a killed ADD: {}",
            again.out
        );
        assert!(node.weft("CHECK", &conf, &id, &ns).code == 0);
        // ... and DEL leaves nothing.
        assert_eq!(node.weft("DEL", &conf, &id, &ns).code, 0);
        assert_eq!(node.allocations(), 0, "round {round}: nothing leaked");
    }
    assert!(
        landed_mid_add > 0,
        "no kill landed in the middle of an ADD: the repair was never exercised"
    );
    // A killed ADD that the runtime never DELs is collected by GC.
    let ns = node.netns("orphan");
    assert_eq!(node.weft("ADD", &conf, "orphan", &ns).code, 0);
    let keep = node.netns("keep");
    assert_eq!(node.weft("ADD", &conf, "keep", &keep).code, 0);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert_eq!(node.weft("GC", &gc, "", "").code, 0);
    assert_eq!(
        node.allocations(),
        1,
        "GC freed the orphan, kept the listed container"
    );
}

#[test]
fn chains_with_portmap_and_bandwidth() {
    require_root!("chains_with_portmap_and_bandwidth");
    if !std::path::Path::new(CNI_PATH).join("portmap").exists() {
        panic!(
            "reference plugins missing: install containernetworking-plugins (scripts/setup does)"
        );
    }
    let mut node = Node::new("p", "10.244.4.0/24");
    let host = node.netns("host");
    let (ctr, client) = (node.netns("ctr"), node.netns("client"));
    // The client reaches the host over its own link, as an outside machine would.
    ip(&[
        "-n", &host, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns",
        &client,
    ]);
    ip(&["-n", &host, "link", "set", "out0", "up"]);
    ip(&["-n", &host, "addr", "add", "192.168.98.1/24", "dev", "out0"]);
    ip(&["-n", &client, "link", "set", "eth0", "up"]);
    ip(&["-n", &client, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &client,
        "addr",
        "add",
        "192.168.98.2/24",
        "dev",
        "eth0",
    ]);
    in_ns(&host, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    let netns = format!("/run/netns/{ctr}");
    let mut conf = node.conf("1.0.0", "bridge");
    let add = node.call(PLUGIN, "ADD", &conf, "chained", &netns, &[]);
    assert_eq!(add.code, 0, "{}", add.out);
    let portmap = json!({
        "cniVersion": "1.0.0", "name": "weftnet", "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": add.out,
    });
    let pm = node.call(
        &format!("{CNI_PATH}/portmap"),
        "ADD",
        &portmap,
        "chained",
        &netns,
        &[],
    );
    assert_eq!(pm.code, 0, "portmap: {}", pm.out);
    let bandwidth = json!({
        "cniVersion": "1.0.0", "name": "weftnet", "type": "bandwidth",
        "capabilities": {"bandwidth": true},
        "runtimeConfig": {"bandwidth": {"ingressRate": 100_000_000, "ingressBurst": 1_000_000, "egressRate": 100_000_000, "egressBurst": 1_000_000}},
        "prevResult": pm.out,
    });
    let bw = node.call(
        &format!("{CNI_PATH}/bandwidth"),
        "ADD",
        &bandwidth,
        "chained",
        &netns,
        &[],
    );
    assert_eq!(bw.code, 0, "bandwidth: {}", bw.out);
    let host_veth = add.out["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let qdisc = ip(&[
        "netns", "exec", &host, "tc", "qdisc", "show", "dev", &host_veth,
    ]);
    assert!(
        qdisc.contains("tbf"),
        "bandwidth shaped the host side: {qdisc}"
    );

    // A server on the container's port 80 answers the client on the host's port 8080.
    let mut server = Command::new("ip")
        .args(["netns", "exec", &ctr, "python3", "-c",
            "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(1); c,_=s.accept(); c.sendall(b'hello from the container'); c.close()"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let got = in_ns(&client, &["python3", "-c",
        "import socket; s=socket.create_connection(('192.168.98.1', 8080), timeout=5); print(s.recv(100).decode())"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "hello from the container",
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );

    // DEL in reverse order, as a runtime does.
    conf["prevResult"] = bw.out.clone();
    assert_eq!(
        node.call(
            &format!("{CNI_PATH}/bandwidth"),
            "DEL",
            &bandwidth,
            "chained",
            &netns,
            &[]
        )
        .code,
        0
    );
    assert_eq!(
        node.call(
            &format!("{CNI_PATH}/portmap"),
            "DEL",
            &portmap,
            "chained",
            &netns,
            &[]
        )
        .code,
        0
    );
    assert_eq!(
        node.call(PLUGIN, "DEL", &conf, "chained", &netns, &[]).code,
        0
    );
    assert_eq!(node.allocations(), 0);
}

/// Identifiers and input a careless or hostile runtime could pass: refused with the CNI
/// error for them, before anything is allocated or created.
#[test]
fn hostile_input_is_refused_and_leaves_nothing() {
    require_root!("hostile_input_is_refused_and_leaves_nothing");
    let mut node = Node::new("hi", "10.244.9.0/24");
    let ns = node.netns("c");
    let path = format!("/run/netns/{ns}");
    let conf = node.conf("1.1.0", "bridge");
    let long = "x".repeat(100_000);
    for (id, ifname, what) in [
        ("a\nb", "eth0", "CNI_CONTAINERID"),
        ("-leading", "eth0", "CNI_CONTAINERID"),
        ("ctr", "eth0\n", "CNI_IFNAME"),
        ("ctr", "1234567890123456", "CNI_IFNAME"),
        ("ctr", long.as_str(), "CNI_IFNAME"),
        ("ctr", "../eth0", "CNI_IFNAME"),
    ] {
        for command in ["ADD", "DEL"] {
            let c = node.call(PLUGIN, command, &conf, id, &path, &[("CNI_IFNAME", ifname)]);
            assert_eq!(c.code, 1, "{command} {id:?} {:.20?}", ifname);
            assert_eq!(c.out["code"], 4, "{}", c.out);
            assert!(
                c.out["msg"].as_str().unwrap().starts_with(what),
                "{}",
                c.out
            );
        }
    }
    // A megabyte and more of configuration: read up to the limit, then refused.
    let host = format!("{}-host", node.tag);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &host, PLUGIN])
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "ctr")
        .env("CNI_NETNS", &path)
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut big = conf.to_string().into_bytes();
        big.pop();
        big.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(2 << 20)).bytes());
        // The plugin stops reading past the limit: a broken pipe here is expected.
        let _ = stdin.write_all(&big);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["code"], 6, "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("larger than"),
        "{answer}"
    );

    assert_eq!(node.allocations(), 0, "no address held");
    let links = ip(&["-n", &host, "link", "show"]);
    assert!(!links.contains("weft"), "no veth or bridge made:\n{links}");
    let inside = ip(&["-n", &ns, "-o", "link", "show"]);
    assert_eq!(
        inside.lines().count(),
        1,
        "only lo in the container:\n{inside}"
    );
    // And the plugin still works.
    let ok = node.weft("ADD", &node.conf("1.1.0", "bridge"), "ctr", &ns);
    assert_eq!(ok.code, 0, "{}", ok.out);
    assert_eq!(
        node.weft("DEL", &node.conf("1.1.0", "bridge"), "ctr", &ns)
            .code,
        0
    );
    assert_eq!(node.allocations(), 0);
}
