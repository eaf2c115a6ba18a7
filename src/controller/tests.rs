use super::*;

use hickory_proto::rr::Name;

use crate::controller::history::AliasChange;
use crate::registry::{Base, Registry};
use crate::state::{ChangeKind, Phase};
use crate::testkit::{self, ConfigDir};

/// [`testkit::BASE`] with a second zone, `example.`, holding `app` on `web-v2` and `web-v3`.
fn config() -> String {
    format!(
        "{}\n[[zone]]\norigin = \"example.\"\nfile = \"example.zone\"\n\n{}\n{}",
        testkit::BASE,
        testkit::service("web-v3", &["10.0.0.3:8080"]),
        testkit::alias("app.example.", &["web-v2", "web-v3"]),
    )
}

/// The SOA serials written in the two zone files.
const FILE_SERIALS: [u32; 2] = [7, 100];
const STARTED_AT: u64 = 1_700_000_000_000;
const LATER: u64 = STARTED_AT + 60_000;

fn topology() -> Topology {
    Topology::build(&base(), &Registry::default(), [])
}

/// The config part of the test config.
pub(crate) fn base() -> Base {
    let config = ConfigDir::new(&[
        ("internal.zone", testkit::ZONE),
        ("example.zone", testkit::EXAMPLE_ZONE),
    ])
    .parse(&config());
    let file_serials: Vec<u32> = config.zones.iter().map(|z| z.serial).collect();
    assert_eq!(file_serials, FILE_SERIALS);
    Base::from_config(&config)
}

pub(crate) fn alias(name: &str) -> AliasName {
    AliasName::from_fqdn(&Name::from_ascii(name).unwrap())
}

pub(crate) fn services(names: &[&str]) -> Vec<ServiceName> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

/// The state of a first start: no stored state.
fn fresh(_topology: &Topology) -> State {
    let (state, notes) = initial_state(&base(), None, STARTED_AT);
    assert!(notes.is_empty(), "{notes:?}");
    state
}

fn link(
    topology: &Topology,
    state: &State,
    name: &str,
    targets: &[&str],
) -> Result<Option<State>, ControlError> {
    relink(
        topology,
        state,
        &alias(name),
        services(targets),
        "deploy",
        LATER,
    )
}

fn stored_alias(targets: &[&str], revision: u64) -> StoredAlias {
    StoredAlias {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        revision,
        changed_at_ms: 1_600_000_000_000,
        changed_by: "ci".into(),
        phase: Phase::Stable,
        previous: None,
        retired: None,
        ttl_served_s: 0,
        last_op: None,
    }
}

/// A stable alias state with nothing before it.
fn stable(targets: &[&str], revision: u64, changed_at_ms: u64, changed_by: &str) -> AliasState {
    AliasState {
        targets: services(targets),
        phase: Phase::Stable,
        previous: None,
        retired: None,
        ttl_served_s: 0,
        revision,
        changed_at_ms,
        changed_by: changed_by.into(),
        last_op: None,
    }
}

/// A promotion from `from` to `to` in phase Mixed, started at revision `id`.
fn mixed(from: &[&str], to: &[&str], id: u64) -> Phase {
    Phase::Mixed {
        step: None,
        op: testkit::promotion(id, from, to, STARTED_AT),
        since_ms: STARTED_AT,
        observe_until_ms: STARTED_AT + 10_000,
        confirmed: false,
    }
}

fn stored(aliases: &[(&str, StoredAlias)], serials: &[(&str, u32)]) -> StoredState {
    StoredState {
        serials: serials.iter().map(|(z, s)| (z.to_string(), *s)).collect(),
        aliases: aliases
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect(),
        ..StoredState::default()
    }
}

/// `initial_state` with `stored` and the file serials.
fn restart(_topology: &Topology, stored: &StoredState) -> (State, Vec<String>) {
    initial_state(&base(), Some(stored), LATER)
}

fn targets_of(state: &State, name: &str) -> Vec<ServiceName> {
    state.aliases[&alias(name)].targets.clone()
}

