//! Block IPAM's routes (pure): what this node needs for the blocks every node holds
//! (see [`weft_model::blocks`]).
//!
//! - a `blackhole` for each block this node holds, so traffic to an unused address of
//!   it dies here instead of looping between nodes (Calico's `blackhole … proto bird`);
//! - each other node's blocks routed the way the backend reaches that node (its route to
//!   the node's subnet, narrowed to the block); with bgp, announced by the holder and
//!   learned instead;
//! - each borrowed address (an allocation used on another node than its block's) as a
//!   /32 toward the node that uses it, more specific than the block's route; with bgp,
//!   announced by the borrower.
//!
//! The /32 of a container on this node belongs to its attachment, as in routed mode.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_model::blocks::Block;
use weft_plan::Route;

use crate::networks::{toward, NamedContext};

/// What the blocks ask of this node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockPlan {
    pub routes: Vec<Route>,
    /// For the BGP speaker: the blocks this node holds and the addresses it borrowed.
    pub announce: Vec<Ipv4Net>,
    /// Blocks or borrowed addresses that get no route, and why.
    pub unreachable: Vec<(Ipv4Net, String)>,
}

/// The plan (pure): see the module's documentation.
pub fn plan(ctx: &NamedContext, blocks: &[Block]) -> BlockPlan {
    let me = ctx.public_ip;
    let mut out = BlockPlan::default();
    let toward_node = |dst: Ipv4Net, node: Ipv4Addr, out: &mut BlockPlan| match toward(ctx, node) {
        Ok(kind) => out.routes.push(Route {
            dst: dst.into(),
            kind,
        }),
        Err(why) => out.unreachable.push((dst, why.to_string())),
    };
    for b in blocks
        .iter()
        .filter(|b| !b.releasing || !b.allocations.is_empty())
    {
        if b.node == me {
            out.routes.push(Route::blackhole(b.cidr));
            if ctx.announces {
                out.announce.push(b.cidr);
            }
        } else if !ctx.announces {
            toward_node(b.cidr, b.node, &mut out);
        }
        for (ip, a) in b.allocations.iter().filter(|(_, a)| a.node != b.node) {
            let dst = Ipv4Net::from(*ip);
            if a.node == me {
                if ctx.announces {
                    out.announce.push(dst);
                }
            } else if !ctx.announces {
                toward_node(dst, a.node, &mut out);
            }
        }
    }
    out.routes.sort();
    out.announce.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{block, lease};

    #[test]
    fn blackholes_for_ours_routes_for_theirs_and_borrowed_32s() {
        let peers = [lease("10.244.2.0/24", "192.168.1.2", "host-gw")];
        let routes = [Route::via(
            "10.244.2.0/24".parse::<Ipv4Net>().unwrap(),
            "192.168.1.2".parse::<std::net::Ipv4Addr>().unwrap(),
            7,
        )];
        let ctx = |announces| NamedContext {
            public_ip: "192.168.1.1".parse().unwrap(),
            underlay: 7,
            underlay_mtu: 1500,
            peers: &peers,
            backend_routes: &routes,
            announces,
            between: false,
        };
        let blocks = [
            // Ours, with an address node 2 borrowed.
            block(
                "10.248.0.0/26",
                "192.168.1.1",
                &[("10.248.0.1", "192.168.1.1"), ("10.248.0.5", "192.168.1.2")],
            ),
            // Node 2's, with an address we borrowed.
            block(
                "10.248.0.64/26",
                "192.168.1.2",
                &[("10.248.0.70", "192.168.1.1")],
            ),
            // A node without a lease.
            block("10.248.0.128/26", "192.168.9.9", &[]),
        ];
        let p = plan(&ctx(false), &blocks);
        let via2 = |d: &str| {
            Route::via(
                d.parse::<ipnet::Ipv4Net>().unwrap(),
                "192.168.1.2".parse::<std::net::Ipv4Addr>().unwrap(),
                7,
            )
        };
        assert_eq!(
            p.routes,
            {
                let mut r = vec![
                    Route::blackhole("10.248.0.0/26".parse::<ipnet::Ipv4Net>().unwrap()),
                    via2("10.248.0.5/32"),
                    via2("10.248.0.64/26"),
                ];
                r.sort();
                r
            },
            "the /32 we borrowed is our attachment's, not a planned route"
        );
        assert_eq!(p.unreachable.len(), 1);
        let p = plan(&ctx(true), &blocks);
        assert_eq!(
            p.routes,
            [Route::blackhole(
                "10.248.0.0/26".parse::<ipnet::Ipv4Net>().unwrap()
            )]
        );
        let announced: Vec<String> = p.announce.iter().map(|n| n.to_string()).collect();
        assert_eq!(announced, ["10.248.0.0/26", "10.248.0.70/32"]);
    }
}
