//! The lab: several Weft hosts on one machine, built from network namespaces.
//!
//! ```text
//!                 LAB-ul: bridge br0 192.168.77.254/24 (etcd listens here with --store etcd)
//!        ┌──────────────┼──────────────┐
//!   LAB-h1 eth0      LAB-h2 eth0     LAB-h3 eth0      192.168.77.N/24, default via .254
//!   weftd            weftd           weftd
//!    └ LAB-c1         └ LAB-c2        └ LAB-c3         attached by the `weft` CNI plugin
//! ```
//!
//! Everything lives inside namespaces the lab creates (the machine's own namespace gets no
//! link, address or route), and `weftctl lab down` removes every namespace, process and
//! file the lab made. State is kept in `/run/weft-lab/LAB/` (override with `WEFT_LAB_DIR`).
//! [`etcd`] starts the etcd servers the lab (and the tests) run on; [`docker`] a real
//! dockerd per host (`--docker`).

pub mod agents;
pub mod cni;
pub mod commands;
pub mod docker;
pub mod error;
pub mod etcd;
pub mod ping;
pub mod pods;
pub mod router;
pub mod sh;
pub mod state;
pub mod topology;

pub use commands::{run, ContainerCommand, LabCommand, ProbeOutput};
pub use error::LabError;
pub use state::LabState;
