//! Loading a program into the kernel with the `bpf(2)` system call.
//!
//! Written by hand because the Rust BPF loaders (aya, libbpf-rs) load programs from ELF
//! objects built by a BPF compiler; Weft's programs are a few dozen instructions built
//! in code, and loading them is one system call.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

use super::insn::Insn;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// The verifier's log, kept for the error when a program is refused.
const LOG_SIZE: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum BpfError {
    #[error("the kernel refused BPF program {name}: {source}; verifier says: {log}")]
    Refused {
        name: String,
        #[source]
        source: io::Error,
        log: String,
    },
    #[error("cannot read BPF program {name}'s tag: {source}")]
    Info {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// `union bpf_attr` as BPF_PROG_LOAD reads it (fields after these stay zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`: type, id and the tag (a hash of the instructions).
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
}

/// A loaded program: the kernel keeps it while this descriptor, or an attachment, lives.
#[derive(Debug)]
pub struct Program {
    pub fd: OwnedFd,
    /// The kernel's hash of the instructions, as `tc filter show` and the filter dump
    /// report it: how an attached program is recognised.
    pub tag: [u8; 8],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, properly sized bpf_attr for `cmd`; its pointers point at
    // buffers that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads a `tc` classifier program named `name` (at most 15 characters: letters, digits,
/// `_` and `.`), GPL-licensed (the route lookup helper requires it).
pub fn load_sched_cls(name: &str, insns: &[Insn]) -> Result<Program, BpfError> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let license = c"GPL";
    let mut log = vec![0u8; LOG_SIZE];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: insns.len() as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let fd = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(_) => {
            // Load again with the verifier's log on, for an error that says why.
            attr.log_level = 1;
            attr.log_size = LOG_SIZE as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let source = bpf(BPF_PROG_LOAD, &mut attr)
                .err()
                .unwrap_or_else(|| io::Error::other("refused once, accepted on retry"));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            // The last lines say what failed; the whole log can be thousands of lines.
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let log = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
            return Err(BpfError::Refused {
                name: name.to_owned(),
                source,
                log,
            });
        }
    };
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let tag = tag_of(&fd).map_err(|source| BpfError::Info {
        name: name.to_owned(),
        source,
    })?;
    Ok(Program { fd, tag })
}

fn tag_of(fd: &OwnedFd) -> io::Result<[u8; 8]> {
    use std::os::fd::AsRawFd;
    let mut info = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut info as *mut ProgInfoHead as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.tag)
}
