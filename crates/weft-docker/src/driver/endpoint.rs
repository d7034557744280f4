//! Endpoints: recorded with their MAC at creation, given a veth (bridge port or
//! proxy-ARP link) at join, and cleared at leave and deletion.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::json;
use tracing::{info, warn};
use weft_alloc::named::{Endpoint, Mode, NamedNetwork, PENDING};
use weft_kernel::dataplane::{LinkSetting, LinkUpdate, VethPair};
use weft_plan::{MacAddr, Route, SegmentSpec};

use super::{Answer, Driver, HOST_PREFIX, PEER_PREFIX, ROUTED_GATEWAY, ROUTED_HOST_MAC};
use crate::error::DriverError;
use crate::protocol::*;

impl Driver {
    pub(super) async fn create_endpoint(&self, req: CreateEndpoint) -> Answer {
        let net = self.network_of(&req.network_id).await?;
        let iface = req.interface.unwrap_or_default();
        if !iface.address_ipv6.is_empty() {
            return Err(DriverError::Ipv6);
        }
        let ip: Ipv4Addr = iface
            .address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| DriverError::NoEndpointAddress(iface.address.clone()))?;
        let held = self.registry.endpoints(&net.name).await?;
        let Some((_, mut ep)) = held.into_iter().find(|(a, _)| *a == ip) else {
            return Err(DriverError::NotAllocated {
                ip,
                network: net.name,
            });
        };
        if ep.node != self.host.public_ip {
            return Err(DriverError::HeldElsewhere {
                ip,
                network: net.name,
                node: ep.node,
            });
        }
        let (mac, assigned) = match iface.mac_address.as_str() {
            "" => (docker_mac(ip), true),
            m => (
                m.parse::<MacAddr>().map_err(|source| DriverError::BadMac {
                    given: m.to_owned(),
                    source,
                })?,
                false,
            ),
        };
        ep.endpoint_id = req.endpoint_id.clone();
        ep.mac = Some(mac.to_string());
        self.registry.update_endpoint(&net.name, ip, &ep).await?;
        if assigned {
            Ok(json!({"Interface": {"MacAddress": mac.to_string()}}))
        } else {
            Ok(json!({"Interface": {}}))
        }
    }

    /// The endpoint record of a Docker endpoint, by ID.
    pub(crate) async fn endpoint(
        &self,
        net: &NamedNetwork,
        id: &str,
    ) -> Result<(Ipv4Addr, Endpoint), DriverError> {
        self.registry
            .endpoints(&net.name)
            .await?
            .into_iter()
            .find(|(_, e)| e.endpoint_id == id)
            .ok_or_else(|| DriverError::UnknownEndpoint {
                id: weft_alloc::named::short(id).to_owned(),
                network: net.name.clone(),
            })
    }

    pub(super) async fn join(&self, req: EndpointRef) -> Answer {
        let net = self.network_of(&req.network_id).await?;
        let (ip, _) = self.endpoint(&net, &req.endpoint_id).await?;
        let host = veth_name(HOST_PREFIX, &req.endpoint_id);
        let peer = veth_name(PEER_PREFIX, &req.endpoint_id);
        let routed = net.mode == Mode::Routed;
        if let Some(stale) = self.dp.link(&host).await? {
            self.dp.del_link(stale.index).await?;
        }
        let pair = VethPair {
            host: host.clone(),
            host_mac: routed.then(|| ROUTED_HOST_MAC.parse().expect("valid MAC")),
            peer: peer.clone(),
            peer_netns: self.own_netns.clone(),
            mtu: if routed {
                self.host.routed_mtu
            } else {
                self.host.underlay_mtu - 50
            },
            gso_max_size: None,
        };
        self.dp
            .add_veth(&pair)
            .await
            .map_err(|source| DriverError::Veth {
                name: host.clone(),
                source,
            })?;
        let attached = self.attach(&net, ip, &host).await;
        if let Err(e) = attached {
            if let Ok(Some(l)) = self.dp.link(&host).await {
                let _ = self.dp.del_link(l.index).await;
            }
            return Err(e);
        }
        self.registry
            .modify_endpoint(&net.name, ip, |e| e.host_iface = host.clone())
            .await?;
        // Policy before the first packet: held until its labels are read.
        if let Err(e) = self.hold(&net, ip, &req.endpoint_id, &host).await {
            let _ = self.remove_veth(&req.endpoint_id).await;
            return Err(e);
        }
        self.identify_soon(
            req.network_id.clone(),
            req.endpoint_id.clone(),
            net.clone(),
            ip,
            host,
        );
        info!(network = %net.name, %ip, endpoint = weft_alloc::named::short(&req.endpoint_id), "container joined");
        let mut answer = json!({
            "InterfaceName": {"SrcName": peer, "DstPrefix": "eth"},
            "DisableGatewayService": true,
        });
        if routed {
            if !net.internal {
                answer["Gateway"] = json!(ROUTED_GATEWAY);
            }
            answer["StaticRoutes"] = serde_json::to_value([StaticRoute {
                destination: format!("{ROUTED_GATEWAY}/32"),
                route_type: 1,
                next_hop: String::new(),
            }])
            .expect("serializes");
        } else if !net.internal {
            answer["Gateway"] = json!(net.gateway.to_string());
        }
        Ok(answer)
    }

    /// Makes the host side of a new veth a bridge port (overlay) or a proxy-ARP link
    /// with the container's /32 (routed).
    pub(super) async fn attach(
        &self,
        net: &NamedNetwork,
        ip: Ipv4Addr,
        host: &str,
    ) -> Result<(), DriverError> {
        let link = self
            .dp
            .link(host)
            .await?
            .ok_or_else(|| DriverError::Vanished(host.to_owned()))?;
        match net.mode {
            Mode::Overlay => {
                let spec = SegmentSpec {
                    network: net.name.clone(),
                    vni: net.vni,
                    local: self.host.public_ip,
                    underlay: self.host.underlay,
                    mtu: self.host.underlay_mtu - 50,
                    gateway: (!net.internal).then(|| {
                        Ipv4Net::new(net.gateway, net.subnet.prefix_len()).expect("prefix")
                    }),
                };
                let (bridge, _, _) = self.dp.ensure_segment(&spec).await?;
                self.dp
                    .set_link(
                        link.index,
                        LinkUpdate {
                            up: true,
                            controller: Some(bridge),
                        },
                    )
                    .await?;
            }
            Mode::Routed => {
                self.dp
                    .set_link_setting(&LinkSetting::ProxyArp(host.to_owned()))?;
                self.dp
                    .set_link_setting(&LinkSetting::ProxyDelayZero(host.to_owned()))?;
                self.dp
                    .set_link(
                        link.index,
                        LinkUpdate {
                            up: true,
                            controller: None,
                        },
                    )
                    .await?;
                self.dp
                    .add_route(&Route::device(Ipv4Net::from(ip), link.index))
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn leave(&self, req: EndpointRef) -> Answer {
        self.remove_veth(&req.endpoint_id).await?;
        Ok(json!({}))
    }

    pub(super) async fn remove_veth(&self, endpoint_id: &str) -> Result<(), DriverError> {
        let host = veth_name(HOST_PREFIX, endpoint_id);
        if let Some(l) = self.dp.link(&host).await? {
            self.dp.del_link(l.index).await?;
        }
        Ok(())
    }

    pub(super) async fn delete_endpoint(&self, req: EndpointRef) -> Answer {
        self.remove_veth(&req.endpoint_id).await?;
        let net = match self.network_of(&req.network_id).await {
            Ok(net) => net,
            Err(e) => {
                warn!(error = %e, "deleting an endpoint of a network Weft does not know");
                return Ok(json!({}));
            }
        };
        // The address stays held until Docker releases it (ReleaseAddress).
        if let Ok((ip, ep)) = self.endpoint(&net, &req.endpoint_id).await {
            self.forget_identity(ip).await;
            self.registry
                .modify_endpoint(&net.name, ip, |e| {
                    *e = Endpoint::held(ep.node, PENDING);
                })
                .await?;
        }
        Ok(json!({}))
    }
}

/// A veth name from an endpoint ID: `prefix` and its first characters, 15 in all.
pub fn veth_name(prefix: &str, endpoint_id: &str) -> String {
    let keep = 15 - prefix.len();
    format!("{prefix}{}", &endpoint_id[..endpoint_id.len().min(keep)])
}

/// Docker's own MAC for an address (02:42 and the address's four bytes): what `docker
/// inspect` users expect, and unique within a network because addresses are.
pub fn docker_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
}
