//! Weft's data planes.
//!
//! A backend decides, from this node's lease and every peer's, what the host should look
//! like: today the routes (later also links, neighbour and FDB entries). The decision is
//! a pure function ([`Backend::plan`]); the agent hands the result to the kernel applier,
//! which changes only the difference. Peers a backend cannot reach are reported, never
//! given a broken route.

pub mod hostgw;

use weft_alloc::{BackendKind, Lease};
use weft_kernel::iface::ExternalInterface;
use weft_kernel::Route;

/// What the node knows about itself when planning.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub external: ExternalInterface,
    pub lease: Lease,
}

/// A peer that gets no route, and why (published as-is in the node's status).
pub use weft_alloc::registry::Unreachable;

/// The host state a backend wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataPlane {
    pub routes: Vec<Route>,
    pub unreachable: Vec<Unreachable>,
}

/// One data plane.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Published in this node's lease as `BackendData` (flannel's field).
    fn backend_data(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The MTU containers should use given the external interface's MTU.
    fn mtu(&self, external_mtu: u32) -> u32 {
        external_mtu - self.kind().mtu_overhead()
    }

    /// What the host should look like with these peers (every lease but our own).
    fn plan(&self, node: &NodeContext, peers: &[Lease]) -> DataPlane;
}

/// The backend for a config, or a clear word that this build has none.
pub fn for_kind(kind: BackendKind) -> Result<Box<dyn Backend>, String> {
    match kind {
        BackendKind::HostGw => Ok(Box::new(hostgw::HostGw)),
        other => Err(format!(
            "backend {other} is not implemented in this version of Weft (available: host-gw)"
        )),
    }
}
