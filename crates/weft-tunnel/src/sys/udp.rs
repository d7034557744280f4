//! The UDP socket of the `udp` backend, with the kernel's UDP offloads.
//!
//! Sending, one `sendmsg` carries many equal-size datagrams to one peer (`UDP_SEGMENT`,
//! UDP GSO): the kernel cuts them below the socket, so a 64 KiB TCP super-packet costs
//! one or two system calls instead of forty. Receiving, `UDP_GRO` lets the kernel hand
//! up runs of datagrams from one sender as one buffer with their size in a control
//! message, and `recvmmsg` takes several such buffers per call. Each worker has its own
//! socket on the same port (`SO_REUSEPORT`), so flows spread over the workers.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{check, from_sockaddr, setsockopt_int, sockaddr};

const UDP_SEGMENT: i32 = 103;
const UDP_GRO: i32 = 104;
const CMSG_BUF: usize = 64;
/// Buffers per `recvmmsg`. Each takes a whole GRO run (up to 64 KiB), so a few go a long
/// way; the call's headers are rebuilt every time, and a loop that mostly transmits
/// calls it on every turn, so they are kept small.
pub const RECV_BATCH: usize = 8;
const SOCKET_BUFFER: i32 = 4 << 20;

/// What one received buffer holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecvMeta {
    pub len: usize,
    pub src: Option<SocketAddrV4>,
    /// Size of each datagram in the buffer (all but the last); `len` if not coalesced.
    pub segment: usize,
}

pub struct UdpSocket {
    fd: OwnedFd,
    gso: bool,
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl UdpSocket {
    /// A non-blocking socket bound to `0.0.0.0:port`, shared by the workers.
    pub fn bind(port: u16) -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        check(raw as isize)?;
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        setsockopt_int(s, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        // Bigger buffers absorb bursts; the *FORCE variants need CAP_NET_ADMIN (we have it).
        let _ = setsockopt_int(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER)
            .or_else(|_| setsockopt_int(s, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER));
        let _ = setsockopt_int(s, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER)
            .or_else(|_| setsockopt_int(s, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER));
        let addr = sockaddr(Ipv4Addr::UNSPECIFIED, port);
        // SAFETY: a valid sockaddr_in and its size.
        check(unsafe {
            libc::bind(
                s,
                &addr as *const _ as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_in>() as u32,
            )
        } as isize)?;
        let _ = setsockopt_int(s, libc::SOL_UDP, UDP_GRO, 1);
        // GSO works on every kernel Weft supports, but keep a way back if it does not.
        let gso = setsockopt_int(s, libc::SOL_UDP, UDP_SEGMENT, 0).is_ok();
        Ok(UdpSocket { fd, gso })
    }

    /// The port the socket is bound to (for port 0: the one the kernel chose).
    pub fn local_port(&self) -> io::Result<u16> {
        let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_in>() as u32;
        // SAFETY: getsockname writes at most `len` bytes into `sa`.
        check(unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                &mut sa as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        } as isize)?;
        Ok(u16::from_be(sa.sin_port))
    }

    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Sends `data` to `to`: as datagrams of `segment` bytes (the last may be shorter)
    /// when `segment` is less than its length.
    pub fn send(&self, data: &[u8], to: SocketAddrV4, segment: usize) -> io::Result<()> {
        self.send_iov(&[super::tun::iovec(data)], data.len(), to, segment)
    }

    /// Like [`UdpSocket::send`] with the data gathered from `iov` (`len` bytes in all).
    pub fn send_iov(
        &self,
        iov: &[libc::iovec],
        len: usize,
        to: SocketAddrV4,
        segment: usize,
    ) -> io::Result<()> {
        let mut name = sockaddr(*to.ip(), to.port());
        let mut cmsg = [0u64; CMSG_BUF / 8];
        // SAFETY: msghdr fields point at live locals and the caller's iovecs for the
        // duration of sendmsg, which only reads them.
        unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
            msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = iov.len();
            if segment < len {
                msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
                msg.msg_controllen = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment as u16);
            }
            loop {
                match check(libc::sendmsg(self.fd.as_raw_fd(), &msg, 0)) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // The send buffer is full: wait for room rather than drop.
                        let mut p = libc::pollfd {
                            fd: self.fd.as_raw_fd(),
                            events: libc::POLLOUT,
                            revents: 0,
                        };
                        libc::poll(&mut p, 1, 100);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Receives up to `bufs.len()` buffers without waiting; returns how many.
    pub fn recv_batch(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = bufs.len().min(meta.len()).min(RECV_BATCH);
        // SAFETY: all arrays below live until recvmmsg returns and are sized `n`.
        unsafe {
            let mut names: [libc::sockaddr_in; RECV_BATCH] = mem::zeroed();
            let mut iovs: [libc::iovec; RECV_BATCH] = mem::zeroed();
            let mut cmsgs = [[0u64; CMSG_BUF / 8]; RECV_BATCH];
            let mut hdrs: [libc::mmsghdr; RECV_BATCH] = mem::zeroed();
            for i in 0..n {
                iovs[i] = libc::iovec {
                    iov_base: bufs[i].as_mut_ptr() as *mut libc::c_void,
                    iov_len: bufs[i].len(),
                };
                let h = &mut hdrs[i].msg_hdr;
                h.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
                h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = cmsgs[i].as_mut_ptr() as *mut libc::c_void;
                h.msg_controllen = CMSG_BUF;
            }
            let got = super::recvmmsg(self.fd.as_raw_fd(), &mut hdrs, n)?;
            for i in 0..got {
                let len = hdrs[i].msg_len as usize;
                let mut segment = len;
                let h = &hdrs[i].msg_hdr;
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        segment =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32) as usize;
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
                let src =
                    (h.msg_namelen as usize >= mem::size_of::<libc::sockaddr_in>()).then(|| {
                        SocketAddrV4::new(from_sockaddr(&names[i]), u16::from_be(names[i].sin_port))
                    });
                meta[i] = RecvMeta {
                    len,
                    src,
                    segment: segment.max(1),
                };
            }
            Ok(got)
        }
    }
}
