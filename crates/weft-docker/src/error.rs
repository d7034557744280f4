//! Why the driver refused a plugin call. Docker shows the message to the user as
//! `Error response from daemon: ...`, so each says what was wrong and, where there is
//! one, what to do instead.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;
use weft_alloc::blocks::BlockError;
use weft_alloc::named::{Mode, NamedError, RequestError, UnknownMode};
use weft_kernel::KernelError;
use weft_store::StoreError;

use crate::engine::EngineError;

#[derive(Debug, Error)]
pub enum DriverError {
    #[error("malformed request ({source}): {shown:?}")]
    Malformed {
        source: serde_json::Error,
        /// The body's first 200 bytes.
        shown: String,
    },
    #[error("Weft networks are IPv4 only: IPv6 is not supported yet")]
    Ipv6,
    #[error("Weft needs the network's subnet: docker network create --subnet CIDR")]
    NoSubnet,
    #[error("Weft networks need Weft's IPAM: add --ipam-driver weft")]
    ForeignIpam,
    #[error("a Weft network has exactly one IPv4 subnet, not {0}")]
    SubnetCount(usize),
    #[error("subnet {0:?} is not an IPv4 prefix")]
    NotAPrefix(String),
    #[error("{0:?} is not an IPv4 address")]
    NotAnAddress(String),
    #[error("gateway {0:?} is not an IPv4 address")]
    BadGateway(String),
    #[error("unknown option {0:?}: Weft takes -o mode=overlay|routed and -o vni=N")]
    UnknownOption(String),
    #[error(transparent)]
    Mode(#[from] UnknownMode),
    #[error("vni {0:?} is not a number")]
    BadVni(String),
    #[error("MAC {given:?}: {source}")]
    BadMac {
        given: String,
        source: weft_plan::mac::BadMac,
    },
    #[error("unknown pool {0:?}: Weft's pools are subnets")]
    UnknownPool(String),
    #[error("no Weft network has the subnet {0}")]
    NoNetwork(Ipv4Net),
    #[error("network {0} is still being registered; try again in a second")]
    StillRegistering(Ipv4Net),
    #[error("network {0:?} is no longer in the store")]
    Gone(String),
    #[error("unknown network {0}: not created through Weft on this host (is the network registered yet? see weftctl network list)")]
    UnknownNetwork(String),
    #[error("network {0} is not pending")]
    NotPending(String),
    #[error("malformed port binding {0}")]
    BadPortBinding(String),
    /// Docker's own words for a host port another container holds.
    #[error("Bind for {host}:{ports} failed: port is already allocated")]
    PortTaken { host: String, ports: String },
    #[error("a different network named {0:?} is already in the store; this one stays local to this host")]
    NameTaken(String),
    #[error("subnet {subnet} belongs to network {name:?} (mode {mode}, VNI {vni}, gateway {gateway}); this request differs")]
    Differs {
        subnet: Ipv4Net,
        name: String,
        mode: Mode,
        vni: u32,
        gateway: Ipv4Addr,
    },
    #[error("network {network:?} has the gateway {has}, not {asked}")]
    OtherGateway {
        network: String,
        has: Ipv4Addr,
        asked: Ipv4Addr,
    },
    #[error("no usable address from the blocks of network {0:?}'s pool")]
    NoBlockAddress(String),
    #[error("the endpoint has no IPv4 address ({0:?}); use --ipam-driver weft")]
    NoEndpointAddress(String),
    #[error("{ip} is not allocated on network {network:?}")]
    NotAllocated { ip: Ipv4Addr, network: String },
    #[error("{ip} on network {network:?} is held by node {node}, not this one")]
    HeldElsewhere {
        ip: Ipv4Addr,
        network: String,
        node: Ipv4Addr,
    },
    #[error("unknown endpoint {id} on network {network:?}")]
    UnknownEndpoint { id: String, network: String },
    #[error("cannot create {name}: {source}")]
    Veth { name: String, source: KernelError },
    #[error("{0} vanished")]
    Vanished(String),
    #[error("cannot record endpoint {name} ({ip}): {source}")]
    Record {
        name: String,
        ip: Ipv4Addr,
        source: Box<StoreError>,
    },
    #[error("the network policy for {name} ({ip}) was not in place within {within:?}")]
    NotEnforced {
        name: String,
        ip: Ipv4Addr,
        within: std::time::Duration,
    },
    #[error("no Docker daemon to ask")]
    NoEngine,
    #[error("no container {0}")]
    NoContainer(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Named(#[from] NamedError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}
