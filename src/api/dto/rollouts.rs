//! The JSON shapes of rollouts of many aliases: `POST /v1/rollouts` and what the rollout reads
//! and events show.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{OneOrMany, fields, human, rfc3339_ms};
use crate::check::whole_number;
use crate::state::{self, MemberState, Rollout};

wire_enum! {
    /// What a rollout does once more members failed than `max_failure_ratio` allows.
    FailureAction {
        Pause = "pause",
        Rollback = "rollback",
        Continue = "continue",
    }
}

wire_enum! {
    /// Where a rollout is.
    RolloutState {
        Running = "running",
        Paused = "paused",
        Completed = "completed",
        Failed = "failed",
        Aborted = "aborted",
        RollingBack = "rolling_back",
        RolledBack = "rolled_back",
    }
}

wire_enum! {
    /// Where one alias of a rollout is.
    MemberStateDto {
        Pending = "pending",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Skipped = "skipped",
        Aborted = "aborted",
        RollingBack = "rolling_back",
        RolledBack = "rolled_back",
        RollbackFailed = "rollback_failed",
    }
}

impl From<FailureAction> for state::FailureAction {
    fn from(a: FailureAction) -> Self {
        match a {
            FailureAction::Pause => Self::Pause,
            FailureAction::Rollback => Self::Rollback,
            FailureAction::Continue => Self::Continue,
        }
    }
}

impl From<state::FailureAction> for FailureAction {
    fn from(a: state::FailureAction) -> Self {
        match a {
            state::FailureAction::Pause => Self::Pause,
            state::FailureAction::Rollback => Self::Rollback,
            state::FailureAction::Continue => Self::Continue,
        }
    }
}

/// One alias of `POST /v1/rollouts` and what it is to answer with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutMemberRequest {
    /// The alias (relative names are taken in their zone, as in the paths).
    pub alias: String,
    #[schema(schema_with = fields::promote_to)]
    pub to: OneOrMany,
}

/// The body of `POST /v1/rollouts`: the aliases, as `members`, or as `aliases` promoted each to
/// `<alias>-<version>` (both may be given); how batches go; and the gates of every promotion.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<RolloutMemberRequest>,
    /// With `aliases`: each alias `a` is promoted to service `<a>-<version>` (its first label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "v2")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Aliases promoted at once, per batch: 1 to 1,000 (default 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    pub parallelism: Option<u32>,
    /// The wait between batches, 0s to 1day (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "2s")]
    pub delay: Option<String>,
    /// How long after a member completed a failure of its new version still counts, 0s to
    /// 1day (default 0s); the next batch waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "10s")]
    pub monitor: Option<String>,
    /// Default `pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<FailureAction>,
    /// The share of members that may fail, 0 to 1: the failure action is taken when failed /
    /// total is above it (default 0: the first failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub max_failure_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::observe)]
    pub observe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<bool>,
    /// Healthy endpoints each new version needs, 1 to 10,000 (default: all of them).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    pub min_healthy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::warm_timeout)]
    pub warm_timeout: Option<String>,
    /// Stop each old version's Docker containers once it is safe to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_old: Option<bool>,
    /// Weighted steps of every promotion, as `POST /v1/aliases/{alias}/promote` takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::steps)]
    pub steps: Option<serde_json::Value>,
    /// With steps: as in a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub max_error_rate: Option<f64>,
    /// With steps: as in a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1.0, maximum = 1000.0)]
    pub max_latency_ratio: Option<f64>,
    /// With gates: as in a promote.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub min_requests: Option<u64>,
}

/// One alias of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RolloutMemberDto {
    pub alias: String,
    pub to: Vec<String>,
    /// What it answered with before its promotion (where a rollback takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<String>>,
    /// Its batch, from 0.
    pub batch: u32,
    pub state: MemberStateDto,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The operation its promotion started (the alias revision that started it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When its promotion (or its rollback) ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_op: Option<u64>,
}

