//! Named networks in the store (their types in [`weft_model::named`]): created with a
//! VNI claimed create-if-absent, endpoints written create-if-absent at their address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;
use weft_store::{KeyValue, StoreError};

pub use weft_model::named::*;

use crate::registry::{entry, Change, Registry};

#[derive(Debug, Error)]
pub enum NamedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid network: {0}")]
    Invalid(String),
    #[error("invalid network: {0}")]
    Request(#[from] weft_model::named::RequestError),
    #[error("network {0:?} already exists")]
    Exists(String),
    #[error("no network named {0:?}")]
    Unknown(String),
    #[error("no network has the subnet {0}")]
    UnknownSubnet(Ipv4Net),
    #[error("network {name:?} still has endpoints: {}", .endpoints.join(", "))]
    InUse {
        name: String,
        endpoints: Vec<String>,
    },
    #[error("{ip} cannot be used on network {name:?}: {why}")]
    Unusable {
        name: String,
        ip: Ipv4Addr,
        why: weft_model::named::FixedError,
    },
    #[error("{ip} on network {name:?} is already held by endpoint {holder} on node {node}")]
    Taken {
        name: String,
        ip: Ipv4Addr,
        holder: String,
        node: Ipv4Addr,
    },
    #[error("network {name:?} ({subnet}) has no free address left")]
    Full { name: String, subnet: Ipv4Net },
    #[error("VNI {0} is already used by network {1:?}")]
    VniTaken(u32, String),
}

impl Registry {
    fn endpoint_key(&self, network: &str, ip: Ipv4Addr) -> String {
        format!("{}{network}/{ip}", self.keys().endpoints())
    }

    /// A named network as stored; `None` for anything unreadable.
    pub fn parse_network(&self, kv: &KeyValue) -> Option<NamedNetwork> {
        match self.keys().decode(entry(kv)) {
            Change::Network(_, Some(Ok(net))) => Some(net),
            _ => None,
        }
    }

    /// An endpoint as stored: (network, address, endpoint).
    pub fn parse_endpoint(&self, kv: &KeyValue) -> Option<(String, Ipv4Addr, Endpoint)> {
        match self.keys().decode(entry(kv)) {
            Change::Endpoint(name, ip, Some(Ok(e))) => Some((name, ip, e)),
            _ => None,
        }
    }

