//! Subnet claims through the registry, on both stores: reuse after restart, reservations,
//! exhaustion, unreadable leases, several *processes* racing for one small pool, and
//! single addresses held outside a node's subnet.
//!
//! The racing children are this same test binary, re-run with `WEFT_CLAIM_CHILD` set:
//! each opens its own store connection and claims one subnet, as separate agents would.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use weft_alloc::address::{AddressClaim, ClaimError};
use weft_alloc::registry::{AcquireError, Previous};
use weft_alloc::{BackendKind, LeaseAttrs, NetworkConfig, Registry};
use weft_store::embedded::EmbeddedStore;
use weft_store::etcd::{EtcdConfig, EtcdStore};
use weft_store::Store;
use weft_testkit::etcd::EtcdServer;
use weft_testkit::gate;

const TTL: Duration = Duration::from_secs(600);

fn attrs(i: u8) -> LeaseAttrs {
    LeaseAttrs {
        labels: Default::default(),
        public_ip: Ipv4Addr::new(192, 0, 2, i),
        public_ipv6: None,
        backend_type: "host-gw".into(),
        backend_data: serde_json::Value::Null,
        backend_v6_data: serde_json::Value::Null,
    }
}

/// A store named by a spec string, so a child process can open the same one.
async fn open(spec: &str) -> Arc<dyn Store> {
    match spec.split_once(':') {
        Some(("embedded", path)) => Arc::new(EmbeddedStore::open(path).unwrap()),
        Some(("etcd", url)) => {
            let cfg = EtcdConfig {
                endpoints: vec![url.to_owned()],
                ..Default::default()
            };
            Arc::new(EtcdStore::connect(&cfg).await.unwrap())
        }
        _ => panic!("bad store spec {spec}"),
    }
}

/// 8 subnets: the /29s of 10.9.0.0/25 from 10.9.0.8 to 10.9.0.64.
fn small_config() -> NetworkConfig {
    let json = r#"{"Network":"10.9.0.0/25","SubnetLen":29,"SubnetMin":"10.9.0.8","SubnetMax":"10.9.0.64",
                   "Backend":{"Type":"host-gw"}}"#;
    NetworkConfig::parse(json.as_bytes()).unwrap()
}

/// The same 8 IPv4 subnets, and 15 IPv6 ones: racing nodes pick the same IPv4 subnet
/// with different IPv6 ones, under different keys.
fn small_dual_config() -> NetworkConfig {
    let json = r#"{"Network":"10.9.0.0/25","SubnetLen":29,"SubnetMin":"10.9.0.8","SubnetMax":"10.9.0.64",
                   "EnableIPv6":true,"IPv6Network":"fd00:9::/60","IPv6SubnetLen":64,
                   "Backend":{"Type":"host-gw"}}"#;
    NetworkConfig::parse(json.as_bytes()).unwrap()
}

/// Child mode: claim one subnet and print it (or the error) on stdout.
#[tokio::test]
async fn claim_child() {
    let Ok(spec) = std::env::var("WEFT_CLAIM_CHILD") else {
        return;
    };
    let i: u8 = std::env::var("WEFT_CLAIM_INDEX").unwrap().parse().unwrap();
    let dual = std::env::var("WEFT_CLAIM_DUAL").is_ok();
    let (prefix, cfg) = match dual {
        false => ("/race", small_config()),
        true => ("/race6", small_dual_config()),
    };
    let reg = Registry::new(open(&spec).await, prefix);
    match reg.acquire(&cfg, &attrs(i), Previous::default(), TTL).await {
        Ok(l) => match l.ipv6_subnet {
            None => println!("CLAIMED {}", l.subnet),
            Some(v6) => println!("CLAIMED {} {v6}", l.subnet),
        },
        Err(AcquireError::Exhausted { .. }) => println!("EXHAUSTED"),
        Err(e) => println!("ERROR {e}"),
    }
}

