//! The controller's state: what is durable and what every snapshot is rendered from.
//!
//! Plain data with no IO; the store writes it, the controller changes it, the snapshot reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::machine::{Phase, Retired};
use crate::model::{AliasName, ServiceName};

/// The links of one alias, where it is in a promotion, and who changed it last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasState {
    /// The services the alias is linked to; during a promotion, the old ones (A).
    pub targets: Vec<ServiceName>,
    pub phase: Phase,
    /// The targets before the last completed change: what `rollback` returns to.
    pub previous: Option<Vec<ServiceName>>,
    /// What the last operation took out of the answers, and when it may be stopped.
    pub retired: Option<Retired>,
    /// The largest TTL (seconds) the current answers have been served with.
    pub ttl_served_s: u32,
    /// Starts at 1 and grows by one on every change of this alias.
    pub revision: u64,
    /// Unix time in milliseconds of the last change.
    pub changed_at_ms: u64,
    /// The token name (or `config`) that made the last change.
    pub changed_by: String,
}

/// Everything the controller owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub aliases: BTreeMap<AliasName, AliasState>,
    /// SOA serial per zone, in the order of the config's zones.
    pub serials: Vec<u32>,
}

/// The on-disk form of [`State`], keyed by strings so a file stays readable by people and
/// loadable after the config changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoredState {
    /// Zone origin (with trailing dot) to SOA serial.
    pub serials: BTreeMap<String, u32>,
    /// Alias name (with trailing dot) to its links.
    pub aliases: BTreeMap<String, StoredAlias>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoredAlias {
    pub targets: Vec<String>,
    pub revision: u64,
    pub changed_at_ms: u64,
    pub changed_by: String,
    #[serde(default = "stable")]
    pub phase: Phase,
    #[serde(default)]
    pub previous: Option<Vec<String>>,
    #[serde(default)]
    pub retired: Option<Retired>,
    #[serde(default)]
    pub ttl_served_s: u32,
}

fn stable() -> Phase {
    Phase::Stable
}
