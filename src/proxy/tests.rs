//! Unit tests of the proxy: the `[[proxy]]` config section, and a real daemon started in this
//! process (so the counters can be read directly) in front of real backends on loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::backend::{self, Backend};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::gates::Window;
use crate::testkit::{self, ConfigDir};

/// A config with `web` linked to `web-v1` at `v1`, and `extra` appended.
fn config_text(v1: &[SocketAddr], extra: &str) -> String {
    let v1: Vec<String> = v1.iter().map(ToString::to_string).collect();
    let v1: Vec<&str> = v1.iter().map(String::as_str).collect();
    testkit::config(
        r#"["127.0.0.1:0"]"#,
        "udp_sockets = 1",
        &format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n\n[health]\nkind = \"none\"\n\n{}\n{}\n{}\n{}{extra}",
            testkit::service("web-v1", &v1),
            testkit::service("empty", &[]),
            testkit::alias("web", &["web-v1"]),
            testkit::alias("nothing", &["empty"]),
        ),
    )
}

/// The zone file's directory; configs are parsed as if they were `aliasd.toml` in it.
struct Dir(ConfigDir);

impl Dir {
    fn new() -> Self {
        Self(ConfigDir::internal())
    }

    fn path(&self) -> PathBuf {
        self.0.path()
    }

    fn parse(&self, text: &str) -> Result<Config, Vec<String>> {
        self.0.try_parse(text).map_err(|e| e.problems)
    }
}

/// An in-process daemon; stops when dropped.
struct Running {
    daemon: Daemon,
    stop: CancellationToken,
    _dir: Dir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Running {
    async fn start(v1: &[SocketAddr], proxies: &str) -> Self {
        let dir = Dir::new();
        let config = dir
            .parse(&config_text(v1, proxies))
            .unwrap_or_else(|p| panic!("{}", p.join("\n")));
        let stop = CancellationToken::new();
        let daemon = Daemon::start(config, stop.clone()).await.expect("starts");
        Self {
            daemon,
            stop,
            _dir: dir,
        }
    }

    fn proxy(&self, i: usize) -> SocketAddr {
        self.daemon.ready.proxies[i]
    }

    fn counts(&self, proxy: usize, member: SocketAddr) -> MemberCounts {
        self.daemon
            .proxy_stats
            .member(self.proxy(proxy), &ep(member))
            .expect("a member of the proxy")
    }
}

fn ep(addr: SocketAddr) -> Endpoint {
    addr.to_string().parse().unwrap()
}

async fn backends(net: u8, n: u8, name: &str, stop: &CancellationToken) -> Vec<Backend> {
    let mut out = Vec::new();
    for i in 1..=n {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, net, i));
        out.push(
            backend::spawn(SocketAddr::new(ip, 0), name, stop.clone())
                .await
                .unwrap(),
        );
    }
    out
}

/// A loopback address where nothing listens: bound once for a port, then closed.
async fn dead_addr(ip: Ipv4Addr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    listener.local_addr().unwrap()
}

/// GET `path` through `proxy`; the status, the `x-backend` header and the body.
async fn get(proxy: SocketAddr, path: &str) -> (u16, String, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("http://{proxy}{path}").parse().unwrap())
        .await
        .expect("the proxy answers");
    let status = response.status().as_u16();
    let backend = response
        .headers()
        .get("x-backend")
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, backend, String::from_utf8_lossy(&body).into_owned())
}

// ---- config ----

