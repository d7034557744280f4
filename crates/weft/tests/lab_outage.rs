//! A store outage longer than every client timeout, end to end: a 3-host host-gw lab on
//! etcd under continuous pings has its etcd killed (not paused) for 20 s, longer than
//! the etcd client's 10 s request timeout and its 10 s + 5 s keep-alive, so every agent
//! sees its store fail. One agent is restarted as the outage begins. No host changes a
//! route, no ping is lost, the restarted agent is ready within 5 s of etcd's return, and
//! a host added afterwards reaches every other container within 5 s. And a paused etcd,
//! whose requests hang instead of failing, holds up no repair.
//!
//! Needs root; skipped with one line otherwise.

mod common;

use std::time::{Duration, Instant};

use weft_testkit::require_root;

use common::*;

#[test]
fn a_store_killed_for_longer_than_every_client_timeout_costs_no_traffic() {
    require_root!("a_store_killed_for_longer_than_every_client_timeout_costs_no_traffic");
    let lab = Lab::up("so", "etcd", 3);
    lab.ping_all(0);
    let addr = |h: &str| container_addr(&lab.subnet_of(h));
    let pings = [
        Pinger::start(&lab, "c1", &addr("h2")),
        Pinger::start(&lab, "c2", &addr("h3")),
        Pinger::start(&lab, "c3", &addr("h1")),
    ];
    let watches: Vec<_> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| KernelWatch::start(&lab, h))
        .collect();

    lab.ok(lab.lab(&["etcd"], &["stop"]), "etcd stop");
    lab.ok(lab.lab(&["agent"], &["h2", "stop"]), "agent stop");
    let etcd_back = std::thread::scope(|s| {
        // Started right after the store went: it retries for the whole outage, long
        // enough for an unbounded backoff to grow past the store's return.
        let restarted = s.spawn(|| {
            let out = lab.lab(&["agent"], &["h2", "start"]);
            (out, Instant::now())
        });
        std::thread::sleep(Duration::from_secs(20));
        for h in ["h1", "h3"] {
            assert!(
                lab.log(h).contains("etcd watch interrupted"),
                "{h}'s agent saw no store failure:\n{}",
                lab.log(h)
            );
        }
        // Diagnose with the store down: what it can check locally, the rest skipped.
        let d = lab.store_cmd(&["diagnose", "--host", "h1"]);
        let report = text(&d.stdout);
        assert_eq!(d.status.code(), Some(1), "{report}{}", text(&d.stderr));
        assert!(
            report.contains("FAIL  store") && report.contains("unreachable"),
            "{report}"
        );
        assert!(
            report.contains("ok    forwarding") && report.contains("ok    firewall"),
            "{report}"
        );
        assert!(
            report.contains("skip  lease        needs the store"),
            "{report}"
        );
        assert!(!report.contains("tonic"), "{report}");
        let back = Instant::now();
        lab.ok(lab.lab(&["etcd"], &["start"]), "etcd start");
        let (out, ready) = restarted.join().unwrap();
        lab.ok(out, "agent start during the outage");
        let late = ready.duration_since(back);
        eprintln!("the agent started during the outage was ready {late:?} after etcd returned");
        assert!(
            late < Duration::from_secs(5),
            "ready only {late:?} after the store returned"
        );
        back
    });
    assert_no_ping_lost(pings, 300);
    assert_kernels_quiet(&["h1", "h2", "h3"], watches);

    // A host that joins after the outage reaches everyone, and everyone reaches it.
    lab.ok(lab.lab(&["host", "add"], &[]), "host add");
    let joined = Instant::now();
    lab.ping_all(5);
    eprintln!(
        "h4 reached every container {:?} after it joined ({:?} after etcd's return)",
        joined.elapsed(),
        etcd_back.elapsed()
    );
}

/// A paused etcd (SIGSTOP: it accepts connections and answers nothing, so every request
/// waits for the client's 10 s timeout) holds up no repair. The agents renew their
/// leases every 2 s (an 8 s TTL), so a renewal is waiting on the paused store when a
/// route is deleted by hand; the agent's loop runs on, and the route is back within a
/// second. (An agent that asked the store from its loop would wait until etcd answers.)
#[test]
fn a_paused_store_holds_up_no_repair() {
    require_root!("a_paused_store_holds_up_no_repair");
    let ttl = [
        "--agent-arg=--subnet-lease-ttl=8s",
        "--agent-arg=--subnet-lease-renew-margin=6s",
    ];
    let lab = Lab::up_with("sp", "etcd", 2, &ttl);
    lab.ping_all(0);
    let s2 = lab.subnet_of("h2");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/weft-lab/{}/lab.json", lab.name)).unwrap(),
    )
    .unwrap();
    let pid = state["etcd_pid"].as_u64().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    lab.wait_until("h1 to renew its lease", Duration::from_secs(10), || {
        lab.log("h1").contains("renewed subnet lease")
    });
    signal("-STOP");
    // Past one renewal tick: a renewal now waits on the paused store.
    std::thread::sleep(Duration::from_millis(2500));
    let del = lab.exec("h1", &["ip", "route", "del", &s2]);
    let deleted = Instant::now();
    let back = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        lab.weft_routes("h1").contains(&s2)
    });
    let took = deleted.elapsed();
    signal("-CONT");
    assert!(del.status.success(), "{}", text(&del.stderr));
    assert!(
        back,
        "h1's route to h2 not back within 1 s with etcd paused"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    lab.ping_all(5);
}
