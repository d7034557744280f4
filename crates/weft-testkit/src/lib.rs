//! Weft's test rig. A dev-dependency only: no product crate depends on it.
//!
//! - [`contract`]: the suite every [`weft_store::Store`] implementation must pass.
//! - [`gate`]: tests that need root or an etcd binary skip with one line saying so when
//!   run as an ordinary user, and run (and must pass) as root, which is how the README's
//!   test command runs them.
//! - [`netns`]: a network namespace of a test's own, removed even when the test fails.
//! - [`etcd`]: a throw-away etcd server (the lab's own starter, re-exported), and
//!   [`etcd_store`], a client of one: a connection of its own, as a separate node has.

pub mod contract;
pub mod gate;
pub mod netns;

pub use weft_lab::etcd;

/// A store client of the etcd at `endpoint`, on a connection of its own.
pub async fn etcd_store(endpoint: &str) -> std::sync::Arc<dyn weft_store::Store> {
    let cfg = weft_store::etcd::EtcdConfig {
        endpoints: vec![endpoint.to_owned()],
        ..Default::default()
    };
    std::sync::Arc::new(
        weft_store::etcd::EtcdStore::connect(&cfg)
            .await
            .expect("etcd answers"),
    )
}
