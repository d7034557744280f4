//! A network namespace of a test's own: `t<pid><tag>`, with `eth0` (192.168.0.1/16)
//! and its veth peer `eth1`, both up; removed when the test ends, pass or fail.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;

/// Removes the namespace when dropped, also when an assertion failed.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the namespace and runs `body` (given its name) inside it, on a thread of its
/// own with a current-thread runtime. Needs root.
pub fn in_netns<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ns = Ns(format!("t{}{tag}", std::process::id() % 100_000));
    sh(&["ip", "netns", "add", &ns.0]);
    let n = ns.0.as_str();
    sh(&[
        "ip", "-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    sh(&[
        "ip",
        "-n",
        n,
        "addr",
        "add",
        "192.168.0.1/16",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", n, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", n, "link", "set", "eth1", "up"]);
    let path = PathBuf::from(format!("/run/netns/{n}"));
    let name = ns.0.clone();
    let ran = weft_kernel::netns::run_in(&path, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body(name))
    });
    ran.expect("run the test inside its namespace");
}
