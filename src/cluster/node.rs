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

/// Keeps this node's lease: grants one, renews it every third of its TTL (sooner again after
/// a failed renewal), and grants a new one only when it is known or feared lost. `until` is
/// how long the lease is known to hold: when the last renewal etcd answered was sent, plus
/// the TTL. A slow or failed renewal is tried again until then; a term never outlives it.
async fn keep_lease(
    mut client: Client,
    ttl: i64,
    lease_tx: watch::Sender<i64>,
    until: Arc<Mutex<Instant>>,
    reach: Reach,
    shutdown: CancellationToken,
) {
    let ttl_d = Duration::from_secs(ttl as u64);
    let every = ttl_d / 3;
    let held = |until: &Arc<Mutex<Instant>>| *until.lock().unwrap_or_else(|p| p.into_inner());
    while !shutdown.is_cancelled() {
        let sent = Instant::now();
        let granted = match client.lease_grant(ttl, None).await {
            Ok(g) => g,
            Err(e) => {
                reach.failed(&describe(&e));
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        reach.ok();
        let id = granted.id();
        *until.lock().unwrap_or_else(|p| p.into_inner()) = sent + ttl_d;
        lease_tx.send_replace(id);
        let mut keeper = None;
        let mut wait = every;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            let now = Instant::now();
            if now >= held(&until) {
                warn!(
                    "this node's lease in etcd ran out before it could be renewed; taking a new one"
                );
                break;
            }
            wait = RETRY;
            let (k, stream) = match &mut keeper {
                Some(k) => k,
                None => match client.lease_keep_alive(id).await {
                    Ok(k) => keeper.insert(k),
                    Err(e) => {
                        reach.failed(&describe(&e));
                        continue;
                    }
                },
            };
            let renewed = async {
                k.keep_alive().await?;
                stream.message().await
            };
            let left = held(&until).saturating_duration_since(now);
            match tokio::time::timeout(left.max(Duration::from_millis(100)), renewed).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    reach.ok();
                    *until.lock().unwrap_or_else(|p| p.into_inner()) = now + ttl_d;
                    wait = every;
                }
                Ok(Ok(Some(_))) => {
                    warn!("this node's lease in etcd expired; taking a new one");
                    break;
                }
                Ok(Ok(None)) => {
                    reach.failed("etcd closed the lease keep-alive stream");
                    keeper = None;
                }
                Ok(Err(e)) => {
                    reach.failed(&describe(&e));
                    keeper = None;
                }
                Err(_) => {
                    reach.failed("etcd did not answer a lease renewal in time");
                    keeper = None;
                }
            }
        }
        lease_tx.send_replace(0);
    }
}

