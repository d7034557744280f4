//! The data-plane part of `weftctl diagnose`: the overlay device, and Weft's routes
//! of every origin, neighbour and FDB entries and the named networks' segments against
//! the host plan the agent applies (`weft_backends::host`: the same plan and diff,
//! reported instead); for the bgp backend, whose routes to other nodes are learned
//! rather than planned, its sessions and a learned route for every reachable peer and
//! every other node's block.

use ipnet::IpNet;
use weft_alloc::Lease;
use weft_backends::host::{HostPlan, Origin};
use weft_plan::iface::LinkInfo;
use weft_plan::neigh::{plan_fdb, plan_neighbours};
use weft_plan::{Change, FdbEntry, Neighbour, Route};

use super::facts::{Facts, KernelState, Level, Out, Planned};

/// A route as `ip route` shows it, with devices by name.
fn show_route(r: &Route, links: &[LinkInfo]) -> String {
    r.describe(|index| {
        links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
    })
}

pub(super) fn check(
    out: &mut Out,
    f: &Facts,
    lease: &Lease,
    planned: &Planned,
    kernel: &KernelState,
) {
    let links = &kernel.links;
    if let Some((name, mtu)) = &planned.device {
        match links.iter().find(|l| &l.name == name) {
            None => {
                out.add(
                    Level::Fail,
                    "device",
                    format!("{name} is missing (weftd recreates it while it runs)"),
                );
                return;
            }
            Some(l) if !l.up => out.add(Level::Fail, "device", format!("{name} is down")),
            Some(l) if l.mtu != *mtu => out.add(
                Level::Fail,
                "device",
                format!("{name} has MTU {}, the backend wants {mtu}", l.mtu),
            ),
            Some(_) => out.add(Level::Ok, "device", format!("{name} is up, MTU {mtu}")),
        }
    }
    let Some(plan) = &planned.plan else {
        return;
    };
    check_routes(out, plan, planned.learns, kernel);
    if planned.learns {
        check_learned_routes(out, f, lease, planned, kernel);
    }
    check_device_entries(
        out,
        ("neighbour", "fdb"),
        (&plan.neighbours, &plan.fdb),
        (&kernel.neighbours, &kernel.fdb),
    );
    check_device_entries(
        out,
        ("neighbour6", "fdb6"),
        (&plan.neighbours6, &plan.fdb6),
        (&kernel.neighbours6, &kernel.fdb6),
    );
    check_segments(out, plan, kernel);
}

/// Every planned route of every origin (a node's subnet, a block, a borrowed address,
/// a routed container) against Weft's routes in the kernel. With bgp, routes the plan
/// does not name are the sessions' (judged in [`check_learned_routes`]), not stale.
fn check_routes(out: &mut Out, plan: &HostPlan, learns: bool, kernel: &KernelState) {
    let links = &kernel.links;
    // Where a route comes from, for all but the backend's (which every node has).
    let from = |r: &Route| match plan.origin(&r.dst) {
        Some(Origin::Backend) | None => String::new(),
        Some(o) => format!(" ({o})"),
    };
    let mut drift = 0;
    for change in weft_plan::route::plan(&plan.routes, &kernel.routes) {
        match change {
            Change::Add(r) => out.add(
                Level::Fail,
                "route",
                format!("missing: {}{}", show_route(&r, links), from(&r)),
            ),
            Change::Replace(r) => {
                let have = kernel.routes.iter().find(|k| k.dst == r.dst);
                out.add(
                    Level::Fail,
                    "route",
                    format!(
                        "wrong: the kernel has {}, the plan says {}{}",
                        have.map_or_else(String::new, |h| show_route(h, links)),
                        show_route(&r, links),
                        from(&r)
                    ),
                )
            }
            Change::Remove(_) if learns => continue,
            Change::Remove(r) => out.add(
                Level::Warn,
                "route",
                format!("stale: {} (no lease calls for it)", show_route(&r, links)),
            ),
        }
        drift += 1;
    }
    if drift == 0 && !learns {
        out.add(
            Level::Ok,
            "routes",
            format!("{} as planned", plan.routes.len()),
        );
    }
}

/// Each named overlay network with an endpoint here: its VXLAN device, and the
/// neighbour and FDB entries of the other hosts' endpoints on it.
fn check_segments(out: &mut Out, plan: &HostPlan, kernel: &KernelState) {
    for (seg, have) in plan.segments.iter().zip(&kernel.segments) {
        let net = &seg.spec.network;
        let Some((neighbours, fdb)) = have else {
            out.add(
                Level::Fail,
                "segment",
                format!(
                    "{} of network {net} is missing (weftd recreates it while it runs)",
                    seg.spec.vxlan()
                ),
            );
            continue;
        };
        let changes = plan_neighbours(&seg.neighbours, neighbours);
        report_entries(out, "segment", seg.neighbours.len(), changes, |n| {
            format!("{net}: neighbour {} lladdr {}", n.ip, n.mac)
        });
        let changes = plan_fdb(&seg.fdb, fdb);
        report_entries(out, "segment", seg.fdb.len(), changes, |e| {
            format!("{net}: fdb {} dst {}", e.mac, e.dst)
        });
    }
}

