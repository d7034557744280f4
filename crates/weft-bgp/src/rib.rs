//! The routing decisions, as pure functions: which received path is best (RFC 4271
//! section 9.1, reduced to what a container network needs), what a route reflector
//! passes on (RFC 4456), and what each peer should be told.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::policy::{ExportPolicy, Own};
use crate::update::{AsSegment, Origin, PathAttributes};

/// How Weft relates to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKind {
    /// Another Weft node, full mesh (iBGP).
    Mesh,
    /// A route reflector's client (iBGP): what it sends is reflected to everyone.
    RrClient,
    /// A client's session to its route reflector (iBGP, not a client of ours).
    RouteReflector,
    /// A router outside the cluster, configured for every node.
    Global,
    /// A router outside the cluster, configured for this node only.
    NodeSpecific,
}

impl PeerKind {
    /// The names Calico's `node status` prints.
    pub fn label(self) -> &'static str {
        match self {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::RrClient => "route reflector client",
            PeerKind::RouteReflector => "route reflector",
            PeerKind::Global => "global",
            PeerKind::NodeSpecific => "node specific",
        }
    }
}

/// A path received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Shared by every prefix of the UPDATE that carried it: a 10,000-prefix table
    /// arrives in a dozen UPDATEs, and copying the attributes per prefix was most of
    /// the time spent taking it in.
    pub attrs: Arc<PathAttributes>,
    pub next_hop: Ipv4Addr,
    /// The peer it came from: address, BGP identifier, whether over eBGP, its kind.
    pub from: Ipv4Addr,
    pub from_id: Ipv4Addr,
    pub ebgp: bool,
    pub kind: PeerKind,
}

fn path_len(attrs: &PathAttributes) -> usize {
    attrs
        .as_path
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(a) => a.len(),
            AsSegment::Set(_) => 1,
        })
        .sum()
}

/// Orders paths best first: LOCAL_PREF, AS_PATH length, ORIGIN, eBGP over iBGP, the
/// lowest ORIGINATOR_ID or BGP identifier, the lowest peer address.
pub fn better(a: &Path, b: &Path) -> std::cmp::Ordering {
    let key = |p: &Path| {
        (
            std::cmp::Reverse(p.attrs.local_pref.unwrap_or(100)),
            path_len(&p.attrs),
            p.attrs.origin.unwrap_or(Origin::Incomplete),
            !p.ebgp,
            p.attrs.originator_id.unwrap_or(p.from_id),
            p.from,
        )
    };
    key(a).cmp(&key(b))
}

/// Whether a received path must be dropped as a loop: our AS in its AS_PATH, or (route
/// reflection) our identifier as originator or our cluster in its cluster list.
pub fn is_loop(
    attrs: &PathAttributes,
    local_as: u32,
    router_id: Ipv4Addr,
    cluster_id: Ipv4Addr,
) -> bool {
    let in_path = attrs.as_path.iter().any(|s| match s {
        AsSegment::Sequence(a) | AsSegment::Set(a) => a.contains(&local_as),
    });
    in_path || attrs.originator_id == Some(router_id) || attrs.cluster_list.contains(&cluster_id)
}

/// Every peer's received routes: peer address -> prefix -> path.
pub type AdjIn = BTreeMap<Ipv4Addr, BTreeMap<Ipv4Net, Path>>;

/// The best path for one prefix over every peer's received routes.
pub fn best_for<'a>(adj_in: &'a AdjIn, prefix: &Ipv4Net) -> Option<&'a Path> {
    adj_in
        .values()
        .filter_map(|routes| routes.get(prefix))
        .min_by(|a, b| better(a, b))
}

/// What this speaker is, for export decisions.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Reflects routes for its [`PeerKind::RrClient`] peers.
    pub route_reflector: bool,
    /// The reflection cluster's identifier (RFC 4456): the router id, or one shared by
    /// the reflectors of one cluster (Calico's `routeReflectorClusterID`).
    pub cluster_id: Ipv4Addr,
}

/// The peer routes are exported to.
#[derive(Debug, Clone, Copy)]
pub struct ExportTo<'a> {
    pub address: Ipv4Addr,
    pub kind: PeerKind,
    pub ebgp: bool,
    /// Our address on that session.
    pub next_hop_self: Ipv4Addr,
    /// Which of our own prefixes it gets, with which communities.
    pub policy: &'a ExportPolicy,
}

