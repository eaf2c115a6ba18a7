//! Request smuggling and HTTP/1.1 framing through the front proxy, with hand-written bytes on raw
//! sockets. Every case runs against two proxies of one daemon in front of the same alias: the
//! default one (aliasd's own HTTP/1.1 path for plain requests) and one with `fast_path = false`
//! (hyper for everything). Each case asserts what RFC 9112 asks for and that the two proxies
//! agree: same statuses, same bodies from the member, same close-or-keep outcome, and the same
//! requests seen by the member. Where the hyper path is more lenient than the RFC (an HTTP/1.1
//! request without `Host` is forwarded with the alias as its host), the test says so and holds
//! the two paths to the same outcome.
//!
//! Run with `--nocapture` to see, case by case, the outcome the paths give (statuses, whether
//! the connection stayed open, the requests the member read).
//!
//! The member is a raw TCP server written here. It logs every request it reads (request line,
//! headers, body, or that the body never completed), refuses to guess when a forwarded request
//! carries two framings, and answers either an echo of what it read or, for `/raw/...` targets,
//! a chosen misbehaving answer. A request smuggled inside another's body would show in its log as
//! a request line of its own.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aliasd::daemon::Ready;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{ConfigText, Daemon, Fixture};

/// How long a read may wait for the next bytes before the conversation counts as hung.
const READ_LIMIT: Duration = Duration::from_secs(3);
/// The target of the request that checks whether a connection is still usable.
const PROBE: &str = "/__probe";

// ---- the member ----

/// One request as the member read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// `METHOD TARGET VERSION`.
    line: String,
    /// Names lowercased, sorted with their values.
    headers: Vec<(String, String)>,
    /// The body; `None` if it never completed (the connection ended or its framing was broken).
    body: Option<Vec<u8>>,
    /// The request carried both `Content-Length` and `Transfer-Encoding`, or two
    /// `Content-Length` lines: the member did not guess which framing was meant.
    ambiguous: bool,
}

impl Seen {
    fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The raw member: logs what it reads, answers with an echo or a chosen raw answer.
struct Member {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Member {
    async fn spawn(ip: Ipv4Addr) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("member binds");
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = log.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(member_connection(stream, record.clone()));
            }
        });
        Self { addr, log, task }
    }

    /// Everything logged since the last call, probes left out.
    fn take(&self) -> Vec<Seen> {
        let mut log = self.log.lock().unwrap();
        std::mem::take(&mut *log)
            .into_iter()
            .filter(|s| s.target() != PROBE)
            .collect()
    }
}

async fn member_connection(stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let (read, mut write) = stream.into_split();
    let mut conn = Reader::new(read);
    loop {
        let Ok(head) = conn.read_head().await else {
            return;
        };
        let (line, headers) = parse_head(&head);
        let mut sorted = headers.clone();
        sorted.sort();
        let lengths: Vec<&str> = values(&headers, "content-length");
        let codings: Vec<&str> = values(&headers, "transfer-encoding");
        let mut seen = Seen {
            line,
            headers: sorted,
            body: None,
            ambiguous: false,
        };
        if lengths.len() > 1 || (!lengths.is_empty() && !codings.is_empty()) {
            seen.ambiguous = true;
            log.lock().unwrap().push(seen);
            return;
        }
        let body = if codings.iter().any(|c| c.eq_ignore_ascii_case("chunked")) {
            conn.read_chunked().await
        } else if let Some(length) = lengths.first() {
            match length.trim().parse::<usize>() {
                Ok(n) => conn.read_exact(n).await,
                Err(_) => Err("bad content-length".to_owned()),
            }
        } else {
            Ok(Vec::new())
        };
        let complete = body.is_ok();
        seen.body = body.ok();
        let answer = answer_to(&seen);
        let seen_target_is_silent = seen.target() == "/raw/silent";
        log.lock().unwrap().push(seen);
        if !complete {
            return;
        }
        if seen_target_is_silent {
            // Never answers: holds the connection until the proxy gives up on it.
            let _ = conn.read_to_end().await;
            return;
        }
        let (bytes, close) = answer;
        if write.write_all(&bytes).await.is_err() || close {
            return;
        }
    }
}

/// The member's answer to `seen` and whether it closes the connection after it.
fn answer_to(seen: &Seen) -> (Vec<u8>, bool) {
    match seen.target() {
        // No length at all: the body ends when the connection does (RFC 9112 section 6.3, 8).
        "/raw/no-length" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\n\r\nthe whole body, delimited by the close\n"
                .to_vec(),
            true,
        ),
        // Both framings: Transfer-Encoding wins (RFC 9112 section 6.3, 3); 11 bytes, not 5.
        "/raw/cl-and-te" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"
                .to_vec(),
            false,
        ),
        // Two different lengths: unrecoverable (RFC 9112 section 6.3, 5).
        "/raw/two-lengths" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\nContent-Length: 3\r\nContent-Length: 7\r\n\r\nabcdefg"
                .to_vec(),
            false,
        ),
        // More bytes than the length: a second answer nobody asked for. Read as the answer to
        // the next request sent on this connection, it would go to the wrong client.
        "/raw/extra" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\nContent-Length: 3\r\n\r\nok\nHTTP/1.1 200 OK\r\nx-member: poison\r\nContent-Length: 9\r\n\r\npoisoned\n"
                .to_vec(),
            false,
        ),
        "/raw/obs-fold" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\nX-Fold: a\r\n b\r\nContent-Length: 3\r\n\r\nok\n"
                .to_vec(),
            false,
        ),
        "/raw/bad-status" => (
            b"HTTP/1.1 2000 OK\r\nx-member: raw\r\nContent-Length: 3\r\n\r\nok\n".to_vec(),
            false,
        ),
        "/raw/early-hints" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nx-member: raw\r\nContent-Length: 3\r\n\r\nok\n"
                .to_vec(),
            false,
        ),
        "/raw/te-gzip" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\nTransfer-Encoding: gzip\r\n\r\nnot really gzip\n"
                .to_vec(),
            true,
        ),
        "/raw/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            false,
        ),
        "/raw/204-body" => (
            b"HTTP/1.1 204 No Content\r\nx-member: raw\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
            false,
        ),
        "/raw/head-body" => (
            b"HTTP/1.1 200 OK\r\nx-member: raw\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            false,
        ),
        "/raw/bare-lf" => (
            b"HTTP/1.1 200 OK\nx-member: raw\nContent-Length: 3\n\nok\n".to_vec(),
            false,
        ),
        _ => {
            let echo = echo_of(seen);
            let body = format!("{echo}\n");
            let head = format!(
                "HTTP/1.1 200 OK\r\nx-member: echo\r\nx-echo: {echo}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let mut bytes = head.into_bytes();
            if !seen.line.starts_with("HEAD ") {
                bytes.extend_from_slice(body.as_bytes());
            }
            (bytes, false)
        }
    }
}

