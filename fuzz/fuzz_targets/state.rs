//! The state directory's files as aliasd loads them at start: `state.json` (checkpoint),
//! `state.journal` (changes since) and `history.jsonl`. The input is the three files, split at
//! NUL bytes; its first byte says which of them get their checksums made right, so the fuzzer
//! reaches the JSON inside as well as the framing around it. A load may refuse the directory as
//! damaged, naming the file, but never panic; what it accepts must render (state, snapshot,
//! every alias's API view, every history entry); and a second start loads what the first
//! checkpointed and keeps every entry it committed, so a torn tail dropped on the first start
//! stays dropped. Both starts run [`recover`], the daemon's own recovery.
#![no_main]

use std::sync::LazyLock;

use aliasd::config::Config;
use aliasd::controller::recover::{Recovered, recover};
use aliasd::controller::store::StoreError;
use aliasd::controller::to_stored;
use aliasd::registry::Base;
use libfuzzer_sys::fuzz_target;

static CONFIG: LazyLock<Config> = LazyLock::new(|| aliasd_fuzz::fixture().config);
static BASE: LazyLock<Base> = LazyLock::new(|| Base::from_config(&CONFIG));
/// When the fuzzed starts happen.
const NOW: u64 = 1_700_000_000_000;

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

/// Recovers the directory as aliasd's start does; the history entries as JSON lines.
fn load(dir: &std::path::Path) -> Result<(Recovered, Vec<String>), StoreError> {
    let recovered = recover(dir, &BASE, NOW)?;
    let entries = recovered
        .entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("a history entry serializes"))
        .collect();
    Ok((recovered, entries))
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
        Ok((first, entries)) => {
            aliasd_fuzz::render(&CONFIG, first.loaded.as_ref());
            let mut checkpoint = to_stored(&first.topology, &first.state);
            drop(first);
            let (again, again_entries) =
                load(dir.path()).expect("a directory that recovered once recovers again");
            // What the first start checkpointed is what the second loads, and every entry it
            // committed is still there.
            let mut loaded = again.loaded.expect("the first start wrote a checkpoint");
            (loaded.journal_seq, checkpoint.journal_seq) = (0, 0);
            assert_eq!(loaded, checkpoint, "the state changed between two starts");
            assert!(
                again_entries.starts_with(&entries),
                "the history lost entries between two starts"
            );
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
