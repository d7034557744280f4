//! Names across hosts for Docker networks.
//!
//! Docker's embedded DNS (127.0.0.11 in each container) knows only the containers of its
//! own daemon; a name it does not know it forwards, from the container's own network
//! namespace, to the daemon's DNS servers (`dockerd --dns`). Pointing those at the
//! node's Weft resolver makes every container on a Weft network resolve the names and
//! aliases of the containers on its networks on every host:
//!
//! - [`directory`]: who may see which name, as a plain function of the store's endpoint
//!   records (the querier is known by the source address of its query);
//! - [`message`]: a query in, an answer out (DNS wire format through `simple-dns`);
//! - [`upstream`]: the host's own resolvers, for every name that is not a container's;
//! - [`server`]: the UDP socket the agent serves it on.

pub mod directory;
pub mod message;
pub mod server;
pub mod upstream;

pub use directory::{Directory, Lookup};
pub use server::{serve, ServeError};
