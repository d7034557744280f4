//! Leases an operator may not take from a running node by accident: `leases reserve`
//! and `leases delete` refuse a live lease of another node unless `--force`, naming the
//! holder; once forced, the node that lost its subnet says so in `/healthz` (503) and in
//! `weftctl diagnose`, keeps its routes, and takes its subnet back when the foreign lease
//! is deleted.
//!
//! Needs root; skipped with one line otherwise.

mod common;

use std::time::Duration;

use weft_testkit::require_root;

use common::*;

#[test]
fn a_live_lease_is_not_taken_by_accident() {
    require_root!("a_live_lease_is_not_taken_by_accident");
    let lab = Lab::up("ls", "embedded", 2);
    let h1 = lab.subnet_of("h1");
    let c1 = container_addr(&h1);

    let reserve = lab.store_cmd(&["leases", "reserve", &h1, "--public-ip", "192.168.77.9"]);
    assert_eq!(reserve.status.code(), Some(1));
    let why = text(&reserve.stderr);
    assert!(
        why.contains(&format!("{h1} is held by 192.168.77.1 (a live lease"))
            && why.contains("--force"),
        "{why}"
    );
    let delete = lab.store_cmd(&["leases", "delete", &h1]);
    assert_eq!(delete.status.code(), Some(1));
    assert!(
        text(&delete.stderr).contains("held by 192.168.77.1"),
        "{}",
        text(&delete.stderr)
    );
    assert_eq!(lab.agent_http("h1", "/healthz").0, 200);

    // Forced: h1 is told, and says so; its routes stay.
    lab.ok(
        lab.store_cmd(&[
            "leases",
            "reserve",
            &h1,
            "--public-ip",
            "192.168.77.9",
            "--force",
        ]),
        "forced reserve",
    );
    lab.wait_until("h1 to report not ready", Duration::from_secs(10), || {
        let (code, body) = lab.agent_http("h1", "/healthz");
        code == 503 && body.contains(&format!("subnet {h1} is now leased to 192.168.77.9"))
    });
    let diagnose = lab.store_cmd(&["diagnose", "--host", "h1"]);
    assert_eq!(diagnose.status.code(), Some(1));
    let report = text(&diagnose.stdout);
    assert!(report.contains(&format!("this node's subnet {h1} (from its subnet file) is now leased to 192.168.77.9 as a reservation")), "{report}");
    assert!(lab.log("h1").contains("is now leased to 192.168.77.9"));
    let h2 = lab.subnet_of("h2");
    assert!(lab.weft_routes("h1").contains(&h2), "h1 keeps its routes");

    // The documented way back: delete the foreign lease (a reservation: no --force).
    lab.ok(
        lab.store_cmd(&["leases", "delete", &h1]),
        "delete the reservation",
    );
    lab.wait_until("h1 to be ready again", Duration::from_secs(15), || {
        lab.agent_http("h1", "/healthz").0 == 200
    });
    lab.wait_until(
        "h1 to hold its subnet again",
        Duration::from_secs(10),
        || {
            text(&lab.store_cmd(&["leases"]).stdout)
                .lines()
                .any(|l| l.starts_with(&h1) && l.contains("192.168.77.1"))
        },
    );
    assert!(lab.ping_from("c2", &c1, 3));
    let diagnose = lab.store_cmd(&["diagnose", "--host", "h1"]);
    assert_eq!(
        diagnose.status.code(),
        Some(0),
        "{}",
        text(&diagnose.stdout)
    );
}
