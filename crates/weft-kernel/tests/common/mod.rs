//! A network namespace of the test's own, for the kernel tests that need root.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::Command;

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}

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

/// Makes namespace `t<pid><tag>` with `eth0` (192.168.0.1/16) and its veth peer `eth1`,
/// both up, and runs `body` (given the namespace's name) inside it, on a thread of its
/// own with a current-thread runtime. The namespace goes afterwards, pass or fail.
pub fn in_netns<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ns = Ns(format!("t{}{tag}", std::process::id() % 100_000));
    sh(&["ip", "netns", "add", &ns.0]);
    sh(&[
        "ip", "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns.0,
        "addr",
        "add",
        "192.168.0.1/16",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &ns.0, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &ns.0, "link", "set", "eth1", "up"]);
    let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
    let name = ns.0.clone();
    std::thread::spawn(move || {
        // SAFETY: this thread only, into a namespace whose file we hold open.
        assert_eq!(unsafe { setns(file.as_raw_fd(), 0x4000_0000) }, 0);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body(name))
    })
    .join()
    .unwrap();
}
