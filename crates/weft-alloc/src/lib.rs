//! Address management: which slice of the cluster network each node gets.
//!
//! - [`config`]: the network config, in flannel's JSON format, and its validation.
//! - [`backend_options`]: each backend's options, typed.
//! - [`pool`]: the per-node subnets a config allows, and the key names they are stored under.
//! - [`lease`]: a node's claim on one subnet, in flannel's lease format.
//! - [`registry`]: reading and writing all of that in a [`weft_store::Store`], including the
//!   atomic claim that keeps two nodes from ever holding the same subnet.
//! - [`address`]: single addresses a node holds from outside its subnet, claimed the
//!   same way.
//! - [`agent_api`]: the protocol on the agent's socket, and its client.
//! - [`blocks`]: block IPAM (Calico's model): pools, blocks claimed on demand, borrowing.
//! - [`block_cache`]: the agent's picture of them, so an allocation is one round trip.
//! - [`block_check`]: what `weftctl ipam check` finds wrong with them.
//! - [`named`]: named networks (Docker's) with their own ranges, VNIs and endpoints.
//! - [`policies`]: network policies, endpoint identities and namespace labels in the store.
//! - [`screen`]: which leases stand (inside the network, of the right size, in the
//!   pool), so one bad write cannot take traffic away from a node.
//! - [`hostfiles`]: the node's network as other programs read it (`subnet.env` and
//!   Docker's options, in flannel's formats).

pub mod address;
pub mod agent_api;
pub mod block_cache;
pub mod block_check;
pub mod blocks;
pub mod hostfiles;
pub mod named;
pub mod policies;
pub mod registry;

pub use registry::{AcquireError, Registry, DEFAULT_PREFIX};
pub use weft_model::{backend_options, config, lease, pool, screen};
pub use weft_model::{
    BackendKind, BackendOptions, ConfigError, IpamModel, Lease, LeaseAttrs, NetworkConfig,
};
