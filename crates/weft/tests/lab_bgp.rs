//! End to end, in network namespaces: the bgp backend in a lab built by `weftctl lab`.
//!
//! - 3 hosts in full mesh: every pair of containers pings with no encapsulation (plain
//!   routes via the announcing node, the packets on the wire carry the containers'
//!   addresses), each node has a blackhole for its own subnet, `weftctl node status`
//!   and `weftctl diagnose` show the mesh sessions Established; a node leaves and its
//!   route is withdrawn everywhere.
//! - 4 hosts with a route reflector: clients peer only with the reflector and still get
//!   every route, with the originating node as next hop.
//! - 5 hosts, the reflector chosen by label (Calico's model), the mesh off, and the
//!   lab's BIRD router peered only by the nodes a selector picks, sent only the
//!   cluster's aggregate with a community: BIRD's own table and protocols say so.
//! - A container on one host holds an address outside every subnet (routed CNI mode):
//!   claimed through that host's agent, announced as a /32 and reachable from the other
//!   hosts' containers; no other node may take it until DEL releases it.
//! - 4 hosts on 2 underlay subnets with `CrossSubnet: "vxlan"`: plain routes within a
//!   subnet, VXLAN (route, neighbour, FDB entry) across; both seen on the wire.

mod common;

use std::process::Command;
use std::time::Duration;
use weft_testkit::require_root;

use common::*;

#[test]
fn bgp_mesh_three_hosts_no_encapsulation_and_a_node_leaving() {
    require_root!("bgp_mesh_three_hosts_no_encapsulation_and_a_node_leaving");
    let lab = Lab::up_with("bgp", "embedded", 3, &["--backend", "bgp"]);
    lab.ping_all(0);
    let (s1, s2, s3) = (
        lab.subnet_of("h1"),
        lab.subnet_of("h2"),
        lab.subnet_of("h3"),
    );
    let routes = lab.weft_routes("h1");
    assert!(
        routes.contains(&format!("{s2} via 192.168.77.2 dev eth0")),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("{s3} via 192.168.77.3 dev eth0")),
        "{routes}"
    );
    assert!(routes.contains(&format!("blackhole {s1}")), "{routes}");
    let links = text(&lab.exec("h1", &["ip", "-o", "link"]).stdout);
    // By exact name: a container's host-side veth is "weft" + 11 hex digits, which
    // may well begin "weft0".
    assert!(
        !links.contains(": weft0:") && !links.contains(": weft.1:"),
        "no tunnel device:\n{links}"
    );

    let status = lab.ok(lab.store_cmd(&["node", "status"]), "node status");
    assert_eq!(
        status.matches("| node-to-node mesh | up ").count(),
        6,
        "{status}"
    );
    // `weftctl diagnose` checks the sessions and that every peer's subnet was learned.
    let diag = lab.store_cmd(&["diagnose"]);
    let said = text(&diag.stdout);
    assert!(diag.status.success(), "{said}{}", text(&diag.stderr));
    assert_eq!(
        said.matches("(node-to-node mesh) Established").count(),
        6,
        "{said}"
    );
    assert_eq!(
        said.matches("every peer's subnet has a learned route")
            .count(),
        3,
        "{said}"
    );

    // On the wire between hosts: the containers' own addresses, no outer header.
    let (c1, c2) = (container_addr(&s1), container_addr(&s2));
    let filter = format!("icmp and src host {c1}");
    let seen = lab.capture_while_pinging("h2", &["-i", "eth0", &filter], "c1", &c2);
    assert!(
        seen.contains(&format!("{c1} > {c2}: ICMP echo request")),
        "plain IP on the wire: {seen}"
    );

    // h3 leaves: its route is withdrawn on the others.
    lab.ok(lab.lab(&["host", "remove"], &["h3"]), "host remove");
    lab.wait_until(
        "h3's route to go from h1 and h2",
        Duration::from_secs(20),
        || !lab.weft_routes("h1").contains(&s3) && !lab.weft_routes("h2").contains(&s3),
    );
    assert!(lab.ping_from("c1", &c2, 3));
    lab.wait_until(
        "h1's status to list one peer",
        Duration::from_secs(10),
        || {
            let st = text(&lab.store_cmd(&["node", "status"]).stdout);
            st.matches("| node-to-node mesh | up ").count() == 2
        },
    );
}

