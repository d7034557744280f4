//! End to end, in network namespaces: the vxlan backend in a lab built by `weftctl lab`.
//!
//! - 3 hosts on one segment, all through VXLAN, every pair pings (etcd store);
//!   `weftctl diagnose` passes on each, then names every piece of drift made by hand
//!   while an agent is stopped (route, neighbour, FDB entry, MTU, firewall, agent),
//!   and passes again once the agent is back;
//! - 4 hosts on 2 underlay subnets in cross-subnet mode: same-subnet pairs are routed
//!   directly, cross-subnet pairs through VXLAN (routes and device counters prove it);
//!   the advertised MTU passes with DF and one byte more gets "fragmentation needed";
//!   a route, a neighbour entry and an FDB entry deleted by hand are each back within a
//!   second (woken by the kernel's event), and the VXLAN device deleted by hand comes back; an agent
//!   restart changes no route, neighbour, FDB entry or link; a peer's public IP changes
//!   and traffic resumes with no stale FDB entry; a VXLAN packet from a non-member is dropped.

mod common;

use std::time::{Duration, Instant};
use weft_testkit::require_root;

use common::intruder::assert_member_filter;
use common::*;

#[test]
fn vxlan_three_hosts_on_etcd() {
    require_root!("vxlan_three_hosts_on_etcd");
    // Containers attached by the CNI plugin in routed mode (bridge mode: the other tests).
    let lab = Lab::up_with(
        "w",
        "etcd",
        3,
        &[
            "--backend",
            "vxlan",
            "--cni-mode",
            "routed",
            "--agent-arg=--vxlan-tx-checksum-offload=false",
        ],
    );
    lab.ping_all(0);
    let offload = text(&lab.exec("h1", &["ethtool", "-k", "weft.1"]).stdout);
    assert!(
        offload.contains("tx-checksumming: off"),
        "TX checksum offload turned off:\n{offload}"
    );
    let c1_routes = text(&lab.exec("c1", &["ip", "route"]).stdout);
    assert!(
        c1_routes.contains("default via 169.254.1.1"),
        "routed mode inside the container:\n{c1_routes}"
    );
    for h in ["h1", "h2", "h3"] {
        let routes = lab.weft_routes(h);
        assert_eq!(
            routes
                .lines()
                .filter(|l| l.contains("dev weft.1 onlink"))
                .count(),
            2,
            "{h}:\n{routes}"
        );
        let fdb = text(
            &lab.exec(h, &["bridge", "fdb", "show", "dev", "weft.1"])
                .stdout,
        );
        assert_eq!(
            fdb.lines().filter(|l| l.contains("permanent")).count(),
            2,
            "{h} fdb:\n{fdb}"
        );
    }
    let env = std::fs::read_to_string(format!("/run/weft-lab/{}/h1/subnet.env", lab.name)).unwrap();
    assert!(
        env.contains("FLANNEL_MTU=1450"),
        "subnet file carries the VXLAN MTU:\n{env}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&lab.store_cmd(&["leases", "-o", "json"]).stdout).unwrap();
    for l in json["leases"].as_array().unwrap() {
        assert_eq!(l["backend_data"]["VNI"], 1);
        assert!(
            l["backend_data"]["VtepMAC"].as_str().unwrap().len() == 17,
            "{l}"
        );
    }

    // `weftctl diagnose` finds every host as planned...
    let healthy = lab.store_cmd(&["diagnose"]);
    let said = text(&healthy.stdout);
    assert!(healthy.status.success(), "{said}{}", text(&healthy.stderr));
    assert_eq!(said.matches("0 problems, 0 warnings").count(), 3, "{said}");
    for line in [
        "device       weft.1 is up, MTU 1450",
        "routes       2 as planned",
        "fdb          2 entries as planned",
        "agent        /healthz: ok",
    ] {
        assert_eq!(
            said.matches(line).count(),
            3,
            "{line}:
{said}"
        );
    }
    // ...names each piece of drift while h3's agent is away, changing nothing itself...
    lab.ok(lab.lab(&["agent"], &["h3", "stop"]), "agent stop");
    let (s1, s2) = (lab.subnet_of("h1"), lab.subnet_of("h2"));
    let gw1 = s1.split('/').next().unwrap().to_owned();
    let fdb = text(
        &lab.exec("h3", &["bridge", "fdb", "show", "dev", "weft.1"])
            .stdout,
    );
    let mac = fdb
        .lines()
        .find(|l| l.contains("dst 192.168.77.2"))
        .and_then(|l| l.split_whitespace().next())
        .expect("h2's FDB entry")
        .to_owned();
    for cmd in [
        vec!["ip", "route", "del", s1.as_str()],
        vec!["ip", "neigh", "del", gw1.as_str(), "dev", "weft.1"],
        vec!["bridge", "fdb", "del", mac.as_str(), "dev", "weft.1"],
        vec!["ip", "link", "set", "weft.1", "mtu", "1400"],
        vec!["nft", "delete", "table", "ip", "weft"],
    ] {
        let out = lab.exec("h3", &cmd);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    }
    let sick = lab.store_cmd(&["diagnose", "--host", "h3"]);
    let said = text(&sick.stdout);
    assert_eq!(sick.status.code(), Some(1), "{said}");
    for line in [
        "FAIL  agent        no agent answers on 127.0.0.1:9462".to_owned(),
        "FAIL  device       weft.1 has MTU 1400, the backend wants 1450".to_owned(),
        format!("FAIL  route        missing: {s1} via {gw1} dev weft.1 onlink"),
        format!("FAIL  neighbour    missing: {gw1} lladdr "),
        format!("FAIL  fdb          missing: {mac} dst 192.168.77.2"),
        "FAIL  firewall     no nftables table ip weft".to_owned(),
        "ok    lease        ".to_owned(),
        "6 problems, 0 warnings".to_owned(),
    ] {
        assert!(said.contains(&line), "{line}:\n{said}");
    }
    let json = lab.store_cmd(&["diagnose", "--host", "h3", "-o", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (v["node"].as_str(), v["problems"].as_u64()),
        (Some("192.168.77.3"), Some(6)),
        "{v}"
    );
    assert!(
        !lab.weft_routes("h3").contains(&s1),
        "diagnose changed nothing"
    );
    assert!(lab.weft_routes("h3").contains(&s2));
    // ...and finds nothing once the agent is back and has repaired it all.
    lab.ok(lab.lab(&["agent"], &["h3", "start"]), "agent start");
    lab.wait_until("h3 to diagnose clean", Duration::from_secs(5), || {
        lab.store_cmd(&["diagnose", "--host", "h3"])
            .status
            .success()
    });
}

#[test]
fn vxlan_cross_subnet_healing_and_membership() {
    require_root!("vxlan_cross_subnet_healing_and_membership");
    // h1, h3 on 192.168.77.0/24; h2, h4 on 192.168.78.0/24.
    let lab = Lab::up_with(
        "v",
        "embedded",
        4,
        &["--backend", "vxlan", "--subnets", "2", "--direct-routing"],
    );
    lab.ping_all(0);
    let (s2, s3) = (lab.subnet_of("h2"), lab.subnet_of("h3"));
    let h1_routes = lab.weft_routes("h1");
    assert!(
        h1_routes.contains(&format!("{s3} via 192.168.77.3 dev eth0")),
        "same subnet: direct\n{h1_routes}"
    );
    assert!(
        h1_routes.contains(&format!(
            "{s2} via {} dev weft.1 onlink",
            s2.split('/').next().unwrap()
        )),
        "cross subnet: VXLAN\n{h1_routes}"
    );

    // Device counters: traffic to h3 bypasses VXLAN, traffic to h2 uses it.
    let (c2, c3) = (container_addr(&s2), container_addr(&s3));
    let before = lab.vxlan_counter("h1", "tx_packets");
    assert!(lab.ping_from("c1", &c3, 10));
    let after_direct = lab.vxlan_counter("h1", "tx_packets");
    assert!(
        after_direct - before < 3,
        "direct path used VXLAN: {before} -> {after_direct}"
    );
    assert!(lab.ping_from("c1", &c2, 10));
    assert!(
        lab.vxlan_counter("h1", "tx_packets") >= after_direct + 10,
        "cross-subnet traffic goes through weft.1"
    );

    // MTU truth: 1450 with DF passes; 1451 from a container that believes in 1500 gets
    // "fragmentation needed" from its host instead of vanishing.
    let ok = lab.exec(
        "c1",
        &["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", &c2],
    );
    assert!(
        ok.status.success(),
        "a full 1450-byte packet passes: {}",
        text(&ok.stdout)
    );
    // The container side, its bridge port and the bridge all believe in 1500.
    let port = text(
        &lab.exec("h1", &["ip", "-o", "link", "show", "master", "weftbr0"])
            .stdout,
    );
    let port = port
        .split(": ")
        .nth(1)
        .and_then(|n| n.split('@').next())
        .expect("c1's bridge port")
        .to_owned();
    let widen = [("c1", "eth0"), ("h1", port.as_str()), ("h1", "weftbr0")];
    for (node, dev) in widen {
        assert!(
            lab.exec(node, &["ip", "link", "set", dev, "mtu", "1500"])
                .status
                .success(),
            "{node} {dev}"
        );
    }
    let big = lab.exec(
        "c1",
        &["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1423", &c2],
    );
    let said = text(&big.stdout) + &text(&big.stderr);
    assert!(
        said.contains("Frag needed") && said.contains("mtu = 1450"),
        "one byte more is refused: {said}"
    );
    for (node, dev) in widen {
        lab.exec(node, &["ip", "link", "set", dev, "mtu", "1450"]);
    }

    // A Weft route deleted by hand is back within a second.
    assert!(lab
        .exec("h1", &["ip", "route", "del", &s2])
        .status
        .success());
    let t = Instant::now();
    lab.wait_until(
        "the deleted route to return",
        Duration::from_secs(1),
        || lab.weft_routes("h1").contains(&s2),
    );
    eprintln!("route repaired in {:?}", t.elapsed());
    // So are a neighbour entry and an FDB entry on weft.1: the kernel's event wakes
    // the repair, not the periodic resync (30 s).
    let neighbours = text(
        &lab.exec("h1", &["ip", "neigh", "show", "dev", "weft.1"])
            .stdout,
    );
    let entry = neighbours
        .lines()
        .find(|l| l.contains("PERMANENT"))
        .unwrap_or_else(|| panic!("no permanent neighbour on weft.1: {neighbours}"))
        .to_owned();
    let neigh_ip = entry.split_whitespace().next().unwrap().to_owned();
    assert!(lab
        .exec("h1", &["ip", "neigh", "del", &neigh_ip, "dev", "weft.1"])
        .status
        .success());
    let t = Instant::now();
    lab.wait_until(
        "the deleted neighbour entry to return",
        Duration::from_secs(1),
        || {
            text(
                &lab.exec("h1", &["ip", "neigh", "show", "dev", "weft.1"])
                    .stdout,
            )
            .contains(&entry)
        },
    );
    eprintln!("neighbour repaired in {:?}", t.elapsed());
    let fdb = text(
        &lab.exec("h1", &["bridge", "fdb", "show", "dev", "weft.1"])
            .stdout,
    );
    let line = fdb
        .lines()
        .find(|l| l.contains(" dst "))
        .unwrap_or_else(|| panic!("no FDB entry on weft.1: {fdb}"))
        .to_owned();
    let words: Vec<&str> = line.split_whitespace().collect();
    let (mac, dst) = (
        words[0],
        words[words.iter().position(|w| *w == "dst").unwrap() + 1],
    );
    assert!(lab
        .exec(
            "h1",
            &["bridge", "fdb", "del", mac, "dev", "weft.1", "dst", dst]
        )
        .status
        .success());
    let t = Instant::now();
    lab.wait_until(
        "the deleted FDB entry to return",
        Duration::from_secs(1),
        || {
            text(
                &lab.exec("h1", &["bridge", "fdb", "show", "dev", "weft.1"])
                    .stdout,
            )
            .lines()
            .any(|l| l.starts_with(mac) && l.contains(dst))
        },
    );
    eprintln!("FDB entry repaired in {:?}", t.elapsed());
    // The VXLAN device deleted by hand comes back, with its entries, and traffic flows.
    assert!(lab
        .exec("h1", &["ip", "link", "del", "weft.1"])
        .status
        .success());
    let t = Instant::now();
    lab.wait_until(
        "weft.1 and its route to return",
        Duration::from_secs(1),
        || lab.weft_routes("h1").contains(&s2),
    );
    eprintln!("VXLAN device and its route repaired in {:?}", t.elapsed());
    assert!(lab.log("h1").contains("repaired overlay device"));
    // The agent says so on /metrics, and stays healthy.
    assert!(
        lab.metric("h1", "weft_repairs_total") >= 2,
        "route and device repairs counted"
    );
    assert_eq!(lab.metric("h1", "weft_routes"), 3);
    assert_eq!(lab.agent_http("h1", "/healthz"), (200, "ok".to_owned()));
    assert_eq!(lab.agent_http("h1", "/nope").0, 404);
    lab.ping_all(5);

    // An interface flap takes the routes via eth0 with it; they come back when it is up.
    let s3_route = format!("{s3} via 192.168.77.3 dev eth0");
    assert!(lab
        .exec("h1", &["ip", "link", "set", "eth0", "down"])
        .status
        .success());
    lab.wait_until(
        "the kernel to drop routes via eth0",
        Duration::from_secs(2),
        || !lab.weft_routes("h1").contains(&s3_route),
    );
    assert!(lab
        .exec("h1", &["ip", "link", "set", "eth0", "up"])
        .status
        .success());
    assert!(lab
        .exec(
            "h1",
            &["ip", "route", "replace", "default", "via", "192.168.77.254"]
        )
        .status
        .success());
    lab.wait_until(
        "routes via eth0 to return after the flap",
        Duration::from_secs(3),
        || {
            let r = lab.weft_routes("h1");
            r.contains(&s3_route) && r.contains("dev weft.1")
        },
    );
    lab.ping_all(10);

    // An agent restart changes nothing Weft owns in the kernel.
    let watch = KernelWatch::start(&lab, "h2");
    lab.ok(lab.lab(&["agent"], &["h2", "restart"]), "agent restart");
    std::thread::sleep(Duration::from_secs(1));
    let changes = watch.stop();
    assert!(
        changes.is_empty(),
        "kernel changes during h2's restart: {changes:#?}"
    );

    // h4's public IP changes: it keeps its subnet, peers follow, no stale FDB entry.
    let s4 = lab.subnet_of("h4");
    let ip = lab.exec("h4", &["sh", "-c", "ip addr flush dev eth0 && ip addr add 192.168.78.44/24 dev eth0 && ip route replace default via 192.168.78.254"]);
    assert!(ip.status.success(), "{}", text(&ip.stderr));
    lab.wait_until(
        "h1's FDB to follow h4's new address",
        Duration::from_secs(5),
        || {
            let fdb = text(
                &lab.exec("h1", &["bridge", "fdb", "show", "dev", "weft.1"])
                    .stdout,
            );
            fdb.contains("dst 192.168.78.44") && !fdb.contains("dst 192.168.78.4 ")
        },
    );
    lab.wait_until(
        "h2's direct route to follow",
        Duration::from_secs(5),
        || {
            lab.weft_routes("h2")
                .contains(&format!("{s4} via 192.168.78.44 dev eth0"))
        },
    );
    assert_eq!(
        lab.subnet_of("h4"),
        s4,
        "subnet kept across the address change"
    );
    let fdb = text(
        &lab.exec("h1", &["bridge", "fdb", "show", "dev", "weft.1"])
            .stdout,
    );
    assert_eq!(
        fdb.lines().count(),
        2,
        "one entry per encapsulated peer, nothing stale:\n{fdb}"
    );
    lab.ping_all(10);

    // Encapsulated traffic is accepted only from members: a stranger on the underlay
    // sends to h1's VXLAN port and is dropped; a member's datagram is not.
    assert_member_filter(&lab, "ip", "192.168.77.200/24", "192.168.77.1");
}
