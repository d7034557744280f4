//! Weft's BGP-4 speaker, starting with its wire codec.
//!
//! - [`message`]: the 19-byte header and the five message types, decoded from and encoded
//!   to bytes with every length checked; a malformed message becomes the NOTIFICATION
//!   RFC 4271 section 6 prescribes, never a panic.
//! - [`open`]: OPEN and its capabilities (multiprotocol RFC 4760, route refresh RFC 2918,
//!   4-octet AS RFC 6793, graceful restart RFC 4724).
//! - [`update`]: UPDATE, its path attributes (RFC 4271, communities RFC 1997, large
//!   communities RFC 8092, route reflection RFC 4456, MP_REACH/MP_UNREACH for IPv4
//!   unicast) and RFC 7606's revised
//!   error handling: an error that leaves the NLRI locatable withdraws the routes
//!   ("treat-as-withdraw") or drops the attribute ("attribute discard") instead of
//!   resetting the session.
//! - [`notification`]: error codes and the NOTIFICATION message.
//! - [`policy`]: import filters, export policies and communities, as plain values.
//! - [`auth`]: a peer's TCP MD5 key (RFC 2385), which never prints itself; `sys` sets it
//!   on sockets (the crate's only unsafe code).

pub mod auth;
pub mod message;
pub mod notification;
pub mod open;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
mod sys;
pub mod update;

pub use message::{decode, Codec, Message, MAX_LEN};
pub use notification::Notification;
pub use open::{Capability, Open};
pub use update::{Origin, PathAttributes, Update};