/// The serial `initial_state` starts the internal zone with, from a stored and a file serial.
fn restarted_serial(stored_serial: u32, file_serial: u32) -> u32 {
    let mut base = base();
    Arc::get_mut(&mut base.zones).unwrap()[0].file_serial = file_serial;
    let stored = stored(&[], &[("internal.", stored_serial)]);
    let (state, _) = initial_state(&base, Some(&stored), LATER);
    state.serials[0]
}

// ---- relink ----

#[test]
fn relink_refuses_bad_requests_with_the_matching_error() {
    let topology = topology();
    let state = fresh(&topology);
    let cases: [(&str, &[&str], ControlError); 5] = [
        (
            "nope.internal.",
            &["web-v1"],
            ControlError::UnknownAlias("nope.internal".into()),
        ),
        ("web.internal.", &[], ControlError::EmptyTargets),
        (
            "web.internal.",
            &["web-v1", "web-v9"],
            ControlError::UnknownService {
                name: "web-v9".into(),
                known: "web-v1, web-v2, web-v3".into(),
            },
        ),
        (
            "web.internal.",
            &["web-v1", "web-v2", "web-v1"],
            ControlError::DuplicateTarget("web-v1".into()),
        ),
        // The alias is checked first.
        (
            "nope.internal.",
            &[],
            ControlError::UnknownAlias("nope.internal".into()),
        ),
    ];
    for (name, targets, want) in cases {
        let got = link(&topology, &state, name, targets);
        assert_eq!(got, Err(want), "{name} {targets:?}");
    }
}

#[test]
fn a_relink_bumps_the_revision_records_who_and_when_and_leaves_the_serials_alone() {
    let topology = topology();
    let before = fresh(&topology);
    let after = link(&topology, &before, "web.internal.", &["web-v2", "web-v3"])
        .unwrap()
        .expect("a change");

    assert_eq!(
        after.aliases[&alias("web.internal.")],
        AliasState {
            previous: Some(services(&["web-v1"])),
            ttl_served_s: topology.ttl_window_s(),
            ..stable(&["web-v2", "web-v3"], 2, LATER, "deploy")
        }
    );
    // The controller's commit bumps a serial when the answers change, not relink.
    assert_eq!(after.serials, before.serials);
    assert_eq!(
        after.aliases[&alias("app.example.")],
        before.aliases[&alias("app.example.")]
    );
    // Pure: the input state is untouched.
    assert_eq!(before, fresh(&topology));
}

#[test]
fn a_relink_in_the_second_zone_changes_that_alias_only() {
    let topology = topology();
    let before = fresh(&topology);
    let after = link(&topology, &before, "app.example.", &["web-v1"])
        .unwrap()
        .expect("a change");
    assert_eq!(after.serials, before.serials);
    assert_eq!(targets_of(&after, "app.example."), services(&["web-v1"]));
    assert_eq!(after.aliases[&alias("app.example.")].revision, 2);
    assert_eq!(after.aliases[&alias("web.internal.")].revision, 1);
}

#[test]
fn relinking_to_the_current_targets_changes_nothing() {
    let topology = topology();
    let state = fresh(&topology);
    assert_eq!(
        link(&topology, &state, "web.internal.", &["web-v1"]),
        Ok(None)
    );
    assert_eq!(
        link(&topology, &state, "app.example.", &["web-v2", "web-v3"]),
        Ok(None)
    );

    let changed = link(&topology, &state, "web.internal.", &["web-v2"])
        .unwrap()
        .unwrap();
    assert_eq!(
        link(&topology, &changed, "web.internal.", &["web-v2"]),
        Ok(None)
    );
}

