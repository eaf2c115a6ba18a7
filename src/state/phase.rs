//! What an alias's state is made of (its phase, the running operation, what it retired and how
//! its last operation ended) and which services it answers with and drains in each phase.
//!
//! Vocabulary with no IO, below the snapshot (which renders answers from it), the store (which
//! writes it) and the controller's state machine (which moves it on).

use serde::{Deserialize, Serialize};

use super::AliasState;
use crate::model::ServiceName;
use crate::steps::Step;

/// Milliseconds since the Unix epoch.
pub type Ms = u64;

/// The gates of one promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteOptions {
    /// How long both versions answer before the old one drains.
    pub observe_ms: u64,
    /// Wait in Mixed for an explicit confirm once `observe` is over.
    pub confirm: bool,
    /// Healthy endpoints the new version needs; `None` means all of them (at least one).
    pub min_healthy: Option<u32>,
    /// How long the new version has to become healthy.
    pub warm_timeout_ms: u64,
    /// Once the old version is safe to stop, stop its Docker containers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_old: bool,
    /// Weighted steps (issue 22); empty: both versions answer every client while mixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Limits on the front proxy's figures for the new version, judged over each step's hold.
    #[serde(default, skip_serializing_if = "MeasuredGates::is_off")]
    pub gates: MeasuredGates,
}

/// Limits on what the front proxy measured of the new version against the old over a step's
/// hold; a breach rolls the promotion back. Integers so the state stays `Eq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredGates {
    /// The most failed requests (5xx answers and failed connections) per request, in parts
    /// per million (1% is 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_ppm: Option<u32>,
    /// The most the new version's p99 latency may be of the old one's, in thousandths (1.5× is
    /// 1,500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ratio_milli: Option<u32>,
    /// Requests to the new version needed before the figures are judged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_requests: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl MeasuredGates {
    pub fn is_off(&self) -> bool {
        self.max_error_rate_ppm.is_none() && self.max_latency_ratio_milli.is_none()
    }
}

/// Where a stepped promotion is: its step, the share of clients on the new version, and when
/// that share took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepAt {
    /// The step (index into the operation's steps).
    pub index: u32,
    /// The percent of clients on the new version.
    pub weight: u8,
    /// When the step began (its answers were published).
    pub since_ms: Ms,
    /// When its weight took effect: published on every node and secondary, and the answers
    /// from before it past their TTL. Holds and gates count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_ms: Option<Ms>,
    /// A paused step was confirmed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirmed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Promote,
    Rollback,
}

/// A running promotion (or rollback) from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The alias revision that started it.
    pub id: u64,
    pub kind: OpKind,
    pub from: Vec<ServiceName>,
    pub to: Vec<ServiceName>,
    pub options: PromoteOptions,
    pub actor: String,
    pub reason: Option<String>,
    pub started_at_ms: Ms,
    /// The key of the hash that puts clients on either side of a weighted step
    /// ([`crate::steps::bucket`]); empty for operations without steps.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
}

/// Where an alias is in a promotion. `AliasState::targets` stays the old set (A) until the
/// promotion completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Answers: the targets.
    Stable,
    /// Answers: the targets (A). Waiting for B to be healthy until `deadline_ms`.
    Warming { op: Operation, deadline_ms: Ms },
    /// Answers: A and B. Watching B until `observe_until_ms` (and a confirm, if asked for).
    /// With steps, each client gets one of them: B for `step.weight` percent of the clients.
    Mixed {
        op: Operation,
        since_ms: Ms,
        observe_until_ms: Ms,
        confirmed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepAt>,
    },
    /// Answers: B. A is out of the answers but cached by clients until `until_ms`.
    Draining {
        op: Operation,
        since_ms: Ms,
        until_ms: Ms,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Warming { .. } => "warming",
            Self::Mixed { .. } => "mixed",
            Self::Draining { .. } => "draining",
        }
    }

    pub fn operation(&self) -> Option<&Operation> {
        match self {
            Self::Stable => None,
            Self::Warming { op, .. } | Self::Mixed { op, .. } | Self::Draining { op, .. } => {
                Some(op)
            }
        }
    }

    /// The next time at which this phase may move on its own.
    pub fn deadline(&self) -> Option<Ms> {
        match self {
            Self::Stable => None,
            Self::Warming { deadline_ms, .. } => Some(*deadline_ms),
            // A weighted step ends with its hold, counted from when it took effect.
            Self::Mixed {
                op, step: Some(at), ..
            } => {
                let hold = op.options.steps.get(at.index as usize)?.hold?;
                let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
                at.effective_ms.map(|e| e.saturating_add(hold_ms))
            }
            Self::Mixed {
                observe_until_ms, ..
            } => Some(*observe_until_ms),
            Self::Draining { until_ms, .. } => Some(*until_ms),
        }
    }
}

