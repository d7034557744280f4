//! The resolver's socket: UDP on the address `weftd --dns-listen` names. Queries are
//! answered from the newest [`Directory`] the agent has published; forwarded ones each
//! in a task of their own, so a slow upstream holds up nobody else.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::directory::Directory;
use crate::message::{failure, reply, Reply};
use crate::upstream::Upstream;

/// Why the resolver cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("DNS socket on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr` (an error at once if it cannot: the agent says so at start).
pub async fn bind(addr: SocketAddr) -> Result<UdpSocket, ServeError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Answers every query on `socket` until it fails.
pub async fn serve(
    socket: UdpSocket,
    directory: watch::Receiver<Arc<Directory>>,
    upstream: Upstream,
) -> Result<(), ServeError> {
    let addr = upstream.own;
    info!(%addr, "resolving container names for Docker networks");
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|source| ServeError::Io { addr, source })?;
        let query = buf[..n].to_vec();
        let snapshot = directory.borrow().clone();
        match reply(&query, from.ip(), &snapshot) {
            Reply::Answer(bytes) => {
                debug!(%from, "answered from the store");
                let _ = socket.send_to(&bytes, from).await;
            }
            Reply::Drop => debug!(%from, "not a query; dropped"),
            Reply::Forward => {
                let socket = socket.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let answer = match upstream.ask(&query).await {
                        Some(bytes) => bytes,
                        None => match failure(&query, simple_dns::RCODE::ServerFailure) {
                            Reply::Answer(bytes) => bytes,
                            _ => return,
                        },
                    };
                    let _ = socket.send_to(&answer, from).await;
                });
            }
        }
    }
}
