//! What can go wrong between Weft and the kernel, named by operation.
//!
//! The kernel's answer is kept as a [`Refusal`] (its errno), not as a netlink type, so
//! the in-memory fake fails with exactly the errors the Linux implementation does and
//! callers match on them alike.

use thiserror::Error;
use weft_plan::iface::IfaceError;
use weft_plan::Refusal;

use crate::netns::NetnsError;
use crate::nft::NftError;

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{op}: {refusal}")]
    Refused {
        op: &'static str,
        #[source]
        refusal: Refusal,
    },
    #[error(transparent)]
    Iface(#[from] IfaceError),
    #[error("link {0} vanished right after it was created")]
    Vanished(String),
    #[error("link {0} does not exist")]
    Missing(String),
    #[error("link {0} already exists")]
    Exists(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("this kernel cannot make {kind} links ({refusal})")]
    Unsupported {
        kind: &'static str,
        refusal: Refusal,
    },
    #[error("{path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Firewall(#[from] NftError),
}

impl KernelError {
    /// True when the kernel lacks the link type (no module): a fallback may apply.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, KernelError::Unsupported { .. })
    }

    /// The kernel's errno, when it refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Refused {
                refusal: Refusal::Errno(n),
                ..
            }
            | KernelError::Unsupported {
                refusal: Refusal::Errno(n),
                ..
            } => Some(*n),
            _ => None,
        }
    }
}