/// Writes this node's announcement (and its Docker view) under its lease whenever the lease,
/// the revision it renders or its Docker view changes.
#[allow(clippy::too_many_arguments)]
async fn announce(
    mut client: Client,
    keys: Keys,
    node: String,
    mut lease_rx: watch::Receiver<i64>,
    mut applied_rx: watch::Receiver<i64>,
    mut host_rx: watch::Receiver<Option<HostView>>,
    mut reported_rx: watch::Receiver<DrainedSet>,
    shared: SharedSnapshot,
    mut announcement: Announcement,
    shutdown: CancellationToken,
) {
    let mut written: Option<(i64, Announcement)> = None;
    let mut host_written: Option<(i64, HostView)> = None;
    loop {
        let lease = *lease_rx.borrow_and_update();
        announcement.applied = *applied_rx.borrow_and_update();
        let snapshot = shared.load();
        announcement.serials = snapshot
            .topology
            .zones
            .iter()
            .zip(&snapshot.zones)
            .map(|(z, v)| (z.origin.name().to_ascii(), v.serial))
            .collect();
        // Only what still drains: a report outlives its drain only until the next change.
        announcement.drained = reported_rx
            .borrow_and_update()
            .iter()
            .filter(|(_, alias, endpoint)| {
                snapshot.aliases.iter().any(|(name, view)| {
                    name.name().to_ascii() == *alias && view.draining.contains(endpoint)
                })
            })
            .cloned()
            .collect();
        let mut failed = false;
        if lease != 0 && written.as_ref() != Some(&(lease, announcement.clone())) {
            let value = serde_json::to_vec(&announcement).unwrap_or_default();
            let put = client.put(
                keys.node(&node),
                value,
                Some(PutOptions::new().with_lease(lease)),
            );
            match put.await {
                Ok(_) => written = Some((lease, announcement.clone())),
                Err(_) => failed = true,
            }
        }
        let host = host_rx.borrow_and_update().clone();
        if let Some(view) = host
            && lease != 0
            && host_written.as_ref() != Some(&(lease, view.clone()))
        {
            let value = serde_json::to_vec(&view).unwrap_or_default();
            let put = client.put(
                keys.host_docker(&node),
                value,
                Some(PutOptions::new().with_lease(lease)),
            );
            match put.await {
                Ok(_) => host_written = Some((lease, view)),
                Err(_) => failed = true,
            }
        }
        let wait = if failed {
            RETRY
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = lease_rx.changed() => {}
            _ = applied_rx.changed() => {}
            _ = host_rx.changed() => {}
            _ = reported_rx.changed() => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Every node's announcement by name, and the leader's name.
type Members = (BTreeMap<String, Announcement>, Option<String>);

async fn list_members(client: &mut Client, keys: &Keys) -> Result<Members, etcd_client::Error> {
    let nodes = client
        .get(keys.nodes(), Some(GetOptions::new().with_prefix()))
        .await?;
    let leader = client.get(keys.leader(), None).await?;
    let mut members = BTreeMap::new();
    for kv in nodes.kvs() {
        if let Ok(raw) = kv.key_str()
            && let Some(etcd::Key::Node(n)) = keys.classify(raw)
            && let Ok(a) = serde_json::from_slice::<Announcement>(kv.value())
        {
            members.insert(n.to_owned(), a);
        }
    }
    let leader = leader
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
    Ok((members, leader))
}

/// The status from the members and the leader.
fn compose(
    s: &mut ClusterStatus,
    members: &BTreeMap<String, Announcement>,
    leader: Option<&str>,
    mine: &str,
) {
    s.leader = leader.map(str::to_owned);
    let reference = leader
        .and_then(|l| members.get(l))
        .map_or(mine, |a| a.config_hash.as_str())
        .to_owned();
    let latest = members.values().map(|a| a.applied).max().unwrap_or(0);
    s.revision = latest;
    s.nodes = members
        .iter()
        .map(|(name, a)| NodeStatus {
            name: name.clone(),
            api: a.api,
            leader: Some(name.as_str()) == leader,
            applied_revision: a.applied,
            behind: latest - a.applied,
            config_hash: a.config_hash.clone(),
            config_matches: a.config_hash == reference,
            started_ms: a.started_ms,
        })
        .collect();
    s.problems = s
        .nodes
        .iter()
        .filter(|n| !n.config_matches)
        .map(|n| {
            format!(
                "node {} answers from other definitions (zones, services, aliases) than the leader {}: its config hash is {}, the leader's {}; give every node the same config files",
                n.name,
                leader.unwrap_or("?"),
                short(&n.config_hash),
                short(&reference)
            )
        })
        .collect();
    if leader.is_none() {
        s.problems.push(
            "no leader: no node holds the leadership in etcd; changes are refused until one does"
                .into(),
        );
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Lists and watches the members and the leader into the status.
async fn watch_members(
    mut client: Client,
    keys: Keys,
    status: watch::Sender<ClusterStatus>,
    members_tx: watch::Sender<BTreeMap<String, Announcement>>,
    mine: String,
    reach: Reach,
    shutdown: CancellationToken,
) {
    let publish = |members: &BTreeMap<String, Announcement>, leader: Option<&str>| {
        status.send_modify(|s| compose(s, members, leader, &mine));
        members_tx.send_if_modified(|m| {
            let changed = m != members;
            if changed {
                *m = members.clone();
            }
            changed
        });
    };
    while !shutdown.is_cancelled() {
        match list_members(&mut client, &keys).await {
            Ok((members, leader)) => {
                reach.ok();
                let mut members = members;
                let mut leader = leader;
                publish(&members, leader.as_deref());
                let revision = 0;
                let watched = client
                    .watch(
                        keys.all(),
                        Some(
                            WatchOptions::new()
                                .with_prefix()
                                .with_start_revision(revision),
                        ),
                    )
                    .await;
                let Ok(mut stream) = watched else {
                    tokio::time::sleep(RETRY).await;
                    continue;
                };
                // The watch starts now: what changed between the list and here is listed
                // again on the first event.
                let _ = stream.message().await;
                if let Ok((m, l)) = list_members(&mut client, &keys).await {
                    members = m;
                    leader = l;
                    publish(&members, leader.as_deref());
                }
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        () = shutdown.cancelled() => return,
                    };
                    let Ok(Some(resp)) = message else {
                        reach.failed("the watch of the cluster's members ended");
                        break;
                    };
                    if resp.canceled() {
                        break;
                    }
                    let mut changed = false;
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        let Ok(raw) = kv.key_str() else { continue };
                        match (keys.classify(raw), event.event_type()) {
                            (Some(etcd::Key::Node(n)), EventType::Put) => {
                                if let Ok(a) = serde_json::from_slice(kv.value()) {
                                    members.insert(n.to_owned(), a);
                                    changed = true;
                                }
                            }
                            (Some(etcd::Key::Node(n)), EventType::Delete) => {
                                changed |= members.remove(n).is_some();
                            }
                            (Some(etcd::Key::Leader), EventType::Put) => {
                                leader = Some(String::from_utf8_lossy(kv.value()).into_owned());
                                changed = true;
                            }
                            (Some(etcd::Key::Leader), EventType::Delete) => {
                                leader = None;
                                changed = true;
                            }
                            _ => {}
                        }
                    }
                    if changed {
                        publish(&members, leader.as_deref());
                    }
                }
            }
            Err(e) => reach.failed(&describe(&e)),
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = shutdown.cancelled() => return,
        }
    }
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

/// Campaigns until this node is elected; returns the fence (the revision its `leader` key was
/// created at).
async fn campaign(ctx: &Ctx) -> Option<i64> {
    let mut client = ctx.client.clone();
    let mut lease_rx = ctx.lease_rx.clone();
    let node = ctx.settings.node.clone();
    loop {
        let lease = *lease_rx.borrow_and_update();
        if lease == 0 {
            if lease_rx.changed().await.is_err() {
                return None;
            }
            continue;
        }
        let leader = ctx.keys.leader();
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                leader.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                leader.clone(),
                node.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(leader.clone(), None)]);
        let response = match client.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                ctx.reach.failed(&describe(&e));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            info!(node = %node, revision, "elected leader");
            return Some(revision);
        }
        let holder = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
            _ => None,
        });
        if let Some(kv) = &holder
            && kv.value() == node.as_bytes()
        {
            // This node's own key, left by a lease it lost (a restart) or a term that ended
            // without removing it: this node campaigns, so no writer runs under that key.
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    leader.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then(vec![TxnOp::delete(leader.clone(), None)]);
            let _ = client.txn(txn).await;
            continue;
        }
        // Wait for the key to go (its holder resigned, or its lease expired).
        let watched = client
            .watch(
                leader.clone(),
                Some(WatchOptions::new().with_start_revision(revision + 1)),
            )
            .await;
        let Ok(mut stream) = watched else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(r)) if r.events().iter().any(|e| e.event_type() == EventType::Delete) => break,
                    Ok(Some(r)) if !r.canceled() => {}
                    _ => {
                        tokio::time::sleep(RETRY).await;
                        break;
                    }
                },
                // A lost lease means campaigning again under the new one.
                _ = lease_rx.changed() => break,
            }
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

