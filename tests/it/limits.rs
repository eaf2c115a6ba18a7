//! Slow and idle clients on every TCP listener (the API, DNS over TCP, the HTTP proxy) against
//! the real daemon: 10,000 idle connections and a hundred slowloris clients trickling a request
//! head never keep a working client out, and a head that trickles is cut off at its timeout.
//!
//! The listeners' idle and header timeouts are set to a minute here, far beyond what the test
//! waits, so what lets the working client in is the connection cap making room (the oldest idle
//! connection is closed), not a timeout that happens to expire.

use std::io::Read;
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use aliasd::daemon::Ready;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::proxy::{GET, exchange};
use crate::support::{ConfigText, Daemon, Fixture, StopOnDrop, dig, spawn_backends};

/// Idle connections opened against each listener.
const IDLE: usize = 10_000;
/// Slowloris clients against each listener.
const SLOW: usize = 100;
/// Requests the working client makes while they are all open; each must be answered in time.
const WORKING: usize = 20;
/// How long one working request may take: far below the listeners' one-minute timeouts.
const IN_TIME: Duration = Duration::from_secs(10);
/// The API's cap in this test; DNS and the proxy keep their default of 10,000.
const API_CAP: usize = 1_000;
/// The one member of `web` in the starvation test (`spawn_backends(0, 91, ...)`).
const BACKEND_IP: &str = "127.0.0.91";

fn config(backend: SocketAddr, extra_api: &str) -> String {
    ConfigText::new()
        .dns_default("negative_ttl")
        .dns("tcp_idle_timeout", "\"60s\"")
        .api("header_timeout = \"60s\"\nidle_timeout = \"60s\"")
        .api(extra_api)
        .service("web-v1", [backend])
        .alias("web", ["web-v1"])
        .section(
            "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\nidle_timeout = \"60s\"\nheader_timeout = \"60s\"",
        )
        .render()
}

/// Raises this process's open-file limit to its hard limit (aliasd, its child, inherits it and
/// raises its own too), and checks that the test's connections fit.
fn enough_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    let needed = (IDLE + SLOW + 1_000) as u64;
    assert!(
        hard >= needed,
        "this test opens {needed} connections; the hard open-file limit is {hard}"
    );
}

fn proxy_of(fixture: &Fixture) -> SocketAddr {
    let bytes = std::fs::read(fixture.dir.path().join("ready.json")).expect("ready");
    let ready: Ready = serde_json::from_slice(&bytes).expect("ready file is JSON");
    ready.proxies[0]
}

/// `n` connections to `addr` that send nothing (non-blocking, so their state can be read).
fn open_idle(addr: SocketAddr, n: usize) -> Vec<StdTcpStream> {
    (0..n)
        .map(|i| {
            let stream = StdTcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i} to {addr}: {e}"));
            stream.set_nonblocking(true).expect("nonblocking");
            stream
        })
        .collect()
}

/// How many of `streams` the server has closed.
fn closed(streams: &mut [StdTcpStream]) -> usize {
    let mut byte = [0u8; 1];
    streams
        .iter_mut()
        .filter(|s| match (&**s).read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        })
        .count()
}

/// Slowloris clients: each sends `head`, then one more byte of `trickle` every 200 ms, until
/// the server closes it or the test stops them. Counts the ones the server closed.
struct Slowloris {
    stop: CancellationToken,
    cut: Vec<tokio::task::JoinHandle<bool>>,
}

