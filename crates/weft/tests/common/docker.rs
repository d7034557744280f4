//! Docker on the lab, as a user drives it: `docker` against a host's daemon, containers
//! and networks made the usual way, reachability from inside containers.

use std::process::{Command, Output};
use std::time::Duration;

use super::Lab;

/// Fails `test` (a root test: call it after `require_root!`, as nothing is skipped as
/// root) when `tool` is missing, naming the package that has it (scripts/setup
/// installs each).
pub fn require_tool(test: &str, tool: &str, package: &str) {
    let ok = Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{test}: {tool} missing: install {package} (scripts/setup does)"
    );
}

pub fn require_dockerd(test: &str) {
    require_tool(test, "dockerd", "Debian's docker.io");
}

/// `docker ARGS` against host `h`'s daemon.
pub fn docker(lab: &Lab, h: &str, args: &[&str]) -> Output {
    let mut all = vec![h, "docker"];
    all.extend_from_slice(args);
    lab.lab(&["exec"], &all)
}

pub fn docker_ok(lab: &Lab, h: &str, args: &[&str]) -> String {
    lab.ok(
        docker(lab, h, args),
        &format!("{h}: docker {}", args.join(" ")),
    )
}

pub fn run(lab: &Lab, h: &str, name: &str, net: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--net", net];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["weft/busybox", "sleep", "3600"]);
    docker_ok(lab, h, &args);
}

pub fn addr(lab: &Lab, h: &str, ctr: &str, net: &str) -> String {
    let f = format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}");
    docker_ok(lab, h, &["inspect", "-f", &f, ctr])
        .trim()
        .to_owned()
}

/// Whether `ctr` on host `h` gets an answer from `to` (one try, 1 s).
pub fn reaches(lab: &Lab, h: &str, ctr: &str, to: &str) -> bool {
    docker(lab, h, &["exec", ctr, "ping", "-c", "1", "-W", "1", to])
        .status
        .success()
}

/// `ctr` reaches `to`, within a few seconds (the peers' entries follow the store).
pub fn assert_reaches(lab: &Lab, h: &str, ctr: &str, to: &str) {
    lab.wait_until(
        &format!("{ctr} on {h} to reach {to}"),
        Duration::from_secs(10),
        || reaches(lab, h, ctr, to),
    );
}

/// `ctr` never reaches `to` (two tries).
pub fn assert_blocked(lab: &Lab, h: &str, ctr: &str, to: &str) {
    for _ in 0..2 {
        assert!(
            !reaches(lab, h, ctr, to),
            "{ctr} on {h} must not reach {to}"
        );
    }
}

/// `docker network create -d weft --ipam-driver weft ARGS NAME` on `h`, then waits until
/// every host in `others` lists it.
pub fn create_network(lab: &Lab, h: &str, args: &[&str], name: &str, others: &[&str]) {
    let mut all = vec!["network", "create", "-d", "weft", "--ipam-driver", "weft"];
    all.extend_from_slice(args);
    all.push(name);
    docker_ok(lab, h, &all);
    for o in others {
        lab.wait_until(
            &format!("{o} to list {name}"),
            Duration::from_secs(10),
            || networks_of(lab, o).contains(&format!("{name} weft")),
        );
    }
}

pub fn networks_of(lab: &Lab, h: &str) -> String {
    docker_ok(
        lab,
        h,
        &["network", "ls", "--format", "{{.Name}} {{.Driver}}"],
    )
}

pub fn link_exists(lab: &Lab, h: &str, dev: &str) -> bool {
    lab.exec(h, &["ip", "link", "show", dev]).status.success()
}
