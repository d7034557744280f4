//! The crate graph as `docs/design.md` draws it: every workspace dependency points to a
//! lower row, nothing but the binaries depends on the agent, no crate but weft-kernel
//! uses a netlink crate (the CNI plugin and the Docker driver reach the kernel only
//! through its dataplane), the decisions (model, plan, backends, policy) depend on no
//! store, and the test rig and the policy truth tables (weft-conformance) are
//! dev-dependencies only. Read from the manifests, every dependency table of each (`[dependencies]`, `[dev-dependencies]`,
//! `[build-dependencies]` and their `[target.…]` forms); no root needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The rows of the layering, lowest first: a crate may depend only on crates of lower rows.
const ROWS: &[&[&str]] = &[
    &["weft-store", "weft-plan", "weft-conformance"],
    &["weft-policy", "weft-tunnel", "weft-bgp"],
    &["weft-model"],
    &["weft-alloc", "weft-backends", "weft-kernel"],
    &["weft-cni", "weft-lab", "weft-docker", "weft-dns"],
    &["weft-agent", "weft-cli"],
    &["weft"],
];

/// Which table a dependency is listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Normal,
    Dev,
    Build,
}

/// Each crate's dependencies by name, with the table each is listed in.
fn manifests() -> BTreeMap<String, Vec<(String, Table)>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut name = String::new();
        let mut deps = Vec::new();
        let mut table: Option<Table> = None;
        let mut in_package = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                let section = line.trim_matches(|c| c == '[' || c == ']');
                // `target.'cfg(…)'.dependencies` and the like count as their table.
                let last = section.rsplit('.').next().unwrap_or(section);
                in_package = section == "package";
                table = match last {
                    "dependencies" => Some(Table::Normal),
                    "dev-dependencies" => Some(Table::Dev),
                    "build-dependencies" => Some(Table::Build),
                    _ => None,
                };
                // `[dependencies.foo]`: the table is the one before the name.
                if table.is_none() {
                    let mut parts = section.rsplitn(2, '.');
                    let (dep, parent) = (parts.next(), parts.next());
                    let parent_table = match parent.and_then(|p| p.rsplit('.').next()) {
                        Some("dependencies") => Some(Table::Normal),
                        Some("dev-dependencies") => Some(Table::Dev),
                        Some("build-dependencies") => Some(Table::Build),
                        _ => None,
                    };
                    if let (Some(t), Some(dep)) = (parent_table, dep) {
                        deps.push((dep.to_owned(), t));
                    }
                }
            } else if let Some((key, value)) = line.split_once('=') {
                let key = key.trim().trim_end_matches(".workspace").to_owned();
                if in_package && key == "name" {
                    name = value.trim().trim_matches('"').to_owned();
                } else if let Some(t) = table {
                    deps.push((key, t));
                }
            }
        }
        out.insert(name, deps);
    }
    out
}

/// Each crate's `[dependencies]` (not dev- or build-dependencies), by name.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    manifests()
        .into_iter()
        .map(|(name, deps)| {
            let normal = deps
                .into_iter()
                .filter(|(_, t)| *t == Table::Normal)
                .map(|(d, _)| d)
                .collect();
            (name, normal)
        })
        .collect()
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
fn the_test_rig_and_the_truth_tables_are_dev_dependencies_only() {
    for (name, deps) in manifests() {
        for (dep, table) in deps {
            // The rig and the policy truth tables are for tests only.
            if dep == "weft-testkit" || dep == "weft-conformance" {
                assert_eq!(table, Table::Dev, "{name} lists {dep} as {table:?}");
            }
        }
    }
}

#[test]
fn only_the_binaries_depend_on_the_agent_and_only_the_kernel_crate_on_netlink() {
    let all = manifests();
    let deps = dependencies();
    for (name, list) in &deps {
        if list.iter().any(|d| d == "weft-agent") {
            assert_eq!(name, "weft", "{name} depends on the agent");
        }
    }
    // Every table: a test speaking netlink itself would hide a missing dataplane call.
    for (name, list) in &all {
        for (dep, table) in list {
            let netlink = dep == "rtnetlink" || dep.starts_with("netlink");
            if netlink {
                assert_eq!(
                    name, "weft-kernel",
                    "{name} talks netlink itself ({dep} in its {table:?} dependencies)"
                );
            }
        }
    }
    assert!(deps["weft-plan"].iter().all(|d| !d.starts_with("weft")));
    // The reader reads: the kernel crate's netlink and the rig as a dev-dependency.
    assert!(all["weft-kernel"].iter().any(|(d, _)| d == "rtnetlink"));
    assert!(all["weft-alloc"]
        .iter()
        .any(|(d, t)| d == "weft-testkit" && *t == Table::Dev));
}

/// The crates that decide what a host should look like reach no store, directly or
/// through another crate: their inputs are plain values.
#[test]
fn the_decisions_depend_on_no_store() {
    let deps = dependencies();
    for decider in ["weft-model", "weft-plan", "weft-backends", "weft-policy"] {
        let mut seen = BTreeSet::new();
        let mut todo = vec![decider.to_owned()];
        while let Some(c) = todo.pop() {
            for d in deps.get(&c).into_iter().flatten() {
                if d.starts_with("weft") && seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        for store in ["weft-store", "weft-alloc"] {
            assert!(!seen.contains(store), "{decider} reaches {store}: {seen:?}");
        }
        for d in &deps[decider] {
            assert!(
                !["etcd-client", "rusqlite"].contains(&d.as_str()),
                "{decider} depends on {d}"
            );
        }
    }
}
