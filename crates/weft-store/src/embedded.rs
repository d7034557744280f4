//! The embedded store: one SQLite file shared by every Weft process on a machine.
//!
//! Why SQLite: the lab runs one agent per host namespace, all on one machine, and they
//! must share leases without a server. SQLite in WAL mode gives exactly that: many
//! processes read while one writes, every write is an ACID transaction (`synchronous=FULL`
//! survives a crash or power loss), and the file needs no daemon. Single-process engines
//! (sled, redb) would need a server process to share; plain files would need us to
//! reinvent locking and journaling. See `docs/store.md`.
//!
//! etcd's model is reproduced in four tables: `kv` (keys with create/mod revision and
//! lease), `leases` (TTL and absolute expiry in wall-clock milliseconds, since several
//! processes share them), `events` (one row per change, the watch history) and `meta`
//! (the revision counter and the compaction mark). There is no server to expire leases,
//! so every writer and every watcher first sweeps expired leases in a write transaction;
//! the resulting deletions are ordinary events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::mpsc;

use crate::{
    KeyValue, LeaseId, Listing, Revision, Store, StoreError, StoreResult, Watch, WatchEvent,
};

/// How many past events are kept for watchers that fall behind.
const HISTORY: i64 = 10_000;
/// How often a watcher looks for new events written by other processes (its own
/// process's writes wake it at once). Cross-process change notification would need
/// inotify on the WAL; a 50 ms poll of one indexed table is cheap.
const POLL: Duration = Duration::from_millis(50);

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES('rev', 1), ('compacted', 0);
CREATE TABLE IF NOT EXISTS kv(
  key TEXT PRIMARY KEY, value BLOB NOT NULL,
  create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease);
CREATE TABLE IF NOT EXISTS leases(
  id INTEGER PRIMARY KEY AUTOINCREMENT, ttl_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(
  rev INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB,
  create_rev INTEGER NOT NULL, lease INTEGER NOT NULL);
";

/// A store in one SQLite file. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Wakes this process's watchers on its own writes, so they see them at once
    /// rather than at the next poll (another process's writes wait for the poll).
    written: tokio::sync::Notify,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lease_of(raw: i64) -> Option<LeaseId> {
    (raw != 0).then_some(raw)
}

/// `key LIKE prefix%` without LIKE's wildcards: compare the leading characters.
const PREFIX_MATCH: &str = "substr(key, 1, length(?1)) = ?1";

impl EmbeddedStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |op, source| StoreError::Embedded {
            path: path.display().to_string(),
            op,
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Invalid(format!("cannot create directory {}: {e}", dir.display()))
                })?;
            }
        }
        let conn = Connection::open(&path).map_err(|e| err("open", e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| err("set busy timeout", e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| err("create schema", e))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(|e| err("set synchronous", e))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                written: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the connection in a blocking thread, naming `op` in any error.
    async fn run<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(|source| StoreError::Embedded {
                path: inner.path.display().to_string(),
                op,
                source,
            })
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            op,
            detail: format!("worker thread failed: {e}"),
        })?
    }

    /// Runs `f` inside a write transaction that first expires overdue leases.
    async fn write<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, WriteError> + Send + 'static,
    {
        let outcome = self
            .run(op, move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                sweep_expired(&tx)?;
                match f(&tx) {
                    Ok(out) => {
                        tx.commit()?;
                        Ok(Ok(out))
                    }
                    Err(WriteError::Sql(e)) => Err(e),
                    Err(WriteError::NoLease(id)) => Ok(Err(id)),
                }
            })
            .await?;
        self.inner.written.notify_waiters();
        outcome.map_err(StoreError::LeaseNotFound)
    }

    /// Lists `prefix`; call inside a transaction so keys and revision agree.
    fn list_in(tx: &Connection, prefix: &str) -> rusqlite::Result<Listing> {
        let now = now_ms();
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE {PREFIX_MATCH}
             AND (lease = 0 OR lease IN (SELECT id FROM leases WHERE expires_ms > ?2)) ORDER BY key"
        ))?;
        let kvs = stmt
            .query_map(params![prefix, now], row_to_kv)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        let revision = current_rev(tx)?;
        Ok(Listing { kvs, revision })
    }
}

/// Why a write transaction gave up.
enum WriteError {
    Sql(rusqlite::Error),
    /// The key was to be bound to a lease that does not exist (any more).
    NoLease(LeaseId),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sql(e)
    }
}

fn row_to_kv(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(0)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
        lease: lease_of(row.get(4)?),
    })
}

fn current_rev(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = 'rev'")?
        .query_row([], |r| r.get(0))
}

