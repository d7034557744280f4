//! The contract every [`Store`] implementation must pass.
//!
//! Test code only: no product crate depends on it, and the store library exports none
//! of it.
//!
//! Each check takes a store and a key prefix of its own, so checks can share one server.
//! `tests/contract_embedded.rs` and `tests/contract_etcd.rs` run all of them, through
//! [`crate::contract_suite!`], against the embedded store and a real etcd.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_store::{Store, StoreError, WatchEvent};

type Check = fn(Arc<dyn Store>, String) -> futures_box::BoxFuture;

mod futures_box {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// Every check, by name.
pub fn checks() -> Vec<(&'static str, Check)> {
    macro_rules! c {
        ($($f:ident),* $(,)?) => { vec![$((stringify!($f), (|s, p| Box::pin($f(s, p))) as Check)),*] };
    }
    c![
        put_get_list_delete,
        revisions_increase,
        create_if_absent,
        compare_and_swap,
        lease_binds_and_revokes,
        lease_expires_without_keep_alive,
        keep_alive_extends_lease,
        put_on_dead_lease_fails,
        watch_delivers_changes_in_order,
        watch_replays_history,
        watch_resyncs_after_compaction,
        watch_sees_expiry,
        racing_creates_have_one_winner,
    ]
}

async fn next_event(w: &mut weft_store::Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch event within 10 s")
        .expect("watch still open")
}

async fn put_get_list_delete(s: Arc<dyn Store>, p: String) {
    assert!(s.get(&format!("{p}a")).await.unwrap().is_none());
    s.put(&format!("{p}a"), b"1", None).await.unwrap();
    s.put(&format!("{p}b"), b"2", None).await.unwrap();
    s.put(&format!("{p}-other"), b"x", None).await.unwrap();
    let kv = s.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!(kv.value, b"1");
    assert_eq!(kv.lease, None);
    let l = s.list(&p).await.unwrap();
    let keys: Vec<_> = l
        .kvs
        .iter()
        .map(|k| k.key.trim_start_matches(&p).to_owned())
        .collect();
    assert_eq!(keys, ["-other", "a", "b"]);
    let l = s.list(&format!("{p}a")).await.unwrap();
    assert_eq!(l.kvs.len(), 1, "prefix listing is exact");
    assert!(l.revision >= kv.mod_revision);
    assert!(s.delete(&format!("{p}a")).await.unwrap());
    assert!(
        !s.delete(&format!("{p}a")).await.unwrap(),
        "second delete reports absence"
    );
    assert!(s.get(&format!("{p}a")).await.unwrap().is_none());
}

async fn revisions_increase(s: Arc<dyn Store>, p: String) {
    let k = format!("{p}k");
    let r1 = s.put(&k, b"1", None).await.unwrap();
    let r2 = s.put(&k, b"2", None).await.unwrap();
    assert!(r2 > r1);
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!(kv.mod_revision, r2);
    assert_eq!(kv.create_revision, r1, "create revision survives updates");
}

async fn create_if_absent(s: Arc<dyn Store>, p: String) {
    let k = format!("{p}k");
    let r = s.create(&k, b"first", None).await.unwrap();
    assert!(r.is_some());
    assert_eq!(s.create(&k, b"second", None).await.unwrap(), None);
    assert_eq!(s.get(&k).await.unwrap().unwrap().value, b"first");
}

async fn compare_and_swap(s: Arc<dyn Store>, p: String) {
    let k = format!("{p}k");
    assert_eq!(
        s.compare_and_swap(&k, b"x", 1, None).await.unwrap(),
        None,
        "absent key"
    );
    let r1 = s.put(&k, b"1", None).await.unwrap();
    let r2 = s
        .compare_and_swap(&k, b"2", r1, None)
        .await
        .unwrap()
        .expect("matching revision wins");
    assert_eq!(
        s.compare_and_swap(&k, b"3", r1, None).await.unwrap(),
        None,
        "stale revision loses"
    );
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"2"[..], r2));
}

