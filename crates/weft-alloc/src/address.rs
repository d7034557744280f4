//! Single addresses a node holds from outside its own subnet (a container that asked for
//! a fixed address), claimed cluster-wide so no two nodes ever hold the same one:
//!
//! ```text
//! <prefix>/weft/addresses/10.244.0.7   {"Node":"192.168.77.1","ContainerID":"..."}
//! ```
//!
//! The node that holds one announces it as a /32 (Calico's borrowed addresses; the bgp
//! backend). Which addresses qualify is decided here, purely: inside the Network, but
//! outside the range leases are drawn from (`SubnetMin`..`SubnetMax`) and outside every
//! lease or reservation. With flannel's defaults that is the Network's first subnet
//! (10.244.0.0/24 of 10.244.0.0/16), which no lease ever covers; so a later lease can
//! never collide with a claimed address either.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use weft_store::StoreError;

use crate::config::{BackendKind, NetworkConfig};
use crate::lease::Lease;
use crate::pool;
use crate::registry::Registry;

pub use weft_model::address::AddressClaim;

#[derive(Debug, Error)]
pub enum ClaimError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{ip} cannot be held outside a node's subnet: {reason}")]
    Unusable { ip: Ipv4Addr, reason: String },
    #[error("{ip} is already held by container {} on node {}", .holder.container_id, .holder.node)]
    Taken { ip: Ipv4Addr, holder: AddressClaim },
}

/// Why `ip` may not be claimed as a single address under `cfg` with these leases, if so.
pub fn check(cfg: &NetworkConfig, leases: &[Lease], ip: Ipv4Addr) -> Result<(), String> {
    if cfg.backend != BackendKind::Bgp {
        return Err(format!(
            "only the bgp backend announces single addresses, and this network runs {}",
            cfg.backend.name()
        ));
    }
    if !cfg.network.contains(&ip) {
        return Err(format!("it is outside the Network {}", cfg.network));
    }
    if ip == cfg.network.network() || ip == cfg.network.broadcast() {
        return Err(format!(
            "it is the network or broadcast address of {}",
            cfg.network
        ));
    }
    let block = Ipv4Net::new(ip, cfg.subnet_len)
        .expect("subnet length <= 32")
        .trunc();
    if pool::contains(cfg, &block) {
        return Err(format!(
            "{block} is in the range leases are drawn from ({} to {}); use an address outside it, \
             or one of the node's own subnet",
            cfg.subnet_min, cfg.subnet_max
        ));
    }
    if let Some(l) = leases.iter().find(|l| l.subnet.contains(&ip)) {
        return Err(format!(
            "it is inside {}, leased to {}",
            l.subnet, l.attrs.public_ip
        ));
    }
    Ok(())
}

impl Registry {
    /// Where single-address claims live.
    pub fn addresses_prefix(&self) -> String {
        self.keys().addresses()
    }

    fn address_key(&self, ip: Ipv4Addr) -> String {
        format!("{}{ip}", self.addresses_prefix())
    }

    /// A claim from a store key and value; `None` for anything unreadable.
    pub fn parse_address(&self, key: &str, value: &[u8]) -> Option<(Ipv4Addr, AddressClaim)> {
        match self.keys().decode(crate::registry::put(key, value)) {
            crate::registry::Change::Address(ip, Some(Ok(c))) => Some((ip, c)),
            _ => None,
        }
    }

    /// Every readable claim.
    pub async fn addresses(&self) -> Result<Vec<(Ipv4Addr, AddressClaim)>, StoreError> {
        let listing = self.store().list(&self.addresses_prefix()).await?;
        Ok(listing
            .kvs
            .iter()
            .filter_map(|kv| self.parse_address(&kv.key, &kv.value))
            .collect())
    }

