use super::*;
use crate::check::HealthSpec;
use crate::controller::machine::{
    EndKind, Ended, OpKind, Operation, Phase, PromoteOptions, Reached, Retired,
};
use crate::registry::{AliasSpec, ApiService, ContainerRef, DockerEndpoint, DockerHealth};
use crate::state::StoredAlias;
use crate::state::StoredDelta;

fn names(services: &[&str]) -> Vec<String> {
    services.iter().map(|s| s.to_string()).collect()
}

/// `web` is stable after a completed promotion; `api` is in the middle of one.
fn sample() -> StoredState {
    let mut s = StoredState::default();
    s.serials.insert("internal.".into(), 42);
    s.aliases.insert(
        "web.internal.".into(),
        StoredAlias {
            targets: names(&["web-v2"]),
            revision: 3,
            changed_at_ms: 1_700_000_000_000,
            changed_by: "deploy".into(),
            phase: Phase::Stable,
            previous: Some(names(&["web-v1"])),
            retired: Some(Retired {
                stop_old: false,
                stopped_at_ms: None,
                services: vec!["web-v1".parse().unwrap()],
                safe_to_stop_at_ms: 1_700_000_032_000,
                op: 2,
                kind: Some(OpKind::Rollback),
            }),
            ttl_served_s: 30,
            last_op: Some(Ended {
                op: Operation {
                    salt: String::new(),
                    id: 2,
                    kind: OpKind::Promote,
                    from: vec!["web-v1".parse().unwrap()],
                    to: vec!["web-v2".parse().unwrap()],
                    options: PromoteOptions {
                        steps: Vec::new(),
                        gates: Default::default(),
                        stop_old: true,
                        observe_ms: 10_000,
                        confirm: false,
                        min_healthy: None,
                        warm_timeout_ms: 120_000,
                    },
                    actor: "deploy".into(),
                    reason: None,
                    started_at_ms: 1_699_999_900_000,
                },
                outcome: EndKind::Completed,
                reached: Reached::Draining,
                at_ms: 1_700_000_000_000,
                by: "deploy".into(),
                why: None,
                revision: 3,
            }),
        },
    );
    let op = Operation {
        salt: String::new(),
        id: 5,
        kind: OpKind::Rollback,
        from: vec!["api-v2".parse().unwrap()],
        to: vec!["api-v1".parse().unwrap()],
        options: PromoteOptions {
            steps: Vec::new(),
            gates: Default::default(),
            stop_old: false,
            observe_ms: 10_000,
            confirm: true,
            min_healthy: Some(1),
            warm_timeout_ms: 120_000,
        },
        actor: "oncall".into(),
        reason: Some("errors".into()),
        started_at_ms: 1_700_000_100_000,
    };
    s.aliases.insert(
        "api.internal.".into(),
        StoredAlias {
            targets: names(&["api-v2"]),
            revision: 6,
            changed_at_ms: 1_700_000_101_000,
            changed_by: "oncall".into(),
            phase: Phase::Mixed {
                step: None,
                op,
                since_ms: 1_700_000_101_000,
                observe_until_ms: 1_700_000_111_000,
                confirmed: false,
            },
            previous: None,
            retired: None,
            ttl_served_s: 5,
            last_op: None,
        },
    );
    // What the API and Docker defined.
    s.services.insert(
        "vm".into(),
        ApiService {
            endpoints: vec!["10.1.0.1:9000".parse().unwrap()],
            health: HealthSpec::from_pairs(["kind=http", "path=/ready"]).unwrap(),
            changed_by: "deploy".into(),
            changed_at_ms: 1_700_000_000_500,
        },
    );
    s.alias_specs.insert(
        "api.internal.".into(),
        AliasSpec {
            port_name: "grpc".into(),
            if_none_healthy: crate::config::IfNoneHealthy::All,
            created_by: "deploy".into(),
            created_at_ms: 1_700_000_000_600,
        },
    );
    s.docker.insert(
        "web-v2".into(),
        vec![DockerEndpoint {
            endpoint: "172.30.0.5:8080".parse().unwrap(),
            container: ContainerRef {
                id: "0123456789abcdef".into(),
                name: "web-v2-1".into(),
            },
            health: HealthSpec::default(),
            port_name: Some("http-alt".into()),
            docker_health: Some(DockerHealth::Died("exited with code 137".into())),
        }],
    );
    s.history_seq = 12;
    s
}

#[test]
fn a_saved_state_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, loaded) = Journal::open(dir.path()).unwrap();
    assert_eq!(loaded, None);
    store.save(&sample()).unwrap();
    drop(store);
    let (_, loaded) = Journal::open(dir.path()).unwrap();
    assert_eq!(loaded, Some(sample()));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, _) = Journal::open(dir.path()).unwrap();
    let err = Journal::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn truncated_and_corrupt_files_are_refused_and_left_alone() {
    let good = encode(&sample());
    let damaged = [
        ("truncated", good[..good.len() - 10].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let i = b.len() - 20;
            b[i] ^= 0x01;
            b
        }),
        ("empty", Vec::new()),
        ("foreign", b"{\"aliases\":{}}\n".to_vec()),
    ];
    for (what, bytes) in damaged {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        fs::write(&path, &bytes).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{what}: {err}");
        assert!(err.to_string().contains("state.json"), "{what}: {err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "{what}: the file was changed"
        );
    }
}

