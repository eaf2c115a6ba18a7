//! The writer's data as one value, and the pure planning of a change to it.
//!
//! [`Core`] is everything the writer owns: the config part, the topology, the state, health
//! and the snapshot as last published, the history kept in memory and the drain bookkeeping.
//! [`Core::plan`] turns a [`Batch`] of changes into a [`Plan`]: the next state and topology,
//! the one unit to make durable (a state delta and the history entries it commits), the
//! snapshot to publish, the events to send and the effects to run. It does no IO and reads no
//! clock: `now` is a parameter. The shell makes the unit durable first, and only then applies
//! the plan ([`Core::apply`]) and publishes, so nothing is published before it is durable and
//! a refused unit leaves the core exactly as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use imbl::ordmap::DiffItem;

use super::history::{HistoryEntry, Subject};
use super::index::HistoryIndex;
use super::machine::{Caught, Change, ChangeKind, Phase};
use super::{
    Drained, Event, SERIAL_RESERVE, changed_endpoints, check_targets, delta, entry, serial_gt,
};
use crate::check::{CheckConfig, Health};
use crate::health::starting_health;
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::registry::{Base, Sources, Topology};
use crate::snapshot::{Dirty, HealthMap, LastGood, Snapshot, endpoints_of};
use crate::state::{AliasState, Live, State, StoredDelta};

/// Every endpoint to check, with its check and the health it starts from.
pub type CheckTargets = Vec<((ServiceName, Endpoint), CheckConfig, Health)>;

/// The writer's data.
#[derive(Clone)]
pub struct Core {
    pub base: Arc<Base>,
    pub topology: Arc<Topology>,
    pub state: State,
    /// Health as the last snapshot was rendered with it, and the changes since.
    pub health: HealthMap,
    pub last_good: LastGood,
    pub sources: Arc<Sources>,
    /// The snapshot published last.
    pub published: Arc<Snapshot>,
    pub history: HistoryIndex,
    /// Per draining alias, its zone and the serial its drain began with: the serial every
    /// secondary must serve before the old version can be safe to stop.
    pub drain_serials: HashMap<AliasName, (usize, u32)>,
    /// Per alias in a weighted step, the step (operation id, step index), its zone and the
    /// serial of the first generation that served it: what every secondary and node must
    /// serve before the step's weight is in effect.
    pub step_serials: HashMap<AliasName, ((u64, u32), usize, u32)>,
    /// Every zone's secondaries (zone index, address), and the serial each reported it serves
    /// with when it began serving it; `None` until it reports one.
    pub secondaries: BTreeMap<(usize, SocketAddr), Option<(u32, u64)>>,
    /// Every front proxy: its address and the alias it fronts.
    pub proxies: Vec<(SocketAddr, AliasName)>,
    /// Per draining alias, the members each proxy reported idle ([`Drained`]) since.
    pub drained: HashMap<AliasName, HashSet<(SocketAddr, Endpoint)>>,
    /// Health changed since the last render.
    pub health_dirty: bool,
    /// The services whose endpoints changed health since the last render.
    pub health_touched: BTreeSet<ServiceName>,
    /// Docker's reachability flipped: every alias's warnings may change.
    pub sources_all_dirty: bool,
    /// A cluster's other live nodes: what a drain waits for besides this node's own proxies
    /// and the secondaries.
    pub peers: BTreeMap<String, Peer>,
    /// A cluster's writer: other nodes render from what it stores, so every change of the
    /// answers (health, serials, last good answers) is made durable too, as [`Unit::live`].
    pub replicate: bool,
}

/// Another node of a cluster, as the writer follows it.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Its front proxies and the alias each fronts.
    pub proxies: Vec<(SocketAddr, AliasName)>,
    /// Per zone, the serial it serves and since when (this writer's clock).
    pub serials: Vec<Option<(u32, u64)>>,
}

/// One batch of changes to commit together.
#[derive(Default)]
pub struct Batch {
    /// The next state, when the registry, the alias set or the serials change; `None` keeps
    /// the current one (alias transitions still apply).
    pub state: Option<State>,
    /// A reload's new config part.
    pub base: Option<Arc<Base>>,
    /// Alias transitions, applied over the state.
    pub changes: Vec<(AliasName, AliasState, Change)>,
    /// Entries not tied to an alias transition: services, removals, reloads.
    pub entries: Vec<HistoryEntry>,
    /// The serials were set by the change itself (a reload): do not bump them again.
    pub serials_set: bool,
    /// The sources' status changed: publish even if nothing else did.
    pub sources_changed: bool,
    /// Rollouts that changed, stored with the alias changes they asked for.
    pub rollouts: Vec<crate::state::Rollout>,
}

