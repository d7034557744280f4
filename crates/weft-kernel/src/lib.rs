//! The kernel side of Weft, kept thin on purpose.
//!
//! Deciding what the host should look like is done elsewhere, by pure functions; this
//! crate only reads what the kernel has and changes the difference:
//!
//! - [`route`]: Weft's routes as values and the pure diff between wanted and present.
//! - [`netlink`]: reading links, addresses and routes, and applying a route diff.
//! - [`diff`]: the keyed diff every kernel object goes through.
//! - [`link`]: Weft's own links (the VXLAN device) as specs.
//! - [`neigh`]: neighbour and FDB entries on the overlay device.
//! - [`monitor`]: netlink events that may mean someone changed what Weft owns.
//! - [`iface`]: choosing the external interface and public IP (pure, over a snapshot).
//! - [`nft`]: the forwarding and masquerade rules, rendered as text and applied atomically.
//! - [`sysctl`]: the few sysctls a router needs.
//!
//! Every object Weft owns is marked: routes carry protocol [`route::WEFT_PROTO`], rules
//! live in the nftables table `weft` and iptables rules carry the comment `weft`. Nothing
//! without the mark is ever changed or removed.

pub mod batch;
pub mod bigtcp;
pub mod diff;
pub mod hash;
pub mod iface;
pub mod link;
pub mod mac;
pub mod monitor;
pub mod neigh;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod route;
mod sockopt;
pub mod sysctl;

pub use diff::{Applied, Change};
pub use mac::MacAddr;
pub use neigh::{FdbEntry, Neighbour};
pub use netlink::{Kernel, KernelError};
pub use route::{Route, RouteChange, WEFT_PROTO};
