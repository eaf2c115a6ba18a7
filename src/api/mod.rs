//! The control API (axum): read aliases and services; relink, promote and roll back aliases;
//! define services and aliases; reload the config.
//!
//! Reads come straight from the current snapshot. Mutations need a bearer token and go through
//! the controller, which answers once the change is durable and published. Every error is one
//! [`ApiError`], a JSON `{"error": "..."}` with the right status.

mod cluster;
pub mod dto;
mod extract;
pub mod forward;
mod rollouts;
pub mod serve;
pub mod spec;
pub mod ui;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::error;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::bounds;
use crate::check::Health;
use crate::clock::now_ms;
use crate::cluster::ClusterStatus;
use crate::config::{ApiToken, IfNoneHealthy};
use crate::controller::changes::AliasPut;
use crate::controller::machine;
use crate::controller::{ControlError, ControlHandle, Event, Gates, RollbackTo, Started, dry_run};
use crate::health::HealthBoard;
use crate::metrics::MetricsSource;
use crate::model::{Endpoint, ServiceName};
use crate::snapshot::{AliasView, SharedSnapshot, health_of};
use dto::{
    AliasDto, DeletedDto, DockerDto, ErrorDto, EventDto, HealthDto, HistoryDto, LinkRequest,
    OperationReply, PlanDto, ProblemDto, PromoteAnswer, PromoteRequest, PutAliasRequest,
    PutServiceRequest, ReasonRequest, ReloadDto, RetiredDto, RollbackRequest, SecondariesDto,
    SecondaryDto, ServiceDto, ServicesDto,
};
use extract::{
    Actor, AliasPath, Body, ChangeErrors, NewAliasPath, ReadErrors, RequestBody, ServicePath,
};

/// A request to reload the config: who asked, and where the outcome goes.
pub type ReloadRequest = (
    String,
    oneshot::Sender<Result<crate::controller::changes::ReloadSummary, ControlError>>,
);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub snapshots: SharedSnapshot,
    pub control: ControlHandle,
    /// The tokens; a reload swaps in new ones.
    pub auth: Arc<ArcSwap<Auth>>,
    pub board: Arc<HealthBoard>,
    /// Where `POST /v1/reload` asks for a reload.
    pub reloads: mpsc::Sender<ReloadRequest>,
    /// More metrics to append to `/metrics` (the front proxies').
    pub metrics: Vec<Arc<dyn MetricsSource>>,
    /// The front proxy's open work per endpoint, shown with each member.
    pub busy: Arc<dyn crate::controller::Busy>,
    /// What each zone's secondaries serve.
    pub secondaries: Arc<crate::secondaries::Secondaries>,
    /// The cluster as this node sees it; a single node's never changes.
    pub cluster: watch::Receiver<ClusterStatus>,
    /// How long a change sent to a follower waits for a leader before it is refused with a 503
    /// ([`forward::DEFAULT_FORWARD_WAIT`] unless the cluster sets another).
    pub forward_wait: Duration,
}

/// The configured tokens, kept as SHA-256 digests so every comparison is over 32 bytes and
/// takes the same time whatever the guess.
pub struct Auth {
    tokens: Vec<(String, [u8; 32])>,
}

impl Auth {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| (t.name.clone(), digest(&t.secret)))
                .collect(),
        }
    }

    /// The name of the token in `headers`, or an error saying what is missing.
    fn check(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let given = digest(extract::bearer(headers)?);
        // Compare against every token without stopping early, so timing tells nothing.
        let mut found = None;
        for (name, want) in &self.tokens {
            if bool::from(want.ct_eq(&given)) {
                found = Some(name.clone());
            }
        }
        found.ok_or(ApiError::Unauthorized("the token is not valid"))
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Every failure of a request, mapped to a status and a JSON body.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    /// A 400 with every problem listed (a refused reload).
    Invalid(Vec<String>),
    Unauthorized(&'static str),
    NotFound(String),
    Conflict(String),
    MethodNotAllowed,
    Unavailable(String),
    Internal(String),
    /// The state directory refused the write (disk full, read-only): nothing was changed.
    Storage(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problems = Vec::new();
        let (status, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::Invalid(list) => {
                let message = format!("refused; nothing was changed:\n{}", list.join("\n"));
                problems = list;
                (StatusCode::BAD_REQUEST, message)
            }
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.to_owned()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Conflict(m) => (StatusCode::CONFLICT, m),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method; see the README's API section".to_owned(),
            ),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            Self::Storage(m) => {
                error!(error = %m, "a change could not be stored");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the change could not be stored, so nothing was changed: {m}"),
                )
            }
            Self::Internal(m) => {
                error!(error = %m, "internal error in the api");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the aliasd log".to_owned(),
                )
            }
        };
        let mut response = (
            status,
            Json(ErrorDto {
                error: message,
                problems,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        response
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::UnknownAlias(_)
            | ControlError::UnknownService { .. }
            | ControlError::NotFound(_) => Self::NotFound(e.to_string()),
            ControlError::EmptyTargets
            | ControlError::DuplicateTarget(_)
            | ControlError::BadRequest(_) => Self::BadRequest(e.to_string()),
            ControlError::Conflict(_) => Self::Conflict(e.to_string()),
            ControlError::Invalid(list) => Self::Invalid(list),
            ControlError::Unavailable | ControlError::NotLeader => Self::Unavailable(e.to_string()),
            ControlError::StoreUnavailable(m) => Self::Unavailable(m),
            ControlError::Storage(m) => Self::Storage(m),
        }
    }
}

