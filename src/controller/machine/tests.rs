use super::*;

use std::collections::BTreeMap;

/// The time of the first step of every test.
const T0: Ms = 1_700_000_000_000;
/// The TTL window the world serves with (seconds), and the drain grace.
const TTL_WINDOW: u32 = 30;
const GRACE: u64 = 2_000;
const OBSERVE: u64 = 10_000;
const WARM: u64 = 60_000;
/// The revision of the stable state every walk starts from.
const START_REVISION: u64 = 7;
const REASON: &str = "release 42";

fn svc(names: &[&str]) -> Vec<ServiceName> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

const fn counts(total: u32, healthy: u32, failed: u32) -> Counts {
    Counts {
        total,
        healthy,
        failed,
    }
}

fn opts() -> PromoteOptions {
    PromoteOptions {
        steps: Vec::new(),
        gates: Default::default(),
        stop_old: false,
        observe_ms: OBSERVE,
        confirm: false,
        min_healthy: None,
        warm_timeout_ms: WARM,
    }
}

fn with_min_healthy(min_healthy: Option<u32>) -> PromoteOptions {
    PromoteOptions {
        min_healthy,
        ..opts()
    }
}

fn with_confirm() -> PromoteOptions {
    PromoteOptions {
        confirm: true,
        ..opts()
    }
}

fn stable(targets: &[&str]) -> AliasState {
    AliasState {
        targets: svc(targets),
        phase: Phase::Stable,
        previous: None,
        retired: None,
        ttl_served_s: 0,
        revision: START_REVISION,
        changed_at_ms: T0 - 60_000,
        changed_by: "config".into(),
        last_op: None,
    }
}

fn link(targets: &[&str]) -> Input {
    Input::Link {
        targets: svc(targets),
        actor: "ci".into(),
    }
}

fn promote_as(kind: OpKind, to: &[&str], options: PromoteOptions) -> Input {
    Input::Promote {
        to: svc(to),
        options,
        kind,
        actor: "deploy".into(),
        reason: Some(REASON.into()),
    }
}

fn promote(to: &[&str], options: PromoteOptions) -> Input {
    promote_as(OpKind::Promote, to, options)
}

fn confirm() -> Input {
    Input::Confirm {
        actor: "lead".into(),
        reason: Some("looks good".into()),
    }
}

fn abort() -> Input {
    Input::Abort {
        actor: "oncall".into(),
        reason: Some("errors".into()),
    }
}

fn op(state: &AliasState) -> &Operation {
    state
        .phase
        .operation()
        .unwrap_or_else(|| panic!("no operation in phase {}", state.phase.name()))
}

fn retired(services: &[&str], safe_to_stop_at_ms: Ms, op: u64) -> Option<Retired> {
    Some(Retired {
        stop_old: false,
        stopped_at_ms: None,
        services: svc(services),
        safe_to_stop_at_ms,
        op,
        kind: Some(OpKind::Promote),
    })
}

/// The clock, the TTL window and the health counts the machine sees.
struct World {
    now: Ms,
    ttl_window_s: u32,
    health: BTreeMap<ServiceName, Counts>,
    /// Proxy work still open per service.
    busy: BTreeMap<ServiceName, u64>,
    /// Where the zone's secondaries stand on the drain.
    secondaries: Caught,
    /// What the proxy measured of the current step, as judged.
    measured: Measured,
}

/// How long a drain waits for proxy work after the TTL window.
const DRAIN_DEADLINE: u64 = 30_000;

impl World {
    /// `v1` has two healthy endpoints; `v2` and `v3` have two each, not checked yet.
    fn new() -> Self {
        let mut w = Self {
            now: T0,
            ttl_window_s: TTL_WINDOW,
            health: BTreeMap::new(),
            busy: BTreeMap::new(),
            secondaries: Caught::Since(0),
            measured: Measured::Nothing,
        };
        w.set("v1", counts(2, 2, 0));
        w.set("v2", counts(2, 0, 0));
        w.set("v3", counts(2, 0, 0));
        w
    }

