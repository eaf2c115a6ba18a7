//! HTTP mode: HTTP/1.1 (keep-alive) and HTTP/2 from clients, HTTP/1.1 to the members, one member
//! chosen per request so that a keep-alive client moves to the new version at the switch.
//!
//! Retries follow one rule: a request is sent again only when that cannot repeat an effect. A
//! failed connect is retried on another member before the request body is touched; a request
//! hyper hands back unsent (the pooled connection was already dead) is sent again as it is; a
//! request whose connection closed before any answer (the keep-alive race, or a member that
//! died under it) is replayed once, avoiding that member, only when it is idempotent and had no
//! body, rebuilt from its saved head. Nothing is retried after the answer started, and bodies
//! stream both ways, never buffered whole.
//!
//! Each member has a small pool of idle HTTP/1 connections (`SendRequest` handles). A handle goes
//! back when its answer's body ended; idle ones are closed after `backend_idle_timeout`, before a
//! member's own keep-alive timeout can close them under a request.
//!
//! Protocol upgrades (WebSocket, RFC 9110 section 7.8): an HTTP/1.1 request that asks for one
//! goes to a member with its `Upgrade` and `Connection: upgrade`; when the member agrees (101),
//! the client gets the 101 and the two connections become a tunnel, bytes copied both ways like
//! a TCP-mode connection: counted in flight on its member (so a drain waits for it), closed when
//! the member has been out of the answers for `drain_deadline`, when the client is idle for
//! `idle_timeout`, or at shutdown. The tunnel runs in the client connection's own task, so it
//! keeps its place under `max_connections`. CONNECT is answered 501.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Choice, Flight, Member, Proxy, lock};
use crate::conns::{Activity, BusyGuard, Metered, Slot};
use crate::model::Endpoint;

/// What the proxy sends to a member: the client's body, or nothing for a replayed request.
pub(super) type ReqBody = Either<Incoming, Empty<Bytes>>;
type Sender = SendRequest<ReqBody>;

/// A request hyper hands back unsent is sent again at most this often.
const MAX_UNSENT_RESENDS: usize = 2;

/// An idle pooled connection to a member.
pub(super) struct Idle {
    sender: Sender,
    pub(super) since: Instant,
}

impl Idle {
    pub(super) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Serves one client connection until it closes, goes idle, or the daemon stops.
pub(super) async fn serve_connection(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    activity: Arc<Activity>,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    serve_io(proxy, stream, peer, shutdown, activity, slot).await;
}

/// [`serve_connection`] over any client stream (the fast path hands over a socket with the
/// bytes it read first).
pub(super) async fn serve_io<S>(
    proxy: Arc<Proxy>,
    stream: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
    activity: Arc<Activity>,
    slot: Slot,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    proxy
        .entry
        .local
        .general_connections
        .fetch_add(1, Ordering::Relaxed);
    let io = TokioIo::new(Metered {
        inner: stream,
        activity: activity.clone(),
    });
    // Where a request that upgraded leaves its tunnel, for this task to run once hyper lets go.
    let upgraded: Arc<Mutex<Option<Tunnel>>> = Arc::default();
    let peer_info = Arc::new(Peer::new(peer));
    let service = {
        let (proxy, activity, upgraded) = (proxy.clone(), activity.clone(), upgraded.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let busy = activity.begin();
            let (proxy, upgraded, peer) = (proxy.clone(), upgraded.clone(), peer_info.clone());
            async move { Ok::<_, Infallible>(handle(proxy, req, &peer, busy, &upgraded).await) }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.config.header_timeout);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                debug!(proxy = %proxy.addr, %peer, %error, "client connection ended with an error");
            }
            let tunnel = lock(&upgraded).take();
            if let Some(tunnel) = tunnel {
                activity.pin();
                tunnel.run(&proxy, peer, &activity, &shutdown).await;
            }
            return;
        }
        () = shutdown.cancelled() => {}
        () = activity.idle(proxy.config.idle_timeout) => {
            debug!(proxy = %proxy.addr, %peer, "closing an idle client connection");
        }
        () = slot.evicted() => {
            debug!(proxy = %proxy.addr, %peer, "closing an idle client connection to make room");
            if activity.is_idle() {
                return;
            }
        }
    }
    // Requests in flight finish; HTTP/1 closes after them, HTTP/2 sends GOAWAY.
    conn.as_mut().graceful_shutdown();
    if let Err(error) = conn.await {
        debug!(proxy = %proxy.addr, %peer, %error, "client connection ended with an error");
    }
}

