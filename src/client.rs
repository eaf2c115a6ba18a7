//! A typed client for the control API, shared by `aliasctl` and the tests.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use tokio_stream::Stream;

use crate::api::dto::{
    AliasDto, DeletedDto, ErrorDto, EventDto, HealthDto, HistoryDto, LinkRequest, OperationReply,
    PlanDto, PromoteRequest, PutAliasRequest, PutServiceRequest, ReasonRequest, ReloadDto,
    RollbackRequest, ServiceDto, ServicesDto,
};
use crate::cluster::ClusterStatus;

/// How long one API call may take before it is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest line the events stream may send; anything longer is a broken stream.
const MAX_EVENT_LINE: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL `{0}`: expected something like http://127.0.0.1:5380")]
    BadUrl(String),
    #[error(
        "the token cannot be sent: it holds a character an HTTP header cannot carry (such as a newline)"
    )]
    BadToken,
    #[error("cannot reach aliasd at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The server answered with an error status and said why.
    #[error("{message} (HTTP {})", status.as_u16())]
    Api { status: StatusCode, message: String },
    #[error("unexpected answer from {server}: {reason}")]
    Protocol { server: String, reason: String },
    /// The events stream was cut off or sent something that is not an event stream.
    #[error("the events stream from {server} broke: {reason}")]
    StreamBroken { server: String, reason: String },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What `promote` answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Promotion {
    /// A dry run: what would happen. Nothing was changed.
    Planned(PlanDto),
    /// The operation started (`started` is true, HTTP 202), or nothing had to change because
    /// the alias already answers with those services (`started` is false, HTTP 200).
    Operation(Box<OperationReply>),
}

