//! The command lines as a person meets them, without root: read commands never create
//! a store, and the CNI plugin answers `--help` with usage, not CNI error JSON.

use std::process::Command;

const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");
const PLUGIN: &str = env!("CARGO_BIN_EXE_weft");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// weftctl on the embedded store at `path` (whatever `WEFT_STORE` says).
fn on_store(path: &str, args: &[&str]) -> std::process::Output {
    Command::new(WEFTCTL)
        .args(["--store", "embedded", "--store-path", path])
        .args(args)
        .env_remove("WEFT_STORE")
        .output()
        .unwrap()
}

/// A temporary directory holding an embedded store made by `network init --network
/// 10.244.0.0/16` and `more` options; the directory (kept alive by the caller) and the
/// store's path.
fn initialized_store(more: &[&str]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db").to_str().unwrap().to_owned();
    let mut init = vec!["network", "init", "--network", "10.244.0.0/16"];
    init.extend_from_slice(more);
    let out = on_store(&path, &init);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (dir, path)
}

#[test]
fn only_network_init_creates_an_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let path = db.to_str().unwrap();
    let ctl = |args: &[&str]| on_store(path, args);
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, "kind: Nope\n").unwrap();
    let file = file.to_str().unwrap();
    // Every command that reads or writes the store, but `network init`.
    for read in [
        vec!["leases"],
        vec!["network", "show"],
        vec!["network", "list"],
        vec!["network", "show", "blue"],
        vec!["addresses"],
        vec!["store", "ls", "/"],
        vec!["store", "get", "/k"],
        vec!["ipam", "blocks"],
        vec!["ipam", "check"],
        vec!["ipam", "show", "10.248.0.1"],
        vec!["pool", "list"],
        vec!["pool", "show", "default"],
        vec!["policy", "list"],
        vec!["policy", "show", "x/p"],
        vec!["policy", "explain", "x/a", "x/b"],
        vec!["endpoint", "list"],
        vec!["bgp", "peer", "list"],
        vec!["diagnose"],
        vec!["store", "put", "/k", "v"],
        vec!["store", "del", "/k"],
        vec!["leases", "delete", "10.244.1.0/24"],
        vec!["network", "create", "blue", "--subnet", "10.50.0.0/24"],
        vec!["network", "delete", "blue"],
        vec!["pool", "create", "p", "--cidr", "10.248.0.0/16"],
        vec!["pool", "delete", "p"],
        vec!["policy", "apply", "-f", file],
        vec!["policy", "delete", "x/p"],
        vec!["endpoint", "label", "10.0.0.1", "a=b"],
        vec!["namespace", "label", "x", "a=b"],
        vec!["ipam", "release", "10.248.0.1"],
    ] {
        let out = ctl(&read);
        assert_eq!(out.status.code(), Some(1), "{read:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("no embedded store at") && err.contains(path),
            "{err}"
        );
        assert!(!db.exists(), "{read:?} created the store");
    }
    let init = ctl(&["network", "init", "--network", "10.244.0.0/16"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    assert!(db.exists());
    let leases = ctl(&["leases"]);
    assert!(leases.status.success(), "{}", text(&leases.stderr));
}

#[test]
fn the_plugin_tells_a_person_what_it_is() {
    for arg in ["--help", "version"] {
        let out = Command::new(PLUGIN)
            .arg(arg)
            .env_remove("CNI_COMMAND")
            .output()
            .unwrap();
        assert!(out.status.success());
        let said = text(&out.stdout);
        assert!(said.starts_with("weft: Weft's CNI plugin"), "{said}");
        assert!(said.contains("supported CNI versions: "), "{said}");
    }
    // Without arguments and without CNI_COMMAND it stays a plugin: CNI error JSON.
    let out = Command::new(PLUGIN)
        .env_remove("CNI_COMMAND")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("CNI_COMMAND is not set"));
}