/// Answers one request: the member's answer, or the proxy's own 502/503/504.
async fn handle(
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
    peer: &Peer,
    busy: BusyGuard,
    upgraded: &Mutex<Option<Tunnel>>,
) -> Response<ProxyBody> {
    let limit = proxy.config.request_timeout;
    let forwarded = forward(&proxy, req, peer, upgraded);
    let mut response = match tokio::time::timeout(limit, forwarded).await {
        Ok(response) => response,
        Err(_) => {
            proxy.entry.local.timeout.fetch_add(1, Ordering::Relaxed);
            local(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "{} did not answer within {}",
                    proxy.alias_host,
                    humantime::format_duration(limit)
                ),
            )
        }
    };
    response.body_mut().busy = Some(busy);
    response
}

async fn forward(
    proxy: &Arc<Proxy>,
    mut req: Request<Incoming>,
    peer: &Peer,
    upgraded: &Mutex<Option<Tunnel>>,
) -> Response<ProxyBody> {
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        // RFC 9112 section 3.2: 400 for more than one Host. Passed on, the member and the
        // `Forwarded` element (which names the first) could each believe a different one.
        let mut response = local(StatusCode::BAD_REQUEST, "a request names one Host at most");
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let client = proxy.client_of(peer.addr, req.headers());
    let choice = proxy.choice_for(client);
    if choice.active().is_empty() {
        proxy
            .entry
            .local
            .unavailable
            .fetch_add(1, Ordering::Relaxed);
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{} has no active member", proxy.alias_host),
        );
    }
    if req.method() == Method::CONNECT {
        return local(StatusCode::NOT_IMPLEMENTED, "CONNECT is not supported");
    }
    let upgrade = upgrade_asked(&req);
    let mut client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let mut req = prepare(req, peer, &proxy.alias_host);
    if let Some(protocol) = upgrade {
        ask_upgrade(req.headers_mut(), protocol);
    }
    let replayable = is_idempotent(req.method()) && req.body().is_end_stream();
    let mut pending: Request<ReqBody> = req.map(Either::Left);
    // Members a replay should avoid if another one is there (soft: unlike failed connects).
    let mut avoid: Vec<Endpoint> = Vec::new();
    let mut fresh_only = false;
    let mut unsent_left = MAX_UNSENT_RESENDS;
    let mut replay_left = true;
    loop {
        let (member, mut sender, reused) = match checkout(proxy, &choice, &avoid, fresh_only).await
        {
            Ok(c) => c,
            Err(error) => {
                debug!(proxy = %proxy.addr, error, "no member could be reached");
                proxy
                    .entry
                    .local
                    .bad_gateway
                    .fetch_add(1, Ordering::Relaxed);
                return local(
                    StatusCode::BAD_GATEWAY,
                    &format!("no member of {} could be reached", proxy.alias_host),
                );
            }
        };
        let saved = (replayable && replay_left).then(|| Head::of(&pending));
        let mut flight = Flight::request(member.clone(), &choice);
        match sender.try_send_request(pending).await {
            Ok(mut response) => {
                flight.answered(response.status());
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client_side) = client_side.take() else {
                        // hyper does not hand a 101 to a request that did not ask for it.
                        return local(StatusCode::BAD_GATEWAY, "unexpected 101 from a member");
                    };
                    let member_side = hyper::upgrade::on(&mut response);
                    let (mut parts, _) = response.into_parts();
                    let protocol = parts.headers.get(header::UPGRADE).cloned();
                    strip_hop_by_hop(&mut parts.headers);
                    if let Some(protocol) = protocol {
                        ask_upgrade(&mut parts.headers, protocol);
                    }
                    // The member connection is the tunnel's now: it never goes back to a pool.
                    drop(sender);
                    *lock(upgraded) = Some(Tunnel {
                        member,
                        flight,
                        client_side,
                        member_side,
                    });
                    return Response::from_parts(parts, ProxyBody::empty());
                }
                let (mut parts, body) = response.into_parts();
                // RFC 9112 section 6.3: with both, Transfer-Encoding framed the body (hyper
                // read it so), and the Content-Length must go before the message is passed on;
                // left in, it would frame the client's copy and cut the body short.
                if parts.headers.contains_key(header::TRANSFER_ENCODING) {
                    parts.headers.remove(header::CONTENT_LENGTH);
                }
                strip_hop_by_hop(&mut parts.headers);
                let lease = Lease {
                    flight,
                    sender: Some(sender),
                    member,
                };
                return Response::from_parts(parts, ProxyBody::member(body, lease));
            }
            Err(mut error) => match (error.take_message(), saved) {
                (Some(back), _) if unsent_left > 0 => {
                    // Never written: sending it again cannot repeat anything.
                    debug!(proxy = %proxy.addr, member = %member.endpoint, error = %error.error(), "request came back unsent; sending it again");
                    unsent_left -= 1;
                    flight.unsent();
                    pending = back;
                    fresh_only = true;
                }
                // An answer that came but could not be read is an answer all the same: the
                // member acted on the request, so it is not sent again.
                (_, Some(head)) if !error.error().is_parse() => {
                    // The connection closed under an idempotent request without a body before
                    // any answer: the keep-alive race on a pooled connection, or a member that
                    // died. Asking another member once is safe.
                    debug!(proxy = %proxy.addr, member = %member.endpoint, reused, error = %error.error(), "member connection closed before answering; replaying once");
                    replay_left = false;
                    pending = head.into_request();
                    avoid.push(member.endpoint);
                    fresh_only = true;
                }
                _ => {
                    debug!(proxy = %proxy.addr, member = %member.endpoint, error = %error.error(), "member did not answer");
                    proxy
                        .entry
                        .local
                        .bad_gateway
                        .fetch_add(1, Ordering::Relaxed);
                    return local(
                        StatusCode::BAD_GATEWAY,
                        &format!(
                            "a member of {} closed the connection before answering",
                            proxy.alias_host
                        ),
                    );
                }
            },
        }
    }
}

