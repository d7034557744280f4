//! End to end, in network namespaces: a lab on a real three-member etcd cluster
//! (`lab up --etcd-members 3`, each member in a namespace of its own on the underlay),
//! the agents given every member's endpoint. Judged by etcd itself (which member
//! leads, from each member's own status) and by the kernel: with the leader killed
//! while the agents run, no route is removed on any host (`ip monitor`), a lease
//! written afterwards reaches every host's routes (the agents' watches go on through
//! the other members), `weftctl` and a restarted agent work through the survivors,
//! and the killed member, started again, follows the new leader. A member paused
//! (partitioned) holds up no change for long. With all three killed
//! for 30 s the routes stay, and an agent started during the outage is ready within 5 s
//! of their return.
//!
//! Needs root (namespaces) and etcd; the lab is torn down by a guard.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use weft_testkit::require_root;

/// Member `n`'s own status (`/v3/maintenance/status` through etcd's gRPC gateway), read
/// inside its namespace: its id and the leader it follows.
fn status(lab: &Lab, n: u32) -> Option<(String, String)> {
    let url = format!("http://192.168.77.24{n}:2379/v3/maintenance/status");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(&format!("e{n}"))])
        .args(["curl", "-s", "-m", "2", "-X", "POST", &url, "-d", "{}"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        v["header"]["member_id"].as_str()?.to_owned(),
        v["leader"].as_str()?.to_owned(),
    ))
}

/// The member every live member names as leader, once they agree.
fn leader(lab: &Lab, members: &[u32]) -> Option<u32> {
    let seen: Vec<(u32, String, String)> = members
        .iter()
        .filter_map(|&n| status(lab, n).map(|(id, leader)| (n, id, leader)))
        .collect();
    let (_, _, lead) = seen.first()?;
    if seen.len() != members.len() || seen.iter().any(|(_, _, l)| l != lead) {
        return None;
    }
    seen.iter()
        .find(|(_, id, _)| id == lead)
        .map(|(n, _, _)| *n)
}

