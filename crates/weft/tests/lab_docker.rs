//! Docker, end to end: a real dockerd (Debian's docker.io) per lab host, the agents
//! serving the `weft` network and IPAM driver.
//!
//! - `overlay_and_routed_networks_across_hosts`: an overlay network created with
//!   `docker network create` on h1 is listed on h2 and h3 and used there without being
//!   created again; containers ping across hosts; `--ip` gives a fixed address and a
//!   duplicate on another host is refused with the holder named; a second overlay (VNI
//!   given with `weftctl network create`) and a routed network cannot reach the first, nor
//!   it them, by address; a host without endpoints on a network carries none of its
//!   state; containers reach an address outside the cluster through the gateway, except
//!   on an `--internal` network (used the moment it is made); 20 containers started at once on 3 hosts get 20
//!   distinct addresses; deleting a network is refused while another host has
//!   endpoints (Docker's own copy comes back), and once empty `docker network rm`
//!   removes it from every host; malformed and
//!   unknown plugin calls are answered with errors and change nothing.
//! - `restarts_and_crashes`: a continuous ping between hosts survives a dockerd restart
//!   and restarts of both agents; `docker kill -9` frees the address; an address left
//!   behind by a crash and a stray veth are collected.
//! - `routed_network_over_bgp`: routed containers reach each other over the bgp
//!   backend, and BIRD learns their /32s. The lab runs block IPAM: a routed network on
//!   exactly the pool's range takes its addresses from the hosts' blocks (a fixed one in
//!   the other host's block is borrowed), BIRD learns the blocks and the borrowed /32,
//!   and removing the container gives the address back to its block.
//! - `network_policy_on_docker_networks`: NetworkPolicies of a network's name police
//!   its containers by their Docker labels, overlay (by address) and routed (by
//!   interface); a container is unreachable from the moment it starts until its
//!   labels are read and allow it.
//! - `connect_and_disconnect_running_containers`: `docker network connect` and
//!   `disconnect` on running containers, both directions (overlay onto routed, routed
//!   onto overlay): the second network's peers are reached at once, the first's still
//!   are; after disconnect the container has no interface on it, reaches none of its
//!   peers, and the host keeps no veth, endpoint record or address for it.
//! - `published_ports`: `-p 8080:80` is reachable on the host's address from another
//!   host, from the host itself, from a container of the same network on that host
//!   (hairpin) and from one of another network; a second `-p 8080` is refused with
//!   Docker's words; `-p 80` gets a free host port of Docker's dynamic range, reachable
//!   too; after `docker stop` the port answers no more and its rule is gone; after an
//!   agent restart and a dockerd restart the rules are back, each once.
//! - `between_networks`: a container on two networks reaches both; by default an overlay
//!   network on h1 and a routed one on h2 are isolated (wget and ping, and `policy
//!   explain` says so); a ClusterPolicy allowing `app=web` of blue into `app=db` of green
//!   on TCP 80 lets exactly that flow through across hosts (the way back routed by h2),
//!   not ICMP, not another blue container, not the other way; deleting it isolates them
//!   again.
//!
//! Needs root and dockerd; skipped with one line otherwise.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use weft_testkit::require_root;

use common::docker::*;
use common::*;

