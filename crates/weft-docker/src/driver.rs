//! The network and IPAM driver: each plugin call, answered from the store and the
//! dataplane. Nothing here speaks HTTP (see [`crate::server`]) or Docker's engine API
//! (see [`crate::engine`]), so every call is tested against an embedded store and a fake
//! kernel.
//!
//! Docker never tells a driver a network's name. A network Docker creates first is
//! therefore held as *pending* under Docker's ID until [`crate::sync`] has read its name
//! from the local daemon and written it to the store; a network that is already in the
//! store (created with `weftctl network create`, or on another host) is recognised by its
//! subnet, which no two networks share.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use serde_json::{json, Value};
use tracing::{info, warn};
use weft_alloc::named::{Endpoint, Mode, NamedError, NamedNetwork, NetworkRequest, PENDING};
use weft_alloc::Registry;
use weft_kernel::dataplane::{LinkSetting, LinkUpdate, VethPair};
use weft_kernel::Attach;
use weft_plan::{MacAddr, Route, SegmentSpec};

use crate::protocol::*;

/// Routed containers' gateway and host-side MAC (Calico's convention, as the CNI
/// plugin's routed mode).
pub const ROUTED_GATEWAY: &str = "169.254.1.1";
pub const ROUTED_HOST_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// Host-side veth names: this prefix and the endpoint ID's first 9 characters. The
/// CNI plugin names its veths `weft` and 11 hex digits; `k` is not a hex digit, so no
/// CNI veth ever starts with this prefix and the sync's collection of stray veths never
/// touches one.
pub const HOST_PREFIX: &str = "weftdk";
/// The container side's name until Docker moves it in and renames it (`p`: not hex).
pub const PEER_PREFIX: &str = "weftdp";

/// A handle suffix no other allocation of this process has (nanoseconds, then a count).
fn unique() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}-{n}")
}

/// A network Docker created here whose name is not known yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub mode: Mode,
    pub vni: Option<u32>,
    pub internal: bool,
    /// When Docker created it here, in order: networks are registered (and given their
    /// VNIs) in the order they were created, not in the order of their random IDs.
    pub seq: u64,
}

impl Pending {
    pub fn request(&self, name: &str) -> NetworkRequest {
        NetworkRequest {
            name: name.to_owned(),
            subnet: self.subnet,
            gateway: self.gateway,
            mode: self.mode,
            vni: self.vni,
            internal: self.internal,
        }
    }
}

/// What this host's driver knows besides the store.
#[derive(Debug, Default)]
pub struct DriverState {
    /// Docker network ID -> Weft network name.
    pub names: BTreeMap<String, String>,
    pub pending: BTreeMap<String, Pending>,
    /// The next [`Pending::seq`].
    pub next_seq: u64,
}

/// This host, as the driver needs it.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The node's public IP (its VTEP, its routed containers' next hop).
    pub public_ip: Ipv4Addr,
    pub underlay: u32,
    pub underlay_mtu: u32,
    /// The MTU the cluster's backend leaves containers (routed networks ride it).
    pub routed_mtu: u32,
}

#[derive(Clone)]
pub struct Driver {
    pub registry: Registry,
    pub dp: Arc<dyn Attach>,
    pub host: HostFacts,
    pub local: Arc<Mutex<DriverState>>,
    /// The host's own network namespace, where both veth ends are made.
    pub own_netns: PathBuf,
    /// The local dockerd, asked for the name of a network it just created when a
    /// container comes before the sync (see [`Driver::register`]).
    pub engine: Option<crate::engine::Engine>,
    /// The revision this node's policy table reflects: with it, Join records each
    /// endpoint for network policy (see [`crate::identity`]).
    pub enforced: Option<crate::identity::Enforced>,
}

/// What registering a pending network did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Written to the store.
    Created(NamedNetwork),
    /// The store already had it (made on another host meanwhile).
    Bound(String),
}

type Answer = Result<Value, String>;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("malformed request ({e}): {shown:?}")
    })
}

