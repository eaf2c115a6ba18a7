//! The front proxy through the real daemon: real backends on their own loopback addresses (each
//! answers its name in `x-backend`), promotions driven through the API, and a client that keeps
//! sending requests all along and counts every failure.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aliasd::backend::Backend;
use aliasd::daemon::Ready;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Version;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{
    Daemon, FAST_PROMOTION, Fixture, StopOnDrop, alias, post, spawn_backends, switch_to_v2,
    wait_for, wait_healthy,
};

/// An HTTP proxy for `web` on a free port.
const HTTP_PROXY: &str = "\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n";

/// In-process backends for `web-v1` and `web-v2` on 127.0.`net`.x, and aliasd for them.
struct Setup {
    fixture: Fixture,
    v1: Vec<Backend>,
    /// Stops every backend of the setup when dropped.
    _stop: StopOnDrop,
}

impl Setup {
    /// `v1_extra` are more `web-v1` endpoints (backends run elsewhere); `extra` is more TOML.
    async fn new(net: u8, v1: usize, v2: usize, v1_extra: &[SocketAddr], extra: &str) -> Self {
        let stop = CancellationToken::new();
        let v1 = spawn_backends(net, 1, v1, "web-v1", &stop).await;
        let v2 = spawn_backends(net, 101, v2, "web-v2", &stop).await;
        let mut v1_addrs: Vec<SocketAddr> = v1.iter().map(|b| b.addr).collect();
        v1_addrs.extend_from_slice(v1_extra);
        let v2_addrs: Vec<SocketAddr> = v2.iter().map(|b| b.addr).collect();
        let fixture = Fixture::for_backends_with(
            &[("web-v1", &v1_addrs), ("web-v2", &v2_addrs)],
            &[("web", &["web-v1"])],
            &format!("{FAST_PROMOTION}{extra}"),
        );
        Self {
            fixture,
            v1,
            _stop: StopOnDrop(stop),
        }
    }

    /// Starts aliasd; returns it and its proxies' addresses, in config order.
    fn start(&self) -> (Daemon, Vec<SocketAddr>) {
        let daemon = self.fixture.start();
        let bytes = std::fs::read(self.fixture.dir.path().join("ready.json")).expect("ready");
        let ready: Ready = serde_json::from_slice(&bytes).expect("ready file is JSON");
        assert_eq!(ready.api, daemon.api);
        (daemon, ready.proxies)
    }
}

fn stable_on(service: &'static str) -> impl Fn(&Value) -> bool {
    move |a| a["phase"] == "stable" && a["targets"] == json!([service])
}

// ---- a client under constant load ----

/// One request of the load: when it started, and the backend that answered or why it failed.
#[derive(Debug, Clone)]
struct Outcome {
    started: Instant,
    result: Result<String, String>,
}

/// Workers sending `GET /` through the proxy one after another (keep-alive), until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    workers: Vec<JoinHandle<Vec<Outcome>>>,
}

/// At most this many requests per worker, and this long: every loop ends by itself.
const LOAD_MAX_REQUESTS: usize = 20_000;
const LOAD_MAX_TIME: Duration = Duration::from_secs(25);

impl Load {
    fn start(proxy: SocketAddr, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let workers = (0..workers)
            .map(|_| tokio::spawn(load_worker(proxy, stop.clone(), ok.clone())))
            .collect();
        Self { stop, ok, workers }
    }

    /// Waits until `n` more requests succeeded (at most 10 s).
    async fn wait_ok(&self, n: u64) {
        let target = self.ok.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ok.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.await.expect("load worker"));
        }
        all.sort_by_key(|o| o.started);
        all
    }
}

