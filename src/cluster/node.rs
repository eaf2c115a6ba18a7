//! One node of a cluster: its lease, what it announces, the election, and its two roles.
//!
//! Every node holds one lease in etcd, kept alive every third of `lease_ttl`. Under it sit
//! the node's announcement (`nodes/<node>`: its API address, the revision it renders, its
//! definitions' hash, its zones' serials), what its Docker daemon runs (`hosts/<node>/docker`)
//! and, on the leader, the `leader` key. A node that dies or is cut off takes all of them
//! with it when the lease expires.
//!
//! A follower lists the prefix, renders it ([`Replica`]), and watches from the listed
//! revision; a lost watch or a compaction means a full list again. Meanwhile it campaigns:
//! a transaction creates `leader` if no key is there. The winner lists the state and history
//! again, takes over ([`takeover`]) and runs the writer with an [`EtcdStore`] fenced by the
//! revision its `leader` key was created at, until its term ends: shutdown, a lease it could
//! not renew in time (a frozen process wakes up past its lease and stops before it writes),
//! or any write etcd refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::SharedClock;
use crate::controller::PeerReport;
use crate::controller::history::HistoryEntry;
use crate::controller::store::Store;
use crate::controller::{
    ControlHandle, Controller, DockerCommand, Drained, SERIAL_RESERVE, SourceUpdate, StartParts,
    Takeover, initial_state, to_stored,
};
use crate::health::{Checker, HealthBoard};
use crate::model::{AliasName, Endpoint};
use crate::registry::{Base, DockerEndpoint, Problem, Sources, Topology};
use crate::snapshot::SharedSnapshot;
use crate::state::{Live, State, StoredDelta, StoredState};

use super::etcd::{self, EtcdStore, Keys, Listed, Settings, TXN_OPS, describe};
use super::replica::Replica;
use super::status::{ClusterMode, ClusterStatus, EtcdStatus, NodeStatus};

mod lease;
mod members;
mod takeover;
mod term;

use lease::keep_lease;
use members::{announce, compose, feed_peers, list_members, watch_members};
pub use takeover::{Taken, takeover};
use term::{campaign, lead};

/// How long to wait before asking etcd again after a failure.
const RETRY: Duration = Duration::from_millis(300);

/// What a node announces under `nodes/<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub api: SocketAddr,
    /// The revision of the last commit it renders.
    pub applied: i64,
    pub config_hash: String,
    pub started_ms: u64,
    /// Per zone (origin), the serial it serves.
    pub serials: BTreeMap<String, u32>,
    /// Its front proxies (its advertise address and the listener's port) and their aliases.
    #[serde(default)]
    pub proxies: Vec<(SocketAddr, String)>,
    /// Members of draining aliases its proxies have no open work on any more.
    #[serde(default)]
    pub drained: Vec<(SocketAddr, String, Endpoint)>,
}

/// Reports of idle members, as a follower announces them.
type DrainedSet = BTreeSet<(SocketAddr, String, Endpoint)>;

/// What a node's Docker daemon runs, under `hosts/<node>/docker`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub services: BTreeMap<String, Vec<DockerEndpoint>>,
    pub problems: Vec<Problem>,
}

/// What the writer needs on whichever node leads.
#[derive(Clone)]
pub struct WriterSetup {
    pub board: Arc<HealthBoard>,
    pub health_concurrency: usize,
    pub proxies: Vec<(SocketAddr, AliasName)>,
    pub secondaries: Vec<(usize, SocketAddr)>,
    pub drain_deadline: Duration,
    pub docker_tx: Option<mpsc::Sender<DockerCommand>>,
    pub docker_endpoint: Option<String>,
    pub clock: SharedClock,
    /// What this node's proxies measure, for the writer's measured gates when it leads.
    pub measurements: Arc<crate::proxy::Measurements>,
}

/// A node, started: connected, with its first snapshot rendered from etcd.
pub struct Node {
    settings: Settings,
    keys: Keys,
    client: Client,
    base: Arc<Base>,
    shared: SharedSnapshot,
    handle: ControlHandle,
    status: watch::Sender<ClusterStatus>,
    setup: WriterSetup,
    sources_rx: mpsc::Receiver<SourceUpdate>,
    drained_rx: mpsc::UnboundedReceiver<Drained>,
    first: Listed,
    api: SocketAddr,
    config_hash: String,
    started_ms: u64,
}

/// What the daemon hands a node.
pub struct NodeParts {
    pub settings: Settings,
    pub base: Arc<Base>,
    /// This node's API, as other nodes reach it.
    pub api: SocketAddr,
    pub config_hash: String,
    pub setup: WriterSetup,
    /// Discovery's endpoint sets, the secondaries' reports: for whichever writer runs here.
    pub sources_rx: mpsc::Receiver<SourceUpdate>,
    pub drained_rx: mpsc::UnboundedReceiver<Drained>,
}