/// Every route with its spec: the one list both the router and the OpenAPI document come from.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(spec::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(list_aliases))
        .routes(routes!(get_alias, put_alias, delete_alias))
        .routes(routes!(put_targets))
        .routes(routes!(promote))
        .routes(routes!(rollback))
        .routes(routes!(confirm))
        .routes(routes!(abort))
        .routes(routes!(history))
        .routes(routes!(recent_history))
        .routes(routes!(list_services))
        .routes(routes!(get_service, put_service, delete_service))
        .routes(routes!(service_history))
        .routes(routes!(list_secondaries))
        .routes(routes!(cluster::cluster))
        .routes(routes!(reload))
        .routes(routes!(rollouts::list_rollouts, rollouts::start_rollout))
        .routes(routes!(rollouts::get_rollout))
        .routes(routes!(rollouts::pause_rollout))
        .routes(routes!(rollouts::resume_rollout))
        .routes(routes!(rollouts::abort_rollout))
        .routes(routes!(rollouts::rollback_rollout))
        .routes(routes!(events))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(ui::ui_page))
        .routes(routes!(ui::ui_file))
}

/// The OpenAPI 3.1 document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

static OPENAPI_JSON: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the spec: {e}\"}}"))
});

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    summary = "This document: the OpenAPI 3.1 spec of the API",
    responses((status = 200, description = "The spec", body = Object))
)]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}

/// The API's routes over `state`; a function so tests can drive it without a socket.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    let forwarder = forward::Forwarder::new(
        state.cluster.clone(),
        state.forward_wait,
        state.control.clone(),
    );
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(forward::MAX_BODY))
        // On a follower, changes go to the leader before any handler reads the request.
        .layer(axum::middleware::from_fn_with_state(
            forwarder,
            forward::forward,
        ))
        .layer(axum::middleware::from_fn(contain_panics))
        .with_state(state)
}

/// Every error answer is JSON `{"error": ...}`: the ones axum makes itself (a query string or a
/// path that does not parse, a body over the limit) come as text and are wrapped here.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let error = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let body = serde_json::to_vec(&ErrorDto {
        error,
        problems: Vec::new(),
    })
    .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A panic while serving a request is a bug: that request is answered 500 (the panic logged
/// with the method and path) and the server goes on serving every other request.
pub async fn contain_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures_util::FutureExt;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => json_errors(response).await,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            error!(%method, path, panic = %what, "a request panicked (a bug); answered 500");
            let body = ErrorDto {
                error: format!(
                    "internal error while serving {method} {path}; it is in the aliasd log (please report it)"
                ),
                problems: Vec::new(),
            };
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see the README's API section".into())
}

