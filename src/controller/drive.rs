//! How the writer drives rollouts of many aliases: it starts them, applies their commands, and
//! before every commit steps each active rollout (`rollout::step`) over the alias states the
//! commit is about to store, turning the actions into alias inputs of the same batch. A
//! rollout's change and the alias operations it starts are one unit: durable together.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::core::Batch;
use super::machine::{self, Change, Input, OpKind, Outcome};
use super::rollout::{self, Action, Done};
use super::{Actor, ControlError, ControlHandle, Controller, Gates, counts, whole_ms};
use crate::model::{AliasName, ServiceName};
use crate::state::{AliasState, FailureAction, PromoteOptions, Rollout, RolloutSettings};

/// What `POST /v1/rollouts` asks for, checked for form (the writer checks it against the
/// config and the state).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// Each alias and the targets it is to answer with, in the order batches take them.
    pub members: Vec<(AliasName, Vec<ServiceName>)>,
    pub parallelism: u32,
    pub delay: Duration,
    pub monitor: Duration,
    pub failure_action: FailureAction,
    /// In parts per million (see [`RolloutSettings::max_failure_ratio_ppm`]).
    pub max_failure_ratio_ppm: u32,
    /// The gates of every member's promotion.
    pub gates: Gates,
}

impl ControlHandle {
    /// Starts a rollout; answers with it once it is durable (its first batch started).
    pub async fn start_rollout(
        &self,
        plan: RolloutPlan,
        actor: Actor,
    ) -> Result<Rollout, ControlError> {
        self.ask(|reply| super::Command::StartRollout { plan, actor, reply })
            .await
    }

    /// Pauses, resumes, aborts or rolls back rollout `id`.
    pub async fn rollout(
        &self,
        id: u64,
        command: rollout::Command,
        actor: Actor,
    ) -> Result<Rollout, ControlError> {
        self.ask(|reply| super::Command::Rollout {
            id,
            command,
            actor,
            reply,
        })
        .await
    }
}

/// Alias states as a batch is about to store them: the batch's last change of each alias over
/// the state it starts from.
struct Pending<'a> {
    base: &'a imbl::OrdMap<AliasName, AliasState>,
    latest: BTreeMap<&'a AliasName, &'a AliasState>,
}

impl<'a> Pending<'a> {
    fn new(
        base: &'a imbl::OrdMap<AliasName, AliasState>,
        changes: &'a [(AliasName, AliasState, Change)],
    ) -> Self {
        let latest = changes.iter().map(|(n, s, _)| (n, s)).collect();
        Self { base, latest }
    }

    fn get(&self, alias: &AliasName) -> Option<&'a AliasState> {
        self.latest
            .get(alias)
            .copied()
            .or_else(|| self.base.get(alias))
    }
}

impl Controller {
    /// Starts a rollout of `plan` by `actor`: checked against the config and the rollouts
    /// running, stored, and its first batch started in the same commit.
    pub(super) async fn start_rollout(
        &mut self,
        plan: RolloutPlan,
        actor: Actor,
    ) -> Result<Rollout, ControlError> {
        self.check_rollout(&plan)?;
        let options = plan.gates.resolve(&self.core.base.defaults);
        let settings = RolloutSettings {
            parallelism: plan.parallelism.max(1),
            delay_ms: whole_ms(plan.delay),
            monitor_ms: whole_ms(plan.monitor),
            failure_action: plan.failure_action,
            max_failure_ratio_ppm: plan.max_failure_ratio_ppm,
            options,
        };
        let id = self
            .core
            .state
            .rollouts
            .keys()
            .next_back()
            .map_or(1, |id| id + 1);
        let now = self.clock.now_ms();
        let r = rollout::new(id, plan.members, settings, &actor, now);
        self.commit(Batch {
            rollouts: vec![r],
            ..Batch::default()
        })
        .await?;
        self.stored_rollout(id)
    }