#[test]
fn every_relink_counts_up_and_remembers_the_targets_before_it() {
    let topology = topology();
    let mut state = fresh(&topology);
    let serials = state.serials.clone();
    let mut before = services(&["web-v1"]);
    for (targets, revision) in [
        (&["web-v2"][..], 2),
        (&["web-v1", "web-v2"][..], 3),
        (&["web-v1"][..], 4),
    ] {
        state = link(&topology, &state, "web.internal.", targets)
            .unwrap()
            .expect("a change");
        let web = &state.aliases[&alias("web.internal.")];
        assert_eq!(web.revision, revision);
        assert_eq!(web.targets, services(targets));
        assert_eq!(web.previous.as_ref(), Some(&before));
        before = services(targets);
    }
    assert_eq!(state.serials, serials);
}

#[test]
fn a_relink_while_a_promotion_runs_is_a_conflict_naming_it() {
    let topology = topology();
    let mut state = fresh(&topology);
    let web = state.aliases.get_mut(&alias("web.internal.")).unwrap();
    web.phase = mixed(&["web-v1"], &["web-v2"], 2);
    web.revision = 2;
    let err = link(&topology, &state, "web.internal.", &["web-v3"]).unwrap_err();
    let ControlError::Conflict(message) = &err else {
        panic!("{err:?}");
    };
    for word in ["promotion 2 of web-v2", "phase mixed", "started by deploy"] {
        assert!(message.contains(word), "{word:?} not in {message:?}");
    }
}

// ---- initial_state ----

#[test]
fn without_stored_state_the_config_targets_start_at_revision_one() {
    let topology = topology();
    let state = fresh(&topology);
    assert_eq!(state.aliases.len(), 2);
    assert_eq!(
        state.aliases[&alias("web.internal.")],
        stable(&["web-v1"], 1, STARTED_AT, "config")
    );
    assert_eq!(
        targets_of(&state, "app.example."),
        services(&["web-v2", "web-v3"])
    );
    assert_eq!(state.serials, [FILE_SERIALS[0] + 1, FILE_SERIALS[1] + 1]);
}

#[test]
fn stored_links_win_over_the_config() {
    let topology = topology();
    let stored = stored(
        &[("web.internal.", stored_alias(&["web-v3", "web-v2"], 7))],
        &[],
    );
    let (state, notes) = restart(&topology, &stored);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        state.aliases[&alias("web.internal.")],
        stable(&["web-v3", "web-v2"], 7, 1_600_000_000_000, "ci")
    );
    // An alias the store does not know starts from the config.
    let app = &state.aliases[&alias("app.example.")];
    assert_eq!(app.targets, services(&["web-v2", "web-v3"]));
    assert_eq!(app.revision, 1);
    assert_eq!(app.changed_by, "config");
}

#[test]
fn a_stored_service_the_config_no_longer_has_is_dropped_with_a_note() {
    let topology = topology();
    let stored = stored(
        &[(
            "web.internal.",
            stored_alias(&["web-v2", "web-v9", "Not A Name"], 4),
        )],
        &[],
    );
    let (state, notes) = restart(&topology, &stored);
    assert_eq!(
        state.aliases[&alias("web.internal.")],
        stable(&["web-v2"], 5, LATER, "config")
    );
    assert_eq!(notes.len(), 2, "{notes:?}");
    for (note, gone) in notes.iter().zip(["web-v9", "Not A Name"]) {
        assert!(note.contains("`web.internal`"), "{note}");
        assert!(note.contains(&format!("service `{gone}`")), "{note}");
        assert!(note.contains("dropped"), "{note}");
    }
}

#[test]
fn when_every_stored_service_is_gone_the_config_targets_are_used_with_a_note() {
    let topology = topology();
    let stored = stored(
        &[("web.internal.", stored_alias(&["web-v8", "web-v9"], 4))],
        &[],
    );
    let (state, notes) = restart(&topology, &stored);
    assert_eq!(
        state.aliases[&alias("web.internal.")],
        stable(&["web-v1"], 5, LATER, "config")
    );
    assert_eq!(notes.len(), 3, "{notes:?}");
    let last = notes.last().unwrap();
    assert!(last.contains("alias `web.internal`"), "{last}");
    assert!(last.contains("none of its stored services exist"), "{last}");
    assert!(last.contains("config's targets"), "{last}");
}