/// A network namespace made by the test, removed when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs the `weft` CNI plugin in host `h`'s namespace for container namespace `ctr`.
fn cni(lab: &Lab, h: &str, ctr: &str, command: &str, mode: &str, ip: &str) -> (bool, String) {
    let mut conf = serde_json::json!({"mode": mode, "runtimeConfig": { "ips": [ip] }});
    if command == "GC" {
        conf["cni.dev/valid-attachments"] = serde_json::json!([]);
    }
    cni_call(lab, h, ctr, command, conf, "")
}

#[test]
fn bgp_single_address_outside_the_subnet_is_announced_as_a_32() {
    require_root!("bgp_single_address_outside_the_subnet_is_announced_as_a_32");
    // 10.244.0.0/24 is below SubnetMin: no lease ever covers it, so a container may hold
    // one of its addresses on any node; that node announces it as a /32.
    let lab = Lab::up_with("b32", "embedded", 3, &["--backend", "bgp"]);
    lab.ping_all(0);
    let x1 = Netns(lab.ns("x1"));
    let x2 = Netns(lab.ns("x2"));
    for ns in [&x1, &x2] {
        assert!(Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success());
    }
    let ip = "10.244.0.10";
    let (ok, out) = cni(&lab, "h1", &x1.0, "ADD", "bridge", ip);
    assert!(
        !ok && out.contains("only \\\"mode\\\": \\\"routed\\\""),
        "bridge mode refuses: {out}"
    );
    let (ok, out) = cni(&lab, "h1", &x1.0, "ADD", "routed", ip);
    assert!(ok, "routed ADD: {out}");
    assert!(out.contains("\"address\":\"10.244.0.10/32\""), "{out}");
    for h in ["h2", "h3"] {
        lab.wait_until(
            "the /32 at the other hosts",
            Duration::from_secs(20),
            || {
                lab.weft_routes(h)
                    .contains("10.244.0.10 via 192.168.77.1 dev eth0")
            },
        );
    }
    assert!(
        lab.ping_from("c2", ip, 3),
        "c2 reaches the address held on h1"
    );
    assert!(
        lab.exec(
            "x1",
            &[
                "ping",
                "-c",
                "2",
                "-W",
                "2",
                &container_addr(&lab.subnet_of("h3"))
            ]
        )
        .status
        .success(),
        "and it reaches c3"
    );
    let claims = lab.ok(lab.store_cmd(&["addresses"]), "weftctl addresses");
    assert!(
        claims.lines().any(|l| l.starts_with("10.244.0.10 ")
            && l.contains(" 192.168.77.1 ")
            && l.ends_with(&x1.0)),
        "{claims}"
    );

    // Another node cannot take it while h1 holds it.
    let (ok, out) = cni(&lab, "h2", &x2.0, "ADD", "routed", ip);
    assert!(
        !ok && out.contains("already held by container") && out.contains("on node 192.168.77.1"),
        "{out}"
    );
    // DEL releases it everywhere; then h2 may hold it.
    let (ok, out) = cni(&lab, "h1", &x1.0, "DEL", "routed", ip);
    assert!(ok, "DEL: {out}");
    lab.wait_until("the /32 to be withdrawn", Duration::from_secs(20), || {
        !lab.weft_routes("h3").contains("10.244.0.10")
    });
    let (ok, out) = cni(&lab, "h2", &x2.0, "ADD", "routed", ip);
    assert!(ok, "h2 takes it over: {out}");
    lab.wait_until("the /32 via h2", Duration::from_secs(20), || {
        lab.weft_routes("h3")
            .contains("10.244.0.10 via 192.168.77.2 dev eth0")
    });
    assert!(lab.ping_from("c3", ip, 3));
    // GC of a container the runtime no longer lists gives the address back too.
    let (ok, out) = cni(&lab, "h2", &x2.0, "GC", "routed", ip);
    assert!(ok, "GC: {out}");
    lab.wait_until("GC to withdraw the /32", Duration::from_secs(20), || {
        !lab.weft_routes("h3").contains("10.244.0.10")
    });
    let claims = lab.ok(lab.store_cmd(&["addresses"]), "weftctl addresses");
    assert!(!claims.contains("10.244.0.10"), "{claims}");
}

