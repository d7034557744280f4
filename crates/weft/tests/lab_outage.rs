//! A store outage longer than every client timeout, end to end: a 3-host host-gw lab on
//! etcd under continuous pings has its etcd killed (not paused) for 20 s, longer than
//! the etcd client's 10 s request timeout and its 10 s + 5 s keep-alive, so every agent
//! sees its store fail. One agent is restarted as the outage begins. No host changes a
//! route, no ping is lost, the restarted agent is ready within 5 s of etcd's return, and
//! a host added afterwards reaches every other container within 5 s.
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
