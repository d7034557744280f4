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
//!
//! - [`network`]: networks created and deleted, pending ones registered.
//! - [`ipam`]: pools and addresses (from the network's subnet, or a pool's blocks).
//! - [`endpoint`]: endpoints, and the veth a join makes.
//! - [`ports`]: published ports (`docker run -p`), kept in the endpoint's record.

mod endpoint;
mod ipam;
mod network;
mod ports;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use serde_json::{json, Value};
use weft_alloc::named::{Mode, NamedNetwork, NetworkRequest};
use weft_alloc::Registry;
use weft_kernel::Attach;

pub use crate::error::DriverError;
use crate::protocol::*;
pub use endpoint::{docker_mac, veth_name};

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
    /// Wakes the sync with the local dockerd now rather than at its next pass: a network
    /// Docker just created here (to be registered by name), or one the store just
    /// gained or lost (to be created or removed here), is usable everywhere at once.
    pub nudge: Arc<tokio::sync::Notify>,
    /// Endpoints whose container a task is reading (see `identity`): the sync leaves
    /// them to it.
    pub identifying: std::collections::BTreeSet<String>,
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

/// A call's answer: its JSON, or why it was refused (sent as `{"Err": ...}`).
pub type Answer = Result<Value, DriverError>;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DriverError> {
    serde_json::from_slice(body).map_err(|source| DriverError::Malformed {
        source,
        shown: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
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
            "NetworkDriver.EndpointOperInfo" => self.endpoint_oper_info(parse(body)?).await,
            "NetworkDriver.ProgramExternalConnectivity" => {
                self.program_external(parse(body)?).await
            }
            "NetworkDriver.RevokeExternalConnectivity" => self.revoke_external(parse(body)?).await,
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
            // Discovery, swarm allocation.
            _ => Ok(json!({})),
        }
    }
}
