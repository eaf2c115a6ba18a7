//! `aliasd probe`: a client that uses an alias the way an app does, to prove a deploy costs no
//! request. Before every request it resolves the name with the system resolver (glibc's
//! `getaddrinfo`, so `/etc/resolv.conf` and whatever DNS it names, aliasd included), connects
//! to the first address, sends `GET` and counts anything but a 2xx answer as a failure.
//!
//! It runs until SIGTERM or its duration is over, then prints one JSON line: how many requests,
//! how many failed and why, and how many each backend (the `x-backend` header) answered.
//! Attempts before the first success are counted apart (`waiting`), not as failures: an app
//! started beside its dependency (compose's `depends_on` does not wait for health) waits for it
//! to come up; the deploy being proved starts later.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The most failure messages a report keeps (the count is always whole).
const MAX_ERRORS: usize = 20;

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `host:port`: the name to resolve before every request, and the port.
    pub target: String,
    pub path: String,
    /// Pause between requests.
    pub interval: Duration,
    /// How long one request (resolve, connect, answer) may take.
    pub timeout: Duration,
    /// Stop after this long even without SIGTERM.
    pub duration: Duration,
}

/// What a probe saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub requests: u64,
    /// Attempts before the first success (the target was not up yet); not failures.
    #[serde(default)]
    pub waiting: u64,
    /// Failed requests after the first success.
    pub failures: u64,
    /// Answers per backend name.
    pub backends: BTreeMap<String, u64>,
    /// Answers per address the name resolved to.
    pub addresses: BTreeMap<String, u64>,
    /// The first failures, with when they happened (ms since the start).
    pub errors: Vec<String>,
}

/// Runs the probe until `stop` or its duration is over.
pub async fn run(options: &ProbeOptions, stop: CancellationToken) -> ProbeReport {
    let started = Instant::now();
    let mut report = ProbeReport::default();
    while started.elapsed() < options.duration && !stop.is_cancelled() {
        report.requests += 1;
        let attempt = tokio::time::timeout(options.timeout, once(options)).await;
        match attempt {
            Ok(Ok((addr, backend))) => {
                *report.backends.entry(backend).or_default() += 1;
                *report.addresses.entry(addr).or_default() += 1;
            }
            Ok(Err(_)) | Err(_) if report.backends.is_empty() => report.waiting += 1,
            Ok(Err(e)) => fail(&mut report, started, e),
            Err(_) => fail(
                &mut report,
                started,
                format!("no answer within {}ms", options.timeout.as_millis()),
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(options.interval) => {}
            () = stop.cancelled() => break,
        }
    }
    report
}

fn fail(report: &mut ProbeReport, started: Instant, error: String) {
    report.failures += 1;
    if report.errors.len() < MAX_ERRORS {
        report
            .errors
            .push(format!("at {}ms: {error}", started.elapsed().as_millis()));
    }
}

/// One request: resolve, connect to the first address, `GET`. Returns the address and the
/// backend that answered.
async fn once(options: &ProbeOptions) -> Result<(String, String), String> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&options.target)
        .await
        .map_err(|e| format!("resolve {}: {e}", options.target))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| format!("resolve {}: no address", options.target))?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let driver = tokio::spawn(conn);
    let host = options
        .target
        .rsplit_once(':')
        .map_or(options.target.as_str(), |(h, _)| h);
    let request = Request::get(options.path.as_str())
        .header("host", host)
        .header("user-agent", "aliasd-probe")
        .header("connection", "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let status = response.status();
    let backend = response
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    let body = response.into_body().collect().await;
    driver.abort();
    body.map_err(|e| format!("{addr}: body: {e}"))?;
    if status.is_success() {
        Ok((addr.to_string(), backend))
    } else {
        Err(format!("{addr}: status {status} from {backend}"))
    }
}