#[test]
fn a_proxy_section_parses_with_its_defaults() {
    let dir = Dir::new();
    let config = dir
        .parse(&config_text(
            &["127.0.0.1:8080".parse().unwrap()],
            "[[proxy]]\nlisten = \"127.0.0.1:8000\"\nalias = \"web\"\n",
        ))
        .unwrap();
    assert_eq!(
        config.proxies,
        [ProxyConfig {
            listen: "127.0.0.1:8000".parse().unwrap(),
            alias: crate::model::AliasName::resolve(
                "web.internal.",
                &hickory_proto::rr::Name::root()
            )
            .unwrap(),
            mode: ProxyMode::Http,
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            backend_idle_timeout: Duration::from_secs(4),
            drain_deadline: Duration::from_secs(30),
            max_connections: 10_000,
            header_timeout: Duration::from_secs(30),
            client_header: None,
            fast_path: true,
        }]
    );
}

#[test]
fn every_proxy_key_is_read() {
    let dir = Dir::new();
    let config = dir
        .parse(&config_text(
            &["127.0.0.1:8080".parse().unwrap()],
            r#"
[[proxy]]
listen = "127.0.0.1:0"
alias = "web.internal."
mode = "tcp"
connect_timeout = "150ms"
idle_timeout = 5
request_timeout = "3s"
backend_idle_timeout = "1s"
drain_deadline = "0s"
max_connections = 7

[[proxy]]
listen = "127.0.0.1:0"
alias = "nothing"
client_header = "X-Real-IP"
trusted = ["10.0.0.0/8", "127.0.0.1", "fd00::/8"]
fast_path = false
"#,
        ))
        .unwrap();
    let p = &config.proxies[0];
    assert_eq!(p.alias.to_string(), "web.internal");
    assert_eq!(p.mode, ProxyMode::Tcp);
    assert_eq!(p.connect_timeout, Duration::from_millis(150));
    assert_eq!(p.idle_timeout, Duration::from_secs(5));
    assert_eq!(p.request_timeout, Duration::from_secs(3));
    assert_eq!(p.backend_idle_timeout, Duration::from_secs(1));
    assert_eq!(p.drain_deadline, Duration::ZERO);
    assert_eq!(p.max_connections, 7);
    assert_eq!(p.client_header, None);
    assert!(p.fast_path);
    assert!(!config.proxies[1].fast_path);
    // Port 0 twice is two free ports, not a clash.
    assert_eq!(config.proxies[1].alias.to_string(), "nothing.internal");
    let header = config.proxies[1]
        .client_header
        .as_ref()
        .expect("a client header");
    assert_eq!(header.name, "x-real-ip");
    assert_eq!(
        header.trusted,
        ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"].map(|n| n.parse::<ipnet::IpNet>().unwrap())
    );
    for (peer, trusted) in [
        ("10.1.2.3", true),
        ("127.0.0.1", true),
        ("::ffff:127.0.0.1", true),
        ("127.0.0.2", false),
        ("fd00::1", true),
        ("192.168.0.1", false),
    ] {
        assert_eq!(header.trusts(peer.parse().unwrap()), trusted, "{peer}");
    }
}

/// `line:column` of the last occurrence of `needle` in `text`.
fn position(text: &str, needle: &str) -> String {
    let at = text.rfind(needle).expect("needle in text");
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{column}")
}

