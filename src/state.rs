//! The writer's state: what is durable and what every snapshot is rendered from.
//!
//! Plain data with no IO; the store writes it, the controller changes it, the snapshot reads it.
//! `phase.rs` holds the vocabulary of one alias's state (phases, operations, how they ended) and
//! the rules for which services it answers with and drains.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::Health;
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::registry::{AliasSpec, ApiService, DockerEndpoint, Registry};

mod phase;
mod rollout;

pub(crate) use phase::minus;
pub use phase::{
    ChangeKind, EndKind, Ended, MeasuredGates, Ms, OpKind, Operation, Phase, PromoteOptions,
    Reached, Retired, Split, StepAt, answering, draining, split,
};
pub use rollout::{FailureAction, Member, MemberState, Rollout, RolloutSettings, RolloutState};

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
    /// The last operation that ended, and how; kept until the next one ends.
    pub last_op: Option<Ended>,
}

/// Everything the controller owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// A persistent map: a new state shares every alias that did not change.
    pub aliases: imbl::OrdMap<AliasName, AliasState>,
    /// SOA serial per zone, in the order of the config's zones.
    pub serials: Vec<u32>,
    /// The services and alias definitions from the API, and Docker's last endpoint sets.
    pub registry: Registry,
    /// Per zone, the serial stored: every serial published is at most this.
    pub serial_reserve: Vec<u32>,
    /// The sequence number of the last history entry this state commits.
    pub history_seq: u64,
    /// Rollouts of many aliases, by id (kept when they end, until a rollout is forgotten).
    pub rollouts: imbl::OrdMap<u64, Rollout>,
}

impl State {
    /// Every service an alias state refers to: its targets, what it was before, what an
    /// operation moves between, and what it retired.
    pub fn named_services(&self) -> impl Iterator<Item = &ServiceName> {
        self.aliases.values().flat_map(|a| {
            let op = a.phase.operation();
            a.targets
                .iter()
                .chain(op.into_iter().flat_map(|o| o.from.iter().chain(&o.to)))
                .chain(a.previous.iter().flatten())
        })
    }
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
    /// Services defined through the API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ApiService>,
    /// Aliases defined through the API (name with trailing dot): how they answer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alias_specs: BTreeMap<String, AliasSpec>,
    /// The last endpoints Docker discovery reported, per service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub docker: BTreeMap<String, Vec<DockerEndpoint>>,
    /// The sequence number of the last history entry this state commits; 0 in files written
    /// before entries had one.
    #[serde(default)]
    pub history_seq: u64,
    /// The last journal record this checkpoint includes (see `store`).
    #[serde(default)]
    pub journal_seq: u64,
    /// Rollouts by id (in decimal).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, Rollout>,
}

/// One change of the stored state, as the journal records it: what was set or removed (`None`)
/// per key, and the serial reserve and history sequence after it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoredDelta {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Option<StoredAlias>>,
    /// Every zone's serial reserve, when it moved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub serials: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Option<ApiService>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alias_specs: BTreeMap<String, Option<AliasSpec>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub docker: BTreeMap<String, Option<Vec<DockerEndpoint>>>,
    pub history_seq: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, Option<Rollout>>,
}

impl StoredDelta {
    /// Whether it changes nothing but the history sequence.
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
            && self.serials.is_empty()
            && self.services.is_empty()
            && self.alias_specs.is_empty()
            && self.docker.is_empty()
            && self.rollouts.is_empty()
    }
}

impl StoredState {
    /// Applies one journal record.
    pub fn apply(&mut self, delta: &StoredDelta) {
        fn apply_map<V: Clone>(
            map: &mut BTreeMap<String, V>,
            changes: &BTreeMap<String, Option<V>>,
        ) {
            for (key, value) in changes {
                match value {
                    Some(v) => {
                        map.insert(key.clone(), v.clone());
                    }
                    None => {
                        map.remove(key);
                    }
                }
            }
        }
        apply_map(&mut self.aliases, &delta.aliases);
        apply_map(&mut self.services, &delta.services);
        apply_map(&mut self.alias_specs, &delta.alias_specs);
        apply_map(&mut self.docker, &delta.docker);
        apply_map(&mut self.rollouts, &delta.rollouts);
        for (zone, serial) in &delta.serials {
            self.serials.insert(zone.clone(), *serial);
        }
        self.history_seq = delta.history_seq;
        self.journal_seq = delta.seq;
    }
}

/// What every node of a cluster renders with besides the stored state, as one commit changes
/// it: the serials as published, the health the leader decided, and the last good answers.
/// Only what changed; empty for a single node (whose store has no other readers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Every zone's serial as published (origin with trailing dot), when any moved.
    pub serials: BTreeMap<String, u32>,
    /// Per service, its checked endpoints' health; `None` when it has none any more.
    pub health: BTreeMap<ServiceName, Option<Vec<(Endpoint, Health)>>>,
    /// Per alias, the last non-empty set of endpoints that passed; `None` forgets it.
    pub last_good: BTreeMap<AliasName, Option<Vec<Endpoint>>>,
}

impl Live {
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty() && self.health.is_empty() && self.last_good.is_empty()
    }
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
    /// The last operation that ended, and how; absent in files written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_op: Option<Ended>,
}

fn stable() -> Phase {
    Phase::Stable
}

/// A fresh alias state linked to `targets`.
pub fn fresh(targets: Vec<ServiceName>, revision: u64, now_ms: u64, by: &str) -> AliasState {
    AliasState {
        targets,
        phase: Phase::Stable,
        previous: None,
        retired: None,
        ttl_served_s: 0,
        revision,
        changed_at_ms: now_ms,
        changed_by: by.to_owned(),
        last_op: None,
    }
}

/// Service names as stored and recorded in the history.
pub fn names(services: &[ServiceName]) -> Vec<String> {
    services.iter().map(ToString::to_string).collect()
}
