//! The control API (axum): read aliases and services, relink an alias.
//!
//! Reads come straight from the current snapshot. Mutations need a bearer token and go through
//! the controller, which answers once the change is durable and published. Every error is one
//! [`ApiError`], a JSON `{"error": "..."}` with the right status.

pub mod dto;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::error;

use crate::config::ApiToken;
use crate::controller::{ControlError, ControlHandle};
use crate::model::{AliasName, ServiceName};
use crate::snapshot::{SharedSnapshot, Snapshot};
use dto::{AliasDto, ErrorDto, HealthDto, LinkRequest, ServiceDto};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub snapshots: SharedSnapshot,
    pub control: ControlHandle,
    pub auth: Arc<Auth>,
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
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer <token> header",
            ))?;
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ))?;
        let given = digest(given);
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
    Unauthorized(&'static str),
    NotFound(String),
    MethodNotAllowed,
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.to_owned()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method; see the README's API section".to_owned(),
            ),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            Self::Internal(m) => {
                error!(error = %m, "internal error in the api");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the aliasd log".to_owned(),
                )
            }
        };
        let mut response = (status, Json(ErrorDto { error: message })).into_response();
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
            ControlError::UnknownAlias(_) | ControlError::UnknownService(_) => {
                Self::NotFound(e.to_string())
            }
            ControlError::EmptyTargets | ControlError::DuplicateTarget(_) => {
                Self::BadRequest(e.to_string())
            }
            ControlError::Unavailable => Self::Unavailable(e.to_string()),
            ControlError::Storage(_) => Self::Internal(e.to_string()),
        }
    }
}

/// The API's routes over `state`; a function so tests can drive it without a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/aliases", get(list_aliases))
        .route("/v1/aliases/{alias}", get(get_alias))
        .route("/v1/aliases/{alias}/targets", put(put_targets))
        .route("/v1/services", get(list_services))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see the README's API section".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn healthz(State(state): State<AppState>) -> Json<HealthDto> {
    Json(HealthDto {
        status: "ok".into(),
        generation: state.snapshots.load().generation,
    })
}

async fn list_aliases(State(state): State<AppState>) -> Json<Vec<AliasDto>> {
    let snapshot = state.snapshots.load();
    Json(
        snapshot
            .aliases
            .values()
            .map(|v| AliasDto::from_view(v, &snapshot))
            .collect(),
    )
}

/// The alias that `text` names, or a 404 that lists the known ones.
fn find_alias(snapshot: &Snapshot, text: &str) -> Result<AliasName, ApiError> {
    snapshot.topology.find_alias(text).cloned().ok_or_else(|| {
        let known: Vec<String> = snapshot.aliases.keys().map(|a| a.to_string()).collect();
        ApiError::NotFound(format!(
            "unknown alias `{text}` (known: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ))
    })
}

async fn get_alias(
    State(state): State<AppState>,
    Path(alias): Path<String>,
) -> Result<Json<AliasDto>, ApiError> {
    let snapshot = state.snapshots.load();
    let name = find_alias(&snapshot, &alias)?;
    let view = snapshot
        .aliases
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("unknown alias `{alias}`")))?;
    Ok(Json(AliasDto::from_view(view, &snapshot)))
}

async fn put_targets(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AliasDto>, ApiError> {
    let actor = state.auth.check(&headers)?;
    let name = find_alias(&state.snapshots.load(), &alias)?;
    let request: LinkRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be JSON like {{\"targets\": [\"web-v1\"]}}: {e}"
        ))
    })?;
    if request.targets.is_empty() {
        return Err(ApiError::BadRequest(
            "`targets` must name at least one service".into(),
        ));
    }
    let mut targets = Vec::with_capacity(request.targets.len());
    for t in &request.targets {
        let service: ServiceName = t.parse().map_err(|e: crate::model::InvalidName| {
            ApiError::BadRequest(format!("targets: {e}"))
        })?;
        targets.push(service);
    }
    let view = state.control.link(name, targets, actor).await?;
    let snapshot = state.snapshots.load();
    Ok(Json(AliasDto::from_view(&view, &snapshot)))
}

async fn list_services(State(state): State<AppState>) -> Json<Vec<ServiceDto>> {
    let snapshot = state.snapshots.load();
    Json(
        snapshot
            .topology
            .services
            .iter()
            .map(|(name, service)| ServiceDto {
                name: name.to_string(),
                endpoints: service.endpoints.iter().map(|e| e.to_string()).collect(),
                linked_by: snapshot
                    .aliases
                    .values()
                    .filter(|a| a.state.targets.contains(name))
                    .map(|a| a.name.to_string())
                    .collect(),
            })
            .collect(),
    )
}
