//! Forwarding and masquerade rules.
//!
//! Weft's rules live in one nftables table, `ip weft`, built as a value by
//! [`weft_plan::firewall::table`] and loaded with `nft -f -` in one transaction (delete-and-recreate is atomic, so there is
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
pub use weft_plan::firewall::{EncapFilter, FirewallPlan, PoolRule, TABLE};
use weft_plan::firewall6::{Firewall6Plan, TABLE6};
use weft_plan::nft::Table;

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
    let v4 = load_table(&weft_plan::firewall::table(p))?;
    let v6 = match &p.ipv6 {
        Some(plan) => load_table6(plan)?,
        None => remove6()?,
    };
    Ok(v4 || v6)
}

/// Loads the IPv6 table (`ip6 weft`) unless the loaded one carries the same
/// fingerprint. Returns whether it loaded.
fn load_table6(plan: &Firewall6Plan) -> Result<bool, NftError> {
    load_unless_loaded("ip6", TABLE6, &plan.comment(), || plan.script())
}

/// Loads `script` (which replaces table `family name` whole) unless the loaded table's
/// comment is already `comment` (which carries the fingerprint). Whether it loaded.
fn load_unless_loaded(
    family: &str,
    name: &str,
    comment: &str,
    script: impl FnOnce() -> String,
) -> Result<bool, NftError> {
    let (ok, current, _) = run("nft", &["list", "table", family, name], None)?;
    if ok && current.contains(&format!("comment \"{comment}\"")) {
        return Ok(false);
    }
    let (ok, _, stderr) = run("nft", &["-f", "-"], Some(&script()))?;
    if !ok {
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    Ok(true)
}

/// Removes the IPv6 table where a network without IPv6 left one; whether there was one.
fn remove6() -> Result<bool, NftError> {
    let (ok, current, _) = run("nft", &["list", "table", "ip6", TABLE6], None)?;
    if !ok || !current.contains("comment \"weft ") {
        return Ok(false);
    }
    let (ok, _, stderr) = run("nft", &["delete", "table", "ip6", TABLE6], None)?;
    if !ok {
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    Ok(true)
}

/// Loads `table` whole (deleted and recreated) unless the loaded table's comment is
/// already `table`'s (which carries its fingerprint). Returns whether it loaded.
pub fn load_table(table: &Table) -> Result<bool, NftError> {
    load_unless_loaded("ip", &table.name, &table.comment, || table.script())
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
