//! Static zone data: an RFC 1035 master file parsed with hickory's parser and checked for what
//! aliasd can serve.
//!
//! aliasd answers these records itself from an immutable map (see `snapshot`), so the checks here
//! reject what that map cannot express faithfully: records outside the origin, delegations below
//! the apex, wildcards, and CNAMEs beside other data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hickory_proto::rr::{LowerName, Name, RData, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;

/// The largest zone file, or file it includes, that aliasd reads: 100,000 records take a few
/// MiB, so this only stops a mistake such as `$INCLUDE /dev/zero` from filling memory.
pub const MAX_ZONE_FILE_BYTES: u64 = 256 << 20;
/// How deep `$INCLUDE`s may nest.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Refuses, before anything reads it, a file that is not a regular file or is too large.
fn readable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(format!(
            "`{}` is not a regular file, so aliasd will not read it as a zone",
            path.display()
        )),
        Ok(meta) if meta.len() > MAX_ZONE_FILE_BYTES => Err(format!(
            "`{}` is {} bytes, more than a zone file may be ({MAX_ZONE_FILE_BYTES})",
            path.display(),
            meta.len()
        )),
        // Not there or not readable: the reader says so.
        _ => Ok(()),
    }
}

/// Checks every file `text` (the file at `path`) would `$INCLUDE`, and theirs in turn, before
/// hickory's parser reads them: each must be a regular file of at most [`MAX_ZONE_FILE_BYTES`],
/// nested at most [`MAX_INCLUDE_DEPTH`] deep. Every `$INCLUDE` in the text is looked at, even
/// one inside a quoted string; a name that does not exist is left to the parser to report.
fn check_includes(text: &str, path: &Path, stack: &mut Vec<PathBuf>) -> Result<(), String> {
    for (at, _) in text.match_indices("$INCLUDE") {
        let rest = &text[at + "$INCLUDE".len()..];
        let Some(name) = rest
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().next())
        else {
            continue;
        };
        let name = name.trim_matches('"');
        let included = Path::new(name);
        let included = if included.is_absolute() {
            included.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(included)
        };
        if !included.exists() {
            continue;
        }
        readable(&included).map_err(|e| format!("$INCLUDE {name}: {e}"))?;
        let included = included.canonicalize().unwrap_or(included);
        if stack.contains(&included) {
            // hickory's own depth limit ends the loop; it is refused here all the same.
            return Err(format!(
                "$INCLUDE {name}: `{}` includes itself",
                included.display()
            ));
        }
        if stack.len() > MAX_INCLUDE_DEPTH {
            return Err(format!(
                "$INCLUDE {name}: includes nest deeper than {MAX_INCLUDE_DEPTH}"
            ));
        }
        let Ok(inner) = std::fs::read_to_string(&included) else {
            continue;
        };
        stack.push(included.clone());
        check_includes(&inner, &included, stack)?;
        stack.pop();
    }
    Ok(())
}

/// A zone file that could not be loaded, with the file and (where known) the line.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("{path}: cannot read zone file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The records of one zone file, grouped by owner name and type.
#[derive(Debug, Clone)]
pub struct StaticZone {
    pub origin: Name,
    pub path: PathBuf,
    /// The record sets of the file, SOA included.
    pub rrsets: BTreeMap<RrKey, RecordSet>,
    /// Every owner name in the file.
    pub names: BTreeSet<LowerName>,
    /// The serial of the SOA as written in the file.
    pub serial: u32,
}

impl StaticZone {
    /// Reads and checks the zone file at `path` for `origin`.
    pub fn load(path: &Path, origin: &Name) -> Result<Self, ZoneError> {
        readable(path).map_err(|message| ZoneError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, origin)
    }

