//! The etcd v3 store, for real clusters.
//!
//! A thin mapping of [`Store`] onto etcd's KV, lease and watch APIs. Conditional writes
//! are etcd transactions comparing `create_revision == 0` (absent) or `mod_revision`.
//! The watch runs in its own task that reconnects after errors, resumes from the last
//! revision it delivered, and resyncs from a fresh listing when etcd says that history
//! was compacted.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use crate::{
    KeyValue, LeaseId, Listing, Revision, Store, StoreError, StoreResult, Watch, WatchEvent,
};

/// How to reach an etcd cluster.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`; `https://` when TLS is configured.
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A store backed by etcd v3.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// How many endpoints it was given: how often a request refused at connection is
    /// sent again ([`EtcdStore::on_a_live_member`]).
    endpoints: usize,
}

/// Which failures of a request are worth sending it again, to another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Only a refused connection: the request never reached a member (one that is down
    /// while the others are up), so it can be sent again whatever it was. For requests
    /// that must not be applied twice (a conditional write, a lease grant, a delete
    /// whose answer says whether it deleted).
    Refused,
    /// Also a timeout (a member that is partitioned or paused holds the connection and
    /// answers nothing): for reads, and plain puts, which applied twice have the same
    /// effect.
    RefusedOrTimedOut,
}

impl Resend {
    fn applies(self, e: &etcd_client::Error) -> bool {
        let why = cause(e);
        why.contains("connection refused")
            || (self == Resend::RefusedOrTimedOut
                && ["timed out", "timeout expired", "deadline has elapsed"]
                    .iter()
                    .any(|t| why.contains(t)))
    }
}

fn unavailable(op: &'static str) -> impl Fn(etcd_client::Error) -> StoreError {
    move |e| {
        // etcd says "requested lease not found" over gRPC and the client's keep-alive
        // stream says "lease not found"; both mean the lease is gone, not that etcd is.
        if e.to_string().contains("lease not found") {
            StoreError::LeaseNotFound(0)
        } else {
            StoreError::Unavailable {
                op,
                detail: cause(&e),
            }
        }
    }
}

/// What went wrong, in a few words: the innermost cause of the client's error chain
/// (`connection refused`, `deadline has elapsed`), or the gRPC status' message. The
/// client's own Display nests every layer (`grpc request error: ... tonic::transport::
/// Error(Transport, ConnectError(...))`), which no operator can act on.
pub fn cause(e: &etcd_client::Error) -> String {
    if let etcd_client::Error::GRpcStatus(status) = e {
        let mut inner: &dyn std::error::Error = status;
        while let Some(next) = inner.source() {
            inner = next;
        }
        if !std::ptr::addr_eq(inner, status as &dyn std::error::Error) {
            return tidy(&inner.to_string());
        }
        return tidy(&format!(
            "{}: {}",
            status.code().description(),
            status.message()
        ));
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    tidy(&inner.to_string())
}

/// One line, lower case first, without the `(os error N)` tail.
fn tidy(s: &str) -> String {
    let s = s.lines().next().unwrap_or_default();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    }
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|l| PutOptions::new().with_lease(l))
}

fn read_file(path: &PathBuf, what: &str) -> StoreResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        StoreError::Invalid(format!("cannot read etcd {what} {}: {e}", path.display()))
    })
}

