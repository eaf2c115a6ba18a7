//! Durable state: a checkpoint file replaced atomically, and a journal of the changes since.
//!
//! The checkpoint (`state.json`) is a header line `aliasd-state <version> <length> <crc32>`
//! followed by the JSON body. A checkpoint writes a temporary file, fsyncs it, renames it over
//! the old one and fsyncs the directory, so after a crash the file is either the old state or
//! the new one. Between checkpoints, each change is one line appended to `state.journal`
//! (`<crc32> <json>`, fsynced), so a change costs the same however many aliases there are;
//! every [`JOURNAL_RECORDS`] records the whole state is checkpointed and the journal emptied.
//! On load, the journal's records after the checkpoint's are applied in order; a torn last line
//! was never acknowledged and is dropped. A damaged checkpoint or journal line is refused, never
//! replaced: the operator decides. The directory is locked (flock) so two daemons cannot share
//! it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::history::{History, HistoryEntry};
use crate::state::{Live, StoredDelta, StoredState};

const MAGIC: &str = "aliasd-state";
const VERSION: u32 = 1;
const STATE_FILE: &str = "state.json";
const JOURNAL_FILE: &str = "state.journal";
const LOCK_FILE: &str = "lock";
/// Records in the journal before the whole state is checkpointed.
pub const JOURNAL_RECORDS: u64 = 1000;
/// Bytes in the journal before the whole state is checkpointed.
pub const JOURNAL_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `error` is not a `source`: the message already says it, and a chain would say it twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "{path}: another aliasd holds this state directory (its lock is taken); stop it or use another state.dir"
    )]
    Locked { path: PathBuf },
    /// The store cannot take writes now (a cluster store without quorum, or whose leadership
    /// ended): nothing was written.
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "{path}: the state file is corrupt ({reason}); aliasd will not overwrite it. Restore it from a backup, or move it away to start from the config's links"
    )]
    Corrupt { path: PathBuf, reason: String },
}

/// Where the writer's commits go: the one seam between the writer and durability.
///
/// The writer hands over one unit, a state delta and the history entries it commits, and gets
/// back durable or refused: when [`Store::commit`] returns an error nothing of the unit
/// remains, so the writer keeps its state and snapshot exactly as they were. [`FileStore`]
/// (checkpoint, journal and `history.jsonl` in the state directory) is the one implementation.
/// A store whose commits are transactions on a remote consensus store fits the same seam: its
/// `commit` is the transaction, and the state other nodes write reaches the writer as inputs
/// (from a watch), never through this trait. The calls block; the writer runs them off its
/// task.
pub trait Store: Send {
    /// Makes `delta` and `entries` durable together, or neither. `whole` renders the whole
    /// state, for a store that wants to rewrite it (a checkpoint) rather than append. `live`
    /// is what other nodes render with besides the state (health, serials, last good
    /// answers): a cluster store writes it in the same transaction; a local store has no
    /// readers and ignores it.
    fn commit(
        &mut self,
        delta: StoredDelta,
        entries: &[HistoryEntry],
        live: &Live,
        whole: &dyn Fn() -> StoredState,
    ) -> Result<(), StoreError>;

    /// Rewrites the history with only `kept` (committed entries, in any order). A failure
    /// leaves the old history, which still loads.
    fn compact_history(&mut self, kept: &mut [&HistoryEntry]) -> Result<(), StoreError>;
}

/// The state directory: the checkpoint and journal of the state, and the history file.
#[derive(Debug)]
pub struct FileStore {
    pub journal: Journal,
    pub history: History,
}

impl Store for FileStore {
    /// History first, then the state: the state write is what commits the entries, so after a
    /// crash between the two the entries are dropped on load as never committed.
    fn commit(
        &mut self,
        mut delta: StoredDelta,
        entries: &[HistoryEntry],
        _live: &Live,
        whole: &dyn Fn() -> StoredState,
    ) -> Result<(), StoreError> {
        let before = self.history.append(entries)?;
        if let Err(e) = self.journal.append(&mut delta) {
            if let Err(t) = self.history.truncate(before) {
                error!(error = %t, "could not cut back the history after a failed state write");
            }
            return Err(e);
        }
        if self.journal.wants_checkpoint() {
            // The change is durable already; a failed checkpoint is tried again later.
            if let Err(e) = self.journal.checkpoint(&mut whole()) {
                warn!(error = %e, "could not checkpoint the state; the journal keeps growing");
            }
        }
        Ok(())
    }

