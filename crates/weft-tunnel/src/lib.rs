//! Weft's user-space data plane, for the `udp` backend and for `ipip` where the kernel
//! has no `ipip` module.
//!
//! The cluster network is routed into a TUN device (`weft0`). Packets read from it are
//! looked up in the forwarding [`table::Table`] by destination subnet and sent to the peer
//! node, either as the payload of a UDP datagram (flannel's `udp` wire format, port 8285)
//! or behind an RFC 2003 outer header on a raw IP socket (what a kernel `ipip` device
//! sends). Packets arriving the same way are checked (sender must be a node, destination
//! must be this node's subnet) and written to the TUN.
//!
//! Speed comes from doing per packet-*batch* what flannel's udp backend does per packet:
//! - the TUN is multi-queue with virtio-net headers and TSO/checksum offload, so the
//!   kernel hands over 64 KiB TCP super-packets ([`segment`] cuts them once);
//! - UDP GSO sends all segments of a super-packet to a peer in one or two calls; UDP GRO
//!   and `recvmmsg` receive many datagrams per call; raw IP-in-IP uses `sendmmsg`;
//! - received TCP segments are merged back into super-packets ([`coalesce`]) and written
//!   to the TUN with `writev` from the receive buffers, without copying;
//! - one loop per core and TUN queue, moving packets both ways (so a reply caused by a
//!   write to the TUN is sent on by the same thread, without a wake-up), each with
//!   buffers allocated once.
//!
//! The agent owns a [`Tunnel`]: it opens it when the backend needs one, hands it a new
//! table after every plan, and rebuilds it when a loop died (the device was deleted).

pub mod checksum;
pub mod coalesce;
pub mod encap;
pub mod packet;
pub mod segment;
pub mod stats;
// The one place of this crate that calls the kernel directly (see `[workspace.lints]`).
#[allow(unsafe_code)]
pub mod sys;
pub mod table;
pub mod vnet;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use thiserror::Error;
use tracing::info;

pub use stats::{Snapshot, Stats};
pub use table::Table;

use worker::{Receiver, Sender, Shared};

/// The TUN device's name, for both user-space backends.
pub const DEVICE: &str = "weft0";
/// flannel's udp backend port.
pub const DEFAULT_UDP_PORT: u16 = 8285;

/// The wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    Udp { port: u16 },
    Ipip,
}

#[derive(Debug, Error)]
pub enum TunnelError {
    #[error("cannot open TUN queue {queue} of {name}: {source}")]
    Tun {
        name: String,
        queue: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the {what} socket: {source}")]
    Socket {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a data-path thread: {0}")]
    Thread(std::io::Error),
}

/// A running user-space tunnel: its queues, sockets and worker threads.
pub struct Tunnel {
    pub name: String,
    pub encap: Encap,
    pub queues: usize,
    shared: Shared,
    threads: Vec<JoinHandle<()>>,
}

impl Tunnel {
    /// Opens (creating if needed) the TUN `name` with `queues` queues and starts the loops.
    pub fn start(
        name: &str,
        encap: Encap,
        queues: usize,
        table: Table,
        stats: Arc<Stats>,
    ) -> Result<Self, TunnelError> {
        let queues = queues.clamp(1, 16);
        let shared = Shared {
            table: Arc::new(ArcSwap::from_pointee(table)),
            stats,
            stop: Arc::new(AtomicBool::new(false)),
            dead: Arc::new(AtomicBool::new(false)),
        };
        let mut tunnel = Tunnel {
            name: name.to_owned(),
            encap,
            queues,
            shared,
            threads: Vec::new(),
        };
        let open = |queue: usize| {
            sys::tun::open_queue(name, true).map_err(|source| TunnelError::Tun {
                name: name.to_owned(),
                queue,
                source,
            })
        };
        let raw = match encap {
            Encap::Ipip => Some(Arc::new(sys::raw::RawIpip::open().map_err(|source| {
                TunnelError::Socket {
                    what: "raw IP-in-IP",
                    source,
                }
            })?)),
            Encap::Udp { .. } => None,
        };
        for q in 0..queues {
            let fd = open(q)?;
            if q == 0 {
                // The tunnel carries IPv4 only; an IPv6 link-local address would only make
                // the kernel send router solicitations into it.
                let knob = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
                let _ = std::fs::write(knob, "1");
            }
            let sh = tunnel.shared.clone();
            let (sender, receiver) = match (encap, &raw) {
                (Encap::Udp { port }, _) => {
                    let socket = Arc::new(sys::udp::UdpSocket::bind(port).map_err(|source| {
                        TunnelError::Socket {
                            what: "UDP",
                            source,
                        }
                    })?);
                    let receiver = Some(Receiver::Udp(socket.clone()));
                    (Sender::Udp { socket, port }, receiver)
                }
                (Encap::Ipip, Some(socket)) => {
                    let receiver = (q == 0).then(|| Receiver::Ipip(socket.clone()));
                    let socket = socket.clone();
                    (Sender::Ipip { socket }, receiver)
                }
                (Encap::Ipip, None) => unreachable!("raw socket opened above"),
            };
            tunnel.spawn(format!("weft-q{q}"), move || {
                worker::run(fd, sender, receiver, sh)
            })?;
        }
        info!(dev = name, ?encap, queues, "user-space tunnel running");
        Ok(tunnel)
    }

    fn spawn(
        &mut self,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), TunnelError> {
        let h = std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(TunnelError::Thread)?;
        self.threads.push(h);
        Ok(())
    }

    /// Replaces the forwarding table; the loops use it from their next batch.
    pub fn set_table(&self, table: Table) {
        if **self.shared.table.load() != table {
            self.shared.table.store(Arc::new(table));
        }
    }

    /// False once a loop stopped on an error: the agent should start a new tunnel.
    pub fn is_alive(&self) -> bool {
        !self.shared.dead.load(Ordering::Relaxed)
    }
}

impl Drop for Tunnel {
    /// Stops the loops (within half a second). The device stays: it is persistent.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