fn monitor(lab: &Lab, host: &str) -> Child {
    Command::new("ip")
        .args(["-n", &lab.ns(host), "monitor", "route"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Writes a lease for `subnet` (a peer at `via`) through `weftctl`, and waits until
/// every host routes to it: the agents' watches delivered it.
fn lease_reaches_every_host(lab: &Lab, subnet: &str, via: &str, when: &str, within: u64) {
    let key = format!("/coreos.com/network/subnets/{}", subnet.replace('/', "-"));
    let value = format!(r#"{{"PublicIP":"{via}","BackendType":"host-gw"}}"#);
    lab.ok(
        lab.store_cmd(&["store", "put", &key, &value]),
        &format!("store put {when}"),
    );
    lab.wait_until(
        &format!("every host to route to the lease written {when}"),
        Duration::from_secs(within),
        || {
            ["h1", "h2", "h3"].iter().all(|h| {
                text(&lab.exec(h, &["ip", "route", "show", subnet]).stdout)
                    .contains(&format!("via {via}"))
            })
        },
    );
}

/// Stops the route monitors and fails if any saw a Weft route removed.
fn no_route_removed(monitors: Vec<(&str, Child)>, when: &str) {
    for (h, mut m) in monitors {
        let _ = m.kill();
        let seen = text(&m.wait_with_output().unwrap().stdout);
        assert!(
            !seen
                .lines()
                .any(|l| l.starts_with("Deleted") && l.contains("proto 77")),
            "{h} lost a Weft route {when}:\n{seen}"
        );
    }
}

#[test]
fn the_etcd_leader_killed_removes_no_route_and_the_cluster_goes_on() {
    require_root!(
        "lab_etcd_cluster::the_etcd_leader_killed_removes_no_route_and_the_cluster_goes_on"
    );
    // Which member leads is read with curl: as root a missing one fails, named.
    common::docker::require_tool("lab_etcd_cluster", "curl", "curl");
    let lab = Lab::up_with(
        "ec",
        "etcd",
        3,
        &["--backend", "host-gw", "--etcd-members", "3"],
    );
    lab.ping_all(5);
    let mut lead = None;
    lab.wait_until(
        "the members to agree on a leader",
        Duration::from_secs(10),
        || {
            lead = leader(&lab, &[1, 2, 3]);
            lead.is_some()
        },
    );
    let lead = lead.unwrap();
    let monitors: Vec<(&str, Child)> = ["h1", "h2", "h3"]
        .into_iter()
        .map(|h| (h, monitor(&lab, h)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    lab.ok(
        lab.lab(&["etcd"], &["stop", "--member", &lead.to_string()]),
        "etcd stop --member",
    );
    let rest: Vec<u32> = [1, 2, 3].into_iter().filter(|&n| n != lead).collect();
    lab.wait_until(
        "a new leader among the others",
        Duration::from_secs(15),
        || leader(&lab, &rest).is_some_and(|l| l != lead),
    );
    // A lease written through the survivors reaches every host: the watches go on.
    lease_reaches_every_host(
        &lab,
        "10.244.250.0/24",
        "192.168.77.199",
        "after the leader's loss",
        10,
    );
    // weftctl and a restarting agent work through the survivors: every command, not
    // only those the client's balancer happens to send to a live member first (before
    // the resend about one in five failed with the leader down).
    for i in 0..10 {
        lab.ok(
            lab.store_cmd(&["store", "get", "/coreos.com/network/config"]),
            &format!("store get {i} with a member down"),
        );
    }
    let leases = lab.ok(lab.store_cmd(&["leases"]), "leases");
    assert!(leases.contains("10.244.250.0/24"), "{leases}");
    lab.ok(lab.lab(&["agent"], &["h2", "restart"]), "agent restart");
    lab.ping_all(5);

    no_route_removed(monitors, "while etcd's leader was down");

    // The member started again rejoins and follows the new leader.
    lab.ok(
        lab.lab(&["etcd"], &["start", "--member", &lead.to_string()]),
        "etcd start --member",
    );
    lab.wait_until(
        "the three members to agree again",
        Duration::from_secs(15),
        || leader(&lab, &[1, 2, 3]).is_some(),
    );

    // A paused member (SIGSTOP: it holds its connections and answers nothing, as a
    // partitioned one): a lease written meanwhile still reaches every host (an agent
    // whose watch was on it reconnects to another member when its keep-alive fails),
    // and no route is removed.
    let mut lead = None;
    lab.wait_until("a leader to pause", Duration::from_secs(10), || {
        lead = leader(&lab, &[1, 2, 3]);
        lead.is_some()
    });
    let lead = lead.unwrap().to_string();
    let monitors: Vec<(&str, Child)> = ["h1", "h2", "h3"]
        .into_iter()
        .map(|h| (h, monitor(&lab, h)))
        .collect();
    lab.ok(
        lab.lab(&["etcd"], &["pause", "--member", &lead]),
        "etcd pause",
    );
    lease_reaches_every_host(
        &lab,
        "10.244.251.0/24",
        "192.168.77.198",
        "with a member paused",
        40,
    );
    lab.ok(
        lab.lab(&["etcd"], &["resume", "--member", &lead]),
        "etcd resume",
    );
    no_route_removed(monitors, "while a member was paused");

    // Every member down for 30 s: the routes stay, and an agent started during the
    // outage is ready within 5 s of the members' return.
    let weft_routes = |h: &str| text(&lab.exec(h, &["ip", "route", "show", "proto", "77"]).stdout);
    let before: Vec<String> = ["h1", "h3"].iter().map(|h| weft_routes(h)).collect();
    lab.ok(lab.lab(&["etcd"], &["stop"]), "etcd stop, every member");
    lab.ok(lab.lab(&["agent"], &["h2", "stop"]), "agent stop");
    // Started halfway through (`lab agent start` waits 30 s for it to be ready).
    std::thread::sleep(Duration::from_secs(15));
    let late = std::thread::scope(|s| {
        let restarted = s.spawn(|| {
            let out = lab.lab(&["agent"], &["h2", "start"]);
            (out, Instant::now())
        });
        std::thread::sleep(Duration::from_secs(15));
        let back = Instant::now();
        lab.ok(lab.lab(&["etcd"], &["start"]), "etcd start, every member");
        let (out, ready) = restarted.join().unwrap();
        lab.ok(out, "agent start during the outage");
        ready.saturating_duration_since(back)
    });
    eprintln!("the agent started during the outage was ready {late:?} after the members returned");
    assert!(
        late < Duration::from_secs(5),
        "ready only {late:?} after the members returned"
    );
    let after: Vec<String> = ["h1", "h3"].iter().map(|h| weft_routes(h)).collect();
    assert_eq!(after, before, "the routes stayed through the outage");
    lab.ping_all(5);
}

/// The option is checked before anything is made.
#[test]
fn etcd_members_need_etcd_and_an_odd_count() {
    require_root!("lab_etcd_cluster::etcd_members_need_etcd_and_an_odd_count");
    let ctl = |args: &[&str]| Command::new(WEFTCTL).args(args).output().unwrap();
    let out = ctl(&["lab", "up", "--name", "ecbad", "--etcd-members", "3"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--etcd-members is for --store etcd"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl(&[
        "lab",
        "up",
        "--name",
        "ecbad",
        "--store",
        "etcd",
        "--etcd-members",
        "2",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("give an odd number"),
        "{}",
        text(&out.stderr)
    );
}
