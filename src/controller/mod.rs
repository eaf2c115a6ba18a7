//! The controller: the only writer.
//!
//! Commands arrive on one channel and are handled one at a time. Each change is checked, stored
//! durably, and only then published as a new snapshot and acknowledged, so a caller never sees a
//! change that a crash could lose, and DNS never serves one.

pub mod state;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::model::{AliasName, ServiceName};
use crate::snapshot::{AliasView, SharedSnapshot, Snapshot, Topology};
use state::{AliasState, State, StoredAlias, StoredState};
use store::{Store, StoreError};

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("unknown alias `{0}`")]
    UnknownAlias(String),
    #[error("unknown service `{0}`")]
    UnknownService(String),
    #[error("targets must name at least one service")]
    EmptyTargets,
    #[error("service `{0}` is listed twice in targets")]
    DuplicateTarget(String),
    #[error("the change could not be stored, nothing was changed: {0}")]
    Storage(String),
    #[error("aliasd is shutting down")]
    Unavailable,
}

/// Who asked for a change, recorded with it.
pub type Actor = String;

enum Command {
    Link {
        alias: AliasName,
        targets: Vec<ServiceName>,
        actor: Actor,
        reply: oneshot::Sender<Result<AliasView, ControlError>>,
    },
}

/// The API's way in: sends commands and waits for their outcome.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Command>,
}

impl ControlHandle {
    /// Links `alias` to exactly `targets`. Returns once the change is durable and published.
    pub async fn link(
        &self,
        alias: AliasName,
        targets: Vec<ServiceName>,
        actor: Actor,
    ) -> Result<AliasView, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Link {
                alias,
                targets,
                actor,
                reply,
            })
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)?
    }
}

/// The writer task's state.
pub struct Controller {
    topology: Arc<Topology>,
    state: State,
    store: Arc<Store>,
    shared: SharedSnapshot,
    generation: u64,
    rx: mpsc::Receiver<Command>,
}

/// Current wall-clock time in Unix milliseconds; the only clock read of the controller.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Controller {
    /// Builds the starting state from the config and what was stored, stores it, and publishes
    /// generation 1. Returns the controller, its handle and the shared snapshot cell.
    pub fn start(
        topology: Arc<Topology>,
        store: Store,
        stored: Option<StoredState>,
        file_serials: &[u32],
    ) -> Result<(Self, ControlHandle, SharedSnapshot), StoreError> {
        let (state, notes) = initial_state(&topology, stored.as_ref(), file_serials, now_ms());
        for note in notes {
            warn!("{note}");
        }
        store.save(&to_stored(&topology, &state))?;
        let snapshot = Snapshot::render(1, topology.clone(), &state);
        let shared: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(snapshot));
        let (tx, rx) = mpsc::channel(64);
        let controller = Self {
            topology,
            state,
            store: Arc::new(store),
            shared: shared.clone(),
            generation: 1,
            rx,
        };
        Ok((controller, ControlHandle { tx }, shared))
    }

    /// Handles commands until `shutdown` is cancelled or every handle is dropped.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let command = tokio::select! {
                c = self.rx.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
                () = shutdown.cancelled() => break,
            };
            match command {
                Command::Link {
                    alias,
                    targets,
                    actor,
                    reply,
                } => {
                    let result = self.link(alias, targets, actor).await;
                    // The caller may have gone away; the change stands either way.
                    let _ = reply.send(result);
                }
            }
        }
        info!("controller stopped");
    }

    async fn link(
        &mut self,
        alias: AliasName,
        targets: Vec<ServiceName>,
        actor: Actor,
    ) -> Result<AliasView, ControlError> {
        let next = relink(
            &self.topology,
            &self.state,
            &alias,
            targets,
            &actor,
            now_ms(),
        )?;
        let Some(next) = next else {
            return self.view(&alias);
        };
        let stored = to_stored(&self.topology, &next);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.save(&stored))
            .await
            .map_err(|e| ControlError::Storage(e.to_string()))?
            .map_err(|e| ControlError::Storage(e.to_string()))?;
        self.state = next;
        self.publish();
        let view = self.view(&alias)?;
        info!(
            alias = %alias,
            targets = %join(&view.state.targets),
            revision = view.state.revision,
            actor = %actor,
            "alias relinked"
        );
        Ok(view)
    }

    fn publish(&mut self) {
        self.generation += 1;
        let snapshot = Snapshot::render(self.generation, self.topology.clone(), &self.state);
        self.shared.store(Arc::new(snapshot));
    }

    fn view(&self, alias: &AliasName) -> Result<AliasView, ControlError> {
        self.shared
            .load()
            .aliases
            .get(alias)
            .cloned()
            .ok_or_else(|| ControlError::UnknownAlias(alias.to_string()))
    }
}

