//! Interop with real routers, in network namespaces: Weft's speaker (run in-process in
//! one namespace) against BIRD 2 and GoBGP (Debian packages) in another. Sessions reach
//! Established; the router's routes arrive at Weft and Weft's arrive at the router; a
//! withdrawn route disappears on both sides; a router killed and restarted recovers.
//! Needs root (namespaces); skipped with one line otherwise.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use weft_bgp::auth::Md5Key;
use weft_bgp::policy::{ExportPolicy, ImportFilter, Own, OwnKind};
use weft_bgp::speaker::{Learned, MaxPrefixes, PeerConfig, Speaker, SpeakerConfig};
use weft_testkit::require_root;

/// Two namespaces joined by a veth pair: `a` 10.99.0.1/24, `b` 10.99.0.2/24.
struct Pair {
    a: String,
    b: String,
    dir: std::path::PathBuf,
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let id = std::process::id() % 100_000;
        let (a, b) = (format!("t{id}{tag}a"), format!("t{id}{tag}b"));
        let dir = std::env::temp_dir().join(format!("t{id}{tag}"));
        let _ = std::fs::create_dir_all(&dir);
        let p = Pair { a, b, dir };
        sh(&["ip", "netns", "add", &p.a]);
        sh(&["ip", "netns", "add", &p.b]);
        sh(&[
            "ip", "-n", &p.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &p.b,
        ]);
        for (ns, ip) in [(&p.a, "10.99.0.1/24"), (&p.b, "10.99.0.2/24")] {
            sh(&["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }
}

/// Kills whatever still runs in each namespace (a router), removes them, and `dir`.
fn remove(namespaces: &[&String], dir: &std::path::Path) {
    for ns in namespaces {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for Pair {
    fn drop(&mut self) {
        remove(&[&self.a, &self.b], &self.dir);
    }
}

/// Three namespaces in a row, `a` 10.98.1.1 - `r` (forwarding) - `b` 10.98.2.1: a peer
/// two hops away.
struct Chain {
    ns: [String; 3],
    dir: std::path::PathBuf,
}

impl Chain {
    fn new(tag: &str) -> Chain {
        let id = std::process::id() % 100_000;
        let ns = ["a", "r", "b"].map(|n| format!("t{id}{tag}{n}"));
        let dir = std::env::temp_dir().join(format!("t{id}{tag}"));
        let _ = std::fs::create_dir_all(&dir);
        let c = Chain { ns, dir };
        let [a, r, b] = &c.ns;
        for n in &c.ns {
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        for (x, y, xi, yi) in [
            (a, r, "10.98.1.1/24", "10.98.1.2/24"),
            (b, r, "10.98.2.1/24", "10.98.2.2/24"),
        ] {
            let peer = if x == a { "ra" } else { "rb" };
            sh(&[
                "ip", "-n", x, "link", "add", "eth0", "type", "veth", "peer", "name", peer,
                "netns", y,
            ]);
            sh(&["ip", "-n", x, "addr", "add", xi, "dev", "eth0"]);
            sh(&["ip", "-n", y, "addr", "add", yi, "dev", peer]);
            sh(&["ip", "-n", x, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", y, "link", "set", peer, "up"]);
        }
        sh(&["ip", "-n", a, "route", "add", "default", "via", "10.98.1.2"]);
        sh(&["ip", "-n", b, "route", "add", "default", "via", "10.98.2.2"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        c
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let [a, r, b] = &self.ns;
        remove(&[a, r, b], &self.dir);
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = std::path::PathBuf::from(format!("/run/netns/{ns}"));
    weft_kernel::netns::run_in(&path, f).expect("run inside the namespace")
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn subnet(s: &str) -> Own {
    Own::new(net(s), OwnKind::Subnet)
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn learned(s: &Speaker) -> BTreeMap<Ipv4Net, Learned> {
    s.routes().borrow().clone()
}

fn bird_conf(dir: &std::path::Path, statics: &[&str]) -> std::path::PathBuf {
    bird_conf_with(dir, statics, "")
}

/// BIRD's config with `extra` lines in its `protocol bgp weft` block.
fn bird_conf_with(dir: &std::path::Path, statics: &[&str], extra: &str) -> std::path::PathBuf {
    let routes: String = statics
        .iter()
        .map(|r| format!("  route {r} blackhole;\n"))
        .collect();
    let conf = format!(
        "router id 10.99.0.2;\nprotocol device {{}}\nprotocol static {{\n  ipv4;\n{routes}}}\n\
         protocol bgp weft {{\n  local 10.99.0.2 as 64513;\n  neighbor 10.99.0.1 as 64512;\n  strict bind yes;\n  \
         connect delay time 1;\n  {extra}\n  ipv4 {{ import all; export all; }};\n}}\n"
    );
    let path = dir.join("bird.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn start_bird(ns: &str, dir: &std::path::Path) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "bird", "-f", "-c"])
        .arg(dir.join("bird.conf"))
        .arg("-s")
        .arg(dir.join("bird.ctl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bird")
}

/// birdc's answer; `None` when BIRD did not answer (not up, or gone): a wait for
/// something to be absent must not pass on a command that reached no one. (birdc's exit
/// status is no guide: "Network not found" is an answer and exits non-zero too; a
/// connected birdc always prints BIRD's greeting.)
fn birdc(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(dir.join("bird.ctl"))
        .args(args)
        .output()
        .expect("birdc");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text.starts_with("BIRD ") && text.contains(" ready.")).then_some(text)
}

fn speaker_config(peer_asn: u32) -> (SpeakerConfig, Vec<PeerConfig>) {
    let mut cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 99, 0, 1));
    cfg.connect_retry = Duration::from_secs(1);
    cfg.hold_time = 9;
    let peer = PeerConfig::global(Ipv4Addr::new(10, 99, 0, 2), peer_asn);
    (cfg, vec![peer])
}

fn established(s: &Speaker) -> bool {
    s.status().first().is_some_and(|p| p.state == "Established")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn bird_both_directions_withdrawal_and_restart() {
    require_root!("bird_both_directions_withdrawal_and_restart");
    let p = Pair::new("bird");
    let (ns, dir) = (p.b.clone(), p.dir.clone());
    in_netns(&p.a, move || {
        runtime().block_on(async move {
            bird_conf(&dir, &["10.200.1.0/24", "10.200.2.0/24"]);
            let mut bird = start_bird(&ns, &dir);
            let show = |d: &std::path::Path| {
                birdc(
                    d,
                    &["show", "route", "for", "10.244.1.1", "protocol", "weft"],
                )
            };
            let (cfg, peers) = speaker_config(64513);
            let s = Speaker::start(cfg).await.unwrap();
            s.set_own(vec![subnet("10.244.1.0/24")]).await;
            s.set_peers(peers).await;
            wait_for("BIRD's routes at Weft", 30, || {
                let r = learned(&s);
                r.get(&net("10.200.1.0/24")).map(|l| l.next_hop)
                    == Some(Ipv4Addr::new(10, 99, 0, 2))
                    && r.contains_key(&net("10.200.2.0/24"))
            })
            .await;
            let st = s.status();
            assert_eq!(
                (st[0].state, st[0].received, st[0].advertised),
                ("Established", 2, 1),
                "{st:?}"
            );
            wait_for("Weft's route at BIRD", 30, || {
                show(&dir).is_some_and(|t| t.contains("10.244.1.0/24"))
            })
            .await;
            let table = show(&dir).expect("birdc answers");
            assert!(
                table.contains("10.99.0.1"),
                "next hop is the Weft node:\n{table}"
            );

            // BIRD withdraws a route (reconfigured without it), then Weft withdraws its own.
            bird_conf(&dir, &["10.200.1.0/24"]);
            assert!(birdc(&dir, &["configure"]).is_some_and(|t| t.contains("onfigur")));
            wait_for("BIRD's withdrawal at Weft", 30, || {
                !learned(&s).contains_key(&net("10.200.2.0/24"))
            })
            .await;
            assert!(learned(&s).contains_key(&net("10.200.1.0/24")));
            s.set_own(vec![]).await;
            wait_for("Weft's withdrawal at BIRD", 30, || {
                show(&dir).is_some_and(|t| !t.contains("10.244.1.0/24"))
            })
            .await;
            s.set_own(vec![subnet("10.244.1.0/24")]).await;
            wait_for("Weft's route back at BIRD", 30, || {
                show(&dir).is_some_and(|t| t.contains("10.244.1.0/24"))
            })
            .await;

            // BIRD killed: the session drops; restarted: it comes back with the routes.
            let _ = bird.kill();
            let _ = bird.wait();
            wait_for("the session to drop", 30, || !established(&s)).await;
            let mut bird = start_bird(&ns, &dir);
            wait_for("the session to come back", 60, || established(&s)).await;
            wait_for("BIRD's route at Weft again", 30, || {
                learned(&s).contains_key(&net("10.200.1.0/24"))
            })
            .await;
            wait_for("Weft's route at BIRD again", 30, || {
                show(&dir).is_some_and(|t| t.contains("10.244.1.0/24"))
            })
            .await;
            let _ = bird.kill();
            let _ = bird.wait();
        })
    });
}

/// TCP MD5 (RFC 2385) against BIRD's `password`: with the same password the session is
/// established both ways (BIRD connects to Weft's listener, Weft to BIRD) and routes
/// flow; with a wrong one, or none, it never opens, and Weft's status says MD5 is on and
/// what a mismatch looks like; the right one again brings it back. The key shows in no
/// status.
#[test]
fn bird_with_an_md5_password_right_and_wrong() {
    require_root!("bird_with_an_md5_password_right_and_wrong");
    let p = Pair::new("md5");
    let (ns, dir) = (p.b.clone(), p.dir.clone());
    in_netns(&p.a, move || {
        runtime().block_on(async move {
            bird_conf_with(&dir, &["10.200.1.0/24"], "password \"s3cret-key\";");
            let mut bird = start_bird(&ns, &dir);
            let (cfg, peers) = speaker_config(64513);
            let with = |key: Option<&str>| {
                let mut p = peers.clone();
                p[0].md5 = key.map(|k| Md5Key::new(k).unwrap());
                p
            };
            let s = Speaker::start(cfg).await.unwrap();
            s.set_own(vec![subnet("10.244.1.0/24")]).await;

            s.set_peers(with(Some("s3cret-key"))).await;
            wait_for("the signed session and BIRD's route", 30, || {
                learned(&s).contains_key(&net("10.200.1.0/24"))
            })
            .await;
            let st = s.status();
            assert!(st[0].md5 && st[0].state == "Established", "{st:?}");
            assert!(!format!("{st:?}").contains("s3cret"), "{st:?}");

            for (what, key) in [
                ("a wrong password", Some("not-the-key")),
                ("no password", None),
            ] {
                s.set_peers(with(key)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(8) {
                    assert!(
                        !established(&s),
                        "{what}: the session opened: {:?}",
                        s.status()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let st = s.status();
                if key.is_some() {
                    assert!(
                        st[0].md5 && st[0].info.contains("MD5 is on"),
                        "{what}: {st:?}"
                    );
                }
                let bird_side = birdc(&dir, &["show", "protocols", "weft"]).unwrap_or_default();
                assert!(!bird_side.contains("Established"), "{what}: {bird_side}");
            }

            s.set_peers(with(Some("s3cret-key"))).await;
            wait_for("the session back with the right password", 30, || {
                established(&s)
            })
            .await;
            let _ = bird.kill();
            let _ = bird.wait();
        })
    });
}

/// Max-prefix (RFC 4486): BIRD announces 6 prefixes to a peer limited to 4. Weft closes
/// the session with Cease, subcode 1 (BIRD reports it), drops the routes, stays idle
/// for the restart time, then opens the session again (and closes it again, the table
/// being still too big); once BIRD announces 3, the session stays up with them.
#[test]
fn bird_past_the_max_prefix_limit_is_closed_and_comes_back_after_the_restart_time() {
    require_root!("bird_past_the_max_prefix_limit_is_closed_and_comes_back_after_the_restart_time");
    let p = Pair::new("mxp");
    let (ns, dir) = (p.b.clone(), p.dir.clone());
    in_netns(&p.a, move || {
        runtime().block_on(async move {
            let six: Vec<String> = (1..=6).map(|i| format!("10.201.{i}.0/24")).collect();
            let six: Vec<&str> = six.iter().map(String::as_str).collect();
            bird_conf(&dir, &six);
            let mut bird = start_bird(&ns, &dir);
            let (cfg, mut peers) = speaker_config(64513);
            peers[0].max_prefixes = Some(MaxPrefixes {
                limit: 4,
                warning_percent: 50,
                restart: Duration::from_secs(4),
            });
            let s = Speaker::start(cfg).await.unwrap();
            s.set_peers(peers).await;
            let info = |s: &Speaker| {
                s.status()
                    .first()
                    .map(|p| p.info.clone())
                    .unwrap_or_default()
            };
            wait_for("the session closed at the limit, idle", 30, || {
                info(&s).contains(
                    "sent NOTIFICATION: cease: maximum number of prefixes reached; idle for 4 s",
                )
            })
            .await;
            let closed = Instant::now();
            let idle_since = s.status()[0].since;
            wait_for("the routes dropped", 10, || learned(&s).is_empty()).await;
            let seen = birdc(&dir, &["show", "protocols", "all", "weft"]).unwrap_or_default();
            assert!(
                seen.to_lowercase().contains("maximum number of prefixes"),
                "BIRD got Cease/1:\n{seen}"
            );
            assert!(!established(&s), "idle: {:?}", s.status());
            // Out of Idle again (connecting, or up and closed once more: the table is
            // still too big), and not before the restart time.
            wait_for("the session tried again after the restart time", 30, || {
                let st = &s.status()[0];
                st.state != "Idle" || st.since > idle_since
            })
            .await;
            assert!(
                closed.elapsed() >= Duration::from_secs(3),
                "tried again after {:?}, before the restart time",
                closed.elapsed()
            );

            bird_conf(&dir, &six[..3]);
            assert!(birdc(&dir, &["configure"]).is_some_and(|t| t.contains("onfigur")));
            wait_for("the 3 routes learned, the session up", 60, || {
                established(&s) && learned(&s).len() == 3
            })
            .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(
                established(&s) && learned(&s).len() == 3,
                "{:?}",
                s.status()
            );
            let _ = bird.kill();
            let _ = bird.wait();
        })
    });
}

/// BIRD at the far end of a [`Chain`] (10.98.2.1, two hops from 10.98.1.1), `multihop
/// 2` and `extra` in its session, a short error wait; started.
fn far_bird(ns: &str, dir: &std::path::Path, extra: &str) -> Child {
    let conf = format!(
        "router id 10.98.2.1;\nprotocol device {{}}\nprotocol static {{\n  ipv4;\n  route 10.200.1.0/24 blackhole;\n}}\n\
         protocol bgp weft {{\n  local 10.98.2.1 as 64513;\n  neighbor 10.98.1.1 as 64512;\n  multihop 2;\n  \
         {extra}\n  error wait time 1, 2;\n  connect delay time 1;\n  ipv4 {{ import all; export all; }};\n}}\n"
    );
    std::fs::write(dir.join("bird.conf"), conf).unwrap();
    start_bird(ns, dir)
}

/// Weft's speaker at the near end of a [`Chain`].
fn near_speaker() -> SpeakerConfig {
    let mut cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 98, 1, 1));
    cfg.connect_retry = Duration::from_secs(1);
    cfg.hold_time = 9;
    cfg
}

/// The far BIRD as Weft's peer, nothing set.
fn far_peer() -> PeerConfig {
    PeerConfig::global(Ipv4Addr::new(10, 98, 2, 1), 64513)
}

/// For 8 s neither side has the session up and Weft learned nothing.
async fn never_established(s: &Speaker, dir: &std::path::Path, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        assert!(!established(s), "{what}: {:?}", s.status());
        assert!(learned(s).is_empty(), "{what}: {:?}", learned(s));
        let bird_side = birdc(dir, &["show", "protocols", "weft"]).unwrap_or_default();
        assert!(!bird_side.contains("Established"), "{what}: {bird_side}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// TTL security (RFC 5082) against BIRD's `ttl security yes` (with a short `error wait
/// time`: a session with TTL security uses only the connections Weft opens, and BIRD
/// counts one of its own that Weft closes as an error, waiting 60 s or more by default
/// before it takes part again): on the segment, Weft with
/// TTL security 1 is established and without it is not (its packets leave with TTL 64,
/// under BIRD's minimum of 255); a BIRD two hops away (`multihop 2`) is refused by
/// Weft's TTL security 1 (its packets arrive with TTL 254) and taken with 2.
#[test]
fn bird_with_ttl_security_on_the_segment_and_two_hops_away() {
    require_root!("bird_with_ttl_security_on_the_segment_and_two_hops_away");
    let p = Pair::new("gtsm");
    let (ns, dir) = (p.b.clone(), p.dir.clone());
    in_netns(&p.a, move || {
        runtime().block_on(async move {
            bird_conf_with(
                &dir,
                &["10.200.1.0/24"],
                "ttl security yes;\n  error wait time 1, 2;",
            );
            let mut bird = start_bird(&ns, &dir);
            let (cfg, peers) = speaker_config(64513);
            let with = |hops: Option<u8>| {
                let mut p = peers.clone();
                p[0].ttl_security = hops;
                p
            };
            let s = Speaker::start(cfg).await.unwrap();
            s.set_peers(with(None)).await;
            // Judged on BIRD's side: it never takes the session, and no route flows
            // (Weft may see BIRD's OPEN before BIRD's minimum TTL is set on the
            // accepted socket, but BIRD drops everything Weft sends after it).
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(8) {
                let bird_side = birdc(&dir, &["show", "protocols", "weft"]).unwrap_or_default();
                assert!(
                    !bird_side.contains("Established"),
                    "TTL 64 taken by BIRD's TTL security:\n{bird_side}"
                );
                assert!(learned(&s).is_empty(), "{:?}", learned(&s));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            s.set_peers(with(Some(1))).await;
            wait_for("the session with TTL security on the segment", 30, || {
                established(&s) && learned(&s).contains_key(&net("10.200.1.0/24"))
            })
            .await;
            let _ = bird.kill();
            let _ = bird.wait();
        })
    });
    drop(p);

    two_hops_refused_with_1_taken_with_2("gtsm2", "ttl security yes;", |hops| PeerConfig {
        ttl_security: Some(hops),
        ..far_peer()
    });
}

/// eBGP multihop with a TTL of its own (no TTL security) against a BIRD two hops away
/// (`multihop 2`): with Multihop 1 Weft's packets die at the router between them and
/// the session never opens, on either side; with 2 it is established and routes flow.
#[test]
fn bird_two_hops_away_needs_the_multihop_ttl() {
    require_root!("bird_two_hops_away_needs_the_multihop_ttl");
    two_hops_refused_with_1_taken_with_2("mhop", "", |ttl| PeerConfig {
        multihop: Some(ttl),
        ..far_peer()
    });
}

/// A BIRD two hops away (`multihop 2` and `bird_extra`): Weft's `peer(1)` never opens
/// the session on either side, `peer(2)` does and routes flow both ways.
fn two_hops_refused_with_1_taken_with_2(tag: &str, bird_extra: &str, peer: fn(u8) -> PeerConfig) {
    let c = Chain::new(tag);
    let (b, dir, extra) = (c.ns[2].clone(), c.dir.clone(), bird_extra.to_owned());
    in_netns(&c.ns[0], move || {
        runtime().block_on(async move {
            let mut bird = far_bird(&b, &dir, &extra);
            let s = Speaker::start(near_speaker()).await.unwrap();
            s.set_own(vec![subnet("10.244.1.0/24")]).await;
            s.set_peers(vec![peer(1)]).await;
            never_established(&s, &dir, "a peer two hops away taken with 1").await;
            s.set_peers(vec![peer(2)]).await;
            wait_for("the session two hops away with 2", 30, || {
                established(&s) && learned(&s).contains_key(&net("10.200.1.0/24"))
            })
            .await;
            wait_for("BIRD to learn Weft's subnet", 10, || {
                birdc(&dir, &["show", "route", "protocol", "weft"])
                    .is_some_and(|r| r.contains("10.244.1.0/24"))
            })
            .await;
            let _ = bird.kill();
            let _ = bird.wait();
        })
    });
}

/// The import filter: BIRD announces two prefixes inside the cluster network (one a
/// node's subnet, one covering the whole network) and two outside it. With the cluster
/// network denied and only 10.200.0.0/16 accepted, Weft takes one, counts three as
/// filtered; with no accept list, it takes both outside the cluster network.
#[test]
fn bird_routes_overlapping_the_cluster_network_are_not_taken() {
    require_root!("bird_routes_overlapping_the_cluster_network_are_not_taken");
    let p = Pair::new("imp");
    let (ns, dir) = (p.b.clone(), p.dir.clone());
    in_netns(&p.a, move || {
        runtime().block_on(async move {
            bird_conf(
                &dir,
                &[
                    "10.244.77.0/24",
                    "10.244.0.0/16",
                    "10.200.1.0/24",
                    "10.201.1.0/24",
                ],
            );
            let mut bird = start_bird(&ns, &dir);
            let (cfg, peers) = speaker_config(64513);
            let with = |accept: &[&str]| {
                let mut p = peers.clone();
                p[0].import = ImportFilter {
                    accept: accept.iter().map(|a| net(a).into()).collect(),
                    deny_overlapping: vec![net("10.244.0.0/16")],
                };
                p
            };
            let s = Speaker::start(cfg).await.unwrap();
            s.set_peers(with(&["10.200.0.0/16"])).await;
            wait_for("the accepted route", 30, || {
                learned(&s).contains_key(&net("10.200.1.0/24"))
            })
            .await;
            wait_for("the others counted as filtered", 10, || {
                s.status()[0].filtered == 3
            })
            .await;
            assert_eq!(learned(&s).len(), 1, "{:?}", learned(&s));

            s.set_peers(with(&[])).await;
            wait_for("both routes outside the cluster network", 30, || {
                let l = learned(&s);
                l.len() == 2
                    && l.contains_key(&net("10.200.1.0/24"))
                    && l.contains_key(&net("10.201.1.0/24"))
            })
            .await;
            let _ = bird.kill();
            let _ = bird.wait();
        })
    });
}

/// gobgp's answer (stdout and stderr); `None` when it failed, as for [`birdc`].
fn gobgp(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let target = format!("unix://{}", dir.join("gobgp.sock").display());
    let out = Command::new("gobgp")
        .args(["--target", &target])
        .args(args)
        .output()
        .expect("gobgp");
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    })
}

fn start_gobgp(ns: &str, dir: &std::path::Path) -> Child {
    let conf = dir.join("gobgp.toml");
    std::fs::write(
        &conf,
        "[global.config]\n  as = 64514\n  router-id = \"10.99.0.2\"\n  local-address-list = [\"10.99.0.2\"]\n\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"10.99.0.1\"\n    peer-as = 64512\n\
         \x20 [neighbors.timers.config]\n    connect-retry = 1\n",
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.join("gobgp.sock"));
    Command::new("ip")
        .args(["netns", "exec", ns, "gobgpd", "-f"])
        .arg(&conf)
        .arg(format!(
            "--api-hosts=unix://{}",
            dir.join("gobgp.sock").display()
        ))
        .arg("--pprof-disable")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gobgpd")
}

#[test]
fn gobgp_both_directions_withdrawal_and_restart() {
    require_root!("gobgp_both_directions_withdrawal_and_restart");
    let p = Pair::new("gob");
    let (ns, dir) = (p.b.clone(), p.dir.clone());
    in_netns(&p.a, move || {
        runtime().block_on(async move {
            let mut gobgpd = start_gobgp(&ns, &dir);
            let (cfg, peers) = speaker_config(64514);
            let s = Speaker::start(cfg).await.unwrap();
            s.set_own(vec![subnet("10.244.1.0/24")]).await;
            s.set_peers(peers).await;
            wait_for("the session", 30, || established(&s)).await;
            wait_for("gobgpd's API", 10, || {
                gobgp(&dir, &["global"]).is_some_and(|t| t.contains("64514"))
            })
            .await;
            let add = gobgp(
                &dir,
                &["global", "rib", "add", "-a", "ipv4", "10.201.1.0/24"],
            )
            .expect("gobgp rib add");
            assert!(!add.contains("rror"), "{add}");
            wait_for("GoBGP's route at Weft", 30, || {
                learned(&s).get(&net("10.201.1.0/24")).map(|l| l.next_hop)
                    == Some(Ipv4Addr::new(10, 99, 0, 2))
            })
            .await;
            let rib = || gobgp(&dir, &["global", "rib", "-a", "ipv4"]);
            wait_for("Weft's route at GoBGP", 30, || {
                rib().is_some_and(|t| t.contains("10.244.1.0/24"))
            })
            .await;
            let table = rib().expect("gobgp answers");
            assert!(
                table.contains("10.99.0.1"),
                "next hop is the Weft node:\n{table}"
            );

            gobgp(
                &dir,
                &["global", "rib", "del", "-a", "ipv4", "10.201.1.0/24"],
            )
            .expect("gobgp rib del");
            wait_for("GoBGP's withdrawal at Weft", 30, || {
                !learned(&s).contains_key(&net("10.201.1.0/24"))
            })
            .await;
            s.set_own(vec![]).await;
            wait_for("Weft's withdrawal at GoBGP", 30, || {
                rib().is_some_and(|t| !t.contains("10.244.1.0/24"))
            })
            .await;
            s.set_own(vec![subnet("10.244.1.0/24")]).await;

            let _ = gobgpd.kill();
            let _ = gobgpd.wait();
            wait_for("the session to drop", 30, || !established(&s)).await;
            let mut gobgpd = start_gobgp(&ns, &dir);
            wait_for("the session to come back", 60, || established(&s)).await;
            wait_for("Weft's route at GoBGP again", 30, || {
                rib().is_some_and(|t| t.contains("10.244.1.0/24"))
            })
            .await;
            let _ = gobgpd.kill();
            let _ = gobgpd.wait();
        })
    });
}

/// Export policy and communities as BIRD sees them: a peer whose policy asks only for
/// the aggregate gets the cluster network and not the node's subnet, tagged with the
/// community (RFC 1997) and large community (RFC 8092) configured, as BIRD's `show route
/// all` prints them; back to the default policy, BIRD holds the subnet again, untagged,
/// and the aggregate is withdrawn.
#[test]
fn bird_sees_the_export_policy_and_its_communities() {
    require_root!("bird_sees_the_export_policy_and_its_communities");
    let p = Pair::new("exp");
    let (ns, dir) = (p.b.clone(), p.dir.clone());
    in_netns(&p.a, move || {
        runtime().block_on(async move {
            bird_conf(&dir, &[]);
            let mut bird = start_bird(&ns, &dir);
            let (cfg, peers) = speaker_config(64513);
            let with = |export: ExportPolicy| {
                let mut p = peers.clone();
                p[0].export = export;
                p
            };
            let s = Speaker::start(cfg).await.unwrap();
            s.set_own(vec![
                subnet("10.244.1.0/24"),
                Own::new(net("10.244.0.0/16"), OwnKind::Aggregate),
            ])
            .await;
            s.set_peers(with(ExportPolicy {
                kinds: [OwnKind::Aggregate].into(),
                communities: vec!["64512:100".parse().unwrap()],
                large_communities: vec!["64512:7:42".parse().unwrap()],
            }))
            .await;
            let all = |d: &std::path::Path| {
                birdc(d, &["show", "route", "all", "protocol", "weft"]).unwrap_or_default()
            };
            wait_for("BIRD to hold the aggregate", 30, || {
                all(&dir).contains("10.244.0.0/16")
            })
            .await;
            let r = all(&dir);
            assert!(!r.contains("10.244.1.0/24"), "only the aggregate:\n{r}");
            assert!(r.contains("BGP.community: (64512,100)"), "{r}");
            assert!(r.contains("BGP.large_community: (64512, 7, 42)"), "{r}");

            let since = s.status()[0].since;
            s.set_peers(with(ExportPolicy::default())).await;
            wait_for("BIRD to hold the subnet and not the aggregate", 30, || {
                let r = all(&dir);
                r.contains("10.244.1.0/24") && !r.contains("10.244.0.0/16")
            })
            .await;
            let r = all(&dir);
            assert!(!r.contains("BGP.community"), "untagged by default:\n{r}");
            assert_eq!(s.status()[0].since, since, "a new policy, the same session");
            let _ = bird.kill();
            let _ = bird.wait();
        })
    });
}
