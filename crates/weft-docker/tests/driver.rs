//! The driver's calls in the order Docker makes them, against an embedded store and a
//! fake kernel: a network created here (pending until the sync names it) and one known
//! from another host, endpoints in both modes, and every bad request refused with a
//! message that names the problem, changing nothing.

use std::sync::Arc;

use serde_json::{json, Value};
use weft_alloc::named::Mode;
use weft_alloc::{NetworkConfig, Registry};
use weft_docker::driver::{Registered, HOST_PREFIX, ROUTED_HOST_MAC};
use weft_docker::{Driver, HostFacts};
use weft_kernel::fake::FakeNet;
use weft_kernel::Dataplane;
use weft_store::embedded::EmbeddedStore;

struct Setup {
    driver: Driver,
    fake: FakeNet,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store.db")).unwrap());
    let registry = Registry::new(store, "/t");
    let cfg = NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#)
        .unwrap();
    registry.put_config(&cfg).await.unwrap();
    let fake = FakeNet::new();
    let eth0 = fake.add_interface("eth0", "192.168.1.1/24".parse().unwrap(), 1500, true);
    let dp: Arc<dyn Dataplane> = Arc::new(fake.host());
    let driver = Driver {
        registry,
        dp,
        host: HostFacts {
            public_ip: "192.168.1.1".parse().unwrap(),
            underlay: eth0,
            underlay_mtu: 1500,
            routed_mtu: 1500,
        },
        local: Default::default(),
        own_netns: "/fake/host".into(),
        engine: None,
        enforced: None,
    };
    Setup {
        driver,
        fake,
        _dir: dir,
    }
}

/// A call's answer, its refusal as the message Docker shows.
async fn call(d: &Driver, method: &str, body: Value) -> Result<Value, String> {
    d.call(method, body.to_string().as_bytes())
        .await
        .map_err(|e| e.to_string())
}

