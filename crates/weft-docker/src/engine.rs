//! The little of Docker's engine API the sync needs, over the daemon's Unix socket:
//! list, inspect, create and remove networks, and read a container's labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::net::UnixStream;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot reach dockerd at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("dockerd at {path}: {what}")]
    Http { path: String, what: String },
    #[error("dockerd refused {call}: {status} {message}")]
    Refused {
        call: String,
        status: u16,
        message: String,
    },
}

/// A network as `GET /networks` shows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerNetwork {
    pub name: String,
    pub id: String,
    pub driver: String,
    #[serde(default)]
    pub containers: Option<serde_json::Map<String, Value>>,
}

impl DockerNetwork {
    /// The container an endpoint belongs to: its ID and name.
    pub fn container_of(&self, endpoint_id: &str) -> Option<(String, String)> {
        self.containers.iter().flatten().find_map(|(id, c)| {
            (c.get("EndpointID")?.as_str()? == endpoint_id).then(|| {
                let name = c.get("Name").and_then(Value::as_str).unwrap_or(id);
                (id.clone(), name.to_owned())
            })
        })
    }

    /// The endpoint IDs of the containers attached here.
    pub fn endpoint_ids(&self) -> Vec<String> {
        self.containers
            .iter()
            .flat_map(|c| c.values())
            .filter_map(|c| c.get("EndpointID")?.as_str().map(str::to_owned))
            .collect()
    }
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
}

impl Engine {
    pub fn new(socket: impl Into<PathBuf>) -> Engine {
        Engine {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), EngineError> {
        let where_ = self.socket.display().to_string();
        let http = |what: String| EngineError::Http {
            path: where_.clone(),
            what,
        };
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| EngineError::Connect {
                    path: where_.clone(),
                    source,
                })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| http(e.to_string()))?;
        tokio::spawn(conn);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(format!("http://docker{path}"))
            .header("Host", "docker")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
        };
        Ok((status, value))
    }

    async fn expect(
        &self,
        call: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, EngineError> {
        let (status, value) = self.request(method, path, body).await?;
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        Err(EngineError::Refused {
            call: call.to_owned(),
            status: status.as_u16(),
            message,
        })
    }

    /// Every network of driver `driver`, with its containers.
    pub async fn networks(&self, driver: &str) -> Result<Vec<DockerNetwork>, EngineError> {
        let all = self
            .expect("list networks", Method::GET, "/networks", None)
            .await?;
        let nets: Vec<DockerNetwork> =
            serde_json::from_value(all).map_err(|e| EngineError::Http {
                path: self.socket.display().to_string(),
                what: format!("unreadable network list: {e}"),
            })?;
        let mut out = Vec::new();
        // The listing leaves containers out; inspecting each network gives them.
        for n in nets.into_iter().filter(|n| n.driver == driver) {
            match self.network(&n.id).await? {
                Some(full) => out.push(full),
                None => continue, // removed meanwhile
            }
        }
        Ok(out)
    }

    /// `GET path`: its JSON, `None` if Docker has no such object (404).
    async fn inspect(&self, call: &str, path: &str) -> Result<Option<Value>, EngineError> {
        let (status, value) = self.request(Method::GET, path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(EngineError::Refused {
                call: call.to_owned(),
                status: status.as_u16(),
                message: value.to_string(),
            });
        }
        Ok(Some(value))
    }

    /// One network by ID or name, if it exists.
    pub async fn network(&self, id: &str) -> Result<Option<DockerNetwork>, EngineError> {
        let path = format!("/networks/{id}");
        let Some(value) = self
            .inspect(&format!("inspect network {id}"), &path)
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| EngineError::Http {
                path: self.socket.display().to_string(),
                what: format!("unreadable network {id}: {e}"),
            })
    }

    /// Creates a network of driver `weft` with Weft's IPAM.
    pub async fn create_network(
        &self,
        net: &weft_alloc::named::NamedNetwork,
        plugin: &str,
    ) -> Result<(), EngineError> {
        let mut options = json!({"mode": net.mode.to_string()});
        if net.vni != 0 {
            options["vni"] = json!(net.vni.to_string());
        }
        let body = json!({
            "Name": net.name,
            "CheckDuplicate": true,
            "Driver": plugin,
            "Internal": net.internal,
            "IPAM": {"Driver": plugin, "Config": [{"Subnet": net.subnet.to_string(), "Gateway": net.gateway.to_string()}]},
            "Options": options,
        });
        self.expect(
            &format!("create network {}", net.name),
            Method::POST,
            "/networks/create",
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// A container's labels, from the container list (which reads the daemon's
    /// snapshot: inspecting a container that is starting would wait for its start,
    /// and the start waits for the driver). `None` if there is no such container.
    pub async fn container_labels(
        &self,
        id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError> {
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        // `filters={"id":["ID"]}`, URL-encoded.
        let path = format!("/containers/json?all=1&filters=%7B%22id%22%3A%5B%22{id}%22%5D%7D");
        let list = self
            .expect(&format!("list container {id}"), Method::GET, &path, None)
            .await?;
        #[derive(Deserialize)]
        struct Listed {
            #[serde(rename = "Id")]
            id: String,
            #[serde(rename = "Labels", default)]
            labels: Option<BTreeMap<String, String>>,
        }
        let listed: Vec<Listed> = serde_json::from_value(list).map_err(|e| EngineError::Http {
            path: self.socket.display().to_string(),
            what: format!("unreadable container list: {e}"),
        })?;
        Ok(listed
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.labels.unwrap_or_default()))
    }

    /// A container's aliases on `network` (`--network-alias`, Compose's service name,
    /// its short ID), from its inspection: the container list leaves them out. The
    /// inspection waits while the container is starting, so this is for tasks, never
    /// for a plugin call. `None` if there is no such container or it is not on
    /// `network`.
    pub async fn container_aliases(
        &self,
        id: &str,
        network: &str,
    ) -> Result<Option<Vec<String>>, EngineError> {
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let path = format!("/containers/{id}/json");
        let Some(value) = self
            .inspect(&format!("inspect container {id}"), &path)
            .await?
        else {
            return Ok(None);
        };
        let Some(on) = value.pointer(&format!(
            "/NetworkSettings/Networks/{}",
            network.replace('~', "~0").replace('/', "~1")
        )) else {
            return Ok(None);
        };
        Ok(Some(
            on.get("Aliases")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        ))
    }

    pub async fn remove_network(&self, id: &str) -> Result<(), EngineError> {
        self.expect(
            &format!("remove network {id}"),
            Method::DELETE,
            &format!("/networks/{id}"),
            None,
        )
        .await
        .map(|_| ())
    }
}
