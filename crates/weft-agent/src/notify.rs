//! Telling systemd the agent is ready (`Type=notify`): one datagram, `READY=1`, to the
//! socket systemd names in `NOTIFY_SOCKET`. Ready means the first reconcile is applied
//! and the Docker driver's socket is bound, so a unit ordered after weftd (Docker, with
//! containers that restart at boot) starts only once the network and the driver are
//! there. Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `READY=1` where `NOTIFY_SOCKET` says, if it says anywhere.
pub fn ready(status: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = socket.to_string_lossy().into_owned();
    if let Err(e) = send(&socket, &format!("READY=1\nSTATUS={status}\n")) {
        tracing::warn!(%socket, error = %e, "cannot tell systemd the agent is ready");
    }
}

/// Sends `message` to the notification socket `socket`: a path, or `@name` for an
/// abstract socket (as systemd may hand out).
pub fn send(socket: &str, message: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sender.send_to_addr(message.as_bytes(), &addr)?;
        }
        None => {
            sender.send_to(message.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("weft-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(&format!("@{name}"), "READY=1\n").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