/// The bgp backend: its routes are learned from its sessions, not planned, so each
/// session must be up and every reachable peer's subnet must have a route of Weft's.
fn check_learned_routes(
    out: &mut Out,
    f: &Facts,
    lease: &Lease,
    planned: &Planned,
    kernel: &KernelState,
) {
    match &f.bgp_status {
        None => {}
        Some(Err(e)) => out.add(Level::Fail, "bgp", e.clone()),
        Some(Ok(text)) => match serde_json::from_str::<serde_json::Value>(text) {
            Err(e) => out.add(Level::Fail, "bgp", format!("unreadable status file: {e}")),
            Ok(v) => {
                for p in v["peers"].as_array().into_iter().flatten() {
                    let s = |k: &str| p[k].as_str().unwrap_or("?").to_string();
                    let who = format!("{} ({})", s("address"), s("type"));
                    if s("state") == "Established" {
                        out.add(
                            Level::Ok,
                            "bgp",
                            format!(
                                "{who} Established, {} received, {} advertised",
                                p["received"], p["advertised"]
                            ),
                        );
                    } else {
                        let info = s("info");
                        let why = match info.as_str() {
                            "" | "?" => String::new(),
                            i => format!(": {i}"),
                        };
                        out.add(Level::Fail, "bgp", format!("{who} {}{why}", s("state")));
                    }
                }
            }
        },
    }
    let mut missing = 0;
    for peer in f.leases.iter().filter(|l| l.subnet != lease.subnet) {
        let excused = f
            .unreachable
            .iter()
            .any(|u| u.subnet == IpNet::V4(peer.subnet));
        if !excused
            && !kernel
                .routes
                .iter()
                .any(|r| r.dst == IpNet::V4(peer.subnet))
        {
            missing += 1;
            out.add(
                Level::Fail,
                "route",
                format!(
                    "no route learned for {} (node {})",
                    peer.subnet, peer.attrs.public_ip
                ),
            );
        }
    }
    // Other nodes' blocks are announced by their holders and learned here alike.
    for (block, node) in &planned.others_blocks {
        let excused = f.unreachable.iter().any(|u| u.subnet == IpNet::V4(*block));
        if !excused && !kernel.routes.iter().any(|r| r.dst == IpNet::V4(*block)) {
            missing += 1;
            out.add(
                Level::Fail,
                "route",
                format!("no route learned for block {block} (node {node})"),
            );
        }
    }
    if missing == 0 {
        out.add(
            Level::Ok,
            "routes",
            format!(
                "every peer's subnet has a learned route ({} of Weft's routes in the kernel)",
                kernel.routes.len()
            ),
        );
    }
}

/// An overlay device's neighbour and FDB entries against the plan's, where the device
/// was read (the cluster's device, or the IPv6 underlay's: `what` names which).
fn check_device_entries(
    out: &mut Out,
    what: (&'static str, &'static str),
    (neighbours, fdb): (&[Neighbour], &[FdbEntry]),
    have: (&Option<Vec<Neighbour>>, &Option<Vec<FdbEntry>>),
) {
    if let Some(have) = have.0 {
        let changes = plan_neighbours(neighbours, have);
        report_entries(out, what.0, neighbours.len(), changes, |n| {
            format!("{} lladdr {}", n.ip, n.mac)
        });
    }
    if let Some(have) = have.1 {
        let changes = plan_fdb(fdb, have);
        report_entries(out, what.1, fdb.len(), changes, |e| {
            format!("{} dst {}", e.mac, e.dst)
        });
    }
}

fn report_entries<T>(
    out: &mut Out,
    what: &'static str,
    planned: usize,
    changes: Vec<Change<T>>,
    show: impl Fn(&T) -> String,
) {
    if changes.is_empty() {
        if planned > 0 {
            out.add(
                Level::Ok,
                what,
                format!(
                    "{planned} {} as planned",
                    if planned == 1 { "entry" } else { "entries" }
                ),
            );
        }
        return;
    }
    for change in changes {
        let (level, detail) = match &change {
            Change::Add(t) => (Level::Fail, format!("missing: {}", show(t))),
            Change::Replace(t) => (Level::Fail, format!("wrong, should be: {}", show(t))),
            Change::Remove(t) => (Level::Warn, format!("stale: {}", show(t))),
        };
        out.add(level, what, detail);
    }
}
