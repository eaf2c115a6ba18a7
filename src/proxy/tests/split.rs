//! The proxy in a weighted step: a request (HTTP) or connection (TCP) goes to its client's
//! side, the side DNS answers that client; in HTTP mode a trusted balancer may name the client
//! in `client_header`. Real backends and a real proxy on loopback, over a snapshot rendered
//! with the alias in a step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::*;
use crate::controller::first_render;
use crate::registry::Base;
use crate::snapshot::{HealthMap, LastGood, Snapshot};
use crate::state::{Phase, StepAt};
use crate::supervise::Critical;

const SALT: &str = "proxy-split";

/// A proxy of each mode in front of `web`, stepped 50% from `web-v1` (`v1`) to `web-v2`
/// (`v2`); the HTTP one believes `X-Real-IP` from 127.0.0.2 only.
struct Stepped {
    http: SocketAddr,
    tcp: SocketAddr,
    snapshots: SharedSnapshot,
    stop: CancellationToken,
    _critical: Critical,
    _dir: Dir,
}

impl Drop for Stepped {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn stepped() -> Stepped {
    let stop = CancellationToken::new();
    let v1 = backends(1, 1, "v1", &stop).await;
    let v2 = backends(2, 1, "v2", &stop).await;
    let extra = format!(
        "{}\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\nclient_header = \"X-Real-IP\"\ntrusted = [\"127.0.0.2\"]\n\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\nmode = \"tcp\"\n",
        testkit::service("web-v2", &[&v2[0].addr.to_string()]),
    );
    let dir = Dir::new();
    let config = dir
        .parse(&config_text(&[v1[0].addr], &extra))
        .unwrap_or_else(|p| panic!("{}", p.join("\n")));
    let (mut state, first) = first_render(&Base::from_config(&config), None, 1);
    let web = crate::model::AliasName::resolve("web.internal.", &hickory_proto::rr::Name::root())
        .unwrap();
    let alias = state.aliases.get_mut(&web).unwrap();
    let mut op = testkit::promotion(2, &["web-v1"], &["web-v2"], 1);
    op.salt = SALT.into();
    alias.phase = Phase::Mixed {
        op,
        since_ms: 1,
        observe_until_ms: u64::MAX,
        confirmed: false,
        step: Some(StepAt {
            index: 0,
            weight: 50,
            since_ms: 1,
            effective_ms: None,
            confirmed: false,
        }),
    };
    let snapshot = Snapshot::render(
        2,
        first.topology.clone(),
        &state,
        &HealthMap::new(),
        &LastGood::new(),
        Arc::default(),
    );
    let snapshots: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let bound = bind(&config.proxies).await.unwrap();
    let (http, tcp) = (bound[0].addr(), bound[1].addr());
    let stats = ProxyStats::new(&bound);
    let mut critical = Critical::default();
    let board = Arc::new(HealthBoard::default());
    spawn(
        bound,
        &stats,
        snapshots.clone(),
        board,
        &stop,
        &mut critical,
    );
    Stepped {
        http,
        tcp,
        snapshots,
        stop,
        _critical: critical,
        _dir: dir,
    }
}

impl Stepped {
    /// Whether DNS answers `client` the new side (`v2`).
    fn on_new(&self, client: IpAddr) -> bool {
        let snapshot = self.snapshots.load();
        let view = snapshot
            .aliases
            .values()
            .find(|v| v.split.is_some())
            .unwrap();
        view.split.as_ref().unwrap().on_new(client)
    }
}

/// The backend that answers a GET through `proxy` from a socket bound to `from`, with
/// `X-Real-IP: real` if given.
async fn backend_from(proxy: SocketAddr, from: Ipv4Addr, real: Option<&str>) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    let header = real.map_or(String::new(), |r| format!("X-Real-IP: {r}\r\n"));
    let request = format!("GET / HTTP/1.1\r\nHost: web\r\n{header}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let read = stream.read_to_string(&mut response);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s")
        .unwrap();
    response
        .lines()
        .find_map(|l| l.strip_prefix("x-backend: "))
        .unwrap_or_else(|| panic!("no x-backend in {response:?}"))
        .to_owned()
}

fn side(on_new: bool) -> &'static str {
    if on_new { "v2" } else { "v1" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_reaches_its_side_over_http_and_tcp() {
    let s = stepped().await;
    let mut seen = [0, 0];
    for i in 1..=40u8 {
        let client = Ipv4Addr::new(127, 0, 3, i);
        let want = side(s.on_new(client.into()));
        seen[usize::from(want == "v2")] += 1;
        for proxy in [s.http, s.tcp] {
            // Twice: a client stays where it is.
            for _ in 0..2 {
                assert_eq!(
                    backend_from(proxy, client, None).await,
                    want,
                    "{client} via {proxy}"
                );
            }
        }
    }
    assert!(seen[0] > 0 && seen[1] > 0, "both sides: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_balancer_names_the_client_and_anyone_else_is_ignored() {
    let s = stepped().await;
    let trusted = Ipv4Addr::new(127, 0, 0, 2);
    let untrusted = Ipv4Addr::new(127, 0, 0, 3);
    // A named client on each side, from the trusted peer: the named client's side.
    for new in [false, true] {
        let named = (1..=255u8)
            .map(|i| Ipv4Addr::new(127, 0, 4, i))
            .find(|ip| s.on_new((*ip).into()) == new)
            .unwrap();
        let text = named.to_string();
        assert_eq!(
            backend_from(s.http, trusted, Some(&text)).await,
            side(new),
            "{named} named by the trusted peer"
        );
        // From a peer not trusted the header counts for nothing: the peer's own side.
        assert_eq!(
            backend_from(s.http, untrusted, Some(&text)).await,
            side(s.on_new(untrusted.into())),
            "{named} named by an untrusted peer"
        );
    }
    // A value that is not one address: the peer's side.
    for bad in ["not-an-ip", "127.0.4.1, 127.0.4.2", ""] {
        assert_eq!(
            backend_from(s.http, trusted, Some(bad)).await,
            side(s.on_new(trusted.into())),
            "{bad:?}"
        );
    }
}

/// One kept-alive connection from a trusted balancer carries clients of both sides in turn:
/// each request meets its own client's side (the connection remembers the last client's side,
/// never past a change of client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_both_sides_in_turn_on_one_connection_each_reach_their_own() {
    let s = stepped().await;
    let pick = |new: bool| {
        (1..=255u8)
            .map(|i| Ipv4Addr::new(127, 0, 5, i))
            .find(|ip| s.on_new((*ip).into()) == new)
            .unwrap()
    };
    let (old, new) = (pick(false), pick(true));
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)))
        .unwrap();
    let mut stream = socket.connect(s.http).await.unwrap();
    for (client, want) in [
        (old, "v1"),
        (new, "v2"),
        (new, "v2"),
        (old, "v1"),
        (new, "v2"),
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: web\r\nX-Real-IP: {client}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut stream))
            .await
            .expect("an answer within 10 s");
        let backend = answer
            .lines()
            .find_map(|l| l.strip_prefix("x-backend: "))
            .unwrap_or_else(|| panic!("no x-backend in {answer:?}"));
        assert_eq!(backend, want, "{client} on the kept-alive connection");
    }
}

/// One answer with a `content-length` body from a kept-alive connection, as text.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse().ok())
                .expect("a content-length");
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the proxy closed the connection: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&chunk[..n]);
    }
}