impl Slowloris {
    async fn start(addr: SocketAddr, n: usize, head: &'static [u8], trickle: u8) -> Self {
        let stop = CancellationToken::new();
        let mut cut = Vec::new();
        for _ in 0..n {
            let mut stream = TcpStream::connect(addr).await.expect("slowloris connects");
            let stop = stop.clone();
            cut.push(tokio::spawn(async move {
                if stream.write_all(head).await.is_err() {
                    return true;
                }
                // Bounded: 5 minutes of trickling at most, whatever happens.
                for _ in 0..1_500 {
                    tokio::select! {
                        () = stop.cancelled() => return false,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    if stream.write_all(&[trickle]).await.is_err() {
                        return true;
                    }
                }
                false
            }));
        }
        Self { stop, cut }
    }

    /// Stops them; returns how many the server had cut off.
    async fn finish(self) -> usize {
        self.stop.cancel();
        let mut n = 0;
        for c in self.cut {
            n += usize::from(c.await.expect("slowloris task"));
        }
        n
    }
}

/// With 10,000 idle connections and 100 slowloris clients open on `addr`, `working` is run
/// [`WORKING`] times and must succeed in time each time. Returns how many idle ones the server
/// closed by then.
async fn never_starved<F, Fut>(
    what: &str,
    addr: SocketAddr,
    head: &'static [u8],
    trickle: u8,
    working: F,
) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut idle = tokio::task::spawn_blocking(move || open_idle(addr, IDLE))
        .await
        .expect("open idle connections");
    let slow = Slowloris::start(addr, SLOW, head, trickle).await;
    eprintln!(
        "{what}: {IDLE} idle and {SLOW} slowloris connections open in {:?}",
        started.elapsed()
    );
    for i in 0..WORKING {
        let began = Instant::now();
        match tokio::time::timeout(IN_TIME, working()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{what}: working request {i} failed: {e}"),
            Err(_) => panic!("{what}: working request {i} starved: no answer in {IN_TIME:?}"),
        }
        if i == 0 {
            eprintln!(
                "{what}: first working request answered in {:?}",
                began.elapsed()
            );
        }
    }
    let closed = closed(&mut idle);
    let cut = slow.finish().await;
    eprintln!("{what}: the server closed {closed} idle and {cut} slowloris connections");
    closed + cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_never_starve_a_working_client_on_any_listener() {
    enough_files();
    let stop = CancellationToken::new();
    let backend = spawn_backends(0, 91, 1, "web-v1", &stop).await;
    let _stop = StopOnDrop(stop);
    let fixture = Fixture::with_config_text(&config(
        backend[0].addr,
        &format!("max_connections = {API_CAP}"),
    ));
    let daemon = fixture.start();
    let proxy = proxy_of(&fixture);

    // The API: its cap is 1,000, so nearly all of the 10,000 idle connections are closed to
    // make room for the newer ones, and aliasctl's requests get in.
    let api = daemon.api;
    let closed = never_starved(
        "api",
        api,
        b"GET /v1/aliases HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        b'a',
        || async {
            let mut stream = TcpStream::connect(api).await.map_err(|e| e.to_string())?;
            let answer = exchange(
                &mut stream,
                b"GET /v1/aliases/web HTTP/1.1\r\nHost: aliasd\r\n\r\n",
            )
            .await
            .ok_or("no answer")?;
            answer
                .starts_with("HTTP/1.1 200")
                .then_some(())
                .ok_or(answer)
        },
    )
    .await;
    assert!(
        closed >= IDLE + SLOW - API_CAP,
        "the API's cap of {API_CAP} held only by closing {closed} of {} connections",
        IDLE + SLOW
    );

    // DNS over TCP: dig's queries over TCP are answered; a slowloris sends a length of 65,535
    // and then one byte at a time.
    let dns = daemon.dns;
    never_starved("dns", dns, &[0xff, 0xff, 0x12], 0, || async move {
        let out = tokio::task::spawn_blocking(move || {
            dig(
                dns,
                &["+tcp", "+tries=1", "+time=5", "+short", "web.internal", "A"],
            )
        })
        .await
        .map_err(|e| e.to_string())?;
        (out.trim() == BACKEND_IP).then_some(()).ok_or(out)
    })
    .await;

    // The HTTP proxy: a request through it reaches the member.
    never_starved(
        "proxy",
        proxy,
        b"GET / HTTP/1.1\r\nHost: web\r\nX-Slow: ",
        b'a',
        || async {
            let mut stream = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
            let answer = exchange(&mut stream, GET).await.ok_or("no answer")?;
            answer.contains("web-v1").then_some(()).ok_or(answer)
        },
    )
    .await;
    assert!(daemon.log().contains("api listening"), "{}", daemon.log());
    daemon.terminate();
}

/// A client that trickles its request head is cut off at the listener's header (API, proxy) or
/// idle (DNS) timeout, while it is still sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_trickles_in_is_cut_off_at_its_timeout() {
    let stop = CancellationToken::new();
    let backend = spawn_backends(0, 92, 1, "web-v1", &stop).await;
    let _stop = StopOnDrop(stop);
    let fixture =
        Fixture::with_config_text(&config(backend[0].addr, "").replace("\"60s\"", "\"1s\""));
    let daemon: Daemon = fixture.start();
    let proxy = proxy_of(&fixture);
    let cases: [(&str, SocketAddr, &'static [u8], u8); 3] = [
        (
            "api",
            daemon.api,
            b"GET /v1/aliases HTTP/1.1\r\nX-Slow: ",
            b'a',
        ),
        ("dns", daemon.dns, &[0xff, 0xff, 0x12], 0),
        ("proxy", proxy, b"GET / HTTP/1.1\r\nX-Slow: ", b'a'),
    ];
    for (what, addr, head, trickle) in cases {
        let began = Instant::now();
        let slow = Slowloris::start(addr, 3, head, trickle).await;
        // Cut off means the server closed it while it kept sending: the tasks end by themselves.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !slow.cut.iter().all(|c| c.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "{what}: a trickling client was not cut off in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let elapsed = began.elapsed();
        assert_eq!(
            slow.finish().await,
            3,
            "{what}: every trickling client cut off"
        );
        assert!(
            elapsed >= Duration::from_millis(900),
            "{what}: cut off after {elapsed:?}, before its 1 s timeout"
        );
        eprintln!("{what}: trickling clients cut off after {elapsed:?}");
    }
    daemon.terminate();
}
