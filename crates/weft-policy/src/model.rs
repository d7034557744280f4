//! The policy kinds, as their YAML reads.
//!
//! `networking.k8s.io/v1 NetworkPolicy` is Kubernetes' own, field for field (named
//! ports are refused: Weft does not know containers' port names). `weft.dev/v1
//! ClusterPolicy` is Weft's cluster-wide kind:
//!
//! ```yaml
//! apiVersion: weft.dev/v1
//! kind: ClusterPolicy
//! metadata: {name: no-metadata-server}
//! spec:
//!   order: 10                      # lower first
//!   selector: {}                   # the endpoints it applies to (all)
//!   namespaceSelector: {}          # ... in these namespaces (all; optional)
//!   types: [Egress]                # default: the directions that have rules
//!   egress:
//!   - action: Deny                 # Allow, Deny, Log (and go on), Pass (to namespaced policies)
//!     protocol: TCP                # TCP, UDP, SCTP, ICMP; default any
//!     destination: {nets: [169.254.169.254/32], ports: ["80"]}
//! ```

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::selector::LabelSelector;

pub const K8S_API: &str = "networking.k8s.io/v1";
pub const WEFT_API: &str = "weft.dev/v1";

/// Either kind, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Policy {
    Namespaced(NetworkPolicy),
    Cluster(ClusterPolicy),
}

impl Policy {
    /// `namespace/name` for a NetworkPolicy, `name` for a cluster policy.
    pub fn id(&self) -> String {
        match self {
            Policy::Namespaced(p) => format!("{}/{}", p.namespace(), p.metadata.name),
            Policy::Cluster(p) => p.metadata.name.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Policy::Namespaced(_) => "NetworkPolicy",
            Policy::Cluster(_) => "ClusterPolicy",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: NetworkPolicySpec,
}

impl NetworkPolicy {
    /// Its namespace (`default` when the document names none, as kubectl does).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// The directions it isolates: `policyTypes`, or by default Ingress, and Egress
    /// when it has egress rules (Kubernetes' rule).
    pub fn types(&self) -> Vec<Direction> {
        match &self.spec.policy_types {
            Some(t) => t.clone(),
            None if self.spec.egress.is_some() => vec![Direction::Ingress, Direction::Egress],
            None => vec![Direction::Ingress],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<Direction>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Peer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Peer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

/// One `from`/`to` entry: pods (by selector, in the policy's namespace unless a
/// namespace selector says which), whole namespaces, or an address block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

impl IpBlock {
    /// The block and its exceptions (of the block's family, inside it), once checked.
    pub fn nets(&self) -> Option<(IpNet, Vec<IpNet>)> {
        let cidr = self.cidr.parse().ok()?;
        let except = self
            .except
            .iter()
            .map(|e| e.parse().ok())
            .collect::<Option<Vec<_>>>()?;
        Some((cidr, except))
    }
}

/// A port: a number or (refused) a name; `endPort` makes it a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    Number(u32),
    Name(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ClusterPolicySpec,
}

impl ClusterPolicy {
    pub fn types(&self) -> Vec<Direction> {
        match &self.spec.types {
            Some(t) => t.clone(),
            None => {
                let mut t = Vec::new();
                if !self.spec.ingress.is_empty() {
                    t.push(Direction::Ingress);
                }
                if !self.spec.egress.is_empty() {
                    t.push(Direction::Egress);
                }
                t
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPolicySpec {
    /// Lower first; ties by name.
    #[serde(default)]
    pub order: u32,
    #[serde(default)]
    pub selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<Direction>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<ClusterRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<ClusterRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
    /// Logged (nftables log, prefix naming the policy), and the next rule decides.
    Log,
    /// No further cluster policy: the namespaced policies decide.
    Pass,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EntityMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<EntityMatch>,
    /// With `protocol: ICMP`: only this ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
}

/// One side of a cluster rule: endpoints (by selector and namespace selector), nets,
/// and (destination) ports as `"80"` or `"8000:8080"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

/// A port range from `"80"` or `"8000:8080"`.
pub fn port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once(':').unwrap_or((s, s));
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}