impl Batch {
    pub fn of(changes: Vec<(AliasName, AliasState, Change)>) -> Self {
        Self {
            changes,
            ..Self::default()
        }
    }
}

/// What must be made durable, as one unit: the state delta and the history entries it
/// commits (registry entries first, then alias transitions, numbered in that order).
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub delta: StoredDelta,
    pub entries: Vec<HistoryEntry>,
    /// What other nodes render with besides the state; empty unless [`Core::replicate`].
    pub live: Live,
}

/// What the shell runs after publishing.
#[derive(Debug, Clone)]
pub enum Effect {
    /// The topology changed: the checkers follow it.
    Reconcile(CheckTargets),
}

/// A planned commit.
pub struct Plan {
    /// The next state, topology and config part.
    pub state: State,
    pub topology: Arc<Topology>,
    pub base: Option<Arc<Base>>,
    /// The next health map, when the topology changed.
    pub health: Option<HealthMap>,
    /// `None` when nothing durable changed (health alone moved serials within the reserve).
    pub durable: Option<Unit>,
    pub snapshot: Snapshot,
    /// The aliases rendered again.
    pub rendered: Vec<AliasName>,
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

/// What the first steps of a plan found: the next state and what it renders from.
struct Next {
    state: State,
    topology: Arc<Topology>,
    topology_changed: bool,
    health: Option<HealthMap>,
    check_targets: Option<CheckTargets>,
    changed_services: Vec<(ServiceName, Vec<Endpoint>)>,
}

impl Core {
    /// Plans `batch` at `now`. `None` when it changes nothing anyone could see or must keep;
    /// the caller then calls [`Core::nothing_changed`].
    pub fn plan(&self, batch: Batch, now: u64) -> Option<Plan> {
        let Batch {
            state,
            base,
            changes,
            entries,
            serials_set,
            sources_changed,
            rollouts,
        } = batch;
        let registry_changed = state.is_some();
        let mut next = self.next(state, base.as_ref(), &changes);
        for r in &rollouts {
            next.state.rollouts.insert(r.id, r.clone());
        }
        if !rollouts.is_empty() {
            super::rollout::forget_old(&mut next.state.rollouts);
        }
        let dirty = self.dirty(&changes, &next, base.is_some());
        let current = &self.published;
        let health_now = next.health.as_ref().unwrap_or(&self.health);
        let mut snapshot = current.update(
            current.generation + 1,
            next.topology.clone(),
            &next.state,
            health_now,
            &self.last_good,
            self.sources.clone(),
            &dirty,
        );
        let rendered = rendered(&dirty, current, &snapshot);
        let bumped = !serials_set && self.bump_serials(&mut next, &rendered, current, &snapshot);
        let views_changed = views_changed(&rendered, current, &snapshot);
        let reserve_moved = move_reserve(&mut next.state, serials_set);
        let live = if self.replicate {
            let health_now = next.health.as_ref().unwrap_or(&self.health);
            self.live(&next, health_now, &rendered, &snapshot)
        } else {
            Live::default()
        };
        let durable_change = !changes.is_empty()
            || !rollouts.is_empty()
            || !entries.is_empty()
            || reserve_moved
            || registry_changed
            || serials_set
            || !live.is_empty();
        if !durable_change
            && !views_changed
            && !bumped
            && !sources_changed
            && !next.topology_changed
        {
            return None;
        }
        if bumped {
            snapshot.set_serials(&next.state.serials, &next.topology);
        }
        let (alias_entries, entries) = self.number(&changes, entries, &mut next.state);
        let durable = durable_change.then(|| Unit {
            delta: delta(&next.topology, &self.state, &next.state, reserve_moved),
            entries: entries.iter().chain(&alias_entries).cloned().collect(),
            live,
        });
        let mut events = events(next.changed_services, entries, changes, alias_entries, now);
        events.extend(rollouts.into_iter().map(|r| Event::Rollout {
            rollout: Box::new(r),
            at_ms: now,
        }));
        Some(Plan {
            state: next.state,
            topology: next.topology,
            base,
            health: next.health,
            durable,
            snapshot,
            rendered,
            events,
            effects: next
                .check_targets
                .map(Effect::Reconcile)
                .into_iter()
                .collect(),
        })
    }

