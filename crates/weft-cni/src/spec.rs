//! The CNI specification's types: what a runtime sends, what the plugin answers.
//!
//! Weft speaks spec 1.1.0 and answers requests for 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0
//! with results in the version asked for (0.3.x/0.4.0 results carry `"version": "4"` on
//! each IP; 1.x results do not). CHECK exists from 0.4.0, STATUS and GC from 1.1.0.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// The spec's well-known error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: the plugin cannot add containers now.
    NotAvailable = 50,
    /// Weft's own (100+ is the plugin's range): no free address, address taken or outside.
    AddressUnavailable = 100,
    /// Weft's own: the kernel refused a change.
    Kernel = 101,
}

/// A CNI error: printed as JSON on stdout, with a non-zero exit.
#[derive(Debug, Clone, PartialEq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn to_json(&self, version: &str) -> Value {
        json!({ "cniVersion": version, "code": self.code as u32, "msg": self.msg, "details": self.details })
    }
}

impl std::error::Error for CniError {}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code as u32)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

pub type CniResult<T> = Result<T, CniError>;

/// How the container is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// flannel's style: a host bridge holding the gateway, a veth per container.
    #[default]
    Bridge,
    /// Calico's style: no bridge, a /32 host route and proxy ARP per container.
    Routed,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    /// The `ips` capability: fixed addresses the runtime asks for (CIDR or plain).
    #[serde(default)]
    pub ips: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
}

/// The network configuration on stdin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub mode: Mode,
    /// The bridge's name in bridge mode.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Where the node's lease is described (what `weftd --subnet-file` writes).
    #[serde(rename = "subnetFile", default = "default_subnet_file")]
    pub subnet_file: PathBuf,
    /// Where allocations are kept.
    #[serde(rename = "dataDir", default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The node agent's socket, asked (routed mode) for an address outside the node's
    /// subnet: what `weftd --api-socket` serves.
    #[serde(rename = "agentSocket", default = "default_agent_socket")]
    pub agent_socket: PathBuf,
    #[serde(rename = "hairpinMode", default)]
    pub hairpin_mode: bool,
    /// Overrides the MTU from the subnet file.
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub capabilities: Option<Value>,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    /// GC: the attachments the runtime still knows; everything else is freed.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    #[serde(rename = "cni.dev/attachments", default)]
    pub attachments: Option<Vec<Attachment>>,
    #[serde(rename = "disableCheck", default)]
    pub disable_check: bool,
    #[serde(rename = "disableGC", default)]
    pub disable_gc: bool,
}

fn default_agent_socket() -> PathBuf {
    "/run/weft/weftd.sock".into()
}

fn default_bridge() -> String {
    "weftbr0".into()
}

fn default_subnet_file() -> PathBuf {
    "/run/flannel/subnet.env".into()
}

fn default_data_dir() -> PathBuf {
    "/var/lib/cni/weft".into()
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> CniResult<NetConf> {
        let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
            let code = if e.is_data() && e.to_string().contains("unknown field") {
                Code::UnsupportedField
            } else {
                Code::Decode
            };
            CniError::new(code, "cannot read the network configuration").with_details(e.to_string())
        })?;
        if !SUPPORTED.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!("CNI version {} is not supported", conf.cni_version),
            )
            .with_details(format!("supported: {}", SUPPORTED.join(", "))));
        }
        if conf.kind != "weft" {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("type is {:?}, this plugin is \"weft\"", conf.kind),
            ));
        }
        crate::validate::network_name(&conf.name)?;
        if conf.bridge.is_empty() || conf.bridge.len() > 15 {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("bridge name {:?} must be 1 to 15 characters", conf.bridge),
            ));
        }
        Ok(conf)
    }

    /// Whether `version` is at least `min` (both from [`SUPPORTED`]).
    pub fn at_least(&self, min: &str) -> bool {
        let pos = |v: &str| SUPPORTED.iter().position(|s| *s == v).unwrap_or(0);
        pos(&self.cni_version) >= pos(min)
    }

    /// Fixed addresses asked for, from `runtimeConfig.ips`, `args.cni.ips` and `CNI_ARGS IP=`.
    pub fn requested_ips(&self, cni_args: &str) -> CniResult<Vec<Ipv4Addr>> {
        let mut raw: Vec<String> = self.runtime_config.ips.clone();
        if let Some(ips) = self
            .args
            .as_ref()
            .and_then(|a| a.pointer("/cni/ips"))
            .and_then(|v| v.as_array())
        {
            raw.extend(ips.iter().filter_map(|v| v.as_str().map(String::from)));
        }
        for kv in cni_args.split(';') {
            if let Some(v) = kv.strip_prefix("IP=") {
                raw.extend(v.split(',').map(String::from));
            }
        }
        raw.iter()
            .map(|s| {
                let ip = s.split('/').next().unwrap_or_default();
                ip.parse().map_err(|_| {
                    CniError::new(
                        Code::InvalidConfig,
                        format!("requested address {s:?} is not an IPv4 address"),
                    )
                })
            })
            .collect()
    }
}

