//! The CNI specification's rules for what a runtime hands the plugin, checked before
//! anything is read from disk, allocated or created: a newline in a container ID must
//! not reach the IPAM records, an over-long interface name must not reach netlink.
//!
//! - container ID: not empty, starts with a letter or digit, then letters, digits,
//!   `_`, `.` or `-` (the spec's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`); at most 1024 bytes
//!   (the spec sets no bound; runtimes use 64);
//! - interface name: 1 to 15 bytes (the kernel's IFNAMSIZ - 1), not `.` or `..`, no
//!   `/`, `:`, whitespace or control characters;
//! - network name: as a container ID;
//! - CNI_NETNS: an absolute path;
//! - the network configuration on stdin: at most [`MAX_STDIN`] bytes.

use crate::spec::{CniError, CniResult, Code};

/// The largest network configuration read from stdin. A real one is a few KiB, with
/// `prevResult` and the attachment lists of GC a few hundred.
pub const MAX_STDIN: usize = 1 << 20;

const MAX_ID: usize = 1024;
const MAX_IFNAME: usize = 15;

fn bad_env(name: &str, value: &str, why: &str) -> CniError {
    CniError::new(
        Code::InvalidEnvironment,
        format!("{name} is invalid: {why}"),
    )
    .with_details(format!("{value:?}"))
}

/// The spec's identifier form, shared by container IDs and network names.
fn identifier(value: &str) -> Result<(), &'static str> {
    let mut chars = value.chars();
    match chars.next() {
        None => return Err("it is empty"),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err("it must start with a letter or digit")
        }
        Some(_) => {}
    }
    if value.len() > MAX_ID {
        return Err("it is longer than 1024 bytes");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err("only letters, digits, '_', '.' and '-' are allowed");
    }
    Ok(())
}

pub fn container_id(value: &str) -> CniResult<()> {
    identifier(value).map_err(|why| bad_env("CNI_CONTAINERID", value, why))
}

pub fn ifname(value: &str) -> CniResult<()> {
    let why = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > MAX_IFNAME {
        Some("it is longer than 15 bytes, the kernel's limit")
    } else if value == "." || value == ".." {
        Some("'.' and '..' are not interface names")
    } else if value
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("'/', ':', whitespace and control characters are not allowed")
    } else {
        None
    };
    match why {
        Some(why) => Err(bad_env("CNI_IFNAME", value, why)),
        None => Ok(()),
    }
}

pub fn netns(value: &str) -> CniResult<()> {
    if !value.starts_with('/') || value.chars().any(char::is_control) {
        return Err(bad_env("CNI_NETNS", value, "it must be an absolute path"));
    }
    Ok(())
}

pub fn network_name(value: &str) -> CniResult<()> {
    identifier(value).map_err(|why| {
        CniError::new(
            Code::InvalidConfig,
            format!("network name {value:?} is invalid: {why}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_as_the_spec_says() {
        for good in ["a", "0abc", "abc_d.e-f", &"f".repeat(64)] {
            container_id(good).unwrap();
        }
        for bad in [
            "",
            "-a",
            "a\nb",
            "a/b",
            "a b",
            "a\0",
            "ä",
            &"f".repeat(1025),
        ] {
            let e = container_id(bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment, "{bad:?}");
            assert!(e.msg.starts_with("CNI_CONTAINERID is invalid"), "{e}");
        }
    }

    #[test]
    fn interface_names_fit_the_kernel() {
        for good in ["eth0", "net1", "a.b-c_d", "123456789012345"] {
            ifname(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "eth0\n",
            "eth/0",
            "eth:0",
            "eth 0",
            "e\0",
            &"x".repeat(100_000),
        ] {
            let e = ifname(bad).unwrap_err();
            assert!(e.msg.starts_with("CNI_IFNAME is invalid"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn netns_and_network_names() {
        netns("/run/netns/c1").unwrap();
        netns("/proc/1234/ns/net").unwrap();
        assert!(netns("run/netns/c1").is_err());
        assert!(netns("/run/netns/c\n1").is_err());
        network_name("weft-net.1").unwrap();
        for bad in ["", ".hidden", "a/b", "a\nb"] {
            assert_eq!(network_name(bad).unwrap_err().code, Code::InvalidConfig);
        }
    }
}