/// One term as the leader: takes over from what etcd holds and runs the writer until the
/// term ends.
async fn lead(ctx: &Ctx, fence: i64, shutdown: &CancellationToken) {
    run_term(ctx, fence, shutdown).await;
    // However the term ended (shutdown, a lease it could not renew, a write etcd refused, a
    // takeover that failed), its `leader` key goes: left under a lease that still holds, it
    // would keep every node, this one too, waiting for a leader that runs no writer. The
    // delete is fenced: a newer leader's key is never touched.
    let mut client = ctx.client.clone();
    let txn = Txn::new()
        .when(vec![Compare::create_revision(
            ctx.keys.leader(),
            CompareOp::Equal,
            fence,
        )])
        .and_then(vec![TxnOp::delete(ctx.keys.leader(), None)]);
    let resigned = tokio::time::timeout(Duration::from_secs(2), client.txn(txn)).await;
    if shutdown.is_cancelled() {
        info!("resigned the leadership");
        return;
    }
    if !matches!(resigned, Ok(Ok(_))) {
        warn!("could not remove this node's leader key; it goes with the lease");
    }
    warn!(node = %ctx.settings.node, "no longer the leader: following again");
    // Its `leader` key may outlive the term (while etcd has no quorum): the status must not go
    // on naming this node, whose writer is gone. The members' watch names the next leader
    // when it sees one.
    let me = ctx.settings.node.as_str();
    ctx.reach.status.send_if_modified(|s| {
        let stale = s.leader.as_deref() == Some(me);
        if stale {
            s.leader = None;
            for n in &mut s.nodes {
                n.leader = false;
            }
        }
        stale
    });
}

