//! Forwarding and masquerade rules.
//!
//! Weft's rules live in one nftables table, `ip weft`, rendered as text by [`render`] and
//! loaded with `nft -f -` in one transaction (delete-and-recreate is atomic, so there is
//! never a moment without rules). The table's comment carries a fingerprint of its
//! contents: when the kernel already has the same fingerprint nothing is loaded, so an
//! agent restart changes nothing.
//!
//! An accept in Weft's own table cannot overrule a drop in someone else's: nftables runs
//! every base chain on a hook. Docker (and others) set iptables' FORWARD policy to DROP;
//! there Weft inserts two ACCEPT rules for the cluster network at the top of iptables'
//! FORWARD chain, marked with the comment [`IPTABLES_COMMENT`], as flannel does.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use thiserror::Error;
pub use weft_plan::firewall::{EncapFilter, FirewallPlan, PoolRule};

pub const TABLE: &str = "weft";
pub const IPTABLES_COMMENT: &str = "weft: accept cluster network";

#[derive(Debug, Error)]
pub enum NftError {
    #[error("cannot run {cmd}: {source} (is the nftables package installed?)")]
    Spawn {
        cmd: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} refused the rules: {stderr}")]
    Refused { cmd: &'static str, stderr: String },
}

/// A fingerprint of the rules, stable across builds (see [`crate::hash`]).
fn fingerprint(s: &str) -> String {
    format!("{:016x}", weft_plan::hash::fnv1a(s.bytes()))
}

fn body(p: &FirewallPlan) -> String {
    let net = p.network;
    let pools: String = p
        .pools
        .iter()
        .map(|r| format!("    ip saddr {0} accept\n    ip daddr {0} accept\n", r.cidr))
        .collect();
    let mut s = format!(
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{}\
         \x20   ip saddr {net} accept\n    ip daddr {net} accept\n{pools}  }}\n",
        isolation(p)
    );
    if let Some(f) = &p.encap {
        let members: Vec<String> = f.members.iter().map(|m| m.to_string()).collect();
        let from = if members.is_empty() {
            String::new()
        } else {
            format!(" ip saddr != {{ {} }}", members.join(", "))
        };
        s += &format!(
            "  chain input {{\n    type filter hook input priority filter; policy accept;\n\
             \x20   udp dport {port}{from} counter drop comment \"encapsulated traffic from a non-member\"\n  }}\n",
            port = f.port
        );
    }
    let named_masq: Vec<_> = p.isolated.iter().filter(|n| n.masquerade).collect();
    let pool_masq: Vec<_> = p.pools.iter().filter(|r| r.nat_outgoing).collect();
    if p.ip_masq || !named_masq.is_empty() || !pool_masq.is_empty() {
        s += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n";
        for n in named_masq {
            let sub = n.subnet;
            s += &format!(
                "    ip saddr {sub} ip daddr != {{ {sub}, 224.0.0.0/4 }} masquerade fully-random\n"
            );
        }
        s += &cluster_masq(p);
        if !pool_masq.is_empty() {
            // Calico's natOutgoing: from a pool to anything but the pools, the cluster
            // network and multicast.
            let mut inside: Vec<String> = p.pools.iter().map(|r| r.cidr.to_string()).collect();
            inside.push(net.to_string());
            inside.push("224.0.0.0/4".into());
            let inside = inside.join(", ");
            for r in pool_masq {
                s += &format!(
                    "    ip saddr {} ip daddr != {{ {inside} }} masquerade fully-random\n",
                    r.cidr
                );
            }
        }
        s += "  }\n";
    }
    s
}

/// The forward rules that keep named networks apart: for each, connections into it
/// only from itself and out of it only to the outside (or nowhere, when internal).
/// Established traffic first, so replies to what a network may start pass.
fn isolation(p: &FirewallPlan) -> String {
    if p.isolated.is_empty() {
        return String::new();
    }
    let mut all: Vec<String> = p.isolated.iter().map(|n| n.subnet.to_string()).collect();
    all.push(p.network.to_string());
    all.extend(p.pools.iter().map(|r| r.cidr.to_string()));
    let all = all.join(", ");
    let mut s = String::from("    ct state established,related accept\n");
    for n in &p.isolated {
        let sub = n.subnet;
        s += &format!(
            "    ip daddr {sub} ip saddr != {sub} counter drop comment \"into named network {sub}\"\n"
        );
        if n.internal {
            s += &format!(
                "    ip saddr {sub} ip daddr != {sub} counter drop comment \"out of internal network {sub}\"\n"
            );
        } else {
            s += &format!(
                "    ip saddr {sub} ip daddr {{ {all} }} ip daddr != {sub} counter drop comment \"from named network {sub}\"\n    ip saddr {sub} accept\n"
            );
        }
    }
    s
}

