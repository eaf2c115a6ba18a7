use super::*;

const WEB: &str = "web.internal.";
const API: &str = "api.internal.";

fn entry(alias: &str, revision: u64) -> HistoryEntry {
    let subject = Subject::Alias(AliasChange {
        alias: alias.into(),
        revision,
        phase: "stable".into(),
        targets: vec![format!("web-v{revision}")],
        answering: vec![format!("web-v{revision}")],
        op: (revision > 2).then_some(revision - 1),
        op_kind: (revision > 2).then_some(OpKind::Rollback),
    });
    HistoryEntry {
        seq: 0,
        subject: if alias.is_empty() {
            Subject::Config
        } else {
            subject
        },
        at_ms: 1_700_000_000_000 + revision,
        actor: "deploy".into(),
        change: ChangeKind::Linked,
        reason: revision
            .is_multiple_of(2)
            .then(|| format!("change {revision}")),
    }
}

fn committed(revisions: &[(&str, u64)]) -> HashMap<String, u64> {
    revisions.iter().map(|(a, r)| (a.to_string(), *r)).collect()
}

fn file(dir: &Path) -> PathBuf {
    dir.join(HISTORY_FILE)
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(file(dir)).unwrap().len()
}

/// Opens the history in `dir` (every alias committed) and appends `entries` in one go.
/// Returns the file length before the append.
fn write(dir: &Path, entries: &[HistoryEntry]) -> u64 {
    let (mut history, _) = History::open(dir, &HashMap::new(), None).unwrap();
    history.append(entries).unwrap()
}

fn reopen(dir: &Path, committed: &HashMap<String, u64>) -> Vec<HistoryEntry> {
    History::open(dir, committed, Some(0)).unwrap().1
}

/// Where each line of the file starts, and the file's bytes.
fn lines(dir: &Path) -> (Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(file(dir)).unwrap();
    let mut starts = vec![0];
    starts.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(i, b)| **b == b'\n' && i + 1 < bytes.len())
            .map(|(i, _)| i + 1),
    );
    (starts, bytes)
}

#[test]
fn a_missing_file_is_an_empty_history() {
    let dir = tempfile::tempdir().unwrap();
    let (_, entries) = History::open(dir.path(), &HashMap::new(), None).unwrap();
    assert!(entries.is_empty());
    assert_eq!(file_len(dir.path()), 0);
}

#[test]
fn appended_entries_read_back_in_order_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let all = [entry(WEB, 1), entry(API, 1), entry(WEB, 2), entry(WEB, 3)];
    let (mut history, _) = History::open(dir.path(), &HashMap::new(), None).unwrap();
    assert_eq!(history.append(&all[..2]).unwrap(), 0);
    let before = history.append(&all[2..]).unwrap();
    assert!(before > 0 && before < file_len(dir.path()));
    drop(history);

    let read = reopen(dir.path(), &committed(&[(WEB, 3), (API, 1)]));
    assert_eq!(read, all);
    // Each line is `<crc32 hex> <json>`.
    let text = std::fs::read_to_string(file(dir.path())).unwrap();
    assert_eq!(text.lines().count(), 4);
    for line in text.lines() {
        let (crc, json) = line.split_once(' ').unwrap();
        assert_eq!(crc, format!("{:08x}", crc32fast::hash(json.as_bytes())));
    }
}

#[test]
fn appends_after_a_reopen_go_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[entry(WEB, 1)]);
    write(dir.path(), &[entry(WEB, 2)]);
    assert_eq!(
        reopen(dir.path(), &HashMap::new()),
        [entry(WEB, 1), entry(WEB, 2)]
    );
}

#[test]
fn entries_the_state_never_committed_are_dropped_and_the_file_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[entry(WEB, 1), entry(API, 1), entry(WEB, 2)]);
    let committed_len = file_len(dir.path());
    // The append of web's revision 3 (and what came after it) was never committed.
    write(dir.path(), &[entry(WEB, 3), entry(API, 2)]);
    let commits = committed(&[(WEB, 2), (API, 2)]);

    let read = reopen(dir.path(), &commits);
    assert_eq!(read, [entry(WEB, 1), entry(API, 1), entry(WEB, 2)]);
    assert_eq!(file_len(dir.path()), committed_len);
    // The cut is durable: a second open finds the same.
    assert_eq!(reopen(dir.path(), &commits), read);
}

#[test]
fn an_alias_the_state_does_not_know_keeps_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[entry(WEB, 1), entry(API, 5)]);
    let read = reopen(dir.path(), &committed(&[(WEB, 1)]));
    assert_eq!(read, [entry(WEB, 1), entry(API, 5)]);
}

