//! The rollout step as tables: alias states in, the rollout and actions out. No runtime.

use std::collections::BTreeMap;

use super::*;
use crate::state::{EndKind, Ended, OpKind, Operation, Phase, Reached, RolloutSettings, fresh};

fn alias(name: &str) -> AliasName {
    AliasName::resolve(
        &format!("{name}.internal."),
        &hickory_proto::rr::Name::root(),
    )
    .unwrap()
}

fn svc(name: &str) -> ServiceName {
    name.parse().unwrap()
}

fn options() -> PromoteOptions {
    PromoteOptions {
        observe_ms: 0,
        confirm: false,
        min_healthy: None,
        warm_timeout_ms: 1000,
        stop_old: false,
        steps: Vec::new(),
        gates: Default::default(),
    }
}

fn settings(parallelism: u32, action: FailureAction, ratio_ppm: u32) -> RolloutSettings {
    RolloutSettings {
        parallelism,
        delay_ms: 2000,
        monitor_ms: 0,
        failure_action: action,
        max_failure_ratio_ppm: ratio_ppm,
        options: options(),
    }
}

/// A rollout of `n` aliases `a0`... to `aN-v2`.
fn rollout(n: usize, s: RolloutSettings) -> Rollout {
    let members = (0..n)
        .map(|i| (alias(&format!("a{i}")), vec![svc(&format!("a{i}-v2"))]))
        .collect();
    new(1, members, s, "ci", 0)
}

/// The world as the step sees it: alias states by name, and services whose health fails.
#[derive(Default)]
struct World {
    aliases: BTreeMap<AliasName, AliasState>,
    failing: Vec<ServiceName>,
}

impl World {
    fn for_rollout(r: &Rollout) -> Self {
        let mut w = Self::default();
        for (i, m) in r.members.iter().enumerate() {
            w.aliases.insert(
                m.alias.clone(),
                fresh(vec![svc(&format!("a{i}-v1"))], 1, 0, "config"),
            );
        }
        w
    }

    fn step(&self, r: &Rollout, now: Ms) -> (Option<Rollout>, Vec<Action>) {
        let failing = |to: &[ServiceName], _: &PromoteOptions| {
            to.iter()
                .any(|s| self.failing.contains(s))
                .then(|| "down".to_owned())
        };
        let view = View {
            now,
            alias: &|a| self.aliases.get(a),
            failing: &failing,
        };
        step(r, &view)
    }

    /// Runs the actions as the shell would: an operation with the next revision starts.
    fn act(&mut self, r: &mut Rollout, actions: &[Action], now: Ms) {
        for a in actions {
            let done = match a {
                Action::Promote { alias, to, .. } | Action::Rollback { alias, to, .. } => {
                    let state = self.aliases.get_mut(alias).unwrap();
                    let op = state.revision + 1;
                    let from = state.targets.clone();
                    state.revision = op;
                    state.phase = Phase::Warming {
                        op: Operation {
                            id: op,
                            kind: OpKind::Promote,
                            from: from.clone(),
                            to: to.clone(),
                            options: options(),
                            actor: "ci".into(),
                            reason: None,
                            started_at_ms: now,
                            salt: String::new(),
                        },
                        deadline_ms: now + 1000,
                    };
                    Done::Started { op, from }
                }
                Action::Abort { alias, .. } => {
                    self.end(alias, EndKind::Aborted, now);
                    Done::Unchanged
                }
            };
            record(r, a, done, now);
        }
    }

    /// Ends the running operation of `alias` with `outcome` at `at`.
    fn end(&mut self, name: &AliasName, outcome: EndKind, at: Ms) {
        let state = self.aliases.get_mut(name).unwrap();
        let Some(op) = state.phase.operation().cloned() else {
            return;
        };
        state.revision += 1;
        if outcome == EndKind::Completed {
            state.targets = op.to.clone();
        }
        state.phase = Phase::Stable;
        state.last_op = Some(Ended {
            op,
            outcome,
            reached: Reached::Warming,
            at_ms: at,
            by: "aliasd".into(),
            why: (outcome != EndKind::Completed).then(|| "it failed".into()),
            revision: state.revision,
        });
    }

