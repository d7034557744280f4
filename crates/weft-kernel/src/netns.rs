//! Running code inside another network namespace without moving the caller.
//!
//! A network namespace belongs to a thread, and sockets stay in the namespace they were
//! opened in. So the code runs on a scoped thread of its own that joins the namespace
//! first (`setns`) and ends with the call: the caller's thread, and any runtime it
//! drives, never leaves its namespace.

use std::fs::File;
use std::io;
use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a network namespace: {source}")]
    Enter {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the worker in network namespace {path} panicked")]
    Panicked { path: String },
}

/// Runs `f` on a thread that has joined the network namespace at `netns` (a file such
/// as `/run/netns/NAME` or `/proc/PID/ns/net`) and returns what it returned.
pub fn run_in<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let path = || netns.display().to_string();
    let file = File::open(netns).map_err(|source| NetnsError::Open {
        path: path(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // Only this scoped, short-lived thread changes namespace.
            if let Err(source) = crate::sys::setns(&file) {
                return Err(NetnsError::Enter {
                    path: path(),
                    source,
                });
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(NetnsError::Panicked { path: path() }))
    })
}

/// Whether `path` is a network namespace file (on nsfs): `/run/netns/NAME`,
/// `/proc/PID/ns/net`. Checked before anything is made for it.
pub fn is_namespace(path: &Path) -> io::Result<bool> {
    crate::sys::is_nsfs(&File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_wrong_file_is_named() {
        let err = run_in(Path::new("/nonexistent/netns"), || ()).unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
        // A regular file opens but is no namespace (setns fails with EINVAL, or EPERM
        // without the privilege: either way it is not entered).
        let err = run_in(Path::new("/proc/self/status"), || ()).unwrap_err();
        assert!(matches!(err, NetnsError::Enter { .. }), "{err}");
        assert!(is_namespace(Path::new("/proc/self/ns/net")).unwrap());
        assert!(!is_namespace(Path::new("/proc/self/status")).unwrap());
    }

    #[test]
    fn runs_in_the_current_namespace_and_returns_the_value() {
        // Joining the namespace we are already in needs CAP_SYS_ADMIN.
        if !crate::sys::is_root() {
            // Past the test harness's capture, as weft-testkit's gates print.
            use std::io::Write;
            let line = "skipped (needs root): netns::runs_in_the_current_namespace";
            let _ = writeln!(std::io::stderr(), "{line}");
            return;
        }
        let got = run_in(Path::new("/proc/self/ns/net"), || 7).unwrap();
        assert_eq!(got, 7);
    }
}
