//! The controller: the only writer, as a pure core inside a thin shell.
//!
//! Every input is a message into one task: commands from the API, health changes from the
//! checkers, endpoint sets from Docker discovery, the serials the secondaries report (from
//! their NOTIFY tasks), the members the front proxies report idle, and the passing of time
//! (read through an injected clock). Each alias's promotion is the pure machine in `machine`;
//! registry changes (services, alias definitions, reloads) are the pure functions in
//! `changes`; `core` plans a batch of their results into the next state, the one unit to make
//! durable, the snapshot, the events and the effects. This shell only sequences them: it hands
//! the unit to the `store` (the one seam for durability; `recover` opens it at start), and
//! only once it is durable takes the plan on, publishes the snapshot, sends the events (every
//! event of `/v1/events` comes from here) and answers the caller. A caller never sees a change
//! that a crash could lose, and DNS never serves one; a refused unit changes nothing.

pub mod changes;
pub mod core;
mod drive;
pub mod dry_run;
mod error;
pub mod history;
pub mod index;
pub mod machine;
pub mod recover;
pub mod rollout;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use self::core::{Batch, Core, Effect, Unit};
use crate::check::{Health, HealthSpec};
use crate::clock::SharedClock;
use crate::config::PromotionDefaults;
use crate::health::{Checker, HealthBoard, HealthChange, starting_health};
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::registry::{
    Base, ContainerRef, DockerEndpoint, DockerState, Problem, Registry, SourceStatus, Sources,
    Topology,
};
use crate::serial::serial_gt;
use crate::snapshot::{AliasView, HealthMap, LastGood, SharedSnapshot, Snapshot, health_of};
use crate::state::{AliasState, State, StoredAlias, StoredDelta, StoredState, fresh, names};
use changes::{AliasPut, ReloadSummary, entry};
pub use drive::RolloutPlan;
pub use error::{ControlError, check_services};
use history::{HistoryEntry, Subject};
use imbl::ordmap::DiffItem;
use index::HistoryIndex;
use machine::{Change, Counts, Ctx, Input, OpKind, Outcome, PromoteOptions};
use store::{Store, StoreError};

/// How far ahead of the serials served the stored serials run: a serial is published only
/// below what is stored, so health changes move serials without a write, and after a crash
/// aliasd starts above any serial it served.
pub const SERIAL_RESERVE: u32 = 1000;

/// Who asked for a change, recorded with it.
pub type Actor = String;

/// Work the front proxy still has open (requests in flight, connections) on some endpoints,
/// as the API shows it. The writer is not asked: a drain waits for the proxies' [`Drained`]
/// reports.
pub trait Busy: Send + Sync {
    fn inflight(&self, endpoints: &[Endpoint]) -> u64;

    /// What the front proxies measure per alias and service, if any proxy runs.
    fn measurements(&self) -> Option<&crate::proxy::Measurements> {
        None
    }
}

/// The figures of a weighted step in effect: the new version's and the old one's, through the
/// front proxies, since the step took effect. `None` outside such a step, or when no proxy
/// fronts the alias.
pub fn step_figures(
    measurements: &crate::proxy::Measurements,
    alias: &AliasName,
    state: &AliasState,
) -> Option<(crate::gates::Window, crate::gates::Window)> {
    let machine::Phase::Mixed {
        op, step: Some(at), ..
    } = &state.phase
    else {
        return None;
    };
    at.effective_ms?;
    let new = crate::state::minus(&op.to, &state.targets);
    let old = crate::state::minus(&state.targets, &op.to);
    measurements.since_step(alias, (op.id, at.index), &new, &old)
}

/// The gates a promote or rollback asks for; unset ones come from the config's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    pub observe: Option<Duration>,
    pub confirm: Option<bool>,
    pub min_healthy: Option<u32>,
    pub warm_timeout: Option<Duration>,
    pub stop_old: Option<bool>,
    /// Weighted steps; empty promotes in one go.
    pub steps: Vec<crate::steps::Step>,
    /// Limits on the proxy's figures of the new version over each step.
    pub measured: crate::state::MeasuredGates,
}