/// The routes one peer should have from us (prefix -> attributes), given our own
/// prefixes and the best paths.
pub fn export(
    local: &Local,
    own: &[Own],
    best: &BTreeMap<Ipv4Net, Path>,
    to: &ExportTo,
) -> BTreeMap<Ipv4Net, PathAttributes> {
    let (to_kind, to_ebgp) = (to.kind, to.ebgp);
    let mut out = BTreeMap::new();
    for o in own.iter().filter(|o| to.policy.kinds.contains(&o.kind)) {
        out.insert(
            o.prefix,
            PathAttributes {
                origin: Some(Origin::Igp),
                as_path: if to_ebgp {
                    vec![AsSegment::Sequence(vec![local.asn])]
                } else {
                    vec![]
                },
                next_hop: Some(to.next_hop_self),
                local_pref: (!to_ebgp).then_some(100),
                communities: to.policy.communities.iter().map(|c| c.0).collect(),
                large_communities: to.policy.large_communities.iter().map(|c| c.0).collect(),
                ..Default::default()
            },
        );
    }
    if local.route_reflector && !to_ebgp {
        for (prefix, path) in best {
            if out.contains_key(prefix) || path.ebgp || path.from == to.address {
                continue;
            }
            // RFC 4456 section 6: from a client, reflect to everyone; from a non-client,
            // to clients only.
            if path.kind != PeerKind::RrClient && to_kind != PeerKind::RrClient {
                continue;
            }
            let mut attrs = PathAttributes::clone(&path.attrs);
            attrs.next_hop = Some(path.next_hop);
            attrs.originator_id.get_or_insert(path.from_id);
            attrs.cluster_list.insert(0, local.cluster_id);
            out.insert(*prefix, attrs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::OwnKind;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn path(from: &str, kind: PeerKind, lp: Option<u32>, len: usize) -> Path {
        Path {
            attrs: Arc::new(PathAttributes {
                origin: Some(Origin::Igp),
                as_path: if len == 0 {
                    vec![]
                } else {
                    vec![AsSegment::Sequence(vec![65000; len])]
                },
                local_pref: lp,
                ..Default::default()
            }),
            next_hop: ip(from),
            from: ip(from),
            from_id: ip(from),
            ebgp: len > 0,
            kind,
        }
    }

    #[test]
    fn best_path_order() {
        let a = path("10.0.0.2", PeerKind::Mesh, Some(100), 0);
        let b = path("10.0.0.3", PeerKind::Global, None, 2);
        let c = path("10.0.0.1", PeerKind::Mesh, Some(200), 0);
        assert!(better(&a, &b).is_lt(), "shorter AS path");
        assert!(better(&c, &a).is_lt(), "higher LOCAL_PREF");
        let d = path("10.0.0.1", PeerKind::Mesh, Some(100), 0);
        assert!(better(&d, &a).is_lt(), "lower identifier breaks the tie");
        let mut adj = BTreeMap::new();
        let p: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        adj.insert(ip("10.0.0.2"), BTreeMap::from([(p, a.clone())]));
        adj.insert(ip("10.0.0.3"), BTreeMap::from([(p, b)]));
        assert_eq!(best_for(&adj, &p).unwrap().from, ip("10.0.0.2"));
        assert_eq!(best_for(&adj, &"10.244.9.0/24".parse().unwrap()), None);
    }

    #[test]
    fn loops_are_dropped() {
        let mut a = PathAttributes::default();
        assert!(!is_loop(&a, 64512, ip("1.1.1.1"), ip("1.1.1.1")));
        a.as_path = vec![AsSegment::Sequence(vec![65000, 64512])];
        assert!(is_loop(&a, 64512, ip("1.1.1.1"), ip("1.1.1.1")));
        let b = PathAttributes {
            originator_id: Some(ip("1.1.1.1")),
            ..Default::default()
        };
        assert!(is_loop(&b, 64512, ip("1.1.1.1"), ip("9.9.9.9")));
        let c = PathAttributes {
            cluster_list: vec![ip("9.9.9.9")],
            ..Default::default()
        };
        assert!(is_loop(&c, 64512, ip("1.1.1.1"), ip("9.9.9.9")));
    }

    #[test]
    fn export_own_and_reflected() {
        let local = Local {
            asn: 64512,
            router_id: ip("10.0.0.9"),
            route_reflector: true,
            cluster_id: ip("10.0.0.9"),
        };
        let own = [Own::new("10.244.9.0/24".parse().unwrap(), OwnKind::Subnet)];
        let policy = ExportPolicy::default();
        let to = |address: &str, kind, ebgp| ExportTo {
            address: ip(address),
            kind,
            ebgp,
            next_hop_self: ip("10.0.0.9"),
            policy: &policy,
        };
        let mut best = BTreeMap::new();
        let from_client = path("10.0.0.1", PeerKind::RrClient, Some(100), 0);
        let from_mesh = path("10.0.0.2", PeerKind::Mesh, Some(100), 0);
        best.insert("10.244.1.0/24".parse().unwrap(), from_client);
        best.insert("10.244.2.0/24".parse().unwrap(), from_mesh);
        // To another client: both (from a client and from a non-client).
        let to_client = export(
            &local,
            &own,
            &best,
            &to("10.0.0.3", PeerKind::RrClient, false),
        );
        assert_eq!(to_client.len(), 3);
        let r = &to_client[&"10.244.1.0/24".parse().unwrap()];
        assert_eq!(r.next_hop, Some(ip("10.0.0.1")), "next hop unchanged");
        assert_eq!(r.originator_id, Some(ip("10.0.0.1")));
        assert_eq!(r.cluster_list, [ip("10.0.0.9")]);
        // To a non-client: only what came from a client.
        let to_mesh = export(&local, &own, &best, &to("10.0.0.4", PeerKind::Mesh, false));
        assert_eq!(to_mesh.len(), 2);
        // Never back to where it came from; eBGP peers get only our own, AS prepended.
        let back = export(
            &local,
            &own,
            &best,
            &to("10.0.0.1", PeerKind::RrClient, false),
        );
        assert!(!back.contains_key(&"10.244.1.0/24".parse().unwrap()));
        let ext = export(&local, &own, &best, &to("10.0.0.5", PeerKind::Global, true));
        assert_eq!(ext.len(), 1);
        assert_eq!(
            ext.values().next().unwrap().as_path,
            [AsSegment::Sequence(vec![64512])]
        );
    }

    #[test]
    fn export_policy_chooses_kinds_and_tags_own_routes_only() {
        let local = Local {
            asn: 64512,
            router_id: ip("10.0.0.9"),
            route_reflector: true,
            cluster_id: ip("10.0.0.9"),
        };
        let own = [
            Own::new("10.244.9.0/24".parse().unwrap(), OwnKind::Subnet),
            Own::new("10.248.0.64/26".parse().unwrap(), OwnKind::Block),
            Own::new("10.244.0.0/16".parse().unwrap(), OwnKind::Aggregate),
        ];
        let best = BTreeMap::from([(
            "10.244.1.0/24".parse().unwrap(),
            path("10.0.0.1", PeerKind::RrClient, Some(100), 0),
        )]);
        let to = |policy| ExportTo {
            address: ip("10.0.0.3"),
            kind: PeerKind::RrClient,
            ebgp: false,
            next_hop_self: ip("10.0.0.9"),
            policy,
        };
        // The default: what the node holds, not the aggregate.
        let default = ExportPolicy::default();
        let d = export(&local, &own, &best, &to(&default));
        let keys: Vec<String> = d.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["10.244.1.0/24", "10.244.9.0/24", "10.248.0.64/26"]);
        // Only the aggregate, tagged; the reflected route is passed on untagged.
        let only = ExportPolicy {
            kinds: [OwnKind::Aggregate].into(),
            communities: vec!["64512:100".parse().unwrap()],
            large_communities: vec!["64512:1:2".parse().unwrap()],
        };
        let a = export(&local, &own, &best, &to(&only));
        let agg = &a[&"10.244.0.0/16".parse().unwrap()];
        assert_eq!(agg.communities, [(64512 << 16) | 100]);
        assert_eq!(agg.large_communities, [[64512, 1, 2]]);
        assert!(!a.contains_key(&"10.244.9.0/24".parse().unwrap()));
        assert!(a[&"10.244.1.0/24".parse().unwrap()].communities.is_empty());
    }
}