    /// Steps and acts; returns the rollout after it.
    fn tick(&mut self, r: &Rollout, now: Ms) -> (Rollout, Vec<Action>) {
        let (next, actions) = self.step(r, now);
        let mut next = next.unwrap_or_else(|| r.clone());
        self.act(&mut next, &actions, now);
        (next, actions)
    }
}

fn states(r: &Rollout) -> Vec<&'static str> {
    r.members.iter().map(|m| m.state.name()).collect()
}

fn promoted(actions: &[Action]) -> Vec<usize> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Promote { member, .. } => Some(*member),
            _ => None,
        })
        .collect()
}

#[test]
fn batches_start_in_turn_after_the_delay() {
    let r = rollout(5, settings(2, FailureAction::Pause, 0));
    assert_eq!(
        r.members.iter().map(|m| m.batch).collect::<Vec<_>>(),
        [0, 0, 1, 1, 2]
    );
    let mut w = World::for_rollout(&r);
    let (r, actions) = w.tick(&r, 10);
    assert_eq!(promoted(&actions), [0, 1]);
    assert_eq!(
        states(&r),
        ["running", "running", "pending", "pending", "pending"]
    );
    assert_eq!((r.members[0].op, r.batch), (Some(2), 1));
    // Nothing ended: nothing moves.
    assert_eq!(w.step(&r, 20), (None, Vec::new()));
    w.end(&alias("a0"), EndKind::Completed, 100);
    let (r, actions) = w.tick(&r, 110);
    assert!(actions.is_empty());
    assert_eq!(states(&r)[..2], ["completed", "running"]);
    w.end(&alias("a1"), EndKind::Completed, 300);
    let (r, actions) = w.tick(&r, 310);
    assert!(actions.is_empty(), "the delay runs from the last end");
    assert_eq!(r.next_batch_at_ms, Some(2300));
    assert_eq!(deadline(&r), Some(2300));
    let (r, actions) = w.tick(&r, 2300);
    assert_eq!(promoted(&actions), [2, 3]);
    assert_eq!(r.next_batch_at_ms, None);
    w.end(&alias("a2"), EndKind::Completed, 2400);
    w.end(&alias("a3"), EndKind::Completed, 2500);
    let (r, _) = w.tick(&r, 4500);
    let (r, _) = w.tick(&r, 4500);
    w.end(&alias("a4"), EndKind::Completed, 4600);
    let (r, actions) = w.tick(&r, 4600);
    assert!(actions.is_empty());
    assert_eq!(
        r.state,
        RolloutState::Completed,
        "no delay after the last batch"
    );
    assert_eq!(deadline(&r), None);
}

#[test]
fn a_failure_pauses_then_resume_accepts_it() {
    let r = rollout(4, settings(2, FailureAction::Pause, 0));
    let mut w = World::for_rollout(&r);
    let (r, _) = w.tick(&r, 0);
    w.end(&alias("a0"), EndKind::WarmTimeout, 50);
    let (r, actions) = w.tick(&r, 60);
    assert!(actions.is_empty());
    assert!(matches!(r.state, RolloutState::Paused { ref why } if why.contains("1 of 4")));
    assert!(
        matches!(&r.members[0].state, MemberState::Failed { why, moved: false, .. } if why.starts_with("warm_timeout"))
    );
    // The running member goes on and ends; no new batch starts while paused.
    w.end(&alias("a1"), EndKind::Completed, 100);
    let (r, actions) = w.tick(&r, 10_000);
    assert!(actions.is_empty());
    assert_eq!(states(&r), ["failed", "completed", "pending", "pending"]);
    assert_eq!(deadline(&r), None);
    assert!(command(&r, Command::Pause, "ci", 10_000).is_err());
    let (r, actions) = command(&r, Command::Resume, "ci", 10_000).unwrap();
    assert!(actions.is_empty());
    assert_eq!(
        (r.state.clone(), r.accepted_failures),
        (RolloutState::Running, 1)
    );
    let (r, actions) = w.tick(&r, 10_000);
    assert_eq!(promoted(&actions), [2, 3]);
    w.end(&alias("a2"), EndKind::Completed, 10_100);
    w.end(&alias("a3"), EndKind::Completed, 10_100);
    let (r, _) = w.tick(&r, 10_200);
    assert!(
        matches!(r.state, RolloutState::Failed { .. }),
        "{:?}",
        r.state
    );
}