    /// The next state and topology, and the health and checks that follow the topology.
    fn next(
        &self,
        state: Option<State>,
        base: Option<&Arc<Base>>,
        changes: &[(AliasName, AliasState, Change)],
    ) -> Next {
        let registry_changed = state.is_some();
        let mut next = state.unwrap_or_else(|| self.state.clone());
        for (name, alias, _) in changes {
            next.aliases.insert(name.clone(), alias.clone());
        }
        // The topology follows the registry, the alias set and the config; a change of an alias
        // phase alone can only add placeholders for services it names, which exist already.
        let topology = if registry_changed || base.is_some() {
            Arc::new(Topology::build(
                base.unwrap_or(&self.base),
                &next.registry,
                next.named_services(),
            ))
        } else {
            self.topology.clone()
        };
        let topology_changed = !Arc::ptr_eq(&topology, &self.topology);
        let (health, check_targets, changed_services) = if topology_changed {
            let (health, targets) = self.rehealth(&topology);
            let changed = changed_endpoints(&self.topology, &topology);
            (Some(health), Some(targets), changed)
        } else {
            (None, None, Vec::new())
        };
        Next {
            state: next,
            topology,
            topology_changed,
            health,
            check_targets,
            changed_services,
        }
    }

    /// What a cluster's other nodes need besides the state to render what this plan
    /// publishes: the serials when they moved, the health of every service whose endpoints'
    /// health or set changed, and the last good answers that changed.
    fn live(
        &self,
        next: &Next,
        health: &HealthMap,
        rendered: &[AliasName],
        snapshot: &Snapshot,
    ) -> Live {
        let mut live = Live::default();
        if next.state.serials != self.state.serials || next.topology_changed {
            live.serials = next
                .topology
                .zones
                .iter()
                .zip(&next.state.serials)
                .map(|(z, s)| (z.origin.name().to_ascii(), *s))
                .collect();
        }
        let mut touched: BTreeSet<&ServiceName> = self.health_touched.iter().collect();
        if next.health.is_some() {
            touched.extend(self.health.keys().map(|(s, _)| s));
            touched.extend(health.keys().map(|(s, _)| s));
        }
        if !touched.is_empty() {
            let mut by_service: BTreeMap<ServiceName, Vec<(Endpoint, Health)>> = BTreeMap::new();
            for ((service, endpoint), h) in health {
                if touched.contains(service) {
                    by_service
                        .entry(service.clone())
                        .or_default()
                        .push((*endpoint, *h));
                }
            }
            for service in touched {
                let mut list = by_service.remove(service);
                if let Some(list) = &mut list {
                    list.sort_by_key(|(e, _)| *e);
                }
                live.health.insert(service.clone(), list);
            }
        }
        for name in rendered {
            let next_good = match snapshot.aliases.get(name) {
                Some(view) if !view.passing.is_empty() => Some(view.passing.clone()),
                Some(_) => continue,
                None => None,
            };
            if self.last_good.get(name) != next_good.as_ref() {
                live.last_good.insert(name.clone(), next_good);
            }
        }
        live
    }

    /// Health over a new topology: endpoints that are new start with their starting health;
    /// those gone are forgotten.
    fn rehealth(&self, topology: &Topology) -> (HealthMap, CheckTargets) {
        let targets = check_targets(topology);
        let mut health = HealthMap::with_capacity(targets.len());
        let mut with_start = Vec::with_capacity(targets.len());
        for (key, check) in targets {
            let h = self
                .health
                .get(&key)
                .copied()
                .unwrap_or_else(|| starting_health(&check, false));
            health.insert(key.clone(), h);
            with_start.push((key, check, h));
        }
        (health, with_start)
    }

