//! The agent's local socket, for the CNI plugin: claims of single addresses outside the
//! node's subnet (see [`weft_alloc::address`]) and, with block IPAM, every container
//! address ([`crate::blocks_api`]). A Unix socket readable by root only, one JSON
//! request line and one JSON answer line per connection.
//!
//! Claims and allocations go to the store; the agent's own store watch then picks them
//! up and routes or announces the addresses.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};
use weft_alloc::address::{AddressClaim, ClaimError};
use weft_alloc::agent_api::{ApiError, Reply, Request};
use weft_alloc::policies::Identity;
use weft_alloc::Registry;

use crate::blocks_api::BlockService;
use crate::daemon::PolicyEnforced;

/// How long an identity's answer waits for its policy rules to be loaded.
/// (The plugin waits 10 s for any answer.)
const ENFORCE_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// A request line longer than this is refused (a GC's list of the containers to keep,
/// thousands of handles, fits).
const MAX_LINE: u64 = 1 << 20;

/// Binds the socket `path` (replacing a stale socket file). The agent binds once it has
/// started, just before it writes the subnet file, so a CNI plugin that finds the file
/// finds the socket too (its requests wait in the backlog until [`spawn`] serves them).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    weft_alloc::agent_api::bind_socket(path)
}

/// Serves `listener` in a task of its own; a failure is logged (the CNI plugin then
/// reports that it cannot reach the agent).
pub fn spawn(
    listener: UnixListener,
    registry: Registry,
    node: Ipv4Addr,
    blocks: BlockService,
    enforced: PolicyEnforced,
) {
    tokio::spawn(async move {
        if let Err(e) = serve(listener, registry, node, blocks, enforced).await {
            tracing::error!(error = %e, "cannot serve address claims");
        }
    });
}

/// Answers connections on `listener` until the task ends.
pub async fn serve(
    listener: UnixListener,
    registry: Registry,
    node: Ipv4Addr,
    blocks: BlockService,
    enforced: PolicyEnforced,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        if let Some(path) = addr.as_pathname() {
            info!(socket = %path.display(), "serving address claims");
        }
    }
    let blocks = Arc::new(blocks);
    loop {
        let (conn, _) = listener.accept().await?;
        let registry = registry.clone();
        let blocks = blocks.clone();
        let enforced = enforced.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(conn, &registry, node, &blocks, enforced).await {
                warn!(error = %e, "address claim connection failed");
            }
        });
    }
}

async fn answer(
    conn: UnixStream,
    registry: &Registry,
    node: Ipv4Addr,
    blocks: &BlockService,
    enforced: PolicyEnforced,
) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(BufReader::new(read), MAX_LINE)
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Err(ApiError::refused(format!(
            "unreadable request ({e}): {:?}",
            line.trim_end()
        ))),
        Ok(req) => handle(req, registry, node, blocks, enforced).await,
    };
    let reply = reply.unwrap_or_else(|e| Reply {
        error: Some(e.message),
        try_again: e.try_again,
        ..Default::default()
    });
    let mut out = serde_json::to_vec(&reply).expect("reply serializes");
    out.push(b'\n');
    write.write_all(&out).await
}