/// Which calls this driver answers; anything else is a 404.
pub fn known(method: &str) -> bool {
    matches!(
        method,
        "Plugin.Activate"
            | "NetworkDriver.GetCapabilities"
            | "NetworkDriver.CreateNetwork"
            | "NetworkDriver.DeleteNetwork"
            | "NetworkDriver.CreateEndpoint"
            | "NetworkDriver.EndpointOperInfo"
            | "NetworkDriver.DeleteEndpoint"
            | "NetworkDriver.Join"
            | "NetworkDriver.Leave"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity"
            | "NetworkDriver.AllocateNetwork"
            | "NetworkDriver.FreeNetwork"
            | "IpamDriver.GetCapabilities"
            | "IpamDriver.GetDefaultAddressSpaces"
            | "IpamDriver.RequestPool"
            | "IpamDriver.ReleasePool"
            | "IpamDriver.RequestAddress"
            | "IpamDriver.ReleaseAddress"
    )
}

impl Driver {
    /// Answers one call; `Err` becomes `{"Err": ...}`. `method` must be [`known`].
    pub async fn call(&self, method: &str, body: &[u8]) -> Answer {
        // Calls without a body are sent with an empty one or `null`.
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            body
        };
        match method {
            "Plugin.Activate" => Ok(json!({"Implements": ["NetworkDriver", "IpamDriver"]})),
            "NetworkDriver.GetCapabilities" => {
                // Local scope: each daemon keeps its own copy of a network, which the sync
                // creates on every host (Docker 23+ has no cluster store to share one).
                Ok(json!({"Scope": "local", "ConnectivityScope": "global"}))
            }
            "NetworkDriver.CreateNetwork" => self.create_network(parse(body)?).await,
            "NetworkDriver.DeleteNetwork" => self.delete_network(parse(body)?).await,
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(parse(body)?).await,
            "NetworkDriver.EndpointOperInfo" => {
                parse::<EndpointRef>(body)?;
                Ok(json!({"Value": {}}))
            }
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(parse(body)?).await,
            "NetworkDriver.Join" => self.join(parse(body)?).await,
            "NetworkDriver.Leave" => self.leave(parse(body)?).await,
            "IpamDriver.GetCapabilities" => {
                Ok(json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}))
            }
            "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": LOCAL_SPACE,
                "GlobalDefaultAddressSpace": GLOBAL_SPACE,
            })),
            "IpamDriver.RequestPool" => self.request_pool(parse(body)?).await,
            "IpamDriver.ReleasePool" => Ok(json!({})),
            "IpamDriver.RequestAddress" => self.request_address(parse(body)?).await,
            "IpamDriver.ReleaseAddress" => self.release_address(parse(body)?).await,
            // Discovery, external connectivity (no published ports yet), swarm allocation.
            _ => Ok(json!({})),
        }
    }

    fn name_of(&self, docker_id: &str) -> Option<String> {
        self.local
            .lock()
            .expect("lock")
            .names
            .get(docker_id)
            .cloned()
    }

    /// The Weft network behind a Docker network ID: known by ID, or still pending and
    /// registered now (the sync may not have come round yet).
    async fn network_of(&self, docker_id: &str) -> Result<NamedNetwork, String> {
        if let Some(name) = self.name_of(docker_id) {
            if let Some(net) = self
                .registry
                .network(&name)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(net);
            }
            return Err(format!("network {name:?} is no longer in the store"));
        }
        Err(format!(
            "unknown network {}: not created through Weft on this host (is the network registered yet? see weftctl network list)",
            weft_alloc::named::short(docker_id)
        ))
    }

    async fn network_by_pool(&self, pool: &str) -> Result<NamedNetwork, String> {
        let subnet: Ipv4Net = pool
            .parse()
            .map_err(|_| format!("unknown pool {pool:?}: Weft's pools are subnets"))?;
        match self.registry.network_by_subnet(subnet).await {
            Ok(net) => Ok(net),
            Err(NamedError::UnknownSubnet(_)) => {
                // Created here a moment ago: register it now if Docker has named it.
                let pending = self
                    .local
                    .lock()
                    .expect("lock")
                    .pending
                    .iter()
                    .find(|(_, p)| p.subnet == subnet)
                    .map(|(id, _)| id.clone());
                let Some(id) = pending else {
                    return Err(format!("no Weft network has the subnet {subnet}"));
                };
                let named = match &self.engine {
                    Some(engine) => engine.network(&id).await.ok().flatten().map(|d| d.name),
                    None => None,
                };
                let Some(name) = named else {
                    return Err(format!(
                        "network {subnet} is still being registered; try again in a second"
                    ));
                };
                self.register(&id, &name).await?;
                self.registry
                    .network_by_subnet(subnet)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes the pending network `docker_id` to the store under the name Docker gave
    /// it, and binds the ID to it. A name the store already has for the same subnet
    /// binds; for another subnet the network stays local to this host (an error).
    pub async fn register(&self, docker_id: &str, name: &str) -> Result<Registered, String> {
        let pending = self
            .local
            .lock()
            .expect("lock")
            .pending
            .get(docker_id)
            .cloned();
        let Some(p) = pending else {
            return Err(format!(
                "network {} is not pending",
                weft_alloc::named::short(docker_id)
            ));
        };
        let outcome = match self.registry.create_network(&p.request(name)).await {
            Ok(net) => Ok(Registered::Created(net)),
            Err(NamedError::Exists(n)) => match self.registry.network(&n).await {
                Ok(Some(net)) if net.subnet == p.subnet => Ok(Registered::Bound(n)),
                _ => Err(format!(
                    "a different network named {n:?} is already in the store; this one stays local to this host"
                )),
            },
            Err(e) => Err(e.to_string()),
        };
        let mut local = self.local.lock().expect("lock");
        local.pending.remove(docker_id);
        if outcome.is_ok() {
            local.names.insert(docker_id.to_owned(), name.to_owned());
        }
        outcome
    }

    async fn request_pool(&self, req: RequestPool) -> Answer {
        if req.v6 {
            return Err("Weft networks are IPv4 only: IPv6 is not supported yet".into());
        }
        if req.pool.is_empty() {
            return Err(
                "Weft needs the network's subnet: docker network create --subnet CIDR".into(),
            );
        }
        let subnet: Ipv4Net = req
            .pool
            .parse()
            .map_err(|_| format!("subnet {:?} is not an IPv4 prefix", req.pool))?;
        // A subnet already in the store is that network's (the same network on another
        // host); a new one must fit beside every other.
        let nets = self.registry.networks().await.map_err(|e| e.to_string())?;
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
            weft_alloc::named::check_request(&probe, cluster, &nets).map_err(|e| e.to_string())?;
        }
        Ok(json!({"PoolID": subnet.to_string(), "Pool": subnet.to_string(), "Data": {}}))
    }

    async fn request_address(&self, req: RequestAddress) -> Answer {
        let subnet: Ipv4Net = req
            .pool_id
            .parse()
            .map_err(|_| format!("unknown pool {:?}", req.pool_id))?;
        let asked = match req.address.as_str() {
            "" => None,
            a => Some(
                a.parse::<Ipv4Addr>()
                    .map_err(|_| format!("{a:?} is not an IPv4 address"))?,
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
                        return Err(format!(
                            "network {:?} has the gateway {}, not {}",
                            net.name,
                            net.gateway,
                            asked.expect("some")
                        ));
                    }
                    net.gateway
                }
                Err(_) => asked.unwrap_or(Ipv4Addr::from(u32::from(subnet.network()) + 1)),
            };
            return Ok(json!({"Address": format!("{gw}/{}", subnet.prefix_len()), "Data": {}}));
        }
        let net = self.network_by_pool(&req.pool_id).await?;
        let holder = Endpoint {
            node: self.host.public_ip,
            endpoint_id: PENDING.into(),
            mac: None,
            host_iface: String::new(),
        };
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
                return Err(e.to_string());
            }
        };
        info!(network = %net.name, %ip, "address allocated");
        Ok(json!({"Address": format!("{ip}/{}", net.subnet.prefix_len()), "Data": {}}))
    }

    /// For a routed network on a pool, an address taken from this node's blocks (or
    /// `asked`, from its block), with the handle it is held under; `None` otherwise.
    async fn block_address(
        &self,
        net: &NamedNetwork,
        asked: Option<Ipv4Addr>,
    ) -> Result<Option<(Ipv4Addr, String)>, String> {
        let pools = self.registry.pools().await.map_err(|e| e.to_string())?;
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
            weft_alloc::named::check_fixed(net, ip)
                .map_err(|why| format!("{ip} cannot be used on network {:?}: {why}", net.name))?;
            let handle = format!("{prefix}{}", unique());
            self.registry
                .allocate_fixed(me, ip, &handle)
                .await
                .map_err(|e| e.to_string())?;
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
                .await
                .map_err(|e| e.to_string())?;
            if weft_alloc::named::check_fixed(net, ip).is_ok() {
                return Ok(Some((ip, handle)));
            }
            let reserved = format!("{prefix}reserved");
            let _ = self.registry.release_from_blocks(ip, &handle).await;
            let _ = self.registry.allocate_fixed(me, ip, &reserved).await;
        }
        Err(format!(
            "no usable address from the blocks of network {:?}'s pool",
            net.name
        ))
    }

    async fn release_address(&self, req: ReleaseAddress) -> Answer {
        let ip: Ipv4Addr = req
            .address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| format!("{:?} is not an IPv4 address", req.address))?;
        let subnet: Ipv4Net = req
            .pool_id
            .parse()
            .map_err(|_| format!("unknown pool {:?}", req.pool_id))?;
        let Ok(net) = self.registry.network_by_subnet(subnet).await else {
            return Ok(json!({})); // the network is gone, and its addresses with it
        };
        if net.gateway == ip {
            return Ok(json!({}));
        }
        let held = self
            .registry
            .endpoints(&net.name)
            .await
            .map_err(|e| e.to_string())?;
        match held.iter().find(|(a, _)| *a == ip) {
            Some((_, e)) if e.node != self.host.public_ip => Err(format!(
                "{ip} on network {:?} is held by node {}, not this one",
                net.name, e.node
            )),
            Some(_) => {
                self.forget_identity(ip).await;
                self.registry
                    .release_docker_address(&net, ip)
                    .await
                    .map_err(|e| e.to_string())?;
                info!(network = %net.name, %ip, "address released");
                Ok(json!({}))
            }
            None => Ok(json!({})),
        }
    }

    async fn create_network(&self, req: CreateNetwork) -> Answer {
        if req.ipv6_data.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err("Weft networks are IPv4 only: IPv6 is not supported yet".into());
        }
        let v4 = req.ipv4_data.unwrap_or_default();
        let [data] = v4.as_slice() else {
            return Err(format!(
                "a Weft network has exactly one IPv4 subnet, not {}",
                v4.len()
            ));
        };
        if data.address_space != LOCAL_SPACE && data.address_space != GLOBAL_SPACE {
            return Err("Weft networks need Weft's IPAM: add --ipam-driver weft".into());
        }
        let subnet: Ipv4Net = data
            .pool
            .parse()
            .map_err(|_| format!("subnet {:?} is not an IPv4 prefix", data.pool))?;
        let gateway = match data.gateway.split('/').next() {
            Some("") | None => None,
            Some(g) => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| format!("gateway {:?} is not an IPv4 address", data.gateway))?,
            ),
        };
        let generic = req.options.get(GENERIC).cloned().unwrap_or(Value::Null);
        let opt = |k: &str| generic.get(k).and_then(Value::as_str).map(str::to_owned);
        for k in generic
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if k != "mode" && k != "vni" {
                return Err(format!(
                    "unknown option {k:?}: Weft takes -o mode=overlay|routed and -o vni=N"
                ));
            }
        }
        let mode: Mode = opt("mode")
            .as_deref()
            .unwrap_or("overlay")
            .parse()
            .map_err(|e: weft_alloc::named::UnknownMode| e.to_string())?;
        let vni = match opt("vni") {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .map_err(|_| format!("vni {v:?} is not a number"))?,
            ),
        };
        let internal = req
            .options
            .get(INTERNAL)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let pending = Pending {
            subnet,
            gateway,
            mode,
            vni,
            internal,
            seq: 0,
        };
        match self.registry.network_by_subnet(subnet).await {
            Ok(net) => {
                // The same network seen from another host (the sync made it here), or
                // one created with weftctl: it must agree with what Docker was told.
                if net.mode != mode
                    || vni.is_some_and(|v| v != net.vni)
                    || gateway.is_some_and(|g| g != net.gateway)
                {
                    return Err(format!(
                        "subnet {subnet} belongs to network {:?} (mode {}, VNI {}, gateway {}); this request differs",
                        net.name, net.mode, net.vni, net.gateway
                    ));
                }
                self.local
                    .lock()
                    .expect("lock")
                    .names
                    .insert(req.network_id.clone(), net.name.clone());
                info!(network = %net.name, docker_id = weft_alloc::named::short(&req.network_id), "network known to Docker here");
            }
            Err(NamedError::UnknownSubnet(_)) => {
                let mut local = self.local.lock().expect("lock");
                let seq = local.next_seq;
                local.next_seq += 1;
                local
                    .pending
                    .insert(req.network_id.clone(), Pending { seq, ..pending });
                info!(%subnet, docker_id = weft_alloc::named::short(&req.network_id), "network created by Docker; registering it once Docker names it");
            }
            Err(e) => return Err(e.to_string()),
        }
        Ok(json!({}))
    }

    async fn delete_network(&self, req: NetworkOnly) -> Answer {
        let name = {
            let mut local = self.local.lock().expect("lock");
            local.pending.remove(&req.network_id);
            local.names.get(&req.network_id).cloned()
        };
        let Some(name) = name else {
            return Ok(json!({})); // never registered
        };
        // `docker network rm` on any host removes the network everywhere; the other
        // hosts' copies follow through the sync (and find it gone here: nothing to do).
        match self.registry.delete_network(&name).await {
            Ok(_) => info!(network = %name, "network deleted"),
            Err(NamedError::Unknown(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.local
            .lock()
            .expect("lock")
            .names
            .remove(&req.network_id);
        Ok(json!({}))
    }

    async fn create_endpoint(&self, req: CreateEndpoint) -> Answer {
        let net = self.network_of(&req.network_id).await?;
        let iface = req.interface.unwrap_or_default();
        if !iface.address_ipv6.is_empty() {
            return Err("Weft networks are IPv4 only: IPv6 is not supported yet".into());
        }
        let ip: Ipv4Addr = iface
            .address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| {
                format!(
                    "the endpoint has no IPv4 address ({:?}); use --ipam-driver weft",
                    iface.address
                )
            })?;
        let held = self
            .registry
            .endpoints(&net.name)
            .await
            .map_err(|e| e.to_string())?;
        let Some((_, mut ep)) = held.into_iter().find(|(a, _)| *a == ip) else {
            return Err(format!("{ip} is not allocated on network {:?}", net.name));
        };
        if ep.node != self.host.public_ip {
            return Err(format!(
                "{ip} on network {:?} is held by node {}",
                net.name, ep.node
            ));
        }
        let (mac, assigned) = match iface.mac_address.as_str() {
            "" => (docker_mac(ip), true),
            m => (
                m.parse::<MacAddr>()
                    .map_err(|e| format!("MAC {m:?}: {e}"))?,
                false,
            ),
        };
        ep.endpoint_id = req.endpoint_id.clone();
        ep.mac = Some(mac.to_string());
        self.registry
            .update_endpoint(&net.name, ip, &ep)
            .await
            .map_err(|e| e.to_string())?;
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
    ) -> Result<(Ipv4Addr, Endpoint), String> {
        self.registry
            .endpoints(&net.name)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|(_, e)| e.endpoint_id == id)
            .ok_or_else(|| {
                format!(
                    "unknown endpoint {} on network {:?}",
                    weft_alloc::named::short(id),
                    net.name
                )
            })
    }

    async fn join(&self, req: EndpointRef) -> Answer {
        let net = self.network_of(&req.network_id).await?;
        let (ip, mut ep) = self.endpoint(&net, &req.endpoint_id).await?;
        let host = veth_name(HOST_PREFIX, &req.endpoint_id);
        let peer = veth_name(PEER_PREFIX, &req.endpoint_id);
        let routed = net.mode == Mode::Routed;
        if let Some(stale) = self.dp.link(&host).await.map_err(|e| e.to_string())? {
            self.dp
                .del_link(stale.index)
                .await
                .map_err(|e| e.to_string())?;
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
            .map_err(|e| format!("cannot create {host}: {e}"))?;
        let attached = self.attach(&net, ip, &host).await;
        if let Err(e) = attached {
            if let Ok(Some(l)) = self.dp.link(&host).await {
                let _ = self.dp.del_link(l.index).await;
            }
            return Err(e);
        }
        ep.host_iface = host.clone();
        self.registry
            .update_endpoint(&net.name, ip, &ep)
            .await
            .map_err(|e| e.to_string())?;
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
    async fn attach(&self, net: &NamedNetwork, ip: Ipv4Addr, host: &str) -> Result<(), String> {
        let e = |e: weft_kernel::KernelError| e.to_string();
        let link = self
            .dp
            .link(host)
            .await
            .map_err(e)?
            .ok_or_else(|| format!("{host} vanished"))?;
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
                let (bridge, _, _) = self.dp.ensure_segment(&spec).await.map_err(e)?;
                self.dp
                    .set_link(
                        link.index,
                        LinkUpdate {
                            up: true,
                            controller: Some(bridge),
                        },
                    )
                    .await
                    .map_err(e)?;
            }
            Mode::Routed => {
                self.dp
                    .set_link_setting(&LinkSetting::ProxyArp(host.to_owned()))
                    .map_err(e)?;
                self.dp
                    .set_link_setting(&LinkSetting::ProxyDelayZero(host.to_owned()))
                    .map_err(e)?;
                self.dp
                    .set_link(
                        link.index,
                        LinkUpdate {
                            up: true,
                            controller: None,
                        },
                    )
                    .await
                    .map_err(e)?;
                self.dp
                    .add_route(&Route::device(Ipv4Net::from(ip), link.index))
                    .await
                    .map_err(e)?;
            }
        }
        Ok(())
    }

    async fn leave(&self, req: EndpointRef) -> Answer {
        self.remove_veth(&req.endpoint_id).await?;
        Ok(json!({}))
    }

    async fn remove_veth(&self, endpoint_id: &str) -> Result<(), String> {
        let host = veth_name(HOST_PREFIX, endpoint_id);
        if let Some(l) = self.dp.link(&host).await.map_err(|e| e.to_string())? {
            self.dp.del_link(l.index).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn delete_endpoint(&self, req: EndpointRef) -> Answer {
        self.remove_veth(&req.endpoint_id).await?;
        let net = match self.network_of(&req.network_id).await {
            Ok(net) => net,
            Err(e) => {
                warn!(error = %e, "deleting an endpoint of a network Weft does not know");
                return Ok(json!({}));
            }
        };
        // The address stays held until Docker releases it (ReleaseAddress).
        if let Ok((ip, mut ep)) = self.endpoint(&net, &req.endpoint_id).await {
            self.forget_identity(ip).await;
            ep.endpoint_id = PENDING.into();
            ep.mac = None;
            ep.host_iface = String::new();
            self.registry
                .update_endpoint(&net.name, ip, &ep)
                .await
                .map_err(|e| e.to_string())?;
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
