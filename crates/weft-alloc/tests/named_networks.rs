//! Named networks through the registry, on both stores: creation checks (overlap, VNI),
//! fixed and automatic addresses, deletion refused while endpoints exist, and several
//! hosts allocating at once in random interleavings: never one address twice.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use weft_alloc::named::{Endpoint, Mode, NamedError, NetworkRequest, PENDING};
use weft_alloc::{NetworkConfig, Registry};
use weft_store::embedded::EmbeddedStore;
use weft_store::Store;
use weft_testkit::etcd::EtcdServer;
use weft_testkit::{etcd_store, gate};

fn req(name: &str, subnet: &str, mode: Mode, vni: Option<u32>) -> NetworkRequest {
    NetworkRequest {
        name: name.into(),
        subnet: subnet.parse().unwrap(),
        gateway: None,
        mode,
        vni,
        internal: false,
    }
}

fn holder(node: u8) -> Endpoint {
    Endpoint {
        node: Ipv4Addr::new(192, 0, 2, node),
        endpoint_id: PENDING.into(),
        mac: None,
        host_iface: String::new(),
        ports: Vec::new(),
        container: String::new(),
        names: Vec::new(),
    }
}

async fn lifecycle(store: Arc<dyn Store>) {
    let r = Registry::new(store, "/t");
    let cfg = NetworkConfig::parse(
        br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":4096}}"#,
    )
    .unwrap();
    r.put_config(&cfg).await.unwrap();
    let blue = r
        .create_network(&req("blue", "10.50.0.0/24", Mode::Overlay, None))
        .await
        .unwrap();
    assert_eq!(blue.vni, 4097, "the cluster's own VNI is never given out");
    let red = r
        .create_network(&req("red", "10.51.0.0/24", Mode::Overlay, Some(7)))
        .await
        .unwrap();
    assert_eq!(red.vni, 7);
    let green = r
        .create_network(&req("green", "10.60.0.0/24", Mode::Routed, None))
        .await
        .unwrap();
    assert_eq!(green.vni, 0, "routed networks have no VXLAN");
    match r
        .create_network(&req("pink", "10.52.0.0/24", Mode::Overlay, Some(7)))
        .await
    {
        Err(NamedError::VniTaken(7, holder)) => assert_eq!(holder, "red"),
        other => panic!("VNI 7 twice: {other:?}"),
    }
    match r
        .create_network(&req("blue", "10.53.0.0/24", Mode::Overlay, None))
        .await
    {
        Err(NamedError::Exists(n)) => assert_eq!(n, "blue"),
        other => panic!("a name twice: {other:?}"),
    }
    let e = r
        .create_network(&req("pink", "10.50.0.128/25", Mode::Overlay, None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("overlaps network \"blue\""), "{e}");
    let e = r
        .create_network(&req("pink", "10.244.9.0/24", Mode::Overlay, None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cluster network"), "{e}");
    // A pool's range: only a routed network on exactly that range (on the pool's blocks).
    r.create_pool(&weft_alloc::blocks::Pool {
        name: "p".into(),
        cidr: "10.248.0.0/24".parse().unwrap(),
        block_size: 26,
        nat_outgoing: false,
        disabled: false,
    })
    .await
    .unwrap();
    for (subnet, mode) in [
        ("10.248.0.0/24", Mode::Overlay),
        ("10.248.0.0/25", Mode::Routed),
    ] {
        let e = r
            .create_network(&req("pooled", subnet, mode, None))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("overlaps pool \"p\""), "{e}");
    }
    let pooled = r
        .create_network(&req("pooled", "10.248.0.0/24", Mode::Routed, None))
        .await
        .unwrap();
    let pools = r.pools().await.unwrap();
    assert_eq!(
        weft_alloc::blocks::pool_of(&pooled, &pools).map(|p| p.name.as_str()),
        Some("p")
    );
    r.delete_network("pooled").await.unwrap();

    // Addresses: the lowest free after the gateway; a fixed one; the holder named.
    let a = r.allocate_endpoint(&blue, None, &holder(1)).await.unwrap();
    assert_eq!(a, Ipv4Addr::new(10, 50, 0, 2));
    let f = r
        .allocate_endpoint(&blue, Some(Ipv4Addr::new(10, 50, 0, 9)), &holder(2))
        .await
        .unwrap();
    assert_eq!(f, Ipv4Addr::new(10, 50, 0, 9));
    match r.allocate_endpoint(&blue, Some(f), &holder(1)).await {
        Err(e @ NamedError::Taken { .. }) => assert!(e.to_string().contains("192.0.2.2"), "{e}"),
        other => panic!("a fixed address twice: {other:?}"),
    }
    for (ip, why) in [
        ("10.50.0.1", "gateway"),
        ("10.50.0.255", "broadcast"),
        ("10.60.0.5", "outside"),
    ] {
        let e = r
            .allocate_endpoint(&blue, Some(ip.parse().unwrap()), &holder(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(why), "{ip}: {e}");
    }
    // Deletion refused while endpoints exist, and they are named.
    let e = r.delete_network("blue").await.unwrap_err();
    assert!(
        e.to_string().contains("10.50.0.2 on 192.0.2.1")
            && e.to_string().contains("10.50.0.9 on 192.0.2.2"),
        "{e}"
    );
    // Changes in place from two writers at once: neither undoes the other.
    let (names, ports) = tokio::join!(
        r.modify_endpoint("blue", a, |e| e.names = vec!["a1".into()]),
        r.modify_endpoint("blue", a, |e| e.host_iface = "wv1".into()),
    );
    assert!(names.unwrap().is_some() && ports.unwrap().is_some());
    let (_, both) = r
        .endpoints("blue")
        .await
        .unwrap()
        .into_iter()
        .find(|(ip, _)| *ip == a)
        .unwrap();
    assert_eq!(
        (both.names, both.host_iface.as_str()),
        (vec!["a1".to_owned()], "wv1")
    );
    let none = r
        .modify_endpoint("blue", Ipv4Addr::new(10, 50, 0, 77), |e| e.names.clear())
        .await
        .unwrap();
    assert!(none.is_none(), "a record that is not there is not made");
    assert!(r.release_endpoint("blue", a).await.unwrap());
    assert!(r.release_endpoint("blue", f).await.unwrap());
    assert!(
        !r.release_endpoint("blue", f).await.unwrap(),
        "twice: nothing to do"
    );
    r.delete_network("blue").await.unwrap();
    assert!(r.network("blue").await.unwrap().is_none());
    // Its VNI is free again.
    let again = r
        .create_network(&req("blue2", "10.50.0.0/24", Mode::Overlay, Some(4097)))
        .await
        .unwrap();
    assert_eq!(again.vni, 4097);
    let names: Vec<_> = r
        .networks()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["blue2", "green", "red"]);
}

/// Hosts allocating on one small network at once, each through its own registry, in
/// an order the runtime picks: every address handed out once, the pool used up exactly.
async fn racing_hosts(stores: Vec<Arc<dyn Store>>) {
    let first = Registry::new(stores[0].clone(), "/race");
    let net = first
        .create_network(&req("tiny", "10.70.0.0/27", Mode::Overlay, None))
        .await
        .unwrap();
    // 30 usable addresses minus the gateway: 29 to share among the hosts.
    let mut tasks = Vec::new();
    for (i, store) in stores.into_iter().enumerate() {
        let (r, net) = (Registry::new(store, "/race"), net.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match r.allocate_endpoint(&net, None, &holder(i as u8 + 1)).await {
                    Ok(ip) => got.push(ip),
                    Err(NamedError::Full { .. }) => return got,
                    Err(e) => panic!("host {i}: {e}"),
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "an address handed out twice: {all:?}"
    );
    assert_eq!(all.len(), 29);
    assert_eq!(first.endpoints("tiny").await.unwrap().len(), 29);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_named_networks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    lifecycle(Arc::new(EmbeddedStore::open(&path).unwrap())).await;
    let shared: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("race.db")).unwrap());
    racing_hosts(vec![shared.clone(), shared.clone(), shared]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_store_named_networks() {
    if !gate::etcd("named_networks::etcd_store_named_networks") {
        return;
    }
    let server = EtcdServer::start_loopback().unwrap();
    lifecycle(etcd_store(&server.endpoint).await).await;
    // Separate connections, as separate hosts have.
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(etcd_store(&server.endpoint).await); // a connection per host
    }
    racing_hosts(hosts).await;
}
