//! Keeping what the agent stands on: its lease (renewed in time, claimed again when
//! lost) and its external interface (followed when the address or device changes).

use std::time::Duration;

use tracing::{error, info, warn};
use weft_alloc::{Lease, LeaseAttrs, Registry};
use weft_backends::NodeContext;

use super::Agent;
use crate::bigtcp;

impl Agent {
    /// Claims a subnet again (ours, if still free) after losing the lease.
    pub(super) async fn reacquire(&mut self) {
        let ttl = self.opts.subnet_lease_ttl;
        let previous = weft_alloc::registry::Previous {
            v4: Some(self.view.node.lease.subnet),
            v6: self.view.node.lease.ipv6_subnet,
        };
        match self
            .registry
            .acquire(&self.view.config, &self.view.attrs, previous, ttl)
            .await
        {
            Ok(lease) => {
                if lease.subnet != self.view.node.lease.subnet {
                    warn!(old = %self.view.node.lease.subnet, new = %lease.subnet, "subnet changed; containers on the old subnet must be restarted");
                } else {
                    info!(subnet = %lease.subnet, "subnet lease held again");
                }
                self.view.peers.insert(lease.subnet, lease.clone());
                self.view.node.lease = lease;
                if let Err(e) = self.write_host_files() {
                    error!(error = %e, "cannot update host files");
                }
            }
            Err(e) => {
                error!(error = %e, "cannot claim a subnet now; will retry at the next renewal check")
            }
        }
    }

    /// Follows a change of the external interface. When its address moved (and no
    /// `--public-ip` pins it), this node's lease is rewritten in place: same subnet, new
    /// public IP and VTEP, and every peer updates its entries for this node.
    pub(super) async fn check_external(&mut self) {
        let ext = match self.dp.external_interface(&self.opts.iface).await {
            Ok(ext) => ext,
            Err(e) => {
                warn!(error = %e, "cannot read the external interface; keeping the current one");
                return;
            }
        };
        if ext == self.view.node.external {
            return;
        }
        if self.opts.big_tcp && ext.index != self.view.node.external.index {
            match bigtcp::enable(self.dp.as_ref(), &ext).await {
                Ok(size) => self.runtime.big_tcp = size,
                Err(e) => warn!(error = %e, "cannot raise the new external interface's GSO limit"),
            }
            if let Err(e) = self.write_host_files() {
                warn!(error = %e, "cannot rewrite the host files");
            }
        }
        let public_ip = self.opts.public_ip.unwrap_or(ext.addr);
        let public_ipv6 = super::public_ipv6(&self.opts, &self.view.config, &ext);
        if public_ip == self.view.attrs.public_ip && public_ipv6 == self.view.attrs.public_ipv6 {
            info!(iface = %ext.name, mtu = ext.mtu, "external interface changed");
            self.view.node.external = ext;
            return;
        }
        let backend =
            weft_backends::build(&self.view.config, &self.settings(public_ip, public_ipv6));
        let attrs = LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_data: backend.backend_data(),
            backend_v6_data: backend.backend_v6_data(),
            ..self.view.attrs.clone()
        };
        match self
            .registry
            .update_lease(&self.view.node.lease, &attrs)
            .await
        {
            Ok(Some(lease)) => {
                warn!(old = %self.view.attrs.public_ip, new = %public_ip, old_v6 = ?self.view.attrs.public_ipv6, new_v6 = ?public_ipv6, subnet = %lease.subnet, "public IP changed; lease updated, subnet kept");
                self.view.peers.insert(lease.subnet, lease.clone());
                self.view.node = NodeContext {
                    external: ext,
                    lease,
                    overlay: self.view.node.overlay,
                    overlay6: self.view.node.overlay6,
                    learned: std::mem::take(&mut self.view.node.learned),
                };
                self.runtime.backend = backend;
                self.view.attrs = attrs;
            }
            Ok(None) => {
                warn!("our lease changed while updating the public IP; claiming again");
                self.reacquire().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot update the lease with the new public IP; will retry")
            }
        }
    }
}

/// What a renewal check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Renewal {
    /// Not due, renewed, or the store could not say (tried again at the next tick).
    Held,
    /// The lease is gone or was not ours to renew: claim a subnet again.
    Lost,
}

/// Renews `lease` when it runs out within `margin`. Runs in a task of its own (the
/// agent's loop only takes the outcome), so a store that does not answer holds up
/// nothing but the next renewal.
pub(super) async fn check_renewal(
    registry: Registry,
    lease: Lease,
    margin: Duration,
    ttl: Duration,
) -> Renewal {
    if lease.is_reservation() {
        return Renewal::Held;
    }
    let left = match registry.expires_in(&lease).await {
        Ok(left) => left,
        Err(e) => {
            warn!(error = %e, "cannot read the lease's TTL; will retry");
            return Renewal::Held;
        }
    };
    match left {
        Some(left) if left > margin => Renewal::Held,
        Some(_) => match registry.renew(&lease).await {
            Ok(true) => {
                info!(subnet = %lease.subnet, ?ttl, "renewed subnet lease");
                Renewal::Held
            }
            Ok(false) => Renewal::Lost,
            Err(e) => {
                warn!(error = %e, "lease renewal failed; retrying");
                Renewal::Held
            }
        },
        None => Renewal::Lost,
    }
}
