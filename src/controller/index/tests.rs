use std::time::Duration;

use super::*;
use crate::controller::history::AliasChange;
use crate::controller::machine::ChangeKind;

const NOW: u64 = 1_700_000_000_000;

fn about(subject: Subject, seq: u64) -> HistoryEntry {
    HistoryEntry {
        seq,
        subject,
        at_ms: NOW + seq,
        actor: "deploy".into(),
        change: ChangeKind::Linked,
        reason: None,
    }
}

fn of_alias(name: &str, seq: u64) -> HistoryEntry {
    about(
        Subject::Alias(AliasChange {
            alias: name.into(),
            revision: seq,
            phase: "stable".into(),
            targets: vec!["web-v1".into()],
            answering: vec!["web-v1".into()],
            op: None,
            op_kind: None,
        }),
        seq,
    )
}

fn alias(name: &str) -> AliasName {
    AliasName::resolve(name, &Name::root()).unwrap()
}

fn keep(n: usize) -> Retention {
    Retention {
        keep_per_alias: n,
        max_age: Duration::from_secs(3600),
    }
}

#[test]
fn every_entry_goes_to_the_list_of_its_subject() {
    let index = HistoryIndex::load(vec![
        of_alias("web.internal.", 1),
        about(Subject::Service("vm".into()), 2),
        about(Subject::Config, 3),
        of_alias("web.internal.", 4),
        // A name that does not parse has no list: the entry is not kept.
        about(Subject::Service("not a service!".into()), 5),
    ]);
    let seqs = |list: &[HistoryEntry]| list.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(index.of_alias(&alias("web.internal."))), [1, 4]);
    assert_eq!(seqs(index.of_service(&"vm".parse().unwrap())), [2]);
    assert_eq!(seqs(&index.recent(10)), [4, 3, 2, 1]);
    assert!(index.of_alias(&alias("api.internal.")).is_empty());
    assert_eq!(index.garbage(), 1);
}

#[test]
fn one_set_of_counters_follows_the_retention_of_every_list() {
    let mut index = HistoryIndex::load(Vec::new());
    let retention = keep(2);
    // 100 changes of one alias and 100 of one service: each list keeps its newest two.
    for seq in 1..=100 {
        index.push(of_alias("web.internal.", seq), &retention, NOW);
        index.push(
            about(Subject::Service("vm".into()), 100 + seq),
            &retention,
            NOW,
        );
    }
    assert_eq!(index.of_alias(&alias("web.internal.")).len(), 2);
    assert_eq!(index.of_service(&"vm".parse().unwrap()).len(), 2);
    assert_eq!(index.garbage(), 196);
    assert!(index.worth_compacting());
    assert_eq!(index.kept().len(), 4);
    index.compacted(4);
    assert_eq!(index.garbage(), 0);
    assert!(!index.worth_compacting());
}

#[test]
fn the_age_limit_applies_when_a_trim_is_due_and_keeps_each_lists_newest() {
    let mut index = HistoryIndex::load(vec![
        of_alias("web.internal.", 1),
        of_alias("web.internal.", 2),
        about(Subject::Config, 3),
    ]);
    assert!(index.trim_due(NOW));
    let later = NOW + 2 * 3600 * 1000;
    index.trim(&keep(10), later);
    assert!(!index.trim_due(later + 1));
    assert!(index.trim_due(later + TRIM_EVERY_MS));
    // Every entry is too old, but each list keeps its newest (it carries the revision).
    assert_eq!(
        index.recent(10).iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 2]
    );
    assert_eq!(index.garbage(), 1);
}
