//! What `weftctl diagnose` gathers on a node and what it finds: plain values shared by
//! the node-level checks ([`super::checks`]) and the data plane's (`plane`).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use weft_alloc::registry::{Skipped, Unreachable};
use weft_alloc::{Lease, NetworkConfig};
use weft_backends::host::HostPlan;
use weft_plan::iface::LinkInfo;
use weft_plan::{FdbEntry, Neighbour, Route};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Not checked (and why, in the detail).
    Skip,
    Warn,
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok",
            Level::Skip => "skip",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub level: Level,
    /// What was checked: `lease`, `route`, `device`, ...
    pub what: &'static str,
    pub detail: String,
}

/// What this node should have, from the host planner the agent plans with.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The overlay device the backend needs: name and MTU.
    pub device: Option<(String, u32)>,
    /// The MTU containers should use (what the subnet file must say).
    pub mtu: u32,
    /// The bgp backend: routes to other nodes are learned, not planned.
    pub learns: bool,
    /// `None` when the overlay device is missing (no plan can be right without it).
    pub plan: Option<HostPlan>,
    /// Other nodes' blocks (with bgp, each must have a learned route).
    pub others_blocks: Vec<(Ipv4Net, Ipv4Addr)>,
}

/// Weft's objects in the kernel. Neighbours and FDB entries are read only on the overlay
/// device, so they are `None` without one.
#[derive(Debug, Clone)]
pub struct KernelState {
    pub routes: Vec<Route>,
    pub neighbours: Option<Vec<Neighbour>>,
    pub fdb: Option<Vec<FdbEntry>>,
    /// The same on the IPv6 underlay's device (dual-stack vxlan), where it exists.
    pub neighbours6: Option<Vec<Neighbour>>,
    pub fdb6: Option<Vec<FdbEntry>>,
    /// For each planned segment, in order: its VXLAN device's neighbour and FDB
    /// entries (`None`: the device is missing).
    pub segments: Vec<Option<(Vec<Neighbour>, Vec<FdbEntry>)>>,
    pub links: Vec<LinkInfo>,
}

/// Why a fact could not be had (the store or the kernel refused, a file is missing,
/// the agent did not answer): diagnose reports it as the finding's detail and never
/// branches on the cause, so what is kept is the message, as its source put it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unseen(pub String);

impl Unseen {
    /// The reason `e` gives.
    pub fn of(e: impl fmt::Display) -> Unseen {
        Unseen(e.to_string())
    }
}

impl From<&str> for Unseen {
    fn from(s: &str) -> Unseen {
        Unseen(s.to_owned())
    }
}

impl From<Unseen> for String {
    fn from(u: Unseen) -> String {
        u.0
    }
}

/// A fact, or why it could not be had.
pub type Seen<T> = Result<T, Unseen>;

/// Everything gathered on the node.
#[derive(Debug, Clone)]
pub struct Facts {
    pub config: Seen<NetworkConfig>,
    /// The addresses that may name this node in a lease (`--public-ip`, else its own).
    pub public_ips: Vec<Ipv4Addr>,
    pub leases: Vec<Lease>,
    pub skipped: Vec<Skipped>,
    /// Of this node's lease; `None` for a reservation.
    pub expires_in: Option<Duration>,
    /// What this node's agent last published about peers it cannot reach.
    pub unreachable: Vec<Unreachable>,
    /// `/healthz`: `Ok(body)` for 200, `Err(why)` otherwise; `None` when not asked.
    pub health: Option<Seen<String>>,
    pub forwarding: Seen<bool>,
    /// `net.ipv6.conf.all.forwarding`, judged where the network is dual stack.
    pub forwarding6: Seen<bool>,
    pub firewall: Seen<bool>,
    pub subnet_file: (PathBuf, Seen<String>),
    /// The bgp backend's status file (`--bgp-status-file`); `None` for other backends.
    pub bgp_status: Option<Seen<String>>,
    /// The plan and what the kernel has; `Err` with the reason when either could not be
    /// had.
    pub data_plane: Seen<(Planned, KernelState)>,
}

/// This node's lease: the one whose public IP is one of `ips`.
pub fn own_lease<'a>(leases: &'a [Lease], ips: &[Ipv4Addr]) -> Option<&'a Lease> {
    leases.iter().find(|l| ips.contains(&l.attrs.public_ip))
}

pub(super) struct Out(pub(super) Vec<Finding>);

impl Out {
    pub(super) fn add(&mut self, level: Level, what: &'static str, detail: impl Into<String>) {
        self.0.push(Finding {
            level,
            what,
            detail: detail.into(),
        });
    }
}
