//! Networks: created by Docker (pending until named) or known from the store by
//! their subnet, registered under the name Docker gave them, and deleted.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{json, Value};
use tracing::info;
use weft_alloc::named::{Mode, NamedError, NamedNetwork};

use super::{Answer, Driver, Pending, Registered};
use crate::error::DriverError;
use crate::protocol::*;

impl Driver {
    pub(super) fn name_of(&self, docker_id: &str) -> Option<String> {
        self.local
            .lock()
            .expect("lock")
            .names
            .get(docker_id)
            .cloned()
    }

    /// The Weft network behind a Docker network ID: known by ID, or still pending and
    /// registered now (the sync may not have come round yet).
    pub(super) async fn network_of(&self, docker_id: &str) -> Result<NamedNetwork, DriverError> {
        if let Some(name) = self.name_of(docker_id) {
            if let Some(net) = self.registry.network(&name).await? {
                return Ok(net);
            }
            return Err(DriverError::Gone(name));
        }
        Err(DriverError::UnknownNetwork(
            weft_alloc::named::short(docker_id).to_owned(),
        ))
    }

    pub(super) async fn network_by_pool(&self, pool: &str) -> Result<NamedNetwork, DriverError> {
        let subnet: Ipv4Net = pool
            .parse()
            .map_err(|_| DriverError::UnknownPool(pool.to_owned()))?;
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
                    return Err(DriverError::NoNetwork(subnet));
                };
                let named = match &self.engine {
                    Some(engine) => engine.network(&id).await.ok().flatten().map(|d| d.name),
                    None => None,
                };
                let Some(name) = named else {
                    return Err(DriverError::StillRegistering(subnet));
                };
                self.register(&id, &name).await?;
                Ok(self.registry.network_by_subnet(subnet).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the pending network `docker_id` to the store under the name Docker gave
    /// it, and binds the ID to it. A name the store already has for the same subnet
    /// binds; for another subnet the network stays local to this host (an error).
    pub async fn register(&self, docker_id: &str, name: &str) -> Result<Registered, DriverError> {
        let pending = self
            .local
            .lock()
            .expect("lock")
            .pending
            .get(docker_id)
            .cloned();
        let Some(p) = pending else {
            return Err(DriverError::NotPending(
                weft_alloc::named::short(docker_id).to_owned(),
            ));
        };
        let outcome = match self.registry.create_network(&p.request(name)).await {
            Ok(net) => Ok(Registered::Created(net)),
            Err(NamedError::Exists(n)) => match self.registry.network(&n).await {
                Ok(Some(net)) if net.subnet == p.subnet => Ok(Registered::Bound(n)),
                _ => Err(DriverError::NameTaken(n)),
            },
            Err(e) => Err(e.into()),
        };
        let mut local = self.local.lock().expect("lock");
        local.pending.remove(docker_id);
        if outcome.is_ok() {
            local.names.insert(docker_id.to_owned(), name.to_owned());
        }
        outcome
    }

    pub(super) async fn create_network(&self, req: CreateNetwork) -> Answer {
        if req.ipv6_data.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(DriverError::Ipv6);
        }
        let v4 = req.ipv4_data.unwrap_or_default();
        let [data] = v4.as_slice() else {
            return Err(DriverError::SubnetCount(v4.len()));
        };
        if data.address_space != LOCAL_SPACE && data.address_space != GLOBAL_SPACE {
            return Err(DriverError::ForeignIpam);
        }
        let subnet: Ipv4Net = data
            .pool
            .parse()
            .map_err(|_| DriverError::NotAPrefix(data.pool.clone()))?;
        let gateway = match data.gateway.split('/').next() {
            Some("") | None => None,
            Some(g) => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| DriverError::BadGateway(data.gateway.clone()))?,
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
                return Err(DriverError::UnknownOption(k));
            }
        }
        let mode: Mode = opt("mode")
            .as_deref()
            .unwrap_or("overlay")
            .parse::<Mode>()?;
        let vni = match opt("vni") {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .map_err(|_| DriverError::BadVni(v.clone()))?,
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
                    return Err(DriverError::Differs {
                        subnet,
                        name: net.name,
                        mode: net.mode,
                        vni: net.vni,
                        gateway: net.gateway,
                    });
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
                local.nudge.notify_one();
                info!(%subnet, docker_id = weft_alloc::named::short(&req.network_id), "network created by Docker; registering it once Docker names it");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(json!({}))
    }

    pub(super) async fn delete_network(&self, req: NetworkOnly) -> Answer {
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
            Err(e) => return Err(e.into()),
        }
        self.local
            .lock()
            .expect("lock")
            .names
            .remove(&req.network_id);
        Ok(json!({}))
    }
}
