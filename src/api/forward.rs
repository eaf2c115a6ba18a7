//! A follower's API answers a change as if the leader had been asked: the request goes on to
//! the leader's API as it came (method, path, query, headers with the token, body) and the
//! leader's answer comes back as it was sent (status, headers, body). Only the leader runs the
//! writer, so this is the one way a change made through any node is applied once.
//!
//! What goes to the leader ([`to_leader`]): every change under `/v1/` but `POST /v1/reload`
//! (each node reloads its own files), and the history reads, which the writer answers. Every
//! other read is answered from the node's own snapshot, and `/v1/events` is each node's own
//! stream.
//!
//! With no leader known, the leader's API unreachable, or (for a change) this node leading but
//! cut off from etcd, the request waits for the cluster's status to change, up to
//! [`AppState::forward_wait`](super::AppState) (the lease's TTL and a second, so a failover
//! fits in it), then is answered 503 with the reason; a change is then not applied. A request already forwarded by another node is never forwarded again (503
//! "forward loop"): two nodes that each take the other for the leader cannot bounce it forever.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::ApiError;
use super::dto::ErrorDto;
use crate::cluster::ClusterStatus;
use crate::controller::ControlHandle;

/// Set on a request a node forwards, to the forwarding node's name.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("x-aliasd-forwarded-by");

/// How long a request waits for a leader by default: the default lease TTL (5 s) and a second.
pub const DEFAULT_FORWARD_WAIT: Duration = Duration::from_secs(6);

/// The largest body the API takes (axum's default limit, set explicitly on the router) and so
/// the largest a follower forwards.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// How often a waiting request looks again whether it can be answered: a writer that starts
/// after a takeover changes no status to wake it.
const RECHECK: Duration = Duration::from_millis(50);

/// How long connecting to the leader's API may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the leader may take to answer once it has the request. A change is answered when it
/// is durable, so this is long: giving up earlier would not undo the change.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that belong to one connection, never passed on (RFC 9110 section 7.6.1), and `Host`,
/// which names the leader on the forwarded request.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `method path` is answered by the leader (see the module's documentation).
pub fn to_leader(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return false;
    };
    if rest == "events" || rest == "reload" {
        return false;
    }
    if *method == Method::GET || *method == Method::HEAD {
        return is_history(rest);
    }
    true
}

/// `history`, `aliases/{alias}/history` or `services/{service}/history` (after `/v1/`).
fn is_history(rest: &str) -> bool {
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["history"] | ["aliases" | "services", _, "history"]
    )
}

/// What the forwarding layer needs: the cluster's status, how long to wait for a leader, and a
/// client for the leader's API.
#[derive(Clone)]
pub struct Forwarder {
    cluster: watch::Receiver<ClusterStatus>,
    wait: Duration,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// This node's writer, which runs only while it leads (from the end of its takeover).
    control: ControlHandle,
}

impl Forwarder {
    pub fn new(
        cluster: watch::Receiver<ClusterStatus>,
        wait: Duration,
        control: ControlHandle,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        // A connection of its own per request: a pooled one to a leader that died since is
        // reset only once the request is on it, and then nobody knows whether it arrived.
        // With a fresh one, a failure to connect means the request was never sent.
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Self {
            cluster,
            wait,
            http,
            control,
        }
    }
}

/// The middleware: forwards what [`to_leader`] names while another node leads; everything else
/// goes on to this node's handlers.
pub async fn forward(State(fwd): State<Forwarder>, request: Request, next: Next) -> Response {
    let is_change = request.method() != Method::GET && request.method() != Method::HEAD;
    if !to_leader(request.method(), request.uri().path()) || fwd.leads(is_change) {
        return next.run(request).await;
    }
    let node = fwd.cluster.borrow().node.clone();
    let forwarded_by = request
        .headers()
        .get(&FORWARDED_BY)
        .map(|by| String::from_utf8_lossy(by.as_bytes()).into_owned());
    // Only a node that takes another for the leader would pass the request on again; one
    // that knows no leader (or leads but cannot reach etcd) waits below and says why.
    if let Some(by) = &forwarded_by
        && fwd.cluster.borrow().leader_api().is_some()
    {
        let leader = fwd.cluster.borrow().leader.clone().unwrap_or_default();
        return forward_loop(by, &node, &leader, request.uri().path());
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return too_large(),
    };
    let deadline = Instant::now() + fwd.wait;
    let mut cluster = fwd.cluster.clone();
    loop {
        let status = cluster.borrow_and_update().clone();
        if fwd.leads_in(&status, is_change) {
            // This node took the leadership while the request waited: it answers itself.
            return next.run(Request::from_parts(parts, Body::from(body))).await;
        }
        let reason = match (status.leader.as_deref(), status.leader_api()) {
            (Some(_), Some(_)) if forwarded_by.is_some() => {
                let by = forwarded_by.as_deref().unwrap_or_default();
                let leader = status.leader.as_deref().unwrap_or_default();
                return forward_loop(by, &node, leader, parts.uri.path());
            }
            (Some(leader), Some(api)) => {
                match send(
                    &fwd,
                    api,
                    &parts.method,
                    &parts.uri,
                    &parts.headers,
                    &body,
                    &node,
                )
                .await
                {
                    Ok(response) => {
                        debug!(leader, %api, method = %parts.method, path = %parts.uri.path(), status = %response.status(), "forwarded to the leader");
                        return response;
                    }
                    Err(Failed::Connect(error)) => {
                        warn!(leader, %api, %error, "the leader's API cannot be reached");
                        format!("the leader {leader} cannot be reached at {api}: {error}")
                    }
                    Err(Failed::Answer(error)) => {
                        warn!(leader, %api, %error, "the leader took the request but did not answer");
                        let outcome = if is_change {
                            "the change may or may not have been applied: see `aliasctl history`"
                        } else {
                            "try again"
                        };
                        return ApiError::Unavailable(format!(
                            "the leader {leader} at {api} took the request but did not answer \
                             ({error}); {outcome}"
                        ))
                        .into_response();
                    }
                }
            }
            _ if status.is_leader() && status.etcd.as_ref().is_none_or(|e| e.connected) => {
                "this node was elected the leader but its writer does not run (it is taking \
                 over the cluster's state, or its term just ended)"
                    .to_owned()
            }
            _ => status.no_leader_reason(),
        };
        // Woken by the status, and every RECHECK: a writer that starts changes no status.
        let tick = (Instant::now() + RECHECK).min(deadline);
        let changed = tokio::time::timeout_at(tick, cluster.changed()).await;
        let waiting = match changed {
            Ok(Ok(())) => true,
            Err(_) => Instant::now() < deadline,
            Ok(Err(_)) => false,
        };
        if !waiting {
            let outcome = if is_change {
                "the change was not applied"
            } else {
                "the leader keeps the history; try again"
            };
            return ApiError::Unavailable(format!(
                "no leader: {reason}; {outcome} (waited {})",
                humantime::format_duration(fwd.wait)
            ))
            .into_response();
        }
    }
}

