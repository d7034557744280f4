//! The overlay entries' manager: permanent neighbour and FDB entries on the cluster's
//! overlay device, and the named overlay networks' segments (bridge, VXLAN device and
//! their entries), each diffed against the host plan; a segment no longer planned is
//! removed once it has stayed unplanned for a grace period.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};
use weft_kernel::Dataplane;
use weft_plan::segment::segment_vni;
use weft_plan::SegmentPlan;

use super::host::count;
use super::reconcile::log_applied;
use super::Why;
use crate::health::Metrics;

/// How long a segment stays after its last local endpoint is gone.
pub(super) const SEGMENT_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(super) struct OverlayManager {
    /// Segment links found unplanned, since when (removed after the grace period).
    unplanned: BTreeMap<String, Instant>,
}

impl OverlayManager {
    /// Makes every unplanned segment look `by` older (tests of the grace period).
    #[cfg(test)]
    pub(super) fn age_unplanned(&mut self, by: Duration) {
        for since in self.unplanned.values_mut() {
            *since -= by;
        }
    }

    /// The neighbour and FDB entries on the overlay device `device`; whether any
    /// changed.
    pub(super) async fn entries(
        &mut self,
        dp: &dyn Dataplane,
        metrics: &Metrics,
        why: Why,
        device: Option<u32>,
        (neighbours, fdb): (&[weft_plan::Neighbour], &[weft_plan::FdbEntry]),
    ) -> bool {
        let Some(index) = device else {
            return false;
        };
        let mut changed = false;
        match dp.apply_neighbours(index, neighbours).await {
            Ok(a) => {
                changed |= count(metrics, &a);
                log_applied("neighbour", why, &a, None)
            }
            Err(e) => error!(error = %e, "cannot read or change neighbours; will retry"),
        }
        match dp.apply_fdb(index, fdb).await {
            Ok(a) => {
                changed |= count(metrics, &a);
                log_applied("fdb entry", why, &a, None)
            }
            Err(e) => error!(error = %e, "cannot read or change FDB entries; will retry"),
        }
        changed
    }

    /// Applies the named overlay networks' segments (links and entries) and removes
    /// those no longer planned; whether anything changed.
    pub(super) async fn segments(
        &mut self,
        dp: &dyn Dataplane,
        metrics: &Metrics,
        why: Why,
        segments: &[SegmentPlan],
        any_named: bool,
    ) -> bool {
        let mut changed = false;
        let mut keep = BTreeSet::new();
        for seg in segments {
            keep.insert(seg.spec.vni);
            let vxlan = match dp.ensure_segment(&seg.spec).await {
                Ok((_, vxlan, outcome)) => {
                    if outcome != weft_plan::LinkOutcome::Unchanged {
                        info!(network = %seg.spec.network, vni = seg.spec.vni, %outcome, "named network segment");
                        changed = true;
                    }
                    vxlan
                }
                Err(e) => {
                    error!(network = %seg.spec.network, error = %e, "cannot set up the network's segment; will retry");
                    continue;
                }
            };
            match dp.apply_neighbours(vxlan, &seg.neighbours).await {
                Ok(a) => {
                    changed |= count(metrics, &a);
                    log_applied("segment neighbour", why, &a, None);
                }
                Err(e) => error!(error = %e, "cannot read or change a segment's neighbours"),
            }
            match dp.apply_fdb(vxlan, &seg.fdb).await {
                Ok(a) => {
                    changed |= count(metrics, &a);
                    log_applied("segment fdb entry", why, &a, None);
                }
                Err(e) => error!(error = %e, "cannot read or change a segment's FDB entries"),
            }
        }
        // Segments of networks with no endpoint here any more (or deleted), once they
        // have stayed unplanned for a while: a container joining as the store's news of
        // its address is still on its way must not lose the bridge it was just put on.
        // Only a host that has or had a named network can have a segment to remove:
        // no link dump on every reconcile of a host without any (the resync still looks).
        let look =
            any_named || !self.unplanned.is_empty() || matches!(why, Why::Start | Why::Resync);
        if !look {
            return changed;
        }
        if let Ok(links) = dp.links().await {
            let unplanned: Vec<_> = links
                .into_iter()
                .filter(|l| segment_vni(&l.name).is_some_and(|v| !keep.contains(&v)))
                .collect();
            self.unplanned
                .retain(|name, _| unplanned.iter().any(|l| &l.name == name));
            for l in unplanned {
                let since = *self
                    .unplanned
                    .entry(l.name.clone())
                    .or_insert_with(Instant::now);
                if since.elapsed() < SEGMENT_GRACE {
                    continue;
                }
                match dp.del_link(l.index).await {
                    Ok(()) => {
                        info!(dev = %l.name, "removed a segment no endpoint here uses");
                        changed = true;
                    }
                    Err(e) => warn!(dev = %l.name, error = %e, "cannot remove an unused segment"),
                }
            }
        }
        changed
    }
}
