//! The host around the data plane: the files other programs read (flannel's formats),
//! forwarding, and the firewall.

use std::sync::atomic::Ordering;

use tracing::info;
use weft_alloc::hostfiles::{self, NodeNetwork, NodeNetworkV6};
use weft_alloc::screen::screen;
use weft_plan::Applied;

use weft_alloc::IpamModel;

use super::Agent;
use crate::error::AgentError;
use crate::health::Metrics;

impl Agent {
    pub(super) fn node_network(&self) -> NodeNetwork {
        NodeNetwork {
            network: self.view.config.network,
            subnet: self.view.node.lease.subnet,
            mtu: self.runtime.backend.mtu(self.view.node.external.mtu),
            ip_masq: self.opts.ip_masq,
            gso_max_size: self.runtime.big_tcp,
            ipam_blocks: matches!(self.view.config.ipam, IpamModel::Blocks { .. }),
            ipv6: self
                .view
                .config
                .ipv6
                .as_ref()
                .zip(self.view.node.lease.ipv6_subnet)
                .map(|(v6, subnet)| NodeNetworkV6 {
                    network: v6.network,
                    subnet,
                }),
        }
    }

    pub(super) fn write_host_files(&self) -> Result<(), AgentError> {
        let n = self.node_network();
        for (path, content) in [
            (&self.opts.subnet_file, hostfiles::render_subnet_env(&n)),
            (
                &self.opts.docker_opts_file,
                hostfiles::render_docker_opts(&n),
            ),
        ] {
            let wrote =
                hostfiles::write_atomic(path, &content).map_err(|source| AgentError::HostFile {
                    path: path.clone(),
                    source,
                })?;
            if wrote {
                info!(path = %path.display(), mtu = n.mtu, "wrote host file");
            }
        }
        Ok(())
    }

    /// Forwarding, the iptables FORWARD-DROP workaround and the firewall. Idempotent.
    pub(super) fn setup_host(&mut self) -> Result<(), AgentError> {
        if self.dp.ensure_forwarding()? {
            info!("enabled net.ipv4.ip_forward");
        }
        if self.view.config.ipv6.is_some() {
            self.dp
                .set_link_setting(&weft_kernel::LinkSetting::Ipv6Forwarding)?;
        }
        let inserted = self.dp.ensure_iptables_forward(&self.view.config.network)?;
        if inserted > 0 {
            info!(
                rules = inserted,
                "iptables FORWARD policy is DROP; inserted accept rules for the cluster network"
            );
        }
        let standing = screen(&self.view.config, self.view.peers.values()).standing;
        let plan = self.host_plan(&self.picture(), &standing);
        self.firewall.apply(self.dp.as_ref(), true, &plan.firewall);
        Ok(())
    }

    /// Counts what an applied diff changed; returns whether it changed anything.
    pub(super) fn count<T>(&self, applied: &Applied<T>) -> bool {
        count(&self.metrics, applied)
    }
}

/// Counts what an applied diff changed in `/metrics`; whether it changed anything.
pub(super) fn count<T>(metrics: &Metrics, applied: &Applied<T>) -> bool {
    let changes = (applied.added + applied.replaced + applied.removed) as u64;
    metrics.kernel_changes.fetch_add(changes, Ordering::Relaxed);
    metrics
        .kernel_failures
        .fetch_add(applied.failed.len() as u64, Ordering::Relaxed);
    applied.changed()
}
