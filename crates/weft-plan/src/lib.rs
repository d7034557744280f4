//! What a Weft host should look like, as plain values, and the diffs that say how to get
//! there. No I/O and no netlink types: backends, the agent, `weftctl diagnose` and the
//! CNI plugin all speak this vocabulary, and only weft-kernel turns it into requests.
//!
//! - [`route`]: routes with a kind (via, on-link, device, blackhole) and the route diff.
//! - [`neigh`]: permanent neighbour and FDB entries on an overlay device.
//! - [`link`]: the overlay devices Weft owns (VXLAN, TUN, IP-in-IP) as specs, and what
//!   making one match its spec took.
//! - [`segment`]: a named overlay network's bridge and VXLAN device on one host.
//! - [`address`]: the one address an overlay device holds.
//! - [`firewall`], [`firewall6`]: what the forwarding and masquerade rules must do,
//!   and their tables (`ip weft`, and `ip6 weft` in a dual-stack network).
//! - [`nft`]: nftables tables, sets, chains and rules as values.
//! - [`iface`]: choosing the external interface from a snapshot of links and addresses.
//! - [`diff`]: the keyed diff every object goes through, and what applying one did.
//! - [`mac`], [`hash`]: MAC addresses and the stable hash names and MACs derive from.

pub mod address;
pub mod diff;
pub mod firewall;
pub mod firewall6;
pub mod hash;
pub mod iface;
pub mod link;
pub mod mac;
pub mod neigh;
pub mod nft;
pub mod route;
pub mod segment;

pub use diff::{Applied, Change, Refusal};
pub use firewall::{EncapFilter, FirewallPlan};
pub use iface::{Addr6Info, AddrInfo, ExternalInterface, IfaceSpec, LinkInfo};
pub use link::{IpipSpec, LinkOutcome, OverlaySpec, TunSpec, VxlanSpec};
pub use mac::MacAddr;
pub use neigh::{FdbEntry, Neighbour};
pub use route::{Route, RouteKind, WEFT_PROTO};
pub use segment::{SegmentPlan, SegmentSpec};
