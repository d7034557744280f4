//! The overlay device, and for the udp and user-space ipip backends the user-space
//! tunnel that opens it.

use tracing::error;
use weft_kernel::KernelError;
use weft_plan::{LinkOutcome, OverlaySpec};
use weft_tunnel::{Table, Tunnel, DEVICE};

use super::Agent;

/// How [`Agent::ensure_tunnel`] started the user-space tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Started {
    Fresh,
    /// A running (dead or outdated) tunnel was replaced: a repair.
    Replaced,
}

impl Agent {
    /// Makes the backend's overlay device (and, for a TUN, the tunnel behind it) exist
    /// as specified; returns its index.
    pub(super) async fn ensure_overlay(
        &mut self,
        spec: &OverlaySpec,
    ) -> Result<(u32, LinkOutcome), KernelError> {
        let OverlaySpec::Tun(s) = spec else {
            return self.dp.ensure_overlay(spec).await;
        };
        let existed = self.dp.link_index(&s.name).await?.is_some();
        let started = self.ensure_tunnel(!existed && self.runtime.tunnel.is_some());
        let (index, outcome) = self.dp.ensure_overlay(spec).await?;
        let outcome = match outcome {
            // A device that did not exist was made by opening the tunnel.
            _ if !existed => LinkOutcome::Created,
            LinkOutcome::Unchanged if started == Some(Started::Replaced) => {
                LinkOutcome::Updated("tunnel restarted".into())
            }
            other => other,
        };
        Ok((index, outcome))
    }

    /// Starts the user-space tunnel if it is not running (or `force`); says whether it
    /// started one, and whether that replaced another.
    pub(super) fn ensure_tunnel(&mut self, force: bool) -> Option<Started> {
        let encap = self.runtime.backend.user_space_encap()?;
        let healthy = self
            .runtime
            .tunnel
            .as_ref()
            .is_some_and(|t| t.is_alive() && t.encap == encap);
        if healthy && !force {
            return None;
        }
        let started = if self.runtime.tunnel.is_some() {
            Started::Replaced
        } else {
            Started::Fresh
        };
        if let Some(old) = self.runtime.tunnel.take() {
            // Joining its threads takes up to half a second; not on the async runtime.
            tokio::task::spawn_blocking(move || drop(old));
        }
        let queues = match self.opts.tunnel_queues {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let table = Table::new(
            self.view.config.network,
            self.view.node.lease.subnet,
            self.view.attrs.public_ip,
        );
        match Tunnel::start(DEVICE, encap, queues, table, self.metrics.tunnel.clone()) {
            Ok(t) => {
                self.runtime.tunnel = Some(t);
                Some(started)
            }
            Err(e) => {
                error!(error = %e, "cannot start the user-space tunnel; will retry");
                None
            }
        }
    }
}