    /// Parses zone text; `path` is used for messages and `$INCLUDE`.
    pub fn parse(text: &str, path: &Path, origin: &Name) -> Result<Self, ZoneError> {
        let top = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        check_includes(text, path, &mut vec![top]).map_err(|message| ZoneError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        let parse = |text: &str| {
            Parser::new(text.to_owned(), Some(path.to_owned()), Some(origin.clone())).parse()
        };
        let (_, rrsets) = parse(text).map_err(|error| {
            let message = error.to_string();
            ZoneError::Syntax {
                path: path.to_owned(),
                line: error_line(text, &message, |prefix| {
                    parse(prefix).err().map(|e| e.to_string())
                }),
                message,
            }
        })?;
        let invalid = |message: String| ZoneError::Invalid {
            path: path.to_owned(),
            message,
        };

        let apex = LowerName::new(origin);
        let mut names = BTreeSet::new();
        for (key, rrset) in &rrsets {
            let owner = rrset.name();
            if !origin.zone_of(owner) {
                return Err(invalid(format!(
                    "record `{owner} {}` is outside the zone `{origin}`",
                    key.record_type
                )));
            }
            if owner.is_wildcard() {
                return Err(invalid(format!(
                    "record `{owner} {}`: wildcard names are not supported",
                    key.record_type
                )));
            }
            match key.record_type {
                RecordType::NS if key.name != apex => {
                    return Err(invalid(format!(
                        "record `{owner} NS`: delegations below the apex are not supported"
                    )));
                }
                RecordType::SOA if key.name != apex => {
                    return Err(invalid(format!(
                        "record `{owner} SOA`: an SOA belongs at the apex `{origin}` only"
                    )));
                }
                RecordType::DNAME => {
                    return Err(invalid(format!(
                        "record `{owner} DNAME`: DNAME records are not supported"
                    )));
                }
                _ => {}
            }
            names.insert(key.name.clone());
        }
        let mut types_at: HashMap<&LowerName, usize> = HashMap::new();
        for key in rrsets.keys() {
            *types_at.entry(&key.name).or_default() += 1;
        }
        let cnames: HashMap<&LowerName, LowerName> = rrsets
            .iter()
            .filter(|(key, _)| key.record_type == RecordType::CNAME)
            .filter_map(|(key, set)| {
                set.records_without_rrsigs().find_map(|r| match &r.data {
                    RData::CNAME(c) => Some((&key.name, LowerName::new(&c.0))),
                    _ => None,
                })
            })
            .collect();
        for name in cnames.keys() {
            if types_at.get(name).copied().unwrap_or(0) > 1 {
                return Err(invalid(format!(
                    "`{name}` has a CNAME and other records; a CNAME must stand alone"
                )));
            }
            // Follow the chain inside the file; coming back to a name already seen is a loop.
            let mut seen = vec![*name];
            let mut next = cnames.get(name);
            while let Some(target) = next {
                if seen.contains(&target) {
                    return Err(invalid(format!("the CNAME chain from `{name}` loops")));
                }
                seen.push(target);
                next = cnames.get(target);
            }
        }

        let soa = rrsets
            .get(&RrKey::new(apex.clone(), RecordType::SOA))
            .and_then(|set| set.records_without_rrsigs().next())
            .and_then(|record| match &record.data {
                RData::SOA(soa) => Some(soa.clone()),
                _ => None,
            })
            .ok_or_else(|| invalid(format!("the zone has no SOA record at its apex `{origin}`")))?;
        if !rrsets.contains_key(&RrKey::new(apex, RecordType::NS)) {
            return Err(invalid(format!(
                "the zone has no NS record at its apex `{origin}`"
            )));
        }

        Ok(Self {
            origin: origin.clone(),
            path: path.to_owned(),
            rrsets,
            names,
            serial: soa.serial,
        })
    }
}

/// Finds the line a parse error comes from.
///
/// hickory's parser does not report positions, so this looks for the shortest run of leading
/// lines that fails with the same message: the parser stops at its first error, so every prefix
/// that reaches the bad line fails the same way, and a binary search finds it in O(log n) parses.
fn error_line(text: &str, message: &str, fails_with: impl Fn(&str) -> Option<String>) -> usize {
    let ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(text.len()))
        .collect();
    let same = |lines: usize| fails_with(&text[..ends[lines - 1]]).as_deref() == Some(message);
    let (mut lo, mut hi) = (1, ends.len());
    if !same(hi) {
        return hi;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if same(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

impl crate::model::ZoneNames for StaticZone {
    fn origin(&self) -> &Name {
        &self.origin
    }
    fn static_name_under(&self, name: &LowerName) -> Option<String> {
        // In canonical order the names at or below `name` come first from `name` on.
        self.names
            .range(name.clone()..)
            .next()
            .filter(|n| name.zone_of(n))
            .map(ToString::to_string)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests;
