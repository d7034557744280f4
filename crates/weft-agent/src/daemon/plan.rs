//! The agent's way into the host planner: its picture of the store and its flags as the
//! planner's inputs (`weft_backends::host`), nothing decided here.

use std::net::Ipv4Addr;

use weft_alloc::blocks::{Block, Pool};
use weft_alloc::named::NamedNetwork;
use weft_alloc::Lease;
use weft_backends::host::{self, HostInputs, HostPlan, LocalSettings};
use weft_backends::networks::PlannedEndpoint;

use super::Agent;

/// The picture's named networks, blocks, pools and held addresses as the planner takes
/// them: gathered once per reconcile, for the announcements and the plan alike.
pub(super) struct Picture {
    networks: Vec<NamedNetwork>,
    endpoints: Vec<PlannedEndpoint>,
    blocks: Vec<Block>,
    pools: Vec<Pool>,
    held: Vec<Ipv4Addr>,
}

impl Agent {
    pub(super) fn picture(&self) -> Picture {
        let view = &self.view;
        Picture {
            networks: view.named.networks(),
            endpoints: view.named.planned_endpoints(),
            blocks: view.blocks.values().cloned().collect(),
            pools: view.pools.values().cloned().collect(),
            held: view.held.iter().copied().collect(),
        }
    }

    /// The planner's inputs: `picture` with the leases that stand, this node and flags.
    fn inputs<'a>(&'a self, picture: &'a Picture, standing: &'a [Lease]) -> HostInputs<'a> {
        HostInputs {
            config: &self.view.config,
            node: &self.view.node,
            leases: standing,
            held: &picture.held,
            networks: &picture.networks,
            endpoints: &picture.endpoints,
            blocks: &picture.blocks,
            pools: &picture.pools,
            local: LocalSettings {
                ip_masq: self.opts.ip_masq,
                encap_source_filter: self.opts.encap_source_filter,
                ipv6_masq: self.opts.ipv6_masq,
            },
            between_networks: self.policy.opens_between(),
        }
    }

    /// What this host should look like now.
    pub(super) fn host_plan(&self, picture: &Picture, standing: &[Lease]) -> HostPlan {
        host::plan(
            self.runtime.backend.as_ref(),
            &self.inputs(picture, standing),
        )
    }

    /// What the BGP speaker announces for this node (empty for other backends).
    pub(super) fn announcements(
        &self,
        picture: &Picture,
        standing: &[Lease],
    ) -> Vec<weft_bgp::policy::Own> {
        host::announcements(
            self.runtime.backend.as_ref(),
            &self.inputs(picture, standing),
        )
    }
}