/// A rollout of many aliases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RolloutDto {
    pub id: u64,
    pub state: RolloutState,
    /// Why it paused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub actor: String,
    pub created_at: String,
    pub changed_at: String,
    pub parallelism: u32,
    pub delay: String,
    pub monitor: String,
    pub failure_action: FailureAction,
    pub max_failure_ratio: f64,
    pub observe: String,
    pub confirm: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy: Option<u32>,
    pub warm_timeout: String,
    /// Batches started, of `batches`.
    pub batch: u32,
    pub batches: u32,
    /// When the next batch starts (or, after the last, when the rollout ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_batch_at: Option<String>,
    pub failed: u32,
    pub members: Vec<RolloutMemberDto>,
}

// `max_failure_ratio` is never NaN (it comes from an integer), so equality is total.
impl Eq for RolloutDto {}

impl RolloutDto {
    pub fn from_rollout(r: &Rollout) -> Self {
        let s = &r.settings;
        let (state, why) = match &r.state {
            state::RolloutState::Running => (RolloutState::Running, None),
            state::RolloutState::Paused { why } => (RolloutState::Paused, Some(why.clone())),
            state::RolloutState::Completed => (RolloutState::Completed, None),
            state::RolloutState::Failed { why } => (RolloutState::Failed, Some(why.clone())),
            state::RolloutState::Aborted => (RolloutState::Aborted, None),
            state::RolloutState::RollingBack => (RolloutState::RollingBack, None),
            state::RolloutState::RolledBack => (RolloutState::RolledBack, None),
        };
        Self {
            id: r.id,
            state,
            why,
            actor: r.actor.clone(),
            created_at: rfc3339_ms(r.created_at_ms),
            changed_at: rfc3339_ms(r.changed_at_ms),
            parallelism: s.parallelism,
            delay: human(s.delay_ms),
            monitor: human(s.monitor_ms),
            failure_action: s.failure_action.into(),
            max_failure_ratio: f64::from(s.max_failure_ratio_ppm) / 1e6,
            observe: human(s.options.observe_ms),
            confirm: s.options.confirm,
            min_healthy: s.options.min_healthy,
            warm_timeout: human(s.options.warm_timeout_ms),
            batch: r.batch,
            batches: r.batches(),
            next_batch_at: r.next_batch_at_ms.map(rfc3339_ms),
            failed: r.failed(),
            members: r
                .members
                .iter()
                .map(RolloutMemberDto::from_member)
                .collect(),
        }
    }
}

impl RolloutMemberDto {
    fn from_member(m: &state::Member) -> Self {
        let (state, why, ended) = match &m.state {
            MemberState::Pending => (MemberStateDto::Pending, None, None),
            MemberState::Running => (MemberStateDto::Running, None, None),
            MemberState::Completed { at_ms } => (MemberStateDto::Completed, None, Some(*at_ms)),
            MemberState::Failed { at_ms, why, .. } => {
                (MemberStateDto::Failed, Some(why.clone()), Some(*at_ms))
            }
            MemberState::Skipped { why } => (MemberStateDto::Skipped, Some(why.clone()), None),
            MemberState::Aborted { at_ms } => (MemberStateDto::Aborted, None, Some(*at_ms)),
            MemberState::RollingBack => (MemberStateDto::RollingBack, None, None),
            MemberState::RolledBack { at_ms } => (MemberStateDto::RolledBack, None, Some(*at_ms)),
            MemberState::RollbackFailed { at_ms, why } => (
                MemberStateDto::RollbackFailed,
                Some(why.clone()),
                Some(*at_ms),
            ),
        };
        let names = |v: &[crate::model::ServiceName]| v.iter().map(ToString::to_string).collect();
        Self {
            alias: m.alias.to_string(),
            to: names(&m.to),
            from: m.from.as_deref().map(names),
            batch: m.batch,
            state,
            why,
            op: m.op,
            started_at: m.started_at_ms.map(rfc3339_ms),
            ended_at: ended.map(rfc3339_ms),
            rollback_op: m.rollback_op,
        }
    }
}
