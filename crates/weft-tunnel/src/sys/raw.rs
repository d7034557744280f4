//! The raw IP socket for protocol 4 that carries user-space IP-in-IP.
//!
//! With `IP_HDRINCL` Weft writes the outer header itself (see [`crate::encap`]), so the
//! packets are byte for byte what a kernel `ipip` device sends. The socket receives every
//! protocol-4 packet addressed to this host, outer header included. Raw sockets have no
//! GSO, so segments go out in batches of `sendmmsg`.

use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{check, setsockopt_int, sockaddr};

const SOCKET_BUFFER: i32 = 4 << 20;
/// Packets per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 64;

pub struct RawIpip {
    fd: OwnedFd,
}

impl AsFd for RawIpip {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl RawIpip {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_IPIP,
            )
        };
        check(raw as isize)?;
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        setsockopt_int(s, libc::IPPROTO_IP, libc::IP_HDRINCL, 1)?;
        let _ = setsockopt_int(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER);
        let _ = setsockopt_int(s, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER);
        Ok(RawIpip { fd })
    }

    /// Sends whole outer packets, each to its destination, in as few calls as possible.
    /// `packet(i)` gives packet `i` of `count`, in two pieces (the second may be empty),
    /// and where it goes. Returns the number of system calls made.
    pub fn send_batch<'a>(
        &self,
        count: usize,
        packet: impl Fn(usize) -> (&'a [u8], &'a [u8], Ipv4Addr),
    ) -> io::Result<usize> {
        let (mut sent, mut calls) = (0, 0);
        while sent < count {
            let n = (count - sent).min(BATCH);
            // SAFETY: arrays live until sendmmsg returns; pointers reference `packets`.
            let r = unsafe {
                let mut names: [libc::sockaddr_in; BATCH] = mem::zeroed();
                let mut iovs: [[libc::iovec; 2]; BATCH] = mem::zeroed();
                let mut hdrs: [libc::mmsghdr; BATCH] = mem::zeroed();
                for i in 0..n {
                    let (head, tail, to) = packet(sent + i);
                    names[i] = sockaddr(to, 0);
                    iovs[i] = [super::tun::iovec(head), super::tun::iovec(tail)];
                    let h = &mut hdrs[i].msg_hdr;
                    h.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
                    h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
                    h.msg_iov = iovs[i].as_mut_ptr();
                    h.msg_iovlen = if tail.is_empty() { 1 } else { 2 };
                }
                libc::sendmmsg(self.fd.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0)
            };
            match check(r as isize) {
                Ok(k) => {
                    sent += k.max(1);
                    calls += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut p = libc::pollfd {
                        fd: self.fd.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 100) };
                }
                Err(e) => return Err(e),
            }
        }
        Ok(calls)
    }

    /// Receives up to `bufs.len()` packets without waiting; their lengths go to `lens`.
    pub fn recv_batch(&self, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
        let n = bufs.len().min(lens.len()).min(BATCH);
        // SAFETY: arrays live until recvmmsg returns and are sized `n`.
        unsafe {
            let mut iovs: [libc::iovec; BATCH] = mem::zeroed();
            let mut hdrs: [libc::mmsghdr; BATCH] = mem::zeroed();
            for i in 0..n {
                iovs[i] = libc::iovec {
                    iov_base: bufs[i].as_mut_ptr() as *mut libc::c_void,
                    iov_len: bufs[i].len(),
                };
                hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            let got = super::recvmmsg(self.fd.as_raw_fd(), &mut hdrs, n)?;
            for i in 0..got {
                lens[i] = hdrs[i].msg_len as usize;
            }
            Ok(got)
        }
    }
}
