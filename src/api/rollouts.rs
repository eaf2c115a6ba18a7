//! Rollouts of many aliases: `POST /v1/rollouts` starts one, `GET /v1/rollouts` and
//! `GET /v1/rollouts/{id}` read them from the snapshot, and `pause`, `resume`, `abort` and
//! `rollback` change one through the writer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::dto::{RolloutDto, RolloutRequest};
use super::extract::{Actor, Body, ChangeErrors, ReadErrors, RequestBody};
use super::{ApiError, AppState, bad_field, duration_field, gates, service_names};
use crate::bounds;
use crate::controller::RolloutPlan;
use crate::controller::rollout::Command;
use crate::model::{AliasName, ServiceName};
use crate::snapshot::Snapshot;

impl RequestBody for RolloutRequest {
    const EXAMPLE: &'static str =
        r#"{"version": "v2", "aliases": ["web", "api"], "parallelism": 5, "delay": "2s"}"#;
}

/// The `{id}` path parameter.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only the spec is made of it; the handlers read the parameter.
pub(super) struct RolloutParam {
    /// The rollout's id
    #[param(example = 1, minimum = 1)]
    id: u64,
}

fn rollout_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("a rollout id is a whole number (got `{text}`)")))
}

#[utoipa::path(
    get,
    path = "/v1/rollouts",
    tag = "rollouts",
    summary = "Every rollout of many aliases, newest first",
    responses((status = 200, description = "The rollouts", body = Vec<RolloutDto>))
)]
pub(super) async fn list_rollouts(State(state): State<AppState>) -> Json<Vec<RolloutDto>> {
    let snapshot = state.snapshots.load();
    Json(
        snapshot
            .rollouts
            .values()
            .rev()
            .map(RolloutDto::from_rollout)
            .collect(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/rollouts/{id}",
    tag = "rollouts",
    summary = "One rollout and each of its aliases",
    params(RolloutParam),
    responses((status = 200, description = "The rollout", body = RolloutDto), ReadErrors)
)]
pub(super) async fn get_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutDto>, ApiError> {
    let id = rollout_id(&id)?;
    let snapshot = state.snapshots.load();
    let r = snapshot
        .rollouts
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no rollout {id}")))?;
    Ok(Json(RolloutDto::from_rollout(r)))
}

#[utoipa::path(
    post,
    path = "/v1/rollouts",
    tag = "rollouts",
    summary = "Start a rollout: promote many aliases in batches, with a failure budget",
    request_body(content = RolloutRequest, description = "JSON"),
    responses(
        (status = 202, description = "Started; it goes on after the answer", body = RolloutDto),
        ChangeErrors
    ),
    security(("token" = []))
)]
pub(super) async fn start_rollout(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Body(request): Body<RolloutRequest>,
) -> Result<Response, ApiError> {
    let plan = plan(&state.snapshots.load(), request)?;
    let r = state.control.start_rollout(plan, actor).await?;
    Ok((StatusCode::ACCEPTED, Json(RolloutDto::from_rollout(&r))).into_response())
}

