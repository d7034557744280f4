//! The host's own resolvers, for every name that is not a container's: the nameservers
//! of the agent's `resolv.conf`, read at each forward (so a change there needs no
//! restart), asked in order, the first answer relayed as it came.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UdpSocket;

/// How long one upstream gets to answer (Docker's embedded DNS waits 4 s in all).
pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// Where forwarded queries go.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub resolv_conf: PathBuf,
    /// The resolver's own address: never forwarded to (a loop).
    pub own: SocketAddr,
}

/// The `nameserver` lines of a resolv.conf, in order.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|w| w.parse().ok())
        })
        .collect()
}

impl Upstream {
    /// The servers to ask, without this resolver itself.
    pub fn servers(&self) -> Vec<SocketAddr> {
        let text = std::fs::read_to_string(&self.resolv_conf).unwrap_or_default();
        nameservers(&text)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 53))
            .filter(|s| *s != self.own)
            .collect()
    }

    /// The first answer any server gives to `query`; `None` if none answered.
    pub async fn ask(&self, query: &[u8]) -> Option<Vec<u8>> {
        for server in self.servers() {
            if let Some(answer) = ask_one(server, query).await {
                return Some(answer);
            }
        }
        None
    }
}

async fn ask_one(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("an address"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("an address"),
    };
    let socket = UdpSocket::bind(bind).await.ok()?;
    socket.connect(server).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        // Only the answer to this query (same ID); anything else is ignored.
        if n >= 2 && buf[..2] == query[..2.min(query.len())] {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_in_order() {
        let text = "# generated\nsearch example.org\nnameserver 10.255.255.53\n\
                    nameserver   ::1 \nnameserver bogus\noptions ndots:0\n";
        assert_eq!(
            nameservers(text),
            vec![
                "10.255.255.53".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn never_itself() {
        let dir = std::env::temp_dir().join(format!("weft-dns-{}", std::process::id()));
        std::fs::write(&dir, "nameserver 192.168.77.1\nnameserver 192.168.77.254\n").unwrap();
        let up = Upstream {
            resolv_conf: dir.clone(),
            own: "192.168.77.1:53".parse().unwrap(),
        };
        assert_eq!(up.servers(), vec!["192.168.77.254:53".parse().unwrap()]);
        std::fs::remove_file(dir).unwrap();
    }
}