async fn lease_binds_and_revokes(s: Arc<dyn Store>, p: String) {
    let lease = s.grant(Duration::from_secs(60)).await.unwrap();
    s.put(&format!("{p}a"), b"1", Some(lease)).await.unwrap();
    s.create(&format!("{p}b"), b"2", Some(lease))
        .await
        .unwrap()
        .unwrap();
    s.put(&format!("{p}c"), b"3", None).await.unwrap();
    assert_eq!(
        s.get(&format!("{p}a")).await.unwrap().unwrap().lease,
        Some(lease)
    );
    let ttl = s.time_to_live(lease).await.unwrap().expect("lease alive");
    assert!(
        ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(50),
        "ttl {ttl:?}"
    );
    s.revoke(lease).await.unwrap();
    let left: Vec<_> = s
        .list(&p)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(
        left,
        [format!("{p}c")],
        "revoke removes exactly the bound keys"
    );
    assert_eq!(s.time_to_live(lease).await.unwrap(), None);
    assert_eq!(
        s.keep_alive(lease).await.unwrap(),
        None,
        "revoked lease cannot be kept alive"
    );
}

async fn wait_gone(s: &Arc<dyn Store>, key: &str, within: Duration) -> Duration {
    let start = Instant::now();
    while s.get(key).await.unwrap().is_some() {
        assert!(
            start.elapsed() < within,
            "{key} still present after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

async fn lease_expires_without_keep_alive(s: Arc<dyn Store>, p: String) {
    let lease = s.grant(Duration::from_secs(2)).await.unwrap();
    let k = format!("{p}k");
    s.put(&k, b"1", Some(lease)).await.unwrap();
    wait_gone(&s, &k, Duration::from_secs(10)).await;
    assert_eq!(s.time_to_live(lease).await.unwrap(), None);
}

async fn keep_alive_extends_lease(s: Arc<dyn Store>, p: String) {
    let lease = s.grant(Duration::from_secs(3)).await.unwrap();
    let k = format!("{p}k");
    s.put(&k, b"1", Some(lease)).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ttl = s
            .keep_alive(lease)
            .await
            .unwrap()
            .expect("lease alive while kept");
        assert_eq!(ttl.as_secs(), 3);
    }
    assert!(
        s.get(&k).await.unwrap().is_some(),
        "kept-alive key survives past its TTL"
    );
}

async fn put_on_dead_lease_fails(s: Arc<dyn Store>, p: String) {
    let lease = s.grant(Duration::from_secs(30)).await.unwrap();
    s.revoke(lease).await.unwrap();
    let err = s
        .put(&format!("{p}k"), b"1", Some(lease))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseNotFound(_)), "got {err}");
    assert!(s.get(&format!("{p}k")).await.unwrap().is_none());
}

async fn watch_delivers_changes_in_order(s: Arc<dyn Store>, p: String) {
    let start = s.list(&p).await.unwrap().revision + 1;
    let mut w = s.watch(&p, start).await.unwrap();
    s.put(&format!("{p}a"), b"1", None).await.unwrap();
    s.put(&format!("{p}b"), b"2", None).await.unwrap();
    s.put(&format!("{p}a"), b"3", None).await.unwrap();
    s.put("/elsewhere/not-watched", b"x", None).await.unwrap();
    s.delete(&format!("{p}b")).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(match next_event(&mut w).await {
            WatchEvent::Put(kv) => format!(
                "put {} {}",
                kv.key.trim_start_matches(&p),
                String::from_utf8_lossy(&kv.value)
            ),
            WatchEvent::Delete { key, .. } => format!("del {}", key.trim_start_matches(&p)),
            WatchEvent::Resync { .. } => panic!("unexpected resync"),
        });
    }
    assert_eq!(seen, ["put a 1", "put b 2", "put a 3", "del b"]);
}

