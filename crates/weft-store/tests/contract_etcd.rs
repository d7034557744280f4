//! The store contract against a real etcd started on loopback for each check.

use std::sync::Arc;

use weft_store::etcd::{EtcdConfig, EtcdStore};
use weft_store::etcd_server::EtcdServer;
use weft_store::{all_contract_checks, contract_suite, Store};

async fn make() -> (Arc<dyn Store>, EtcdServer) {
    let server = EtcdServer::start_loopback().expect("start etcd");
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint.clone()],
        ..Default::default()
    };
    let store = EtcdStore::connect(&cfg).await.expect("connect to etcd");
    (Arc::new(store), server)
}

all_contract_checks!(contract_suite!(make()));

/// A store that cannot be reached reports a transient error instead of hanging.
#[tokio::test]
async fn unreachable_etcd_is_a_transient_error() {
    let cfg = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:1".into()],
        ..Default::default()
    };
    let err = EtcdStore::connect(&cfg)
        .await
        .err()
        .expect("no etcd on port 1");
    assert!(err.is_transient(), "{err}");
}
