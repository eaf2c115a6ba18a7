//! Rollouts of many aliases: the pure step that moves a [`Rollout`] on, and the commands that
//! change it (pause, resume, abort, rollback).
//!
//! No IO and no clock: [`step`] reads each member's alias state and the health gate of its new
//! targets through [`View`], and returns the rollout as it should be stored (if it changed)
//! and the [`Action`]s to turn into alias inputs in the same commit. What the shell's action
//! did is recorded back with [`record`], so the operation a member started is stored with it.
//!
//! A member's outcome is read from its alias: while the alias's running operation is the
//! member's (`op`), the member runs; when the alias's `last_op` is that operation, it ended,
//! completed or failed (aborted, warm timeout, automatic rollback). A member that completed
//! fails after all when, before `monitor` has passed since it completed, its new targets fail
//! the promotion's health gate (fewer endpoints up than it needed): then the alias was moved,
//! and a rollback takes it back too. Batches start `parallelism` members; once every member
//! of a batch ended and `monitor` passed since the last ended, the next batch starts after
//! `delay`. When failed / total > `max_failure_ratio`, the failure action is taken once (a
//! `resume` accepts the failures seen so far).

use crate::model::{AliasName, ServiceName};
use crate::state::{
    AliasState, FailureAction, Member, MemberState, Ms, PromoteOptions, Rollout, RolloutState,
};

/// What a step may know of the world.
pub struct View<'a> {
    pub now: Ms,
    /// The alias's state, with what the commit being planned changes.
    pub alias: &'a dyn Fn(&AliasName) -> Option<&'a AliasState>,
    /// Why `services` fail the health gate of `options` now, if they do.
    pub failing: &'a dyn Fn(&[ServiceName], &PromoteOptions) -> Option<String>,
}

/// An alias input a step asks for; `member` indexes the rollout's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the member's promotion.
    Promote {
        member: usize,
        alias: AliasName,
        to: Vec<ServiceName>,
        options: PromoteOptions,
    },
    /// Promote the alias back to the targets it had before the rollout (a rollback operation).
    Rollback {
        member: usize,
        alias: AliasName,
        to: Vec<ServiceName>,
        options: PromoteOptions,
    },
    /// Abort the member's running promotion.
    Abort { member: usize, alias: AliasName },
}

/// What the shell's action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The operation started, with this id; `from` is what the alias answered with.
    Started { op: u64, from: Vec<ServiceName> },
    /// Nothing to do: the alias answered with those targets already.
    Unchanged,
    /// Refused, with why.
    Refused(String),
}

/// A rollout command from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Abort,
    Rollback,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
            Self::Rollback => "rollback",
        }
    }
}

/// A new rollout of `members` (each alias and the targets it is to answer with), in batches
/// of `settings.parallelism` in the order given. Nothing has started: its first [`step`]
/// starts the first batch.
pub fn new(
    id: u64,
    members: Vec<(AliasName, Vec<ServiceName>)>,
    settings: crate::state::RolloutSettings,
    actor: &str,
    now: Ms,
) -> Rollout {
    let per = settings.parallelism.max(1) as usize;
    Rollout {
        id,
        created_at_ms: now,
        actor: actor.to_owned(),
        members: members
            .into_iter()
            .enumerate()
            .map(|(i, (alias, to))| Member {
                alias,
                to,
                from: None,
                batch: (i / per) as u32,
                op: None,
                started_at_ms: None,
                rollback_op: None,
                state: MemberState::Pending,
            })
            .collect(),
        settings,
        state: RolloutState::Running,
        batch: 0,
        next_batch_at_ms: None,
        accepted_failures: 0,
        changed_at_ms: now,
    }
}

