//! Weft's datastore.
//!
//! Everything Weft shares between nodes (the network config, subnet leases, node status)
//! lives in a key-value store with etcd v3's model: every write gets a cluster-wide
//! revision, keys may be bound to a lease that expires unless kept alive, and a watch
//! delivers every change after a revision. [`Store`] is that contract; [`etcd::EtcdStore`]
//! implements it on a real etcd cluster and [`embedded::EmbeddedStore`] on a SQLite file
//! that several agent processes on one machine share. The contract suite both implementations must pass
//! lives in the dev-only crate weft-testkit, so callers never care which one they talk to.

pub mod backoff;
pub mod counting;
pub mod embedded;
pub mod error;
pub mod etcd;
pub mod options;
mod types;

pub use error::{StoreError, StoreResult};
pub use types::{KeyValue, LeaseId, Listing, Revision, Watch, WatchEvent};

use std::time::Duration;

/// flannel's key prefix: the network config at `<prefix>/config`, leases under
/// `<prefix>/subnets/`, so a flannel cluster's keys are found as they are.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";

/// The operations Weft needs from a shared store. Keys are plain UTF-8 paths such as
/// `/coreos.com/network/subnets/10.244.1.0-24`; values are opaque bytes.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>>;

    /// Reads every key under `prefix`, with the store revision the listing is consistent at.
    async fn list(&self, prefix: &str) -> StoreResult<Listing>;

    /// Writes a key unconditionally, bound to `lease` when given.
    async fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> StoreResult<Revision>;

    /// Writes a key only if it does not exist. `Ok(None)` means somebody else holds it.
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>>;

    /// Writes a key only if its current modification revision is `expected`.
    /// `Ok(None)` means the key changed (or vanished) since it was read.
    async fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>>;

    /// Deletes a key; `Ok(false)` if it was not there.
    async fn delete(&self, key: &str) -> StoreResult<bool>;

    /// Creates a lease that expires `ttl` after its last keep-alive.
    async fn grant(&self, ttl: Duration) -> StoreResult<LeaseId>;

    /// Refreshes a lease to its full TTL. `Ok(None)` means the lease is gone (expired or
    /// revoked) and its keys with it.
    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Option<Duration>>;

    /// Time left on a lease, `Ok(None)` if it is gone.
    async fn time_to_live(&self, lease: LeaseId) -> StoreResult<Option<Duration>>;

    /// Ends a lease now, deleting every key bound to it.
    async fn revoke(&self, lease: LeaseId) -> StoreResult<()>;

    /// Streams every change under `prefix` from revision `from` on (inclusive).
    ///
    /// The stream never silently skips: when the history it needs is gone (compacted),
    /// or the connection was lost for longer than the history kept, it yields
    /// [`WatchEvent::Resync`] with a fresh listing and carries on from there. It reconnects
    /// by itself and ends only when the [`Watch`] is dropped.
    async fn watch(&self, prefix: &str, from: Revision) -> StoreResult<Watch>;

    /// Drops the change history up to `revision`; older watches resync.
    async fn compact(&self, revision: Revision) -> StoreResult<()>;
}
