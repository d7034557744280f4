//! The sysctls a node that forwards container traffic needs.
//!
//! `/proc/sys/net` shows the settings of the caller's network namespace, so an agent in a
//! namespace changes only that namespace.

use std::path::Path;

/// Sets a sysctl (`net/ipv4/ip_forward` style path) if it differs; returns whether it changed.
pub fn ensure(path: &str, value: &str) -> std::io::Result<bool> {
    let file = Path::new("/proc/sys").join(path);
    let current = std::fs::read_to_string(&file)
        .map_err(|e| std::io::Error::new(e.kind(), format!("read {}: {e}", file.display())))?;
    if current.trim() == value {
        return Ok(false);
    }
    std::fs::write(&file, value).map_err(|e| {
        std::io::Error::new(e.kind(), format!("write {} = {value}: {e}", file.display()))
    })?;
    Ok(true)
}

/// What every backend needs: IPv4 forwarding on.
pub fn ensure_forwarding() -> std::io::Result<bool> {
    ensure("net/ipv4/ip_forward", "1")
}