#[test]
fn bgp_route_reflector_four_hosts() {
    require_root!("bgp_route_reflector_four_hosts");
    let lab = Lab::up_with(
        "brr",
        "embedded",
        4,
        &["--backend", "bgp", "--route-reflector", "192.168.77.1"],
    );
    lab.ping_all(0);
    let status = lab.ok(lab.store_cmd(&["node", "status"]), "node status");
    assert_eq!(
        status.matches("| route reflector client | up ").count(),
        3,
        "{status}"
    );
    let client_sessions = status
        .lines()
        .filter(|l| {
            l.contains("| route reflector ") && !l.contains("client") && l.contains("| up ")
        })
        .count();
    assert_eq!(
        client_sessions, 3,
        "each client has one session, to the reflector, labelled so:\n{status}"
    );
    assert!(
        !status.contains("node-to-node mesh"),
        "no mesh with a reflector:\n{status}"
    );
    // A client learns the other clients' routes, next hop the originating node.
    let (s3, s4) = (lab.subnet_of("h3"), lab.subnet_of("h4"));
    let routes = lab.weft_routes("h2");
    assert!(
        routes.contains(&format!("{s3} via 192.168.77.3 dev eth0")),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("{s4} via 192.168.77.4 dev eth0")),
        "{routes}"
    );
}