/// Who a container is, for network policy: its namespace and name as kubelet passes
/// them (`K8S_POD_NAMESPACE`, `K8S_POD_NAME` in `CNI_ARGS`) and labels from the
/// config's `args.cni.labels` (the CNI conventions' `[{"key": …, "value": …}]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl NetConf {
    /// The container's identity, if the runtime gave one (a pod name, or labels); a
    /// container with labels but no pod name is named by its container ID in
    /// `default`. Bad labels are an error naming them.
    pub fn identity(&self, cni_args: &str, container_id: &str) -> CniResult<Option<PodIdentity>> {
        let arg = |key: &str| {
            cni_args
                .split(';')
                .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let mut labels = std::collections::BTreeMap::new();
        if let Some(list) = self.args.as_ref().and_then(|a| a.pointer("/cni/labels")) {
            let items = list.as_array().ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    "args.cni.labels must be a list of {\"key\", \"value\"}",
                )
            })?;
            for item in items {
                let (Some(k), Some(v)) = (
                    item.get("key").and_then(|k| k.as_str()),
                    item.get("value").and_then(|v| v.as_str()),
                ) else {
                    return Err(CniError::new(
                        Code::InvalidConfig,
                        format!("args.cni.labels: {item} is not {{\"key\", \"value\"}}"),
                    ));
                };
                labels.insert(k.to_owned(), v.to_owned());
            }
        }
        let (namespace, name) = (arg("K8S_POD_NAMESPACE"), arg("K8S_POD_NAME"));
        if namespace.is_none() && name.is_none() && labels.is_empty() {
            return Ok(None);
        }
        let short: String = container_id.chars().take(12).collect();
        Ok(Some(PodIdentity {
            namespace: namespace.unwrap_or_else(|| "default".into()),
            name: name.unwrap_or(short),
            labels,
        }))
    }
}

/// One interface in a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The netns path, for the container's interface.
    pub sandbox: Option<String>,
}

/// What ADD reports, rendered per version by [`AddResult::to_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct AddResult {
    pub interfaces: Vec<Interface>,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The IPv6 address and gateway in a dual-stack network.
    pub ipv6: Option<(ipnet::Ipv6Net, std::net::Ipv6Addr)>,
    /// Index in `interfaces` of the container's interface.
    pub container_interface: usize,
    pub mtu: u32,
}

