//! A follower's view: what etcd holds, rendered into this node's snapshots.
//!
//! A follower never decides anything: it renders the state, health, serials and last good
//! answers the leader stored, with the same code the leader renders with, so every node gives
//! the same answers for the same committed revision (SOA serial included). The history
//! entries it sees committed become this node's `/v1/events`, and the health it renders is
//! what its API shows (the node's [`HealthBoard`] follows it).

use std::sync::Arc;

use crate::controller::history::{HistoryEntry, Subject, WireEntry};
use crate::controller::{ControlHandle, Event, initial_state};
use crate::health::HealthBoard;
use crate::registry::{Base, Sources, Topology};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::state::State;

use super::etcd::{Data, Key, Keys, Listed};

/// What a follower renders from.
pub struct Replica {
    base: Arc<Base>,
    pub data: Data,
    /// The revision of the last commit rendered (`state/meta`'s mod revision).
    pub applied: i64,
    /// The last etcd revision taken in (list or watch).
    pub seen: i64,
    pub state: State,
    shared: SharedSnapshot,
    handle: ControlHandle,
    sources: Arc<Sources>,
    board: Arc<HealthBoard>,
}

impl Replica {
    /// Renders `listed` and publishes it; from then on `board` shows the health it renders.
    pub fn new(
        base: Arc<Base>,
        listed: &Listed,
        shared: SharedSnapshot,
        handle: ControlHandle,
        sources: Arc<Sources>,
        board: Arc<HealthBoard>,
        now_ms: u64,
    ) -> Self {
        let mut replica = Self {
            state: State {
                aliases: imbl::OrdMap::new(),
                serials: Vec::new(),
                registry: Default::default(),
                serial_reserve: Vec::new(),
                history_seq: 0,
                rollouts: imbl::OrdMap::new(),
            },
            base,
            data: listed.data.clone(),
            applied: listed.meta_revision,
            seen: listed.revision,
            shared,
            handle,
            sources,
            board,
        };
        replica.render(now_ms);
        replica
    }

    /// The state every node renders for `data` over `base`: the stored links and phases, the
    /// serials as the leader published them.
    pub fn state_of(base: &Base, data: &Data, now_ms: u64) -> State {
        let stored = data.has_state.then_some(&data.stored);
        let (mut state, _notes) = initial_state(base, stored, now_ms);
        for (i, zone) in base.zones.iter().enumerate() {
            if let Some(serial) = data.serials.get(&zone.origin.name().to_ascii())
                && let Some(s) = state.serials.get_mut(i)
            {
                *s = *serial;
            }
        }
        state
    }

    /// Renders the data and publishes the snapshot.
    pub fn render(&mut self, now_ms: u64) {
        self.state = Self::state_of(&self.base, &self.data, now_ms);
        let topology = Arc::new(Topology::build(
            &self.base,
            &self.state.registry,
            self.state.named_services(),
        ));
        let generation = self.shared.load().generation + 1;
        let health = self.data.health_map();
        let snapshot = Snapshot::render(
            generation,
            topology,
            &self.state,
            &health,
            &self.data.last_good_map(),
            self.sources.clone(),
        );
        // The API's health agrees with the answers: both are the leader's, as of this render.
        self.board.follow(Some(health));
        self.shared.store(Arc::new(snapshot));
        self.handle.mark_published(generation);
    }

    /// Takes in one watch response's events (all of one or more whole revisions), renders
    /// once if any data changed, and sends the history entries committed as events. Returns
    /// problems with keys that could not be read.
    pub fn apply(
        &mut self,
        keys: &Keys,
        events: &[etcd_client::Event],
        now_ms: u64,
    ) -> Vec<String> {
        let mut changed = false;
        let mut problems = Vec::new();
        let mut entries: Vec<HistoryEntry> = Vec::new();
        // Rollouts written: each is a `rollout` event once rendered, as on the leader.
        let mut rollouts: Vec<u64> = Vec::new();
        for event in events {
            let Some(kv) = event.kv() else { continue };
            let Ok(raw) = kv.key_str() else { continue };
            let Some(key) = keys.classify(raw) else {
                continue;
            };
            match event.event_type() {
                etcd_client::EventType::Put => {
                    if let Key::History(_) = key {
                        match serde_json::from_slice::<WireEntry>(kv.value()) {
                            Ok(e) => entries.push(e.into()),
                            Err(e) => problems.push(format!("etcd key {raw}: {e}")),
                        }
                        continue;
                    }
                    if key == Key::Meta {
                        self.applied = self.applied.max(kv.mod_revision());
                    }
                    if let Key::Rollout(id) = key {
                        rollouts.extend(id.parse::<u64>().ok());
                    }
                    match self.data.put(&key, raw, kv.value()) {
                        Ok(c) => changed |= c,
                        Err(e) => problems.push(e),
                    }
                }
                etcd_client::EventType::Delete => changed |= self.data.delete(&key),
            }
        }
        // The revision of the last event taken in: a watch catching up may carry a header
        // revision ahead of its events, so a watch started again after it must not skip them.
        if let Some(last) = events
            .iter()
            .filter_map(|e| e.kv())
            .map(|kv| kv.mod_revision())
            .max()
        {
            self.seen = self.seen.max(last);
        }
        if changed {
            self.render(now_ms);
        }
        self.send_entries(entries);
        for r in rollouts.iter().filter_map(|id| self.state.rollouts.get(id)) {
            self.handle.send_event(Event::Rollout {
                rollout: Box::new(r.clone()),
                at_ms: now_ms,
            });
        }
        problems
    }

    /// Sends committed history entries as this node's events, oldest first.
    pub fn send_entries(&self, mut entries: Vec<HistoryEntry>) {
        entries.sort_by_key(|e| e.seq);
        for entry in entries {
            let event = match &entry.subject {
                Subject::Alias(a) => {
                    let state = find(&self.state, &a.alias);
                    match state {
                        Some(state) => Event::Change {
                            entry,
                            state: Box::new(state),
                        },
                        None => Event::Registry { entry },
                    }
                }
                _ => Event::Registry { entry },
            };
            self.handle.send_event(event);
        }
    }
}

/// An alias's state by the name a history entry records (absolute, with the trailing dot).
fn find(state: &State, name: &str) -> Option<crate::state::AliasState> {
    let name = crate::model::AliasName::resolve(name, &hickory_proto::rr::Name::root()).ok()?;
    state.aliases.get(&name).cloned()
}