/// Moves `rollout` on at `view.now`: the members' outcomes, the failure action, the next
/// batch, the end. Returns the rollout if it changed, and the actions it asks for.
pub fn step(rollout: &Rollout, view: &View<'_>) -> (Option<Rollout>, Vec<Action>) {
    let mut next = rollout.clone();
    observe(&mut next, view);
    let actions = match next.state {
        RolloutState::Running => advance(&mut next, view.now),
        RolloutState::RollingBack => {
            finish_rollback(&mut next);
            Vec::new()
        }
        _ => Vec::new(),
    };
    if next == *rollout {
        return (None, actions);
    }
    next.changed_at_ms = view.now;
    (Some(next), actions)
}

/// Applies `command` by `actor` at `now`: the rollout as it is after it and the actions it
/// asks for, or why it does not apply in the rollout's state.
pub fn command(
    rollout: &Rollout,
    command: Command,
    actor: &str,
    now: Ms,
) -> Result<(Rollout, Vec<Action>), String> {
    let mut next = rollout.clone();
    let refuse = || {
        format!(
            "rollout {} is {}; {} does not apply",
            rollout.id,
            rollout.state.name(),
            command.as_str()
        )
    };
    let actions = match (command, &rollout.state) {
        (Command::Pause, RolloutState::Running) => {
            next.state = RolloutState::Paused {
                why: format!("paused by {actor}"),
            };
            Vec::new()
        }
        (Command::Resume, RolloutState::Paused { .. }) => {
            next.state = RolloutState::Running;
            next.accepted_failures = next.failed();
            Vec::new()
        }
        (Command::Abort, RolloutState::Running | RolloutState::Paused { .. }) => {
            next.state = RolloutState::Aborted;
            next.next_batch_at_ms = None;
            stop_members(&mut next, "the rollout was aborted", now)
        }
        (Command::Rollback, s)
            if !matches!(s, RolloutState::RollingBack | RolloutState::RolledBack) =>
        {
            start_rollback(&mut next, now)
        }
        _ => return Err(refuse()),
    };
    next.changed_at_ms = now;
    Ok((next, actions))
}

/// Records what the shell's action for `member` did at `now`.
pub fn record(rollout: &mut Rollout, action: &Action, done: Done, now: Ms) {
    let (index, rollback) = match action {
        Action::Promote { member, .. } => (*member, false),
        Action::Rollback { member, .. } => (*member, true),
        // An aborted member was marked when the abort was decided; a refused abort means
        // its operation had ended already, which the next step reads from the alias.
        Action::Abort { .. } => return,
    };
    let Some(m) = rollout.members.get_mut(index) else {
        return;
    };
    m.state = match (done, rollback) {
        (Done::Started { op, from }, false) => {
            m.op = Some(op);
            m.from = Some(from);
            m.started_at_ms = Some(now);
            MemberState::Running
        }
        (Done::Started { op, .. }, true) => {
            m.rollback_op = Some(op);
            MemberState::RollingBack
        }
        (Done::Unchanged, false) => {
            m.started_at_ms = Some(now);
            MemberState::Skipped {
                why: "it answered with these targets already".into(),
            }
        }
        (Done::Unchanged, true) => MemberState::RolledBack { at_ms: now },
        (Done::Refused(why), false) => {
            m.started_at_ms = Some(now);
            MemberState::Failed {
                at_ms: now,
                why,
                moved: false,
            }
        }
        (Done::Refused(why), true) => MemberState::RollbackFailed { at_ms: now, why },
    };
    rollout.changed_at_ms = now;
}

/// The next time `rollout` moves on its own: its next batch (or its end). Members move with
/// their aliases' commits, and a failure within the monitor window with a health change; the
/// end of a window changes nothing by itself.
pub fn deadline(rollout: &Rollout) -> Option<Ms> {
    matches!(rollout.state, RolloutState::Running)
        .then_some(rollout.next_batch_at_ms)
        .flatten()
}

/// Forgets the oldest rollouts that ended beyond [`crate::bounds::ROLLOUTS_KEPT`].
pub fn forget_old(rollouts: &mut imbl::OrdMap<u64, Rollout>) {
    let ended: Vec<u64> = rollouts
        .iter()
        .filter(|(_, r)| r.state.is_final())
        .map(|(id, _)| *id)
        .collect();
    let extra = ended.len().saturating_sub(crate::bounds::ROLLOUTS_KEPT);
    for id in &ended[..extra] {
        rollouts.remove(id);
    }
}

