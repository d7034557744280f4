//! An external BGP peer's record (`<prefix>/weft/bgp/peers/<name>`), in Calico's field
//! names where Calico has them: one type that `weftctl bgp peer add` writes and the
//! agents read, so the field names live in one place and a record one side writes the
//! other reads back the same.
//!
//! ```json
//! {"PeerIP": "192.168.77.254", "ASNumber": 64513,
//!  "NodeSelector": "rack == 'r1'",            // or "Node": "<public IP>"; neither: all
//!  "Password": {"File": "/etc/weft/bgp/tor1.key"},   // or {"Env": "VARIABLE"}
//!  "MaxPrefixes": 1000, "MaxPrefixesWarning": 80, "MaxPrefixesRestart": 60,
//!  "TTLSecurity": 1,                          // or "Multihop": 2 (a TTL of its own)
//!  "Accept": ["10.200.0.0/16 le 24"],
//!  "Export": ["Subnet", "Blocks", "Borrowed", "Named", "Aggregate"],
//!  "Communities": ["64512:100"], "LargeCommunities": ["64512:1:2"]}
//! ```

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;
use weft_bgp::policy::{Community, LargeCommunity, OwnKind, PolicyError, PrefixRule};
use weft_bgp::speaker::MaxPrefixes;

use crate::selector::{NodeLabels, Selector, SelectorError};