#[test]
fn a_state_file_written_before_promotions_loads_as_stable() {
    let dir = tempfile::tempdir().unwrap();
    let body = br#"{"serials":{"internal.":7},"aliases":{"web.internal.":{"targets":["web-v1"],"revision":2,"changed_at_ms":1600000000000,"changed_by":"ci"}}}"#;
    let mut file = format!(
        "{MAGIC} {VERSION} {} {:08x}\n",
        body.len(),
        crc32fast::hash(body)
    )
    .into_bytes();
    file.extend_from_slice(body);
    file.push(b'\n');
    fs::write(dir.path().join(STATE_FILE), file).unwrap();
    let (_, loaded) = Journal::open(dir.path()).unwrap();
    let web = &loaded.unwrap().aliases["web.internal."];
    assert_eq!(web.phase, Phase::Stable);
    assert_eq!(web.previous, None);
    assert_eq!(web.retired, None);
    assert_eq!(web.ttl_served_s, 0);
    assert_eq!(web.last_op, None);
    assert_eq!(web.targets, names(&["web-v1"]));
}

#[test]
fn a_save_replaces_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Journal::open(dir.path()).unwrap();
    store.save(&sample()).unwrap();
    let mut next = sample();
    next.aliases.remove("api.internal.");
    next.serials.insert("internal.".into(), 43);
    store.save(&next).unwrap();
    drop(store);
    let (_, loaded) = Journal::open(dir.path()).unwrap();
    assert_eq!(loaded, Some(next));
    assert!(!dir.path().join(format!("{STATE_FILE}.tmp")).exists());
}

// ---- the journal ----

/// A record that relinks `web` to `targets`, removes `api` and moves the serial reserve.
fn relink(targets: &[&str], serial: u32) -> StoredDelta {
    let mut web = sample().aliases["web.internal."].clone();
    web.targets = names(targets);
    web.revision += 1;
    let mut d = StoredDelta {
        history_seq: 13,
        ..StoredDelta::default()
    };
    d.aliases.insert("web.internal.".into(), Some(web));
    d.aliases.insert("api.internal.".into(), None);
    d.serials.insert("internal.".into(), serial);
    d
}

/// What `sample()` becomes after `relink(targets, serial)`.
fn after(targets: &[&str], serial: u32, seq: u64) -> StoredState {
    let mut s = sample();
    let d = StoredDelta {
        seq,
        ..relink(targets, serial)
    };
    s.apply(&d);
    s
}

fn checkpointed(dir: &Path) -> Journal {
    let (mut store, _) = Journal::open(dir).unwrap();
    store.checkpoint(&mut sample()).unwrap();
    store
}

#[test]
fn journal_records_apply_over_the_checkpoint_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = checkpointed(dir.path());
    store.append(&mut relink(&["web-v3"], 50)).unwrap();
    store.append(&mut relink(&["web-v4"], 60)).unwrap();
    assert_eq!(store.journal_seq(), 2);
    drop(store);
    let (store, loaded) = Journal::open(dir.path()).unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded, after(&["web-v4"], 60, 2));
    assert_eq!(loaded.aliases.get("api.internal."), None);
    assert_eq!(store.journal_seq(), 2);
}

#[test]
fn a_torn_last_record_was_never_acknowledged_and_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = checkpointed(dir.path());
    store.append(&mut relink(&["web-v3"], 50)).unwrap();
    drop(store);
    let path = dir.path().join(JOURNAL_FILE);
    let good = fs::read(&path).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(&checked_line(&relink(&["web-v9"], 90))[..30]);
    fs::write(&path, &torn).unwrap();
    let (mut store, loaded) = Journal::open(dir.path()).unwrap();
    assert_eq!(loaded.unwrap(), after(&["web-v3"], 50, 1));
    assert_eq!(fs::read(&path).unwrap(), good, "the torn tail is cut off");
    // The next record follows on cleanly.
    store.append(&mut relink(&["web-v5"], 55)).unwrap();
    drop(store);
    let (_, loaded) = Journal::open(dir.path()).unwrap();
    assert_eq!(loaded.unwrap(), after(&["web-v5"], 55, 2));
}

#[test]
fn a_damaged_record_before_the_end_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = checkpointed(dir.path());
    store.append(&mut relink(&["web-v3"], 50)).unwrap();
    store.append(&mut relink(&["web-v4"], 60)).unwrap();
    drop(store);
    let path = dir.path().join(JOURNAL_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes[15] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = Journal::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if path.ends_with(JOURNAL_FILE)),
        "{err}"
    );
    assert!(err.to_string().contains("line 1"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "left as it was");
}

#[test]
fn a_checkpoint_empties_the_journal_and_a_crash_before_that_skips_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = checkpointed(dir.path());
    store.append(&mut relink(&["web-v3"], 50)).unwrap();
    let journal = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    let mut whole = after(&["web-v3"], 50, 1);
    store.checkpoint(&mut whole).unwrap();
    assert_eq!(whole.journal_seq, 1);
    assert_eq!(
        fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len(),
        0
    );
    drop(store);
    // As if aliasd died between the checkpoint and emptying the journal.
    fs::write(dir.path().join(JOURNAL_FILE), &journal).unwrap();
    let (mut store, loaded) = Journal::open(dir.path()).unwrap();
    assert_eq!(loaded.unwrap(), whole);
    store.append(&mut relink(&["web-v4"], 60)).unwrap();
    assert_eq!(store.journal_seq(), 2);
    drop(store);
    let (_, loaded) = Journal::open(dir.path()).unwrap();
    assert_eq!(loaded.unwrap(), after(&["web-v4"], 60, 2));
}

#[test]
fn a_journal_wants_a_checkpoint_after_enough_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = checkpointed(dir.path());
    for i in 0..JOURNAL_RECORDS {
        assert!(!store.wants_checkpoint(), "after {i} records");
        store.append(&mut relink(&["web-v3"], 50)).unwrap();
    }
    assert!(store.wants_checkpoint());
}