async fn load_worker(proxy: SocketAddr, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>) -> Vec<Outcome> {
    // No client-side retries: every failure the proxy lets through is counted.
    let client = Client::builder(TokioExecutor::new())
        .retry_canceled_requests(false)
        .build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://{proxy}/").parse().unwrap();
    let deadline = Instant::now() + LOAD_MAX_TIME;
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) && out.len() < LOAD_MAX_REQUESTS && Instant::now() < deadline
    {
        let started = Instant::now();
        let result = async {
            let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri.clone()))
                .await
                .map_err(|_| "no answer within 5s".to_owned())?
                .map_err(|e| format!("transport: {e:?}"))?;
            let status = response.status();
            let backend = response
                .headers()
                .get("x-backend")
                .map_or(String::new(), |v| v.to_str().unwrap_or("").to_owned());
            let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
                .await
                .map_err(|_| "body not complete within 5s".to_owned())?
                .map_err(|e| format!("body: {e:?}"))?
                .to_bytes();
            if status.is_success() {
                Ok(backend)
            } else {
                Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
            }
        }
        .await;
        if result.is_ok() {
            ok.fetch_add(1, Ordering::SeqCst);
        }
        out.push(Outcome { started, result });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    out
}

fn failures(outcomes: &[Outcome]) -> Vec<&String> {
    outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .collect()
}

/// The backends that answered requests started in `from..to`.
fn answered(outcomes: &[Outcome], from: Instant, to: Instant) -> BTreeSet<&str> {
    outcomes
        .iter()
        .filter(|o| o.started >= from && o.started < to)
        .filter_map(|o| o.result.as_deref().ok())
        .collect()
}

// ---- raw HTTP/1.1 on one connection ----

/// Sends `request` on `stream` and reads one answer (its body has a Content-Length); `None`
/// if the connection closed or failed first.
pub(crate) async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Option<String> {
    stream.write_all(request).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize =
                header_of(&text, "content-length").map_or(0, |v| v.parse().unwrap());
            if buf.len() >= end + 4 + length {
                return Some(text);
            }
        }
    }
}

pub(crate) const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: web.internal\r\n\r\n";

