//! End to end, in network namespaces: a dual-stack lab (`--ip-family dual`: hosts on an
//! IPv4 and an IPv6 underlay, the cluster network in both families) with real `weftd`
//! agents. Judged by the kernel and the wire: every pair of containers pings over IPv4
//! and over IPv6 (the lab's matrix runs `ping` in the containers), the IPv6 packets
//! cross the underlay with the containers' own addresses (tcpdump), the store holds
//! flannel's dual-stack keys, IPv6 to the outside is masqueraded (the underlay
//! sees the host's address), an agent restart changes no route of either family, and
//! a bad IPv6 config is refused with the field named while every route stays.
//!
//! Needs root (namespaces, nftables); each lab is torn down by a guard.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;
use weft_testkit::require_root;

use common::intruder::assert_member_filter;
use common::*;

/// Weft's IPv6 routes on a host.
fn weft_routes6(lab: &Lab, host: &str) -> String {
    let out = Command::new("ip")
        .args(["-6", "-n", &lab.ns(host), "route", "show", "proto", "77"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ip -6 route: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A host's IPv6 subnet, from its subnet file (`FLANNEL_IPV6_SUBNET=fd00:…::1/64`).
fn subnet6_of(lab: &Lab, host: &str) -> String {
    let env =
        std::fs::read_to_string(format!("/run/weft-lab/{}/{host}/subnet.env", lab.name)).unwrap();
    let line = env
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_IPV6_SUBNET="))
        .unwrap_or_else(|| panic!("{host}'s subnet file has no IPv6 subnet:\n{env}"));
    let net: ipnet::Ipv6Net = line.parse().unwrap();
    net.trunc().to_string()
}

/// The IPv6 address of a lab container, from the lab's state (the plugin's ADD result).
fn container6(lab: &Lab, i: u32) -> String {
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/weft-lab/{}/lab.json", lab.name)).unwrap(),
    )
    .unwrap();
    state["containers6"][i.to_string()]
        .as_str()
        .unwrap_or_else(|| panic!("no IPv6 address for c{i}: {state}"))
        .to_owned()
}

#[test]
fn host_gw_dual_stack_pings_both_families_and_keeps_routes() {
    require_root!("lab_dual_stack::host_gw_dual_stack_pings_both_families_and_keeps_routes");
    require_tool_here("tcpdump");
    let lab = Lab::up_with(
        "ds",
        "embedded",
        3,
        &["--backend", "host-gw", "--ip-family", "dual"],
    );
    // The container's IPv6 address as the kernel lists it: added without duplicate
    // address detection, so never tentative (docs/ipv6.md says so).
    let held = text(
        &lab.exec(
            "c1",
            &["ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"],
        )
        .stdout,
    );
    assert!(
        held.contains(&container6(&lab, 1))
            && held.contains("nodad")
            && !held.contains("tentative"),
        "{held}"
    );
    // Both matrices: `lab ping` fails if any pair of either family does not answer.
    let out = lab.ok(lab.lab(&["ping"], &["--wait", "5"]), "ping matrix");
    assert!(
        out.matches("6 of 6 pairs reachable").count() == 2 && out.contains("fd00:10:244:"),
        "an IPv4 and an IPv6 matrix:\n{out}"
    );

    // Each host routes to both peers' IPv6 subnets via their IPv6 underlay addresses.
    for (h, peers) in [("h1", [2, 3]), ("h2", [1, 3]), ("h3", [1, 2])] {
        let routes = weft_routes6(&lab, h);
        for p in peers {
            let want = format!(
                "{} via fd00:192:168:77::{p} dev eth0",
                subnet6_of(&lab, &format!("h{p}"))
            );
            assert!(routes.contains(&want), "{h} lacks {want:?}:\n{routes}");
        }
    }

    // The store holds one flannel dual-stack key per node: `<v4>-<len>&<v6>-<len>`.
    let keys = lab.ok(
        lab.store_cmd(&["store", "ls", "/coreos.com/network/subnets/"]),
        "store ls",
    );
    for h in ["h1", "h2", "h3"] {
        let key = format!(
            "{}&{}",
            lab.subnet_of(h).replace('/', "-"),
            subnet6_of(&lab, h).replace('/', "-")
        );
        assert!(keys.contains(&key), "no key {key}:\n{keys}");
    }

    // diagnose checks both families' forwarding and finds nothing wrong.
    let d = lab.ok(lab.store_cmd(&["diagnose", "--host", "h1"]), "diagnose");
    assert!(
        d.contains("net.ipv6.conf.all.forwarding = 1") && d.contains("0 problems"),
        "{d}"
    );

    // `ipam show` lists each container's IPv6 address beside its IPv4 one: the address
    // the plugin's ADD result gave it.
    let ipam = lab.ok(
        lab.ctl(&["--lab", &lab.name, "ipam", "show", "-o", "json"]),
        "ipam show",
    );
    let ipam: serde_json::Value = serde_json::from_str(&ipam).unwrap();
    let listed: Vec<&str> = ipam
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["ipv6_address"].as_str())
        .collect();
    for i in 1..=3 {
        assert!(
            listed.contains(&container6(&lab, i).as_str()),
            "c{i}'s IPv6 address in {ipam}"
        );
    }

    // On the wire: c1's IPv6 packets reach h2 with c1's own address (no NAT between
    // containers), as tcpdump on h2's underlay interface sees them.
    let (c1, c2) = (container6(&lab, 1), container6(&lab, 2));
    let filter = format!("icmp6 and src host {c1}");
    let seen = lab.capture_while_pinging("h2", &["-i", "eth0", &filter], "c1", &c2);
    assert!(
        seen.contains(&format!("{c1} > {c2}")),
        "c1's IPv6 source kept on the underlay: {seen}"
    );

    // A Weft IPv6 route deleted by hand is back within a second (the agent hears the
    // kernel's IPv6 route events, not only the resync's).
    let gone = subnet6_of(&lab, "h2");
    assert!(lab
        .exec("h1", &["ip", "-6", "route", "del", &gone])
        .status
        .success());
    lab.wait_until(
        "h1's IPv6 route to h2 to be repaired",
        Duration::from_secs(2),
        || weft_routes6(&lab, "h1").contains(&gone),
    );

    // Out of the cluster over IPv6: the underlay's gateway has no route back to the
    // containers' ULA network, so its answer arrives only because the agent
    // masquerades IPv6 leaving the cluster network (`--ipv6-masq auto`: ULA, with
    // --ip-masq); tcpdump on the underlay sees h1's address, not c1's.
    assert!(
        lab.ping_from("c1", "fd00:192:168:77::fe", 2),
        "c1 reaches the underlay gateway over IPv6 (masqueraded)"
    );
    let seen = lab.capture_while_pinging(
        "ul",
        &["-i", "br0", "icmp6 and dst host fd00:192:168:77::fe"],
        "c1",
        "fd00:192:168:77::fe",
    );
    assert!(
        seen.contains("fd00:192:168:77::1 > fd00:192:168:77::fe"),
        "masqueraded to h1's IPv6 address: {seen}"
    );

    // An agent restart changes no route of either family.
    let (before4, before6) = (lab.weft_routes("h1"), weft_routes6(&lab, "h1"));
    let mut monitor = Command::new("ip")
        .args(["-n", &lab.ns("h1"), "monitor", "route"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(lab.lab(&["agent"], &["h1", "restart"]), "agent restart");
    std::thread::sleep(Duration::from_secs(1));
    monitor.kill().unwrap();
    let events = text(&monitor.wait_with_output().unwrap().stdout);
    assert_eq!(events, "", "route events on h1 during its agent's restart");
    assert_eq!(
        (lab.weft_routes("h1"), weft_routes6(&lab, "h1")),
        (before4, before6)
    );
    lab.ping_all(5);

    // Bad input: weftctl refuses an impossible IPv6 network naming the field; a config
    // with the families swapped, written straight into the store, is rejected by every
    // agent and no route of either family goes.
    let out = lab.store_cmd(&[
        "network",
        "init",
        "--network",
        "10.244.0.0/16",
        "--ipv6-network",
        "fd00::/129",
        "--force",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("IPv6Network \"fd00::/129\""),
        "{}",
        text(&out.stderr)
    );
    let routes6 = weft_routes6(&lab, "h2");
    lab.ok(
        lab.store_cmd(&[
            "store",
            "put",
            "/coreos.com/network/config",
            r#"{"Network":"fd00:10:244::/56","EnableIPv6":true,"IPv6Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
        ]),
        "store put",
    );
    lab.wait_until(
        "h2 to reject the mixed-up config",
        Duration::from_secs(10),
        || {
            let log = lab.log("h2");
            log.contains("config rejected")
                && log.contains("is an IPv4 CIDR: it belongs in Network")
        },
    );
    assert_eq!(weft_routes6(&lab, "h2"), routes6, "IPv6 routes kept");
    lab.ping_all(5);
}

/// vxlan in a dual-stack lab, containers attached routed (Calico's layout): every host
/// has a public IPv6 address, so each also has flannel's second device over the IPv6
/// underlay (`weft-v6.1`, its VTEP MAC published as `BackendV6Data`), and the IPv6
/// subnets go through it; each container reaches the others through its link-local
/// IPv6 gateway. Judged on the wire: tcpdump on h2's underlay interface decodes VXLAN
/// datagrams between the hosts' IPv6 addresses that carry c1's IPv6 ping to c2.
#[test]
fn vxlan_carries_ipv6_over_the_ipv6_underlay() {
    require_root!("lab_dual_stack::vxlan_carries_ipv6_over_the_ipv6_underlay");
    require_tool_here("tcpdump");
    let lab = Lab::up_with(
        "dv",
        "embedded",
        3,
        &[
            "--backend",
            "vxlan",
            "--ip-family",
            "dual",
            "--cni-mode",
            "routed",
        ],
    );
    let route = text(
        &lab.exec("c1", &["ip", "-6", "route", "show", "default"])
            .stdout,
    );
    assert!(
        route.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "c1's IPv6 default route through the link-local gateway: {route}"
    );
    // The host side holds that gateway from its creation, never tentative: the kernel
    // lists it on h1's veth toward c1 (the one its /128 route names) with `nodad`.
    let to_c1 = text(
        &lab.exec("h1", &["ip", "-6", "route", "show", &container6(&lab, 1)])
            .stdout,
    );
    let veth = to_c1
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_else(|| panic!("no route to c1 on h1: {to_c1}"))
        .to_owned();
    let gw = text(
        &lab.exec("h1", &["ip", "-6", "addr", "show", "dev", &veth])
            .stdout,
    );
    assert!(
        gw.contains("fe80::ecee:eeff:feee:eeee/64")
            && gw.contains("nodad")
            && !gw.contains("tentative"),
        "{veth}: {gw}"
    );
    let out = lab.ok(lab.lab(&["ping"], &["--wait", "5"]), "ping matrix");
    assert_eq!(out.matches("6 of 6 pairs reachable").count(), 2, "{out}");
    for h in ["h1", "h2", "h3"] {
        let routes = weft_routes6(&lab, h);
        assert_eq!(
            routes
                .lines()
                .filter(|l| l.contains("dev weft-v6.1 ") && l.contains("onlink"))
                .count(),
            2,
            "{h}: both peers' IPv6 subnets through weft-v6.1:\n{routes}"
        );
        let dev = text(
            &lab.exec(h, &["ip", "-d", "link", "show", "weft-v6.1"])
                .stdout,
        );
        assert!(
            dev.contains(&format!("local fd00:192:168:77::{}", &h[1..]))
                && dev.contains("mtu 1430"),
            "{h}'s weft-v6.1 on its IPv6 address, 20 bytes below weft.1: {dev}"
        );
    }
    let leases = lab.ok(
        lab.store_cmd(&["store", "ls", "/coreos.com/network/subnets/", "-o", "json"]),
        "store ls",
    );
    assert_eq!(
        leases.matches("BackendV6Data").count(),
        3,
        "every lease names its IPv6 VTEP: {leases}"
    );
    let (c1, c2) = (container6(&lab, 1), container6(&lab, 2));
    let seen = lab.capture_while_pinging(
        "h2",
        &["-T", "vxlan", "-i", "eth0", "udp port 8472"],
        "c1",
        &c2,
    );
    assert!(
        seen.contains("IP6 fd00:192:168:77::1.")
            && seen.contains(&format!("IP6 {c1} > {c2}: ICMP6")),
        "c1's IPv6 packet inside a VXLAN datagram from h1's IPv6 address: {seen}"
    );

    // The IPv6 underlay's VXLAN port takes datagrams from members only: a stranger on
    // the underlay sending to h1's IPv6 address is dropped and counted, a member not.
    assert_member_filter(&lab, "ip6", "fd00:192:168:77::c8/64", "fd00:192:168:77::1");

    let d = lab.ok(lab.store_cmd(&["diagnose", "--host", "h2"]), "diagnose");
    assert!(
        d.contains("neighbour6") && d.contains("fdb6") && d.contains("0 problems"),
        "diagnose judges the IPv6 device's entries too: {d}"
    );

    let before = weft_routes6(&lab, "h3");
    lab.ok(lab.lab(&["agent"], &["h3", "restart"]), "agent restart");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        weft_routes6(&lab, "h3"),
        before,
        "IPv6 routes kept across a restart"
    );
    // The device deleted by hand is back, and with it the routes through it.
    assert!(lab
        .exec("h3", &["ip", "link", "del", "weft-v6.1"])
        .status
        .success());
    lab.wait_until(
        "h3's weft-v6.1 to be repaired",
        Duration::from_secs(10),
        || weft_routes6(&lab, "h3") == before,
    );
    lab.ping_all(5);
}

/// tcpdump is in scripts/setup; as root a missing one fails with what to install.
fn require_tool_here(tool: &str) {
    common::docker::require_tool("lab_dual_stack", tool, tool);
}