/// Takes in every member's outcome from its alias.
fn observe(rollout: &mut Rollout, view: &View<'_>) {
    let monitor = rollout.settings.monitor_ms;
    let options = &rollout.settings.options;
    for m in &mut rollout.members {
        let alias = (view.alias)(&m.alias);
        match (&m.state, m.op, m.rollback_op) {
            (MemberState::Running, Some(op), _) => {
                if let Some(state) = outcome(alias, op, &m.alias) {
                    m.state = match state {
                        Ok(at_ms) => MemberState::Completed { at_ms },
                        Err((at_ms, why)) => MemberState::Failed {
                            at_ms,
                            why,
                            moved: false,
                        },
                    };
                }
            }
            (MemberState::Completed { at_ms }, _, _)
                if view.now < at_ms.saturating_add(monitor) =>
            {
                let still_ours =
                    alias.is_some_and(|a| a.phase.operation().is_none() && a.targets == m.to);
                if let Some(why) = still_ours.then(|| (view.failing)(&m.to, options)).flatten() {
                    m.state = MemberState::Failed {
                        at_ms: view.now,
                        why: format!("within the monitor window after it completed: {why}"),
                        moved: true,
                    };
                }
            }
            (MemberState::RollingBack, _, Some(op)) => {
                if let Some(state) = outcome(alias, op, &m.alias) {
                    m.state = match state {
                        Ok(at_ms) => MemberState::RolledBack { at_ms },
                        Err((at_ms, why)) => MemberState::RollbackFailed { at_ms, why },
                    };
                }
            }
            _ => {}
        }
    }
}

/// How operation `op` of `alias` ended: `None` while it runs, `Ok(at)` when it completed,
/// `Err((at, why))` when it ended otherwise or is gone.
fn outcome(
    alias: Option<&AliasState>,
    op: u64,
    name: &AliasName,
) -> Option<Result<Ms, (Ms, String)>> {
    let Some(a) = alias else {
        return Some(Err((0, format!("alias `{name}` no longer exists"))));
    };
    if a.phase.operation().is_some_and(|o| o.id == op) {
        return None;
    }
    Some(match &a.last_op {
        Some(ended) if ended.op.id == op => match ended.outcome {
            crate::state::EndKind::Completed => Ok(ended.at_ms),
            kind => Err((
                ended.at_ms,
                match &ended.why {
                    Some(why) => format!("{}: {why}", kind.as_str()),
                    None => kind.as_str().to_owned(),
                },
            )),
        },
        _ => Err((
            a.changed_at_ms,
            format!("its operation {op} ended in a way no longer known (the alias changed since)"),
        )),
    })
}

/// Whether more members failed than the rollout allows, beyond those a resume accepted.
fn breached(rollout: &Rollout) -> bool {
    let failed = rollout.failed();
    let total = rollout.members.len() as u64;
    failed > rollout.accepted_failures
        && u64::from(failed) * 1_000_000 > u64::from(rollout.settings.max_failure_ratio_ppm) * total
}

fn failures(rollout: &Rollout) -> String {
    format!(
        "{} of {} members failed (max_failure_ratio {})",
        rollout.failed(),
        rollout.members.len(),
        f64::from(rollout.settings.max_failure_ratio_ppm) / 1e6
    )
}