/// Calico's reflectors by label: h1 carries `route-reflector=true` and reflects for the
/// four others, the mesh off (no host has a mesh session, clients one session each);
/// every container reaches every other. Then the router's record is replaced with one
/// that only nodes labelled `rack=r1` (h2, h3) peer with, sending only the aggregate of
/// the cluster network tagged 64512:100: BIRD's protocols show exactly two sessions up,
/// and its table holds the aggregate with the community and no node subnet.
#[test]
fn bgp_reflector_and_router_peers_chosen_by_label() {
    require_root!("bgp_reflector_and_router_peers_chosen_by_label");
    let lab = Lab::up_with(
        "brl",
        "embedded",
        5,
        &[
            "--backend",
            "bgp",
            "--router",
            "bird",
            "--route-reflector-selector",
            "route-reflector == 'true'",
            "--route-reflector-cluster-id",
            "244.0.0.1",
            "--node-labels",
            "h1:route-reflector=true",
            "--node-labels",
            "h2:rack=r1",
            "--node-labels",
            "h3:rack=r1",
        ],
    );
    lab.ping_all(0);
    let status = lab.ok(lab.store_cmd(&["node", "status"]), "node status");
    assert_eq!(
        status.matches("| route reflector client | up ").count(),
        4,
        "h1 reflects for the four others:\n{status}"
    );
    assert!(!status.contains("node-to-node mesh"), "mesh off:\n{status}");
    let (s4, s5) = (lab.subnet_of("h4"), lab.subnet_of("h5"));
    assert!(
        lab.weft_routes("h4")
            .contains(&format!("{s5} via 192.168.77.5 dev eth0")),
        "a client learns another's route, next hop the originating node"
    );

    let birdc = |args: &[&str]| router(&lab, args);
    let subnets: Vec<String> = ["h1", "h2", "h3", "h4", "h5"]
        .iter()
        .map(|h| lab.subnet_of(h))
        .collect();
    router_peer(
        &lab,
        &[
            "--node-selector",
            "rack == 'r1'",
            "--export",
            "Aggregate",
            "--community",
            "64512:100",
        ],
    );
    let sessions = || {
        birdc(&["show", "protocols"])
            .lines()
            .filter(|l| l.starts_with("host") && l.contains("Established"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let table = birdc(&["show", "route", "all"]);
        if sessions() == 2
            && table.contains("10.244.0.0/16")
            && !table.contains(&s4)
            && subnets.iter().all(|s| !table.contains(s.as_str()))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "BIRD did not keep only the sessions of h2 and h3, with only the aggregate, within 60 s:\n{table}\n{}",
            birdc(&["show", "protocols", "all"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = birdc(&["show", "route", "all", "for", "10.244.0.0/16"]);
    assert!(table.contains("BGP.community: (64512,100)"), "{table}");
    let all = birdc(&["show", "route"]);
    for h in ["h1", "h2", "h3", "h4", "h5"] {
        let subnet = lab.subnet_of(h);
        assert!(!all.contains(&subnet), "{h}'s {subnet} at BIRD:\n{all}");
    }
    let protocols = birdc(&["show", "protocols", "all"]);
    for (ip, up) in [
        ("192.168.77.2", true),
        ("192.168.77.3", true),
        ("192.168.77.1", false),
        ("192.168.77.4", false),
    ] {
        let established = protocols
            .split("\nhost")
            .any(|p| p.contains(&format!("Neighbor address: {ip}")) && p.contains("Established"));
        assert_eq!(established, up, "{ip}:\n{protocols}");
    }
    lab.ping_all(0);
}

/// The lab router's own view: `weftctl lab router ARGS` (birdc on its socket).
fn router(lab: &Lab, args: &[&str]) -> String {
    text(&lab.lab(&["router"], args).stdout)
}

/// Replaces the lab router's record as an operator would (`weftctl bgp peer add`), with
/// `extra` options.
fn router_peer(lab: &Lab, extra: &[&str]) -> String {
    let mut args = vec![
        "bgp",
        "peer",
        "add",
        "lab-router",
        "--peer-ip",
        "192.168.77.254",
        "--as",
        "64513",
    ];
    args.extend_from_slice(extra);
    lab.ok(lab.store_cmd(&args), "bgp peer add")
}

#[test]
fn bgp_cross_subnet_through_vxlan() {
    require_root!("bgp_cross_subnet_through_vxlan");
    // h1, h3 on 192.168.77.0/24; h2, h4 on 192.168.78.0/24 (Calico's VXLAN CrossSubnet).
    let lab = Lab::up_with(
        "bgx",
        "embedded",
        4,
        &[
            "--backend",
            "bgp",
            "--subnets",
            "2",
            "--cross-subnet",
            "vxlan",
        ],
    );
    lab.ping_all(0);
    let (s2, s3) = (lab.subnet_of("h2"), lab.subnet_of("h3"));
    let routes = lab.weft_routes("h1");
    assert!(
        routes.contains(&format!("{s3} via 192.168.77.3 dev eth0")),
        "same subnet: a plain route\n{routes}"
    );
    let gw2 = s2.split('/').next().unwrap();
    assert!(
        routes.contains(&format!("{s2} via {gw2} dev weft.1 onlink")),
        "other subnet: through VXLAN\n{routes}"
    );
    let neigh = text(
        &lab.exec("h1", &["ip", "neigh", "show", "dev", "weft.1"])
            .stdout,
    );
    assert!(neigh.contains(&format!("{gw2} lladdr")), "{neigh}");
    let fdb = text(
        &lab.exec("h1", &["bridge", "fdb", "show", "dev", "weft.1"])
            .stdout,
    );
    assert!(fdb.contains("dst 192.168.78.2"), "{fdb}");

    // On h1's wire: VXLAN to h2, the containers' own addresses to h3.
    let (c1, c2, c3) = (
        container_addr(&lab.subnet_of("h1")),
        container_addr(&s2),
        container_addr(&s3),
    );
    let seen = lab.capture_while_pinging("h1", &["-i", "eth0", "udp port 8472"], "c1", &c2);
    assert!(
        // tcpdump names port 8472 OTV; the header it prints is VXLAN's (flag I, VNI 1).
        seen.contains("192.168.78.2.8472: OTV, flags [I] (0x08), overlay 0, instance 1")
            && seen.contains(&format!("{c1} > {c2}: ICMP echo request")),
        "encapsulated across subnets: {seen}"
    );
    let filter = format!("icmp and src host {c1}");
    let seen = lab.capture_while_pinging("h1", &["-i", "eth0", &filter], "c1", &c3);
    assert!(
        seen.contains(&format!("{c1} > {c3}: ICMP echo request")),
        "plain IP within a subnet: {seen}"
    );
}

/// A lab with a real router in the underlay: it learns every host's subnet, and every
/// host installs the router's own prefix via the router.
fn with_router(tag: &str, router: &str, router_rib: impl Fn(&Lab) -> String) {
    let lab = Lab::up_with(
        tag,
        "embedded",
        2,
        &["--backend", "bgp", "--router", router],
    );
    lab.ping_all(0);
    let (s1, s2) = (lab.subnet_of("h1"), lab.subnet_of("h2"));
    lab.wait_until(
        "the router to learn both hosts' subnets",
        Duration::from_secs(20),
        || {
            let rib = router_rib(&lab);
            rib.contains(&s1) && rib.contains(&s2)
        },
    );
    for h in ["h1", "h2"] {
        lab.wait_until(
            "the router's prefix at the host",
            Duration::from_secs(20),
            || {
                lab.weft_routes(h)
                    .contains("10.250.0.0/24 via 192.168.77.254 dev eth0")
            },
        );
    }
    let status = lab.ok(lab.store_cmd(&["node", "status"]), "node status");
    assert_eq!(
        status.matches("| global            | up ").count(),
        2,
        "{status}"
    );
}

#[test]
fn bgp_with_a_bird_router() {
    require_root!("bgp_with_a_bird_router");
    // BIRD installs what it learns into the underlay's kernel: the router really routes.
    with_router("bbi", "bird", |lab| {
        text(
            &lab.exec("ul", &["ip", "route", "show", "proto", "bird"])
                .stdout,
        )
    });
}

#[test]
fn bgp_with_a_gobgp_router() {
    require_root!("bgp_with_a_gobgp_router");
    with_router("bgo", "gobgp", |lab| {
        let sock = format!("unix:///run/weft-lab/{}/gobgp.sock", lab.name);
        let out = Command::new("gobgp")
            .args(["--target", &sock, "global", "rib", "-a", "ipv4"])
            .output()
            .unwrap();
        text(&out.stdout)
    });
}

/// The top-of-rack router asks for a TCP MD5 password (BIRD's `password`): the hosts'
/// unsigned sessions go down; the peer's record (`weftctl bgp peer add`) then names a
/// file with the password (never the password itself) and every host signs with it: the sessions come
/// back, `node status` says MD5 is on, and BIRD learns both subnets again. A record whose
/// file is missing gives no session (never an unsigned one) and one log line naming it.
#[test]
fn bgp_with_a_bird_router_that_wants_a_password() {
    require_root!("bgp_with_a_bird_router_that_wants_a_password");
    let lab = Lab::up_with(
        "bpw",
        "embedded",
        2,
        &["--backend", "bgp", "--router", "bird"],
    );
    let dir = format!("/run/weft-lab/{}", lab.name);
    let (s1, s2) = (lab.subnet_of("h1"), lab.subnet_of("h2"));
    let bird_routes = || {
        text(
            &lab.exec("ul", &["ip", "route", "show", "proto", "bird"])
                .stdout,
        )
    };
    lab.wait_until(
        "BIRD to learn both subnets",
        Duration::from_secs(20),
        || {
            let r = bird_routes();
            r.contains(&s1) && r.contains(&s2)
        },
    );
    let up = || {
        text(&lab.store_cmd(&["node", "status"]).stdout)
            .matches("| global            | up ")
            .count()
    };
    assert_eq!(up(), 2);

    // BIRD now wants a password: the hosts' unsigned sessions cannot stay up.
    let conf = format!("{dir}/bird.conf");
    let text_conf = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text_conf.replace(
            "  dynamic name \"host\";",
            "  dynamic name \"host\";\n  password \"tor-s3cret\";",
        ),
    )
    .unwrap();
    let configured = router(&lab, &["configure"]);
    assert!(configured.contains("onfigur"), "{configured}");
    lab.wait_until(
        "the unsigned sessions to go down",
        Duration::from_secs(30),
        || up() == 0,
    );

    // A record naming a file that is not there: no session, one line saying why.
    let key = format!("{dir}/tor.key");
    // The router's record, replaced as an operator would: `weftctl bgp peer add`.
    let peer = |file: &str| router_peer(&lab, &["--password-file", file]);
    let missing = format!("{dir}/missing.key");
    peer(&missing);
    lab.wait_until(
        "h1 to name the missing file",
        Duration::from_secs(10),
        || {
            lab.log("h1")
                .contains("cannot read the BGP peer's password")
                && lab.log("h1").contains("missing.key")
        },
    );
    assert_eq!(up(), 0, "no unsigned session in place of a signed one");

    // The file written on the hosts (one filesystem here), and the record naming it:
    // every host signs.
    std::fs::write(&key, "tor-s3cret\n").unwrap();
    peer(&key);
    lab.wait_until("the signed sessions up", Duration::from_secs(60), || {
        up() == 2
    });
    let status = lab.ok(lab.store_cmd(&["node", "status"]), "node status");
    assert_eq!(
        status.matches("| on  |").count(),
        2,
        "MD5 on for both:\n{status}"
    );
    assert!(!status.contains("tor-s3cret"), "{status}");
    lab.wait_until(
        "BIRD to learn both subnets again",
        Duration::from_secs(30),
        || {
            let r = bird_routes();
            r.contains(&s1) && r.contains(&s2)
        },
    );
    for h in ["h1", "h2"] {
        assert!(
            !lab.log(h).contains("tor-s3cret"),
            "{h}'s log carries the password"
        );
        let (_, metrics) = lab.agent_http(h, "/metrics");
        for row in [
            "weft_bgp_peer_established{peer=\"192.168.77.254\",type=\"global\"} 1",
            "weft_bgp_peer_md5{peer=\"192.168.77.254\",type=\"global\"} 1",
        ] {
            assert!(metrics.contains(row), "{h}: {row} in\n{metrics}");
        }
        assert!(!metrics.contains("tor-s3cret"));
    }
}

/// Graceful restart as the restarting speaker (RFC 4724): h1's agent is killed (`kill
/// -9`) and started again under a ping every 50 ms from an address of the router's own
/// prefix (10.250.0.1, in the underlay namespace) to h1's container. Not one ping is
/// lost, and neither kernel sees the other's route deleted even for a moment (`ip
/// monitor` on both): BIRD keeps h1's subnet all along (the session closed without a
/// NOTIFICATION, the F bit set: routes kept, stale, until h1's End-of-RIB), and h1 keeps
/// its route to the router's prefix while its new agent has not learned it again (it
/// holds the kernel's routes until its initial exchange is over). Meanwhile h2's `node
/// status` shows h1 as `peer restarting` with the connection's end as last error, and
/// `on` again once h1's End-of-RIB came.
#[test]
fn bgp_agent_killed_and_restarted_loses_no_ping_through_the_router() {
    require_root!("bgp_agent_killed_and_restarted_loses_no_ping_through_the_router");
    let lab = Lab::up_with(
        "bgr",
        "embedded",
        2,
        &["--backend", "bgp", "--router", "bird"],
    );
    let s1 = lab.subnet_of("h1");
    let ul_routes = || {
        text(
            &lab.exec("ul", &["ip", "route", "show", "proto", "bird"])
                .stdout,
        )
    };
    lab.wait_until("BIRD to learn h1's subnet", Duration::from_secs(20), || {
        ul_routes().contains(&s1)
    });
    lab.wait_until(
        "h1 to learn the router's prefix",
        Duration::from_secs(20),
        || {
            lab.weft_routes("h1")
                .contains("10.250.0.0/24 via 192.168.77.254")
        },
    );
    lab.exec("ul", &["ip", "addr", "add", "10.250.0.1/32", "dev", "lo"]);
    let c1 = container_addr(&s1);
    let ping = Pinger::in_netns(&lab.ns("ul"), &["-I", "10.250.0.1"], &c1);
    std::thread::sleep(Duration::from_secs(1));

    // Both sides' kernels watched while the agent is gone and coming back: not one
    // event may delete h1's subnet at BIRD or the router's prefix at h1 (a gap of a few
    // milliseconds, which pings could miss, is an event here).
    let monitor = |node: &str| {
        Command::new("ip")
            .args(["-n", &lab.ns(node), "monitor", "route"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (h1_mon, ul_mon) = (monitor("h1"), monitor("ul"));
    std::thread::sleep(Duration::from_millis(300));
    let pid_file = format!("/run/weft-lab/{}/h1/weftd.pid", lab.name);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let killed = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    // h2 says what it does with h1's routes meanwhile: kept, stale (graceful restart).
    let h2_view_of_h1 = || {
        let out = lab.ok(
            lab.store_cmd(&["node", "status", "-o", "json"]),
            "node status",
        );
        let all: serde_json::Value = serde_json::from_str(&out).unwrap();
        let h2 = all
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == "h2")
            .unwrap()
            .clone();
        h2["status"]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["address"] == "192.168.77.1")
            .cloned()
            .unwrap()
    };
    lab.wait_until(
        "h2 to show h1 restarting",
        // The status file is written every 2 s.
        Duration::from_secs(5),
        || h2_view_of_h1()["graceful_restart"] == "peer restarting",
    );
    let last_error = h2_view_of_h1()["last_error"].clone();
    assert!(
        last_error
            .as_str()
            .is_some_and(|e| e.contains("connection closed by peer")),
        "{last_error}"
    );
    std::thread::sleep(Duration::from_secs(1));
    lab.ok(lab.lab(&["agent"], &["h1", "start"]), "agent start");
    lab.wait_until(
        "h1's initial exchange to end",
        Duration::from_secs(60),
        || lab.log("h1").matches("BGP initial exchange over").count() >= 2,
    );
    std::thread::sleep(Duration::from_secs(1));
    let events = |mut child: std::process::Child| {
        let _ = child.kill();
        text(&child.wait_with_output().unwrap().stdout)
    };
    let (h1_events, ul_events) = (events(h1_mon), events(ul_mon));
    assert!(
        !h1_events.contains("Deleted 10.250.0.0/24"),
        "h1 withdrew the router's prefix during its restart:\n{h1_events}"
    );
    assert!(
        !ul_events.contains(&format!("Deleted {s1}")),
        "BIRD withdrew h1's subnet during h1's restart:\n{ul_events}"
    );
    assert_no_ping_lost([ping], 40);
    lab.wait_until(
        "h2 to see h1 back, its routes no longer stale",
        Duration::from_secs(10),
        || h2_view_of_h1()["graceful_restart"] == "on",
    );
    let log = lab.log("h1");
    assert!(
        log.contains("timed_out=false"),
        "the exchange ended by End-of-RIB, not the timer:\n{log}"
    );
}
