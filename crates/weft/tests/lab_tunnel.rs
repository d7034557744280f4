//! End to end, in network namespaces: the user-space tunnel backends, `udp` (flannel's
//! wire format) and `ipip` in user space (RFC 2003 IP-in-IP over TUN and a raw socket:
//! the agent's fallback where the kernel has no `ipip` module, asked for explicitly
//! where it has one), and, on a kernel that has the module, `ipip` in the kernel.
//!
//! For each: 3 hosts, every pair pings; a 100 MB TCP copy arrives intact (SHA-256
//! compared); a packet for a subnet no node holds is answered with ICMP net-unreachable;
//! a packet on the wire is captured and checked byte by byte against the format (UDP to
//! port 8285 carrying the bare inner packet; RFC 2003's outer header); an encapsulated
//! packet from a non-member is dropped and counted while a member's is taken; the TUN
//! deleted by hand comes back; an agent restart changes no route; a peer that leaves is
//! unreachable everywhere at once. In cross-subnet mode (ipip), same-subnet peers get
//! plain routes and only the others go through the tunnel.

mod common;

use std::time::Duration;
use weft_testkit::require_root;

use common::*;

/// An encapsulated ICMP echo to `to`, sent from `from_node` to h1: as UDP to 8285 or as
/// protocol 4 (the kernel adds the outer header).
fn inject(lab: &Lab, from_node: &str, backend: &str, to: &str) {
    let script = format!(
        r#"
import socket, struct
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
icmp = struct.pack("!BBHHH", 8, 0, 0, 77, 1) + b"weft-inject"
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                 socket.inet_aton("10.244.0.5"), socket.inet_aton("{to}"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
if "{backend}" == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(ip + icmp, ("192.168.77.1", 8285))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4); s.sendto(ip + icmp, ("192.168.77.1", 0))
"#
    );
    let out = lab.exec(from_node, &["python3", "-c", &script]);
    assert!(out.status.success(), "inject: {}", text(&out.stderr));
}

