//! The command lines as a person meets them, without root: read commands never create
//! a store, and the CNI plugin answers `--help` with usage, not CNI error JSON.

use std::process::Command;

const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");
const PLUGIN: &str = env!("CARGO_BIN_EXE_weft");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn only_network_init_creates_an_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let path = db.to_str().unwrap();
    let ctl = |args: &[&str]| {
        Command::new(WEFTCTL)
            .args(["--store", "embedded", "--store-path", path])
            .args(args)
            .env_remove("WEFT_STORE")
            .output()
            .unwrap()
    };
    for read in [
        vec!["leases"],
        vec!["network", "show"],
        vec!["addresses"],
        vec!["store", "ls", "/"],
        vec!["store", "put", "/k", "v"],
        vec!["leases", "delete", "10.244.1.0/24"],
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
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let path = db.to_str().unwrap();
    let ctl = |args: &[&str]| {
        Command::new(WEFTCTL)
            .args(["--store", "embedded", "--store-path", path])
            .args(args)
            .env_remove("WEFT_STORE")
            .output()
            .unwrap()
    };
    assert!(ctl(&["network", "init", "--network", "10.244.0.0/16"])
        .status
        .success());
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
        let out = Command::new(WEFTCTL)
            .args(["--store", "embedded", "--store-path", path])
            .args(args)
            .env_remove("WEFT_STORE")
            .output()
            .unwrap();
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