    /// Claims `ip` for `claim`: create-if-absent, so of two racing claims one wins.
    /// Claiming again what one already holds succeeds (a retried CNI ADD).
    pub async fn claim_address(
        &self,
        cfg: &NetworkConfig,
        ip: Ipv4Addr,
        claim: &AddressClaim,
    ) -> Result<(), ClaimError> {
        let leases = self.leases().await?.leases;
        check(cfg, &leases, ip).map_err(|reason| ClaimError::Unusable { ip, reason })?;
        let key = self.address_key(ip);
        let value = serde_json::to_vec(claim).expect("claim serializes");
        if self.store().create(&key, &value, None).await?.is_some() {
            return Ok(());
        }
        let holder = self
            .store()
            .get(&key)
            .await?
            .and_then(|kv| serde_json::from_slice::<AddressClaim>(&kv.value).ok());
        match holder {
            Some(h) if &h == claim => Ok(()),
            Some(holder) => Err(ClaimError::Taken { ip, holder }),
            None => Err(ClaimError::Unusable {
                ip,
                reason: "its claim in the store is unreadable; remove it with weftctl".into(),
            }),
        }
    }

    /// Gives `ip` up if `container_id` holds it; `Ok(false)` if it did not (already
    /// released, or someone else's).
    pub async fn release_address(
        &self,
        ip: Ipv4Addr,
        container_id: &str,
    ) -> Result<bool, StoreError> {
        let key = self.address_key(ip);
        let Some(kv) = self.store().get(&key).await? else {
            return Ok(false);
        };
        match serde_json::from_slice::<AddressClaim>(&kv.value) {
            Ok(c) if c.container_id == container_id => self.store().delete(&key).await,
            _ => Ok(false),
        }
    }
}

/// What a CNI plugin (or any local tool) asks of the node's agent on its socket
/// (`weftd --api-socket`, `/run/weft/weftd.sock`): one JSON line each way. The agent
/// makes the claim, since only it knows the node, the config and the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentRequest {
    /// Hold `ip` for this container on this node.
    Claim {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
        #[serde(rename = "ContainerID")]
        container_id: String,
    },
    /// Give `ip` up, if this container holds it.
    Release {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
        #[serde(rename = "ContainerID")]
        container_id: String,
    },
    /// Block IPAM: an address for `handle` (`network/containerID/ifname`) on this node,
    /// `ip` if given (a fixed address); answered with `IP`. Asked again with the same
    /// handle, the same address.
    Allocate {
        #[serde(rename = "Handle")]
        handle: String,
        #[serde(rename = "IP", default, skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Addr>,
    },
    /// Block IPAM: give `ip` back if `handle` holds it.
    Free {
        #[serde(rename = "Handle")]
        handle: String,
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
    },
    /// Network policy: the container at `ip` is `namespace/name` with these labels,
    /// attached through `interface` (its host-side veth) on this node.
    Identify {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
        #[serde(rename = "Namespace")]
        namespace: String,
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Labels", default)]
        labels: std::collections::BTreeMap<String, String>,
        #[serde(rename = "Interface", default)]
        interface: String,
        /// Routed (its own interface) or bridged (a bridge port).
        #[serde(rename = "Attachment", default)]
        attachment: weft_policy::render::Attachment,
    },
    /// Network policy: the container at `ip` on this node is gone.
    Forget {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
    },
    /// Block IPAM (CNI GC): give back every address used on this node whose handle
    /// starts with `prefix` and is not in `keep` (a kept handle ending in `/` keeps
    /// every handle it begins); answered with `Freed`.
    Collect {
        #[serde(rename = "Prefix")]
        prefix: String,
        #[serde(rename = "Keep")]
        keep: Vec<String>,
    },
}

/// Why the agent did not do what it was asked: its words, and whether asking again
/// later may succeed (the agent or its store did not answer, or a container's rules were
/// not in place in time), which the CNI plugin reports as "try again later".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError {
    pub message: String,
    pub try_again: bool,
}

