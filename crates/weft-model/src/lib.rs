//! Everything Weft stores, as plain types, and where: the network config (flannel's
//! JSON, with each backend's options typed), leases, the per-node subnet pool and which
//! leases stand, block IPAM's pools and blocks, named networks and their endpoints,
//! addresses held outside subnets, network policy state and the node status agents
//! publish. No I/O: the store calls are `weft_alloc::Registry`'s, the decisions the
//! planners'. IPv4 is always there; IPv6 is an addition beside it (the config's
//! [`config::Ipv6Config`], a lease's IPv6 subnet and address), so that an IPv4-only
//! cluster's values stay byte for byte flannel's.
//!
//! - [`config`], [`config_v6`], [`backend_options`]: the network config (its IPv6 side
//!   apart) and each backend's options.
//! - [`lease`], [`pool`], [`screen`]: leases, the subnets a config allows, and which
//!   leases stand.
//! - [`blocks`]: block IPAM's pools and blocks, and the choice of an address.
//! - [`named`]: named networks (Docker's) and their endpoints.
//! - [`address`]: single addresses held outside subnets.
//! - [`policies`]: policies, endpoint identities and namespace labels.
//! - [`bgp_peer`]: external BGP peers' records; [`selector`]: node labels and the
//!   selectors that choose nodes by them.
//! - [`status`]: what an agent publishes about its view.
//! - [`keys`]: where each value is stored, and the one decoder from a stored entry to
//!   a typed change.

pub mod address;
pub mod backend_options;
pub mod bgp_peer;
pub mod blocks;
pub mod config;
pub mod config_v6;
pub mod keys;
pub mod lease;
pub mod named;
pub mod policies;
pub mod pool;
pub mod screen;
pub mod selector;
pub mod status;

pub use backend_options::BackendOptions;
pub use config::{BackendKind, ConfigError, IpamModel, Ipv6Config, NetworkConfig};
pub use lease::{Lease, LeaseAttrs};

/// A store revision (etcd's `mod_revision`; the embedded store's counter alike).
pub type Revision = i64;
/// A store lease that expires a key (etcd's lease ID).
pub type LeaseId = i64;