/// Captures one encapsulated packet on h2's underlay interface while c1 pings c2; returns
/// the outer IP packet's bytes (from tcpdump's hex dump, which starts at the IP header).
fn capture(lab: &Lab, filter: &str, c2_addr: &str) -> Vec<u8> {
    let out = lab.capture_while_pinging(
        "h2",
        &["-x", "-s", "0", "-i", "eth0", filter],
        "c1",
        c2_addr,
    );
    // Lines like "\t0x0010:  c0a8 4d02 ..." hold the bytes.
    let bytes: Vec<u8> = out
        .lines()
        .filter_map(|l| l.trim().split_once(":  "))
        .filter(|(off, _)| off.starts_with("0x"))
        .flat_map(|(_, hex)| {
            hex.split_whitespace()
                .flat_map(|w| {
                    (0..w.len())
                        .step_by(2)
                        .map(move |i| u8::from_str_radix(&w[i..i + 2], 16).unwrap())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(bytes.len() > 48, "captured nothing for {filter}:\n{out}");
    bytes
}

fn ones_complement_ok(b: &[u8]) -> bool {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// The inner packet must be c1's ICMP echo to c2, untouched.
fn check_inner(inner: &[u8], c1: &str, c2: &str) {
    assert_eq!(inner[0], 0x45, "inner IPv4");
    assert_eq!(inner[9], 1, "inner ICMP");
    assert_eq!(
        std::net::Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]).to_string(),
        c1
    );
    assert_eq!(
        std::net::Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]).to_string(),
        c2
    );
    assert!(ones_complement_ok(&inner[..20]), "inner header checksum");
    assert_eq!(inner[20], 8, "echo request");
}

/// Whether this kernel can make IP-in-IP links (the module is built in or loadable).
fn kernel_has_ipip() -> bool {
    std::path::Path::new("/sys/module/ipip").exists()
        || std::process::Command::new("modprobe")
            .args(["-n", "-q", "ipip"])
            .status()
            .is_ok_and(|s| s.success())
}

fn tunnel_end_to_end(tag: &str, backend: &str) {
    // Where the kernel has IP-in-IP the agent would use it; the user-space path is
    // asked for explicitly there, so this test covers it on every kernel.
    let mut args = vec!["--backend", backend];
    if backend == "ipip" && kernel_has_ipip() {
        args.push("--agent-arg=--ipip-mode=user-space");
    }
    let lab = Lab::up_with(tag, "embedded", 3, &args);
    let log = lab.log("h1");
    assert!(log.contains("user-space tunnel running"), "{log}");
    if backend == "ipip" && !kernel_has_ipip() {
        assert!(
            log.contains("running IP-in-IP in user space"),
            "no ipip module here: the agent falls back\n{log}"
        );
    }
    let (c1, c2, c3) = (
        container_addr(&lab.subnet_of("h1")),
        container_addr(&lab.subnet_of("h2")),
        container_addr(&lab.subnet_of("h3")),
    );
    let mtu = text(&lab.exec("c1", &["cat", "/sys/class/net/eth0/mtu"]).stdout);
    assert_eq!(mtu.trim(), if backend == "udp" { "1472" } else { "1480" });
    let routes = lab.weft_routes("h1");
    assert_eq!(
        routes.trim(),
        "10.244.0.0/16 dev weft0 scope link",
        "one route into the TUN"
    );

    big_copy_arrives_intact(&lab, &c2);

    // The wire format, from a capture on the receiving host's underlay interface.
    if backend == "udp" {
        let outer = capture(&lab, "udp dst port 8285 and src host 192.168.77.1", &c2);
        assert_eq!(outer[9], 17);
        assert_eq!(
            u16::from_be_bytes([outer[22], outer[23]]),
            8285,
            "flannel's udp port"
        );
        check_inner(&outer[28..], &c1, &c2);
    } else {
        let outer = capture(&lab, "ip proto 4 and src host 192.168.77.1", &c2);
        // RFC 2003 section 3.1, filled as Linux's ipip device does by default.
        assert_eq!(outer[0], 0x45, "version 4, IHL 5: no options");
        assert_eq!(outer[1] & 0xfc, 0, "TOS 0");
        let total = u16::from_be_bytes([outer[2], outer[3]]) as usize;
        let inner_total = u16::from_be_bytes([outer[22], outer[23]]) as usize;
        assert_eq!(total, 20 + inner_total, "outer length = 20 + inner length");
        assert_eq!(outer[6] & 0x40, 0x40, "DF set");
        assert_eq!(outer[9], 4, "protocol 4: IP in IP");
        assert_eq!(outer[8], outer[28], "TTL copied from the inner packet");
        assert_eq!(
            &outer[12..20],
            &[192, 168, 77, 1, 192, 168, 77, 2],
            "tunnel end points"
        );
        assert!(ones_complement_ok(&outer[..20]), "outer header checksum");
        check_inner(&outer[20..], &c1, &c2);
    }

    // No node holds 10.244.0.0/24 (SubnetMin is the second subnet).
    let unreachable = lab.exec(
        "c1",
        &["ping", "-c", "3", "-i", "0.3", "-W", "2", "10.244.0.9"],
    );
    let said = text(&unreachable.stdout);
    assert!(said.contains("Destination Net Unreachable"), "{said}");
    assert!(lab.metric("h1", "weft_tunnel_unreachable_sent_total") >= 1);

    // A non-member (the underlay router) is dropped and counted; a member (h2) is not.
    let dropped = lab.metric("h1", "weft_tunnel_dropped_nonmember_total");
    let received = lab.metric("h1", "weft_tunnel_rx_packets_total");
    inject(&lab, "ul", backend, &c1);
    lab.wait_until(
        "the non-member's packet to be dropped",
        Duration::from_secs(5),
        || lab.metric("h1", "weft_tunnel_dropped_nonmember_total") > dropped,
    );
    inject(&lab, "h2", backend, &c1);
    lab.wait_until(
        "the member's packet to be taken",
        Duration::from_secs(5),
        || lab.metric("h1", "weft_tunnel_rx_packets_total") > received,
    );
    assert_eq!(
        lab.metric("h1", "weft_tunnel_dropped_nonmember_total"),
        dropped + 1
    );

    // The TUN deleted by hand comes back and carries traffic again within two seconds
    // (docs/backends/udp.md: "within a second or two").
    lab.exec("h1", &["ip", "link", "del", "weft0"]);
    let t = std::time::Instant::now();
    lab.wait_until("weft0 to come back", Duration::from_secs(2), || {
        lab.exec("h1", &["ip", "link", "show", "weft0"])
            .status
            .success()
            && lab.ping_from("c1", &c2, 1)
    });
    eprintln!("TUN repaired and carrying traffic in {:?}", t.elapsed());
    assert!(
        lab.log("h1").contains("repaired overlay device"),
        "{}",
        lab.log("h1")
    );

    // An agent restart changes no route (the TUN is persistent, its route stays).
    let watch = KernelWatch::start(&lab, "h1");
    lab.ok(lab.lab(&["agent"], &["h1", "restart"]), "agent restart");
    lab.ping_all(10);
    std::thread::sleep(Duration::from_secs(1));
    let changes: Vec<String> = watch
        .stop()
        .into_iter()
        .filter(|l| l.contains("proto 77"))
        .collect();
    assert!(changes.is_empty(), "restart changed routes: {changes:?}");

    // A peer that leaves: its subnet is answered as unreachable right away, from every
    // remaining container.
    lab.ok(lab.lab(&["host", "remove"], &["h3"]), "host remove");
    lab.wait_until(
        "h3's subnet to be unknown on h2",
        Duration::from_secs(10),
        || {
            let out = lab.exec("c2", &["ping", "-c", "1", "-W", "1", &c3]);
            text(&out.stdout).contains("Destination Net Unreachable")
        },
    );
    lab.wait_until(
        "h3's subnet to be unknown on h1",
        Duration::from_secs(10),
        || {
            let out = lab.exec("c1", &["ping", "-c", "1", "-W", "1", &c3]);
            text(&out.stdout).contains("Destination Net Unreachable")
        },
    );
    assert!(
        lab.ping_from("c1", &c2, 3),
        "the others still reach each other"
    );
}

#[test]
fn udp_backend_end_to_end() {
    require_root!("udp_backend_end_to_end");
    tunnel_end_to_end("udp", "udp");
}

#[test]
fn ipip_in_user_space_end_to_end() {
    require_root!("ipip_in_user_space_end_to_end");
    tunnel_end_to_end("ipp", "ipip");
}

#[test]
fn ipip_cross_subnet_routes_neighbours_directly() {
    require_root!("ipip_cross_subnet_routes_neighbours_directly");
    // h1, h3 on 192.168.77.0/24; h2, h4 on 192.168.78.0/24 (Calico's IPIP CrossSubnet).
    let lab = Lab::up_with(
        "ipx",
        "embedded",
        4,
        &["--backend", "ipip", "--subnets", "2", "--direct-routing"],
    );
    lab.ping_all(0);
    let (s2, s3) = (lab.subnet_of("h2"), lab.subnet_of("h3"));
    let routes = lab.weft_routes("h1");
    assert!(
        routes.contains(&format!("{s3} via 192.168.77.3 dev eth0")),
        "same subnet: a plain route\n{routes}"
    );
    if kernel_has_ipip() {
        // The kernel's one-to-many device, the peer as each route's gateway.
        assert!(
            routes.contains(&format!("{s2} via 192.168.78.2 dev weft.ipip")),
            "other subnet: through the kernel's IP-in-IP device\n{routes}"
        );
        lab.ping_all(0);
        return;
    }
    assert!(
        routes.contains("10.244.0.0/16 dev weft0") && !routes.contains(&s2),
        "other subnet: through the tunnel\n{routes}"
    );
    let (c2, c3) = (container_addr(&s2), container_addr(&s3));
    let sent = || lab.metric("h1", "weft_tunnel_tx_packets_total");
    let before = sent();
    assert!(lab.ping_from("c1", &c3, 10));
    let after_direct = sent();
    assert!(
        after_direct - before < 3,
        "direct path used the tunnel: {before} -> {after_direct}"
    );
    assert!(lab.ping_from("c1", &c2, 10));
    assert!(
        sent() >= after_direct + 10,
        "cross-subnet traffic goes through the tunnel"
    );
}

/// The kernel's IP-in-IP device, where the kernel has the module (this project's CI
/// machine has not: there the path is held by the byte-exact test of the netlink message
/// in weft-kernel, and this test says it is skipped).
#[test]
fn ipip_in_the_kernel_end_to_end() {
    require_root!("ipip_in_the_kernel_end_to_end");
    if !kernel_has_ipip() {
        use std::io::Write;
        let line =
            "skipped (no ipip module in this kernel): lab_tunnel::ipip_in_the_kernel_end_to_end";
        let _ = writeln!(std::io::stderr(), "{line}");
        return;
    }
    let lab = Lab::up_with("ipk", "embedded", 3, &["--backend", "ipip"]);
    let link = text(
        &lab.exec("h1", &["ip", "-d", "link", "show", "weft.ipip"])
            .stdout,
    );
    assert!(link.contains("ipip"), "{link}");
    let routes = lab.weft_routes("h1");
    let s2 = lab.subnet_of("h2");
    assert!(
        routes.contains(&format!("{s2} via 192.168.77.2 dev weft.ipip"))
            && routes.contains("onlink"),
        "{routes}"
    );
    lab.ping_all(0);
}
