//! Durable state: one file, replaced atomically, checked on load.
//!
//! The file is a header line `aliasd-state <version> <length> <crc32>` followed by the JSON body.
//! A save writes a temporary file, fsyncs it, renames it over the old one and fsyncs the
//! directory, so after a crash the file is either the old state or the new one. A file whose
//! length or checksum does not match is refused, never replaced: the operator decides.
//! The directory is locked (flock) so two daemons cannot share it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::state::StoredState;

const MAGIC: &str = "aliasd-state";
const VERSION: u32 = 1;
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: another aliasd holds this state directory (its lock is taken); stop it or use another state.dir"
    )]
    Locked { path: PathBuf },
    #[error(
        "{path}: the state file is corrupt ({reason}); aliasd will not overwrite it. Restore it from a backup, or move it away to start from the config's links"
    )]
    Corrupt { path: PathBuf, reason: String },
}

/// The state directory, locked for this process.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    // Held for the life of the store: the flock is released when the file is closed.
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) and locks `dir`, and loads the state file if there is one.
    pub fn open(dir: &Path) -> Result<(Self, Option<StoredState>), StoreError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
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
        let store = Self {
            dir: dir.to_owned(),
            _lock: lock,
        };
        let path = store.state_path();
        let state = match fs::read(&path) {
            Ok(bytes) => Some(decode(&bytes).map_err(|reason| StoreError::Corrupt {
                path: path.clone(),
                reason,
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok((store, state))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Writes `state` durably: when this returns Ok, a crash cannot lose it.
    pub fn save(&self, state: &StoredState) -> Result<(), StoreError> {
        let path = self.state_path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let bytes = encode(state);
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(&bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        Ok(())
    }
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