/// What the member read, on one line: request line, sorted headers, body length.
fn echo_of(seen: &Seen) -> String {
    let headers: Vec<String> = seen
        .headers
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    format!(
        "{} ; {} ; body {}",
        seen.line,
        headers.join(" ; "),
        seen.body.as_ref().map_or(0, Vec::len)
    )
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The start line and the headers (names lowercased, values trimmed) of a head.
fn parse_head(head: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let line = lines.next().unwrap_or("").to_owned();
    let headers = lines
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_ascii_lowercase(), v.trim().to_owned()),
            None => (l.to_ascii_lowercase(), String::new()),
        })
        .collect();
    (line, headers)
}

// ---- reading a connection ----

/// The reading half of a connection, buffered.
struct Reader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    eof: bool,
}

impl Reader {
    fn new(read: OwnedReadHalf) -> Self {
        Self {
            read,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Reads more bytes; `Err` on EOF, a reset or [`READ_LIMIT`] without bytes.
    async fn fill(&mut self) -> Result<(), String> {
        if self.eof {
            return Err("eof".to_owned());
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(READ_LIMIT, self.read.read(&mut chunk)).await {
            Err(_) => Err("timeout".to_owned()),
            Ok(Err(e)) => {
                self.eof = true;
                Err(format!("error: {e}"))
            }
            Ok(Ok(0)) => {
                self.eof = true;
                Err("eof".to_owned())
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// The bytes up to and including the first `\r\n\r\n`.
    async fn read_head(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(self.buf.drain(..end + 4).collect());
            }
            self.fill().await?;
        }
    }

    async fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            self.fill().await?;
        }
    }

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// A chunked body, strictly: hex sizes, CRLF after each chunk, trailers until an empty line.
    async fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|e| format!("{line:?}: {e}"))?;
            if size == 0 {
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err("no CRLF after a chunk".to_owned());
            }
        }
    }

    async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await.is_ok() {}
        std::mem::take(&mut self.buf)
    }
}

// ---- the client side ----

/// One answer the client read.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The head came, but the body broke off or its framing was invalid: what went wrong.
    broken: Option<String>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The member wrote this answer (it marks every answer with `x-member`), not the proxy.
    fn is_the_members(&self) -> bool {
        self.header("x-member").is_some()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a conversation ended after its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// A further request on the connection was answered.
    Open,
    /// The proxy closed the connection (or reset it).
    Closed,
    /// Neither within [`READ_LIMIT`].
    Hung,
}

#[derive(Debug, Clone)]
struct Conversation {
    answers: Vec<Answer>,
    after: After,
    /// What the member read for this conversation (probes left out).
    seen: Vec<Seen>,
}

impl Conversation {
    fn statuses(&self) -> Vec<u16> {
        self.answers.iter().map(|a| a.status).collect()
    }

    /// The request lines the member read.
    fn lines(&self) -> Vec<&str> {
        self.seen.iter().map(|s| s.line.as_str()).collect()
    }

    /// The conversation with what may differ between the two paths left out: header order,
    /// name case, `date`, framing headers, the wording of the proxy's own error bodies, and
    /// requests the member never finished reading (whether a broken request's head reached the
    /// member before the proxy gave up on it is a race, and such a log entry can land after the
    /// conversation that caused it).
    fn semantics(&self) -> String {
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|a| {
                let mut headers: Vec<&(String, String)> = a
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        ![
                            "date",
                            "content-length",
                            "transfer-encoding",
                            "content-type",
                        ]
                        .contains(&n.as_str())
                    })
                    .collect();
                headers.sort();
                let body = if a.broken.is_some() {
                    "(broken off)".to_owned()
                } else if a.is_the_members() {
                    a.text()
                } else {
                    "(the proxy's own)".to_owned()
                };
                format!("{} {headers:?} {body:?}", a.status)
            })
            .collect();
        let seen: Vec<&Seen> = self
            .seen
            .iter()
            .filter(|s| s.body.is_some() || s.ambiguous)
            .collect();
        format!(
            "answers: {answers:#?}\nafter: {:?}\nmember saw: {seen:#?}",
            self.after
        )
    }
}

/// Reads one answer to a request of `method`; 1xx answers are answers too.
async fn read_answer(conn: &mut Reader, method: &str) -> Result<Answer, String> {
    let head = conn.read_head().await?;
    let (line, headers) = parse_head(&head);
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {line:?}"))?;
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
        broken: None,
    };
    if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        return Ok(answer);
    }
    let chunked = answer.header("transfer-encoding").is_some();
    let length = answer.header("content-length").map(str::to_owned);
    let body = if chunked {
        conn.read_chunked().await
    } else if let Some(length) = length {
        match length.parse() {
            Ok(n) => conn.read_exact(n).await,
            Err(_) => Err(format!("length {length:?}")),
        }
    } else {
        Ok(conn.read_to_end().await)
    };
    match body {
        Ok(body) => answer.body = body,
        Err(e) => answer.broken = Some(e),
    }
    Ok(answer)
}

/// After the answers: whether the connection still takes a request.
async fn after(conn: &mut Reader, write: &mut OwnedWriteHalf) -> After {
    if conn.eof {
        return After::Closed;
    }
    let probe = format!("GET {PROBE} HTTP/1.1\r\nHost: probe\r\n\r\n");
    if write.write_all(probe.as_bytes()).await.is_err() {
        return After::Closed;
    }
    let failure = match read_answer(conn, "GET").await {
        Ok(Answer { broken: None, .. }) => return After::Open,
        Ok(Answer {
            broken: Some(e), ..
        })
        | Err(e) => e,
    };
    if failure == "timeout" {
        After::Hung
    } else {
        After::Closed
    }
}

/// The method of the first request in `bytes`.
fn method_of(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == b' ').unwrap_or(0);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A daemon with two HTTP proxies in front of one raw member: `fast` (the default) and
/// `hyper` (`fast_path = false`).
struct Rig {
    member: Member,
    fast: SocketAddr,
    hyper: SocketAddr,
    daemon: Daemon,
    _fixture: Fixture,
}

