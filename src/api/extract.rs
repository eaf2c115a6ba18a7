//! What every handler takes from a request before it does its own work: the caller's token
//! ([`Actor`]), the alias or service the path names ([`AliasPath`], [`ServicePath`]) and the
//! JSON body ([`Body`]); and the error answers the spec documents for them, one set for reads
//! ([`ReadErrors`]) and one for changes ([`ChangeErrors`]).
//!
//! axum runs the extractors in the order of the handler's arguments and the body last, so a
//! handler written `(State, Actor, AliasPath, Body<T>)` checks the token, then the alias, then
//! the body, and answers with the first of them that fails.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::dto::ErrorDto;
use super::{ApiError, AppState};
use crate::model::{AliasName, ServiceName};

/// The name of the token the request carries in `Authorization: Bearer <token>`: who made a
/// change, for the history.
pub struct Actor(pub String);

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.load().check(&parts.headers).map(Actor)
    }
}

/// The bearer token in `headers`, or why there is none.
pub(super) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer <token> header",
        ))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ))
}

/// The one path parameter of a route, as text; a path axum cannot decode is a 400.
async fn path_text(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, state)
        .await
        .map(|Path(text)| text)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// An alias that exists now (`web`, `web.internal` or `web.internal.`); a 404 that lists the
/// known ones otherwise.
pub struct AliasPath(pub AliasName);

impl FromRequestParts<AppState> for AliasPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let text = path_text(parts, state).await?;
        let snapshot = state.snapshots.load();
        let name = snapshot
            .topology
            .find_alias(&text)
            .cloned()
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "unknown alias `{text}` (known: {})",
                    crate::text::known(snapshot.aliases.keys())
                ))
            })?;
        Ok(Self(name))
    }
}

/// An alias name the path gives to create or change (it need not exist yet), placed in the
/// first zone when it is relative.
pub struct NewAliasPath(pub AliasName);

impl FromRequestParts<AppState> for NewAliasPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let text = path_text(parts, state).await?;
        let name = state
            .snapshots
            .load()
            .topology
            .resolve_alias(&text)
            .map_err(|e| ApiError::BadRequest(format!("alias: {e}")))?;
        Ok(Self(name))
    }
}

/// A well-formed service name (it need not exist).
pub struct ServicePath(pub ServiceName);

impl FromRequestParts<AppState> for ServicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let text = path_text(parts, state).await?;
        text.parse()
            .map(Self)
            .map_err(|e: crate::model::InvalidName| ApiError::BadRequest(e.0))
    }
}

/// A request body type, with the example its 400 shows.
pub trait RequestBody: DeserializeOwned {
    /// A body that works, as the error for one that does not parse shows it.
    const EXAMPLE: &'static str;
}

/// A JSON object body; an empty body or `null` is `{}`, which `T` may accept (every field
/// optional: the spec then calls the body optional, and so nullable).
pub struct Body<T>(pub T);

impl<T: RequestBody> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        parse_body(&body).map(Self)
    }
}

fn parse_body<T: RequestBody>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        &b"{}"[..]
    } else {
        body
    };
    let bad =
        |e: String| ApiError::BadRequest(format!("the body must be JSON like {}: {e}", T::EXAMPLE));
    // serde reads a struct from an array too; the API takes objects only.
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return Err(bad("it is not a JSON object".into())),
        Err(e) => return Err(bad(e.to_string())),
    }
    serde_json::from_slice(body).map_err(|e| bad(e.to_string()))
}

/// The errors a read can answer with.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only the spec is made of it; the answers are [`ApiError`]s.
pub enum ReadErrors {
    /// The request is malformed or a value is out of its bounds; `error` names the field
    #[response(status = 400)]
    BadRequest(ErrorDto),
    /// No such alias or service
    #[response(status = 404)]
    NotFound(ErrorDto),
    /// aliasd is stopping
    #[response(status = 503)]
    Unavailable(ErrorDto),
}

/// The errors a change can answer with.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only the spec is made of it; the answers are [`ApiError`]s.
pub enum ChangeErrors {
    /// The request is malformed or a value is out of its bounds; `error` names the field
    #[response(status = 400)]
    BadRequest(ErrorDto),
    /// No valid bearer token
    #[response(status = 401)]
    Unauthorized(ErrorDto),
    /// No such alias or service
    #[response(status = 404)]
    NotFound(ErrorDto),
    /// The change conflicts with the current state (e.g. an operation is running)
    #[response(status = 409)]
    Conflict(ErrorDto),
    /// The change could not be stored; nothing was changed
    #[response(status = 500)]
    Storage(ErrorDto),
    /// aliasd is stopping
    #[response(status = 503)]
    Unavailable(ErrorDto),
}
