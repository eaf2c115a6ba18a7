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

use crate::model::ServiceName;
use crate::state::minus;
// The vocabulary of the machine's states and changes lives below the snapshot, which renders
// answers from it; re-exported here because it is what `step` takes and returns.
pub use crate::secondaries::Caught;
pub use crate::state::{
    AliasState, ChangeKind, EndKind, Ended, Ms, OpKind, Operation, Phase, PromoteOptions, Reached,
    Retired, StepAt, answering, draining,
};
use crate::text::plural;

/// The actor of every change aliasd makes by itself (a phase that time or health moves on).
pub const AUTOMATIC: &str = "aliasd";

/// Endpoint counts over a set of services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u32,
    pub healthy: u32,
    /// Known unhealthy (past their `fall` threshold). Unknown endpoints are not counted.
    pub failed: u32,
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
    /// Where the alias's zone's secondaries (and a cluster's other nodes) stand on its drain,
    /// or on its current weighted step: serving it since when, or not all of them yet.
    pub secondaries: &'a dyn Fn() -> Caught,
    /// What the front proxy measured of the new version against the old since the current
    /// step took effect, judged against the operation's gates.
    pub measured: &'a dyn Fn() -> Measured,
}

/// The proxy's figures of a weighted step, judged against its gates by the shell (which holds
/// the counters): a breach ends the promotion; otherwise a summary for the history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Measured {
    /// No gates, or nothing to judge.
    #[default]
    Nothing,
    /// Within the gates (or too few requests to judge): what was seen.
    Within(String),
    /// A gate was breached: the figure, the limit and the sample.
    Breach(String),
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
    #[error("step {step} ({weight}%) does not pause; it moves on by itself{}", hold.map(|h| format!(" after its hold of {}", humantime::format_duration(h))).unwrap_or_default())]
    StepNotPaused {
        step: u32,
        weight: u8,
        hold: Option<std::time::Duration>,
    },
    #[error(
        "step {step} ({weight}%) is still taking effect (every node and secondary serving it, the old answers expired); confirm it once it is in effect"
    )]
    StepNotInEffect { step: u32, weight: u8 },
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

/// The healthy endpoints a promotion to `to` needs.
pub fn required(options: &PromoteOptions, counts: Counts) -> u32 {
    options.min_healthy.unwrap_or(counts.total).max(1)
}