    /// Every readable named network, by name.
    pub async fn networks(&self) -> Result<Vec<NamedNetwork>, StoreError> {
        let listing = self.store().list(&self.keys().networks()).await?;
        let mut nets: Vec<_> = listing
            .kvs
            .iter()
            .filter_map(|kv| self.parse_network(kv))
            .collect();
        nets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nets)
    }

    pub async fn network(&self, name: &str) -> Result<Option<NamedNetwork>, StoreError> {
        let key = format!("{}{name}", self.keys().networks());
        Ok(self
            .store()
            .get(&key)
            .await?
            .and_then(|kv| self.parse_network(&kv)))
    }

    /// The network whose subnet is exactly `subnet`.
    pub async fn network_by_subnet(&self, subnet: Ipv4Net) -> Result<NamedNetwork, NamedError> {
        self.networks()
            .await?
            .into_iter()
            .find(|n| n.subnet == subnet)
            .ok_or(NamedError::UnknownSubnet(subnet))
    }

    /// Creates a named network: checked against the cluster network and every other
    /// one, its VNI claimed create-if-absent (given, or the lowest free from
    /// [`FIRST_VNI`]), then the network itself create-if-absent.
    pub async fn create_network(&self, req: &NetworkRequest) -> Result<NamedNetwork, NamedError> {
        // One read of the config: its network (no overlap) and its VNI (never reused).
        let config = match self.raw_config().await? {
            Some(raw) => crate::NetworkConfig::parse(&raw).ok(),
            None => None,
        };
        let cluster = config.as_ref().map(|c| c.network);
        let existing = self.networks().await?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(NamedError::Exists(req.name.clone()));
        }
        let mut net = check_request(req, cluster, &existing)?;
        let pools = self.pools().await?;
        if let Some(p) = pools
            .iter()
            .find(|p| p.cidr.contains(&net.subnet) || net.subnet.contains(&p.cidr))
            .filter(|p| crate::blocks::pool_of(&net, std::slice::from_ref(*p)).is_none())
        {
            return Err(NamedError::Invalid(format!(
                "subnet {} overlaps pool {:?} ({}); a routed network on exactly the pool's range \
                 takes its addresses from the pool's blocks",
                net.subnet, p.name, p.cidr
            )));
        }
        if net.mode == Mode::Overlay {
            net.vni = self
                .claim_vni(&net.name, req.vni, config.as_ref().and_then(cluster_vni))
                .await?;
        }
        let key = format!("{}{}", self.keys().networks(), net.name);
        let value = serde_json::to_vec(&net).expect("network serializes");
        if self.store().create(&key, &value, None).await?.is_none() {
            if net.vni != 0 {
                self.store().delete(&self.keys().vni(net.vni)).await?;
            }
            return Err(NamedError::Exists(net.name));
        }
        Ok(net)
    }

    async fn claim_vni(
        &self,
        name: &str,
        asked: Option<u32>,
        reserved: Option<u32>,
    ) -> Result<u32, NamedError> {
        let value = serde_json::to_vec(name).expect("name serializes");
        if let Some(v) = asked {
            if Some(v) == reserved {
                return Err(NamedError::VniTaken(v, "(the cluster network)".into()));
            }
            if self
                .store()
                .create(&self.keys().vni(v), &value, None)
                .await?
                .is_some()
            {
                return Ok(v);
            }
            let holder = self.store().get(&self.keys().vni(v)).await?;
            let holder = holder
                .and_then(|kv| serde_json::from_slice::<String>(&kv.value).ok())
                .unwrap_or_default();
            return Err(NamedError::VniTaken(v, holder));
        }
        for v in FIRST_VNI..=MAX_VNI {
            if Some(v) != reserved
                && self
                    .store()
                    .create(&self.keys().vni(v), &value, None)
                    .await?
                    .is_some()
            {
                return Ok(v);
            }
        }
        Err(NamedError::Invalid("no VNI left".into()))
    }

    /// Deletes a named network that has no endpoint left; says which ones it still has.
    pub async fn delete_network(&self, name: &str) -> Result<NamedNetwork, NamedError> {
        let net = self
            .network(name)
            .await?
            .ok_or_else(|| NamedError::Unknown(name.to_owned()))?;
        let endpoints = self.endpoints(name).await?;
        if !endpoints.is_empty() {
            return Err(NamedError::InUse {
                name: name.to_owned(),
                endpoints: endpoints
                    .iter()
                    .map(|(ip, e)| format!("{ip} on {}", e.node))
                    .collect(),
            });
        }
        self.store()
            .delete(&format!("{}{name}", self.keys().networks()))
            .await?;
        if net.vni != 0 {
            self.store().delete(&self.keys().vni(net.vni)).await?;
        }
        Ok(net)
    }

    /// Every network's endpoints, in one listing: (network, address, endpoint).
    pub async fn all_endpoints(&self) -> Result<Vec<(String, Ipv4Addr, Endpoint)>, StoreError> {
        let listing = self.store().list(&self.keys().endpoints()).await?;
        Ok(listing
            .kvs
            .iter()
            .filter_map(|kv| self.parse_endpoint(kv))
            .collect())
    }

    /// The endpoints of one network, by address.
    pub async fn endpoints(&self, network: &str) -> Result<Vec<(Ipv4Addr, Endpoint)>, StoreError> {
        let prefix = format!("{}{network}/", self.keys().endpoints());
        let listing = self.store().list(&prefix).await?;
        let mut eps: Vec<_> = listing
            .kvs
            .iter()
            .filter_map(|kv| self.parse_endpoint(kv))
            .map(|(_, ip, e)| (ip, e))
            .collect();
        eps.sort_by_key(|(ip, _)| *ip);
        Ok(eps)
    }

    /// Holds an address on `net` for `holder`: `fixed` if given and free, else the
    /// lowest free one. Create-if-absent per address, so concurrent allocations on
    /// several hosts never hand out one address twice.
    pub async fn allocate_endpoint(
        &self,
        net: &NamedNetwork,
        fixed: Option<Ipv4Addr>,
        holder: &Endpoint,
    ) -> Result<Ipv4Addr, NamedError> {
        let value = serde_json::to_vec(holder).expect("endpoint serializes");
        if let Some(ip) = fixed {
            check_fixed(net, ip).map_err(|why| NamedError::Unusable {
                name: net.name.clone(),
                ip,
                why,
            })?;
            let key = self.endpoint_key(&net.name, ip);
            if self.store().create(&key, &value, None).await?.is_some() {
                return Ok(ip);
            }
            let held = self.store().get(&key).await?;
            let e = held.and_then(|kv| serde_json::from_slice::<Endpoint>(&kv.value).ok());
            return Err(match e {
                Some(e) => NamedError::Taken {
                    name: net.name.clone(),
                    ip,
                    holder: if e.endpoint_id.is_empty() {
                        "(being created)".into()
                    } else {
                        short(&e.endpoint_id).to_owned()
                    },
                    node: e.node,
                },
                None => NamedError::Unusable {
                    name: net.name.clone(),
                    ip,
                    why: FixedError::Unreadable,
                },
            });
        }
        let mut taken: BTreeSet<Ipv4Addr> = self
            .endpoints(&net.name)
            .await?
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        loop {
            let Some(ip) = next_free(net, &taken) else {
                return Err(NamedError::Full {
                    name: net.name.clone(),
                    subnet: net.subnet,
                });
            };
            let key = self.endpoint_key(&net.name, ip);
            if self.store().create(&key, &value, None).await?.is_some() {
                return Ok(ip);
            }
            // Another host took it meanwhile: try the next.
            taken.insert(ip);
        }
    }

    /// Replaces what an endpoint record says (Docker named the endpoint, the MAC is known).
    pub async fn update_endpoint(
        &self,
        network: &str,
        ip: Ipv4Addr,
        ep: &Endpoint,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(ep).expect("endpoint serializes");
        self.store()
            .put(&self.endpoint_key(network, ip), &value, None)
            .await
            .map(|_| ())
    }

    /// Changes an endpoint record in place with `change`, compare-and-swap, so that two
    /// writers (a plugin call and a task after Join) never undo each other. `Ok(None)`
    /// if there is no such record (it is not made again).
    pub async fn modify_endpoint(
        &self,
        network: &str,
        ip: Ipv4Addr,
        change: impl Fn(&mut Endpoint),
    ) -> Result<Option<Endpoint>, StoreError> {
        let key = self.endpoint_key(network, ip);
        loop {
            let Some(kv) = self.store().get(&key).await? else {
                return Ok(None);
            };
            let Ok(mut ep) = serde_json::from_slice::<Endpoint>(&kv.value) else {
                return Ok(None);
            };
            let before = ep.clone();
            change(&mut ep);
            if ep == before {
                return Ok(Some(ep));
            }
            let value = serde_json::to_vec(&ep).expect("endpoint serializes");
            if self
                .store()
                .compare_and_swap(&key, &value, kv.mod_revision, None)
                .await?
                .is_some()
            {
                return Ok(Some(ep));
            }
        }
    }

    /// Frees an address; `Ok(false)` if it was not held.
    pub async fn release_endpoint(&self, network: &str, ip: Ipv4Addr) -> Result<bool, StoreError> {
        self.store().delete(&self.endpoint_key(network, ip)).await
    }

    /// Gives back an endpoint's address: its block allocation first (a routed network
    /// may be on a pool; see [`crate::blocks::pool_of`]), then its endpoint record.
    pub async fn release_docker_address(
        &self,
        net: &NamedNetwork,
        ip: Ipv4Addr,
    ) -> Result<bool, crate::blocks::BlockError> {
        let network = net.name.as_str();
        if net.mode != Mode::Routed {
            return Ok(self.release_endpoint(network, ip).await?);
        }
        let prefix = crate::blocks::docker_handle_prefix(network);
        let handle = self.blocks().await?.into_iter().find_map(|b| {
            b.block
                .allocations
                .get(&ip)
                .filter(|a| a.handle.starts_with(&prefix))
                .map(|a| a.handle.clone())
        });
        if let Some(h) = handle {
            self.release_from_blocks(ip, &h).await?;
        }
        Ok(self.release_endpoint(network, ip).await?)
    }
}

