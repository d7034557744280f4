//! The routes' manager: Weft's routes in the main table, brought to the host plan's.
//!
//! Two ways, one state: with the kernel's routes read back and diffed (every reconcile
//! but one), or, for learned BGP routes streaming in, as the difference from the last
//! plan the kernel took in full, without reading 10,000 routes back before each burst;
//! anything the kernel refuses there falls back to the full read and diff at once.

use std::collections::BTreeSet;
use std::time::Instant;

use ipnet::IpNet;
use weft_kernel::{ApplyReport, Dataplane, KernelError};
use weft_plan::route::plan;
use weft_plan::Route;

use super::reconcile::log_applied;
use super::Why;

#[derive(Debug, Default)]
pub(super) struct RouteManager {
    /// The last route plan, if the kernel took all of it: the base for applying
    /// learned routes as a difference.
    in_kernel: Option<Vec<Route>>,
    /// The BGP speaker's initial exchange is not over: keep the kernel's routes the
    /// plan does not name (set with the learned routes the plan is made from).
    pub(super) hold_learned: bool,
}

impl RouteManager {
    /// Whether the last plan is a base for a delta (the kernel took all of it).
    #[cfg(test)]
    pub(super) fn has_base(&self) -> bool {
        self.in_kernel.is_some()
    }

    /// Applies `routes` (see the module's documentation). With `keep_others` (the BGP
    /// speaker's initial exchange after a start is not over), the routes the kernel
    /// holds that the plan does not name are kept: after a restart the learned routes
    /// are not known again yet, and withdrawing them would cut traffic the peers' graceful
    /// restart is keeping alive.
    pub(super) async fn apply(
        &mut self,
        dp: &dyn Dataplane,
        why: Why,
        routes: &[Route],
        keep_others: bool,
    ) -> Result<ApplyReport, KernelError> {
        if keep_others {
            return self.apply_keeping_others(dp, routes).await;
        }
        let base = self.in_kernel.take();
        let report = match (why, base) {
            (Why::Learned, Some(base)) => {
                let delta = dp.apply_route_delta(routes, &base).await?;
                if delta.applied.failed.is_empty() {
                    delta
                } else {
                    log_applied("route", why, &delta.applied, None);
                    dp.apply_routes(routes).await?
                }
            }
            _ => dp.apply_routes(routes).await?,
        };
        if report.applied.failed.is_empty() {
            self.in_kernel = Some(routes.to_vec());
        }
        Ok(report)
    }

    /// `routes` plus every route the kernel holds for a destination they do not name,
    /// from one read of the kernel.
    async fn apply_keeping_others(
        &mut self,
        dp: &dyn Dataplane,
        routes: &[Route],
    ) -> Result<ApplyReport, KernelError> {
        let start = Instant::now();
        let kernel = dp.weft_routes().await?;
        let planned: BTreeSet<IpNet> = routes.iter().map(|r| r.dst).collect();
        let mut wanted = routes.to_vec();
        wanted.extend(kernel.iter().filter(|r| !planned.contains(&r.dst)).cloned());
        let applied = dp.apply_route_changes(plan(&wanted, &kernel)).await?;
        self.in_kernel = applied.failed.is_empty().then_some(wanted);
        Ok(ApplyReport {
            applied,
            elapsed: start.elapsed(),
        })
    }
}
