//! eBPF programs Weft attaches to its own hooks: built in code, loaded with one system
//! call, attached as `tc` filters marked with Weft's name.

pub mod fastpath;
pub mod insn;
pub mod load;

pub use fastpath::FastPath;
pub use load::{load_sched_cls, BpfError, Program};
