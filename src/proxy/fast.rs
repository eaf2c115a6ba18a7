//! The proxy's own HTTP/1.1 path: plain keep-alive requests served on the client connection's
//! task, with no second HTTP stack, no hand-over between tasks, and no allocation per request.
//!
//! A client connection starts here ([`serve_connection`]). Each request head is read into the
//! connection's buffer and judged by [`wire::prepare_request`]: a plain one is forwarded on a
//! pooled member connection driven by this same task (head and body in one write), its answer
//! read by [`wire::read_response`] and passed back (head and the first body bytes in one write).
//! The first request that is not plain (HTTP/2's preface, an upgrade, chunked or `Expect`
//! bodies, HTTP/1.0, anything malformed) hands the connection to the general path
//! ([`super::http`], hyper) with every byte read so far, and hyper serves it from there on; so
//! hostile input always meets hyper's parser and its answers.
//!
//! The rules are the general path's: a member is chosen per request from the current snapshot
//! for this client's side; a failed connect is retried on another member; a request is sent
//! again only when that cannot repeat an effect (a pooled connection found closed before
//! writing; an idempotent request without a body whose connection closed before any answer,
//! once, avoiding that member); nothing is retried once answer bytes came. The work is counted
//! in flight on its member until the answer's body ended (a drain waits for it), and in the
//! service's figures ([`super::Flight`]).

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::wire::{self, Answer, Chunks, Forwarding, Framing, Plain};
use super::{Choice, Flight, Member, Proxy, SideMemo, lock};
use crate::conns::{Activity, Slot};
use crate::model::Endpoint;

/// What a read asks for at least: room for a head and a small body.
const READ_CHUNK: usize = 16 * 1024;

/// An idle pooled member connection of this path.
pub(super) struct Idle {
    stream: TcpStream,
    pub(super) since: Instant,
}

