//! Store errors: each says which store and which operation failed.

use thiserror::Error;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The store cannot be reached now; callers retry with backoff.
    #[error("{detail} (during {op})")]
    Unavailable { op: &'static str, detail: String },

    /// The embedded store's file failed (permissions, disk, corruption).
    #[error("embedded store at {path}: {op}: {source}")]
    Embedded {
        path: String,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// A key was to be bound to a lease that has expired or was revoked.
    #[error("store lease {0:x} not found (expired or revoked)")]
    LeaseNotFound(i64),

    /// The request itself is wrong (bad TTL, bad TLS files, bad endpoint).
    #[error("invalid store request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Embedded { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StoreError::Invalid(_) | StoreError::LeaseNotFound(_) => false,
        }
    }
}
