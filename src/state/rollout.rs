//! The vocabulary of a rollout: one change of many aliases, started in batches, with a failure
//! budget and an action when it is spent (issue 22).
//!
//! Plain data, stored with the writer's state (so a rollout survives a crash and a restart
//! exactly where it was); the pure step that moves it on is `controller::rollout`.

use serde::{Deserialize, Serialize};

use super::{Ms, PromoteOptions};
use crate::model::{AliasName, ServiceName};

/// What a rollout does when more of its members failed than `max_failure_ratio` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Start no further batch; the running one finishes. `resume` goes on.
    #[default]
    Pause,
    /// Abort the running members and move every alias the rollout moved back, newest first.
    Rollback,
    /// Go on with the next batches anyway.
    Continue,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Rollback => "rollback",
            Self::Continue => "continue",
        }
    }
}

/// How a rollout proceeds; the same for every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSettings {
    /// Members per batch (at least 1).
    pub parallelism: u32,
    /// The wait between a batch that ended (and was monitored) and the next.
    pub delay_ms: u64,
    /// How long after a member completed a failure of its new targets still counts.
    pub monitor_ms: u64,
    pub failure_action: FailureAction,
    /// The failed members over all members that may fail before `failure_action`, in parts
    /// per million: the action is taken when failed / total > ratio (0: the first failure).
    pub max_failure_ratio_ppm: u32,
    /// The promotion options of every member.
    pub options: PromoteOptions,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// Starting batches.
    Running,
    /// No new batch starts until `resume`; members already running go on.
    Paused { why: String },
    /// Every batch ended; no more failed than allowed.
    Completed,
    /// Every batch ended (or rollbacks ended) with more failures than allowed.
    Failed { why: String },
    /// Stopped by `abort`: no new member started, the running ones aborted.
    Aborted,
    /// Moving the aliases it moved back, newest first.
    RollingBack,
    /// Every alias it moved is back.
    RolledBack,
}

impl RolloutState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused { .. } => "paused",
            Self::Completed => "completed",
            Self::Failed { .. } => "failed",
            Self::Aborted => "aborted",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
        }
    }

    /// Whether nothing moves it any more (only a `rollback` may still follow).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed { .. } | Self::Aborted | Self::RolledBack
        )
    }
}

/// Where one member (one alias) of a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MemberState {
    /// Its batch has not started.
    Pending,
    /// Its promotion (operation `Member::op`) runs.
    Running,
    /// Its promotion completed at `at_ms`.
    Completed { at_ms: Ms },
    /// Its promotion ended otherwise or could not start (`moved` false), or it completed and
    /// its new targets failed within the monitor window (`moved` true: the alias was moved).
    Failed {
        at_ms: Ms,
        why: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        moved: bool,
    },
    /// Never started: the alias answered with its targets already, or the rollout stopped.
    Skipped { why: String },
    /// Its running promotion was aborted with the rollout.
    Aborted { at_ms: Ms },
    /// Its rollback (operation `Member::rollback_op`) runs.
    RollingBack,
    /// Back on the targets it had before the rollout.
    RolledBack { at_ms: Ms },
    /// Its rollback failed or could not start.
    RollbackFailed { at_ms: Ms, why: String },
}

impl MemberState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::Skipped { .. } => "skipped",
            Self::Aborted { .. } => "aborted",
            Self::RollingBack => "rolling_back",
            Self::RolledBack { .. } => "rolled_back",
            Self::RollbackFailed { .. } => "rollback_failed",
        }
    }

    /// When it ended, if it did (a member that is done with its promotion).
    pub fn ended_at(&self) -> Option<Ms> {
        match self {
            Self::Completed { at_ms } | Self::Failed { at_ms, .. } => Some(*at_ms),
            _ => None,
        }
    }

    /// Whether its promotion is over (or never ran): its batch need not wait for it.
    pub fn is_done(&self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    /// Whether its alias answers with the rollout's targets because of it: what a rollback
    /// takes back.
    pub fn moved(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Failed { moved: true, .. }
        )
    }
}

/// One alias of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    #[serde(with = "fqdn")]
    pub alias: AliasName,
    pub to: Vec<ServiceName>,
    /// The targets it had when its promotion started: where a rollback takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<ServiceName>>,
    /// Its batch, from 0.
    pub batch: u32,
    /// The operation its promotion started (the alias revision that started it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<Ms>,
    /// The operation of its rollback, once one started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_op: Option<u64>,
    pub state: MemberState,
}

/// A rollout of many aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub id: u64,
    pub created_at_ms: Ms,
    /// Who started it (the token's name).
    pub actor: String,
    pub members: Vec<Member>,
    pub settings: RolloutSettings,
    pub state: RolloutState,
    /// Batches started so far (0 before the first).
    pub batch: u32,
    /// When the next batch starts, once the current one ended and was monitored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_batch_at_ms: Option<Ms>,
    /// Failed members that a `resume` accepted: the failure action is taken again only when
    /// more fail.
    #[serde(default)]
    pub accepted_failures: u32,
    pub changed_at_ms: Ms,
}

impl Rollout {
    /// How many batches its members make.
    pub fn batches(&self) -> u32 {
        self.members.iter().map(|m| m.batch + 1).max().unwrap_or(0)
    }

    pub fn failed(&self) -> u32 {
        self.members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Failed { .. }))
            .count() as u32
    }
}

/// An alias name as stored: absolute, with its trailing dot.
mod fqdn {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::AliasName;

    pub fn serialize<S: Serializer>(name: &AliasName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&name.name().to_ascii())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AliasName, D::Error> {
        let text = String::deserialize(d)?;
        AliasName::resolve(&text, &hickory_proto::rr::Name::root())
            .map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}
