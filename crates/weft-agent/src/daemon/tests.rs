//! The agent's reconcile against the in-memory dataplane and an embedded store in a
//! temporary directory: no root, no etcd. Each test starts a real [`Agent`] (store,
//! config, lease, host setup), changes the store or the fake kernel as the world would,
//! and checks what the agent made of it.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Parser;
use ipnet::Ipv4Net;
use weft_alloc::{NetworkConfig, Registry};
use weft_kernel::fake::{FakeNet, FakeRoute};
use weft_kernel::faults::{FaultOp, Faults, Faulty};
use weft_plan::{Route, RouteKind};
use weft_store::WatchEvent;

use super::{Agent, Why};
use crate::health::Metrics;
use crate::AgentOptions;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    agent: AgentOptions,
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// An agent at 192.168.1.1 on `eth0` (192.168.1.0/24) of a fake host, on an embedded
/// store holding the config `backend`.
struct Rig {
    fake: FakeNet,
    /// What the agent's dataplane (the fake, wrapped) refuses.
    faults: Faults,
    eth0: u32,
    agent: Agent,
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn new(backend: &str) -> Rig {
        Rig::with_config(&format!(
            r#"{{"Network":"10.244.0.0/16","Backend":{backend}}}"#
        ))
        .await
    }

    /// A rig on the network configuration `json` (its `Network` 10.244.0.0/16).
    async fn with_config(json: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeNet::new();
        let eth0 = fake.add_interface("eth0", net("192.168.1.1/24"), 1500, true);
        let rig_registry = registry(&dir).await;
        rig_registry
            .put_config(&NetworkConfig::parse(json.as_bytes()).unwrap())
            .await
            .unwrap();
        // This node comes back to 10.244.1.0/24 (its subnet file names it, as after a
        // restart), so no peer subnet a test writes can be its own by chance.
        std::fs::write(
            dir.path().join("subnet.env"),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n",
        )
        .unwrap();
        let faults = Faults::new();
        let agent = start(&fake, &faults, &dir).await;
        assert_eq!(agent.view.node.lease.subnet, net("10.244.1.0/24"));
        Rig {
            fake,
            faults,
            eth0,
            agent,
            registry: rig_registry,
            dir,
        }
    }

    fn own_subnet(&self) -> Ipv4Net {
        self.agent.view.node.lease.subnet
    }

    /// Writes a peer's lease to the store and hands the agent the watch event for it.
    async fn put_peer(&mut self, subnet: &str, public_ip: &str, backend: &str, data: &str) {
        let subnet = net(subnet);
        let key = self.registry.keys().lease(&subnet);
        let value = format!(
            r#"{{"PublicIP":"{public_ip}","BackendType":"{backend}","BackendData":{data}}}"#
        );
        let store = self.registry.store();
        store.put(&key, value.as_bytes(), None).await.unwrap();
        let kv = store.get(&key).await.unwrap().unwrap();
        assert!(
            self.agent.on_event(WatchEvent::Put(kv)).await,
            "the plan may change"
        );
    }

    async fn delete_peer(&mut self, subnet: &str) {
        let key = self.registry.keys().lease(&net(subnet));
        let store = self.registry.store();
        assert!(store.delete(&key).await.unwrap());
        let event = WatchEvent::Delete { key, revision: 0 };
        assert!(self.agent.on_event(event).await, "the plan may change");
    }

    /// Deletes a store key and hands the agent its watch event; whether the plan may change.
    async fn delete_key(&mut self, key: String) -> bool {
        self.registry.store().delete(&key).await.unwrap();
        self.agent
            .on_event(WatchEvent::Delete { key, revision: 0 })
            .await
    }

    /// Starts a new agent on the same host and store: it must change nothing.
    async fn assert_restart_changes_nothing(&mut self) {
        self.fake.clear_journal();
        self.agent = start(&self.fake, &self.faults, &self.dir).await;
        self.agent.reconcile(Why::Start).await;
        assert!(
            self.fake.journal().is_empty(),
            "restart churned: {:?}",
            self.fake.journal()
        );
    }

    fn route_to(&self, subnet: &str) -> Option<Route> {
        self.fake
            .weft_routes()
            .into_iter()
            .find(|r| r.dst == ipnet::IpNet::V4(net(subnet)))
    }

    fn metric(&self, m: fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        m(&self.agent.metrics).load(Ordering::Relaxed)
    }
}

async fn registry(dir: &tempfile::TempDir) -> Registry {
    let store = weft_store::embedded::EmbeddedStore::open(dir.path().join("store.db")).unwrap();
    Registry::new(Arc::new(store), weft_store::DEFAULT_PREFIX)
}

/// Starts an agent on the fake host, as `weftd` would with these options.
async fn start(fake: &FakeNet, faults: &Faults, dir: &tempfile::TempDir) -> Agent {
    let path = |f: &str| dir.path().join(f).display().to_string();
    let mut cli = Cli::parse_from([
        "weftd",
        "--store-path",
        &path("store.db"),
        "--subnet-file",
        &path("subnet.env"),
        "--docker-opts-file",
        &path("docker.env"),
        "--bgp-status-file",
        &path("bgp.json"),
    ]);
    cli.agent.api_socket = std::path::PathBuf::new();
    let dp = Faulty::new(fake.host(), faults.clone());
    let (agent, _) = Agent::start(cli.agent, Arc::new(dp), Arc::default())
        .await
        .expect("agent starts on the fake host");
    agent
}

