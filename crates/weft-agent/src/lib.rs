//! The node agent, `weftd`.
//!
//! - [`options`]: `weftd`'s command-line options (how to reach the store lives in
//!   [`weft_store::options`], shared with `weftctl` and the lab).
//! - [`daemon`]: start-up (store, config, interface, lease) and the event loop that keeps
//!   the kernel, through a [`weft_kernel::Dataplane`], equal to what the backend plans
//!   from the store's leases.
//! - [`error`]: why the agent could not start or had to stop.
//! - [`health`]: `/healthz` and `/metrics`.
//! - [`api`]: the local socket for claims of single addresses outside the node's subnet.
//! - [`bgp`]: the BGP speaker's runtime for the bgp backend.
//! - [`bigtcp`]: `--big-tcp`, IPv4 super-packets over 64 KiB where nothing is encapsulated.
//! - [`config_file`]: `--config FILE`, weftd's options as `name = value` lines.
//! - [`duration`]: durations as flannel writes them (`24h`, `30s`).

pub mod api;
pub mod bgp;
pub mod bigtcp;
pub mod blocks_api;
pub mod config_file;
pub mod daemon;
pub mod duration;
pub mod error;
pub mod health;
pub mod notify;
pub mod options;

pub use daemon::run;
pub use error::AgentError;
pub use options::AgentOptions;
