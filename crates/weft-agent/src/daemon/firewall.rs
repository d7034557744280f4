//! The firewall's manager: the nftables table `ip weft` and iptables' FORWARD accept
//! rules, each changed only when its plan changed (a resync forces a check, which still
//! loads nothing when the kernel's table carries the same fingerprint).

use ipnet::Ipv4Net;
use tracing::{error, info, warn};
use weft_kernel::Dataplane;
use weft_plan::FirewallPlan;

/// What the firewall was last brought to.
#[derive(Debug, Default)]
pub(super) struct FirewallManager {
    /// The plan the loaded table was made from.
    loaded: Option<FirewallPlan>,
    /// The named subnets and pools iptables' FORWARD chain was last checked for.
    forward: Vec<Ipv4Net>,
}

impl FirewallManager {
    /// Loads the nftables table when its plan changed (or when `force`d).
    pub(super) fn apply(&mut self, dp: &dyn Dataplane, force: bool, plan: &FirewallPlan) {
        if !force && self.loaded.as_ref() == Some(plan) {
            return;
        }
        match dp.apply_firewall(plan) {
            Ok(loaded) => {
                if loaded {
                    let members = plan.encap.as_ref().map(|e| e.members.len());
                    info!(table = weft_kernel::nft::TABLE, ip_masq = plan.ip_masq, encap_members = ?members, "loaded nftables rules");
                }
                self.loaded = Some(plan.clone());
            }
            Err(e) => error!(error = %e, "cannot load nftables rules; will retry"),
        }
    }

    /// Where iptables' FORWARD policy is DROP, named subnets and block IPAM's pools need
    /// accept rules as the cluster network does; checked when the set of them changes.
    pub(super) fn ensure_forward(&mut self, dp: &dyn Dataplane, subnets: &[Ipv4Net]) {
        if subnets == self.forward {
            return;
        }
        for s in subnets {
            match dp.ensure_iptables_forward(s) {
                Ok(n) if n > 0 => {
                    info!(subnet = %s, rules = n, "inserted iptables FORWARD accept rules for a named network or pool")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(subnet = %s, error = %e, "cannot check iptables' FORWARD chain; will retry");
                    return;
                }
            }
        }
        self.forward = subnets.to_vec();
    }
}