fn race(spec: &str, processes: u8, dual: bool) -> (Vec<(Ipv4Net, Option<String>)>, usize) {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (1..=processes)
        .map(|i| {
            let mut c = Command::new(&exe);
            if dual {
                c.env("WEFT_CLAIM_DUAL", "1");
            }
            c.args(["--exact", "claim_child", "--nocapture", "--test-threads=1"])
                .env("WEFT_CLAIM_CHILD", spec)
                .env("WEFT_CLAIM_INDEX", i.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut claimed, mut exhausted) = (Vec::new(), 0);
    for child in children {
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        // libtest prints "test claim_child ... " before the child's own line.
        let verdict = ["CLAIMED ", "EXHAUSTED", "ERROR "]
            .iter()
            .find_map(|tag| {
                out.find(tag)
                    .map(|at| out[at..].lines().next().unwrap_or_default())
            })
            .unwrap_or_else(|| panic!("child printed nothing useful: {out}"));
        match verdict.strip_prefix("CLAIMED ") {
            Some(rest) => {
                let mut words = rest.split_whitespace();
                let v4 = words.next().unwrap().parse().unwrap();
                claimed.push((v4, words.next().map(String::from)));
            }
            None if verdict == "EXHAUSTED" => exhausted += 1,
            None => panic!("child failed: {verdict}"),
        }
    }
    (claimed, exhausted)
}

async fn racing_processes_never_share(spec: &str) {
    let reg = Registry::new(open(spec).await, "/race");
    reg.put_config(&small_config()).await.unwrap();
    // 12 processes for 8 subnets: exactly 8 win, all distinct, 4 are told the pool is full.
    let (claimed, exhausted) = race(spec, 12, false);
    let distinct: HashSet<_> = claimed.iter().map(|c| c.0).collect();
    assert_eq!(
        distinct.len(),
        claimed.len(),
        "two processes got one subnet: {claimed:?}"
    );
    assert_eq!((claimed.len(), exhausted), (8, 4));
    assert_eq!(reg.leases().await.unwrap().leases.len(), 8);

    // Dual stack: each key names both subnets, so racing creates of one IPv4 subnet with
    // different IPv6 ones both succeed; the later one must give way. Still exactly 8
    // winners, no IPv4 and no IPv6 subnet twice, one key each.
    let reg = Registry::new(open(spec).await, "/race6");
    reg.put_config(&small_dual_config()).await.unwrap();
    let (claimed, exhausted) = race(spec, 12, true);
    let v4: HashSet<_> = claimed.iter().map(|c| c.0).collect();
    let v6: HashSet<_> = claimed
        .iter()
        .map(|c| c.1.clone().expect("an IPv6 subnet"))
        .collect();
    assert_eq!(
        (v4.len(), v6.len()),
        (claimed.len(), claimed.len()),
        "{claimed:?}"
    );
    assert_eq!((claimed.len(), exhausted), (8, 4));
    assert_eq!(reg.leases().await.unwrap().leases.len(), 8);
}

async fn lifecycle(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone(), "/life");
    let cfg = NetworkConfig::new("10.244.0.0/16".parse().unwrap(), BackendKind::HostGw).unwrap();
    reg.put_config(&cfg).await.unwrap();
    assert_eq!(reg.config().await.unwrap(), cfg);

    // Restart with the same public IP: same subnet, and no write at all.
    let a = reg
        .acquire(&cfg, &attrs(1), Previous::default(), TTL)
        .await
        .unwrap();
    let rev = store.list("/").await.unwrap().revision;
    let again = reg
        .acquire(&cfg, &attrs(1), Previous::default(), TTL)
        .await
        .unwrap();
    assert_eq!(again.subnet, a.subnet);
    assert_eq!(
        store.list("/").await.unwrap().revision,
        rev,
        "re-claiming an unchanged lease writes nothing"
    );

    // New public IP but the subnet file remembers the subnet: it is reused if free.
    reg.delete_lease(&a.subnet).await.unwrap();
    let moved = reg
        .acquire(&cfg, &attrs(2), Some(a.subnet).into(), TTL)
        .await
        .unwrap();
    assert_eq!(moved.subnet, a.subnet);
    // ... but never when another node holds it.
    let other = reg
        .acquire(&cfg, &attrs(3), Some(a.subnet).into(), TTL)
        .await
        .unwrap();
    assert_ne!(other.subnet, a.subnet);

    // A reservation is used by the node with that IP and never expires.
    let reserved: Ipv4Net = "10.244.200.0/24".parse().unwrap();
    reg.reserve(&reserved, Ipv4Addr::new(192, 0, 2, 9))
        .await
        .unwrap();
    // Written as flannel documents reservations: no backend type (flannel's vxlan and
    // host-gw skip it; a type without its backend data stalls flannel's vxlan).
    let raw = store
        .get(&reg.keys().lease(&reserved))
        .await
        .unwrap()
        .unwrap();
    let written: serde_json::Value = serde_json::from_slice(&raw.value).unwrap();
    assert_eq!(written["BackendType"], "");
    assert_eq!(written["BackendData"], serde_json::Value::Null);
    let r = reg
        .acquire(&cfg, &attrs(9), Previous::default(), TTL)
        .await
        .unwrap();
    assert_eq!((r.subnet, r.is_reservation()), (reserved, true));
    assert_eq!(r.attrs, attrs(9), "the node writes its full lease over it");
    assert!(reg.renew(&r).await.unwrap());

    // A lease whose store TTL ran out is gone for renewal and claimable again.
    let short = reg
        .acquire(&cfg, &attrs(4), Previous::default(), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(reg.renew(&short).await.unwrap());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !reg.renew(&short).await.unwrap(),
        "expired lease cannot be renewed"
    );
    assert!(reg
        .leases()
        .await
        .unwrap()
        .leases
        .iter()
        .all(|l| l.subnet != short.subnet));

    // An unreadable lease is skipped by name and its subnet is never handed out.
    let junk: Ipv4Net = "10.244.7.0/24".parse().unwrap();
    store
        .put(&reg.keys().lease(&junk), b"{not json", None)
        .await
        .unwrap();
    let snap = reg.leases().await.unwrap();
    assert_eq!(snap.skipped.len(), 1);
    assert!(snap.skipped[0].key.ends_with("10.244.7.0-24"));
    assert!(snap.taken.contains(&junk));
    let taken = reg
        .acquire(&cfg, &attrs(5), Some(junk).into(), TTL)
        .await
        .unwrap();
    assert_ne!(taken.subnet, junk);
}

async fn exhaustion(store: Arc<dyn Store>) {
    let reg = Registry::new(store, "/full");
    let cfg = small_config();
    for i in 1..=8 {
        reg.acquire(&cfg, &attrs(i), Previous::default(), TTL)
            .await
            .unwrap();
    }
    let err = reg
        .acquire(&cfg, &attrs(50), Previous::default(), TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcquireError::Exhausted { size: 8, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("all 8 subnets of /29"), "{err}");
}

/// Single addresses outside any node's subnet: one holder at a time, idempotent for
/// it, freed only by it; addresses a lease could cover are refused.
async fn single_addresses(store: Arc<dyn Store>) {
    let reg = Registry::new(store, "/addr");
    let cfg =
        NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#).unwrap();
    reg.put_config(&cfg).await.unwrap();
    let lease = reg
        .acquire(&cfg, &attrs(1), Previous::default(), TTL)
        .await
        .unwrap();
    let ip: Ipv4Addr = "10.244.0.7".parse().unwrap();
    let mine = AddressClaim {
        node: attrs(1).public_ip,
        container_id: "c1".into(),
    };
    reg.claim_address(&cfg, ip, &mine).await.unwrap();
    reg.claim_address(&cfg, ip, &mine).await.unwrap();
    let theirs = AddressClaim {
        node: attrs(2).public_ip,
        container_id: "c2".into(),
    };
    let err = reg.claim_address(&cfg, ip, &theirs).await.unwrap_err();
    assert!(matches!(err, ClaimError::Taken { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "10.244.0.7 is already held by container c1 on node 192.0.2.1"
    );
    let inside = lease.subnet.hosts().nth(5).unwrap();
    let err = reg.claim_address(&cfg, inside, &theirs).await.unwrap_err();
    assert!(
        err.to_string().contains("range leases are drawn from"),
        "{err}"
    );
    assert_eq!(reg.addresses().await.unwrap(), vec![(ip, mine.clone())]);
    assert!(
        !reg.release_address(ip, "c2").await.unwrap(),
        "not c2's to free"
    );
    assert!(reg.release_address(ip, "c1").await.unwrap());
    assert!(
        !reg.release_address(ip, "c1").await.unwrap(),
        "already free"
    );
    reg.claim_address(&cfg, ip, &theirs).await.unwrap();
}

/// Dual stack, flannel's way: one key `<v4>&<v6>` per node, both subnets chosen from
/// their pools, kept on restart; a node's IPv4-only lease is claimed again with an IPv6
/// subnet when IPv6 is switched on, keeping its IPv4 subnet; and a full IPv6 pool is
/// named as such.
async fn dual_stack(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone(), "/dual");
    let v4_only =
        NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#)
            .unwrap();
    let dual = NetworkConfig::parse(
        br#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}"#,
    )
    .unwrap();
    let old = reg
        .acquire(&v4_only, &attrs(1), Previous::default(), TTL)
        .await
        .unwrap();
    assert_eq!(old.ipv6_subnet, None);

    let a = reg
        .acquire(&dual, &attrs(1), Previous::default(), TTL)
        .await
        .unwrap();
    assert_eq!(a.subnet, old.subnet, "the IPv4 subnet is kept");
    let v6 = a.ipv6_subnet.expect("an IPv6 subnet");
    assert!(dual.ipv6.as_ref().unwrap().contains(&v6), "{v6}");
    let keys: Vec<String> = store
        .list("/dual/subnets/")
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(
        keys,
        [format!(
            "/dual/subnets/{}-{}&{}-64",
            a.subnet.addr(),
            a.subnet.prefix_len(),
            v6.addr()
        )],
        "one key, flannel's dual-stack form; the IPv4-only one gone"
    );
    let again = reg
        .acquire(&dual, &attrs(1), Previous::default(), TTL)
        .await
        .unwrap();
    assert_eq!((again.subnet, again.ipv6_subnet), (a.subnet, a.ipv6_subnet));

    // Another node gets other subnets of both families; its subnet file's IPv6 subnet
    // is reused when free.
    let wanted: ipnet::Ipv6Net = "fd00:10:244:77::/64".parse().unwrap();
    let b = reg
        .acquire(
            &dual,
            &attrs(2),
            Previous {
                v4: None,
                v6: Some(wanted),
            },
            TTL,
        )
        .await
        .unwrap();
    assert_ne!(b.subnet, a.subnet);
    assert_eq!(b.ipv6_subnet, Some(wanted));
    let snap = reg.leases().await.unwrap();
    assert_eq!(snap.leases.len(), 2);
    assert!(snap.taken_v6.contains(&v6) && snap.taken_v6.contains(&wanted));
    // A key whose IPv6 part is garbled is skipped, but still takes its IPv4 subnet.
    store
        .put("/dual/subnets/10.244.250.0-24&garbage", b"{}", None)
        .await
        .unwrap();
    let snap = reg.leases().await.unwrap();
    assert!(snap.taken.contains(&"10.244.250.0/24".parse().unwrap()));
    assert_eq!(snap.leases.len(), 2);
    store
        .delete("/dual/subnets/10.244.250.0-24&garbage")
        .await
        .unwrap();
    assert!(
        reg.delete_lease(&b.subnet).await.unwrap(),
        "found by its IPv4 subnet"
    );

    // One /64 in the IPv6 pool: the second node is told the IPv6 pool is full.
    let one = NetworkConfig::parse(
        br#"{"Network":"10.245.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:245::/64","IPv6SubnetLen":64,"Backend":{"Type":"host-gw"}}"#,
    )
    .unwrap();
    let reg = Registry::new(store, "/dual-full");
    reg.acquire(&one, &attrs(1), Previous::default(), TTL)
        .await
        .unwrap();
    let err = reg
        .acquire(&one, &attrs(2), Previous::default(), TTL)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("IPv6 subnet pool exhausted: all 1 subnets of /64"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_store_claims() {
    if std::env::var("WEFT_CLAIM_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let spec = format!("embedded:{}", path.display());
    lifecycle(open(&spec).await).await;
    exhaustion(open(&spec).await).await;
    single_addresses(open(&spec).await).await;
    dual_stack(open(&spec).await).await;
    racing_processes_never_share(&spec).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_store_claims() {
    if std::env::var("WEFT_CLAIM_CHILD").is_ok() || !gate::etcd("claims::etcd_store_claims") {
        return;
    }
    let server = EtcdServer::start_loopback().unwrap();
    let spec = format!("etcd:{}", server.endpoint);
    lifecycle(open(&spec).await).await;
    exhaustion(open(&spec).await).await;
    single_addresses(open(&spec).await).await;
    dual_stack(open(&spec).await).await;
    racing_processes_never_share(&spec).await;
}
