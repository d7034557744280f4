//! Network policy in the store: the policies, the identity of each endpoint (its
//! namespace and labels) and the labels of namespaces, which `weftctl policy explain`
//! and the agents read.
//!
//! ```text
//! <prefix>/weft/policy/networkpolicies/x/allow-a   a NetworkPolicy, as applied (JSON)
//! <prefix>/weft/policy/clusterpolicies/no-ping     a ClusterPolicy
//! <prefix>/weft/policy/endpoints/10.248.0.5        {"Name":"x/a","Namespace":"x","Labels":{"pod":"a"},"Node":"192.168.77.1","Interface":"weft0123456789a"}
//!                                                  (+ "IPv6":"fd00:10:244:3::5" in a dual-stack network)
//! <prefix>/weft/policy/namespaces/x                {"Labels":{"ns":"x"}}
//! ```
//!
//! A file is checked whole ([`weft_policy::parse_documents`]) before anything is
//! written, so a bad object never leaves half a file applied.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
pub use weft_policy::render::Attachment;
use weft_policy::{Endpoint, Labels, Policy, World};

/// Why a record under the policy prefix could not be read (the previous value stays).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("not a policy: {0}")]
    Policy(#[from] weft_policy::PolicyError),
    #[error("holds {0} policies, not one")]
    NotOnePolicy(usize),
    #[error("not an address: {0}")]
    Address(#[from] std::net::AddrParseError),
    #[error("not JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
}

/// An endpoint's identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `namespace/name`.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Namespace")]
    pub namespace: String,
    #[serde(rename = "Labels", default)]
    pub labels: Labels,
    /// Its IPv6 address in a dual-stack network (the key is its IPv4 one): what the
    /// IPv6 policy table matches it by.
    #[serde(rename = "IPv6", default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// The node it runs on.
    #[serde(rename = "Node")]
    pub node: Ipv4Addr,
    /// Its host-side interface on that node (where its policy will be enforced).
    #[serde(
        rename = "Interface",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub interface: String,
    /// How it is attached there (which decides how its traffic is matched).
    #[serde(
        rename = "Attachment",
        default,
        skip_serializing_if = "Attachment::is_routed"
    )]
    pub attachment: Attachment,
    /// Its labels are not known yet (a Docker container the driver has attached but
    /// not yet read): its node holds its traffic while a policy could select it.
    #[serde(
        rename = "Pending",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pending: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceLabels {
    #[serde(rename = "Labels", default)]
    pub labels: Labels,
}

/// What is stored under the policy prefix, read in one listing.
#[derive(Debug, Clone, Default)]
pub struct PolicyState {
    pub policies: Vec<Policy>,
    pub endpoints: BTreeMap<Ipv4Addr, Identity>,
    pub namespaces: BTreeMap<String, Labels>,
    /// Keys whose value could not be read, with why.
    pub unreadable: Vec<(String, String)>,
    /// The store revision of the listing.
    pub revision: crate::Revision,
}

/// What one store change under the policy prefix changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// A policy: the rules change.
    Policies,
    /// The identity of the endpoint at this address: which sets hold it.
    Endpoint(Ipv4Addr),
    /// A namespace's labels: which sets hold any of its endpoints.
    Namespace,
    /// Nothing Weft reads.
    Nothing,
}

impl PolicyState {
    /// Takes in one key (`rest`: the key after the policy prefix) with its new value,
    /// or `None` if deleted. A value that cannot be read changes nothing (the
    /// previous one stays) and says why.
    pub fn read_entry(&mut self, rest: &str, value: Option<&[u8]>) -> Result<Changed, RecordError> {
        let policy_id = rest
            .strip_prefix("networkpolicies/")
            .map(|id| ("NetworkPolicy", id))
            .or_else(|| {
                rest.strip_prefix("clusterpolicies/")
                    .map(|id| ("ClusterPolicy", id))
            });
        if let Some((kind, id)) = policy_id {
            let parsed = match value {
                None => None,
                Some(v) => {
                    let text = std::str::from_utf8(v)?;
                    let mut ps = weft_policy::parse_documents(text)?;
                    if ps.len() != 1 {
                        return Err(RecordError::NotOnePolicy(ps.len()));
                    }
                    Some(ps.remove(0))
                }
            };
            self.policies
                .retain(|p| !(p.kind() == kind && p.id() == id));
            self.policies.extend(parsed);
            return Ok(Changed::Policies);
        }
        if let Some(ip) = rest.strip_prefix("endpoints/") {
            let ip: Ipv4Addr = ip.parse()?;
            match value {
                None => self.endpoints.remove(&ip),
                Some(v) => {
                    let i: Identity = serde_json::from_slice(v)?;
                    self.endpoints.insert(ip, i)
                }
            };
            return Ok(Changed::Endpoint(ip));
        }
        if let Some(ns) = rest.strip_prefix("namespaces/") {
            match value {
                None => self.namespaces.remove(ns),
                Some(v) => {
                    let n: NamespaceLabels = serde_json::from_slice(v)?;
                    self.namespaces.insert(ns.to_owned(), n.labels)
                }
            };
            return Ok(Changed::Namespace);
        }
        Ok(Changed::Nothing)
    }

    /// The world the verdict engine looks at.
    pub fn world(&self) -> World {
        World {
            endpoints: self
                .endpoints
                .keys()
                .filter_map(|ip| self.endpoint(*ip))
                .collect(),
            namespaces: self.namespaces.clone(),
            ..Default::default()
        }
    }

    /// The endpoint at `ip` as the verdict engine sees it.
    pub fn endpoint(&self, ip: Ipv4Addr) -> Option<Endpoint> {
        self.endpoints.get(&ip).map(|i| Endpoint {
            name: i.name.clone(),
            namespace: i.namespace.clone(),
            labels: i.labels.clone(),
            ip,
            ip6: i.ipv6,
        })
    }

    /// An endpoint by `namespace/name` or address (of either family).
    pub fn find(&self, what: &str) -> Option<(Ipv4Addr, &Identity)> {
        if let Ok(ip) = what.parse::<Ipv4Addr>() {
            return self.endpoints.get(&ip).map(|i| (ip, i));
        }
        let v6 = what.parse::<Ipv6Addr>().ok();
        self.endpoints
            .iter()
            .find(|(_, i)| i.name == what || (v6.is_some() && i.ipv6 == v6))
            .map(|(ip, i)| (*ip, i))
    }
}