/// One plugin call over host `h`'s plugin socket, as raw HTTP: (status, body).
fn plugin_call(lab: &Lab, h: &str, method: &str, body: &str) -> (u16, String) {
    let sock = format!("/run/weft-lab/{}/{h}/plugins/weft.sock", lab.name);
    let mut s = UnixStream::connect(&sock).expect("plugin socket");
    write!(
        s,
        "POST /{method} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn overlay_and_routed_networks_across_hosts() {
    require_root!("overlay_and_routed_networks_across_hosts");
    require_dockerd("overlay_and_routed_networks_across_hosts");
    let lab = Lab::up_with("dk", "embedded", 3, &["--docker"]);
    let create = |h: &str, args: &[&str]| {
        let mut all = vec!["network", "create", "-d", "weft", "--ipam-driver", "weft"];
        all.extend_from_slice(args);
        docker_ok(&lab, h, &all)
    };
    create("h1", &["--subnet", "10.50.0.0/24", "blue"]);
    for h in ["h2", "h3"] {
        lab.wait_until(
            &format!("{h} to list blue"),
            Duration::from_secs(10),
            || networks_of(&lab, h).contains("blue weft"),
        );
    }
    run(&lab, "h1", "a1", "blue", &[]);
    run(&lab, "h2", "a2", "blue", &["--ip", "10.50.0.20"]);
    run(&lab, "h3", "a3", "blue", &[]);
    assert_eq!(addr(&lab, "h2", "a2", "blue"), "10.50.0.20");
    let (a1, a3) = (
        addr(&lab, "h1", "a1", "blue"),
        addr(&lab, "h3", "a3", "blue"),
    );
    assert_reaches(&lab, "h1", "a1", "10.50.0.20");
    assert_reaches(&lab, "h2", "a2", &a3);
    assert_reaches(&lab, "h3", "a3", &a1);
    // Nothing is learned or flooded over the underlay: the VXLAN device learns nothing,
    // answers ARP itself, and has no all-zeros (flood) FDB entry, only one per remote
    // container.
    let dev = text(
        &lab.exec("h1", &["ip", "-d", "link", "show", "weftvx-4096"])
            .stdout,
    );
    assert!(
        dev.contains("nolearning") && dev.contains(" proxy "),
        "{dev}"
    );
    let fdb = text(
        &lab.exec("h1", &["bridge", "fdb", "show", "dev", "weftvx-4096"])
            .stdout,
    );
    assert!(!fdb.contains("00:00:00:00:00:00"), "{fdb}");
    assert_eq!(
        fdb.lines().filter(|l| l.contains(" dst ")).count(),
        2,
        "{fdb}"
    );

    // A fixed address another host holds: refused, with the holder named.
    let dup = docker(
        &lab,
        "h3",
        &[
            "run",
            "--rm",
            "--net",
            "blue",
            "--ip",
            "10.50.0.20",
            "weft/busybox",
            "true",
        ],
    );
    assert!(!dup.status.success());
    let why = text(&dup.stderr);
    assert!(
        why.contains("10.50.0.20") && why.contains("already held") && why.contains("192.168.77.2"),
        "{why}"
    );

    // A second overlay made with weftctl (its own VNI) and a routed network.
    lab.ok(
        lab.store_cmd(&[
            "network",
            "create",
            "red",
            "--subnet",
            "10.51.0.0/24",
            "--vni",
            "5000",
        ]),
        "weftctl network create",
    );
    create(
        "h1",
        &["--subnet", "10.60.0.0/24", "-o", "mode=routed", "green"],
    );
    for h in ["h2", "h3"] {
        lab.wait_until(
            &format!("{h} to list red and green"),
            Duration::from_secs(10),
            || {
                let n = networks_of(&lab, h);
                n.contains("red weft") && n.contains("green weft")
            },
        );
    }
    run(&lab, "h2", "r2", "red", &[]);
    run(&lab, "h3", "r3", "red", &[]);
    run(&lab, "h1", "g1", "green", &[]);
    run(&lab, "h2", "g2", "green", &[]);
    let (r2, r3) = (addr(&lab, "h2", "r2", "red"), addr(&lab, "h3", "r3", "red"));
    let (g1, g2) = (
        addr(&lab, "h1", "g1", "green"),
        addr(&lab, "h2", "g2", "green"),
    );
    assert_reaches(&lab, "h2", "r2", &r3);
    assert_reaches(&lab, "h1", "g1", &g2);
    assert_reaches(&lab, "h2", "g2", &g1);
    // Isolation, both ways, by address: overlay from overlay, overlay from routed.
    assert_blocked(&lab, "h2", "r2", &a1);
    assert_blocked(&lab, "h2", "r2", &a3);
    assert_blocked(&lab, "h1", "a1", &r2);
    assert_blocked(&lab, "h1", "g1", "10.50.0.20");
    assert_blocked(&lab, "h2", "a2", &g1);
    assert_blocked(&lab, "h2", "g2", &r3);
    // h1 has no endpoint on red: none of red's state.
    assert!(!link_exists(&lab, "h1", "weftvx-5000") && !link_exists(&lab, "h1", "weftbr-5000"));
    assert!(link_exists(&lab, "h2", "weftvx-5000"));

    // One plan for the agent and diagnose: with overlay segments and routed /32s,
    // every host diagnoses clean...
    let clean = lab.store_cmd(&["diagnose"]);
    let said = text(&clean.stdout);
    assert!(clean.status.success(), "{said}{}", text(&clean.stderr));
    assert_eq!(said.matches("0 problems, 0 warnings").count(), 3, "{said}");
    // ...and a segment's neighbour entry and a routed container's /32 deleted by hand
    // while h1's agent is away are named.
    lab.ok(lab.lab(&["agent"], &["h1", "stop"]), "agent stop");
    for cmd in [
        vec!["ip", "neigh", "del", "10.50.0.20", "dev", "weftvx-4096"],
        vec!["ip", "route", "del", g2.as_str()],
    ] {
        let out = lab.exec("h1", &cmd);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    }
    let sick = lab.store_cmd(&["diagnose", "--host", "h1"]);
    let said = text(&sick.stdout);
    assert_eq!(sick.status.code(), Some(1), "{said}");
    for line in [
        "FAIL  segment      missing: blue: neighbour 10.50.0.20 lladdr ".to_owned(),
        format!(
            "FAIL  route        missing: {g2}/32 via 192.168.77.2 dev eth0 (a routed container)"
        ),
    ] {
        assert!(said.contains(&line), "{line}:\n{said}");
    }
    lab.ok(lab.lab(&["agent"], &["h1", "start"]), "agent start");
    assert_reaches(&lab, "h1", "g1", &g2);
    assert_reaches(&lab, "h1", "a1", "10.50.0.20");

    // Out through the gateway (the underlay's router, outside the cluster); not from
    // an internal network.
    assert_reaches(&lab, "h1", "a1", "192.168.77.254");
    assert_reaches(&lab, "h1", "g1", "192.168.77.254");
    // Used at once on the host that made it: registered on demand, not at the sync.
    create("h1", &["--internal", "--subnet", "10.52.0.0/24", "closed"]);
    run(&lab, "h1", "i1", "closed", &[]);
    assert_blocked(&lab, "h1", "i1", "192.168.77.254");

    // Malformed and unknown calls: errors that say so, nothing changed.
    let before = text(&lab.store_cmd(&["network", "list", "-o", "json"]).stdout);
    let (status, body) = plugin_call(&lab, "h1", "NetworkDriver.Join", "{not json");
    assert_eq!(status, 200);
    assert!(
        body.contains("\"Err\"") && body.contains("malformed request"),
        "{body}"
    );
    let (status, body) = plugin_call(&lab, "h1", "NetworkDriver.Frobnicate", "{}");
    assert_eq!(status, 404);
    assert!(body.contains("unknown call"), "{body}");
    let (_, body) = plugin_call(
        &lab,
        "h1",
        "NetworkDriver.CreateEndpoint",
        r#"{"NetworkID":"nope","EndpointID":"e1","Interface":{"Address":"10.50.0.99/24"}}"#,
    );
    assert!(body.contains("unknown network"), "{body}");
    let (_, body) = plugin_call(
        &lab,
        "h1",
        "IpamDriver.RequestAddress",
        r#"{"PoolID":"10.99.0.0/24"}"#,
    );
    assert!(
        body.contains("\"Error\"") && body.contains("no Weft network"),
        "{body}"
    );
    let (_, body) = plugin_call(
        &lab,
        "h1",
        "IpamDriver.RequestPool",
        r#"{"Pool":"10.244.5.0/24"}"#,
    );
    assert!(body.contains("overlaps the cluster network"), "{body}");
    assert_eq!(
        text(&lab.store_cmd(&["network", "list", "-o", "json"]).stdout),
        before
    );

    // 20 containers at once across the hosts: 20 distinct addresses.
    let starts: Vec<Child> = (0..20)
        .map(|n| {
            let h = format!("h{}", n % 3 + 1);
            let name = format!("m{n}");
            Command::new(WEFTCTL)
                .args([
                    "lab",
                    "exec",
                    "--name",
                    &lab.name,
                    &h,
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--net",
                    "blue",
                    "weft/busybox",
                    "sleep",
                    "3600",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in starts {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let mut addrs: Vec<String> = (0..20)
        .map(|n| addr(&lab, &format!("h{}", n % 3 + 1), &format!("m{n}"), "blue"))
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 20, "{addrs:?}");
    for n in 0..20 {
        docker_ok(
            &lab,
            &format!("h{}", n % 3 + 1),
            &["rm", "-f", &format!("m{n}")],
        );
    }

    // Deleting a network other hosts still use: weftctl refuses and names them. Docker
    // ignores a driver's refusal and drops its own copy; the network stays in the store
    // (the agent logs why) and the sync gives h1 its copy back.
    docker_ok(&lab, "h1", &["rm", "-f", "a1"]);
    let rm = lab.store_cmd(&["network", "delete", "blue"]);
    assert!(!rm.status.success());
    let why = text(&rm.stderr);
    assert!(
        why.contains("still has endpoints") && why.contains("10.50.0.20 on 192.168.77.2"),
        "{why}"
    );
    docker_ok(&lab, "h1", &["network", "rm", "blue"]);
    assert!(lab.log("h1").contains("still has endpoints"));
    lab.wait_until("h1 to list blue again", Duration::from_secs(10), || {
        networks_of(&lab, "h1").contains("blue weft")
    });
    assert_reaches(&lab, "h2", "a2", &a3);
    docker_ok(&lab, "h2", &["rm", "-f", "a2"]);
    docker_ok(&lab, "h3", &["rm", "-f", "a3"]);
    let shown = text(
        &lab.store_cmd(&["network", "show", "blue", "-o", "json"])
            .stdout,
    );
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        v["endpoints"].as_array().unwrap().len(),
        0,
        "removal frees every address: {shown}"
    );
    docker_ok(&lab, "h1", &["network", "rm", "blue"]);
    for h in ["h2", "h3"] {
        lab.wait_until(
            &format!("{h} to drop blue"),
            Duration::from_secs(10),
            || !networks_of(&lab, h).contains("blue weft"),
        );
    }
    assert!(!text(&lab.store_cmd(&["network", "list"]).stdout).contains("blue"));
}

#[test]
fn restarts_and_crashes() {
    require_root!("restarts_and_crashes");
    require_dockerd("restarts_and_crashes");
    let lab = Lab::up_with("dr", "embedded", 2, &["--docker"]);
    create_network(&lab, "h1", &["--subnet", "10.50.0.0/24"], "blue", &["h2"]);
    run(&lab, "h1", "a1", "blue", &[]);
    run(&lab, "h2", "a2", "blue", &["--ip", "10.50.0.20"]);
    assert_reaches(&lab, "h1", "a1", "10.50.0.20");

    let pid = docker_ok(&lab, "h1", &["inspect", "-f", "{{.State.Pid}}", "a1"]);
    let ping = Pinger::from_pid(pid.trim(), "10.50.0.20");
    std::thread::sleep(Duration::from_millis(500));
    lab.ok(lab.lab(&["dockerd"], &["h2", "restart"]), "dockerd restart");
    for h in ["h1", "h2"] {
        lab.ok(lab.lab(&["agent"], &[h, "restart"]), "agent restart");
    }
    std::thread::sleep(Duration::from_secs(2));
    let (sent, received) = ping.stop();
    assert!(sent > 40, "the ping ran ({sent} sent)");
    assert_eq!(sent, received, "no ping lost across the restarts");
    let shown = text(&lab.store_cmd(&["network", "show", "blue"]).stdout);
    assert!(
        shown.contains("10.50.0.20"),
        "the address is still held: {shown}"
    );

    // kill -9: Docker tears the endpoint down, the address is free again.
    docker_ok(&lab, "h2", &["kill", "-s", "KILL", "a2"]);
    lab.wait_until("10.50.0.20 to be freed", Duration::from_secs(10), || {
        !text(&lab.store_cmd(&["network", "show", "blue"]).stdout).contains("10.50.0.20")
    });
    run(&lab, "h2", "a2b", "blue", &["--ip", "10.50.0.20"]);

    // What a crash leaves: an address recorded for an endpoint no daemon has, and a
    // host veth nobody owns. Both are collected after the grace period.
    let key = "/coreos.com/network/weft/endpoints/blue/10.50.0.77";
    let value = r#"{"Node":"192.168.77.1","EndpointID":"0123456789abcdef","MAC":"02:42:0a:32:00:4d","HostIface":"weftdk012345678"}"#;
    lab.ok(lab.store_cmd(&["store", "put", key, value]), "store put");
    lab.ok(
        lab.exec(
            "h1",
            &[
                "ip",
                "link",
                "add",
                "weftdk012345678",
                "type",
                "veth",
                "peer",
                "name",
                "weftdp012345678",
            ],
        ),
        "stray veth",
    );
    lab.wait_until(
        "the orphans to be collected",
        Duration::from_secs(40),
        || {
            !text(&lab.store_cmd(&["network", "show", "blue"]).stdout).contains("10.50.0.77")
                && !link_exists(&lab, "h1", "weftdk012345678")
        },
    );
    assert!(lab.log("h1").contains("collected"));
    assert_reaches(&lab, "h1", "a1", "10.50.0.20");

    // Under systemd (`Type=notify`) the agent says READY=1 once Docker can use it: the
    // driver's socket answers and the routes are in place. Started with a notification
    // socket of the test's own, with its socket file and routes gone first.
    lab.ok(lab.lab(&["agent"], &["h1", "stop"]), "agent stop");
    let plugin = format!("/run/weft-lab/{}/h1/plugins/weft.sock", lab.name);
    let _ = std::fs::remove_file(&plugin);
    lab.ok(
        lab.exec("h1", &["ip", "route", "flush", "proto", "77"]),
        "flush",
    );
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let rx = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Command::new(WEFTCTL)
        .args(["lab", "agent", "--name", &lab.name, "h1", "start"])
        .env("WEFT_WEFTD", WEFTD)
        .env("NOTIFY_SOCKET", &notify)
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started.stderr));
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY=1 within 30 s");
    let said = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(said.starts_with("READY=1\n"), "{said}");
    // At that moment, not later:
    assert!(
        UnixStream::connect(&plugin).is_ok(),
        "the driver's socket answers when READY=1 is sent"
    );
    assert!(
        !lab.weft_routes("h1").is_empty(),
        "the routes are in place when READY=1 is sent"
    );
}

#[test]
fn routed_network_over_bgp() {
    require_root!("routed_network_over_bgp");
    require_dockerd("routed_network_over_bgp");
    let lab = Lab::up_with(
        "db",
        "embedded",
        2,
        &[
            "--docker",
            "--backend",
            "bgp",
            "--router",
            "bird",
            "--ipam",
            "blocks",
            "--pool",
            "10.248.0.0/24",
        ],
    );
    create_network(
        &lab,
        "h1",
        &["--subnet", "10.60.0.0/24", "-o", "mode=routed"],
        "green",
        &["h2"],
    );
    run(&lab, "h1", "g1", "green", &[]);
    run(&lab, "h2", "g2", "green", &[]);
    let (g1, g2) = (
        addr(&lab, "h1", "g1", "green"),
        addr(&lab, "h2", "g2", "green"),
    );
    assert_reaches(&lab, "h1", "g1", &g2);
    assert_reaches(&lab, "h2", "g2", &g1);
    // Each host learned the other's container over BGP, and so did BIRD.
    assert!(text(&lab.exec("h1", &["ip", "route", "show", &g2]).stdout).contains("proto 77"));
    lab.wait_until("BIRD to learn both /32s", Duration::from_secs(10), || {
        let ul = text(&lab.exec("ul", &["ip", "route"]).stdout);
        ul.contains(&format!("{g1} via 192.168.77.1"))
            && ul.contains(&format!("{g2} via 192.168.77.2"))
    });

    // On the pool: the lab's CNI containers hold 10.248.0.0/26 (h1) and .64/26 (h2).
    create_network(
        &lab,
        "h1",
        &["--subnet", "10.248.0.0/24", "-o", "mode=routed"],
        "pooled",
        &["h2"],
    );
    run(&lab, "h1", "p1", "pooled", &[]);
    run(&lab, "h2", "p2", "pooled", &["--ip", "10.248.0.10"]);
    let p1 = addr(&lab, "h1", "p1", "pooled");
    // .0 is c1's (CNI); .1 is the network's nominal gateway, kept reserved.
    assert_eq!(p1, "10.248.0.2", "the next usable address of h1's block");
    assert_reaches(&lab, "h1", "p1", "10.248.0.10");
    assert_reaches(&lab, "h2", "p2", &p1);
    let shown = lab.ok(lab.store_cmd(&["ipam", "show", "10.248.0.10"]), "ipam show");
    assert!(
        shown.contains("192.168.77.2 (borrowed)") && shown.contains("docker:pooled/"),
        "{shown}"
    );
    lab.wait_until(
        "BIRD to learn the blocks and the borrowed /32",
        Duration::from_secs(10),
        || {
            let ul = text(&lab.exec("ul", &["ip", "route"]).stdout);
            ul.contains("10.248.0.0/26 via 192.168.77.1")
                && ul.contains("10.248.0.64/26 via 192.168.77.2")
                && ul.contains("10.248.0.10 via 192.168.77.2")
        },
    );
    // One plan for the agent and diagnose: with blocks, a borrowed address, routed
    // Docker containers and a policy, every host diagnoses clean (the diagnose of old
    // called the blocks' blackholes stale)...
    lab.apply_policy(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-green, namespace: pooled}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]\n",
    );
    let clean = lab.store_cmd(&["diagnose"]);
    let said = text(&clean.stdout);
    assert!(clean.status.success(), "{said}{}", text(&clean.stderr));
    assert_eq!(said.matches("0 problems, 0 warnings").count(), 2, "{said}");
    // ...and a block's blackhole deleted by hand while h1's agent is away is named by
    // its origin.
    lab.ok(lab.lab(&["agent"], &["h1", "stop"]), "agent stop");
    let del = lab.exec("h1", &["ip", "route", "del", "blackhole", "10.248.0.0/26"]);
    assert!(del.status.success(), "{}", text(&del.stderr));
    let sick = lab.store_cmd(&["diagnose", "--host", "h1"]);
    let said = text(&sick.stdout);
    assert_eq!(sick.status.code(), Some(1), "{said}");
    assert!(
        said.contains("FAIL  route        missing: blackhole 10.248.0.0/26 (a block)"),
        "{said}"
    );
    lab.ok(lab.lab(&["agent"], &["h1", "start"]), "agent start");
    lab.wait_until(
        "h1's agent to put the blackhole back",
        Duration::from_secs(10),
        || {
            text(
                &lab.exec("h1", &["ip", "route", "show", "10.248.0.0/26"])
                    .stdout,
            )
            .contains("blackhole")
        },
    );

    docker_ok(&lab, "h2", &["rm", "-f", "p2"]);
    lab.wait_until(
        "the address back in its block",
        Duration::from_secs(10),
        || {
            text(&lab.store_cmd(&["ipam", "show", "10.248.0.10"]).stdout)
                .contains("used      no (free)")
        },
    );
    let check = lab.store_cmd(&["ipam", "check"]);
    assert!(check.status.success(), "{}", text(&check.stdout));
}

