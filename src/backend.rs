//! A tiny HTTP backend that answers with its own name: the versioned services of the demo, and
//! the backends that tests point aliases at.
//!
//! `GET /healthz` answers 200 while the backend's health switch is on and 503 while it is off, so
//! a demo or a test can make a version fail its health checks without stopping it;
//! `POST /healthz/off` and `POST /healthz/on` flip the switch from outside. Every other request
//! gets the name in the body and in the `x-backend` header.
//!
//! A few paths exist for the proxy's tests: `/slow?ms=N` answers after N milliseconds (a request
//! still in flight when its version is switched away); `POST /hang` reads the request and closes
//! the connection without answering (a member dying under a request, which must not be
//! replayed); `GET /stats` shows how many requests of each method it answered, as JSON
//! `{"GET": n, "POST": n}`, health checks and `/stats` itself not counted; `/bytes?n=N` answers
//! N bytes (at most 1 MiB; the proxy benchmark's large-body case); `/status?code=N` answers
//! with status N (200 to 599; a version that fails some requests, for the measured gates);
//! `POST /fail?percent=N` makes N of every 100 ordinary requests that follow answer 500 (a
//! version that fails a share of its requests; `percent=0` heals it).
//!
//! On shutdown (SIGTERM, what `docker stop` sends) it behaves like a careful app: it keeps
//! serving for its stop delay (the time its deregistration takes to reach clients), then stops
//! accepting, lets open requests finish and closes idle keep-alive connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// A running backend.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: Arc<str>,
    healthy: Arc<AtomicBool>,
    counts: Arc<MethodCounts>,
    /// The percent of ordinary requests answered 500, and how many were answered so far.
    failing: Arc<(AtomicU64, AtomicU64)>,
    /// The accept loop and every connection.
    tasks: TaskTracker,
}

/// Requests answered per method, for `GET /stats`.
#[derive(Default)]
struct MethodCounts {
    get: AtomicU64,
    post: AtomicU64,
    other: AtomicU64,
}

/// Why a request was dropped on purpose (`POST /hang`): hyper closes the connection unanswered.
#[derive(Debug, thiserror::Error)]
#[error("closing the connection without an answer, as asked")]
struct Hang;

/// The longest `/slow` wait, so a typo cannot hold a connection for hours.
const MAX_SLOW_MS: u64 = 60_000;
/// The largest body `/bytes?n=` answers.
const MAX_BYTES: usize = 1 << 20;

/// What `/bytes` answers slices of, made once.
static BYTES: std::sync::LazyLock<Bytes> =
    std::sync::LazyLock::new(|| Bytes::from(vec![b'x'; MAX_BYTES]));

/// The number in `name=N` in a query string, if there is one.
fn query_number(req: &Request<hyper::body::Incoming>, name: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
        .parse()
        .ok()
}

impl Backend {
    /// Completes once the backend stopped accepting and its last connection ended.
    pub async fn closed(&self) {
        self.tasks.wait().await;
    }

    /// Turns the health endpoint's answer to 200 (`true`) or 503 (`false`).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Makes `percent` of every 100 ordinary requests answer 500 (0 heals it).
    pub fn set_failing(&self, percent: u8) {
        self.failing
            .0
            .store(u64::from(percent.min(100)), Ordering::SeqCst);
    }

    /// Whether this ordinary request is one of the share that fails: exactly `percent` of
    /// every 100 in a row, spread out.
    fn fails_now(&self) -> bool {
        let percent = self.failing.0.load(Ordering::Relaxed);
        let n = self.failing.1.fetch_add(1, Ordering::Relaxed);
        percent > 0 && (n % 100) * percent % 100 < percent
    }
}

/// Binds `addr` and serves until `shutdown`. Returns the backend with its bound address.
pub async fn spawn(
    addr: SocketAddr,
    name: &str,
    shutdown: CancellationToken,
) -> io::Result<Backend> {
    spawn_with(addr, name, shutdown, Duration::ZERO).await
}

/// Like [`spawn`], but after `shutdown` it goes on serving for `stop_delay` before it stops
/// accepting; [`Backend::closed`] completes once its last connection has ended.
pub async fn spawn_with(
    addr: SocketAddr,
    name: &str,
    shutdown: CancellationToken,
    stop_delay: Duration,
) -> io::Result<Backend> {
    let listener = TcpListener::bind(addr).await?;
    let backend = Backend {
        addr: listener.local_addr()?,
        name: Arc::from(name),
        healthy: Arc::new(AtomicBool::new(true)),
        counts: Arc::default(),
        failing: Arc::default(),
        tasks: TaskTracker::new(),
    };
    let served = backend.clone();
    let tasks = backend.tasks.clone();
    // Connections close (gracefully) once the accept loop has ended.
    let closing = CancellationToken::new();
    let shutdown_closing = closing.clone();
    backend.tasks.spawn(async move {
        let _closing = shutdown_closing.drop_guard();
        let stop_at = async {
            shutdown.cancelled().await;
            tokio::time::sleep(stop_delay).await;
        };
        tokio::pin!(stop_at);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        debug!(%error, "backend accept failed");
                        continue;
                    }
                },
                () = &mut stop_at => break,
            };
            let this = served.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let this = this.clone();
                async move { this.serve(req).await }
            });
            let conn_shutdown = closing.clone();
            tasks.spawn(async move {
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = conn_shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    });
    backend.tasks.close();
    Ok(backend)
}

impl Backend {
    /// Answers one request; an error makes hyper close the connection without an answer.
    async fn serve(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Hang> {
        let path = req.uri().path();
        if !path.starts_with("/healthz") && path != "/stats" {
            let counter = match *req.method() {
                hyper::Method::GET => &self.counts.get,
                hyper::Method::POST => &self.counts.post,
                _ => &self.counts.other,
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
        if path == "/hang" && req.method() == hyper::Method::POST {
            // Read the whole request first, so the client has sent everything it will send.
            let _ = req.into_body().collect().await;
            return Err(Hang);
        }
        if path == "/slow" {
            let ms = query_number(&req, "ms").unwrap_or(0).min(MAX_SLOW_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if path == "/bytes" {
            let n = query_number(&req, "n").map_or(0, |n| n.min(MAX_BYTES as u64) as usize);
            return Ok(Response::builder()
                .header("x-backend", &*self.name)
                .header("content-type", "application/octet-stream")
                .body(Full::new(BYTES.slice(..n)))
                .expect("static response"));
        }
        if path == "/stats" {
            let body = format!(
                "{{\"GET\": {}, \"POST\": {}}}\n",
                self.counts.get.load(Ordering::SeqCst),
                self.counts.post.load(Ordering::SeqCst)
            );
            return Ok(Response::builder()
                .header("x-backend", &*self.name)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("static response"));
        }
        if path == "/fail" && req.method() == hyper::Method::POST {
            let percent = query_number(&req, "percent").unwrap_or(0).min(100);
            self.set_failing(percent as u8);
        } else if !path.starts_with("/healthz") && self.fails_now() {
            return Ok(Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header("x-backend", &*self.name)
                .body(Full::new(Bytes::from_static(b"failing on purpose\n")))
                .expect("static response"));
        }
        let mut response = self.answer(&req);
        if path == "/status"
            && let Some(code) = query_number(&req, "code")
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (200..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
        {
            *response.status_mut() = code;
        }
        Ok(response)
    }

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