    fn set(&mut self, service: &str, c: Counts) {
        self.health.insert(service.parse().unwrap(), c);
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// The drain window from now, for a state that served `ttl_served_s` at most.
    fn drained_at(&self, ttl_served_s: u32) -> Ms {
        self.now + u64::from(ttl_served_s.max(self.ttl_window_s)) * 1000 + GRACE
    }

    fn step(&self, state: &AliasState, input: Input) -> Result<Outcome, MachineError> {
        let sum = |services: &[ServiceName]| {
            services
                .iter()
                .filter_map(|s| self.health.get(s))
                .fold(Counts::default(), |acc, c| {
                    counts(
                        acc.total + c.total,
                        acc.healthy + c.healthy,
                        acc.failed + c.failed,
                    )
                })
        };
        let ctx = Ctx {
            now: self.now,
            ttl_window_s: self.ttl_window_s,
            grace_ms: GRACE,
            counts: &sum,
            busy: &|services| services.iter().filter_map(|s| self.busy.get(s)).sum(),
            drain_deadline_ms: DRAIN_DEADLINE,
            secondaries: &|| self.secondaries,
            measured: &|| self.measured.clone(),
        };
        step(state, input, &ctx)
    }

    /// Applies `input`, which must change `state`, and checks what every change keeps: the
    /// revision grows by exactly one and the time and actor are recorded.
    fn change(&self, state: &AliasState, input: Input) -> (AliasState, Change) {
        let what = format!("{input:?} in phase {}", state.phase.name());
        match self.step(state, input) {
            Ok(Outcome::Changed(next, change)) => {
                assert_eq!(next.revision, state.revision + 1, "{what}");
                assert_eq!(next.changed_at_ms, self.now, "{what}");
                assert_eq!(next.changed_by, change.actor, "{what}");
                assert!(next.ttl_served_s >= self.ttl_window_s, "{what}");
                (*next, change)
            }
            other => panic!("{what}: expected a change, got {other:?}"),
        }
    }

    /// A change that time or health makes: always credited to aliasd, whoever started the
    /// operation (`deploy` in these tests).
    fn tick(&self, state: &AliasState) -> (AliasState, Change) {
        let (next, change) = self.change(state, Input::Tick);
        assert_eq!(change.actor, AUTOMATIC, "{:?}", change.kind);
        (next, change)
    }

    fn assert_unchanged(&self, state: &AliasState, input: Input) {
        let what = format!("{input:?} in phase {}", state.phase.name());
        assert_eq!(self.step(state, input), Ok(Outcome::Unchanged), "{what}");
    }

    fn refused(&self, state: &AliasState, input: Input) -> MachineError {
        let what = format!("{input:?} in phase {}", state.phase.name());
        match self.step(state, input) {
            Err(e) => e,
            Ok(other) => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }

    // ---- walks from Stable(v1) to each phase of a promotion to v2 ----

    fn warming(&self, options: PromoteOptions) -> AliasState {
        self.change(&stable(&["v1"]), promote(&["v2"], options)).0
    }

    /// Warming, then `v2` all healthy a second later.
    fn mixed(&mut self, options: PromoteOptions) -> AliasState {
        let warming = self.warming(options);
        self.set("v2", counts(2, 2, 0));
        self.advance(1_000);
        let (mixed, _) = self.tick(&warming);
        assert_eq!(mixed.phase.name(), "mixed");
        mixed
    }

    /// Mixed without a confirm gate, then the observe time passes.
    fn draining(&mut self) -> AliasState {
        let mixed = self.mixed(opts());
        self.advance(OBSERVE);
        let (draining, _) = self.tick(&mixed);
        assert_eq!(draining.phase.name(), "draining");
        draining
    }
}

// ---- Link ----

#[test]
fn link_in_stable_relinks_and_remembers_the_previous_targets() {
    let w = World::new();
    let before = stable(&["v1"]);
    let (after, change) = w.change(&before, link(&["v2", "v3"]));
    assert_eq!(
        after,
        AliasState {
            targets: svc(&["v2", "v3"]),
            phase: Phase::Stable,
            previous: Some(svc(&["v1"])),
            retired: None,
            ttl_served_s: TTL_WINDOW,
            revision: START_REVISION + 1,
            changed_at_ms: T0,
            changed_by: "ci".into(),
            last_op: None,
        }
    );
    assert_eq!(
        change,
        Change {
            kind: ChangeKind::Linked,
            actor: "ci".into(),
            reason: None,
        }
    );
}

#[test]
fn link_to_the_same_targets_is_unchanged_and_to_none_is_refused() {
    let w = World::new();
    let state = stable(&["v1", "v2"]);
    w.assert_unchanged(&state, link(&["v1", "v2"]));
    assert_eq!(w.refused(&state, link(&[])), MachineError::EmptyTargets);
}

#[test]
fn link_and_promote_while_an_operation_runs_are_busy_naming_the_operation() {
    let mut w = World::new();
    let running = [w.warming(opts()), w.mixed(opts()), w.draining()];
    for state in running {
        let op = op(&state).clone();
        for input in [link(&["v3"]), promote(&["v3"], opts()), link(&["v1"])] {
            let err = w.refused(&state, input);
            assert_eq!(
                err,
                MachineError::Busy {
                    op: Box::new(op.clone()),
                    phase: state.phase.name(),
                }
            );
            let text = err.to_string();
            for word in [
                format!("promotion {}", op.id),
                "started by deploy".to_owned(),
                format!("phase {}", state.phase.name()),
            ] {
                assert!(text.contains(&word), "{word:?} not in {text:?}");
            }
        }
    }
}

// ---- Promote ----

#[test]
fn promote_to_the_current_targets_is_a_no_op() {
    let w = World::new();
    w.assert_unchanged(&stable(&["v1"]), promote(&["v1"], opts()));
    // Even with gates that could not be met.
    w.assert_unchanged(
        &stable(&["v1"]),
        promote(&["v1"], with_min_healthy(Some(99))),
    );
}

#[test]
fn promote_to_no_service_is_refused() {
    let w = World::new();
    assert_eq!(
        w.refused(&stable(&["v1"]), promote(&[], opts())),
        MachineError::EmptyTargets
    );
}

#[test]
fn promote_with_min_healthy_above_the_endpoint_total_is_refused() {
    let w = World::new();
    let state = stable(&["v1"]);
    let err = w.refused(&state, promote(&["v2", "v3"], with_min_healthy(Some(5))));
    assert_eq!(
        err,
        MachineError::MinHealthyTooHigh {
            wanted: 5,
            total: 4,
            services: "v2+v3".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "min_healthy is 5 but v2+v3 has only 4 endpoints"
    );
    // Exactly the total is allowed.
    let (next, _) = w.change(&state, promote(&["v2", "v3"], with_min_healthy(Some(4))));
    assert_eq!(next.phase.name(), "warming");
}

#[test]
fn promote_starts_warming_with_a_deadline_and_the_next_revision_as_its_id() {
    let w = World::new();
    let before = stable(&["v1"]);
    let (after, change) = w.change(&before, promote(&["v2"], opts()));
    let expected_op = Operation {
        salt: String::new(),
        id: START_REVISION + 1,
        kind: OpKind::Promote,
        from: svc(&["v1"]),
        to: svc(&["v2"]),
        options: opts(),
        actor: "deploy".into(),
        reason: Some(REASON.into()),
        started_at_ms: T0,
    };
    assert_eq!(
        after.phase,
        Phase::Warming {
            op: expected_op,
            deadline_ms: T0 + WARM,
        }
    );
    assert_eq!(after.phase.deadline(), Some(T0 + WARM));
    // The targets stay the old ones until the promotion completes.
    assert_eq!(after.targets, before.targets);
    assert_eq!(after.previous, None);
    assert_eq!(
        change,
        Change {
            kind: ChangeKind::Started,
            actor: "deploy".into(),
            reason: Some(REASON.into()),
        }
    );
}

#[test]
fn the_kind_of_an_operation_is_carried_through_its_phases() {
    let w = World::new();
    let (warming, _) = w.change(
        &stable(&["v1"]),
        promote_as(OpKind::Rollback, &["v3"], opts()),
    );
    assert_eq!(op(&warming).kind, OpKind::Rollback);
    let err = w.refused(&warming, link(&["v2"])).to_string();
    assert!(
        err.starts_with(&format!("rollback {} of v3", op(&warming).id)),
        "{err}"
    );

    let mut w = World::new();
    w.set("v3", counts(2, 2, 0));
    let (mixed, _) = w.tick(&warming);
    w.advance(OBSERVE);
    let (draining, _) = w.tick(&mixed);
    for state in [&mixed, &draining] {
        assert_eq!(op(state), op(&warming));
    }
}

// ---- Warming ----

#[test]
fn warming_moves_to_mixed_once_enough_endpoints_are_healthy() {
    // (min_healthy, v2 endpoints, healthy, moves to mixed)
    let cases = [
        // By default every endpoint must be healthy.
        (None, 2, 1, false),
        (None, 2, 2, true),
        (Some(1), 2, 1, true),
        (Some(1), 2, 0, false),
        (Some(2), 2, 1, false),
        // At least one, whatever is asked for.
        (Some(0), 2, 0, false),
        (Some(0), 2, 1, true),
        (None, 0, 0, false),
    ];
    for (min_healthy, total, healthy, moves) in cases {
        let what = format!("min_healthy {min_healthy:?}, {healthy} of {total} healthy");
        let mut w = World::new();
        w.set("v2", counts(total, 0, 0));
        let warming = w.warming(with_min_healthy(min_healthy));
        w.set("v2", counts(total, healthy, 0));
        w.advance(5_000);
        if !moves {
            w.assert_unchanged(&warming, Input::Tick);
            continue;
        }
        let (mixed, change) = w.tick(&warming);
        assert_eq!(
            mixed.phase,
            Phase::Mixed {
                step: None,
                op: op(&warming).clone(),
                since_ms: w.now,
                observe_until_ms: w.now + OBSERVE,
                confirmed: false,
            },
            "{what}"
        );
        assert_eq!(mixed.targets, svc(&["v1"]), "{what}");
        assert_eq!(change.kind, ChangeKind::Mixed, "{what}");
        assert_eq!(change.actor, "aliasd", "{what}");
        let reason = change.reason.unwrap_or_default();
        assert!(reason.contains(&format!("{healthy} healthy")), "{reason}");
    }
}

#[test]
fn warming_past_its_deadline_goes_back_to_a_and_b_may_stop_at_once() {
    let mut w = World::new();
    let warming = w.warming(opts());
    w.set("v2", counts(2, 1, 0));
    w.advance(WARM - 1);
    w.assert_unchanged(&warming, Input::Tick);
    w.advance(1);
    let (after, change) = w.tick(&warming);
    assert_eq!(after.phase, Phase::Stable);
    assert_eq!(after.targets, svc(&["v1"]));
    assert_eq!(after.previous, None);
    // B never answered, so nobody can have cached it.
    assert_eq!(after.retired, retired(&["v2"], w.now, op(&warming).id));
    assert_eq!(change.kind, ChangeKind::WarmTimeout);
    assert!(change.kind.is_failure());
    assert_eq!(change.actor, "aliasd");
    let reason = change.reason.unwrap_or_default();
    assert!(
        reason.contains("v2 had 1 healthy endpoint of 2 needed"),
        "{reason}"
    );
    // How it ended stays in the state, with what the timeout found.
    let ended = after.last_op.expect("the ended operation");
    assert_eq!(
        (ended.outcome, ended.reached, ended.at_ms, ended.by.as_str()),
        (EndKind::WarmTimeout, Reached::Warming, w.now, "aliasd")
    );
    assert_eq!(ended.why.as_deref(), Some(reason.as_str()));
    assert_eq!(ended.op, *op(&warming));
    assert_eq!(ended.revision, after.revision);
}

// ---- Mixed ----

#[test]
fn mixed_rolls_back_when_too_few_endpoints_of_b_are_left_up() {
    // (min_healthy, healthy, failed, rolls back); v2 has two endpoints.
    let cases = [
        (None, 1, 1, true),
        (None, 0, 2, true),
        (Some(1), 1, 1, false),
        (Some(1), 0, 2, true),
        // Unknown endpoints are neither healthy nor failed: no rollback.
        (None, 0, 0, false),
        (None, 1, 0, false),
    ];
    for (min_healthy, healthy, failed, rolls_back) in cases {
        let what = format!("min_healthy {min_healthy:?}, {healthy} healthy, {failed} failed");
        let mut w = World::new();
        let mixed = w.mixed(with_min_healthy(min_healthy));
        w.set("v2", counts(2, healthy, failed));
        w.advance(1_000);
        if !rolls_back {
            w.assert_unchanged(&mixed, Input::Tick);
            continue;
        }
        let (after, change) = w.tick(&mixed);
        assert_eq!(after.phase, Phase::Stable, "{what}");
        assert_eq!(after.targets, svc(&["v1"]), "{what}");
        // B answered: it may be cached until the drain window has passed.
        assert_eq!(
            after.retired,
            retired(&["v2"], w.drained_at(mixed.ttl_served_s), op(&mixed).id),
            "{what}"
        );
        assert_eq!(change.kind, ChangeKind::AutoRollback, "{what}");
        let reason = change.reason.unwrap_or_default();
        assert!(reason.contains("v2 turned unhealthy"), "{reason}");
        let ended = after.last_op.expect("the ended operation");
        assert_eq!(
            (ended.outcome, ended.reached, ended.why),
            (EndKind::AutoRollback, Reached::Mixed, Some(reason)),
            "{what}"
        );
    }
}

#[test]
fn a_failing_b_rolls_back_even_when_the_observe_time_is_over() {
    let mut w = World::new();
    let mixed = w.mixed(opts());
    w.advance(OBSERVE);
    w.set("v2", counts(2, 1, 1));
    let (after, change) = w.tick(&mixed);
    assert_eq!(change.kind, ChangeKind::AutoRollback);
    assert_eq!(after.phase, Phase::Stable);
}

#[test]
fn mixed_moves_to_draining_once_observed_for_the_longest_ttl_served() {
    // (TTL served so far, the TTL window now, the drain window)
    let cases = [
        (0, TTL_WINDOW, u64::from(TTL_WINDOW) * 1000 + GRACE),
        (300, TTL_WINDOW, 300_000 + GRACE),
        (30, 60, 60_000 + GRACE),
    ];
    for (served, window, drain_ms) in cases {
        let mut w = World::new();
        let mut mixed = w.mixed(opts());
        mixed.ttl_served_s = served;
        w.ttl_window_s = window;
        w.advance(OBSERVE - 1);
        w.assert_unchanged(&mixed, Input::Tick);
        w.advance(1);
        assert_eq!(Some(w.now), mixed.phase.deadline());
        let (draining, change) = w.tick(&mixed);
        assert_eq!(
            draining.phase,
            Phase::Draining {
                op: op(&mixed).clone(),
                since_ms: w.now,
                until_ms: w.now + drain_ms,
            },
            "served {served}, window {window}"
        );
        assert_eq!(draining.targets, svc(&["v1"]));
        assert_eq!(change.kind, ChangeKind::Draining);
        assert_eq!(change.actor, "aliasd");
    }
}

#[test]
fn with_a_confirm_gate_mixed_waits_for_the_confirm_after_observing() {
    let mut w = World::new();
    let mixed = w.mixed(with_confirm());
    w.advance(OBSERVE);
    w.assert_unchanged(&mixed, Input::Tick);

    let (confirmed, change) = w.change(&mixed, confirm());
    let Phase::Mixed {
        op: ref mixed_op,
        since_ms,
        observe_until_ms,
        ..
    } = mixed.phase
    else {
        unreachable!()
    };
    assert_eq!(
        confirmed.phase,
        Phase::Mixed {
            step: None,
            op: mixed_op.clone(),
            since_ms,
            observe_until_ms,
            confirmed: true,
        }
    );
    assert_eq!(
        change,
        Change {
            kind: ChangeKind::Confirmed,
            actor: "lead".into(),
            reason: Some("looks good".into()),
        }
    );
    // A second confirm changes nothing.
    w.assert_unchanged(&confirmed, confirm());

    let (draining, change) = w.tick(&confirmed);
    assert_eq!(draining.phase.name(), "draining");
    assert_eq!(change.kind, ChangeKind::Draining);
}

#[test]
fn a_confirm_before_the_observe_time_is_over_still_waits_for_it() {
    let mut w = World::new();
    let mixed = w.mixed(with_confirm());
    let (confirmed, _) = w.change(&mixed, confirm());
    w.advance(OBSERVE - 1);
    w.assert_unchanged(&confirmed, Input::Tick);
    w.advance(1);
    let (draining, _) = w.tick(&confirmed);
    assert_eq!(draining.phase.name(), "draining");
}

#[test]
fn confirm_is_refused_outside_a_gated_mixed_phase() {
    let mut w = World::new();
    let cases = [
        (stable(&["v1"]), MachineError::NothingRunning),
        (
            w.warming(with_confirm()),
            MachineError::NotMixed { phase: "warming" },
        ),
        (w.mixed(opts()), MachineError::NoConfirmGate),
        (w.draining(), MachineError::NotMixed { phase: "draining" }),
    ];
    for (state, want) in cases {
        assert_eq!(w.refused(&state, confirm()), want, "{}", state.phase.name());
    }
}

// ---- Draining ----

#[test]
fn draining_completes_at_its_end_and_a_may_stop_then() {
    let mut w = World::new();
    let mut draining = w.draining();
    let Phase::Draining { until_ms, .. } = draining.phase else {
        unreachable!()
    };
    // Answers served with a longer TTL before do not count after the switch.
    draining.ttl_served_s = 300;
    w.now = until_ms - 1;
    w.assert_unchanged(&draining, Input::Tick);
    w.now = until_ms;
    let (done, change) = w.tick(&draining);
    assert_eq!(
        done,
        AliasState {
            targets: svc(&["v2"]),
            phase: Phase::Stable,
            previous: Some(svc(&["v1"])),
            retired: retired(&["v1"], until_ms, op(&draining).id),
            ttl_served_s: TTL_WINDOW,
            revision: draining.revision + 1,
            changed_at_ms: until_ms,
            // The drain ended by itself: aliasd's change, not the operator's.
            changed_by: "aliasd".into(),
            last_op: Some(Ended {
                op: op(&draining).clone(),
                outcome: EndKind::Completed,
                reached: Reached::Draining,
                at_ms: until_ms,
                by: "aliasd".into(),
                why: None,
                revision: draining.revision + 1,
            }),
        }
    );
    assert_eq!(change.kind, ChangeKind::Completed);
    assert!(!change.kind.is_failure());
}

#[test]
fn draining_rolls_back_to_a_when_b_fails() {
    let mut w = World::new();
    let draining = w.draining();
    w.set("v2", counts(2, 1, 1));
    w.advance(1_000);
    let (after, change) = w.tick(&draining);
    assert_eq!(after.phase, Phase::Stable);
    assert_eq!(after.targets, svc(&["v1"]));
    assert_eq!(after.previous, None);
    assert_eq!(
        after.retired,
        retired(
            &["v2"],
            w.drained_at(draining.ttl_served_s),
            op(&draining).id
        )
    );
    assert_eq!(change.kind, ChangeKind::AutoRollback);
}

// ---- Abort and Tick in Stable ----

#[test]
fn abort_goes_back_to_a_and_retires_b_after_the_drain_window_if_it_answered() {
    let mut w = World::new();
    let states = [
        (w.warming(opts()), false),
        (w.mixed(opts()), true),
        (w.draining(), true),
    ];
    w.advance(1_000);
    for ((state, b_answered), reached) in
        states
            .into_iter()
            .zip([Reached::Warming, Reached::Mixed, Reached::Draining])
    {
        let phase = state.phase.name();
        let (after, change) = w.change(&state, abort());
        // The abort is recorded as the end of the operation, by who aborted it and why.
        assert_eq!(
            after.last_op,
            Some(Ended {
                op: op(&state).clone(),
                outcome: EndKind::Aborted,
                reached,
                at_ms: w.now,
                by: "oncall".into(),
                why: Some("errors".into()),
                revision: state.revision + 1,
            }),
            "{phase}"
        );
        assert_eq!(after.phase, Phase::Stable, "{phase}");
        assert_eq!(after.targets, svc(&["v1"]), "{phase}");
        let safe_at = if b_answered {
            w.drained_at(state.ttl_served_s)
        } else {
            w.now
        };
        assert_eq!(
            after.retired,
            retired(&["v2"], safe_at, op(&state).id),
            "{phase}"
        );
        assert_eq!(
            change,
            Change {
                kind: ChangeKind::Aborted,
                actor: "oncall".into(),
                reason: Some("errors".into()),
            },
            "{phase}"
        );
    }
}

#[test]
fn abort_and_tick_in_stable() {
    let w = World::new();
    let state = stable(&["v1"]);
    assert_eq!(w.refused(&state, abort()), MachineError::NothingRunning);
    w.assert_unchanged(&state, Input::Tick);
    assert_eq!(state.phase.deadline(), None);
}

// ---- what answers ----

#[test]
fn answering_and_draining_follow_the_phase() {
    let mut w = World::new();
    w.set("v3", counts(2, 2, 0));
    let from = stable(&["v1", "v2"]);
    let (warming, _) = w.change(&from, promote(&["v2", "v3"], opts()));
    w.set("v2", counts(2, 2, 0));
    let (mixed, _) = w.tick(&warming);
    w.advance(OBSERVE);
    let (draining, _) = w.tick(&mixed);
    let Phase::Draining { until_ms, .. } = draining.phase else {
        unreachable!()
    };
    w.now = until_ms;
    let (done, _) = w.tick(&draining);

    let cases: [(&AliasState, &[&str], &[&str]); 5] = [
        (&from, &["v1", "v2"], &[]),
        (&warming, &["v1", "v2"], &[]),
        // Both versions, each service once.
        (&mixed, &["v1", "v2", "v3"], &[]),
        (&draining, &["v2", "v3"], &["v1"]),
        (&done, &["v2", "v3"], &[]),
    ];
    for (state, answers, leaving) in cases {
        let phase = state.phase.name();
        assert_eq!(super::answering(state), svc(answers), "{phase}");
        assert_eq!(super::draining(state), svc(leaving), "{phase}");
    }
    // Only what left the answers is retired.
    assert_eq!(done.retired.unwrap().services, svc(&["v1"]));
}

#[test]
fn a_promotion_to_a_subset_retires_only_what_left() {
    let mut w = World::new();
    let from = stable(&["v1", "v2"]);
    let (warming, _) = w.change(&from, promote(&["v1"], opts()));
    let (mixed, _) = w.tick(&warming);
    assert_eq!(answering(&mixed), svc(&["v1", "v2"]));
    w.advance(OBSERVE);
    let (draining, _) = w.tick(&mixed);
    assert_eq!(super::draining(&draining), svc(&["v2"]));
    let Phase::Draining { until_ms, .. } = draining.phase else {
        unreachable!()
    };
    w.now = until_ms;
    let (done, _) = w.tick(&draining);
    assert_eq!(done.targets, svc(&["v1"]));
    assert_eq!(done.retired, retired(&["v2"], until_ms, op(&warming).id));
}

#[test]
fn aborting_retires_only_the_services_a_does_not_have() {
    let mut w = World::new();
    w.set("v3", counts(2, 2, 0));
    // To a superset: only the added service goes.
    let (warming, _) = w.change(&stable(&["v1"]), promote(&["v1", "v3"], opts()));
    let (mixed, _) = w.tick(&warming);
    let (aborted, _) = w.change(&mixed, abort());
    assert_eq!(aborted.retired.unwrap().services, svc(&["v3"]));
    // To a subset: nothing goes.
    let (warming, _) = w.change(&stable(&["v1", "v3"]), promote(&["v1"], opts()));
    let (mixed, _) = w.tick(&warming);
    let (aborted, _) = w.change(&mixed, abort());
    assert_eq!(aborted.targets, svc(&["v1", "v3"]));
    assert_eq!(aborted.retired, None);
}

// ---- every change ----

#[test]
fn a_whole_promotion_counts_up_one_revision_per_change() {
    let mut w = World::new();
    let mut state = stable(&["v1"]);
    let mut kinds = Vec::new();
    let mut apply = |w: &World, input: Input| {
        let (next, change) = w.change(&state, input);
        kinds.push((change.kind, next.revision, next.changed_at_ms));
        state = next;
    };
    apply(&w, promote(&["v2"], with_confirm()));
    w.set("v2", counts(2, 2, 0));
    w.advance(1);
    apply(&w, Input::Tick);
    w.advance(1);
    apply(&w, confirm());
    w.advance(OBSERVE);
    apply(&w, Input::Tick);
    w.advance(w.drained_at(0) - w.now);
    apply(&w, Input::Tick);
    w.advance(1);
    apply(&w, link(&["v1"]));

    let r = START_REVISION;
    assert_eq!(
        kinds,
        [
            (ChangeKind::Started, r + 1, T0),
            (ChangeKind::Mixed, r + 2, T0 + 1),
            (ChangeKind::Confirmed, r + 3, T0 + 2),
            (ChangeKind::Draining, r + 4, T0 + 2 + OBSERVE),
            (
                ChangeKind::Completed,
                r + 5,
                T0 + 2 + OBSERVE + u64::from(TTL_WINDOW) * 1000 + GRACE
            ),
            (
                ChangeKind::Linked,
                r + 6,
                T0 + 3 + OBSERVE + u64::from(TTL_WINDOW) * 1000 + GRACE
            ),
        ]
    );
}

// ---- retired services that come back ----

#[test]
fn a_retired_service_that_comes_back_is_no_longer_safe_to_stop() {
    let mut w = World::new();
    let draining = w.draining();
    w.advance(w.drained_at(draining.ttl_served_s) - w.now);
    let (done, _) = w.tick(&draining);
    assert_eq!(
        done.retired.as_ref().map(|r| r.services.clone()),
        Some(svc(&["v1"]))
    );

    // Promoting back to v1: v1 is about to get traffic again, so it is not retired any more.
    let (warming, _) = w.change(&done, promote(&["v1"], opts()));
    assert_eq!(warming.retired, None);
    // Linking back to it by hand clears it too.
    let (linked, _) = w.change(&done, link(&["v1", "v2"]));
    assert_eq!(linked.retired, None);
    // Linking to something else keeps v1 retired.
    let (other, _) = w.change(&done, link(&["v3"]));
    assert_eq!(other.retired.map(|r| r.services), Some(svc(&["v1"])));
}

// ---- the drain waits for the proxy's work on the old version ----

#[test]
fn draining_waits_for_proxy_work_on_the_old_version_until_the_drain_deadline() {
    let mut w = World::new();
    let draining = w.draining();
    w.busy.insert("v1".parse().unwrap(), 3);
    w.advance(w.drained_at(draining.ttl_served_s) - w.now);
    // The TTL window is over but three requests are still running on v1.
    w.assert_unchanged(&draining, Input::Tick);
    // Work on the new version does not hold the drain.
    w.busy.insert("v2".parse().unwrap(), 9);
    w.advance(DRAIN_DEADLINE - 1);
    w.assert_unchanged(&draining, Input::Tick);
    // At the drain deadline it ends anyway.
    w.advance(1);
    let (done, change) = w.tick(&draining);
    assert_eq!(change.kind, ChangeKind::Completed);
    assert_eq!(done.targets, svc(&["v2"]));

    // And with no work left it ends as soon as the window is over.
    let mut w = World::new();
    let draining = w.draining();
    w.busy.insert("v1".parse().unwrap(), 1);
    w.advance(w.drained_at(draining.ttl_served_s) - w.now);
    w.assert_unchanged(&draining, Input::Tick);
    w.busy.insert("v1".parse().unwrap(), 0);
    assert_eq!(w.tick(&draining).1.kind, ChangeKind::Completed);
}

// ---- the drain waits for the secondaries ----

#[test]
fn draining_waits_for_every_secondary_and_a_ttl_window_after_the_last_caught_up() {
    let mut w = World::new();
    let draining = w.draining();
    let window_over = w.drained_at(draining.ttl_served_s);
    let window = window_over - w.now;
    // A secondary still serves the old answers five seconds into the drain...
    w.secondaries = Caught::Waiting;
    w.advance(5_000);
    w.assert_unchanged(&draining, Input::Tick);
    // ...and catches up then: its clients may cache the old answers a TTL window from there,
    // so the end of the window counted from the switch is not enough.
    let caught = w.now;
    w.secondaries = Caught::Since(caught);
    w.advance(window_over - w.now);
    w.assert_unchanged(&draining, Input::Tick);
    w.advance(caught + window - 1 - w.now);
    w.assert_unchanged(&draining, Input::Tick);
    w.advance(1);
    let (done, change) = w.tick(&draining);
    assert_eq!(change.kind, ChangeKind::Completed);
    assert_eq!(done.retired.unwrap().safe_to_stop_at_ms, caught + window);

    // Secondaries that caught up at once hold nothing beyond the window.
    let mut w = World::new();
    let draining = w.draining();
    w.secondaries = Caught::Since(w.now);
    w.advance(w.drained_at(draining.ttl_served_s) - w.now);
    assert_eq!(w.tick(&draining).1.kind, ChangeKind::Completed);

    // One that never catches up holds the drain until the drain deadline, then it ends.
    let mut w = World::new();
    let draining = w.draining();
    w.secondaries = Caught::Waiting;
    w.advance(w.drained_at(draining.ttl_served_s) - w.now + DRAIN_DEADLINE - 1);
    w.assert_unchanged(&draining, Input::Tick);
    w.advance(1);
    assert_eq!(w.tick(&draining).1.kind, ChangeKind::Completed);
}

#[test]
fn with_stop_old_the_completed_promotion_asks_for_the_old_containers_to_stop_once() {
    let mut w = World::new();
    let stop_old = PromoteOptions {
        stop_old: true,
        ..opts()
    };
    let mixed = w.mixed(stop_old);
    w.advance(OBSERVE);
    let (draining, _) = w.tick(&mixed);
    let Phase::Draining { until_ms, .. } = draining.phase else {
        unreachable!()
    };
    w.now = until_ms;
    let (done, _) = w.tick(&draining);
    let r = done.retired.clone().unwrap();
    assert!(r.stop_old && r.stop_pending());
    assert_eq!(r.safe_to_stop_at_ms, until_ms);

    // A report for another operation changes nothing; the right one records the stop.
    let stopped = |op: u64| Input::Stopped {
        op,
        actor: "aliasd".into(),
        reason: "stopped web-v1-a (0123456789ab)".into(),
    };
    w.assert_unchanged(&done, stopped(r.op + 1));
    w.advance(500);
    let (after, change) = w.change(&done, stopped(r.op));
    assert_eq!(change.kind, ChangeKind::Stopped);
    assert_eq!(
        change.reason.as_deref(),
        Some("stopped web-v1-a (0123456789ab)")
    );
    let r = after.retired.clone().unwrap();
    assert_eq!(r.stopped_at_ms, Some(w.now));
    assert!(!r.stop_pending());
    // Reported twice, it is recorded once.
    w.assert_unchanged(&after, stopped(r.op));
}

#[test]
fn an_aborted_promotion_never_stops_anything() {
    let mut w = World::new();
    let mixed = w.mixed(PromoteOptions {
        stop_old: true,
        ..opts()
    });
    let (aborted, _) = w.change(&mixed, abort());
    let r = aborted.retired.unwrap();
    assert_eq!(r.services, svc(&["v2"]));
    assert!(!r.stop_old && !r.stop_pending());
}

// ---- Weighted steps ----

fn with_steps(text: &str) -> PromoteOptions {
    PromoteOptions {
        steps: crate::steps::parse_steps(text).unwrap(),
        ..opts()
    }
}

fn step_at(state: &AliasState) -> StepAt {
    match &state.phase {
        Phase::Mixed { step: Some(at), .. } => *at,
        other => panic!("expected a weighted step, got {}", other.name()),
    }
}

#[test]
fn a_stepped_promotion_starts_at_its_first_weight_with_a_salt_and_no_effect_yet() {
    let mut w = World::new();
    let mixed = w.mixed(with_steps("10%:1m,50%:pause,100%"));
    let at = step_at(&mixed);
    assert_eq!((at.index, at.weight, at.since_ms), (0, 10, w.now));
    assert_eq!(at.effective_ms, None);
    assert_eq!(op(&mixed).salt.len(), 16, "{:?}", op(&mixed).salt);
    let split = crate::state::split(&mixed).unwrap();
    assert_eq!(
        (split.old, split.new, split.weight),
        (&svc(&["v1"])[..], &svc(&["v2"])[..], 10)
    );
    // An unstepped promotion has no salt and no split.
    let plain = w.mixed(opts());
    assert!(op(&plain).salt.is_empty() && crate::state::split(&plain).is_none());
}

#[test]
fn a_step_takes_effect_once_every_secondary_serves_it_and_the_ttl_expired() {
    let mut w = World::new();
    let mixed = w.mixed(with_steps("10%:1m,100%"));
    let since = step_at(&mixed).since_ms;
    // The old answers are still cached: not in effect.
    w.advance(u64::from(TTL_WINDOW) * 1000 - 1);
    w.assert_unchanged(&mixed, Input::Tick);
    // A secondary has not caught up: still not in effect, however long.
    w.advance(1);
    w.secondaries = Caught::Waiting;
    w.assert_unchanged(&mixed, Input::Tick);
    w.advance(5_000);
    w.secondaries = Caught::Since(since + 33_000);
    let (effective, change) = w.tick(&mixed);
    assert_eq!(change.kind, ChangeKind::InEffect);
    assert!(
        change
            .reason
            .as_deref()
            .unwrap()
            .contains("step 1 of 2 (10%)")
    );
    assert!(change.reason.as_deref().unwrap().contains("holds 1m"));
    // Effective from when the last of the two conditions held, not from the tick.
    assert_eq!(step_at(&effective).effective_ms, Some(since + 33_000));
    // The hold counts from there.
    w.now = since + 33_000 + 60_000 - 1;
    w.assert_unchanged(&effective, Input::Tick);
    w.advance(1);
    let (draining, change) = w.tick(&effective);
    assert_eq!(change.kind, ChangeKind::Draining);
    assert_eq!(draining.phase.name(), "draining");
    assert!(change.reason.unwrap().contains("step 1 of 2 (10%) passed"));
}

#[test]
fn steps_move_on_in_order_and_a_paused_step_waits_for_a_confirm() {
    let mut w = World::new();
    w.ttl_window_s = 0;
    let mixed = w.mixed(with_steps("10%:1m,50%:pause,100%"));
    let (effective, _) = w.tick(&mixed);
    // A hold step cannot be confirmed.
    assert_eq!(
        w.refused(&effective, confirm()),
        MachineError::StepNotPaused {
            step: 1,
            weight: 10,
            hold: Some(std::time::Duration::from_secs(60))
        }
    );
    w.advance(60_000);
    let (second, change) = w.tick(&effective);
    assert_eq!(change.kind, ChangeKind::Step);
    assert!(
        change
            .reason
            .unwrap()
            .ends_with("step 2 of 3: 50% of clients")
    );
    let at = step_at(&second);
    assert_eq!((at.index, at.weight, at.effective_ms), (1, 50, None));
    assert_eq!(
        w.refused(&second, confirm()),
        MachineError::StepNotInEffect {
            step: 2,
            weight: 50
        }
    );
    let (paused, _) = w.tick(&second);
    assert!(step_at(&paused).effective_ms.is_some());
    w.advance(3_600_000);
    w.assert_unchanged(&paused, Input::Tick);
    let (confirmed, change) = w.change(&paused, confirm());
    assert_eq!(change.kind, ChangeKind::Confirmed);
    w.assert_unchanged(&confirmed, confirm());
    // The last step, 100%, neither holds nor pauses: the drain begins at once.
    let (draining, change) = w.tick(&confirmed);
    assert_eq!(change.kind, ChangeKind::Draining);
    assert_eq!(answering(&draining), svc(&["v2"]));
}

#[test]
fn a_breached_gate_rolls_back_with_the_figures_and_abort_works_at_any_step() {
    let mut w = World::new();
    w.ttl_window_s = 0;
    let mixed = w.mixed(with_steps("10%:1m,100%"));
    // Before the step is in effect, the figures are not judged.
    w.measured = Measured::Breach("error rate 21.3% > 1% over 812 requests".into());
    let (effective, change) = w.tick(&mixed);
    assert_eq!(change.kind, ChangeKind::InEffect);
    let (back, change) = w.tick(&effective);
    assert_eq!(change.kind, ChangeKind::AutoRollback);
    assert_eq!(
        change.reason.as_deref(),
        Some("step 1 of 2 (10%): error rate 21.3% > 1% over 812 requests")
    );
    assert_eq!(
        (back.phase.name(), back.targets.clone()),
        ("stable", svc(&["v1"]))
    );
    let ended = back.last_op.unwrap();
    assert_eq!(
        (ended.outcome, ended.reached),
        (EndKind::AutoRollback, Reached::Mixed)
    );
    // Within the gates, the summary goes into the history of the step's end.
    w.measured = Measured::Within("error rate 0.0% over 90 requests".into());
    w.advance(60_000);
    let (_, change) = w.tick(&effective);
    assert!(
        change
            .reason
            .unwrap()
            .contains("passed: error rate 0.0% over 90 requests")
    );
    // Abort from a step takes every client back to v1.
    let (aborted, change) = w.change(&effective, abort());
    assert_eq!(change.kind, ChangeKind::Aborted);
    assert_eq!(answering(&aborted), svc(&["v1"]));
    assert!(crate::state::split(&aborted).is_none());
}

#[test]
fn the_salt_differs_between_promotions_and_is_kept_through_the_steps() {
    let mut w = World::new();
    let first = w.mixed(with_steps("10%:1m,100%"));
    w.advance(1);
    w.ttl_window_s = 0;
    let second = w.mixed(with_steps("10%:1m,100%"));
    assert_ne!(op(&first).salt, op(&second).salt);
    let (effective, _) = w.tick(&second);
    assert_eq!(op(&effective).salt, op(&second).salt);
}

#[test]
fn a_last_step_of_100_percent_with_a_hold_is_held_before_the_drain() {
    let mut w = World::new();
    w.ttl_window_s = 0;
    let mixed = w.mixed(with_steps("50%,100%:10s"));
    let (effective, _) = w.tick(&mixed);
    let (last, change) = w.tick(&effective);
    assert_eq!(
        (change.kind, step_at(&last).weight),
        (ChangeKind::Step, 100)
    );
    // Every client on v2, v1 still there to fall back on while the step holds.
    assert_eq!(crate::state::split(&last).unwrap().weight, 100);
    let (held, _) = w.tick(&last);
    w.advance(9_999);
    w.assert_unchanged(&held, Input::Tick);
    w.advance(1);
    assert_eq!(w.tick(&held).1.kind, ChangeKind::Draining);
}