/// Where the current term's writer takes its inputs; empty while this node follows.
#[derive(Default)]
struct Slot {
    sources: Option<mpsc::Sender<SourceUpdate>>,
    drained: Option<mpsc::UnboundedSender<Drained>>,
    /// The local Docker discovery's last status: a writer that starts after it was sent
    /// (this node elected later) is told it at once, or it would wait for Docker forever.
    docker_status: Option<crate::registry::SourceStatus>,
}

/// etcd as this node last reached it.
#[derive(Clone)]
struct Reach {
    status: watch::Sender<ClusterStatus>,
    clock: SharedClock,
}

impl Reach {
    fn ok(&self) {
        let now = self.clock.now_ms();
        self.status.send_if_modified(|s| match &mut s.etcd {
            Some(e) if !e.connected => {
                e.connected = true;
                e.since_ms = now;
                e.error = None;
                info!("etcd reached again");
                true
            }
            _ => false,
        });
    }

    fn failed(&self, error: &str) {
        let now = self.clock.now_ms();
        self.status.send_if_modified(|s| match &mut s.etcd {
            Some(e) => {
                let changed = e.connected || e.error.as_deref() != Some(error);
                if e.connected {
                    warn!(error, "etcd lost: serving the last state, refusing changes");
                    e.since_ms = now;
                }
                e.connected = false;
                e.error = Some(error.to_owned());
                changed
            }
            None => false,
        });
    }
}

