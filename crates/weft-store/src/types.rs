//! Plain data exchanged with a [`crate::Store`].

use tokio::sync::mpsc;

/// A store-wide, strictly increasing write counter (etcd's revision).
pub type Revision = i64;

/// Identifies a TTL lease in the store. Keys bound to it vanish when it expires.
pub type LeaseId = i64;

/// One key as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key; what compare-and-swap compares.
    pub mod_revision: Revision,
    /// The lease the key is bound to; `None` for a key that never expires.
    pub lease: Option<LeaseId>,
}

/// A consistent listing of a prefix.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub kvs: Vec<KeyValue>,
    /// The store revision the listing was taken at; watch from `revision + 1`.
    pub revision: Revision,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete {
        key: String,
        revision: Revision,
    },
    /// The watch could not replay history and starts over from this full listing:
    /// every key not in `kvs` is gone.
    Resync {
        kvs: Vec<KeyValue>,
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision this event brings the watcher up to.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Resync { revision, .. } => *revision,
        }
    }
}

/// A running watch. Dropping it stops the background task that feeds it.
pub struct Watch {
    rx: mpsc::Receiver<WatchEvent>,
}

impl Watch {
    /// Starts `feed` in a task that sends events until the returned `Watch` is dropped.
    pub(crate) fn spawn<F, Fut>(feed: F) -> Self
    where
        F: FnOnce(mpsc::Sender<WatchEvent>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(feed(tx));
        Watch { rx }
    }

    /// The next change; `None` only if the store side shut down.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }
}
