//! Each backend's options, typed: read once from the config's `Backend` object (flannel's
//! names) when the config is validated, so no backend reads JSON by key and no bad
//! value is dropped silently: it is refused with the config, named.
//!
//! vxlan `VNI` (1) and `Port` (8472); udp `Port` (8285); vxlan, udp and ipip `MTU` and
//! `DirectRouting` (cross-subnet mode); bgp `ASN` (64512), `RouteReflectors`,
//! `RouteReflectorSelector` (node labels), `RouteReflectorClusterID` and
//! `CrossSubnet` (`"vxlan"`: peers off this node's L2 segment are reached through VXLAN,
//! which then takes vxlan's `VNI`, `Port` and `MTU`).

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use crate::config::BackendKind;

/// VXLAN's identifier when `VNI` is not given (flannel's).
pub const DEFAULT_VNI: u32 = 1;
/// VXLAN's UDP port when `Port` is not given (flannel's and Linux's).
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// The udp backend's port when `Port` is not given (flannel's).
pub const DEFAULT_UDP_PORT: u16 = 8285;
/// The cluster's AS number when `ASN` is not given (Calico's default).
pub const DEFAULT_ASN: u32 = 64512;

/// The backend and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendOptions {
    HostGw,
    Vxlan(VxlanOptions),
    Udp(UdpOptions),
    Ipip(IpipOptions),
    Bgp(BgpOptions),
}

/// vxlan's options (and bgp's with `CrossSubnet` `"vxlan"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanOptions {
    pub vni: u32,
    pub port: u16,
    pub mtu: Option<u32>,
    /// Route directly to peers on this node's segment; encapsulate only across it.
    pub direct_routing: bool,
}

/// udp's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    pub port: u16,
    pub mtu: Option<u32>,
    pub direct_routing: bool,
}

/// ipip's options (IP-in-IP has no port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpipOptions {
    pub mtu: Option<u32>,
    pub direct_routing: bool,
}

/// bgp's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpOptions {
    pub asn: u32,
    /// Nodes that reflect routes for the others (none, and no selector: a full mesh).
    pub route_reflectors: Vec<Ipv4Addr>,
    /// Nodes whose labels match reflect routes too (Calico's reflectors by label).
    pub route_reflector_selector: Option<crate::selector::Selector>,
    /// The reflectors' shared cluster id (RFC 4456; Calico's `routeReflectorClusterID`);
    /// none: each reflector's router id.
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// VXLAN to peers off this node's segment.
    pub cross_subnet: Option<VxlanOptions>,
}

impl BackendOptions {
    /// `DirectRouting`, for the backends that take it.
    pub fn direct_routing(&self) -> bool {
        match self {
            BackendOptions::Vxlan(v) => v.direct_routing,
            BackendOptions::Udp(u) => u.direct_routing,
            BackendOptions::Ipip(i) => i.direct_routing,
            BackendOptions::HostGw | BackendOptions::Bgp(_) => false,
        }
    }

    /// The VXLAN options in force: vxlan's, or bgp's cross-subnet VXLAN.
    pub fn vxlan(&self) -> Option<&VxlanOptions> {
        match self {
            BackendOptions::Vxlan(v) => Some(v),
            BackendOptions::Bgp(b) => b.cross_subnet.as_ref(),
            _ => None,
        }
    }

    /// `MTU` as configured, for the backends that take it.
    pub fn mtu(&self) -> Option<u32> {
        match self {
            BackendOptions::Vxlan(v) => v.mtu,
            BackendOptions::Udp(u) => u.mtu,
            BackendOptions::Ipip(i) => i.mtu,
            BackendOptions::Bgp(b) => b.cross_subnet.and_then(|v| v.mtu),
            BackendOptions::HostGw => None,
        }
    }
}

