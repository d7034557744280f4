//! A [`Store`] that counts the requests it passes on: how many round trips an operation
//! costs, for tests and `bench/ipam.sh`. A watch counts once, when it is opened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{KeyValue, LeaseId, Listing, Revision, Store, StoreResult, Watch};

pub struct CountingStore {
    inner: Arc<dyn Store>,
    requests: AtomicU64,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> CountingStore {
        CountingStore {
            inner,
            requests: AtomicU64::new(0),
        }
    }

    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        self.count();
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Listing> {
        self.count();
        self.inner.list(prefix).await
    }
    async fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> StoreResult<Revision> {
        self.count();
        self.inner.put(key, value, lease).await
    }
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>> {
        self.count();
        self.inner.create(key, value, lease).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> StoreResult<Option<Revision>> {
        self.count();
        self.inner
            .compare_and_swap(key, value, expected, lease)
            .await
    }
    async fn delete(&self, key: &str) -> StoreResult<bool> {
        self.count();
        self.inner.delete(key).await
    }
    async fn grant(&self, ttl: Duration) -> StoreResult<LeaseId> {
        self.count();
        self.inner.grant(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Option<Duration>> {
        self.count();
        self.inner.keep_alive(lease).await
    }
    async fn time_to_live(&self, lease: LeaseId) -> StoreResult<Option<Duration>> {
        self.count();
        self.inner.time_to_live(lease).await
    }
    async fn revoke(&self, lease: LeaseId) -> StoreResult<()> {
        self.count();
        self.inner.revoke(lease).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> StoreResult<Watch> {
        self.count();
        self.inner.watch(prefix, from).await
    }
    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        self.count();
        self.inner.compact(revision).await
    }
}
