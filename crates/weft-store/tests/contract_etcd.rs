//! The store contract against a real etcd started on loopback for each check.

use std::sync::Arc;

use weft_store::etcd::{EtcdConfig, EtcdStore};
use weft_store::Store;
use weft_testkit::etcd::EtcdServer;
use weft_testkit::{all_contract_checks, contract_suite, gate};

/// A store on a fresh etcd; `None` (after one line saying so) where etcd cannot run.
async fn make() -> Option<(Arc<dyn Store>, EtcdServer)> {
    if !gate::etcd("contract_etcd") {
        return None;
    }
    let server = EtcdServer::start_loopback().expect("start etcd");
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint.clone()],
        ..Default::default()
    };
    let store = EtcdStore::connect(&cfg).await.expect("connect to etcd");
    Some((Arc::new(store), server))
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

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate with openssl.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // v3 extensions on both leaves: rustls refuses v1 certificates.
    std::fs::write(
        dir.join("server.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.cnf"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=weft-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    for name in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            "",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "",
        ];
        let (csr, pem, ext) = (
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.cnf"),
        );
        sign[3] = &csr;
        sign[12] = &pem;
        sign.extend_from_slice(&["-extfile", &ext]);
        run(&sign);
    }
}

/// TLS with a client certificate works; without one the server refuses the client.
#[tokio::test]
async fn etcd_over_tls_with_client_certificates() {
    use weft_testkit::etcd::ServerTls;
    if !gate::etcd("contract_etcd::etcd_over_tls_with_client_certificates") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let p = |f: &str| certs.path().join(f);
    let tls = ServerTls {
        cert: p("server.pem"),
        key: p("server.key"),
        ca: p("ca.pem"),
    };
    let data = certs.path().join("data");
    let server = EtcdServer::start_loopback_with(&data, Some(tls)).expect("start etcd with TLS");
    assert!(server.endpoint.starts_with("https://"));
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint.clone()],
        ca_file: Some(p("ca.pem")),
        cert_file: Some(p("client.pem")),
        key_file: Some(p("client.key")),
        ..Default::default()
    };
    let store = EtcdStore::connect(&cfg).await.expect("connect over TLS");
    store.put("/tls/k", b"v", None).await.unwrap();
    assert_eq!(store.get("/tls/k").await.unwrap().unwrap().value, b"v");

    let no_client_cert = EtcdConfig {
        cert_file: None,
        key_file: None,
        ..cfg.clone()
    };
    assert!(
        EtcdStore::connect(&no_client_cert).await.is_err(),
        "server requires a client certificate"
    );
    let half = EtcdConfig {
        key_file: None,
        ..cfg
    };
    let err = EtcdStore::connect(&half)
        .await
        .err()
        .expect("cert without key is refused");
    assert!(err.to_string().contains("must be given together"), "{err}");
}
