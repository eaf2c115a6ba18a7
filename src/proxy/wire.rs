//! HTTP/1.1 messages as the proxy's own path reads and writes them (RFC 9112): pure functions
//! over byte slices, no IO, so that the parser can be fuzzed and compared with hyper's.
//!
//! The path is deliberately narrow. [`prepare_request`] takes a request only when it is plain:
//! HTTP/1.1, origin-form target, one `Host`, a body framed by at most one `Content-Length` (no
//! `Transfer-Encoding`), no `Expect`, no upgrade, no `Connection` option but `close` and
//! `keep-alive`, CRLF line endings, a head within [`MAX_HEAD`] and [`MAX_HEADERS`]. Anything
//! else is [`Request::General`]: the connection goes to hyper from that request on, with the
//! bytes read so far, and hyper answers it as it always did (including every refusal: 400,
//! 431, ...). So the cases where request smuggling lives (conflicting lengths, a length beside
//! chunked coding, folded or bare-LF lines, odd chunk sizes) never reach this path's framing.
//!
//! A member's answer is read by [`read_response`]: its framing (RFC 9112 section 6.3), whether
//! the member connection may be used again, and the head to send to the client, hop-by-hop
//! fields left out. Chunked bodies pass through as they are, checked by [`Chunks`] so the end of
//! the answer is known exactly.

use std::net::IpAddr;

/// The largest request or response head this path reads; a longer one goes to hyper (requests)
/// or is refused (a member's answer: 502).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines this path reads in one head.
pub const MAX_HEADERS: usize = 64;

/// What [`prepare_request`] made of the bytes at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The head is not complete yet.
    Partial,
    /// Not a plain request: hyper serves the connection from here.
    General,
    /// A plain request; its head for the member is in the output buffer.
    Plain(Plain),
}

/// A plain request, as the proxy needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain {
    /// Bytes of the client's head (through its blank line).
    pub head_len: usize,
    /// Bytes of body after the head (`Content-Length`, 0 without one).
    pub body_len: u64,
    /// The client wants the connection kept open after this request.
    pub keep_alive: bool,
    /// HEAD: the answer has no body whatever its fields say.
    pub head_method: bool,
    /// Idempotent (RFC 9110 section 9.2.2) and without a body: it may be sent again if a
    /// member closed the connection before any answer.
    pub replayable: bool,
    /// The address the configured client header named, if it was one.
    pub client: Option<IpAddr>,
}

/// Who asked, in the forms the forwarding headers take (made once per client connection).
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// The peer's address as `X-Forwarded-For` lists it.
    pub ip: String,
    /// The start of this proxy's `Forwarded` element: `for=...;proto=http`.
    pub forwarded: String,
    /// The last `Host` asked for and the whole element made for it: a connection's requests
    /// nearly always name the same host.
    last_host: Vec<u8>,
    element: Vec<u8>,
}

impl Forwarding {
    pub fn new(peer: IpAddr) -> Self {
        let ip = peer.to_canonical();
        let node = if ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.to_string()
        };
        let forwarded = format!("for={node};proto=http");
        Self {
            ip: ip.to_string(),
            element: forwarded.clone().into_bytes(),
            forwarded,
            last_host: Vec::new(),
        }
    }

    /// This proxy's `Forwarded` element for a request that asked for `host`.
    fn element_for(&mut self, host: &[u8]) -> &[u8] {
        if self.last_host != host {
            self.last_host.clear();
            self.last_host.extend_from_slice(host);
            self.element.clear();
            self.element.extend_from_slice(self.forwarded.as_bytes());
            if let Ok(host) = std::str::from_utf8(host) {
                self.element.extend_from_slice(b";host=");
                quote_into(&mut self.element, host);
            }
        }
        &self.element
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The fields this path treats specially, told apart by length first (one comparison for
/// nearly every field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentLength,
    Host,
    Connection,
    /// Transfer-Encoding, Expect, Upgrade: not plain.
    General,
    XForwardedFor,
    Forwarded,
    /// Any other hop-by-hop field: not forwarded.
    Hop,
    Other,
}

fn field_kind(name: &str) -> Field {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is("te") => Field::Hop,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::General,
        7 if is("upgrade") => Field::General,
        7 if is("trailer") => Field::Hop,
        9 if is("forwarded") => Field::Forwarded,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::Hop,
        14 if is("content-length") => Field::ContentLength,
        15 if is("x-forwarded-for") => Field::XForwardedFor,
        16 if is("proxy-connection") => Field::Hop,
        17 if is("transfer-encoding") => Field::General,
        18 if is("proxy-authenticate") => Field::Hop,
        19 if is("proxy-authorization") => Field::Hop,
        _ => Field::Other,
    }
}

/// Every LF in `head` ends a CRLF: bare LF is left to hyper.
fn crlf_only(head: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in head {
        if b == b'\n' && prev != b'\r' {
            return false;
        }
        prev = b;
    }
    true
}

/// A `Content-Length` value: ASCII digits only, at most 18 of them (no sign, no spaces, no list).
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated options of a `Connection` value, trimmed, empty ones left out.
fn options(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|o| !o.is_empty())
}

