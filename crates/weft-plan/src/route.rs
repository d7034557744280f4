//! Weft's routes as plain values, and the diff that turns what the kernel has into
//! what it should have.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::diff::{diff, Change};

/// The route protocol number that marks a route as Weft's (`ip route` shows `proto 77`).
/// Routes with any other protocol are never touched.
pub const WEFT_PROTO: u8 = 77;

/// The metric of Weft's blackhole routes: behind any other route for the same prefix
/// (the bridge's connected route in bridge mode), so a blackhole only catches what
/// nothing else takes.
pub const BLACKHOLE_METRIC: u32 = 100_000;

/// Where a route sends what matches it. Each kind is one shape of kernel route; there is
/// no combination of fields that means nothing (a gateway without a device, a blackhole
/// with one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// Via a gateway inside a network connected to `dev` (host-gw's route to a peer).
    Via { gateway: IpAddr, dev: u32 },
    /// Via a gateway reachable on `dev` although no connected route covers it (VXLAN's
    /// and IP-in-IP's style: the gateway is the peer's subnet `.0` or its public IP).
    OnLink { gateway: IpAddr, dev: u32 },
    /// Straight out of `dev`, no gateway (link scope): a container's /32 on its veth.
    Device { dev: u32 },
    /// Dropped (Calico's route for a node's own block: traffic for an address no
    /// container holds stops here instead of following a default route).
    Blackhole,
}

/// One route in the main table, as Weft programs it, of either family. A gateway of
/// the other family than the destination is not a shape Weft writes (the constructors
/// take both from one backend's decision, which keeps them apart per family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub dst: IpNet,
    pub kind: RouteKind,
}

impl Route {
    pub fn via(dst: impl Into<IpNet>, gateway: impl Into<IpAddr>, dev: u32) -> Route {
        Route {
            dst: dst.into(),
            kind: RouteKind::Via {
                gateway: gateway.into(),
                dev,
            },
        }
    }

    pub fn onlink(dst: impl Into<IpNet>, gateway: impl Into<IpAddr>, dev: u32) -> Route {
        Route {
            dst: dst.into(),
            kind: RouteKind::OnLink {
                gateway: gateway.into(),
                dev,
            },
        }
    }

    pub fn device(dst: impl Into<IpNet>, dev: u32) -> Route {
        Route {
            dst: dst.into(),
            kind: RouteKind::Device { dev },
        }
    }

    pub fn blackhole(dst: impl Into<IpNet>) -> Route {
        Route {
            dst: dst.into(),
            kind: RouteKind::Blackhole,
        }
    }

    /// Whether the route is an IPv6 one.
    pub fn is_v6(&self) -> bool {
        matches!(self.dst, IpNet::V6(_))
    }

    /// The gateway, for the kinds that have one.
    pub fn gateway(&self) -> Option<IpAddr> {
        match self.kind {
            RouteKind::Via { gateway, .. } | RouteKind::OnLink { gateway, .. } => Some(gateway),
            RouteKind::Device { .. } | RouteKind::Blackhole => None,
        }
    }

    /// The output interface, for the kinds that have one.
    pub fn dev(&self) -> Option<u32> {
        match self.kind {
            RouteKind::Via { dev, .. }
            | RouteKind::OnLink { dev, .. }
            | RouteKind::Device { dev } => Some(dev),
            RouteKind::Blackhole => None,
        }
    }

    pub fn is_blackhole(&self) -> bool {
        self.kind == RouteKind::Blackhole
    }

    /// The route in `ip route`'s words, with devices named by `name` (an index when
    /// it does not know one).
    pub fn describe(&self, name: impl Fn(u32) -> Option<String>) -> String {
        let dev = |i: u32| name(i).unwrap_or_else(|| format!("#{i}"));
        match self.kind {
            RouteKind::Blackhole => format!("blackhole {}", self.dst),
            RouteKind::Via { gateway, dev: d } => {
                format!("{} via {gateway} dev {}", self.dst, dev(d))
            }
            RouteKind::OnLink { gateway, dev: d } => {
                format!("{} via {gateway} dev {} onlink", self.dst, dev(d))
            }
            RouteKind::Device { dev: d } => format!("{} dev {}", self.dst, dev(d)),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(|_| None))
    }
}

