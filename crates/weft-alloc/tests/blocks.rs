//! Block IPAM through the registry, on both stores: pools, blocks claimed on demand,
//! fixed addresses, borrowing, release, and several nodes allocating at once in random
//! interleavings: never a duplicate address, never two holders of a block.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use weft_alloc::block_cache::BlockCache;
use weft_alloc::blocks::{BlockError, Pool};
use weft_alloc::Registry;
use weft_store::counting::CountingStore;
use weft_store::embedded::EmbeddedStore;
use weft_store::Store;
use weft_testkit::etcd::EtcdServer;
use weft_testkit::{etcd_store, gate};

fn node(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, i)
}

fn pool(name: &str, cidr: &str, block_size: u8) -> Pool {
    Pool {
        name: name.into(),
        cidr: cidr.parse().unwrap(),
        block_size,
        nat_outgoing: true,
        disabled: false,
    }
}

async fn lifecycle(store: Arc<dyn Store>) {
    let r = Registry::new(store, "/b");
    r.create_pool(&pool("small", "10.248.0.0/28", 30))
        .await
        .unwrap();
    let e = r
        .create_pool(&pool("again", "10.248.0.8/29", 30))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("overlaps pool \"small\""), "{e}");
    let cfg = weft_alloc::NetworkConfig::parse(br#"{"Network":"10.244.0.0/16"}"#).unwrap();
    r.put_config(&cfg).await.unwrap();
    let e = r
        .create_pool(&pool("inside", "10.244.128.0/20", 26))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("overlaps the cluster network 10.244.0.0/16"),
        "{e}"
    );

    // Node 1 claims a block and fills it, then claims the next.
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(
            r.allocate_from_blocks(node(1), &format!("c{n}/eth0"), true)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        &mine[..4],
        ["10.248.0.0", "10.248.0.1", "10.248.0.2", "10.248.0.3"]
            .map(|s| s.parse::<Ipv4Addr>().unwrap())
    );
    assert_eq!(mine[4], "10.248.0.4".parse::<Ipv4Addr>().unwrap());
    let held: Vec<_> = r
        .blocks()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.block.cidr.to_string(), b.block.node))
        .collect();
    assert_eq!(
        held,
        [
            ("10.248.0.0/30".into(), node(1)),
            ("10.248.0.4/30".into(), node(1))
        ]
    );

    // Node 2 takes the two blocks left; then it is full and, strict, refused.
    for n in 0..8 {
        r.allocate_from_blocks(node(2), &format!("d{n}/eth0"), true)
            .await
            .unwrap();
    }
    let e = r
        .allocate_from_blocks(node(2), "d8/eth0", true)
        .await
        .unwrap_err();
    assert!(matches!(e, BlockError::Exhausted { strict: true }), "{e}");
    // Not strict: it borrows the last free address of node 1's second block.
    let borrowed = r
        .allocate_from_blocks(node(2), "d8/eth0", false)
        .await
        .unwrap();
    assert_eq!(borrowed, "10.248.0.5".parse::<Ipv4Addr>().unwrap());
    let b = r
        .blocks()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.block.cidr.contains(&borrowed))
        .unwrap();
    assert_eq!(b.block.node, node(1), "the block stays node 1's");
    assert_eq!(
        b.block.allocations[&borrowed].node,
        node(2),
        "the address is node 2's"
    );

    // Fixed addresses: taken is refused with the holder; a retried ADD is fine.
    let e = r
        .allocate_fixed(node(3), "10.248.0.0".parse().unwrap(), "x/eth0")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("held by c0/eth0 on node 192.0.2.1"),
        "{e}"
    );
    r.allocate_fixed(node(1), "10.248.0.0".parse().unwrap(), "c0/eth0")
        .await
        .unwrap();
    let e = r
        .allocate_fixed(node(1), "10.249.0.1".parse().unwrap(), "y/eth0")
        .await
        .unwrap_err();
    assert!(matches!(e, BlockError::NoPool { .. }), "{e}");

    // Release: only by the holder; an emptied block is released, and can be claimed again.
    assert!(!r
        .release_from_blocks("10.248.0.4".parse().unwrap(), "someone-else")
        .await
        .unwrap());
    for (ip, h) in [("10.248.0.4", "c4/eth0"), ("10.248.0.5", "d8/eth0")] {
        assert!(r.release_from_blocks(ip.parse().unwrap(), h).await.unwrap());
    }
    let empty = r
        .blocks()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.block.cidr.to_string() == "10.248.0.4/30")
        .unwrap();
    assert!(r.release_block(&empty).await.unwrap());
    assert!(
        !r.release_block(&empty).await.unwrap(),
        "a stale read releases nothing"
    );
    let e = r.delete_pool("small").await.unwrap_err();
    assert!(
        e.to_string().contains("10.248.0.0/30 (4 on 192.0.2.1)"),
        "{e}"
    );
    let again = r
        .allocate_from_blocks(node(3), "e0/eth0", true)
        .await
        .unwrap();
    assert_eq!(
        again,
        "10.248.0.4".parse::<Ipv4Addr>().unwrap(),
        "node 3 claims the released block"
    );
}

