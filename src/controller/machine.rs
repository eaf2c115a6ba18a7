//! The promotion state machine of one alias: a pure function `(state, input, ctx) -> outcome`.
//!
//! No IO, no clock, no tokio: the time and the health of the services come in through [`Ctx`].
//! Each call makes at most one transition; the controller calls again with [`Input::Tick`] until
//! nothing changes, and stores every transition before it publishes it.
//!
//! ```text
//! Stable(A) --promote(B)--> Warming --B healthy--> Mixed(A+B) --observe [+confirm]--> Draining(B)
//!     ^                        |                      |                                  |
//!     +------ abort / warm timeout / B fails ---------+----------------------------------+
//! Draining --TTL window + grace--> Stable(B), A retired and safe to stop
//! ```

use serde::{Deserialize, Serialize};

use super::state::AliasState;
use crate::model::ServiceName;
use crate::text::plural;

/// Milliseconds since the Unix epoch.
pub type Ms = u64;

/// The actor of every change aliasd makes by itself (a phase that time or health moves on).
pub const AUTOMATIC: &str = "aliasd";

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
    Mixed {
        op: Operation,
        since_ms: Ms,
        observe_until_ms: Ms,
        confirmed: bool,
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

/// Endpoint counts over a set of services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u32,
    pub healthy: u32,
    /// Known unhealthy (past their `fall` threshold). Unknown endpoints are not counted.
    pub failed: u32,
}

/// Where a zone's secondaries stand on the change that took the old version out of the
/// answers (the serial its drain began with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caught {
    /// Every secondary serves that change (or a later one), all of them since this moment;
    /// 0 when the zone has no secondaries.
    Since(Ms),
    /// Some secondary does not serve it yet.
    Waiting,
}

/// What the machine may know of the world.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub now: Ms,
    /// The largest TTL the alias is served with now: max(alias TTL, negative TTL), seconds.
    pub ttl_window_s: u32,
    pub grace_ms: u64,
    pub counts: &'a dyn Fn(&[ServiceName]) -> Counts,
    /// Requests and connections the front proxy still has open on these services' endpoints.
    pub busy: &'a dyn Fn(&[ServiceName]) -> u64,
    /// How long after the TTL window a drain waits for that work before it ends anyway.
    pub drain_deadline_ms: u64,
    /// Where the alias's zone's secondaries stand on its drain (the alias being stepped).
    pub secondaries: &'a dyn Fn() -> Caught,
}

/// What someone asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Link {
        targets: Vec<ServiceName>,
        actor: String,
    },
    Promote {
        to: Vec<ServiceName>,
        options: PromoteOptions,
        kind: OpKind,
        actor: String,
        reason: Option<String>,
    },
    Confirm {
        actor: String,
        reason: Option<String>,
    },
    Abort {
        actor: String,
        reason: Option<String>,
    },
    /// The retired services' containers of operation `op` were stopped (`reason` says which).
    Stopped {
        op: u64,
        actor: String,
        reason: String,
    },
    /// Time passed or health changed.
    Tick,
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

/// One transition, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub actor: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed(Box<AliasState>, Change),
    Unchanged,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineError {
    #[error("{} {} of {} is running (phase {phase}, started by {}); abort it or wait", op_word(op.kind), op.id, join(&op.to), op.actor)]
    Busy {
        op: Box<Operation>,
        phase: &'static str,
    },
    #[error("no promotion or rollback is running")]
    NothingRunning,
    #[error("the running promotion is in phase {phase}; confirm applies in phase mixed")]
    NotMixed { phase: &'static str },
    #[error("the running promotion was started without a confirm gate")]
    NoConfirmGate,
    #[error("targets must name at least one service")]
    EmptyTargets,
    #[error("min_healthy is {wanted} but {services} has only {}", plural(*total, "endpoint"))]
    MinHealthyTooHigh {
        wanted: u32,
        total: u32,
        services: String,
    },
}

fn op_word(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Promote => "promotion",
        OpKind::Rollback => "rollback",
    }
}

fn join(services: &[ServiceName]) -> String {
    services
        .iter()
        .map(ServiceName::as_str)
        .collect::<Vec<_>>()
        .join("+")
}

