//! Named networks: address ranges of their own beside the cluster network, each with its
//! endpoints (Docker's networks; `weftctl network create NAME`).
//!
//! ```text
//! <prefix>/weft/networks/blue            {"Name":"blue","Subnet":"10.50.0.0/24","Gateway":"10.50.0.1","Mode":"overlay","VNI":4096,"Internal":false}
//! <prefix>/weft/network-vnis/4096        "blue"
//! <prefix>/weft/endpoints/blue/10.50.0.2 {"Node":"192.168.77.1","EndpointID":"...","MAC":"02:...","HostIface":"wv1a2b3c4d5e6"}
//! ```
//!
//! An endpoint's key is its address, written create-if-absent: of two hosts allocating
//! at once, one gets the address and the other tries the next. A VNI is claimed the same
//! way. Two networks' subnets never overlap each other or the cluster network.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The lowest VNI given out when none is asked for: below it, room for the cluster
/// network's (flannel's default 1) and any an operator picks by hand.
pub const FIRST_VNI: u32 = 4096;
/// VXLAN's 24-bit identifier.
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// How an endpoint's address is first held, before Docker names its endpoint.
pub const PENDING: &str = "";

/// How a named network's containers are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Docker overlay's model: one L2 segment across hosts, a VXLAN VNI of its own.
    Overlay,
    /// Calico's model: a /32 route per container, routed by the cluster's backend.
    Routed,
}

/// A network mode Weft does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}: use \"overlay\" or \"routed\"")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        match s {
            "overlay" => Ok(Mode::Overlay),
            "routed" => Ok(Mode::Routed),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Overlay => "overlay",
            Mode::Routed => "routed",
        })
    }
}

/// A named network as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedNetwork {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Subnet")]
    pub subnet: Ipv4Net,
    /// The containers' gateway: the same address on every host (overlay), so a
    /// container keeps it wherever it runs. Routed containers use 169.254.1.1 instead.
    #[serde(rename = "Gateway")]
    pub gateway: Ipv4Addr,
    #[serde(rename = "Mode")]
    pub mode: Mode,
    /// The overlay's VXLAN identifier (0 for routed networks).
    #[serde(rename = "VNI", default)]
    pub vni: u32,
    /// No way out of the network: no gateway route, no masquerade.
    #[serde(rename = "Internal", default)]
    pub internal: bool,
}

/// One container's address on a named network, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The public IP of the node it lives on (its VTEP, its route's next hop).
    #[serde(rename = "Node")]
    pub node: Ipv4Addr,
    /// Docker's endpoint ID; empty while only the address is held.
    #[serde(rename = "EndpointID", default)]
    pub endpoint_id: String,
    /// The container interface's MAC (overlay: the FDB and neighbour entries' key).
    #[serde(rename = "MAC", default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The host side of its veth pair.
    #[serde(
        rename = "HostIface",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub host_iface: String,
    /// Its published ports (`docker run -p`): the node it lives on forwards each to it.
    #[serde(rename = "Ports", default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// The container's ID, once its node has read it from its daemon: tells which
    /// endpoints (networks) are one container's, so its queries see all of them.
    #[serde(
        rename = "Container",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub container: String,
    /// The names other containers on the network resolve to this address: the
    /// container's name and its aliases on the network (`--network-alias`, Compose's
    /// service name), as its daemon has them.
    #[serde(rename = "Names", default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Endpoint {
    /// An address held on `node` for `endpoint_id` (Docker's endpoint ID, or a marker
    /// while there is none yet), nothing else known.
    pub fn held(node: Ipv4Addr, endpoint_id: &str) -> Endpoint {
        Endpoint {
            node,
            endpoint_id: endpoint_id.to_owned(),
            mac: None,
            host_iface: String::new(),
            ports: Vec::new(),
            container: String::new(),
            names: Vec::new(),
        }
    }

    /// Whether `other` differs from this only in who the container is and what it is
    /// called: nothing a host plan depends on (the resolver alone reads them).
    pub fn same_but_names(&self, other: &Endpoint) -> bool {
        let strip = |e: &Endpoint| Endpoint {
            container: String::new(),
            names: Vec::new(),
            ..e.clone()
        };
        strip(self) == strip(other)
    }
}

/// A transport protocol a port is published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    Tcp,
    Udp,
    Sctp,
}

impl PortProto {
    /// From the IP protocol number Docker passes (6, 17, 132).
    pub fn from_number(n: u64) -> Option<PortProto> {
        match n {
            6 => Some(PortProto::Tcp),
            17 => Some(PortProto::Udp),
            132 => Some(PortProto::Sctp),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            PortProto::Tcp => 6,
            PortProto::Udp => 17,
            PortProto::Sctp => 132,
        }
    }
}

impl fmt::Display for PortProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
            PortProto::Sctp => "sctp",
        })
    }
}

/// One published port: `host_ip:host_port` on the container's node (any of its
/// addresses when `host_ip` is none) forwarded to the container's `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    #[serde(rename = "Proto")]
    pub proto: PortProto,
    #[serde(rename = "HostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    #[serde(rename = "HostPort")]
    pub host_port: u16,
    #[serde(rename = "Port")]
    pub port: u16,
}

