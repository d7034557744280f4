//! The agent's way into the host planner: its picture of the store and its flags as the
//! planner's inputs (`weft_backends::host`), nothing decided here.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_alloc::blocks::{Block, Pool};
use weft_alloc::Lease;
use weft_backends::host::{self, HostInputs, HostPlan, LocalSettings};

use super::Agent;

impl Agent {
    /// Hands the planner's inputs, made from the picture with the leases that stand, to
    /// `f`.
    fn with_inputs<R>(&self, standing: &[Lease], f: impl FnOnce(&HostInputs) -> R) -> R {
        let view = &self.view;
        let networks = view.named.networks();
        let endpoints = view.named.planned_endpoints();
        let blocks: Vec<Block> = view.blocks.values().cloned().collect();
        let pools: Vec<Pool> = view.pools.values().cloned().collect();
        let held: Vec<Ipv4Addr> = view.held.iter().copied().collect();
        f(&HostInputs {
            config: &view.config,
            node: &view.node,
            leases: standing,
            held: &held,
            networks: &networks,
            endpoints: &endpoints,
            blocks: &blocks,
            pools: &pools,
            local: LocalSettings {
                ip_masq: self.opts.ip_masq,
                encap_source_filter: self.opts.encap_source_filter,
            },
        })
    }

    /// What this host should look like now.
    pub(super) fn host_plan(&self, standing: &[Lease]) -> HostPlan {
        self.with_inputs(standing, |i| host::plan(self.runtime.backend.as_ref(), i))
    }

    /// What the BGP speaker announces for this node (empty for other backends).
    pub(super) fn announcements(&self, standing: &[Lease]) -> Vec<Ipv4Net> {
        self.with_inputs(standing, |i| {
            host::announcements(self.runtime.backend.as_ref(), i)
        })
    }
}