/// The term itself: takeover, then the writer until the term ends.
async fn run_term(ctx: &Ctx, fence: i64, shutdown: &CancellationToken) {
    let term = shutdown.child_token();
    let mut client = ctx.client.clone();
    let now = ctx.setup.clock.now_ms();
    let listed = etcd::list(&mut client, &ctx.keys).await;
    let listed = match listed {
        Ok(l) if l.leader.as_ref().map(|(_, r)| *r) == Some(fence) => l,
        Ok(_) => {
            warn!("elected, but the leadership was gone before the state was read");
            return;
        }
        Err(e) => {
            ctx.reach.failed(&describe(&e));
            return;
        }
    };
    let (history, problems) =
        match etcd::list_history(&mut client, &ctx.keys, listed.revision).await {
            Ok(h) => h,
            Err(e) => {
                ctx.reach.failed(&describe(&e));
                return;
            }
        };
    for p in problems {
        error!("{p}");
    }
    let taken = takeover(&ctx.base, &listed.data, history, now);
    for note in &taken.notes {
        warn!("{note}");
    }
    // Watches the lease: past its end, or under a new lease, this term is over.
    {
        let term = term.clone();
        let until = ctx.lease_until.clone();
        let mut lease_rx = ctx.lease_rx.clone();
        let lease = *lease_rx.borrow_and_update();
        tokio::spawn(async move {
            loop {
                let end = *until.lock().unwrap_or_else(|p| p.into_inner());
                if Instant::now() >= end || *lease_rx.borrow() != lease {
                    warn!("this node's lease could not be renewed in time: stepping down");
                    term.cancel();
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(end.into()) => {}
                    _ = lease_rx.changed() => {}
                    () = term.cancelled() => return,
                }
            }
        });
    }
    let seqs: BTreeSet<u64> = taken.entries.iter().map(|e| e.seq).collect();
    let mut store = EtcdStore::new(
        ctx.client.clone(),
        ctx.keys.clone(),
        tokio::runtime::Handle::current(),
        fence,
        listed.meta_revision,
        seqs,
        term.clone(),
        ctx.lease_until.clone(),
        ctx.applied.clone(),
    );
    let bootstrap = {
        let units = taken.bootstrap;
        tokio::task::spawn_blocking(move || {
            for (delta, entries, live) in units {
                store.commit(delta, &entries, &live, &StoredState::default)?;
            }
            Ok::<_, crate::controller::store::StoreError>(store)
        })
        .await
    };
    let store = match bootstrap {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            error!(error = %e, "could not take over the cluster's state; stepping down");
            term.cancel();
            return;
        }
        Err(e) => {
            error!(error = %e, "the takeover task failed");
            term.cancel();
            return;
        }
    };
    let (health_tx, health_rx) = mpsc::channel(1024);
    let checker = Checker::new(
        ctx.setup.board.clone(),
        health_tx,
        ctx.setup.health_concurrency,
        term.clone(),
    );
    let (sources_tx, sources_rx) = mpsc::channel(64);
    let (drained_tx, drained_rx) = mpsc::unbounded_channel();
    {
        let mut slot = ctx.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.sources = Some(sources_tx.clone());
        slot.drained = Some(drained_tx);
        // Under the lock, so a newer status that forward_inputs passes on comes after it.
        if let Some(status) = slot.docker_status.clone() {
            let _ = sources_tx.try_send(SourceUpdate::DockerStatus(status));
        }
    }
    let s = &ctx.setup;
    // The writer's stops go to the nodes whose Docker runs the containers, through etcd.
    let (stops_tx, stops_rx) = mpsc::channel(64);
    let stops = s.docker_tx.is_some().then(|| {
        tokio::spawn(super::docker::route_stops(
            ctx.client.clone(),
            ctx.keys.clone(),
            fence,
            stops_rx,
            sources_tx.clone(),
            term.clone(),
        ))
    });
    let (controller, _handle, _shared) = Controller::start(StartParts {
        base: ctx.base.clone(),
        store: Box::new(store),
        state: taken.state,
        topology: taken.topology,
        history: taken.entries,
        board: s.board.clone(),
        checker,
        health_rx,
        sources_rx,
        docker_tx: stops.is_some().then_some(stops_tx),
        docker_endpoint: s.docker_endpoint.clone(),
        proxies: s.proxies.clone(),
        drained_rx,
        drain_deadline: s.drain_deadline,
        secondaries: s.secondaries.clone(),
        clock: s.clock.clone(),
        takeover: Some(Takeover {
            handle: ctx.handle.clone(),
            shared: ctx.shared.clone(),
            health: listed.data.health_map(),
            last_good: listed.data.last_good_map(),
        }),
    });
    // This node's checkers decide from now on (the writer reconciled them at its start).
    ctx.setup.board.follow(None);
    info!(node = %ctx.settings.node, fence, "leading: the writer runs here");
    let peers = tokio::spawn(feed_peers(
        ctx.members.clone(),
        ctx.settings.node.clone(),
        ctx.base.clone(),
        sources_tx.clone(),
        term.clone(),
    ));
    let hosts = tokio::spawn(merge_hosts(
        ctx.client.clone(),
        ctx.keys.clone(),
        sources_tx,
        term.clone(),
    ));
    controller.run(term.clone()).await;
    term.cancel();
    hosts.abort();
    peers.abort();
    if let Some(stops) = stops {
        stops.abort();
    }
    ctx.handle.detach();
    {
        let mut slot = ctx.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.sources = None;
        slot.drained = None;
    }
}