#[test]
fn a_stored_alias_the_config_no_longer_has_is_forgotten_with_a_note() {
    let topology = topology();
    let stored = stored(
        &[
            ("old.internal.", stored_alias(&["web-v1"], 3)),
            ("web.internal.", stored_alias(&["web-v2"], 2)),
        ],
        &[],
    );
    let (state, notes) = restart(&topology, &stored);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("stored alias `old.internal.`"),
        "{}",
        notes[0]
    );
    assert!(notes[0].contains("not in the config"), "{}", notes[0]);
    let names: Vec<String> = state.aliases.keys().map(|a| a.to_string()).collect();
    assert!(!names.contains(&"old.internal".to_owned()), "{names:?}");
    assert_eq!(names.len(), 2);
    assert_eq!(targets_of(&state, "web.internal."), services(&["web-v2"]));
}

#[test]
fn a_stored_serial_after_the_file_serial_is_continued_from() {
    assert_eq!(restarted_serial(50, 7), 51);
    // RFC 1982: 5 comes after 4294967290 (the serial wrapped around).
    assert_eq!(restarted_serial(5, 4_294_967_290), 6);
    assert_eq!(restarted_serial(u32::MAX, 4_294_967_000), 0);
}

#[test]
fn a_file_serial_after_the_stored_serial_wins() {
    assert_eq!(restarted_serial(3, 7), 8);
    assert_eq!(restarted_serial(7, 7), 8);
    // RFC 1982: 4294967290 comes before 5.
    assert_eq!(restarted_serial(4_294_967_290, 5), 6);
    assert_eq!(restarted_serial(4_294_967_290, 2026010100), 2026010101);
}

#[test]
fn stored_serials_apply_to_their_own_zone_only() {
    let topology = topology();
    let stored = stored(&[], &[("example.", 500), ("gone.", 9000)]);
    let (state, notes) = restart(&topology, &stored);
    assert_eq!(state.serials, [FILE_SERIALS[0] + 1, 501]);
    assert!(notes.is_empty(), "{notes:?}");
}

// ---- to_stored ----

#[test]
fn to_stored_keys_zones_and_aliases_by_their_absolute_names() {
    let topology = topology();
    let state = link(
        &topology,
        &fresh(&topology),
        "web.internal.",
        &["web-v3", "web-v1"],
    )
    .unwrap()
    .unwrap();
    let stored = to_stored(&topology, &state);
    let expected_serials = [
        ("example.".to_owned(), FILE_SERIALS[1] + 1),
        ("internal.".to_owned(), FILE_SERIALS[0] + 1),
    ];
    assert_eq!(stored.serials, expected_serials.into_iter().collect());
    assert_eq!(
        stored.aliases["web.internal."],
        StoredAlias {
            targets: vec!["web-v3".into(), "web-v1".into()],
            revision: 2,
            changed_at_ms: LATER,
            changed_by: "deploy".into(),
            phase: Phase::Stable,
            previous: Some(vec!["web-v1".into()]),
            retired: None,
            ttl_served_s: topology.ttl_window_s(),
            last_op: None,
        }
    );
    let keys: Vec<&str> = stored.aliases.keys().map(String::as_str).collect();
    assert_eq!(keys, ["app.example.", "web.internal."]);
}

#[test]
fn a_stored_state_loads_back_with_its_links_and_a_later_serial() {
    let topology = topology();
    let state = link(
        &topology,
        &fresh(&topology),
        "web.internal.",
        &["web-v2", "web-v1"],
    )
    .unwrap()
    .unwrap();
    let stored = to_stored(&topology, &state);
    let json = serde_json::to_string(&stored).unwrap();
    let reloaded: StoredState = serde_json::from_str(&json).unwrap();
    assert_eq!(reloaded, stored);

    let (restarted, notes) = restart(&topology, &reloaded);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(restarted.aliases, state.aliases);
    let next: Vec<u32> = state.serials.iter().map(|s| s + 1).collect();
    assert_eq!(restarted.serials, next);
}