const HOST_GW: &str = r#"{"Type":"host-gw"}"#;
const NULL: &str = "null";

#[tokio::test]
async fn start_sets_up_the_host_and_writes_the_subnet_file() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.agent.reconcile(Why::Start).await;
    assert!(rig.fake.forwarding());
    let fw = rig.fake.firewall().expect("the firewall is loaded");
    assert_eq!(fw.network, net("10.244.0.0/16"));
    assert_eq!(fw.local_subnet, rig.own_subnet());
    let env = std::fs::read_to_string(rig.dir.path().join("subnet.env")).unwrap();
    assert!(env.contains("FLANNEL_NETWORK=10.244.0.0/16"), "{env}");
    assert!(rig.fake.weft_routes().is_empty(), "no peers, no routes");
}

#[tokio::test]
async fn peer_added_gets_a_route() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.agent.reconcile(Why::Start).await;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(
        rig.route_to("10.244.200.0/24"),
        Some(Route::via(
            net("10.244.200.0/24"),
            ip("192.168.1.2"),
            rig.eth0
        ))
    );
    // A peer off the segment gets no route, and is reported, not routed into nowhere.
    rig.put_peer("10.244.201.0/24", "172.16.0.9", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.route_to("10.244.201.0/24"), None);
    assert_eq!(rig.agent.last.unreachable.len(), 1);
    assert_eq!(rig.metric(|m| &m.unreachable_peers), 1);
}

#[tokio::test]
async fn peer_removed_loses_its_route() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "host-gw", NULL)
        .await;
    rig.put_peer("10.244.201.0/24", "192.168.1.3", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Start).await;
    assert_eq!(rig.fake.weft_routes().len(), 2);
    rig.delete_peer("10.244.200.0/24").await;
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.route_to("10.244.200.0/24"), None);
    assert!(
        rig.route_to("10.244.201.0/24").is_some(),
        "the other peer keeps its"
    );
}

#[tokio::test]
async fn peer_moved_has_its_route_replaced_in_place() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Start).await;
    rig.fake.clear_journal();
    rig.put_peer("10.244.200.0/24", "192.168.1.9", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Store).await;
    let moved = Route::via(net("10.244.200.0/24"), ip("192.168.1.9"), rig.eth0);
    assert_eq!(rig.route_to("10.244.200.0/24"), Some(moved));
    assert_eq!(
        rig.fake.journal(),
        [format!("replace route {moved}")],
        "one atomic replacement, nothing removed first"
    );
}

#[tokio::test]
async fn kernel_drift_is_repaired_and_only_weft_s_routes_are_touched() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Start).await;
    let planned = rig.route_to("10.244.200.0/24").unwrap();
    assert_eq!(rig.metric(|m| &m.repairs), 0);

    // Someone deletes Weft's route, adds a stale one with Weft's mark, and a route of
    // their own without it.
    assert!(rig.fake.delete_route(planned.dst));
    let stale = Route::via(net("10.244.99.0/24"), ip("192.168.1.99"), rig.eth0);
    rig.fake.put_weft_route(stale);
    let theirs = Route::via(net("172.20.0.0/16"), ip("192.168.1.254"), rig.eth0);
    weft_kernel::Routes::add_route(&rig.fake.host(), &theirs)
        .await
        .unwrap();
    rig.agent.reconcile(Why::Kernel).await;
    assert_eq!(rig.fake.weft_routes(), [planned]);
    assert!(rig.fake.routes().contains(&FakeRoute {
        route: theirs,
        weft: false
    }));
    assert_eq!(rig.metric(|m| &m.repairs), 1);

    // Nothing drifted: a resync changes nothing.
    rig.fake.clear_journal();
    rig.agent.reconcile(Why::Resync).await;
    assert!(rig.fake.journal().is_empty(), "{:?}", rig.fake.journal());
    assert_eq!(rig.metric(|m| &m.repairs), 1);
}

#[tokio::test]
async fn a_kernel_refusal_leaves_the_rest_applied_and_is_retried() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.agent.reconcile(Why::Start).await;
    rig.faults
        .refuse_route(net("10.244.201.0/24"), libc::EINVAL);
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "host-gw", NULL)
        .await;
    rig.put_peer("10.244.201.0/24", "192.168.1.3", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Store).await;
    assert!(rig.route_to("10.244.200.0/24").is_some());
    assert_eq!(rig.route_to("10.244.201.0/24"), None);
    assert_eq!(rig.metric(|m| &m.kernel_failures), 1);
    assert!(
        !rig.agent.routes.has_base(),
        "a plan the kernel did not take in full is no base for a delta"
    );
    // The kernel takes it at the next resync.
    rig.faults.accept_route(net("10.244.201.0/24"));
    rig.agent.reconcile(Why::Resync).await;
    assert!(rig.route_to("10.244.201.0/24").is_some());
    assert!(rig.agent.routes.has_base());
}

#[tokio::test]
async fn a_kernel_that_cannot_be_read_keeps_every_route() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Start).await;
    let before = rig.fake.routes();
    rig.faults.fail(FaultOp::ReadRoutes, libc::ENOBUFS);
    rig.delete_peer("10.244.200.0/24").await;
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.fake.routes(), before, "nothing changed blind");
    rig.faults.heal(FaultOp::ReadRoutes);
    rig.agent.reconcile(Why::Resync).await;
    assert!(rig.fake.weft_routes().is_empty());
}