/// Tells the leader's writer about the other live nodes whenever their announcements change:
/// a drain waits for each to serve the answers without the old version, and for its proxies'
/// open work on it.
async fn feed_peers(
    mut members: watch::Receiver<BTreeMap<String, Announcement>>,
    me: String,
    base: Arc<Base>,
    writer: mpsc::Sender<SourceUpdate>,
    term: CancellationToken,
) {
    let root = hickory_proto::rr::Name::root();
    loop {
        let peers: BTreeMap<String, PeerReport> = members
            .borrow_and_update()
            .iter()
            .filter(|(name, _)| **name != me)
            .map(|(name, a)| {
                let alias = |s: &str| AliasName::resolve(s, &root).ok();
                let report = PeerReport {
                    proxies: a
                        .proxies
                        .iter()
                        .filter_map(|(addr, name)| Some((*addr, alias(name)?)))
                        .collect(),
                    serials: base
                        .zones
                        .iter()
                        .map(|z| a.serials.get(&z.origin.name().to_ascii()).copied())
                        .collect(),
                    drained: a
                        .drained
                        .iter()
                        .filter_map(|(proxy, name, endpoint)| {
                            Some(Drained {
                                proxy: *proxy,
                                alias: alias(name)?,
                                endpoint: *endpoint,
                            })
                        })
                        .collect(),
                };
                (name.clone(), report)
            })
            .collect();
        if writer.send(SourceUpdate::Peers(peers)).await.is_err() {
            return;
        }
        tokio::select! {
            r = members.changed() => if r.is_err() { return },
            () = term.cancelled() => return,
        }
    }
}

