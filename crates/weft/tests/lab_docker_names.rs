//! Names across hosts on Docker networks, end to end: a real dockerd per lab host, each
//! pointed (`dockerd --dns`) at its agent's resolver (`weftd --dns-listen`). Judged by
//! what busybox's `nslookup`, `ping` and `wget` inside containers get through Docker's
//! embedded DNS, never by Weft's own records.
//!
//! - `names_and_aliases_across_hosts`: a container on `blue` (overlay) resolves the name,
//!   the `--network-alias` and `NAME.blue` of a container on another host, and pings it
//!   by name; a name on `red` (routed) is NXDOMAIN from `blue` and the other way round;
//!   a container on both networks resolves the names of both. The name follows its
//!   container: gone once it is removed, back with the new address once a container of
//!   that name starts on another host.
//! - `compose_services_on_two_hosts`: Debian's docker-compose starts a project's `web`
//!   service on h1 and its `client` service on h2, both joined to the external network
//!   `blue`; the client fetches from `http://web/` by its service name.
//!
//! Needs root, dockerd and docker-compose; skipped with one line otherwise.

mod common;

use std::time::Duration;

use weft_testkit::require_root;

use common::docker::*;
use common::*;

/// What `nslookup NAME` prints inside `ctr` on `h` (Docker's embedded DNS, then Weft's).
fn nslookup(lab: &Lab, h: &str, ctr: &str, name: &str) -> String {
    let out = docker(lab, h, &["exec", ctr, "nslookup", name]);
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// The address `nslookup` gives for `name`, if it gives one.
fn resolved(lab: &Lab, h: &str, ctr: &str, name: &str) -> Option<String> {
    let out = nslookup(lab, h, ctr, name);
    // "Name:\ta1\nAddress: 10.50.0.2": the answer section (the server's own address is
    // printed as "Address:\t127.0.0.11:53", with a port).
    out.lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .find_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_owned())
}

fn assert_resolves(lab: &Lab, h: &str, ctr: &str, name: &str, to: &str) {
    lab.wait_until(
        &format!("{ctr} on {h} to resolve {name} to {to}"),
        Duration::from_secs(5),
        || resolved(lab, h, ctr, name).as_deref() == Some(to),
    );
}

fn assert_nxdomain(lab: &Lab, h: &str, ctr: &str, name: &str) {
    let out = nslookup(lab, h, ctr, name);
    assert!(
        out.contains("NXDOMAIN") && resolved(lab, h, ctr, name).is_none(),
        "{ctr} on {h} must not resolve {name}:\n{out}"
    );
}

#[test]
fn names_and_aliases_across_hosts() {
    require_root!("names_and_aliases_across_hosts");
    require_dockerd("names_and_aliases_across_hosts");
    let lab = Lab::up_with("dns", "embedded", 3, &["--docker"]);
    create_network(
        &lab,
        "h1",
        &["--subnet", "10.50.0.0/24"],
        "blue",
        &["h2", "h3"],
    );
    create_network(
        &lab,
        "h1",
        &["--subnet", "10.60.0.0/24", "-o", "mode=routed"],
        "red",
        &["h2", "h3"],
    );
    run(&lab, "h1", "a1", "blue", &["--network-alias", "web"]);
    run(&lab, "h2", "b2", "blue", &[]);
    run(&lab, "h3", "r3", "red", &[]);
    run(&lab, "h3", "d3", "red", &[]);
    docker_ok(&lab, "h3", &["network", "connect", "blue", "d3"]);
    let a1 = addr(&lab, "h1", "a1", "blue");
    let r3 = addr(&lab, "h3", "r3", "red");

    // Across hosts: the name, the alias and NAME.NETWORK; ping by name.
    assert_resolves(&lab, "h2", "b2", "a1", &a1);
    assert_resolves(&lab, "h2", "b2", "web", &a1);
    assert_resolves(&lab, "h2", "b2", "a1.blue", &a1);
    assert_reaches(&lab, "h2", "b2", "a1");
    // Not across networks, either way.
    assert_nxdomain(&lab, "h2", "b2", "r3");
    assert_nxdomain(&lab, "h3", "r3", "a1");
    assert_nxdomain(&lab, "h3", "r3", "web");
    // A container on both sees both, routed and overlay alike.
    assert_resolves(&lab, "h3", "d3", "a1", &a1);
    assert_resolves(&lab, "h3", "d3", "r3", &r3);
    assert_reaches(&lab, "h3", "d3", "a1");

    // The name follows its container: removed, then started again on another host.
    docker_ok(&lab, "h1", &["rm", "-f", "a1"]);
    lab.wait_until("a1 to stop resolving", Duration::from_secs(5), || {
        resolved(&lab, "h2", "b2", "a1").is_none()
    });
    run(&lab, "h3", "a1", "blue", &["--ip", "10.50.0.99"]);
    assert_resolves(&lab, "h2", "b2", "a1", "10.50.0.99");
    assert_reaches(&lab, "h2", "b2", "a1");
}

/// A Compose file whose services join the external network `blue`.
const COMPOSE: &str = r#"version: "3.7"
services:
  web:
    image: weft/busybox
    command: ["sh", "-c", "mkdir -p /www && echo served-by-web > /www/index.html && exec httpd -f -p 80 -h /www"]
  client:
    image: weft/busybox
    command: ["sleep", "3600"]
networks:
  default:
    external: true
    name: blue
"#;

#[test]
fn compose_services_on_two_hosts() {
    require_root!("compose_services_on_two_hosts");
    require_dockerd("compose_services_on_two_hosts");
    require_tool(
        "compose_services_on_two_hosts",
        "docker-compose",
        "Debian's docker-compose",
    );
    let lab = Lab::up_with("dco", "embedded", 2, &["--docker"]);
    create_network(&lab, "h1", &["--subnet", "10.50.0.0/24"], "blue", &["h2"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, COMPOSE).unwrap();
    let file = file.display().to_string();
    let compose = |h: &str, args: &[&str]| {
        let mut all = vec![h, "docker-compose", "-f", &file, "-p", "shop"];
        all.extend_from_slice(args);
        lab.ok(
            lab.lab(&["exec"], &all),
            &format!("{h}: docker-compose {args:?}"),
        )
    };
    compose("h1", &["up", "-d", "web"]);
    compose("h2", &["up", "-d", "--no-deps", "client"]);
    let fetched = || {
        let out = docker(
            &lab,
            "h2",
            &[
                "exec",
                "shop_client_1",
                "timeout",
                "3",
                "wget",
                "-q",
                "-O-",
                "http://web/",
            ],
        );
        text(&out.stdout)
    };
    lab.wait_until(
        "the client on h2 to fetch from http://web/ on h1",
        Duration::from_secs(10),
        || fetched().contains("served-by-web"),
    );
    compose("h2", &["down"]);
    compose("h1", &["down"]);
    // `down` leaves the external network alone, on both hosts.
    for h in ["h1", "h2"] {
        assert!(networks_of(&lab, h).contains("blue weft"), "{h}");
    }
}