impl Idle {
    /// Whether the member closed it (or sent what nobody asked for) while it sat in the pool:
    /// known without a system call unless the socket became readable.
    pub(super) fn is_closed(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Serves one client connection until it closes, goes idle, or the daemon stops; hands it to
/// the general path at its first request that is not plain.
pub(super) async fn serve_connection(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    activity: Arc<Activity>,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let peer_ip = peer.ip().to_canonical();
    let mut conn = Conn {
        client: stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        member_buf: BytesMut::new(),
        request_head: Vec::with_capacity(1024),
        answer_head: Vec::with_capacity(1024),
        who: Forwarding::new(peer_ip),
        peer: peer_ip,
        client_header: (proxy.config.client_header.as_ref())
            .filter(|h| h.trusts(peer_ip))
            .map(|h| h.name.clone()),
        head_taken: false,
        read_through: false,
        side: SideMemo::default(),
    };
    {
        let stopped = shutdown.clone().cancelled_owned();
        let evicted = slot.evicted();
        let timer = tokio::time::sleep(proxy.config.header_timeout);
        tokio::pin!(stopped, evicted, timer);
        loop {
            let waited = conn
                .next_request(
                    &proxy,
                    &activity,
                    stopped.as_mut(),
                    evicted.as_mut(),
                    timer.as_mut(),
                )
                .await;
            let mut plain = match waited {
                Next::Plain(plain) => plain,
                Next::Closed => return,
                Next::General => break,
            };
            let busy = activity.begin();
            // Stopping: this answer is the connection's last, and says so.
            plain.keep_alive &= !proxy.stopping.load(Ordering::Acquire);
            let keep = conn.exchange(&proxy, plain).await;
            drop(busy);
            if !keep || proxy.stopping.load(Ordering::Acquire) {
                return;
            }
        }
    }
    let Conn { client, buf, .. } = conn;
    let io = Rewind {
        read: buf,
        inner: client,
    };
    super::http::serve_io(proxy, io, peer, shutdown, activity, slot).await;
}

enum Next {
    Plain(Plain),
    General,
    Closed,
}

/// One client connection on this path, with the buffers its requests reuse.
struct Conn {
    client: TcpStream,
    /// Bytes from the client not yet forwarded (a head being read, pipelined requests).
    buf: BytesMut,
    /// Bytes from the member not yet passed on.
    member_buf: BytesMut,
    /// The head sent to the member for the current request (kept for a replay).
    request_head: Vec<u8>,
    /// The head sent to the client for the current answer.
    answer_head: Vec<u8>,
    who: Forwarding,
    peer: IpAddr,
    /// The configured client header when this peer is trusted to set it.
    client_header: Option<String>,
    /// The current request's head is out of `buf` (being forwarded).
    head_taken: bool,
    /// ... and so is all of its body: the connection is in step for the next request.
    read_through: bool,
    /// The side of a weighted step its client was put on (hashed once per client and route).
    side: SideMemo,
}

/// How an exchange with a member went before the answer reached the client.
enum Sent {
    /// The answer's head is in `member_buf` (and the client's head in `answer_head`).
    Answered(Answer, TcpStream, Arc<Member>, Flight),
    /// The proxy answers itself: status, text, and whether the client connection can go on.
    Local(u16, String),
}

impl Conn {
    /// Waits for the next request head (timed by `header_timeout` from when the connection was
    /// ready for it, and by `idle_timeout` from the last bytes moved).
    async fn next_request(
        &mut self,
        proxy: &Proxy,
        activity: &Activity,
        mut stopped: Pin<&mut tokio_util::sync::WaitForCancellationFutureOwned>,
        mut evicted: Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
        mut timer: Pin<&mut Sleep>,
    ) -> Next {
        let ready_at = tokio::time::Instant::now();
        let header_deadline = ready_at + proxy.config.header_timeout;
        let mut idle_deadline = ready_at + proxy.config.idle_timeout;
        loop {
            if !self.buf.is_empty() {
                let header = self.client_header.as_deref();
                match wire::prepare_request(
                    &self.buf,
                    &mut self.who,
                    header,
                    &mut self.request_head,
                ) {
                    wire::Request::Partial => {}
                    wire::Request::General => return Next::General,
                    wire::Request::Plain(plain) => return Next::Plain(plain),
                }
            }
            timer.as_mut().reset(header_deadline.min(idle_deadline));
            reserve(&mut self.buf);
            let read = tokio::select! {
                biased;
                read = self.client.read_buf(&mut self.buf) => read,
                () = stopped.as_mut() => return Next::Closed,
                () = timer.as_mut() => {
                    debug!(proxy = %proxy.addr, peer = %self.peer, "closing a client connection: no request head in time");
                    return Next::Closed;
                }
                () = evicted.as_mut() => {
                    debug!(proxy = %proxy.addr, peer = %self.peer, "closing an idle client connection to make room");
                    return Next::Closed;
                }
            };
            match read {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(_) => {
                    activity.touch();
                    idle_deadline = tokio::time::Instant::now() + proxy.config.idle_timeout;
                }
            }
        }
    }

    /// Forwards one plain request and passes its answer back; whether the client connection
    /// can carry another request.
    async fn exchange(&mut self, proxy: &Proxy, plain: Plain) -> bool {
        proxy.entry.local.fast_requests.add_one();
        self.head_taken = false;
        self.read_through = false;
        let client = plain.client.unwrap_or(self.peer);
        let choice = proxy.choice_remembered(client, &mut self.side);
        let limit = proxy.config.request_timeout;
        let sent = match tokio::time::timeout(limit, self.send(proxy, &choice, &plain)).await {
            Ok(sent) => sent,
            Err(_) => {
                proxy.entry.local.timeout.fetch_add(1, Ordering::Relaxed);
                Sent::Local(
                    504,
                    format!(
                        "{} did not answer within {}",
                        proxy.alias_host,
                        humantime::format_duration(limit)
                    ),
                )
            }
        };
        match sent {
            Sent::Answered(answer, member_conn, member, flight) => {
                self.pass_answer(proxy, &plain, answer, member_conn, &member, flight)
                    .await
            }
            Sent::Local(status, text) => self.answer_locally(&plain, status, &text).await,
        }
    }

    /// Sends the request to a member and reads the answer's head.
    async fn send(&mut self, proxy: &Proxy, choice: &Choice, plain: &Plain) -> Sent {
        if choice.active().is_empty() {
            proxy
                .entry
                .local
                .unavailable
                .fetch_add(1, Ordering::Relaxed);
            return Sent::Local(503, format!("{} has no active member", proxy.alias_host));
        }
        let mut avoid: Vec<Endpoint> = Vec::new();
        let mut replay_left = plain.replayable;
        // The client's head has been forwarded already: its bytes are gone from `buf`.
        let mut head_sent = false;
        loop {
            let (member, mut stream, reused) = match checkout(proxy, choice, &avoid).await {
                Ok(c) => c,
                Err(error) => {
                    debug!(proxy = %proxy.addr, error, "no member could be reached");
                    proxy
                        .entry
                        .local
                        .bad_gateway
                        .fetch_add(1, Ordering::Relaxed);
                    return Sent::Local(
                        502,
                        format!("no member of {} could be reached", proxy.alias_host),
                    );
                }
            };
            let mut flight = Flight::request(member.clone(), choice);
            let written = if head_sent {
                // A replay: no body, only the head.
                stream.write_all(&self.request_head).await
            } else {
                head_sent = true;
                self.forward_request(&mut stream, plain).await
            };
            let outcome = match written {
                Ok(()) => self.read_answer_head(&mut stream, plain).await,
                Err(error) => Err(AnswerError::Closed(error.to_string())),
            };
            match outcome {
                Ok(answer) => {
                    flight.answered_code(answer.status);
                    return Sent::Answered(answer, stream, member, flight);
                }
                Err(AnswerError::Closed(error)) if replay_left => {
                    // The connection closed under an idempotent request without a body before
                    // any answer: the keep-alive race on a pooled connection, or a member that
                    // died. Asking another member once is safe.
                    debug!(proxy = %proxy.addr, member = %member.endpoint, reused, error, "member connection closed before answering; replaying once");
                    replay_left = false;
                    avoid.push(member.endpoint);
                    self.member_buf.clear();
                }
                Err(error) => {
                    debug!(proxy = %proxy.addr, member = %member.endpoint, error = %error, "member did not answer");
                    proxy
                        .entry
                        .local
                        .bad_gateway
                        .fetch_add(1, Ordering::Relaxed);
                    let text = match error {
                        AnswerError::Closed(_) => format!(
                            "a member of {} closed the connection before answering",
                            proxy.alias_host
                        ),
                        AnswerError::Bad(what) => {
                            format!("a member of {} answered {what}", proxy.alias_host)
                        }
                    };
                    return Sent::Local(502, text);
                }
            }
        }
    }

    /// Writes the member's head and the request body: the body bytes already read go in the
    /// same write as the head; the rest is copied from the client as it comes.
    async fn forward_request(&mut self, stream: &mut TcpStream, plain: &Plain) -> io::Result<()> {
        self.buf.advance(plain.head_len);
        self.head_taken = true;
        let in_hand = (self.buf.len() as u64).min(plain.body_len) as usize;
        send(stream, &mut self.request_head, &self.buf[..in_hand]).await?;
        self.buf.advance(in_hand);
        let mut left = plain.body_len - in_hand as u64;
        while left > 0 {
            reserve(&mut self.buf);
            if self.client.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed before its body ended",
                ));
            }
            let take = (self.buf.len() as u64).min(left) as usize;
            stream.write_all(&self.buf[..take]).await?;
            self.buf.advance(take);
            left -= take as u64;
        }
        self.read_through = true;
        Ok(())
    }

    /// Reads the member's answer head into `member_buf` (interim answers skipped) and makes
    /// the client's head in `answer_head`.
    async fn read_answer_head(
        &mut self,
        stream: &mut TcpStream,
        plain: &Plain,
    ) -> Result<Answer, AnswerError> {
        self.member_buf.clear();
        loop {
            if !self.member_buf.is_empty() {
                let read = wire::read_response(
                    &self.member_buf,
                    plain.head_method,
                    !plain.keep_alive,
                    &mut self.answer_head,
                );
                match read {
                    wire::Response::Partial => {}
                    wire::Response::Interim(len) => {
                        self.member_buf.advance(len);
                        continue;
                    }
                    wire::Response::Bad(what) => return Err(AnswerError::Bad(what)),
                    wire::Response::Final(answer) => return Ok(answer),
                }
            }
            reserve(&mut self.member_buf);
            match stream.read_buf(&mut self.member_buf).await {
                Ok(0) if self.member_buf.is_empty() => {
                    return Err(AnswerError::Closed("closed before answering".into()));
                }
                Ok(0) => return Err(AnswerError::Bad("a head cut short")),
                Ok(_) => {}
                Err(error) if self.member_buf.is_empty() => {
                    return Err(AnswerError::Closed(error.to_string()));
                }
                Err(_) => return Err(AnswerError::Bad("a head cut short")),
            }
        }
    }

    /// Passes the answer to the client: its head with the body bytes in hand in one write,
    /// then the rest as it comes. The member connection goes back to the pool as soon as its
    /// last bytes are in hand, before the client can see the end and ask again.
    async fn pass_answer(
        &mut self,
        proxy: &Proxy,
        plain: &Plain,
        answer: Answer,
        stream: TcpStream,
        member: &Arc<Member>,
        flight: Flight,
    ) -> bool {
        let mut flight = Some(flight);
        self.member_buf.advance(answer.head_len);
        let mut stream = Some(stream);
        let mut chunks = Chunks::default();
        let mut left = match answer.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut first = true;
        let mut member_open = true;
        loop {
            // How much of what is in hand belongs to the body, and whether the body ended.
            let (take, ended) = match answer.framing {
                Framing::Empty => (0, true),
                Framing::Length(_) => {
                    let take = (self.member_buf.len() as u64).min(left);
                    left -= take;
                    (take as usize, left == 0)
                }
                Framing::Chunked => match chunks.advance(&self.member_buf) {
                    Ok(step) => step,
                    Err(wire::BadChunk) => {
                        debug!(proxy = %proxy.addr, member = %member.endpoint, "member sent invalid chunked coding");
                        if let Some(f) = flight.as_mut() {
                            f.fail();
                        }
                        // What was passed on so far stays; the client learns by the close.
                        return false;
                    }
                },
                Framing::Close => (self.member_buf.len(), !member_open),
            };
            // Bytes after the answer's end on a member connection: it cannot be trusted again.
            if ended
                && answer.reusable
                && take == self.member_buf.len()
                && let Some(done) = stream.take()
            {
                put_idle(member, done);
            }
            if ended {
                // The member's part is over: counted before the client can see the end.
                flight.take();
            }
            let written = if answer.rechunk {
                let mut framed = std::mem::take(&mut self.answer_head);
                if !first {
                    framed.clear();
                }
                let data = &self.member_buf[..take];
                if !data.is_empty() {
                    framed.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    framed.extend_from_slice(data);
                    framed.extend_from_slice(b"\r\n");
                }
                if ended {
                    framed.extend_from_slice(b"0\r\n\r\n");
                }
                let sent = self.client.write_all(&framed).await;
                self.answer_head = framed;
                sent
            } else if first {
                send(
                    &mut self.client,
                    &mut self.answer_head,
                    &self.member_buf[..take],
                )
                .await
            } else {
                self.client.write_all(&self.member_buf[..take]).await
            };
            if let Err(error) = written {
                debug!(proxy = %proxy.addr, peer = %self.peer, %error, "client went away during an answer");
                return false;
            }
            first = false;
            if ended {
                self.member_buf.clear();
                return plain.keep_alive && !answer.close_client;
            }
            self.member_buf.clear();
            // Room for what is left of a large body (up to 256 KiB a read), kept for the
            // connection's next answers.
            let want = match answer.framing {
                Framing::Length(_) => (left as usize).clamp(READ_CHUNK, 256 * 1024),
                _ => 64 * 1024,
            };
            if self.member_buf.capacity() < want {
                self.member_buf.reserve(want);
            }
            let Some(open) = stream.as_mut() else {
                return false;
            };
            match open.read_buf(&mut self.member_buf).await {
                Ok(0) if answer.framing == Framing::Close => member_open = false,
                Ok(0) | Err(_) => {
                    debug!(proxy = %proxy.addr, member = %member.endpoint, "member connection broke off during an answer");
                    if let Some(f) = flight.as_mut() {
                        f.fail();
                    }
                    return false;
                }
                Ok(_) => {}
            }
        }
    }

    /// The proxy's own answer; the connection goes on only when the request was read through
    /// (or still is whole in the buffer), so its body cannot be taken for the next request.
    async fn answer_locally(&mut self, plain: &Plain, status: u16, text: &str) -> bool {
        let reason = hyper::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let whole = plain.head_len as u64 + plain.body_len;
        let in_step = if self.read_through {
            true
        } else if !self.head_taken && self.buf.len() as u64 >= whole {
            self.buf.advance(whole as usize);
            true
        } else {
            false
        };
        let keep = plain.keep_alive && in_step;
        let body = format!("{status} {reason}: {text}\n");
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if keep { "" } else { "connection: close\r\n" }
        );
        self.client.write_all(answer.as_bytes()).await.is_ok() && keep
    }
}

