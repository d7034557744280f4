//! Gates for tests that need more than an ordinary user has.
//!
//! A gated test run without what it needs returns at once, after one line on the
//! terminal (`skipped (needs root): lab_vxlan::vxlan_three_hosts_on_etcd`). The line goes
//! straight to the process's stderr, past the test harness's capture, so `cargo test` as
//! an ordinary user shows which tests it skipped. As root nothing is skipped: the README's
//! test command runs every test, and a missing etcd there is a failure, not a skip.

use std::io::Write;

fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped ({why}): {test}");
}

/// Whether this runs as root, where nothing may be skipped: a missing tool is a
/// failure that says what to install.
pub fn is_root() -> bool {
    weft_kernel::sys::is_root()
}

/// Whether a test that needs root (namespaces, netlink changes, nftables) may run;
/// prints the skip line when not.
pub fn root(test: &str) -> bool {
    let root = weft_kernel::sys::is_root();
    if !root {
        skip(test, "needs root");
    }
    root
}

/// Whether a test that needs a real etcd may run: always as root (where `scripts/setup`
/// installed it); as an ordinary user when `etcd` is on the PATH.
pub fn etcd(test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("etcd").is_file()));
    let ok = found || weft_kernel::sys::is_root();
    if !ok {
        skip(test, "needs the etcd binary");
    }
    ok
}

/// Returns from the calling test unless it runs as root; names the test in the skip line.
#[macro_export]
macro_rules! require_root {
    ($test:expr) => {
        if !$crate::gate::root(concat!(module_path!(), "::", $test)) {
            return;
        }
    };
}
