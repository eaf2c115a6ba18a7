//! A tiny HTTP backend that answers with its own name: the versioned services of the demo, and
//! the backends that tests point aliases at.
//!
//! `GET /healthz` answers 200 while the backend's health switch is on and 503 while it is off, so
//! a demo or a test can make a version fail its health checks without stopping it;
//! `POST /healthz/off` and `POST /healthz/on` flip the switch from outside. Every other request
//! gets the name in the body and in the `x-backend` header.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A running backend.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: Arc<str>,
    healthy: Arc<AtomicBool>,
}

impl Backend {
    /// Turns the health endpoint's answer to 200 (`true`) or 503 (`false`).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

/// Binds `addr` and serves until `shutdown`. Returns the backend with its bound address.
pub async fn spawn(
    addr: SocketAddr,
    name: &str,
    shutdown: CancellationToken,
) -> io::Result<Backend> {
    let listener = TcpListener::bind(addr).await?;
    let backend = Backend {
        addr: listener.local_addr()?,
        name: Arc::from(name),
        healthy: Arc::new(AtomicBool::new(true)),
    };
    let served = backend.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        debug!(%error, "backend accept failed");
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let this = served.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let this = this.clone();
                async move { Ok::<_, Infallible>(this.answer(&req)) }
            });
            let conn_shutdown = shutdown.clone();
            tokio::spawn(async move {
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = conn_shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    });
    Ok(backend)
}

impl Backend {
    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if req.method() == hyper::Method::POST && (path == "/healthz/on" || path == "/healthz/off")
        {
            self.set_healthy(path == "/healthz/on");
        }
        let (status, body) = if path.starts_with("/healthz") {
            if self.healthy.load(Ordering::SeqCst) {
                (StatusCode::OK, "ok\n".to_owned())
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".to_owned())
            }
        } else {
            (StatusCode::OK, format!("{}\n", self.name))
        };
        Response::builder()
            .status(status)
            .header("x-backend", &*self.name)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)))
            .expect("static response")
    }
}
