//! The agent's side of the bgp backend: it runs the speaker, tells it which sessions to
//! have (from the leases and the external peers in the store) and which subnet to
//! announce, hands its learned routes to the plan, and writes the peers' state for
//! `weftctl node status`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use ipnet::Ipv4Net;
use tokio::sync::watch;
use tracing::{info, warn};
use weft_alloc::Lease;
use weft_backends::bgp::Bgp;
use weft_bgp::auth::Md5Key;
use weft_bgp::rib::PeerKind;
use weft_bgp::speaker::{ImportFilter, Learned, MaxPrefixes, PeerConfig, Speaker, SpeakerConfig};

/// A router outside the cluster, from the store.
/// Why an external peer's record was refused.
#[derive(Debug, thiserror::Error)]
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
    #[error("Accept must be a list of IPv4 networks (\"10.200.0.0/16\"), not {0}")]
    Accept(String),
    #[error("MaxPrefixesWarning and MaxPrefixesRestart need MaxPrefixes")]
    NoMaxPrefixes,
    #[error("Password must be {{\"File\": \"/path\"}} or {{\"Env\": \"VARIABLE\"}} (the password itself is never stored), not {0}")]
    Password(String),
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

/// Why a peer's password could not be read on this node.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("Password.File {0}: {1}")]
    File(String, std::io::Error),
    #[error("Password.Env {0}: not set in weftd's environment")]
    Env(String),
    #[error("{0}")]
    Key(#[from] weft_bgp::auth::BadKey),
}

impl PasswordSource {
    fn parse(v: &serde_json::Value) -> Result<PasswordSource, PeerError> {
        let one = |k: &str| v.get(k).and_then(|s| s.as_str()).filter(|s| !s.is_empty());
        match (v.as_object().map(|o| o.len()), one("File"), one("Env")) {
            (Some(1), Some(f), None) if f.starts_with('/') => Ok(PasswordSource::File(f.into())),
            (Some(1), None, Some(e)) => Ok(PasswordSource::Env(e.to_owned())),
            _ => Err(PeerError::Password(v.to_string())),
        }
    }

