//! The plugin's socket: HTTP/1.1 over a Unix socket in Docker's plugin directory, one
//! POST per call (`/NetworkDriver.Join`, ...). Unknown paths get a 404 with `{"Err"}`, as
//! libnetwork expects; bodies over [`MAX_BODY`] are refused.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use tracing::{debug, info, warn};

use crate::driver::{known, Driver};
use crate::protocol::{err, CONTENT_TYPE};

/// The largest request body read (Docker's are a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;

/// The socket's path for plugin `name` in `dir`.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Binds the driver's socket (replacing a stale socket file): once this returns, Docker
/// finds the plugin. The agent binds it before it tells systemd it is ready, so a
/// container Docker starts at boot finds its driver.
pub fn listen(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    weft_alloc::agent_api::bind_socket(path)
}

/// Serves the driver on a socket [`listen`] bound at `path`, until the task ends.
pub async fn serve_on(
    listener: tokio::net::UnixListener,
    path: &Path,
    driver: Driver,
) -> std::io::Result<()> {
    info!(socket = %path.display(), "serving the Docker network and IPAM driver");
    loop {
        let (stream, _) = listener.accept().await?;
        let driver = driver.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let driver = driver.clone();
                async move { Ok::<_, Infallible>(answer(&driver, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

async fn answer(driver: &Driver, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.uri().path().trim_start_matches('/').to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                err(&method, format!("cannot read the request body: {e}")),
            )
        }
    };
    if !known(&method) {
        warn!(%method, "unknown plugin call");
        return reply(
            StatusCode::NOT_FOUND,
            err(&method, format!("unknown call {method:?}")),
        );
    }
    let (status, value) = match driver.call(&method, &body).await {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => {
            warn!(%method, error = %e, "plugin call refused");
            (StatusCode::OK, err(&method, e.to_string()))
        }
    };
    debug!(%method, answer = %value, "plugin call");
    reply(status, value)
}

fn reply(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", CONTENT_TYPE)
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}
