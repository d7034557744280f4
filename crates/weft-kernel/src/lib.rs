//! The kernel side of Weft, kept thin on purpose: the one southbound boundary.
//!
//! What the host should look like is decided elsewhere, by pure functions over the
//! values of [`weft_plan`]; this crate reads what the kernel has and changes the
//! difference, behind one trait:
//!
//! - [`dataplane`]: the [`Dataplane`] trait, everything Weft asks of a host.
//! - [`linux`]: the Linux implementation, one file per kernel object (links, addresses,
//!   routes, neighbours and FDB entries, offloads) over rtnetlink.
//! - `fake` (feature `fake`, for other crates' tests): an in-memory host that models
//!   state, for testing decision code without root; `faults` wraps any dataplane
//!   (the fake, or a real one) to refuse the operations a test names.
//! - [`batch`]: route changes in batches of 256 per `sendmsg`.
//! - [`monitor`]: netlink events that may mean someone changed what Weft owns; [`own`]
//!   tells Weft's own changes from others'.
//! - [`nft`]: loading a [`weft_plan::nft::Table`] atomically (the forwarding and
//!   masquerade table); [`nft_sets`]: tables whose set elements change in place;
//!   [`nft_netlink`]: elements over netlink; [`nft_read`]: a loaded table read back.
//! - [`sysctl`]: the few sysctls a router needs, and per-link settings.
//! - [`bigtcp`]: the IPv4 BIG TCP limits of a link.
//! - [`netns`]: running code inside another network namespace.
//! - [`sys`]: the few raw system calls, behind safe functions.
//!
//! Every object Weft owns is marked: routes carry protocol [`weft_plan::WEFT_PROTO`],
//! links are named `weft*`, rules live in the nftables table `weft` and iptables rules
//! carry the comment `weft`. Nothing without the mark is ever changed or removed.

pub mod batch;
pub mod bigtcp;
pub mod dataplane;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(any(test, feature = "fake"))]
pub mod faults;
pub mod linux;
pub mod monitor;
pub mod netns;
pub mod nft;
pub mod nft_netlink;
pub mod nft_read;
pub mod nft_sets;
pub mod own;
pub mod sys;
pub mod sysctl;

pub use dataplane::{
    Addresses, ApplyReport, Attach, Dataplane, Firewall, LinkSetting, LinkUpdate, Links,
    Namespaces, Neighbours, Offloads, Routes, Sysctls, VethPair,
};

/// The dataplane's traits, for calling their methods on a `&dyn Dataplane` or
/// `&dyn Attach`.
pub mod prelude {
    pub use crate::dataplane::{
        Addresses, Attach, Dataplane, Firewall, Links, Namespaces, Neighbours, Offloads, Routes,
        Sysctls,
    };
}
pub use error::KernelError;
pub use linux::Linux;
