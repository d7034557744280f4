//! End to end, in network namespaces, on both stores: a host-gw lab built by `weftctl lab`
//! with real `weftd` agents. Proves packets flow (container-to-container ping matrix),
//! hosts join and leave, an agent restart changes no route, bad store values and a
//! paused store remove nothing (and a route deleted by hand while etcd is paused is back
//! within a second), and `lab down` leaves nothing behind.
//!
//! Needs root (namespaces, nftables); every lab gets a unique name and is torn down by a
//! guard even when an assertion fails.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;
use weft_testkit::require_root;

use common::*;

fn scenario(tag: &str, store: &str) {
    let lab = Lab::up(tag, store, 3);
    lab.ping_all(0);
    let hosts = ["h1", "h2", "h3"];
    for h in hosts {
        assert_eq!(
            lab.weft_routes(h).lines().count(),
            2,
            "{h} routes to both peers:\n{}",
            lab.weft_routes(h)
        );
    }
    let ipam = lab.ok(
        lab.ctl(&["--lab", &lab.name, "ipam", "show", "--json"]),
        "ipam show",
    );
    let ipam: serde_json::Value = serde_json::from_str(&ipam).unwrap();
    assert_eq!(
        ipam.as_array().unwrap().len(),
        3,
        "one allocation per container: {ipam}"
    );
    let leases = lab.ok(lab.store_cmd(&["leases", "-o", "json"]), "leases");
    let json: serde_json::Value = serde_json::from_str(&leases).unwrap();
    assert_eq!(json["leases"].as_array().unwrap().len(), 3);

    // The underlay is a switch: no firewall hooks on its bridges (where the kernel has
    // br_netfilter at all); the hosts keep the kernel's default.
    let bridge_nf = |node: &str| {
        let out = lab.exec(
            node,
            &["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"],
        );
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_owned())
    };
    if let Some(host) = bridge_nf("h1") {
        assert_eq!(bridge_nf("ul").as_deref(), Some("0"), "underlay");
        assert_eq!(host, "1", "h1 keeps the kernel's default");
    }

    // Masquerade: pod to outside is masqueraded (the underlay gateway has no route back to
    // pods, so its reply arrives only if the source was rewritten); pod to pod is not.
    let c = |node: &str, args: &[&str]| {
        let mut all = vec!["netns", "exec", &lab.ns(node)]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        all.extend(args.iter().map(|a| a.to_string()));
        Command::new("ip").args(&all).output().unwrap()
    };
    assert!(
        c("c1", &["ping", "-c", "1", "-W", "2", "192.168.77.254"])
            .status
            .success(),
        "pod reaches outside via masquerade"
    );
    let c1_addr = container_addr(&lab.subnet_of("h1"));
    let c2_addr = container_addr(&lab.subnet_of("h2"));
    let filter = format!("icmp and src host {c1_addr}");
    let seen = lab.capture_while_pinging("c2", &["-i", "eth0", &filter], "c1", &c2_addr);
    assert!(
        seen.contains(&format!("{c1_addr} > {c2_addr}")),
        "pod-to-pod keeps the source address: {seen}"
    );

    // A 4th host joins: every host routes to it and every pair pings.
    lab.ok(lab.lab(&["host", "add"], &[]), "host add");
    let h4 = lab.subnet_of("h4");
    for h in hosts {
        lab.wait_until(
            &format!("{h} routes to h4"),
            Duration::from_secs(10),
            || lab.weft_routes(h).contains(&h4),
        );
    }
    lab.ping_all(15);

    // An agent restart keeps its subnet and changes no route at all.
    let before = lab.subnet_of("h1");
    let routes_before = lab.weft_routes("h1");
    let mut monitor = monitor_routes(&lab, "h1");
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(lab.lab(&["agent"], &["h1", "restart"]), "agent restart");
    std::thread::sleep(Duration::from_secs(1));
    monitor.kill().unwrap();
    let events = text(&monitor.wait_with_output().unwrap().stdout);
    assert_eq!(events, "", "route events on h1 during its agent's restart");
    assert_eq!(lab.subnet_of("h1"), before, "subnet kept across restart");
    assert_eq!(lab.weft_routes("h1"), routes_before);
    assert!(lab.log("h1").contains("reused=true"));
    lab.ping_all(5);

    // Another tool sets FORWARD to DROP (as Docker does); Weft lets cluster traffic through.
    let h2 = lab.ns("h2");
    assert!(Command::new("ip")
        .args(["netns", "exec", &h2, "iptables", "-P", "FORWARD", "DROP"])
        .status()
        .unwrap()
        .success());
    lab.ok(lab.lab(&["agent"], &["h2", "restart"]), "agent restart");
    lab.ping_all(10);

    // Garbage in the store removes nothing: an unreadable lease over h3's, a broken config.
    let h3 = lab.subnet_of("h3");
    let h3_key = format!("/coreos.com/network/subnets/{}", h3.replace('/', "-"));
    let h3_lease = lab.ok(lab.store_cmd(&["store", "get", &h3_key]), "store get");
    lab.ok(
        lab.store_cmd(&["store", "put", &h3_key, "{not a lease"]),
        "store put",
    );
    lab.ok(
        lab.store_cmd(&[
            "store",
            "put",
            "/coreos.com/network/config",
            "{\"Network\": 12}",
        ]),
        "store put",
    );
    lab.wait_until(
        "h1 to warn about the bad lease",
        Duration::from_secs(10),
        || lab.log("h1").contains("skipping unreadable lease") && lab.log("h1").contains(&h3_key),
    );
    lab.wait_until(
        "h1 to reject the bad config",
        Duration::from_secs(10),
        || lab.log("h1").contains("config rejected"),
    );
    assert!(
        lab.weft_routes("h1").contains(&h3),
        "route to h3 kept despite its garbled lease"
    );
    lab.ping_all(5);
    lab.ok(
        lab.store_cmd(&["store", "put", &h3_key, h3_lease.trim()]),
        "restore lease",
    );
    let good = "{\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"host-gw\"}}";
    lab.ok(
        lab.store_cmd(&["store", "put", "/coreos.com/network/config", good]),
        "restore config",
    );

    // A reservation nobody has taken gets no route (as flannel's host-gw skips it), and
    // `leases` says so.
    lab.ok(
        lab.store_cmd(&[
            "leases",
            "reserve",
            "10.244.251.0/24",
            "--public-ip",
            "192.168.77.99",
        ]),
        "reserve",
    );
    lab.wait_until(
        "leases to report the untaken reservation",
        Duration::from_secs(10),
        || {
            let t = text(&lab.store_cmd(&["leases"]).stdout);
            t.lines().any(|l| {
                l.starts_with("10.244.251.0/24")
                    && l.contains("reserved")
                    && l.contains("has not taken it yet")
            })
        },
    );
    assert!(!lab.weft_routes("h1").contains("10.244.251.0"));
    lab.ok(
        lab.store_cmd(&["leases", "delete", "10.244.251.0/24"]),
        "delete reservation",
    );

    // A peer off the L2 segment gets no route, and both the log and `leases` say why.
    lab.ok(
        lab.store_cmd(&[
            "store",
            "put",
            "/coreos.com/network/subnets/10.244.250.0-24",
            r#"{"PublicIP":"172.16.0.9","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}"#,
        ]),
        "an off-segment peer's lease",
    );
    lab.wait_until(
        "leases to report the unreachable peer",
        Duration::from_secs(10),
        || {
            let t = text(&lab.store_cmd(&["leases"]).stdout);
            t.lines().any(|l| {
                l.starts_with("10.244.250.0/24")
                    && l.contains("unreachable from")
                    && l.contains("same L2 subnet")
            })
        },
    );
    // Every host reports the peer; `leases` may show another host's report before h1
    // has planned, so h1's own warning is waited for, not assumed.
    lab.wait_until(
        "h1 to log why the off-segment peer gets no route",
        Duration::from_secs(10),
        || lab.log("h1").contains("not on the same L2 subnet"),
    );
    assert!(
        !lab.weft_routes("h1").contains("10.244.250.0"),
        "no broken route to an off-segment peer"
    );
    lab.ok(
        lab.store_cmd(&["leases", "delete", "10.244.250.0/24"]),
        "delete the off-segment lease",
    );

    // A host leaves (its lease deleted): its route disappears everywhere.
    lab.ok(lab.lab(&["host", "remove"], &["h4"]), "host remove");
    for h in hosts {
        lab.wait_until(
            &format!("{h} drops its route to h4"),
            Duration::from_secs(10),
            || !lab.weft_routes(h).contains(&h4),
        );
    }
    lab.ping_all(5);

    // The store goes away for a while: every route stays; the agents pick up changes after.
    if store == "etcd" {
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("/run/weft-lab/{}/lab.json", lab.name)).unwrap(),
        )
        .unwrap();
        let pid = state["etcd_pid"].as_u64().unwrap().to_string();
        let s2 = lab.subnet_of("h2");
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(Duration::from_secs(3));
        for h in hosts {
            assert_eq!(
                lab.weft_routes(h).lines().count(),
                2,
                "{h} keeps its routes while etcd is away"
            );
        }
        lab.ping_all(0);
        // A route deleted by hand while etcd answers nothing is back within a second:
        // the agent's loop never waits on the store (its status, lease renewal, policy
        // re-reads and block releases run in tasks of their own).
        let del = lab.exec("h1", &["ip", "route", "del", &s2]);
        assert!(del.status.success(), "{}", text(&del.stderr));
        lab.wait_until(
            "h1's route to h2 back with etcd paused",
            Duration::from_secs(1),
            || lab.weft_routes("h1").contains(&s2),
        );
        assert!(Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
        let added = lab.ok(lab.lab(&["host", "add"], &[]), "host add after the outage");
        let new_host = added
            .split_whitespace()
            .nth(1)
            .expect("`added hN ...`")
            .to_owned();
        let subnet = lab.subnet_of(&new_host);
        for h in hosts {
            lab.wait_until(
                &format!("{h} routes to {new_host}"),
                Duration::from_secs(30),
                || lab.weft_routes(h).contains(&subnet),
            );
        }
    }

    // An agent whose store is unreachable at start says so and keeps retrying.
    let mut lonely = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("h1"),
            WEFTD,
            "--store=etcd",
            "--etcd-endpoints=http://127.0.0.1:9",
        ])
        .arg(format!(
            "--subnet-file=/run/weft-lab/{}/lonely.env",
            lab.name
        ))
        .arg(format!(
            "--api-socket=/run/weft-lab/{}/lonely.sock",
            lab.name
        ))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        lonely.try_wait().unwrap().is_none(),
        "agent keeps retrying instead of exiting"
    );
    lonely.kill().unwrap();
    let err = text(&lonely.wait_with_output().unwrap().stderr);
    assert!(
        err.contains("unreachable") && err.contains("retrying in"),
        "{err}"
    );

    // Down removes everything.
    let name = lab.name.clone();
    drop(lab);
    let left = text(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        !left.lines().any(|l| l.starts_with(&format!("{name}-"))),
        "namespaces left: {left}"
    );
    assert!(!std::path::Path::new(&format!("/run/weft-lab/{name}")).exists());
}

