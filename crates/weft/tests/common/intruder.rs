//! A stranger on the lab's underlay: a namespace on the underlay bridge that is no Weft
//! node, to send what a node must refuse (encapsulated traffic from a non-member).

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{text, Lab};

/// The stranger's namespace, removed on drop.
pub struct Intruder {
    ns: String,
}

impl Intruder {
    /// Attaches a namespace to the underlay with `addr` (`192.168.77.200/24`, or an IPv6
    /// one, added without duplicate address detection so it is usable at once).
    pub fn attach(lab: &Lab, addr: &str) -> Intruder {
        let v6 = addr.contains(':');
        let ns = format!("{}x-intruder{}", lab.name, if v6 { "6" } else { "" });
        let run = |args: &[&str]| {
            assert!(
                Command::new("ip").args(args).status().unwrap().success(),
                "{args:?}"
            )
        };
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        run(&["netns", "add", &ns]);
        let intruder = Intruder { ns: ns.clone() };
        let (ul, link) = (lab.ns("ul"), if v6 { "intr6" } else { "intr" });
        run(&[
            "-n", &ul, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        run(&["-n", &ul, "link", "set", link, "master", "br0", "up"]);
        run(&["-n", &ns, "link", "set", "eth0", "up"]);
        let mut add = vec!["-n", &ns, "addr", "add", addr, "dev", "eth0"];
        if v6 {
            add.push("nodad");
        }
        run(&add);
        intruder
    }

    /// Sends `n` datagrams that are not VXLAN to `to`:`port`.
    pub fn send_udp(&self, to: &str, port: u16, n: u32) {
        let script =
            format!("for i in $(seq {n}); do echo -n not-vxlan > /dev/udp/{to}/{port}; done");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "bash", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

impl Drop for Intruder {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The packets `host`'s member filter dropped: the counter of the input chain of its
/// `family` (`ip`, `ip6`) `weft` table.
pub fn encap_drops(lab: &Lab, host: &str, family: &str) -> u64 {
    let t = text(
        &lab.exec(host, &["nft", "list", "chain", family, "weft", "input"])
            .stdout,
    );
    let at = t
        .find("counter packets ")
        .unwrap_or_else(|| panic!("no member filter in {family} weft on {host}: {t}"))
        + "counter packets ".len();
    t[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap()
}

/// The member filter of h1's VXLAN port on the underlay of `family` (`ip`, `ip6`): a
/// stranger at `stranger` (with its prefix) sending to `h1_addr` is dropped and
/// counted; a member's (h3's) datagram is not.
pub fn assert_member_filter(lab: &Lab, family: &str, stranger: &str, h1_addr: &str) {
    let intruder = Intruder::attach(lab, stranger);
    let drops = || encap_drops(lab, "h1", family);
    let d0 = drops();
    intruder.send_udp(h1_addr, 8472, 3);
    lab.wait_until(
        &format!("the non-member's datagrams ({family}) to be dropped"),
        Duration::from_secs(2),
        || drops() >= d0 + 3,
    );
    let d1 = drops();
    let to = format!("echo -n hello > /dev/udp/{h1_addr}/8472");
    assert!(lab.exec("h3", &["bash", "-c", &to]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(drops(), d1, "a member's datagram is not dropped");
}