/// A duration as whole milliseconds, saturating (the bounds keep durations far below that).
fn whole_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Gates {
    pub fn resolve(&self, defaults: &PromotionDefaults) -> PromoteOptions {
        PromoteOptions {
            steps: self.steps.clone(),
            gates: self.measured,
            observe_ms: whole_ms(self.observe.unwrap_or(defaults.observe)),
            confirm: self.confirm.unwrap_or(false),
            min_healthy: self.min_healthy,
            warm_timeout_ms: whole_ms(self.warm_timeout.unwrap_or(defaults.warm_timeout)),
            stop_old: self.stop_old.unwrap_or(false),
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
    /// A change of a service or of the config, as recorded in the history.
    Registry { entry: HistoryEntry },
    /// The endpoints of a service changed (any source).
    Endpoints {
        service: ServiceName,
        endpoints: Vec<Endpoint>,
        at_ms: u64,
    },
    /// An endpoint changed health.
    Health { change: HealthChange, at_ms: u64 },
    /// Docker discovery connected or lost the daemon.
    Docker { status: SourceStatus },
    /// A secondary of a zone now serves another serial, caught up or fell behind, or failed
    /// to answer.
    Secondary {
        state: crate::secondaries::SecondaryState,
        at_ms: u64,
    },
    /// A rollout of many aliases changed (started, a member moved on, paused, ended).
    Rollout {
        rollout: Box<crate::state::Rollout>,
        at_ms: u64,
    },
    /// aliasd is stopping: streams of events end here.
    Closing,
}

/// What discovery and the NOTIFY tasks send the controller: inputs like any other, which
/// the writer takes in one at a time (no part of its data is read from shared state).
#[derive(Debug, Clone)]
pub enum SourceUpdate {
    /// A secondary now serves another serial, caught up or fell behind, or failed to answer
    /// (from its NOTIFY task). A drain waits for every secondary of its zone.
    Secondary(crate::secondaries::SecondaryState),
    /// Docker's whole view: every service's endpoints and the containers it skipped.
    Docker {
        services: BTreeMap<ServiceName, Vec<DockerEndpoint>>,
        problems: Vec<Problem>,
    },
    /// Docker became reachable or unreachable. The endpoints stay as they were.
    DockerStatus(SourceStatus),
    /// A cluster's other live nodes, by name: what their proxies front, the serials they
    /// serve and the members their proxies reported idle. Replaces the last set: a node not
    /// in it is gone (its lease ended) and no drain waits for it.
    Peers(BTreeMap<String, PeerReport>),
    /// The containers of a retired version were stopped; `report` says which and how.
    Stopped {
        alias: AliasName,
        op: u64,
        report: String,
    },
}

pub use crate::proxy::Drained;

/// What one other node of a cluster reports (see [`SourceUpdate::Peers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// Its front proxies (as other nodes name them) and the alias each fronts.
    pub proxies: Vec<(SocketAddr, AliasName)>,
    /// Per zone (in the config's order), the serial it serves.
    pub serials: Vec<Option<u32>>,
    /// Members of draining aliases its proxies have no open work on any more.
    pub drained: Vec<Drained>,
}

/// What the controller asks of Docker discovery.
#[derive(Debug, Clone)]
pub enum DockerCommand {
    /// Stop these containers (each with its own stop timeout): the retired services of
    /// operation `op` of `alias` are safe to stop. `notes` are reasons some were left running.
    Stop {
        alias: AliasName,
        op: u64,
        containers: Vec<ContainerRef>,
        notes: Vec<String>,
    },
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
    ServiceHistory {
        service: ServiceName,
        reply: oneshot::Sender<Vec<HistoryEntry>>,
    },
    RecentHistory {
        limit: usize,
        reply: oneshot::Sender<Vec<HistoryEntry>>,
    },
    PutService {
        service: ServiceName,
        endpoints: Vec<Endpoint>,
        health: HealthSpec,
        actor: Actor,
        reply: Reply<bool>,
    },
    DeleteService {
        service: ServiceName,
        actor: Actor,
        reply: Reply<()>,
    },
    PutAlias {
        alias: AliasName,
        put: AliasPut,
        actor: Actor,
        reply: Reply<(AliasView, bool)>,
    },
    DeleteAlias {
        alias: AliasName,
        actor: Actor,
        reply: Reply<()>,
    },
    Reload {
        base: Arc<Base>,
        actor: Actor,
        reply: Reply<ReloadSummary>,
    },
    StartRollout {
        plan: RolloutPlan,
        actor: Actor,
        reply: Reply<crate::state::Rollout>,
    },
    Rollout {
        id: u64,
        command: rollout::Command,
        actor: Actor,
        reply: Reply<crate::state::Rollout>,
    },
}

/// The API's way in: sends commands and waits for their outcome.
#[derive(Clone)]
pub struct ControlHandle {
    /// The writer's inbox; `None` while no writer runs on this node (a follower of a cluster,
    /// between leadership terms).
    tx: Arc<arc_swap::ArcSwapOption<mpsc::Sender<Command>>>,
    events: broadcast::Sender<Event>,
    published: Arc<watch::Sender<u64>>,
}

impl ControlHandle {
    /// Sends the command `make` builds around a fresh reply channel and waits for the reply;
    /// a writer that has stopped (the send or the reply fails) is `Unavailable`.
    async fn request<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, ControlError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.load_full().ok_or(ControlError::NotLeader)?;
        tx.send(make(reply))
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)
    }

    /// `request` for the commands whose reply is itself a result.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ControlError> {
        self.request(make).await?
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
        self.request(|reply| Command::History { alias, reply })
            .await
    }

    /// The history entries of a service defined through the API.
    pub async fn service_history(
        &self,
        service: ServiceName,
    ) -> Result<Vec<HistoryEntry>, ControlError> {
        self.request(|reply| Command::ServiceHistory { service, reply })
            .await
    }

    /// The newest `limit` history entries of every alias, service and the config, newest
    /// first.
    pub async fn recent_history(&self, limit: usize) -> Result<Vec<HistoryEntry>, ControlError> {
        self.request(|reply| Command::RecentHistory { limit, reply })
            .await
    }

    /// Defines `service` through the API, or replaces its definition. Returns whether it was
    /// created.
    pub async fn put_service(
        &self,
        service: ServiceName,
        endpoints: Vec<Endpoint>,
        health: HealthSpec,
        actor: Actor,
    ) -> Result<bool, ControlError> {
        self.ask(|reply| Command::PutService {
            service,
            endpoints,
            health,
            actor,
            reply,
        })
        .await
    }

    pub async fn delete_service(
        &self,
        service: ServiceName,
        actor: Actor,
    ) -> Result<(), ControlError> {
        self.ask(|reply| Command::DeleteService {
            service,
            actor,
            reply,
        })
        .await
    }

    /// Creates the API alias `alias`, or changes it. Returns its view and whether it was created.
    pub async fn put_alias(
        &self,
        alias: AliasName,
        put: AliasPut,
        actor: Actor,
    ) -> Result<(AliasView, bool), ControlError> {
        self.ask(|reply| Command::PutAlias {
            alias,
            put,
            actor,
            reply,
        })
        .await
    }

    pub async fn delete_alias(&self, alias: AliasName, actor: Actor) -> Result<(), ControlError> {
        self.ask(|reply| Command::DeleteAlias {
            alias,
            actor,
            reply,
        })
        .await
    }

    /// Applies a reloaded config (already loaded and checked) as one change.
    pub async fn reload(
        &self,
        base: Arc<Base>,
        actor: Actor,
    ) -> Result<ReloadSummary, ControlError> {
        self.ask(|reply| Command::Reload { base, actor, reply })
            .await
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The generation of the snapshot published last: it changes with every publish (a burst
    /// of publishes may be seen as its last one).
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// A handle with no writer behind it yet: a cluster node's, whose writer runs only while
    /// it leads. Its events and publishes come from whoever renders this node's snapshots.
    pub fn detached(generation: u64) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            tx: Arc::default(),
            events,
            published: Arc::new(watch::Sender::new(generation)),
        }
    }

    /// Whether a writer runs behind this handle.
    pub fn has_writer(&self) -> bool {
        self.tx.load().is_some()
    }

    /// Takes the writer away (its term ended); commands are refused as [`ControlError::NotLeader`].
    pub fn detach(&self) {
        self.tx.store(None);
    }

    /// Sends `event` to every `/v1/events` stream of this node.
    pub fn send_event(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Says a snapshot of `generation` is published (a follower's replica publishes too).
    pub fn mark_published(&self, generation: u64) {
        self.published.send_replace(generation);
    }
}

/// The writer task's state.
pub struct Controller {
    /// The writer's data: what the planner plans from.
    core: Core,
    /// Used from blocking tasks, one at a time (the writer waits for each).
    durable: Arc<Mutex<Box<dyn Store>>>,
    /// The cell readers load snapshots from.
    shared: SharedSnapshot,
    rx: mpsc::Receiver<Command>,
    health_rx: mpsc::Receiver<HealthChange>,
    sources_rx: mpsc::Receiver<SourceUpdate>,
    docker_tx: Option<mpsc::Sender<DockerCommand>>,
    /// Stops asked of Docker and not answered yet, per alias and operation.
    stops_asked: HashSet<(AliasName, u64)>,
    /// What the front proxies measure, for the gates of weighted steps.
    measurements: Option<Arc<crate::proxy::Measurements>>,
    events: broadcast::Sender<Event>,
    published: Arc<watch::Sender<u64>>,
    board: Arc<HealthBoard>,
    checker: Checker,
    drained_rx: mpsc::UnboundedReceiver<Drained>,
    drain_deadline: Duration,
    clock: SharedClock,
}

/// What the controller starts from.
pub struct StartParts {
    pub base: Arc<Base>,
    /// Where commits go, and what [`recover::recover`] (or another store) found in it.
    pub store: Box<dyn Store>,
    pub state: State,
    pub topology: Arc<Topology>,
    /// Every committed history entry, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The checkers' board, and the checker the controller keeps matching the registry.
    pub board: Arc<HealthBoard>,
    pub checker: Checker,
    pub health_rx: mpsc::Receiver<HealthChange>,
    /// Whole endpoint sets and status from discovery.
    pub sources_rx: mpsc::Receiver<SourceUpdate>,
    /// Where to send container stops, when Docker discovery runs.
    pub docker_tx: Option<mpsc::Sender<DockerCommand>>,
    /// Where Docker is, for the status shown before it is first reached.
    pub docker_endpoint: Option<String>,
    /// Every front proxy (its address, and the alias it fronts): a drain of the alias waits
    /// until each reports ([`Drained`]) that the old members' open work ended, or the drain
    /// deadline passed.
    pub proxies: Vec<(SocketAddr, AliasName)>,
    pub drained_rx: mpsc::UnboundedReceiver<Drained>,
    pub drain_deadline: Duration,
    /// What this process's front proxies measured per alias and service, for the measured
    /// gates of a promotion's steps; `None` where no proxy runs beside the writer (tests).
    pub measurements: Option<Arc<crate::proxy::Measurements>>,
    /// Every zone's secondaries (zone index, address): a drain waits for each of them to
    /// report the serial it began with.
    pub secondaries: Vec<(usize, SocketAddr)>,
    /// Where the writer reads the time: the wall clock, or a test's.
    pub clock: SharedClock,
    /// What a cluster node's writer takes over from the node: its handle, its snapshot cell,
    /// and the health and last good answers every node renders with. `None` for a single node.
    pub takeover: Option<Takeover>,
}

/// What a writer starting on a cluster node continues from (see [`StartParts::takeover`]).
pub struct Takeover {
    pub handle: ControlHandle,
    pub shared: SharedSnapshot,
    /// Health as the cluster last stored it; endpoints not in it start as a fresh start would.
    pub health: HealthMap,
    pub last_good: LastGood,
}

impl Controller {
    /// Builds the starting state from the config and what was stored, stores it, and publishes
    /// generation 1. Returns the controller, its handle and the shared snapshot cell.
    pub fn start(parts: StartParts) -> (Self, ControlHandle, SharedSnapshot) {
        let StartParts {
            base,
            store,
            state,
            topology,
            history: entries,
            board,
            mut checker,
            health_rx,
            sources_rx,
            docker_tx,
            docker_endpoint,
            proxies,
            drained_rx,
            drain_deadline,
            measurements,
            secondaries,
            clock,
            takeover,
        } = parts;
        let now = clock.now_ms();
        let replicate = takeover.is_some();
        let (stored_health, last_good) = takeover
            .as_ref()
            .map(|t| (t.health.clone(), t.last_good.clone()))
            .unwrap_or_default();
        let history = HistoryIndex::load(entries);
        let targets = check_targets(&topology);
        let mut health = HealthMap::new();
        let started_health: Vec<_> = targets
            .iter()
            .map(|(k, c)| {
                let h = stored_health
                    .get(k)
                    .copied()
                    .unwrap_or_else(|| starting_health(c, true));
                (k.clone(), c.clone(), h)
            })
            .collect();
        for (key, _, h) in &started_health {
            health.insert(key.clone(), *h);
        }
        checker.reconcile(started_health);
        let sources = Arc::new(Sources {
            docker: docker_endpoint.map(|endpoint| DockerState {
                status: SourceStatus {
                    connected: false,
                    since_ms: now,
                    last_sync_ms: None,
                    error: Some("not connected yet".into()),
                    endpoint,
                    version: None,
                },
                problems: Vec::new(),
            }),
        });
        let generation = takeover
            .as_ref()
            .map_or(1, |t| t.shared.load().generation + 1);
        let snapshot = Snapshot::render(
            generation,
            topology.clone(),
            &state,
            &health,
            &last_good,
            sources.clone(),
        );
        let snapshot = Arc::new(snapshot);
        let (tx, rx) = mpsc::channel(64);
        let (shared, handle) = match takeover {
            Some(t) => {
                t.shared.store(snapshot.clone());
                t.handle.tx.store(Some(Arc::new(tx)));
                t.handle.mark_published(generation);
                (t.shared, t.handle)
            }
            None => {
                let handle = ControlHandle::detached(generation);
                handle.tx.store(Some(Arc::new(tx)));
                (Arc::new(arc_swap::ArcSwap::new(snapshot.clone())), handle)
            }
        };
        let ControlHandle {
            events, published, ..
        } = handle.clone();
        let controller = Self {
            core: Core {
                base,
                topology,
                state,
                health,
                last_good,
                sources,
                published: snapshot.clone(),
                history,
                drain_serials: HashMap::new(),
                step_serials: Default::default(),
                secondaries: secondaries.into_iter().map(|s| (s, None)).collect(),
                proxies,
                drained: HashMap::new(),
                health_dirty: true,
                health_touched: BTreeSet::new(),
                sources_all_dirty: false,
                replicate,
                peers: BTreeMap::new(),
            },
            durable: Arc::new(Mutex::new(store)),
            shared: shared.clone(),
            rx,
            health_rx,
            sources_rx,
            docker_tx,
            stops_asked: HashSet::new(),
            measurements,
            events: events.clone(),
            published: published.clone(),
            board,
            checker,
            drained_rx,
            drain_deadline,
            clock,
        };
        let mut controller = controller;
        controller.trim_history(now);
        if let Err(e) = controller.compact_history_now() {
            warn!(error = %e, "could not compact the history; it is tried again later");
        }
        (controller, handle, shared)
    }

    /// Applies the retention to every entry kept in memory (the age limit moves with time).
    fn trim_history(&mut self, now: u64) {
        self.core.history.trim(&self.core.base.retention, now);
    }

    /// At start: compacts in place, on this thread.
    fn compact_history_now(&mut self) -> Result<(), StoreError> {
        if !self.core.history.worth_compacting() {
            return Ok(());
        }
        let kept = self.core.history.kept();
        let mut refs: Vec<&HistoryEntry> = kept.iter().collect();
        let mut d = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        d.compact_history(&mut refs)?;
        drop(d);
        self.after_compaction(kept.len());
        Ok(())
    }

    fn after_compaction(&mut self, kept: usize) {
        info!(
            dropped = self.core.history.garbage(),
            kept, "history compacted under its retention"
        );
        self.core.history.compacted(kept);
    }

    /// Compacts the history file when worth it. Runs in the writer between commits, so no
    /// append can interleave; only committed entries are ever dropped, and each keeps its
    /// number and revision. A failure leaves the old file, which still loads.
    async fn compact_history(&mut self) {
        if !self.core.history.worth_compacting() {
            return;
        }
        let kept = self.core.history.kept();
        let n = kept.len();
        let durable = self.durable.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut refs: Vec<&HistoryEntry> = kept.iter().collect();
            let mut d = durable.lock().unwrap_or_else(|p| p.into_inner());
            d.compact_history(&mut refs)
        })
        .await;
        match result {
            Ok(Ok(())) => self.after_compaction(n),
            Ok(Err(e)) => {
                warn!(error = %e, "could not compact the history; it is tried again later")
            }
            Err(e) => warn!(error = %e, "the history compaction task failed"),
        }
    }

    /// Handles commands, health changes, discovery and deadlines until `shutdown` is cancelled.
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
                    self.health_change(change);
                    // A burst of changes (many endpoints flapping at once) is one render.
                    while let Ok(change) = self.health_rx.try_recv() {
                        self.health_change(change);
                    }
                    self.settle().await;
                }
                Some(update) = self.sources_rx.recv() => self.source(update).await,
                Some(drained) = self.drained_rx.recv() => {
                    self.core.drained(drained);
                    while let Ok(drained) = self.drained_rx.try_recv() {
                        self.core.drained(drained);
                    }
                    self.settle().await;
                }
                () = tokio::time::sleep(wait) => self.settle().await,
                () = shutdown.cancelled() => break,
            }
        }
        // A cluster's node keeps serving events after its term (its replica sends them): only
        // a single node's writer ends the streams.
        if !self.core.replicate {
            let _ = self.events.send(Event::Closing);
        }
        info!("controller stopped");
    }

    /// Takes in one change of an endpoint's health.
    fn health_change(&mut self, change: HealthChange) {
        let key = (change.service.clone(), change.endpoint);
        // A checker stopped since (its endpoint left, or its check changed) is stale.
        if self.board.epoch(&key) != Some(change.epoch) {
            return;
        }
        self.core.health.insert(key, change.health);
        self.core.health_dirty = true;
        self.core.health_touched.insert(change.service.clone());
        let _ = self.events.send(Event::Health {
            change,
            at_ms: self.clock.now_ms(),
        });
    }

    /// How long until the next deadline of any alias (at most a second, so a wall-clock jump
    /// is noticed soon). A drain waiting for proxy work or secondaries is woken by their
    /// reports, not by polling.
    fn next_wake(&self) -> Duration {
        let now = self.clock.now_ms();
        let mut next: Option<u64> = None;
        let aliases = self.core.state.aliases.values();
        for d in aliases
            .filter_map(|a| a.phase.deadline())
            .chain(self.rollouts_deadline())
        {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
        Duration::from_millis(next.map_or(1000, |d| d.saturating_sub(now).clamp(1, 1000)))
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
                let result = self.rollback(&alias, to, gates, reason, actor).await;
                let _ = reply.send(result);
            }
            Command::Confirm {
                alias,
                reason,
                actor,
                reply,
            } => {
                let result = self.apply_and_view(&alias, Input::Confirm { actor, reason });
                let _ = reply.send(result.await);
            }
            Command::Abort {
                alias,
                reason,
                actor,
                reply,
            } => {
                let result = self.apply_and_view(&alias, Input::Abort { actor, reason });
                let _ = reply.send(result.await);
            }
            Command::History { alias, reply } => {
                let _ = reply.send(self.core.history.of_alias(&alias).to_vec());
            }
            Command::ServiceHistory { service, reply } => {
                let _ = reply.send(self.core.history.of_service(&service).to_vec());
            }
            Command::RecentHistory { limit, reply } => {
                let _ = reply.send(self.core.history.recent(limit));
            }
            Command::PutService {
                service,
                endpoints,
                health,
                actor,
                reply,
            } => {
                let result = self.put_service(&service, endpoints, health, &actor).await;
                let _ = reply.send(result);
            }
            Command::DeleteService {
                service,
                actor,
                reply,
            } => {
                let change = changes::delete_service(
                    &self.core.base,
                    &self.core.state,
                    &self.core.topology,
                    &service,
                    &actor,
                    self.clock.now_ms(),
                );
                let _ = reply.send(self.commit_registry(change).await);
            }
            Command::PutAlias {
                alias,
                put,
                actor,
                reply,
            } => {
                let result = self.put_alias(&alias, put, actor).await;
                let _ = reply.send(result);
            }
            Command::DeleteAlias {
                alias,
                actor,
                reply,
            } => {
                let change = changes::delete_alias(
                    &self.core.base,
                    &self.core.state,
                    &alias,
                    &actor,
                    self.clock.now_ms(),
                );
                let _ = reply.send(self.commit_registry(change).await);
            }
            Command::Reload { base, actor, reply } => {
                let result = self.reload(base, actor).await;
                let _ = reply.send(result);
            }
            Command::StartRollout { plan, actor, reply } => {
                let _ = reply.send(self.start_rollout(plan, actor).await);
            }
            Command::Rollout {
                id,
                command,
                actor,
                reply,
            } => {
                let _ = reply.send(self.rollout_command(id, command, actor).await);
            }
        }
    }

    /// Defines `service` through the API, or replaces it; returns whether it was created.
    async fn put_service(
        &mut self,
        service: &ServiceName,
        endpoints: Vec<Endpoint>,
        health: HealthSpec,
        actor: &str,
    ) -> Result<bool, ControlError> {
        let change = changes::put_service(
            &self.core.base,
            &self.core.state,
            service,
            endpoints,
            health,
            actor,
            self.clock.now_ms(),
        )?;
        match change {
            Some((state, entry, created)) => self
                .commit_registry(Ok((state, entry)))
                .await
                .map(|()| created),
            None => Ok(false),
        }
    }

    /// Commits a registry change (the next state and its history entry), or passes on why it
    /// was refused.
    async fn commit_registry(
        &mut self,
        change: Result<(State, HistoryEntry), ControlError>,
    ) -> Result<(), ControlError> {
        let (state, entry) = change?;
        self.commit(Batch {
            state: Some(state),
            entries: vec![entry],
            ..Batch::default()
        })
        .await
    }

    async fn put_alias(
        &mut self,
        alias: &AliasName,
        put: AliasPut,
        actor: Actor,
    ) -> Result<(AliasView, bool), ControlError> {
        let last = changes::next_revision_after(self.core.history.of_alias(alias));
        let change = changes::put_alias(
            &self.core.base,
            &self.core.state,
            &self.core.topology,
            alias,
            put,
            last.max(self.core.state.aliases.get(alias).map_or(0, |a| a.revision)),
            &actor,
            self.clock.now_ms(),
        )?;
        let Some(change) = change else {
            return Ok((self.view(alias)?, false));
        };
        let created = change.created;
        self.commit(Batch {
            state: Some(change.state),
            changes: vec![(alias.clone(), change.alias, change.change)],
            ..Batch::default()
        })
        .await?;
        Ok((self.view(alias)?, created))
    }

    async fn reload(
        &mut self,
        base: Arc<Base>,
        actor: Actor,
    ) -> Result<ReloadSummary, ControlError> {
        let changes::Reloaded {
            state,
            created,
            entries,
            summary,
        } = changes::reload(
            &self.core.base,
            &base,
            &self.core.state,
            &actor,
            self.clock.now_ms(),
        )
        .map_err(ControlError::Invalid)?;
        self.commit(Batch {
            state: Some(state),
            base: Some(base),
            changes: created,
            entries,
            serials_set: true,
            ..Batch::default()
        })
        .await?;
        info!(actor = %actor, summary = %summary.text(), "config reloaded");
        Ok(summary)
    }

    /// What discovery sent.
    async fn source(&mut self, update: SourceUpdate) {
        match update {
            SourceUpdate::Docker { services, problems } => {
                let mut sources = (*self.core.sources).clone();
                let mut sources_changed = false;
                if let Some(d) = &mut sources.docker {
                    if d.problems != problems {
                        for p in problems.iter().filter(|p| !d.problems.contains(p)) {
                            warn!(
                                container = %p.container.name,
                                id = %p.container.short_id(),
                                problem = %p.message,
                                "container skipped"
                            );
                        }
                        d.problems = problems;
                        sources_changed = true;
                    }
                    d.status.last_sync_ms = Some(self.clock.now_ms());
                }
                self.core.sources = Arc::new(sources);
                let services: imbl::OrdMap<_, _> = services.into_iter().collect();
                let state = (self.core.state.registry.docker != services).then(|| {
                    let mut next = self.core.state.clone();
                    next.registry.docker = services;
                    next
                });
                if state.is_none() && !sources_changed {
                    return;
                }
                let batch = Batch {
                    state,
                    sources_changed: true,
                    ..Batch::default()
                };
                if let Err(e) = self.commit(batch).await {
                    error!(error = %e, "could not store Docker's endpoints; they apply at the next change");
                }
            }
            SourceUpdate::DockerStatus(status) => {
                let mut sources = (*self.core.sources).clone();
                if let Some(d) = &mut sources.docker {
                    if d.status.connected != status.connected {
                        self.core.sources_all_dirty = true;
                        if status.connected {
                            info!(docker = %status.endpoint, version = status.version.as_deref().unwrap_or(""), "Docker connected");
                        } else {
                            warn!(
                                docker = %status.endpoint,
                                error = status.error.as_deref().unwrap_or(""),
                                "Docker unreachable: keeping the endpoints last seen"
                            );
                        }
                    }
                    let last_sync_ms = d.status.last_sync_ms;
                    d.status = SourceStatus {
                        last_sync_ms,
                        ..status.clone()
                    };
                }
                self.core.sources = Arc::new(sources);
                let _ = self.events.send(Event::Docker { status });
                let batch = Batch {
                    sources_changed: true,
                    ..Batch::default()
                };
                if let Err(e) = self.commit(batch).await {
                    error!(error = %e, "could not publish Docker's status");
                }
                self.ask_stops();
            }
            SourceUpdate::Secondary(state) => {
                let key = (state.zone_index, state.address);
                if let Some(seen) = self.core.secondaries.get_mut(&key) {
                    *seen = state.serial.zip(state.serial_since_ms);
                }
                let at_ms = self.clock.now_ms();
                let _ = self.events.send(Event::Secondary { state, at_ms });
                // A drain may have been waiting for this secondary.
                self.settle().await;
            }
            SourceUpdate::Peers(peers) => {
                let now = self.clock.now_ms();
                for (name, report) in &peers {
                    for d in &report.drained {
                        self.core.drained(d.clone());
                    }
                    let seen = self.core.peers.entry(name.clone()).or_default();
                    seen.proxies = report.proxies.clone();
                    seen.serials.resize(report.serials.len(), None);
                    for (slot, serial) in seen.serials.iter_mut().zip(&report.serials) {
                        match (serial, &slot) {
                            (Some(s), Some((had, _))) if had == s => {}
                            (Some(s), _) => *slot = Some((*s, now)),
                            (None, _) => *slot = None,
                        }
                    }
                }
                self.core.peers.retain(|name, _| peers.contains_key(name));
                // A drain may have been waiting for these nodes.
                self.settle().await;
            }
            SourceUpdate::Stopped { alias, op, report } => {
                self.stops_asked.remove(&(alias.clone(), op));
                let input = Input::Stopped {
                    op,
                    actor: machine::AUTOMATIC.into(),
                    reason: report,
                };
                if let Err(e) = self.apply(&alias, input).await {
                    error!(alias = %alias, error = %e, "could not record the stopped containers");
                }
            }
        }
    }

    /// Asks Docker to stop the containers of every retired version whose operation asked for
    /// it (`stop_old`) and that is safe to stop, once per operation. Services still used by
    /// some alias are left running, with a note.
    fn ask_stops(&mut self) {
        let Some(tx) = &self.docker_tx else { return };
        let connected = self
            .core
            .sources
            .docker
            .as_ref()
            .is_some_and(|d| d.status.connected);
        if !connected {
            return;
        }
        let owed = self
            .core
            .state
            .aliases
            .values()
            .any(|a| a.retired.as_ref().is_some_and(|r| r.stop_pending()));
        if !owed {
            return;
        }
        let mut in_use: HashMap<ServiceName, AliasName> = HashMap::new();
        for (name, a) in &self.core.state.aliases {
            let op = a.phase.operation();
            for s in machine::answering(a)
                .into_iter()
                .chain(a.targets.iter().cloned())
                .chain(op.into_iter().flat_map(|o| o.to.iter().cloned()))
            {
                in_use.entry(s).or_insert_with(|| name.clone());
            }
        }
        let now = self.clock.now_ms();
        for (name, alias) in &self.core.state.aliases {
            let Some(r) = &alias.retired else { continue };
            if !r.stop_pending() || now < r.safe_to_stop_at_ms {
                continue;
            }
            let key = (name.clone(), r.op);
            if self.stops_asked.contains(&key) {
                continue;
            }
            let mut containers = Vec::new();
            let mut notes = Vec::new();
            for s in &r.services {
                if let Some(user) = in_use.get(s) {
                    notes.push(format!(
                        "{s} is still used by alias {user}, so it was left running"
                    ));
                    continue;
                }
                containers.extend(
                    self.core
                        .topology
                        .services
                        .get(s)
                        .into_iter()
                        .flat_map(|svc| &svc.endpoints)
                        .filter(|e| !e.is_dead())
                        .filter_map(|e| e.container.clone()),
                );
            }
            let command = DockerCommand::Stop {
                alias: name.clone(),
                op: r.op,
                containers,
                notes,
            };
            if tx.try_send(command).is_ok() {
                self.stops_asked.insert(key);
            }
        }
    }

    fn check_services(&self, targets: &[ServiceName]) -> Result<(), ControlError> {
        check_services(&self.core.topology, targets)
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
        if gates.stop_old == Some(true) && self.docker_tx.is_none() {
            return Err(ControlError::BadRequest(
                "stop_old stops the old version's Docker containers, but Docker discovery is off ([docker] enabled = false)".into(),
            ));
        }
        let input = Input::Promote {
            to,
            options: gates.resolve(&self.core.base.defaults),
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

    async fn rollback(
        &mut self,
        alias: &AliasName,
        to: RollbackTo,
        gates: Gates,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<Started, ControlError> {
        let targets = self.rollback_target(alias, to)?;
        self.promote(alias, targets, gates, OpKind::Rollback, reason, actor)
            .await
    }

    fn rollback_target(
        &self,
        alias: &AliasName,
        to: RollbackTo,
    ) -> Result<Vec<ServiceName>, ControlError> {
        let state = self
            .core
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
            RollbackTo::Revision(rev) => {
                let entries = self.core.history.of_alias(alias);
                match entries
                    .iter()
                    .filter_map(HistoryEntry::alias)
                    .find(|a| a.revision == rev)
                {
                    Some(a) => a.answering.clone(),
                    None => {
                        let oldest = entries.first().map(HistoryEntry::revision);
                        let r = self.core.base.retention;
                        return Err(ControlError::NotFound(match oldest {
                            Some(oldest) if rev < oldest => format!(
                                "revision {rev} of alias `{alias}` was compacted away by the history retention (keep_per_alias = {}, max_age = {}); the oldest revision kept is {oldest}",
                                r.keep_per_alias,
                                humantime::format_duration(r.max_age)
                            ),
                            _ => format!("alias `{alias}` has no revision {rev} in its history"),
                        }));
                    }
                }
            }
        };
        targets
            .iter()
            .map(|t| {
                t.parse::<ServiceName>()
                    .ok()
                    .filter(|s| self.core.topology.services.contains_key(s))
                    .ok_or_else(|| {
                        ControlError::Conflict(format!(
                            "cannot roll back to service `{t}`: it no longer exists"
                        ))
                    })
            })
            .collect()
    }

    /// Runs `input` through the machine for `alias`, then settles every alias, and commits.
    /// Returns whether the input changed anything.
    async fn apply(&mut self, alias: &AliasName, input: Input) -> Result<bool, ControlError> {
        let current = self
            .core
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
        self.commit(Batch::of(changes)).await?;
        Ok(true)
    }

    /// [`Controller::apply`], answered with the alias's view after it.
    async fn apply_and_view(
        &mut self,
        alias: &AliasName,
        input: Input,
    ) -> Result<AliasView, ControlError> {
        self.apply(alias, input).await?;
        self.view(alias)
    }

    /// Applies every transition that time and health have made due, and commits them.
    async fn settle(&mut self) {
        let now = self.clock.now_ms();
        if self.core.history.trim_due(now) {
            self.trim_history(now);
            self.compact_history().await;
        }
        let changes = self.due_transitions(None);
        if changes.is_empty() && !self.core.health_dirty && !self.rollouts_due(now) {
            return;
        }
        if let Err(e) = self.commit(Batch::of(changes)).await {
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
        // Only an alias in an operation moves with time or health: a stable one never ticks.
        // With pending changes, their last state per alias is where the ticks start.
        let mut latest: BTreeMap<&AliasName, &AliasState> = BTreeMap::new();
        for (name, state) in pending.into_iter().flatten().map(|(n, s, _)| (n, s)) {
            latest.insert(name, state);
        }
        let moving = self
            .core
            .state
            .aliases
            .iter()
            .filter(|(name, a)| a.phase.operation().is_some() && !latest.contains_key(name))
            .chain(latest.iter().map(|(n, s)| (*n, *s)));
        for (name, alias) in moving {
            if alias.phase.operation().is_none() {
                continue;
            }
            let mut current = alias.clone();
            let busy = |services: &[ServiceName]| self.core.open_work(name, services);
            // Each tick makes at most one transition; a handful covers any chain.
            for _ in 0..8 {
                let caught = || self.core.caught_up(name, &current);
                let measured = || self.measured(name, &current);
                let ctx = &Ctx {
                    secondaries: &caught,
                    busy: &busy,
                    measured: &measured,
                    ..*ctx
                };
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

    /// What the front proxies measured of `state`'s current weighted step, judged against its
    /// gates: a breach, or the figures within them (too few requests to judge is within: a step
    /// with no traffic is not held forever).
    fn measured(&self, alias: &AliasName, state: &AliasState) -> machine::Measured {
        let Some(measurements) = &self.measurements else {
            return machine::Measured::Nothing;
        };
        let Some(op) = state
            .phase
            .operation()
            .filter(|op| !op.options.gates.is_off())
        else {
            return machine::Measured::Nothing;
        };
        let Some((new, old)) = step_figures(measurements, alias, state) else {
            return machine::Measured::Nothing;
        };
        match crate::gates::judge(&op.options.gates, &new, &old) {
            crate::gates::Verdict::Breach(why) => machine::Measured::Breach(why),
            crate::gates::Verdict::Pass(summary) => machine::Measured::Within(summary),
            crate::gates::Verdict::TooFew { requests, needed } => {
                machine::Measured::Within(format!(
                    "not judged: {} of the {needed} needed",
                    crate::text::plural(requests, "request")
                ))
            }
        }
    }

    /// Runs `f` with the machine's view of now: the clock, the TTL window and health counts.
    fn with_ctx<R>(&self, f: impl FnOnce(&Ctx<'_>) -> R) -> R {
        let count =
            |services: &[ServiceName]| counts(&self.core.topology, &self.core.health, services);
        let ctx = Ctx {
            now: self.clock.now_ms(),
            ttl_window_s: self.core.topology.ttl_window_s(),
            grace_ms: self.core.base.defaults.drain_grace.as_millis() as u64,
            counts: &count,
            // What a drain waits for is the alias's own: see `ticks`.
            busy: &|_| 0,
            drain_deadline_ms: self.drain_deadline.as_millis() as u64,
            secondaries: &|| machine::Caught::Since(0),
            measured: &|| machine::Measured::Nothing,
        };
        f(&ctx)
    }

    /// Plans a batch, makes its unit durable, and only then takes the plan on, publishes the
    /// snapshot, sends the events and runs the effects. A refused unit leaves the core and
    /// the snapshot as they were, and the caller gets the reason. Also republishes when
    /// health alone changed the answers, bumping the zone serial.
    async fn commit(&mut self, mut batch: Batch) -> Result<(), ControlError> {
        // Rollouts move with what the batch changes, in the same unit.
        self.drive_rollouts(&mut batch);
        let now = self.clock.now_ms();
        let Some(mut plan) = self.core.plan(batch, now) else {
            self.core.nothing_changed();
            return Ok(());
        };
        if let Some(unit) = plan.durable.take() {
            self.make_durable(unit, &plan.state, &plan.topology).await?;
        }
        let (snapshot, events, effects) = self.core.apply(plan, now);
        let generation = snapshot.generation;
        self.shared.store(snapshot);
        self.published.send_replace(generation);
        for event in events {
            log_event(&event);
            let _ = self.events.send(event);
        }
        for effect in effects {
            match effect {
                Effect::Reconcile(targets) => self.checker.reconcile(targets),
            }
        }
        self.ask_stops();
        self.compact_history().await;
        Ok(())
    }

    /// Hands `unit` to the store, off the writer's task; `state` and `topology` render the
    /// whole state for a store that wants it.
    async fn make_durable(
        &self,
        unit: Unit,
        state: &State,
        topology: &Arc<Topology>,
    ) -> Result<(), ControlError> {
        let durable = self.durable.clone();
        let (whole_state, whole_topology) = (state.clone(), topology.clone());
        tokio::task::spawn_blocking(move || {
            let mut d = durable.lock().unwrap_or_else(|p| p.into_inner());
            d.commit(unit.delta, &unit.entries, &unit.live, &|| {
                to_stored(&whole_topology, &whole_state)
            })
        })
        .await
        .map_err(|e| ControlError::Storage(e.to_string()))?
        .map_err(ControlError::from)
    }

    fn view(&self, alias: &AliasName) -> Result<AliasView, ControlError> {
        self.shared
            .load()
            .aliases
            .get(alias)
            .map(|v| (**v).clone())
            .ok_or_else(|| ControlError::UnknownAlias(alias.to_string()))
    }
}

/// Logs what a published event says changed.
fn log_event(event: &Event) {
    match event {
        Event::Endpoints {
            service, endpoints, ..
        } => {
            info!(service = %service, endpoints = endpoints.len(), "service endpoints changed");
        }
        Event::Registry { entry: e } => {
            let (alias, service) = match &e.subject {
                Subject::Alias(a) => (a.alias.as_str(), ""),
                Subject::Service(s) => ("", s.as_str()),
                Subject::Config => ("", ""),
            };
            info!(
                change = ?e.change,
                alias,
                service,
                actor = %e.actor,
                reason = e.reason.as_deref().unwrap_or(""),
                "registry changed"
            );
        }
        Event::Change { entry, state } => info!(
            alias = entry.alias().map_or("", |a| a.alias.as_str()),
            change = ?entry.change,
            phase = state.phase.name(),
            revision = state.revision,
            actor = %entry.actor,
            reason = entry.reason.as_deref().unwrap_or(""),
            "alias changed"
        ),
        _ => {}
    }
}

/// Every endpoint to check, with its check; dead containers and unchecked endpoints (always
/// healthy, see [`health_of`]) need no checker.
fn check_targets(topology: &Topology) -> Vec<((ServiceName, Endpoint), crate::check::CheckConfig)> {
    topology
        .services
        .iter()
        .flat_map(|(name, s)| {
            s.endpoints
                .iter()
                .filter(|e| !e.is_dead() && e.check.kind != crate::check::CheckKind::None)
                .map(move |e| ((name.clone(), e.endpoint), e.check.clone()))
        })
        .collect()
}

/// The services whose endpoint addresses differ between two topologies, with their new ones.
fn changed_endpoints(old: &Topology, new: &Topology) -> Vec<(ServiceName, Vec<Endpoint>)> {
    let mut out = Vec::new();
    for (name, s) in &new.services {
        let now: Vec<Endpoint> = s.addrs().collect();
        if old
            .services
            .get(name)
            .is_none_or(|o| o.addrs().ne(now.iter().copied()))
        {
            out.push((name.clone(), now));
        }
    }
    for name in old.services.keys() {
        if !new.services.contains_key(name) {
            out.push((name.clone(), Vec::new()));
        }
    }
    out
}

/// Parses the API-defined parts of a stored state; notes name what could not be kept.
fn stored_registry(base: &Base, stored: &StoredState, notes: &mut Vec<String>) -> Registry {
    let mut registry = Registry::default();
    for (name, service) in &stored.services {
        match name.parse::<ServiceName>() {
            Ok(n) if base.services.contains_key(&n) => notes.push(format!(
                "service `{n}` was defined through the API and is now in the config; the config's definition is used"
            )),
            Ok(n) => {
                registry.api_services.insert(n, service.clone());
            }
            Err(e) => notes.push(format!("stored service `{name}` is dropped: {e}")),
        }
    }
    for (name, endpoints) in &stored.docker {
        match name.parse::<ServiceName>() {
            Ok(n) => {
                registry.docker.insert(n, endpoints.clone());
            }
            Err(e) => notes.push(format!("stored Docker service `{name}` is dropped: {e}")),
        }
    }
    let mut placed: BTreeMap<AliasName, ()> =
        base.aliases.keys().map(|a| (a.clone(), ())).collect();
    for (name, spec) in &stored.alias_specs {
        let alias = match AliasName::resolve(name, &hickory_proto::rr::Name::root()) {
            Ok(a) => a,
            Err(e) => {
                notes.push(format!("stored alias `{name}` is dropped: {e}"));
                continue;
            }
        };
        match crate::registry::place_alias(&alias, &base.zones, &placed) {
            Ok(_) => {
                placed.insert(alias.clone(), ());
                registry.api_aliases.insert(alias, spec.clone());
            }
            Err(e) => notes.push(format!(
                "alias `{alias}` (defined through the API) no longer fits the config and is dropped: {e}"
            )),
        }
    }
    registry
}

/// Endpoint health counts over the union of `services`' endpoints.
pub fn counts(topology: &Topology, health: &HealthMap, services: &[ServiceName]) -> Counts {
    let mut c = Counts::default();
    for s in services {
        for e in topology.services.get(s).map_or(&[][..], |c| &c.endpoints) {
            c.total += 1;
            match health_of(health, s, e) {
                Health::Healthy => c.healthy += 1,
                Health::Unhealthy => c.failed += 1,
                Health::Unknown | Health::Starting => {}
            }
        }
    }
    c
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
        secondaries: &|| machine::Caught::Since(0),
        measured: &|| machine::Measured::Nothing,
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

/// The state and snapshot a fresh start renders from `base` and `stored`, with every endpoint
/// unchecked: what the benchmarks, the DNS fixture and the fuzz targets serve.
pub fn first_render(base: &Base, stored: Option<&StoredState>, now_ms: u64) -> (State, Snapshot) {
    let (state, _notes) = initial_state(base, stored, now_ms);
    let topology = Arc::new(Topology::build(
        base,
        &state.registry,
        state.named_services(),
    ));
    let snapshot = Snapshot::render(
        1,
        topology,
        &state,
        &HealthMap::new(),
        &LastGood::new(),
        Arc::default(),
    );
    (state, snapshot)
}

/// The state to start with: stored links and phases win over the config's for aliases that
/// still exist, and the services and aliases defined through the API come back.
///
/// Returns notes for the operator about stored data that no longer fits the config. Serials
/// continue from the larger of the stored and the file serial, plus one, because the answers
/// may differ from what was served before the restart.
pub fn initial_state(
    base: &Base,
    stored: Option<&StoredState>,
    now_ms: u64,
) -> (State, Vec<String>) {
    let mut notes = Vec::new();
    let registry = stored
        .map(|s| stored_registry(base, s, &mut notes))
        .unwrap_or_default();
    let topology = Topology::build(base, &registry, []);
    let mut aliases = BTreeMap::new();
    // With Docker on, a service no source has now may be one whose containers come back.
    let known = |t: &ServiceName| base.docker || topology.services.contains_key(t);
    for (name, def) in &topology.aliases {
        let key = name.name().to_ascii();
        let alias_state = match stored.and_then(|s| s.aliases.get(&key)) {
            None if def.source == crate::registry::Source::Api => {
                notes.push(format!(
                    "alias `{name}` (defined through the API) has no stored links; it is dropped"
                ));
                continue;
            }
            None => fresh(def.targets.clone(), 1, now_ms, "config"),
            Some(s) => stored_alias_state(name, &def.targets, s, &known, now_ms, &mut notes),
        };
        aliases.insert(name.clone(), alias_state);
    }
    let mut registry = registry;
    registry.api_aliases = std::mem::take(&mut registry.api_aliases)
        .into_iter()
        .filter(|(name, _)| aliases.contains_key(name))
        .collect();
    if let Some(stored) = stored {
        let kept: HashSet<String> = aliases.keys().map(|a| a.name().to_ascii()).collect();
        for key in stored.aliases.keys() {
            if !kept.contains(key) {
                notes.push(format!(
                    "stored alias `{key}` is not in the config any more; its links are forgotten"
                ));
            }
        }
    }
    let serials: Vec<u32> = base
        .zones
        .iter()
        .map(|zone| {
            let stored_serial = stored.and_then(|s| s.serials.get(&zone.origin.name().to_ascii()));
            let file_serial = zone.file_serial;
            let start = match stored_serial {
                Some(s) if serial_gt(*s, file_serial) => *s,
                _ => file_serial,
            };
            start.wrapping_add(1)
        })
        .collect();
    (
        State {
            aliases: aliases.into_iter().collect(),
            serial_reserve: serials.clone(),
            serials,
            registry,
            history_seq: stored.map_or(0, |s| s.history_seq),
            rollouts: stored
                .map(|s| stored_rollouts(s, &mut notes))
                .unwrap_or_default(),
        },
        notes,
    )
}

/// The stored rollouts, by id; one whose key is not its id is dropped with a note.
fn stored_rollouts(
    stored: &StoredState,
    notes: &mut Vec<String>,
) -> imbl::OrdMap<u64, crate::state::Rollout> {
    let mut out = imbl::OrdMap::new();
    for (key, rollout) in &stored.rollouts {
        if key.parse() == Ok(rollout.id) {
            out.insert(rollout.id, rollout.clone());
        } else {
            notes.push(format!(
                "stored rollout `{key}` has id {}; it is dropped",
                rollout.id
            ));
        }
    }
    out
}

/// The state of alias `name` from its stored links `s`, keeping what still fits: services
/// that no longer exist are dropped (with a note), and an alias left without any falls back
/// to the config's `targets`.
fn stored_alias_state(
    name: &AliasName,
    config_targets: &[ServiceName],
    s: &StoredAlias,
    known: &dyn Fn(&ServiceName) -> bool,
    now_ms: u64,
    notes: &mut Vec<String>,
) -> AliasState {
    let mut targets: Vec<ServiceName> = Vec::new();
    for t in &s.targets {
        match t.parse::<ServiceName>() {
                Ok(t) if known(&t) => {
                    if !targets.contains(&t) {
                        targets.push(t);
                    }
                }
                _ => notes.push(format!(
                    "stored links of alias `{name}` name service `{t}`, which no longer exists; it is dropped"
                )),
            }
    }
    let op_services_known = s
        .phase
        .operation()
        .is_none_or(|op| op.to.iter().chain(&op.from).all(known));
    if !op_services_known {
        notes.push(format!(
            "alias `{name}`: the stored {} names a service that no longer exists; it is dropped",
            s.phase.name()
        ));
    }
    let alias_state = if targets.is_empty() && config_targets.is_empty() {
        notes.push(format!(
                "alias `{name}`: none of its stored services exist any more; it answers nothing until it is linked again"
            ));
        fresh(targets, s.revision + 1, now_ms, "config")
    } else if targets.is_empty() {
        notes.push(format!(
            "alias `{name}`: none of its stored services exist any more; using the config's targets"
        ));
        fresh(config_targets.to_vec(), s.revision + 1, now_ms, "config")
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
            last_op: None,
        }
    };
    // How the last operation ended stays true whatever became of its services.
    AliasState {
        last_op: s.last_op.clone(),
        ..alias_state
    }
}

/// The on-disk form of `state`.
pub fn to_stored(topology: &Topology, state: &State) -> StoredState {
    StoredState {
        serials: topology
            .zones
            .iter()
            .zip(&state.serial_reserve)
            .map(|(z, s)| (z.origin.name().to_ascii(), *s))
            .collect(),
        aliases: state
            .aliases
            .iter()
            .map(|(name, a)| (name.name().to_ascii(), stored_alias(a)))
            .collect(),
        services: state
            .registry
            .api_services
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        alias_specs: state
            .registry
            .api_aliases
            .iter()
            .map(|(k, v)| (k.name().to_ascii(), v.clone()))
            .collect(),
        docker: state
            .registry
            .docker
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        history_seq: state.history_seq,
        journal_seq: 0,
        rollouts: state
            .rollouts
            .iter()
            .map(|(id, r)| (id.to_string(), r.clone()))
            .collect(),
    }
}

/// The journal record of going from `old` to `new`: only what differs (the maps share their
/// unchanged parts, so this costs the change, not the state's size).
fn delta(topology: &Topology, old: &State, new: &State, reserve_moved: bool) -> StoredDelta {
    fn diff<K: Ord + Clone, V: Clone + PartialEq, S>(
        old: &imbl::OrdMap<K, V>,
        new: &imbl::OrdMap<K, V>,
        key: impl Fn(&K) -> String,
        stored: impl Fn(&V) -> S,
    ) -> BTreeMap<String, Option<S>> {
        old.diff(new)
            .map(|item| match item {
                DiffItem::Add(k, v) | DiffItem::Update { new: (k, v), .. } => {
                    (key(k), Some(stored(v)))
                }
                DiffItem::Remove(k, _) => (key(k), None),
            })
            .collect()
    }
    let alias_key = |a: &AliasName| a.name().to_ascii();
    StoredDelta {
        seq: 0,
        aliases: diff(&old.aliases, &new.aliases, alias_key, stored_alias),
        serials: if reserve_moved {
            topology
                .zones
                .iter()
                .zip(&new.serial_reserve)
                .map(|(z, s)| (z.origin.name().to_ascii(), *s))
                .collect()
        } else {
            BTreeMap::new()
        },
        services: diff(
            &old.registry.api_services,
            &new.registry.api_services,
            ToString::to_string,
            Clone::clone,
        ),
        alias_specs: diff(
            &old.registry.api_aliases,
            &new.registry.api_aliases,
            alias_key,
            Clone::clone,
        ),
        docker: diff(
            &old.registry.docker,
            &new.registry.docker,
            ToString::to_string,
            Clone::clone,
        ),
        history_seq: new.history_seq,
        rollouts: diff(
            &old.rollouts,
            &new.rollouts,
            ToString::to_string,
            Clone::clone,
        ),
    }
}

/// The stored form of one alias.
fn stored_alias(a: &AliasState) -> StoredAlias {
    StoredAlias {
        targets: names(&a.targets),
        revision: a.revision,
        changed_at_ms: a.changed_at_ms,
        changed_by: a.changed_by.clone(),
        phase: a.phase.clone(),
        previous: a.previous.as_ref().map(|p| names(p)),
        retired: a.retired.clone(),
        ttl_served_s: a.ttl_served_s,
        last_op: a.last_op.clone(),
    }
}

#[cfg(test)]
mod tests;
