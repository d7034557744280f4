//! What a lab remembers between `weftctl` invocations: `/run/weft-lab/LAB/lab.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weft_alloc::hostfiles::{self, NodeNetwork};
use weft_store::options::StoreKind;

use crate::error::{LabError, LabResult};
use crate::topology;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub backend: String,
    /// `embedded` or `etcd`.
    pub store: String,
    pub network: String,
    pub hosts: Vec<u32>,
    /// The lab's etcd, when `store` is `etcd` (one member).
    pub etcd_pid: Option<u32>,
    /// With `--etcd-members N` (N > 1): how many members, each in a namespace of its own.
    #[serde(default)]
    pub etcd_members: u32,
    /// Their pids, by member number, while they run.
    #[serde(default)]
    pub etcd_member_pids: std::collections::BTreeMap<u32, u32>,
    /// Extra options passed to every agent.
    #[serde(default)]
    pub agent_args: Vec<String>,
    /// Each host's labels (its agent's --node-labels), by host number.
    #[serde(default)]
    pub node_labels: std::collections::BTreeMap<u32, String>,
    /// How many underlay subnets the hosts are spread over (joined by the underlay
    /// namespace as a router).
    #[serde(default = "one")]
    pub subnets: u32,
    /// Agents masquerade traffic leaving the cluster network (`--ip-masq`).
    #[serde(default = "yes")]
    pub ip_masq: bool,
    /// How the `weft` CNI plugin attaches the containers: `bridge` or `routed`.
    #[serde(default = "bridge")]
    pub cni_mode: String,
    /// A dockerd per host, the agents serving the `weft` Docker driver.
    #[serde(default)]
    pub docker: bool,
    /// Each host's container address, as the plugin's ADD result gave it.
    #[serde(default)]
    pub containers: std::collections::BTreeMap<u32, std::net::Ipv4Addr>,
    /// `4` or `dual` (`--ip-family`): whether the underlay and the cluster network carry
    /// IPv6 beside IPv4.
    #[serde(default = "four")]
    pub ip_family: String,
    /// Each host's container IPv6 address in a dual-stack lab.
    #[serde(default)]
    pub containers6: std::collections::BTreeMap<u32, std::net::Ipv6Addr>,
    /// Containers added with `lab container add`, by NAMESPACE/NAME.
    #[serde(default)]
    pub pods: std::collections::BTreeMap<String, crate::pods::Pod>,
}

fn bridge() -> String {
    "bridge".into()
}

fn four() -> String {
    "4".into()
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// Where all labs keep their state.
pub fn root() -> PathBuf {
    std::env::var_os("WEFT_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/weft-lab"))
}

pub fn dir(lab: &str) -> PathBuf {
    root().join(lab)
}

impl LabState {
    /// Whether the lab runs dual stack (`--ip-family dual`).
    pub fn dual_stack(&self) -> bool {
        self.ip_family == "dual"
    }

    pub fn dir(&self) -> PathBuf {
        dir(&self.name)
    }

    pub fn host_dir(&self, i: u32) -> PathBuf {
        self.dir().join(format!("h{i}"))
    }

    /// Host `i`'s subnet file (its agent's `--subnet-file`).
    pub fn subnet_file(&self, i: u32) -> PathBuf {
        self.host_dir(i).join("subnet.env")
    }

    /// Host `i`'s BGP status file (its agent's `--bgp-status-file`).
    pub fn bgp_status_file(&self, i: u32) -> PathBuf {
        self.host_dir(i).join("bgp-status.json")
    }

    pub fn host_ip(&self, i: u32) -> std::net::Ipv4Addr {
        topology::host_ip(i, self.subnets)
    }

    pub fn store_kind(&self) -> StoreKind {
        if self.store == "etcd" {
            StoreKind::Etcd
        } else {
            StoreKind::Embedded
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir().join("store.db")
    }

    /// Every etcd client URL, comma-separated (flannel's `--etcd-endpoints` form).
    pub fn etcd_endpoint(&self) -> String {
        if self.etcd_members > 1 {
            let urls: Vec<String> = (1..=self.etcd_members)
                .map(|n| {
                    format!(
                        "http://{}:{}",
                        topology::etcd_member_ip(n),
                        topology::ETCD_PORT
                    )
                })
                .collect();
            return urls.join(",");
        }
        format!("http://{}:{}", topology::UNDERLAY_GW, topology::ETCD_PORT)
    }

    /// The store options every agent and store command of this lab uses.
    pub fn store_args(&self) -> Vec<String> {
        match self.store_kind() {
            StoreKind::Embedded => vec![
                "--store=embedded".into(),
                format!("--store-path={}", self.store_path().display()),
            ],
            StoreKind::Etcd => vec![
                "--store=etcd".into(),
                format!("--etcd-endpoints={}", self.etcd_endpoint()),
            ],
        }
    }

    pub fn load(lab: &str) -> LabResult<Self> {
        let path = dir(lab).join("lab.json");
        let text =
            std::fs::read_to_string(&path).map_err(|_| LabError::NoSuchLab(lab.to_owned()))?;
        serde_json::from_str(&text).map_err(|e| {
            LabError::Usage(format!(
                "{} is corrupt ({e}); run `weftctl lab down --name {lab}`",
                path.display()
            ))
        })
    }

    pub fn save(&self) -> LabResult<()> {
        let path = self.dir().join("lab.json");
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        hostfiles::write_atomic(&path, &text)
            .map(|_| ())
            .map_err(|source| LabError::Io {
                path: path.display().to_string(),
                source,
            })
    }

    /// Where host `i`'s CNI allocations live.
    pub fn cni_data_dir(&self, i: u32) -> PathBuf {
        self.host_dir(i).join("cni")
    }

    /// The CNI network config the lab's "runtime" hands the plugin on host `i`.
    pub fn cni_config(&self, i: u32) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.1.0",
            "name": "weft",
            "type": "weft",
            "mode": self.cni_mode,
            "subnetFile": self.subnet_file(i),
            "dataDir": self.cni_data_dir(i),
            "agentSocket": self.host_dir(i).join("weftd.sock"),
        })
    }

    /// Host `i`'s network as its agent wrote it in the subnet file, if it has.
    pub fn host_network(&self, i: u32) -> Option<NodeNetwork> {
        let text = std::fs::read_to_string(self.subnet_file(i)).ok()?;
        hostfiles::parse_subnet_env(&text)
    }
}
