//! What can go wrong in a `weftctl` command, with what it was doing. `main` prints it
//! after `weftctl: ` and exits 1.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use thiserror::Error;
use weft_alloc::registry::RegistryError;
use weft_alloc::ConfigError;
use weft_cni::spec::CniError;
use weft_lab::LabError;
use weft_store::StoreError;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("cannot open {store}: {source}")]
    OpenStore {
        store: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("no embedded store at {} (pass the agent's --store-path, or --store etcd; only `weftctl network init` creates one)", .0.display())]
    NoEmbeddedStore(PathBuf),
    // Boxed: the etcd client's errors are large, and every command returns this.
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("a network config already exists at {0}; pass --force to replace it")]
    ConfigExists(String),
    #[error("no network config at {0}; write one with `weftctl network init`")]
    NoConfig(String),
    #[error("{subnet} is {holder}; {doing} takes it from that node and cuts off its containers. Pass --force to do it anyway")]
    LeaseInUse {
        subnet: Ipv4Net,
        holder: String,
        doing: &'static str,
    },
    #[error("no lease for {0}")]
    NoLease(Ipv4Net),
    #[error("{subnet} is not one of the network's subnets (/{len} between {min} and {max})")]
    NotAPoolSubnet {
        subnet: Ipv4Net,
        len: u8,
        min: Ipv4Addr,
        max: Ipv4Addr,
    },
    #[error(transparent)]
    Named(weft_alloc::named::NamedError),
    #[error(transparent)]
    Blocks(weft_alloc::blocks::BlockError),
    #[error("{0}")]
    Usage(String),
    #[error("written, but not enforced within {within:?} by {}: their agents are down or behind (weftctl diagnose on them says why); --no-wait returns without waiting", .nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "))]
    NotEnforced {
        nodes: Vec<Ipv4Addr>,
        within: std::time::Duration,
    },
    #[error("no key {0}")]
    NoKey(String),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("lab {lab} has no host {host}")]
    NoLabHost { lab: String, host: String },
    #[error(transparent)]
    Ipam(#[from] CniError),
    #[error("unreadable status: {0}")]
    Status(#[source] serde_json::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Store(Box::new(e))
    }
}

impl From<RegistryError> for CliError {
    fn from(e: RegistryError) -> Self {
        CliError::Registry(Box::new(e))
    }
}

impl CliError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}