    fn compact_history(&mut self, kept: &mut [&HistoryEntry]) -> Result<(), StoreError> {
        self.history.compact(kept)
    }
}

/// The state directory's checkpoint and journal, locked for this process.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    // Held for the life of the store: the flock is released when the file is closed.
    _lock: File,
    journal: File,
    journal_len: u64,
    journal_records: u64,
    /// The sequence number of the last record written (or checkpointed).
    journal_seq: u64,
}

impl Journal {
    /// Opens (creating if needed) and locks `dir`, and loads the state file if there is one.
    pub fn open(dir: &Path) -> Result<(Self, Option<StoredState>), StoreError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io {
                path,
                error: source,
            }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let path = dir.join(STATE_FILE);
        let mut state = match fs::read(&path) {
            Ok(bytes) => Some(decode(&bytes).map_err(|reason| StoreError::Corrupt {
                path: path.clone(),
                reason,
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let journal_path = dir.join(JOURNAL_FILE);
        let bytes = match fs::read(&journal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&journal_path)(e)),
        };
        let since = state.as_ref().map_or(0, |s| s.journal_seq);
        let (deltas, keep) =
            parse_journal(&bytes, since).map_err(|reason| StoreError::Corrupt {
                path: journal_path.clone(),
                reason,
            })?;
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io_err(&journal_path))?;
        if keep < bytes.len() {
            // A torn last record: its change was never acknowledged.
            journal
                .set_len(keep as u64)
                .and_then(|()| journal.sync_all())
                .map_err(io_err(&journal_path))?;
        }
        let mut journal_seq = since;
        if !deltas.is_empty() {
            let applied = state.get_or_insert_with(StoredState::default);
            for delta in &deltas {
                applied.apply(delta);
                journal_seq = delta.seq;
            }
        }
        let store = Self {
            dir: dir.to_owned(),
            _lock: lock,
            journal,
            journal_len: keep as u64,
            journal_records: deltas.len() as u64,
            journal_seq,
        };
        Ok((store, state))
    }

    /// Appends one change durably (fsync). `delta.seq` is set here. When this returns Ok, a
    /// crash cannot lose it. Returns the journal length before, for [`Journal::cut_journal`].
    pub fn append(&mut self, delta: &mut StoredDelta) -> Result<u64, StoreError> {
        let before = self.journal_len;
        delta.seq = self.journal_seq + 1;
        let line = checked_line(delta);
        let path = self.dir.join(JOURNAL_FILE);
        let written = self
            .journal
            .write_all(&line)
            .and_then(|()| self.journal.sync_data());
        if let Err(source) = written {
            // Nothing half-written may stay behind a failed append.
            let _ = self.journal.set_len(before);
            return Err(StoreError::Io {
                path,
                error: source,
            });
        }
        self.journal_len += line.len() as u64;
        self.journal_records += 1;
        self.journal_seq = delta.seq;
        Ok(before)
    }

    /// Cuts the journal back to `len`, forgetting the records after it (a change whose other
    /// write failed).
    pub fn cut_journal(&mut self, len: u64, seq: u64) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        self.journal
            .set_len(len)
            .and_then(|()| self.journal.sync_all())
            .map_err(|source| StoreError::Io {
                path,
                error: source,
            })?;
        self.journal_len = len;
        self.journal_records = self.journal_records.saturating_sub(1);
        self.journal_seq = seq;
        Ok(())
    }

    /// Whether the journal has grown enough for a checkpoint.
    pub fn wants_checkpoint(&self) -> bool {
        self.journal_records >= JOURNAL_RECORDS || self.journal_len >= JOURNAL_BYTES
    }

    /// The sequence number of the last change written.
    pub fn journal_seq(&self) -> u64 {
        self.journal_seq
    }

    /// Writes `state` (which includes every journal record) as the checkpoint, then empties
    /// the journal. A crash between the two leaves records the checkpoint already holds; they
    /// are skipped on load.
    pub fn checkpoint(&mut self, state: &mut StoredState) -> Result<(), StoreError> {
        state.journal_seq = self.journal_seq;
        self.save(state)?;
        let path = self.dir.join(JOURNAL_FILE);
        self.journal
            .set_len(0)
            .and_then(|()| self.journal.sync_all())
            .map_err(|source| StoreError::Io {
                path,
                error: source,
            })?;
        self.journal_len = 0;
        self.journal_records = 0;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Writes `state` durably: when this returns Ok, a crash cannot lose it.
    pub fn save(&self, state: &StoredState) -> Result<(), StoreError> {
        replace_file(&self.dir, STATE_FILE, &encode(state))
    }
}

