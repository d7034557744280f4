//! The socket options the speaker needs that std and tokio do not wrap: TCP MD5
//! signatures (RFC 2385), `setsockopt(IPPROTO_TCP, TCP_MD5SIG)` with the kernel's
//! `struct tcp_md5sig`, and the TTL pair of TTL security (RFC 5082: `IP_TTL` and
//! `IP_MINTTL`, the latter unwrapped). Unsafe code is allowed in this module and nowhere
//! else in the crate (as `weft_kernel::sys` and `weft_tunnel::sys` are for theirs).
#![allow(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// The longest key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_KEY: usize = 80;

/// The kernel's `struct tcp_md5sig` (include/uapi/linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MAX_KEY],
}

/// Sets the MD5 key for segments to and from `peer` on `socket`, or removes it when
/// `key` is empty. On a connecting socket every segment is signed and checked with it;
/// on a listening one, connections from `peer` must carry it (and the accepted socket
/// inherits it). The kernel drops segments with a missing or wrong signature silently.
pub fn set_md5(socket: &impl AsRawFd, peer: Ipv4Addr, key: &[u8]) -> io::Result<()> {
    if key.len() > MAX_KEY {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: every field of this C struct is an integer or a byte array, for which
    // all zeroes is a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(peer).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in is smaller than the sockaddr_storage it is copied into;
    // both are plain bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&sin as *const libc::sockaddr_in).cast::<u8>(),
            (&mut sig.addr as *mut libc::sockaddr_storage).cast::<u8>(),
            std::mem::size_of::<libc::sockaddr_in>(),
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: an open socket's descriptor, and a pointer to an initialised struct of the
    // length passed.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast::<libc::c_void>(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// TTL security (RFC 5082, GTSM) for a peer `hops` away (1: on the segment): every
/// packet leaves with TTL 255, and the kernel drops any that arrives with less than
/// 256 - `hops`, which no sender further away can forge.
pub fn set_ttl_security(socket: &impl AsRawFd, hops: u8) -> io::Result<()> {
    set_ip_option(socket, libc::IP_TTL, 255)?;
    set_ip_option(socket, libc::IP_MINTTL, 256 - i32::from(hops.max(1)))
}

/// eBGP multihop: every packet leaves with TTL `ttl` (set before the SYN of a
/// connection this side opens).
pub fn set_ttl(socket: &impl AsRawFd, ttl: u8) -> io::Result<()> {
    set_ip_option(socket, libc::IP_TTL, i32::from(ttl.max(1)))
}

fn set_ip_option(socket: &impl AsRawFd, opt: libc::c_int, value: i32) -> io::Result<()> {
    // SAFETY: an open socket's descriptor, and a pointer to an int of the length passed.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            opt,
            (&value as *const i32).cast::<libc::c_void>(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_is_the_kernels_size() {
        // 128 (sockaddr_storage) + 1 + 1 + 2 + 4 + 80.
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn a_key_is_set_and_removed_on_a_socket() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = Ipv4Addr::new(127, 0, 0, 2);
        set_md5(&s, peer, b"secret").unwrap();
        set_md5(&s, peer, b"").unwrap();
        assert!(set_md5(&s, peer, &[b'x'; MAX_KEY + 1]).is_err());
    }

    #[test]
    fn ttl_security_sets_both_ttls() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_ttl_security(&s, 2).unwrap();
        assert_eq!(s.ttl().unwrap(), 255);
    }

    #[test]
    fn multihop_sets_the_ttl() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_ttl(&s, 3).unwrap();
        assert_eq!(s.ttl().unwrap(), 3);
    }
}
