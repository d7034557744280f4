//! The few system calls Weft makes without a safe wrapper in its dependencies, each
//! behind a safe function. This is the only module of the workspace outside the
//! tunnel's `sys` that may use `unsafe` (see `[workspace.lints]`).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use netlink_sys::{Socket, TokioSocket};

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets socket option `name` (level `SOL_SOCKET`) to `value`, passed by pointer and size.
pub(crate) fn set_sockopt<T>(
    socket: &impl AsRawFd,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: a pointer to a live `T` and its size; the kernel copies what it reads.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

/// Moves the calling thread into the network namespace `file` refers to.
pub fn setns(file: &File) -> io::Result<()> {
    // SAFETY: setns only changes the calling thread's namespace; the fd is live.
    check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// Whether `file` lives on nsfs, i.e. is a namespace (`/run/netns/NAME`,
/// `/proc/PID/ns/net`), checked before anything is made for it.
pub fn is_nsfs(file: &File) -> io::Result<bool> {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // SAFETY: fstatfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64 == NSFS_MAGIC)
}

/// A netlink socket opened elsewhere (in another namespace) as a tokio socket. Must be
/// called inside a tokio runtime.
pub(crate) fn tokio_socket(socket: Socket) -> io::Result<TokioSocket> {
    socket.set_non_blocking(true)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other("no tokio runtime to drive the socket"));
    }
    // SAFETY: the fd comes from a socket we own and give up here; it is a netlink
    // socket in non-blocking mode, as TokioSocket expects.
    Ok(unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) })
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to process `pid`; whether it was delivered.
pub fn signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill touches no memory; a wrong pid only fails.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// Reaps `pid` if it is an exited child of ours; never blocks.
pub fn reap(pid: u32) {
    // SAFETY: waitpid with WNOHANG and no status pointer only inspects or reaps.
    unsafe {
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
    }
}

/// Has the kernel kill the child `cmd` starts when the thread that started it dies
/// (a test's server must not outlive the test).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}
