//! Offloads: the IPv4 BIG TCP limits over netlink, and TX checksum offload, which only
//! `ethtool` can turn off.

use netlink_packet_route::link::LinkMessage;
use rtnetlink::{Handle, LinkUnspec};

use super::links::by_index;
use super::nl;
use crate::bigtcp;
use crate::error::KernelError;

/// See [`crate::dataplane::Dataplane::ensure_big_tcp`].
pub(super) async fn ensure_big_tcp(
    handle: &Handle,
    index: u32,
    wanted: u32,
) -> Result<Option<u32>, KernelError> {
    let link: LinkMessage = by_index(handle, index)
        .await?
        .ok_or_else(|| KernelError::Missing(format!("#{index}")))?;
    let Some(limits) = bigtcp::Limits::of(&link) else {
        return Ok(None);
    };
    let target = limits.target(wanted);
    if !limits.at(target) {
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes.extend(bigtcp::attributes(target));
        handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl("set the IPv4 GSO/GRO limits"))?;
    }
    Ok(Some(target))
}

/// Turns TX checksum offload off with ethtool; logged, never fatal.
pub(super) fn set_tx_checksum_off(dev: &str) {
    match std::process::Command::new("ethtool")
        .args(["-K", dev, "tx", "off"])
        .output()
    {
        Ok(o) if o.status.success() => tracing::info!(dev, "turned TX checksum offload off"),
        Ok(o) => {
            tracing::warn!(dev, error = %String::from_utf8_lossy(&o.stderr).trim(), "cannot turn TX checksum offload off")
        }
        Err(e) => {
            tracing::warn!(dev, error = %e, "cannot run ethtool to turn TX checksum offload off")
        }
    }
}
