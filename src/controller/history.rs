//! The history: every change of every alias, appended durably to `history.jsonl`.
//!
//! Each line is `<crc32 hex> <json>`. An entry is appended (and fsynced) *before* the state file
//! that commits it is written, so after a crash the file may end with entries whose revision the
//! state never reached, or with a torn last line: both were never acknowledged, and loading drops
//! them. A damaged line anywhere else is refused, like a damaged state file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::machine::{ChangeKind, OpKind};
use super::store::{StoreError, checked_line, read_checked_line, replace_file};
use crate::config::Retention;

const HISTORY_FILE: &str = "history.jsonl";

/// Applying the retention (`[history]`, set in the config) to one alias's entries.
impl Retention {
    /// Drops from `entries` (oldest first, one alias's) what this retention does not keep at
    /// `now_ms`; returns how many it dropped.
    pub fn trim(&self, entries: &mut Vec<HistoryEntry>, now_ms: u64) -> usize {
        let len = entries.len();
        if len == 0 {
            return 0;
        }
        let cutoff =
            now_ms.saturating_sub(u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX));
        let by_count = len.saturating_sub(self.keep_per_alias.max(1));
        // Entries are in time order (the writer stamps them), so the old ones are a prefix.
        let by_age = entries[..len - 1]
            .iter()
            .take_while(|e| e.at_ms < cutoff)
            .count();
        let drop = by_count.max(by_age);
        entries.drain(..drop);
        drop
    }
}

/// One change, as stored and as the API shows it.
///
/// On disk (and in the fuzzed files) an entry is the flat [`WireEntry`]; in memory what it is
/// about is its [`Subject`], so no reader tells an alias entry from a service's by an empty
/// string or a zero revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireEntry", from = "WireEntry")]
pub struct HistoryEntry {
    /// Grows by one with every entry; the state stores the last one it commits. 0 in entries
    /// written before entries had one.
    pub seq: u64,
    pub subject: Subject,
    pub at_ms: u64,
    pub actor: String,
    pub change: ChangeKind,
    pub reason: Option<String>,
}

/// What a history entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A change of an alias: its links and phase after the change.
    Alias(AliasChange),
    /// A service defined or deleted through the API (`service_set`, `service_deleted`): its
    /// name.
    Service(String),
    /// The whole config (`reloaded`).
    Config,
}

/// An alias as one change left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasChange {
    /// Absolute alias name, with the trailing dot.
    pub alias: String,
    /// Starts at 1 and grows by one with every change of the alias.
    pub revision: u64,
    /// The phase after the change.
    pub phase: String,
    /// The linked services after the change.
    pub targets: Vec<String>,
    /// The services answering after the change.
    pub answering: Vec<String>,
    /// The operation this change belongs to.
    pub op: Option<u64>,
    /// Whether that operation is a promotion or a rollback; absent in entries written before
    /// the kind was recorded.
    pub op_kind: Option<OpKind>,
}

impl HistoryEntry {
    /// The alias change this entry records, if it is about an alias.
    pub fn alias(&self) -> Option<&AliasChange> {
        match &self.subject {
            Subject::Alias(a) => Some(a),
            Subject::Service(_) | Subject::Config => None,
        }
    }

    /// The alias's revision after the change; 0 for an entry about a service or the config.
    pub fn revision(&self) -> u64 {
        self.alias().map_or(0, |a| a.revision)
    }
}

/// An entry as `history.jsonl` holds it: one flat record, where an entry about a service or
/// the config has an empty alias, revision 0 and an empty phase. Its fields and their order
/// are the file format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub revision: u64,
    pub at_ms: u64,
    pub actor: String,
    pub change: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub phase: String,
    pub targets: Vec<String>,
    pub answering: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_kind: Option<OpKind>,
}

/// The one rule that reads a subject from the flat record: a service names it, else an alias
/// does, else it is about the config.
impl From<WireEntry> for HistoryEntry {
    fn from(w: WireEntry) -> Self {
        let subject = match w.service {
            Some(service) => Subject::Service(service),
            None if w.alias.is_empty() => Subject::Config,
            None => Subject::Alias(AliasChange {
                alias: w.alias,
                revision: w.revision,
                phase: w.phase,
                targets: w.targets,
                answering: w.answering,
                op: w.op,
                op_kind: w.op_kind,
            }),
        };
        Self {
            seq: w.seq,
            subject,
            at_ms: w.at_ms,
            actor: w.actor,
            change: w.change,
            reason: w.reason,
        }
    }
}

impl From<HistoryEntry> for WireEntry {
    fn from(e: HistoryEntry) -> Self {
        let (service, a) = match e.subject {
            Subject::Alias(a) => (None, a),
            Subject::Service(s) => (Some(s), AliasChange::none()),
            Subject::Config => (None, AliasChange::none()),
        };
        Self {
            seq: e.seq,
            alias: a.alias,
            service,
            revision: a.revision,
            at_ms: e.at_ms,
            actor: e.actor,
            change: e.change,
            reason: e.reason,
            phase: a.phase,
            targets: a.targets,
            answering: a.answering,
            op: a.op,
            op_kind: a.op_kind,
        }
    }
}

