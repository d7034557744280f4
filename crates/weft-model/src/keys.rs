//! Where each value is stored, under a prefix (flannel's `/coreos.com/network` by
//! default), and the one decoder from a stored entry (a watch event's or a listing's)
//! to a typed [`Change`]: the agent, `weftctl` and the store calls all read keys here.
//!
//! ```text
//! <prefix>/config                              the network config
//! <prefix>/subnets/10.244.3.0-24               a lease (flannel's)
//! <prefix>/weft/addresses/10.244.0.7           an address held outside subnets
//! <prefix>/weft/networks/blue                  a named network
//! <prefix>/weft/network-vnis/4096              a named network's VNI claim
//! <prefix>/weft/endpoints/blue/10.50.0.2       its endpoint
//! <prefix>/weft/ipam/pools/default             a block IPAM pool
//! <prefix>/weft/ipam/blocks/10.248.0.64-26     a block
//! <prefix>/weft/policy/…                       policies, identities, namespace labels
//! <prefix>/weft/bgp/peers/…                    external BGP peers
//! <prefix>/weft/status/10.244.3.0-24           what a node publishes about its view
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;

use crate::address::AddressClaim;
use crate::blocks::{Block, Pool};
use crate::config::{ConfigError, NetworkConfig};
use crate::lease::{Lease, LeaseAttrs};
use crate::named::{Endpoint, NamedNetwork};
use crate::pool::{key_name, parse_key_name, parse_lease_key_name};
use crate::{LeaseId, Revision};

/// The key layout under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Without a trailing `/`.
    prefix: String,
}

/// One stored entry, as a watch event or a listing delivers it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub key: &'a str,
    /// `None`: the key was deleted.
    pub value: Option<&'a [u8]>,
    pub mod_revision: Revision,
    /// The store lease that expires the key, if any (a lease's TTL).
    pub lease: Option<LeaseId>,
}

