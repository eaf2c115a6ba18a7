//! A promotion in weighted steps through the real daemon: thousands of clients, each a UDP
//! socket bound to its own 127.x.y.z (Linux routes all of 127/8 to lo), ask DNS for the alias;
//! at 10% and at 50% the share answered with the new version is the weight's, each client keeps
//! its answer, raising the weight moves nobody back, and a client's HTTP request through the
//! front proxy (from the same address) lands on the version its DNS answer named. `dig -b`
//! shows a real resolver client sees the same, and a zone transfer carries the old side.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aliasd::daemon::Ready;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::support::{
    ConfigText, Daemon, FAST_PROMOTION, Fixture, StopOnDrop, addresses, dig, post, query_message,
    spawn_backends, wait_for, wait_healthy,
};

/// Clients asking DNS. The share of 4,000 at 50% has a standard deviation of 0.8 points, so
/// "within 3 points" cannot fail by chance (with 1,000 it would, one run in 20).
const CLIENTS: usize = 4_000;
/// Of those, how many also make an HTTP request through the proxy.
const HTTP_CLIENTS: usize = 200;
/// Queries in flight at once.
const PARALLEL: usize = 64;

/// The `n`th client's address: 127.10.0.7, 127.10.1.7, ... (clear of the backends' 127.0.x).
fn client(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 10 + (n / 250) as u8, (n % 250) as u8, 7)
}

/// Which version an answer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Old,
    New,
}

struct Setup {
    daemon: Daemon,
    proxy: SocketAddr,
    /// The address of each version's one backend.
    v1: String,
    v2: String,
    _fixture: Fixture,
    _stop: StopOnDrop,
}

async fn setup() -> Setup {
    let stop = CancellationToken::new();
    let v1 = spawn_backends(70, 1, 1, "web-v1", &stop).await;
    let v2 = spawn_backends(70, 101, 1, "web-v2", &stop).await;
    // As `Fixture::for_backends`, with zone transfers allowed to every client.
    let fixture = ConfigText::new()
        .zone("transfer_allow = [\"127.0.0.0/8\"]")
        .health(
            "kind = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nrise = 1\nfall = 2",
        )
        .section(FAST_PROMOTION)
        .service("web-v1", [v1[0].addr])
        .service("web-v2", [v2[0].addr])
        .alias("web", ["web-v1"])
        .section("[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"")
        .fixture();
    let daemon = fixture.start();
    let bytes = std::fs::read(fixture.dir.path().join("ready.json")).expect("ready");
    let ready: Ready = serde_json::from_slice(&bytes).expect("ready file is JSON");
    Setup {
        daemon,
        proxy: ready.proxies[0],
        v1: v1[0].addr.ip().to_string(),
        v2: v2[0].addr.ip().to_string(),
        _fixture: fixture,
        _stop: StopOnDrop(stop),
    }
}

/// The A answer `server` gives a client at `from`: one UDP query from a socket bound there,
/// sent again if no answer comes within a second (at most 5 times).
async fn ask(server: SocketAddr, from: Ipv4Addr) -> Vec<String> {
    let socket = UdpSocket::bind((from, 0))
        .await
        .expect("bind the client's address");
    for _ in 0..5 {
        let message = query_message("web.internal.", RecordType::A, Some(1232));
        let bytes = message.to_vec().expect("encode");
        socket.send_to(&bytes, server).await.expect("send");
        let mut buf = vec![0u8; 4096];
        let wait = tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf));
        if let Ok(Ok((n, _))) = wait.await {
            let answer = Message::from_vec(&buf[..n]).expect("the answer decodes");
            if answer.metadata.id == message.metadata.id {
                return addresses(&answer);
            }
        }
    }
    panic!("no answer for {from} after 5 tries");
}

/// [`ask`] over TCP, from a socket bound to `from`.
async fn ask_tcp(server: SocketAddr, from: Ipv4Addr) -> Vec<String> {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind");
    let mut stream = socket
        .connect(server)
        .await
        .expect("connect to DNS over TCP");
    let message = query_message("web.internal.", RecordType::A, None);
    let bytes = message.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.expect("write");
    let read = async {
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("an answer within 5 s")
        .expect("read");
    addresses(&Message::from_vec(&buf).expect("the answer decodes"))
}

impl Setup {
    fn side(&self, answer: &[String], client: Ipv4Addr) -> Side {
        match answer {
            [one] if *one == self.v1 => Side::Old,
            [one] if *one == self.v2 => Side::New,
            other => panic!("{client} was answered {other:?}, not one version's address"),
        }
    }

    /// Every client's side, each asked twice (both answers must agree), `PARALLEL` at once.
    async fn sides(&self) -> BTreeMap<Ipv4Addr, Side> {
        let limit = Arc::new(Semaphore::new(PARALLEL));
        let dns = self.daemon.dns;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let limit = limit.clone();
                tokio::spawn(async move {
                    let _permit = limit.acquire_owned().await.expect("the semaphore");
                    let from = client(n);
                    (from, ask(dns, from).await, ask(dns, from).await)
                })
            })
            .collect();
        let mut out = BTreeMap::new();
        for task in tasks {
            let (from, first, second) = task.await.expect("a query task");
            assert_eq!(first, second, "{from} was answered differently twice");
            out.insert(from, self.side(&first, from));
        }
        out
    }

    /// The backend that answers a GET through the proxy from a socket bound to `from`.
    async fn backend_from(&self, from: Ipv4Addr) -> String {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.bind(SocketAddr::from((from, 0))).expect("bind");
        let mut stream = socket
            .connect(self.proxy)
            .await
            .expect("connect to the proxy");
        let request = "GET / HTTP/1.1\r\nHost: web.internal\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            stream.read_to_string(&mut response),
        )
        .await
        .expect("an answer within 10 s")
        .expect("read");
        response
            .lines()
            .find_map(|l| l.strip_prefix("x-backend: "))
            .unwrap_or_else(|| panic!("no x-backend header in {response:?}"))
            .to_owned()
    }
}