fn header_of(response: &str, name: &str) -> Option<String> {
    response.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

// ---- the scenarios ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_under_load_fails_no_request_and_ends_on_v2() {
    let setup = Setup::new(71, 2, 2, &[], HTTP_PROXY).await;
    let (daemon, proxies) = setup.start();
    let proxy = proxies[0];
    wait_healthy(&daemon).await;

    // One keep-alive connection held across the switch: each of its requests is routed anew.
    let mut kept = TcpStream::connect(proxy).await.unwrap();
    let first = exchange(&mut kept, GET).await.expect("an answer");
    assert_eq!(header_of(&first, "x-backend").as_deref(), Some("web-v1"));

    let load = Load::start(proxy, 4);
    load.wait_ok(100).await;
    let (status, reply) = post(&daemon, "/v1/aliases/web/promote", json!({"to": "web-v2"})).await;
    assert_eq!(status, 202, "{reply}");
    wait_for(
        &daemon,
        Duration::from_secs(15),
        "on web-v2",
        stable_on("web-v2"),
    )
    .await;
    let completed = Instant::now();
    load.wait_ok(200).await;
    let outcomes = load.finish().await;

    assert_eq!(failures(&outcomes), Vec::<&String>::new());
    let far = completed + Duration::from_secs(3600);
    let before = answered(&outcomes, outcomes[0].started, completed);
    assert!(
        before.contains("web-v1") && before.contains("web-v2"),
        "{before:?}"
    );
    assert_eq!(
        answered(&outcomes, completed, far),
        BTreeSet::from(["web-v2"])
    );

    let again = exchange(&mut kept, GET)
        .await
        .expect("the kept connection still works");
    assert_eq!(header_of(&again, "x-backend").as_deref(), Some("web-v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_rollback_under_load_fail_no_request() {
    let setup = Setup::new(72, 1, 1, &[], HTTP_PROXY).await;
    let (daemon, proxies) = setup.start();
    wait_healthy(&daemon).await;
    let load = Load::start(proxies[0], 4);
    load.wait_ok(50).await;

    // A long observe window, aborted while both versions take requests.
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "observe": "20s"}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    wait_for(&daemon, Duration::from_secs(5), "mixed", |a| {
        a["phase"] == "mixed"
    })
    .await;
    let mixed = Instant::now();
    load.wait_ok(200).await;
    let (status, reply) = post(&daemon, "/v1/aliases/web/abort", json!({"reason": "test"})).await;
    assert_eq!(status, 200, "{reply}");
    let aborted = Instant::now();
    load.wait_ok(100).await;

    // Promote again, to the end, then roll back.
    // Taken before the request: v2 may answer before the 202 arrives.
    let promoted = Instant::now();
    let (status, reply) = post(&daemon, "/v1/aliases/web/promote", json!({"to": "web-v2"})).await;
    assert_eq!(status, 202, "{reply}");
    wait_for(
        &daemon,
        Duration::from_secs(15),
        "on web-v2",
        stable_on("web-v2"),
    )
    .await;
    load.wait_ok(100).await;
    let (status, reply) = post(&daemon, "/v1/aliases/web/rollback", json!({})).await;
    assert_eq!(status, 202, "{reply}");
    wait_for(
        &daemon,
        Duration::from_secs(15),
        "back on web-v1",
        stable_on("web-v1"),
    )
    .await;
    let rolled_back = Instant::now();
    load.wait_ok(100).await;
    let outcomes = load.finish().await;

    assert_eq!(failures(&outcomes), Vec::<&String>::new());
    let far = rolled_back + Duration::from_secs(3600);
    assert_eq!(
        answered(&outcomes, mixed, aborted),
        BTreeSet::from(["web-v1", "web-v2"]),
        "both answer while mixed"
    );
    // The abort is answered once published: from then on v2 gets nothing new.
    assert_eq!(
        answered(&outcomes, aborted, promoted),
        BTreeSet::from(["web-v1"])
    );
    assert!(answered(&outcomes, promoted, rolled_back).contains("web-v2"));
    assert_eq!(
        answered(&outcomes, rolled_back, far),
        BTreeSet::from(["web-v1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_in_flight_at_the_switch_complete_on_v1_and_hold_the_drain() {
    let setup = Setup::new(73, 1, 1, &[], HTTP_PROXY).await;
    let (daemon, proxies) = setup.start();
    let proxy = proxies[0];
    wait_healthy(&daemon).await;

    let slow: Vec<JoinHandle<(u16, String, Instant)>> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
                let uri = format!("http://{proxy}/slow?ms=3000").parse().unwrap();
                let response = client.get(uri).await.expect("an answer");
                let status = response.status().as_u16();
                let backend = response.headers()["x-backend"].to_str().unwrap().to_owned();
                response
                    .into_body()
                    .collect()
                    .await
                    .expect("the whole body");
                (status, backend, Instant::now())
            })
        })
        .collect();
    // All four reached v1 before the switch (its /stats counts a request when it arrives).
    let stats_uri: hyper::Uri = format!("http://{}/stats", setup.v1[0].addr)
        .parse()
        .unwrap();
    let direct = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = direct.get(stats_uri.clone()).await.unwrap().into_body();
        let stats: Value =
            serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
        if stats["GET"].as_u64() == Some(4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slow requests did not arrive: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    switch_to_v2(&daemon).await;
    let switched = Instant::now();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("http://{proxy}/").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-backend"], "web-v2");

    // The work still open on v1 shows in /metrics...
    let metrics = client
        .get(format!("{}/metrics", daemon.server_url()).parse().unwrap())
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let metrics = String::from_utf8_lossy(&metrics);
    let line = format!(
        "aliasd_proxy_in_flight{{proxy=\"{proxy}\",alias=\"web.internal\",member=\"{}\"}} 4",
        setup.v1[0].addr
    );
    assert!(
        metrics.lines().any(|l| l == line),
        "no `{line}` in:\n{metrics}"
    );

    // ...and in the alias, with the drain waiting for it...
    let draining = alias(&daemon).await;
    assert_eq!(draining["phase"], "draining", "{draining}");
    assert_eq!(draining["drain"]["proxy_inflight"], 4, "{draining}");
    assert_eq!(draining["drain"]["services"], json!(["web-v1"]));
    let v1_member = draining["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["service"] == "web-v1")
        .unwrap();
    assert_eq!(
        (v1_member["role"].as_str(), v1_member["inflight"].as_u64()),
        (Some("draining"), Some(4))
    );

    // ...and holds the drain open past its TTL window (1.2 s) until the requests are done.
    let mut last_draining = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !slow.iter().all(JoinHandle::is_finished) {
        assert!(Instant::now() < deadline, "the slow requests never ended");
        if alias(&daemon).await["phase"] == "draining" {
            last_draining = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = last_draining.map(|t| t.duration_since(switched));
    assert!(
        held.is_some_and(|h| h >= Duration::from_millis(1800)),
        "the drain ended {held:?} after the switch, with slow requests still in flight"
    );
    for task in slow {
        let (status, backend, ended) = task.await.unwrap();
        assert_eq!((status, backend.as_str()), (200, "web-v1"));
        assert!(ended > switched, "a slow request ended before the switch");
    }
    wait_for(
        &daemon,
        Duration::from_secs(5),
        "on web-v2",
        stable_on("web-v2"),
    )
    .await;
}

/// `aliasd backend` in its own process, so a test can SIGKILL it.
struct ChildBackend {
    child: Child,
    addr: SocketAddr,
}

impl ChildBackend {
    fn spawn(ip: Ipv4Addr, name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["backend", "--listen", &format!("{ip}:0"), "--name", name])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn aliasd backend");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the bound address");
        let addr = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("`aliasd backend` printed {line:?}")
        });
        Self { child, addr }
    }
}