/// Why a stored value could not be read (its last good value stays wherever it was).
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("value is not JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("value is not a lease: {0}")]
    Lease(#[source] serde_json::Error),
    #[error("the network's name {value:?} differs from its key's {key:?}")]
    NameMismatch { key: String, value: String },
}

/// What a stored entry is, typed; the inner `Option` is `None` for a deletion.
#[derive(Debug)]
pub enum Change {
    Config(Option<Result<NetworkConfig, ConfigError>>),
    Lease(Ipv4Net, Option<Result<Lease, DecodeError>>),
    Address(Ipv4Addr, Option<Result<AddressClaim, DecodeError>>),
    Network(String, Option<Result<NamedNetwork, DecodeError>>),
    Endpoint(String, Ipv4Addr, Option<Result<Endpoint, DecodeError>>),
    Pool(String, Option<Result<Pool, DecodeError>>),
    Block(Ipv4Net, Option<Result<Block, DecodeError>>),
    /// A record under the policy prefix: its key below the prefix and its value, read
    /// by `policies::PolicyState::read_entry`.
    Policy(String, Option<Vec<u8>>),
    /// An external BGP peer: its whole key and its value.
    BgpPeer(String, Option<Vec<u8>>),
    /// Something Weft does not follow here (node status, VNI claims), or a key of a
    /// known kind whose name cannot be read (`unreadable_key` says so).
    Other {
        unreadable_key: bool,
    },
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }

    pub fn subnets(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    /// An IPv4-only lease's key (a reservation's, or any lease outside dual stack).
    pub fn lease(&self, subnet: &Ipv4Net) -> String {
        format!("{}{}", self.subnets(), key_name(subnet))
    }

    /// A lease's own key, with its IPv6 subnet where it has one.
    pub fn lease_key(&self, lease: &Lease) -> String {
        format!("{}{}", self.subnets(), lease.key_name())
    }

    pub fn addresses(&self) -> String {
        format!("{}/weft/addresses/", self.prefix)
    }

    pub fn networks(&self) -> String {
        format!("{}/weft/networks/", self.prefix)
    }

    /// A named network's VNI claim.
    pub fn vni(&self, vni: u32) -> String {
        format!("{}/weft/network-vnis/{vni}", self.prefix)
    }

    pub fn endpoints(&self) -> String {
        format!("{}/weft/endpoints/", self.prefix)
    }

    /// Pools and blocks together (the agent's picture reads them in one listing).
    pub fn ipam(&self) -> String {
        format!("{}/weft/ipam/", self.prefix)
    }

    pub fn pools(&self) -> String {
        format!("{}/weft/ipam/pools/", self.prefix)
    }

    pub fn blocks(&self) -> String {
        format!("{}/weft/ipam/blocks/", self.prefix)
    }

    pub fn policy(&self) -> String {
        format!("{}/weft/policy/", self.prefix)
    }

    /// Where BGP peers outside the cluster are configured: one JSON value per key,
    /// `{"PeerIP": "192.168.77.254", "ASNumber": 64513}` for every node, plus `"Node":
    /// "<public IP>"` for one node only.
    pub fn bgp_peers(&self) -> String {
        format!("{}/weft/bgp/peers/", self.prefix)
    }

    pub fn status(&self) -> String {
        format!("{}/weft/status/", self.prefix)
    }

    /// What `entry` is, decoded (pure).
    pub fn decode(&self, entry: Entry) -> Change {
        let key = entry.key;
        let value = entry.value;
        if key == self.config() {
            return Change::Config(value.map(NetworkConfig::parse));
        }
        let unreadable = Change::Other {
            unreadable_key: true,
        };
        if let Some(name) = key.strip_prefix(&self.subnets()) {
            let Some((subnet, ipv6_subnet)) = parse_lease_key_name(name) else {
                return unreadable;
            };
            let lease = value.map(|v| {
                Ok(Lease {
                    subnet,
                    ipv6_subnet,
                    attrs: LeaseAttrs::decode(v).map_err(DecodeError::Lease)?,
                    store_lease: entry.lease,
                    mod_revision: entry.mod_revision,
                })
            });
            return Change::Lease(subnet, lease);
        }
        if let Some(ip) = key.strip_prefix(&self.addresses()) {
            let Ok(ip) = ip.parse() else {
                return unreadable;
            };
            return Change::Address(ip, value.map(json));
        }
        if let Some(name) = key.strip_prefix(&self.networks()) {
            let net = value.map(|v| {
                let net: NamedNetwork = json(v)?;
                if net.name != name {
                    return Err(DecodeError::NameMismatch {
                        key: name.to_owned(),
                        value: net.name,
                    });
                }
                Ok(net)
            });
            return Change::Network(name.to_owned(), net);
        }
        if let Some(rest) = key.strip_prefix(&self.endpoints()) {
            let Some((name, Ok(ip))) = rest.split_once('/').map(|(n, ip)| (n, ip.parse())) else {
                return unreadable;
            };
            return Change::Endpoint(name.to_owned(), ip, value.map(json));
        }
        if let Some(name) = key.strip_prefix(&self.pools()) {
            return Change::Pool(name.to_owned(), value.map(json));
        }
        if let Some(name) = key.strip_prefix(&self.blocks()) {
            let Some(cidr) = parse_key_name(name) else {
                return unreadable;
            };
            return Change::Block(cidr, value.map(json));
        }
        if let Some(rest) = key.strip_prefix(&self.policy()) {
            return Change::Policy(rest.to_owned(), value.map(<[u8]>::to_vec));
        }
        if key.starts_with(&self.bgp_peers()) {
            return Change::BgpPeer(key.to_owned(), value.map(<[u8]>::to_vec));
        }
        Change::Other {
            unreadable_key: false,
        }
    }
}

fn json<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, DecodeError> {
    Ok(serde_json::from_slice(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<'a>(key: &'a str, value: &'a str) -> Entry<'a> {
        Entry {
            key,
            value: Some(value.as_bytes()),
            mod_revision: 7,
            lease: Some(3),
        }
    }

    fn del(key: &str) -> Entry<'_> {
        Entry {
            key,
            value: None,
            mod_revision: 8,
            lease: None,
        }
    }

    #[test]
    fn every_kind_of_key_decodes_to_its_change() {
        let k = Keys::new("/coreos.com/network/");
        assert_eq!(
            k.lease(&"10.244.3.0/24".parse().unwrap()),
            "/coreos.com/network/subnets/10.244.3.0-24"
        );
        match k.decode(put(
            "/coreos.com/network/subnets/10.244.3.0-24",
            r#"{"PublicIP":"192.168.77.3","BackendType":"host-gw"}"#,
        )) {
            Change::Lease(s, Some(Ok(l))) => {
                assert_eq!(s.to_string(), "10.244.3.0/24");
                assert_eq!((l.store_lease, l.mod_revision), (Some(3), 7));
            }
            other => panic!("{other:?}"),
        }
        match k.decode(put(
            "/coreos.com/network/subnets/10.244.3.0-24&fd00:10:244:3::-64",
            r#"{"PublicIP":"192.168.77.3","PublicIPv6":"fd00:77::3","BackendType":"host-gw"}"#,
        )) {
            Change::Lease(s, Some(Ok(l))) => {
                assert_eq!(s.to_string(), "10.244.3.0/24");
                assert_eq!(l.ipv6_subnet.unwrap().to_string(), "fd00:10:244:3::/64");
                assert_eq!(
                    k.lease_key(&l),
                    "/coreos.com/network/subnets/10.244.3.0-24&fd00:10:244:3::-64"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            k.decode(del("/coreos.com/network/subnets/10.244.3.0-24")),
            Change::Lease(_, None)
        ));
        assert!(matches!(
            k.decode(put("/coreos.com/network/subnets/nonsense", "{}")),
            Change::Other {
                unreadable_key: true
            }
        ));
        assert!(matches!(
            k.decode(put(
                "/coreos.com/network/config",
                r#"{"Network":"10.244.0.0/16"}"#
            )),
            Change::Config(Some(Ok(_)))
        ));
        assert!(matches!(
            k.decode(put("/coreos.com/network/weft/endpoints/blue/10.50.0.2", r#"{"Node":"192.168.77.1"}"#)),
            Change::Endpoint(n, ip, Some(Ok(_))) if n == "blue" && ip.to_string() == "10.50.0.2"
        ));
        assert!(matches!(
            k.decode(put(
                "/coreos.com/network/weft/ipam/blocks/10.248.0.64-26",
                "garbage"
            )),
            Change::Block(_, Some(Err(DecodeError::Json(_))))
        ));
        assert!(matches!(
            k.decode(put(
                "/coreos.com/network/weft/networks/blue",
                r#"{"Name":"red","Subnet":"10.50.0.0/24","Gateway":"10.50.0.1","Mode":"overlay"}"#
            )),
            Change::Network(_, Some(Err(DecodeError::NameMismatch { .. })))
        ));
        assert!(matches!(
            k.decode(del("/coreos.com/network/weft/policy/endpoints/10.248.0.5")),
            Change::Policy(rest, None) if rest == "endpoints/10.248.0.5"
        ));
        assert!(matches!(
            k.decode(put("/coreos.com/network/weft/status/10.244.3.0-24", "{}")),
            Change::Other {
                unreadable_key: false
            }
        ));
        assert!(matches!(
            k.decode(put(
                "/coreos.com/network/weft/network-vnis/4096",
                "\"blue\""
            )),
            Change::Other {
                unreadable_key: false
            }
        ));
    }
}
