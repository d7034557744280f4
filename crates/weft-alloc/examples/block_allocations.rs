//! `bench/ipam.sh`'s store half: ALLOCS allocations spread over NODES nodes claiming
//! /26 blocks of one pool concurrently, on a throw-away etcd on loopback, each node on
//! a connection of its own that counts its requests. Two rows, same run, same etcd:
//! "fresh reading" (the store read before every allocation, what a plugin without an
//! agent would do) and "agent's picture" (the node's `BlockCache`, what weftd does).
//! Usage: block_allocations [ALLOCS] [NODES]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use weft_alloc::block_cache::BlockCache;
use weft_alloc::blocks::Pool;
use weft_alloc::Registry;
use weft_store::counting::CountingStore;
use weft_testkit::etcd::EtcdServer;
use weft_testkit::etcd_store;

struct Row {
    seconds: f64,
    requests: Vec<u64>,
}

async fn run(endpoint: &str, prefix: &str, allocs: usize, nodes: usize, cached: bool) -> Row {
    let admin = Registry::new(etcd_store(endpoint).await, prefix);
    admin
        .create_pool(&Pool {
            name: "bench".into(),
            cidr: "10.248.0.0/16".parse().unwrap(),
            block_size: 26,
            nat_outgoing: false,
            disabled: false,
        })
        .await
        .unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..nodes {
        let counting = Arc::new(CountingStore::new(etcd_store(endpoint).await));
        let r = Registry::new(counting.clone(), prefix);
        let share = allocs / nodes + usize::from(n < allocs % nodes);
        tasks.push(tokio::spawn(async move {
            let node = Ipv4Addr::new(192, 0, 2, n as u8 + 1);
            let mut cache = BlockCache::default();
            let mut per = Vec::new();
            for i in 0..share {
                let handle = format!("bench/n{n}-c{i}/eth0");
                let before = counting.requests();
                if cached {
                    r.allocate_cached(&mut cache, node, &handle, false).await
                } else {
                    r.allocate_from_blocks(node, &handle, false).await
                }
                .unwrap();
                per.push(counting.requests() - before);
            }
            per
        }));
    }
    let mut requests = Vec::new();
    for t in tasks {
        requests.extend(t.await.unwrap());
    }
    Row {
        seconds: start.elapsed().as_secs_f64(),
        requests,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let allocs = args.first().copied().unwrap_or(1000);
    let nodes = args.get(1).copied().unwrap_or(3);
    let server = EtcdServer::start_loopback().expect("etcd starts (is etcd installed?)");
    let fresh = run(&server.endpoint, "/bench-fresh", allocs, nodes, false).await;
    let cached = run(&server.endpoint, "/bench-cached", allocs, nodes, true).await;
    println!(
        "\n{allocs} allocations over {nodes} nodes claiming /26 blocks concurrently, etcd on loopback, same run\n"
    );
    println!("| allocator        | total s | allocs/s | requests/alloc mean | p50 | p99 | max | allocs in 1 request |");
    println!("|------------------|---------|----------|---------------------|-----|-----|-----|---------------------|");
    for (name, row) in [("fresh reading", &fresh), ("agent's picture", &cached)] {
        let mut r = row.requests.clone();
        r.sort();
        let pct = |q: f64| r[((r.len() - 1) as f64 * q) as usize];
        let mean = r.iter().sum::<u64>() as f64 / r.len() as f64;
        let one = r.iter().filter(|&&x| x == 1).count();
        println!(
            "| {name:<16} | {:7.2} | {:8.0} | {mean:19.2} | {:3} | {:3} | {:3} | {:>8} of {:<8} |",
            row.seconds,
            r.len() as f64 / row.seconds,
            pct(0.5),
            pct(0.99),
            r[r.len() - 1],
            one,
            r.len()
        );
    }
    println!(
        "\nratio (fresh / picture): time {:.2}x, requests {:.2}x",
        fresh.seconds / cached.seconds,
        fresh.requests.iter().sum::<u64>() as f64 / cached.requests.iter().sum::<u64>() as f64
    );
}