/// flannel's masquerade rules for the cluster network, when `--ip-masq`.
fn cluster_masq(p: &FirewallPlan) -> String {
    let net = p.network;
    if !p.ip_masq {
        return String::new();
    }
    // flannel's four rules: pods talking to pods keep their addresses; pods going out
    // are masqueraded (multicast excepted); traffic from outside to this node's pods is
    // left alone; traffic from outside to other nodes' pods is masqueraded.
    format!(
        "    ip saddr {net} ip daddr {net} return\n\
         \x20   ip saddr {net} ip daddr != 224.0.0.0/4 masquerade fully-random\n\
         \x20   ip saddr != {net} ip daddr {local} return\n\
         \x20   ip saddr != {net} ip daddr {net} masquerade fully-random\n",
        local = p.local_subnet
    )
}

/// The full `nft -f` script: create-or-keep, delete, recreate, all in one transaction.
pub fn render(p: &FirewallPlan) -> String {
    let body = body(p);
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  comment \"weft {}\"\n{body}}}\n",
        fingerprint(&body)
    )
}

pub(crate) fn run(
    cmd: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(bool, String, String), NftError> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NftError::Spawn { cmd, source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| NftError::Spawn { cmd, source })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NftError::Spawn { cmd, source })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    ))
}

/// Loads the rules unless the kernel already has exactly these. Returns whether it loaded.
pub fn apply(p: &FirewallPlan) -> Result<bool, NftError> {
    let wanted = format!("weft {}", fingerprint(&body(p)));
    load_table(TABLE, &render(p), &wanted)
}