/// Prometheus text format: per alias its phase, revision and generation; per endpoint its
/// health; the cluster as this node sees it; then the front proxies' request metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus text format",
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain", body = String)
    )
)]
async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write;
    let snapshot = state.snapshots.load();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP aliasd_generation The published snapshot generation."
    );
    let _ = writeln!(out, "# TYPE aliasd_generation gauge");
    let _ = writeln!(out, "aliasd_generation {}", snapshot.generation);
    let _ = writeln!(
        out,
        "# HELP aliasd_alias_phase 1 for the phase each alias is in."
    );
    let _ = writeln!(out, "# TYPE aliasd_alias_phase gauge");
    for (name, view) in &snapshot.aliases {
        let current = dto::Phase::of(&view.state.phase);
        for &phase in dto::Phase::ALL {
            let on = u8::from(phase == current);
            let _ = writeln!(
                out,
                "aliasd_alias_phase{{alias=\"{name}\",phase=\"{phase}\"}} {on}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP aliasd_alias_revision The revision of each alias."
    );
    let _ = writeln!(out, "# TYPE aliasd_alias_revision gauge");
    for (name, view) in &snapshot.aliases {
        let _ = writeln!(
            out,
            "aliasd_alias_revision{{alias=\"{name}\"}} {}",
            view.state.revision
        );
    }
    let _ = writeln!(
        out,
        "# HELP aliasd_alias_answered_endpoints Endpoints in each alias's answers."
    );
    let _ = writeln!(out, "# TYPE aliasd_alias_answered_endpoints gauge");
    for (name, view) in &snapshot.aliases {
        let _ = writeln!(
            out,
            "aliasd_alias_answered_endpoints{{alias=\"{name}\"}} {}",
            view.endpoints.len()
        );
    }
    let _ = writeln!(
        out,
        "# HELP aliasd_endpoint_healthy 1 healthy, 0 unhealthy, -1 unknown."
    );
    let _ = writeln!(out, "# TYPE aliasd_endpoint_healthy gauge");
    let health = state.board.healths();
    for (service, config) in &snapshot.topology.services {
        for e in &config.endpoints {
            let value = match health_of(&health, service, e) {
                Health::Healthy => 1,
                Health::Unhealthy => 0,
                Health::Unknown | Health::Starting => -1,
            };
            let _ = writeln!(
                out,
                "aliasd_endpoint_healthy{{service=\"{service}\",endpoint=\"{}\",source=\"{}\"}} {value}",
                e.endpoint, e.source
            );
        }
    }
    if let Some(docker) = &snapshot.sources.docker {
        let _ = writeln!(
            out,
            "# HELP aliasd_docker_connected 1 while the Docker API answers; 0 while aliasd keeps the endpoints it last saw."
        );
        let _ = writeln!(out, "# TYPE aliasd_docker_connected gauge");
        let _ = writeln!(
            out,
            "aliasd_docker_connected {}",
            u8::from(docker.status.connected)
        );
        let _ = writeln!(
            out,
            "# HELP aliasd_docker_last_sync_timestamp_seconds When Docker last sent a whole view."
        );
        let _ = writeln!(
            out,
            "# TYPE aliasd_docker_last_sync_timestamp_seconds gauge"
        );
        let _ = writeln!(
            out,
            "aliasd_docker_last_sync_timestamp_seconds {}",
            docker
                .status
                .last_sync_ms
                .map_or(0.0, |ms| ms as f64 / 1000.0)
        );
        let _ = writeln!(
            out,
            "# HELP aliasd_docker_problems Labelled containers skipped for bad labels or networks."
        );
        let _ = writeln!(out, "# TYPE aliasd_docker_problems gauge");
        let _ = writeln!(out, "aliasd_docker_problems {}", docker.problems.len());
    }
    cluster::render_metrics(&state.cluster.borrow(), &mut out);
    for source in &state.metrics {
        source.render_prometheus(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    summary = "Liveness: answers while the daemon serves",
    responses(
        (status = 200, description = "Serving", body = HealthDto)
    )
)]
async fn healthz(State(state): State<AppState>) -> Json<HealthDto> {
    Json(HealthDto {
        status: "ok".into(),
        generation: state.snapshots.load().generation,
    })
}

impl AppState {
    /// `view` as the API shows it, in the current snapshot.
    fn alias_dto(&self, view: &AliasView) -> AliasDto {
        let snapshot = self.snapshots.load();
        let mut dto =
            AliasDto::from_view(view, &snapshot, &self.board, &*self.busy, &self.secondaries);
        if let Some(drain) = &mut dto.drain {
            drain.nodes_behind = crate::cluster::status::nodes_behind(&self.cluster.borrow());
        }
        dto
    }

    /// What a promote, rollback, confirm or abort answers, with `status`.
    fn reply(&self, started: &Started, status: StatusCode) -> Response {
        let reply = OperationReply {
            started: started.started,
            alias: self.alias_dto(&started.view),
        };
        (status, Json(reply)).into_response()
    }

    /// 202 when an operation was started (it goes on after the answer), 200 otherwise.
    fn operation_reply(&self, started: &Started) -> Response {
        let status = if started.started {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        self.reply(started, status)
    }
}

#[utoipa::path(
    get,
    path = "/v1/aliases",
    tag = "aliases",
    summary = "Every alias",
    responses(
        (status = 200, description = "Every alias", body = Vec<AliasDto>)
    )
)]
async fn list_aliases(State(state): State<AppState>) -> Json<Vec<AliasDto>> {
    let snapshot = state.snapshots.load();
    Json(
        snapshot
            .aliases
            .values()
            .map(|v| state.alias_dto(v))
            .collect(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/aliases/{alias}",
    tag = "aliases",
    summary = "One alias: phase, answers, members and their health",
    params(
        AliasParam,
        ("client" = Option<String>, Query, pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|::1|[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7})$", description = "An IP address (IPv4 dotted, `::1`, or IPv6 in full lower-case form): which version a weighted step gives this client (a resolver's address, for everyone behind it)")
    ),
    responses((status = 200, description = "The alias", body = AliasDto), ReadErrors)
)]
async fn get_alias(
    State(state): State<AppState>,
    AliasPath(name): AliasPath,
    Query(query): Query<ClientQuery>,
) -> Result<Json<AliasDto>, ApiError> {
    let client = query
        .client
        .map(|c| {
            client_address(&c).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "query parameter `client`: `{c}` is not an IP address (IPv4 dotted, `::1`, \
                     or IPv6 in full lower-case form)"
                ))
            })
        })
        .transpose()?;
    let snapshot = state.snapshots.load();
    let view = snapshot
        .aliases
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("unknown alias `{name}`")))?;
    let mut dto = state.alias_dto(view);
    dto.client = client.map(|ip| dto::ClientSideDto::of(view, ip));
    Ok(Json(dto))
}

/// `?client=`: an address as the spec's pattern writes it (IPv4 dotted without leading zeros,
/// `::1`, or IPv6 as eight lower-case groups), so what the spec allows and what is accepted are
/// the same set.
fn client_address(text: &str) -> Option<std::net::IpAddr> {
    let ip: std::net::IpAddr = text.parse().ok()?;
    let written_out = text.matches(':').count() == 7
        && !text.contains("::")
        && !text.contains('.')
        && !text.chars().any(|c| c.is_ascii_uppercase());
    match ip {
        std::net::IpAddr::V4(_) => Some(ip),
        std::net::IpAddr::V6(_) if text == "::1" || written_out => Some(ip),
        std::net::IpAddr::V6(_) => None,
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientQuery {
    client: Option<String>,
}

#[utoipa::path(
    put,
    path = "/v1/aliases/{alias}/targets",
    tag = "aliases",
    summary = "Relink: answer with exactly these services, at once",
    request_body(content = LinkRequest, description = "JSON; an empty body counts as `{}`"),
    params(AliasParam),
    responses((status = 200, description = "Linked", body = AliasDto), ChangeErrors),
    security(("token" = []))
)]
async fn put_targets(
    State(state): State<AppState>,
    Actor(actor): Actor,
    AliasPath(name): AliasPath,
    Body(request): Body<LinkRequest>,
) -> Result<Json<AliasDto>, ApiError> {
    let targets = service_names("targets", &request.targets)?;
    let view = state.control.link(name, targets, actor).await?;
    Ok(Json(state.alias_dto(&view)))
}

