//! The node agent, `weftd`.
//!
//! - [`options`]: command-line options, including how to reach the store (shared with `weftctl`).
//! - [`health`]: `/healthz` and `/metrics`.
//! - [`api`]: the local socket for claims of single addresses outside the node's subnet.
//! - [`bigtcp`]: `--big-tcp`, IPv4 super-packets over 64 KiB where nothing is encapsulated.
//! - [`hostfiles`]: `subnet.env` and the Docker options file, in flannel's format.
//! - [`daemon`]: start-up (store, config, interface, lease) and the event loop that keeps
//!   the kernel equal to what the backend plans from the store's leases.

pub mod api;
pub mod bgp;
pub mod bigtcp;
pub mod daemon;
pub mod duration;
pub mod health;
pub mod hostfiles;
pub mod options;

pub use daemon::{run, AgentError};
pub use options::{AgentOptions, StoreOptions};
