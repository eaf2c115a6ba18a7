use super::*;
use crate::config::Config;
use crate::controller::history::Subject;
use crate::controller::store::checked_line;
use crate::model::AliasName;

/// A state directory aliasd wrote at commit 0cbf697 (before history entries were typed), with
/// the config it ran with: see that config's first lines for what was done to it.
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/controller/recover/testdata/main-0cbf697"
);
const NOW: u64 = 1_800_000_000_000;

/// The fixture copied to a scratch directory (recovery writes a checkpoint), and its config.
fn fixture() -> (tempfile::TempDir, Base) {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(FIXTURE);
    std::fs::create_dir(dir.path().join("state")).unwrap();
    for name in [
        "aliasd.toml",
        "internal.zone",
        "state/state.json",
        "state/state.journal",
        "state/history.jsonl",
    ] {
        std::fs::copy(from.join(name), dir.path().join(name)).unwrap();
    }
    let path = dir.path().join("aliasd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::parse(&text, &path, &|_| Some("fixture-secret-0123456789".into()))
        .unwrap_or_else(|e| panic!("{e}"));
    (dir, Base::from_config(&config))
}

#[test]
fn a_state_directory_written_by_an_earlier_aliasd_recovers_whole() {
    let (dir, base) = fixture();
    let recovered = recover(&dir.path().join("state"), &base, NOW).unwrap();
    assert!(recovered.notes.is_empty(), "{:?}", recovered.notes);

    // The checkpoint with the journal replayed: every acknowledged change is there.
    let loaded = recovered.loaded.as_ref().unwrap();
    assert_eq!(loaded.history_seq, 16);
    let web = &loaded.aliases["web.internal."];
    assert_eq!(
        (web.revision, web.targets.as_slice()),
        (11, &["web-v1".to_owned()][..])
    );
    assert_eq!(loaded.aliases["app.internal."].revision, 1);
    assert!(loaded.services.contains_key("vm-v1"));
    assert!(!loaded.services.contains_key("vm-v2"));
    assert!(loaded.alias_specs.contains_key("app.internal."));

    // Every entry loads with its subject: alias changes, services, the config.
    let entries = &recovered.entries;
    assert_eq!(
        entries.len(),
        16,
        "nothing changed at start, so nothing was added"
    );
    let count = |f: fn(&Subject) -> bool| entries.iter().filter(|e| f(&e.subject)).count();
    assert_eq!(count(|s| matches!(s, Subject::Alias(_))), 12);
    assert_eq!(count(|s| matches!(s, Subject::Service(_))), 3);
    assert_eq!(count(|s| matches!(s, Subject::Config)), 1);
    let rollback_done = entries[12].alias().unwrap();
    assert_eq!(
        (
            rollback_done.revision,
            rollback_done.op,
            rollback_done.op_kind
        ),
        (11, Some(8), Some(super::super::machine::OpKind::Rollback))
    );

    // Written again, every entry is the same bytes as the file it came from.
    let file = std::fs::read(Path::new(FIXTURE).join("state/history.jsonl")).unwrap();
    let again: Vec<u8> = entries.iter().flat_map(checked_line).collect();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        String::from_utf8(file).unwrap()
    );

    // The state recovered is the one stored: its links, and serials above every one served.
    let web = AliasName::resolve("web.internal.", &hickory_proto::rr::Name::root()).unwrap();
    assert_eq!(recovered.state.aliases[&web].revision, 11);
    assert!(recovered.state.serials[0] > loaded.serials["internal."]);
}

#[test]
fn recovering_twice_loads_what_the_first_recovery_checkpointed() {
    let (dir, base) = fixture();
    let state_dir = dir.path().join("state");
    let first = recover(&state_dir, &base, NOW).unwrap();
    let mut checkpoint = to_stored(&first.topology, &first.state);
    let entries = first.entries.clone();
    drop(first);
    let second = recover(&state_dir, &base, NOW + 1).unwrap();
    let mut loaded = second.loaded.unwrap();
    (loaded.journal_seq, checkpoint.journal_seq) = (0, 0);
    assert_eq!(loaded, checkpoint);
    assert_eq!(second.entries, entries);
}