/// `names` as service names: 1 to [`bounds::MAX_TARGETS`], each well-formed.
fn service_names(field: &str, names: &[String]) -> Result<Vec<ServiceName>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must name at least one service"
        )));
    }
    if names.len() > bounds::MAX_TARGETS {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` may name at most {} services (got {})",
            bounds::MAX_TARGETS,
            names.len()
        )));
    }
    names
        .iter()
        .map(|t| {
            t.parse().map_err(|e: crate::model::InvalidName| {
                ApiError::BadRequest(format!("{field}: {e}"))
            })
        })
        .collect()
}

fn duration_field(
    field: &str,
    value: Option<&String>,
    range: bounds::DurationRange,
) -> Result<Option<Duration>, ApiError> {
    value
        .map(|v| range.parse(field, v).map_err(|m| bad_field(field, m)))
        .transpose()
}

/// A 400 for a field that is out of its bounds or malformed; `message` starts with the field's
/// name, which is quoted: "field `observe` must be between 0s and 7days (got 8days)".
fn bad_field(field: &str, message: String) -> ApiError {
    let rest = message.strip_prefix(field).unwrap_or(&message);
    ApiError::BadRequest(format!("field `{field}`{rest}"))
}

/// An optional `reason` within its bounds.
fn reason_field(reason: Option<&String>) -> Result<(), ApiError> {
    bounds::reason(reason.map(String::as_str)).map_err(|m| bad_field("reason", m))
}

/// The gates of a promote or rollback request, with durations parsed.
fn gates(
    observe: Option<&String>,
    confirm: Option<bool>,
    min_healthy: Option<u32>,
    warm_timeout: Option<&String>,
) -> Result<Gates, ApiError> {
    bounds::min_healthy(min_healthy).map_err(|m| bad_field("min_healthy", m))?;
    Ok(Gates {
        observe: duration_field("observe", observe, bounds::OBSERVE)?,
        confirm,
        min_healthy,
        warm_timeout: duration_field("warm_timeout", warm_timeout, bounds::WARM_TIMEOUT)?,
        stop_old: None,
        steps: Vec::new(),
        measured: Default::default(),
    })
}

/// The weighted steps and measured gates of a promote request, checked: steps as a list, their
/// CLI form or a preset; gates only with steps, within their bounds.
fn progressive(gates: &mut Gates, request: &PromoteRequest) -> Result<(), ApiError> {
    let steps = match &request.steps {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(text)) => {
            crate::steps::parse_steps(text).map_err(|e| bad_field("steps", format!(": {e}")))?
        }
        Some(list @ serde_json::Value::Array(_)) => {
            let steps: Vec<crate::steps::Step> = serde_json::from_value(list.clone())
                .map_err(|e| bad_field("steps", format!(": {e}")))?;
            crate::steps::check_steps(&steps).map_err(|e| bad_field("steps", format!(": {e}")))?;
            steps
        }
        Some(_) => {
            return Err(bad_field(
                "steps",
                " must be a list of steps, their CLI form (`10%:1m,50%:pause,100%`) or a \
                 preset's name"
                    .into(),
            ));
        }
    };
    let any_gate = request.max_error_rate.is_some()
        || request.max_latency_ratio.is_some()
        || request.min_requests.is_some();
    if steps.is_empty() {
        if any_gate {
            return Err(ApiError::BadRequest(
                "max_error_rate, max_latency_ratio and min_requests judge weighted steps; \
                 give `steps` too (a preset such as `canary10-5m` will do)"
                    .into(),
            ));
        }
        return Ok(());
    }
    // `observe` is the mixed phase's length without steps; with steps, each step's hold is.
    if request.confirm == Some(true) {
        return Err(ApiError::BadRequest(
            "`confirm` applies to promotions without steps; with steps, a step pauses for a \
             confirm (`50%:pause`)"
                .into(),
        ));
    }
    let ratio = |field: &str, value: Option<f64>, lo: f64, hi: f64, scale: f64| {
        value
            .map(|v| {
                if v.is_finite() && (lo..=hi).contains(&v) {
                    Ok((v * scale).round() as u32)
                } else {
                    Err(bad_field(
                        field,
                        format!(" must be from {lo} to {hi} (got {v})"),
                    ))
                }
            })
            .transpose()
    };
    let min_requests = request.min_requests.unwrap_or(1);
    if min_requests > 1_000_000_000 {
        return Err(bad_field(
            "min_requests",
            format!(" must be at most 1000000000 (got {min_requests})"),
        ));
    }
    gates.measured = crate::state::MeasuredGates {
        max_error_rate_ppm: ratio("max_error_rate", request.max_error_rate, 0.0, 1.0, 1e6)?,
        max_latency_ratio_milli: ratio(
            "max_latency_ratio",
            request.max_latency_ratio,
            1.0,
            1000.0,
            1e3,
        )?,
        min_requests,
    };
    gates.steps = steps;
    Ok(())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DryRunQuery {
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/v1/aliases/{alias}/promote",
    tag = "operations",
    summary = "Start a health-gated promotion (or show its plan with `dry_run=true`)",
    request_body(content = PromoteRequest, description = "JSON; an empty body counts as `{}`"),
    params(
        AliasParam,
        ("dry_run" = Option<bool>, Query, description = "Only show the plan; change nothing")
    ),
    responses(
        (status = 200, description = "Nothing to do (already answering with `to`), or the plan", body = PromoteAnswer),
        (status = 202, description = "Started; it goes on after the answer", body = OperationReply),
        ChangeErrors
    ),
    security(("token" = []))
)]
async fn promote(
    State(state): State<AppState>,
    Actor(actor): Actor,
    AliasPath(name): AliasPath,
    Query(query): Query<DryRunQuery>,
    Body(request): Body<PromoteRequest>,
) -> Result<Response, ApiError> {
    let to = service_names("to", &request.to.clone().into_vec())?;
    let mut gates = gates(
        request.observe.as_ref(),
        request.confirm,
        request.min_healthy,
        request.warm_timeout.as_ref(),
    )?;
    gates.stop_old = request.stop_old;
    progressive(&mut gates, &request)?;
    reason_field(request.reason.as_ref())?;
    // Well-formed, but this config cannot do it: a conflict with how aliasd runs, not a bad
    // request (the spec cannot say what the config enables).
    if gates.stop_old == Some(true) && state.snapshots.load().sources.docker.is_none() {
        return Err(ApiError::Conflict(
            "stop_old stops the old version's Docker containers, but Docker discovery is off ([docker] enabled = false)".into(),
        ));
    }
    if query.dry_run {
        let snapshot = state.snapshots.load();
        let view = snapshot
            .aliases
            .get(&name)
            .ok_or_else(|| ApiError::NotFound(format!("unknown alias `{name}`")))?;
        let plan = dry_run::promote(
            &snapshot.topology,
            &state.board.healths(),
            &view.state,
            to,
            &gates,
            actor,
            request.reason,
            now_ms(),
        )?;
        return Ok(Json(PlanDto::from_dry_run(&name, &plan, &snapshot.topology)).into_response());
    }
    let started = state
        .control
        .promote(name, to, gates, request.reason, actor)
        .await?;
    Ok(state.operation_reply(&started))
}

#[utoipa::path(
    post,
    path = "/v1/aliases/{alias}/rollback",
    tag = "operations",
    summary = "Promote back to the previous targets, or to a revision of the history",
    request_body(content = Option<RollbackRequest>, description = "JSON; an empty body counts as `{}`"),
    params(AliasParam),
    responses(
        (status = 200, description = "Nothing to do", body = OperationReply),
        (status = 202, description = "Started", body = OperationReply),
        ChangeErrors
    ),
    security(("token" = []))
)]
async fn rollback(
    State(state): State<AppState>,
    Actor(actor): Actor,
    AliasPath(name): AliasPath,
    Body(request): Body<RollbackRequest>,
) -> Result<Response, ApiError> {
    reason_field(request.reason.as_ref())?;
    let gates = gates(
        request.observe.as_ref(),
        request.confirm,
        request.min_healthy,
        request.warm_timeout.as_ref(),
    )?;
    let to = request
        .to_revision
        .map_or(RollbackTo::Previous, RollbackTo::Revision);
    let started = state
        .control
        .rollback(name, to, gates, request.reason, actor)
        .await?;
    Ok(state.operation_reply(&started))
}

#[utoipa::path(
    post,
    path = "/v1/aliases/{alias}/confirm",
    tag = "operations",
    summary = "Pass the confirm gate of a running promotion",
    request_body(content = Option<ReasonRequest>, description = "JSON; an empty body counts as `{}`"),
    params(AliasParam),
    responses((status = 200, description = "Confirmed", body = OperationReply), ChangeErrors),
    security(("token" = []))
)]
async fn confirm(
    State(state): State<AppState>,
    Actor(actor): Actor,
    AliasPath(name): AliasPath,
    Body(request): Body<ReasonRequest>,
) -> Result<Response, ApiError> {
    reason_field(request.reason.as_ref())?;
    let view = state.control.confirm(name, request.reason, actor).await?;
    let started = Started {
        view,
        started: true,
    };
    Ok(state.reply(&started, StatusCode::OK))
}

#[utoipa::path(
    post,
    path = "/v1/aliases/{alias}/abort",
    tag = "operations",
    summary = "Abort a running promotion: back to the old version",
    request_body(content = Option<ReasonRequest>, description = "JSON; an empty body counts as `{}`"),
    params(AliasParam),
    responses((status = 200, description = "Aborted", body = OperationReply), ChangeErrors),
    security(("token" = []))
)]
async fn abort(
    State(state): State<AppState>,
    Actor(actor): Actor,
    AliasPath(name): AliasPath,
    Body(request): Body<ReasonRequest>,
) -> Result<Response, ApiError> {
    reason_field(request.reason.as_ref())?;
    let view = state.control.abort(name, request.reason, actor).await?;
    let started = Started {
        view,
        started: true,
    };
    Ok(state.reply(&started, StatusCode::OK))
}

#[utoipa::path(
    get,
    path = "/v1/aliases/{alias}/history",
    tag = "aliases",
    summary = "The alias's history, oldest first (as the retention keeps it)",
    params(AliasParam),
    responses((status = 200, description = "The history", body = Vec<HistoryDto>), ReadErrors)
)]
async fn history(
    State(state): State<AppState>,
    AliasPath(name): AliasPath,
) -> Result<Json<Vec<HistoryDto>>, ApiError> {
    let entries = state.control.history(name).await?;
    Ok(Json(entries.iter().map(HistoryDto::from_entry).collect()))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecentQuery {
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/v1/history",
    tag = "meta",
    summary = "The newest history entries of every alias, service and the config, newest first",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "How many entries, 1 to 1,000 (default 100)", example = 100)
    ),
    responses(
        (status = 200, description = "The entries, newest first (as the retention keeps them)", body = Vec<HistoryDto>),
        ReadErrors
    )
)]
async fn recent_history(
    State(state): State<AppState>,
    Query(query): Query<RecentQuery>,
) -> Result<Json<Vec<HistoryDto>>, ApiError> {
    let limit = query.limit.unwrap_or(bounds::HISTORY_LIMIT_DEFAULT);
    if !bounds::HISTORY_LIMIT.contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between {} and {} (got {limit})",
            bounds::HISTORY_LIMIT.start(),
            bounds::HISTORY_LIMIT.end()
        )));
    }
    let entries = state.control.recent_history(limit).await?;
    Ok(Json(entries.iter().map(HistoryDto::from_entry).collect()))
}

/// Server-sent events: every alias change and every endpoint health change, as they happen.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "meta",
    summary = "Server-sent events: every change, health change and discovery change, live",
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data:` is one EventDto", content_type = "text/event-stream", body = EventDto)
    )
)]
async fn events(
    State(state): State<AppState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::BroadcastStream;
    use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

    // The stream ends when aliasd stops, so a graceful shutdown does not wait on listeners.
    let stream = BroadcastStream::new(state.control.subscribe())
        .take_while(|item| !matches!(item, Ok(Event::Closing)))
        .filter_map(|item| {
            let dto = match item {
                Ok(event) => event_dto(event)?,
                Err(BroadcastStreamRecvError::Lagged(skipped)) => EventDto::Lagged { skipped },
            };
            Some(Ok(
                SseEvent::default().data(serde_json::to_string(&dto).unwrap_or_default())
            ))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn event_dto(event: Event) -> Option<EventDto> {
    Some(match event {
        Event::Closing => return None,
        Event::Registry { entry } => EventDto::Registry {
            entry: HistoryDto::from_entry(&entry),
        },
        Event::Endpoints {
            service,
            endpoints,
            at_ms,
        } => EventDto::Endpoints {
            service: service.to_string(),
            endpoints: endpoints.iter().map(ToString::to_string).collect(),
            at: dto::rfc3339_ms(at_ms),
        },
        Event::Secondary { state, at_ms } => EventDto::Secondary {
            secondary: SecondaryDto::from_state(&state, at_ms),
            at: dto::rfc3339_ms(at_ms),
        },
        Event::Docker { status } => EventDto::Docker {
            connected: status.connected,
            error: status.error,
            at: dto::rfc3339_ms(status.since_ms),
        },
        Event::Change {
            entry,
            state: alias,
        } => EventDto::Change {
            entry: HistoryDto::from_entry(&entry),
            retired: alias.retired.as_ref().map(RetiredDto::from_retired),
            drain_until: match &alias.phase {
                machine::Phase::Draining { until_ms, .. } => Some(dto::rfc3339_ms(*until_ms)),
                _ => None,
            },
        },
        Event::Rollout { rollout, at_ms } => EventDto::Rollout {
            rollout: Box::new(dto::RolloutDto::from_rollout(&rollout)),
            at: dto::rfc3339_ms(at_ms),
        },
        Event::Health { change, at_ms } => EventDto::Health {
            service: change.service.to_string(),
            endpoint: change.endpoint.to_string(),
            health: change.health.into(),
            error: change.error,
            at: dto::rfc3339_ms(at_ms),
        },
    })
}

#[utoipa::path(
    get,
    path = "/v1/secondaries",
    tag = "meta",
    summary = "Every zone's secondaries: the serial each serves and how far behind it is",
    responses(
        (status = 200, description = "Secondaries", body = SecondariesDto)
    )
)]
async fn list_secondaries(State(state): State<AppState>) -> Json<SecondariesDto> {
    let now = now_ms();
    Json(SecondariesDto {
        secondaries: state
            .secondaries
            .all()
            .iter()
            .map(|s| SecondaryDto::from_state(s, now))
            .collect(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "services",
    summary = "Every service, and how discovery stands",
    responses(
        (status = 200, description = "Services", body = ServicesDto)
    )
)]
async fn list_services(State(state): State<AppState>) -> Json<ServicesDto> {
    let snapshot = state.snapshots.load();
    let docker = snapshot.sources.docker.as_ref();
    Json(ServicesDto {
        services: snapshot
            .topology
            .services
            .iter()
            .map(|(name, service)| ServiceDto::from_service(name, service, &snapshot, &state.board))
            .collect(),
        problems: docker
            .map(|d| d.problems.iter().map(ProblemDto::from_problem).collect())
            .unwrap_or_default(),
        docker: docker.map(|d| DockerDto::from_status(&d.status)),
    })
}

/// 201 for what a PUT created, 200 for what it changed.
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

#[utoipa::path(
    get,
    path = "/v1/services/{service}",
    tag = "services",
    summary = "One service",
    params(ServiceParam),
    responses((status = 200, description = "The service", body = ServiceDto), ReadErrors)
)]
async fn get_service(
    State(state): State<AppState>,
    ServicePath(name): ServicePath,
) -> Result<Json<ServiceDto>, ApiError> {
    let snapshot = state.snapshots.load();
    let found = snapshot
        .topology
        .services
        .get(&name)
        .ok_or_else(|| ControlError::unknown_service(&snapshot.topology, &name))?;
    Ok(Json(ServiceDto::from_service(
        &name,
        found,
        &snapshot,
        &state.board,
    )))
}

/// `PUT /v1/services/{name}`: defines a service through the API (201) or replaces its
/// definition (200).
#[utoipa::path(
    put,
    path = "/v1/services/{service}",
    tag = "services",
    summary = "Define a service through the API, or replace its endpoints and check",
    request_body(content = PutServiceRequest, description = "JSON; an empty body counts as `{}`"),
    params(ServiceParam),
    responses(
        (status = 200, description = "Changed", body = ServiceDto),
        (status = 201, description = "Created", body = ServiceDto),
        ChangeErrors
    ),
    security(("token" = []))
)]
async fn put_service(
    State(state): State<AppState>,
    Actor(actor): Actor,
    ServicePath(name): ServicePath,
    Body(request): Body<PutServiceRequest>,
) -> Result<Response, ApiError> {
    if request.endpoints.len() > bounds::MAX_ENDPOINTS {
        return Err(ApiError::BadRequest(format!(
            "field `endpoints` may hold at most {} endpoints (got {})",
            bounds::MAX_ENDPOINTS,
            request.endpoints.len()
        )));
    }
    let endpoints = request
        .endpoints
        .iter()
        .map(|e| {
            e.parse::<Endpoint>()
                .map_err(|err| ApiError::BadRequest(format!("endpoints: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let created = state
        .control
        .put_service(
            name.clone(),
            endpoints,
            request.health.unwrap_or_default(),
            actor,
        )
        .await?;
    let snapshot = state.snapshots.load();
    let found =
        snapshot.topology.services.get(&name).ok_or_else(|| {
            ApiError::Internal(format!("service `{name}` vanished after its change"))
        })?;
    let dto = ServiceDto::from_service(&name, found, &snapshot, &state.board);
    Ok((created_or_ok(created), Json(dto)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/services/{service}",
    tag = "services",
    summary = "Remove an API service (refused while an alias links it)",
    params(ServiceParam),
    responses((status = 200, description = "Removed", body = DeletedDto), ChangeErrors),
    security(("token" = []))
)]
async fn delete_service(
    State(state): State<AppState>,
    Actor(actor): Actor,
    ServicePath(name): ServicePath,
) -> Result<Json<DeletedDto>, ApiError> {
    state.control.delete_service(name.clone(), actor).await?;
    Ok(Json(DeletedDto {
        deleted: name.to_string(),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/services/{service}/history",
    tag = "services",
    summary = "The history of an API service",
    params(ServiceParam),
    responses((status = 200, description = "The history", body = Vec<HistoryDto>), ReadErrors)
)]
async fn service_history(
    State(state): State<AppState>,
    ServicePath(name): ServicePath,
) -> Result<Json<Vec<HistoryDto>>, ApiError> {
    let entries = state.control.service_history(name).await?;
    Ok(Json(entries.iter().map(HistoryDto::from_entry).collect()))
}

/// `PUT /v1/aliases/{alias}`: creates an alias through the API (201) or changes it (200).
#[utoipa::path(
    put,
    path = "/v1/aliases/{alias}",
    tag = "aliases",
    summary = "Create an API alias, or change its targets, port name or fallback",
    request_body(content = Option<PutAliasRequest>, description = "JSON; an empty body counts as `{}`"),
    params(AliasParam),
    responses(
        (status = 200, description = "Changed (or already so)", body = AliasDto),
        (status = 201, description = "Created", body = AliasDto),
        ChangeErrors
    ),
    security(("token" = []))
)]
async fn put_alias(
    State(state): State<AppState>,
    Actor(actor): Actor,
    NewAliasPath(name): NewAliasPath,
    Body(request): Body<PutAliasRequest>,
) -> Result<Response, ApiError> {
    let targets = request
        .targets
        .as_deref()
        .map(|t| service_names("targets", t))
        .transpose()?;
    let if_none_healthy = request
        .if_none_healthy
        .as_deref()
        .map(|p| {
            IfNoneHealthy::parse(p).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "if_none_healthy: `{p}` is not one of {}",
                    IfNoneHealthy::CHOICES
                ))
            })
        })
        .transpose()?;
    let put = AliasPut {
        targets,
        port_name: request.port_name,
        if_none_healthy,
    };
    let (view, created) = state.control.put_alias(name, put, actor).await?;
    Ok((created_or_ok(created), Json(state.alias_dto(&view))).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/aliases/{alias}",
    tag = "aliases",
    summary = "Remove an API alias",
    params(AliasParam),
    responses((status = 200, description = "Removed", body = DeletedDto), ChangeErrors),
    security(("token" = []))
)]
async fn delete_alias(
    State(state): State<AppState>,
    Actor(actor): Actor,
    AliasPath(name): AliasPath,
) -> Result<Json<DeletedDto>, ApiError> {
    state.control.delete_alias(name.clone(), actor).await?;
    Ok(Json(DeletedDto {
        deleted: name.to_string(),
    }))
}

/// `POST /v1/reload`: re-reads the config and its zone files, and applies them as one change or
/// refuses them whole (400, with every problem).
#[utoipa::path(
    post,
    path = "/v1/reload",
    tag = "meta",
    summary = "Re-read the config and zone files and apply them as one change, or refuse them whole",
    responses((status = 200, description = "Applied", body = ReloadDto), ChangeErrors),
    security(("token" = []))
)]
async fn reload(
    State(state): State<AppState>,
    Actor(actor): Actor,
) -> Result<Json<ReloadDto>, ApiError> {
    let (reply, rx) = oneshot::channel();
    state
        .reloads
        .send((actor, reply))
        .await
        .map_err(|_| ApiError::Unavailable("aliasd is shutting down".into()))?;
    let summary = rx
        .await
        .map_err(|_| ApiError::Unavailable("aliasd is shutting down".into()))??;
    Ok(Json(ReloadDto::from_summary(&summary)))
}