#[test]
fn the_failure_ratio_counts_over_all_members() {
    // 2 of 4 failed is not more than 0.5; the third is.
    let r = rollout(4, settings(4, FailureAction::Pause, 500_000));
    let mut w = World::for_rollout(&r);
    let (r, _) = w.tick(&r, 0);
    w.end(&alias("a0"), EndKind::AutoRollback, 10);
    w.end(&alias("a1"), EndKind::Aborted, 10);
    let (r, _) = w.tick(&r, 20);
    assert_eq!(r.state, RolloutState::Running);
    w.end(&alias("a2"), EndKind::WarmTimeout, 30);
    let (r, _) = w.tick(&r, 40);
    assert!(matches!(r.state, RolloutState::Paused { .. }));
}

#[test]
fn continue_goes_on_and_ends_failed() {
    let r = rollout(2, settings(1, FailureAction::Continue, 0));
    let mut w = World::for_rollout(&r);
    let (r, _) = w.tick(&r, 0);
    w.end(&alias("a0"), EndKind::WarmTimeout, 10);
    let (r, _) = w.tick(&r, 20);
    let (r, actions) = w.tick(&r, 2010);
    assert_eq!(promoted(&actions), [1]);
    w.end(&alias("a1"), EndKind::Completed, 2100);
    let (r, _) = w.tick(&r, 2100);
    assert!(matches!(r.state, RolloutState::Failed { ref why } if why.contains("1 of 2")));
}

#[test]
fn rollback_aborts_the_running_and_takes_the_moved_back_newest_first() {
    let r = rollout(6, settings(3, FailureAction::Rollback, 0));
    let mut w = World::for_rollout(&r);
    let (r, _) = w.tick(&r, 0);
    for a in ["a0", "a1", "a2"] {
        w.end(&alias(a), EndKind::Completed, 10);
    }
    let (r, _) = w.tick(&r, 10);
    let (r, _) = w.tick(&r, 2010);
    w.end(&alias("a3"), EndKind::Completed, 2050);
    w.end(&alias("a4"), EndKind::WarmTimeout, 2100);
    let (r, actions) = w.tick(&r, 2100);
    assert_eq!(r.state, RolloutState::RollingBack);
    let order: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Abort { alias, .. } => format!("abort {alias}"),
            Action::Rollback { alias, to, .. } => format!("back {alias} {}", to[0]),
            Action::Promote { alias, .. } => format!("promote {alias}"),
        })
        .collect();
    assert_eq!(
        order,
        [
            "abort a5.internal",
            "back a3.internal a3-v1",
            "back a2.internal a2-v1",
            "back a1.internal a1-v1",
            "back a0.internal a0-v1",
        ]
    );
    assert_eq!(
        states(&r),
        [
            "rolling_back",
            "rolling_back",
            "rolling_back",
            "rolling_back",
            "failed",
            "aborted"
        ]
    );
    for a in ["a0", "a1", "a2", "a3"] {
        w.end(&alias(a), EndKind::Completed, 3000);
    }
    let (r, _) = w.tick(&r, 3000);
    assert_eq!(r.state, RolloutState::RolledBack);
    assert!(command(&r, Command::Rollback, "ci", 3000).is_err());
}

#[test]
fn a_completed_member_that_fails_within_the_monitor_window_fails() {
    let mut s = settings(1, FailureAction::Rollback, 0);
    s.monitor_ms = 1000;
    let r = rollout(2, s);
    let mut w = World::for_rollout(&r);
    let (r, _) = w.tick(&r, 0);
    w.end(&alias("a0"), EndKind::Completed, 100);
    let (r, _) = w.tick(&r, 100);
    assert_eq!(r.next_batch_at_ms, Some(100 + 1000 + 2000));
    w.failing.push(svc("a0-v2"));
    let (r, actions) = w.tick(&r, 500);
    assert!(
        matches!(&r.members[0].state, MemberState::RollingBack),
        "{:?}",
        r.members[0].state
    );
    assert!(matches!(&actions[..], [Action::Rollback { member: 0, .. }]));
    // After the window, a failure no longer counts.
    let r = rollout(1, {
        let mut s = settings(1, FailureAction::Pause, 0);
        s.monitor_ms = 1000;
        s
    });
    let mut w = World::for_rollout(&r);
    let (r, _) = w.tick(&r, 0);
    w.end(&alias("a0"), EndKind::Completed, 100);
    w.failing.push(svc("a0-v2"));
    let (r, _) = w.tick(&r, 1100);
    assert_eq!(r.state, RolloutState::Completed);
}

