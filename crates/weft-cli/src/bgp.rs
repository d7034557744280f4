//! `weftctl bgp peer add|list|delete`: the routers outside the cluster that nodes peer
//! with, one JSON value per key under `<prefix>/weft/bgp/peers/` (Calico's field names;
//! a password as where each node reads it, never the password). A record is written
//! from typed options, so what reaches the store is well formed; the agents check it
//! again when they read it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use weft_alloc::Registry;

use crate::error::CliError;
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum BgpCmd {
    /// External BGP peers (routers outside the cluster): add, list, delete.
    #[command(subcommand)]
    Peer(PeerCmd),
}

#[derive(Debug, Subcommand)]
pub enum PeerCmd {
    /// Add a peer, or replace the one of that name.
    #[command(
        after_help = "Example:\n  weftctl bgp peer add tor1 --peer-ip 192.168.77.254 --as 64513 --password-file /etc/weft/bgp/tor1.key --max-prefixes 1000 --ttl-security 1"
    )]
    Add(AddArgs),
    /// The peers, by name.
    #[command(after_help = "Example:\n  weftctl bgp peer list -o json")]
    List {
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a peer by name: every node ends its session with it.
    #[command(after_help = "Example:\n  weftctl bgp peer delete tor1")]
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The peer's name (its key under …/weft/bgp/peers/).
    name: String,
    /// The router's address.
    #[arg(long)]
    peer_ip: Ipv4Addr,
    /// The router's AS number.
    #[arg(long = "as", value_parser = clap::value_parser!(u32).range(1..))]
    asn: u32,
    /// Only the node with this public IP peers with it (every node otherwise).
    #[arg(long)]
    node: Option<Ipv4Addr>,
    /// TCP MD5: the file holding the password on each node (an absolute path).
    #[arg(long, conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
    /// TCP MD5: the variable of weftd's environment holding the password.
    #[arg(long)]
    password_env: Option<String>,
    /// At most this many prefixes from the peer (Cease, RFC 4486, past it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_prefixes: Option<u32>,
    /// Warn at this percent of --max-prefixes (default 80).
    #[arg(long, requires = "max_prefixes", value_parser = clap::value_parser!(u8).range(1..=100))]
    max_prefixes_warning: Option<u8>,
    /// Seconds a session closed for max-prefix stays down (default 60).
    #[arg(long, requires = "max_prefixes", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    max_prefixes_restart: Option<u32>,
    /// TTL security (RFC 5082) for a router this many hops away (1: on the segment).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=254))]
    ttl_security: Option<u8>,
    /// Only prefixes inside this network are taken from the peer (repeatable).
    #[arg(long)]
    accept: Vec<Ipv4Net>,
}

impl AddArgs {
    /// The record as the agents read it.
    fn record(&self) -> Result<serde_json::Value, CliError> {
        let mut v = serde_json::json!({"PeerIP": self.peer_ip.to_string(), "ASNumber": self.asn});
        if let Some(n) = self.node {
            v["Node"] = n.to_string().into();
        }
        if let Some(f) = &self.password_file {
            if !f.is_absolute() {
                return Err(CliError::Usage(format!(
                    "--password-file {}: give an absolute path (each node reads it there)",
                    f.display()
                )));
            }
            v["Password"] = serde_json::json!({"File": f.display().to_string()});
        }
        if let Some(e) = &self.password_env {
            v["Password"] = serde_json::json!({"Env": e});
        }
        if let Some(m) = self.max_prefixes {
            v["MaxPrefixes"] = m.into();
        }
        if let Some(w) = self.max_prefixes_warning {
            v["MaxPrefixesWarning"] = w.into();
        }
        if let Some(r) = self.max_prefixes_restart {
            v["MaxPrefixesRestart"] = r.into();
        }
        if let Some(t) = self.ttl_security {
            v["TTLSecurity"] = t.into();
        }
        if !self.accept.is_empty() {
            let nets: Vec<String> = self.accept.iter().map(ToString::to_string).collect();
            v["Accept"] = nets.into();
        }
        Ok(v)
    }
}

/// A peer's name: a key segment, as an object name is elsewhere.
fn check_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "peer name {name:?}: use lowercase letters, digits and '-' (at most 63)"
        )))
    }
}

pub async fn run(registry: &Registry, cmd: BgpCmd) -> Result<i32, CliError> {
    let BgpCmd::Peer(cmd) = cmd;
    let prefix = registry.keys().bgp_peers();
    let store = registry.store();
    match cmd {
        PeerCmd::Add(args) => {
            check_name(&args.name)?;
            let record = args.record()?;
            let key = format!("{prefix}{}", args.name);
            store.put(&key, record.to_string().as_bytes(), None).await?;
            println!(
                "BGP peer {} ({} AS {}) stored",
                args.name, args.peer_ip, args.asn
            );
            Ok(0)
        }
        PeerCmd::Delete { name } => {
            check_name(&name)?;
            if store.delete(&format!("{prefix}{name}")).await? {
                println!("BGP peer {name} deleted");
                Ok(0)
            } else {
                Err(CliError::Usage(format!(
                    "no BGP peer {name} (`weftctl bgp peer list` shows them)"
                )))
            }
        }
        PeerCmd::List { output } => {
            let listing = store.list(&prefix).await?;
            let peers: Vec<(String, serde_json::Value)> = listing
                .kvs
                .iter()
                .map(|kv| {
                    let name = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key).to_owned();
                    let v = serde_json::from_slice(&kv.value).unwrap_or_else(
                        |_| serde_json::json!({"unreadable": String::from_utf8_lossy(&kv.value)}),
                    );
                    (name, v)
                })
                .collect();
            if output == Output::Json {
                let all: Vec<serde_json::Value> = peers
                    .into_iter()
                    .map(|(name, mut v)| {
                        v["name"] = name.into();
                        v
                    })
                    .collect();
                crate::output::print_json(&serde_json::Value::Array(all));
                return Ok(0);
            }
            println!(
                "{:<16} {:<16} {:<10} {:<16} {:<4} {:<12} {:<4} ACCEPT",
                "NAME", "PEER", "AS", "NODE", "MD5", "MAX-PREFIXES", "TTL"
            );
            for (name, v) in peers {
                let s = |k: &str| match &v[k] {
                    serde_json::Value::Null => "-".to_owned(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let accept = v["Accept"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "-".into());
                let md5 = if v["Password"].is_null() { "off" } else { "on" };
                println!(
                    "{:<16} {:<16} {:<10} {:<16} {:<4} {:<12} {:<4} {}",
                    name,
                    s("PeerIP"),
                    s("ASNumber"),
                    s("Node"),
                    md5,
                    s("MaxPrefixes"),
                    s("TTLSecurity"),
                    accept
                );
            }
            Ok(0)
        }
    }
}