impl Forwarder {
    /// Whether this node answers the request itself: it leads, its writer runs (a new
    /// leader's starts once it took over the state; an old one's is gone when its term
    /// ended) and, for a change, etcd answered its last request. A leader cut off from etcd
    /// could not make a change durable (and its term ends with its lease). Otherwise the
    /// request waits (up to the forward wait) for etcd, the writer or a new leader, and is
    /// refused with why, not with the writer's bare "not the leader".
    fn leads(&self, change: bool) -> bool {
        self.leads_in(&self.cluster.borrow(), change)
    }

    fn leads_in(&self, status: &ClusterStatus, change: bool) -> bool {
        status.is_leader()
            && self.control.has_writer()
            && (!change || status.etcd.as_ref().is_none_or(|e| e.connected))
    }
}

/// The 503 for a request another node forwarded here while this node takes a third for the
/// leader: forwarding it again could bounce it between nodes forever. Mostly the forwarding
/// node's view was stale (a failover it had not seen yet), so asking again works.
fn forward_loop(by: &str, node: &str, leader: &str, path: &str) -> Response {
    warn!(%by, node, leader, path, "refused to forward a request that was forwarded already");
    ApiError::Unavailable(format!(
        "forward loop: {by} forwarded this request to {node}, which is not the leader either \
         ({node} takes {leader} for the leader); nothing was applied: ask again (after a \
         failover {by} may not have seen the new leader yet), and if it goes on, the nodes \
         disagree on the leader: see `aliasctl cluster`"
    ))
    .into_response()
}

/// Why a forwarded request got no answer.
enum Failed {
    /// The leader's API could not be reached: nothing was sent, so it can be tried again.
    Connect(String),
    /// The request may have reached the leader: it must not be sent again.
    Answer(String),
}

/// Sends the request to the leader's API at `api` and returns its answer as it came.
async fn send(
    fwd: &Forwarder,
    api: std::net::SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    node: &str,
) -> Result<Response, Failed> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let target: Uri = format!("http://{api}{path}")
        .parse()
        .map_err(|e| Failed::Connect(format!("bad leader address {api}: {e}")))?;
    let mut request = hyper::Request::new(Full::new(body.clone()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = target;
    let out = request.headers_mut();
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(name)
            && name != header::HOST
            && name != header::CONTENT_LENGTH
            && name != FORWARDED_BY
        {
            out.append(name.clone(), value.clone());
        }
    }
    let by = HeaderValue::from_str(node).unwrap_or(HeaderValue::from_static("unnamed"));
    out.insert(FORWARDED_BY, by);
    // A leader that loses its leadership while the request is on it (frozen, or cut off from
    // etcd) can no longer commit it; waiting out the answer timeout would tell nothing more.
    let leader = fwd.cluster.borrow().leader.clone();
    let mut cluster = fwd.cluster.clone();
    let deposed = async {
        loop {
            if cluster.changed().await.is_err() {
                return std::future::pending().await;
            }
            let now = cluster.borrow().leader.clone();
            if now.is_some() && now != leader {
                return now.unwrap_or_default();
            }
        }
    };
    let answer = tokio::select! {
        answer = tokio::time::timeout(ANSWER_TIMEOUT, fwd.http.request(request)) => answer,
        new = deposed => {
            return Err(Failed::Answer(format!(
                "it lost the leadership to {new} before it answered"
            )));
        }
    };
    let response = match answer {
        Err(_) => {
            return Err(Failed::Answer(format!(
                "no answer within {}",
                humantime::format_duration(ANSWER_TIMEOUT)
            )));
        }
        Ok(Err(error)) if error.is_connect() => return Err(Failed::Connect(error_chain(&error))),
        Ok(Err(error)) => return Err(Failed::Answer(error_chain(&error))),
        Ok(Ok(response)) => response,
    };
    let (mut head, body) = response.into_parts();
    for name in &HOP_BY_HOP {
        head.headers.remove(name);
    }
    Ok(Response::from_parts(head, Body::new(body)))
}

/// An error with its causes, `outer: inner: ...` (hyper's own message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A body over [`MAX_BODY`]: 413, as the API's own extractors answer it.
fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(ErrorDto {
            error: format!(
                "the body is larger than the API takes ({} bytes); nothing was forwarded to the leader",
                MAX_BODY
            ),
            problems: Vec::new(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
