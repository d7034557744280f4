//! The crate graph as `docs/design.md` draws it: every workspace dependency points to a
//! lower row, nothing but the binaries depends on the agent, the CNI plugin reaches the
//! kernel only through weft-kernel's dataplane (no `rtnetlink` of its own), and the test
//! rig is a dev-dependency only. Read from the manifests; no root needed.

use std::collections::BTreeMap;
use std::path::Path;

/// The rows of the layering, lowest first: a crate may depend only on crates of lower rows.
const ROWS: &[&[&str]] = &[
    &["weft-store", "weft-policy"],
    &["weft-alloc", "weft-plan", "weft-tunnel", "weft-bgp"],
    &["weft-backends", "weft-kernel"],
    &["weft-cni", "weft-lab", "weft-docker"],
    &["weft-agent", "weft-cli"],
    &["weft"],
];

/// Each crate's `[dependencies]` (not dev-dependencies), by name.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut name = String::new();
        let mut deps = Vec::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
            } else if let Some((key, value)) = line.split_once('=') {
                let key = key.trim().trim_end_matches(".workspace").to_owned();
                if section == "[package]" && key == "name" {
                    name = value.trim().trim_matches('"').to_owned();
                } else if section == "[dependencies]" {
                    deps.push(key);
                }
            }
        }
        out.insert(name, deps);
    }
    out
}

fn row(name: &str) -> Option<usize> {
    ROWS.iter().position(|r| r.contains(&name))
}

#[test]
fn every_dependency_points_down() {
    let deps = dependencies();
    let mut known: Vec<&str> = ROWS.iter().flat_map(|r| r.iter().copied()).collect();
    known.push("weft-testkit");
    for name in deps.keys() {
        assert!(known.contains(&name.as_str()), "crate {name} has no row");
    }
    for (name, list) in &deps {
        for dep in list.iter().filter(|d| d.starts_with("weft")) {
            assert_ne!(dep, "weft-testkit", "{name} depends on the test rig");
            if name == "weft-testkit" {
                continue;
            }
            let (from, to) = (row(name).unwrap(), row(dep).unwrap());
            assert!(to < from, "{name} (row {from}) depends on {dep} (row {to})");
        }
    }
}

#[test]
fn only_the_binaries_depend_on_the_agent_and_only_the_kernel_crate_on_netlink() {
    let deps = dependencies();
    for (name, list) in &deps {
        if list.iter().any(|d| d == "weft-agent") {
            assert_eq!(name, "weft", "{name} depends on the agent");
        }
        if list
            .iter()
            .any(|d| d == "rtnetlink" || d == "netlink-packet-route")
        {
            assert_eq!(name, "weft-kernel", "{name} talks netlink itself");
        }
    }
    assert!(deps["weft-plan"].iter().all(|d| !d.starts_with("weft")));
}