#[tokio::test]
async fn backend_change_moves_routes_between_encapsulated_and_direct() {
    let mut rig = Rig::new(r#"{"Type":"vxlan"}"#).await;
    let mac = "0a:00:00:00:00:02";
    let data = format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#);
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "vxlan", &data)
        .await;
    rig.agent.reconcile(Why::Start).await;
    let dev = rig
        .fake
        .link("weft.1")
        .expect("the VXLAN device")
        .info
        .index;
    let dst = net("10.244.200.0/24");
    assert_eq!(
        rig.route_to("10.244.200.0/24"),
        Some(Route::onlink(dst, ip("10.244.200.0"), dev))
    );
    assert_eq!(rig.fake.fdb(dev).len(), 1);
    assert_eq!(rig.fake.neighbours_in(None, dev).len(), 1);

    // DirectRouting on: the peer shares the segment, so a plain route replaces the
    // encapsulated one, and its neighbour and FDB entries go.
    let cfg = br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#;
    assert!(rig.agent.on_config(cfg));
    rig.agent.reconcile(Why::Store).await;
    let route = rig.route_to("10.244.200.0/24").unwrap();
    assert_eq!(
        route.kind,
        RouteKind::Via {
            gateway: ip("192.168.1.2").into(),
            dev: rig.eth0
        }
    );
    assert!(rig.fake.fdb(dev).is_empty());
    assert!(rig.fake.neighbours_in(None, dev).is_empty());

    // A config that would need a restart (another backend) is not taken.
    assert!(!rig
        .agent
        .on_config(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#));
    assert!(!rig.agent.on_config(b"{not json"));
}

#[tokio::test]
async fn a_removed_overlay_device_is_made_again_with_its_entries() {
    let mut rig = Rig::new(r#"{"Type":"vxlan"}"#).await;
    let data = r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}"#;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "vxlan", data)
        .await;
    rig.agent.reconcile(Why::Start).await;
    assert!(rig.fake.delete_link("weft.1"));
    assert!(rig.fake.weft_routes().is_empty(), "its routes went with it");
    rig.agent.reconcile(Why::Kernel).await;
    let dev = rig.fake.link("weft.1").expect("made again").info.index;
    assert_eq!(
        rig.fake.addresses_in(None, dev),
        [Ipv4Net::new(rig.own_subnet().network(), 32).unwrap()]
    );
    assert!(rig.route_to("10.244.200.0/24").is_some());
    assert_eq!(rig.fake.fdb(dev).len(), 1);
    assert_eq!(rig.metric(|m| &m.repairs), 1);

    // Without the device nothing else is touched.
    rig.faults.fail(FaultOp::Overlay, libc::EPERM);
    rig.fake.clear_journal();
    rig.agent.reconcile(Why::Resync).await;
    assert!(rig.fake.journal().is_empty());
}

#[tokio::test]
async fn a_restart_on_an_unchanged_host_changes_nothing() {
    let mut rig = Rig::new(r#"{"Type":"vxlan"}"#).await;
    let data = r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}"#;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "vxlan", data)
        .await;
    rig.agent.reconcile(Why::Start).await;
    let subnet = rig.own_subnet();
    drop(rig.agent);
    rig.fake.clear_journal();
    let mut again = start(&rig.fake, &rig.faults, &rig.dir).await;
    again.reconcile(Why::Start).await;
    assert_eq!(
        again.view.node.lease.subnet, subnet,
        "the same subnet again"
    );
    assert!(rig.fake.journal().is_empty(), "{:?}", rig.fake.journal());
}

#[tokio::test]
async fn a_lease_that_cannot_stand_is_routed_by_no_one() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Start).await;
    let before = rig.fake.weft_routes();
    rig.fake.clear_journal();
    // Half of this node's own subnet, pointing at an address no node has; a subnet
    // outside the network; one of the wrong size over the peer's.
    let own = rig.own_subnet();
    let half = Ipv4Net::new(own.network(), 25).unwrap();
    rig.put_peer(&half.to_string(), "192.168.1.77", "host-gw", NULL)
        .await;
    rig.put_peer("10.245.1.0/24", "192.168.1.78", "host-gw", NULL)
        .await;
    rig.put_peer("10.244.200.128/25", "192.168.1.79", "host-gw", NULL)
        .await;
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.fake.weft_routes(), before, "no route changed");
    assert!(rig.fake.journal().is_empty(), "{:?}", rig.fake.journal());
    let rejected: Vec<String> = rig
        .agent
        .last
        .rejected
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .any(|r| r.contains(&format!("overlaps {own}"))),
        "{rejected:?}"
    );
    // host-gw loads no member filter (the vxlan test below checks membership).
    let members = rig.fake.firewall().unwrap().encap.map(|e| e.members);
    assert!(members.is_none(), "host-gw has no encapsulation filter");

    // The bad keys go: nothing changes again.
    rig.delete_peer(&half.to_string()).await;
    rig.delete_peer("10.245.1.0/24").await;
    rig.delete_peer("10.244.200.128/25").await;
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.fake.weft_routes(), before);
    assert!(rig.fake.journal().is_empty());
    assert!(rig.agent.last.rejected.is_empty());
}

