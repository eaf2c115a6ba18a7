//! The controller: the only writer.
//!
//! Commands from the API, health changes from the checkers and the passing of time arrive in one
//! task and are handled one at a time. Each alias's promotion is the pure machine in `machine`;
//! this shell feeds it, and for every transition appends the history and writes the state
//! durably, and only then publishes the new snapshot, emits the event and answers the caller.
//! A caller never sees a change that a crash could lose, and DNS never serves one.

pub mod history;
pub mod machine;
pub mod state;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::PromotionDefaults;
use crate::health::{Health, HealthChange};
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::snapshot::{AliasView, HealthMap, LastGood, SharedSnapshot, Snapshot, Topology};
use history::{History, HistoryEntry};
use machine::{
    Change, ChangeKind, Counts, Ctx, Input, MachineError, OpKind, Outcome, Phase, PromoteOptions,
};
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
    /// The request does not fit the alias's current phase.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the change could not be stored, nothing was changed: {0}")]
    Storage(String),
    #[error("aliasd is shutting down")]
    Unavailable,
}

impl From<MachineError> for ControlError {
    fn from(e: MachineError) -> Self {
        match e {
            MachineError::EmptyTargets => Self::EmptyTargets,
            MachineError::MinHealthyTooHigh { .. } => Self::BadRequest(e.to_string()),
            MachineError::Busy { .. }
            | MachineError::NothingRunning
            | MachineError::NotMixed { .. }
            | MachineError::NoConfirmGate => Self::Conflict(e.to_string()),
        }
    }
}

/// Who asked for a change, recorded with it.
pub type Actor = String;

/// Work the front proxy still has open (requests in flight, connections) on some endpoints.
/// The drain of an old version waits for it.
pub trait Busy: Send + Sync {
    fn inflight(&self, endpoints: &[Endpoint]) -> u64;
}

/// No proxy: nothing is ever busy.
pub struct NoProxy;

impl Busy for NoProxy {
    fn inflight(&self, _endpoints: &[Endpoint]) -> u64 {
        0
    }
}

/// The gates a promote or rollback asks for; unset ones come from the config's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    pub observe: Option<Duration>,
    pub confirm: Option<bool>,
    pub min_healthy: Option<u32>,
    pub warm_timeout: Option<Duration>,
}

impl Gates {
    pub fn resolve(&self, defaults: &PromotionDefaults) -> PromoteOptions {
        PromoteOptions {
            observe_ms: self.observe.unwrap_or(defaults.observe).as_millis() as u64,
            confirm: self.confirm.unwrap_or(false),
            min_healthy: self.min_healthy,
            warm_timeout_ms: self
                .warm_timeout
                .unwrap_or(defaults.warm_timeout)
                .as_millis() as u64,
        }
    }
}

/// Where a rollback goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTo {
    /// The targets before the last completed change.
    Previous,
    /// The targets at this revision of the alias's history.
    Revision(u64),
}

/// What a promote or rollback did.
#[derive(Debug, Clone)]
pub struct Started {
    pub view: AliasView,
    /// False when the alias already answered with the requested services (a no-op).
    pub started: bool,
}

/// Something that happened, for the events stream.
#[derive(Debug, Clone)]
pub enum Event {
    /// A transition of an alias, as recorded in its history.
    Change {
        entry: HistoryEntry,
        state: Box<AliasState>,
    },
    /// An endpoint changed health.
    Health { change: HealthChange, at_ms: u64 },
    /// aliasd is stopping: streams of events end here.
    Closing,
}

type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

enum Command {
    Link {
        alias: AliasName,
        targets: Vec<ServiceName>,
        actor: Actor,
        reply: Reply<AliasView>,
    },
    Promote {
        alias: AliasName,
        to: Vec<ServiceName>,
        gates: Gates,
        reason: Option<String>,
        actor: Actor,
        reply: Reply<Started>,
    },
    Rollback {
        alias: AliasName,
        to: RollbackTo,
        gates: Gates,
        reason: Option<String>,
        actor: Actor,
        reply: Reply<Started>,
    },
    Confirm {
        alias: AliasName,
        reason: Option<String>,
        actor: Actor,
        reply: Reply<AliasView>,
    },
    Abort {
        alias: AliasName,
        reason: Option<String>,
        actor: Actor,
        reply: Reply<AliasView>,
    },
    History {
        alias: AliasName,
        reply: oneshot::Sender<Vec<HistoryEntry>>,
    },
}