fn join(names: &[ServiceName]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The state after linking `alias` to `targets`, or `None` when it is already linked so.
///
/// Pure: checks the request against the topology and returns the next state with the alias's
/// revision and its zone's serial bumped.
pub fn relink(
    topology: &Topology,
    state: &State,
    alias: &AliasName,
    targets: Vec<ServiceName>,
    actor: &str,
    now_ms: u64,
) -> Result<Option<State>, ControlError> {
    let def = topology
        .aliases
        .get(alias)
        .ok_or_else(|| ControlError::UnknownAlias(alias.to_string()))?;
    if targets.is_empty() {
        return Err(ControlError::EmptyTargets);
    }
    for (i, t) in targets.iter().enumerate() {
        if !topology.services.contains_key(t) {
            return Err(ControlError::UnknownService(t.to_string()));
        }
        if targets[..i].contains(t) {
            return Err(ControlError::DuplicateTarget(t.to_string()));
        }
    }
    let current = state.aliases.get(alias);
    if current.is_some_and(|c| c.targets == targets) {
        return Ok(None);
    }
    let mut next = state.clone();
    next.aliases.insert(
        alias.clone(),
        AliasState {
            targets,
            revision: current.map_or(1, |c| c.revision + 1),
            changed_at_ms: now_ms,
            changed_by: actor.to_owned(),
        },
    );
    if let Some(serial) = next.serials.get_mut(def.zone) {
        *serial = serial.wrapping_add(1);
    }
    Ok(Some(next))
}

/// The state to start with: stored links win over the config's for aliases that still exist.
///
/// Returns notes for the operator about stored data that no longer fits the config. Serials
/// continue from the larger of the stored and the file serial, plus one, because the answers
/// may differ from what was served before the restart.
pub fn initial_state(
    topology: &Topology,
    stored: Option<&StoredState>,
    file_serials: &[u32],
    now_ms: u64,
) -> (State, Vec<String>) {
    let mut notes = Vec::new();
    let mut aliases = BTreeMap::new();
    for (name, def) in &topology.aliases {
        let key = name.name().to_ascii();
        let from_store = stored.and_then(|s| s.aliases.get(&key));
        let alias_state = match from_store {
            Some(s) => {
                let (known, unknown): (Vec<_>, Vec<_>) = s.targets.iter().partition(|t| {
                    t.parse::<ServiceName>()
                        .is_ok_and(|t| topology.services.contains_key(&t))
                });
                for t in &unknown {
                    notes.push(format!(
                        "stored links of alias `{name}` name service `{t}`, which the config no longer defines; it is dropped"
                    ));
                }
                let mut targets: Vec<ServiceName> = Vec::new();
                for t in known.iter().filter_map(|t| t.parse::<ServiceName>().ok()) {
                    if !targets.contains(&t) {
                        targets.push(t);
                    }
                }
                if targets.is_empty() {
                    notes.push(format!(
                        "alias `{name}`: none of its stored services exist any more; using the config's targets"
                    ));
                    AliasState {
                        targets: def.targets.clone(),
                        revision: s.revision + 1,
                        changed_at_ms: now_ms,
                        changed_by: "config".into(),
                    }
                } else if unknown.is_empty() {
                    AliasState {
                        targets,
                        revision: s.revision,
                        changed_at_ms: s.changed_at_ms,
                        changed_by: s.changed_by.clone(),
                    }
                } else {
                    AliasState {
                        targets,
                        revision: s.revision + 1,
                        changed_at_ms: now_ms,
                        changed_by: "config".into(),
                    }
                }
            }
            None => AliasState {
                targets: def.targets.clone(),
                revision: 1,
                changed_at_ms: now_ms,
                changed_by: "config".into(),
            },
        };
        aliases.insert(name.clone(), alias_state);
    }
    if let Some(stored) = stored {
        for key in stored.aliases.keys() {
            if !aliases.keys().any(|a| a.name().to_ascii() == *key) {
                notes.push(format!(
                    "stored alias `{key}` is not in the config any more; its links are forgotten"
                ));
            }
        }
    }
    let serials = topology
        .zones
        .iter()
        .zip(file_serials)
        .map(|(zone, file_serial)| {
            let stored_serial = stored.and_then(|s| s.serials.get(&zone.origin.name().to_ascii()));
            let base = match stored_serial {
                Some(s) if serial_gt(*s, *file_serial) => *s,
                _ => *file_serial,
            };
            base.wrapping_add(1)
        })
        .collect();
    (State { aliases, serials }, notes)
}

/// RFC 1982 serial number comparison: is `a` after `b`?
fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// The on-disk form of `state`.
pub fn to_stored(topology: &Topology, state: &State) -> StoredState {
    StoredState {
        serials: topology
            .zones
            .iter()
            .zip(&state.serials)
            .map(|(z, s)| (z.origin.name().to_ascii(), *s))
            .collect(),
        aliases: state
            .aliases
            .iter()
            .map(|(name, a)| {
                (
                    name.name().to_ascii(),
                    StoredAlias {
                        targets: a.targets.iter().map(|t| t.to_string()).collect(),
                        revision: a.revision,
                        changed_at_ms: a.changed_at_ms,
                        changed_by: a.changed_by.clone(),
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