impl Node {
    /// Connects to etcd and renders its first snapshot, waiting (and saying so) until etcd
    /// answers or `shutdown` is cancelled. Returns the node and what the daemon serves from.
    pub async fn start(
        parts: NodeParts,
        shutdown: &CancellationToken,
    ) -> Option<(
        Self,
        SharedSnapshot,
        ControlHandle,
        watch::Receiver<ClusterStatus>,
    )> {
        let NodeParts {
            settings,
            base,
            api,
            config_hash,
            setup,
            sources_rx,
            drained_rx,
        } = parts;
        let keys = Keys::new(&settings.prefix);
        let started_ms = setup.clock.now_ms();
        let (mut client, first) = loop {
            let attempt = async {
                let mut client = etcd::connect(&settings).await?;
                let listed = etcd::list(&mut client, &keys)
                    .await
                    .map_err(|e| describe(&e))?;
                Ok::<_, String>((client, listed))
            };
            match attempt.await {
                Ok(found) => break found,
                Err(e) => {
                    warn!(etcd = ?settings.etcd, error = %e, "waiting for etcd");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return None,
                    }
                }
            }
        };
        for p in &first.problems {
            error!("{p}");
        }
        info!(node = %settings.node, revision = first.revision, "cluster state listed from etcd");
        let handle = ControlHandle::detached(0);
        let empty = crate::snapshot::Snapshot::render(
            0,
            Arc::new(Topology::build(&base, &Default::default(), [])),
            &State {
                aliases: imbl::OrdMap::new(),
                serials: vec![0; base.zones.len()],
                registry: Default::default(),
                serial_reserve: Vec::new(),
                history_seq: 0,
                rollouts: imbl::OrdMap::new(),
            },
            &Default::default(),
            &Default::default(),
            Arc::default(),
        );
        let shared: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(empty));
        // The first render, so DNS has answers from its first query.
        let replica = Replica::new(
            base.clone(),
            &first,
            shared.clone(),
            handle.clone(),
            Arc::new(Sources::default()),
            setup.board.clone(),
            started_ms,
        );
        let mut status = ClusterStatus::single(&settings.node, api, &config_hash, started_ms);
        status.mode = ClusterMode::Etcd;
        status.leader = None;
        status.nodes.clear();
        status.etcd = Some(EtcdStatus {
            endpoints: settings.etcd.clone(),
            connected: true,
            since_ms: started_ms,
            error: None,
        });
        let (status, status_rx) = watch::channel(status);
        let mut node = Self {
            settings,
            keys,
            client: client.clone(),
            base,
            shared: shared.clone(),
            handle: handle.clone(),
            status,
            setup,
            sources_rx,
            drained_rx,
            first,
            api,
            config_hash,
            started_ms,
        };
        node.update_members(&mut client).await;
        drop(replica);
        node.warn_if_different();
        Some((node, shared, handle, status_rx))
    }

    /// Says loudly, once at start, when this node's definitions are not the leader's.
    fn warn_if_different(&self) {
        let status = self.status.borrow();
        if status.nodes.iter().any(|n| n.name == self.settings.node) {
            return;
        }
        let leader = status.nodes.iter().find(|n| n.leader);
        if let Some(leader) = leader
            && leader.config_hash != self.config_hash
        {
            error!(
                node = %self.settings.node,
                leader = %leader.name,
                "this node's definitions (zones, services, aliases) differ from the leader's: it would answer differently from the cluster; give every node the same config files"
            );
        }
    }

    /// Lists the members and the leader once (at start, before the watcher runs).
    async fn update_members(&mut self, client: &mut Client) {
        if let Ok(members) = list_members(client, &self.keys).await {
            let mine = self.config_hash.clone();
            self.status
                .send_modify(|s| compose(s, &members.0, members.1.as_deref(), &mine));
        }
    }

    /// Runs the node until `shutdown`: its lease, its announcement, the members' watch, the
    /// follower's replica and, when elected, the writer.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            settings,
            keys,
            client,
            base,
            shared,
            handle,
            status,
            setup,
            sources_rx,
            drained_rx,
            first,
            api,
            config_hash,
            started_ms,
        } = self;
        let reach = Reach {
            status: status.clone(),
            clock: setup.clock.clone(),
        };
        let mut tasks = JoinSet::new();
        let (lease_tx, lease_rx) = watch::channel(0i64);
        let lease_until = Arc::new(Mutex::new(Instant::now()));
        let (applied_tx, applied_rx) = watch::channel(first.meta_revision);
        let (host_tx, host_rx) = watch::channel::<Option<HostView>>(None);
        let (reported_tx, reported_rx) = watch::channel(DrainedSet::new());
        let (members_tx, members_rx) = watch::channel(BTreeMap::<String, Announcement>::new());
        let identity = {
            let advertise = settings.advertise;
            move |local: SocketAddr| SocketAddr::new(advertise, local.port())
        };
        let proxies: Vec<(SocketAddr, String)> = setup
            .proxies
            .iter()
            .map(|(addr, alias)| (identity(*addr), alias.name().to_ascii()))
            .collect();
        tasks.spawn(keep_lease(
            client.clone(),
            etcd::ttl_secs(&settings),
            lease_tx,
            lease_until.clone(),
            reach.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(announce(
            client.clone(),
            keys.clone(),
            settings.node.clone(),
            lease_rx.clone(),
            applied_rx,
            host_rx,
            reported_rx,
            shared.clone(),
            Announcement {
                api,
                applied: 0,
                config_hash: config_hash.clone(),
                started_ms,
                serials: BTreeMap::new(),
                proxies,
                drained: Vec::new(),
            },
            shutdown.clone(),
        ));
        tasks.spawn(watch_members(
            client.clone(),
            keys.clone(),
            status.clone(),
            members_tx,
            config_hash.clone(),
            reach.clone(),
            shutdown.clone(),
        ));
        let slot = Arc::new(Mutex::new(Slot::default()));
        let (stops_done_tx, stops_done_rx) = mpsc::unbounded_channel();
        if let Some(docker) = &setup.docker_tx {
            tasks.spawn(super::docker::serve_stops(
                client.clone(),
                keys.clone(),
                settings.node.clone(),
                lease_rx.clone(),
                docker.clone(),
                stops_done_rx,
                shutdown.clone(),
            ));
        }
        tasks.spawn(forward_inputs(
            sources_rx,
            drained_rx,
            slot.clone(),
            host_tx,
            (reported_tx, Box::new(identity)),
            stops_done_tx,
            shutdown.clone(),
        ));
        let ctx = Ctx {
            settings,
            keys,
            client,
            base,
            shared,
            handle,
            setup,
            reach,
            lease_rx,
            lease_until,
            applied: applied_tx,
            slot,
            members: members_rx,
        };
        let mut first = Some(first);
        loop {
            let elected = tokio::select! {
                fence = campaign(&ctx) => fence,
                () = follow(&ctx, &mut first) => None,
                () = shutdown.cancelled() => None,
            };
            let Some(fence) = elected else { break };
            lead(&ctx, fence, &shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
        }
        // Hand over at once instead of after the lease: the others need not wait.
        let lease = *ctx.lease_rx.borrow();
        if lease != 0 {
            let mut client = ctx.client.clone();
            let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await;
        }
        tasks.shutdown().await;
    }
}

/// What the node's roles share.
struct Ctx {
    settings: Settings,
    keys: Keys,
    client: Client,
    base: Arc<Base>,
    shared: SharedSnapshot,
    handle: ControlHandle,
    setup: WriterSetup,
    reach: Reach,
    lease_rx: watch::Receiver<i64>,
    lease_until: Arc<Mutex<Instant>>,
    applied: watch::Sender<i64>,
    slot: Arc<Mutex<Slot>>,
    /// Every live node's announcement, by name.
    members: watch::Receiver<BTreeMap<String, Announcement>>,
}

/// Passes discovery's updates and the proxies' reports to the writer of the current term;
/// Docker's endpoint sets go to etcd under this node's lease instead (the leader merges every
/// host's), and the reports of the stops the leader asked for go back through etcd
/// (`super::docker::serve_stops`).
async fn forward_inputs(
    mut sources_rx: mpsc::Receiver<SourceUpdate>,
    mut drained_rx: mpsc::UnboundedReceiver<Drained>,
    slot: Arc<Mutex<Slot>>,
    host_tx: watch::Sender<Option<HostView>>,
    (reported, identity): (
        watch::Sender<DrainedSet>,
        Box<dyn Fn(SocketAddr) -> SocketAddr + Send>,
    ),
    stops_done: mpsc::UnboundedSender<super::docker::Done>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            Some(update) = sources_rx.recv() => {
                let update = match update {
                    SourceUpdate::Docker { services, problems } => {
                        host_tx.send_replace(Some(HostView {
                            services: services.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                            problems,
                        }));
                        continue;
                    }
                    SourceUpdate::Stopped { alias, op, report } => {
                        let _ = stops_done.send((alias, op, report));
                        continue;
                    }
                    other => other,
                };
                let tx = {
                    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                    if let SourceUpdate::DockerStatus(status) = &update {
                        slot.docker_status = Some(status.clone());
                    }
                    slot.sources.clone()
                };
                if let Some(tx) = tx {
                    let _ = tx.send(update).await;
                }
            }
            Some(report) = drained_rx.recv() => {
                let tx = slot.lock().unwrap_or_else(|p| p.into_inner()).drained.clone();
                match tx {
                    Some(tx) => {
                        let _ = tx.send(report);
                    }
                    // A follower's proxies report to the leader through this node's
                    // announcement.
                    None => {
                        reported.send_modify(|set| {
                            // Reports of drains long over are dropped from the announcement;
                            // the set only needs a bound.
                            if set.len() >= 4096 {
                                set.clear();
                            }
                            set.insert((
                                identity(report.proxy),
                                report.alias.name().to_ascii(),
                                report.endpoint,
                            ));
                        });
                    }
                }
            }
            () = shutdown.cancelled() => return,
            else => return,
        }
    }
}