/// Nodes allocating at once, each with its own store handle, in the order the runtime
/// picks: every address handed out once, every block held by one node.
async fn racing_nodes(stores: Vec<Arc<dyn Store>>) {
    let first = Registry::new(stores[0].clone(), "/race");
    first
        .create_pool(&pool("p", "10.250.0.0/26", 29))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, store) in stores.into_iter().enumerate() {
        let r = Registry::new(store, "/race");
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for n in 0.. {
                let handle = format!("n{i}-c{n}/eth0");
                match r
                    .allocate_from_blocks(node(i as u8 + 1), &handle, false)
                    .await
                {
                    Ok(ip) => got.push(ip),
                    Err(BlockError::Exhausted { .. }) => return got,
                    Err(e) => panic!("node {i}: {e}"),
                }
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "an address handed out twice");
    assert_eq!(all.len(), 64, "the pool used up exactly");
    let blocks = first.blocks().await.unwrap();
    assert_eq!(blocks.len(), 8);
    let cidrs: BTreeSet<_> = blocks.iter().map(|b| b.block.cidr).collect();
    assert_eq!(cidrs.len(), 8, "one holder per block");
    let recorded: usize = blocks.iter().map(|b| b.block.used()).sum();
    assert_eq!(recorded, 64);
}

/// Two nodes claiming the last (only) block at the same moment: one holds it, the other
/// borrows from it; never two holders.
async fn last_block(stores: [Arc<dyn Store>; 2]) {
    let [a, b] = stores.map(|s| Registry::new(s, "/last"));
    a.create_pool(&pool("one", "10.252.0.0/30", 30))
        .await
        .unwrap();
    for round in 0..5 {
        let (ha, hb) = (format!("a{round}/eth0"), format!("b{round}/eth0"));
        let (x, y) = tokio::join!(
            a.allocate_from_blocks(node(1), &ha, false),
            b.allocate_from_blocks(node(2), &hb, false),
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_ne!(x, y);
        let blocks = a.blocks().await.unwrap();
        assert_eq!(blocks.len(), 1, "one holder");
        let blk = &blocks[0].block;
        let borrowed = blk
            .allocations
            .values()
            .filter(|al| al.node != blk.node)
            .count();
        assert_eq!(borrowed, 1, "the other node borrowed: {blk:?}");
        for (ip, h) in [(x, &ha), (y, &hb)] {
            assert!(a.release_from_blocks(ip, h).await.unwrap());
        }
        let empty = a.blocks().await.unwrap().remove(0);
        assert!(a.release_block(&empty).await.unwrap());
    }
}

/// Nodes racing with the agent's picture ([`BlockCache`]) that never follows the watch,
/// so it is often behind: still every address once; and an allocation from a block
/// the node holds, with a current picture, is one store round trip.
async fn cached_pictures(stores: Vec<Arc<dyn Store>>) {
    let first = Registry::new(stores[0].clone(), "/cache");
    first
        .create_pool(&pool("p", "10.251.0.0/26", 29))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, store) in stores.into_iter().enumerate() {
        let r = Registry::new(store, "/cache");
        tasks.push(tokio::spawn(async move {
            let mut cache = BlockCache::default();
            let mut got = Vec::new();
            for n in 0.. {
                let handle = format!("n{i}-c{n}/eth0");
                match r
                    .allocate_cached(&mut cache, node(i as u8 + 1), &handle, false)
                    .await
                {
                    Ok(ip) => got.push(ip),
                    Err(BlockError::Exhausted { .. }) => return got,
                    Err(e) => panic!("node {i}: {e}"),
                }
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "an address handed out twice");
    assert_eq!(all.len(), 64, "the pool used up exactly");
    // Free two addresses of a block some node holds (which one the race decided). A
    // new picture costs one listing with the allocation; from then on an allocation is
    // one request.
    let mine: Vec<_> = first
        .blocks()
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.block.used() >= 2)
        .take(1)
        .collect();
    let holder = mine[0].block.node;
    let (ip_a, a) = mine[0].block.allocations.iter().next().unwrap();
    let (ip_b, b) = mine[0].block.allocations.iter().nth(1).unwrap();
    assert!(first.release_from_blocks(*ip_a, &a.handle).await.unwrap());
    assert!(first.release_from_blocks(*ip_b, &b.handle).await.unwrap());
    let counting = Arc::new(CountingStore::new(first.store().clone()));
    let r = Registry::new(counting.clone(), "/cache");
    let mut cache = BlockCache::default();
    r.allocate_cached(&mut cache, holder, "again-1/eth0", true)
        .await
        .unwrap();
    let before = counting.requests();
    let ip = r
        .allocate_cached(&mut cache, holder, "again-2/eth0", true)
        .await
        .unwrap();
    assert_eq!(counting.requests() - before, 1, "one round trip");
    assert!(mine[0].block.cidr.contains(&ip));
    // A retried request gets the address it already holds, with no request at all.
    let before = counting.requests();
    let same = r
        .allocate_cached(&mut cache, holder, "again-2/eth0", true)
        .await
        .unwrap();
    assert_eq!((same, counting.requests() - before), (ip, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_blocks() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle(Arc::new(
        EmbeddedStore::open(dir.path().join("a.db")).unwrap(),
    ))
    .await;
    let path = dir.path().join("race.db");
    let stores: Vec<Arc<dyn Store>> = (0..3)
        .map(|_| Arc::new(EmbeddedStore::open(&path).unwrap()) as Arc<dyn Store>)
        .collect();
    racing_nodes(stores).await;
    let path = dir.path().join("cache.db");
    let stores: Vec<Arc<dyn Store>> = (0..3)
        .map(|_| Arc::new(EmbeddedStore::open(&path).unwrap()) as Arc<dyn Store>)
        .collect();
    cached_pictures(stores).await;
    let path = dir.path().join("last.db");
    let open = || Arc::new(EmbeddedStore::open(&path).unwrap()) as Arc<dyn Store>;
    last_block([open(), open()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_store_blocks() {
    if !gate::etcd("blocks::etcd_store_blocks") {
        return;
    }
    let server = EtcdServer::start_loopback().unwrap();
    lifecycle(etcd_store(&server.endpoint).await).await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(etcd_store(&server.endpoint).await); // a connection per node
    }
    racing_nodes(nodes).await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(etcd_store(&server.endpoint).await);
    }
    cached_pictures(nodes).await;
    last_block([
        etcd_store(&server.endpoint).await,
        etcd_store(&server.endpoint).await,
    ])
    .await;
}
