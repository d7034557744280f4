//! BIG TCP on this node (`--big-tcp`): TCP super-packets of up to 192 KiB instead of
//! 64 KiB, so every hop between two containers handles a third as many packets.
//!
//! The limit must hold on every link of a container's path or the first link that
//! lacks it cuts the super-packets up in software (see [`weft_kernel::bigtcp`]). The
//! agent raises it on the external interface and publishes the size in the subnet file
//! (`WEFT_GSO_MAX_SIZE`); the CNI plugin sets it on every container link and bridge it
//! makes. Only backends that never encapsulate qualify: asking for BIG TCP with one
//! that does is refused at start-up rather than silently made slow.

use tracing::{info, warn};
use weft_backends::Backend;
use weft_kernel::bigtcp::{BIG_TCP_SIZE, LEGACY_SIZE};
use weft_kernel::Dataplane;
use weft_plan::iface::ExternalInterface;

use crate::error::AgentError;

/// Refuses `--big-tcp` with a backend that may encapsulate.
pub fn check(backend: &dyn Backend) -> Result<(), AgentError> {
    if backend.encapsulates() {
        return Err(AgentError::BigTcpEncapsulates {
            backend: backend.kind().name(),
        });
    }
    Ok(())
}

/// Raises the external interface's IPv4 GSO/GRO limits; returns the size in force when
/// it is above the kernel's default, `None` when the interface or kernel cannot.
pub async fn enable(
    dp: &dyn Dataplane,
    external: &ExternalInterface,
) -> Result<Option<u32>, AgentError> {
    match dp.ensure_big_tcp(external.index, BIG_TCP_SIZE).await? {
        None => {
            warn!(iface = %external.name, "this kernel has no IPv4 BIG TCP (6.3 or newer needed); staying at 64 KiB");
            Ok(None)
        }
        Some(LEGACY_SIZE) => {
            warn!(iface = %external.name, "the external interface cannot segment more than 64 KiB; BIG TCP stays off");
            Ok(None)
        }
        Some(size) => {
            info!(iface = %external.name, gso_ipv4_max_size = size, "BIG TCP on");
            Ok(Some(size))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_alloc::NetworkConfig;
    use weft_backends::BackendSettings;

    fn backend(json: &str) -> Box<dyn Backend> {
        let cfg = NetworkConfig::parse(json.as_bytes()).unwrap();
        let settings = BackendSettings {
            public_ip: "192.168.1.1".parse().unwrap(),
            public_ipv6: None,
            tx_checksum_off: false,
            ipip_user_space: true,
        };
        weft_backends::build(&cfg, &settings)
    }

    #[test]
    fn refused_with_a_backend_that_encapsulates() {
        let vxlan = backend(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let err = check(vxlan.as_ref()).unwrap_err().to_string();
        assert!(err.contains("--big-tcp") && err.contains("vxlan"), "{err}");
        let host_gw = backend(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
        assert!(check(host_gw.as_ref()).is_ok());
    }
}