/// Merges every live host's Docker view into one for the leader's writer: lists, watches,
/// and sends the whole merged set on every change.
async fn merge_hosts(
    mut client: Client,
    keys: Keys,
    writer: mpsc::Sender<SourceUpdate>,
    term: CancellationToken,
) {
    let mut last: Option<BTreeMap<crate::model::ServiceName, Vec<DockerEndpoint>>> = None;
    while !term.is_cancelled() {
        let listed = client
            .get(keys.hosts(), Some(GetOptions::new().with_prefix()))
            .await;
        let Ok(listed) = listed else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let revision = listed.header().map_or(0, |h| h.revision());
        let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
        for kv in listed.kvs() {
            if let Ok(raw) = kv.key_str()
                && let Some(etcd::Key::Host(n)) = keys.classify(raw)
                && let Ok(v) = serde_json::from_slice(kv.value())
            {
                hosts.insert(n.to_owned(), v);
            }
        }
        let any_docker = !hosts.is_empty();
        send_merged(&hosts, &writer, &mut last, any_docker).await;
        let watched = client
            .watch(
                keys.hosts(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await;
        let Ok(mut stream) = watched else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                () = term.cancelled() => return,
            };
            let Ok(Some(resp)) = message else { break };
            if resp.canceled() {
                break;
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let Ok(raw) = kv.key_str() else { continue };
                let Some(etcd::Key::Host(n)) = keys.classify(raw) else {
                    continue;
                };
                match event.event_type() {
                    EventType::Put => {
                        if let Ok(v) = serde_json::from_slice(kv.value()) {
                            hosts.insert(n.to_owned(), v);
                        }
                    }
                    EventType::Delete => {
                        hosts.remove(n);
                    }
                }
            }
            send_merged(&hosts, &writer, &mut last, true).await;
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn send_merged(
    hosts: &BTreeMap<String, HostView>,
    writer: &mpsc::Sender<SourceUpdate>,
    last: &mut Option<BTreeMap<crate::model::ServiceName, Vec<DockerEndpoint>>>,
    any: bool,
) {
    if !any && last.is_none() {
        return;
    }
    let mut services: BTreeMap<crate::model::ServiceName, Vec<DockerEndpoint>> = BTreeMap::new();
    let mut problems = Vec::new();
    for view in hosts.values() {
        for (name, endpoints) in &view.services {
            if let Ok(n) = name.parse() {
                services
                    .entry(n)
                    .or_default()
                    .extend(endpoints.iter().cloned());
            }
        }
        problems.extend(view.problems.iter().cloned());
    }
    if last.as_ref() == Some(&services) {
        return;
    }
    *last = Some(services.clone());
    let _ = writer
        .send(SourceUpdate::Docker { services, problems })
        .await;
}

/// What a new leader starts from, and what it writes before it serves: the changes the
/// start itself made (aliases new in the config, the serials), in units etcd takes.
pub struct Taken {
    pub state: State,
    pub topology: Arc<Topology>,
    /// Every committed history entry, with those of this start at the end.
    pub entries: Vec<HistoryEntry>,
    pub bootstrap: Vec<(StoredDelta, Vec<HistoryEntry>, Live)>,
    pub notes: Vec<String>,
}

/// The state a new leader continues from `data` (what etcd holds) over `base`; see [`Taken`].
/// The serials stay those published, so a failover alone changes no answer.
pub fn takeover(
    base: &Base,
    data: &etcd::Data,
    mut entries: Vec<HistoryEntry>,
    now_ms: u64,
) -> Taken {
    let stored = data.has_state.then_some(&data.stored);
    let committed: HashMap<String, u64> = stored
        .map(|s| {
            s.aliases
                .iter()
                .map(|(k, a)| (k.clone(), a.revision))
                .collect()
        })
        .unwrap_or_default();
    let (mut state, notes) = initial_state(base, stored, now_ms);
    state.history_seq = state
        .history_seq
        .max(entries.iter().map(|e| e.seq).max().unwrap_or(0));
    if data.has_state {
        for (i, zone) in base.zones.iter().enumerate() {
            if let Some(serial) = data.serials.get(&zone.origin.name().to_ascii()) {
                state.serials[i] = *serial;
            }
        }
    }
    let topology = Arc::new(Topology::build(
        base,
        &state.registry,
        state.named_services(),
    ));
    let mut started = crate::controller::recover::changed_at_start(&state, &committed);
    // Numbered in the order `split` writes the aliases (by name), so that a unit's entries
    // follow the last unit's without a hole.
    started.sort_by_key(alias_of);
    for e in &mut started {
        state.history_seq += 1;
        e.seq = state.history_seq;
    }
    state.serial_reserve = state
        .serials
        .iter()
        .map(|s| s.wrapping_add(SERIAL_RESERVE))
        .collect();
    let after = to_stored(&topology, &state);
    let before = stored.cloned().unwrap_or_default();
    let mut delta = diff(&before, &after);
    delta.history_seq = state.history_seq;
    let live = Live {
        serials: topology
            .zones
            .iter()
            .zip(&state.serials)
            .map(|(z, s)| (z.origin.name().to_ascii(), *s))
            .collect(),
        ..Live::default()
    };
    let bootstrap = split(delta, started.clone(), live, before.history_seq);
    entries.extend(started);
    Taken {
        state,
        topology,
        entries,
        bootstrap,
        notes,
    }
}

/// What differs between two stored states, key by key.
fn diff(before: &StoredState, after: &StoredState) -> StoredDelta {
    fn map<V: Clone + PartialEq>(
        a: &BTreeMap<String, V>,
        b: &BTreeMap<String, V>,
    ) -> BTreeMap<String, Option<V>> {
        let mut out = BTreeMap::new();
        for (k, v) in b {
            if a.get(k) != Some(v) {
                out.insert(k.clone(), Some(v.clone()));
            }
        }
        for k in a.keys() {
            if !b.contains_key(k) {
                out.insert(k.clone(), None);
            }
        }
        out
    }
    StoredDelta {
        seq: 0,
        aliases: map(&before.aliases, &after.aliases),
        serials: after
            .serials
            .iter()
            .filter(|(k, v)| before.serials.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        services: map(&before.services, &after.services),
        alias_specs: map(&before.alias_specs, &after.alias_specs),
        docker: map(&before.docker, &after.docker),
        history_seq: after.history_seq,
    }
}

/// Splits a takeover's delta into units of at most [`TXN_OPS`] writes: the aliases first,
/// each with its own history entry and `state/meta` counting the entries written so far (a
/// leader that dies between two units leaves no alias without its entry, nor an entry without
/// its alias), then the rest (with the serials) last, so the last unit is what commits the start.
fn split(
    mut delta: StoredDelta,
    entries: Vec<HistoryEntry>,
    live: Live,
    history_seq_before: u64,
) -> Vec<(StoredDelta, Vec<HistoryEntry>, Live)> {
    let rest = delta.services.len()
        + delta.alias_specs.len()
        + delta.docker.len()
        + delta.serials.len()
        + live.serials.len()
        + 1;
    if rest + delta.aliases.len() + entries.len() <= TXN_OPS {
        return vec![(delta, entries, live)];
    }
    let mut by_alias: HashMap<String, HistoryEntry> = HashMap::new();
    let mut others = Vec::new();
    for e in entries {
        match alias_of(&e) {
            Some(a) if delta.aliases.contains_key(&a) && !by_alias.contains_key(&a) => {
                by_alias.insert(a, e);
            }
            _ => others.push(e),
        }
    }
    let mut units = Vec::new();
    let mut seq = history_seq_before;
    let (mut chunk, mut chunk_entries) = (BTreeMap::new(), Vec::new());
    for (k, v) in std::mem::take(&mut delta.aliases) {
        if let Some(e) = by_alias.remove(&k) {
            seq = seq.max(e.seq);
            chunk_entries.push(e);
        }
        chunk.insert(k, v);
        // Two writes per alias at most, and `state/meta`.
        if chunk.len() + chunk_entries.len() + 3 > TXN_OPS {
            units.push(aliases_only(
                std::mem::take(&mut chunk),
                std::mem::take(&mut chunk_entries),
                seq,
            ));
        }
    }
    if !chunk.is_empty() {
        units.push(aliases_only(chunk, chunk_entries, seq));
    }
    units.push((delta, others, live));
    units
}

/// The alias a history entry is about, as the stored state names it.
fn alias_of(e: &HistoryEntry) -> Option<String> {
    e.alias().map(|a| a.alias.clone())
}

fn aliases_only(
    aliases: BTreeMap<String, Option<crate::state::StoredAlias>>,
    entries: Vec<HistoryEntry>,
    history_seq: u64,
) -> (StoredDelta, Vec<HistoryEntry>, Live) {
    (
        StoredDelta {
            aliases,
            history_seq,
            ..StoredDelta::default()
        },
        entries,
        Live::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::history::{AliasChange, Subject};
    use crate::controller::machine::ChangeKind;

    fn linked(alias: &str, seq: u64) -> HistoryEntry {
        HistoryEntry {
            seq,
            subject: Subject::Alias(AliasChange {
                alias: alias.to_owned(),
                revision: 1,
                phase: "stable".into(),
                targets: vec!["blue".into()],
                answering: vec!["blue".into()],
                op: None,
                op_kind: None,
            }),
            at_ms: 0,
            actor: "config".into(),
            change: ChangeKind::Linked,
            reason: None,
        }
    }

    /// A first start with many aliases in the config: every unit fits one transaction, each
    /// alias is written with its own entry, and `state/meta` never counts an entry not written.
    #[test]
    fn a_takeover_of_many_new_aliases_splits_into_transactions_etcd_takes() {
        let keys = Keys::new("/aliasd");
        let names: Vec<String> = (0..1_000).map(|i| format!("a{i:04}.internal.")).collect();
        let delta = StoredDelta {
            aliases: names.iter().map(|n| (n.clone(), None)).collect(),
            history_seq: 7 + names.len() as u64,
            ..StoredDelta::default()
        };
        let entries: Vec<HistoryEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| linked(n, 8 + i as u64))
            .collect();
        let live = Live {
            serials: [("internal.".to_owned(), 5)].into(),
            ..Live::default()
        };
        let units = split(delta, entries, live, 7);
        assert!(units.len() > 1);
        let mut written = 7;
        let mut aliases = 0;
        for (delta, entries, live) in &units {
            assert!(etcd::ops(&keys, delta, entries, live).len() <= TXN_OPS);
            for e in entries {
                let a = e.alias().unwrap();
                assert!(
                    delta.aliases.contains_key(&a.alias),
                    "{a:?} without its alias"
                );
                assert_eq!(e.seq, written + 1, "entries in order, without a hole");
                written = e.seq;
            }
            assert_eq!(delta.history_seq, written);
            aliases += delta.aliases.len();
        }
        assert_eq!(aliases, names.len());
        assert_eq!(written, 7 + names.len() as u64);
        assert_eq!(units.last().unwrap().2.serials.len(), 1);
    }
}
