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