/// The services an alias answers with in its state.
pub fn answering(state: &AliasState) -> Vec<ServiceName> {
    match &state.phase {
        Phase::Stable | Phase::Warming { .. } => state.targets.clone(),
        Phase::Mixed { op, .. } => union(&state.targets, &op.to),
        Phase::Draining { op, .. } => op.to.clone(),
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

fn minus(a: &[ServiceName], b: &[ServiceName]) -> Vec<ServiceName> {
    a.iter().filter(|s| !b.contains(s)).cloned().collect()
}

/// The healthy endpoints a promotion to `to` needs.
pub fn required(options: &PromoteOptions, counts: Counts) -> u32 {
    options.min_healthy.unwrap_or(counts.total).max(1)
}

/// The drain window: TTLs served while the old answers were out there, plus the grace.
fn drain_window_ms(state: &AliasState, ctx: &Ctx<'_>) -> u64 {
    u64::from(state.ttl_served_s.max(ctx.ttl_window_s)) * 1000 + ctx.grace_ms
}

/// The outcome of a change of `state` into `next`: numbered, stamped and credited; an
/// operation it ends is recorded as ended; retired services it uses again are no longer
/// retired.
fn changed(
    state: &AliasState,
    ctx: &Ctx<'_>,
    next: AliasState,
    kind: ChangeKind,
    actor: &str,
    reason: Option<String>,
) -> Result<Outcome, MachineError> {
    let mut next = next;
    next.revision = state.revision + 1;
    next.changed_at_ms = ctx.now;
    next.changed_by = actor.to_owned();
    // A change that takes a running operation back to stable ends it: say how.
    if let Some(op) = state.phase.operation()
        && matches!(next.phase, Phase::Stable)
        && let Some(outcome) = EndKind::of(kind)
    {
        next.last_op = Some(Ended {
            op: op.clone(),
            outcome,
            reached: match state.phase {
                Phase::Mixed { .. } => Reached::Mixed,
                Phase::Draining { .. } => Reached::Draining,
                Phase::Stable | Phase::Warming { .. } => Reached::Warming,
            },
            at_ms: ctx.now,
            by: actor.to_owned(),
            why: reason.clone(),
            revision: next.revision,
        });
    }
    next.ttl_served_s = next.ttl_served_s.max(ctx.ttl_window_s);
    // A retired service that answers again, or is being promoted to, is not safe to stop.
    let mut in_use = answering(&next);
    in_use.extend(
        next.phase
            .operation()
            .map(|op| op.to.clone())
            .unwrap_or_default(),
    );
    if let Some(r) = &mut next.retired {
        r.services.retain(|s| !in_use.contains(s));
        if r.services.is_empty() {
            next.retired = None;
        }
    }
    Ok(Outcome::Changed(
        Box::new(next),
        Change {
            kind,
            actor: actor.to_owned(),
            reason,
        },
    ))
}

/// Starts operation `kind` of `state` to `to` (warming), once nothing else runs: refused
/// when `to` is empty or cannot reach `min_healthy`; unchanged when it is what answers.
fn start_operation(
    state: &AliasState,
    ctx: &Ctx<'_>,
    to: Vec<ServiceName>,
    options: PromoteOptions,
    kind: OpKind,
    actor: &str,
    reason: Option<String>,
) -> Result<Outcome, MachineError> {
    if to.is_empty() {
        return Err(MachineError::EmptyTargets);
    }
    if to == state.targets {
        return Ok(Outcome::Unchanged);
    }
    let counts = (ctx.counts)(&to);
    if let Some(wanted) = options.min_healthy
        && wanted > counts.total
    {
        return Err(MachineError::MinHealthyTooHigh {
            wanted,
            total: counts.total,
            services: join(&to),
        });
    }
    let mut next = state.clone();
    next.phase = Phase::Warming {
        deadline_ms: ctx.now.saturating_add(options.warm_timeout_ms),
        op: Operation {
            id: state.revision + 1,
            kind,
            from: state.targets.clone(),
            to,
            options,
            actor: actor.to_owned(),
            reason: reason.clone(),
            started_at_ms: ctx.now,
        },
    };
    changed(state, ctx, next, ChangeKind::Started, actor, reason)
}

/// Applies `input` to `state`.
pub fn step(state: &AliasState, input: Input, ctx: &Ctx<'_>) -> Result<Outcome, MachineError> {
    let changed = |next: AliasState, kind: ChangeKind, actor: &str, reason: Option<String>| {
        changed(state, ctx, next, kind, actor, reason)
    };
    let busy = || match &state.phase {
        Phase::Stable => None,
        phase => phase.operation().map(|op| MachineError::Busy {
            op: Box::new(op.clone()),
            phase: phase.name(),
        }),
    };

    match input {
        Input::Link { targets, actor } => {
            if let Some(e) = busy() {
                return Err(e);
            }
            if targets.is_empty() {
                return Err(MachineError::EmptyTargets);
            }
            if targets == state.targets {
                return Ok(Outcome::Unchanged);
            }
            let mut next = state.clone();
            next.previous = Some(state.targets.clone());
            next.targets = targets;
            changed(next, ChangeKind::Linked, &actor, None)
        }

        Input::Promote {
            to,
            options,
            kind,
            actor,
            reason,
        } => {
            if let Some(e) = busy() {
                return Err(e);
            }
            start_operation(state, ctx, to, options, kind, &actor, reason)
        }

        Input::Confirm { actor, reason } => match &state.phase {
            Phase::Mixed { op, confirmed, .. } => {
                if !op.options.confirm {
                    return Err(MachineError::NoConfirmGate);
                }
                if *confirmed {
                    return Ok(Outcome::Unchanged);
                }
                let mut next = state.clone();
                if let Phase::Mixed { confirmed, .. } = &mut next.phase {
                    *confirmed = true;
                }
                changed(next, ChangeKind::Confirmed, &actor, reason)
            }
            Phase::Stable => Err(MachineError::NothingRunning),
            phase => Err(MachineError::NotMixed {
                phase: phase.name(),
            }),
        },

        Input::Abort { actor, reason } => {
            let Some(op) = state.phase.operation() else {
                return Err(MachineError::NothingRunning);
            };
            let b_was_answering = !matches!(state.phase, Phase::Warming { .. });
            Ok(back_to_a(state, op, b_was_answering, ctx))
                .and_then(|next| changed(next, ChangeKind::Aborted, &actor, reason))
        }

        Input::Stopped { op, actor, reason } => match &state.retired {
            Some(r) if r.op == op && r.stop_pending() => {
                let mut next = state.clone();
                if let Some(r) = &mut next.retired {
                    r.stopped_at_ms = Some(ctx.now);
                }
                changed(next, ChangeKind::Stopped, &actor, Some(reason))
            }
            _ => Ok(Outcome::Unchanged),
        },

        // What time or health moves on is aliasd's decision, not the operator's who started
        // the operation (that one is credited in the entry that started it, which `op` names):
        // a warm timeout, an automatic rollback or the end of a drain are credited to aliasd,
        // like the stop of retired containers.
        Input::Tick => tick(state, ctx).map_or(Ok(Outcome::Unchanged), |(next, kind, why)| {
            changed(next, kind, AUTOMATIC, why)
        }),
    }
}

/// Ends an operation by going back to the old targets; B is retired, and if it was in the
/// answers it is safe to stop only once the TTL window has passed.
fn back_to_a(
    state: &AliasState,
    op: &Operation,
    b_was_answering: bool,
    ctx: &Ctx<'_>,
) -> AliasState {
    let mut next = state.clone();
    next.phase = Phase::Stable;
    let leaving = minus(&op.to, &state.targets);
    next.retired = (!leaving.is_empty()).then(|| Retired {
        services: leaving,
        safe_to_stop_at_ms: if b_was_answering {
            ctx.now.saturating_add(drain_window_ms(state, ctx))
        } else {
            ctx.now
        },
        op: op.id,
        kind: Some(op.kind),
        stop_old: false,
        stopped_at_ms: None,
    });
    next
}

/// The transition that time or health makes due, if any.
fn tick(state: &AliasState, ctx: &Ctx<'_>) -> Option<(AliasState, ChangeKind, Option<String>)> {
    match &state.phase {
        Phase::Stable => None,
        Phase::Warming { op, deadline_ms } => {
            let counts = (ctx.counts)(&op.to);
            let need = required(&op.options, counts);
            if counts.healthy >= need {
                let mut next = state.clone();
                next.phase = Phase::Mixed {
                    op: op.clone(),
                    since_ms: ctx.now,
                    observe_until_ms: ctx.now.saturating_add(op.options.observe_ms),
                    confirmed: false,
                };
                Some((
                    next,
                    ChangeKind::Mixed,
                    Some(format!("{} healthy of {} needed", counts.healthy, need)),
                ))
            } else if ctx.now >= *deadline_ms {
                Some((
                    back_to_a(state, op, false, ctx),
                    ChangeKind::WarmTimeout,
                    Some(format!(
                        "{} had {} of {} needed after {}",
                        join(&op.to),
                        plural(counts.healthy, "healthy endpoint"),
                        need,
                        humantime::format_duration(std::time::Duration::from_millis(
                            op.options.warm_timeout_ms
                        ))
                    )),
                ))
            } else {
                None
            }
        }
        Phase::Mixed {
            op,
            observe_until_ms,
            confirmed,
            ..
        } => {
            if let Some(why) = failing(op, ctx) {
                return Some((
                    back_to_a(state, op, true, ctx),
                    ChangeKind::AutoRollback,
                    Some(why),
                ));
            }
            let observed = ctx.now >= *observe_until_ms;
            if observed && (!op.options.confirm || *confirmed) {
                let mut next = state.clone();
                next.phase = Phase::Draining {
                    op: op.clone(),
                    since_ms: ctx.now,
                    until_ms: ctx.now.saturating_add(drain_window_ms(state, ctx)),
                };
                Some((next, ChangeKind::Draining, None))
            } else {
                None
            }
        }
        Phase::Draining { op, until_ms, .. } => {
            if let Some(why) = failing(op, ctx) {
                return Some((
                    back_to_a(state, op, true, ctx),
                    ChangeKind::AutoRollback,
                    Some(why),
                ));
            }
            // The old version is done when the TTL window is over, the proxy has no work left
            // on it, and every secondary has served the new answers for a TTL window too; or
            // when the drain deadline after the window cuts the waiting off.
            if ctx.now < *until_ms {
                return None;
            }
            let deadline = until_ms.saturating_add(ctx.drain_deadline_ms);
            let still_busy = (ctx.busy)(&minus(&op.from, &op.to));
            if still_busy > 0 && ctx.now < deadline {
                return None;
            }
            let secondaries_done = match (ctx.secondaries)() {
                Caught::Waiting => deadline,
                Caught::Since(at) => at.saturating_add(drain_window_ms(state, ctx)).min(deadline),
            };
            if ctx.now < secondaries_done {
                return None;
            }
            let mut next = state.clone();
            next.phase = Phase::Stable;
            next.previous = Some(state.targets.clone());
            next.targets = op.to.clone();
            let leaving = minus(&op.from, &op.to);
            next.retired = (!leaving.is_empty()).then_some(Retired {
                services: leaving,
                safe_to_stop_at_ms: ctx.now,
                op: op.id,
                kind: Some(op.kind),
                stop_old: op.options.stop_old,
                stopped_at_ms: None,
            });
            // The new answers start a new TTL history.
            next.ttl_served_s = ctx.ttl_window_s;
            Some((next, ChangeKind::Completed, None))
        }
    }
}

/// Why B no longer meets its gate, if it does not: too many endpoints past their `fall`.
fn failing(op: &Operation, ctx: &Ctx<'_>) -> Option<String> {
    let counts = (ctx.counts)(&op.to);
    let need = required(&op.options, counts);
    let up = counts.total - counts.failed.min(counts.total);
    (up < need).then(|| {
        format!(
            "{} turned unhealthy: {} of {} failing, {} needed",
            join(&op.to),
            counts.failed,
            plural(counts.total, "endpoint"),
            need
        )
    })
}

#[cfg(test)]
mod tests;
