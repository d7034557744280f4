//! Opening queues of Weft's TUN device.
//!
//! Every queue is opened with the same flags: layer 3 (`IFF_TUN`), no packet-info prefix,
//! a virtio-net header on every packet (`IFF_VNET_HDR`) and several queues
//! (`IFF_MULTI_QUEUE`) so each worker has its own. Offloads are turned on so the kernel
//! hands over whole TCP super-packets and leaves checksums to us (`TUN_F_CSUM`,
//! `TUN_F_TSO4`). The device is made persistent: it, its address and the routes through
//! it outlive the agent, so a restart reattaches to the same device and the kernel sees
//! no change. (Written here rather than through a TUN crate because Weft needs exactly
//! these flags, persistence, and the raw descriptors for its own batched I/O.)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::check;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const IFF_MULTI_QUEUE: i16 = 0x0100;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// Opens one queue of TUN `name` (creating the device if it does not exist), non-blocking.
pub fn open_queue(name: &str, persist: bool) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad device name {name:?}"),
        ));
    }
    let path = c"/dev/net/tun";
    // SAFETY: a NUL-terminated path; the result is checked.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    check(raw as isize)?;
    // SAFETY: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one ifreq we own.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) } as isize)?;
    // SAFETY: TUNSETOFFLOAD and TUNSETPERSIST take an integer argument.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) } as isize)?;
    if persist {
        check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) } as isize)?;
    }
    Ok(fd)
}

/// Reads one packet (virtio header first) into `buf`; `Ok(None)` when none is waiting.
pub fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: writes at most buf.len() bytes into buf.
    let r = unsafe {
        libc::read(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    match check(r) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Writes one packet given as pieces (virtio header first).
pub fn writev(fd: &OwnedFd, iov: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: every iovec points into a live buffer of the caller's for this call.
    check(unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), iov.len() as i32) })
}

pub fn iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}
