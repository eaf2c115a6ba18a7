//! Recovery: from a state directory to the state the writer starts from.
//!
//! One function, [`recover`], used by the daemon's start, the `state` fuzz target and the
//! benchmarks (through the daemon): it opens and locks the directory, replays the journal over
//! the checkpoint, keeps the history entries the state committed, builds the starting state
//! from the config and what was stored, records what the start itself changed, and writes the
//! first checkpoint, so the journal starts empty.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::history::{History, HistoryEntry};
use super::machine::{Change, ChangeKind};
use super::store::{FileStore, Journal, StoreError};
use super::{SERIAL_RESERVE, entry, initial_state, to_stored};
use crate::registry::{Base, Topology};
use crate::state::{State, StoredState};

/// What a state directory holds, ready for the writer.
#[derive(Debug)]
pub struct Recovered {
    /// The directory, locked, with the first checkpoint written.
    pub store: FileStore,
    /// What was stored before this start (the checkpoint with the journal replayed over it).
    pub loaded: Option<StoredState>,
    /// The state to start with, as the first checkpoint holds it.
    pub state: State,
    pub topology: Arc<Topology>,
    /// Every committed history entry, oldest first, with those of this start at the end.
    pub entries: Vec<HistoryEntry>,
    /// Stored data that no longer fits the config, for the operator.
    pub notes: Vec<String>,
}

/// Opens `dir` and builds the starting state from `base` and what it holds (see the module
/// docs). `now_ms` stamps the changes the start makes.
pub fn recover(dir: &Path, base: &Base, now_ms: u64) -> Result<Recovered, StoreError> {
    let (mut journal, loaded) = Journal::open(dir)?;
    let committed: HashMap<String, u64> = loaded
        .as_ref()
        .map(|s| {
            s.aliases
                .iter()
                .map(|(k, a)| (k.clone(), a.revision))
                .collect()
        })
        .unwrap_or_default();
    let committed_seq = loaded.as_ref().map(|s| s.history_seq);
    let (mut history, mut entries) = History::open(journal.dir(), &committed, committed_seq)?;
    let (mut state, notes) = initial_state(base, loaded.as_ref(), now_ms);
    // Entries of older files may carry higher numbers than a state that was moved away.
    state.history_seq = state
        .history_seq
        .max(entries.iter().map(|e| e.seq).max().unwrap_or(0));
    let topology = Arc::new(Topology::build(
        base,
        &state.registry,
        state.named_services(),
    ));
    let window = topology.ttl_window_s();
    state.aliases = std::mem::take(&mut state.aliases)
        .into_iter()
        .map(|(name, mut alias)| {
            alias.ttl_served_s = alias.ttl_served_s.max(window);
            (name, alias)
        })
        .collect();
    // Changes made at start (first start, or the config overruling stored links) are history too.
    let mut started = changed_at_start(&state, &committed);
    for e in &mut started {
        state.history_seq += 1;
        e.seq = state.history_seq;
    }
    history.append(&started)?;
    entries.extend(started);
    state.serial_reserve = state
        .serials
        .iter()
        .map(|s| s.wrapping_add(SERIAL_RESERVE))
        .collect();
    // Every start writes a fresh checkpoint: the journal starts empty.
    journal.checkpoint(&mut to_stored(&topology, &state))?;
    Ok(Recovered {
        store: FileStore { journal, history },
        loaded,
        state,
        topology,
        entries,
        notes,
    })
}

/// The history entries of what a start changed (a first start, or the config overruling
/// stored links): every alias whose revision is not the one `committed` holds. Unnumbered.
pub fn changed_at_start(state: &State, committed: &HashMap<String, u64>) -> Vec<HistoryEntry> {
    state
        .aliases
        .iter()
        .filter(|(name, a)| committed.get(&name.name().to_ascii()) != Some(&a.revision))
        .map(|(name, a)| {
            entry(
                name,
                a,
                &Change {
                    kind: ChangeKind::Linked,
                    actor: a.changed_by.clone(),
                    reason: Some("at start, from the config".into()),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
