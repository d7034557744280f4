//! The sysctls a node that forwards container traffic needs, and the per-link settings
//! the CNI plugin turns on.
//!
//! `/proc/sys/net` shows the settings of the caller's network namespace, so an agent in a
//! namespace changes only that namespace.

use std::path::Path;

use crate::dataplane::LinkSetting;
use crate::error::KernelError;

fn io_error(file: &Path, source: std::io::Error) -> KernelError {
    KernelError::Sysctl {
        path: file.display().to_string(),
        source,
    }
}

/// Sets `file` to `value` if it differs; returns whether it changed.
fn ensure_file(file: &Path, value: &str) -> Result<bool, KernelError> {
    let current = std::fs::read_to_string(file).map_err(|e| io_error(file, e))?;
    if current.trim() == value {
        return Ok(false);
    }
    std::fs::write(file, value).map_err(|e| io_error(file, e))?;
    Ok(true)
}

/// Sets a sysctl (`net/ipv4/ip_forward` style path) if it differs; returns whether it changed.
pub fn ensure(path: &str, value: &str) -> Result<bool, KernelError> {
    ensure_file(&Path::new("/proc/sys").join(path), value)
}

/// IPv4 forwarding, which every backend needs on.
pub const FORWARDING: &str = "net/ipv4/ip_forward";
/// IPv6 forwarding, which a dual-stack node needs on ([`LinkSetting::Ipv6Forwarding`]).
pub const FORWARDING6: &str = "net/ipv6/conf/all/forwarding";

/// A sysctl's value, trimmed.
pub fn read(path: &str) -> Result<String, KernelError> {
    let file = Path::new("/proc/sys").join(path);
    let value = std::fs::read_to_string(&file).map_err(|e| io_error(&file, e))?;
    Ok(value.trim().to_owned())
}

/// What every backend needs: IPv4 forwarding on.
pub fn ensure_forwarding() -> Result<bool, KernelError> {
    ensure(FORWARDING, "1")
}

/// The file and value behind a per-link setting.
pub fn setting_file(setting: &LinkSetting) -> (String, &'static str) {
    match setting {
        LinkSetting::ProxyArp(dev) => (format!("/proc/sys/net/ipv4/conf/{dev}/proxy_arp"), "1"),
        LinkSetting::ProxyDelayZero(dev) => {
            (format!("/proc/sys/net/ipv4/neigh/{dev}/proxy_delay"), "0")
        }
        LinkSetting::Hairpin(dev) => (format!("/sys/class/net/{dev}/brport/hairpin_mode"), "1"),
        LinkSetting::BridgeCallsIptables => {
            ("/proc/sys/net/bridge/bridge-nf-call-iptables".into(), "1")
        }
        LinkSetting::BridgeCallsIp6tables => {
            ("/proc/sys/net/bridge/bridge-nf-call-ip6tables".into(), "1")
        }
        LinkSetting::Ipv6Forwarding => (format!("/proc/sys/{FORWARDING6}"), "1"),
    }
}

pub fn set_link_setting(setting: &LinkSetting) -> Result<(), KernelError> {
    let (file, value) = setting_file(setting);
    ensure_file(Path::new(&file), value).map(|_| ())
}
