//! The resolver's sockets: UDP and TCP on the address `weftd --dns-listen` names.
//! Queries are answered from the newest [`Directory`] the agent has published, each in
//! a task of its own, so a slow upstream holds up nobody else.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
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

/// The resolver's sockets: UDP, and TCP for clients that ask over TCP (Docker's
/// embedded DNS forwards a TCP query over TCP).
pub struct Sockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds `addr`, UDP and TCP (an error at once if it cannot: the agent says so at
/// start).
pub async fn bind(addr: SocketAddr) -> Result<Sockets, ServeError> {
    let bind_err = |source| ServeError::Bind { addr, source };
    let udp = UdpSocket::bind(addr).await.map_err(bind_err)?;
    let tcp = TcpListener::bind(addr).await.map_err(bind_err)?;
    Ok(Sockets { udp, tcp })
}

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The answer to `query` from `from`: from the directory, else from upstream, else
/// SERVFAIL. `None`: nothing to send.
async fn answer(
    query: &[u8],
    from: SocketAddr,
    directory: &Directory,
    upstream: &Upstream,
) -> Option<Vec<u8>> {
    match reply(query, from.ip(), directory) {
        Reply::Answer(bytes) => {
            debug!(%from, "answered from the store");
            Some(bytes)
        }
        Reply::Drop => {
            debug!(%from, "not a query; dropped");
            None
        }
        Reply::Forward => match upstream.ask(query).await {
            Some(bytes) => Some(bytes),
            None => match failure(query, simple_dns::RCODE::ServerFailure) {
                Reply::Answer(bytes) => Some(bytes),
                _ => None,
            },
        },
    }
}

/// Answers every query on `sockets` until the UDP socket fails; each query in a task
/// of its own, so a slow upstream holds up nobody else.
pub async fn serve(
    sockets: Sockets,
    directory: watch::Receiver<Arc<Directory>>,
    upstream: Upstream,
) -> Result<(), ServeError> {
    let addr = upstream.own;
    info!(%addr, "resolving container names for Docker networks (UDP and TCP)");
    tokio::spawn(serve_tcp(sockets.tcp, directory.clone(), upstream.clone()));
    let socket = Arc::new(sockets.udp);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|source| ServeError::Io { addr, source })?;
        let query = buf[..n].to_vec();
        let snapshot = directory.borrow().clone();
        let socket = socket.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Some(bytes) = answer(&query, from, &snapshot, &upstream).await {
                let _ = socket.send_to(&bytes, from).await;
            }
        });
    }
}

/// DNS over TCP (RFC 1035 4.2.2, RFC 7766): each message after its two-byte length,
/// as many as the client sends on one connection.
async fn serve_tcp(
    listener: TcpListener,
    directory: watch::Receiver<Arc<Directory>>,
    upstream: Upstream,
) {
    loop {
        let Ok((mut conn, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let directory = directory.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 2];
                let read = tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await;
                if !matches!(read, Ok(Ok(_))) {
                    return;
                }
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut query).await.is_err() {
                    return;
                }
                let snapshot = directory.borrow().clone();
                let Some(bytes) = answer(&query, from, &snapshot, &upstream).await else {
                    continue;
                };
                let Ok(n) = u16::try_from(bytes.len()) else {
                    return;
                };
                let mut out = n.to_be_bytes().to_vec();
                out.extend_from_slice(&bytes);
                if conn.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use simple_dns::rdata::RData;
    use simple_dns::{Packet, PacketFlag, Question, CLASS, TYPE};
    use tokio::net::TcpStream;
    use weft_model::named::Endpoint;

    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut q = Packet::new_query(7);
        q.set_flags(PacketFlag::RECURSION_DESIRED);
        q.questions.push(Question::new(
            simple_dns::Name::new_unchecked(name),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        q.build_bytes_vec().unwrap()
    }

    fn addresses(bytes: &[u8]) -> Vec<Ipv4Addr> {
        Packet::parse(bytes)
            .unwrap()
            .answers
            .iter()
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(Ipv4Addr::from(a.address)),
                _ => None,
            })
            .collect()
    }

    /// Over UDP and over TCP (two queries on one connection), on loopback: the
    /// querier is 127.0.0.1, so only a container named `127.0.0.1`'s network is
    /// visible; a host name of the directory's own network answers.
    #[tokio::test]
    async fn answers_over_udp_and_tcp() {
        let mut e = Endpoint::held("192.168.77.1".parse().unwrap(), "q");
        e.container = "c-q".into();
        e.names = vec!["querier".into()];
        let mut a1 = Endpoint::held("192.168.77.2".parse().unwrap(), "a");
        a1.container = "c-a1".into();
        a1.names = vec!["a1".into()];
        // The querier "is" 127.0.0.1: loopback is all a test may use.
        let eps = [
            ("blue", Ipv4Addr::LOCALHOST, e),
            ("blue", Ipv4Addr::new(10, 50, 0, 2), a1),
        ];
        let dir = Directory::new(eps.iter().map(|(n, i, e)| (*n, *i, e)));
        let (_tx, rx) = watch::channel(Arc::new(dir));
        // A port free for UDP, then TCP on it too.
        let sockets = loop {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = probe.local_addr().unwrap();
            drop(probe);
            if let Ok(s) = bind(addr).await {
                break s;
            }
        };
        let addr = sockets.udp.local_addr().unwrap();
        let upstream = Upstream {
            resolv_conf: "/nonexistent".into(),
            own: addr,
        };
        tokio::spawn(serve(sockets, rx, upstream));

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(&query("a1"), addr).await.unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), udp.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(addresses(&buf[..n]), [Ipv4Addr::new(10, 50, 0, 2)]);

        let mut tcp = TcpStream::connect(addr).await.unwrap();
        for name in ["a1", "nowhere"] {
            let q = query(name);
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            tcp.write_all(&framed).await.unwrap();
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).await.unwrap();
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
            tcp.read_exact(&mut answer).await.unwrap();
            let p = Packet::parse(&answer).unwrap();
            match name {
                "a1" => assert_eq!(addresses(&answer), [Ipv4Addr::new(10, 50, 0, 2)]),
                // No upstream: SERVFAIL, at once.
                _ => assert_eq!(p.rcode(), simple_dns::RCODE::ServerFailure),
            }
        }
    }
}