impl EtcdStore {
    /// Connects to the cluster. Fails fast when no endpoint answers; callers retry.
    pub async fn connect(cfg: &EtcdConfig) -> StoreResult<Self> {
        if cfg.endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints given".into()));
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            opts = opts.with_user(user, pass);
        }
        if cfg.ca_file.is_some() || cfg.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &cfg.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_file(ca, "CA file")?));
            }
            match (&cfg.cert_file, &cfg.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read_file(cert, "client certificate")?,
                        read_file(key, "client key")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Invalid(
                        "etcd client certificate and key must be given together".into(),
                    ))
                }
            }
            opts = opts.with_tls(tls);
        }
        let client = Client::connect(&cfg.endpoints, Some(opts))
            .await
            .map_err(unavailable("connect"))?;
        let store = EtcdStore {
            client,
            endpoints: cfg.endpoints.len(),
        };
        // Connecting is lazy; a status call proves an endpoint really answers (any
        // one: a member that is down is passed over).
        store
            .on_a_live_member(Resend::RefusedOrTimedOut, |mut c| async move {
                c.status().await
            })
            .await
            .map_err(unavailable("connect"))?;
        Ok(store)
    }

    /// Runs `request` again while it fails as `resend` allows, up to once per endpoint:
    /// the client balances over every endpoint and, once a connection to a member that
    /// is down or silent has failed, takes another. With one member of three down (or
    /// paused), a request goes through instead of failing because it was sent to that
    /// one first.
    async fn on_a_live_member<T, Fut>(
        &self,
        resend: Resend,
        request: impl Fn(Client) -> Fut,
    ) -> Result<T, etcd_client::Error>
    where
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut tries = self.endpoints.max(1);
        loop {
            match request(self.client.clone()).await {
                Err(e) if tries > 1 && resend.applies(&e) => {
                    tries -= 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                done => return done,
            }
        }
    }

    /// Drops history up to `revision` (etcd compaction).
    async fn compact_history(&self, revision: Revision) -> StoreResult<()> {
        self.client
            .kv_client()
            .compact(revision, None)
            .await
            .map_err(unavailable("compact"))?;
        Ok(())
    }

    async fn conditional_put(
        &self,
        op: &'static str,
        compare: Compare,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>> {
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value, put_options(lease))]);
        let resp = self
            .on_a_live_member(Resend::Refused, |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await
            .map_err(unavailable(op))?;
        if !resp.succeeded() {
            return Ok(None);
        }
        Ok(Some(
            resp.header().map(|h| h.revision()).unwrap_or_default(),
        ))
    }

    async fn feed_watch(self, prefix: String, mut next: Revision, tx: mpsc::Sender<WatchEvent>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        while !tx.is_closed() {
            match self.watch_once(&prefix, &mut next, &tx).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, prefix, next, "etcd watch interrupted; reconnecting");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Runs one watch stream until it ends; `next` tracks what was delivered.
    async fn watch_once(
        &self,
        prefix: &str,
        next: &mut Revision,
        tx: &mpsc::Sender<WatchEvent>,
    ) -> StoreResult<()> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(*next)
            .with_progress_notify();
        let mut stream = self
            .client
            .watch_client()
            .watch(prefix, Some(opts))
            .await
            .map_err(unavailable("watch"))?;
        loop {
            let resp = tokio::select! {
                r = stream.message() => r.map_err(unavailable("watch"))?,
                _ = tx.closed() => return Ok(()),
            };
            let Some(resp) = resp else { return Ok(()) };
            if resp.compact_revision() > 0 || resp.canceled() {
                let Listing { kvs, revision } = self.list(prefix).await?;
                tracing::info!(
                    prefix,
                    revision,
                    "etcd watch history compacted; resynced from a fresh list"
                );
                *next = revision + 1;
                if tx.send(WatchEvent::Resync { kvs, revision }).await.is_err() {
                    return Ok(());
                }
                return Ok(()); // open a new stream from the fresh revision
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let out = match event.event_type() {
                    EventType::Put => WatchEvent::Put(to_kv(kv)),
                    EventType::Delete => WatchEvent::Delete {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        revision: kv.mod_revision(),
                    },
                };
                *next = out.revision() + 1;
                if tx.send(out).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        let resp = self
            .on_a_live_member(Resend::RefusedOrTimedOut, |c| async move {
                c.kv_client().get(key, None).await
            })
            .await
            .map_err(unavailable("get"))?;
        Ok(resp.kvs().first().map(to_kv))
    }

    async fn list(&self, prefix: &str) -> StoreResult<Listing> {
        let resp = self
            .on_a_live_member(Resend::RefusedOrTimedOut, |c| async move {
                let opts = GetOptions::new().with_prefix();
                c.kv_client().get(prefix, Some(opts)).await
            })
            .await
            .map_err(unavailable("list"))?;
        Ok(Listing {
            kvs: resp.kvs().iter().map(to_kv).collect(),
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
        })
    }

    async fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> StoreResult<Revision> {
        let resp = self
            .on_a_live_member(Resend::RefusedOrTimedOut, |c| async move {
                c.kv_client().put(key, value, put_options(lease)).await
            })
            .await
            .map_err(|e| match unavailable("put")(e) {
                StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(lease.unwrap_or(0)),
                other => other,
            })?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>> {
        let compare = Compare::create_revision(key, CompareOp::Equal, 0);
        self.conditional_put("create", compare, key, value, lease)
            .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>> {
        let compare = Compare::mod_revision(key, CompareOp::Equal, expected);
        self.conditional_put("compare-and-swap", compare, key, value, lease)
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<bool> {
        let resp = self
            .on_a_live_member(Resend::Refused, |c| async move {
                c.kv_client().delete(key, None).await
            })
            .await
            .map_err(unavailable("delete"))?;
        Ok(resp.deleted() > 0)
    }

    async fn grant(&self, ttl: Duration) -> StoreResult<LeaseId> {
        let secs = ttl.as_secs().max(1) as i64;
        let resp = self
            .on_a_live_member(Resend::Refused, |c| async move {
                c.lease_client().grant(secs, None).await
            })
            .await
            .map_err(unavailable("grant lease"))?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Option<Duration>> {
        let once = async {
            let (mut keeper, mut stream) = self.client.lease_client().keep_alive(lease).await?;
            keeper.keep_alive().await?;
            stream.message().await
        };
        match once.await.map_err(unavailable("keep lease alive")) {
            Ok(resp) => Ok(resp
                .filter(|r| r.ttl() > 0)
                .map(|r| Duration::from_secs(r.ttl() as u64))),
            Err(StoreError::LeaseNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn time_to_live(&self, lease: LeaseId) -> StoreResult<Option<Duration>> {
        let resp = self
            .on_a_live_member(Resend::RefusedOrTimedOut, |c| async move {
                c.lease_client().time_to_live(lease, None).await
            })
            .await
            .map_err(unavailable("read lease"))?;
        Ok((resp.ttl() > 0).then(|| Duration::from_secs(resp.ttl() as u64)))
    }

    async fn revoke(&self, lease: LeaseId) -> StoreResult<()> {
        match self.client.lease_client().revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) => match unavailable("revoke lease")(e) {
                StoreError::LeaseNotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> StoreResult<Watch> {
        let (store, prefix) = (self.clone(), prefix.to_owned());
        Ok(Watch::spawn(move |tx| store.feed_watch(prefix, from, tx)))
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        self.compact_history(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_etcd_is_one_line_that_says_why() {
        let cfg = EtcdConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            ..Default::default()
        };
        let e = EtcdStore::connect(&cfg)
            .await
            .err()
            .expect("nothing listens on port 1");
        let said = e.to_string();
        assert!(!said.contains('\n') && !said.contains("tonic"), "{said}");
        assert!(said.contains("connection refused"), "{said}");
    }

    #[test]
    fn causes_are_tidied() {
        assert_eq!(
            tidy("Connection refused (os error 111)"),
            "connection refused"
        );
        assert_eq!(tidy("Deadline has elapsed\nmore"), "deadline has elapsed");
    }
}