/// Reads the request at the start of `buf` and, when it is plain, writes the head to send to a
/// member into `out` (cleared first): the same request line, every end-to-end field as it came,
/// and `X-Forwarded-For` and `Forwarded` extended with `who`. `client_header` is the configured
/// header that names the client, when the peer is trusted to set it.
pub fn prepare_request(
    buf: &[u8],
    who: &mut Forwarding,
    client_header: Option<&str>,
    out: &mut Vec<u8>,
) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Request::Partial,
        _ => return Request::General,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Request::General;
    };
    if !target.starts_with('/') || !crlf_only(&buf[..head_len]) {
        return Request::General;
    }
    let (replayable_method, head_method) = match method {
        "GET" | "OPTIONS" | "PUT" | "DELETE" => (true, false),
        "HEAD" => (true, true),
        "POST" | "PATCH" => (false, false),
        _ => return Request::General,
    };
    let mut body_len = None;
    let mut keep_alive = true;
    let mut host = None;
    let mut client = None;
    let (mut xff, mut fwd) = (false, false);
    let mut kinds = [Field::Other; MAX_HEADERS];
    for (h, kind) in req.headers.iter().zip(kinds.iter_mut()) {
        *kind = field_kind(h.name);
        match *kind {
            Field::ContentLength => {
                if body_len.is_some() {
                    return Request::General;
                }
                match content_length(h.value) {
                    Some(n) => body_len = Some(n),
                    None => return Request::General,
                }
            }
            Field::Host => {
                if host.is_some() {
                    return Request::General;
                }
                host = Some(h.value);
            }
            Field::Connection => {
                for option in options(h.value) {
                    if option.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if !option.eq_ignore_ascii_case(b"keep-alive") {
                        // It names a field to drop, or asks for an upgrade: hyper's job.
                        return Request::General;
                    }
                }
            }
            Field::General => return Request::General,
            Field::XForwardedFor => xff = true,
            Field::Forwarded => fwd = true,
            Field::Hop | Field::Other => {}
        }
        if let Some(wanted) = client_header
            && client.is_none()
            && h.name.eq_ignore_ascii_case(wanted)
        {
            // As the general path reads it: the first line, one address.
            client = Some(
                std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<IpAddr>().ok()),
            );
        }
    }
    let Some(host) = host else {
        return Request::General;
    };
    let body_len = body_len.unwrap_or(0);

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (h, kind) in req.headers.iter().zip(kinds) {
        if matches!(kind, Field::Other | Field::ContentLength | Field::Host) {
            field(out, h.name.as_bytes(), h.value);
        }
    }
    // X-Forwarded-For and Forwarded: the earlier lines folded into one list, this hop last.
    out.extend_from_slice(b"x-forwarded-for: ");
    if xff {
        list_of(out, req.headers, "x-forwarded-for");
    }
    out.extend_from_slice(who.ip.as_bytes());
    out.extend_from_slice(b"\r\nforwarded: ");
    if fwd {
        list_of(out, req.headers, "forwarded");
    }
    out.extend_from_slice(who.element_for(host));
    out.extend_from_slice(b"\r\n\r\n");
    Request::Plain(Plain {
        head_len,
        body_len,
        keep_alive,
        head_method,
        replayable: replayable_method && body_len == 0,
        client: client.flatten(),
    })
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The values of every `name` line, each followed by `, ` (nothing when there is none).
fn list_of(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], name: &str) {
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        let value = h.value.trim_ascii();
        if !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
}

/// A `Forwarded` parameter value: a token as it is, anything else quoted (RFC 7239).
pub fn quote_into(out: &mut Vec<u8>, value: &str) {
    let tchar = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
    };
    if !value.is_empty() && value.bytes().all(tchar) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    for b in value.bytes() {
        if b == b'\\' || b == b'"' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// How a member's answer ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (an answer to HEAD, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked: passed through as it is, its end found by [`Chunks`].
    Chunked,
    /// Until the member closes the connection (the client's is closed after it too).
    Close,
}

/// What [`read_response`] made of the bytes at the start of a member connection's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The head is not complete yet.
    Partial,
    /// An interim answer (1xx other than 101) of this many bytes: skipped, as hyper does.
    Interim(usize),
    /// Not an answer this path can pass on: the member connection is dropped, the client gets
    /// 502.
    Bad(&'static str),
    /// An answer; its head for the client is in the output buffer.
    Final(Answer),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Bytes of the member's head.
    pub head_len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The member connection may carry another request after this answer.
    pub reusable: bool,
    /// The client connection must close after this answer (asked for by the client).
    pub close_client: bool,
    /// The body ends by close, and the client connection goes on: the proxy sends it chunked
    /// (RFC 9112 section 6.1), as hyper does.
    pub rechunk: bool,
}