async fn ok(d: &Driver, method: &str, body: Value) -> Value {
    call(d, method, body)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// What the sync does once Docker has named a pending network.
async fn register(d: &Driver, docker_id: &str, name: &str) {
    match d.register(docker_id, name).await {
        Ok(Registered::Created(net)) => assert_eq!(net.name, name),
        other => panic!("{other:?}"),
    }
    assert!(d.local.lock().unwrap().pending.is_empty());
}

fn create_network(id: &str, subnet: &str, mode: Option<&str>) -> Value {
    let generic = match mode {
        Some(m) => json!({"mode": m}),
        None => json!({}),
    };
    json!({
        "NetworkID": id,
        "Options": {"com.docker.network.generic": generic, "com.docker.network.enable_ipv6": false},
        "IPv4Data": [{"AddressSpace": "weft-local", "Pool": subnet, "Gateway": ""}],
        "IPv6Data": [],
    })
}

#[tokio::test]
async fn an_overlay_container_from_create_to_removal() {
    let s = setup().await;
    let d = &s.driver;
    let act = ok(d, "Plugin.Activate", json!(null)).await;
    assert_eq!(act["Implements"], json!(["NetworkDriver", "IpamDriver"]));
    assert_eq!(
        ok(d, "NetworkDriver.GetCapabilities", json!({})).await["Scope"],
        "local"
    );
    let pool = ok(
        d,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "weft-local", "Pool": "10.50.0.0/24"}),
    )
    .await;
    assert_eq!(pool["PoolID"], "10.50.0.0/24");
    let gw = ok(d, "IpamDriver.RequestAddress", json!({"PoolID": "10.50.0.0/24", "Options": {"RequestAddressType": "com.docker.network.gateway"}})).await;
    assert_eq!(gw["Address"], "10.50.0.1/24");
    ok(
        d,
        "NetworkDriver.CreateNetwork",
        create_network("n1", "10.50.0.0/24", None),
    )
    .await;
    // Docker has not named it yet: containers must wait, and are told so.
    let early = call(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.50.0.0/24"}),
    )
    .await
    .unwrap_err();
    assert!(early.contains("still being registered"), "{early}");
    register(d, "n1", "blue").await;

    let a = ok(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.50.0.0/24"}),
    )
    .await;
    assert_eq!(a["Address"], "10.50.0.2/24");
    let ep = ok(d, "NetworkDriver.CreateEndpoint", json!({"NetworkID": "n1", "EndpointID": "e0123456789abcdef", "Interface": {"Address": "10.50.0.2/24"}})).await;
    assert_eq!(
        ep["Interface"]["MacAddress"], "02:42:0a:32:00:02",
        "Docker's MAC for the address"
    );
    let join = ok(
        d,
        "NetworkDriver.Join",
        json!({"NetworkID": "n1", "EndpointID": "e0123456789abcdef", "SandboxKey": "/x"}),
    )
    .await;
    assert_eq!(join["InterfaceName"]["SrcName"], "weftdpe01234567");
    assert_eq!(join["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(join["Gateway"], "10.50.0.1");
    // The segment and the host veth as its port; the bridge holds the gateway.
    let net = d.registry.network("blue").await.unwrap().unwrap();
    let br = s.fake.link(&format!("weftbr-{}", net.vni)).expect("bridge");
    let vx = s.fake.link(&format!("weftvx-{}", net.vni)).expect("vxlan");
    assert_eq!(vx.controller, Some(br.info.index));
    let host = s
        .fake
        .link(&format!("{HOST_PREFIX}e01234567"))
        .expect("host veth");
    assert_eq!(host.controller, Some(br.info.index));
    assert_eq!(
        s.fake.addresses_in(None, br.info.index),
        ["10.50.0.1/24".parse().unwrap()]
    );
    let held = d.registry.endpoints("blue").await.unwrap();
    assert_eq!(held[0].1.endpoint_id, "e0123456789abcdef");
    assert_eq!(held[0].1.host_iface, "weftdke01234567");

    // A second container may not take the address, nor the gateway.
    let dup = call(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.50.0.0/24", "Address": "10.50.0.2"}),
    )
    .await
    .unwrap_err();
    assert!(
        dup.contains("already held by endpoint e0123456789a on node 192.168.1.1"),
        "{dup}"
    );
    let gwdup = call(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.50.0.0/24", "Address": "10.50.0.1"}),
    )
    .await
    .unwrap_err();
    assert!(gwdup.contains("gateway"), "{gwdup}");

    // Removal, in Docker's order: nothing left.
    ok(
        d,
        "NetworkDriver.Leave",
        json!({"NetworkID": "n1", "EndpointID": "e0123456789abcdef"}),
    )
    .await;
    assert!(s.fake.link("weftdke01234567").is_none());
    ok(
        d,
        "NetworkDriver.DeleteEndpoint",
        json!({"NetworkID": "n1", "EndpointID": "e0123456789abcdef"}),
    )
    .await;
    ok(
        d,
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": "10.50.0.0/24", "Address": "10.50.0.2"}),
    )
    .await;
    assert!(d.registry.endpoints("blue").await.unwrap().is_empty());
    ok(d, "NetworkDriver.DeleteNetwork", json!({"NetworkID": "n1"})).await;
    assert!(d.registry.network("blue").await.unwrap().is_none());
}

/// Network policy: Join records the container held (its labels unknown) under its
/// network's name, and answers only once its node enforces that; removal forgets it.
#[tokio::test]
async fn a_joining_container_is_held_until_its_node_enforces_it() {
    let mut s = setup().await;
    let (enforced, rx) = tokio::sync::watch::channel(0);
    s.driver.enforced = Some(rx);
    let d = s.driver.clone();
    ok(
        &d,
        "IpamDriver.RequestPool",
        json!({"Pool": "10.50.0.0/24"}),
    )
    .await;
    ok(
        &d,
        "NetworkDriver.CreateNetwork",
        create_network("n1", "10.50.0.0/24", None),
    )
    .await;
    register(&d, "n1", "shop").await;
    ok(
        &d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.50.0.0/24", "Address": "10.50.0.2"}),
    )
    .await;
    let ep = json!({"NetworkID": "n1", "EndpointID": "e0123456789abcdef"});
    let mut create = ep.clone();
    create["Interface"] = json!({"Address": "10.50.0.2/24"});
    ok(&d, "NetworkDriver.CreateEndpoint", create).await;
    let joining = tokio::spawn({
        let d = d.clone();
        let ep = ep.clone();
        async move { call(&d, "NetworkDriver.Join", ep).await }
    });
    let ip = "10.50.0.2".parse().unwrap();
    let id = loop {
        if let Some(id) = d.registry.identity(ip).await.unwrap() {
            break id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert!(id.pending, "{id:?}");
    assert_eq!(
        (id.name.as_str(), id.namespace.as_str()),
        ("shop/e0123456789a", "shop")
    );
    assert_eq!(id.interface, format!("{HOST_PREFIX}e01234567"));
    assert_eq!(id.attachment, weft_alloc::policies::Attachment::Bridged);
    assert!(id.labels.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !joining.is_finished(),
        "Join answered before its node enforced the hold"
    );
    enforced.send_replace(i64::MAX);
    joining.await.unwrap().expect("Join");
    ok(&d, "NetworkDriver.Leave", ep.clone()).await;
    ok(&d, "NetworkDriver.DeleteEndpoint", ep).await;
    assert!(d.registry.identity(ip).await.unwrap().is_none());
}

#[tokio::test]
async fn a_routed_container_gets_calico_s_layout() {
    let s = setup().await;
    let d = &s.driver;
    ok(
        d,
        "NetworkDriver.CreateNetwork",
        create_network("g", "10.60.0.0/24", Some("routed")),
    )
    .await;
    register(d, "g", "green").await;
    assert_eq!(
        d.registry.network("green").await.unwrap().unwrap().mode,
        Mode::Routed
    );
    ok(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.60.0.0/24", "Address": "10.60.0.7"}),
    )
    .await;
    ok(d, "NetworkDriver.CreateEndpoint", json!({"NetworkID": "g", "EndpointID": "abcdefabcdef0011", "Interface": {"Address": "10.60.0.7/24"}})).await;
    let join = ok(
        d,
        "NetworkDriver.Join",
        json!({"NetworkID": "g", "EndpointID": "abcdefabcdef0011"}),
    )
    .await;
    assert_eq!(join["Gateway"], "169.254.1.1");
    assert_eq!(
        join["StaticRoutes"],
        json!([{"Destination": "169.254.1.1/32", "RouteType": 1}])
    );
    let host = s.fake.link("weftdkabcdefabc").expect("host veth");
    assert_eq!(host.info.mac.unwrap().to_string(), ROUTED_HOST_MAC);
    assert_eq!(
        s.fake
            .setting("/proc/sys/net/ipv4/conf/weftdkabcdefabc/proxy_arp")
            .as_deref(),
        Some("1")
    );
    let r = s
        .fake
        .routes()
        .into_iter()
        .find(|r| r.route.dst == "10.60.0.7/32".parse().unwrap())
        .expect("/32");
    assert!(
        !r.weft,
        "the /32 is the attachment's, not the agent's plan's"
    );
    assert!(
        s.fake
            .links_in(None)
            .iter()
            .all(|l| !l.info.name.starts_with("weftbr-")),
        "no segment for routed"
    );
}

#[tokio::test]
async fn a_network_known_from_another_host_is_bound_by_subnet() {
    let s = setup().await;
    let d = &s.driver;
    let req = weft_alloc::named::NetworkRequest {
        name: "blue".into(),
        subnet: "10.50.0.0/24".parse().unwrap(),
        gateway: None,
        mode: Mode::Overlay,
        vni: Some(5000),
        internal: false,
    };
    d.registry.create_network(&req).await.unwrap();
    // The sync creates Docker's copy; the driver binds it at once.
    ok(
        d,
        "NetworkDriver.CreateNetwork",
        create_network("x", "10.50.0.0/24", Some("overlay")),
    )
    .await;
    assert_eq!(
        d.local.lock().unwrap().names.get("x").map(String::as_str),
        Some("blue")
    );
    assert!(d.local.lock().unwrap().pending.is_empty());
    // A copy that disagrees (another mode) is refused, named.
    let e = call(
        d,
        "NetworkDriver.CreateNetwork",
        create_network("y", "10.50.0.0/24", Some("routed")),
    )
    .await
    .unwrap_err();
    assert!(e.contains("belongs to network \"blue\""), "{e}");
}

#[tokio::test]
async fn bad_requests_are_named_and_change_nothing() {
    let s = setup().await;
    let d = &s.driver;
    let before = s.fake.journal().len();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": "n", "IPv4Data": []}),
            "exactly one IPv4 subnet",
        ),
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": "n", "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.50.0.0/24"}]}),
            "--ipam-driver weft",
        ),
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": "n", "IPv4Data": [{"AddressSpace": "weft", "Pool": "10.50.0.0/24"}], "IPv6Data": [{"Pool": "fd00::/64"}]}),
            "IPv6",
        ),
        (
            "NetworkDriver.CreateNetwork",
            create_network("n", "10.50.0.0/24", Some("bridged")),
            "unknown mode \"bridged\"",
        ),
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": "n", "Options": {"com.docker.network.generic": {"colour": "red"}}, "IPv4Data": [{"AddressSpace": "weft", "Pool": "10.50.0.0/24"}]}),
            "unknown option \"colour\"",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": "nope", "EndpointID": "e", "Interface": {"Address": "10.50.0.2/24"}}),
            "unknown network nope",
        ),
        (
            "NetworkDriver.Join",
            json!({"NetworkID": "nope", "EndpointID": "e"}),
            "unknown network",
        ),
        (
            "NetworkDriver.Join",
            json!({"EndpointID": "e"}),
            "malformed request",
        ),
        (
            "NetworkDriver.Join",
            json!("just a string"),
            "malformed request",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"Pool": "10.244.1.0/24"}),
            "overlaps the cluster network",
        ),
        ("IpamDriver.RequestPool", json!({"Pool": ""}), "--subnet"),
        (
            "IpamDriver.RequestPool",
            json!({"Pool": "fd00::/64", "V6": true}),
            "IPv6",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"Pool": "10.50.0.0/33"}),
            "not an IPv4 prefix",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID": "10.99.0.0/24"}),
            "no Weft network has the subnet 10.99.0.0/24",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID": "weird"}),
            "unknown pool",
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": "10.50.0.0/24", "Address": "not-an-ip"}),
            "not an IPv4 address",
        ),
    ];
    for (method, body, want) in cases {
        let e = call(d, method, body.clone()).await.expect_err(method);
        assert!(
            e.contains(want),
            "{method} {body}: {e:?} should say {want:?}"
        );
    }
    let raw = d
        .call("NetworkDriver.CreateNetwork", b"{\"NetworkID\": ")
        .await
        .unwrap_err()
        .to_string();
    assert!(raw.contains("malformed request"), "{raw}");
    assert!(!weft_docker::driver::known("NetworkDriver.Frobnicate"));
    assert_eq!(s.fake.journal().len(), before, "no kernel change");
    assert!(
        d.registry.networks().await.unwrap().is_empty(),
        "no store change"
    );
    assert!(d.local.lock().unwrap().pending.is_empty());
}