/// A policy file with one bad object applies nothing, and says every problem.
#[test]
fn a_bad_policy_file_applies_nothing() {
    let (dir, path) = initialized_store(&[]);
    let ctl = |args: &[&str]| on_store(&path, args);
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: good, namespace: x}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: http}, {port: 99999}]}]}\n",
    )
    .unwrap();
    let out = ctl(&["policy", "apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("nothing applied"), "{err}");
    assert!(
        err.contains("ports[0].port \"http\": named ports are not supported"),
        "{err}"
    );
    assert!(err.contains("ports[1].port 99999 is out of range"), "{err}");
    let list = text(&ctl(&["policy", "list", "-o", "json"]).stdout);
    assert_eq!(list.trim(), "[]", "the good object was not applied either");
}

#[test]
fn every_listing_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let path = db.to_str().unwrap();
    let ctl = |args: &[&str]| {
        let out = on_store(path, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ctl(&["network", "init", "--network", "10.244.0.0/16"]);
    ctl(&["network", "create", "blue", "--subnet", "10.50.0.0/24"]);
    ctl(&["pool", "create", "default", "--cidr", "10.248.0.0/16"]);
    for s in ["10.244.10.0", "10.244.9.0"] {
        let key = format!("/coreos.com/network/subnets/{s}-24");
        ctl(&[
            "store",
            "put",
            &key,
            r#"{"PublicIP":"192.168.1.1","BackendType":"host-gw"}"#,
        ]);
    }
    ctl(&[
        "store",
        "put",
        "/coreos.com/network/weft/ipam/blocks/10.248.0.0-26",
        r#"{"CIDR":"10.248.0.0/26","Pool":"default","Node":"192.168.1.1","Allocations":{"10.248.0.1":{"Handle":"net/c1/eth0","Node":"192.168.1.1"}}}"#,
    ]);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{}]}\n",
    )
    .unwrap();
    ctl(&["policy", "apply", "-f", policy.to_str().unwrap()]);
    for (ip, name) in [("10.248.0.2", "x/a"), ("10.248.0.3", "x/b")] {
        ctl(&[
            "endpoint",
            "label",
            ip,
            "pod=a",
            "--name",
            name,
            "--node",
            "192.168.1.1",
        ]);
    }
    let status = dir.path().join("bgp.json");
    std::fs::write(
        &status,
        r#"{"asn":64512,"router_id":"192.168.1.1","peers":[]}"#,
    )
    .unwrap();
    let data = dir.path().join("cni");
    std::fs::create_dir_all(&data).unwrap();
    let (status, data) = (status.display().to_string(), data.display().to_string());
    let listings: Vec<Vec<&str>> = vec![
        vec!["leases"],
        vec!["addresses"],
        vec!["network", "list"],
        vec!["network", "show", "blue"],
        vec!["network", "create", "red", "--subnet", "10.51.0.0/24"],
        vec!["store", "ls", "/coreos.com"],
        vec!["node", "status", "--file", &status],
        vec!["ipam", "show", "--data-dir", &data],
        vec!["ipam", "blocks"],
        vec!["ipam", "show", "10.248.0.1"],
        vec!["ipam", "check"],
        vec!["policy", "list"],
        vec!["policy", "show", "x/p"],
        vec!["policy", "explain", "x/a", "x/b"],
        vec!["endpoint", "list"],
        vec!["pool", "list"],
        vec!["pool", "show", "default"],
    ];
    for args in listings {
        let mut all = args.clone();
        all.extend(["-o", "json"]);
        let out = ctl(&all);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        assert!(v.is_object() || v.is_array(), "{args:?}: {out}");
    }
    // Leases by address, not as text.
    let table = ctl(&["leases"]);
    let nine = table.find("10.244.9.0/24").unwrap();
    let ten = table.find("10.244.10.0/24").unwrap();
    assert!(nine < ten, "{table}");
}

