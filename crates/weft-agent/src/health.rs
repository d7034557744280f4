//! `/healthz` and `/metrics` (Prometheus text format) on `--healthz-ip:--healthz-port`.
//!
//! Health is honest: `/healthz` answers 200 only while the agent keeps reconciling (the
//! last reconcile finished within two resync intervals) and 503 with the reason otherwise.
//! The counters say what the agent did and repaired, so an operator sees drift being fixed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_bgp::speaker::GracefulRestart;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use weft_kernel::nft_sets::RuleCounter;
use weft_plan::nft::RuleId;

/// What the agent reports; updated with plain atomics from the event loop.
#[derive(Debug, Default)]
pub struct Metrics {
    pub reconciles: AtomicU64,
    /// Reconciles that found the kernel drifted from the plan and repaired it.
    pub repairs: AtomicU64,
    pub kernel_changes: AtomicU64,
    pub kernel_failures: AtomicU64,
    pub store_events: AtomicU64,
    pub routes: AtomicU64,
    pub peers: AtomicU64,
    pub unreachable_peers: AtomicU64,
    /// Unix seconds of the last completed reconcile (0: none yet).
    pub last_reconcile: AtomicU64,
    /// The user-space tunnel's counters (all zero for kernel backends).
    pub tunnel: std::sync::Arc<weft_tunnel::Stats>,
    /// Set while this node's subnet is leased to someone else: not ready.
    pub lease_taken: std::sync::Mutex<Option<String>>,
    /// The store revision the loaded network policy table reflects.
    pub policy_revision: AtomicU64,
    /// Reads the policy table's rule counters at scrape time (set by the agent).
    pub policy_counters: PolicyCounters,
    /// The BGP peers, as the speaker last reported them (bgp backend only).
    pub bgp_peers: std::sync::Mutex<Vec<BgpPeer>>,
}

/// One BGP peer's row in `/metrics` (never its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpPeer {
    pub address: String,
    pub kind: String,
    pub established: bool,
    /// Unix seconds since the session is in its state.
    pub since: u64,
    pub received: u64,
    pub advertised: u64,
    pub md5: bool,
    /// Announcements the import filter refused in this session.
    pub filtered: u64,
    pub graceful_restart: weft_bgp::speaker::GracefulRestart,
    /// Why the last session ended, as the RFCs name it (empty: none has).
    pub last_error: String,
}

/// A gauge of a BGP peer: its name, help and how to read it from a row.
type PeerGauge = (&'static str, &'static str, fn(&BgpPeer) -> u64);

/// The BGP peers as Prometheus rows, labelled by peer address and type.
fn bgp_rows(peers: &[BgpPeer]) -> String {
    if peers.is_empty() {
        return String::new();
    }
    let gauges: [PeerGauge; 7] = [
        (
            "weft_bgp_peer_established",
            "Whether the BGP session is established (1) or not (0).",
            |p| u64::from(p.established),
        ),
        (
            "weft_bgp_peer_state_since_seconds",
            "When the session entered its state (Unix seconds).",
            |p| p.since,
        ),
        (
            "weft_bgp_peer_prefixes_received",
            "Prefixes the peer sent that are held.",
            |p| p.received,
        ),
        (
            "weft_bgp_peer_prefixes_advertised",
            "Prefixes sent to the peer.",
            |p| p.advertised,
        ),
        (
            "weft_bgp_peer_prefixes_filtered",
            "Announcements the import filter refused in this session.",
            |p| p.filtered,
        ),
        (
            "weft_bgp_peer_md5",
            "Whether the session is signed with TCP MD5 (1) or not (0).",
            |p| u64::from(p.md5),
        ),
        (
            "weft_bgp_peer_graceful_restart",
            "Graceful restart with the peer: 0 off or not known yet, 1 on, 2 the peer is restarting (its routes kept, stale).",
            |p| match p.graceful_restart {
                GracefulRestart::Unknown | GracefulRestart::Off => 0,
                GracefulRestart::On => 1,
                GracefulRestart::PeerRestarting => 2,
            },
        ),
    ];
    let mut s = String::new();
    for (name, help, value) in gauges {
        s += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n");
        for p in peers {
            s += &format!(
                "{name}{{peer=\"{}\",type=\"{}\"}} {}\n",
                p.address,
                p.kind,
                value(p)
            );
        }
    }
    // Why each peer's last session ended, as an info row (value 1, the reason a label).
    let name = "weft_bgp_peer_last_error_info";
    s += &format!("# HELP {name} Why the last session with the peer ended, as the RFCs name it.\n# TYPE {name} gauge\n");
    for p in peers.iter().filter(|p| !p.last_error.is_empty()) {
        let error = p.last_error.replace('\\', "\\\\").replace('"', "\\\"");
        s += &format!(
            "{name}{{peer=\"{}\",type=\"{}\",error=\"{error}\"}} 1\n",
            p.address, p.kind
        );
    }
    s
}

