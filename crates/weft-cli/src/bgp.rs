//! `weftctl bgp peer add|list|delete`: the routers outside the cluster that nodes peer
//! with, one JSON value per key under `<prefix>/weft/bgp/peers/` (Calico's field names;
//! a password as where each node reads it, never the password). A record is written
//! from typed options, so what reaches the store is well formed; the agents check it
//! again when they read it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, Subcommand};
use weft_alloc::Registry;
use weft_bgp::policy::{Community, LargeCommunity, OwnKind, PrefixRule};
use weft_bgp::speaker::MaxPrefixes;
use weft_model::bgp_peer::{
    PasswordSource, PeerNodes, PeerRecord, DEFAULT_MAX_PREFIXES_RESTART,
    DEFAULT_MAX_PREFIXES_WARNING,
};
use weft_model::selector::Selector;

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
    Add(Box<AddArgs>),
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
    #[arg(long, conflicts_with = "node_selector")]
    node: Option<Ipv4Addr>,
    /// Only the nodes whose labels (weftd --node-labels) match peer with it, in
    /// Calico's selector syntax: "rack == 'r1'".
    #[arg(long, value_parser = |s: &str| Selector::parse(s))]
    node_selector: Option<Selector>,
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
    /// eBGP multihop: the TTL the session's packets leave with, for a router not on
    /// the segment without TTL security (BIRD's `multihop N`).
    #[arg(long, conflicts_with = "ttl_security", value_parser = clap::value_parser!(u8).range(1..))]
    multihop: Option<u8>,
    /// Only prefixes this rule matches are taken from the peer (repeatable):
    /// "10.200.0.0/16" (inside it), "10.200.0.0/16 le 24", "10.200.0.0/16 ge 24 le 28".
    #[arg(long, value_parser = |s: &str| s.parse::<PrefixRule>())]
    accept: Vec<PrefixRule>,
    /// What the peer is sent (repeatable): Subnet, Blocks, Borrowed, Named, Aggregate
    /// (the cluster network). Default: all but Aggregate.
    #[arg(long, value_parser = |s: &str| s.parse::<OwnKind>())]
    export: Vec<OwnKind>,
    /// A community (RFC 1997) tagged on what the peer is sent (repeatable): 64512:100.
    #[arg(long, value_parser = |s: &str| s.parse::<Community>())]
    community: Vec<Community>,
    /// A large community (RFC 8092) tagged on what the peer is sent (repeatable):
    /// 64512:1:2.
    #[arg(long, value_parser = |s: &str| s.parse::<LargeCommunity>())]
    large_community: Vec<LargeCommunity>,
}

impl AddArgs {
    /// The record as the agents read it.
    fn record(&self) -> Result<PeerRecord, CliError> {
        let mut r = PeerRecord::new(self.peer_ip, self.asn);
        if let Some(n) = self.node {
            r.nodes = PeerNodes::Node(n);
        }
        if let Some(s) = &self.node_selector {
            r.nodes = PeerNodes::Selector(s.clone());
        }
        if let Some(f) = &self.password_file {
            if !f.is_absolute() {
                return Err(CliError::Usage(format!(
                    "--password-file {}: give an absolute path (each node reads it there)",
                    f.display()
                )));
            }
            r.password = Some(PasswordSource::File(f.clone()));
        }
        if let Some(e) = &self.password_env {
            r.password = Some(PasswordSource::Env(e.clone()));
        }
        r.max_prefixes = self.max_prefixes.map(|limit| MaxPrefixes {
            limit,
            warning_percent: self
                .max_prefixes_warning
                .unwrap_or(DEFAULT_MAX_PREFIXES_WARNING),
            restart: self
                .max_prefixes_restart
                .map(|s| Duration::from_secs(s.into()))
                .unwrap_or(DEFAULT_MAX_PREFIXES_RESTART),
        });
        r.ttl_security = self.ttl_security;
        r.multihop = self.multihop;
        r.accept = self.accept.clone();
        r.export = (!self.export.is_empty()).then(|| self.export.iter().copied().collect());
        r.communities = self.community.clone();
        r.large_communities = self.large_community.clone();
        Ok(r)
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
            let record = args.record()?.to_json();
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
            let peers: Vec<(String, Result<PeerRecord, String>)> = listing
                .kvs
                .iter()
                .map(|kv| {
                    let name = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key).to_owned();
                    (
                        name,
                        PeerRecord::parse(&kv.value).map_err(|e| e.to_string()),
                    )
                })
                .collect();
            if output == Output::Json {
                let all: Vec<serde_json::Value> = peers
                    .into_iter()
                    .map(|(name, r)| {
                        let mut v = match r {
                            Ok(r) => r.to_json(),
                            Err(why) => serde_json::json!({ "unreadable": why }),
                        };
                        v["name"] = name.into();
                        v
                    })
                    .collect();
                crate::output::print_json(&serde_json::Value::Array(all));
                return Ok(0);
            }
            let mut rows = vec![[
                "NAME",
                "PEER",
                "AS",
                "NODES",
                "MD5",
                "MAX-PREFIXES",
                "TTL",
                "ACCEPT",
                "EXPORT",
                "COMMUNITIES",
            ]
            .map(String::from)];
            for (name, r) in peers {
                let r = match r {
                    Ok(r) => r,
                    Err(why) => {
                        // What every agent logs for it too; it keeps its previous value.
                        eprintln!("BGP peer {name}: unreadable: {why}");
                        continue;
                    }
                };
                let joined = |items: Vec<String>| match items.is_empty() {
                    true => "-".to_owned(),
                    false => items.join(","),
                };
                rows.push([
                    name,
                    r.address.to_string(),
                    r.asn.to_string(),
                    match &r.nodes {
                        PeerNodes::All => "all".to_owned(),
                        PeerNodes::Node(n) => n.to_string(),
                        PeerNodes::Selector(s) => s.to_string(),
                    },
                    if r.password.is_some() { "on" } else { "off" }.into(),
                    r.max_prefixes
                        .map(|m| m.limit.to_string())
                        .unwrap_or_else(|| "-".into()),
                    match (r.ttl_security, r.multihop) {
                        (Some(hops), _) => format!("security {hops}"),
                        (None, Some(ttl)) => format!("multihop {ttl}"),
                        (None, None) => "-".into(),
                    },
                    joined(r.accept.iter().map(ToString::to_string).collect()),
                    match &r.export {
                        None => "default".to_owned(),
                        Some(kinds) => joined(kinds.iter().map(|k| k.name().to_owned()).collect()),
                    },
                    joined(
                        r.communities
                            .iter()
                            .map(ToString::to_string)
                            .chain(r.large_communities.iter().map(ToString::to_string))
                            .collect(),
                    ),
                ]);
            }
            print!("{}", crate::output::columns(&rows));
            Ok(0)
        }
    }
}