/// One change to a route.
pub type RouteChange = Change<Route>;

/// The changes that turn `current` (Weft's routes in the kernel) into `desired`, keyed by
/// destination (the kernel holds one route per prefix in the main table).
pub fn plan(desired: &[Route], current: &[Route]) -> Vec<RouteChange> {
    diff(
        desired.iter().map(|r| (r.dst, *r)),
        current.iter().map(|r| (r.dst, *r)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(dst: &str, via: &str) -> Route {
        Route::via(
            dst.parse::<IpNet>().unwrap(),
            via.parse::<IpAddr>().unwrap(),
            2,
        )
    }

    #[test]
    fn identical_sets_need_nothing() {
        let set = [
            r("10.244.1.0/24", "192.168.1.1"),
            r("10.244.2.0/24", "192.168.1.2"),
        ];
        assert!(plan(&set, &set).is_empty());
        let reversed: Vec<_> = set.iter().rev().copied().collect();
        assert!(plan(&set, &reversed).is_empty(), "order does not matter");
    }

    #[test]
    fn adds_replaces_removes() {
        let current = [
            r("10.244.1.0/24", "192.168.1.1"),
            r("10.244.2.0/24", "192.168.1.2"),
        ];
        let desired = [
            r("10.244.2.0/24", "192.168.1.9"),
            r("10.244.3.0/24", "192.168.1.3"),
        ];
        assert_eq!(
            plan(&desired, &current),
            [
                RouteChange::Remove(current[0]),
                RouteChange::Replace(desired[0]),
                RouteChange::Add(desired[1]),
            ]
        );
    }

    #[test]
    fn empty_desired_removes_everything_weft_owns() {
        let current = [r("10.244.1.0/24", "192.168.1.1")];
        assert_eq!(plan(&[], &current), [RouteChange::Remove(current[0])]);
    }

    #[test]
    fn a_kind_change_is_a_replacement() {
        let dst: IpNet = "10.244.2.0/24".parse().unwrap();
        let direct = Route::via(dst, "192.168.1.2".parse::<IpAddr>().unwrap(), 2);
        let encap = Route::onlink(dst, "10.244.2.0".parse::<IpAddr>().unwrap(), 9);
        assert_eq!(plan(&[encap], &[direct]), [RouteChange::Replace(encap)]);
        assert_eq!(
            plan(&[Route::blackhole(dst)], &[direct]),
            [RouteChange::Replace(Route::blackhole(dst))]
        );
    }

    #[test]
    fn shown_as_ip_route_shows_them() {
        let dst: IpNet = "10.244.2.0/24".parse().unwrap();
        let gw: IpAddr = "10.244.2.0".parse().unwrap();
        let name = |i| (i == 9).then(|| "weft.1".to_string());
        assert_eq!(
            Route::onlink(dst, gw, 9).describe(name),
            "10.244.2.0/24 via 10.244.2.0 dev weft.1 onlink"
        );
        assert_eq!(Route::device(dst, 3).to_string(), "10.244.2.0/24 dev #3");
        assert_eq!(Route::blackhole(dst).to_string(), "blackhole 10.244.2.0/24");
        let v6: IpNet = "fd00:10:244:2::/64".parse().unwrap();
        let gw6: IpAddr = "fd00:77::2".parse().unwrap();
        assert_eq!(
            Route::via(v6, gw6, 9).describe(name),
            "fd00:10:244:2::/64 via fd00:77::2 dev weft.1"
        );
        assert!(Route::via(v6, gw6, 9).is_v6() && !Route::blackhole(dst).is_v6());
    }
}