/// Short-lived leases are renewed without any route change; a lease that expires (its
/// agent frozen) takes its routes away everywhere, and comes back with the same subnet
/// when the agent resumes.
#[test]
fn leases_renew_expire_and_come_back() {
    require_root!("leases_renew_expire_and_come_back");
    let ttl = [
        "--agent-arg=--subnet-lease-ttl=4s",
        "--agent-arg=--subnet-lease-renew-margin=3s",
    ];
    let lab = Lab::up_with("r", "embedded", 2, &ttl);
    let (s1, s2) = (lab.subnet_of("h1"), lab.subnet_of("h2"));
    let mut monitor = monitor_routes(&lab, "h1");
    std::thread::sleep(Duration::from_secs(8));
    monitor.kill().unwrap();
    assert_eq!(
        text(&monitor.wait_with_output().unwrap().stdout),
        "",
        "renewals change no route"
    );
    assert!(
        lab.log("h1").contains("renewed subnet lease"),
        "h1 renewed:\n{}",
        lab.log("h1")
    );
    assert!(lab.weft_routes("h1").contains(&s2));
    lab.ping_all(0);

    let pid = std::fs::read_to_string(format!("/run/weft-lab/{}/h2/weftd.pid", lab.name))
        .unwrap()
        .trim()
        .to_owned();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    lab.wait_until(
        "h2's lease to expire and h1 to drop its route",
        Duration::from_secs(15),
        || !lab.weft_routes("h1").contains(&s2),
    );
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    lab.wait_until(
        "h2 to claim its subnet again and h1 to route to it",
        Duration::from_secs(15),
        || lab.weft_routes("h1").contains(&s2),
    );
    assert_eq!(lab.subnet_of("h2"), s2, "same subnet after expiry");
    assert_eq!(lab.subnet_of("h1"), s1);
    lab.ping_all(10);
}

#[test]
fn host_gw_lab_on_embedded_store() {
    require_root!("host_gw_lab_on_embedded_store");
    scenario("e", "embedded");
}

#[test]
fn host_gw_lab_on_etcd() {
    require_root!("host_gw_lab_on_etcd");
    scenario("k", "etcd");
}
