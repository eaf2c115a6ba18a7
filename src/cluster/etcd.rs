//! etcd as aliasd's store: the connection, the key layout, what a node renders from, and the
//! leader's store (one fenced transaction per commit).
//!
//! Under the prefix (`/aliasd` by default):
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `state/alias/<name>` | one alias's links and phase (`StoredAlias`) | the leader |
//! | `state/service/<name>`, `state/spec/<name>` | services and aliases defined through the API | the leader |
//! | `state/docker/<service>` | Docker's endpoints of a service | the leader |
//! | `state/reserve/<zone>` | the serial reserve of a zone | the leader |
//! | `state/rollout/<id>` | one rollout of many aliases (`Rollout`) | the leader |
//! | `state/meta` | the last history number committed; every commit writes it | the leader |
//! | `live/serial/<zone>` | the serial a zone is published with | the leader |
//! | `live/health/<service>` | its endpoints' health, as the leader decided | the leader |
//! | `live/lastgood/<alias>` | its last good answers | the leader |
//! | `history/<seq>` | one history entry (the `history.jsonl` line's JSON) | the leader |
//! | `leader` | the leader's name, under its lease | the election |
//! | `nodes/<node>` | what a node serves and how far it is, under its lease | each node |
//! | `hosts/<node>/docker` | what the node's Docker daemon runs, under its lease | each node |
//! | `hosts/<node>/stop/<alias>/<op>` | retired containers the node is to stop, under the node's lease | the leader |
//! | `hosts/<node>/stopped/<alias>/<op>` | what the node's stop did, under its lease (the stop key deleted in the same transaction) | that node |
//!
//! A commit is one transaction: its compares are the fence (the `leader` key was created by
//! this leader's election) and the revision of `state/meta` this leader last wrote or read;
//! a deposed leader's write fails in etcd, whatever its clocks say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp,
};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::check::Health;
use crate::controller::history::{HistoryEntry, WireEntry};
use crate::controller::store::{Store, StoreError};
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::snapshot::{HealthMap, LastGood};
use crate::state::{Live, StoredDelta, StoredState};

/// Operations in one transaction, below etcd's default `--max-txn-ops` (128).
pub const TXN_OPS: usize = 120;

/// How a node reaches etcd and who it is: the `[cluster]` table.
pub type Settings = crate::config::ClusterConfig;

/// The lease's TTL in whole seconds, as etcd takes it.
pub fn ttl_secs(s: &Settings) -> i64 {
    s.lease_ttl.as_secs().max(1) as i64
}

/// How often an HTTP/2 ping checks a connection to etcd, and how long its answer may take.
/// etcd refuses pings more often than its `--grpc-keepalive-min-time` (5 s by default): after
/// three such pings with nothing sent meanwhile (an idle watch) it closes the connection with
/// GOAWAY "too_many_pings", and every watch on it ends. The lease's renewals have their own
/// timeout, so the fence does not depend on these pings.
pub const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));

