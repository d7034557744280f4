//! The network config, stored at `<prefix>/config` in flannel's JSON format.
//!
//! A flannel config works unchanged: the same keys, the same defaults (`SubnetLen` 24, or
//! the network's prefix + 2 for networks smaller than /22; `SubnetMin`/`SubnetMax` the
//! second and last subnets; backend `vxlan`). Validation collects every problem instead of
//! stopping at the first, so an operator fixes a config in one go.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend_options::{self, BackendOptions};
pub use crate::config_v6::Ipv6Config;
use crate::config_v6::RawV6;

/// The data planes Weft knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackendKind {
    #[serde(rename = "host-gw")]
    HostGw,
    #[serde(rename = "vxlan")]
    Vxlan,
    #[serde(rename = "udp")]
    Udp,
    #[serde(rename = "ipip")]
    Ipip,
    #[serde(rename = "bgp")]
    Bgp,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] = [
        BackendKind::HostGw,
        BackendKind::Vxlan,
        BackendKind::Udp,
        BackendKind::Ipip,
        BackendKind::Bgp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::HostGw => "host-gw",
            BackendKind::Vxlan => "vxlan",
            BackendKind::Udp => "udp",
            BackendKind::Ipip => "ipip",
            BackendKind::Bgp => "bgp",
        }
    }

    /// Whether the backend routes a dual-stack network's IPv6 subnets. udp's and
    /// ipip's tunnels (user space and kernel alike) carry IPv4 packets only, and bgp
    /// announces IPv4 prefixes only so far: a dual-stack config on them is refused
    /// rather than giving containers IPv6 addresses no peer can reach.
    pub fn carries_ipv6(self) -> bool {
        matches!(self, BackendKind::HostGw | BackendKind::Vxlan)
    }

    /// Bytes of encapsulation each packet carries, subtracted from the external MTU.
    pub fn mtu_overhead(self) -> u32 {
        match self {
            BackendKind::HostGw | BackendKind::Bgp => 0,
            BackendKind::Vxlan => 50,
            BackendKind::Udp => 28,
            BackendKind::Ipip => 20,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend type Weft does not know.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown backend type {0:?} (known: host-gw, vxlan, udp, ipip, bgp)")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for BackendKind {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, UnknownBackend> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownBackend(s.to_owned()))
    }
}

/// The config exactly as stored: flannel's field names, everything optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<String>,
    #[serde(
        rename = "IPv6Network",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    ipv6_network: Option<String>,
    #[serde(
        rename = "EnableIPv4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    enable_ipv4: Option<bool>,
    #[serde(
        rename = "EnableIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    enable_ipv6: Option<bool>,
    #[serde(
        rename = "IPv6SubnetLen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    ipv6_subnet_len: Option<u8>,
    #[serde(
        rename = "IPv6SubnetMin",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    ipv6_subnet_min: Option<String>,
    #[serde(
        rename = "IPv6SubnetMax",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    ipv6_subnet_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet_len: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet_min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<serde_json::Map<String, serde_json::Value>>,
    /// Weft's own: `"subnets"` (flannel's per-node subnets, the default) or `"blocks"`.
    #[serde(rename = "IPAM", default, skip_serializing_if = "Option::is_none")]
    ipam: Option<String>,
    /// Weft's own, with `"IPAM": "blocks"`: never borrow from another node's block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strict_affinity: Option<bool>,
}

/// Where containers' addresses come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpamModel {
    /// flannel's: each node hands out its own leased subnet (the CNI plugin's files).
    #[default]
    Subnets,
    /// Calico's: blocks of the pools (`weft_alloc::blocks`), claimed on demand through
    /// the node's agent; containers are attached routed, a /32 each.
    Blocks {
        /// Never borrow an address from another node's block.
        strict_affinity: bool,
    },
}

impl IpamModel {
    pub fn name(self) -> &'static str {
        match self {
            IpamModel::Subnets => "subnets",
            IpamModel::Blocks { .. } => "blocks",
        }
    }
}