#[tokio::test]
async fn blocks_are_blackholed_here_and_routed_elsewhere() {
    let mut rig = Rig::new(r#"{"Type":"host-gw"}"#).await;
    rig.put_peer("10.244.9.0/24", "192.168.1.2", "host-gw", "null")
        .await;
    let prefix = rig.registry.keys().blocks();
    let ours = r#"{"CIDR":"10.248.0.0/26","Pool":"p","Node":"192.168.1.1","Allocations":{"10.248.0.5":{"Handle":"x/eth0","Node":"192.168.1.2"}}}"#;
    let theirs = r#"{"CIDR":"10.248.0.64/26","Pool":"p","Node":"192.168.1.2","Allocations":{}}"#;
    assert!(put_key(&mut rig, &format!("{prefix}10.248.0.0-26"), ours).await);
    assert!(put_key(&mut rig, &format!("{prefix}10.248.0.64-26"), theirs).await);
    assert!(!put_key(&mut rig, &format!("{prefix}10.248.0.128-26"), "{garbled").await);
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(
        rig.route_to("10.248.0.0/26"),
        Some(Route::blackhole(net("10.248.0.0/26")))
    );
    let via2 = |d: &str| Some(Route::via(net(d), ip("192.168.1.2"), rig.eth0));
    assert_eq!(rig.route_to("10.248.0.64/26"), via2("10.248.0.64/26"));
    assert_eq!(
        rig.route_to("10.248.0.5/32"),
        via2("10.248.0.5/32"),
        "the borrowed address, at its user"
    );

    // The peer's block is released: its route goes; a restart changes nothing.
    assert!(rig.delete_key(format!("{prefix}10.248.0.64-26")).await);
    rig.agent.reconcile(Why::Store).await;
    assert!(rig.route_to("10.248.0.64/26").is_none());
    rig.assert_restart_changes_nothing().await;
}

#[tokio::test]
async fn an_empty_block_is_released_after_the_grace_period() {
    let mut rig = Rig::new(r#"{"Type":"host-gw"}"#).await;
    rig.agent.opts.block_release_grace = std::time::Duration::from_millis(200);
    let prefix = rig.registry.keys().blocks();
    let empty = r#"{"CIDR":"10.248.0.0/26","Pool":"p","Node":"192.168.1.1","Allocations":{}}"#;
    let used = r#"{"CIDR":"10.248.0.64/26","Pool":"p","Node":"192.168.1.1","Allocations":{"10.248.0.65":{"Handle":"x/eth0","Node":"192.168.1.1"}}}"#;
    let theirs = r#"{"CIDR":"10.248.0.128/26","Pool":"p","Node":"192.168.1.2","Allocations":{}}"#;
    // A node that left (no lease): any agent gives its empty block back.
    let gone = r#"{"CIDR":"10.248.0.192/26","Pool":"p","Node":"192.168.1.9","Allocations":{}}"#;
    rig.put_peer("10.244.2.0/24", "192.168.1.2", "host-gw", "{}")
        .await;
    for (k, v) in [
        ("10.248.0.0-26", empty),
        ("10.248.0.64-26", used),
        ("10.248.0.128-26", theirs),
        ("10.248.0.192-26", gone),
    ] {
        put_key(&mut rig, &format!("{prefix}{k}"), v).await;
    }
    rig.agent.release_empty_blocks().await;
    assert_eq!(
        rig.registry.blocks().await.unwrap().len(),
        4,
        "not before the grace period"
    );
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    rig.agent.release_empty_blocks().await;
    let left: Vec<String> = rig
        .registry
        .blocks()
        .await
        .unwrap()
        .iter()
        .map(|b| b.block.cidr.to_string())
        .collect();
    assert_eq!(
        left,
        ["10.248.0.128/26", "10.248.0.64/26"],
        "our empty block and the gone node's went, not a live peer's"
    );
}

#[tokio::test]
async fn an_mtu_change_reaches_every_artefact_at_once() {
    let mut rig = Rig::new(r#"{"Type":"vxlan"}"#).await;
    rig.agent.reconcile(Why::Start).await;
    let read = |f: &str| std::fs::read_to_string(rig.dir.path().join(f)).unwrap();
    assert!(read("subnet.env").contains("FLANNEL_MTU=1450"));
    let cfg = NetworkConfig::parse(
        br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","MTU":1400}}"#,
    )
    .unwrap();
    rig.registry.put_config(&cfg).await.unwrap();
    let kv = rig
        .registry
        .store()
        .get(&rig.registry.keys().config())
        .await
        .unwrap()
        .unwrap();
    assert!(rig.agent.on_event(WatchEvent::Put(kv)).await);
    // The files other programs read follow before any reconcile; the device with it.
    let read = |f: &str| std::fs::read_to_string(rig.dir.path().join(f)).unwrap();
    assert!(
        read("subnet.env").contains("FLANNEL_MTU=1400"),
        "{}",
        read("subnet.env")
    );
    assert!(
        read("docker.env").contains("--mtu=1400"),
        "{}",
        read("docker.env")
    );
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.fake.link("weft.1").unwrap().info.mtu, 1400);
}

/// Writes a store key and hands the agent its watch event; whether the plan may change.
async fn put_key(rig: &mut Rig, key: &str, value: &str) -> bool {
    let store = rig.registry.store();
    store.put(key, value.as_bytes(), None).await.unwrap();
    let kv = store.get(key).await.unwrap().unwrap();
    rig.agent.on_event(WatchEvent::Put(kv)).await
}

#[tokio::test]
async fn named_networks_follow_the_store() {
    let mut rig = Rig::new(r#"{"Type":"host-gw"}"#).await;
    rig.put_peer("10.244.9.0/24", "192.168.1.2", "host-gw", "null")
        .await;
    let nets = rig.registry.keys().networks();
    let eps = rig.registry.keys().endpoints();
    assert!(put_key(&mut rig, &format!("{nets}blue"), r#"{"Name":"blue","Subnet":"10.50.0.0/24","Gateway":"10.50.0.1","Mode":"overlay","VNI":4096}"#).await);
    assert!(
        put_key(
            &mut rig,
            &format!("{nets}green"),
            r#"{"Name":"green","Subnet":"10.60.0.0/24","Gateway":"10.60.0.1","Mode":"routed"}"#
        )
        .await
    );
    // Endpoints: one here on blue, one on the peer on blue and one on green.
    let here = r#"{"Node":"192.168.1.1","EndpointID":"e1","MAC":"02:42:0a:32:00:02","HostIface":"weftdke1"}"#;
    let there = r#"{"Node":"192.168.1.2","EndpointID":"e2","MAC":"02:42:0a:32:00:03","HostIface":"weftdke2"}"#;
    put_key(&mut rig, &format!("{eps}blue/10.50.0.2"), here).await;
    put_key(&mut rig, &format!("{eps}blue/10.50.0.3"), there).await;
    put_key(&mut rig, &format!("{eps}green/10.60.0.3"), there).await;
    // Unreadable values are ignored, and change nothing.
    assert!(!put_key(&mut rig, &format!("{eps}blue/10.50.0.9"), "{oops").await);
    // Names recorded after the start change no plan (the resolver alone reads them).
    let named = r#"{"Node":"192.168.1.2","EndpointID":"e2","MAC":"02:42:0a:32:00:03","HostIface":"weftdke2","Container":"c2","Names":["a2"]}"#;
    assert!(!put_key(&mut rig, &format!("{eps}blue/10.50.0.3"), named).await);
    rig.agent.reconcile(Why::Store).await;

    let vx = rig
        .fake
        .link("weftvx-4096")
        .expect("the segment of a network with a local endpoint");
    assert!(rig.fake.link("weftbr-4096").is_some());
    assert_eq!(
        rig.fake.neighbours_in(None, vx.info.index),
        [weft_plan::Neighbour {
            ip: ip("10.50.0.3").into(),
            mac: "02:42:0a:32:00:03".parse().unwrap()
        }]
    );
    assert_eq!(
        rig.fake.fdb(vx.info.index)[0].dst,
        std::net::IpAddr::from(ip("192.168.1.2"))
    );
    // The remote routed container: routed like its node's subnet (host-gw: via the peer).
    assert_eq!(
        rig.route_to("10.60.0.3/32"),
        Some(Route::via(net("10.60.0.3/32"), ip("192.168.1.2"), rig.eth0))
    );
    let fw = rig.fake.firewall().unwrap();
    let isolated: Vec<_> = fw.isolated.iter().map(|i| i.subnet.to_string()).collect();
    assert_eq!(isolated, ["10.50.0.0/24", "10.60.0.0/24"]);

    // The peer's container leaves: its entries and route go; a restart changes nothing.
    for key in [
        format!("{eps}blue/10.50.0.3"),
        format!("{eps}green/10.60.0.3"),
    ] {
        rig.delete_key(key).await;
    }
    rig.agent.reconcile(Why::Store).await;
    assert!(rig.fake.neighbours_in(None, vx.info.index).is_empty());
    assert!(rig.fake.fdb(vx.info.index).is_empty());
    assert!(rig.route_to("10.60.0.3/32").is_none());
    rig.assert_restart_changes_nothing().await;

    // The last local container leaves: the segment stays through the grace period
    // (a container joining meanwhile keeps its bridge), then goes.
    rig.delete_key(format!("{eps}blue/10.50.0.2")).await;
    rig.agent.reconcile(Why::Store).await;
    assert!(
        rig.fake.link("weftvx-4096").is_some(),
        "kept within the grace period"
    );
    rig.agent
        .overlay
        .age_unplanned(super::overlay::SEGMENT_GRACE);
    rig.agent.reconcile(Why::Store).await;
    assert!(rig.fake.link("weftvx-4096").is_none() && rig.fake.link("weftbr-4096").is_none());
}

#[tokio::test]
async fn a_lease_that_cannot_stand_makes_no_member_of_the_vxlan_filter() {
    let mut rig = Rig::new(r#"{"Type":"vxlan"}"#).await;
    let data = r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}"#;
    rig.put_peer("10.244.200.0/24", "192.168.1.2", "vxlan", data)
        .await;
    rig.put_peer("10.244.201.0/25", "192.168.1.77", "vxlan", data)
        .await;
    rig.agent.reconcile(Why::Start).await;
    let members = rig.fake.firewall().unwrap().encap.unwrap().members;
    assert!(members.contains(&ip("192.168.1.2")), "{members:?}");
    assert!(
        members.contains(&ip("192.168.1.1")),
        "this node: {members:?}"
    );
    assert!(!members.contains(&ip("192.168.1.77")), "{members:?}");
}

mod fuzz {
    //! The bounded fuzz run of the agent (part of the suite): random writes and deletes
    //! under the store prefix (configs, leases, address claims, anything), each followed
    //! by a reconcile. The routes to peers whose leases nobody touched never change, no
    //! route ever covers this node's own subnet, and no two routes share an address.
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};
    fn overlap(a: &ipnet::IpNet, b: &ipnet::IpNet) -> bool {
        a.contains(&b.network()) || b.contains(&a.network())
    }

    use super::*;

    #[derive(Debug, Clone)]
    enum Write {
        Put(String, Vec<u8>),
        Delete(String),
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => any::<String>(),
            2 => "10\\.24[0-9]\\.[0-9]{1,3}\\.[0-9]{1,3}-[0-9]{1,2}",
            2 => Just("10.244.200.128-25".to_string()),
            2 => Just("10.244.0.0-16".to_string()),
            1 => Just("10.250.0.0-24".to_string()),
        ]
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        let lease = (
            "192\\.168\\.1\\.1?[0-9]{1,2}",
            prop_oneof![4 => Just("host-gw"), 1 => Just(""), 1 => Just("vxlan")],
        )
            .prop_map(|(ip, kind)| {
                format!(r#"{{"PublicIP":"{ip}","BackendType":"{kind}","BackendData":null}}"#)
                    .into_bytes()
            });
        let config = prop_oneof![
            Just(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#.to_vec()),
            Just(br#"{"Network":"10.99.0.0/16","Backend":{"Type":"host-gw"}}"#.to_vec()),
            Just(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#.to_vec()),
            Just(br#"{"Network":12}"#.to_vec()),
        ];
        prop_oneof![1 => proptest::collection::vec(any::<u8>(), 0..64), 4 => lease, 1 => config]
    }

    fn write() -> impl Strategy<Value = Write> {
        let key = prop_oneof![
            5 => name().prop_map(|n| format!("/coreos.com/network/subnets/{n}")),
            1 => name().prop_map(|n| format!("/coreos.com/network/weft/addresses/{n}")),
            1 => Just("/coreos.com/network/config".to_string()),
            1 => name().prop_map(|n| format!("/coreos.com/network/{n}")),
        ];
        prop_oneof![
            3 => (key.clone(), value()).prop_map(|(k, v)| Write::Put(k, v)),
            1 => key.prop_map(Write::Delete),
        ]
    }

    const PEERS: [(&str, &str); 2] = [
        ("10.244.200.0/24", "192.168.1.2"),
        ("10.244.201.0/24", "192.168.1.3"),
    ];

    proptest! {
        #![proptest_config(Config {
            cases: 48,
            rng_seed: RngSeed::Fixed(0x5eed_a9e7),
            failure_persistence: None,
            ..Config::default()
        })]

        #[test]
        fn random_store_writes_never_cost_a_working_peer_its_route(
            writes in proptest::collection::vec(write(), 1..12),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut rig = Rig::new(HOST_GW).await;
                for (subnet, ip) in PEERS {
                    rig.put_peer(subnet, ip, "host-gw", NULL).await;
                }
                rig.agent.reconcile(Why::Start).await;
                let good: Vec<Route> = PEERS
                    .iter()
                    .map(|(s, ip)| rig.route_to(s).unwrap_or_else(|| panic!("route to {s} via {ip}")))
                    .collect();
                let untouchable: Vec<String> = PEERS
                    .iter()
                    .map(|(s, _)| rig.registry.keys().lease(&net(s)))
                    .chain([rig.registry.keys().lease(&rig.own_subnet())])
                    .collect();
                let store = rig.registry.store().clone();
                for w in writes {
                    let event = match w {
                        Write::Put(key, _) | Write::Delete(key) if untouchable.contains(&key) => continue,
                        Write::Put(key, value) => {
                            store.put(&key, &value, None).await.unwrap();
                            WatchEvent::Put(store.get(&key).await.unwrap().unwrap())
                        }
                        Write::Delete(key) => {
                            store.delete(&key).await.unwrap();
                            WatchEvent::Delete { key, revision: 0 }
                        }
                    };
                    rig.agent.on_event(event).await;
                    rig.agent.reconcile(Why::Store).await;
                    let routes = rig.fake.weft_routes();
                    for g in &good {
                        assert!(routes.contains(g), "lost {g}: {routes:?}");
                    }
                    let own = rig.own_subnet();
                    for (i, r) in routes.iter().enumerate() {
                        assert!(!overlap(&r.dst, &own.into()), "{r} covers own {own}");
                        for o in &routes[i + 1..] {
                            assert!(!overlap(&r.dst, &o.dst), "{r} and {o} overlap");
                        }
                    }
                }
            });
        }
    }
}

#[tokio::test]
async fn policy_rules_follow_the_store_keep_on_refusal_and_survive_a_restart() {
    let mut rig = Rig::new(r#"{"Type":"host-gw"}"#).await;
    let pol = rig.registry.keys().policy();
    // An endpoint here, one elsewhere, and a policy selecting ours.
    let here = r#"{"Name":"x/a","Namespace":"x","Labels":{"pod":"a"},"Node":"192.168.1.1","Interface":"weft00000000001"}"#;
    let there = r#"{"Name":"y/b","Namespace":"y","Labels":{"pod":"b"},"Node":"192.168.1.2","Interface":"weft00000000002"}"#;
    // Policy alone: no plan, the policy table pending.
    assert!(!put_key(&mut rig, &format!("{pol}endpoints/10.248.0.1"), here).await);
    assert!(rig.agent.policy_pending());
    assert!(!put_key(&mut rig, &format!("{pol}endpoints/10.248.0.2"), there).await);
    assert!(rig.agent.policy_pending());
    let np = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{"namespaceSelector":{}}]}]}}"#;
    assert!(!put_key(&mut rig, &format!("{pol}networkpolicies/x/a"), np).await);
    assert!(rig.agent.policy_pending());
    rig.agent.reconcile(Why::Store).await;
    let table = rig.fake.nft_table("weftpol").expect("loaded");
    assert!(
        table.contains("in_ns_x_if { \"weft00000000001\" }"),
        "{table}"
    );
    assert!(
        !table.contains("weft00000000002"),
        "only this node's endpoints:\n{table}"
    );
    assert!(table.contains("{ 10.248.0.1, 10.248.0.2 }"), "{table}");
    assert_eq!(
        rig.agent.policy.enforced(),
        rig.agent.policy.state().unwrap().revision
    );

    // A new endpoint here changes set and map elements, not the rules.
    let rules = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("add element"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let third = r#"{"Name":"x/c","Namespace":"x","Labels":{"pod":"c"},"Node":"192.168.1.1","Interface":"weft00000000003","Attachment":"bridged"}"#;
    assert!(!put_key(&mut rig, &format!("{pol}endpoints/10.248.0.3"), third).await);
    assert!(rig.agent.policy_pending());
    let mark = rig.fake.journal().len();
    rig.agent.reconcile(Why::Store).await;
    let grown = rig.fake.nft_table("weftpol").unwrap();
    assert_eq!(rules(&grown), rules(&table));
    assert_eq!(
        rig.fake.journal()[mark..],
        [
            "nft elements ip weftpol".to_string(),
            // A bridged endpoint: br_netfilter on, once.
            "/proc/sys/net/bridge/bridge-nf-call-iptables = 1".to_string()
        ]
    );
    assert!(
        grown.contains("in_ns_x_ip { 10.248.0.3 }"),
        "bridged: by address\n{grown}"
    );
    assert!(
        grown.contains("{ 10.248.0.1, 10.248.0.2, 10.248.0.3 }"),
        "{grown}"
    );
    let table = grown;

    // The kernel refuses the next table: the loaded one stays, and is not counted as
    // enforcing the new revision.
    let before = rig.agent.policy.enforced();
    rig.faults.fail(FaultOp::Firewall, libc::EPERM);
    assert!(!rig.delete_key(format!("{pol}networkpolicies/x/a")).await);
    assert!(rig.agent.policy_pending());
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(
        rig.fake.nft_table("weftpol").as_deref(),
        Some(table.as_str())
    );
    assert_eq!(rig.agent.policy.enforced(), before);
    rig.faults.heal(FaultOp::Firewall);
    rig.agent.reconcile(Why::Resync).await;
    let now = rig.fake.nft_table("weftpol").unwrap();
    assert!(
        now.contains("not isolated") && !now.contains("isolated by"),
        "{now}"
    );

    // A restart renders the same table and loads nothing.
    rig.assert_restart_changes_nothing().await;
}

