//! Weft's test rig. A dev-dependency only: no product crate depends on it.
//!
//! - [`contract`]: the suite every [`weft_store::Store`] implementation must pass.
//! - [`gate`]: tests that need root or an etcd binary skip with one line saying so when
//!   run as an ordinary user, and run (and must pass) as root, which is how the README's
//!   test command runs them.
//! - [`netns`]: a network namespace of a test's own, removed even when the test fails.
//! - [`etcd`]: a throw-away etcd server (the lab's own starter, re-exported).

pub mod contract;
pub mod gate;
pub mod netns;

pub use weft_lab::etcd;