/// Replaces `dir/name` with `bytes` atomically and durably: a temporary file, fsynced, renamed
/// over the old one, then the directory fsynced. After a crash the file is the old or the new.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io {
            path,
            error: source,
        }
    };
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// `<crc32 hex> <json>\n`: one record of an append-only file (the journal, the history).
pub fn checked_line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain data cannot fail.
    let json = serde_json::to_vec(value).unwrap_or_default();
    let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

/// Reads one `<crc32 hex> <json>` line (without its newline).
pub fn read_checked_line<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    let space = line.iter().position(|b| *b == b' ').ok_or("no checksum")?;
    let crc = std::str::from_utf8(&line[..space])
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or("bad checksum field")?;
    let json = &line[space + 1..];
    if crc32fast::hash(json) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("record does not parse: {e}"))
}

/// The journal records after `since`, and how many bytes hold the good ones. A torn or damaged
/// last line is dropped; a damaged line before the end is refused.
fn parse_journal(bytes: &[u8], since: u64) -> Result<(Vec<StoredDelta>, usize), String> {
    let mut deltas: Vec<StoredDelta> = Vec::new();
    let mut offset = 0;
    let mut line_no = 0;
    let mut previous: Option<u64> = None;
    while offset < bytes.len() {
        line_no += 1;
        let Some(end) = bytes[offset..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let is_last = offset + end + 1 == bytes.len();
        match read_checked_line::<StoredDelta>(&bytes[offset..offset + end]) {
            Ok(delta) => {
                if let Some(p) = previous
                    && delta.seq != p + 1
                {
                    return Err(format!(
                        "line {line_no}: record {} follows record {p}",
                        delta.seq
                    ));
                }
                previous = Some(delta.seq);
                if delta.seq > since {
                    deltas.push(delta);
                }
            }
            Err(_) if is_last => break,
            Err(reason) => return Err(format!("line {line_no}: {reason}")),
        }
        offset += end + 1;
    }
    if let Some(first) = deltas.first()
        && since > 0
        && first.seq != since + 1
    {
        return Err(format!(
            "the journal starts at record {} but the checkpoint ends at {since}",
            first.seq
        ));
    }
    Ok((deltas, offset))
}

fn encode(state: &StoredState) -> Vec<u8> {
    // Serializing plain maps of strings and integers cannot fail.
    let body = serde_json::to_vec_pretty(state).unwrap_or_default();
    let mut out = format!(
        "{MAGIC} {VERSION} {} {:08x}\n",
        body.len(),
        crc32fast::hash(&body)
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out.push(b'\n');
    out
}

fn decode(bytes: &[u8]) -> Result<StoredState, String> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not text")?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, version, len, crc] = fields[..] else {
        return Err(format!("malformed header `{header}`"));
    };
    if magic != MAGIC {
        return Err(format!("not an aliasd state file (header `{header}`)"));
    }
    if version != VERSION.to_string() {
        return Err(format!(
            "format version {version}, this aliasd reads version {VERSION}"
        ));
    }
    let len: usize = len.parse().map_err(|_| format!("bad length `{len}`"))?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum `{crc}`"))?;
    let rest = &bytes[newline + 1..];
    let body = rest
        .strip_suffix(b"\n")
        .filter(|b| b.len() == len)
        .ok_or_else(|| {
            format!(
                "truncated or extended: the header says {len} bytes, the file holds {}",
                rest.len().saturating_sub(1)
            )
        })?;
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("body does not parse: {e}"))
}

#[cfg(test)]
mod tests;