/// How `/metrics` reads the policy rules' counters: from the kernel, when scraped,
/// labelled by the ids of the rules in the table the agent loaded (a counter's chain
/// and comment find its rule).
#[derive(Default)]
pub struct PolicyCounters {
    read: std::sync::OnceLock<CounterReader>,
    ids: std::sync::Mutex<Arc<RuleIds>>,
}

/// The loaded policy table's rule ids, by chain and comment.
pub type RuleIds = std::collections::BTreeMap<(String, String), RuleId>;

type CounterReader = Box<dyn Fn() -> Vec<RuleCounter> + Send + Sync>;

impl std::fmt::Debug for PolicyCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyCounters")
    }
}

impl PolicyCounters {
    pub fn set(&self, read: CounterReader) {
        let _ = self.read.set(read);
    }

    /// The rule ids of the table now loaded.
    pub fn set_ids(&self, ids: RuleIds) {
        *self.ids.lock().expect("rule ids lock") = Arc::new(ids);
    }

    fn ids(&self) -> Arc<RuleIds> {
        self.ids.lock().expect("rule ids lock").clone()
    }
}

/// The denied-packet counters of the policy rules that drop, summed per policy and
/// rule (a cluster rule is in every namespace's chain), as Prometheus rows. A counter
/// whose rule has no id (not one a user wrote) is left out.
fn policy_denied(counters: &[RuleCounter], ids: &RuleIds) -> String {
    let mut sums: std::collections::BTreeMap<&RuleId, u64> = Default::default();
    for c in counters.iter().filter(|c| c.verdict == "drop") {
        if let Some(id) = ids.get(&(c.chain.clone(), c.comment.clone())) {
            *sums.entry(id).or_default() += c.packets;
        }
    }
    let name = "weft_policy_denied_packets_total";
    let mut s = format!("# HELP {name} Packets network policy dropped, by policy and rule.\n# TYPE {name} counter\n");
    for (
        RuleId {
            kind,
            object: policy,
            rule,
        },
        n,
    ) in sums
    {
        let q = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        s += &format!(
            "{name}{{kind=\"{}\",policy=\"{}\",rule=\"{}\"}} {n}\n",
            q(kind),
            q(policy),
            q(rule)
        );
    }
    s
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Metrics {
    pub fn reconciled(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.last_reconcile.store(now_secs(), Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, u64); 10] = [
            (
                "weft_reconciles_total",
                "counter",
                "Plans computed and applied.",
                g(&self.reconciles),
            ),
            (
                "weft_repairs_total",
                "counter",
                "Reconciles that repaired drift in the kernel.",
                g(&self.repairs),
            ),
            (
                "weft_kernel_changes_total",
                "counter",
                "Routes, neighbours and FDB entries changed.",
                g(&self.kernel_changes),
            ),
            (
                "weft_kernel_failures_total",
                "counter",
                "Changes the kernel refused.",
                g(&self.kernel_failures),
            ),
            (
                "weft_store_events_total",
                "counter",
                "Changes received from the store.",
                g(&self.store_events),
            ),
            (
                "weft_routes",
                "gauge",
                "Routes in the current plan.",
                g(&self.routes),
            ),
            (
                "weft_peers",
                "gauge",
                "Other nodes' leases known.",
                g(&self.peers),
            ),
            (
                "weft_unreachable_peers",
                "gauge",
                "Peers this node has no route to.",
                g(&self.unreachable_peers),
            ),
            (
                "weft_policy_enforced_revision",
                "gauge",
                "The store revision the loaded network policy rules reflect.",
                g(&self.policy_revision),
            ),
            (
                "weft_last_reconcile_timestamp_seconds",
                "gauge",
                "When the last reconcile finished.",
                g(&self.last_reconcile),
            ),
        ];
        let tunnel = self.tunnel.snapshot();
        let tunnel_rows = tunnel
            .fields()
            .into_iter()
            .map(|(field, help, v)| (format!("weft_tunnel_{field}_total"), "counter", help, v));
        let plain: String = rows
            .iter()
            .map(|(name, kind, help, v)| (name.to_string(), *kind, *help, *v))
            .chain(tunnel_rows)
            .map(|(name, kind, help, v)| {
                format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n")
            })
            .collect();
        let plain = plain + &bgp_rows(&self.bgp_peers.lock().expect("bgp peers lock"));
        match self.policy_counters.read.get() {
            Some(read) => plain + &policy_denied(&read(), &self.policy_counters.ids()),
            None => plain,
        }
    }

    /// `Ok` while reconciles keep happening; the reason otherwise.
    pub fn health(&self, resync: Duration) -> Result<(), Unhealthy> {
        if let Some(why) = self.lease_taken.lock().expect("lock").clone() {
            return Err(Unhealthy::LeaseTaken(why));
        }
        let last = self.last_reconcile.load(Ordering::Relaxed);
        if last == 0 {
            return Err(Unhealthy::Starting);
        }
        let age = now_secs().saturating_sub(last);
        let limit = (resync * 2).as_secs().max(5);
        if age > limit {
            return Err(Unhealthy::Stalled { age, limit });
        }
        Ok(())
    }
}