/// A connection to a member: an idle pooled one (`true`) or a new one (`false`). Failed
/// connects are retried on other members, up to [`super::MAX_CONNECT_TRIES`] in all.
async fn checkout(
    proxy: &Proxy,
    choice: &Choice,
    avoid: &[Endpoint],
    fresh_only: bool,
) -> Result<(Arc<Member>, Sender, bool), String> {
    let mut failed: Vec<Endpoint> = Vec::new();
    let mut last = "no member to try".to_owned();
    for _ in 0..super::MAX_CONNECT_TRIES {
        let mut exclude = failed.clone();
        exclude.extend_from_slice(avoid);
        let Some(member) = proxy
            .pick(choice, &exclude)
            .or_else(|| proxy.pick(choice, &failed))
        else {
            break;
        };
        if !fresh_only && let Some(sender) = take_idle(proxy, &member).await {
            return Ok((member, sender, true));
        }
        match connect(proxy, &member).await {
            Ok(sender) => return Ok((member, sender, false)),
            Err(error) => {
                proxy.connect_failed(&member, choice, &error);
                failed.push(member.endpoint);
                last = error;
            }
        }
    }
    Err(last)
}

/// The most recently used idle connection of `member` that is still open and ready.
async fn take_idle(proxy: &Proxy, member: &Member) -> Option<Sender> {
    loop {
        let idle = lock(member.idle()).pop()?;
        if idle.since.elapsed() >= proxy.config.backend_idle_timeout || idle.sender.is_closed() {
            continue;
        }
        let mut sender = idle.sender;
        // Normally at once; it waits only while hyper finishes the previous exchange.
        match tokio::time::timeout(proxy.config.connect_timeout, sender.ready()).await {
            Ok(Ok(())) => return Some(sender),
            _ => continue,
        }
    }
}

/// A new HTTP/1.1 connection to `member`.
async fn connect(proxy: &Proxy, member: &Member) -> Result<Sender, String> {
    let stream = proxy.connect(member).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake with {}: {e}", member.endpoint))?;
    let endpoint = member.endpoint;
    tokio::spawn(async move {
        // With upgrades, a 101 hands the connection to the tunnel instead of closing it.
        if let Err(error) = conn.with_upgrades().await {
            debug!(member = %endpoint, %error, "member connection ended with an error");
        }
    });
    Ok(sender)
}

