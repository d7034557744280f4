//! The Debian package as `scripts/package` builds it (from this build's binaries): its
//! contents, its control data and maintainer scripts, the systemd unit (checked by
//! `systemd-analyze verify` where systemd is installed, and for its hardening), and the
//! config file it ships (read by weftd's own parser). No root needed; skipped where
//! `dpkg-deb` is missing.

use std::io::Write;
use std::path::Path;
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_deb_holds_what_a_host_needs() {
    if !have("dpkg-deb") {
        assert!(
            !weft_testkit::gate::is_root(),
            "dpkg-deb missing: install dpkg (every Debian has it)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "skipped (needs dpkg-deb): the_deb_holds_what_a_host_needs"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bins = Path::new(env!("CARGO_BIN_EXE_weftd")).parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let built = Command::new(root.join("scripts/package"))
        .args([
            "--bin-dir",
            bins.to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
        ])
        .args(["--compression", "none"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));
    let deb = text(&built.stdout).trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");

    let listing = text(
        &Command::new("dpkg-deb")
            .args(["-c", &deb])
            .output()
            .unwrap()
            .stdout,
    );
    for f in [
        "./usr/bin/weftd",
        "./usr/bin/weftctl",
        "./usr/lib/cni/weft",
        "./lib/systemd/system/weftd.service",
        "./etc/weft/weftd.conf",
        "./usr/share/man/man1/weftd.1.gz",
        "./usr/share/man/man1/weftctl.1.gz",
        "./usr/share/man/man1/weftctl-network-create.1.gz",
        "./usr/share/bash-completion/completions/weftctl",
        "./usr/share/zsh/vendor-completions/_weftctl",
        "./usr/share/doc/weft/install.md",
        "./usr/share/doc/weft/copyright",
    ] {
        assert!(listing.contains(f), "{f} missing:\n{listing}");
    }
    // Where containerd and CRI-O look by default, beside Debian's CNI directory.
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.contains("./opt/cni/bin/weft -> /usr/lib/cni/weft")),
        "{listing}"
    );
    // Everything owned by root, binaries executable.
    assert!(
        listing.lines().all(|l| l.contains("root/root")),
        "{listing}"
    );
    assert!(listing
        .lines()
        .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("./usr/bin/weftd")));

    let field = |f: &str| {
        text(
            &Command::new("dpkg-deb")
                .args(["-f", &deb, f])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_owned()
    };
    assert_eq!(field("Package"), "weft");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert!(field("Depends").contains("nftables") && field("Depends").contains("iproute2"));

    let x = tempfile::tempdir().unwrap();
    let (fs, ctl) = (x.path().join("fs"), x.path().join("ctl"));
    assert!(Command::new("dpkg-deb")
        .args(["-x", &deb, fs.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("dpkg-deb")
        .args(["-e", &deb, ctl.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/weft/weftd.conf");
    for s in ["postinst", "prerm", "postrm"] {
        let script = ctl.join(s);
        let check = Command::new("sh").arg("-n").arg(&script).status().unwrap();
        assert!(check.success(), "{s} does not parse");
        let body = std::fs::read_to_string(&script).unwrap();
        assert!(body.contains("set -e"), "{s}");
        // Never start the agent from a maintainer script: it needs a store first.
        assert!(
            !body.contains("systemctl start") && !body.contains("enable --now"),
            "{s}"
        );
    }
    assert!(std::fs::read_to_string(ctl.join("md5sums"))
        .unwrap()
        .contains("usr/bin/weftd"));

    // The unit: hardened, capabilities named, no module loading, and valid.
    let unit = std::fs::read_to_string(fs.join("lib/systemd/system/weftd.service")).unwrap();
    for needle in [
        "ExecStart=/usr/bin/weftd --config /etc/weft/weftd.conf",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_SYS_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectKernelModules=yes",
        "Restart=always",
        // Ready only once the network and the Docker driver are there; Docker after it.
        "Type=notify",
        "Before=docker.service",
    ] {
        assert!(unit.contains(needle), "{needle} missing from the unit");
    }
    assert!(
        !unit.contains("ProtectKernelTunables=yes"),
        "weftd writes /proc/sys"
    );
    assert!(
        have("systemd-analyze") || !weft_testkit::gate::is_root(),
        "systemd-analyze missing: install systemd (scripts/setup does)"
    );
    if have("systemd-analyze") {
        let local = x.path().join("weftd.service");
        let weftd = fs.join("usr/bin/weftd");
        std::fs::write(
            &local,
            unit.replace("/usr/bin/weftd", weftd.to_str().unwrap()),
        )
        .unwrap();
        let v = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&local)
            .output()
            .unwrap();
        let said = format!("{}{}", text(&v.stdout), text(&v.stderr));
        assert!(v.status.success(), "systemd-analyze verify: {said}");
    } else {
        eprintln!("note: systemd-analyze missing; the unit was checked by content only");
    }

    // The shipped config file is read by the shipped weftd's parser: an unknown line is
    // refused with its number, the shipped file is not.
    let weftd = fs.join("usr/bin/weftd");
    let conf = fs.join("etc/weft/weftd.conf");
    let bad = x.path().join("bad.conf");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&conf).unwrap() + "ip-mask = true\n",
    )
    .unwrap();
    let refused = Command::new(&weftd)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("unknown option \"ip-mask\""),
        "{}",
        text(&refused.stderr)
    );
    let man = Command::new("gzip")
        .arg("-dc")
        .arg(fs.join("usr/share/man/man1/weftd.1.gz"))
        .output()
        .unwrap();
    assert!(
        text(&man.stdout).contains("healthz"),
        "weftd's page lists its options"
    );
}
