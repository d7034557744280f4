//! The system calls the data path makes, each wrapped once: the TUN queues, the UDP
//! socket with GSO/GRO, the raw IP-in-IP socket, and waiting for readiness.

pub mod raw;
pub mod tun;
pub mod udp;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Waits until one of `fds` is readable or `timeout_ms` passed; true if one is.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<bool> {
    let mut p = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 2];
    let n = fds.len().min(p.len());
    for (slot, fd) in p.iter_mut().zip(fds) {
        slot.fd = fd.as_raw_fd();
    }
    // SAFETY: `n` valid pollfds for the duration of the call.
    let r = unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    match r {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// `recvmmsg` without waiting: the number of messages, 0 when none is waiting.
///
/// # Safety
/// `hdrs[..n]` must describe buffers that stay valid for the call.
pub(crate) unsafe fn recvmmsg(fd: i32, hdrs: &mut [libc::mmsghdr], n: usize) -> io::Result<usize> {
    let r = libc::recvmmsg(
        fd,
        hdrs.as_mut_ptr(),
        n as u32,
        libc::MSG_DONTWAIT,
        std::ptr::null_mut(),
    );
    match check(r as isize) {
        Ok(got) => Ok(got),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// `-1` into the last OS error, anything else into its value.
pub(crate) fn check(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub(crate) fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a pointer to a live i32 and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    check(r as isize).map(|_| ())
}

pub(crate) fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

pub(crate) fn from_sockaddr(sa: &libc::sockaddr_in) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))
}
