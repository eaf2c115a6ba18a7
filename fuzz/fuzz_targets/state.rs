//! The state directory's files as aliasd loads them at start: `state.json` (checkpoint),
//! `state.journal` (changes since) and `history.jsonl`. The input is the three files, split at
//! NUL bytes; its first byte says which of them get their checksums made right, so the fuzzer
//! reaches the JSON inside as well as the framing around it. A load may refuse the directory as
//! damaged, naming the file, but never panic; what it accepts must render (state, snapshot,
//! every alias's API view, every history entry); and loading again gives the same state, so a
//! torn tail dropped on the first start is dropped the same way.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use aliasd::config::Config;
use aliasd::controller::history::History;
use aliasd::state::StoredState;
use aliasd::controller::store::{Store, StoreError};
use libfuzzer_sys::fuzz_target;

static CONFIG: LazyLock<Config> = LazyLock::new(|| aliasd_fuzz::fixture().config);

/// Each line prefixed with its right checksum.
fn with_checksums(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        out.extend_from_slice(format!("{:08x} ", crc32fast::hash(line)).as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn load(dir: &std::path::Path) -> Result<(Option<StoredState>, Vec<String>), StoreError> {
    let (store, stored) = Store::open(dir)?;
    let committed: HashMap<String, u64> = stored
        .as_ref()
        .map(|s| {
            s.aliases
                .iter()
                .map(|(k, a)| (k.clone(), a.revision))
                .collect()
        })
        .unwrap_or_default();
    let committed_seq = stored.as_ref().map(|s| s.history_seq);
    let (_history, entries) = History::open(store.dir(), &committed, committed_seq)?;
    let entries = entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("a history entry serializes"))
        .collect();
    Ok((stored, entries))
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&flags, rest)) = bytes.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0);
    let (state, journal, history) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let dir = aliasd_fuzz::scratch();
    let write = |name: &str, body: Vec<u8>| {
        if !body.is_empty() {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
    };
    write(
        "state.json",
        if flags & 1 != 0 {
            let mut file = format!(
                "aliasd-state 1 {} {:08x}\n",
                state.len(),
                crc32fast::hash(state)
            )
            .into_bytes();
            file.extend_from_slice(state);
            file.push(b'\n');
            file
        } else {
            state.to_vec()
        },
    );
    let checked = |on: bool, text: &[u8]| {
        if on {
            with_checksums(text)
        } else {
            text.to_vec()
        }
    };
    write("state.journal", checked(flags & 2 != 0, journal));
    write("history.jsonl", checked(flags & 4 != 0, history));

    match load(dir.path()) {
        Ok((stored, entries)) => {
            aliasd_fuzz::render(&CONFIG, stored.as_ref());
            let again = load(dir.path()).expect("a directory that loaded once loads again");
            assert_eq!(again.0, stored, "the state changed between two loads");
            assert_eq!(again.1, entries, "the history changed between two loads");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(&dir.path().display().to_string()),
                "an error that does not name the file: {message}"
            );
        }
    }
});
