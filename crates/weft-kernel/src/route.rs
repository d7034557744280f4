//! Weft's routes as plain values, and the diff that turns what the kernel has into
//! what it should have.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The route protocol number that marks a route as Weft's (`ip route` shows `proto 77`).
/// Routes with any other protocol are never touched.
pub const WEFT_PROTO: u8 = 77;

/// One IPv4 route in the main table, as Weft programs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub dst: Ipv4Net,
    /// The next hop; `None` for a device route.
    pub via: Option<Ipv4Addr>,
    /// Output interface index; 0 for a blackhole route (see [`Route::blackhole`]).
    pub dev: u32,
    /// Next hop reachable on `dev` without a covering connected route (VXLAN's style).
    pub onlink: bool,
}

impl Route {
    /// A route that drops what matches it (Calico's route for a node's own block: traffic
    /// for an address no container holds stops here instead of following a default route).
    pub fn blackhole(dst: Ipv4Net) -> Route {
        Route {
            dst,
            via: None,
            dev: 0,
            onlink: false,
        }
    }

    pub fn is_blackhole(&self) -> bool {
        self.dev == 0
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_blackhole() {
            return write!(f, "blackhole {}", self.dst);
        }
        write!(f, "{}", self.dst)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        write!(f, " dev #{}", self.dev)?;
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// One change to a route.
pub type RouteChange = crate::diff::Change<Route>;

/// The changes that turn `current` (Weft's routes in the kernel) into `desired`, keyed by
/// destination (the kernel holds one route per prefix in the main table).
pub fn plan(desired: &[Route], current: &[Route]) -> Vec<RouteChange> {
    crate::diff::diff(
        desired.iter().map(|r| (r.dst, *r)),
        current.iter().map(|r| (r.dst, *r)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(dst: &str, via: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            via: Some(via.parse().unwrap()),
            dev: 2,
            onlink: false,
        }
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
}
