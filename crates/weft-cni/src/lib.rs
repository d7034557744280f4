//! Weft's CNI plugin, type `weft`: what Kubernetes, containerd, CRI-O and Podman call to
//! attach a container.
//!
//! - [`spec`]: the CNI specification's types, versions, error codes and results.
//! - [`ipam`]: addresses from the node's subnet, allocated on disk without a lock.
//! - [`attach`]: the veth pair and the bridge (bridge mode) or the /32 route (routed mode).
//! - [`plugin`]: the commands (ADD, DEL, CHECK, STATUS, VERSION, GC).
//! - [`validate`]: the spec's rules for identifiers and input, checked before any side
//!   effect.

pub mod attach;
pub mod ipam;
pub mod plugin;
pub mod spec;
pub mod validate;

pub use plugin::main;
