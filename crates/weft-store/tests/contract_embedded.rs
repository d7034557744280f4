//! The store contract against the embedded (SQLite) store.

use std::sync::Arc;

use weft_store::{embedded::EmbeddedStore, Store};
use weft_testkit::{all_contract_checks, contract_suite};

async fn make() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.db")).unwrap();
    Some((Arc::new(store), dir))
}

all_contract_checks!(contract_suite!(make()));

/// Two handles on one file behave as two processes would: each sees the other's writes.
#[tokio::test]
async fn two_handles_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedStore::open(dir.path().join("s.db")).unwrap();
    let b = EmbeddedStore::open(dir.path().join("s.db")).unwrap();
    let start = b.list("/x/").await.unwrap().revision + 1;
    let mut w = b.watch("/x/", start).await.unwrap();
    a.put("/x/k", b"v", None).await.unwrap();
    assert_eq!(b.get("/x/k").await.unwrap().unwrap().value, b"v");
    assert!(matches!(
        w.next().await,
        Some(weft_store::WatchEvent::Put(_))
    ));
    assert_eq!(b.create("/x/k", b"w", None).await.unwrap(), None);
}

/// A store reopened after its process died keeps every committed write.
#[tokio::test]
async fn reopened_store_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let rev = {
        let s = EmbeddedStore::open(&path).unwrap();
        s.put("/k", b"v", None).await.unwrap()
    };
    let s = EmbeddedStore::open(&path).unwrap();
    let kv = s.get("/k").await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"v"[..], rev));
    assert!(
        s.put("/k2", b"v", None).await.unwrap() > rev,
        "revisions continue after reopen"
    );
}