/// Reads `kind`'s options from the `Backend` object `o`, adding every bad value to
/// `problems` (the config is then refused whole).
pub fn parse(
    kind: BackendKind,
    o: &Map<String, Value>,
    problems: &mut Vec<String>,
) -> BackendOptions {
    let num = |k: &str, lo: u64, hi: u64, problems: &mut Vec<String>| -> Option<u64> {
        let v = o.get(k)?;
        match v.as_u64() {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                problems.push(format!(
                    "Backend.{k} must be a number from {lo} to {hi}, not {v}"
                ));
                None
            }
        }
    };
    let mtu = |problems: &mut Vec<String>| num("MTU", 576, 65_535, problems).map(|m| m as u32);
    let direct_routing = |problems: &mut Vec<String>| match o.get("DirectRouting") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            problems.push(format!(
                "Backend.DirectRouting must be true or false, not {v}"
            ));
            false
        }
    };
    let vxlan = |problems: &mut Vec<String>| VxlanOptions {
        vni: num("VNI", 1, 16_777_215, problems).map_or(DEFAULT_VNI, |v| v as u32),
        port: num("Port", 1, 65_535, problems).map_or(DEFAULT_VXLAN_PORT, |p| p as u16),
        mtu: mtu(problems),
        direct_routing: direct_routing(problems),
    };
    match kind {
        BackendKind::HostGw => BackendOptions::HostGw,
        BackendKind::Vxlan => BackendOptions::Vxlan(vxlan(problems)),
        BackendKind::Udp => BackendOptions::Udp(UdpOptions {
            port: num("Port", 1, 65_535, problems).map_or(DEFAULT_UDP_PORT, |p| p as u16),
            mtu: mtu(problems),
            direct_routing: direct_routing(problems),
        }),
        BackendKind::Ipip => BackendOptions::Ipip(IpipOptions {
            mtu: mtu(problems),
            direct_routing: direct_routing(problems),
        }),
        BackendKind::Bgp => BackendOptions::Bgp(bgp(o, problems, vxlan)),
    }
}

fn bgp(
    o: &Map<String, Value>,
    problems: &mut Vec<String>,
    vxlan: impl Fn(&mut Vec<String>) -> VxlanOptions,
) -> BgpOptions {
    let asn = match o.get("ASN") {
        None => DEFAULT_ASN,
        Some(v) => match v.as_u64().filter(|a| (1..=u32::MAX as u64).contains(a)) {
            Some(a) => a as u32,
            None => {
                problems.push(format!(
                    "Backend.ASN must be a number from 1 to 4294967295, not {v}"
                ));
                DEFAULT_ASN
            }
        },
    };
    let route_reflectors = match o.get("RouteReflectors") {
        None => Vec::new(),
        Some(v) => {
            let parsed: Option<Vec<Ipv4Addr>> = v
                .as_array()
                .and_then(|a| a.iter().map(|ip| ip.as_str()?.parse().ok()).collect());
            parsed.unwrap_or_else(|| {
                problems.push(format!(
                    "Backend.RouteReflectors must be a list of IPv4 addresses, not {v}"
                ));
                Vec::new()
            })
        }
    };
    let route_reflector_selector = match o.get("RouteReflectorSelector") {
        None => None,
        Some(Value::String(text)) => match crate::selector::Selector::parse(text) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("Backend.RouteReflectorSelector: {e}"));
                None
            }
        },
        Some(v) => {
            problems.push(format!(
                "Backend.RouteReflectorSelector must be a selector string (\"route-reflector == 'true'\"), not {v}"
            ));
            None
        }
    };
    let route_reflector_cluster_id = match o.get("RouteReflectorClusterID") {
        None => None,
        Some(v) => match v.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            Some(id) => Some(id),
            None => {
                problems.push(format!(
                    "Backend.RouteReflectorClusterID must be an IPv4-style id (\"244.0.0.1\"), not {v}"
                ));
                None
            }
        },
    };
    let cross_subnet = match o.get("CrossSubnet") {
        None => None,
        Some(v) if v == "none" => None,
        Some(v) if v == "vxlan" => Some(vxlan(problems)),
        Some(v) => {
            problems.push(format!(
                "Backend.CrossSubnet must be \"vxlan\" or \"none\", not {v}"
            ));
            None
        }
    };
    BgpOptions {
        asn,
        route_reflectors,
        route_reflector_selector,
        route_reflector_cluster_id,
        cross_subnet,
    }
}