/// A validated network config with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub network: Ipv4Net,
    pub subnet_len: u8,
    pub subnet_min: Ipv4Addr,
    pub subnet_max: Ipv4Addr,
    pub backend: BackendKind,
    /// The backend's options, typed (`VNI`, `Port`, `ASN`, ...): what backends read.
    pub options: BackendOptions,
    /// The whole `Backend` object as stored, kept so that writing the config back
    /// loses no key (flannel's or another tool's); never read for an option.
    pub backend_options: serde_json::Map<String, serde_json::Value>,
    /// Where containers' addresses come from (`IPAM`, `StrictAffinity`).
    pub ipam: IpamModel,
    /// The IPv6 side of a dual-stack network (`EnableIPv6`), `None` for IPv4 only.
    pub ipv6: Option<Ipv6Config>,
}

/// Why a config was refused.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("network config is not valid JSON: {0}")]
    Json(String),
    #[error("network config is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

fn parse_v4(field: &str, s: &str, problems: &mut Vec<String>) -> Option<Ipv4Addr> {
    match s.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            problems.push(format!("{field} {s:?} is not an IPv4 address"));
            None
        }
    }
}

impl NetworkConfig {
    /// Parses and validates flannel-format JSON.
    pub fn parse(json: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            serde_json::from_slice(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        Self::validate(raw)
    }

    /// A config for `network` with `backend` and flannel's defaults for the rest.
    pub fn new(network: Ipv4Net, backend: BackendKind) -> Result<Self, ConfigError> {
        let mut b = serde_json::Map::new();
        b.insert("Type".into(), backend.name().into());
        Self::validate(RawConfig {
            network: Some(network.to_string()),
            backend: Some(b),
            ..Default::default()
        })
    }

    /// Every check of a stored config, each problem collected (see the module's
    /// documentation); the steps are the functions below.
    fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        if raw.enable_ipv4 == Some(false) {
            problems.push(
                "EnableIPv4 false (an IPv6-only network) is not supported yet: give an IPv4 Network beside the IPv6Network".into(),
            );
        }
        // flannel reads the IPv6 fields only with EnableIPv6; they are checked whenever
        // they are there, so a typo shows before the day IPv6 is switched on.
        let wants_v6 = raw.enable_ipv6 == Some(true);
        let ipv6 = (wants_v6 || raw.ipv6_network.is_some())
            .then(|| {
                Ipv6Config::validate(
                    RawV6 {
                        network: raw.ipv6_network.as_deref(),
                        subnet_len: raw.ipv6_subnet_len,
                        subnet_min: raw.ipv6_subnet_min.as_deref(),
                        subnet_max: raw.ipv6_subnet_max.as_deref(),
                    },
                    &mut problems,
                )
            })
            .flatten()
            .filter(|_| wants_v6);
        let network = network(raw.network.as_deref(), &mut problems);
        let (backend, options, backend_options) = backend(raw.backend, &mut problems);
        let min = raw
            .subnet_min
            .as_deref()
            .and_then(|s| parse_v4("SubnetMin", s, &mut problems));
        let max = raw
            .subnet_max
            .as_deref()
            .and_then(|s| parse_v4("SubnetMax", s, &mut problems));

        let Some(network) = network else {
            return Err(ConfigError::Invalid(problems));
        };
        let subnet_len = subnet_len(network, raw.subnet_len, &mut problems);
        let (subnet_min, subnet_max) = bounds(network, subnet_len, min, max, &mut problems);
        let ipam = ipam(raw.ipam.as_deref(), raw.strict_affinity, &mut problems);
        if let (Some(_), Some(kind)) = (&ipv6, backend) {
            if !kind.carries_ipv6() {
                problems.push(format!(
                    "EnableIPv6: backend {kind} carries IPv4 only so far; dual stack runs on host-gw and vxlan"
                ));
            }
        }
        if let Some(v6) = &ipv6 {
            // A container's IPv6 address mirrors its IPv4 one (same offset in the node's
            // IPv6 subnet), so the IPv6 subnet must hold at least as many addresses.
            if 128 - u32::from(v6.subnet_len) < 32 - u32::from(subnet_len) {
                problems.push(format!(
                    "IPv6SubnetLen /{} holds fewer addresses than SubnetLen /{subnet_len}: each container's IPv6 address mirrors its IPv4 one, so it can be at most /{}",
                    v6.subnet_len,
                    96 + subnet_len
                ));
            }
        }
        match (problems.is_empty(), backend, options) {
            (true, Some(backend), Some(options)) => Ok(NetworkConfig {
                options,
                ipam,
                network,
                subnet_len,
                subnet_min,
                subnet_max,
                backend,
                backend_options,
                ipv6,
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }

    /// The config as flannel-format JSON, with defaults written out.
    pub fn to_json(&self) -> String {
        let mut backend = self.backend_options.clone();
        backend.insert("Type".into(), self.backend.name().into());
        let raw = RawConfig {
            network: Some(self.network.to_string()),
            subnet_len: Some(self.subnet_len),
            subnet_min: Some(self.subnet_min.to_string()),
            subnet_max: Some(self.subnet_max.to_string()),
            backend: Some(backend),
            ipam: match self.ipam {
                IpamModel::Subnets => None,
                m => Some(m.name().to_owned()),
            },
            strict_affinity: match self.ipam {
                IpamModel::Blocks {
                    strict_affinity: true,
                } => Some(true),
                _ => None,
            },
            enable_ipv6: self.ipv6.as_ref().map(|_| true),
            ipv6_network: self.ipv6.as_ref().map(|v| v.network.to_string()),
            ipv6_subnet_len: self.ipv6.as_ref().map(|v| v.subnet_len),
            ipv6_subnet_min: self.ipv6.as_ref().map(|v| v.subnet_min.to_string()),
            ipv6_subnet_max: self.ipv6.as_ref().map(|v| v.subnet_max.to_string()),
            ..Default::default()
        };
        serde_json::to_string_pretty(&raw).expect("config serializes")
    }

    /// A backend option as stored, as an unsigned number, if present (for tests of
    /// the round trip; backends read [`NetworkConfig::options`]).
    pub fn backend_u64(&self, key: &str) -> Option<u64> {
        self.backend_options.get(key).and_then(|v| v.as_u64())
    }
}

/// `Network`: an IPv4 CIDR with no host bits.
fn network(raw: Option<&str>, problems: &mut Vec<String>) -> Option<Ipv4Net> {
    match raw {
        None => {
            problems.push("Network is missing".into());
            None
        }
        Some(s) => match s.parse::<Ipv4Net>() {
            Ok(n) if n.network() != n.addr() => {
                problems.push(format!(
                    "Network {s} has host bits set (did you mean {}?)",
                    n.trunc()
                ));
                None
            }
            Ok(n) => Some(n),
            Err(_) if s.parse::<ipnet::Ipv6Net>().is_ok() => {
                problems.push(format!(
                    "Network {s:?} is an IPv6 CIDR: it belongs in IPv6Network (with \"EnableIPv6\": true), Network takes one such as 10.244.0.0/16"
                ));
                None
            }
            Err(_) => {
                problems.push(format!(
                    "Network {s:?} is not an IPv4 CIDR such as 10.244.0.0/16"
                ));
                None
            }
        },
    }
}

/// `Backend`: its `Type` (vxlan when absent) and its options, typed; the object as
/// stored is kept whole.
fn backend(
    raw: Option<serde_json::Map<String, serde_json::Value>>,
    problems: &mut Vec<String>,
) -> (
    Option<BackendKind>,
    Option<BackendOptions>,
    serde_json::Map<String, serde_json::Value>,
) {
    let backend_options = raw.unwrap_or_default();
    let backend = match backend_options.get("Type") {
        None => Some(BackendKind::Vxlan),
        Some(serde_json::Value::String(t)) => match t.parse() {
            Ok(k) => Some(k),
            Err(e) => {
                problems.push(format!("Backend.Type: {e}"));
                None
            }
        },
        Some(other) => {
            problems.push(format!("Backend.Type must be a string, not {other}"));
            None
        }
    };
    let options = backend.map(|kind| backend_options::parse(kind, &backend_options, problems));
    (backend, options, backend_options)
}

/// `SubnetLen`: flannel's default (24, or the network's prefix + 2 for networks smaller
/// than /22), at least one subnet and at most /30.
fn subnet_len(network: Ipv4Net, raw: Option<u8>, problems: &mut Vec<String>) -> u8 {
    match raw.filter(|&l| l > 0) {
        Some(l) => {
            if l < network.prefix_len() {
                problems.push(format!(
                    "SubnetLen /{l} is larger than the Network /{}: not even one subnet fits",
                    network.prefix_len()
                ));
            }
            if l > 30 {
                problems.push(format!("SubnetLen /{l} is out of range: at most /30"));
            }
            l
        }
        None if network.prefix_len() > 28 => {
            problems.push(format!(
                "Network {network} is too small: the smallest useful network is a /28"
            ));
            30
        }
        None if network.prefix_len() <= 22 => 24,
        None => network.prefix_len() + 2,
    }
}

/// `SubnetMin` and `SubnetMax`: inside the network, aligned, in order; the second and
/// the last subnet by default.
fn bounds(
    network: Ipv4Net,
    subnet_len: u8,
    min: Option<Ipv4Addr>,
    max: Option<Ipv4Addr>,
    problems: &mut Vec<String>,
) -> (Ipv4Addr, Ipv4Addr) {
    let size = 1u64 << (32 - subnet_len.min(32));
    let net_start = u32::from(network.network()) as u64;
    let net_end = net_start + (1u64 << (32 - network.prefix_len())); // exclusive
    let mask = !((size - 1) as u32);
    let check_bound =
        |name: &str, ip: Option<Ipv4Addr>, default: u64, problems: &mut Vec<String>| match ip {
            None => Ipv4Addr::from(default.min(u32::MAX as u64) as u32),
            Some(ip) => {
                if !network.contains(&ip) {
                    problems.push(format!("{name} {ip} is outside the Network {network}"));
                }
                if u32::from(ip) & mask != u32::from(ip) {
                    problems.push(format!(
                        "{name} {ip} is not aligned to a /{subnet_len} boundary"
                    ));
                }
                ip
            }
        };
    let subnet_min = check_bound("SubnetMin", min, net_start + size, problems);
    let subnet_max = check_bound("SubnetMax", max, net_end.saturating_sub(size), problems);
    if subnet_min > subnet_max {
        problems.push(format!(
            "SubnetMin {subnet_min} is above SubnetMax {subnet_max}"
        ));
    }
    (subnet_min, subnet_max)
}

/// `IPAM` and `StrictAffinity`.
fn ipam(raw: Option<&str>, strict: Option<bool>, problems: &mut Vec<String>) -> IpamModel {
    match (raw, strict) {
        (None | Some("subnets"), None) => IpamModel::Subnets,
        (None | Some("subnets"), Some(_)) => {
            problems.push("StrictAffinity applies only with \"IPAM\": \"blocks\"".into());
            IpamModel::Subnets
        }
        (Some("blocks"), strict) => IpamModel::Blocks {
            strict_affinity: strict.unwrap_or(false),
        },
        (Some(other), _) => {
            problems.push(format!(
                "IPAM must be \"subnets\" or \"blocks\", not {other:?}"
            ));
            IpamModel::Subnets
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetworkConfig, ConfigError> {
        NetworkConfig::parse(s.as_bytes())
    }

    fn problems(s: &str) -> Vec<String> {
        match parse(s) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn bgp_options_are_checked() {
        let bad = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","ASN":0,"RouteReflectors":["x"]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("Backend.ASN") && bad.contains("Backend.RouteReflectors"),
            "{bad}"
        );
        NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","ASN":65001,"RouteReflectors":["192.168.77.1"]}}"#,
        )
        .unwrap();
        let bad = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","RouteReflectorSelector":"route-reflector = 'true'","RouteReflectorClusterID":"x"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("Backend.RouteReflectorSelector: selector")
                && bad.contains("at character 16")
                && bad.contains("Backend.RouteReflectorClusterID"),
            "{bad}"
        );
        NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","RouteReflectorSelector":"route-reflector == 'true'","RouteReflectorClusterID":"244.0.0.1"}}"#,
        )
        .unwrap();
    }

    #[test]
    fn bgp_cross_subnet_takes_vxlan_and_its_options() {
        let p = problems(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","CrossSubnet":"ipip"}}"#,
        );
        assert_eq!(
            p,
            [r#"Backend.CrossSubnet must be "vxlan" or "none", not "ipip""#]
        );
        let p = problems(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","CrossSubnet":"vxlan","VNI":0}}"#,
        );
        assert!(p[0].contains("Backend.VNI"), "{p:?}");
        let c = parse(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","CrossSubnet":"vxlan","VNI":4,"Port":4789}}"#,
        )
        .unwrap();
        assert_eq!(c.backend_u64("VNI"), Some(4));
        parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp","CrossSubnet":"none"}}"#)
            .unwrap();
    }

    #[test]
    fn flannel_defaults() {
        let c = parse(r#"{"Network": "10.244.0.0/16"}"#).unwrap();
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min, "10.244.1.0".parse::<Ipv4Addr>().unwrap());
        assert_eq!(c.subnet_max, "10.244.255.0".parse::<Ipv4Addr>().unwrap());
        assert_eq!(c.backend, BackendKind::Vxlan);
    }

    #[test]
    fn small_network_splits_in_four() {
        let c = parse(r#"{"Network": "10.0.0.0/24"}"#).unwrap();
        assert_eq!(c.subnet_len, 26);
        let p = problems(r#"{"Network": "10.0.0.0/29"}"#);
        assert!(p[0].contains("too small"), "{p:?}");
    }

    #[test]
    fn flannel_example_config_is_accepted() {
        let c = parse(
            r#"{"Network":"10.5.0.0/16","SubnetLen":24,"SubnetMin":"10.5.10.0","SubnetMax":"10.5.99.0",
                "Backend":{"Type":"host-gw","Unknown":1}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                c.backend,
                c.subnet_min.octets()[2],
                c.subnet_max.octets()[2]
            ),
            (BackendKind::HostGw, 10, 99)
        );
        assert_eq!(parse(&c.to_json()).unwrap().ipam, c.ipam, "round trip");
    }

    #[test]
    fn every_problem_is_named() {
        let p = problems(
            r#"{"Network":"10.5.0.0/16","SubnetLen":31,"SubnetMin":"10.6.0.0","SubnetMax":"10.5.0.7","Backend":{"Type":"carrier-pigeon"}}"#,
        );
        let all = p.join("\n");
        for needle in [
            "carrier-pigeon",
            "SubnetLen /31",
            "SubnetMin 10.6.0.0 is outside",
            "SubnetMax 10.5.0.7 is not aligned",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
    }

    #[test]
    fn vxlan_options_are_checked() {
        let c = parse(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":4096,"Port":4789,"DirectRouting":true}}"#).unwrap();
        assert_eq!(
            (c.backend_u64("VNI"), c.backend_u64("Port")),
            (Some(4096), Some(4789))
        );
        let p = problems(
            r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":0,"Port":70000,"DirectRouting":"yes"}}"#,
        );
        let all = p.join("\n");
        assert!(
            all.contains("Backend.VNI")
                && all.contains("Backend.Port")
                && all.contains("DirectRouting"),
            "{all}"
        );
    }

    #[test]
    fn the_ipam_model_is_chosen_and_checked() {
        let c = parse(r#"{"Network":"10.244.0.0/16"}"#).unwrap();
        assert_eq!(c.ipam, IpamModel::Subnets);
        let c =
            parse(r#"{"Network":"10.244.0.0/16","IPAM":"blocks","StrictAffinity":true}"#).unwrap();
        assert_eq!(
            c.ipam,
            IpamModel::Blocks {
                strict_affinity: true
            }
        );
        assert_eq!(parse(&c.to_json()).unwrap().ipam, c.ipam, "round trip");
        assert_eq!(
            problems(r#"{"Network":"10.244.0.0/16","IPAM":"calico"}"#),
            ["IPAM must be \"subnets\" or \"blocks\", not \"calico\""]
        );
        assert_eq!(
            problems(r#"{"Network":"10.244.0.0/16","StrictAffinity":true}"#),
            ["StrictAffinity applies only with \"IPAM\": \"blocks\""]
        );
    }

    #[test]
    fn flannel_dual_stack_config_is_read_and_written() {
        let c = parse(
            r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}"#,
        )
        .unwrap();
        let v6 = c.ipv6.as_ref().unwrap();
        assert_eq!(
            (v6.network.to_string(), v6.subnet_len),
            ("fd00:10:244::/56".to_string(), 64)
        );
        assert_eq!(parse(&c.to_json()).unwrap(), c, "round trip");
        // flannel reads IPv6Network only with EnableIPv6; a bad one is still named.
        let c = parse(r#"{"Network":"10.244.0.0/16","IPv6Network":"fd00::/56"}"#).unwrap();
        assert_eq!(c.ipv6, None);
        let p = problems(r#"{"Network":"10.244.0.0/16","IPv6Network":"fd00::/129"}"#);
        assert!(p[0].contains("IPv6Network"), "{p:?}");
        assert_eq!(
            problems(r#"{"Network":"10.244.0.0/16","EnableIPv6":true}"#),
            ["IPv6Network is missing (EnableIPv6 is true)"]
        );
    }

    #[test]
    fn dual_stack_only_on_backends_that_carry_ipv6() {
        for backend in ["udp", "ipip", "bgp"] {
            let p = problems(&format!(
                r#"{{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{{"Type":"{backend}"}}}}"#
            ));
            assert_eq!(
                p,
                [format!("EnableIPv6: backend {backend} carries IPv4 only so far; dual stack runs on host-gw and vxlan")]
            );
        }
    }

    #[test]
    fn mixed_families_are_refused_with_the_field_named() {
        let p =
            problems(r#"{"Network":"fd00::/48","EnableIPv6":true,"IPv6Network":"10.244.0.0/16"}"#);
        assert!(
            p.iter()
                .any(|m| m.starts_with("Network \"fd00::/48\" is an IPv6 CIDR")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("IPv6Network \"10.244.0.0/16\" is an IPv4 CIDR")),
            "{p:?}"
        );
        let p = problems(
            r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/64","IPv6SubnetLen":56}"#,
        );
        assert!(p[0].contains("IPv6SubnetLen /56"), "{p:?}");
        let p = problems(
            r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":121}"#,
        );
        assert!(
            p[0].contains("IPv6SubnetLen /121 holds fewer addresses than SubnetLen /24")
                && p[0].contains("at most /120"),
            "{p:?}"
        );
        let p = problems(
            r#"{"Network":"10.244.0.0/16","EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56"}"#,
        );
        assert!(p[0].contains("IPv6-only"), "{p:?}");
    }

    #[test]
    fn bad_json_and_missing_network() {
        assert!(matches!(parse("{nope"), Err(ConfigError::Json(_))));
        assert_eq!(problems("{}"), ["Network is missing"]);
        assert!(problems(r#"{"Network":"10.5.1.0/16"}"#)[0].contains("host bits"));
        assert!(problems(r#"{"Network":"10.0.0.0/16","SubnetLen":8}"#)[0]
            .contains("not even one subnet"));
        assert!(problems(
            r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.3.0"}"#
        )[0]
        .contains("above SubnetMax"));
    }
}