#[test]
fn bad_proxy_sections_are_refused_with_their_positions() {
    let dir = Dir::new();
    let head = "[[proxy]]\nlisten = \"127.0.0.1:8000\"\nalias = \"web\"\n";
    // (what is appended, where the error points, the message)
    let cases = [
        (
            "[[proxy]]\nlisten = \"127.0.0.1:8000\"\nalias = \"webb\"\n".to_owned(),
            "\"webb\"",
            "proxy on 127.0.0.1:8000: unknown alias `webb.internal` (no [[alias]] has that name; known: nothing.internal, web.internal)",
        ),
        (
            "[[proxy]]\nlisten = \"localhost:80\"\nalias = \"web\"\n".to_owned(),
            "\"localhost:80\"",
            "proxy.listen: `localhost:80` is not a socket address",
        ),
        (
            format!("{head}mode = \"udp\"\n"),
            "\"udp\"",
            "proxy on 127.0.0.1:8000: mode `udp` is not one of http, tcp",
        ),
        (
            format!("{head}connect_timeout = \"soon\"\n"),
            "\"soon\"",
            "proxy.connect_timeout:",
        ),
        (
            format!("{head}idle_timeout = \"10ms\"\n"),
            "\"10ms\"",
            "proxy.idle_timeout must be between 100ms and 1day (got 10ms)",
        ),
        (
            format!("{head}max_connections = 0\n"),
            "0\n",
            "proxy.max_connections must be between 1 and 1000000",
        ),
        (
            format!("{head}\n{head}"),
            "\"127.0.0.1:8000\"",
            "proxy.listen: `127.0.0.1:8000` is listed twice",
        ),
        (
            format!("{head}client_header = \"X-Real-IP\"\n"),
            "\"X-Real-IP\"",
            "proxy on 127.0.0.1:8000: client_header needs `trusted`, the networks of the balancers allowed to name the client",
        ),
        (
            format!("{head}trusted = [\"10.0.0.0/8\"]\n"),
            "[\"10.0.0.0/8\"]",
            "proxy on 127.0.0.1:8000: trusted names the peers whose client_header is believed, but there is no client_header",
        ),
        (
            format!(
                "{head}mode = \"tcp\"\nclient_header = \"X-Real-IP\"\ntrusted = [\"10.0.0.1\"]\n"
            ),
            "\"X-Real-IP\"",
            "proxy on 127.0.0.1:8000: client_header is for mode http; a TCP proxy reads no headers",
        ),
        (
            format!("{head}client_header = \"X-Real-IP\"\ntrusted = [\"10.0.0.0/33\"]\n"),
            "\"10.0.0.0/33\"",
            "proxy.trusted: `10.0.0.0/33` is not an address or a network",
        ),
        (
            format!("{head}client_header = \"X Real IP\"\ntrusted = [\"10.0.0.1\"]\n"),
            "\"X Real IP\"",
            "proxy.client_header: `X Real IP` is not an HTTP header name",
        ),
        (
            format!("{head}retries = 3\n"),
            "retries",
            "unknown key `retries` in [[proxy]]; the keys there are `listen`, `alias`",
        ),
    ];
    for (extra, needle, message) in cases {
        let text = config_text(&["127.0.0.1:8080".parse().unwrap()], &extra);
        let problems = dir.parse(&text).expect_err(&extra);
        let want = format!(
            "{}:{}: {message}",
            dir.path().display(),
            position(&text, needle)
        );
        assert!(
            problems.iter().any(|p| p.starts_with(&want)),
            "{extra}\nwanted: {want}\ngot: {problems:#?}"
        );
    }
}

#[test]
fn a_proxy_cannot_share_the_api_or_dns_address() {
    let dir = Dir::new();
    let text = config_text(
        &["127.0.0.1:8080".parse().unwrap()],
        "[[proxy]]\nlisten = \"127.0.0.1:5380\"\nalias = \"web\"\n\n[[proxy]]\nlisten = \"127.0.0.1:5353\"\nalias = \"web\"\n",
    )
    .replace(
        "[api]\nlisten = \"127.0.0.1:0\"",
        "[api]\nlisten = \"127.0.0.1:5380\"",
    )
    .replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:5353\"]",
    );
    let problems = dir.parse(&text).unwrap_err();
    let at = |needle: &str| format!("{}:{}", dir.path().display(), position(&text, needle));
    assert_eq!(
        problems,
        [
            format!(
                "{}: proxy.listen: `127.0.0.1:5380` is also api.listen",
                at("\"127.0.0.1:5380\"\nalias")
            ),
            format!(
                "{}: proxy.listen: `127.0.0.1:5353` is also dns.listen",
                at("\"127.0.0.1:5353\"\nalias")
            ),
        ]
    );
}

