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
use weft_bgp::policy::{ExportPolicy, ImportFilter, Own, OwnKind};
use weft_bgp::rib::PeerKind;
use weft_bgp::speaker::{Learned, PeerConfig, Speaker, SpeakerConfig};
use weft_model::bgp_peer::{PasswordSource, PeerNodes, PeerRecord};
use weft_model::selector::NodeLabels;

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

/// Reads a peer's key now (a file may be rotated: it is read at every sync).
pub fn read_password(source: &PasswordSource) -> Result<Md5Key, PasswordError> {
    let bytes = match source {
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

pub struct BgpRuntime {
    speaker: Speaker,
    routes: watch::Receiver<BTreeMap<Ipv4Net, Learned>>,
    external: BTreeMap<String, PeerRecord>,
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
        // Whether it reflects follows from its peers (clients make a reflector), so a
        // label or config change needs no restart.
        let speaker = Speaker::start(SpeakerConfig::new(bgp.asn, router_id)).await?;
        info!(asn = bgp.asn, %router_id, "BGP speaker listening on port 179");
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
        match PeerRecord::parse(value) {
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
    /// `network`: the cluster network, which no external peer's route may overlap (and
    /// which is offered as the aggregate to peers whose export asks for it).
    /// `labels`: this node's, which reflector and peer selectors choose by.
    pub async fn sync(
        &mut self,
        bgp: &Bgp,
        leases: &[Lease],
        mut own: Vec<Own>,
        network: Ipv4Net,
        labels: &NodeLabels,
    ) {
        let me = self.router_id;
        own.push(Own::new(network, OwnKind::Aggregate));
        let mut peers: Vec<PeerConfig> = bgp
            .peers(me, labels, leases)
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
                multihop: None,
                import: ImportFilter::default(),
                export: ExportPolicy::default(),
            })
            .collect();
        let mut problems = BTreeMap::new();
        for p in self.external.values() {
            if !p.nodes.includes(me, labels) || peers.iter().any(|q| q.address == p.address) {
                continue;
            }
            // A peer whose password cannot be read gets no session at all: never an
            // unsigned one in its place.
            let md5 = match p.password.as_ref().map(read_password).transpose() {
                Ok(k) => k,
                Err(e) => {
                    problems.insert(p.address, e.to_string());
                    continue;
                }
            };
            peers.push(PeerConfig {
                address: p.address,
                asn: p.asn,
                kind: match p.nodes {
                    PeerNodes::All => PeerKind::Global,
                    PeerNodes::Node(_) | PeerNodes::Selector(_) => PeerKind::NodeSpecific,
                },
                passive: false,
                md5,
                max_prefixes: p.max_prefixes.clone(),
                ttl_security: p.ttl_security,
                multihop: p.multihop,
                import: ImportFilter {
                    accept: p.accept.clone(),
                    deny_overlapping: vec![network],
                },
                export: ExportPolicy {
                    kinds: p.export.clone().unwrap_or_else(OwnKind::default_export),
                    communities: p.communities.clone(),
                    large_communities: p.large_communities.clone(),
                },
            });
        }
        for (peer, problem) in &problems {
            if self.password_problems.get(peer) != Some(problem) {
                warn!(%peer, error = %problem, "cannot read the BGP peer's password; no session with it until it can be read");
            }
        }
        self.password_problems = problems;
        // What this node announces first, then the peers: a session that comes up at
        // once (a peer that was waiting to reconnect after a restart) must never be
        // sent its End-of-RIB before the node's own prefixes, or a peer keeping them
        // stale (graceful restart) flushes them.
        self.speaker.set_own(own).await;
        self.speaker.set_cluster_id(bgp.cluster_id).await;
        self.speaker.set_peers(peers).await;
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
                graceful_restart: s.graceful_restart,
                last_error: s.last_error.clone(),
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
                    "graceful_restart": s.graceful_restart.label(),
                    "last_error": s.last_error,
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
    fn a_password_file_is_read_and_its_problems_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tor.key");
        std::fs::write(&file, "s3cret\n").unwrap();
        let src = PasswordSource::File(file.clone());
        assert_eq!(read_password(&src).unwrap(), Md5Key::new("s3cret").unwrap());
        std::fs::write(&file, "").unwrap();
        assert!(read_password(&src)
            .unwrap_err()
            .to_string()
            .contains("must not be empty"));
        let missing = PasswordSource::File(dir.path().join("nope"));
        let e = read_password(&missing).unwrap_err().to_string();
        assert!(e.starts_with("Password.File ") && e.contains("nope"), "{e}");
        let e =
            read_password(&PasswordSource::Env("WEFT_TEST_NO_SUCH_VARIABLE".into())).unwrap_err();
        assert!(e.to_string().contains("not set"), "{e}");
    }
}