/// Two dual-stack keys for one IPv4 subnet (two nodes raced with different IPv6
/// subnets): the later key neither replaces the lease held nor, when it is deleted as
/// the loser gives way, takes the held lease's route away.
#[tokio::test]
async fn a_racing_second_key_for_a_subnet_changes_nothing() {
    let mut rig = Rig::new(HOST_GW).await;
    rig.agent.reconcile(Why::Start).await;
    let store = rig.registry.store().clone();
    let put = |key: &'static str, ip: &'static str| {
        let store = store.clone();
        async move {
            let value = format!(r#"{{"PublicIP":"{ip}","BackendType":"host-gw"}}"#);
            store.put(key, value.as_bytes(), None).await.unwrap();
            store.get(key).await.unwrap().unwrap()
        }
    };
    let first = "/coreos.com/network/subnets/10.244.200.0-24&fd00:10:244:c8::-64";
    let second = "/coreos.com/network/subnets/10.244.200.0-24&fd00:10:244:c9::-64";
    let kv = put(first, "192.168.1.2").await;
    assert!(rig.agent.on_event(WatchEvent::Put(kv)).await);
    rig.agent.reconcile(Why::Store).await;
    let route = rig
        .route_to("10.244.200.0/24")
        .expect("the first key's route");
    let kv = put(second, "192.168.1.3").await;
    assert!(
        !rig.agent.on_event(WatchEvent::Put(kv)).await,
        "the second key is not taken"
    );
    assert!(
        !rig.delete_key(second.to_owned()).await,
        "its deletion takes nothing away"
    );
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.route_to("10.244.200.0/24"), Some(route));
    // The first key's own deletion still removes the route.
    assert!(rig.delete_key(first.to_owned()).await);
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(rig.route_to("10.244.200.0/24"), None);
}