/// A cluster policy is listed with the namespaces it applies to, and asking for it
/// without `--cluster` (or a NetworkPolicy with it) says which flag finds it.
#[test]
fn cluster_policies_are_listed_whole_and_found_by_the_right_flag() {
    let (dir, path) = initialized_store(&[]);
    let ctl = |args: &[&str]| on_store(&path, args);
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: blue-only}\nspec:\n  order: 5\n  namespaceSelector: {matchLabels: {team: blue}}\n  ingress: [{action: Deny}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    let out = ctl(&["policy", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let list = text(&ctl(&["policy", "list"]).stdout);
    let row = list.lines().find(|l| l.contains("blue-only")).unwrap();
    assert!(row.contains("in namespaces team=blue"), "{list}");

    for verb in ["show", "delete"] {
        let out = ctl(&["policy", verb, "blue-only"]);
        assert!(!out.status.success(), "{verb}");
        let err = text(&out.stderr);
        assert!(
            err.contains("there is a ClusterPolicy blue-only: add --cluster"),
            "{verb}: {err}"
        );
        let out = ctl(&["policy", verb, "x/p", "--cluster"]);
        let err = text(&out.stderr);
        assert!(err.contains("drop --cluster"), "{verb} --cluster: {err}");
        let out = ctl(&["policy", verb, "x/nothing"]);
        let err = text(&out.stderr);
        assert!(
            err.contains("no NetworkPolicy x/nothing (see weftctl policy list)"),
            "{verb}: {err}"
        );
    }
    let out = ctl(&["policy", "delete", "blue-only", "--cluster"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Every command that takes `-o` says what it does in its help.
#[test]
fn every_output_flag_is_explained() {
    let commands: &[&[&str]] = &[
        &["leases"],
        &["addresses"],
        &["network", "list"],
        &["network", "show"],
        &["network", "create"],
        &["node", "status"],
        &["ipam", "show"],
        &["ipam", "blocks"],
        &["ipam", "check"],
        &["policy", "list"],
        &["policy", "show"],
        &["policy", "explain"],
        &["endpoint", "list"],
        &["pool", "list"],
        &["pool", "show"],
        &["diagnose"],
        &["lab", "probe"],
    ];
    for args in commands {
        let out = Command::new(WEFTCTL)
            .args(*args)
            .arg("-h")
            .output()
            .unwrap();
        let help = text(&out.stdout);
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains("-o, --output"))
            .unwrap_or_else(|| panic!("{args:?} has no -o: {help}"));
        // Clap puts a long description on the next line.
        let described = lines[at..lines.len().min(at + 2)].join(" ");
        assert!(described.contains("Output format"), "{args:?}: {described}");
    }
}

/// `lab exec` on a lab that does not exist names the lab, as the other lab commands do.
#[test]
fn lab_exec_names_a_missing_lab() {
    let out = Command::new(WEFTCTL)
        .args(["lab", "exec", "--name", "nosuchlab", "h1", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("lab \"nosuchlab\" does not exist"), "{err}");
}

/// `lab up` refuses a config `network init` would refuse before it makes anything,
/// in weftctl's own words (not a nested error quoting a command line).
#[test]
fn lab_up_checks_the_config_before_it_builds() {
    // A name of this run's own: as root, a check that let the options through would
    // build a lab under it.
    let name = format!("t{}chk", std::process::id() % 100_000);
    for (args, want) in [
        (&["--backend", "host-gw", "--vni", "5"][..], "--vni"),
        (&["--network", "10.244.0.0/30"][..], "10.244.0.0/30"),
    ] {
        let out = Command::new(WEFTCTL)
            .args(["lab", "up", "--name", &name])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("network init --network"), "{args:?}: {err}");
        assert!(
            !std::path::Path::new(&format!("/run/weft-lab/{name}")).exists(),
            "{args:?}: nothing made"
        );
    }
}

/// `bgp peer add|list|delete` write what the agents read (checked by
/// `lab_bgp::bgp_with_a_bird_router_that_wants_a_password`, which adds its peers this
/// way), list it back, and refuse bad options with the option named.
#[test]
fn bgp_peers_are_added_listed_and_deleted() {
    let (_dir, path) = initialized_store(&["--backend", "bgp"]);
    let ctl = |args: &[&str]| on_store(&path, args);
    let add = ctl(&[
        "bgp",
        "peer",
        "add",
        "tor1",
        "--peer-ip",
        "192.168.77.254",
        "--as",
        "64513",
        "--password-file",
        "/etc/weft/bgp/tor1.key",
        "--max-prefixes",
        "1000",
        "--max-prefixes-restart",
        "30",
        "--ttl-security",
        "1",
        "--accept",
        "10.200.0.0/16",
        "--accept",
        "10.201.0.0/16 le 24",
        "--node-selector",
        "rack == 'r1'",
        "--export",
        "Aggregate",
        "--community",
        "64512:100",
        "--large-community",
        "64512:7:42",
    ]);
    assert!(add.status.success(), "{}", text(&add.stderr));
    let raw = ctl(&["store", "get", "/coreos.com/network/weft/bgp/peers/tor1"]);
    let v: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"PeerIP": "192.168.77.254", "ASNumber": 64513,
            "NodeSelector": "rack == 'r1'",
            "Password": {"File": "/etc/weft/bgp/tor1.key"}, "MaxPrefixes": 1000,
            "MaxPrefixesWarning": 80, "MaxPrefixesRestart": 30, "TTLSecurity": 1,
            "Accept": ["10.200.0.0/16", "10.201.0.0/16 le 24"], "Export": ["Aggregate"],
            "Communities": ["64512:100"], "LargeCommunities": ["64512:7:42"]})
    );
    let table = text(&ctl(&["bgp", "peer", "list"]).stdout);
    assert!(
        table.contains("tor1")
            && table.contains("192.168.77.254")
            && table.contains(" on ")
            && table.contains("10.200.0.0/16,10.201.0.0/16 le 24")
            && table.contains("rack == 'r1'")
            && table.contains("  Aggregate  ")
            && table.contains("64512:100,64512:7:42"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&ctl(&["bgp", "peer", "list", "-o", "json"]).stdout).unwrap();
    assert_eq!(json[0]["name"], "tor1");
    for (args, says) in [
        (vec!["--password-file", "tor1.key"], "absolute path"),
        (vec!["--max-prefixes", "0"], "--max-prefixes"),
        (vec!["--max-prefixes-warning", "50"], "--max-prefixes"),
        (vec!["--ttl-security", "255"], "--ttl-security"),
        (
            vec!["--password-file", "/k", "--password-env", "K"],
            "--password-env",
        ),
        (vec!["--node-selector", "rack = 'r1'"], "--node-selector"),
        (
            vec!["--node", "192.168.77.1", "--node-selector", "all()"],
            "--node-selector",
        ),
        (vec!["--export", "Everything"], "--export"),
        (vec!["--community", "64512"], "--community"),
        (vec!["--large-community", "1:2"], "--large-community"),
        (vec!["--accept", "10.0.0.0/8 ge 4"], "--accept"),
        (vec!["--multihop", "2", "--ttl-security", "1"], "--multihop"),
        (vec!["--multihop", "0"], "--multihop"),
    ] {
        let mut all = vec![
            "bgp",
            "peer",
            "add",
            "tor2",
            "--peer-ip",
            "10.0.0.1",
            "--as",
            "1",
        ];
        all.extend(args.iter().copied());
        let out = ctl(&all);
        assert!(!out.status.success(), "{args:?} taken");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let bad = ctl(&[
        "bgp",
        "peer",
        "add",
        "Tor_2",
        "--peer-ip",
        "10.0.0.1",
        "--as",
        "1",
    ]);
    assert!(
        text(&bad.stderr).contains("lowercase"),
        "{}",
        text(&bad.stderr)
    );
    let listed = text(&ctl(&["store", "ls", "/coreos.com/network/weft/bgp/peers/"]).stdout);
    assert!(
        !listed.contains("tor2") && !listed.contains("Tor_2"),
        "nothing refused is stored: {listed}"
    );
    assert!(ctl(&["bgp", "peer", "delete", "tor1"]).status.success());
    let gone = ctl(&["bgp", "peer", "delete", "tor1"]);
    assert!(!gone.status.success() && text(&gone.stderr).contains("no BGP peer tor1"));
}