/// Loads `script` (a whole table `ip TABLE`, deleted and recreated) unless the loaded
/// table's comment carries `fingerprint`. Returns whether it loaded.
pub fn load_table(table: &str, script: &str, fingerprint: &str) -> Result<bool, NftError> {
    let (ok, current, _) = run("nft", &["list", "table", "ip", table], None)?;
    if ok && current.contains(&format!("comment \"{fingerprint}\"")) {
        return Ok(false);
    }
    let (ok, _, stderr) = run("nft", &["-f", "-"], Some(script))?;
    if !ok {
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    Ok(true)
}

/// Whether Weft's table is loaded (for `weftctl diagnose`; reads, changes nothing).
pub fn table_loaded() -> Result<bool, NftError> {
    let (ok, current, _) = run("nft", &["list", "table", "ip", TABLE], None)?;
    Ok(ok && current.contains("comment \"weft "))
}

/// Removes Weft's table (for `weftd --cleanup` style teardown and tests).
pub fn remove() -> Result<(), NftError> {
    let (ok, _, stderr) = run("nft", &["delete", "table", "ip", TABLE], None)?;
    if !ok && !stderr.contains("No such file") {
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    Ok(())
}

/// The iptables rules that let cluster traffic through a FORWARD chain whose policy is DROP.
fn forward_rules(network: &Ipv4Net) -> [Vec<String>; 2] {
    let rule = |dir: &str| {
        [
            dir,
            &network.to_string(),
            "-m",
            "comment",
            "--comment",
            IPTABLES_COMMENT,
            "-j",
            "ACCEPT",
        ]
        .map(String::from)
        .to_vec()
    };
    [rule("-s"), rule("-d")]
}

/// Whether a FORWARD chain listing (`iptables -S FORWARD`) drops by default.
pub fn forward_policy_drops(listing: &str) -> bool {
    listing.lines().any(|l| l.trim() == "-P FORWARD DROP")
}

/// If iptables is present and its FORWARD policy is DROP, makes sure Weft's ACCEPT rules
/// stand at the top. Returns how many rules were inserted.
pub fn ensure_iptables_forward(network: &Ipv4Net) -> Result<usize, NftError> {
    let listing = match run("iptables", &["-w", "-S", "FORWARD"], None) {
        Ok((true, out, _)) => out,
        Ok((false, _, _)) | Err(NftError::Spawn { .. }) => return Ok(0), // no iptables here
        Err(e) => return Err(e),
    };
    if !forward_policy_drops(&listing) {
        return Ok(0);
    }
    let mut inserted = 0;
    for rule in forward_rules(network).iter().rev() {
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        let check: Vec<&str> = ["-w", "-C", "FORWARD"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        if run("iptables", &check, None)?.0 {
            continue;
        }
        let insert: Vec<&str> = ["-w", "-I", "FORWARD", "1"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let (ok, _, stderr) = run("iptables", &insert, None)?;
        if !ok {
            return Err(NftError::Refused {
                cmd: "iptables",
                stderr,
            });
        }
        inserted += 1;
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(masq: bool) -> FirewallPlan {
        FirewallPlan {
            network: "10.244.0.0/16".parse().unwrap(),
            local_subnet: "10.244.3.0/24".parse().unwrap(),
            ip_masq: masq,
            encap: None,
            isolated: Vec::new(),
            pools: Vec::new(),
        }
    }

    #[test]
    fn encapsulated_traffic_only_from_members() {
        let mut p = plan(false);
        p.encap = Some(EncapFilter {
            port: 8472,
            members: vec![
                "192.168.1.1".parse().unwrap(),
                "192.168.1.2".parse().unwrap(),
            ],
        });
        let s = render(&p);
        assert!(
            s.contains("udp dport 8472 ip saddr != { 192.168.1.1, 192.168.1.2 } counter drop"),
            "{s}"
        );
        p.encap = Some(EncapFilter {
            port: 4789,
            members: vec![],
        });
        assert!(render(&p).contains("udp dport 4789 counter drop"));
    }

    #[test]
    fn named_networks_are_isolated_before_anything_is_accepted() {
        use weft_plan::firewall::IsolatedNet;
        let mut p = plan(false);
        let net = |s: &str, internal| IsolatedNet {
            subnet: s.parse().unwrap(),
            internal,
            masquerade: !internal,
        };
        p.isolated = vec![net("10.50.0.0/24", false), net("10.52.0.0/24", true)];
        let s = render(&p);
        let lines: Vec<&str> = s.lines().map(str::trim).collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in\n{s}"))
        };
        let established = at("ct state established,related accept");
        let into = at("ip daddr 10.50.0.0/24 ip saddr != 10.50.0.0/24 counter drop");
        let across = at("ip saddr 10.50.0.0/24 ip daddr { 10.50.0.0/24, 10.52.0.0/24, 10.244.0.0/16 } ip daddr != 10.50.0.0/24 counter drop");
        let out = at("ip saddr 10.50.0.0/24 accept");
        let internal = at("ip saddr 10.52.0.0/24 ip daddr != 10.52.0.0/24 counter drop");
        let cluster = at("ip saddr 10.244.0.0/16 accept");
        assert!(established < into && into < across && across < out, "{s}");
        assert!(
            internal < cluster && out < cluster,
            "isolation comes before the cluster's accepts:\n{s}"
        );
        // Out of the network masqueraded, never within it; nothing out of an internal one.
        assert!(s.contains("ip saddr 10.50.0.0/24 ip daddr != { 10.50.0.0/24, 224.0.0.0/4 } masquerade fully-random"), "{s}");
        assert!(
            !s.contains("ip saddr 10.52.0.0/24 ip daddr != { 10.52.0.0/24"),
            "{s}"
        );
        assert!(
            !s.contains("ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade"),
            "no --ip-masq: no cluster NAT\n{s}"
        );
    }

    #[test]
    fn pools_are_forwarded_and_nat_outgoing_masquerades_only_leaving_traffic() {
        let mut p = plan(false);
        p.pools = vec![
            PoolRule {
                cidr: "10.248.0.0/16".parse().unwrap(),
                nat_outgoing: true,
            },
            PoolRule {
                cidr: "10.249.0.0/24".parse().unwrap(),
                nat_outgoing: false,
            },
        ];
        let s = render(&p);
        assert!(
            s.contains("ip saddr 10.248.0.0/16 accept\n    ip daddr 10.248.0.0/16 accept"),
            "{s}"
        );
        assert!(s.contains("ip daddr 10.249.0.0/24 accept"), "{s}");
        assert!(
            s.contains("ip saddr 10.248.0.0/16 ip daddr != { 10.248.0.0/16, 10.249.0.0/24, 10.244.0.0/16, 224.0.0.0/4 } masquerade fully-random"),
            "{s}"
        );
        assert!(
            !s.contains("ip saddr 10.249.0.0/24 ip daddr !="),
            "no natOutgoing: no NAT\n{s}"
        );
    }

    #[test]
    fn masquerade_never_between_pods() {
        let s = render(&plan(true));
        let lines: Vec<&str> = s.lines().map(str::trim).collect();
        let first_nat = lines.iter().position(|l| l.contains("masquerade")).unwrap();
        let pod_to_pod = lines
            .iter()
            .position(|l| *l == "ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return")
            .unwrap();
        assert!(
            pod_to_pod < first_nat,
            "pod-to-pod return comes before any masquerade:\n{s}"
        );
        assert!(s.contains("ip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return"));
    }

    #[test]
    fn no_nat_chain_without_ip_masq_and_fingerprint_tracks_content() {
        let off = render(&plan(false));
        assert!(!off.contains("postrouting"));
        assert!(
            off.contains("ip saddr 10.244.0.0/16 accept")
                && off.contains("ip daddr 10.244.0.0/16 accept")
        );
        assert_ne!(
            fingerprint(&body(&plan(false))),
            fingerprint(&body(&plan(true)))
        );
        assert_eq!(
            render(&plan(true)),
            render(&plan(true)),
            "rendering is deterministic"
        );
    }

    #[test]
    fn docker_style_drop_policy_is_detected() {
        assert!(forward_policy_drops(
            "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n"
        ));
        assert!(!forward_policy_drops("-P FORWARD ACCEPT\n"));
        let rules = forward_rules(&"10.244.0.0/16".parse().unwrap());
        assert_eq!(
            rules[0][..2],
            ["-s".to_string(), "10.244.0.0/16".to_string()]
        );
    }
}