    /// The key, read now (a file may be rotated: it is read at every sync).
    pub fn read(&self) -> Result<Md5Key, PasswordError> {
        let bytes = match self {
            PasswordSource::File(p) => {
                std::fs::read(p).map_err(|e| PasswordError::File(p.display().to_string(), e))?
            }
            PasswordSource::Env(name) => std::env::var_os(name)
                .ok_or_else(|| PasswordError::Env(name.clone()))?
                .into_encoded_bytes(),
        };
        let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        Ok(Md5Key::new(trimmed)?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPeer {
    pub address: Ipv4Addr,
    pub asn: u32,
    /// Only this node peers with it (else every node does).
    pub node: Option<Ipv4Addr>,
    /// TCP MD5 signatures with the password found here.
    pub password: Option<PasswordSource>,
    /// At most this many prefixes from it.
    pub max_prefixes: Option<MaxPrefixes>,
    /// TTL security (RFC 5082) for a peer this many hops away.
    pub ttl_security: Option<u8>,
    /// Only prefixes inside these are taken from it (none listed: any outside the
    /// cluster network).
    pub accept: Vec<Ipv4Net>,
}

impl ExternalPeer {
    /// Parses `{"PeerIP": "...", "ASNumber": N, "Node": "...", "Password": {"File": "..."},
    /// "MaxPrefixes": N, "MaxPrefixesWarning": PERCENT, "MaxPrefixesRestart": SECONDS,
    /// "TTLSecurity": HOPS, "Accept": ["CIDR", ...]}`
    /// (Calico's field names where it has them; the password as where to read it, as
    /// Calico's `secretKeyRef` does; warning 80% and restart 60 s by default).
    pub fn parse(value: &[u8]) -> Result<Self, PeerError> {
        let v: serde_json::Value = serde_json::from_slice(value)?;
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
        let address = ip("PeerIP")?.ok_or(PeerError::NoPeerIp)?;
        let asn = v
            .get("ASNumber")
            .and_then(|a| a.as_u64())
            .filter(|a| (1..=u32::MAX as u64).contains(a))
            .ok_or(PeerError::Asn)? as u32;
        let password = v.get("Password").map(PasswordSource::parse).transpose()?;
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
        let limit = num("MaxPrefixes", 1, u32::MAX as u64)?;
        let warning = num("MaxPrefixesWarning", 1, 100)?;
        let restart = num("MaxPrefixesRestart", 1, 86_400)?;
        let max_prefixes = match limit {
            Some(limit) => Some(MaxPrefixes {
                limit: limit as u32,
                warning_percent: warning.unwrap_or(80) as u8,
                restart: std::time::Duration::from_secs(restart.unwrap_or(60)),
            }),
            None if warning.is_some() || restart.is_some() => return Err(PeerError::NoMaxPrefixes),
            None => None,
        };
        let ttl_security = num("TTLSecurity", 1, 254)?.map(|h| h as u8);
        let accept = match v.get("Accept") {
            None => Vec::new(),
            Some(list) => list
                .as_array()
                .and_then(|l| {
                    l.iter()
                        .map(|n| n.as_str().and_then(|s| s.parse::<Ipv4Net>().ok()))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| PeerError::Accept(list.to_string()))?,
        };
        Ok(ExternalPeer {
            address,
            asn,
            node: ip("Node")?,
            password,
            max_prefixes,
            ttl_security,
            accept,
        })
    }
}

pub struct BgpRuntime {
    speaker: Speaker,
    routes: watch::Receiver<BTreeMap<Ipv4Net, Learned>>,
    external: BTreeMap<String, ExternalPeer>,
    status_file: PathBuf,
    last_status: String,
    asn: u32,
    router_id: Ipv4Addr,
    /// The last password problem logged per peer, so a missing file is said once, not
    /// at every sync.
    password_problems: BTreeMap<Ipv4Addr, String>,
}

impl BgpRuntime {
    pub async fn start(
        bgp: &Bgp,
        router_id: Ipv4Addr,
        status_file: PathBuf,
    ) -> std::io::Result<Self> {
        // Listening on port 179 of the router id, connect retry 2 s: the defaults.
        let mut cfg = SpeakerConfig::new(bgp.asn, router_id);
        cfg.route_reflector = bgp.is_reflector(router_id);
        let speaker = Speaker::start(cfg).await?;
        info!(asn = bgp.asn, %router_id, route_reflector = bgp.is_reflector(router_id), "BGP speaker listening on port 179");
        Ok(BgpRuntime {
            routes: speaker.routes(),
            speaker,
            external: BTreeMap::new(),
            status_file,
            last_status: String::new(),
            asn: bgp.asn,
            router_id,
            password_problems: BTreeMap::new(),
        })
    }

    /// Whether the speaker's initial exchange after start is over (see
    /// [`weft_bgp::speaker::Speaker::initial_exchange_over`]).
    pub fn initial_exchange_over(&self) -> bool {
        self.speaker.initial_exchange_over()
    }

    /// A receiver that wakes when the learned routes change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<Ipv4Net, Learned>> {
        self.speaker.routes()
    }

    /// Takes an external peer definition; a bad one is logged and the previous kept.
    pub fn on_put(&mut self, key: &str, value: &[u8]) -> bool {
        match ExternalPeer::parse(value) {
            Ok(p) => {
                info!(key, peer = %p.address, asn = p.asn, "external BGP peer");
                let changed = self.external.get(key) != Some(&p);
                self.external.insert(key.to_owned(), p);
                changed
            }
            Err(e) => {
                warn!(key, error = %e, "ignoring a malformed BGP peer; keeping the previous value");
                false
            }
        }
    }

    pub fn on_delete(&mut self, key: &str) -> bool {
        self.external.remove(key).is_some()
    }

    /// Makes the speaker's sessions and announcement match the leases and the store.
    /// Sessions from the leases and external peers; `own`: what this node announces (its
    /// subnet, and single addresses it holds outside it as /32s).
    /// `network`: the cluster network, which no external peer's route may overlap.
    pub async fn sync(&mut self, bgp: &Bgp, leases: &[Lease], own: Vec<Ipv4Net>, network: Ipv4Net) {
        let me = self.router_id;
        let mut peers: Vec<PeerConfig> = bgp
            .peers(me, leases)
            .into_iter()
            .map(|w| PeerConfig {
                address: w.address,
                asn: w.asn,
                kind: w.kind,
                // Between Weft nodes only the higher address connects: no collisions.
                passive: u32::from(w.address) > u32::from(me),
                md5: None,
                max_prefixes: None,
                ttl_security: None,
                import: ImportFilter::default(),
            })
            .collect();
        let mut problems = BTreeMap::new();
        for p in self.external.values() {
            if p.node.is_some_and(|n| n != me) || peers.iter().any(|q| q.address == p.address) {
                continue;
            }
            // A peer whose password cannot be read gets no session at all: never an
            // unsigned one in its place.
            let md5 = match p.password.as_ref().map(PasswordSource::read).transpose() {
                Ok(k) => k,
                Err(e) => {
                    problems.insert(p.address, e.to_string());
                    continue;
                }
            };
            peers.push(PeerConfig {
                address: p.address,
                asn: p.asn,
                kind: if p.node.is_some() {
                    PeerKind::NodeSpecific
                } else {
                    PeerKind::Global
                },
                passive: false,
                md5,
                max_prefixes: p.max_prefixes.clone(),
                ttl_security: p.ttl_security,
                import: ImportFilter {
                    accept: p.accept.clone(),
                    deny_overlapping: vec![network],
                },
            });
        }
        for (peer, problem) in &problems {
            if self.password_problems.get(peer) != Some(problem) {
                warn!(%peer, error = %problem, "cannot read the BGP peer's password; no session with it until it can be read");
            }
        }
        self.password_problems = problems;
        self.speaker.set_peers(peers).await;
        self.speaker.set_own(own).await;
    }

    pub fn learned(&self) -> Vec<(Ipv4Net, Ipv4Addr)> {
        self.routes
            .borrow()
            .iter()
            .map(|(p, l)| (*p, l.next_hop))
            .collect()
    }

    /// Writes the peers' state for `weftctl node status` when it changed, and hands it to
    /// `/metrics`.
    pub fn write_status(&mut self, metrics: &crate::health::Metrics) {
        let status = self.speaker.status();
        let since = |s: &weft_bgp::speaker::PeerStatus| {
            s.since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        *metrics.bgp_peers.lock().expect("bgp peers lock") = status
            .iter()
            .map(|s| crate::health::BgpPeer {
                address: s.address.to_string(),
                kind: s.kind.label().to_owned(),
                established: s.state == "Established",
                since: since(s),
                received: s.received as u64,
                advertised: s.advertised as u64,
                md5: s.md5,
                filtered: s.filtered as u64,
            })
            .collect();
        let peers: Vec<serde_json::Value> = status
            .iter()
            .map(|s| {
                serde_json::json!({
                    "address": s.address.to_string(),
                    "type": s.kind.label(),
                    "state": s.state,
                    "since": since(s),
                    "info": s.info,
                    "received": s.received,
                    "advertised": s.advertised,
                    "md5": s.md5,
                    "filtered": s.filtered,
                })
            })
            .collect();
        let text = serde_json::json!({"asn": self.asn, "router_id": self.router_id.to_string(), "peers": peers}).to_string();
        if text == self.last_status {
            return;
        }
        match weft_alloc::hostfiles::write_atomic(&self.status_file, &text) {
            Ok(_) => self.last_status = text,
            Err(e) => {
                warn!(path = %self.status_file.display(), error = %e, "cannot write the BGP status file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_peers_parse_or_say_why() {
        let p = ExternalPeer::parse(br#"{"PeerIP":"192.168.77.254","ASNumber":64513}"#).unwrap();
        assert_eq!(
            (p.address.to_string().as_str(), p.asn, p.node),
            ("192.168.77.254", 64513, None)
        );
        let n = ExternalPeer::parse(br#"{"PeerIP":"10.0.0.1","ASNumber":1,"Node":"192.168.77.1"}"#)
            .unwrap();
        assert_eq!(n.node, Some("192.168.77.1".parse().unwrap()));
        assert!(ExternalPeer::parse(b"{")
            .unwrap_err()
            .to_string()
            .contains("JSON"));
        assert!(ExternalPeer::parse(br#"{"ASNumber":1}"#)
            .unwrap_err()
            .to_string()
            .contains("PeerIP"));
        assert!(ExternalPeer::parse(br#"{"PeerIP":"x","ASNumber":1}"#)
            .unwrap_err()
            .to_string()
            .contains("IPv4"));
        assert!(
            ExternalPeer::parse(br#"{"PeerIP":"10.0.0.1","ASNumber":0}"#)
                .unwrap_err()
                .to_string()
                .contains("ASNumber")
        );
    }

    #[test]
    fn a_password_is_where_to_read_it_never_the_password() {
        let p = ExternalPeer::parse(
            br#"{"PeerIP":"10.0.0.1","ASNumber":1,"Password":{"File":"/etc/weft/tor.key"}}"#,
        )
        .unwrap();
        assert_eq!(
            p.password,
            Some(PasswordSource::File("/etc/weft/tor.key".into()))
        );
        let e = ExternalPeer::parse(
            br#"{"PeerIP":"10.0.0.1","ASNumber":1,"Password":{"Env":"TOR_KEY"}}"#,
        )
        .unwrap();
        assert_eq!(e.password, Some(PasswordSource::Env("TOR_KEY".into())));
        for bad in [
            r#""hunter2""#,
            r#"{"File":"relative.key"}"#,
            r#"{"File":"/a","Env":"B"}"#,
            r#"{"Value":"hunter2"}"#,
        ] {
            let v = format!(r#"{{"PeerIP":"10.0.0.1","ASNumber":1,"Password":{bad}}}"#);
            let err = ExternalPeer::parse(v.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with("Password must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_password_file_is_read_and_its_problems_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tor.key");
        std::fs::write(&file, "s3cret\n").unwrap();
        let src = PasswordSource::File(file.clone());
        assert_eq!(src.read().unwrap(), Md5Key::new("s3cret").unwrap());
        std::fs::write(&file, "").unwrap();
        assert!(src
            .read()
            .unwrap_err()
            .to_string()
            .contains("must not be empty"));
        let missing = PasswordSource::File(dir.path().join("nope"));
        let e = missing.read().unwrap_err().to_string();
        assert!(e.starts_with("Password.File ") && e.contains("nope"), "{e}");
        let e = PasswordSource::Env("WEFT_TEST_NO_SUCH_VARIABLE".into())
            .read()
            .unwrap_err();
        assert!(e.to_string().contains("not set"), "{e}");
    }

    #[test]
    fn max_prefixes_take_a_limit_a_warning_and_a_restart_or_name_the_field() {
        let p = ExternalPeer::parse(br#"{"PeerIP":"10.0.0.1","ASNumber":1,"MaxPrefixes":100}"#)
            .unwrap();
        assert_eq!(
            p.max_prefixes,
            Some(MaxPrefixes {
                limit: 100,
                warning_percent: 80,
                restart: std::time::Duration::from_secs(60)
            })
        );
        let p = ExternalPeer::parse(
            br#"{"PeerIP":"10.0.0.1","ASNumber":1,"MaxPrefixes":5,"MaxPrefixesWarning":50,"MaxPrefixesRestart":3}"#,
        )
        .unwrap();
        let m = p.max_prefixes.unwrap();
        assert_eq!(
            (m.limit, m.warning_percent, m.restart.as_secs()),
            (5, 50, 3)
        );
        for (bad, field) in [
            (r#""MaxPrefixes":0"#, "MaxPrefixes must be"),
            (r#""MaxPrefixes":"many""#, "MaxPrefixes must be"),
            (
                r#""MaxPrefixes":5,"MaxPrefixesWarning":101"#,
                "MaxPrefixesWarning must be",
            ),
            (
                r#""MaxPrefixes":5,"MaxPrefixesRestart":0"#,
                "MaxPrefixesRestart must be",
            ),
            (r#""MaxPrefixesRestart":5"#, "need MaxPrefixes"),
            (r#""TTLSecurity":0"#, "TTLSecurity must be"),
            (r#""TTLSecurity":255"#, "TTLSecurity must be"),
            (r#""Accept":"10.0.0.0/8""#, "Accept must be"),
            (r#""Accept":["10.0.0.0/33"]"#, "Accept must be"),
        ] {
            let v = format!(r#"{{"PeerIP":"10.0.0.1","ASNumber":1,{bad}}}"#);
            let err = ExternalPeer::parse(v.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(field), "{bad}: {err}");
        }
    }
}