#[test]
fn abort_stops_running_members_and_skips_pending_ones() {
    let r = rollout(3, settings(2, FailureAction::Pause, 0));
    let mut w = World::for_rollout(&r);
    let (r, _) = w.tick(&r, 0);
    w.end(&alias("a0"), EndKind::Completed, 10);
    let (r, _) = w.tick(&r, 10);
    let (r, actions) = command(&r, Command::Abort, "ci", 20).unwrap();
    assert_eq!(r.state, RolloutState::Aborted);
    assert!(matches!(&actions[..], [Action::Abort { member: 1, .. }]));
    assert_eq!(states(&r), ["completed", "aborted", "skipped"]);
    assert!(command(&r, Command::Resume, "ci", 20).is_err());
    // A rollback after the abort takes back what it moved.
    let (r, actions) = command(&r, Command::Rollback, "ci", 30).unwrap();
    assert_eq!(r.state, RolloutState::RollingBack);
    assert!(matches!(&actions[..], [Action::Rollback { member: 0, .. }]));
}

#[test]
fn a_refused_start_fails_the_member_and_an_unchanged_one_is_skipped() {
    let r = rollout(2, settings(2, FailureAction::Continue, 1_000_000));
    let (mut r, actions) = {
        let w = World::for_rollout(&r);
        w.step(&r, 0)
    };
    let mut r2 = r.take().unwrap();
    record(&mut r2, &actions[0], Done::Refused("busy".into()), 0);
    record(&mut r2, &actions[1], Done::Unchanged, 0);
    assert_eq!(states(&r2), ["failed", "skipped"]);
    let w = World::for_rollout(&r2);
    let (r3, _) = w.step(&r2, 0);
    assert_eq!(r3.unwrap().state, RolloutState::Completed);
}

#[test]
fn a_rollout_round_trips_through_json() {
    let r = rollout(3, settings(2, FailureAction::Rollback, 250_000));
    let text = serde_json::to_string(&r).unwrap();
    assert!(text.contains("\"a0.internal.\""), "{text}");
    let back: Rollout = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
}

#[test]
fn the_journal_stores_and_forgets_rollouts_and_old_files_load_without_them() {
    use crate::state::{StoredDelta, StoredState};
    let r = rollout(2, settings(1, FailureAction::Pause, 0));
    let mut stored = StoredState::default();
    let mut delta = StoredDelta {
        rollouts: [("1".to_owned(), Some(r.clone()))].into(),
        ..StoredDelta::default()
    };
    assert!(!delta.is_empty());
    stored.apply(&delta);
    assert_eq!(stored.rollouts.get("1"), Some(&r));
    let text = serde_json::to_string(&stored).unwrap();
    assert_eq!(serde_json::from_str::<StoredState>(&text).unwrap(), stored);
    delta.rollouts = [("1".to_owned(), None)].into();
    stored.apply(&delta);
    assert!(stored.rollouts.is_empty());
    // Written before rollouts existed: no key at all.
    let old = serde_json::to_string(&stored).unwrap();
    assert!(!old.contains("rollouts"), "{old}");
    assert!(serde_json::from_str::<StoredState>(&old).is_ok());
}

#[test]
fn only_the_newest_ended_rollouts_are_kept() {
    let mut all = imbl::OrdMap::new();
    let kept = crate::bounds::ROLLOUTS_KEPT as u64;
    for id in 1..=kept + 3 {
        let mut r = rollout(1, settings(1, FailureAction::Pause, 0));
        r.id = id;
        // The second one still runs: it is never forgotten.
        if id != 2 {
            r.state = RolloutState::Completed;
        }
        all.insert(id, r);
    }
    forget_old(&mut all);
    let ids: Vec<u64> = all.keys().copied().collect();
    assert_eq!(ids.len() as u64, kept + 1);
    assert_eq!(ids[..3], [2, 4, 5]);
}