impl AddResult {
    pub fn to_json(&self, version: &str) -> Value {
        let legacy = version.starts_with("0.");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({ "name": i.name, "mac": i.mac });
                if let Some(s) = &i.sandbox {
                    v["sandbox"] = s.clone().into();
                }
                if !legacy && i.sandbox.is_some() {
                    v["mtu"] = self.mtu.into();
                }
                v
            })
            .collect();
        let mut ip = json!({
            "address": self.address.to_string(),
            "gateway": self.gateway.to_string(),
            "interface": self.container_interface,
        });
        if legacy {
            ip["version"] = "4".into();
        }
        let mut ips = vec![ip];
        let mut routes = vec![json!({ "dst": "0.0.0.0/0", "gw": self.gateway.to_string() })];
        if let Some((address, gateway)) = self.ipv6 {
            let mut ip = json!({
                "address": address.to_string(),
                "gateway": gateway.to_string(),
                "interface": self.container_interface,
            });
            if legacy {
                ip["version"] = "6".into();
            }
            ips.push(ip);
            routes.push(json!({ "dst": "::/0", "gw": gateway.to_string() }));
        }
        json!({
            "cniVersion": version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": {},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> CniResult<NetConf> {
        NetConf::parse(
            format!(r#"{{"cniVersion":"1.1.0","name":"weft","type":"weft"{extra}}}"#).as_bytes(),
        )
    }

    #[test]
    fn parses_and_defaults() {
        let c = conf("").unwrap();
        assert_eq!((c.mode, c.bridge.as_str()), (Mode::Bridge, "weftbr0"));
        assert_eq!(conf(r#","mode":"routed""#).unwrap().mode, Mode::Routed);
    }

    #[test]
    fn errors_carry_the_spec_codes() {
        assert_eq!(NetConf::parse(b"{not json").unwrap_err().code, Code::Decode);
        let v = NetConf::parse(br#"{"cniVersion":"9.9.9","name":"w","type":"weft"}"#).unwrap_err();
        assert_eq!(v.code, Code::IncompatibleVersion);
        assert_eq!(conf(r#","mode":"tunnel""#).unwrap_err().code, Code::Decode);
        assert_eq!(
            conf(r#","frobnicate":1"#).unwrap_err().code,
            Code::UnsupportedField
        );
        let t =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"w","type":"bridge"}"#).unwrap_err();
        assert_eq!(t.code, Code::InvalidConfig);
    }

    #[test]
    fn requested_addresses_from_every_source() {
        let c = conf(
            r#","runtimeConfig":{"ips":["10.244.1.7/24"]},"args":{"cni":{"ips":["10.244.1.8"]}}"#,
        )
        .unwrap();
        let ips = c.requested_ips("K8S_POD_NAME=x;IP=10.244.1.9").unwrap();
        assert_eq!(
            ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            ["10.244.1.7", "10.244.1.8", "10.244.1.9"]
        );
        assert_eq!(
            c.requested_ips("IP=banana").unwrap_err().code,
            Code::InvalidConfig
        );
    }

    #[test]
    fn results_per_version() {
        let r = AddResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                sandbox: Some("/run/netns/x".into()),
            }],
            address: "10.244.1.2/24".parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            ipv6: None,
            container_interface: 0,
            mtu: 1450,
        };
        let old = r.to_json("0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["cniVersion"], "0.3.1");
        let new = r.to_json("1.1.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["ips"][0]["address"], "10.244.1.2/24");
        assert_eq!(new["routes"][0]["gw"], "10.244.1.1");
    }

    /// Both families as the CNI spec lists them: one `ips` entry and one default route
    /// each (`version` "6" in 0.3.x results).
    #[test]
    fn a_dual_stack_result_lists_both() {
        let r = AddResult {
            interfaces: vec![],
            address: "10.244.1.2/24".parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            ipv6: Some((
                "fd00:10:244:1::2/64".parse().unwrap(),
                "fd00:10:244:1::1".parse().unwrap(),
            )),
            container_interface: 0,
            mtu: 1450,
        };
        let new = r.to_json("1.1.0");
        assert_eq!(new["ips"][1]["address"], "fd00:10:244:1::2/64");
        assert_eq!(new["ips"][1]["gateway"], "fd00:10:244:1::1");
        assert_eq!(
            new["routes"][1],
            serde_json::json!({"dst": "::/0", "gw": "fd00:10:244:1::1"})
        );
        assert_eq!(r.to_json("0.3.1")["ips"][1]["version"], "6");
    }
}