/// A running rollout: the failure action, else the next batch or the end.
fn advance(rollout: &mut Rollout, now: Ms) -> Vec<Action> {
    if breached(rollout) {
        match rollout.settings.failure_action {
            FailureAction::Pause => {
                rollout.state = RolloutState::Paused {
                    why: failures(rollout),
                };
                return Vec::new();
            }
            FailureAction::Rollback => return start_rollback(rollout, now),
            FailureAction::Continue => {}
        }
    }
    if rollout.batch > 0 {
        let current = rollout.batch - 1;
        let members = rollout.members.iter().filter(|m| m.batch == current);
        if !members.clone().all(|m| m.state.is_done()) {
            return Vec::new();
        }
        let ended = members
            .filter_map(|m| m.state.ended_at())
            .max()
            .unwrap_or(0);
        let last = rollout.batch >= rollout.batches();
        let delay = if last { 0 } else { rollout.settings.delay_ms };
        let at = ended
            .saturating_add(rollout.settings.monitor_ms)
            .saturating_add(delay);
        rollout.next_batch_at_ms = Some(at);
        if now < at {
            return Vec::new();
        }
        rollout.next_batch_at_ms = None;
        if last {
            let over = u64::from(rollout.failed()) * 1_000_000
                > u64::from(rollout.settings.max_failure_ratio_ppm) * rollout.members.len() as u64;
            rollout.state = if over {
                RolloutState::Failed {
                    why: failures(rollout),
                }
            } else {
                RolloutState::Completed
            };
            return Vec::new();
        }
    }
    start_batch(rollout)
}

/// Starts the next batch: a promote for each of its members.
fn start_batch(rollout: &mut Rollout) -> Vec<Action> {
    let batch = rollout.batch;
    rollout.batch += 1;
    let options = rollout.settings.options.clone();
    rollout
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.batch == batch && matches!(m.state, MemberState::Pending))
        .map(|(i, m)| Action::Promote {
            member: i,
            alias: m.alias.clone(),
            to: m.to.clone(),
            options: options.clone(),
        })
        .collect()
}

/// Aborts the running members and skips the pending ones; returns the aborts.
fn stop_members(rollout: &mut Rollout, why: &str, now: Ms) -> Vec<Action> {
    let mut actions = Vec::new();
    for (i, m) in rollout.members.iter_mut().enumerate() {
        match m.state {
            MemberState::Running => {
                m.state = MemberState::Aborted { at_ms: now };
                actions.push(Action::Abort {
                    member: i,
                    alias: m.alias.clone(),
                });
            }
            MemberState::Pending => {
                m.state = MemberState::Skipped {
                    why: why.to_owned(),
                }
            }
            _ => {}
        }
    }
    actions
}

/// Starts taking back every alias the rollout moved, newest first (the last batch first, and
/// in a batch the last listed first): running members are
/// aborted, pending ones skipped, and each moved alias promoted back to the targets it had
/// (a rollback operation, without a confirm gate or steps).
fn start_rollback(rollout: &mut Rollout, now: Ms) -> Vec<Action> {
    rollout.state = RolloutState::RollingBack;
    rollout.next_batch_at_ms = None;
    let mut actions = stop_members(rollout, "the rollout is rolled back", now);
    let mut moved: Vec<(usize, &Member)> = rollout
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.state.moved() && m.from.is_some())
        .collect();
    moved.sort_by_key(|(i, m)| std::cmp::Reverse((m.batch, *i)));
    let options = PromoteOptions {
        confirm: false,
        steps: Vec::new(),
        gates: Default::default(),
        stop_old: false,
        ..rollout.settings.options.clone()
    };
    actions.extend(moved.into_iter().map(|(i, m)| Action::Rollback {
        member: i,
        alias: m.alias.clone(),
        to: m.from.clone().unwrap_or_default(),
        options: options.clone(),
    }));
    if actions.iter().all(|a| matches!(a, Action::Abort { .. })) {
        finish_rollback(rollout);
    }
    actions
}

/// Ends a rollback once no member's rollback runs.
fn finish_rollback(rollout: &mut Rollout) {
    if rollout
        .members
        .iter()
        .any(|m| matches!(m.state, MemberState::RollingBack))
    {
        return;
    }
    let failed = rollout
        .members
        .iter()
        .filter(|m| matches!(m.state, MemberState::RollbackFailed { .. }))
        .count();
    rollout.state = if failed == 0 {
        RolloutState::RolledBack
    } else {
        RolloutState::Failed {
            why: format!("the rollback of {failed} members failed"),
        }
    };
}

#[cfg(test)]
mod tests;