/// In a dual-stack network the policy table has an IPv6 twin: the same rules over the
/// endpoints' IPv6 addresses (an endpoint without one is in no set of it), IPv6 blocks
/// there and not in the IPv4 table; a new endpoint changes both tables' elements only;
/// a restart loads nothing; and on an IPv4-only network the twin is removed at start.
#[tokio::test]
async fn the_ipv6_policy_table_follows_dual_stack() {
    let dual = r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}"#;
    let mut rig = Rig::with_config(dual).await;
    let pol = rig.registry.keys().policy();
    let mark = rig.fake.journal().len();
    let here = r#"{"Name":"x/a","Namespace":"x","Labels":{"pod":"a"},"IPv6":"fd00:10:244:1::2","Node":"192.168.1.1","Interface":"weft00000000001","Attachment":"bridged"}"#;
    let there = r#"{"Name":"y/b","Namespace":"y","Labels":{"pod":"b"},"IPv6":"fd00:10:244:2::2","Node":"192.168.1.2","Interface":"weft00000000002"}"#;
    let v4_only = r#"{"Name":"y/c","Namespace":"y","Labels":{"pod":"b"},"Node":"192.168.1.2","Interface":"weft00000000003"}"#;
    put_key(&mut rig, &format!("{pol}endpoints/10.244.1.2"), here).await;
    put_key(&mut rig, &format!("{pol}endpoints/10.244.2.2"), there).await;
    put_key(&mut rig, &format!("{pol}endpoints/10.244.2.3"), v4_only).await;
    let np = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{"podSelector":{"matchLabels":{"pod":"b"}},"namespaceSelector":{}},{"ipBlock":{"cidr":"fd00:99::/64"}},{"ipBlock":{"cidr":"10.99.0.0/16"}}]}]}}"#;
    put_key(&mut rig, &format!("{pol}networkpolicies/x/a"), np).await;
    rig.agent.reconcile(Why::Start).await;
    let id6 = weft_policy::render::table_id(weft_kernel::nft_sets::Family::Ip6);
    let t4 = rig.fake.nft_table("weftpol").expect("the IPv4 table");
    let t6 = rig.fake.nft_table_of(&id6).expect("the IPv6 table");
    assert!(t6.starts_with("table ip6 weftpol"), "{t6}");
    assert!(t6.contains("ip6 saddr fd00:99::/64 counter accept"), "{t6}");
    assert!(
        !t6.contains("10.99.0.0/16") && t4.contains("10.99.0.0/16"),
        "{t6}"
    );
    assert!(!t4.contains("fd00:99::/64"), "{t4}");
    assert!(
        t6.contains("{ fd00:10:244:2::2 }"),
        "y/b by its IPv6 address, y/c in no set:\n{t6}"
    );
    assert!(t4.contains("{ 10.244.2.2, 10.244.2.3 }"), "{t4}");
    // Bridged: dispatched by address, each table by its own family's, and br_netfilter
    // hands the policy tables bridged traffic of both families.
    assert!(t6.contains("in_ns_x_ip { fd00:10:244:1::2 }"), "{t6}");
    assert!(t4.contains("in_ns_x_ip { 10.244.1.2 }"), "{t4}");
    let journal = rig.fake.journal()[mark..].to_vec();
    for hook in [
        "bridge-nf-call-iptables = 1",
        "bridge-nf-call-ip6tables = 1",
    ] {
        assert!(
            journal.iter().any(|j| j.ends_with(hook)),
            "{hook}: {journal:?}"
        );
    }

    // A new endpoint: elements of both tables, no rule reloaded.
    let more = r#"{"Name":"z/d","Namespace":"z","Labels":{"pod":"b"},"IPv6":"fd00:10:244:3::7","Node":"192.168.1.3","Interface":"weft00000000004"}"#;
    put_key(&mut rig, &format!("{pol}endpoints/10.244.3.7"), more).await;
    let mark = rig.fake.journal().len();
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(
        rig.fake.journal()[mark..],
        ["nft elements ip weftpol", "nft elements ip6 weftpol"]
    );
    let t6 = rig.fake.nft_table_of(&id6).unwrap();
    assert!(
        t6.contains("{ fd00:10:244:2::2, fd00:10:244:3::7 }"),
        "{t6}"
    );

    rig.assert_restart_changes_nothing().await;

    // A policy the kernel refuses in the IPv6 table: the node does not say it enforces
    // the policies (its status has no fingerprint), though its IPv4 table has them.
    assert!(rig.agent.policy.loaded_fingerprint().is_some());
    rig.faults
        .fail(weft_kernel::faults::FaultOp::Firewall, libc::EPERM);
    let np2 = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"b","namespace":"x"},"spec":{"podSelector":{}}}"#;
    put_key(&mut rig, &format!("{pol}networkpolicies/x/b"), np2).await;
    rig.agent.reconcile(Why::Store).await;
    assert_eq!(
        rig.agent.policy.loaded_fingerprint(),
        None,
        "nothing loaded: nothing claimed"
    );
    rig.faults.heal(weft_kernel::faults::FaultOp::Firewall);
    rig.agent.reconcile(Why::Store).await;
    assert!(
        rig.agent.policy.loaded_fingerprint().is_some(),
        "both loaded again"
    );

    // The same node on an IPv4-only network: the twin goes at start.
    let v4 = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#;
    rig.registry
        .put_config(&NetworkConfig::parse(v4.as_bytes()).unwrap())
        .await
        .unwrap();
    rig.agent = start(&rig.fake, &rig.faults, &rig.dir).await;
    rig.agent.reconcile(Why::Start).await;
    assert!(
        rig.fake.nft_table_of(&id6).is_none(),
        "the IPv6 table is removed"
    );
    assert!(rig.fake.nft_table("weftpol").is_some());
}