enum AnswerError {
    /// The connection closed (or failed) before any byte of an answer.
    Closed(String),
    /// The member answered something this path cannot pass on.
    Bad(&'static str),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed(e) => write!(f, "{e}"),
            Self::Bad(what) => write!(f, "answered {what}"),
        }
    }
}

/// Room for a read of at least [`READ_CHUNK`] bytes (reclaiming consumed space first).
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

/// Bodies up to this size are copied behind their head and sent with it in one plain `send`;
/// larger ones go with it in one `writev`.
const JOIN_UP_TO: usize = 16 * 1024;

/// Writes `head` then `body`, in one system call when the socket takes them (`head` is left as
/// it was).
async fn send(stream: &mut TcpStream, head: &mut Vec<u8>, body: &[u8]) -> io::Result<()> {
    if body.len() <= JOIN_UP_TO {
        let len = head.len();
        head.extend_from_slice(body);
        let sent = stream.write_all(head).await;
        head.truncate(len);
        return sent;
    }
    let (mut head, mut body) = (&head[..], body);
    while !head.is_empty() {
        let n = stream
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < head.len() {
            head = &head[n..];
        } else {
            body = &body[n - head.len()..];
            head = &[];
        }
    }
    stream.write_all(body).await
}

/// A member connection: an idle pooled one still open (`true`) or a new one (`false`). Failed
/// connects are retried on other members, up to [`super::MAX_CONNECT_TRIES`] in all.
async fn checkout(
    proxy: &Proxy,
    choice: &Choice,
    avoid: &[Endpoint],
) -> Result<(Arc<Member>, TcpStream, bool), String> {
    let mut failed: Vec<Endpoint> = Vec::new();
    let mut last = "no member to try".to_owned();
    for _ in 0..super::MAX_CONNECT_TRIES {
        let picked = if failed.is_empty() {
            proxy.pick(choice, avoid)
        } else {
            let mut exclude = failed.clone();
            exclude.extend_from_slice(avoid);
            proxy.pick(choice, &exclude)
        };
        let Some(member) = picked.or_else(|| proxy.pick(choice, &failed)) else {
            break;
        };
        if avoid.is_empty()
            && let Some(stream) = take_idle(proxy, &member)
        {
            return Ok((member, stream, true));
        }
        match proxy.connect(&member).await {
            Ok(stream) => return Ok((member, stream, false)),
            Err(error) => {
                proxy.connect_failed(&member, choice, &error);
                failed.push(member.endpoint);
                last = error;
            }
        }
    }
    Err(last)
}

/// The most recently used idle connection of `member` that is still open.
fn take_idle(proxy: &Proxy, member: &Member) -> Option<TcpStream> {
    loop {
        let idle = lock(member.raw_idle()).pop()?;
        if idle.since.elapsed() < proxy.config.backend_idle_timeout && !idle.is_closed() {
            return Some(idle.stream);
        }
    }
}

fn put_idle(member: &Member, stream: TcpStream) {
    let mut idle = lock(member.raw_idle());
    if idle.len() >= super::MAX_IDLE_PER_MEMBER {
        idle.remove(0);
    }
    idle.push(Idle {
        stream,
        since: Instant::now(),
    });
}

/// A client connection handed to the general path: the bytes this path read first, then the
/// socket.
pub(super) struct Rewind {
    read: BytesMut,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