fn put_idle(member: &Member, sender: Sender) {
    let mut idle = lock(member.idle());
    if idle.len() >= super::MAX_IDLE_PER_MEMBER {
        idle.remove(0);
    }
    idle.push(Idle {
        sender,
        since: Instant::now(),
    });
}

/// The protocol an HTTP/1.1 request asks to upgrade to: an `Upgrade` header and `upgrade` among
/// the `Connection` options (RFC 9110 section 7.8). HTTP/2 has no such upgrade.
fn upgrade_asked(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asked = connection_options(req.headers()).any(|o| o.eq_ignore_ascii_case("upgrade"));
    asked.then(|| req.headers().get(header::UPGRADE).cloned())?
}

/// Puts back the two hop-by-hop headers an upgrade needs, after the rest were stripped.
fn ask_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// An upgraded exchange waiting for hyper to let go of both connections.
pub(super) struct Tunnel {
    member: Arc<Member>,
    /// In flight on the member until the tunnel closes.
    flight: Flight,
    client_side: OnUpgrade,
    member_side: OnUpgrade,
}

impl Tunnel {
    /// Copies both ways until either side closes, the member has been out of the answers for
    /// `drain_deadline`, the client is idle for `idle_timeout`, or the proxy stops.
    async fn run(
        self,
        proxy: &Proxy,
        peer: SocketAddr,
        activity: &Activity,
        shutdown: &CancellationToken,
    ) {
        let Self {
            member,
            flight,
            client_side,
            member_side,
        } = self;
        let endpoint = member.endpoint;
        let (client, upstream) = match tokio::try_join!(client_side, member_side) {
            Ok(both) => both,
            Err(error) => {
                debug!(proxy = %proxy.addr, %peer, member = %endpoint, %error, "upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        let drained = member.watch_drain();
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = copied {
                    debug!(proxy = %proxy.addr, %peer, member = %endpoint, %error, "upgraded connection ended with an error");
                }
            }
            () = drained.cancelled() => {
                debug!(proxy = %proxy.addr, %peer, member = %endpoint, "closing an upgraded connection: the member left the answers");
            }
            () = activity.idle(proxy.config.idle_timeout) => {
                debug!(proxy = %proxy.addr, %peer, member = %endpoint, "closing an idle upgraded connection");
            }
            () = shutdown.cancelled() => {}
        }
        drop(flight);
    }
}

/// RFC 9110 section 9.2.2.
fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// What a replay needs: the head of a request without a body.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Head {
    fn of(req: &Request<ReqBody>) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        }
    }

    fn into_request(self) -> Request<ReqBody> {
        let mut req = Request::new(Either::Right(Empty::new()));
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req
    }
}

/// Who is on the other end of a client connection, in the forms the forwarding headers take,
/// made once per connection.
struct Peer {
    /// The peer's address.
    addr: IpAddr,
    /// The address as `X-Forwarded-For` lists it.
    ip: HeaderValue,
    /// The start of this proxy's `Forwarded` element: `for=...;proto=http`.
    forwarded: String,
    /// The last host asked for and its whole `Forwarded` element: a connection's requests
    /// nearly always name the same host.
    last: Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl Peer {
    fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_canonical();
        let node = if ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.to_string()
        };
        Self {
            addr: ip,
            ip: HeaderValue::from_str(&ip.to_string()).expect("an IP address is a header value"),
            forwarded: format!("for={node};proto=http"),
            last: Mutex::new(None),
        }
    }

    /// This proxy's `Forwarded` element for a request that asked for `host`.
    fn forwarded_for(&self, host: Option<&HeaderValue>) -> HeaderValue {
        let mut last = lock(&self.last);
        if let (Some((seen, value)), Some(host)) = (&*last, host)
            && seen == host
        {
            return value.clone();
        }
        let mut element = self.forwarded.clone();
        if let Some(name) = host.and_then(|h| h.to_str().ok()) {
            element.push_str(";host=");
            element.push_str(&quote(name));
        }
        // Visible ASCII only (the host was, and `quote` escapes what it must).
        let value = HeaderValue::from_str(&element)
            .unwrap_or_else(|_| HeaderValue::from_str(&self.forwarded).expect("ASCII"));
        if let Some(host) = host {
            *last = Some((host.clone(), value.clone()));
        }
        value
    }
}