impl PublishedPort {
    /// Whether two bindings want the same host socket (a port, on overlapping
    /// addresses).
    pub fn collides(&self, other: &PublishedPort) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// A request to create a named network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub mode: Mode,
    pub vni: Option<u32>,
    pub internal: bool,
}

/// A name that is not one Docker would take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name {0:?}: 1 to 64 characters, letters, digits, '_', '.' or '-', starting with a letter or digit")]
pub struct BadName(pub String);

/// Why a request for a named network is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Name(#[from] BadName),
    #[error("subnet {subnet} has host bits set; did you mean {}?", .subnet.trunc())]
    HostBits { subnet: Ipv4Net },
    #[error("subnet {0} is too small: the longest prefix is /30")]
    TooSmall(Ipv4Net),
    #[error("subnet {subnet} overlaps the cluster network {cluster}")]
    OverlapsCluster { subnet: Ipv4Net, cluster: Ipv4Net },
    #[error("subnet {subnet} overlaps network {name:?} ({other})")]
    Overlaps {
        subnet: Ipv4Net,
        name: String,
        other: Ipv4Net,
    },
    #[error("gateway {gateway} is not a usable address of {subnet}")]
    Gateway { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("--vni is for overlay networks; a routed network has no VXLAN")]
    VniOnRouted,
    #[error("VNI {0} is out of range (1 to {MAX_VNI})")]
    VniRange(u32),
}

/// Why a fixed address cannot be asked for on a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixedError {
    #[error("it is outside the subnet {0}")]
    Outside(Ipv4Net),
    #[error("it is the network or broadcast address of {0}")]
    NetworkOrBroadcast(Ipv4Net),
    #[error("it is the network's gateway")]
    Gateway,
    #[error("its record in the store is unreadable")]
    Unreadable,
}

/// Docker's rule for names, which Weft follows so every Weft network can be a Docker one.
pub fn check_name(name: &str) -> Result<(), BadName> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.is_empty() || name.len() > 64 || !ok_first || !ok_rest {
        return Err(BadName(name.to_owned()));
    }
    Ok(())
}

/// Checks a request against the cluster network and the networks that exist; returns
/// the network to store, VNI not yet chosen (pure).
pub fn check_request(
    req: &NetworkRequest,
    cluster: Option<Ipv4Net>,
    existing: &[NamedNetwork],
) -> Result<NamedNetwork, RequestError> {
    check_name(&req.name)?;
    let subnet = req.subnet;
    if subnet != subnet.trunc() {
        return Err(RequestError::HostBits { subnet });
    }
    if subnet.prefix_len() > 30 {
        return Err(RequestError::TooSmall(subnet));
    }
    if let Some(cluster) = cluster.filter(|c| c.contains(&subnet) || subnet.contains(c)) {
        return Err(RequestError::OverlapsCluster { subnet, cluster });
    }
    if let Some(n) = existing
        .iter()
        .find(|n| n.subnet.contains(&subnet) || subnet.contains(&n.subnet))
    {
        return Err(RequestError::Overlaps {
            subnet,
            name: n.name.clone(),
            other: n.subnet,
        });
    }
    let gateway = req.gateway.unwrap_or_else(|| first_host(&subnet));
    if !usable(&subnet, gateway) {
        return Err(RequestError::Gateway { gateway, subnet });
    }
    if let Some(v) = req.vni {
        if req.mode == Mode::Routed {
            return Err(RequestError::VniOnRouted);
        }
        if v == 0 || v > MAX_VNI {
            return Err(RequestError::VniRange(v));
        }
    }
    Ok(NamedNetwork {
        name: req.name.clone(),
        subnet,
        gateway,
        mode: req.mode,
        vni: req.vni.unwrap_or(0),
        internal: req.internal,
    })
}

fn first_host(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Inside the subnet and neither its network nor its broadcast address.
pub fn usable(subnet: &Ipv4Net, ip: Ipv4Addr) -> bool {
    subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast()
}

/// The lowest usable address of `net` that is neither its gateway nor taken (pure).
pub fn next_free(net: &NamedNetwork, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let (lo, hi) = (
        u32::from(net.subnet.network()) + 1,
        u32::from(net.subnet.broadcast()),
    );
    (lo..hi)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != net.gateway && !taken.contains(ip))
}

/// Why `ip` cannot be asked for on `net`, if it cannot.
pub fn check_fixed(net: &NamedNetwork, ip: Ipv4Addr) -> Result<(), FixedError> {
    if !net.subnet.contains(&ip) {
        return Err(FixedError::Outside(net.subnet));
    }
    if !usable(&net.subnet, ip) {
        return Err(FixedError::NetworkOrBroadcast(net.subnet));
    }
    if ip == net.gateway {
        return Err(FixedError::Gateway);
    }
    Ok(())
}

/// The first 12 characters of a Docker ID, as `docker ps` shows them.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