#[test]
fn network_policy_on_docker_networks() {
    require_root!("network_policy_on_docker_networks");
    require_dockerd("network_policy_on_docker_networks");
    let lab = Lab::up_with("dn", "embedded", 2, &["--docker"]);
    create_network(&lab, "h1", &["--subnet", "10.51.0.0/24"], "shop", &["h2"]);
    create_network(
        &lab,
        "h1",
        &["--subnet", "10.52.0.0/24", "-o", "mode=routed"],
        "tools",
        &["h2"],
    );
    // In namespace `shop` (the network's name) only role=client reaches app=db; in
    // `tools` nothing reaches anything.
    lab.apply_policy(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: tools}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n",
    );
    run(&lab, "h1", "db", "shop", &["--label", "app=db"]);
    run(
        &lab,
        "h2",
        "client",
        "shop",
        &[
            "--label",
            "role=client",
            "--label",
            "maintainer=Jane Doe <jane@example.org>",
        ],
    );
    run(&lab, "h2", "other", "shop", &[]);
    let (db, client) = (
        addr(&lab, "h1", "db", "shop"),
        addr(&lab, "h2", "client", "shop"),
    );
    assert_reaches(&lab, "h2", "client", &db);
    assert_blocked(&lab, "h2", "other", &db);
    assert_reaches(&lab, "h2", "other", &client);

    // The identities, as `weftctl endpoint list` shows them: the network as namespace,
    // the container's labels (less the one no selector can match), read, not held.
    let listed: serde_json::Value = serde_json::from_str(&text(
        &lab.store_cmd(&["endpoint", "list", "-o", "json"]).stdout,
    ))
    .expect("endpoint list as JSON");
    let db_row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == db.as_str())
        .unwrap_or_else(|| panic!("db in {listed}"));
    assert_eq!(db_row["name"], "shop/db", "{db_row}");
    assert_eq!(db_row["namespace"], "shop");
    assert_eq!(db_row["labels"], serde_json::json!({"app": "db"}));
    assert_eq!(db_row["pending"], false);
    assert_eq!(
        db_row["policies"],
        serde_json::json!(["NetworkPolicy shop/db"])
    );
    assert!(lab.log("h2").contains("not valid Kubernetes labels"));

    // Policy before the first packet: `other` pings 10.51.0.40 every 100 ms for 8 s,
    // from before it exists until well after a new app=db container is up there; not
    // one answer comes back, though the client gets through once its labels are read.
    // Counted on h1 in the forward hook after Weft's policy (priority 100, where only
    // what the policy let through arrives): `other`'s echo requests to db2's address,
    // which must stay 0, and `client`'s, which shows the counter sees what is delivered.
    let other_ip = addr(&lab, "h2", "other", "shop");
    let delivered = format!(
        "add table ip delivered {{ chain f {{ type filter hook forward priority 100; ip saddr {other_ip} ip daddr 10.51.0.40 icmp type echo-request counter comment \"other\"; ip saddr {client} ip daddr 10.51.0.40 icmp type echo-request counter comment \"client\"; }}; }}"
    );
    lab.ok(lab.exec("h1", &["nft", &delivered]), "nft add table");
    let started = std::time::Instant::now();
    let (log, up) = std::thread::scope(|s| {
        let pinging = s.spawn(|| {
            let args = [
                "exec",
                "other",
                "ping",
                "-i",
                "0.1",
                "-w",
                "8",
                "10.51.0.40",
            ];
            text(&docker(&lab, "h2", &args).stdout)
        });
        std::thread::sleep(Duration::from_millis(500));
        run(
            &lab,
            "h1",
            "db2",
            "shop",
            &["--ip", "10.51.0.40", "--label", "app=db"],
        );
        assert_reaches(&lab, "h2", "client", "10.51.0.40");
        let up = started.elapsed();
        (pinging.join().unwrap(), up)
    });
    assert!(
        up < Duration::from_secs(7),
        "db2 was up and reachable {up:?} into the 8 s of pings: the pings should go on for a second after"
    );
    let sent: u32 = log
        .lines()
        .find_map(|l| {
            l.split(" packets transmitted")
                .next()
                .filter(|_| l.contains("packets transmitted"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {log}"));
    assert!(sent >= 60, "{sent} echo requests in 8 s:\n{log}");
    assert!(!log.contains("bytes from"), "db2 answered `other`:\n{log}");
    let counted = text(
        &lab.exec("h1", &["nft", "list", "table", "ip", "delivered"])
            .stdout,
    );
    let packets = |who: &str| -> u64 {
        counted
            .lines()
            .find(|l| l.contains(&format!("comment \"{who}\"")))
            .and_then(|l| l.split("counter packets ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {who} counter in\n{counted}"))
    };
    assert_eq!(
        packets("other"),
        0,
        "`other`'s pings reached db2's interface:\n{counted}"
    );
    assert!(
        packets("client") > 0,
        "the counter sees delivered packets:\n{counted}"
    );
    lab.ok(
        lab.exec("h1", &["nft", "delete", "table", "ip", "delivered"]),
        "nft delete table",
    );

    // A routed network: matched by interface, not address.
    run(&lab, "h1", "t1", "tools", &[]);
    run(&lab, "h2", "t2", "tools", &[]);
    let t1 = addr(&lab, "h1", "t1", "tools");
    assert_blocked(&lab, "h2", "t2", &t1);
    lab.ok(
        lab.store_cmd(&["policy", "delete", "tools/deny"]),
        "policy delete",
    );
    assert_reaches(&lab, "h2", "t2", &t1);

    // Relabelled by hand, db no longer counts as a db: `other` gets through; a
    // container that is gone takes its identity with it.
    lab.ok(
        lab.store_cmd(&["endpoint", "label", "shop/db", "app-"]),
        "endpoint label",
    );
    assert_reaches(&lab, "h2", "other", &db);
    docker_ok(&lab, "h1", &["rm", "-f", "db2"]);
    let gone = text(&lab.store_cmd(&["endpoint", "list"]).stdout);
    assert!(!gone.contains("10.51.0.40"), "{gone}");

    // docs/migration.md's rollback, as written there, on h1 with its agent stopped:
    // the kernel keeps nothing marked as Weft's (routes, devices, both nft tables).
    lab.ok(lab.lab(&["agent"], &["h1", "stop"]), "agent stop");
    let before = |args: &[&str]| text(&lab.exec("h1", args).stdout);
    assert!(
        !lab.weft_routes("h1").is_empty()
            && before(&["ip", "-o", "link", "show"]).contains("weftbr-")
            && before(&["nft", "list", "tables"]).contains("table ip weftpol"),
        "h1 holds Weft's routes, a segment and the policy table before the rollback"
    );
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/migration.md"),
    )
    .unwrap();
    let section = &doc[doc
        .find("## Rolling back a node")
        .expect("a rollback section")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the rollback commands");
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let out = lab.exec("h1", &["sh", "-c", line]);
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
    }
    assert_eq!(lab.weft_routes("h1"), "", "routes of Weft's left");
    let links = text(&lab.exec("h1", &["ip", "-o", "link", "show"]).stdout);
    assert!(
        !links.contains("weftbr-") && !links.contains("weftvx-") && !links.contains(": weft."),
        "devices of Weft's left:\n{links}"
    );
    let tables = text(&lab.exec("h1", &["nft", "list", "tables"]).stdout);
    assert!(
        !tables
            .lines()
            .any(|t| t == "table ip weft" || t == "table ip weftpol"),
        "tables of Weft's left:\n{tables}"
    );
}

/// A 2-host Docker lab with an overlay network `blue` (10.50.0.0/24) and a routed one
/// `green` (10.60.0.0/24), made on h1 and listed on h2.
fn blue_and_green(tag: &str) -> Lab {
    let lab = Lab::up_with(tag, "embedded", 2, &["--docker"]);
    create_network(&lab, "h1", &["--subnet", "10.50.0.0/24"], "blue", &["h2"]);
    create_network(
        &lab,
        "h1",
        &["--subnet", "10.60.0.0/24", "-o", "mode=routed"],
        "green",
        &["h2"],
    );
    lab
}

/// The endpoints of `network` in the store, as `weftctl network show -o json` lists them.
fn endpoints(lab: &Lab, network: &str) -> Vec<serde_json::Value> {
    let out = lab.ok(
        lab.store_cmd(&["network", "show", network, "-o", "json"]),
        "network show",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["endpoints"].as_array().cloned().unwrap_or_default()
}

/// The container's interfaces and routes, from inside it.
fn inside(lab: &Lab, h: &str, ctr: &str) -> String {
    let links = docker_ok(lab, h, &["exec", ctr, "ip", "-o", "addr", "show"]);
    let routes = docker_ok(lab, h, &["exec", ctr, "ip", "route"]);
    format!("{links}{routes}")
}

#[test]
fn connect_and_disconnect_running_containers() {
    require_root!("connect_and_disconnect_running_containers");
    require_dockerd("connect_and_disconnect_running_containers");
    let lab = blue_and_green("dkc");
    run(&lab, "h2", "pb", "blue", &["--ip", "10.50.0.20"]);
    run(&lab, "h2", "pg", "green", &["--ip", "10.60.0.20"]);
    run(&lab, "h1", "ca", "blue", &[]);
    run(&lab, "h1", "cb", "green", &[]);
    assert_reaches(&lab, "h1", "ca", "10.50.0.20");
    assert_reaches(&lab, "h1", "cb", "10.60.0.20");
    assert_blocked(&lab, "h1", "ca", "10.60.0.20");
    assert_blocked(&lab, "h1", "cb", "10.50.0.20");
    let veths = || {
        text(
            &lab.exec("h1", &["ip", "-o", "link", "show", "type", "veth"])
                .stdout,
        )
        .lines()
        .count()
    };
    let before = veths();

    // An overlay container joins the routed network, a routed one the overlay.
    docker_ok(&lab, "h1", &["network", "connect", "green", "ca"]);
    docker_ok(&lab, "h1", &["network", "connect", "blue", "cb"]);
    let (a_green, b_blue) = (
        addr(&lab, "h1", "ca", "green"),
        addr(&lab, "h1", "cb", "blue"),
    );
    assert!(a_green.starts_with("10.60.0.") && b_blue.starts_with("10.50.0."));
    assert_eq!(veths(), before + 2, "one veth per new endpoint");
    for (ctr, to) in [
        ("ca", "10.60.0.20"),
        ("ca", "10.50.0.20"),
        ("cb", "10.50.0.20"),
        ("cb", "10.60.0.20"),
    ] {
        assert_reaches(&lab, "h1", ctr, to);
    }
    // And back: the peers reach the new addresses.
    assert_reaches(&lab, "h2", "pg", &a_green);
    assert_reaches(&lab, "h2", "pb", &b_blue);
    assert!(endpoints(&lab, "green")
        .iter()
        .any(|e| e["address"] == a_green.as_str()));

    // Disconnect: nothing of the endpoint is left, and the first network still works.
    docker_ok(&lab, "h1", &["network", "disconnect", "green", "ca"]);
    docker_ok(&lab, "h1", &["network", "disconnect", "blue", "cb"]);
    let (in_a, in_b) = (inside(&lab, "h1", "ca"), inside(&lab, "h1", "cb"));
    assert!(!in_a.contains("10.60.0."), "ca keeps green:\n{in_a}");
    assert!(!in_b.contains("10.50.0."), "cb keeps blue:\n{in_b}");
    lab.wait_until("the two veths to go", Duration::from_secs(10), || {
        veths() == before
    });
    lab.wait_until(
        "the store to drop both endpoints",
        Duration::from_secs(10),
        || {
            !endpoints(&lab, "green")
                .iter()
                .any(|e| e["address"] == a_green.as_str())
                && !endpoints(&lab, "blue")
                    .iter()
                    .any(|e| e["address"] == b_blue.as_str())
        },
    );
    assert_reaches(&lab, "h1", "ca", "10.50.0.20");
    assert_reaches(&lab, "h1", "cb", "10.60.0.20");
    assert_blocked(&lab, "h1", "ca", "10.60.0.20");
    assert_blocked(&lab, "h1", "cb", "10.50.0.20");
    assert_blocked(&lab, "h2", "pg", &a_green);
    // The addresses are free again: a new container may take them.
    run(&lab, "h2", "again", "green", &["--ip", &a_green]);
}

/// What `wget` from host `h`'s own namespace gets from `url` (empty when nothing).
fn fetch_from_host(lab: &Lab, h: &str, url: &str) -> String {
    text(
        &lab.exec(h, &["timeout", "3", "busybox", "wget", "-q", "-O-", url])
            .stdout,
    )
}

/// What `wget` in container `ctr` on host `h` gets from `url` (empty when nothing).
fn fetch_from_container(lab: &Lab, h: &str, ctr: &str, url: &str) -> String {
    text(
        &docker(
            lab,
            h,
            &["exec", ctr, "timeout", "3", "wget", "-q", "-O-", url],
        )
        .stdout,
    )
}

/// A web server answering `body` on port 80 of a new container, its `-p` options given.
fn web(lab: &Lab, h: &str, name: &str, net: &str, body: &str, publish: &[&str]) -> Output {
    let script = format!("echo {body} > /index.html && httpd -f -p 80 -h /");
    let mut args = vec!["run", "-d", "--name", name, "--net", net];
    args.extend_from_slice(publish);
    args.extend_from_slice(&["weft/busybox", "sh", "-c", &script]);
    docker(lab, h, &args)
}

#[test]
fn published_ports() {
    require_root!("published_ports");
    require_dockerd("published_ports");
    let lab = blue_and_green("dkp");
    let out = web(&lab, "h1", "web", "blue", "hello-8080", &["-p", "8080:80"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    run(&lab, "h1", "nextdoor", "blue", &[]);
    run(&lab, "h1", "elsewhere", "green", &[]);
    let url = "http://192.168.77.1:8080/";
    lab.wait_until(
        "the port from another host",
        Duration::from_secs(10),
        || fetch_from_host(&lab, "h2", url).contains("hello-8080"),
    );
    assert!(
        fetch_from_host(&lab, "h1", url).contains("hello-8080"),
        "from the host"
    );
    for ctr in ["nextdoor", "elsewhere"] {
        let got = fetch_from_container(&lab, "h1", ctr, url);
        assert!(got.contains("hello-8080"), "from {ctr}: {got:?}");
    }

    // The same host port again: Docker's own refusal, nothing published.
    let dup = web(&lab, "h1", "dup", "blue", "dup", &["-p", "8080:80"]);
    assert!(!dup.status.success());
    let why = text(&dup.stderr);
    assert!(why.contains("port is already allocated"), "{why}");
    docker(&lab, "h1", &["rm", "-f", "dup"]);

    // A port of Docker's choosing: a free one of its dynamic range, in the store.
    let out = web(&lab, "h1", "any", "blue", "hello-any", &["-p", "80"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let any_ip = addr(&lab, "h1", "any", "blue");
    let host_port = endpoints(&lab, "blue")
        .iter()
        .find(|e| e["address"] == any_ip.as_str())
        .and_then(|e| e["ports"][0]["host_port"].as_u64())
        .expect("a host port in the endpoint's record");
    assert!((49153..=65535).contains(&host_port), "{host_port}");
    let any_url = format!("http://192.168.77.1:{host_port}/");
    lab.wait_until("the chosen port", Duration::from_secs(10), || {
        fetch_from_host(&lab, "h2", &any_url).contains("hello-any")
    });

    let rules = || {
        text(
            &lab.exec("h1", &["nft", "list", "chain", "ip", "weft", "published"])
                .stdout,
        )
    };
    assert_eq!(rules().matches("dport 8080 ").count(), 1, "{}", rules());

    // Stopped: nothing answers and the rule is gone.
    docker_ok(&lab, "h1", &["stop", "-t", "1", "web"]);
    lab.wait_until("the rule to go", Duration::from_secs(10), || {
        !rules().contains("dport 8080 ")
    });
    assert!(!fetch_from_host(&lab, "h2", url).contains("hello-8080"));

    // Started again, and the agent restarted: the rules are back, once each.
    docker_ok(&lab, "h1", &["start", "web"]);
    lab.wait_until("the port back", Duration::from_secs(10), || {
        fetch_from_host(&lab, "h2", url).contains("hello-8080")
    });
    lab.ok(lab.lab(&["agent"], &["h1", "restart"]), "agent restart");
    lab.wait_until(
        "the port after the restart",
        Duration::from_secs(20),
        || {
            fetch_from_host(&lab, "h2", url).contains("hello-8080")
                && fetch_from_host(&lab, "h2", &any_url).contains("hello-any")
        },
    );
    let after = rules();
    assert_eq!(after.matches("dport 8080 ").count(), 1, "{after}");
    assert_eq!(
        after.matches(&format!("dport {host_port} ")).count(),
        1,
        "{after}"
    );

    // dockerd restarted (live restore keeps the containers): the same, once each.
    lab.ok(lab.lab(&["dockerd"], &["h1", "restart"]), "dockerd restart");
    lab.wait_until(
        "the port after dockerd's restart",
        Duration::from_secs(30),
        || fetch_from_host(&lab, "h2", url).contains("hello-8080"),
    );
    let after = rules();
    assert_eq!(after.matches("dport 8080 ").count(), 1, "{after}");
}

/// A ClusterPolicy opening blue (overlay, h1) to green (routed, h2) for one flow.
const WEB_TO_DB: &str = "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: web-to-db}\nspec:\n  order: 10\n  selector: {matchLabels: {app: db}}\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source:\n      namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: blue}}\n      selector: {matchLabels: {app: web}}\n    destination: {ports: [\"80\"]}\n";

#[test]
fn between_networks() {
    require_root!("between_networks");
    require_dockerd("between_networks");
    let lab = blue_and_green("dbt");
    run(&lab, "h1", "web", "blue", &["--label", "app=web"]);
    run(&lab, "h1", "other", "blue", &[]);
    let db = web(
        &lab,
        "h2",
        "db",
        "green",
        "db-answers",
        &["--label", "app=db"],
    );
    assert!(db.status.success(), "{}", text(&db.stderr));
    run(&lab, "h2", "peer", "green", &[]);
    let db_ip = addr(&lab, "h2", "db", "green");
    let web_ip = addr(&lab, "h1", "web", "blue");
    let url = format!("http://{db_ip}/");

    // A container on both networks reaches both.
    run(&lab, "h1", "dual", "blue", &[]);
    docker_ok(&lab, "h1", &["network", "connect", "green", "dual"]);
    assert_reaches(&lab, "h1", "dual", &web_ip);
    assert_reaches(&lab, "h1", "dual", &db_ip);

    // By default, total isolation.
    assert!(fetch_from_container(&lab, "h1", "web", &url).is_empty());
    assert_blocked(&lab, "h1", "web", &db_ip);
    let explain =
        |from: &str, to: &str| lab.store_cmd(&["policy", "explain", from, to, "--port", "80"]);
    let denied = explain("blue/web", "green/db");
    assert_eq!(denied.status.code(), Some(3), "{}", text(&denied.stdout));
    assert!(text(&denied.stdout).contains("between networks blue -> green:\n  denied"));

    // The policy opens exactly its flow: web to db's port 80, across hosts.
    lab.apply_policy(WEB_TO_DB);
    lab.wait_until(
        "web to fetch from db across networks",
        Duration::from_secs(10),
        || fetch_from_container(&lab, "h1", "web", &url).contains("db-answers"),
    );
    // The way back: h2 carries no segment of blue, and routes web's /32 to h1.
    let routes = lab.weft_routes("h2");
    assert!(
        routes.contains(&format!("{web_ip} via 192.168.77.1")),
        "{routes}"
    );
    let allowed = explain("blue/web", "green/db");
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed.stdout));
    assert!(
        text(&allowed.stdout)
            .contains("allowed: opened by ClusterPolicy web-to-db ingress[0]: Allow"),
        "{}",
        text(&allowed.stdout)
    );
    assert_blocked(&lab, "h1", "web", &db_ip); // ICMP: not the policy's flow
    assert!(
        fetch_from_container(&lab, "h1", "other", &url).is_empty(),
        "not app=web"
    );
    assert_blocked(&lab, "h2", "db", &web_ip); // nor the other way
    assert_blocked(&lab, "h2", "peer", &web_ip);
    // Within a network nothing changed.
    assert!(fetch_from_container(&lab, "h2", "peer", &url).contains("db-answers"));
    assert_reaches(&lab, "h1", "other", &web_ip);

    // Gone with the policy: isolated again, and h2 routes nothing of blue.
    lab.ok(
        lab.store_cmd(&["policy", "delete", "web-to-db", "--cluster"]),
        "policy delete",
    );
    lab.wait_until(
        "blue and green to be apart again",
        Duration::from_secs(10),
        || fetch_from_container(&lab, "h1", "web", &url).is_empty(),
    );
    lab.wait_until(
        "h2 to drop its route to web",
        Duration::from_secs(10),
        || !lab.weft_routes("h2").contains(&web_ip),
    );
}