/// Why a peer's record was refused (each names its field).
#[derive(Debug, Error)]
pub enum PeerError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} must be an IPv4 address, not {1}")]
    Address(&'static str, String),
    #[error("PeerIP is missing")]
    NoPeerIp,
    #[error("ASNumber must be a number from 1 to 4294967295")]
    Asn,
    #[error("{0} must be a whole number from {1} to {2}")]
    Range(&'static str, u64, u64),
    #[error("{0} must be a list of strings, not {1}")]
    List(&'static str, String),
    #[error("{0}: {1}")]
    Policy(&'static str, PolicyError),
    #[error("MaxPrefixesWarning and MaxPrefixesRestart need MaxPrefixes")]
    NoMaxPrefixes,
    #[error("Password must be {{\"File\": \"/path\"}} or {{\"Env\": \"VARIABLE\"}} (the password itself is never stored), not {0}")]
    Password(String),
    #[error("NodeSelector must be a string, not {0}")]
    SelectorType(String),
    #[error("NodeSelector: {0}")]
    Selector(#[from] SelectorError),
    #[error("TTLSecurity and Multihop cannot both be given (TTL security sends with TTL 255 already; Multihop is a TTL for a peer without it)")]
    TtlSecurityAndMultihop,
    #[error("Node and NodeSelector cannot both be given (Node is one node, NodeSelector chooses by labels)")]
    NodeAndSelector,
}

/// Where a peer's MD5 password is read on each node: the store holds only this, never
/// the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file on the node (its whole content, a final newline left out).
    File(PathBuf),
    /// An environment variable of weftd's.
    Env(String),
}

/// Which nodes peer with the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerNodes {
    /// Every node ("global").
    All,
    /// The node with this public IP ("node specific": its top-of-rack router).
    Node(Ipv4Addr),
    /// The nodes whose labels match ("node specific" on each of them).
    Selector(Selector),
}

impl PeerNodes {
    /// Whether the node with this address and these labels peers with the router.
    pub fn includes(&self, node: Ipv4Addr, labels: &NodeLabels) -> bool {
        match self {
            PeerNodes::All => true,
            PeerNodes::Node(n) => *n == node,
            PeerNodes::Selector(s) => s.matches(labels),
        }
    }
}

/// An external peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub address: Ipv4Addr,
    pub asn: u32,
    pub nodes: PeerNodes,
    /// TCP MD5 signatures with the password found here.
    pub password: Option<PasswordSource>,
    /// At most this many prefixes from it.
    pub max_prefixes: Option<MaxPrefixes>,
    /// TTL security (RFC 5082) for a peer this many hops away.
    pub ttl_security: Option<u8>,
    /// eBGP multihop without TTL security: the TTL its packets leave with.
    pub multihop: Option<u8>,
    /// Only prefixes one of these matches are taken from it (none listed: any outside
    /// the cluster network).
    pub accept: Vec<PrefixRule>,
    /// Which of a node's prefixes it is sent (`None`: the default, everything the node
    /// holds and not the aggregate).
    pub export: Option<BTreeSet<OwnKind>>,
    /// Tagged on what it is sent.
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

/// The max-prefix defaults: warn at 80%, stay down 60 s (BIRD's and FRR's usual).
pub const DEFAULT_MAX_PREFIXES_WARNING: u8 = 80;
pub const DEFAULT_MAX_PREFIXES_RESTART: Duration = Duration::from_secs(60);

impl PeerRecord {
    /// A record for every node with nothing but the address and AS.
    pub fn new(address: Ipv4Addr, asn: u32) -> PeerRecord {
        PeerRecord {
            address,
            asn,
            nodes: PeerNodes::All,
            password: None,
            max_prefixes: None,
            ttl_security: None,
            multihop: None,
            accept: Vec::new(),
            export: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
        }
    }

    /// Reads a stored record, or says which field is wrong.
    pub fn parse(value: &[u8]) -> Result<Self, PeerError> {
        let v: Value = serde_json::from_slice(value)?;
        let ip = |k: &'static str| -> Result<Option<Ipv4Addr>, PeerError> {
            match v.get(k) {
                None => Ok(None),
                Some(s) => s
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .map(Some)
                    .ok_or_else(|| PeerError::Address(k, s.to_string())),
            }
        };
        let num = |k: &'static str, lo: u64, hi: u64| -> Result<Option<u64>, PeerError> {
            match v.get(k) {
                None => Ok(None),
                Some(n) => n
                    .as_u64()
                    .filter(|n| (lo..=hi).contains(n))
                    .map(Some)
                    .ok_or(PeerError::Range(k, lo, hi)),
            }
        };
        let address = ip("PeerIP")?.ok_or(PeerError::NoPeerIp)?;
        let asn = num("ASNumber", 1, u32::MAX as u64)
            .map_err(|_| PeerError::Asn)?
            .ok_or(PeerError::Asn)? as u32;
        let nodes = match (ip("Node")?, v.get("NodeSelector")) {
            (Some(_), Some(_)) => return Err(PeerError::NodeAndSelector),
            (Some(n), None) => PeerNodes::Node(n),
            (None, Some(s)) => {
                let text = s
                    .as_str()
                    .ok_or_else(|| PeerError::SelectorType(s.to_string()))?;
                PeerNodes::Selector(Selector::parse(text)?)
            }
            (None, None) => PeerNodes::All,
        };
        let password = v.get("Password").map(password).transpose()?;
        let limit = num("MaxPrefixes", 1, u32::MAX as u64)?;
        let warning = num("MaxPrefixesWarning", 1, 100)?;
        let restart = num("MaxPrefixesRestart", 1, 86_400)?;
        let max_prefixes = match limit {
            Some(limit) => Some(MaxPrefixes {
                limit: limit as u32,
                warning_percent: warning
                    .map(|w| w as u8)
                    .unwrap_or(DEFAULT_MAX_PREFIXES_WARNING),
                restart: restart
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_MAX_PREFIXES_RESTART),
            }),
            None if warning.is_some() || restart.is_some() => return Err(PeerError::NoMaxPrefixes),
            None => None,
        };
        let ttl_security = num("TTLSecurity", 1, 254)?.map(|h| h as u8);
        let multihop = num("Multihop", 1, 255)?.map(|t| t as u8);
        if ttl_security.is_some() && multihop.is_some() {
            return Err(PeerError::TtlSecurityAndMultihop);
        }
        let export = match v.get("Export") {
            None => None,
            Some(_) => Some(list(&v, "Export")?.into_iter().collect()),
        };
        Ok(PeerRecord {
            address,
            asn,
            nodes,
            password,
            max_prefixes,
            ttl_security,
            multihop,
            accept: list(&v, "Accept")?,
            export,
            communities: list(&v, "Communities")?,
            large_communities: list(&v, "LargeCommunities")?,
        })
    }

    /// The record as stored (what [`PeerRecord::parse`] reads back the same).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"PeerIP": self.address.to_string(), "ASNumber": self.asn});
        match &self.nodes {
            PeerNodes::All => {}
            PeerNodes::Node(n) => v["Node"] = n.to_string().into(),
            PeerNodes::Selector(s) => v["NodeSelector"] = s.to_string().into(),
        }
        match &self.password {
            Some(PasswordSource::File(f)) => {
                v["Password"] = json!({"File": f.display().to_string()})
            }
            Some(PasswordSource::Env(e)) => v["Password"] = json!({ "Env": e }),
            None => {}
        }
        if let Some(m) = &self.max_prefixes {
            v["MaxPrefixes"] = m.limit.into();
            v["MaxPrefixesWarning"] = m.warning_percent.into();
            v["MaxPrefixesRestart"] = m.restart.as_secs().into();
        }
        if let Some(t) = self.ttl_security {
            v["TTLSecurity"] = t.into();
        }
        if let Some(t) = self.multihop {
            v["Multihop"] = t.into();
        }
        let strings = |items: Vec<String>| Value::from(items);
        if !self.accept.is_empty() {
            v["Accept"] = strings(self.accept.iter().map(ToString::to_string).collect());
        }
        if let Some(e) = &self.export {
            v["Export"] = strings(e.iter().map(|k| k.name().to_owned()).collect());
        }
        if !self.communities.is_empty() {
            v["Communities"] = strings(self.communities.iter().map(ToString::to_string).collect());
        }
        if !self.large_communities.is_empty() {
            v["LargeCommunities"] = strings(
                self.large_communities
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            );
        }
        v
    }
}

