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

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

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
        let rows: [(&str, &str, &str, u64); 9] = [
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
        rows.iter()
            .map(|(name, kind, help, v)| (name.to_string(), *kind, *help, *v))
            .chain(tunnel_rows)
            .map(|(name, kind, help, v)| {
                format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n")
            })
            .collect()
    }

    /// `Ok` while reconciles keep happening; the reason otherwise.
    pub fn health(&self, resync: Duration) -> Result<(), String> {
        if let Some(why) = self.lease_taken.lock().expect("lock").clone() {
            return Err(why);
        }
        let last = self.last_reconcile.load(Ordering::Relaxed);
        if last == 0 {
            return Err("starting: no reconcile yet".into());
        }
        let age = now_secs().saturating_sub(last);
        let limit = (resync * 2).as_secs().max(5);
        if age > limit {
            return Err(format!("last reconcile {age}s ago (limit {limit}s)"));
        }
        Ok(())
    }
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
                        "/metrics" => respond(
                            StatusCode::OK,
                            "text/plain; version=0.0.4",
                            metrics.render(),
                        ),
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
    fn exposition_and_health() {
        let m = Metrics::default();
        assert!(m
            .health(Duration::from_secs(30))
            .unwrap_err()
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
        m.last_reconcile.store(now_secs() - 600, Ordering::Relaxed);
        assert!(m
            .health(Duration::from_secs(30))
            .unwrap_err()
            .contains("ago"));
    }
}