#[test]
fn docker_veths_never_look_like_cni_ones() {
    // The CNI plugin names its host veths `weft` and 11 hex digits: ours carry a
    // character no hex digit is, so the sync's collection of stray `weftdk…` veths
    // can never take a CNI container's.
    for p in [
        weft_docker::driver::HOST_PREFIX,
        weft_docker::driver::PEER_PREFIX,
    ] {
        assert!(p[4..].chars().any(|c| !c.is_ascii_hexdigit()), "{p}");
    }
    let ours = weft_docker::driver::veth_name(weft_docker::driver::HOST_PREFIX, "0123456789abcdef");
    assert_eq!(ours, "weftdk012345678", "15 characters: IFNAMSIZ");
}

/// Published ports in Docker's order: ProgramExternalConnectivity after Join writes the
/// bindings into the endpoint's record (a port of Docker's choosing picked from its
/// dynamic range), EndpointOperInfo answers them, a second endpoint wanting a taken
/// host port is refused in Docker's words and records nothing, Revoke and DeleteEndpoint
/// clear them.
#[tokio::test]
async fn published_ports_are_kept_in_the_endpoint_record() {
    let s = setup().await;
    let d = &s.driver;
    ok(
        d,
        "NetworkDriver.CreateNetwork",
        create_network("n1", "10.50.0.0/24", None),
    )
    .await;
    register(d, "n1", "blue").await;
    for (ep, addr) in [
        ("e1aaaaaaaaaaaa", "10.50.0.2"),
        ("e2bbbbbbbbbbbb", "10.50.0.3"),
    ] {
        ok(
            d,
            "IpamDriver.RequestAddress",
            json!({"PoolID": "10.50.0.0/24", "Address": addr}),
        )
        .await;
        ok(d, "NetworkDriver.CreateEndpoint", json!({"NetworkID": "n1", "EndpointID": ep, "Interface": {"Address": format!("{addr}/24")}})).await;
        ok(
            d,
            "NetworkDriver.Join",
            json!({"NetworkID": "n1", "EndpointID": ep, "SandboxKey": "/x"}),
        )
        .await;
    }
    let portmap = |bindings: Value| json!({"com.docker.network.portmap": bindings});
    ok(
        d,
        "NetworkDriver.ProgramExternalConnectivity",
        json!({"NetworkID": "n1", "EndpointID": "e1aaaaaaaaaaaa", "Options": portmap(json!([
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": 0, "HostPortEnd": 0}
        ]))}),
    )
    .await;
    let record = |addr: &str| {
        let addr: std::net::Ipv4Addr = addr.parse().unwrap();
        async move {
            d.registry
                .endpoints("blue")
                .await
                .unwrap()
                .into_iter()
                .find(|(a, _)| *a == addr)
                .unwrap()
                .1
        }
    };
    let ports = record("10.50.0.2").await.ports;
    let shown: Vec<String> = ports
        .iter()
        .map(|p| format!("{}:{}->{}", p.proto, p.host_port, p.port))
        .collect();
    assert_eq!(shown, ["tcp:8080->80", "udp:49153->53"]);
    let info = ok(
        d,
        "NetworkDriver.EndpointOperInfo",
        json!({"NetworkID": "n1", "EndpointID": "e1aaaaaaaaaaaa"}),
    )
    .await;
    assert_eq!(
        info["Value"]["com.docker.network.portmap"][0]["HostPort"],
        8080
    );
    assert_eq!(
        info["Value"]["com.docker.network.portmap"][0]["IP"],
        "10.50.0.2"
    );

    let taken = call(
        d,
        "NetworkDriver.ProgramExternalConnectivity",
        json!({"NetworkID": "n1", "EndpointID": "e2bbbbbbbbbbbb", "Options": portmap(json!([
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}
        ]))}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        taken,
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    assert!(record("10.50.0.3").await.ports.is_empty());
    let bad = call(d, "NetworkDriver.ProgramExternalConnectivity", json!({"NetworkID": "n1", "EndpointID": "e2bbbbbbbbbbbb", "Options": portmap(json!([{"Proto": 6, "Port": 0}]))})).await.unwrap_err();
    assert!(bad.contains("malformed port binding"), "{bad}");

    ok(
        d,
        "NetworkDriver.RevokeExternalConnectivity",
        json!({"NetworkID": "n1", "EndpointID": "e1aaaaaaaaaaaa"}),
    )
    .await;
    assert!(record("10.50.0.2").await.ports.is_empty());
    // The freed port is the other endpoint's now; its deletion clears it too.
    ok(
        d,
        "NetworkDriver.ProgramExternalConnectivity",
        json!({"NetworkID": "n1", "EndpointID": "e2bbbbbbbbbbbb", "Options": portmap(json!([
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}
        ]))}),
    )
    .await;
    assert_eq!(record("10.50.0.3").await.ports.len(), 1);
    ok(
        d,
        "NetworkDriver.DeleteEndpoint",
        json!({"NetworkID": "n1", "EndpointID": "e2bbbbbbbbbbbb"}),
    )
    .await;
    assert!(record("10.50.0.3").await.ports.is_empty());
}