// ---- a daemon with proxies, in this process ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_eject_a_member_after_three_and_requests_still_succeed() {
    let stop = CancellationToken::new();
    let live = backends(91, 1, "web-v1", &stop).await;
    let dead = dead_addr(Ipv4Addr::new(127, 0, 91, 2)).await;
    let running = Running::start(
        &[live[0].addr, dead],
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n",
    )
    .await;
    let proxy = running.proxy(0);

    // Each request that picks the dead member is retried on the live one. Picks are random,
    // so go on until the dead member has failed three times (well within 200 requests).
    let mut sent = 0;
    while running.counts(0, dead).errors < 3 {
        assert!(sent < 200, "the dead member was not picked three times");
        let (status, backend, _) = get(proxy, "/").await;
        assert_eq!((status, backend.as_str()), (200, "web-v1"));
        sent += 1;
    }
    // Ejected: it is not tried again (its checks are off, so it stays out for a while).
    for _ in 0..50 {
        let (status, _, _) = get(proxy, "/").await;
        assert_eq!(status, 200);
    }
    let dead_counts = running.counts(0, dead);
    assert_eq!(dead_counts.errors, 3, "{dead_counts:?}");
    assert_eq!(dead_counts.requests, 0);
    let live_counts = running.counts(0, live[0].addr);
    assert_eq!(live_counts.requests, sent + 50);
    assert_eq!(live_counts.errors, 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_track_work_in_flight_and_render_as_prometheus_text() {
    let stop = CancellationToken::new();
    let v1 = backends(92, 1, "web-v1", &stop).await;
    let running = Running::start(
        &[v1[0].addr],
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n",
    )
    .await;
    let proxy = running.proxy(0);
    let member = ep(v1[0].addr);
    for _ in 0..3 {
        assert_eq!(get(proxy, "/").await.0, 200);
    }
    assert_eq!(running.daemon.proxy_stats.inflight(&[member]), 0);

    let slow = tokio::spawn(async move { get(proxy, "/slow?ms=800").await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.daemon.proxy_stats.inflight(&[member]) == 0 {
        assert!(Instant::now() < deadline, "the slow request never showed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(running.daemon.proxy_stats.inflight(&[member]), 1);
    assert_eq!(slow.await.unwrap().0, 200);
    assert_eq!(running.daemon.proxy_stats.inflight(&[member]), 0);

    let mut text = String::new();
    running.daemon.proxy_stats.render_prometheus(&mut text);
    let labels = format!(
        "proxy=\"{proxy}\",alias=\"web.internal\",member=\"{}\"",
        v1[0].addr
    );
    for line in [
        "# TYPE aliasd_proxy_requests_total counter".to_owned(),
        format!("aliasd_proxy_requests_total{{{labels}}} 4"),
        format!("aliasd_proxy_errors_total{{{labels}}} 0"),
        "# TYPE aliasd_proxy_in_flight gauge".to_owned(),
        format!("aliasd_proxy_in_flight{{{labels}}} 0"),
        "# TYPE aliasd_proxy_request_duration_seconds histogram".to_owned(),
        format!("aliasd_proxy_request_duration_seconds_bucket{{{labels},le=\"0.25\"}} 3"),
        format!("aliasd_proxy_request_duration_seconds_bucket{{{labels},le=\"1\"}} 4"),
        format!("aliasd_proxy_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 4"),
        format!("aliasd_proxy_request_duration_seconds_count{{{labels}}} 4"),
        format!(
            "aliasd_proxy_local_responses_total{{proxy=\"{proxy}\",alias=\"web.internal\",mode=\"http\",code=\"503\"}} 0"
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    // Only members that had work are shown.
    assert_eq!(text.matches("aliasd_proxy_requests_total{").count(), 1);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_503_without_members_and_504_after_the_request_timeout() {
    let stop = CancellationToken::new();
    let v1 = backends(93, 1, "web-v1", &stop).await;
    let running = Running::start(
        &[v1[0].addr],
        r#"
[[proxy]]
listen = "127.0.0.1:0"
alias = "nothing"

[[proxy]]
listen = "127.0.0.1:0"
alias = "web"
request_timeout = "300ms"
"#,
    )
    .await;
    let (status, _, body) = get(running.proxy(0), "/").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "503 Service Unavailable: nothing.internal has no active member\n"
    );

    let (status, _, body) = get(running.proxy(1), "/slow?ms=3000").await;
    assert_eq!(status, 504);
    assert!(body.starts_with("504 Gateway Timeout"), "{body}");
    let counts = running.counts(1, v1[0].addr);
    assert_eq!((counts.requests, counts.errors, counts.inflight), (1, 1, 0));
    // The next request is served normally.
    assert_eq!(get(running.proxy(1), "/").await.0, 200);
    stop.cancel();
}

/// Sends a keep-alive GET on `stream` and reads the answer head and body (Content-Length).
async fn raw_get(stream: &mut TcpStream) -> Option<String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(text);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_make_room_at_the_limit_while_busy_ones_keep_theirs() {
    let stop = CancellationToken::new();
    let v1 = backends(94, 1, "web-v1", &stop).await;
    let running = Running::start(
        &[v1[0].addr],
        r#"
[[proxy]]
listen = "127.0.0.1:0"
alias = "web"
idle_timeout = "300ms"
max_connections = 1
"#,
    )
    .await;
    let proxy = running.proxy(0);
    let mut byte = [0u8; 1];

    // Alone, an idle connection is closed after the idle timeout.
    let mut lone = TcpStream::connect(proxy).await.unwrap();
    assert!(raw_get(&mut lone).await.unwrap().contains("web-v1"));
    let closed = tokio::time::timeout(Duration::from_secs(5), lone.read(&mut byte))
        .await
        .expect("an idle connection is closed");
    assert_eq!(closed.unwrap(), 0);

    // At the limit, an idle connection makes room for a new one at once.
    let mut idle = TcpStream::connect(proxy).await.unwrap();
    assert!(raw_get(&mut idle).await.unwrap().contains("web-v1"));
    let mut next = TcpStream::connect(proxy).await.unwrap();
    let served = tokio::time::timeout(Duration::from_secs(5), raw_get(&mut next))
        .await
        .expect("the idle connection made room");
    assert!(served.unwrap().contains("web-v1"));
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut byte))
        .await
        .expect("the idle connection was closed");
    assert_eq!(closed.unwrap(), 0);
    drop(next);

    // A busy connection keeps its slot: the new one waits until the request ended.
    let mut busy = TcpStream::connect(proxy).await.unwrap();
    busy.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = TcpStream::connect(proxy).await.unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut byte)).await;
    assert!(early.is_err(), "a busy connection was closed to make room");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&rest).contains("web-v1") {
            let n = waiting.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before answering");
            rest.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the waiting connection is served once the busy one is done");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), busy.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).contains("web-v1"),
        "the busy request was answered before its connection made room"
    );
    stop.cancel();
}

// ---- measurements per alias and service ----

fn web() -> AliasName {
    AliasName::resolve("web.internal.", &hickory_proto::rr::Name::root()).unwrap()
}

fn service(name: &str) -> ServiceName {
    name.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_counted_for_its_service_with_5xx_answers_as_errors() {
    let stop = CancellationToken::new();
    let v1 = backends(95, 1, "web-v1", &stop).await;
    let running = Running::start(
        &[v1[0].addr],
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n",
    )
    .await;
    let proxy = running.proxy(0);
    let measurements = running.daemon.proxy_stats.measurements();
    assert!(measurements.fronts(&web()));
    let before = measurements.window(&web(), &[service("web-v1")]);
    assert_eq!(before, Window::default());

    // 6 good answers, a 404 (the client's fault), 3 answers 500 and 503 (the version's).
    for path in [
        "/",
        "/",
        "/",
        "/",
        "/",
        "/status?code=404",
        "/status?code=200",
    ] {
        let expected = if path.contains("404") { 404 } else { 200 };
        assert_eq!(get(proxy, path).await.0, expected, "{path}");
    }
    for code in [500, 500, 503] {
        assert_eq!(get(proxy, &format!("/status?code={code}")).await.0, code);
    }
    let window = measurements.window(&web(), &[service("web-v1")]);
    assert_eq!((window.requests, window.errors), (10, 3), "{window:?}");
    assert_eq!(window.latency.count(), 10);
    assert!(window.latency.p99().is_some());
    // Another service of no alias here has nothing, and the window is a sum.
    assert_eq!(
        measurements.window(&web(), &[service("empty")]),
        Window::default()
    );
    assert_eq!(
        measurements.window(&web(), &[service("web-v1"), service("empty")]),
        window
    );
    assert_eq!(
        crate::gates::judge(
            &crate::state::MeasuredGates {
                max_error_rate_ppm: Some(10_000),
                max_latency_ratio_milli: None,
                min_requests: 10,
            },
            &window.minus(&before),
            &Window::default()
        ),
        crate::gates::Verdict::Breach("error rate 30% > 1% over 10 requests".into())
    );

    let mut text = String::new();
    running.daemon.proxy_stats.render_prometheus(&mut text);
    let labels = "alias=\"web.internal\",service=\"web-v1\"";
    for line in [
        "# TYPE aliasd_proxy_service_requests_total counter".to_owned(),
        format!("aliasd_proxy_service_requests_total{{{labels}}} 10"),
        format!("aliasd_proxy_service_errors_total{{{labels}}} 3"),
        "# TYPE aliasd_proxy_service_latency_seconds histogram".to_owned(),
        format!("aliasd_proxy_service_latency_seconds_bucket{{{labels},le=\"60\"}} 10"),
        format!("aliasd_proxy_service_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 10"),
        format!("aliasd_proxy_service_latency_seconds_count{{{labels}}} 10"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert_eq!(
        text.matches("aliasd_proxy_service_requests_total{").count(),
        1
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_is_an_error_of_its_service_in_http_and_tcp_mode() {
    let stop = CancellationToken::new();
    let live = backends(96, 1, "web-v1", &stop).await;
    let dead = dead_addr(Ipv4Addr::new(127, 0, 96, 2)).await;
    let running = Running::start(
        &[live[0].addr, dead],
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\nmode = \"tcp\"\n",
    )
    .await;
    let measurements = running.daemon.proxy_stats.measurements();
    let v1 = [service("web-v1")];

    // HTTP: a request that picks the dead member is retried on the live one; the failed
    // attempt counts against the service, the client still gets its answer.
    let mut sent = 0;
    while running.counts(0, dead).errors == 0 {
        assert!(sent < 200, "the dead member was never picked");
        assert_eq!(get(running.proxy(0), "/").await.0, 200);
        sent += 1;
    }
    let failed = running.counts(0, dead).errors;
    let window = measurements.window(&web(), &v1);
    assert_eq!(
        (window.requests, window.errors, window.latency.count()),
        (sent + failed, failed, sent),
        "{window:?}"
    );

    // TCP: a connection is an attempt, timed to its connect; a failed connect is an error.
    let before = window;
    let mut opened = 0;
    while running.counts(1, dead).errors == 0 {
        assert!(opened < 200, "the dead member was never picked");
        let mut stream = TcpStream::connect(running.proxy(1)).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer).contains("web-v1"));
        opened += 1;
    }
    let failed = running.counts(1, dead).errors;
    let window = measurements.window(&web(), &v1).minus(&before);
    assert_eq!(
        (window.requests, window.errors, window.latency.count()),
        (opened + failed, failed, opened),
        "{window:?}"
    );
    stop.cancel();
}

mod split;
