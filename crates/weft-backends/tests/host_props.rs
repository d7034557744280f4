//! The host planner under arbitrary inputs: any leases, blocks with allocations on any
//! node (borrowed or not), routed and overlay named networks with endpoints anywhere,
//! on every backend that routes. Each origin's routes are in the one plan, and no
//! destination has two routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use weft_backends::host::{self, HostInputs, LocalSettings};
use weft_backends::networks::{NamedContext, PlannedEndpoint};
use weft_backends::{BackendSettings, NodeContext};
use weft_model::blocks::{Allocation, Block, Pool};
use weft_model::named::{Endpoint, Mode, NamedNetwork};
use weft_model::{Lease, LeaseAttrs, NetworkConfig};
use weft_plan::iface::ExternalInterface;

/// Node `i` (0 is this one) at 192.168.1.(i+1), holding 10.244.(i+1).0/24.
fn node_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1, i + 1)
}

fn lease(i: u8, backend: &str) -> Lease {
    Lease {
        subnet: Ipv4Net::new(Ipv4Addr::new(10, 244, i + 1, 0), 24).unwrap(),
        ipv6_subnet: None,
        attrs: LeaseAttrs {
            labels: Default::default(),
            public_ip: node_ip(i),
            public_ipv6: None,
            backend_type: backend.into(),
            backend_data: serde_json::Value::Null,
            backend_v6_data: serde_json::Value::Null,
        },
        store_lease: Some(1),
        mod_revision: 1,
    }
}

/// Blocks of 10.248.0.0/24 (/28s): (block index, holder, allocations as (offset, user)).
/// Allocations as (offset, user, also a Docker endpoint on the pool-backed network).
type Blocks = Vec<(u8, u8, Vec<(u8, u8, bool)>)>;
/// Named endpoints: (network 0..3, host byte, node, has a MAC).
type Endpoints = Vec<(u8, u8, u8, bool)>;

