//! What `weftctl ipam check` finds wrong with block IPAM, decided purely from the
//! blocks, the nodes whose lease stands, and what each agent reports of its own host:
//! blocks and addresses of nodes that are gone, addresses whose container interface is
//! gone (a killed ADD, a missed DEL), and blocks a node has no route for. Only what is
//! found here may be released by `weftctl ipam release`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::blocks::{Block, Pool};
use crate::registry::NodeStatus;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A block whose node has no lease: released once it is empty.
    BlockNodeGone { block: Ipv4Net, node: Ipv4Addr },
    /// An address used on a node that has no lease.
    AddressNodeGone {
        ip: Ipv4Addr,
        handle: String,
        node: Ipv4Addr,
    },
    /// An address its node reports without a container interface.
    Orphan {
        ip: Ipv4Addr,
        handle: String,
        node: Ipv4Addr,
    },
    /// A node reports no route for a block or borrowed address.
    NoRoute {
        node: Ipv4Addr,
        prefix: Ipv4Net,
        reason: String,
    },
}

impl Problem {
    /// The address a finding lets `ipam release` free, with its handle.
    pub fn releasable_address(&self) -> Option<(Ipv4Addr, &str)> {
        match self {
            Problem::AddressNodeGone { ip, handle, .. } | Problem::Orphan { ip, handle, .. } => {
                Some((*ip, handle))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::BlockNodeGone { block, node } => {
                write!(f, "block {block}: its node {node} has no lease (gone)")
            }
            Problem::AddressNodeGone { ip, handle, node } => {
                write!(
                    f,
                    "address {ip} ({handle}): its node {node} has no lease (gone)"
                )
            }
            Problem::Orphan { ip, handle, node } => write!(
                f,
                "address {ip} ({handle}): node {node} has no container interface for it"
            ),
            Problem::NoRoute {
                node,
                prefix,
                reason,
            } => write!(f, "route: node {node} has no route for {prefix}: {reason}"),
        }
    }
}

/// Every finding, in a stable order.
pub fn check(
    pools: &[Pool],
    blocks: &[Block],
    alive: &BTreeSet<Ipv4Addr>,
    statuses: &[NodeStatus],
) -> Vec<Problem> {
    let mut out = Vec::new();
    for b in blocks {
        if !alive.contains(&b.node) {
            out.push(Problem::BlockNodeGone {
                block: b.cidr,
                node: b.node,
            });
        }
        for (ip, a) in &b.allocations {
            if !alive.contains(&a.node) {
                out.push(Problem::AddressNodeGone {
                    ip: *ip,
                    handle: a.handle.clone(),
                    node: a.node,
                });
            }
        }
    }
    let held = |ip: Ipv4Addr, handle: &str| {
        blocks
            .iter()
            .any(|b| b.allocations.get(&ip).is_some_and(|a| a.handle == handle))
    };
    for s in statuses {
        let Some(node) = s.public_ip.filter(|n| alive.contains(n)) else {
            continue;
        };
        for o in s.orphans.iter().filter(|o| held(o.ip, &o.handle)) {
            out.push(Problem::Orphan {
                ip: o.ip,
                handle: o.handle.clone(),
                node,
            });
        }
        // A node's report outlives what it is about: a block released (or an address
        // given back) since is no finding.
        let still_stored = |prefix: &Ipv4Net| {
            blocks.iter().any(|b| {
                b.cidr == *prefix
                    || (prefix.prefix_len() == 32 && b.allocations.contains_key(&prefix.addr()))
            })
        };
        for u in &s.unreachable {
            let ipnet::IpNet::V4(subnet) = u.subnet else {
                continue;
            };
            if pools.iter().any(|p| p.cidr.contains(&subnet)) && still_stored(&subnet) {
                out.push(Problem::NoRoute {
                    node,
                    prefix: subnet,
                    reason: u.reason.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::Allocation;
    use crate::registry::{Orphan, Unreachable};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn gone_nodes_orphans_and_missing_routes_are_found_and_nothing_else() {
        let pools = [Pool {
            name: "p".into(),
            cidr: "10.248.0.0/16".parse().unwrap(),
            block_size: 26,
            nat_outgoing: false,
            disabled: false,
        }];
        let alloc = |h: &str, n: &str| Allocation {
            handle: h.into(),
            node: ip(n),
        };
        let live = Block {
            cidr: "10.248.0.0/26".parse().unwrap(),
            pool: "p".into(),
            node: ip("192.0.2.1"),
            allocations: [
                (ip("10.248.0.1"), alloc("net/a/eth0", "192.0.2.1")),
                (ip("10.248.0.2"), alloc("net/b/eth0", "192.0.2.1")),
                (ip("10.248.0.3"), alloc("net/c/eth0", "192.0.2.9")),
            ]
            .into(),
            releasing: false,
        };
        let gone = Block {
            cidr: "10.248.0.64/26".parse().unwrap(),
            pool: "p".into(),
            node: ip("192.0.2.9"),
            allocations: Default::default(),
            releasing: false,
        };
        // Held by a live node that another node reports it has no route for.
        let unrouted = Block {
            cidr: "10.248.1.0/26".parse().unwrap(),
            pool: "p".into(),
            node: ip("192.0.2.1"),
            allocations: Default::default(),
            releasing: false,
        };
        let alive: BTreeSet<Ipv4Addr> = [ip("192.0.2.1")].into();
        let status = NodeStatus {
            policy: None,
            public_ip: Some(ip("192.0.2.1")),
            backend: "host-gw".into(),
            unreachable: vec![
                Unreachable {
                    subnet: "10.248.1.0/26".parse().unwrap(),
                    reason: "no lease".into(),
                },
                Unreachable {
                    subnet: "10.244.9.0/24".parse().unwrap(),
                    reason: "not a pool's".into(),
                },
                // Released since the node reported it (`ipam release`): no finding.
                Unreachable {
                    subnet: "10.248.2.0/26".parse().unwrap(),
                    reason: "no lease".into(),
                },
            ],
            orphans: vec![
                Orphan {
                    ip: ip("10.248.0.2"),
                    handle: "net/b/eth0".into(),
                },
                // Released meanwhile: no longer a finding.
                Orphan {
                    ip: ip("10.248.0.5"),
                    handle: "net/x/eth0".into(),
                },
            ],
        };
        let found: Vec<String> = check(&pools, &[live, gone, unrouted], &alive, &[status])
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "address 10.248.0.3 (net/c/eth0): its node 192.0.2.9 has no lease (gone)",
                "block 10.248.0.64/26: its node 192.0.2.9 has no lease (gone)",
                "address 10.248.0.2 (net/b/eth0): node 192.0.2.1 has no container interface for it",
                "route: node 192.0.2.1 has no route for 10.248.1.0/26: no lease",
            ]
        );
    }
}