/// Connects to etcd with the settings' credentials and TLS. Requests fail fast when the member
/// asked has no leader (no quorum), instead of waiting for one.
pub async fn connect(s: &Settings) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(
            s.lease_ttl
                .clamp(Duration::from_secs(2), Duration::from_secs(5)),
        )
        .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let (Some(user), Some(password)) = (&s.username, &s.password) {
        // etcd keeps its auth tokens in memory: a member that restarts (or a token that ran
        // out) refuses the old one, and the client logs in again instead of failing for good.
        options = options
            .with_user(user.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    if let Some(ca) = &s.ca_file {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Client::connect(&s.etcd, Some(options))
        .await
        .map_err(|e| describe(&e))
}

/// What an etcd failure means for an operator.
pub fn describe(e: &etcd_client::Error) -> String {
    let text = e.to_string();
    // Checked first: etcd's refusal of the credentials must not read as an outage (its
    // gRPC status text can mention the connection too).
    if text.contains("authentication failed")
        || text.contains("invalid auth token")
        || text.contains("user name is empty")
        || text.contains("permission denied")
    {
        format!(
            "etcd refused this node's credentials ({text}): check [cluster] username, the password in the variable password_env names, and that the user's role may read and write the prefix"
        )
    } else if text.contains("no leader")
        || text.contains("deadline")
        || text.contains("Timeout")
        || text.contains("timed out")
        || text.contains("transport")
        || text.contains("Unavailable")
        || text.contains("connect")
    {
        format!("etcd has no quorum or cannot be reached ({text})")
    } else {
        format!("etcd refused the request ({text})")
    }
}

/// The keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    Alias(&'a str),
    Service(&'a str),
    Spec(&'a str),
    Docker(&'a str),
    Reserve(&'a str),
    Rollout(&'a str),
    Meta,
    Serial(&'a str),
    Health(&'a str),
    LastGood(&'a str),
    History(u64),
    Leader,
    Node(&'a str),
    /// `hosts/<node>/docker`.
    Host(&'a str),
    /// `hosts/<node>/stop/<alias>/<op>`: the leader asks the node to stop containers.
    Stop {
        node: &'a str,
        alias: &'a str,
        op: u64,
    },
    /// `hosts/<node>/stopped/<alias>/<op>`: the node's answer.
    Stopped {
        node: &'a str,
        alias: &'a str,
        op: u64,
    },
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }
    pub fn state(&self) -> String {
        format!("{}/state/", self.prefix)
    }
    pub fn live(&self) -> String {
        format!("{}/live/", self.prefix)
    }
    pub fn history_prefix(&self) -> String {
        format!("{}/history/", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }
    pub fn hosts(&self) -> String {
        format!("{}/hosts/", self.prefix)
    }
    pub fn meta(&self) -> String {
        format!("{}/state/meta", self.prefix)
    }
    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }
    pub fn node(&self, node: &str) -> String {
        format!("{}/nodes/{node}", self.prefix)
    }
    pub fn host_docker(&self, node: &str) -> String {
        format!("{}/hosts/{node}/docker", self.prefix)
    }
    /// `hosts/<node>/stop/`: every stop request to `node`.
    pub fn host_stops(&self, node: &str) -> String {
        format!("{}/hosts/{node}/stop/", self.prefix)
    }
    pub fn host_stop(&self, node: &str, alias: &str, op: u64) -> String {
        format!("{}/hosts/{node}/stop/{alias}/{op}", self.prefix)
    }
    pub fn host_stopped(&self, node: &str, alias: &str, op: u64) -> String {
        format!("{}/hosts/{node}/stopped/{alias}/{op}", self.prefix)
    }
    pub fn history(&self, seq: u64) -> String {
        format!("{}/history/{seq:020}", self.prefix)
    }
    fn of(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}", self.prefix)
    }

    /// What `key` is, or `None` for a key aliasd does not write.
    pub fn classify<'a>(&self, key: &'a str) -> Option<Key<'a>> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?;
        let (kind, name) = match rest.split_once('/') {
            Some((k, n)) => (k, n),
            None => (rest, ""),
        };
        Some(match (kind, name) {
            ("leader", "") => Key::Leader,
            ("nodes", n) if !n.is_empty() => Key::Node(n),
            ("hosts", n) => {
                let (node, rest) = n.split_once('/')?;
                if node.is_empty() {
                    return None;
                }
                if rest == "docker" {
                    return Some(Key::Host(node));
                }
                let (kind, rest) = rest.split_once('/')?;
                let (alias, op) = rest.rsplit_once('/')?;
                let op = op.parse().ok()?;
                if alias.is_empty() || alias.contains('/') {
                    return None;
                }
                match kind {
                    "stop" => Key::Stop { node, alias, op },
                    "stopped" => Key::Stopped { node, alias, op },
                    _ => return None,
                }
            }
            ("history", n) => Key::History(n.parse().ok()?),
            ("state", "meta") => Key::Meta,
            ("state", n) => {
                let (k, n) = n.split_once('/')?;
                match k {
                    "alias" => Key::Alias(n),
                    "service" => Key::Service(n),
                    "spec" => Key::Spec(n),
                    "docker" => Key::Docker(n),
                    "reserve" => Key::Reserve(n),
                    "rollout" => Key::Rollout(n),
                    _ => return None,
                }
            }
            ("live", n) => {
                let (k, n) = n.split_once('/')?;
                match k {
                    "serial" => Key::Serial(n),
                    "health" => Key::Health(n),
                    "lastgood" => Key::LastGood(n),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

/// `state/meta`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    history_seq: u64,
}

/// Everything a node renders from, as etcd holds it.
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub stored: StoredState,
    /// Whether a leader ever stored a state (`state/meta` exists).
    pub has_state: bool,
    pub serials: BTreeMap<String, u32>,
    pub health: BTreeMap<ServiceName, Vec<(Endpoint, Health)>>,
    pub last_good: BTreeMap<AliasName, Vec<Endpoint>>,
}

fn json<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, String> {
    serde_json::from_slice(value).map_err(|e| format!("etcd key {key}: {e}"))
}

impl Data {
    /// Takes in one key's new value. Keys of other kinds (history, nodes) are not data.
    pub fn put(&mut self, key: &Key<'_>, raw: &str, value: &[u8]) -> Result<bool, String> {
        let s = &mut self.stored;
        match *key {
            Key::Alias(n) => {
                s.aliases.insert(n.to_owned(), json(raw, value)?);
            }
            Key::Service(n) => {
                s.services.insert(n.to_owned(), json(raw, value)?);
            }
            Key::Spec(n) => {
                s.alias_specs.insert(n.to_owned(), json(raw, value)?);
            }
            Key::Docker(n) => {
                s.docker.insert(n.to_owned(), json(raw, value)?);
            }
            Key::Reserve(n) => {
                s.serials.insert(n.to_owned(), json(raw, value)?);
            }
            Key::Rollout(n) => {
                s.rollouts.insert(n.to_owned(), json(raw, value)?);
            }
            Key::Meta => {
                let meta: Meta = json(raw, value)?;
                s.history_seq = meta.history_seq;
                self.has_state = true;
            }
            Key::Serial(n) => {
                self.serials.insert(n.to_owned(), json(raw, value)?);
            }
            Key::Health(n) => {
                let name = n
                    .parse::<ServiceName>()
                    .map_err(|e| format!("{raw}: {e}"))?;
                self.health.insert(name, json(raw, value)?);
            }
            Key::LastGood(n) => {
                let name = AliasName::resolve(n, &hickory_proto::rr::Name::root())
                    .map_err(|e| format!("{raw}: {e}"))?;
                self.last_good.insert(name, json(raw, value)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Takes in one key's removal.
    pub fn delete(&mut self, key: &Key<'_>) -> bool {
        let s = &mut self.stored;
        match *key {
            Key::Alias(n) => s.aliases.remove(n).is_some(),
            Key::Service(n) => s.services.remove(n).is_some(),
            Key::Spec(n) => s.alias_specs.remove(n).is_some(),
            Key::Docker(n) => s.docker.remove(n).is_some(),
            Key::Reserve(n) => s.serials.remove(n).is_some(),
            Key::Rollout(n) => s.rollouts.remove(n).is_some(),
            Key::Serial(n) => self.serials.remove(n).is_some(),
            Key::Health(n) => n
                .parse::<ServiceName>()
                .is_ok_and(|n| self.health.remove(&n).is_some()),
            Key::LastGood(n) => AliasName::resolve(n, &hickory_proto::rr::Name::root())
                .is_ok_and(|n| self.last_good.remove(&n).is_some()),
            Key::Meta => {
                self.has_state = false;
                true
            }
            _ => false,
        }
    }

    pub fn health_map(&self) -> HealthMap {
        self.health
            .iter()
            .flat_map(|(s, list)| list.iter().map(move |(e, h)| ((s.clone(), *e), *h)))
            .collect()
    }

    pub fn last_good_map(&self) -> LastGood {
        self.last_good
            .iter()
            .map(|(a, e)| (a.clone(), e.clone()))
            .collect()
    }
}

/// What a list of the prefix found, at one revision.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    pub revision: i64,
    pub data: Data,
    /// The leader's name and the revision its key was created at (the fence).
    pub leader: Option<(String, i64)>,
    /// The mod revision of `state/meta` (0 when there is none).
    pub meta_revision: i64,
    pub nodes: BTreeMap<String, Vec<u8>>,
    pub hosts: BTreeMap<String, Vec<u8>>,
    /// Keys whose value could not be read, with why.
    pub problems: Vec<String>,
}

/// Lists everything under the prefix but the history, at one revision.
pub async fn list(client: &mut Client, keys: &Keys) -> Result<Listed, etcd_client::Error> {
    let mut listed = Listed::default();
    let first = client
        .get(keys.state(), Some(GetOptions::new().with_prefix()))
        .await?;
    listed.revision = first.header().map_or(0, |h| h.revision());
    let at = |prefix: String| {
        let mut client = client.clone();
        let revision = listed.revision;
        async move {
            client
                .get(
                    prefix,
                    Some(GetOptions::new().with_prefix().with_revision(revision)),
                )
                .await
        }
    };
    let live = at(keys.live()).await?;
    let nodes = at(keys.nodes()).await?;
    let hosts = at(keys.hosts()).await?;
    let leader = {
        let mut c = client.clone();
        c.get(
            keys.leader(),
            Some(GetOptions::new().with_revision(listed.revision)),
        )
        .await?
    };
    for kv in first.kvs().iter().chain(live.kvs()) {
        let Ok(raw) = kv.key_str() else { continue };
        let Some(key) = keys.classify(raw) else {
            continue;
        };
        if key == Key::Meta {
            listed.meta_revision = kv.mod_revision();
        }
        if let Err(e) = listed.data.put(&key, raw, kv.value()) {
            listed.problems.push(e);
        }
    }
    for kv in nodes.kvs() {
        if let Ok(raw) = kv.key_str()
            && let Some(Key::Node(n)) = keys.classify(raw)
        {
            listed.nodes.insert(n.to_owned(), kv.value().to_vec());
        }
    }
    for kv in hosts.kvs() {
        if let Ok(raw) = kv.key_str()
            && let Some(Key::Host(n)) = keys.classify(raw)
        {
            listed.hosts.insert(n.to_owned(), kv.value().to_vec());
        }
    }
    listed.leader = leader.kvs().first().map(|kv| {
        (
            String::from_utf8_lossy(kv.value()).into_owned(),
            kv.create_revision(),
        )
    });
    Ok(listed)
}

/// Every history entry stored, oldest first, at `revision`.
pub async fn list_history(
    client: &mut Client,
    keys: &Keys,
    revision: i64,
) -> Result<(Vec<HistoryEntry>, Vec<String>), etcd_client::Error> {
    let got = client
        .get(
            keys.history_prefix(),
            Some(GetOptions::new().with_prefix().with_revision(revision)),
        )
        .await?;
    let mut entries = Vec::with_capacity(got.kvs().len());
    let mut problems = Vec::new();
    for kv in got.kvs() {
        match serde_json::from_slice::<WireEntry>(kv.value()) {
            Ok(e) => entries.push(HistoryEntry::from(e)),
            Err(e) => problems.push(format!(
                "etcd key {}: {e}",
                String::from_utf8_lossy(kv.key())
            )),
        }
    }
    entries.sort_by_key(|e| e.seq);
    Ok((entries, problems))
}

/// The history entries numbered `from..=to`, at `revision`: what a follower that listed again
/// missed of its events.
pub async fn history_between(
    client: &mut Client,
    keys: &Keys,
    from: u64,
    to: u64,
    revision: i64,
) -> Result<Vec<HistoryEntry>, etcd_client::Error> {
    if from > to {
        return Ok(Vec::new());
    }
    let got = client
        .get(
            keys.history(from),
            Some(
                GetOptions::new()
                    .with_range(keys.history(to + 1))
                    .with_revision(revision),
            ),
        )
        .await?;
    let mut entries: Vec<HistoryEntry> = got
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice::<WireEntry>(kv.value()).ok())
        .map(HistoryEntry::from)
        .collect();
    entries.sort_by_key(|e| e.seq);
    Ok(entries)
}

/// The puts and deletes of one commit.
pub fn ops(keys: &Keys, delta: &StoredDelta, entries: &[HistoryEntry], live: &Live) -> Vec<TxnOp> {
    fn set<V: Serialize>(ops: &mut Vec<TxnOp>, key: String, value: Option<&V>) {
        ops.push(match value {
            Some(v) => TxnOp::put(key, serde_json::to_vec(v).unwrap_or_default(), None),
            None => TxnOp::delete(key, None),
        });
    }
    let mut ops = Vec::new();
    for (k, v) in &delta.aliases {
        set(&mut ops, keys.of("state/alias", k), v.as_ref());
    }
    for (k, v) in &delta.services {
        set(&mut ops, keys.of("state/service", k), v.as_ref());
    }
    for (k, v) in &delta.alias_specs {
        set(&mut ops, keys.of("state/spec", k), v.as_ref());
    }
    for (k, v) in &delta.docker {
        set(&mut ops, keys.of("state/docker", k), v.as_ref());
    }
    for (k, v) in &delta.serials {
        set(&mut ops, keys.of("state/reserve", k), Some(v));
    }
    for (k, v) in &delta.rollouts {
        set(&mut ops, keys.of("state/rollout", k), v.as_ref());
    }
    for (k, v) in &live.serials {
        set(&mut ops, keys.of("live/serial", k), Some(v));
    }
    for (k, v) in &live.health {
        set(&mut ops, keys.of("live/health", k.as_str()), v.as_ref());
    }
    for (k, v) in &live.last_good {
        set(
            &mut ops,
            keys.of("live/lastgood", &k.name().to_ascii()),
            v.as_ref(),
        );
    }
    for e in entries {
        set(
            &mut ops,
            keys.history(e.seq),
            Some(&WireEntry::from(e.clone())),
        );
    }
    set(
        &mut ops,
        keys.meta(),
        Some(&Meta {
            history_seq: delta.history_seq,
        }),
    );
    ops
}

/// The leader's store: every commit one transaction fenced by its election.
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    runtime: Handle,
    /// The revision the `leader` key was created at by this leader's election.
    fence: i64,
    /// The mod revision of `state/meta` this leader last wrote or read.
    meta_revision: i64,
    /// The history entries stored (their numbers), for compaction.
    history: BTreeSet<u64>,
    /// Cancelled when the term must end: a refused or uncertain write.
    term: CancellationToken,
    /// Until when the lease is known to hold (the keep-alive moves it).
    lease_until: Arc<Mutex<Instant>>,
    /// The revision of the last commit.
    committed: watch::Sender<i64>,
}

impl EtcdStore {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        keys: Keys,
        runtime: Handle,
        fence: i64,
        meta_revision: i64,
        history: BTreeSet<u64>,
        term: CancellationToken,
        lease_until: Arc<Mutex<Instant>>,
        committed: watch::Sender<i64>,
    ) -> Self {
        Self {
            client,
            keys,
            runtime,
            fence,
            meta_revision,
            history,
            term,
            lease_until,
            committed,
        }
    }

    fn fenced(&self) -> Vec<Compare> {
        vec![
            Compare::create_revision(self.keys.leader(), CompareOp::Equal, self.fence),
            Compare::mod_revision(self.keys.meta(), CompareOp::Equal, self.meta_revision),
        ]
    }

    /// Refuses before asking etcd when this term is over or its lease may have run out.
    fn check_term(&self) -> Result<(), StoreError> {
        if self.term.is_cancelled() {
            return Err(StoreError::Unavailable(
                "this node's leadership ended; the change goes to the new leader".into(),
            ));
        }
        let until = *self.lease_until.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= until {
            self.term.cancel();
            return Err(StoreError::Unavailable(
                "this node's lease in etcd may have expired (it could not renew it in time), so it stepped down".into(),
            ));
        }
        Ok(())
    }

    /// Runs one fenced transaction of `ops`; returns its revision. Any failure ends the term:
    /// the next leader (maybe this node again) starts from what etcd holds.
    fn transact(&mut self, ops: Vec<TxnOp>) -> Result<i64, StoreError> {
        self.check_term()?;
        let txn = Txn::new().when(self.fenced()).and_then(ops);
        let mut client = self.client.clone();
        match self.runtime.block_on(client.txn(txn)) {
            Ok(r) if r.succeeded() => {
                let revision = r.header().map_or(0, |h| h.revision());
                Ok(revision)
            }
            Ok(_) => {
                self.term.cancel();
                Err(StoreError::Unavailable(
                    "this node is no longer the leader (another node took over, or the state changed under it); nothing was changed".into(),
                ))
            }
            Err(e) => {
                self.term.cancel();
                let text = describe(&e);
                let hint = if text.contains("too many operations") {
                    format!(
                        "; this change needs more operations than etcd's --max-txn-ops allows (raise it to at least {})",
                        TXN_OPS * 4
                    )
                } else {
                    String::new()
                };
                Err(StoreError::Unavailable(format!("{text}{hint}")))
            }
        }
    }
}

impl Store for EtcdStore {
    fn commit(
        &mut self,
        delta: StoredDelta,
        entries: &[HistoryEntry],
        live: &Live,
        _whole: &dyn Fn() -> StoredState,
    ) -> Result<(), StoreError> {
        let ops = ops(&self.keys, &delta, entries, live);
        let revision = self.transact(ops)?;
        self.meta_revision = revision;
        self.history.extend(entries.iter().map(|e| e.seq));
        self.committed.send_replace(revision);
        Ok(())
    }

    fn compact_history(&mut self, kept: &mut [&HistoryEntry]) -> Result<(), StoreError> {
        let keep: BTreeSet<u64> = kept.iter().map(|e| e.seq).collect();
        let drop: Vec<u64> = self.history.difference(&keep).copied().collect();
        for chunk in drop.chunks(TXN_OPS - 1) {
            let mut ops: Vec<TxnOp> = chunk
                .iter()
                .map(|seq| TxnOp::delete(self.keys.history(*seq), None))
                .collect();
            // Every write moves `state/meta`, so the next commit's compare still holds.
            ops.push(TxnOp::put(
                self.keys.meta(),
                serde_json::to_vec(&Meta {
                    history_seq: self
                        .history
                        .last()
                        .copied()
                        .unwrap_or(0)
                        .max(kept.iter().map(|e| e.seq).max().unwrap_or(0)),
                })
                .unwrap_or_default(),
                None,
            ));
            let revision = self.transact(ops)?;
            self.meta_revision = revision;
            for seq in chunk {
                self.history.remove(seq);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("/aliasd/");
        assert_eq!(k.classify(&k.meta()), Some(Key::Meta));
        assert_eq!(k.classify(&k.leader()), Some(Key::Leader));
        assert_eq!(k.classify(&k.history(42)), Some(Key::History(42)));
        assert_eq!(k.classify(&k.node("a")), Some(Key::Node("a")));
        assert_eq!(k.classify(&k.host_docker("a")), Some(Key::Host("a")));
        assert_eq!(
            k.classify(&k.host_stop("a", "web.internal.", 7)),
            Some(Key::Stop {
                node: "a",
                alias: "web.internal.",
                op: 7
            })
        );
        assert_eq!(
            k.classify(&k.host_stopped("b-2", "web.internal.", 12)),
            Some(Key::Stopped {
                node: "b-2",
                alias: "web.internal.",
                op: 12
            })
        );
        assert!(k.host_stop("a", "x.", 1).starts_with(&k.host_stops("a")));
        assert!(!k.host_stopped("a", "x.", 1).starts_with(&k.host_stops("a")));
        assert_eq!(k.classify("/aliasd/hosts/a/stop/web.internal./x"), None);
        assert_eq!(k.classify("/aliasd/hosts/a/other/web.internal./1"), None);
        assert_eq!(k.classify("/aliasd/hosts//docker"), None);
        assert_eq!(k.classify("/aliasd/hosts/a"), None);
        assert_eq!(
            k.classify("/aliasd/state/alias/web.internal."),
            Some(Key::Alias("web.internal."))
        );
        assert_eq!(
            k.classify("/aliasd/state/rollout/3"),
            Some(Key::Rollout("3"))
        );
        assert_eq!(
            k.classify("/aliasd/live/health/web-v1"),
            Some(Key::Health("web-v1"))
        );
        assert_eq!(k.classify("/aliasdx/state/meta"), None);
        assert_eq!(k.classify("/other/state/meta"), None);
        assert_eq!(k.classify("/aliasd/state/bogus/x"), None);
    }
}
