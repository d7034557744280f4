//! The libnetwork remote plugin protocol, as Docker speaks it: an HTTP POST of JSON per
//! call, answered with JSON (`{"Err": "..."}` on failure). Only the fields Weft reads or
//! writes are named; Docker ignores what a plugin leaves out. Failures are answered with
//! status 200 and the error in the body (see [`err`]), as libnetwork expects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The content type Docker sends and expects.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The option key under which `docker network create -o k=v` arrives.
pub const GENERIC: &str = "com.docker.network.generic";
/// Set when the network was created with `--internal`.
pub const INTERNAL: &str = "com.docker.network.internal";
/// Marks the gateway's `RequestAddress`.
pub const REQUEST_TYPE: &str = "RequestAddressType";
pub const GATEWAY_TYPE: &str = "com.docker.network.gateway";

/// The address spaces Weft's IPAM answers with (Docker only passes them back).
pub const LOCAL_SPACE: &str = "weft-local";
pub const GLOBAL_SPACE: &str = "weft";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpData {
    #[serde(default)]
    pub address_space: String,
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub gateway: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    #[serde(rename = "IPv4Data", default)]
    pub ipv4_data: Option<Vec<IpData>>,
    #[serde(rename = "IPv6Data", default)]
    pub ipv6_data: Option<Vec<IpData>>,
}

#[derive(Debug, Deserialize)]
pub struct NetworkOnly {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Interface {
    #[serde(default)]
    pub address: String,
    #[serde(rename = "AddressIPv6", default)]
    pub address_ipv6: String,
    #[serde(default)]
    pub mac_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub interface: Option<Interface>,
}

/// `DeleteEndpoint`, `EndpointOperInfo`, `Leave`, `Join` (whose sandbox key Weft does
/// not need: Docker moves the interface itself).
#[derive(Debug, Deserialize)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// ProgramExternalConnectivity: the endpoint and the sandbox's options (its port
/// bindings among them).
#[derive(Debug, Deserialize)]
pub struct ProgramExternal {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Options", default)]
    pub options: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPool {
    #[serde(default)]
    pub pool: String,
    #[serde(rename = "V6", default)]
    pub v6: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StaticRoute {
    pub destination: String,
    /// 1: connected (on-link), 0: via `NextHop`.
    pub route_type: u8,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_hop: String,
}

/// An error answer to `method`. The network driver's responses carry it as `Err`,
/// the IPAM driver's as `Error` (libnetwork's two API packages differ).
pub fn err(method: &str, message: impl std::fmt::Display) -> Value {
    let key = if method.starts_with("IpamDriver.") {
        "Error"
    } else {
        "Err"
    };
    serde_json::json!({ key: message.to_string() })
}
