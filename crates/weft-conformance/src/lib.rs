//! Network policy truth tables, written once.
//!
//! Each [`Case`] is one test of Kubernetes' own suite (kubernetes/kubernetes,
//! `test/e2e/network/netpol/network_policy.go`, named by its `It(...)` text in
//! [`Origin::Kubernetes`]) or one of Weft's own (its cluster policies, which Kubernetes has
//! no suite for, and a few shapes the upstream file does not cover, each saying why in
//! [`Origin::Weft`]). A case is a list of [`Stage`]s: a change (policies applied or
//! deleted, a label set on a pod or namespace, or input Weft refuses) and the
//! reachability expected after it for each probed protocol and port, written the way the
//! upstream suite writes it: everything reachable, then the expectations the policies
//! change.
//!
//! The world is upstream's: namespaces `x`, `y`, `z` and pods `a`, `b`, `c` in each,
//! labelled `pod=<name>`, every pod serving TCP and UDP on 80 and 81. The upstream file
//! now starts only the pods a case needs; here all nine always run, and where a case's
//! expectations name pods one by one the missing ones are added with the same meaning
//! (noted at the case). Self pairs are not judged (upstream ignores loopback too).
//!
//! Two consumers hold Weft to these tables: `weft-policy`'s `tests/k8s_netpol.rs` (the
//! verdict engine, so `explain`) and `weft`'s `tests/lab_netpol.rs` (packets between
//! containers on three hosts, and separately `explain` through `weftctl`).

mod kubernetes;
mod reach;
mod weft;

pub use reach::{Reach, PODS};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A protocol the cases probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

/// One probed protocol and port, printed as the lab takes it (`tcp:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub proto: Proto,
    pub port: u16,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        };
        write!(f, "{p}:{}", self.port)
    }
}

pub const TCP80: Probe = Probe {
    proto: Proto::Tcp,
    port: 80,
};
pub const TCP81: Probe = Probe {
    proto: Proto::Tcp,
    port: 81,
};
pub const UDP80: Probe = Probe {
    proto: Proto::Udp,
    port: 80,
};
pub const UDP81: Probe = Probe {
    proto: Proto::Udp,
    port: 81,
};
pub const SCTP80: Probe = Probe {
    proto: Proto::Sctp,
    port: 80,
};
pub const SCTP81: Probe = Probe {
    proto: Proto::Sctp,
    port: 81,
};

/// Which policy a document is, as `weftctl policy delete` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyRef {
    /// A Kubernetes NetworkPolicy: namespace and name.
    Namespaced(String, String),
    /// A Weft ClusterPolicy by name.
    Cluster(String),
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyRef::Namespaced(ns, name) => write!(f, "{ns}/{name}"),
            PolicyRef::Cluster(name) => write!(f, "cluster policy {name}"),
        }
    }
}

/// One policy document (YAML) and which policy it is.
#[derive(Debug, Clone)]
pub struct Doc {
    pub id: PolicyRef,
    pub yaml: String,
}

/// A NetworkPolicy `name` in namespace `ns` with `spec` (YAML flow style).
pub fn network_policy(name: &str, ns: &str, spec: &str) -> Doc {
    Doc {
        id: PolicyRef::Namespaced(ns.into(), name.into()),
        yaml: format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        ),
    }
}