/// Services taken out of the answers, and from when they may be stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub services: Vec<ServiceName>,
    pub safe_to_stop_at_ms: Ms,
    /// The operation that retired them.
    pub op: u64,
    /// Its kind; absent in states written before the kind was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<OpKind>,
    /// Their containers are to be stopped once they are safe to stop (`--stop-old`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_old: bool,
    /// When aliasd stopped them (or found nothing to stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_ms: Option<Ms>,
}

impl Retired {
    /// Whether containers are still to be stopped for it.
    pub fn stop_pending(&self) -> bool {
        self.stop_old && self.stopped_at_ms.is_none()
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    Completed,
    Aborted,
    WarmTimeout,
    AutoRollback,
}

impl EndKind {
    /// The end a change makes of a running operation, if it is one.
    pub fn of(kind: ChangeKind) -> Option<Self> {
        match kind {
            ChangeKind::Completed => Some(Self::Completed),
            ChangeKind::Aborted => Some(Self::Aborted),
            ChangeKind::WarmTimeout => Some(Self::WarmTimeout),
            ChangeKind::AutoRollback => Some(Self::AutoRollback),
            _ => None,
        }
    }

    /// As the history and the API name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::WarmTimeout => "warm_timeout",
            Self::AutoRollback => "auto_rollback",
        }
    }
}

/// The phase an operation was in when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reached {
    Warming,
    Mixed,
    Draining,
}

impl Reached {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warming => "warming",
            Self::Mixed => "mixed",
            Self::Draining => "draining",
        }
    }
}

/// The last operation of an alias that ended, and how. It is part of the alias state (and so
/// stored), so how an operation ended is known after the page that watched it is gone and
/// after a restart, whatever the history retention has dropped since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub op: Operation,
    pub outcome: EndKind,
    /// The phase it was in when it ended.
    pub reached: Reached,
    pub at_ms: Ms,
    /// Who ended it: the one who aborted it, else the one who started it (aliasd moves an
    /// operation on in its starter's name).
    pub by: String,
    /// Why it ended so: the abort's reason, what the warm timeout or the health gate found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The alias revision of the change that ended it.
    pub revision: u64,
}

/// The kinds of change that go into the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Linked,
    Started,
    Mixed,
    Confirmed,
    Draining,
    Completed,
    Aborted,
    WarmTimeout,
    AutoRollback,
    /// The old version's containers were stopped after it became safe to stop.
    Stopped,
    /// A weighted promotion moved to its next step (a larger share of clients).
    Step,
    /// A weighted step's share took effect everywhere; its hold counts from here.
    InEffect,
    /// The alias was created (through the API, or a config reload added it).
    Created,
    /// The alias's settings (port name, `if_none_healthy`) changed.
    Updated,
    /// The alias was removed.
    Removed,
    /// A service was defined or changed through the API.
    ServiceSet,
    /// A service defined through the API was deleted.
    ServiceDeleted,
    /// The config and its zone files were reloaded.
    Reloaded,
}

impl ChangeKind {
    /// Whether this change ends an operation without completing it.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Aborted | Self::WarmTimeout | Self::AutoRollback)
    }
}

/// The services an alias answers with in its state.
pub fn answering(state: &AliasState) -> Vec<ServiceName> {
    match &state.phase {
        Phase::Stable | Phase::Warming { .. } => state.targets.clone(),
        Phase::Mixed { op, .. } => union(&state.targets, &op.to),
        Phase::Draining { op, .. } => op.to.clone(),
    }
}

/// How a weighted step splits the clients of an alias: `weight` percent of them (by
/// [`crate::steps::on_new`] with `salt`) get `new`, the others `old`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split<'a> {
    pub old: &'a [ServiceName],
    pub new: &'a [ServiceName],
    pub weight: u8,
    pub salt: &'a str,
}

/// The split of the clients in a weighted step, if the alias is in one.
pub fn split(state: &AliasState) -> Option<Split<'_>> {
    match &state.phase {
        Phase::Mixed {
            op,
            step: Some(step),
            ..
        } => Some(Split {
            old: &state.targets,
            new: &op.to,
            weight: step.weight,
            salt: &op.salt,
        }),
        _ => None,
    }
}

/// Services that left the answers and are kept alive until the drain ends.
pub fn draining(state: &AliasState) -> Vec<ServiceName> {
    match &state.phase {
        Phase::Draining { op, .. } => minus(&state.targets, &op.to),
        _ => Vec::new(),
    }
}

fn union(a: &[ServiceName], b: &[ServiceName]) -> Vec<ServiceName> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|s| !a.contains(s)).cloned());
    out
}

pub(crate) fn minus(a: &[ServiceName], b: &[ServiceName]) -> Vec<ServiceName> {
    a.iter().filter(|s| !b.contains(s)).cloned().collect()
}