impl AliasChange {
    /// The alias fields of an entry about no alias, as the file writes them.
    fn none() -> Self {
        Self {
            alias: String::new(),
            revision: 0,
            phase: String::new(),
            targets: Vec::new(),
            answering: Vec::new(),
            op: None,
            op_kind: None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The newest `limit` entries of `lists` (each oldest first, as the writer keeps them per
/// alias, per service and for the config), newest first: a merge from the lists' ends, so it
/// costs one step per list and per entry returned, not a sort of the whole history.
pub fn newest<'a>(
    lists: impl IntoIterator<Item = &'a [HistoryEntry]>,
    limit: usize,
) -> Vec<HistoryEntry> {
    use std::collections::BinaryHeap;
    // Entries numbered before numbering began (seq 0) are older than every numbered one; among
    // themselves their time orders them.
    let key = |e: &HistoryEntry| (e.seq, e.at_ms);
    let lists: Vec<&[HistoryEntry]> = lists.into_iter().filter(|l| !l.is_empty()).collect();
    let mut heads: BinaryHeap<((u64, u64), usize, usize)> = lists
        .iter()
        .enumerate()
        .map(|(i, l)| (key(&l[l.len() - 1]), i, l.len() - 1))
        .collect();
    let mut out = Vec::with_capacity(limit.min(1024));
    while out.len() < limit {
        let Some((_, list, at)) = heads.pop() else {
            break;
        };
        out.push(lists[list][at].clone());
        if at > 0 {
            heads.push((key(&lists[list][at - 1]), list, at - 1));
        }
    }
    out
}

/// The open history file.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    file: File,
    len: u64,
}

impl History {
    /// Opens the history in `dir`, keeping only entries the state committed: those numbered up
    /// to `committed_seq`, and of older unnumbered ones those within `committed` (alias to its
    /// stored revision). Without a stored state (`None`) every entry is kept. Returns the
    /// history and its entries, oldest first.
    pub fn open(
        dir: &Path,
        committed: &HashMap<String, u64>,
        committed_seq: Option<u64>,
    ) -> Result<(Self, Vec<HistoryEntry>), StoreError> {
        let path = dir.join(HISTORY_FILE);
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            error: source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(e)),
        };
        let (entries, keep) =
            parse(&bytes, committed, committed_seq).map_err(|reason| StoreError::Corrupt {
                path: path.clone(),
                reason,
            })?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        if keep < bytes.len() {
            warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - keep,
                "dropping history entries that were never committed (a crash before their acknowledgement)"
            );
            file.set_len(keep as u64).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        Ok((
            Self {
                path,
                file,
                len: keep as u64,
            },
            entries,
        ))
    }

    /// Appends `entries` durably. Returns the length before, for [`History::truncate`].
    pub fn append(&mut self, entries: &[HistoryEntry]) -> Result<u64, StoreError> {
        let before = self.len;
        let buf: Vec<u8> = entries.iter().flat_map(checked_line).collect();
        let io_err = |source| StoreError::Io {
            path: self.path.clone(),
            error: source,
        };
        self.file.write_all(&buf).map_err(io_err)?;
        self.file.sync_data().map_err(io_err)?;
        self.len += buf.len() as u64;
        Ok(before)
    }

    /// Rewrites the file with only `kept` (committed entries, in any order: they are written
    /// by their sequence number), atomically: after a crash it holds the old entries or the
    /// kept ones, never less. Entries keep their numbers and revisions.
    pub fn compact(&mut self, kept: &mut [&HistoryEntry]) -> Result<(), StoreError> {
        kept.sort_by_key(|e| e.seq);
        let buf: Vec<u8> = kept.iter().flat_map(|e| checked_line(*e)).collect();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        replace_file(dir, HISTORY_FILE, &buf)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                error: source,
            })?;
        self.len = buf.len() as u64;
        Ok(())
    }

    /// Cuts the file back to `len`: used when the state write that would commit an append fails.
    pub fn truncate(&mut self, len: u64) -> Result<(), StoreError> {
        let io_err = |source| StoreError::Io {
            path: self.path.clone(),
            error: source,
        };
        self.file.set_len(len).map_err(io_err)?;
        self.file.sync_all().map_err(io_err)?;
        self.len = len;
        Ok(())
    }
}

/// Parses the file; returns the committed entries and how many bytes hold them.
fn parse(
    bytes: &[u8],
    committed: &HashMap<String, u64>,
    committed_seq: Option<u64>,
) -> Result<(Vec<HistoryEntry>, usize), String> {
    let mut entries = Vec::new();
    let mut offset = 0;
    let mut line_no = 0;
    while offset < bytes.len() {
        line_no += 1;
        let Some(end) = bytes[offset..].iter().position(|b| *b == b'\n') else {
            // A torn last line: the append never finished, so it was never acknowledged.
            break;
        };
        let line = &bytes[offset..offset + end];
        let is_last = offset + end + 1 == bytes.len();
        match parse_line(line) {
            Ok(entry) => {
                let beyond = match (entry.seq, entry.alias()) {
                    (0, Some(a)) => committed
                        .get(&a.alias)
                        .is_some_and(|limit| a.revision > *limit),
                    (0, None) => false,
                    (seq, _) => committed_seq.is_some_and(|c| seq > c),
                };
                if beyond {
                    // Appended, but the state write that commits it never happened. Every
                    // later entry was written after it, so none of them is committed either.
                    break;
                }
                entries.push(entry);
            }
            Err(_) if is_last => break,
            Err(reason) => return Err(format!("line {line_no}: {reason}")),
        }
        offset += end + 1;
    }
    Ok((entries, offset))
}

fn parse_line(line: &[u8]) -> Result<HistoryEntry, String> {
    read_checked_line(line)
}

#[cfg(test)]
mod tests;