    /// Refuses a plan the config or the running rollouts cannot take.
    fn check_rollout(&self, plan: &RolloutPlan) -> Result<(), ControlError> {
        if plan.members.is_empty() {
            return Err(ControlError::BadRequest(
                "a rollout needs at least one alias".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (alias, to) in &plan.members {
            if !self.core.topology.aliases.contains_key(alias) {
                return Err(ControlError::UnknownAlias(alias.to_string()));
            }
            if !seen.insert(alias) {
                return Err(ControlError::BadRequest(format!(
                    "alias `{alias}` is listed twice in the rollout"
                )));
            }
            self.check_services(to)?;
        }
        for r in self.core.state.rollouts.values() {
            if r.state.is_final() {
                continue;
            }
            if let Some(m) = r.members.iter().find(|m| seen.contains(&m.alias)) {
                return Err(ControlError::Conflict(format!(
                    "alias `{}` is in rollout {}, which is {}; abort it or wait",
                    m.alias,
                    r.id,
                    r.state.name()
                )));
            }
        }
        if plan.gates.stop_old == Some(true) && self.docker_tx.is_none() {
            return Err(ControlError::BadRequest(
                "stop_old stops the old version's Docker containers, but Docker discovery is off ([docker] enabled = false)".into(),
            ));
        }
        Ok(())
    }

    /// Applies `command` to rollout `id`: its change and the alias inputs it asks for, in one
    /// commit.
    pub(super) async fn rollout_command(
        &mut self,
        id: u64,
        command: rollout::Command,
        actor: Actor,
    ) -> Result<Rollout, ControlError> {
        let current = self.stored_rollout(id)?;
        let now = self.clock.now_ms();
        let (mut next, actions) =
            rollout::command(&current, command, &actor, now).map_err(ControlError::Conflict)?;
        let mut changes = Vec::new();
        let reason = format!("rollout {id}: {} by {actor}", command.as_str());
        for action in actions {
            let done = self.act(&action, &mut changes, &actor, &reason);
            rollout::record(&mut next, &action, done, now);
        }
        changes.extend(self.due_transitions(Some(&changes)));
        self.commit(Batch {
            changes,
            rollouts: vec![next],
            ..Batch::default()
        })
        .await?;
        self.stored_rollout(id)
    }

    pub(super) fn stored_rollout(&self, id: u64) -> Result<Rollout, ControlError> {
        self.core
            .state
            .rollouts
            .get(&id)
            .cloned()
            .ok_or_else(|| ControlError::NotFound(format!("no rollout {id}")))
    }

    /// Whether a running rollout's next batch (or end) is due at `now`.
    pub(super) fn rollouts_due(&self, now: u64) -> bool {
        self.core
            .state
            .rollouts
            .values()
            .filter_map(rollout::deadline)
            .any(|d| d <= now)
    }

    /// The next deadline of any rollout.
    pub(super) fn rollouts_deadline(&self) -> Option<u64> {
        self.core
            .state
            .rollouts
            .values()
            .filter_map(rollout::deadline)
            .min()
    }

    /// Steps every active rollout over the alias states `batch` is about to store, and adds
    /// the rollouts that changed and the alias changes their actions make to it.
    pub(super) fn drive_rollouts(&self, batch: &mut Batch) {
        let mut active: BTreeMap<u64, Rollout> = self
            .core
            .state
            .rollouts
            .iter()
            .filter(|(_, r)| !r.state.is_final())
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        let mut changed: BTreeSet<u64> = BTreeSet::new();
        for r in batch.rollouts.drain(..) {
            changed.insert(r.id);
            active.insert(r.id, r);
        }
        if active.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        let acted = batch.changes.len();
        for (id, r) in &mut active {
            let base = batch
                .state
                .as_ref()
                .map_or(&self.core.state.aliases, |s| &s.aliases);
            let (next, actions) = self.step_rollout(r, base, &batch.changes, now);
            if let Some(next) = next {
                *r = next;
                changed.insert(*id);
            }
            let reason = format!("rollout {id}");
            let actor = r.actor.clone();
            for action in actions {
                let done = self.act_on(base, &action, &mut batch.changes, &actor, &reason);
                rollout::record(r, &action, done, now);
                changed.insert(*id);
            }
        }
        if batch.changes.len() > acted {
            let ticks = self.due_transitions(Some(&batch.changes));
            batch.changes.extend(ticks);
        }
        batch.rollouts = active
            .into_iter()
            .filter(|(id, _)| changed.contains(id))
            .map(|(_, r)| r)
            .collect();
    }

    /// [`rollout::step`] over `base` with `changes` applied, and the health the writer has.
    fn step_rollout(
        &self,
        r: &Rollout,
        base: &imbl::OrdMap<AliasName, AliasState>,
        changes: &[(AliasName, AliasState, Change)],
        now: u64,
    ) -> (Option<Rollout>, Vec<Action>) {
        let pending = Pending::new(base, changes);
        let failing = |to: &[ServiceName], options: &PromoteOptions| {
            let c = counts(&self.core.topology, &self.core.health, to);
            let need = machine::required(options, c);
            let up = c.total - c.failed.min(c.total);
            (up < need).then(|| format!("{up} of {} endpoints up, {need} needed", c.total))
        };
        let view = rollout::View {
            now,
            alias: &|a| pending.get(a),
            failing: &failing,
        };
        rollout::step(r, &view)
    }

    /// Runs `action` through the machine over the current state and `changes`, adding the
    /// change it makes to `changes`.
    fn act(
        &self,
        action: &Action,
        changes: &mut Vec<(AliasName, AliasState, Change)>,
        actor: &str,
        reason: &str,
    ) -> Done {
        self.act_on(&self.core.state.aliases, action, changes, actor, reason)
    }

    fn act_on(
        &self,
        base: &imbl::OrdMap<AliasName, AliasState>,
        action: &Action,
        changes: &mut Vec<(AliasName, AliasState, Change)>,
        actor: &str,
        reason: &str,
    ) -> Done {
        let (alias, input) = match action {
            Action::Promote {
                alias, to, options, ..
            }
            | Action::Rollback {
                alias, to, options, ..
            } => {
                if let Err(e) = self.check_services(to) {
                    return Done::Refused(e.to_string());
                }
                let kind = match action {
                    Action::Rollback { .. } => OpKind::Rollback,
                    _ => OpKind::Promote,
                };
                let input = Input::Promote {
                    to: to.clone(),
                    options: options.clone(),
                    kind,
                    actor: actor.to_owned(),
                    reason: Some(reason.to_owned()),
                };
                (alias, input)
            }
            Action::Abort { alias, .. } => (
                alias,
                Input::Abort {
                    actor: actor.to_owned(),
                    reason: Some(reason.to_owned()),
                },
            ),
        };
        let pending = Pending::new(base, changes);
        let Some(current) = pending.get(alias) else {
            return Done::Refused(format!("unknown alias `{alias}`"));
        };
        let from = current.targets.clone();
        match self.with_ctx(|ctx| machine::step(current, input, ctx)) {
            Ok(Outcome::Changed(next, change)) => {
                let op = next.phase.operation().map_or(0, |o| o.id);
                changes.push((alias.clone(), *next, change));
                Done::Started { op, from }
            }
            Ok(Outcome::Unchanged) => Done::Unchanged,
            Err(e) => Done::Refused(e.to_string()),
        }
    }
}