    /// The aliases to render again; the others are shared with the current snapshot.
    fn dirty(
        &self,
        changes: &[(AliasName, AliasState, Change)],
        next: &Next,
        base_changed: bool,
    ) -> Dirty {
        if base_changed || self.sources_all_dirty {
            return Dirty::All;
        }
        let mut set: BTreeSet<AliasName> = changes.iter().map(|(n, _, _)| n.clone()).collect();
        set.extend(changed_keys(&self.state.aliases, &next.state.aliases));
        let mut touched: BTreeSet<&ServiceName> = self.health_touched.iter().collect();
        touched.extend(next.changed_services.iter().map(|(s, _)| s));
        if !touched.is_empty() {
            for (name, a) in next.state.aliases.iter() {
                let op = a.phase.operation();
                let uses = a
                    .targets
                    .iter()
                    .chain(op.into_iter().flat_map(|o| o.to.iter()))
                    .any(|s| touched.contains(s));
                if uses {
                    set.insert(name.clone());
                }
            }
        }
        // API alias settings (port name, policy) live in the registry.
        set.extend(changed_keys(
            &self.state.registry.api_aliases,
            &next.state.registry.api_aliases,
        ));
        Dirty::Aliases(set)
    }

    /// Bumps the serial of every zone whose answers changed (once per zone, and not again if
    /// the batch set it). Returns whether any was bumped.
    fn bump_serials(
        &self,
        next: &mut Next,
        rendered: &[AliasName],
        current: &Snapshot,
        snapshot: &Snapshot,
    ) -> bool {
        let mut zones: BTreeSet<usize> = BTreeSet::new();
        for name in rendered {
            let (before, after) = (current.aliases.get(name), snapshot.aliases.get(name));
            // A weighted step changes who gets which answer without changing the endpoints,
            // and a side can change while the union does not (secondaries get the old side):
            // the split (its weight and both sides) moves the serial too, so a secondary or
            // node still on the old serial is known to serve the old split.
            let weight = |v: &Arc<crate::snapshot::AliasView>| {
                crate::state::split(&v.state).map(|s| s.weight)
            };
            if before.map(|v| &v.endpoints) != after.map(|v| &v.endpoints)
                || before.map(weight) != after.map(weight)
                || before.map(|v| &v.split) != after.map(|v| &v.split)
            {
                let def = next
                    .topology
                    .aliases
                    .get(name)
                    .or_else(|| self.topology.aliases.get(name));
                zones.extend(def.map(|d| d.zone));
            }
        }
        let mut bumped = false;
        for zone in zones {
            if next.state.serials.get(zone) == self.state.serials.get(zone) {
                next.state.serials[zone] = next.state.serials[zone].wrapping_add(1);
                bumped = true;
            }
        }
        bumped
    }

    /// Numbers the batch's history entries after the state's last one. A change that ends an
    /// operation belongs to it: its operation comes from the state before the change when the
    /// state after has none. Returns the alias entries and the others.
    fn number(
        &self,
        changes: &[(AliasName, AliasState, Change)],
        mut others: Vec<HistoryEntry>,
        next: &mut State,
    ) -> (Vec<HistoryEntry>, Vec<HistoryEntry>) {
        let mut before: HashMap<&AliasName, &AliasState> = HashMap::new();
        let mut alias_entries: Vec<HistoryEntry> = Vec::with_capacity(changes.len());
        for (name, alias, change) in changes {
            let prev = before
                .get(name)
                .copied()
                .or_else(|| self.state.aliases.get(name));
            let mut e = entry(name, alias, change);
            if let Subject::Alias(a) = &mut e.subject
                && a.op.is_none()
                && change.kind != ChangeKind::Linked
            {
                let op = prev.and_then(|p| p.phase.operation());
                a.op = op.map(|op| op.id);
                a.op_kind = op.map(|op| op.kind);
            }
            alias_entries.push(e);
            before.insert(name, alias);
        }
        for e in alias_entries.iter_mut().chain(others.iter_mut()) {
            next.history_seq += 1;
            e.seq = next.history_seq;
        }
        (alias_entries, others)
    }

    /// Where the secondaries of zone `zone`, and a cluster's other nodes, stand on `serial`:
    /// serving it (or a later one) since when, or not all of them yet.
    pub fn caught(&self, zone: usize, serial: u32) -> Caught {
        let mut since = 0;
        let peers = self
            .peers
            .values()
            .map(|p| p.serials.get(zone).copied().flatten());
        let secondaries = self
            .secondaries
            .iter()
            .filter(|((z, _), _)| *z == zone)
            .map(|(_, seen)| *seen);
        for seen in secondaries.chain(peers) {
            match seen {
                Some((have, at)) if have == serial || serial_gt(have, serial) => {
                    since = since.max(at);
                }
                _ => return Caught::Waiting,
            }
        }
        Caught::Since(since)
    }

