//! Weft for Docker: a libnetwork remote plugin, network and IPAM driver in one, served
//! by the agent on `/run/docker/plugins/weft.sock`.
//!
//! - [`protocol`]: the plugin calls' JSON.
//! - [`driver`]: each call, answered from the store (named networks and their endpoints,
//!   see [`weft_alloc::named`]) and the dataplane (veths, segments).
//! - [`server`]: HTTP over the Unix socket.
//! - [`engine`]: the few engine API calls the sync makes to the local daemon.
//! - [`identity`]: who each container is, for network policy (its network's name and
//!   its labels).
//! - [`sync`]: the local daemon's networks and the store's kept in step, so a network
//!   created on one host is usable on every host; orphans collected.
//!
//! The kernel state of named networks beyond one container's veth (segments, FDB and
//! neighbour entries, routes to remote containers, isolation) is the agent's plan, made
//! from the store like everything else it applies (see `weft_backends::networks`).

pub mod driver;
pub mod engine;
pub mod error;
pub mod identity;
pub mod names;
pub mod protocol;
pub mod server;
pub mod sync;

pub use driver::{Driver, DriverState, HostFacts};
pub use engine::Engine;

/// The plugin's name: `docker network create -d weft --ipam-driver weft`.
pub const PLUGIN: &str = "weft";
