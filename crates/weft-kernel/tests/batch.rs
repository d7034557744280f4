//! Route changes in batches, in a network namespace of the test's own: a thousand routes
//! added, replaced and removed through `Dataplane::apply_routes` (256 requests per
//! `sendmsg`), with one route the kernel refuses reported alone while the rest apply.
//! Needs root; skipped with one line otherwise.

use weft_kernel::prelude::*;
use weft_kernel::Linux;
use weft_plan::{Change, Route};
use weft_testkit::netns::{in_netns, sh};
use weft_testkit::require_root;

fn route(i: u32, via_last: u8, dev: u32) -> Route {
    let dst: ipnet::Ipv4Net = format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap();
    let via = format!("192.168.{}.{}", 1 + i / 250, via_last);
    Route::via(dst, via.parse::<std::net::Ipv4Addr>().unwrap(), dev)
}

#[test]
fn a_thousand_routes_in_batches_refusals_and_deltas() {
    require_root!("a_thousand_routes_in_batches_refusals_and_deltas");
    in_netns("batch", |name| async move {
        let k = Linux::connect().unwrap();
        let dev = k.link_index("eth0").await.unwrap().unwrap();
        let mut want: Vec<Route> = (1..=1000)
            .map(|i| route(i, 1 + (i % 250) as u8, dev))
            .collect();
        // Not on any connected network and not onlink: the kernel says no.
        let bad = Route::via(
            "172.31.0.0/24".parse::<ipnet::Ipv4Net>().unwrap(),
            "10.9.9.9".parse::<std::net::Ipv4Addr>().unwrap(),
            dev,
        );
        // The first change of the first chunk and the last of the last (whose
        // answer closes the chunk) are both refused.
        let bad_first = Route {
            dst: "1.2.3.0/24".parse().unwrap(),
            ..bad
        };
        want.push(bad);
        want.push(bad_first);
        let r = k.apply_routes(&want).await.unwrap();
        assert_eq!(r.applied.added, 1000);
        let failed: Vec<_> = r.applied.failed.iter().map(|(c, _)| *c).collect();
        assert_eq!(failed, [Change::Add(bad_first), Change::Add(bad)]);
        assert_eq!(k.weft_routes().await.unwrap().len(), 1000);

        // 300 next hops change (replace), 500 routes go (remove).
        want.truncate(1000);
        for r in want.iter_mut().take(300) {
            let std::net::IpAddr::V4(addr) = r.dst.addr() else {
                unreachable!("IPv4 routes only")
            };
            let via = format!("192.168.200.{}", 1 + addr.octets()[2] % 250);
            *r = Route::via(r.dst, via.parse::<std::net::Ipv4Addr>().unwrap(), dev);
        }
        want.truncate(500);
        let r = k.apply_routes(&want).await.unwrap();
        assert_eq!(
            (r.applied.added, r.applied.replaced, r.applied.removed),
            (0, 300, 500)
        );
        assert!(r.applied.failed.is_empty());
        let mut have = k.weft_routes().await.unwrap();
        have.sort();
        want.sort();
        assert_eq!(have, want, "the kernel holds exactly the plan");

        // A delta from the last plan, without reading the kernel first.
        let mut next = want.clone();
        next.drain(..10);
        next.extend((2001..=2010).map(|i| route(i, 7, dev)));
        let r = k.apply_route_delta(&next, &want).await.unwrap();
        assert_eq!(
            (r.applied.added, r.applied.replaced, r.applied.removed),
            (10, 0, 10)
        );
        let mut have = k.weft_routes().await.unwrap();
        have.sort();
        next.sort();
        assert_eq!(have, next);
        // Someone deleted a route the caller believes is there: refused, reported.
        let gone = next[0];
        sh(&["ip", "-n", &name, "route", "del", &gone.dst.to_string()]);
        let r = k.apply_route_delta(&next[1..], &next).await.unwrap();
        assert_eq!(r.applied.removed, 0);
        assert_eq!(r.applied.failed.len(), 1, "{:?}", r.applied.failed);
        assert_eq!(r.applied.failed[0].0, Change::Remove(gone));
    })
}
