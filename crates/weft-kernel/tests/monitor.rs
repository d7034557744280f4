//! The kernel event monitor in a network namespace of the test's own: Weft's own route
//! changes wake nobody (additions filtered in the kernel, removals by port), while a
//! Weft route deleted by hand does. Needs root; skipped with one line otherwise.

use std::time::Duration;

use weft_kernel::monitor::KernelEvent;
use weft_kernel::prelude::*;
use weft_kernel::Linux;
use weft_plan::Route;
use weft_testkit::netns::{in_netns, sh};
use weft_testkit::require_root;

/// The next event within `ms`, if any.
async fn next(rx: &mut tokio::sync::mpsc::Receiver<KernelEvent>, ms: u64) -> Option<KernelEvent> {
    tokio::time::timeout(Duration::from_millis(ms), rx.recv())
        .await
        .ok()
        .flatten()
}

#[test]
fn own_route_changes_are_quiet_and_deletions_by_hand_are_not() {
    require_root!("own_route_changes_are_quiet_and_deletions_by_hand_are_not");
    in_netns("kmon", |name| async move {
        let k = Linux::connect().unwrap();
        let dev = k.link_index("eth0").await.unwrap().unwrap();
        let mut events = k.watch().unwrap();
        let want: Vec<Route> = (0..500)
            .map(|i| {
                let dst: ipnet::Ipv4Net =
                    format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap();
                Route::via(
                    dst,
                    "192.168.0.2".parse::<std::net::Ipv4Addr>().unwrap(),
                    dev,
                )
            })
            .collect();
        let r = k.apply_routes(&want).await.unwrap();
        assert_eq!(r.applied.added, 500);
        assert_eq!(next(&mut events, 300).await, None, "own additions");
        let r = k.apply_routes(&want[..400]).await.unwrap();
        assert_eq!(r.applied.removed, 100);
        assert_eq!(next(&mut events, 300).await, None, "own removals");
        sh(&[
            "ip",
            "-n",
            &name,
            "route",
            "add",
            "172.16.0.0/24",
            "via",
            "192.168.0.2",
        ]);
        assert_eq!(next(&mut events, 300).await, None, "not Weft's route");
        // Filtered in the kernel (another process's port): additions with
        // Weft's protocol are left to the periodic resync.
        sh(&[
            "ip",
            "-n",
            &name,
            "route",
            "add",
            "172.16.1.0/24",
            "via",
            "192.168.0.2",
            "proto",
            "77",
        ]);
        assert_eq!(next(&mut events, 300).await, None, "additions are filtered");
        sh(&["ip", "-n", &name, "route", "del", "10.0.7.0/24"]);
        assert_eq!(
            next(&mut events, 2000).await,
            Some(KernelEvent::Route),
            "a Weft route deleted by hand"
        );
    })
}
