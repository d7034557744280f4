//! End to end, in network namespaces: BIG TCP (`weftd --big-tcp`) on the host-gw backend.
//!
//! Two hosts; the agents raise their external interfaces' IPv4 GSO limit and publish it
//! in the subnet file, the CNI plugin sets it on the containers' links and the bridge.
//! The proof that every hop carries it: TCP frames larger than 64 KiB are captured as
//! the sending container sends them, on the underlay between the hosts (the underlay
//! bridge's port to host 2, where no receiver's GRO can have made them) and inside the
//! receiving container (any link on the way that lacked the limit would have cut them
//! to MTU size), and a 100 MB copy arrives intact.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;
use weft_testkit::require_root;

use common::*;

/// The largest frame length in tcpdump's `-e` output (`..., length N: ...`).
fn largest_frame(dump: &str) -> u32 {
    dump.split("length ")
        .skip(1)
        .filter_map(|rest| rest.split(':').next()?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn super_packets_cross_every_hop_and_data_arrives_intact() {
    require_root!("super_packets_cross_every_hop_and_data_arrives_intact");
    let lab = Lab::up_with(
        "bt",
        "embedded",
        2,
        &["--backend", "host-gw", "--agent-arg=--big-tcp"],
    );
    for host in ["h1", "h2"] {
        let env = std::fs::read_to_string(format!("/run/weft-lab/{}/{host}/subnet.env", lab.name))
            .unwrap();
        assert!(
            env.contains("FLANNEL_MTU=1500\n") && env.contains("WEFT_GSO_MAX_SIZE=196608\n"),
            "{host}'s subnet file:\n{env}"
        );
        assert!(
            lab.log(host).contains("BIG TCP on"),
            "{host}: {}",
            lab.log(host)
        );
    }
    let c2 = container_addr(&lab.subnet_of("h2"));

    // Frames over 64 KiB only, at the sender, on the underlay and at the receiver:
    // each tcpdump stops at its first one.
    let capture = |netns: String, iface: &str| {
        Command::new("ip")
            .args(["netns", "exec", &netns, "timeout", "60"])
            .args(["tcpdump", "-l", "-n", "-e", "-c", "1", "-i", iface])
            .args(["tcp and greater 65600"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let points = [
        ("the sending container", capture(lab.ns("c1"), "eth0")),
        ("the underlay (its port to h2)", capture(lab.ns("ul"), "h2")),
        ("the receiving container", capture(lab.ns("c2"), "eth0")),
    ];
    std::thread::sleep(Duration::from_millis(800));
    big_copy_arrives_intact(&lab, &c2);
    for (at, dump) in points {
        let dump = text(&dump.wait_with_output().unwrap().stdout);
        assert!(
            largest_frame(&dump) > 65_536,
            "no super-packet over 64 KiB at {at}: {dump:?}"
        );
    }
    lab.ping_all(5);
}

#[test]
fn frame_lengths_are_read_from_tcpdump() {
    let line = "10:23:28.233726 3a:02:a6:76:7d:bb > 52:aa:95:8b:69:2c, ethertype IPv4 (0x0800), \
                length 131138: bad-len 0\n";
    assert_eq!(largest_frame(line), 131_138);
    assert_eq!(largest_frame(""), 0);
}