impl AgentError {
    /// Refused for good: asking again changes nothing.
    pub fn refused(message: impl Into<String>) -> Self {
        AgentError {
            message: message.into(),
            try_again: false,
        }
    }

    /// Not done now; asking again later may succeed.
    pub fn transient(message: impl Into<String>) -> Self {
        AgentError {
            message: message.into(),
            try_again: true,
        }
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The agent's answer: `{"Error": null}` when done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReply {
    #[serde(rename = "Error")]
    pub error: Option<String>,
    /// With `Error`: asking again later may succeed.
    #[serde(
        rename = "TryAgain",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub try_again: bool,
    /// `Allocate`: the address.
    #[serde(rename = "IP", default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// `Collect`: the addresses given back.
    #[serde(rename = "Freed", default, skip_serializing_if = "Vec::is_empty")]
    pub freed: Vec<Ipv4Addr>,
}

/// Sends one request to the agent at `socket` and waits (up to 10 s) for its answer. An
/// agent that cannot be reached or does not answer is worth asking again later.
pub fn ask_agent(socket: &std::path::Path, req: &AgentRequest) -> Result<AgentReply, AgentError> {
    use std::io::{BufRead, BufReader, Write};
    let timeout = Some(std::time::Duration::from_secs(10));
    let mut conn = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        AgentError::transient(format!(
            "cannot reach weftd at {}: {e} (is the agent running with --api-socket there?)",
            socket.display()
        ))
    })?;
    let _ = conn.set_read_timeout(timeout);
    let _ = conn.set_write_timeout(timeout);
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    conn.write_all(&line).map_err(|e| {
        AgentError::transient(format!("cannot talk to weftd at {}: {e}", socket.display()))
    })?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer).map_err(|e| {
        AgentError::transient(format!("no answer from weftd at {}: {e}", socket.display()))
    })?;
    let reply: AgentReply = serde_json::from_str(&answer).map_err(|e| {
        AgentError::refused(format!(
            "weftd answered something unreadable ({e}): {answer:?}"
        ))
    })?;
    match reply.error {
        None => Ok(reply),
        Some(message) => Err(AgentError {
            message,
            try_again: reply.try_again,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseAttrs;

    fn cfg(json: &str) -> NetworkConfig {
        NetworkConfig::parse(json.as_bytes()).unwrap()
    }

    const BGP: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn which_addresses_qualify() {
        let c = cfg(BGP);
        assert_eq!(check(&c, &[], ip("10.244.0.7")), Ok(()));
        let no = |s: &str, leases: &[Lease]| check(&c, leases, ip(s)).unwrap_err();
        assert!(no("10.245.0.7", &[]).contains("outside the Network"));
        assert!(no("10.244.0.0", &[]).contains("network or broadcast"));
        assert!(no("10.244.3.7", &[])
            .contains("range leases are drawn from (10.244.1.0 to 10.244.255.0)"));
        let reserved = Lease {
            subnet: "10.244.0.0/28".parse().unwrap(),
            attrs: LeaseAttrs {
                public_ip: ip("192.168.1.9"),
                public_ipv6: None,
                backend_type: "bgp".into(),
                backend_data: serde_json::Value::Null,
            },
            store_lease: None,
            mod_revision: 1,
        };
        assert!(no("10.244.0.7", &[reserved]).contains("leased to 192.168.1.9"));
        let hostgw = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
        assert!(check(&hostgw, &[], ip("10.244.0.7"))
            .unwrap_err()
            .contains("only the bgp backend"));
    }

    #[test]
    fn claims_round_trip_as_json() {
        let c = AddressClaim {
            node: ip("192.168.77.1"),
            container_id: "abc".into(),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"Node":"192.168.77.1","ContainerID":"abc"}"#);
        let req = AgentRequest::Claim {
            ip: ip("10.244.0.7"),
            container_id: "abc".into(),
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"Claim":{"IP":"10.244.0.7","ContainerID":"abc"}}"#
        );
    }
}
