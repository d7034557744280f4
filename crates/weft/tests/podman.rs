//! Podman as a real client of the `weft` CNI plugin: `podman run` on a lab host, with a
//! `weft` network in Podman's CNI config, gets an address from that node's lease and
//! reaches a container on another lab host.
//!
//! Podman 4.3 on this machine needs (see the field notes): the CNI backend, runc, cgroupfs,
//! vfs storage and lowered default ulimits; every flag before `--rootfs PATH`. It runs in
//! the lab host's network namespace via `nsenter --net` (`ip netns exec` would remount
//! /sys and hide the cgroup mounts runc needs).

mod common;

use std::process::Command;
use weft_testkit::require_root;

use common::*;

#[test]
fn podman_run_on_a_lab_host_reaches_another_host() {
    require_root!("podman_run_on_a_lab_host_reaches_another_host");
    assert!(
        Command::new("podman")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "podman missing: run scripts/setup"
    );
    let lab = Lab::up("pd", "embedded", 2);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let rootfs = p.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "ping", "ip", "grep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let plugin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_weft"))
        .parent()
        .unwrap()
        .to_owned();
    std::fs::create_dir_all(p.join("net.d")).unwrap();
    std::fs::write(
        p.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=16384:16384\", \"nproc=32768:32768\"]\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
            plugin_dir.display(),
            p.join("net.d").display()
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            p.join("run").display(),
            p.join("graph").display()
        ),
    )
    .unwrap();
    let state = format!("/run/weft-lab/{}/h1", lab.name);
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0", "name": "weft",
        // The lab's own agent socket: never the host's default (/run/weft/weftd.sock).
        "plugins": [{"type": "weft", "mode": "bridge", "subnetFile": format!("{state}/subnet.env"), "dataDir": format!("{state}/cni"), "agentSocket": format!("{state}/weftd.sock")}],
    });
    std::fs::write(p.join("net.d/weft.conflist"), conflist.to_string()).unwrap();

    let h1_subnet = lab.subnet_of("h1");
    let prefix = h1_subnet.rsplit_once('.').unwrap().0.to_owned();
    let c2 = container_addr(&lab.subnet_of("h2"));
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns("h1")))
        .args(["podman", "run", "--rm", "--network", "weft", "--rootfs"])
        .arg(&rootfs)
        .args([
            "/bin/sh",
            "-c",
            &format!("ip -4 addr show eth0 | grep inet; ping -c 2 -W 2 {c2}"),
        ])
        .env("CONTAINERS_CONF", p.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(
        out.status.success(),
        "podman run failed:\n{said}\n{}",
        text(&out.stderr)
    );
    assert!(
        said.contains(&format!("inet {prefix}.")),
        "the Podman container got an address from h1's lease {h1_subnet}:\n{said}"
    );
    assert!(
        said.contains("2 packets received"),
        "it reached c2 on h2:\n{said}"
    );
    // `--rm` ran DEL: only the lab's own containers hold addresses.
    let ipam: serde_json::Value = serde_json::from_slice(
        &lab.ctl(&["--lab", &lab.name, "ipam", "show", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(ipam.as_array().unwrap().len(), 2, "{ipam}");
}
