//! `weftctl store`: raw access to the store's keys, like `etcdctl get/put/del`, for the
//! embedded store (which has no other client) and for debugging.

use clap::Subcommand;
use weft_store::Store;

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Print one key's value.
    #[command(after_help = "Example:\n  weftctl store get /coreos.com/network/config")]
    Get { key: String },
    /// Write a key (no TTL). The agent validates what it reads; this does not.
    #[command(
        after_help = "Example:\n  weftctl store put /coreos.com/network/weft/bgp/peers/tor '{\"PeerIP\":\"192.168.77.254\",\"ASNumber\":64513}'"
    )]
    Put { key: String, value: String },
    /// Delete a key.
    #[command(
        after_help = "Example:\n  weftctl store del /coreos.com/network/subnets/10.244.3.0-24"
    )]
    Del { key: String },
    /// List keys under a prefix.
    #[command(after_help = "Example:\n  weftctl store ls /coreos.com/network/subnets -o json")]
    Ls {
        #[arg(default_value = "/")]
        prefix: String,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: crate::output::Output,
    },
}

pub async fn run(store: &dyn Store, cmd: StoreCmd) -> Result<i32, crate::CliError> {
    match cmd {
        StoreCmd::Get { key } => match store.get(&key).await? {
            Some(kv) => {
                println!("{}", String::from_utf8_lossy(&kv.value));
                Ok(0)
            }
            None => Err(crate::CliError::NoKey(key)),
        },
        StoreCmd::Put { key, value } => {
            let rev = store.put(&key, value.as_bytes(), None).await?;
            println!("revision {rev}");
            Ok(0)
        }
        StoreCmd::Del { key } => {
            if store.delete(&key).await? {
                Ok(0)
            } else {
                Err(crate::CliError::NoKey(key))
            }
        }
        StoreCmd::Ls {
            prefix,
            output: crate::output::Output::Json,
        } => {
            let kvs = store.list(&prefix).await?.kvs;
            crate::output::print_json(
                &kvs.iter()
                    .map(|kv| {
                        serde_json::json!({
                            "key": kv.key,
                            "value": String::from_utf8_lossy(&kv.value),
                            "lease": kv.lease.map(|l| format!("{l:x}")),
                            "mod_revision": kv.mod_revision,
                        })
                    })
                    .collect(),
            );
            Ok(0)
        }
        StoreCmd::Ls { prefix, .. } => {
            for kv in store.list(&prefix).await?.kvs {
                let lease = kv
                    .lease
                    .map(|l| format!("  (lease {l:x})"))
                    .unwrap_or_default();
                println!("{}{lease}", kv.key);
            }
            Ok(0)
        }
    }
}