async fn handle(
    req: Request,
    registry: &Registry,
    node: Ipv4Addr,
    blocks: &BlockService,
    mut enforced: PolicyEnforced,
) -> Result<Reply, ApiError> {
    match req {
        Request::Allocate { handle, ip } => blocks.allocate(&handle, ip).await.map(|ip| Reply {
            ip: Some(ip),
            ..Default::default()
        }),
        Request::Free { handle, ip } => blocks.free(&handle, ip).await.map(|_| Reply::default()),
        Request::Identify {
            ip,
            ipv6,
            namespace,
            name,
            labels,
            interface,
            attachment,
        } => {
            let mut problems = weft_policy::selector::label_problems(&labels);
            weft_policy::parse::check_object_name("namespace", &namespace, &mut problems);
            if !problems.is_empty() {
                return Err(ApiError::refused(format!(
                    "cannot record {namespace}/{name}: {}",
                    problems.join("; ")
                )));
            }
            let id = Identity {
                name: format!("{namespace}/{name}"),
                namespace,
                labels,
                ipv6,
                node,
                interface,
                attachment,
                pending: false,
            };
            let written = registry.put_identity(ip, &id).await.map_err(|e| {
                ApiError::transient(format!("cannot record {} ({ip}): {e}", id.name))
            })?;
            // Policy before the first packet: answer once the rules for it are loaded.
            let wait = enforced.wait_for(|r| *r >= written);
            match tokio::time::timeout(ENFORCE_WAIT, wait).await {
                Ok(Ok(_)) => {}
                _ => {
                    return Err(ApiError::transient(format!(
                        "the network policy for {} ({ip}) was not in place within {ENFORCE_WAIT:?}",
                        id.name
                    )))
                }
            }
            info!(%ip, endpoint = %id.name, "endpoint identity recorded and its policy in place");
            Ok(Reply::default())
        }
        Request::Forget { ip } => {
            // Only this node's: an address reused elsewhere keeps its new identity.
            let id = registry.identity(ip).await.map_err(store_down)?;
            if id.is_some_and(|i| i.node == node) {
                registry.delete_identity(ip).await.map_err(store_down)?;
                info!(%ip, "endpoint identity forgotten");
            }
            Ok(Reply::default())
        }
        Request::Collect { prefix, keep } => {
            blocks.collect(&prefix, &keep).await.map(|freed| Reply {
                freed,
                ..Default::default()
            })
        }
        Request::Claim { ip, container_id } => {
            let cfg = registry
                .config()
                .await
                .map_err(|e| ApiError::transient(e.to_string()))?;
            let claim = AddressClaim { node, container_id };
            registry
                .claim_address(&cfg, ip, &claim)
                .await
                .map_err(|e| match e {
                    ClaimError::Store(s) => store_down(s),
                    other => ApiError::refused(other.to_string()),
                })?;
            info!(%ip, container = %claim.container_id, "holding an address outside the subnet");
            Ok(Reply::default())
        }
        Request::Release { ip, container_id } => {
            let freed = registry
                .release_address(ip, &container_id)
                .await
                .map_err(store_down)?;
            if freed {
                info!(%ip, container = %container_id, "released an address outside the subnet");
            }
            Ok(Reply::default())
        }
    }
}

/// A store that did not answer: nothing was done, and asking again later may succeed.
fn store_down(e: weft_store::StoreError) -> ApiError {
    ApiError::transient(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    use weft_alloc::agent_api::ask;
    use weft_alloc::NetworkConfig;
    use weft_store::embedded::EmbeddedStore;

    #[tokio::test(flavor = "multi_thread")]
    async fn claims_over_the_socket_and_bad_lines_get_a_clear_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path().join("store.db")).unwrap());
        let registry = Registry::new(store, "/t");
        let cfg = NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"bgp"}}"#)
            .unwrap();
        registry.put_config(&cfg).await.unwrap();
        let sock = dir.path().join("weftd.sock");
        let node: Ipv4Addr = "192.168.77.1".parse().unwrap();
        let (path, reg) = (sock.clone(), registry.clone());
        let (_feed, blocks) = BlockService::new(reg.clone(), node, Default::default());
        let listener = bind(&path).unwrap();
        let enforced = tokio::sync::watch::channel(0).1;
        tokio::spawn(async move { serve(listener, reg, node, blocks, enforced).await });
        let s = sock.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..100 {
                if s.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let claim = |ip: &str| Request::Claim {
                ip: ip.parse().unwrap(),
                container_id: "c1".into(),
            };
            ask(&s, &claim("10.244.0.7")).unwrap();
            let err = ask(&s, &claim("10.244.9.7")).unwrap_err();
            assert!(err.message.contains("range leases are drawn from"), "{err}");
            assert!(!err.try_again, "a refusal, not a try-again");
            let mut conn = std::os::unix::net::UnixStream::connect(&s).unwrap();
            conn.write_all(b"{\"Claim\": 7}\n").unwrap();
            let mut answer = String::new();
            BufReader::new(conn).read_line(&mut answer).unwrap();
            assert!(answer.contains("unreadable request"), "{answer}");
        })
        .await
        .unwrap();
        let held = registry.addresses().await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].1.node, node);
    }
}
