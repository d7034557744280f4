//! `weftctl leases`: every node's subnet lease, with what the nodes report about reaching it.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use serde_json::json;
use weft_alloc::registry::{NodeStatus, Skipped};
use weft_alloc::screen::screen;
use weft_alloc::{Lease, Registry};

pub use crate::output::Output;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weftctl leases\n  weftctl leases -o json\n  weftctl leases reserve 10.244.3.0/24 --public-ip 192.168.77.1\n  weftctl leases delete 10.244.3.0/24"
)]
pub struct LeasesArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(subcommand)]
    pub action: Option<LeaseAction>,
}

#[derive(Debug, Subcommand)]
pub enum LeaseAction {
    /// Delete a lease: the node loses its subnet and every peer drops its route to it.
    /// Refused for a live lease (a running node's) unless --force.
    /// Example: weftctl leases delete 10.244.3.0/24
    Delete {
        /// The lease's subnet, e.g. 10.244.3.0/24.
        #[arg(value_parser = crate::prefix::parse)]
        subnet: Ipv4Net,
        /// Delete it even though a running node holds it (that node claims another
        /// subnet; its containers' addresses stop working).
        #[arg(long)]
        force: bool,
    },
    /// Reserve a subnet for the node with this public IP (a lease that never expires).
    /// Refused when another node holds the subnet unless --force.
    /// Example: weftctl leases reserve 10.244.3.0/24 --public-ip 192.168.77.1
    Reserve {
        /// One of the network's subnets, e.g. 10.244.3.0/24.
        #[arg(value_parser = crate::prefix::parse)]
        subnet: Ipv4Net,
        /// The public IP of the node the subnet is kept for (its `--public-ip`, or the
        /// address of its external interface).
        #[arg(long)]
        public_ip: Ipv4Addr,
        /// Take the subnet even though another node holds it.
        #[arg(long)]
        force: bool,
    },
}

/// Who holds `subnet` with a live lease (one with a TTL: a running node renews it), if
/// anyone.
async fn live_holder(
    registry: &Registry,
    subnet: &Ipv4Net,
) -> Result<Option<String>, crate::CliError> {
    let leases = registry.leases().await?.leases;
    let Some(l) = leases
        .into_iter()
        .find(|l| &l.subnet == subnet && !l.is_reservation())
    else {
        return Ok(None);
    };
    let left = registry
        .expires_in(&l)
        .await?
        .map(human)
        .unwrap_or_else(|| "?".into());
    Ok(Some(format!(
        "held by {} (a live lease, expires in {left})",
        l.attrs.public_ip
    )))
}

/// A duration as `45s`, `3m20s` or `23h59m` (the EXPIRES column, diagnose's lease line).
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Who cannot reach `lease`, from the nodes' published statuses.
fn unreachable_from(lease: &Lease, statuses: &[(Ipv4Net, NodeStatus)]) -> Vec<(Ipv4Net, String)> {
    statuses
        .iter()
        .filter_map(|(node, st)| {
            st.unreachable
                .iter()
                .find(|u| {
                    u.subnet == ipnet::IpNet::V4(lease.subnet)
                        || Some(u.subnet) == lease.ipv6_subnet.map(ipnet::IpNet::V6)
                })
                .map(|u| (*node, u.reason.clone()))
        })
        .collect()
}

pub async fn run(registry: &Registry, args: LeasesArgs) -> Result<i32, crate::CliError> {
    match args.action {
        Some(LeaseAction::Delete { subnet, force }) => delete(registry, subnet, force).await,
        Some(LeaseAction::Reserve {
            subnet,
            public_ip,
            force,
        }) => reserve(registry, subnet, public_ip, force).await,
        None => list(registry, args.output).await,
    }
}

