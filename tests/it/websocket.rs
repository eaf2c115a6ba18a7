//! WebSocket through the HTTP proxy: real WebSocket clients (tokio-tungstenite) and real
//! WebSocket servers on their own loopback addresses, through a promotion.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use aliasd::daemon::Ready;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Daemon, FAST_PROMOTION, Fixture, StopOnDrop, alias, switch_to_v2, wait_for, wait_healthy,
};

/// How long the proxy lets a connection live on a member that left the answers.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// A WebSocket echo server that also answers `/healthz`: every text message comes back as
/// "`name`: message".
async fn ws_backend(ip: Ipv4Addr, name: &'static str, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind a backend");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                () = stop.cancelled() => return,
            };
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, name));
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tokio::select! {
                    _ = conn => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    });
    addr
}

async fn answer(
    mut req: Request<Incoming>,
    name: &'static str,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let key = req.headers().get("sec-websocket-key").cloned();
    let Some(key) = key.filter(|_| req.uri().path() == "/ws") else {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))));
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(text) = message
                && ws
                    .send(Message::text(format!("{name}: {text}")))
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(Full::default())
        .unwrap())
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client connection through the proxy.
async fn open(proxy: SocketAddr) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{proxy}/ws"))
        .await
        .expect("a WebSocket through the proxy");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Sends `text` and returns the answer's text.
async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send");
    let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer within 5 s")
        .expect("the connection is open")
        .expect("a message");
    message.into_text().expect("a text message").to_string()
}

fn inflight_of(view: &Value, service: &str) -> Option<u64> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["service"] == service)?["inflight"]
        .as_u64()
}

/// aliasd with an HTTP proxy for `web` (`proxy_extra` is more TOML of the proxy), once every
/// endpoint is healthy; the fixture holds its directory.
async fn start(
    services: &[(&str, &[SocketAddr])],
    proxy_extra: &str,
) -> (Fixture, Daemon, SocketAddr) {
    let fixture = Fixture::for_backends_with(
        services,
        &[("web", &["web-v1"])],
        &format!(
            "{FAST_PROMOTION}\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n{proxy_extra}"
        ),
    );
    let daemon = fixture.start();
    let ready: Ready = serde_json::from_slice(
        &std::fs::read(fixture.dir.path().join("ready.json")).expect("ready file"),
    )
    .expect("ready file is JSON");
    wait_healthy(&daemon).await;
    let proxy = ready.proxies[0];
    (fixture, daemon, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_stay_on_their_member_through_a_promotion_and_close_at_the_drain_deadline() {
    let stop = CancellationToken::new();
    let _stop = StopOnDrop(stop.clone());
    let v1 = ws_backend(Ipv4Addr::new(127, 0, 81, 1), "web-v1", stop.clone()).await;
    let v2 = ws_backend(Ipv4Addr::new(127, 0, 81, 101), "web-v2", stop.clone()).await;
    let (_fixture, daemon, proxy) = start(
        &[("web-v1", &[v1]), ("web-v2", &[v2])],
        &format!("drain_deadline = \"{}s\"\n", DRAIN_DEADLINE.as_secs()),
    )
    .await;

    // Before the switch: a WebSocket on v1, counted as work in flight on its member.
    let mut old = open(proxy).await;
    assert_eq!(echo(&mut old, "one").await, "web-v1: one");
    assert_eq!(inflight_of(&alias(&daemon).await, "web-v1"), Some(1));

    switch_to_v2(&daemon).await;
    let switched = Instant::now();

    // New WebSockets go to v2; the open one stays with v1 and keeps working.
    let mut new = open(proxy).await;
    assert_eq!(echo(&mut new, "two").await, "web-v2: two");
    assert_eq!(echo(&mut old, "three").await, "web-v1: three");

    // The drain waits for it past the TTL window (1.2 s), and the proxy closes it once v1 has
    // been out of the answers for the drain deadline.
    let draining = alias(&daemon).await;
    assert_eq!(draining["phase"], "draining", "{draining}");
    assert_eq!(draining["drain"]["proxy_inflight"], 1, "{draining}");
    let mut last_draining = None;
    let closed = loop {
        assert!(
            switched.elapsed() < DRAIN_DEADLINE + Duration::from_secs(5),
            "the old WebSocket was not closed at the drain deadline"
        );
        if alias(&daemon).await["phase"] == "draining" {
            last_draining = Some(Instant::now());
        }
        match tokio::time::timeout(Duration::from_millis(100), old.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(Message::Text(text)))) => panic!("an unasked message: {text}"),
            Ok(Some(Ok(_))) => continue,
            Ok(None | Some(Err(_))) => break Instant::now(),
        }
    };
    let open_for = closed.duration_since(switched);
    assert!(
        open_for >= DRAIN_DEADLINE - Duration::from_millis(500),
        "the old WebSocket closed {open_for:?} after the switch, before the drain deadline"
    );
    let held = last_draining.map(|t| t.duration_since(switched));
    assert!(
        held.is_some_and(|h| h >= Duration::from_millis(1800)),
        "the drain ended {held:?} after the switch, with a WebSocket still open on v1"
    );
    wait_for(&daemon, Duration::from_secs(5), "stable on web-v2", |a| {
        a["phase"] == "stable" && a["targets"] == json!(["web-v2"])
    })
    .await;
    // The drain closed only v1's: v2's WebSocket is still open.
    assert_eq!(echo(&mut new, "four").await, "web-v2: four");
    assert_eq!(inflight_of(&alias(&daemon).await, "web-v2"), Some(1));
    new.close(None).await.expect("a clean close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_refuses_the_upgrade_is_answered_as_it_is_and_plain_requests_still_work() {
    let stop = CancellationToken::new();
    let _stop = StopOnDrop(stop.clone());
    let v1 = ws_backend(Ipv4Addr::new(127, 0, 82, 1), "web-v1", stop.clone()).await;
    let (_fixture, _daemon, proxy) = start(&[("web-v1", &[v1])], "").await;
    // The backend answers an upgrade to a path other than /ws with a plain 200: no tunnel.
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let asked = "GET /other HTTP/1.1\r\nHost: web.internal\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let response = crate::proxy::exchange(&mut stream, asked.as_bytes())
        .await
        .expect("an answer");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The same connection still carries plain requests.
    let response = crate::proxy::exchange(&mut stream, crate::proxy::GET)
        .await
        .expect("an answer");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