/// Why `/healthz` answers 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    /// This node's subnet is leased to someone else (the reason as logged).
    #[error("{0}")]
    LeaseTaken(String),
    #[error("starting: no reconcile yet")]
    Starting,
    #[error("last reconcile {age}s ago (limit {limit}s)")]
    Stalled { age: u64, limit: u64 },
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

/// Serves until the task is dropped. Errors on single connections are ignored.
/// Serves `/healthz` and `/metrics` on `addr` in a task of its own; a failure to listen
/// is logged, not fatal (the agent's work does not depend on being watched).
pub fn spawn(addr: std::net::SocketAddr, metrics: Arc<Metrics>, resync: Duration) {
    tokio::spawn(async move {
        if let Err(e) = serve(addr, metrics, resync).await {
            tracing::error!(%addr, error = %e, "cannot serve /healthz and /metrics");
        }
    });
}

pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    resync: Duration,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    Ok::<_, Infallible>(match req.uri().path() {
                        "/metrics" => {
                            // Reading the policy counters is a blocking netlink dump:
                            // off the runtime.
                            let m = metrics.clone();
                            let body = tokio::task::spawn_blocking(move || m.render())
                                .await
                                .unwrap_or_default();
                            respond(StatusCode::OK, "text/plain; version=0.0.4", body)
                        }
                        "/healthz" => match metrics.health(resync) {
                            Ok(()) => respond(StatusCode::OK, "text/plain", "ok\n".into()),
                            Err(why) => respond(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "text/plain",
                                format!("{why}\n"),
                            ),
                        },
                        _ => respond(
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "try /healthz or /metrics\n".into(),
                        ),
                    })
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgp_peers_are_rows_by_address_without_their_password() {
        let m = Metrics::default();
        assert!(
            !m.render().contains("weft_bgp_peer"),
            "no bgp backend, no rows"
        );
        *m.bgp_peers.lock().unwrap() = vec![BgpPeer {
            address: "192.168.77.254".into(),
            kind: "global".into(),
            established: true,
            since: 1_700_000_000,
            received: 3,
            advertised: 1,
            md5: true,
            filtered: 2,
            graceful_restart: GracefulRestart::PeerRestarting,
            last_error: "peer sent NOTIFICATION: cease: \"x\"".into(),
        }];
        let text = m.render();
        for row in [
            "weft_bgp_peer_established{peer=\"192.168.77.254\",type=\"global\"} 1\n",
            "weft_bgp_peer_prefixes_received{peer=\"192.168.77.254\",type=\"global\"} 3\n",
            "weft_bgp_peer_prefixes_advertised{peer=\"192.168.77.254\",type=\"global\"} 1\n",
            "weft_bgp_peer_md5{peer=\"192.168.77.254\",type=\"global\"} 1\n",
            "weft_bgp_peer_prefixes_filtered{peer=\"192.168.77.254\",type=\"global\"} 2\n",
            "weft_bgp_peer_graceful_restart{peer=\"192.168.77.254\",type=\"global\"} 2\n",
            "weft_bgp_peer_last_error_info{peer=\"192.168.77.254\",type=\"global\",error=\"peer sent NOTIFICATION: cease: \\\"x\\\"\"} 1\n",
            "# TYPE weft_bgp_peer_state_since_seconds gauge\n",
        ] {
            assert!(text.contains(row), "{row} in\n{text}");
        }
    }

    #[test]
    fn exposition_and_health() {
        let m = Metrics::default();
        assert!(m
            .health(Duration::from_secs(30))
            .unwrap_err()
            .to_string()
            .contains("no reconcile yet"));
        m.reconciled();
        m.routes.store(3, Ordering::Relaxed);
        assert!(m.health(Duration::from_secs(30)).is_ok());
        let text = m.render();
        assert!(
            text.contains("# TYPE weft_routes gauge\nweft_routes 3\n"),
            "{text}"
        );
        assert!(text.contains("weft_reconciles_total 1\n"));
        assert!(!text.contains("weft_policy_denied"), "no reader, no rows");
        m.last_reconcile.store(now_secs() - 600, Ordering::Relaxed);
        assert!(m
            .health(Duration::from_secs(30))
            .unwrap_err()
            .to_string()
            .contains("ago"));
    }

    #[test]
    fn denied_packets_are_summed_per_policy_and_rule() {
        let c = |chain: &str, comment: &str, verdict: &str, packets| RuleCounter {
            chain: chain.into(),
            comment: comment.into(),
            verdict: verdict.into(),
            packets,
            bytes: 0,
        };
        let m = Metrics::default();
        // The ids of the rules of a table compiled from these policies: the labels.
        let policies = weft_policy::parse_documents(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n---\napiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {name: deny-z}\nspec: {ingress: [{action: Deny, protocol: UDP}]}\n",
        )
        .unwrap();
        let ids = weft_policy::render::compile(&policies).table.rule_ids();
        m.policy_counters.set_ids(ids);
        m.policy_counters.set(Box::new(move || {
            vec![
                c("in_ns_x_np", "not isolated", "drop", 8),
                c("in_ns_x_np", "isolated by x/a", "drop", 5),
                c("out_ns_x_np", "isolated by x/a", "drop", 2),
                c("in_ns_x", "ClusterPolicy deny-z ingress[0]", "drop", 3),
                c("in_default", "ClusterPolicy deny-z ingress[0]", "drop", 4),
                c("in_ns_x_np", "NetworkPolicy x/a ingress[0]", "accept", 9),
                c("forward", weft_policy::render::HELD, "drop", 6),
                c("forward", weft_policy::render::HELD, "drop", 1),
            ]
        }));
        let text = m.render();
        for row in [
            "weft_policy_denied_packets_total{kind=\"NetworkPolicy\",policy=\"x/a\",rule=\"ingress isolation\"} 5\n",
            "weft_policy_denied_packets_total{kind=\"NetworkPolicy\",policy=\"x/a\",rule=\"egress isolation\"} 2\n",
            "weft_policy_denied_packets_total{kind=\"ClusterPolicy\",policy=\"deny-z\",rule=\"ingress[0]\"} 7\n",
            "weft_policy_denied_packets_total{kind=\"Held\",policy=\"\",rule=\"labels not known yet\"} 7\n",
        ] {
            assert!(text.contains(row), "{row} in\n{text}");
        }
        assert!(
            !text.contains("ingress[0]\"} 9"),
            "allowed packets are not denied:\n{text}"
        );
        assert!(
            !text.contains("} 8\n") && !text.contains("} 15\n"),
            "a rule no user wrote has no row:\n{text}"
        );
    }
}