/// `weftctl leases delete SUBNET`: refused for a live holder unless forced.
async fn delete(registry: &Registry, subnet: Ipv4Net, force: bool) -> Result<i32, crate::CliError> {
    if let Some(holder) = live_holder(registry, &subnet.trunc()).await? {
        if !force {
            return Err(crate::CliError::LeaseInUse {
                subnet,
                holder,
                doing: "deleting it",
            });
        }
    }
    let existed = registry.delete_lease(&subnet.trunc()).await?;
    if !existed {
        return Err(crate::CliError::NoLease(subnet));
    }
    println!("deleted lease {subnet}");
    Ok(0)
}

/// `weftctl leases reserve SUBNET PUBLIC_IP`: a subnet of the pool, not another node's
/// unless forced.
async fn reserve(
    registry: &Registry,
    subnet: Ipv4Net,
    public_ip: Ipv4Addr,
    force: bool,
) -> Result<i32, crate::CliError> {
    let cfg = registry.config().await?;
    if !weft_alloc::pool::contains(&cfg, &subnet) {
        return Err(crate::CliError::NotAPoolSubnet {
            subnet,
            len: cfg.subnet_len,
            min: cfg.subnet_min,
            max: cfg.subnet_max,
        });
    }
    let held = registry
        .leases()
        .await?
        .leases
        .into_iter()
        .find(|l| l.subnet == subnet && l.attrs.public_ip != public_ip);
    if let (Some(l), false) = (held, force) {
        let holder = if l.is_reservation() {
            format!("reserved for {}", l.attrs.public_ip)
        } else {
            format!("held by {} (a live lease)", l.attrs.public_ip)
        };
        return Err(crate::CliError::LeaseInUse {
            subnet,
            holder,
            doing: "reserving it for another node",
        });
    }
    registry.reserve(&subnet, public_ip).await?;
    println!("reserved {subnet} for {public_ip}");
    Ok(0)
}

/// A lease as listed: its remaining time and the nodes (by subnet) that cannot reach
/// it, with why.
type Row<'a> = (&'a Lease, Option<Duration>, Vec<(Ipv4Net, String)>);

/// `weftctl leases`: every lease, its expiry and what the nodes make of it.
async fn list(registry: &Registry, output: Output) -> Result<i32, crate::CliError> {
    let snap = registry.leases().await?;
    let statuses = registry.statuses().await?;
    // What every node makes of each lease: leases that cannot stand are routed by none.
    let rejected = match registry.config().await {
        Ok(cfg) => screen(&cfg, &snap.leases).rejected,
        Err(_) => Vec::new(),
    };
    let mut rows = Vec::new();
    for l in &snap.leases {
        let ttl = registry.expires_in(l).await?;
        rows.push((l, ttl, unreachable_from(l, &statuses)));
    }
    // By address, not as text (10.244.9.0 before 10.244.10.0).
    rows.sort_by_key(|(l, _, _)| (l.subnet.network(), l.subnet.prefix_len()));
    let conflict = |l: &Lease| {
        rejected
            .iter()
            .find(|r| r.lease.subnet == l.subnet)
            .map(|r| r.to_string())
    };
    match output {
        Output::Json => print_json(&rows, &snap.skipped, &conflict),
        Output::Table => print_table(&rows, &snap.skipped, &conflict),
    }
    Ok(0)
}

/// The listing as one JSON document (leases and unreadable keys).
fn print_json(rows: &[Row], skipped: &[Skipped], conflict: &dyn Fn(&Lease) -> Option<String>) {
    let leases: Vec<_> = rows
        .iter()
        .map(|(l, ttl, unreach)| {
            json!({
                "subnet": l.subnet.to_string(),
                "public_ip": l.attrs.public_ip.to_string(),
                "ipv6_subnet": l.ipv6_subnet.map(|s| s.to_string()),
                "public_ipv6": l.attrs.public_ipv6.map(|a| a.to_string()),
                "backend_type": l.attrs.backend_type,
                "backend_data": l.attrs.backend_data,
                "reservation": l.is_reservation(),
                "expires_in_seconds": ttl.map(|d| d.as_secs()),
                "unreachable_from": unreach.iter().map(|(n, r)| json!({"node": n.to_string(), "reason": r})).collect::<Vec<_>>(),
                "conflict": conflict(l),
            })
        })
        .collect();
    let skipped: Vec<_> = skipped
        .iter()
        .map(|s| json!({"key": s.key, "error": s.reason}))
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"leases": leases, "unreadable": skipped})).unwrap()
    );
}