/// The `{alias}` path parameter: DNS labels, relative to the first zone unless they already end
/// in it (a name outside every zone, or with a trailing dot, is refused when created).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only the spec is made of it; [`AliasPath`] reads the parameter.
struct AliasParam {
    /// The alias: `web`, or fully qualified `web.internal`
    #[param(
        example = "web",
        max_length = 200,
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
    )]
    alias: String,
}

/// The `{service}` path parameter.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only the spec is made of it; [`ServicePath`] reads the parameter.
struct ServiceParam {
    /// The service name: 1 to 63 lower-case letters, digits, `-` or `_`, starting with a letter or digit
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", example = "web-v1")]
    service: String,
}
impl RequestBody for LinkRequest {
    const EXAMPLE: &'static str = r#"{"targets": ["web-v1"]}"#;
}

impl RequestBody for PromoteRequest {
    const EXAMPLE: &'static str = r#"{"to": "web-v2", "observe": "30s"}"#;
}

impl RequestBody for RollbackRequest {
    const EXAMPLE: &'static str = r#"{"to_revision": 3, "reason": "..."}"#;
}

impl RequestBody for ReasonRequest {
    const EXAMPLE: &'static str = r#"{"reason": "..."}"#;
}

impl RequestBody for PutServiceRequest {
    const EXAMPLE: &'static str =
        r#"{"endpoints": ["10.0.0.5:8080"], "health": {"kind": "http", "path": "/healthz"}}"#;
}