/// The drain window: TTLs served while the old answers were out there, plus the grace. Public
/// so a dry run shows the window the drain would wait.
pub fn drain_window_ms(state: &AliasState, ctx: &Ctx<'_>) -> u64 {
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
    let salt = if options.steps.is_empty() {
        String::new()
    } else {
        salt(state.revision + 1, ctx.now, &to)
    };
    next.phase = Phase::Warming {
        deadline_ms: ctx.now.saturating_add(options.warm_timeout_ms),
        op: Operation {
            salt,
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

/// The key of a stepped operation's client split: a digest of what starts it (its id, time
/// and targets), so every promotion puts a different tenth of the clients first, and the
/// same one on every node and after every restart (it is stored with the operation).
fn salt(id: u64, now: Ms, to: &[ServiceName]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"aliasd steps salt v1\0");
    hash.update(id.to_be_bytes());
    hash.update(now.to_be_bytes());
    for service in to {
        hash.update(service.as_str().as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
            Phase::Mixed {
                op, step: Some(at), ..
            } => {
                let step = op.options.steps.get(at.index as usize).copied();
                if !step.is_some_and(|s| s.pause) {
                    return Err(MachineError::StepNotPaused {
                        step: at.index + 1,
                        weight: at.weight,
                        hold: step.and_then(|s| s.hold),
                    });
                }
                if at.confirmed {
                    return Ok(Outcome::Unchanged);
                }
                // A confirm says "seen enough at this weight": not before anyone saw it.
                if at.effective_ms.is_none() {
                    return Err(MachineError::StepNotInEffect {
                        step: at.index + 1,
                        weight: at.weight,
                    });
                }
                let mut next = state.clone();
                if let Phase::Mixed { step: Some(at), .. } = &mut next.phase {
                    at.confirmed = true;
                }
                changed(next, ChangeKind::Confirmed, &actor, reason)
            }
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
                    step: op.options.steps.first().map(|s| StepAt {
                        index: 0,
                        weight: s.weight,
                        since_ms: ctx.now,
                        effective_ms: None,
                        confirmed: false,
                    }),
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
            step,
            ..
        } => {
            if let Some(why) = failing(op, ctx) {
                return Some((
                    back_to_a(state, op, true, ctx),
                    ChangeKind::AutoRollback,
                    Some(why),
                ));
            }
            if let Some(at) = step {
                return stepped(state, op, at, ctx);
            }
            let observed = ctx.now >= *observe_until_ms;
            (observed && (!op.options.confirm || *confirmed))
                .then(|| (to_draining(state, op, ctx), ChangeKind::Draining, None))
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

/// The old version out of every answer: the drain begins.
fn to_draining(state: &AliasState, op: &Operation, ctx: &Ctx<'_>) -> AliasState {
    let mut next = state.clone();
    next.phase = Phase::Draining {
        op: op.clone(),
        since_ms: ctx.now,
        until_ms: ctx.now.saturating_add(drain_window_ms(state, ctx)),
    };
    next
}

/// What moves a weighted step on: its weight taking effect (published everywhere, and the
/// answers from before it past their TTL), a breached gate (back to A), and its end (a hold
/// over, a confirm, or at once for a step with neither): the next step, or the drain after
/// the last.
fn stepped(
    state: &AliasState,
    op: &Operation,
    at: &StepAt,
    ctx: &Ctx<'_>,
) -> Option<(AliasState, ChangeKind, Option<String>)> {
    let steps = &op.options.steps;
    let step = steps.get(at.index as usize)?;
    let of = format!("step {} of {} ({}%)", at.index + 1, steps.len(), at.weight);
    let Some(effective) = at.effective_ms else {
        return in_effect(state, at, step, &of, ctx);
    };
    let measured = (ctx.measured)();
    if let Measured::Breach(why) = measured {
        return Some((
            back_to_a(state, op, true, ctx),
            ChangeKind::AutoRollback,
            Some(format!("{of}: {why}")),
        ));
    }
    let over = match (step.hold, step.pause) {
        (Some(hold), _) => ctx.now >= effective.saturating_add(whole_ms(hold)),
        (None, true) => at.confirmed,
        (None, false) => true,
    };
    if !over {
        return None;
    }
    let figures = match measured {
        Measured::Within(summary) => format!(": {summary}"),
        _ => String::new(),
    };
    // After the last step, or before a last 100% with nothing to wait for, the old version
    // leaves the answers: the drain waits out its TTL window as after any promotion.
    let following = steps
        .get(at.index as usize + 1)
        .filter(|s| s.weight < 100 || s.hold.is_some() || s.pause);
    let Some(following) = following else {
        return Some((
            to_draining(state, op, ctx),
            ChangeKind::Draining,
            Some(format!("{of} passed{figures}")),
        ));
    };
    let mut next = state.clone();
    if let Phase::Mixed { step: Some(s), .. } = &mut next.phase {
        *s = StepAt {
            index: at.index + 1,
            weight: following.weight,
            since_ms: ctx.now,
            effective_ms: None,
            confirmed: false,
        };
    }
    let then = format!(
        "step {} of {}: {}% of clients",
        at.index + 2,
        steps.len(),
        following.weight
    );
    Some((
        next,
        ChangeKind::Step,
        Some(format!("{of} passed{figures}; {then}")),
    ))
}

/// A step's weight in effect once every node and secondary serves it and the answers from
/// before it have expired: from then on its hold counts and its gates judge.
fn in_effect(
    state: &AliasState,
    at: &StepAt,
    step: &crate::steps::Step,
    of: &str,
    ctx: &Ctx<'_>,
) -> Option<(AliasState, ChangeKind, Option<String>)> {
    let caught = match (ctx.secondaries)() {
        Caught::Waiting => return None,
        Caught::Since(since) => since,
    };
    let ttl_ms = u64::from(state.ttl_served_s.max(ctx.ttl_window_s)) * 1000;
    let expired = at.since_ms.saturating_add(ttl_ms);
    if ctx.now < expired {
        return None;
    }
    let mut next = state.clone();
    if let Phase::Mixed { step: Some(s), .. } = &mut next.phase {
        s.effective_ms = Some(expired.max(caught).min(ctx.now));
    }
    let then = match (step.hold, step.pause) {
        (Some(hold), _) => format!("holds {}", humantime::format_duration(hold)),
        (None, true) => "waits for a confirm".to_owned(),
        (None, false) => "moves on".to_owned(),
    };
    let why = format!("{of} in effect on every node and secondary; {then}");
    Some((next, ChangeKind::InEffect, Some(why)))
}

/// A duration as whole milliseconds, saturating.
fn whole_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