/// A connection to one aliasd API.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// `server` is a base URL such as `http://127.0.0.1:5380`. An empty (or blank) `token` is
    /// no token: that is what `--token ''` or an empty variable mean.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = server.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(server.to_owned()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::BadUrl(server.to_owned()));
        }
        let token = token.filter(|t| !t.trim().is_empty());
        if let Some(t) = &token
            && hyper::header::HeaderValue::from_str(&format!("Bearer {t}")).is_err()
        {
            return Err(ClientError::BadToken);
        }
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, token, http })
    }

    /// The base URL this client talks to.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Whether requests carry a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub async fn health(&self) -> Result<HealthDto, ClientError> {
        self.call(Method::GET, "/healthz", None).await
    }

    /// The cluster as the node asked sees it: the nodes, the leader, etcd's health.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        self.call(Method::GET, "/v1/cluster", None).await
    }

    pub async fn aliases(&self) -> Result<Vec<AliasDto>, ClientError> {
        self.call(Method::GET, "/v1/aliases", None).await
    }

    pub async fn alias(&self, alias: &str) -> Result<AliasDto, ClientError> {
        self.call(Method::GET, &alias_path(alias, ""), None).await
    }

    /// Every service, and how discovery stands.
    pub async fn services(&self) -> Result<ServicesDto, ClientError> {
        self.call(Method::GET, "/v1/services", None).await
    }

    pub async fn service(&self, service: &str) -> Result<ServiceDto, ClientError> {
        self.call(Method::GET, &service_path(service, ""), None)
            .await
    }

    /// Defines `service` through the API, or replaces its definition.
    pub async fn put_service(
        &self,
        service: &str,
        request: &PutServiceRequest,
    ) -> Result<ServiceDto, ClientError> {
        let body = self.encode(request)?;
        self.call(Method::PUT, &service_path(service, ""), Some(body))
            .await
    }

    /// Deletes a service defined through the API.
    pub async fn delete_service(&self, service: &str) -> Result<DeletedDto, ClientError> {
        self.call(Method::DELETE, &service_path(service, ""), None)
            .await
    }

    pub async fn service_history(&self, service: &str) -> Result<Vec<HistoryDto>, ClientError> {
        self.call(Method::GET, &service_path(service, "/history"), None)
            .await
    }

    /// Creates an alias through the API, or changes it.
    pub async fn put_alias(
        &self,
        alias: &str,
        request: &PutAliasRequest,
    ) -> Result<AliasDto, ClientError> {
        let body = self.encode(request)?;
        self.call(Method::PUT, &alias_path(alias, ""), Some(body))
            .await
    }

    /// Removes an alias created through the API.
    pub async fn delete_alias(&self, alias: &str) -> Result<DeletedDto, ClientError> {
        self.call(Method::DELETE, &alias_path(alias, ""), None)
            .await
    }

    /// Re-reads the config and its zone files: applied whole, or refused whole.
    pub async fn reload(&self) -> Result<ReloadDto, ClientError> {
        self.call(Method::POST, "/v1/reload", Some(b"{}".to_vec()))
            .await
    }

    /// Links `alias` to exactly `targets`.
    pub async fn link(&self, alias: &str, targets: &[String]) -> Result<AliasDto, ClientError> {
        let body = self.encode(&LinkRequest {
            targets: targets.to_vec(),
        })?;
        self.call(Method::PUT, &alias_path(alias, "/targets"), Some(body))
            .await
    }

    /// Starts a promotion of `alias` to `request.to`; with `dry_run`, only asks for the plan.
    pub async fn promote(
        &self,
        alias: &str,
        request: &PromoteRequest,
        dry_run: bool,
    ) -> Result<Promotion, ClientError> {
        let body = self.encode(request)?;
        if dry_run {
            let path = alias_path(alias, "/promote?dry_run=true");
            self.call(Method::POST, &path, Some(body))
                .await
                .map(Promotion::Planned)
        } else {
            self.call(Method::POST, &alias_path(alias, "/promote"), Some(body))
                .await
                .map(|reply| Promotion::Operation(Box::new(reply)))
        }
    }

    /// Confirms the running promotion of `alias` (one started with a confirm gate).
    pub async fn confirm(
        &self,
        alias: &str,
        reason: Option<String>,
    ) -> Result<OperationReply, ClientError> {
        let body = self.encode(&ReasonRequest { reason })?;
        self.call(Method::POST, &alias_path(alias, "/confirm"), Some(body))
            .await
    }

    /// Aborts the running operation of `alias`: it answers with its old services again.
    pub async fn abort(
        &self,
        alias: &str,
        reason: Option<String>,
    ) -> Result<OperationReply, ClientError> {
        let body = self.encode(&ReasonRequest { reason })?;
        self.call(Method::POST, &alias_path(alias, "/abort"), Some(body))
            .await
    }

    /// Starts a rollback of `alias` to an earlier revision (by default the one before the last
    /// change), through the same gates as a promotion.
    pub async fn rollback(
        &self,
        alias: &str,
        request: &RollbackRequest,
    ) -> Result<OperationReply, ClientError> {
        let body = self.encode(request)?;
        self.call(Method::POST, &alias_path(alias, "/rollback"), Some(body))
            .await
    }

    /// Starts a rollout of many aliases.
    pub async fn start_rollout(
        &self,
        request: &crate::api::dto::RolloutRequest,
    ) -> Result<crate::api::dto::RolloutDto, ClientError> {
        let body = self.encode(request)?;
        self.call(Method::POST, "/v1/rollouts", Some(body)).await
    }

    /// Every rollout, newest first.
    pub async fn rollouts(&self) -> Result<Vec<crate::api::dto::RolloutDto>, ClientError> {
        self.call(Method::GET, "/v1/rollouts", None).await
    }

    pub async fn rollout(&self, id: u64) -> Result<crate::api::dto::RolloutDto, ClientError> {
        self.call(Method::GET, &format!("/v1/rollouts/{id}"), None)
            .await
    }

    /// `pause`, `resume`, `abort` or `rollback` of rollout `id`.
    pub async fn rollout_command(
        &self,
        id: u64,
        command: &str,
    ) -> Result<crate::api::dto::RolloutDto, ClientError> {
        let path = format!("/v1/rollouts/{id}/{command}");
        self.call(Method::POST, &path, Some(b"{}".to_vec())).await
    }

    /// Every recorded change of `alias`, oldest first.
    pub async fn history(&self, alias: &str) -> Result<Vec<HistoryDto>, ClientError> {
        self.call(Method::GET, &alias_path(alias, "/history"), None)
            .await
    }

    /// Opens `GET /v1/events`. Returns once the server has answered, which means it is
    /// subscribed: every change from then on arrives on the stream.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let response = self
            .send(Method::GET, "/v1/events", None, Some("text/event-stream"))
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = self.read_body(response).await?;
            return Err(api_error(status, &bytes));
        }
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return Err(self.protocol(format!(
                "/v1/events answered with content-type `{content_type}`, not text/event-stream"
            )));
        }
        Ok(EventStream {
            server: self.base.clone(),
            body: response.into_body(),
            parser: SseParser::default(),
            queue: VecDeque::new(),
            done: false,
        })
    }

    fn encode<T: serde::Serialize>(&self, value: &T) -> Result<Vec<u8>, ClientError> {
        serde_json::to_vec(value).map_err(|e| self.protocol(e.to_string()))
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            server: self.base.clone(),
            reason,
        }
    }

    /// Sends one request and waits (at most [`REQUEST_TIMEOUT`]) for the answer's head.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| ClientError::BadUrl(self.base.clone()))?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| ClientError::Unreachable {
                server: self.base.clone(),
                reason: format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
            })?
            .map_err(|e| ClientError::Unreachable {
                server: self.base.clone(),
                reason: source_chain(&e),
            })
    }

    async fn read_body(&self, response: Response<Incoming>) -> Result<Bytes, ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| {
                self.protocol(format!(
                    "the body did not arrive within {}s",
                    REQUEST_TIMEOUT.as_secs()
                ))
            })?
            .map(|c| c.to_bytes())
            .map_err(|e| self.protocol(e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body, None).await?;
        let status = response.status();
        let bytes = self.read_body(response).await?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| self.protocol(e.to_string()))
        } else {
            Err(api_error(status, &bytes))
        }
    }
}

fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ErrorDto>(bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).trim().to_owned());
    ClientError::Api { status, message }
}

/// `/v1/services/{service}{rest}` with the name percent-encoded.
fn service_path(service: &str, rest: &str) -> String {
    format!("/v1/services/{}{rest}", path_segment(service))
}

/// `/v1/aliases/{alias}{rest}` with the alias percent-encoded.
fn alias_path(alias: &str, rest: &str) -> String {
    format!("/v1/aliases/{}{rest}", path_segment(alias))
}

/// The events of `GET /v1/events`, parsed as they arrive.
///
/// A [`Stream`] of events; [`EventStream::next_event`] is the same without importing
/// `StreamExt`. A message that is not a valid event yields an `Err` of
/// [`ClientError::Protocol`] and the stream goes on; a broken connection yields one
/// [`ClientError::StreamBroken`] and then the end. The end (`None`) means the server closed the
/// stream (it is shutting down, for one).
pub struct EventStream {
    server: String,
    body: Incoming,
    parser: SseParser,
    /// Complete messages not handed out yet.
    queue: VecDeque<String>,
    done: bool,
}

impl EventStream {
    /// The next event; `None` once the stream has ended.
    pub async fn next_event(&mut self) -> Option<Result<EventDto, ClientError>> {
        tokio_stream::StreamExt::next(self).await
    }

    fn decode(&self, data: &str) -> Result<EventDto, ClientError> {
        serde_json::from_str(data).map_err(|e| ClientError::Protocol {
            server: self.server.clone(),
            reason: format!("an event is not valid JSON ({e}): {data}"),
        })
    }
}