impl RequestBody for PutAliasRequest {
    const EXAMPLE: &'static str =
        r#"{"targets": ["web-v1"], "port_name": "http", "if_none_healthy": "last-known-good"}"#;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    /// Each wire enum's JSON is its word, and the spec lists exactly those words.
    fn words_agree<T: serde::Serialize + Copy + std::fmt::Display>(schema: &str, all: &[T]) {
        let words: Vec<String> = all.iter().map(ToString::to_string).collect();
        let json: Vec<String> = all
            .iter()
            .map(|v| {
                serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(json, words, "{schema}");
        let spec = serde_json::to_value(openapi()).unwrap();
        let listed = &spec["components"]["schemas"][schema]["enum"];
        assert_eq!(listed, &serde_json::json!(words), "{schema}");
    }

    #[test]
    fn wire_enums_are_their_words_in_json_and_in_the_spec() {
        words_agree("Phase", dto::Phase::ALL);
        words_agree("Role", dto::Role::ALL);
        words_agree("Health", dto::Health::ALL);
        words_agree("OpKind", dto::OpKind::ALL);
        words_agree("OpOutcome", dto::OpOutcome::ALL);
        words_agree("Change", dto::Change::ALL);
        words_agree("FailureAction", dto::FailureAction::ALL);
        words_agree("RolloutState", dto::RolloutState::ALL);
        words_agree("MemberStateDto", dto::MemberStateDto::ALL);
        assert_eq!(dto::Change::WarmTimeout.to_string(), "warm_timeout");
    }

    #[test]
    fn any_stored_time_renders_even_past_year_9999() {
        assert_eq!(dto::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(dto::rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            dto::rfc3339_ms(253_402_300_800_000 + 1),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[tokio::test]
    async fn a_panicking_request_is_answered_500_and_the_next_one_is_served() {
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let deadlines: Vec<u64> = Vec::new();
                    deadlines[0].to_string()
                }),
            )
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(contain_panics));
        let response = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("GET /boom"),
            "{body}"
        );
        let response = app
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