/// Reads the answer at the start of `buf` to a request that was a HEAD or not (`head_method`)
/// and, when final, writes the head for the client into `out` (cleared first): the status line
/// as HTTP/1.1, the end-to-end fields, the framing, and `connection: close` when the client
/// asked for it (`close_client`). A body that ends by close is sent on chunked
/// ([`Answer::rechunk`]) unless the client connection closes after it anyway.
pub fn read_response(
    buf: &[u8],
    head_method: bool,
    close_client: bool,
    out: &mut Vec<u8>,
) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Response::Partial,
        Ok(httparse::Status::Partial) => return Response::Bad("an answer head over 64 KiB"),
        Err(httparse::Error::TooManyHeaders) => return Response::Bad("too many header lines"),
        Err(_) => return Response::Bad("a malformed answer head"),
    };
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Response::Bad("a malformed answer head");
    };
    if status == 101 {
        return Response::Bad("a protocol switch nobody asked for");
    }
    if (100..200).contains(&status) {
        return Response::Interim(head_len);
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    let mut member_close = false;
    let mut member_keep_alive = false;
    let mut named: [&[u8]; 8] = [&[]; 8];
    let mut named_count = 0;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = content_length(h.value.trim_ascii()) else {
                return Response::Bad("an invalid Content-Length");
            };
            if length.is_some_and(|l| l != n) {
                return Response::Bad("two different Content-Lengths");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            // Chunked only as the last coding (RFC 9112 section 6.3, items 3 and 4).
            chunked = options(h.value)
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for option in options(h.value) {
                if option.eq_ignore_ascii_case(b"close") {
                    member_close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    member_keep_alive = true;
                } else if named_count < named.len() {
                    named[named_count] = option;
                    named_count += 1;
                } else {
                    return Response::Bad("too many Connection options");
                }
            }
        }
    }
    if version == 0 && !member_keep_alive {
        member_close = true;
    }
    let framing = if head_method || status == 204 || status == 304 {
        Framing::Empty
    } else if coded {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let rechunk = framing == Framing::Close && !close_client;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let named = &named[..named_count];
    for h in res.headers.iter() {
        let by_connection = named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()));
        // With chunked coding a Content-Length is not the body's length: never passed on.
        let stale_length = coded && h.name.eq_ignore_ascii_case("content-length");
        if is_hop_by_hop(h.name) || by_connection || stale_length {
            continue;
        }
        field(out, h.name.as_bytes(), h.value);
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if rechunk {
        // The member's codings (a body that is, say, gzip-coded stays so), then chunked.
        out.extend_from_slice(b"transfer-encoding: ");
        list_of(out, res.headers, "transfer-encoding");
        out.extend_from_slice(b"chunked\r\n");
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Response::Final(Answer {
        head_len,
        status,
        framing,
        reusable: !member_close && framing != Framing::Close,
        close_client,
        rechunk,
    })
}

/// A status code's three digits.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// The state of a chunked body passing through: finds where it ends, and refuses what is not
/// chunked coding (RFC 9112 section 7.1), so a member cannot make the proxy misjudge the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunks {
    state: ChunkState,
    /// Hex digits of the current size line.
    digits: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk size's hex digits, the size so far.
    #[default]
    Size,
    SizeValue(u64),
    /// After the size: an extension (or whitespace) up to CR.
    Extension(u64),
    /// After the size line's CR.
    SizeLf(u64),
    /// In a chunk's data, bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// In a trailer field line.
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// A chunked body that is not valid chunked coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

impl Chunks {
    /// Reads `data`, the body's next bytes; returns how many of them belong to the body and
    /// whether it ended there.
    pub fn advance(&mut self, data: &[u8]) -> Result<(usize, bool), BadChunk> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                Size | SizeValue(_) => {
                    let so_far = match self.state {
                        SizeValue(n) => n,
                        _ => 0,
                    };
                    if let Some(d) = (b as char).to_digit(16) {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(BadChunk);
                        }
                        SizeValue(so_far * 16 + u64::from(d))
                    } else if self.state == Size {
                        return Err(BadChunk);
                    } else if b == b'\r' {
                        SizeLf(so_far)
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        Extension(so_far)
                    } else {
                        return Err(BadChunk);
                    }
                }
                Extension(n) => match b {
                    b'\r' => SizeLf(n),
                    b'\n' => return Err(BadChunk),
                    _ => Extension(n),
                },
                SizeLf(n) => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.digits = 0;
                    if n == 0 { TrailerStart } else { Data(n) }
                }
                Data(n) => {
                    let take = n.min((data.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == n { DataCr } else { Data(n - take) };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Size,
                DataCr | DataLf => return Err(BadChunk),
                TrailerStart => match b {
                    b'\r' => FinalLf,
                    b'\n' => return Err(BadChunk),
                    _ => Trailer,
                },
                Trailer => match b {
                    b'\r' => TrailerLf,
                    b'\n' => return Err(BadChunk),
                    _ => Trailer,
                },
                TrailerLf if b == b'\n' => TrailerStart,
                FinalLf if b == b'\n' => {
                    self.state = Done;
                    return Ok((i + 1, true));
                }
                TrailerLf | FinalLf => return Err(BadChunk),
                Done => return Ok((i, true)),
            };
            i += 1;
        }
        Ok((data.len(), self.state == Done))
    }
}

#[cfg(test)]
mod tests;
