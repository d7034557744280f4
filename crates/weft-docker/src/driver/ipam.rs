//! Docker's IPAM calls: a pool is a Weft network's subnet; an address comes from the
//! network (held as an endpoint record) or, for a routed network on a pool, from this
//! node's blocks.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::json;
use tracing::info;
use weft_alloc::named::{Endpoint, Mode, NamedError, NamedNetwork, NetworkRequest, PENDING};

use super::{unique, Answer, Driver};
use crate::error::DriverError;
use crate::protocol::*;

impl Driver {
    pub(super) async fn request_pool(&self, req: RequestPool) -> Answer {
        if req.v6 {
            return Err(DriverError::Ipv6);
        }
        if req.pool.is_empty() {
            return Err(DriverError::NoSubnet);
        }
        let subnet: Ipv4Net = req
            .pool
            .parse()
            .map_err(|_| DriverError::NotAPrefix(req.pool.clone()))?;
        // A subnet already in the store is that network's (the same network on another
        // host); a new one must fit beside every other.
        let nets = self.registry.networks().await?;
        if !nets.iter().any(|n| n.subnet == subnet) {
            let cluster = self.registry.config().await.ok().map(|c| c.network);
            let probe = NetworkRequest {
                name: "probe".into(),
                subnet,
                gateway: None,
                mode: Mode::Overlay,
                vni: None,
                internal: false,
            };
            weft_alloc::named::check_request(&probe, cluster, &nets)?;
        }
        Ok(json!({"PoolID": subnet.to_string(), "Pool": subnet.to_string(), "Data": {}}))
    }

    pub(super) async fn request_address(&self, req: RequestAddress) -> Answer {
        let subnet: Ipv4Net = req
            .pool_id
            .parse()
            .map_err(|_| DriverError::UnknownPool(req.pool_id.clone()))?;
        let asked = match req.address.as_str() {
            "" => None,
            a => Some(
                a.parse::<Ipv4Addr>()
                    .map_err(|_| DriverError::NotAnAddress(a.to_owned()))?,
            ),
        };
        let gateway_request = req
            .options
            .as_ref()
            .and_then(|o| o.get(REQUEST_TYPE))
            .is_some_and(|t| t == GATEWAY_TYPE);
        if gateway_request {
            // Not an endpoint: the gateway is the network's, the same on every host.
            let gw = match self.registry.network_by_subnet(subnet).await {
                Ok(net) => {
                    if asked.is_some_and(|a| a != net.gateway) {
                        return Err(DriverError::OtherGateway {
                            network: net.name,
                            has: net.gateway,
                            asked: asked.expect("some"),
                        });
                    }
                    net.gateway
                }
                Err(_) => asked.unwrap_or(Ipv4Addr::from(u32::from(subnet.network()) + 1)),
            };
            return Ok(json!({"Address": format!("{gw}/{}", subnet.prefix_len()), "Data": {}}));
        }
        let net = self.network_by_pool(&req.pool_id).await?;
        let holder = Endpoint::held(self.host.public_ip, PENDING);
        // A routed network on a pool: the address comes from this node's blocks, and
        // the endpoint record follows with that address.
        let from_block = self.block_address(&net, asked).await?;
        let ip = match self
            .registry
            .allocate_endpoint(
                &net,
                from_block.as_ref().map(|(ip, _)| *ip).or(asked),
                &holder,
            )
            .await
        {
            Ok(ip) => ip,
            Err(e) => {
                if let Some((ip, handle)) = &from_block {
                    let _ = self.registry.release_from_blocks(*ip, handle).await;
                }
                return Err(e.into());
            }
        };
        info!(network = %net.name, %ip, "address allocated");
        Ok(json!({"Address": format!("{ip}/{}", net.subnet.prefix_len()), "Data": {}}))
    }

    /// For a routed network on a pool, an address taken from this node's blocks (or
    /// `asked`, from its block), with the handle it is held under; `None` otherwise.
    pub(super) async fn block_address(
        &self,
        net: &NamedNetwork,
        asked: Option<Ipv4Addr>,
    ) -> Result<Option<(Ipv4Addr, String)>, DriverError> {
        let pools = self.registry.pools().await?;
        if weft_alloc::blocks::pool_of(net, &pools).is_none() {
            return Ok(None);
        }
        let strict = self.registry.config().await.ok().is_some_and(|c| {
            c.ipam
                == weft_alloc::IpamModel::Blocks {
                    strict_affinity: true,
                }
        });
        let me = self.host.public_ip;
        let prefix = weft_alloc::blocks::docker_handle_prefix(&net.name);
        if let Some(ip) = asked {
            weft_alloc::named::check_fixed(net, ip).map_err(|why| NamedError::Unusable {
                name: net.name.clone(),
                ip,
                why,
            })?;
            let handle = format!("{prefix}{}", unique());
            self.registry.allocate_fixed(me, ip, &handle).await?;
            return Ok(Some((ip, handle)));
        }
        // The pool's network and broadcast addresses and the network's nominal gateway
        // are no endpoint's: one that comes up is kept, marked reserved, and the next
        // taken (at most three times for the network's life).
        for _ in 0..4 {
            let handle = format!("{prefix}{}", unique());
            let ip = self
                .registry
                .allocate_from_blocks(me, &handle, strict)
                .await?;
            if weft_alloc::named::check_fixed(net, ip).is_ok() {
                return Ok(Some((ip, handle)));
            }
            let reserved = format!("{prefix}reserved");
            let _ = self.registry.release_from_blocks(ip, &handle).await;
            let _ = self.registry.allocate_fixed(me, ip, &reserved).await;
        }
        Err(DriverError::NoBlockAddress(net.name.clone()))
    }

    pub(super) async fn release_address(&self, req: ReleaseAddress) -> Answer {
        let ip: Ipv4Addr = req
            .address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| DriverError::NotAnAddress(req.address.clone()))?;
        let subnet: Ipv4Net = req
            .pool_id
            .parse()
            .map_err(|_| DriverError::UnknownPool(req.pool_id.clone()))?;
        let Ok(net) = self.registry.network_by_subnet(subnet).await else {
            return Ok(json!({})); // the network is gone, and its addresses with it
        };
        if net.gateway == ip {
            return Ok(json!({}));
        }
        let held = self.registry.endpoints(&net.name).await?;
        match held.iter().find(|(a, _)| *a == ip) {
            Some((_, e)) if e.node != self.host.public_ip => Err(DriverError::HeldElsewhere {
                ip,
                network: net.name,
                node: e.node,
            }),
            Some(_) => {
                self.forget_identity(ip).await;
                self.registry.release_docker_address(&net, ip).await?;
                info!(network = %net.name, %ip, "address released");
                Ok(json!({}))
            }
            None => Ok(json!({})),
        }
    }
}