/// The listing as a table, unreadable keys last.
fn print_table(rows: &[Row], skipped: &[Skipped], conflict: &dyn Fn(&Lease) -> Option<String>) {
    // Dual stack: each node's IPv6 subnet and address beside the IPv4 ones; an
    // IPv4-only cluster's table stays as it always was.
    let dual = rows.iter().any(|(l, _, _)| l.ipv6_subnet.is_some());
    let v6_columns = |subnet: &str, ip: &str| match dual {
        true => format!("{subnet:<22} {ip:<24} "),
        false => String::new(),
    };
    println!(
        "{:<18} {:<16} {}{:<9} {:<9} STATUS",
        "SUBNET",
        "PUBLIC IP",
        v6_columns("IPV6 SUBNET", "PUBLIC IPV6"),
        "BACKEND",
        "EXPIRES"
    );
    for (l, ttl, unreach) in rows {
        let expires = match (l.is_reservation(), ttl) {
            (true, _) => "reserved".to_string(),
            (false, Some(d)) => human(*d),
            (false, None) => "expired".to_string(),
        };
        let status = match (conflict(l), unreach.as_slice()) {
            (Some(c), _) => format!("conflict: {c}; no node routes to it"),
            (None, []) => "ok".to_string(),
            (None, [(node, reason), rest @ ..]) => {
                let more = if rest.is_empty() {
                    String::new()
                } else {
                    format!(" (and {} more)", rest.len())
                };
                format!("unreachable from {node}{more}: {reason}")
            }
        };
        let text = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<18} {:<16} {}{:<9} {:<9} {status}",
            l.subnet.to_string(),
            l.attrs.public_ip.to_string(),
            v6_columns(
                &text(l.ipv6_subnet.map(|s| s.to_string())),
                &text(l.attrs.public_ipv6.map(|a| a.to_string()))
            ),
            l.attrs.backend_type,
            expires
        );
    }
    for s in skipped {
        println!(
            "{:<18} unreadable: {}",
            s.key.rsplit('/').next().unwrap_or(&s.key),
            s.reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_alloc::registry::Unreachable;

    /// A node that cannot route a peer's IPv6 subnet (host-gw: the peer published no
    /// IPv6 address) reports that subnet; the lease's row names it either way.
    #[test]
    fn unreachable_is_matched_in_either_family() {
        let lease = Lease {
            subnet: "10.244.3.0/24".parse().unwrap(),
            ipv6_subnet: Some("fd00:10:244:3::/64".parse().unwrap()),
            attrs: weft_alloc::LeaseAttrs {
                labels: Default::default(),
                public_ip: "192.168.77.3".parse().unwrap(),
                public_ipv6: None,
                backend_type: "host-gw".into(),
                backend_data: serde_json::Value::Null,
                backend_v6_data: serde_json::Value::Null,
            },
            store_lease: Some(1),
            mod_revision: 1,
        };
        let status = |subnet: &str| NodeStatus {
            unreachable: vec![Unreachable {
                subnet: subnet.parse().unwrap(),
                reason: "peer published no IPv6 address".into(),
            }],
            ..Default::default()
        };
        let from: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let found = unreachable_from(&lease, &[(from, status("fd00:10:244:3::/64"))]);
        assert_eq!(
            found,
            [(from, "peer published no IPv6 address".to_string())]
        );
        assert!(unreachable_from(&lease, &[(from, status("fd00:10:244:9::/64"))]).is_empty());
    }
}
