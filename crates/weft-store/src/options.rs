//! How to reach the store, as command-line options shared by `weftd`, `weftctl` and the
//! lab. Names follow flannel's (`--etcd-endpoints`, `--etcd-prefix`, `--etcd-cafile`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::embedded::EmbeddedStore;
use crate::etcd::{EtcdConfig, EtcdStore};
use crate::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A SQLite file shared by the processes of one machine (no server).
    Embedded,
    /// An etcd v3 cluster.
    Etcd,
}

/// Where the shared state lives.
#[derive(Debug, Clone, Args)]
pub struct StoreOptions {
    /// Which store holds the network state.
    #[arg(long, value_enum, env = "WEFT_STORE", default_value = "embedded")]
    pub store: StoreKind,
    /// The embedded store's file.
    #[arg(
        long,
        env = "WEFT_STORE_PATH",
        default_value = "/var/lib/weft/store.db"
    )]
    pub store_path: PathBuf,
    /// etcd client URLs, comma-separated.
    #[arg(
        long,
        env = "WEFT_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of the network state (flannel's default, so flannel's keys are found).
    #[arg(long, alias = "prefix", env = "WEFT_ETCD_PREFIX", default_value = crate::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// CA certificate to verify etcd with (enables TLS; use https:// endpoints).
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    #[arg(long, env = "WEFT_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    #[arg(long, env = "WEFT_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
}

impl StoreOptions {
    /// Opens the store once; callers decide whether to retry.
    pub async fn connect(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self.store {
            StoreKind::Embedded => Arc::new(EmbeddedStore::open(&self.store_path)?),
            StoreKind::Etcd => Arc::new(
                EtcdStore::connect(&EtcdConfig {
                    endpoints: self.etcd_endpoints.clone(),
                    ca_file: self.etcd_cafile.clone(),
                    cert_file: self.etcd_certfile.clone(),
                    key_file: self.etcd_keyfile.clone(),
                    username: self.etcd_username.clone(),
                    password: self.etcd_password.clone(),
                })
                .await?,
            ),
        })
    }

    /// Where the store is, for log lines.
    pub fn describe(&self) -> String {
        match self.store {
            StoreKind::Embedded => format!("embedded store {}", self.store_path.display()),
            StoreKind::Etcd => format!("etcd {}", self.etcd_endpoints.join(",")),
        }
    }
}