#[test]
fn a_torn_or_damaged_last_line_is_dropped_and_cut_off() {
    /// How the last line ends up, from the line as written.
    type Damage = fn(&[u8]) -> Vec<u8>;
    let damages: [(&str, Damage); 3] = [
        ("no newline", |line| line[..line.len() - 10].to_vec()),
        ("bad checksum", |line| {
            let mut line = line.to_vec();
            line[20] ^= 0x01;
            line
        }),
        ("not json", |_| {
            format!("{:08x} {{oops\n", crc32fast::hash(b"{oops")).into_bytes()
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[entry(WEB, 1), entry(WEB, 2)]);
        let (starts, mut bytes) = lines(dir.path());
        let last = starts[1];
        let damaged = damage(&bytes[last..]);
        bytes.truncate(last);
        bytes.extend_from_slice(&damaged);
        std::fs::write(file(dir.path()), &bytes).unwrap();

        let read = reopen(dir.path(), &committed(&[(WEB, 2)]));
        assert_eq!(read, [entry(WEB, 1)], "{what}");
        assert_eq!(file_len(dir.path()), last as u64, "{what}");
    }
}

#[test]
fn a_damaged_line_before_the_last_is_refused_and_the_file_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[entry(WEB, 1), entry(WEB, 2), entry(WEB, 3)]);
    let (starts, mut bytes) = lines(dir.path());
    // A flipped bit in the JSON of the second line.
    bytes[starts[1] + 20] ^= 0x01;
    std::fs::write(file(dir.path()), &bytes).unwrap();

    let err = History::open(dir.path(), &committed(&[(WEB, 3)]), Some(0)).unwrap_err();
    let StoreError::Corrupt { path, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &file(dir.path()));
    assert!(reason.starts_with("line 2: "), "{reason}");
    assert!(reason.contains("checksum mismatch"), "{reason}");
    assert!(err.to_string().contains(HISTORY_FILE), "{err}");
    assert_eq!(std::fs::read(file(dir.path())).unwrap(), bytes);
}

#[test]
fn truncate_cuts_back_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut history, _) = History::open(dir.path(), &HashMap::new(), None).unwrap();
    history.append(&[entry(WEB, 1)]).unwrap();
    let before = history.append(&[entry(WEB, 2), entry(WEB, 3)]).unwrap();
    history.truncate(before).unwrap();
    assert_eq!(file_len(dir.path()), before);
    // Later appends follow the cut.
    history.append(&[entry(API, 1)]).unwrap();
    drop(history);
    assert_eq!(
        reopen(dir.path(), &HashMap::new()),
        [entry(WEB, 1), entry(API, 1)]
    );
}

#[test]
fn numbered_entries_are_kept_up_to_the_committed_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let numbered = |seq: u64, e: HistoryEntry| HistoryEntry { seq, ..e };
    let service = HistoryEntry {
        subject: Subject::Service("vm".into()),
        ..entry(WEB, 1)
    };
    // An old unnumbered entry, then numbered ones: one for a service, one for an alias.
    write(
        dir.path(),
        &[
            entry(API, 1),
            numbered(1, service.clone()),
            numbered(2, entry(WEB, 2)),
            numbered(3, entry(WEB, 3)),
        ],
    );
    let kept = History::open(dir.path(), &committed(&[(API, 1)]), Some(2))
        .unwrap()
        .1;
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[1].subject, Subject::Service("vm".into()));
    assert_eq!(kept[2].seq, 2);
    // Entry 3 was never committed: it is gone from the file as well.
    let again = History::open(dir.path(), &HashMap::new(), Some(3))
        .unwrap()
        .1;
    assert_eq!(again.len(), 3);
    // Without a stored state, nothing is dropped.
    write(dir.path(), &[numbered(9, entry(WEB, 9))]);
    assert_eq!(
        History::open(dir.path(), &HashMap::new(), None)
            .unwrap()
            .1
            .len(),
        4
    );
}

#[test]
fn the_newest_entries_across_lists_come_newest_first_up_to_the_limit() {
    // Three lists as the writer keeps them (each oldest first): unnumbered entries from before
    // numbering are older than every numbered one.
    let numbered = |seq: u64, e: HistoryEntry| HistoryEntry { seq, ..e };
    let web = vec![
        entry(WEB, 1),
        numbered(2, entry(WEB, 2)),
        numbered(5, entry(WEB, 3)),
    ];
    let api = vec![numbered(3, entry(API, 1)), numbered(6, entry(API, 2))];
    let config = vec![numbered(4, entry("", 1))];
    let lists = || [web.as_slice(), api.as_slice(), &[], config.as_slice()];
    let order = |limit| -> Vec<(String, u64)> {
        newest(lists(), limit)
            .into_iter()
            .map(|e| {
                let revision = e.revision();
                (
                    e.alias().map(|a| a.alias.clone()).unwrap_or_default(),
                    revision,
                )
            })
            .collect()
    };
    let all = vec![
        (API.to_owned(), 2),
        (WEB.to_owned(), 3),
        // The config's entry: no alias, no revision.
        (String::new(), 0),
        (API.to_owned(), 1),
        (WEB.to_owned(), 2),
        (WEB.to_owned(), 1),
    ];
    assert_eq!(order(100), all);
    assert_eq!(order(3), all[..3].to_vec());
    assert_eq!(order(0), Vec::new());
    assert!(newest([], 10).is_empty());
}

#[test]
fn an_entry_says_whether_its_operation_is_a_rollback_and_old_entries_still_load() {
    let e = entry(WEB, 3);
    let json = serde_json::to_string(&e).unwrap();
    assert!(json.contains(r#""op":2,"op_kind":"rollback""#), "{json}");
    assert_eq!(serde_json::from_str::<HistoryEntry>(&json).unwrap(), e);
    // Written before the kind was recorded: it loads without one.
    let old = r#"{"alias":"web.internal.","revision":3,"at_ms":1,"actor":"deploy","change":"mixed","phase":"mixed","targets":["web-v1"],"answering":["web-v1","web-v2"],"op":2}"#;
    let loaded: HistoryEntry = serde_json::from_str(old).unwrap();
    let a = loaded.alias().unwrap();
    assert_eq!((a.op, a.op_kind), (Some(2), None));
}
