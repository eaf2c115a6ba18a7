//! The history the writer keeps in memory: per alias, per service and of the config, each
//! list oldest first and trimmed by the retention, with one set of counters saying how much of
//! the file the retention dropped (so the file is compacted when worth it).

use std::collections::HashMap;

use hickory_proto::rr::Name;

use super::history::{HistoryEntry, Subject, newest};
use crate::config::Retention;
use crate::model::{AliasName, ServiceName};

/// The history file is rewritten once it holds this many entries the retention dropped (and
/// at least half as many as it keeps), so a rewrite's cost is spread over many changes.
const COMPACT_MIN_GARBAGE: usize = 64;
/// How often the retention's age limit is applied to every list.
pub const TRIM_EVERY_MS: u64 = 60_000;

/// Where an entry is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Alias(AliasName),
    Service(ServiceName),
    Config,
}

impl Key {
    /// The one routing rule: an entry goes to the list of its subject. A name that does not
    /// parse (a hand-edited file) has no list; the entry is not kept in memory.
    fn of(subject: &Subject) -> Option<Self> {
        match subject {
            Subject::Alias(a) => AliasName::resolve(&a.alias, &Name::root())
                .ok()
                .map(Key::Alias),
            Subject::Service(s) => s.parse().ok().map(Key::Service),
            Subject::Config => Some(Key::Config),
        }
    }
}

/// The kept history, and how it stands against the file.
#[derive(Debug, Clone, Default)]
pub struct HistoryIndex {
    lists: HashMap<Key, Vec<HistoryEntry>>,
    /// Entries in the history file, and of those the ones kept here.
    file_entries: usize,
    kept_entries: usize,
    /// When the retention's age limit was last applied to every list.
    last_trim_ms: u64,
}

impl HistoryIndex {
    /// The index of the file's committed `entries` (oldest first), not yet trimmed.
    pub fn load(entries: Vec<HistoryEntry>) -> Self {
        let mut index = Self {
            file_entries: entries.len(),
            ..Self::default()
        };
        for e in entries {
            if let Some(key) = Key::of(&e.subject) {
                index.lists.entry(key).or_default().push(e);
                index.kept_entries += 1;
            }
        }
        index
    }

    /// Keeps a newly committed entry (the file holds it now) under `retention`.
    pub fn push(&mut self, e: HistoryEntry, retention: &Retention, now_ms: u64) {
        self.file_entries += 1;
        let Some(key) = Key::of(&e.subject) else {
            return;
        };
        let list = self.lists.entry(key).or_default();
        list.push(e);
        let dropped = retention.trim(list, now_ms);
        self.kept_entries = self.kept_entries + 1 - dropped;
    }

    /// Whether the age limit is due to be applied to every list again.
    pub fn trim_due(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_trim_ms) >= TRIM_EVERY_MS
    }

    /// Applies `retention` to every list (its age limit moves with time).
    pub fn trim(&mut self, retention: &Retention, now_ms: u64) {
        let dropped: usize = self
            .lists
            .values_mut()
            .map(|list| retention.trim(list, now_ms))
            .sum();
        self.kept_entries -= dropped;
        self.last_trim_ms = now_ms;
    }

    /// Whether the file holds enough that the retention dropped to be worth rewriting.
    pub fn worth_compacting(&self) -> bool {
        let garbage = self.file_entries.saturating_sub(self.kept_entries);
        garbage >= COMPACT_MIN_GARBAGE && garbage >= self.kept_entries / 2
    }

    /// Everything kept, for a rewrite of the file.
    pub fn kept(&self) -> Vec<HistoryEntry> {
        self.lists.values().flatten().cloned().collect()
    }

    /// The file was rewritten with `kept` entries.
    pub fn compacted(&mut self, kept: usize) {
        self.file_entries = kept;
        self.kept_entries = kept;
    }

    /// Entries in the file the retention dropped.
    pub fn garbage(&self) -> usize {
        self.file_entries.saturating_sub(self.kept_entries)
    }

    /// The kept entries of `alias`, oldest first.
    pub fn of_alias(&self, alias: &AliasName) -> &[HistoryEntry] {
        self.list(&Key::Alias(alias.clone()))
    }

    /// The kept entries of `service`, oldest first.
    pub fn of_service(&self, service: &ServiceName) -> &[HistoryEntry] {
        self.list(&Key::Service(service.clone()))
    }

    fn list(&self, key: &Key) -> &[HistoryEntry] {
        self.lists.get(key).map_or(&[], Vec::as_slice)
    }

    /// The newest `limit` entries of every list, newest first.
    pub fn recent(&self, limit: usize) -> Vec<HistoryEntry> {
        newest(self.lists.values().map(Vec::as_slice), limit)
    }
}

#[cfg(test)]
mod tests;
