//! Why the agent could not start or had to stop, with what it was doing. Everything
//! after start-up is logged and retried instead: a running agent never stops over a bad
//! value, a lost store or a kernel refusal.

use std::path::PathBuf;

use thiserror::Error;
use weft_alloc::registry::AcquireError;
use weft_kernel::KernelError;
use weft_store::StoreError;

/// The store's errors are boxed: the etcd client's are large, and every start-up step
/// returns this.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error("cannot open {store}: {source}")]
    Store {
        store: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("cannot list the leases: {0}")]
    Leases(#[source] Box<StoreError>),
    #[error("cannot watch the store: {0}")]
    Watch(#[source] Box<StoreError>),
    #[error("the store watch ended; the kernel is left as it is")]
    WatchEnded,
    #[error("cannot claim a subnet: {0}")]
    Acquire(#[source] Box<AcquireError>),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("cannot write {}: {source}", path.display())]
    HostFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--big-tcp needs a backend that never encapsulates (host-gw, or bgp without \
         CrossSubnet); the {backend} backend does, and an encapsulated packet cannot exceed 64 KiB"
    )]
    BigTcpEncapsulates { backend: &'static str },
    #[error("cannot start the BGP speaker: {0}")]
    Bgp(#[source] std::io::Error),
    #[error(transparent)]
    Dns(#[from] weft_dns::ServeError),
    #[error("cannot serve the agent socket {}: {source}", path.display())]
    ApiSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
