//! `setsockopt(2)` for the raw netlink sockets Weft reads and writes itself.

use std::io;
use std::os::fd::AsRawFd;

/// Sets socket option `name` (level `SOL_SOCKET`) to `value`, passed by pointer and size.
pub(crate) fn set<T>(socket: &impl AsRawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: a pointer to a live `T` and its size; the kernel copies what it reads.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