impl Stream for EventStream {
    type Item = Result<EventDto, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(data) = this.queue.pop_front() {
                return Poll::Ready(Some(this.decode(&data)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ClientError::StreamBroken {
                        server: this.server.clone(),
                        reason: source_chain(&e),
                    })));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        match this.parser.feed(data) {
                            Ok(messages) => this.queue.extend(messages),
                            Err(reason) => {
                                this.done = true;
                                return Poll::Ready(Some(Err(ClientError::StreamBroken {
                                    server: this.server.clone(),
                                    reason,
                                })));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An incremental parser of `text/event-stream` (the WHATWG server-sent events format), reduced
/// to what the events API uses: `data:` fields. Bytes may arrive split anywhere, even inside a
/// line or between a CR and its LF; comments (`:` lines, the keep-alives) and other fields are
/// skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The current line, not yet terminated.
    line: Vec<u8>,
    /// The `data` of the current message, lines joined by `\n`.
    data: Option<String>,
    /// The last byte was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
}

impl SseParser {
    /// Feeds the next bytes; returns the data of every message they complete, in order.
    /// Fails only on a line longer than the limit.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.end_line(&mut out);
                    self.after_cr = true;
                }
                _ => {
                    if self.line.len() >= MAX_EVENT_LINE {
                        return Err(format!("a line is longer than {MAX_EVENT_LINE} bytes"));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            // A blank line ends the message; one without data (a keep-alive) is no event.
            if let Some(data) = self.data.take().filter(|d| !d.is_empty()) {
                out.push(data);
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        if field == b"data" {
            let value = String::from_utf8_lossy(value);
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => self.data = Some(value.into_owned()),
            }
        }
    }
}

/// Percent-encodes what could break a path segment; alias names are DNS names, so this is rare.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The innermost cause is usually the useful one ("Connection refused").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::{Client, ClientError, SseParser};

    #[test]
    fn a_blank_token_is_no_token_and_one_a_header_cannot_carry_is_refused() {
        let server = "http://127.0.0.1:5380";
        for blank in ["", "  "] {
            let client = Client::new(server, Some(blank.to_owned())).unwrap();
            assert!(!client.has_token(), "{blank:?}");
        }
        assert!(
            Client::new(server, Some("s3cret-s3cret-s3cret".into()))
                .unwrap()
                .has_token()
        );
        assert!(matches!(
            Client::new(server, Some("two\nlines".into())),
            Err(ClientError::BadToken)
        ));
    }

    const STREAM: &str = ":\n\ndata: {\"type\":\"lagged\",\"skipped\":1}\n\n: keep-alive\n\n\
        data:{\"a\":1}\r\n\r\nevent: x\nid: 7\ndata: one\ndata: two\n\nretry: 5\n\n\
        data: caf\u{e9}\r\rdata\n\n";

    const WANT: [&str; 4] = [
        "{\"type\":\"lagged\",\"skipped\":1}",
        "{\"a\":1}",
        "one\ntwo",
        "caf\u{e9}",
    ];

    #[test]
    fn messages_come_out_whole_however_the_bytes_are_split() {
        let bytes = STREAM.as_bytes();
        let mut whole = SseParser::default();
        assert_eq!(whole.feed(bytes).unwrap(), WANT);
        for cut in 0..=bytes.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&bytes[..cut]).unwrap();
            got.extend(p.feed(&bytes[cut..]).unwrap());
            assert_eq!(got, WANT, "cut at {cut}");
        }
        let mut p = SseParser::default();
        let got: Vec<String> = bytes
            .iter()
            .flat_map(|b| p.feed(std::slice::from_ref(b)).unwrap())
            .collect();
        assert_eq!(got, WANT, "one byte at a time");
    }

    #[test]
    fn an_unfinished_message_is_held_back() {
        let mut p = SseParser::default();
        assert!(p.feed(b"data: {\"x\"").unwrap().is_empty());
        assert!(p.feed(b":1}\n").unwrap().is_empty());
        assert_eq!(p.feed(b"\n").unwrap(), ["{\"x\":1}"]);
    }
}