impl Drop for ChildBackend {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_with_sigkill_costs_no_request() {
    let mut a = ChildBackend::spawn(Ipv4Addr::new(127, 0, 74, 1), "web-v1-a");
    let b = ChildBackend::spawn(Ipv4Addr::new(127, 0, 74, 2), "web-v1-b");
    let setup = Setup::new(74, 0, 1, &[a.addr, b.addr], HTTP_PROXY).await;
    let (daemon, proxies) = setup.start();
    wait_healthy(&daemon).await;

    let load = Load::start(proxies[0], 4);
    load.wait_ok(200).await;
    // SIGKILL (what `Child::kill` sends), by the PID this test started.
    a.child.kill().expect("kill -9");
    a.child.wait().expect("reaped");
    let killed = Instant::now();
    load.wait_ok(300).await;
    // Until the health checks take it out of the answers, and after.
    wait_for(
        &daemon,
        Duration::from_secs(5),
        "a out of the answers",
        |v| v["endpoints"] == json!([b.addr.to_string()]),
    )
    .await;
    load.wait_ok(100).await;
    let outcomes = load.finish().await;

    assert_eq!(failures(&outcomes), Vec::<&String>::new());
    let far = killed + Duration::from_secs(3600);
    assert_eq!(
        answered(&outcomes, outcomes[0].started, killed),
        BTreeSet::from(["web-v1-a", "web-v1-b"])
    );
    assert_eq!(
        answered(&outcomes, killed, far),
        BTreeSet::from(["web-v1-b"])
    );
}

/// A raw HTTP/1.1 backend that answers the first request on each connection (keep-alive) and
/// closes the connection, unanswered, on the second: a member closing a pooled connection just
/// as the proxy sends on it. It records every request it read.
struct Closer {
    addr: SocketAddr,
    /// (connection number, request on that connection, the request's head and body)
    seen: Arc<Mutex<Vec<(usize, usize, String)>>>,
    task: JoinHandle<()>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Closer {
    async fn spawn(ip: Ipv4Addr) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(usize, usize, String)>>> = Arc::default();
        let conns = Arc::new(AtomicUsize::new(0));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let conn = conns.fetch_add(1, Ordering::SeqCst) + 1;
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    for nth in 1.. {
                        // One whole request: the head, then Content-Length bytes of body.
                        let request = loop {
                            let text = String::from_utf8_lossy(&buf).into_owned();
                            if let Some(end) = text.find("\r\n\r\n") {
                                let length = header_of(&text[..end], "content-length")
                                    .map_or(0, |v| v.parse::<usize>().unwrap());
                                if buf.len() >= end + 4 + length {
                                    let request: Vec<u8> = buf.drain(..end + 4 + length).collect();
                                    break String::from_utf8_lossy(&request).into_owned();
                                }
                            }
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        record.lock().unwrap().push((conn, nth, request));
                        if nth > 1 {
                            return;
                        }
                        let answer =
                            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-backend: closer\r\n\r\nok\n";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<(usize, usize, String)> {
        self.seen.lock().unwrap().clone()
    }
}

/// Sends one request through a client that keeps its connection; status and body.
async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    method: &str,
    uri: &str,
    body: &'static str,
) -> (u16, String) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = client.request(request).await.expect("the proxy answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One client connection to `addr`: its requests all reach the same proxy thread, and so the
/// same pool of member connections.
async fn one_connection(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one request on `sender` (with `addr` as Host) and reads the whole answer.
async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    body: &'static str,
) -> (u16, String) {
    sender.ready().await.expect("the proxy connection is open");
    let request = hyper::Request::builder()
        .method(method)
        .uri("/")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .expect("the proxy answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_that_cannot_have_been_acted_on_are_retried() {
    let closer = Closer::spawn(Ipv4Addr::new(127, 0, 75, 50)).await;
    let extra = format!(
        r#"{HTTP_PROXY}
[[service]]
name = "flaky"
endpoints = ["{}"]
[service.health]
kind = "none"

[[alias]]
name = "flaky"
targets = ["flaky"]

[[proxy]]
listen = "127.0.0.1:0"
alias = "flaky"
"#,
        closer.addr
    );
    let setup = Setup::new(75, 1, 0, &[], &extra).await;
    let (daemon, proxies) = setup.start();
    wait_healthy(&daemon).await;
    let client = Client::builder(TokioExecutor::new())
        .retry_canceled_requests(false)
        .build_http::<Full<Bytes>>();

    // A POST the member reads and then drops its connection on is not sent again: the member
    // may have acted on it. The proxy answers 502 and the member saw exactly one POST.
    let web = format!("http://{}", proxies[0]);
    assert_eq!(send(&client, "GET", &format!("{web}/"), "").await.0, 200);
    let (status, body) = send(&client, "POST", &format!("{web}/hang"), "pay me once").await;
    assert_eq!(status, 502, "{body}");
    let (status, stats) = send(
        &client,
        "GET",
        &format!("http://{}/stats", setup.v1[0].addr),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["POST"], 1, "{stats}");

    // A GET on a pooled connection the member closed instead of answering is replayed once, on
    // a new connection, and succeeds. (One client connection, so one proxy thread and one pool
    // of member connections; the pooled connection is back before the answer's last byte.)
    let mut flaky = one_connection(proxies[1]).await;
    assert_eq!(
        send_on(&mut flaky, proxies[1], "GET", "").await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        send_on(&mut flaky, proxies[1], "GET", "").await,
        (200, "ok\n".to_owned())
    );
    let seen = closer.seen();
    let order: Vec<(usize, usize)> = seen.iter().map(|(c, n, _)| (*c, *n)).collect();
    assert_eq!(order, [(1, 1), (1, 2), (2, 1)], "{seen:#?}");

    // A POST on a pooled connection that closes the same way is not replayed.
    let (status, _) = send_on(&mut flaky, proxies[1], "POST", "once").await;
    assert_eq!(status, 502);
    let seen = closer.seen();
    let posts = seen
        .iter()
        .filter(|(_, _, r)| r.starts_with("POST "))
        .count();
    assert_eq!(posts, 1, "{seen:#?}");

    // Every request carried who asked, for the member's logs.
    let first = &seen[0].2;
    assert_eq!(
        header_of(first, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        header_of(first, "forwarded"),
        Some(format!("for=127.0.0.1;proto=http;host=\"{}\"", proxies[1]))
    );
    assert_eq!(header_of(first, "host"), Some(proxies[1].to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_close_http2_and_large_bodies_all_work() {
    let setup = Setup::new(76, 1, 0, &[], HTTP_PROXY).await;
    let (daemon, proxies) = setup.start();
    let proxy = proxies[0];
    wait_healthy(&daemon).await;

    // HTTP/1.1 keep-alive: several requests on one connection.
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    for _ in 0..3 {
        let answer = exchange(&mut stream, GET).await.expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(header_of(&answer, "x-backend").as_deref(), Some("web-v1"));
        assert_eq!(header_of(&answer, "connection"), None);
    }

    // Connection: close: one answer, then the proxy closes.
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web.internal\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("the proxy closes after the answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&all);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(header_of(&answer, "connection").as_deref(), Some("close"));
    assert!(answer.ends_with("web-v1\n"), "{answer}");

    // HTTP/2 with prior knowledge, several streams on one connection, and a request body.
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let uri = format!("http://{proxy}/");
    let requests = (0..8).map(|i| {
        let body = if i % 2 == 0 {
            ""
        } else {
            "a body for the member"
        };
        let request = hyper::Request::builder()
            .method(if i % 2 == 0 { "GET" } else { "POST" })
            .uri(&uri)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        h2.request(request)
    });
    for response in futures_join(requests).await {
        let response = response.expect("an HTTP/2 answer");
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-backend"], "web-v1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"web-v1\n");
    }

    // A 64 KiB body arrives whole, on HTTP/1.1 and on HTTP/2.
    let h1 = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for client in [&h1, &h2] {
        let response = client
            .get(format!("http://{proxy}/bytes?n=65536").parse().unwrap())
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 65536);
        assert!(body.iter().all(|&b| b == b'x'));
    }
}

/// Runs futures at once and returns their outputs in order.
async fn futures_join<F: Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<JoinHandle<F::Output>> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_outlive_a_switch_until_the_drain_deadline() {
    let proxy = "\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\nmode = \"tcp\"\ndrain_deadline = \"2s\"\n";
    let setup = Setup::new(77, 1, 1, &[], proxy).await;
    let (daemon, proxies) = setup.start();
    let proxy = proxies[0];
    wait_healthy(&daemon).await;

    let backend_of = |answer: Option<String>| answer.and_then(|a| header_of(&a, "x-backend"));
    let mut long = TcpStream::connect(proxy).await.unwrap();
    assert_eq!(
        backend_of(exchange(&mut long, GET).await).as_deref(),
        Some("web-v1")
    );

    let (status, reply) = post(&daemon, "/v1/aliases/web/promote", json!({"to": "web-v2"})).await;
    assert_eq!(status, 202, "{reply}");
    wait_for(
        &daemon,
        Duration::from_secs(5),
        "v1 out of the answers",
        |a| a["answering"] == json!(["web-v2"]),
    )
    .await;
    let left = Instant::now();

    // New connections go to v2; the old one stays on v1 until the deadline, then is closed.
    let mut fresh = TcpStream::connect(proxy).await.unwrap();
    assert_eq!(
        backend_of(exchange(&mut fresh, GET).await).as_deref(),
        Some("web-v2")
    );
    let mut last_ok = None;
    let closed = loop {
        match backend_of(exchange(&mut long, GET).await) {
            Some(b) => {
                assert_eq!(b, "web-v1", "a connection moved members");
                last_ok = Some(Instant::now());
            }
            None => break Instant::now(),
        }
        assert!(
            left.elapsed() < Duration::from_secs(8),
            "the drained connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last_ok = last_ok.expect("the old connection worked after the switch");
    assert!(
        last_ok.duration_since(left) >= Duration::from_secs(1),
        "closed {:?} after the switch, before the 2s drain deadline",
        closed.duration_since(left)
    );
    // The new connection is untouched.
    assert_eq!(
        backend_of(exchange(&mut fresh, GET).await).as_deref(),
        Some("web-v2")
    );
    wait_for(
        &daemon,
        Duration::from_secs(10),
        "on web-v2",
        stable_on("web-v2"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_stops() {
    let setup = Setup::new(78, 1, 0, &[], HTTP_PROXY).await;
    let (daemon, proxies) = setup.start();
    let proxy = proxies[0];
    wait_healthy(&daemon).await;

    let slow = tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri = format!("http://{proxy}/slow?ms=1000").parse().unwrap();
        let response = client.get(uri).await.expect("an answer");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the whole body");
        (status, body.to_bytes())
    });
    // The request reached the member before the signal.
    let stats_uri: hyper::Uri = format!("http://{}/stats", setup.v1[0].addr)
        .parse()
        .unwrap();
    let direct = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = direct.get(stats_uri.clone()).await.unwrap().into_body();
        let stats: Value =
            serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
        if stats["GET"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the request did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let status = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"web-v1\n"[..]));
    assert!(
        TcpStream::connect(proxy).await.is_err(),
        "the proxy still accepts after it stopped"
    );
}