    /// Takes in a proxy's report that a member of a draining alias has no open work left.
    pub fn drained(&mut self, report: Drained) {
        let draining = self
            .state
            .aliases
            .get(&report.alias)
            .is_some_and(|a| matches!(a.phase, Phase::Draining { .. }));
        // A report of an alias no longer draining is late: its drain ended already.
        if draining {
            self.drained
                .entry(report.alias)
                .or_default()
                .insert((report.proxy, report.endpoint));
        }
    }

    /// How many members of `services` (out of `alias`'s answers) a proxy of `alias` has not
    /// reported idle: the open work its drain still waits for.
    pub fn open_work(&self, alias: &AliasName, services: &[ServiceName]) -> u64 {
        let proxies: Vec<SocketAddr> = self
            .proxies
            .iter()
            .chain(self.peers.values().flat_map(|p| &p.proxies))
            .filter(|(_, a)| a == alias)
            .map(|(p, _)| *p)
            .collect();
        if proxies.is_empty() || services.is_empty() {
            return 0;
        }
        let answering = self
            .published
            .aliases
            .get(alias)
            .map(|v| endpoints_of(&self.topology, &v.answering))
            .unwrap_or_default();
        let reported = self.drained.get(alias);
        let open = endpoints_of(&self.topology, services)
            .into_iter()
            .filter(|e| !answering.contains(e))
            .flat_map(|e| proxies.iter().map(move |p| (*p, e)))
            .filter(|key| reported.is_none_or(|r| !r.contains(key)))
            .count();
        open as u64
    }

    /// A batch planned to nothing: the health it looked at is now as good as published.
    pub fn nothing_changed(&mut self) {
        self.health_dirty = false;
        self.health_touched.clear();
    }

    /// Takes on `plan` once its unit is durable (or it had none): the next state, the
    /// published snapshot, the history and the drain bookkeeping. Returns the snapshot to
    /// publish, the events and the effects.
    pub fn apply(&mut self, plan: Plan, now: u64) -> (Arc<Snapshot>, Vec<Event>, Vec<Effect>) {
        let Plan {
            state,
            topology,
            base,
            health,
            durable: _,
            snapshot,
            rendered,
            events,
            effects,
        } = plan;
        self.state = state;
        self.topology = topology;
        if let Some(base) = base {
            self.base = base;
        }
        if let Some(health) = health {
            self.health = health;
        }
        self.nothing_changed();
        self.sources_all_dirty = false;
        for name in &rendered {
            match snapshot.aliases.get(name) {
                Some(view) if !view.passing.is_empty() => {
                    self.last_good.insert(name.clone(), view.passing.clone());
                }
                Some(_) => {}
                None => {
                    self.last_good.remove(name);
                }
            }
        }
        self.follow_drains(&snapshot);
        for event in &events {
            if let Event::Registry { entry } | Event::Change { entry, .. } = event {
                self.history.push(entry.clone(), &self.base.retention, now);
            }
        }
        if self.history.trim_due(now) {
            self.history.trim(&self.base.retention, now);
        }
        self.published = Arc::new(snapshot);
        (self.published.clone(), events, effects)
    }

    /// A drain counts from the first generation that served it: remembers its zone's serial
    /// then, and forgets drains that ended.
    fn follow_drains(&mut self, snapshot: &Snapshot) {
        for (name, alias) in &self.state.aliases {
            if matches!(alias.phase, Phase::Draining { .. }) {
                let zone = self.topology.aliases.get(name).map_or(0, |d| d.zone);
                let serial = snapshot.zones.get(zone).map_or(0, |z| z.serial);
                self.drain_serials
                    .entry(name.clone())
                    .or_insert((zone, serial));
            }
        }
        let aliases = &self.state.aliases;
        let draining = |name: &AliasName| {
            aliases
                .get(name)
                .is_some_and(|a| matches!(a.phase, Phase::Draining { .. }))
        };
        self.drain_serials.retain(|name, _| draining(name));
        self.drained.retain(|name, _| draining(name));
        self.step_serials
            .retain(|name, _| aliases.get(name).and_then(step_key).is_some());
        for (name, alias) in aliases {
            if let Some(key) = step_key(alias) {
                let zone = self.topology.aliases.get(name).map_or(0, |d| d.zone);
                let serial = snapshot.zones.get(zone).map_or(0, |z| z.serial);
                match self.step_serials.get(name) {
                    Some((seen, ..)) if *seen == key => {}
                    _ => {
                        self.step_serials.insert(name.clone(), (key, zone, serial));
                    }
                }
            }
        }
    }

