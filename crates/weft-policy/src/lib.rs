//! Network policy as values, with no I/O: what the store holds, what `weftctl policy
//! apply` checks, and what a flow's verdict is.
//!
//! - [`selector`]: Kubernetes label selectors (`matchLabels`, `matchExpressions`).
//! - [`model`]: the two kinds. `networking.k8s.io/v1 NetworkPolicy` with Kubernetes'
//!   semantics, and `weft.dev/v1 ClusterPolicy`: cluster-wide, ordered, with actions
//!   Allow, Deny, Log and Pass, applied before namespaced policies (as Kubernetes'
//!   AdminNetworkPolicy and Calico's GlobalNetworkPolicy are).
//! - [`parse`]: YAML or JSON, several documents per file, every problem named with
//!   where it is; a file with one bad object is refused whole.
//! - [`verdict`]: which policies select each side of a flow, which rule decides egress
//!   and ingress, and the verdict. This is `weftctl policy explain`, and the reference
//!   the data plane's rules are tested against.

pub mod model;
pub mod parse;
pub mod render;
pub mod selector;
pub mod verdict;

pub use model::{ClusterPolicy, NetworkPolicy, Policy};
pub use parse::{parse_documents, PolicyError};
pub use selector::{LabelSelector, Labels};
pub use verdict::{explain, Endpoint, Explanation, Flow, Protocol, World};