fn password(v: &Value) -> Result<PasswordSource, PeerError> {
    let one = |k: &str| v.get(k).and_then(|s| s.as_str()).filter(|s| !s.is_empty());
    match (v.as_object().map(|o| o.len()), one("File"), one("Env")) {
        (Some(1), Some(f), None) if f.starts_with('/') => Ok(PasswordSource::File(f.into())),
        (Some(1), None, Some(e)) => Ok(PasswordSource::Env(e.to_owned())),
        _ => Err(PeerError::Password(v.to_string())),
    }
}

/// A list field of strings, each read as `T` (absent: empty).
fn list<T: std::str::FromStr<Err = PolicyError>>(
    v: &Value,
    field: &'static str,
) -> Result<Vec<T>, PeerError> {
    let Some(items) = v.get(field) else {
        return Ok(Vec::new());
    };
    let items = items
        .as_array()
        .ok_or_else(|| PeerError::List(field, items.to_string()))?;
    items
        .iter()
        .map(|i| {
            let s = i
                .as_str()
                .ok_or_else(|| PeerError::List(field, i.to_string()))?;
            s.parse().map_err(|e| PeerError::Policy(field, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(fields: &str) -> Result<PeerRecord, PeerError> {
        let v = format!(r#"{{"PeerIP":"10.0.0.1","ASNumber":1{fields}}}"#);
        PeerRecord::parse(v.as_bytes())
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let full = parse(
            r#","NodeSelector":"rack == 'r1'","Password":{"File":"/etc/weft/tor.key"},"MaxPrefixes":5,"MaxPrefixesWarning":50,"MaxPrefixesRestart":3,"TTLSecurity":1,"Accept":["10.200.0.0/16 le 24"],"Export":["Aggregate","Subnet"],"Communities":["64512:100"],"LargeCommunities":["64512:1:2"]"#,
        )
        .unwrap();
        let again = PeerRecord::parse(full.to_json().to_string().as_bytes()).unwrap();
        assert_eq!(again, full);
        let m = full.max_prefixes.as_ref().unwrap();
        assert_eq!(
            (m.limit, m.warning_percent, m.restart.as_secs()),
            (5, 50, 3)
        );
        assert_eq!(
            full.export,
            Some([OwnKind::Subnet, OwnKind::Aggregate].into())
        );
        let plain = parse("").unwrap();
        assert_eq!(plain, PeerRecord::new("10.0.0.1".parse().unwrap(), 1));
        assert_eq!(
            PeerRecord::parse(plain.to_json().to_string().as_bytes()).unwrap(),
            plain
        );
        let m = parse(r#","MaxPrefixes":100"#)
            .unwrap()
            .max_prefixes
            .unwrap();
        assert_eq!((m.warning_percent, m.restart.as_secs()), (80, 60));
    }

    #[test]
    fn nodes_by_address_selector_or_all() {
        let labels = crate::selector::parse_labels("rack=r1").unwrap();
        let me: Ipv4Addr = "192.168.77.1".parse().unwrap();
        assert!(parse("").unwrap().nodes.includes(me, &labels));
        let one = parse(r#","Node":"192.168.77.2""#).unwrap().nodes;
        assert!(!one.includes(me, &labels));
        let rack = parse(r#","NodeSelector":"rack == 'r1'""#).unwrap().nodes;
        assert!(rack.includes(me, &labels));
        assert!(!rack.includes(me, &Default::default()));
    }

    #[test]
    fn a_password_is_where_to_read_it_never_the_password() {
        let p = parse(r#","Password":{"Env":"TOR_KEY"}"#).unwrap();
        assert_eq!(p.password, Some(PasswordSource::Env("TOR_KEY".into())));
        for bad in [
            r#""hunter2""#,
            r#"{"File":"relative.key"}"#,
            r#"{"File":"/a","Env":"B"}"#,
            r#"{"Value":"hunter2"}"#,
        ] {
            let err = parse(&format!(r#","Password":{bad}"#))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("Password must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(PeerRecord::parse(b"{")
            .unwrap_err()
            .to_string()
            .contains("JSON"));
        assert!(PeerRecord::parse(br#"{"ASNumber":1}"#)
            .unwrap_err()
            .to_string()
            .contains("PeerIP"));
        for (bad, field) in [
            (r#","PeerIP":"x""#, "PeerIP must be"),
            (r#","ASNumber":0"#, "ASNumber"),
            (r#","MaxPrefixes":0"#, "MaxPrefixes must be"),
            (r#","MaxPrefixes":"many""#, "MaxPrefixes must be"),
            (
                r#","MaxPrefixes":5,"MaxPrefixesWarning":101"#,
                "MaxPrefixesWarning must be",
            ),
            (
                r#","MaxPrefixes":5,"MaxPrefixesRestart":0"#,
                "MaxPrefixesRestart must be",
            ),
            (r#","MaxPrefixesRestart":5"#, "need MaxPrefixes"),
            (r#","TTLSecurity":0"#, "TTLSecurity must be"),
            (r#","TTLSecurity":255"#, "TTLSecurity must be"),
            (r#","Multihop":0"#, "Multihop must be"),
            (r#","Multihop":2,"TTLSecurity":1"#, "cannot both"),
            (r#","Accept":"10.0.0.0/8""#, "Accept must be a list"),
            (
                r#","Accept":["10.0.0.0/33"]"#,
                "Accept: \"10.0.0.0/33\" is not a prefix rule",
            ),
            (
                r#","Export":["Everything"]"#,
                "Export: \"Everything\" is not one of",
            ),
            (
                r#","Communities":["64512"]"#,
                "Communities: \"64512\" is not a community",
            ),
            (
                r#","LargeCommunities":["1:2"]"#,
                "LargeCommunities: \"1:2\" is not a large",
            ),
            (r#","NodeSelector":"rack = 'r1'""#, "NodeSelector: selector"),
            (r#","NodeSelector":7"#, "NodeSelector must be a string"),
            (
                r#","Node":"192.168.77.1","NodeSelector":"all()""#,
                "cannot both",
            ),
        ] {
            // The PeerIP case replaces the field: JSON takes the last duplicate key.
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(field), "{bad}: {err}");
        }
    }
}