    /// Where the secondaries and a cluster's other nodes stand on what `alias` (in `state`)
    /// waits for: a drain on the serial it began with, a weighted step on the serial that
    /// first served it (not all of them yet when no generation served the step so far).
    pub fn caught_up(&self, alias: &AliasName, state: &AliasState) -> Caught {
        if let Some(key) = step_key(state) {
            return match self.step_serials.get(alias) {
                Some(&(seen, zone, serial)) if seen == key => self.caught(zone, serial),
                _ => Caught::Waiting,
            };
        }
        match self.drain_serials.get(alias) {
            Some(&(zone, serial)) => self.caught(zone, serial),
            None => Caught::Since(0),
        }
    }
}

/// A weighted step's identity: its operation and index.
fn step_key(state: &AliasState) -> Option<(u64, u32)> {
    match &state.phase {
        Phase::Mixed {
            op, step: Some(at), ..
        } => Some((op.id, at.index)),
        _ => None,
    }
}

/// The keys added, removed or changed between two persistent maps (costs the change).
fn changed_keys<'a, K: Ord + Clone, V: PartialEq>(
    old: &'a imbl::OrdMap<K, V>,
    new: &'a imbl::OrdMap<K, V>,
) -> impl Iterator<Item = K> + 'a {
    old.diff(new).map(|item| match item {
        DiffItem::Add(k, _) | DiffItem::Remove(k, _) => k.clone(),
        DiffItem::Update { new: (k, _), .. } => k.clone(),
    })
}

/// The names of the aliases `dirty` rendered again, in either snapshot.
fn rendered(dirty: &Dirty, current: &Snapshot, snapshot: &Snapshot) -> Vec<AliasName> {
    match dirty {
        Dirty::All => snapshot
            .aliases
            .keys()
            .chain(current.aliases.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        Dirty::Aliases(set) => set.iter().cloned().collect(),
    }
}

/// Whether a rendered alias's view changed in what the API shows besides its endpoints.
fn views_changed(rendered: &[AliasName], current: &Snapshot, snapshot: &Snapshot) -> bool {
    rendered.iter().any(
        |name| match (current.aliases.get(name), snapshot.aliases.get(name)) {
            (Some(b), Some(v)) => {
                b.fallback != v.fallback || b.passing != v.passing || b.warnings != v.warnings
            }
            (None, None) => false,
            _ => true,
        },
    )
}

/// Serials published never pass the reserve stored, so one lost on a crash is never served
/// again; health alone moves serials without a write until the reserve is used. Moves the
/// reserve of every zone whose serial reached it (or every zone, when the batch set the
/// serials); returns whether any moved.
fn move_reserve(next: &mut State, serials_set: bool) -> bool {
    let mut moved = false;
    for (i, serial) in next.serials.iter().enumerate() {
        let reserved = next.serial_reserve.get(i).copied().unwrap_or(*serial);
        if serials_set || serial_gt(*serial, reserved) || i >= next.serial_reserve.len() {
            if i < next.serial_reserve.len() {
                next.serial_reserve[i] = serial.wrapping_add(SERIAL_RESERVE);
            } else {
                next.serial_reserve
                    .push(serial.wrapping_add(SERIAL_RESERVE));
            }
            moved = true;
        }
    }
    next.serial_reserve.truncate(next.serials.len());
    moved
}

/// The events of a planned commit, in the order they are sent: endpoints, registry entries,
/// alias transitions.
fn events(
    changed_services: Vec<(ServiceName, Vec<Endpoint>)>,
    entries: Vec<HistoryEntry>,
    changes: Vec<(AliasName, AliasState, Change)>,
    alias_entries: Vec<HistoryEntry>,
    now: u64,
) -> Vec<Event> {
    let endpoints = changed_services
        .into_iter()
        .map(|(service, endpoints)| Event::Endpoints {
            service,
            endpoints,
            at_ms: now,
        });
    let registry = entries.into_iter().map(|entry| Event::Registry { entry });
    let aliases = changes
        .into_iter()
        .zip(alias_entries)
        .map(|((_, alias, _), entry)| Event::Change {
            entry,
            state: Box::new(alias),
        });
    endpoints.chain(registry).chain(aliases).collect()
}

#[cfg(test)]
mod tests;