/// The API's way in: sends commands and waits for their outcome.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
}

impl ControlHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)?
    }

    /// Links `alias` to exactly `targets`. Returns once the change is durable and published.
    pub async fn link(
        &self,
        alias: AliasName,
        targets: Vec<ServiceName>,
        actor: Actor,
    ) -> Result<AliasView, ControlError> {
        self.ask(|reply| Command::Link {
            alias,
            targets,
            actor,
            reply,
        })
        .await
    }

    pub async fn promote(
        &self,
        alias: AliasName,
        to: Vec<ServiceName>,
        gates: Gates,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<Started, ControlError> {
        self.ask(|reply| Command::Promote {
            alias,
            to,
            gates,
            reason,
            actor,
            reply,
        })
        .await
    }

    pub async fn rollback(
        &self,
        alias: AliasName,
        to: RollbackTo,
        gates: Gates,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<Started, ControlError> {
        self.ask(|reply| Command::Rollback {
            alias,
            to,
            gates,
            reason,
            actor,
            reply,
        })
        .await
    }

    pub async fn confirm(
        &self,
        alias: AliasName,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<AliasView, ControlError> {
        self.ask(|reply| Command::Confirm {
            alias,
            reason,
            actor,
            reply,
        })
        .await
    }

    pub async fn abort(
        &self,
        alias: AliasName,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<AliasView, ControlError> {
        self.ask(|reply| Command::Abort {
            alias,
            reason,
            actor,
            reply,
        })
        .await
    }

    pub async fn history(&self, alias: AliasName) -> Result<Vec<HistoryEntry>, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::History { alias, reply })
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// The store and the history, used together from blocking tasks.
struct Durable {
    store: Store,
    history: History,
}

/// The writer task's state.
pub struct Controller {
    topology: Arc<Topology>,
    defaults: PromotionDefaults,
    state: State,
    durable: Arc<Mutex<Durable>>,
    history: HashMap<AliasName, Vec<HistoryEntry>>,
    health: HealthMap,
    last_good: LastGood,
    shared: SharedSnapshot,
    generation: u64,
    rx: mpsc::Receiver<Command>,
    health_rx: mpsc::Receiver<HealthChange>,
    events: broadcast::Sender<Event>,
    /// Health changed since the last render.
    health_dirty: bool,
    busy: Arc<dyn Busy>,
    drain_deadline: Duration,
}

/// Current wall-clock time in Unix milliseconds; the controller's only clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the controller starts from.
pub struct StartParts {
    pub topology: Arc<Topology>,
    pub defaults: PromotionDefaults,
    pub store: Store,
    pub stored: Option<StoredState>,
    pub file_serials: Vec<u32>,
    pub health: HealthMap,
    pub health_rx: mpsc::Receiver<HealthChange>,
    /// The proxy's open work, which a drain waits for, and how long it waits at most.
    pub busy: Arc<dyn Busy>,
    pub drain_deadline: Duration,
}

impl Controller {
    /// Builds the starting state from the config and what was stored, stores it, and publishes
    /// generation 1. Returns the controller, its handle and the shared snapshot cell.
    pub fn start(parts: StartParts) -> Result<(Self, ControlHandle, SharedSnapshot), StoreError> {
        let StartParts {
            topology,
            defaults,
            store,
            stored,
            file_serials,
            health,
            health_rx,
            busy,
            drain_deadline,
        } = parts;
        let committed: HashMap<String, u64> = stored
            .as_ref()
            .map(|s| {
                s.aliases
                    .iter()
                    .map(|(k, a)| (k.clone(), a.revision))
                    .collect()
            })
            .unwrap_or_default();
        let (mut history_file, entries) = History::open(store.dir(), &committed)?;
        let now = now_ms();
        let (mut state, notes) = initial_state(&topology, stored.as_ref(), &file_serials, now);
        for note in notes {
            warn!("{note}");
        }
        for alias in state.aliases.values_mut() {
            alias.ttl_served_s = alias.ttl_served_s.max(topology.ttl_window_s());
        }
        // Changes made at start (first start, or the config overruling stored links) are history too.
        let started: Vec<HistoryEntry> = state
            .aliases
            .iter()
            .filter(|(name, a)| committed.get(&name.name().to_ascii()) != Some(&a.revision))
            .map(|(name, a)| {
                entry(
                    name,
                    a,
                    &Change {
                        kind: ChangeKind::Linked,
                        actor: a.changed_by.clone(),
                        reason: Some("at start, from the config".into()),
                    },
                )
            })
            .collect();
        history_file.append(&started)?;
        store.save(&to_stored(&topology, &state))?;

        let mut history: HashMap<AliasName, Vec<HistoryEntry>> = HashMap::new();
        for e in entries.into_iter().chain(started) {
            if let Some(name) = state
                .aliases
                .keys()
                .find(|a| a.name().to_ascii() == e.alias)
            {
                history.entry(name.clone()).or_default().push(e);
            }
        }
        let last_good = LastGood::new();
        let snapshot = Snapshot::render(1, topology.clone(), &state, &health, &last_good);
        let shared: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(snapshot));
        let (tx, rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(1024);
        let controller = Self {
            topology,
            defaults,
            state,
            durable: Arc::new(Mutex::new(Durable {
                store,
                history: history_file,
            })),
            history,
            health,
            last_good,
            shared: shared.clone(),
            generation: 1,
            rx,
            health_rx,
            events: events.clone(),
            health_dirty: true,
            busy,
            drain_deadline,
        };
        Ok((controller, ControlHandle { tx, events }, shared))
    }

    /// Handles commands, health changes and deadlines until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Deadlines may have passed while aliasd was down: settle them first.
        self.settle().await;
        loop {
            let wait = self.next_wake();
            tokio::select! {
                c = self.rx.recv() => match c {
                    Some(c) => self.handle(c).await,
                    None => break,
                },
                Some(change) = self.health_rx.recv() => {
                    self.health.insert((change.service.clone(), change.endpoint), change.health);
                    self.health_dirty = true;
                    let _ = self.events.send(Event::Health { change, at_ms: now_ms() });
                    self.settle().await;
                }
                () = tokio::time::sleep(wait) => self.settle().await,
                () = shutdown.cancelled() => break,
            }
        }
        let _ = self.events.send(Event::Closing);
        info!("controller stopped");
    }

    /// Open proxy work on the endpoints of `services`.
    fn busy_on(&self, services: &[ServiceName]) -> u64 {
        if services.is_empty() {
            return 0;
        }
        self.busy.inflight(&crate::snapshot::endpoints_of(
            &self.topology.services,
            services,
        ))
    }

    /// How long until the next deadline of any alias (at most a second, so a wall-clock jump
    /// is noticed soon; 100 ms while a drain waits for proxy work to end).
    fn next_wake(&self) -> Duration {
        let now = now_ms();
        let waiting_on_work = self
            .state
            .aliases
            .values()
            .any(|a| matches!(a.phase, Phase::Draining { until_ms, .. } if until_ms <= now));
        if waiting_on_work {
            return Duration::from_millis(100);
        }
        let next = self
            .state
            .aliases
            .values()
            .filter_map(|a| a.phase.deadline())
            .min()
            .map_or(1000, |d| d.saturating_sub(now).clamp(1, 1000));
        Duration::from_millis(next)
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Link {
                alias,
                targets,
                actor,
                reply,
            } => {
                let result = self.link(&alias, targets, actor).await;
                let _ = reply.send(result);
            }
            Command::Promote {
                alias,
                to,
                gates,
                reason,
                actor,
                reply,
            } => {
                let result = self
                    .promote(&alias, to, gates, OpKind::Promote, reason, actor)
                    .await;
                let _ = reply.send(result);
            }
            Command::Rollback {
                alias,
                to,
                gates,
                reason,
                actor,
                reply,
            } => {
                let result = match self.rollback_target(&alias, to) {
                    Ok(targets) => {
                        self.promote(&alias, targets, gates, OpKind::Rollback, reason, actor)
                            .await
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Confirm {
                alias,
                reason,
                actor,
                reply,
            } => {
                let result = self.apply(&alias, Input::Confirm { actor, reason }).await;
                let _ = reply.send(result.map(|_| ()).and_then(|()| self.view(&alias)));
            }
            Command::Abort {
                alias,
                reason,
                actor,
                reply,
            } => {
                let result = self.apply(&alias, Input::Abort { actor, reason }).await;
                let _ = reply.send(result.map(|_| ()).and_then(|()| self.view(&alias)));
            }
            Command::History { alias, reply } => {
                let _ = reply.send(self.history.get(&alias).cloned().unwrap_or_default());
            }
        }
    }

    fn check_services(&self, targets: &[ServiceName]) -> Result<(), ControlError> {
        check_services(&self.topology, targets)
    }

    async fn link(
        &mut self,
        alias: &AliasName,
        targets: Vec<ServiceName>,
        actor: Actor,
    ) -> Result<AliasView, ControlError> {
        self.check_services(&targets)?;
        self.apply(alias, Input::Link { targets, actor }).await?;
        self.view(alias)
    }

    async fn promote(
        &mut self,
        alias: &AliasName,
        to: Vec<ServiceName>,
        gates: Gates,
        kind: OpKind,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<Started, ControlError> {
        self.check_services(&to)?;
        let input = Input::Promote {
            to,
            options: gates.resolve(&self.defaults),
            kind,
            actor,
            reason,
        };
        let started = self.apply(alias, input).await?;
        Ok(Started {
            view: self.view(alias)?,
            started,
        })
    }

    fn rollback_target(
        &self,
        alias: &AliasName,
        to: RollbackTo,
    ) -> Result<Vec<ServiceName>, ControlError> {
        let state = self
            .state
            .aliases
            .get(alias)
            .ok_or_else(|| ControlError::UnknownAlias(alias.to_string()))?;
        let targets: Vec<String> = match to {
            RollbackTo::Previous => state
                .previous
                .as_ref()
                .map(|p| p.iter().map(ToString::to_string).collect())
                .ok_or_else(|| {
                    ControlError::Conflict(format!(
                        "alias `{alias}` has no earlier targets to roll back to"
                    ))
                })?,
            RollbackTo::Revision(rev) => self
                .history
                .get(alias)
                .and_then(|h| h.iter().find(|e| e.revision == rev))
                .map(|e| e.answering.clone())
                .ok_or_else(|| {
                    ControlError::NotFound(format!(
                        "alias `{alias}` has no revision {rev} in its history"
                    ))
                })?,
        };
        targets
            .iter()
            .map(|t| {
                t.parse::<ServiceName>()
                    .ok()
                    .filter(|s| self.topology.services.contains_key(s))
                    .ok_or_else(|| {
                        ControlError::Conflict(format!(
                            "cannot roll back to service `{t}`: the config no longer defines it"
                        ))
                    })
            })
            .collect()
    }

    /// Runs `input` through the machine for `alias`, then settles every alias, and commits.
    /// Returns whether the input changed anything.
    async fn apply(&mut self, alias: &AliasName, input: Input) -> Result<bool, ControlError> {
        let current = self
            .state
            .aliases
            .get(alias)
            .ok_or_else(|| ControlError::UnknownAlias(alias.to_string()))?;
        let outcome = self.with_ctx(|ctx| machine::step(current, input, ctx))?;
        let Outcome::Changed(next, change) = outcome else {
            return Ok(false);
        };
        let mut changes = vec![(alias.clone(), *next, change)];
        changes.extend(self.due_transitions(Some(&changes)));
        self.commit(changes).await?;
        Ok(true)
    }

    /// Applies every transition that time and health have made due, and commits them.
    async fn settle(&mut self) {
        let changes = self.due_transitions(None);
        if changes.is_empty() && !self.health_dirty {
            return;
        }
        if let Err(e) = self.commit(changes).await {
            error!(error = %e, "could not store a due transition; it will be retried");
        }
    }

    /// Ticks every alias until nothing moves. `pending` holds changes not yet committed, which
    /// the ticks start from.
    fn due_transitions(
        &self,
        pending: Option<&Vec<(AliasName, AliasState, Change)>>,
    ) -> Vec<(AliasName, AliasState, Change)> {
        self.with_ctx(|ctx| self.ticks(pending, ctx))
    }

    fn ticks(
        &self,
        pending: Option<&Vec<(AliasName, AliasState, Change)>>,
        ctx: &Ctx<'_>,
    ) -> Vec<(AliasName, AliasState, Change)> {
        let mut out = Vec::new();
        for (name, alias) in &self.state.aliases {
            let mut current = pending
                .and_then(|p| p.iter().rev().find(|(n, _, _)| n == name))
                .map_or(alias, |(_, s, _)| s)
                .clone();
            // Each tick makes at most one transition; a handful covers any chain.
            for _ in 0..8 {
                match machine::step(&current, Input::Tick, ctx) {
                    Ok(Outcome::Changed(next, change)) => {
                        current = *next;
                        out.push((name.clone(), current.clone(), change));
                    }
                    _ => break,
                }
            }
        }
        out
    }

    /// Runs `f` with the machine's view of now: the clock, the TTL window and health counts.
    fn with_ctx<R>(&self, f: impl FnOnce(&Ctx<'_>) -> R) -> R {
        let count = |services: &[ServiceName]| counts(&self.topology, &self.health, services);
        let busy = |services: &[ServiceName]| self.busy_on(services);
        let ctx = Ctx {
            now: now_ms(),
            ttl_window_s: self.topology.ttl_window_s(),
            grace_ms: self.defaults.drain_grace.as_millis() as u64,
            counts: &count,
            busy: &busy,
            drain_deadline_ms: self.drain_deadline.as_millis() as u64,
        };
        f(&ctx)
    }

    /// Makes `changes` durable (history, then state), then publishes and emits them. Also
    /// republishes when health alone changed the answers, bumping the zone serial.
    async fn commit(
        &mut self,
        changes: Vec<(AliasName, AliasState, Change)>,
    ) -> Result<(), ControlError> {
        let mut next = self.state.clone();
        for (name, alias, _) in &changes {
            next.aliases.insert(name.clone(), alias.clone());
        }
        let current = self.shared.load_full();
        let mut snapshot = Snapshot::render(
            self.generation + 1,
            self.topology.clone(),
            &next,
            &self.health,
            &self.last_good,
        );
        let mut bumped = false;
        for (name, view) in &snapshot.aliases {
            let before = current.aliases.get(name);
            if before.is_none_or(|b| b.endpoints != view.endpoints) {
                let zone = self.topology.aliases[name].zone;
                if next.serials[zone] == self.state.serials[zone] {
                    next.serials[zone] = next.serials[zone].wrapping_add(1);
                    bumped = true;
                }
            }
        }
        let views_changed = snapshot.aliases.iter().any(|(name, view)| {
            current
                .aliases
                .get(name)
                .is_none_or(|b| b.fallback != view.fallback || b.passing != view.passing)
        });
        if changes.is_empty() && !bumped && !views_changed {
            self.health_dirty = false;
            return Ok(());
        }
        if bumped {
            snapshot = Snapshot::render(
                self.generation + 1,
                self.topology.clone(),
                &next,
                &self.health,
                &self.last_good,
            );
        }
        // A change that ends an operation belongs to it: take the operation from the state
        // before the change when the state after has none.
        let mut before: HashMap<&AliasName, &AliasState> = HashMap::new();
        let mut entries: Vec<HistoryEntry> = Vec::with_capacity(changes.len());
        for (name, alias, change) in &changes {
            let prev = before
                .get(name)
                .copied()
                .or_else(|| self.state.aliases.get(name));
            let mut e = entry(name, alias, change);
            if e.op.is_none() && change.kind != ChangeKind::Linked {
                e.op = prev.and_then(|p| p.phase.operation()).map(|op| op.id);
            }
            entries.push(e);
            before.insert(name, alias);
        }
        if !changes.is_empty() || bumped {
            let stored = to_stored(&self.topology, &next);
            let durable = self.durable.clone();
            let batch = entries.clone();
            tokio::task::spawn_blocking(move || {
                let mut d = durable.lock().unwrap_or_else(|p| p.into_inner());
                let before = d.history.append(&batch)?;
                if let Err(e) = d.store.save(&stored) {
                    if let Err(t) = d.history.truncate(before) {
                        error!(error = %t, "could not cut back the history after a failed state write");
                    }
                    return Err(e);
                }
                Ok(())
            })
            .await
            .map_err(|e| ControlError::Storage(e.to_string()))?
            .map_err(|e| ControlError::Storage(e.to_string()))?;
        }

        self.state = next;
        self.health_dirty = false;
        self.generation += 1;
        for (name, view) in &snapshot.aliases {
            if !view.passing.is_empty() {
                self.last_good.insert(name.clone(), view.passing.clone());
            }
        }
        self.shared.store(Arc::new(snapshot));
        for ((name, alias, change), entry) in changes.into_iter().zip(entries) {
            info!(
                alias = %name,
                change = ?change.kind,
                phase = alias.phase.name(),
                revision = alias.revision,
                actor = %change.actor,
                reason = change.reason.as_deref().unwrap_or(""),
                "alias changed"
            );
            self.history.entry(name).or_default().push(entry.clone());
            let _ = self.events.send(Event::Change {
                entry,
                state: Box::new(alias),
            });
        }
        Ok(())
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

/// Checks that every service in `targets` exists and none is repeated.
pub fn check_services(topology: &Topology, targets: &[ServiceName]) -> Result<(), ControlError> {
    for (i, t) in targets.iter().enumerate() {
        if !topology.services.contains_key(t) {
            return Err(ControlError::UnknownService(t.to_string()));
        }
        if targets[..i].contains(t) {
            return Err(ControlError::DuplicateTarget(t.to_string()));
        }
    }
    Ok(())
}

/// Endpoint health counts over the union of `services`' endpoints.
pub fn counts(topology: &Topology, health: &HealthMap, services: &[ServiceName]) -> Counts {
    let mut c = Counts::default();
    for s in services {
        for e in topology.services.get(s).map_or(&[][..], |c| &c.endpoints) {
            c.total += 1;
            match health
                .get(&(s.clone(), *e))
                .copied()
                .unwrap_or(Health::Unknown)
            {
                Health::Healthy => c.healthy += 1,
                Health::Unhealthy => c.failed += 1,
                Health::Unknown => {}
            }
        }
    }
    c
}

fn names(services: &[ServiceName]) -> Vec<String> {
    services.iter().map(ToString::to_string).collect()
}

/// The history entry for `change`, which left `alias` in `state`.
pub fn entry(alias: &AliasName, state: &AliasState, change: &Change) -> HistoryEntry {
    HistoryEntry {
        alias: alias.name().to_ascii(),
        revision: state.revision,
        at_ms: state.changed_at_ms,
        actor: change.actor.clone(),
        change: change.kind,
        reason: change.reason.clone(),
        phase: state.phase.name().to_owned(),
        targets: names(&state.targets),
        answering: names(&machine::answering(state)),
        op: state.phase.operation().map(|op| op.id),
    }
}

/// The state after linking `alias` to `targets`, or `None` when it is already linked so.
///
/// Pure: checks the request against the topology and runs the machine's `Link`.
pub fn relink(
    topology: &Topology,
    state: &State,
    alias: &AliasName,
    targets: Vec<ServiceName>,
    actor: &str,
    now_ms: u64,
) -> Result<Option<State>, ControlError> {
    if !topology.aliases.contains_key(alias) {
        return Err(ControlError::UnknownAlias(alias.to_string()));
    }
    if targets.is_empty() {
        return Err(ControlError::EmptyTargets);
    }
    check_services(topology, &targets)?;
    let current = &state.aliases[alias];
    let ctx = Ctx {
        now: now_ms,
        ttl_window_s: topology.ttl_window_s(),
        grace_ms: 0,
        counts: &|_| Counts::default(),
        busy: &|_| 0,
        drain_deadline_ms: 0,
    };
    match machine::step(
        current,
        Input::Link {
            targets,
            actor: actor.to_owned(),
        },
        &ctx,
    )? {
        Outcome::Unchanged => Ok(None),
        Outcome::Changed(alias_state, _) => {
            let mut next = state.clone();
            next.aliases.insert(alias.clone(), *alias_state);
            Ok(Some(next))
        }
    }
}

/// A fresh alias state linked to `targets`.
fn fresh(targets: Vec<ServiceName>, revision: u64, now_ms: u64, by: &str) -> AliasState {
    AliasState {
        targets,
        phase: Phase::Stable,
        previous: None,
        retired: None,
        ttl_served_s: 0,
        revision,
        changed_at_ms: now_ms,
        changed_by: by.to_owned(),
    }
}

/// The state to start with: stored links and phases win over the config's for aliases that
/// still exist.
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
    let known = |t: &ServiceName| topology.services.contains_key(t);
    for (name, def) in &topology.aliases {
        let key = name.name().to_ascii();
        let alias_state = match stored.and_then(|s| s.aliases.get(&key)) {
            None => fresh(def.targets.clone(), 1, now_ms, "config"),
            Some(s) => {
                let mut targets: Vec<ServiceName> = Vec::new();
                for t in &s.targets {
                    match t.parse::<ServiceName>() {
                        Ok(t) if known(&t) => {
                            if !targets.contains(&t) {
                                targets.push(t);
                            }
                        }
                        _ => notes.push(format!(
                            "stored links of alias `{name}` name service `{t}`, which the config no longer defines; it is dropped"
                        )),
                    }
                }
                let op_services_known = s
                    .phase
                    .operation()
                    .is_none_or(|op| op.to.iter().chain(&op.from).all(known));
                if !op_services_known {
                    notes.push(format!(
                        "alias `{name}`: the stored {} names a service the config no longer defines; it is dropped",
                        s.phase.name()
                    ));
                }
                if targets.is_empty() {
                    notes.push(format!(
                        "alias `{name}`: none of its stored services exist any more; using the config's targets"
                    ));
                    fresh(def.targets.clone(), s.revision + 1, now_ms, "config")
                } else if targets.len() != s.targets.len() || !op_services_known {
                    fresh(targets, s.revision + 1, now_ms, "config")
                } else {
                    AliasState {
                        targets,
                        phase: s.phase.clone(),
                        previous: s.previous.as_ref().map(|p| {
                            p.iter()
                                .filter_map(|t| t.parse::<ServiceName>().ok().filter(known))
                                .collect()
                        }),
                        retired: s.retired.clone(),
                        ttl_served_s: s.ttl_served_s,
                        revision: s.revision,
                        changed_at_ms: s.changed_at_ms,
                        changed_by: s.changed_by.clone(),
                    }
                }
            }
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
                        targets: names(&a.targets),
                        revision: a.revision,
                        changed_at_ms: a.changed_at_ms,
                        changed_by: a.changed_by.clone(),
                        phase: a.phase.clone(),
                        previous: a.previous.as_ref().map(|p| names(p)),
                        retired: a.retired.clone(),
                        ttl_served_s: a.ttl_served_s,
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