/// The plan a request asks for, every field checked; 400s name the field.
fn plan(snapshot: &Snapshot, request: RolloutRequest) -> Result<RolloutPlan, ApiError> {
    let mut members = Vec::new();
    for (i, m) in request.members.iter().enumerate() {
        let alias = alias_field(snapshot, &format!("members[{i}].alias"), &m.alias)?;
        let to = service_names(&format!("members[{i}].to"), &m.to.clone().into_vec())?;
        members.push((alias, to));
    }
    match (&request.version, request.aliases.is_empty()) {
        (Some(version), false) => {
            for (i, text) in request.aliases.iter().enumerate() {
                let alias = alias_field(snapshot, &format!("aliases[{i}]"), text)?;
                members.push((alias.clone(), vec![versioned(&alias, version)?]));
            }
        }
        (Some(_), true) => {
            return Err(bad_field(
                "version",
                "version names the services of `aliases`, which is empty".into(),
            ));
        }
        (None, false) => {
            return Err(bad_field(
                "aliases",
                "aliases need `version` (each alias `a` goes to `a-<version>`); or use `members`"
                    .into(),
            ));
        }
        (None, true) => {}
    }
    if members.is_empty() {
        return Err(ApiError::BadRequest(
            "a rollout needs aliases: field `members` ([{\"alias\": \"web\", \"to\": \"web-v2\"}]) or `version` and `aliases`".into(),
        ));
    }
    if members.len() > bounds::MAX_ROLLOUT_MEMBERS {
        return Err(ApiError::BadRequest(format!(
            "a rollout takes at most {} aliases (got {})",
            bounds::MAX_ROLLOUT_MEMBERS,
            members.len()
        )));
    }
    let parallelism = request.parallelism.unwrap_or(1);
    if !(1..=bounds::MAX_ROLLOUT_MEMBERS as u32).contains(&parallelism) {
        return Err(ApiError::BadRequest(format!(
            "field `parallelism` must be between 1 and {} (got {parallelism})",
            bounds::MAX_ROLLOUT_MEMBERS
        )));
    }
    let ratio = request.max_failure_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(ApiError::BadRequest(format!(
            "field `max_failure_ratio` must be between 0 and 1 (got {ratio})"
        )));
    }
    let mut gates = gates(
        request.observe.as_ref(),
        request.confirm,
        request.min_healthy,
        request.warm_timeout.as_ref(),
    )?;
    gates.stop_old = request.stop_old;
    // Steps and measured gates are checked as a promote checks them.
    super::progressive(
        &mut gates,
        &super::dto::PromoteRequest {
            observe: request.observe.clone(),
            confirm: request.confirm,
            steps: request.steps.clone(),
            max_error_rate: request.max_error_rate,
            max_latency_ratio: request.max_latency_ratio,
            min_requests: request.min_requests,
            ..Default::default()
        },
    )?;
    let wait = |field, value: Option<&String>| {
        duration_field(field, value, bounds::ROLLOUT_WAIT).map(Option::unwrap_or_default)
    };
    Ok(RolloutPlan {
        members,
        parallelism,
        delay: wait("delay", request.delay.as_ref())?,
        monitor: wait("monitor", request.monitor.as_ref())?,
        failure_action: request.failure_action.map(Into::into).unwrap_or_default(),
        max_failure_ratio_ppm: (ratio * 1e6).round() as u32,
        gates,
    })
}

/// An alias the request names in `field`, which must exist.
fn alias_field(snapshot: &Snapshot, field: &str, text: &str) -> Result<AliasName, ApiError> {
    snapshot.topology.find_alias(text).cloned().ok_or_else(|| {
        ApiError::NotFound(format!(
            "field `{field}`: unknown alias `{text}` (known: {})",
            crate::text::known(snapshot.aliases.keys())
        ))
    })
}

/// `<alias>-<version>`, with the alias's first label.
fn versioned(alias: &AliasName, version: &str) -> Result<ServiceName, ApiError> {
    let text = alias.to_string();
    let label = text.split('.').next().unwrap_or(&text);
    format!("{label}-{version}")
        .parse()
        .map_err(|e: crate::model::InvalidName| bad_field("version", format!("version: {e}")))
}

/// The answer of a rollout command.
async fn command(
    state: AppState,
    actor: String,
    id: &str,
    command: Command,
) -> Result<Json<RolloutDto>, ApiError> {
    let id = rollout_id(id)?;
    let r = state.control.rollout(id, command, actor).await?;
    Ok(Json(RolloutDto::from_rollout(&r)))
}

macro_rules! rollout_command {
    ($name:ident, $command:expr, $path:literal, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "rollouts",
            summary = $summary,
            params(RolloutParam),
            responses((status = 200, description = "The rollout after it", body = RolloutDto), ChangeErrors),
            security(("token" = []))
        )]
        pub(super) async fn $name(
            State(state): State<AppState>,
            Actor(actor): Actor,
            Path(id): Path<String>,
        ) -> Result<Json<RolloutDto>, ApiError> {
            command(state, actor, &id, $command).await
        }
    };
}

rollout_command!(
    pause_rollout,
    Command::Pause,
    "/v1/rollouts/{id}/pause",
    "Pause a rollout: no new batch starts; the running one finishes"
);
rollout_command!(
    resume_rollout,
    Command::Resume,
    "/v1/rollouts/{id}/resume",
    "Resume a paused rollout (the failures so far are accepted)"
);
rollout_command!(
    abort_rollout,
    Command::Abort,
    "/v1/rollouts/{id}/abort",
    "Abort a rollout: no new member starts, running members are aborted"
);
rollout_command!(
    rollback_rollout,
    Command::Rollback,
    "/v1/rollouts/{id}/rollback",
    "Roll a rollout back: every alias it moved goes back, newest first"
);