/// Allocates the next revision.
fn next_rev(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Revision> {
    tx.query_row(
        "UPDATE meta SET value = value + 1 WHERE name = 'rev' RETURNING value",
        [],
        |r| r.get(0),
    )
}

/// Records a change in the history and trims history older than [`HISTORY`] events.
fn record(
    tx: &rusqlite::Transaction<'_>,
    rev: Revision,
    key: &str,
    value: Option<&[u8]>,
    create_rev: Revision,
    lease: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events(rev, key, value, create_rev, lease) VALUES(?1, ?2, ?3, ?4, ?5)",
        params![rev, key, value, create_rev, lease],
    )?;
    if rev % 1000 == 0 {
        compact_to(tx, rev - HISTORY)?;
    }
    Ok(())
}

fn compact_to(tx: &rusqlite::Transaction<'_>, rev: Revision) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM events WHERE rev <= ?1", params![rev])?;
    tx.execute(
        "UPDATE meta SET value = max(value, ?1) WHERE name = 'compacted'",
        params![rev],
    )?;
    Ok(())
}

fn upsert(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    value: &[u8],
    lease: Option<LeaseId>,
) -> Result<Revision, WriteError> {
    let lease = lease.unwrap_or(0);
    if lease != 0 {
        let alive: Option<i64> = tx
            .query_row("SELECT id FROM leases WHERE id = ?1", params![lease], |r| {
                r.get(0)
            })
            .optional()?;
        if alive.is_none() {
            return Err(WriteError::NoLease(lease));
        }
    }
    let rev = next_rev(tx)?;
    let create_rev: Revision = tx
        .query_row(
            "SELECT create_rev FROM kv WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(rev);
    tx.execute(
        "INSERT INTO kv(key, value, create_rev, mod_rev, lease) VALUES(?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(key) DO UPDATE SET value = ?2, mod_rev = ?4, lease = ?5",
        params![key, value, create_rev, rev, lease],
    )?;
    record(tx, rev, key, Some(value), create_rev, lease)?;
    Ok(rev)
}

fn remove(tx: &rusqlite::Transaction<'_>, key: &str) -> rusqlite::Result<bool> {
    let existed = tx.execute("DELETE FROM kv WHERE key = ?1", params![key])? > 0;
    if existed {
        let rev = next_rev(tx)?;
        record(tx, rev, key, None, 0, 0)?;
    }
    Ok(existed)
}

/// Deletes leases past their expiry and every key bound to them.
fn sweep_expired(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let now = now_ms();
    let expired: Vec<i64> = tx
        .prepare_cached("SELECT id FROM leases WHERE expires_ms <= ?1")?
        .query_map(params![now], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for lease in expired {
        drop_lease(tx, lease)?;
    }
    Ok(())
}

fn drop_lease(tx: &rusqlite::Transaction<'_>, lease: LeaseId) -> rusqlite::Result<()> {
    let keys: Vec<String> = tx
        .prepare_cached("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")?
        .query_map(params![lease], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for key in keys {
        remove(tx, &key)?;
    }
    tx.execute("DELETE FROM leases WHERE id = ?1", params![lease])?;
    Ok(())
}

fn has_expired_conn(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM leases WHERE expires_ms <= ?1)")?
        .query_row(params![now_ms()], |r| r.get(0))
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        let key = key.to_owned();
        self.run("get", move |conn| {
            conn.query_row(
                "SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key = ?1
                 AND (lease = 0 OR lease IN (SELECT id FROM leases WHERE expires_ms > ?2))",
                params![key, now_ms()],
                row_to_kv,
            )
            .optional()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Listing> {
        let prefix = prefix.to_owned();
        self.run("list", move |conn| {
            let tx = conn.transaction()?;
            let listing = Self::list_in(&tx, &prefix)?;
            tx.commit()?;
            Ok(listing)
        })
        .await
    }

    async fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> StoreResult<Revision> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write("put", move |tx| upsert(tx, &key, &value, lease))
            .await
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write("create", move |tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM kv WHERE key = ?1)",
                params![key],
                |r| r.get(0),
            )?;
            if exists {
                return Ok(None);
            }
            upsert(tx, &key, &value, lease).map(Some)
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write("compare-and-swap", move |tx| {
            let current: Option<Revision> = tx
                .query_row("SELECT mod_rev FROM kv WHERE key = ?1", params![key], |r| {
                    r.get(0)
                })
                .optional()?;
            if current != Some(expected) {
                return Ok(None);
            }
            upsert(tx, &key, &value, lease).map(Some)
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<bool> {
        let key = key.to_owned();
        self.write("delete", move |tx| Ok(remove(tx, &key)?)).await
    }

    async fn grant(&self, ttl: Duration) -> StoreResult<LeaseId> {
        if ttl.is_zero() {
            return Err(StoreError::Invalid("lease TTL must be positive".into()));
        }
        let ttl_ms = ttl.as_millis() as i64;
        self.write("grant lease", move |tx| {
            tx.execute(
                "INSERT INTO leases(ttl_ms, expires_ms) VALUES(?1, ?2)",
                params![ttl_ms, now_ms() + ttl_ms],
            )?;
            Ok(tx.last_insert_rowid())
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Option<Duration>> {
        self.write("keep lease alive", move |tx| {
            let ttl: Option<i64> = tx
                .query_row(
                    "SELECT ttl_ms FROM leases WHERE id = ?1",
                    params![lease],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(ttl) = ttl {
                tx.execute(
                    "UPDATE leases SET expires_ms = ?1 WHERE id = ?2",
                    params![now_ms() + ttl, lease],
                )?;
            }
            Ok(ttl.map(|ms| Duration::from_millis(ms as u64)))
        })
        .await
    }

    async fn time_to_live(&self, lease: LeaseId) -> StoreResult<Option<Duration>> {
        self.run("read lease", move |conn| {
            let expires: Option<i64> = conn
                .query_row(
                    "SELECT expires_ms FROM leases WHERE id = ?1",
                    params![lease],
                    |r| r.get(0),
                )
                .optional()?;
            let now = now_ms();
            Ok(expires
                .filter(|&e| e > now)
                .map(|e| Duration::from_millis((e - now) as u64)))
        })
        .await
    }

    async fn revoke(&self, lease: LeaseId) -> StoreResult<()> {
        self.write("revoke lease", move |tx| Ok(drop_lease(tx, lease)?))
            .await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> StoreResult<Watch> {
        let (store, prefix) = (self.clone(), prefix.to_owned());
        Ok(Watch::spawn(move |tx| store.feed_watch(prefix, from, tx)))
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        self.compact_history(revision).await
    }
}

impl EmbeddedStore {
    /// Drops the history up to `revision`, as etcd's compaction does. Watchers older
    /// than that resync from a fresh listing.
    async fn compact_history(&self, revision: Revision) -> StoreResult<()> {
        self.write("compact", move |tx| Ok(compact_to(tx, revision)?))
            .await
    }

    /// The watch loop: sweep expiries, replay history after `next`, or resync when that
    /// history is gone. Store errors are logged and retried; nothing is skipped.
    async fn feed_watch(self, prefix: String, mut next: Revision, tx: mpsc::Sender<WatchEvent>) {
        let mut failing = false;
        while !tx.is_closed() {
            // Listening for this process's writes before looking, so none falls between.
            let written = self.inner.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            match self.poll_events(&prefix, next).await {
                Ok(events) => {
                    if failing {
                        tracing::info!(path = %self.path().display(), "embedded store readable again");
                        failing = false;
                    }
                    for event in events {
                        next = event.revision() + 1;
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "watch cannot read the embedded store; retrying");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = &mut written => {}
            }
        }
    }

    /// One look at the store, every [`POLL`]: almost always it finds nothing new, so
    /// that answer costs two cached one-row queries in one trip to the blocking pool.
    async fn poll_events(&self, prefix: &str, next: Revision) -> StoreResult<Vec<WatchEvent>> {
        let quiet = self
            .run("check for changes", move |conn| {
                Ok(!has_expired_conn(conn)? && current_rev(conn)? < next)
            })
            .await?;
        if quiet {
            return Ok(Vec::new());
        }
        if self
            .run("check expiry", |conn| has_expired_conn(conn))
            .await?
        {
            self.write("expire leases", |_| Ok(())).await?;
        }
        let prefix = prefix.to_owned();
        self.run("watch", move |conn| {
            let tx = conn.transaction()?;
            let compacted: Revision = tx
                .prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")?
                .query_row([], |r| r.get(0))?;
            if next <= compacted {
                let Listing { kvs, revision } = Self::list_in(&tx, &prefix)?;
                return Ok(vec![WatchEvent::Resync { kvs, revision }]);
            }
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT rev, key, value, create_rev, lease FROM events
                 WHERE rev >= ?2 AND {PREFIX_MATCH} ORDER BY rev LIMIT 4096"
            ))?;
            let events = stmt
                .query_map(params![prefix, next], |r| {
                    let rev: Revision = r.get(0)?;
                    let key: String = r.get(1)?;
                    let value: Option<Vec<u8>> = r.get(2)?;
                    Ok(match value {
                        Some(value) => WatchEvent::Put(KeyValue {
                            key,
                            value,
                            create_revision: r.get(3)?,
                            mod_revision: rev,
                            lease: lease_of(r.get(4)?),
                        }),
                        None => WatchEvent::Delete { key, revision: rev },
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(events)
        })
        .await
    }
}