async fn watch_replays_history(s: Arc<dyn Store>, p: String) {
    let r1 = s.put(&format!("{p}a"), b"1", None).await.unwrap();
    s.put(&format!("{p}a"), b"2", None).await.unwrap();
    let mut w = s.watch(&p, r1).await.unwrap();
    let first = next_event(&mut w).await;
    assert!(
        matches!(&first, WatchEvent::Put(kv) if kv.value == b"1" && kv.mod_revision == r1),
        "{first:?}"
    );
    let second = next_event(&mut w).await;
    assert!(
        matches!(&second, WatchEvent::Put(kv) if kv.value == b"2"),
        "{second:?}"
    );
}

async fn watch_resyncs_after_compaction(s: Arc<dyn Store>, p: String) {
    let r1 = s.put(&format!("{p}a"), b"1", None).await.unwrap();
    s.put(&format!("{p}b"), b"2", None).await.unwrap();
    s.delete(&format!("{p}a")).await.unwrap();
    let r_last = s.put(&format!("{p}c"), b"3", None).await.unwrap();
    s.compact(r_last).await.unwrap();
    let mut w = s.watch(&p, r1).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Resync { kvs, revision } => {
            let keys: Vec<_> = kvs
                .iter()
                .map(|k| k.key.trim_start_matches(&p).to_owned())
                .collect();
            assert_eq!(keys, ["b", "c"], "resync lists the current state");
            assert!(revision >= r_last);
        }
        other => panic!("expected a resync after compaction, got {other:?}"),
    }
    s.put(&format!("{p}d"), b"4", None).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Put(kv) => assert!(kv.key.ends_with("d")),
        other => panic!("watch continues after resync, got {other:?}"),
    }
}

async fn watch_sees_expiry(s: Arc<dyn Store>, p: String) {
    let start = s.list(&p).await.unwrap().revision + 1;
    let mut w = s.watch(&p, start).await.unwrap();
    let lease = s.grant(Duration::from_secs(2)).await.unwrap();
    s.put(&format!("{p}k"), b"1", Some(lease)).await.unwrap();
    assert!(matches!(next_event(&mut w).await, WatchEvent::Put(_)));
    match next_event(&mut w).await {
        WatchEvent::Delete { key, .. } => assert_eq!(key, format!("{p}k")),
        other => panic!("expected the expiry as a delete, got {other:?}"),
    }
}

async fn racing_creates_have_one_winner(s: Arc<dyn Store>, p: String) {
    let k = format!("{p}contended");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(
                async move { s.create(&k, format!("{i}").as_bytes(), None).await.unwrap() },
            )
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += t.await.unwrap().is_some() as usize;
    }
    assert_eq!(winners, 1);
}

/// Expands to one `#[tokio::test]` per contract check, each with its own key prefix on
/// the store `$make` (an async expression yielding `Option<(Arc<dyn Store>, guard)>`)
/// returns; `None` skips the check (the store cannot run here, and `$make` said why).
#[macro_export]
macro_rules! contract_suite {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((store, _guard)) = $make.await else { return };
                let check = $crate::contract::checks()
                    .into_iter()
                    .find(|(n, _)| *n == stringify!($name))
                    .expect("a contract check of that name")
                    .1;
                let prefix = format!("/contract/{}/{}/", stringify!($name), std::process::id());
                check(store, prefix).await;
            }
        )*
        #[test]
        fn every_check_is_run() {
            let listed = [$(stringify!($name)),*];
            for (name, _) in $crate::contract::checks() {
                assert!(listed.contains(&name), "contract check {name} is not run here");
            }
        }
    };
}

/// The names of every check, for [`contract_suite!`] call sites to copy.
#[macro_export]
macro_rules! all_contract_checks {
    ($callback:ident!($make:expr)) => {
        $callback!($make;
            put_get_list_delete, revisions_increase, create_if_absent, compare_and_swap,
            lease_binds_and_revokes, lease_expires_without_keep_alive, keep_alive_extends_lease,
            put_on_dead_lease_fails, watch_delivers_changes_in_order, watch_replays_history,
            watch_resyncs_after_compaction, watch_sees_expiry, racing_creates_have_one_winner);
    };
}