impl Rig {
    /// The default proxy's requests on its own path and connections handed to hyper, from
    /// `/metrics`.
    async fn paths(&self) -> (u64, u64) {
        let mut api = TcpStream::connect(self.daemon.api).await.expect("the API");
        api.write_all(b"GET /metrics HTTP/1.1\r\nHost: aliasd\r\nConnection: close\r\n\r\n")
            .await
            .expect("ask for the metrics");
        let mut text = String::new();
        api.read_to_string(&mut text).await.expect("the metrics");
        let read = |name: &str| -> u64 {
            let prefix = format!("{name}{{proxy=\"{}\",", self.fast);
            text.lines()
                .find(|l| l.starts_with(&prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {prefix} in the metrics:\n{text}"))
        };
        (
            read("aliasd_proxy_fast_requests_total"),
            read("aliasd_proxy_general_connections_total"),
        )
    }

    async fn start(net: u8) -> Self {
        Self::start_with(net, "").await
    }

    /// [`Rig::start`] with `keys` (TOML lines) added to both proxies.
    async fn start_with(net: u8, keys: &str) -> Self {
        let member = Member::spawn(Ipv4Addr::new(127, 0, net, 1)).await;
        let proxies = format!(
            "[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"m\"\n{keys}\n\
             [[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"m\"\nfast_path = false\n{keys}\n"
        );
        let fixture = ConfigText::new()
            .service("m", [member.addr])
            .alias("m", ["m"])
            .section(&proxies)
            .fixture();
        let daemon = fixture.start();
        let bytes = std::fs::read(fixture.dir.path().join("ready.json")).expect("ready");
        let ready: Ready = serde_json::from_slice(&bytes).expect("ready file is JSON");
        let rig = Self {
            member,
            fast: ready.proxies[0],
            hyper: ready.proxies[1],
            daemon,
            _fixture: fixture,
        };
        // Both proxies reach the member before any case runs (health "none": at once).
        for proxy in [rig.fast, rig.hyper] {
            let mut ok = false;
            for _ in 0..100 {
                let c = rig
                    .talk(proxy, b"GET /ready HTTP/1.1\r\nHost: m\r\n\r\n", 1)
                    .await;
                if c.statuses() == [200] {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(ok, "the proxy {proxy} never reached the member");
        }
        rig.member.take();
        rig
    }

    /// Writes `bytes` on a new connection to `proxy`, reads up to `answers` final answers (and
    /// any 1xx before them), then finds out whether the connection is still open.
    async fn talk(&self, proxy: SocketAddr, bytes: &[u8], answers: usize) -> Conversation {
        self.talk_in_parts(proxy, &[bytes], answers).await
    }

    /// [`Rig::talk`] writing `parts` one by one, each after an interim (1xx) answer to the
    /// previous one.
    async fn talk_in_parts(
        &self,
        proxy: SocketAddr,
        parts: &[&[u8]],
        answers: usize,
    ) -> Conversation {
        let stream = TcpStream::connect(proxy)
            .await
            .expect("connect to the proxy");
        let (read, mut write) = stream.into_split();
        let mut conn = Reader::new(read);
        let method = method_of(parts[0]);
        let (last, first) = parts.split_last().expect("at least one part");
        let mut got = Vec::new();
        let mut answered_early = false;
        for part in first {
            if write.write_all(part).await.is_err() {
                answered_early = true;
                break;
            }
            match read_answer(&mut conn, &method).await {
                Ok(a) => {
                    let interim = a.status < 200;
                    got.push(a);
                    if !interim {
                        answered_early = true;
                        break;
                    }
                }
                Err(_) => {
                    answered_early = true;
                    break;
                }
            }
        }
        if !answered_early {
            // Written while the answers are read: a proxy may answer (431) and close before it
            // has read everything, and its answer must not be lost to a failed write.
            let writing = async {
                let _ = tokio::time::timeout(READ_LIMIT, write.write_all(last)).await;
            };
            let reading = async {
                let mut finals = 0;
                while finals < answers {
                    match read_answer(&mut conn, &method).await {
                        Ok(a) => {
                            if a.status >= 200 {
                                finals += 1;
                            }
                            let broken = a.broken.is_some();
                            got.push(a);
                            if broken {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            };
            tokio::join!(writing, reading);
        }
        let after = after(&mut conn, &mut write).await;
        Conversation {
            answers: got,
            after,
            seen: self.member.take(),
        }
    }

    /// Runs the same bytes through both proxies, asserts they agree, and returns the outcome.
    async fn both(&self, case: &str, bytes: &[u8], answers: usize) -> Conversation {
        self.both_in_parts(case, &[bytes], answers).await
    }

    async fn both_in_parts(&self, case: &str, parts: &[&[u8]], answers: usize) -> Conversation {
        let fast = self.talk_in_parts(self.fast, parts, answers).await;
        let hyper = self.talk_in_parts(self.hyper, parts, answers).await;
        assert_eq!(
            fast.semantics(),
            hyper.semantics(),
            "{case}: the fast path (left) and hyper (right) disagree"
        );
        // Shown with --nocapture: the outcome both paths must keep giving.
        eprintln!(
            "case {case:?}: answers {:?}, then {:?}; the member read {:?}",
            hyper.statuses(),
            hyper.after,
            hyper
                .seen
                .iter()
                .map(|s| (s.line.as_str(), s.body.as_ref().map(Vec::len)))
                .collect::<Vec<_>>()
        );
        hyper
    }
}

/// The member never read a request it could not frame, nor one smuggled in a body.
fn assert_nothing_smuggled(case: &str, c: &Conversation) {
    for seen in &c.seen {
        assert!(
            !seen.ambiguous,
            "{case}: the member got a request with two framings: {seen:?}"
        );
        assert!(
            !seen.target().contains("smuggled"),
            "{case}: a smuggled request reached the member: {:?}",
            c.lines()
        );
    }
}

// ---- hostile requests ----

/// RFC 9112 section 6.3: a body whose length is ambiguous is refused (400, then close), or
/// framed by `Transfer-Encoding` with `Content-Length` dropped and the connection closed after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_framing_is_refused_or_resolved_by_chunked_and_never_smuggles_a_request() {
    let rig = Rig::start(160).await;

    let c = rig
        .both(
            "two Content-Lengths",
            b"POST /two HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [400], "{c:#?}");
    assert_eq!(c.after, After::Closed, "{c:#?}");
    assert_eq!(c.lines(), Vec::<&str>::new());

    // CL.TE: a front end that believes Content-Length would pass the whole thing on as one
    // body; one that believes chunked would see the `0` chunk end it and a second request.
    let body = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: m\r\n\r\n";
    let cl_te = format!(
        "POST /clte HTTP/1.1\r\nHost: m\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let c = rig.both("CL.TE", cl_te.as_bytes(), 1).await;
    assert_nothing_smuggled("CL.TE", &c);
    match c.statuses()[..] {
        [400] => assert!(c.seen.is_empty(), "{c:#?}"),
        [200] => {
            let seen = &c.seen[..];
            assert_eq!(seen.len(), 1, "{c:#?}");
            assert_eq!(seen[0].line, "POST /clte HTTP/1.1");
            assert_eq!(seen[0].body.as_deref(), Some(&b""[..]), "chunked wins");
            assert_eq!(seen[0].header("content-length"), None, "{c:#?}");
        }
        _ => panic!("CL.TE: {c:#?}"),
    }
    assert_eq!(c.after, After::Closed, "CL.TE must close: {c:#?}");

    // TE.CL: the chunk holds a whole request; a member believing Content-Length: 4 would read
    // it as the next request.
    let inner = "GET /smuggled HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\n\r\nx=1\r\n";
    let te_cl = format!(
        "POST /tecl HTTP/1.1\r\nHost: m\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
        inner.len()
    );
    let c = rig.both("TE.CL", te_cl.as_bytes(), 1).await;
    assert_nothing_smuggled("TE.CL", &c);
    match c.statuses()[..] {
        [400] => assert!(c.seen.is_empty(), "{c:#?}"),
        [200] => {
            assert_eq!(c.lines(), ["POST /tecl HTTP/1.1"], "{c:#?}");
            assert_eq!(c.seen[0].body.as_deref(), Some(inner.as_bytes()));
            assert_eq!(c.seen[0].header("content-length"), None, "{c:#?}");
        }
        _ => panic!("TE.CL: {c:#?}"),
    }
    assert_eq!(c.after, After::Closed, "TE.CL must close: {c:#?}");

    for (case, lengths) in [
        ("a list of two lengths", "Content-Length: 5, 6\r\n"),
        ("a signed length", "Content-Length: +5\r\n"),
        ("a length with a space inside", "Content-Length: 5 5\r\n"),
    ] {
        let bytes = format!("POST /len HTTP/1.1\r\nHost: m\r\n{lengths}\r\nhello!");
        let c = rig.both(case, bytes.as_bytes(), 1).await;
        assert_eq!(c.statuses(), [400], "{case}: {c:#?}");
        assert_eq!(c.after, After::Closed, "{case}: {c:#?}");
        assert!(c.seen.is_empty(), "{case}: {c:#?}");
    }
    // Identical lengths may be taken as one (RFC 9112 section 6.3, 5); the member gets one.
    let c = rig
        .both(
            "the same length twice",
            b"POST /same HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(c.after, After::Open, "{c:#?}");
    assert_eq!(c.seen.len(), 1, "{c:#?}");
    assert_eq!(c.seen[0].header("content-length"), Some("5"));
    assert_eq!(c.seen[0].body.as_deref(), Some(&b"hello"[..]));
    // HTTP/1.0 has no chunked coding: its Transfer-Encoding cannot frame anything.
    let c = rig
        .both(
            "chunked in HTTP/1.0",
            b"POST /old HTTP/1.0\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [400], "{c:#?}");
    assert_eq!(c.after, After::Closed, "{c:#?}");
    assert!(c.seen.is_empty(), "{c:#?}");

    // Obfuscated codings: a Transfer-Encoding whose last coding is not chunked cannot frame a
    // request (RFC 9112 section 6.3, 4): 400 and close, whatever Content-Length says.
    for (case, coding) in [
        ("xchunked", "Transfer-Encoding: xchunked\r\n"),
        (
            "chunked then identity",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        ("space before the colon", "Transfer-Encoding : chunked\r\n"),
    ] {
        let bytes = format!(
            "POST /obf HTTP/1.1\r\nHost: m\r\nContent-Length: {}\r\n{coding}\r\n{body}",
            body.len()
        );
        let c = rig.both(case, bytes.as_bytes(), 1).await;
        assert_nothing_smuggled(case, &c);
        assert_eq!(c.statuses(), [400], "{case}: {c:#?}");
        assert_eq!(c.after, After::Closed, "{case}: {c:#?}");
        assert!(c.seen.is_empty(), "{case}: {c:#?}");
    }
}

/// RFC 9112 sections 5.2 (obs-fold), 2.2 (line endings) and the limits of a head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_oversized_heads_are_refused_before_they_reach_a_member() {
    let rig = Rig::start(161).await;

    let c = rig
        .both(
            "obs-fold",
            b"GET /fold HTTP/1.1\r\nHost: m\r\nX-Long: first\r\n second\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [400], "{c:#?}");
    assert_eq!(c.after, After::Closed, "{c:#?}");
    assert!(c.seen.is_empty(), "{c:#?}");

    // Bare LF line endings: hyper's parser (httparse) accepts a lone LF as a line end, which
    // RFC 9112 section 2.2 allows a recipient to do; the member gets a clean CRLF request.
    let c = rig
        .both("bare LF", b"GET /lf HTTP/1.1\nHost: m\nX-A: 1\n\n", 1)
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(c.after, After::Open, "{c:#?}");
    assert_eq!(c.lines(), ["GET /lf HTTP/1.1"]);
    assert_eq!(c.seen[0].header("x-a"), Some("1"));

    // A bare LF inside a CRLF head, where it could hide a header from one parser.
    let c = rig
        .both(
            "mixed LF",
            b"GET /mixed HTTP/1.1\r\nHost: m\r\nX-A: 1\nX-B: 2\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(c.lines(), ["GET /mixed HTTP/1.1"]);
    assert_eq!(
        (c.seen[0].header("x-a"), c.seen[0].header("x-b")),
        (Some("1"), Some("2"))
    );

    // RFC 9112 section 3.2: more than one Host is a 400; so are a name with a space and a
    // value with a NUL or a lone CR (section 5 and RFC 9110 section 5.5).
    for (case, bytes) in [
        (
            "two Hosts",
            &b"GET /twohosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
        ),
        (
            "a space in a name",
            b"GET /sp HTTP/1.1\r\nHost: m\r\nX Y: 1\r\n\r\n",
        ),
        (
            "NUL in a value",
            b"GET /nul HTTP/1.1\r\nHost: m\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "CR alone in a value",
            b"GET /cr HTTP/1.1\r\nHost: m\r\nX-A: a\rb\r\n\r\n",
        ),
    ] {
        let c = rig.both(case, bytes, 1).await;
        assert_eq!(c.statuses(), [400], "{case}: {c:#?}");
        assert_eq!(c.after, After::Closed, "{case}: {c:#?}");
        assert!(c.seen.is_empty(), "{case}: {c:#?}");
    }

    // An HTTP/1.1 request without Host: RFC 9112 section 3.2 says 400; aliasd (hyper's path)
    // is lenient and names the alias as the Host. Either way both paths must do the same.
    let c = rig
        .both("no Host", b"GET /nohost HTTP/1.1\r\nX-A: 1\r\n\r\n", 1)
        .await;
    match c.statuses()[..] {
        [400] => assert!(c.seen.is_empty(), "{c:#?}"),
        [200] => assert_eq!(c.seen[0].header("host"), Some("m.internal"), "{c:#?}"),
        _ => panic!("no Host: {c:#?}"),
    }

    // The absolute form (RFC 9112 section 3.2.2) reaches the member in origin form.
    let c = rig
        .both(
            "absolute form",
            b"GET http://m/abs?q=1 HTTP/1.1\r\nHost: m\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(c.lines(), ["GET /abs?q=1 HTTP/1.1"]);
    assert_eq!(c.seen[0].header("host"), Some("m"));

    // 200 headers: more than the parser takes.
    let mut many = String::from("GET /many HTTP/1.1\r\nHost: m\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let c = rig.both("200 headers", many.as_bytes(), 1).await;
    assert_eq!(c.statuses(), [431], "{c:#?}");
    assert_eq!(c.after, After::Closed, "{c:#?}");
    assert!(c.seen.is_empty(), "{c:#?}");

    // 100 KiB of head in 10 headers of 10 KiB.
    let mut big = String::from("GET /big HTTP/1.1\r\nHost: m\r\n");
    for i in 0..10 {
        big.push_str(&format!("X-Big{i}: {}\r\n", "a".repeat(10 * 1024)));
    }
    big.push_str("\r\n");
    let c = rig.both("100 KiB head", big.as_bytes(), 1).await;
    assert!(
        matches!(c.statuses()[..], [400] | [431] | [200]),
        "{:?}",
        c.statuses()
    );
    if c.statuses() == [200] {
        assert_eq!(c.lines(), ["GET /big HTTP/1.1"]);
        assert_eq!(c.seen[0].header("x-big9").map(str::len), Some(10 * 1024));
    } else {
        assert_eq!(c.after, After::Closed, "{c:#?}");
        assert!(c.seen.is_empty(), "{c:#?}");
    }

    // 1 MiB of head: beyond any buffer a proxy should hold for one head.
    let mut huge = String::from("GET /huge HTTP/1.1\r\nHost: m\r\n");
    for i in 0..64 {
        huge.push_str(&format!("X-Huge{i}: {}\r\n", "a".repeat(16 * 1024)));
    }
    huge.push_str("\r\n");
    let c = rig.both("1 MiB head", huge.as_bytes(), 1).await;
    assert!(
        matches!(c.statuses()[..], [400] | [431]),
        "{:?}",
        c.statuses()
    );
    assert_eq!(c.after, After::Closed, "{c:#?}");
    assert!(c.seen.is_empty(), "{c:#?}");
}

/// RFC 9112 section 7.1: a chunk size is hex digits; anything else makes the message invalid.
/// The head may already be on its way to the member, but the member must never read a complete
/// request, and nothing after the broken chunk may become a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_never_reach_a_member_as_a_valid_request() {
    let rig = Rig::start(162).await;
    for (case, size) in [
        ("letters", "zz"),
        ("overflow", "1ffffffffffffffff"),
        ("negative", "-5"),
        ("empty", ""),
        ("0x prefix", "0x5"),
    ] {
        let bytes = format!(
            "POST /chunks HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: m\r\n\r\n"
        );
        let c = rig.both(case, bytes.as_bytes(), 1).await;
        assert_nothing_smuggled(case, &c);
        assert!(
            c.seen.iter().all(|s| s.body.is_none()),
            "{case}: the member read a complete request: {c:#?}"
        );
        assert!(
            matches!(c.statuses()[..], [] | [400] | [502]),
            "{case}: {c:#?}"
        );
        assert_eq!(c.after, After::Closed, "{case}: {c:#?}");
    }
}

/// A member's answer at the edges of RFC 9112: what can be read for sure is passed on, what
/// cannot is a 502, and nothing left over on the member connection answers a later request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_answers_at_the_edges_are_passed_on_or_refused_and_leave_nothing_behind() {
    let rig = Rig::start(169).await;
    type Check = fn(&Conversation);
    let cases: [(&str, &str, Check); 8] = [
        // RFC 9112 section 5.2: a proxy discards it (502) or unfolds it.
        (
            "obs-fold",
            "GET /raw/obs-fold",
            |c| match c.statuses()[..] {
                [502] => assert!(!c.answers[0].is_the_members(), "{c:#?}"),
                [200] => assert_eq!(c.answers[0].header("x-fold"), Some("a b"), "{c:#?}"),
                _ => panic!("{c:#?}"),
            },
        ),
        ("a four-digit status", "GET /raw/bad-status", |c| {
            assert_eq!(c.statuses(), [502], "{c:#?}");
            assert!(!c.answers[0].is_the_members(), "{c:#?}");
        }),
        // RFC 9110 section 15.2 asks a proxy to pass 1xx answers on; the hyper path drops
        // them (hyper's client skips them), which leaves the final answer intact.
        ("103 before the answer", "GET /raw/early-hints", |c| {
            assert!(matches!(c.statuses()[..], [200] | [103, 200]), "{c:#?}");
            assert_eq!(c.answers.last().unwrap().text(), "ok\n");
        }),
        // A coding other than chunked, delimited by the close (RFC 9112 section 6.3, 3): the
        // body arrives whole. The hyper path drops `gzip` with the rest of Transfer-Encoding,
        // so the client is not told of the coding: recorded, not endorsed.
        ("gzip alone", "GET /raw/te-gzip", |c| {
            assert_eq!(c.statuses(), [200], "{c:#?}");
            assert_eq!(c.answers[0].text(), "not really gzip\n");
        }),
        // The head went out before the body broke: the client must see the break (no clean end
        // of the chunked body) and the connection end, never a complete answer.
        ("a bad chunk size", "GET /raw/bad-chunk", |c| {
            assert!(
                c.answers
                    .iter()
                    .all(|a| a.broken.is_some() || a.status == 502),
                "{c:#?}"
            );
            assert_eq!(c.after, After::Closed, "{c:#?}");
        }),
        ("a body on a 204", "GET /raw/204-body", |c| {
            assert_eq!(c.statuses(), [204], "{c:#?}");
            assert_eq!(
                c.after,
                After::Open,
                "the body leaked to the client: {c:#?}"
            );
        }),
        ("a body on a HEAD answer", "HEAD /raw/head-body", |c| {
            assert_eq!(c.statuses(), [200], "{c:#?}");
            assert_eq!(
                c.after,
                After::Open,
                "the body leaked to the client: {c:#?}"
            );
        }),
        // RFC 9112 section 2.2: a recipient may take a bare LF as a line end.
        ("bare LF", "GET /raw/bare-lf", |c| {
            assert_eq!(c.statuses(), [200], "{c:#?}");
            assert_eq!(c.answers[0].text(), "ok\n");
        }),
    ];
    for (case, request, check) in cases {
        let bytes = format!("{request} HTTP/1.1\r\nHost: m\r\n\r\n");
        let c = rig.both(case, bytes.as_bytes(), 1).await;
        check(&c);
        let after = rig
            .both(
                &format!("after {case}"),
                b"GET /clean HTTP/1.1\r\nHost: m\r\n\r\n",
                1,
            )
            .await;
        assert_eq!(after.statuses(), [200], "after {case}: {after:#?}");
        assert!(
            after.answers[0].text().starts_with("GET /clean HTTP/1.1"),
            "after {case}, a leftover answered the next request: {after:#?}"
        );
    }
}

/// A head that never ends is cut off after `header_timeout`, a member that never answers gets
/// a 504 after `request_timeout`: on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_that_never_end_and_members_that_never_answer_are_cut_off_in_time() {
    let rig = Rig::start_with(
        170,
        "header_timeout = \"400ms\"\nrequest_timeout = \"400ms\"",
    )
    .await;
    let started = std::time::Instant::now();
    let c = rig
        .both(
            "a head without its end",
            b"GET /slow HTTP/1.1\r\nHost: m\r\n",
            1,
        )
        .await;
    // hyper closes without an answer; a 408 before the close would do as well.
    assert!(matches!(c.statuses()[..], [] | [408]), "{c:#?}");
    assert_eq!(c.after, After::Closed, "{c:#?}");
    assert!(c.seen.is_empty(), "{c:#?}");
    // Both conversations ended by the timeout, not by the test's own read limit.
    assert!(started.elapsed() < READ_LIMIT, "{:?}", started.elapsed());
    let c = rig
        .both(
            "a member that never answers",
            b"GET /raw/silent HTTP/1.1\r\nHost: m\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [504], "{c:#?}");
    assert!(!c.answers[0].is_the_members(), "{c:#?}");
    assert_eq!(c.after, After::Open, "{c:#?}");
    assert_eq!(c.lines(), ["GET /raw/silent HTTP/1.1"]);
}

/// The edges of the request line and of `Content-Length` (RFC 9112 sections 2.2, 3 and 6.3):
/// what is valid passes, what is not is refused before a member reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_and_lengths_at_the_edges_of_the_grammar_are_judged_alike() {
    let rig = Rig::start(168).await;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: m\r\n\r\n", "a".repeat(70_000));
    // What hyper does is the reference; every outcome is one RFC 9112 allows, except where a
    // comment says otherwise.
    use Edge::{Passed, Refused};
    let cases: Vec<(&str, Vec<u8>, Edge)> = vec![
        (
            "an empty line first",
            b"\r\nGET /first HTTP/1.1\r\nHost: m\r\n\r\n".to_vec(),
            Passed("GET /first HTTP/1.1", 0),
        ),
        (
            "two spaces in the line",
            b"GET  /two HTTP/1.1\r\nHost: m\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "a space after the version",
            b"GET /trail HTTP/1.1 \r\nHost: m\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "a lowercase method",
            b"get /lower HTTP/1.1\r\nHost: m\r\n\r\n".to_vec(),
            Passed("get /lower HTTP/1.1", 0),
        ),
        (
            "an extension method",
            b"PURGE /purge HTTP/1.1\r\nHost: m\r\n\r\n".to_vec(),
            Passed("PURGE /purge HTTP/1.1", 0),
        ),
        (
            "a method with a bracket",
            b"G(T /bad HTTP/1.1\r\nHost: m\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "HTTP/1.2",
            b"GET /v12 HTTP/1.2\r\nHost: m\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "HTTP/2.0 in HTTP/1 syntax",
            b"GET /v2 HTTP/2.0\r\nHost: m\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "no version",
            b"GET /nine\r\nHost: m\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "a space in the target",
            b"GET /a b HTTP/1.1\r\nHost: m\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "a 70 kB target",
            long_target.into_bytes(),
            Refused(414),
        ),
        (
            "a length with leading zeros",
            b"POST /zeros HTTP/1.1\r\nHost: m\r\nContent-Length: 005\r\n\r\nhello".to_vec(),
            Passed("POST /zeros HTTP/1.1", 5),
        ),
        (
            "a length past u64",
            b"POST /huge HTTP/1.1\r\nHost: m\r\nContent-Length: 99999999999999999999\r\n\r\nhello".to_vec(),
            Refused(400),
        ),
        (
            "a negative length",
            b"POST /neg HTTP/1.1\r\nHost: m\r\nContent-Length: -1\r\n\r\nhello".to_vec(),
            Refused(400),
        ),
        (
            "an empty length",
            b"POST /empty HTTP/1.1\r\nHost: m\r\nContent-Length:\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "chunked twice",
            b"POST /twice HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            Passed("POST /twice HTTP/1.1", 5),
        ),
        (
            "chunk extensions and a trailer",
            b"POST /ext HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            Passed("POST /ext HTTP/1.1", 5),
        ),
        (
            "a chunk longer than its size",
            b"POST /long HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n".to_vec(),
            Refused(502),
        ),
        (
            "bare LF in the chunks",
            b"POST /lfchunks HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n".to_vec(),
            Refused(502),
        ),
        (
            "a body on a GET",
            b"GET /getbody HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            Passed("GET /getbody HTTP/1.1", 5),
        ),
        (
            "obs-text in a value",
            b"GET /obs HTTP/1.1\r\nHost: m\r\nX-A: caf\xe9\r\n\r\n".to_vec(),
            Passed("GET /obs HTTP/1.1", 0),
        ),
    ];
    for (case, bytes, edge) in &cases {
        let c = rig.both(case, bytes, 1).await;
        assert_nothing_smuggled(case, &c);
        match *edge {
            Edge::Passed(line, body) => {
                assert_eq!(c.statuses(), [200], "{case}: {c:#?}");
                assert_eq!(c.lines(), [line], "{case}");
                assert_eq!(c.seen[0].body.as_ref().map(Vec::len), Some(body), "{case}");
                assert_eq!(c.after, After::Open, "{case}: {c:#?}");
            }
            Edge::Refused(status) => {
                assert_eq!(c.statuses(), [status], "{case}: {c:#?}");
                assert_eq!(c.after, After::Closed, "{case}: {c:#?}");
                assert!(
                    c.seen.iter().all(|s| s.body.is_none()),
                    "{case}: the member read a complete request: {c:#?}"
                );
            }
        }
    }

    // A coding other than chunked before it: RFC 9112 section 6.1 lets a proxy decode chunked
    // and frame the body anew, but the gzip coding belongs to the message. The hyper path drops
    // it (Transfer-Encoding is hop-by-hop and goes whole), so the member gets gzip bytes it is
    // not told about: recorded here as it is, with one framing, the same on both paths.
    let c = rig
        .both(
            "gzip then chunked",
            b"POST /gz HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            1,
        )
        .await;
    assert_nothing_smuggled("gzip then chunked", &c);
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(c.seen[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(c.seen[0].body.as_deref(), Some(&b"hello"[..]));
}

/// What a request at the edge of the grammar must come to.
#[derive(Debug, Clone, Copy)]
enum Edge {
    /// Answered 200 by the member, which read this request line and a body this long; the
    /// connection stays open.
    Passed(&'static str, usize),
    /// Answered with this status by the proxy, the connection closed, no complete request read
    /// by the member.
    Refused(u16),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let rig = Rig::start(163).await;
    let three = b"GET /p1 HTTP/1.1\r\nHost: m\r\n\r\nGET /p2 HTTP/1.1\r\nHost: m\r\n\r\nGET /p3 HTTP/1.1\r\nHost: m\r\n\r\n";
    let c = rig.both("pipelined", three, 3).await;
    assert_eq!(c.statuses(), [200, 200, 200], "{c:#?}");
    let echoed: Vec<String> = c
        .answers
        .iter()
        .map(|a| a.text().split(' ').nth(1).unwrap_or("").to_owned())
        .collect();
    assert_eq!(echoed, ["/p1", "/p2", "/p3"]);
    assert_eq!(c.after, After::Open, "{c:#?}");

    // A POST with a body between two GETs: the body is not read as a request.
    let body = "GET /smuggled HTTP/1.1\r\nHost: m\r\n\r\n";
    let mixed = format!(
        "GET /q1 HTTP/1.1\r\nHost: m\r\n\r\nPOST /q2 HTTP/1.1\r\nHost: m\r\nContent-Length: {}\r\n\r\n{body}GET /q3 HTTP/1.1\r\nHost: m\r\n\r\n",
        body.len()
    );
    let c = rig.both("pipelined with a body", mixed.as_bytes(), 3).await;
    assert_nothing_smuggled("pipelined with a body", &c);
    assert_eq!(c.statuses(), [200, 200, 200], "{c:#?}");
    assert_eq!(
        c.lines(),
        ["GET /q1 HTTP/1.1", "POST /q2 HTTP/1.1", "GET /q3 HTTP/1.1"]
    );
    assert_eq!(c.seen[1].body.as_deref(), Some(body.as_bytes()));
}

/// The default proxy really serves plain requests on its own path, and hands a connection to
/// hyper at its first request that is not plain (the agreement above would hold as well if
/// everything went to hyper).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_take_the_own_path_and_the_first_unusual_one_hands_the_connection_to_hyper()
{
    let rig = Rig::start(171).await;
    let (fast, general) = rig.paths().await;
    let three = b"GET /p1 HTTP/1.1\r\nHost: m\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\nhiGET /p3 HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
    let c = rig.talk(rig.fast, three, 3).await;
    assert_eq!(c.statuses(), [200, 200, 200], "{c:#?}");
    assert_eq!(
        rig.paths().await,
        (fast + 3, general),
        "three plain requests"
    );

    // A plain request, then a chunked one on the same connection: the first on the own path,
    // the connection (and the second request) to hyper, with the bytes already read.
    let mixed = b"GET /q1 HTTP/1.1\r\nHost: m\r\n\r\nPOST /q2 HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /q3 HTTP/1.1\r\nHost: m\r\n\r\n";
    let c = rig.talk(rig.fast, mixed, 3).await;
    assert_eq!(c.statuses(), [200, 200, 200], "{c:#?}");
    assert_eq!(c.seen[1].body.as_deref(), Some(&b"hi"[..]), "{c:#?}");
    assert_eq!(c.after, After::Open, "{c:#?}");
    assert_eq!(
        rig.paths().await,
        (fast + 4, general + 1),
        "plain, then chunked"
    );
}

/// RFC 9110 section 10.1.1: the client waits for `100 Continue` before its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_100_then_the_answer_and_the_body_reaches_the_member() {
    let rig = Rig::start(164).await;
    let head: &[u8] =
        b"PUT /upload HTTP/1.1\r\nHost: m\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n";
    let c = rig
        .both_in_parts("100-continue", &[head, b"hello world"], 1)
        .await;
    assert_eq!(c.statuses(), [100, 200], "{c:#?}");
    assert_eq!(c.lines(), ["PUT /upload HTTP/1.1"]);
    assert_eq!(c.seen[0].body.as_deref(), Some(&b"hello world"[..]));
    assert_eq!(c.after, After::Open, "{c:#?}");
}

/// RFC 9112 section 9.3: HTTP/1.0 without `keep-alive` means one request per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_without_keep_alive_is_answered_then_closed() {
    let rig = Rig::start(165).await;
    let c = rig
        .both("HTTP/1.0", b"GET /old HTTP/1.0\r\nHost: m\r\n\r\n", 1)
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert!(
        c.answers[0].text().starts_with("GET /old HTTP/1.1"),
        "{c:#?}"
    );
    assert_eq!(c.after, After::Closed, "{c:#?}");

    let c = rig
        .both(
            "HTTP/1.0 keep-alive",
            b"GET /old HTTP/1.0\r\nHost: m\r\nConnection: keep-alive\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(c.after, After::Open, "{c:#?}");

    // HTTP/1.0 has no chunked coding: an answer of unknown length ends with the connection.
    let c = rig
        .both(
            "HTTP/1.0 no length",
            b"GET /raw/no-length HTTP/1.0\r\nHost: m\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(
        c.answers[0].text(),
        "the whole body, delimited by the close\n"
    );
    assert_eq!(c.after, After::Closed, "{c:#?}");

    let c = rig
        .both(
            "HTTP/1.1 Connection: close",
            b"GET /bye HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(c.seen[0].header("connection"), None, "hop-by-hop: {c:#?}");
    assert_eq!(c.after, After::Closed, "{c:#?}");
}

/// RFC 9112 section 6.3 from the member's side: a body delimited by the close still arrives
/// whole; an answer whose length cannot be known for sure is not passed on as valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_answers_without_a_length_arrive_whole_and_conflicting_lengths_are_not_passed_on() {
    let rig = Rig::start(166).await;

    let c = rig
        .both(
            "no length",
            b"GET /raw/no-length HTTP/1.1\r\nHost: m\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert_eq!(
        c.answers[0].text(),
        "the whole body, delimited by the close\n"
    );
    // To an HTTP/1.1 client the proxy frames it itself (chunked) and keeps the connection.
    assert_eq!(c.after, After::Open, "{c:#?}");

    let c = rig
        .both(
            "CL and TE",
            b"GET /raw/cl-and-te HTTP/1.1\r\nHost: m\r\n\r\n",
            1,
        )
        .await;
    match c.statuses()[..] {
        [502] => {}
        [200] => {
            // Chunked wins: the client gets all 11 bytes, framed so it cannot read otherwise.
            assert_eq!(c.answers[0].text(), "hello world", "{c:#?}");
            assert!(
                c.answers[0].header("content-length").is_none()
                    || c.answers[0].header("transfer-encoding").is_none(),
                "{c:#?}"
            );
        }
        _ => panic!("CL and TE: {c:#?}"),
    }

    let c = rig
        .both(
            "two lengths",
            b"GET /raw/two-lengths HTTP/1.1\r\nHost: m\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [502], "{c:#?}");
    assert!(!c.answers[0].is_the_members(), "{c:#?}");

    // Bytes past the end of an answer never become the answer to the next request: on the
    // same client connection, nor on another one that gets the member connection from a pool.
    let c = rig
        .both(
            "extra bytes after an answer",
            b"GET /raw/extra HTTP/1.1\r\nHost: m\r\n\r\nGET /next HTTP/1.1\r\nHost: m\r\n\r\n",
            2,
        )
        .await;
    assert_eq!(c.statuses(), [200, 200], "{c:#?}");
    assert_eq!(c.answers[0].text(), "ok\n");
    assert!(
        c.answers[1].text().starts_with("GET /next HTTP/1.1"),
        "the next request got the stray bytes: {c:#?}"
    );
    assert_eq!(c.lines(), ["GET /raw/extra HTTP/1.1", "GET /next HTTP/1.1"]);
    let c = rig
        .both(
            "the request after extra bytes",
            b"GET /later HTTP/1.1\r\nHost: m\r\n\r\n",
            1,
        )
        .await;
    assert_eq!(c.statuses(), [200], "{c:#?}");
    assert!(
        c.answers[0].text().starts_with("GET /later HTTP/1.1"),
        "a pooled member connection gave the stray bytes: {c:#?}"
    );
}

// ---- differential: both paths alike on generated requests ----

/// A generated request, as the bytes sent (text: the grammar only makes ASCII).
#[derive(Debug, Clone)]
struct Generated {
    text: String,
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,11}"
}

fn generated() -> impl Strategy<Value = Generated> {
    let method = prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
    ]);
    let path = ("[a-z0-9]{0,8}", prop::option::of("[a-z0-9=&]{0,12}"));
    let headers = prop::collection::vec((token(), "[ -~&&[^:]]{0,20}"), 0..=20);
    let body = prop::option::of("[a-z0-9 ]{0,64}");
    let extras = (
        any::<bool>(), // Host
        any::<bool>(), // X-Forwarded-For
        any::<bool>(), // Forwarded
        any::<bool>(), // Connection: close
    );
    let mutation = prop_oneof![
        6 => Just(None),
        1 => Just(Some("two lengths")),
        1 => Just(Some("CL and TE")),
        1 => Just(Some("obs-fold")),
        1 => Just(Some("bad chunk")),
        1 => Just(Some("bare LF")),
    ];
    (method, path, headers, body, extras, mutation).prop_map(
        |(method, (path, query), headers, body, (host, xff, fwd, close), mutation)| {
            let target = match query {
                Some(q) => format!("/{path}?{q}"),
                None => format!("/{path}"),
            };
            let mut lines = vec![format!("{method} {target} HTTP/1.1")];
            if host {
                lines.push("Host: m.internal".to_owned());
            }
            // `X-` names: framing and the connection are the mutations' business.
            for (name, value) in headers {
                lines.push(format!("X-{name}: {}", value.trim()));
            }
            if xff {
                lines.push("X-Forwarded-For: 192.0.2.7".to_owned());
            }
            if fwd {
                lines.push("Forwarded: for=192.0.2.7;proto=https".to_owned());
            }
            if close {
                lines.push("Connection: close".to_owned());
            }
            let mut body = body.unwrap_or_default();
            let mut chunked = false;
            match mutation {
                Some("two lengths") => {
                    lines.push(format!("Content-Length: {}", body.len()));
                    lines.push(format!("Content-Length: {}", body.len() + 1));
                }
                Some("CL and TE") => {
                    lines.push(format!("Content-Length: {}", body.len()));
                    lines.push("Transfer-Encoding: chunked".to_owned());
                    chunked = true;
                }
                Some("obs-fold") => lines.push("X-Folded: a\r\n b".to_owned()),
                Some("bad chunk") => {
                    lines.push("Transfer-Encoding: chunked".to_owned());
                    body = format!("zz\r\n{body}\r\n0\r\n\r\n");
                }
                _ if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") => {
                    lines.push(format!("Content-Length: {}", body.len()));
                }
                _ => {}
            }
            if chunked {
                body = if body.is_empty() {
                    "0\r\n\r\n".to_owned()
                } else {
                    format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
                };
            }
            let eol = if mutation == Some("bare LF") {
                "\n"
            } else {
                "\r\n"
            };
            let text = format!("{}{eol}{eol}{body}", lines.join(eol));
            Generated { text }
        },
    )
}

/// The differential property: for every generated request both proxies give the same status,
/// the member reads the same request (header names' case and order aside), and the connection
/// is kept or closed alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_answer_generated_requests_alike() {
    let rig = Arc::new(Rig::start(167).await);
    let handle = tokio::runtime::Handle::current();
    // How often each outcome came up, so a run that never reached the member (or never had
    // a request refused) fails instead of passing on nothing.
    let tally: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let (r, count) = (rig.clone(), tally.clone());
    let result = tokio::task::spawn_blocking(move || {
        let config = ProptestConfig {
            cases: 64,
            failure_persistence: None,
            max_shrink_iters: 64,
            ..ProptestConfig::default()
        };
        let mut runner = TestRunner::new(config);
        runner.run(&generated(), |g| {
            let bytes = g.text.as_bytes();
            let fast = handle.block_on(r.talk(r.fast, bytes, 1));
            let hyper = handle.block_on(r.talk(r.hyper, bytes, 1));
            let outcome = format!("{:?} then {:?}", hyper.statuses(), hyper.after);
            *count.lock().unwrap().entry(outcome).or_default() += 1;
            if fast.semantics() != hyper.semantics() {
                return Err(TestCaseError::fail(format!(
                    "the paths disagree on {:?}\nfast path:\n{}\nhyper:\n{}",
                    g.text,
                    fast.semantics(),
                    hyper.semantics()
                )));
            }
            if hyper.statuses().len() != 1 || hyper.after == After::Hung {
                return Err(TestCaseError::fail(format!(
                    "no clear outcome for {:?}: {hyper:#?}",
                    g.text
                )));
            }
            for seen in &hyper.seen {
                if seen.ambiguous {
                    return Err(TestCaseError::fail(format!(
                        "the member got two framings for {:?}: {seen:?}",
                        g.text
                    )));
                }
            }
            Ok(())
        })
    })
    .await
    .expect("the property runs");
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.lock().unwrap().clone();
    eprintln!("outcomes of the generated requests: {tally:?}");
    assert!(tally.values().sum::<usize>() >= 64, "{tally:?}");
    for wanted in ["[200] then Open", "[200] then Closed", "[400] then Closed"] {
        assert!(tally.contains_key(wanted), "never {wanted}: {tally:?}");
    }
}