/// Turns a client's request into the one sent to a member: origin-form target, HTTP/1.1, a
/// `Host`, no hop-by-hop headers, and `X-Forwarded-For` and `Forwarded` saying who asked.
fn prepare(req: Request<Incoming>, peer: &Peer, alias_host: &str) -> Request<Incoming> {
    let (mut parts, body) = req.into_parts();
    // HTTP/2 carries the host in the `:authority` pseudo-header, which hyper puts in the URI.
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut parts.headers);
    // HTTP/1 requests are in origin form already; an absolute form (and HTTP/2's) is cut down.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    }
    parts.version = Version::HTTP_11;
    if !parts.headers.contains_key(header::HOST) {
        let value = host
            .clone()
            .or_else(|| HeaderValue::from_str(alias_host).ok());
        if let Some(value) = value {
            parts.headers.insert(header::HOST, value);
        }
    }

    append_list(&mut parts.headers, X_FORWARDED_FOR, peer.ip.clone());
    append_list(
        &mut parts.headers,
        FORWARDED,
        peer.forwarded_for(host.as_ref()),
    );
    Request::from_parts(parts, body)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Appends `item` to the comma-separated list header `name`, folding earlier lines into one.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, item);
        return;
    }
    let mut list: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    list.push(item.to_str().unwrap_or_default());
    if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
        headers.insert(name, value);
    }
}

/// A `Forwarded` parameter value: a token as it is, anything else quoted (RFC 7239).
fn quote(value: &str) -> String {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The headers that describe one connection rather than the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The options of every `Connection` line, trimmed.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Removes the hop-by-hop headers, including the ones `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one look at the names costs less than nine removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = connection_options(headers)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// An answer of the proxy itself, with a short text body.
fn local(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let body = format!(
        "{} {}: {text}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(ProxyBody {
        kind: Kind::Local(Full::new(Bytes::from(body))),
        busy: None,
    });
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A member's answer in flight: its connection goes back to the pool when the body ends.
struct Lease {
    flight: Flight,
    sender: Option<Sender>,
    member: Arc<Member>,
}

impl Lease {
    /// The body ended cleanly: the connection may serve another request.
    fn end(mut self) {
        if let Some(sender) = self.sender.take()
            && !sender.is_closed()
        {
            put_idle(&self.member, sender);
        }
    }

    /// The body broke off: the connection is dropped (and so closed) with the lease.
    fn fail(mut self) {
        self.flight.fail();
    }
}

/// The body sent to the client: a member's, streamed frame by frame, or the proxy's own.
pub(super) struct ProxyBody {
    kind: Kind,
    /// Keeps the client connection from counting as idle until the body is done.
    busy: Option<BusyGuard>,
}

enum Kind {
    Member {
        body: Incoming,
        lease: Option<Lease>,
    },
    Local(Full<Bytes>),
}

impl ProxyBody {
    fn empty() -> Self {
        Self {
            kind: Kind::Local(Full::new(Bytes::new())),
            busy: None,
        }
    }

    fn member(body: Incoming, lease: Lease) -> Self {
        Self {
            kind: Kind::Member {
                body,
                lease: Some(lease),
            },
            busy: None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never: Infallible| match never {}),
            Kind::Member { body, lease } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    // The member's last bytes are in hand (or there were none left): its
                    // connection goes back to the pool now, before the client can see the end
                    // of the answer and send its next request.
                    Poll::Ready(None) => {
                        if let Some(lease) = lease.take() {
                            lease.end();
                        }
                    }
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => {
                        if let Some(lease) = lease.take() {
                            lease.end();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(lease) = lease.take() {
                            lease.fail();
                        }
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(full) => full.is_end_stream(),
            Kind::Member { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(full) => full.size_hint(),
            Kind::Member { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // An empty body (a 204, a HEAD answer) may never be polled: it ended all the same. A
        // body dropped half-way means the client went away; the connection cannot be reused.
        if let Kind::Member { body, lease } = &mut self.kind
            && let Some(lease) = lease.take()
            && body.is_end_stream()
        {
            lease.end();
        }
    }
}

#[cfg(test)]
mod tests;
