//! The planner under arbitrary store contents: random leases of any size, inside and
//! outside the network, overlapping each other and the nodes' own subnets. After the
//! screening every node applies (`weft_model::screen`), the routes a node plans never
//! cover its own subnet, never give one address two next hops, and are the same on
//! every node but for each node's own subnet.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use weft_backends::{BackendSettings, NodeContext};
use weft_model::screen::screen;
use weft_model::{Lease, LeaseAttrs, NetworkConfig};
use weft_plan::iface::ExternalInterface;
use weft_plan::Route;

fn lease(subnet: Ipv4Net, ip: Ipv4Addr, ttl: bool, rev: i64) -> Lease {
    Lease {
        subnet,
        ipv6_subnet: None,
        attrs: LeaseAttrs {
            labels: Default::default(),
            public_ip: ip,
            public_ipv6: None,
            backend_type: "host-gw".into(),
            backend_data: serde_json::Value::Null,
            backend_v6_data: serde_json::Value::Null,
        },
        store_lease: ttl.then_some(1),
        mod_revision: rev,
    }
}

/// A lease anywhere in 10.240.0.0/12 (the network is 10.244.0.0/16), of any size
/// from /14 to /28, claimed or reserved, naming an address on the segment that none of
/// the real nodes has (a lease naming a real node's address is that node's, stale).
fn any_lease() -> impl Strategy<Value = (u32, u8, u8, bool)> {
    (0u32..(1 << 16), 14u8..=28, 100u8..=250, any::<bool>())
}

fn node(lease: &Lease) -> NodeContext {
    NodeContext {
        external: ExternalInterface {
            index: 7,
            name: "eth0".into(),
            mtu: 1500,
            addr: lease.attrs.public_ip,
            network: "192.168.1.0/24".parse().unwrap(),
            ipv6: None,
        },
        lease: lease.clone(),
        overlay: None,
        overlay6: None,
        learned: Vec::new(),
    }
}

/// Whether two prefixes of any family share an address.
fn overlap_any(a: &ipnet::IpNet, b: &ipnet::IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A node's routes but the one to `skip`, as text.
fn without(routes: &[Route], skip: &Ipv4Net) -> BTreeSet<String> {
    routes
        .iter()
        .filter(|r| r.dst != ipnet::IpNet::V4(*skip))
        .map(|r| r.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_store_content_makes_a_node_route_its_own_subnet_away(
        garbage in proptest::collection::vec(any_lease(), 0..40),
        nodes in proptest::collection::btree_set(0u8..=255, 2..5),
    ) {
        let cfg = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
        ).unwrap();
        // The real nodes hold /24s of the pool, at 192.168.1.1 and up.
        let mut leases: Vec<Lease> = nodes
            .iter()
            .enumerate()
            .map(|(i, third)| {
                let subnet = Ipv4Net::new(Ipv4Addr::new(10, 244, *third, 0), 24).unwrap();
                lease(subnet, Ipv4Addr::new(192, 168, 1, 1 + i as u8), true, i as i64)
            })
            .collect();
        let own_count = leases.len();
        for (n, (offset, len, host, ttl)) in garbage.into_iter().enumerate() {
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 0)) + (offset << 4));
            let subnet = Ipv4Net::new(addr, len).unwrap().trunc();
            if leases.iter().any(|l| l.subnet == subnet) {
                continue; // the store holds one key per subnet
            }
            leases.push(lease(subnet, Ipv4Addr::new(192, 168, 1, host), ttl, 100 + n as i64));
        }
        let standing = screen(&cfg, &leases).standing;
        let settings = BackendSettings {
            public_ip: Ipv4Addr::new(192, 168, 1, 1),
            public_ipv6: None,
            tx_checksum_off: false,
            ipip_user_space: false,
        };
        let backend = weft_backends::build(&cfg, &settings);
        let mut plans = Vec::new();
        for own in &leases[..own_count] {
            let plane = backend.plan(&node(own), &standing);
            for r in &plane.routes {
                prop_assert!(!overlap_any(&r.dst, &own.subnet.into()), "{} covers own {}", r, own.subnet);
            }
            for (i, a) in plane.routes.iter().enumerate() {
                for b in &plane.routes[i + 1..] {
                    prop_assert!(!overlap_any(&a.dst, &b.dst), "{} and {} share addresses", a, b);
                }
            }
            plans.push((own.subnet, plane.routes));
        }
        for (own_a, a) in &plans {
            for (own_b, b) in &plans {
                prop_assert_eq!(without(a, own_b), without(b, own_a));
            }
        }
    }
}