/// The cluster network's own VNI, if it runs vxlan: never given to a named network.
fn cluster_vni(cfg: &crate::NetworkConfig) -> Option<u32> {
    match &cfg.options {
        crate::BackendOptions::Vxlan(v) => Some(v.vni),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, subnet: &str) -> NetworkRequest {
        NetworkRequest {
            name: name.into(),
            subnet: subnet.parse().unwrap(),
            gateway: None,
            mode: Mode::Overlay,
            vni: None,
            internal: false,
        }
    }

    #[test]
    fn requests_are_checked_against_the_cluster_and_each_other() {
        let cluster = Some("10.244.0.0/16".parse().unwrap());
        let blue = check_request(&req("blue", "10.50.0.0/24"), cluster, &[]).unwrap();
        assert_eq!(blue.gateway, "10.50.0.1".parse::<Ipv4Addr>().unwrap());
        let e = check_request(
            &req("red", "10.50.0.128/25"),
            cluster,
            std::slice::from_ref(&blue),
        )
        .unwrap_err();
        assert!(e.to_string().contains("overlaps network \"blue\""), "{e}");
        let e = check_request(&req("red", "10.244.3.0/24"), cluster, &[]).unwrap_err();
        assert!(e.to_string().contains("cluster network"), "{e}");
        let e = check_request(&req("red", "10.51.0.1/24"), cluster, &[]).unwrap_err();
        assert!(e.to_string().contains("host bits"), "{e}");
        let e = check_request(&req("-x", "10.51.0.0/24"), cluster, &[]).unwrap_err();
        assert!(e.to_string().contains("starting with a letter"), "{e}");
        let mut r = req("red", "10.51.0.0/24");
        r.gateway = Some("10.51.0.255".parse().unwrap());
        assert!(check_request(&r, cluster, &[])
            .unwrap_err()
            .to_string()
            .contains("gateway"));
        r.gateway = None;
        r.mode = Mode::Routed;
        r.vni = Some(7);
        assert!(check_request(&r, cluster, &[])
            .unwrap_err()
            .to_string()
            .contains("--vni"));
    }

    #[test]
    fn free_addresses_skip_the_gateway_and_the_taken() {
        let net = check_request(&req("blue", "10.50.0.0/30"), None, &[]).unwrap();
        let mut taken = BTreeSet::new();
        assert_eq!(next_free(&net, &taken), Some("10.50.0.2".parse().unwrap()));
        taken.insert("10.50.0.2".parse().unwrap());
        assert_eq!(next_free(&net, &taken), None);
        assert!(check_fixed(&net, "10.50.0.1".parse().unwrap())
            .unwrap_err()
            .to_string()
            .contains("gateway"));
        assert!(check_fixed(&net, "10.60.0.1".parse().unwrap())
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(check_fixed(&net, "10.50.0.3".parse().unwrap())
            .unwrap_err()
            .to_string()
            .contains("broadcast"));
    }
}