/// The percent of clients on the new side.
fn share(sides: &BTreeMap<Ipv4Addr, Side>) -> f64 {
    let new = sides.values().filter(|s| **s == Side::New).count();
    new as f64 * 100.0 / sides.len() as f64
}

async fn wait_weight(daemon: &Daemon, weight: u64) {
    // In effect: a paused step takes a confirm only from then on.
    let a = wait_for(
        daemon,
        Duration::from_secs(15),
        "at the step, in effect",
        |a| a["weight"] == weight && a["step"]["effective_at"].is_string(),
    )
    .await;
    assert!(a["step"].is_object(), "no step in {a}");
}

/// Requests through the proxy, half from clients DNS put on each side, each from its own
/// address: every one lands on the version its DNS answer named.
async fn check_proxy(s: &Arc<Setup>, sides: &BTreeMap<Ipv4Addr, Side>) {
    let pick = |side: Side| {
        sides
            .iter()
            .filter(move |(_, s)| **s == side)
            .take(HTTP_CLIENTS / 2)
    };
    let tasks: Vec<_> = pick(Side::Old)
        .chain(pick(Side::New))
        .map(|(from, side)| {
            let (s, from, side) = (s.clone(), *from, *side);
            tokio::spawn(async move { (from, side, s.backend_from(from).await) })
        })
        .collect();
    for task in tasks {
        let (from, side, backend) = task.await.expect("a request task");
        let want = if side == Side::New {
            "web-v2"
        } else {
            "web-v1"
        };
        assert_eq!(backend, want, "{from}, answered {side:?} by DNS");
    }
}

/// Over TCP (the full path) and through the real `dig -b`, a client gets the answer it got
/// over UDP.
async fn check_tcp_and_dig(s: &Setup, sides: &BTreeMap<Ipv4Addr, Side>) {
    for (from, side) in sides.iter().step_by(CLIENTS / 20) {
        let answer = ask_tcp(s.daemon.dns, *from).await;
        assert_eq!(s.side(&answer, *from), *side, "{from} over TCP");
    }
    for (from, side) in sides.iter().step_by(CLIENTS / 6).take(6) {
        let out = dig(
            s.daemon.dns,
            &["-b", &from.to_string(), "web.internal.", "A", "+short"],
        );
        let want = if *side == Side::New { &s.v2 } else { &s.v1 };
        assert_eq!(out.trim(), want, "dig -b {from}");
    }
}

/// A zone transfer carries one answer, the old side's, even to a client on the new side.
fn check_transfer(s: &Setup, sides: &BTreeMap<Ipv4Addr, Side>) {
    let (on_new, _) = sides
        .iter()
        .find(|(_, side)| **side == Side::New)
        .expect("a client on the new side");
    let axfr = dig(
        s.daemon.dns,
        &["-b", &on_new.to_string(), "internal.", "AXFR"],
    );
    let web: Vec<&str> = axfr
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 5 && f[0] == "web.internal." && f[3] == "A")
        .map(|f| f[4])
        .collect();
    assert_eq!(web, [s.v1.as_str()], "{axfr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_split_by_weight_stay_put_and_meet_their_version_at_the_proxy() {
    let s = setup().await;
    wait_healthy(&s.daemon).await;
    let steps =
        json!([{"weight": 10, "pause": true}, {"weight": 50, "pause": true}, {"weight": 100}]);
    let (status, reply) = post(
        &s.daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "steps": steps}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    wait_weight(&s.daemon, 10).await;
    let at_10 = s.sides().await;
    assert!(
        (share(&at_10) - 10.0).abs() <= 3.0,
        "{}% at 10%",
        share(&at_10)
    );

    let (status, reply) = post(&s.daemon, "/v1/aliases/web/confirm", json!({})).await;
    assert!((200..300).contains(&status), "{status} {reply}");
    wait_weight(&s.daemon, 50).await;
    let at_50 = s.sides().await;
    assert!(
        (share(&at_50) - 50.0).abs() <= 3.0,
        "{}% at 50%",
        share(&at_50)
    );
    // The clients are distinct addresses (the map would have merged repeats).
    assert_eq!(at_50.len(), CLIENTS);
    for (client, side) in &at_10 {
        if *side == Side::New {
            assert_eq!(
                at_50[client],
                Side::New,
                "{client} went back to the old version"
            );
        }
    }

    let s = Arc::new(s);
    check_proxy(&s, &at_50).await;
    check_tcp_and_dig(&s, &at_50).await;
    check_transfer(&s, &at_50);
}
