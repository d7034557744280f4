//! The kernel event monitor in a network namespace of the test's own: Weft's own route
//! changes wake nobody (additions filtered in the kernel, removals by port), while a
//! Weft route deleted by hand does.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use weft_kernel::monitor::{self, KernelEvent};
use weft_kernel::{Kernel, Route};

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The next event within `ms`, if any.
async fn next(rx: &mut tokio::sync::mpsc::Receiver<KernelEvent>, ms: u64) -> Option<KernelEvent> {
    tokio::time::timeout(Duration::from_millis(ms), rx.recv())
        .await
        .ok()
        .flatten()
}

#[test]
fn own_route_changes_are_quiet_and_deletions_by_hand_are_not() {
    let ns = Ns(format!("t{}kmon", std::process::id() % 100_000));
    sh(&["ip", "netns", "add", &ns.0]);
    sh(&[
        "ip", "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns.0,
        "addr",
        "add",
        "192.168.0.1/16",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &ns.0, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &ns.0, "link", "set", "eth1", "up"]);
    let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
    let name = ns.0.clone();
    std::thread::spawn(move || {
        // SAFETY: this thread only, into a namespace whose file we hold open.
        assert_eq!(unsafe { setns(file.as_raw_fd(), 0x4000_0000) }, 0);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let k = Kernel::connect().unwrap();
                let dev = k.link_index("eth0").await.unwrap().unwrap();
                let mut events = monitor::watch().unwrap();
                let want: Vec<Route> = (0..500)
                    .map(|i| Route {
                        dst: format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap(),
                        via: Some("192.168.0.2".parse().unwrap()),
                        dev,
                        onlink: false,
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
    })
    .join()
    .unwrap();
}