/// A Weft ClusterPolicy `name` with `spec` (YAML flow style).
pub fn cluster_policy(name: &str, spec: &str) -> Doc {
    Doc {
        id: PolicyRef::Cluster(name.into()),
        yaml: format!(
            "apiVersion: weft.dev/v1\nkind: ClusterPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        ),
    }
}

/// What a stage changes before its expectations are checked.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create these policies, or replace those of the same name (upstream's
    /// CreatePolicy and UpdatePolicy alike).
    Apply(Vec<Doc>),
    /// Delete these policies.
    Delete(Vec<PolicyRef>),
    /// Set a label on a pod (`x/a`).
    LabelPod {
        pod: &'static str,
        key: &'static str,
        value: &'static str,
    },
    /// Set a label on a namespace.
    LabelNamespace {
        namespace: &'static str,
        key: &'static str,
        value: &'static str,
    },
    /// Documents Weft refuses as a whole, with an error containing `error`; nothing is
    /// stored or changed.
    Refused { docs: Vec<Doc>, error: &'static str },
}

/// A change and the reachability expected after it, per probe.
#[derive(Debug, Clone)]
pub struct Stage {
    pub change: Change,
    pub expect: Vec<(Probe, Reach)>,
}

/// Where a case's expectations come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The `It(...)` text of the upstream test, in the context named (`TCP`, `UDP` or
    /// `SCTP`: upstream's three `Describe` blocks).
    Kubernetes {
        context: &'static str,
        test: &'static str,
    },
    /// Weft's own case, and why it is not an upstream one.
    Weft(&'static str),
}

/// One truth table: stages run in order on a world with no policies.
#[derive(Debug, Clone)]
pub struct Case {
    /// A unique snake_case name (a test's selector).
    pub name: &'static str,
    pub origin: Origin,
    pub stages: Vec<Stage>,
}

impl Case {
    /// Every policy the case applies (to delete them after it), in order, without
    /// repeats.
    pub fn applied(&self) -> Vec<PolicyRef> {
        let mut out: Vec<PolicyRef> = Vec::new();
        for s in &self.stages {
            if let Change::Apply(docs) = &s.change {
                for d in docs {
                    if !out.contains(&d.id) {
                        out.push(d.id.clone());
                    }
                }
            }
        }
        out
    }

    /// Every protocol and port the case probes.
    pub fn probes(&self) -> Vec<Probe> {
        let mut out: Vec<Probe> = self
            .stages
            .iter()
            .flat_map(|s| s.expect.iter().map(|(p, _)| *p))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Every case: Kubernetes' first, then Weft's own. `ip` gives a pod's address (`y/b`),
/// for the cases with an `ipBlock`.
pub fn cases(ip: &dyn Fn(&str) -> IpAddr) -> Vec<Case> {
    let mut all = kubernetes::cases(ip);
    all.extend(weft::cases());
    all
}

/// The /4 that holds `ip`, as upstream's `makeLargeCIDRForIP` makes it (for IPv6
/// too: the mask is 4 bits of 128).
pub fn large_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{}/4", Ipv4Addr::from(u32::from(a) & 0xf000_0000)),
        IpAddr::V6(a) => format!(
            "{}/4",
            std::net::Ipv6Addr::from(u128::from(a) & (0xf << 124))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(pod: &str) -> IpAddr {
        let i = PODS.iter().position(|p| *p == pod).unwrap();
        Ipv4Addr::new(10, 244, 1, i as u8 + 2).into()
    }

    #[test]
    fn names_are_unique_and_every_stage_expects_something() {
        let all = cases(&ip);
        let mut names: Vec<_> = all.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for c in &all {
            assert!(!c.stages.is_empty(), "{}", c.name);
            for s in &c.stages {
                assert!(!s.expect.is_empty(), "{}", c.name);
            }
        }
    }

    #[test]
    fn upstream_tests_are_named_once_per_context() {
        let all = cases(&ip);
        let mut seen = Vec::new();
        for c in &all {
            if let Origin::Kubernetes { context, test } = c.origin {
                assert!(!seen.contains(&(context, test)), "{test} twice");
                seen.push((context, test));
            }
        }
        // The upstream file's 42 TCP tests, 3 UDP and 3 SCTP.
        assert_eq!(seen.len(), 48);
    }

    #[test]
    fn the_large_cidr_is_upstreams() {
        let large = |s: &str| large_cidr(s.parse().unwrap());
        assert_eq!(large("10.244.3.7"), "0.0.0.0/4");
        assert_eq!(large("172.16.0.1"), "160.0.0.0/4");
        assert_eq!(large("fd00:10:244::5"), "f000::/4");
    }
}