/// Follows etcd into this node's snapshots: list, render, watch from the listed revision;
/// again from a list after a compaction or a lost watch. Returns only if the node stops.
async fn follow(ctx: &Ctx, first: &mut Option<Listed>) {
    let mut client = ctx.client.clone();
    let clock = ctx.setup.clock.clone();
    let mut replica: Option<Replica> = None;
    // A lost watch is watched again from the last revision taken in; only a compaction past
    // it (or a new term of following) lists everything again.
    let mut relist = true;
    loop {
        if relist || replica.is_none() {
            let listed = match first.take() {
                Some(l) => l,
                None => match etcd::list(&mut client, &ctx.keys).await {
                    Ok(l) => {
                        ctx.reach.ok();
                        l
                    }
                    Err(e) => {
                        ctx.reach.failed(&describe(&e));
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            let before = replica.as_ref().map(|r| r.data.stored.history_seq);
            let fresh = Replica::new(
                ctx.base.clone(),
                &listed,
                ctx.shared.clone(),
                ctx.handle.clone(),
                Arc::new(Sources::default()),
                ctx.setup.board.clone(),
                clock.now_ms(),
            );
            // What was committed while this node did not watch reaches its events too.
            if let Some(before) = before {
                let to = fresh.data.stored.history_seq;
                match etcd::history_between(&mut client, &ctx.keys, before + 1, to, listed.revision)
                    .await
                {
                    Ok(missed) => fresh.send_entries(missed),
                    Err(e) => {
                        warn!(error = %describe(&e), "could not read the history this node missed; its events skip it")
                    }
                }
            }
            ctx.applied.send_replace(fresh.applied);
            replica = Some(fresh);
            relist = false;
        }
        let Some(replica) = replica.as_mut() else {
            continue;
        };
        let watched = client
            .watch(
                ctx.keys.all(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(replica.seen + 1),
                ),
            )
            .await;
        let mut stream = match watched {
            Ok(s) => s,
            Err(e) => {
                ctx.reach.failed(&describe(&e));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(resp)) if resp.canceled() => {
                    if resp.compact_revision() > 0 {
                        warn!(
                            compacted = resp.compact_revision(),
                            "etcd compacted past this node's watch; listing everything again"
                        );
                        relist = true;
                    }
                    break;
                }
                Ok(Some(resp)) => {
                    ctx.reach.ok();
                    for p in replica.apply(&ctx.keys, resp.events(), clock.now_ms()) {
                        error!("{p}");
                    }
                    ctx.applied.send_replace(replica.applied);
                }
                Ok(None) | Err(_) => {
                    ctx.reach
                        .failed("the watch of the cluster's state ended; serving the last state");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}