fn inputs() -> impl Strategy<Value = (usize, u8, Blocks, Endpoints)> {
    (
        0usize..3,
        1u8..6,
        prop::collection::vec(
            (
                0u8..16,
                0u8..6,
                prop::collection::vec((0u8..16, 0u8..6, any::<bool>()), 0..4),
            ),
            0..8,
        ),
        prop::collection::vec((0u8..3, 2u8..60, 0u8..6, any::<bool>()), 0..12),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_origin_once_and_one_route_per_destination(
        (backend_idx, nodes, blocks, endpoints) in inputs(),
        between in any::<bool>(),
    ) {
        let backend_name = ["host-gw", "vxlan", "bgp"][backend_idx];
        let cfg = NetworkConfig::parse(
            format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"{backend_name}"}}}}"#).as_bytes(),
        ).unwrap();
        let backend = weft_backends::build(&cfg, &BackendSettings {
            public_ip: node_ip(0),
            public_ipv6: None,
            tx_checksum_off: false,
            ipip_user_space: false,
        });
        // Nodes 0..nodes hold leases; higher ones (named by blocks and endpoints) do not.
        let leases: Vec<Lease> = (0..nodes).map(|i| lease(i, backend_name)).collect();
        let node = NodeContext {
            external: ExternalInterface {
                index: 7,
                name: "eth0".into(),
                mtu: 1500,
                addr: node_ip(0),
                network: "192.168.1.0/24".parse().unwrap(),
                ipv6: None,
            },
            lease: leases[0].clone(),
            overlay: Some(9),
            overlay6: None,
            learned: Vec::new(),
        };
        let blocks_in = blocks.clone();
        let mut by_cidr: BTreeMap<Ipv4Net, Block> = BTreeMap::new();
        for (idx, holder, allocs) in &blocks {
            let cidr = Ipv4Net::new(Ipv4Addr::new(10, 248, 0, idx * 16), 28).unwrap();
            let b = by_cidr.entry(cidr).or_insert_with(|| Block::claimed(cidr, "p".into(), node_ip(*holder)));
            for (off, user, _) in allocs {
                b.allocations.insert(
                    Ipv4Addr::from(u32::from(cidr.network()) + u32::from(*off)),
                    Allocation { handle: format!("h/{off}"), node: node_ip(*user) },
                );
            }
        }
        let blocks: Vec<Block> = by_cidr.into_values().collect();
        let pools = [Pool {
            name: "p".into(),
            cidr: "10.248.0.0/24".parse().unwrap(),
            block_size: 28,
            nat_outgoing: true,
            disabled: false,
        }];
        // Network 0 routed on its own subnet, 1 routed on the pool (its endpoints may
        // be blocks' borrowed addresses too), 2 overlay.
        let networks = vec![
            net("red", "10.60.0.0/24", Mode::Routed, 0),
            net("pooled", "10.248.0.0/24", Mode::Routed, 0),
            net("blue", "10.50.0.0/24", Mode::Overlay, 4096),
        ];
        let mut eps: BTreeMap<(String, Ipv4Addr), PlannedEndpoint> = BTreeMap::new();
        for (n, host, on, mac) in &endpoints {
            let network = &networks[*n as usize];
            let ip = Ipv4Addr::from(u32::from(network.subnet.network()) + u32::from(*host));
            eps.insert((network.name.clone(), ip), PlannedEndpoint {
                network: network.name.clone(),
                ip,
                endpoint: Endpoint {
                    node: node_ip(*on),
                    endpoint_id: format!("e{host}"),
                    mac: mac.then(|| format!("02:00:00:00:00:{host:02x}")),
                    host_iface: format!("wv{host}"),
                    ports: Vec::new(),
                    container: String::new(),
                    names: Vec::new(),
                },
            });
        }
        // Docker's routed mode on a pool: the address is a block allocation and an
        // endpoint of the pool-backed network alike, on the node that uses it (a
        // borrowed one is then a borrowed block address and a routed container).
        for b in &blocks {
            for (off, user, docker) in blocks_in.iter().filter(|(i, ..)| {
                Ipv4Net::new(Ipv4Addr::new(10, 248, 0, i * 16), 28).unwrap() == b.cidr
            }).flat_map(|(_, _, a)| a) {
                if !docker {
                    continue;
                }
                let ip = Ipv4Addr::from(u32::from(b.cidr.network()) + u32::from(*off));
                if b.allocations.get(&ip).map(|a| a.node) != Some(node_ip(*user)) {
                    continue; // a later allocation of the same address won
                }
                eps.insert(("pooled".into(), ip), PlannedEndpoint {
                    network: "pooled".into(),
                    ip,
                    endpoint: Endpoint {
                        node: node_ip(*user),
                        endpoint_id: format!("d{ip}"),
                        mac: None,
                        host_iface: format!("wd{off}"),
                        ports: Vec::new(),
                        container: String::new(),
                        names: Vec::new(),
                    },
                });
            }
        }
        let endpoints: Vec<PlannedEndpoint> = eps.into_values().collect();
        let inputs = HostInputs {
            config: &cfg,
            node: &node,
            leases: &leases,
            held: &[],
            networks: &networks,
            endpoints: &endpoints,
            blocks: &blocks,
            pools: &pools,
            local: LocalSettings::default(),
            between_networks: between,
        };
        let plan = host::plan(backend.as_ref(), &inputs);

        // No destination twice, and every route's origin known.
        let dsts: BTreeSet<ipnet::IpNet> = plan.routes.iter().map(|r| r.dst).collect();
        prop_assert_eq!(dsts.len(), plan.routes.len(), "two routes for one destination: {:?}", plan.routes);
        prop_assert_eq!(plan.origins.keys().copied().collect::<BTreeSet<_>>(), dsts.clone());

        // Every origin's routes are there, each once.
        let backend_routes = backend.plan(&node, &leases).routes;
        let ctx = NamedContext {
            public_ip: node_ip(0),
            underlay: 7,
            underlay_mtu: 1500,
            peers: &leases,
            backend_routes: &backend_routes,
            announces: backend.bgp().is_some(),
            between,
        };
        let named = weft_backends::networks::plan(&ctx, &networks, &endpoints);
        let of_blocks = weft_backends::blocks::plan(&ctx, &blocks);
        for (origin, routes) in [
            ("backend", &backend_routes),
            ("named", &named.routes),
            ("blocks", &of_blocks.routes),
        ] {
            for r in routes.iter() {
                prop_assert!(dsts.contains(&r.dst), "{} route {} is missing", origin, r);
            }
        }
        // The backend's own routes are taken as they are (never displaced).
        for r in &backend_routes {
            prop_assert!(plan.routes.contains(r), "backend route {} displaced", r);
        }
        // Every segment is a network with an endpoint here.
        prop_assert_eq!(plan.segments.len(), named.segments.len());
    }
}

fn net(name: &str, subnet: &str, mode: Mode, vni: u32) -> NamedNetwork {
    let subnet: Ipv4Net = subnet.parse().unwrap();
    NamedNetwork {
        name: name.into(),
        gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
        subnet,
        mode,
        vni,
        internal: false,
    }
}
