//! The plugin↔agent and driver↔agent protocol: what a CNI plugin (or any local tool)
//! asks of the node's agent on its socket, one JSON line each way, and the client that
//! asks. The agent serves it (`weft_agent::api`).

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// What a CNI plugin (or any local tool) asks of the node's agent on its socket
/// (`weftd --api-socket`, `/run/weft/weftd.sock`): one JSON line each way. The agent
/// makes the claim, since only it knows the node, the config and the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Hold `ip` for this container on this node.
    Claim {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
        #[serde(rename = "ContainerID")]
        container_id: String,
    },
    /// Give `ip` up, if this container holds it.
    Release {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
        #[serde(rename = "ContainerID")]
        container_id: String,
    },
    /// Block IPAM: an address for `handle` (`network/containerID/ifname`) on this node,
    /// `ip` if given (a fixed address); answered with `IP`. Asked again with the same
    /// handle, the same address.
    Allocate {
        #[serde(rename = "Handle")]
        handle: String,
        #[serde(rename = "IP", default, skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Addr>,
    },
    /// Block IPAM: give `ip` back if `handle` holds it.
    Free {
        #[serde(rename = "Handle")]
        handle: String,
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
    },
    /// Network policy: the container at `ip` is `namespace/name` with these labels,
    /// attached through `interface` (its host-side veth) on this node.
    Identify {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
        /// Its IPv6 address in a dual-stack network (what the IPv6 policy table
        /// matches it by).
        #[serde(rename = "IPv6", default, skip_serializing_if = "Option::is_none")]
        ipv6: Option<std::net::Ipv6Addr>,
        #[serde(rename = "Namespace")]
        namespace: String,
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Labels", default)]
        labels: std::collections::BTreeMap<String, String>,
        #[serde(rename = "Interface", default)]
        interface: String,
        /// Routed (its own interface) or bridged (a bridge port).
        #[serde(rename = "Attachment", default)]
        attachment: weft_policy::render::Attachment,
    },
    /// Network policy: the container at `ip` on this node is gone.
    Forget {
        #[serde(rename = "IP")]
        ip: Ipv4Addr,
    },
    /// Block IPAM (CNI GC): give back every address used on this node whose handle
    /// starts with `prefix` and is not in `keep` (a kept handle ending in `/` keeps
    /// every handle it begins); answered with `Freed`.
    Collect {
        #[serde(rename = "Prefix")]
        prefix: String,
        #[serde(rename = "Keep")]
        keep: Vec<String>,
    },
}

/// Why the agent did not do what it was asked: its words, and whether asking again
/// later may succeed (the agent or its store did not answer, or a container's rules were
/// not in place in time), which the CNI plugin reports as "try again later".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub message: String,
    pub try_again: bool,
}

impl ApiError {
    /// Refused for good: asking again changes nothing.
    pub fn refused(message: impl Into<String>) -> Self {
        ApiError {
            message: message.into(),
            try_again: false,
        }
    }

    /// Not done now; asking again later may succeed.
    pub fn transient(message: impl Into<String>) -> Self {
        ApiError {
            message: message.into(),
            try_again: true,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The agent's answer: `{"Error": null}` when done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(rename = "Error")]
    pub error: Option<String>,
    /// With `Error`: asking again later may succeed.
    #[serde(
        rename = "TryAgain",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub try_again: bool,
    /// `Allocate`: the address.
    #[serde(rename = "IP", default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// `Collect`: the addresses given back.
    #[serde(rename = "Freed", default, skip_serializing_if = "Vec::is_empty")]
    pub freed: Vec<Ipv4Addr>,
}

/// Sends one request to the agent at `socket` and waits (up to 10 s) for its answer. An
/// agent that cannot be reached or does not answer is worth asking again later.
pub fn ask(socket: &std::path::Path, req: &Request) -> Result<Reply, ApiError> {
    use std::io::{BufRead, BufReader, Write};
    let timeout = Some(std::time::Duration::from_secs(10));
    let mut conn = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        ApiError::transient(format!(
            "cannot reach weftd at {}: {e} (is the agent running with --api-socket there?)",
            socket.display()
        ))
    })?;
    let _ = conn.set_read_timeout(timeout);
    let _ = conn.set_write_timeout(timeout);
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    conn.write_all(&line).map_err(|e| {
        ApiError::transient(format!("cannot talk to weftd at {}: {e}", socket.display()))
    })?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer).map_err(|e| {
        ApiError::transient(format!("no answer from weftd at {}: {e}", socket.display()))
    })?;
    let reply: Reply = serde_json::from_str(&answer).map_err(|e| {
        ApiError::refused(format!(
            "weftd answered something unreadable ({e}): {answer:?}"
        ))
    })?;
    match reply.error {
        None => Ok(reply),
        Some(message) => Err(ApiError {
            message,
            try_again: reply.try_again,
        }),
    }
}

/// Binds a Unix socket at `path` for a local API (the agent's, or the Docker driver's),
/// replacing a stale socket file and making its directory; only root may connect.
pub fn bind_socket(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