// ---- promotions across a restart ----

#[test]
fn a_stored_promotion_is_picked_up_where_it_was() {
    let topology = topology();
    let retired = machine::Retired {
        stop_old: false,
        stopped_at_ms: None,
        services: services(&["web-v3"]),
        safe_to_stop_at_ms: STARTED_AT,
        op: 3,
        // As in a state written before retirements recorded the operation's kind.
        kind: None,
    };
    let stored = stored(
        &[(
            "web.internal.",
            StoredAlias {
                phase: mixed(&["web-v1"], &["web-v2"], 9),
                previous: Some(vec!["web-v3".into(), "web-v9".into()]),
                retired: Some(retired.clone()),
                ttl_served_s: 30,
                ..stored_alias(&["web-v1"], 9)
            },
        )],
        &[],
    );
    let (state, notes) = restart(&topology, &stored);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        state.aliases[&alias("web.internal.")],
        AliasState {
            phase: mixed(&["web-v1"], &["web-v2"], 9),
            // A service the config no longer has cannot be rolled back to.
            previous: Some(services(&["web-v3"])),
            retired: Some(retired),
            ttl_served_s: 30,
            ..stable(&["web-v1"], 9, 1_600_000_000_000, "ci")
        }
    );
}

#[test]
fn a_stored_promotion_naming_a_service_the_config_no_longer_has_is_dropped_with_a_note() {
    let topology = topology();
    for (from, to) in [(["web-v1"], ["web-v9"]), (["web-v8"], ["web-v2"])] {
        let stored = stored(
            &[(
                "web.internal.",
                StoredAlias {
                    phase: mixed(&from, &to, 4),
                    ..stored_alias(&["web-v1"], 4)
                },
            )],
            &[],
        );
        let (state, notes) = restart(&topology, &stored);
        assert_eq!(
            state.aliases[&alias("web.internal.")],
            stable(&["web-v1"], 5, LATER, "config"),
            "{from:?} -> {to:?}"
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        for word in ["alias `web.internal`", "stored mixed", "dropped"] {
            assert!(notes[0].contains(word), "{word:?} not in {:?}", notes[0]);
        }
    }
}

#[test]
fn to_stored_keeps_the_phase_and_a_restart_reads_it_back() {
    let topology = topology();
    let mut state = fresh(&topology);
    let web = state.aliases.get_mut(&alias("web.internal.")).unwrap();
    web.phase = mixed(&["web-v1"], &["web-v2", "web-v3"], 2);
    web.previous = Some(services(&["web-v3"]));
    web.ttl_served_s = 30;
    web.revision = 2;
    // How an earlier operation ended is stored with the phase and read back.
    let earlier = mixed(&["web-v3"], &["web-v1"], 1);
    web.last_op = Some(machine::Ended {
        op: earlier.operation().unwrap().clone(),
        outcome: machine::EndKind::Aborted,
        reached: machine::Reached::Mixed,
        at_ms: LATER,
        by: "oncall".into(),
        why: Some("errors".into()),
        revision: 1,
    });
    let stored = to_stored(&topology, &state);
    let web_stored = &stored.aliases["web.internal."];
    assert_eq!(
        web_stored.phase,
        state.aliases[&alias("web.internal.")].phase
    );
    assert_eq!(web_stored.previous, Some(vec!["web-v3".to_owned()]));
    assert_eq!(web_stored.ttl_served_s, 30);
    assert_eq!(
        web_stored.last_op,
        state.aliases[&alias("web.internal.")].last_op
    );

    let json = serde_json::to_string(&stored).unwrap();
    let (restarted, notes) = restart(&topology, &serde_json::from_str(&json).unwrap());
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(restarted.aliases, state.aliases);
}

// ---- counts and history entries ----

#[test]
fn counts_add_up_the_endpoints_of_every_service_by_health() {
    let topology = topology();
    let endpoint =
        |s: &str| topology.services[&s.parse::<ServiceName>().unwrap()].endpoints[0].endpoint;
    let health: HealthMap = [
        (
            ("web-v1".parse().unwrap(), endpoint("web-v1")),
            Health::Healthy,
        ),
        (
            ("web-v2".parse().unwrap(), endpoint("web-v2")),
            Health::Unhealthy,
        ),
        (
            ("web-v3".parse().unwrap(), endpoint("web-v3")),
            Health::Unknown,
        ),
    ]
    .into_iter()
    .collect();
    let cases: [(&[&str], Counts); 5] = [
        (
            &["web-v1"],
            Counts {
                total: 1,
                healthy: 1,
                failed: 0,
            },
        ),
        (
            &["web-v2"],
            Counts {
                total: 1,
                healthy: 0,
                failed: 1,
            },
        ),
        (
            &["web-v3"],
            Counts {
                total: 1,
                healthy: 0,
                failed: 0,
            },
        ),
        (
            &["web-v1", "web-v2", "web-v3"],
            Counts {
                total: 3,
                healthy: 1,
                failed: 1,
            },
        ),
        (&["web-v9"], Counts::default()),
    ];
    for (names, want) in cases {
        assert_eq!(
            counts(&topology, &health, &services(names)),
            want,
            "{names:?}"
        );
    }
    // An endpoint the map does not know is unknown.
    let got = counts(&topology, &HealthMap::new(), &services(&["web-v1"]));
    assert_eq!(
        got,
        Counts {
            total: 1,
            healthy: 0,
            failed: 0
        }
    );
}

#[test]
fn a_history_entry_shows_the_state_after_the_change() {
    let web = alias("web.internal.");
    let change = |kind| Change {
        kind,
        actor: "deploy".into(),
        reason: Some("why".into()),
    };
    let in_mixed = AliasState {
        phase: mixed(&["web-v1"], &["web-v2"], 4),
        ..stable(&["web-v1"], 5, LATER, "deploy")
    };
    assert_eq!(
        entry(&web, &in_mixed, &change(ChangeKind::Mixed)),
        HistoryEntry {
            seq: 0,
            subject: Subject::Alias(AliasChange {
                alias: "web.internal.".into(),
                revision: 5,
                phase: "mixed".into(),
                targets: vec!["web-v1".into()],
                answering: vec!["web-v1".into(), "web-v2".into()],
                op: Some(4),
                op_kind: Some(OpKind::Promote),
            }),
            at_ms: LATER,
            actor: "deploy".into(),
            change: ChangeKind::Mixed,
            reason: Some("why".into()),
        }
    );

    // After the operation, the targets are the new ones and they alone answer.
    let completed = stable(&["web-v2"], 8, LATER, "deploy");
    let done = entry(&web, &completed, &change(ChangeKind::Completed));
    assert_eq!(done.change, ChangeKind::Completed);
    let done = done.alias().unwrap();
    assert_eq!(done.revision, 8);
    assert_eq!(done.phase, "stable");
    assert_eq!(done.targets, ["web-v2"]);
    assert_eq!(done.answering, ["web-v2"]);

    // The stop of retired containers belongs to the operation that retired them, kind and all;
    // a retirement stored before kinds were recorded gives none.
    let retired = |kind| machine::Retired {
        services: services(&["web-v1"]),
        safe_to_stop_at_ms: LATER,
        op: 4,
        kind,
        stop_old: true,
        stopped_at_ms: Some(LATER),
    };
    for kind in [Some(OpKind::Promote), Some(OpKind::Rollback), None] {
        let after = AliasState {
            retired: Some(retired(kind)),
            ..completed.clone()
        };
        let stopped = entry(&web, &after, &change(ChangeKind::Stopped));
        let stopped = stopped.alias().unwrap();
        assert_eq!((stopped.op, stopped.op_kind), (Some(4), kind));
    }
    // Other changes of a stable alias belong to no operation.
    let linked = entry(&web, &completed, &change(ChangeKind::Linked));
    let linked = linked.alias().unwrap();
    assert_eq!((linked.op, linked.op_kind), (None, None));
}

mod virtual_time;
