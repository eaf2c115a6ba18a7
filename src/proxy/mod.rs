//! The front proxy: listeners that forward to the members an alias answers with, switched by the
//! same published snapshot as DNS, so one publish moves both.
//!
//! Each `[[proxy]]` names an alias. Per request (HTTP mode, [`http`]) or per connection (TCP mode,
//! [`tcp`]) the proxy loads the current snapshot (lock-free), takes the alias's answered
//! endpoints as its active members, leaves out the draining services' endpoints, and picks one by
//! the power of two choices on work in flight ([`balance`]). Draining members get nothing new;
//! what they already have finishes (HTTP requests) or is closed `drain_deadline` after they left
//! (TCP connections, and HTTP connections upgraded to WebSocket and the like).
//!
//! Connect failures are retried on other members and counted per member: three in a row eject it
//! from the proxy's choice until its active health check passes again ([`balance::Passive`]).
//!
//! While the alias is in a weighted step, a request (HTTP) or connection (TCP) goes to the
//! members of its client's side ([`crate::snapshot::AliasView::endpoints_for`]), by the same
//! hash DNS answers with, so a client meets the version its DNS answer named. The client is the
//! peer's address, or in HTTP mode the address a trusted balancer in front names in
//! `client_header` ([`Proxy::client_of`]).
//!
//! [`ProxyStats`] holds every counter (atomics only), shared with the rest of the daemon: the
//! API shows how much work members have ([`ProxyStats::inflight`]) and an HTTP route can serve
//! [`ProxyStats::render_prometheus`]. The writer is told, never asks: a member out of its
//! alias's answers reports to it ([`spawn_drain_reports`]) once its open work has ended, which
//! is what a drain waits for.
//!
//! [`Measurements`] ([`measure`]) adds every attempt up per alias and service (requests, errors,
//! latency to the answer's head): the figures a stepped promotion's gates are judged on.

pub mod balance;
mod fast;
mod http;
mod measure;
mod tcp;
pub mod wire;

use measure::ServiceMap;
pub use measure::{Measurements, ServiceCounters};

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use arc_swap::ArcSwap;

use crate::check::{CheckKind, Health};
use crate::clock::now_ms;
use crate::config::{ProxyConfig, ProxyMode};
use crate::conns::{Accepted, Slots, accept_all};
use crate::health::HealthBoard;
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::snapshot::{AliasView, SharedSnapshot};
use crate::supervise::Critical;

/// A front proxy's report to the writer: a member of `alias` out of its answers has no open
/// work left behind the proxy on `proxy` (sent when its last request or connection ends, or
/// at once when it had none). The drain of the alias waits for these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    pub proxy: SocketAddr,
    pub alias: AliasName,
    pub endpoint: Endpoint,
}

/// Connect attempts per request or connection, each on another member.
const MAX_CONNECT_TRIES: usize = 3;
/// Idle member connections kept per member and worker thread, on either HTTP path; more are
/// closed when they come back.
const MAX_IDLE_PER_MEMBER: usize = 64;

thread_local! {
    /// Which proxy worker thread this is (0 elsewhere), to pick its member pool.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Proxy worker threads: one per core.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 64)
}
/// How often the proxy compares snapshots to close drained TCP connections and idle pools.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// At shutdown, connections get at most this long (and at most the request timeout or drain
/// deadline) to finish before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// An ejected member whose services have no active health check (`kind = "none"`) has nothing
/// to pass; it is tried again after this long instead.
const UNCHECKED_READMIT: Duration = Duration::from_secs(5);

/// Upper bounds of the latency histogram, in milliseconds (then +Inf).
pub const LATENCY_BUCKETS_MS: [u64; 11] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

// ---- statistics ----

/// The counters of one member behind one proxy. Atomics only: every request updates them.
#[derive(Debug, Default)]
pub struct MemberStats {
    requests: AtomicU64,
    errors: AtomicU64,
    inflight: AtomicU64,
    /// One counter per bucket of [`LATENCY_BUCKETS_MS`] (not cumulative), then +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    latency_sum_us: AtomicU64,
    /// Set while the member is out of its alias's answers: the writer waits for its open
    /// work to end, and is told so by the report kept here.
    watched: AtomicBool,
    report: Mutex<Option<(mpsc::UnboundedSender<Drained>, Drained)>>,
}

impl MemberStats {
    /// Tells the writer the member has no open work (the report set while it drains).
    fn report_drained(&self) {
        if let Some((tx, drained)) = lock(&self.report).as_ref() {
            let _ = tx.send(drained.clone());
        }
    }

    /// Starts (or stops) watching for the end of the member's open work; when it is out of
    /// the answers with nothing open already, reports so at once.
    fn watch(&self, report: Option<(mpsc::UnboundedSender<Drained>, Drained)>) {
        let on = report.is_some();
        *lock(&self.report) = report;
        // Watched first, then read: a request that ends in between reports too (twice is
        // harmless), and none ends unreported.
        self.watched.store(on, Ordering::SeqCst);
        if on && self.inflight.load(Ordering::SeqCst) == 0 {
            self.report_drained();
        }
    }
}

/// The counters of one member at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// HTTP requests sent to the member, or TCP connections opened to it.
    pub requests: u64,
    /// Failed connects, requests the member did not answer or broke off, timeouts.
    pub errors: u64,
    /// HTTP requests in flight, or TCP connections open.
    pub inflight: u64,
}

impl MemberStats {
    pub fn counts(&self) -> MemberCounts {
        MemberCounts {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            inflight: self.inflight.load(Ordering::Relaxed),
        }
    }

    fn observe(&self, took: Duration) {
        let ms = took.as_millis() as u64;
        let slot = LATENCY_BUCKETS_MS
            .iter()
            .position(|&le| ms <= le)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn seen(&self) -> bool {
        let c = self.counts();
        c.requests > 0 || c.errors > 0 || c.inflight > 0
    }
}

/// Answers the proxy gave itself because no member did.
#[derive(Debug, Default)]
struct LocalCounts {
    /// 502 (HTTP) or a closed connection (TCP): no member could be reached.
    bad_gateway: AtomicU64,
    /// 503 (HTTP) or a closed connection (TCP): the alias had no active member.
    unavailable: AtomicU64,
    /// 504: no answer within the request timeout.
    timeout: AtomicU64,
    /// HTTP: requests served on the proxy's own HTTP/1.1 path ([`fast`]), one counter per
    /// worker thread so the threads never contend for it.
    fast_requests: PerWorker,
    /// HTTP: client connections handed to the general path (hyper) from their first request
    /// that was not plain, or from the start with `fast_path = false`.
    general_connections: AtomicU64,
}

/// A counter with a cache line of its own for each worker thread, summed when read.
#[derive(Debug)]
struct PerWorker(Vec<Padded>);

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

impl Default for PerWorker {
    fn default() -> Self {
        Self((0..workers()).map(|_| Padded::default()).collect())
    }
}

impl PerWorker {
    fn add_one(&self) {
        self.0[WORKER.get() % self.0.len()]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// One proxy's counters.
#[derive(Debug)]
struct ProxyEntry {
    listen: SocketAddr,
    alias: String,
    alias_name: AliasName,
    mode: ProxyMode,
    /// The counters of every member that has had work. Endpoints come and go with the
    /// registry: a member's counters are made on its first request and dropped once it is
    /// gone from every service with nothing left in flight.
    members: Grow<Endpoint, Arc<MemberStats>>,
    local: LocalCounts,
}

impl ProxyEntry {
    fn stats_of(&self, endpoint: &Endpoint) -> Option<Arc<MemberStats>> {
        self.members.get(endpoint)
    }
}

/// One loaded generation of a [`Grow`] map.
type Members<T, K = Endpoint> = Arc<HashMap<K, T>>;

/// A map from a key (an endpoint) to `T` that readers load without a lock and that grows on
/// demand: the rare insert copies the map under a mutex and swaps it in.
#[derive(Debug)]
struct Grow<K, T> {
    map: ArcSwap<HashMap<K, T>>,
    writer: Mutex<()>,
}

impl<K, T> Default for Grow<K, T> {
    fn default() -> Self {
        Self {
            map: ArcSwap::from_pointee(HashMap::new()),
            writer: Mutex::new(()),
        }
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Grow<K, T> {
    fn get(&self, key: &K) -> Option<T> {
        self.map.load().get(key).cloned()
    }

    fn get_or_insert(&self, key: &K, make: impl FnOnce() -> T) -> T {
        if let Some(found) = self.get(key) {
            return found;
        }
        let _writer = lock(&self.writer);
        let current = self.map.load_full();
        if let Some(found) = current.get(key) {
            return found.clone();
        }
        let value = make();
        let mut next = (*current).clone();
        next.insert(key.clone(), value.clone());
        self.map.store(Arc::new(next));
        value
    }

    /// Drops the entries `keep` says no to.
    fn retain(&self, keep: impl Fn(&K, &T) -> bool) {
        let current = self.map.load_full();
        if current.iter().all(|(e, v)| keep(e, v)) {
            return;
        }
        let _writer = lock(&self.writer);
        let current = self.map.load_full();
        let next: HashMap<K, T> = current
            .iter()
            .filter(|(e, v)| keep(e, v))
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect();
        self.map.store(Arc::new(next));
    }

    fn snapshot(&self) -> Members<T, K> {
        self.map.load_full()
    }
}

/// Every proxy's counters, per member. Shared with the daemon (metrics, drain coupling).
#[derive(Debug, Default)]
pub struct ProxyStats {
    proxies: Vec<Arc<ProxyEntry>>,
    /// What every proxy measures per alias and service, for the writer's gates.
    measurements: Arc<Measurements>,
}

impl ProxyStats {
    /// Counters for `proxies`.
    pub fn new(proxies: &[BoundProxy]) -> Self {
        let proxies: Vec<Arc<ProxyEntry>> = proxies
            .iter()
            .map(|p| {
                Arc::new(ProxyEntry {
                    listen: p.addr,
                    alias: p.config.alias.to_string(),
                    alias_name: p.config.alias.clone(),
                    mode: p.config.mode,
                    members: Grow::default(),
                    local: LocalCounts::default(),
                })
            })
            .collect();
        let measurements = Arc::new(Measurements::new(
            proxies.iter().map(|p| p.alias_name.clone()),
        ));
        Self {
            proxies,
            measurements,
        }
    }

    /// The figures per alias and service that the proxies made from this list add to.
    pub fn measurements(&self) -> Arc<Measurements> {
        self.measurements.clone()
    }

    /// The same, borrowed.
    pub fn measurements_ref(&self) -> &Measurements {
        &self.measurements
    }

    /// Work still open on `endpoints`, over every proxy: HTTP requests in flight and TCP
    /// connections open. A drain that waits for this lets old members finish their work.
    pub fn inflight(&self, endpoints: &[Endpoint]) -> u64 {
        self.proxies
            .iter()
            .flat_map(|p| endpoints.iter().filter_map(|e| p.stats_of(e)))
            .map(|s| s.inflight.load(Ordering::Relaxed))
            .sum()
    }

    /// The counters of `endpoint` behind the proxy bound on `proxy`.
    pub fn member(&self, proxy: SocketAddr, endpoint: &Endpoint) -> Option<MemberCounts> {
        let entry = self.proxies.iter().find(|p| p.listen == proxy)?;
        Some(
            entry
                .stats_of(endpoint)
                .map_or_else(MemberCounts::default, |s| s.counts()),
        )
    }

    /// Writes every counter in the Prometheus text format (version 0.0.4). Members that never
    /// had any work are left out, so an alias that can link a thousand endpoints does not
    /// print a thousand zeros.
    pub fn render_prometheus(&self, out: &mut String) {
        let maps: Vec<(&ProxyEntry, Members<Arc<MemberStats>>)> = self
            .proxies
            .iter()
            .map(|p| (&**p, p.members.snapshot()))
            .collect();
        let mut seen: Vec<(&ProxyEntry, &Endpoint, &MemberStats)> = maps
            .iter()
            .flat_map(|(p, members)| {
                members
                    .iter()
                    .filter(|(_, s)| s.seen())
                    .map(move |(e, s)| (*p, e, &**s))
            })
            .collect();
        seen.sort_by(|a, b| (a.0.listen, a.1).cmp(&(b.0.listen, b.1)));
        let labels = |p: &ProxyEntry, e: &Endpoint| {
            format!(
                "proxy=\"{}\",alias=\"{}\",member=\"{}\"",
                escape(&p.listen.to_string()),
                escape(&p.alias),
                escape(&e.to_string())
            )
        };
        let families: [Family; 3] = [
            (
                "aliasd_proxy_requests_total",
                "counter",
                "HTTP requests sent to a member, or TCP connections opened to it.",
                |s| s.requests.load(Ordering::Relaxed),
            ),
            (
                "aliasd_proxy_errors_total",
                "counter",
                "Failed connects, requests a member did not answer or broke off, and timeouts.",
                |s| s.errors.load(Ordering::Relaxed),
            ),
            (
                "aliasd_proxy_in_flight",
                "gauge",
                "HTTP requests in flight to a member, or TCP connections open to it.",
                |s| s.inflight.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (p, e, s) in &seen {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(p, e), value(s));
            }
        }

        let name = "aliasd_proxy_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP: time from sending a request to a member to the end of its answer. TCP: time to connect."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (p, e, s) in &seen {
            let labels = labels(p, e);
            let mut cumulative = 0;
            for (i, bucket) in s.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = LATENCY_BUCKETS_MS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |ms| (*ms as f64 / 1000.0).to_string());
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let sum = s.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        }

        let name = "aliasd_proxy_local_responses_total";
        let _ = writeln!(
            out,
            "# HELP {name} Answers the proxy gave itself: 502 no member reachable, 503 no active member, 504 timeout (TCP: connections closed for the same reasons)."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for p in &self.proxies {
            let proxy = escape(&p.listen.to_string());
            let alias = escape(&p.alias);
            let mode = match p.mode {
                ProxyMode::Http => "http",
                ProxyMode::Tcp => "tcp",
            };
            for (code, counter) in [
                ("502", &p.local.bad_gateway),
                ("503", &p.local.unavailable),
                ("504", &p.local.timeout),
            ] {
                let _ = writeln!(
                    out,
                    "{name}{{proxy=\"{proxy}\",alias=\"{alias}\",mode=\"{mode}\",code=\"{code}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
        for (name, help, read) in [
            (
                "aliasd_proxy_fast_requests_total",
                "HTTP requests served on the proxy's own HTTP/1.1 path.",
                (|l: &LocalCounts| l.fast_requests.sum()) as fn(&LocalCounts) -> u64,
            ),
            (
                "aliasd_proxy_general_connections_total",
                "HTTP client connections served by the general path (hyper): HTTP/2, upgrades, chunked or Expect bodies, HTTP/1.0, anything malformed, or fast_path = false.",
                |l: &LocalCounts| l.general_connections.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for p in self.proxies.iter().filter(|p| p.mode == ProxyMode::Http) {
                let _ = writeln!(
                    out,
                    "{name}{{proxy=\"{}\",alias=\"{}\"}} {}",
                    escape(&p.listen.to_string()),
                    escape(&p.alias),
                    read(&p.local)
                );
            }
        }
        self.measurements.render_prometheus(out);
    }
}

/// A metric family of one number per member: name, type, help, and how to read the number.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MemberStats) -> u64,
);

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics` appends these.
impl crate::metrics::MetricsSource for ProxyStats {
    fn render_prometheus(&self, out: &mut String) {
        ProxyStats::render_prometheus(self, out);
    }
}

// ---- binding and starting ----

/// A proxy whose listener is bound but that does not serve yet.
#[derive(Debug)]
pub struct BoundProxy {
    config: ProxyConfig,
    listener: TcpListener,
    addr: SocketAddr,
}

impl BoundProxy {
    /// The address actually bound (the OS's port when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot bind the proxy on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

/// Binds every proxy's listener, in config order.
pub async fn bind(configs: &[ProxyConfig]) -> Result<Vec<BoundProxy>, BindError> {
    let mut bound = Vec::with_capacity(configs.len());
    for config in configs {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| BindError {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| BindError {
            addr: config.listen,
            source,
        })?;
        info!(%addr, alias = %config.alias, mode = ?config.mode, "proxy listening");
        bound.push(BoundProxy {
            config: config.clone(),
            listener,
            addr,
        });
    }
    Ok(bound)
}

/// Serves every bound proxy until `shutdown`; `stats` must have been made from the same list.
/// Tells the writer (`tx`) when a member out of its alias's answers has no open work left: at
/// every publish for the members it drains then that are idle already, and for the others
/// when their last request or connection ends ([`Flight`]'s drop).
pub fn spawn_drain_reports(
    stats: &ProxyStats,
    snapshots: SharedSnapshot,
    mut published: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::UnboundedSender<Drained>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let (proxies, shutdown) = (stats.proxies.clone(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            let snapshot = snapshots.load_full();
            for entry in &proxies {
                let draining = draining_members(&snapshot, &entry.alias_name);
                for endpoint in &draining {
                    let report = Drained {
                        proxy: entry.listen,
                        alias: entry.alias_name.clone(),
                        endpoint: *endpoint,
                    };
                    entry
                        .members
                        .get_or_insert(endpoint, Arc::default)
                        .watch(Some((tx.clone(), report)));
                }
                for (endpoint, stats) in entry.members.snapshot().iter() {
                    if stats.watched.load(Ordering::SeqCst) && !draining.contains(endpoint) {
                        stats.watch(None);
                    }
                }
            }
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    });
}

/// The members of `alias` out of its answers while its old version drains.
fn draining_members(snapshot: &crate::snapshot::Snapshot, alias: &AliasName) -> Vec<Endpoint> {
    snapshot
        .aliases
        .get(alias)
        .map(|view| view.draining.clone())
        .unwrap_or_default()
}

pub fn spawn(
    bound: Vec<BoundProxy>,
    stats: &ProxyStats,
    snapshots: SharedSnapshot,
    board: Arc<HealthBoard>,
    shutdown: &CancellationToken,
    critical: &mut Critical,
) {
    for (bound, entry) in bound.into_iter().zip(&stats.proxies) {
        let client_name = bound
            .config
            .client_header
            .as_ref()
            .and_then(|h| hyper::header::HeaderName::from_bytes(h.name.as_bytes()).ok());
        let proxy = Arc::new(Proxy {
            client_name,
            alias_host: bound.config.alias.to_string(),
            config: bound.config,
            addr: bound.addr,
            snapshots: snapshots.clone(),
            board: board.clone(),
            members: Grow::default(),
            entry: entry.clone(),
            measurements: stats.measurements.clone(),
            // No generation yet: the first request makes the route.
            route: ArcSwap::from_pointee(Route {
                generation: u64::MAX,
                ..Route::default()
            }),
            stopping: AtomicBool::new(false),
        });
        let name = format!("the proxy on {} (alias {})", proxy.addr, proxy.alias_host);
        critical.spawn(name, proxy.run(bound.listener, shutdown.clone()));
    }
}

// ---- the running proxy ----

/// One member as one proxy sees it.
struct Member {
    endpoint: Endpoint,
    stats: Arc<MemberStats>,
    passive: balance::Passive,
    /// HTTP: idle pooled connections, the most recently used last.
    /// One pool per worker thread: a connection is driven by the thread that opened it, so a
    /// request never has to wake another thread to use it.
    idle: Vec<Mutex<Vec<http::Idle>>>,
    /// The same for the HTTP/1.1 fast path's connections ([`fast`]).
    raw_idle: Vec<Mutex<Vec<fast::Idle>>>,
    /// What closes this member's TCP and upgraded HTTP connections once it has been out of the
    /// answers too long.
    drain: Mutex<Drain>,
}

#[derive(Default)]
struct Drain {
    /// Every connection to the member holds a clone; cancelling it closes them all.
    token: CancellationToken,
    /// Connections that hold the token now ([`DrainWatch`]).
    watching: usize,
    /// When the member was first seen out of the active set, if it is out.
    left_at: Option<Instant>,
}

/// One long-lived connection's hold on its member's drain token.
struct DrainWatch {
    token: CancellationToken,
    member: Arc<Member>,
}

impl DrainWatch {
    async fn cancelled(&self) {
        self.token.cancelled().await;
    }
}

impl Drop for DrainWatch {
    fn drop(&mut self) {
        lock(&self.member.drain).watching -= 1;
    }
}

/// Locks a mutex whose holders never panic while holding it; a poisoned one is still usable
/// because every critical section leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Member {
    /// The idle pool of the worker thread this runs on.
    fn idle(&self) -> &Mutex<Vec<http::Idle>> {
        &self.idle[WORKER.get() % self.idle.len()]
    }

    /// The fast path's idle pool of the worker thread this runs on.
    fn raw_idle(&self) -> &Mutex<Vec<fast::Idle>> {
        &self.raw_idle[WORKER.get() % self.raw_idle.len()]
    }

    /// For a connection that lives as long as its client wants (TCP, an upgraded HTTP one):
    /// resolves when the member has been out of the answers for `drain_deadline`.
    fn watch_drain(self: &Arc<Self>) -> DrainWatch {
        let mut drain = lock(&self.drain);
        drain.watching += 1;
        DrainWatch {
            token: drain.token.clone(),
            member: self.clone(),
        }
    }
}

/// What the proxy uses of one published snapshot, made once per generation and shared by every
/// request until the next: the alias's view, its members already looked up, and where each
/// endpoint's attempts are counted. So a request reads its choice without a map lookup, a hash
/// or a copy.
#[derive(Default)]
struct Route {
    generation: u64,
    view: Option<Arc<AliasView>>,
    services: ServiceMap,
    /// The members that may get new work (answered, not draining), each with its service's
    /// counters: for every client, and in a weighted step for each side.
    all: Vec<Candidate>,
    old: Vec<Candidate>,
    new: Vec<Candidate>,
}

/// A member a request may go to, and where its attempts are counted.
#[derive(Clone)]
struct Candidate {
    member: Arc<Member>,
    service: Option<Arc<ServiceCounters>>,
}

/// Which of a route's member sets a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    All,
    Old,
    New,
}

/// A client connection's last choice of side in a weighted step: the route's generation, the
/// client, and its side.
#[derive(Debug, Default)]
struct SideMemo(Option<(u64, IpAddr, Side)>);

/// The members to choose from at one moment: a route and a side of it.
struct Choice {
    route: Arc<Route>,
    side: Side,
}

impl Choice {
    /// The answered endpoints on this side (health-filtered, as DNS answers them).
    fn active(&self) -> &[Endpoint] {
        let Some(view) = &self.route.view else {
            return &[];
        };
        match (self.side, &view.split) {
            (Side::New, Some(split)) => &split.new,
            (Side::Old, Some(split)) => &split.old,
            _ => &view.endpoints,
        }
    }

    /// Endpoints of services that are draining (and of no answering service).
    fn draining(&self) -> &[Endpoint] {
        self.route.view.as_ref().map_or(&[], |v| &v.draining)
    }

    /// The members of this side that may get new work.
    fn candidates(&self) -> &[Candidate] {
        match self.side {
            Side::All => &self.route.all,
            Side::Old => &self.route.old,
            Side::New => &self.route.new,
        }
    }

    /// The counters of the service `endpoint` belongs to.
    fn service_of(&self, endpoint: &Endpoint) -> Option<Arc<ServiceCounters>> {
        match self
            .candidates()
            .iter()
            .find(|c| c.member.endpoint == *endpoint)
        {
            Some(c) => c.service.clone(),
            None => self.route.services.of(endpoint),
        }
    }
}

struct Proxy {
    config: ProxyConfig,
    addr: SocketAddr,
    /// The alias without its trailing dot, for messages and a missing `Host`.
    alias_host: String,
    snapshots: SharedSnapshot,
    board: Arc<HealthBoard>,
    /// The config's `client_header`, as a header name.
    client_name: Option<hyper::header::HeaderName>,
    /// Members are made on their first request and dropped once gone from every service.
    members: Grow<Endpoint, Arc<Member>>,
    entry: Arc<ProxyEntry>,
    measurements: Arc<Measurements>,
    /// What the last snapshot seen says ([`Route`]).
    route: ArcSwap<Route>,
    /// Set once shutdown began (by [`Proxy::watch`]): read per request without touching the
    /// cancellation token's lock, which every worker thread would share.
    stopping: AtomicBool,
}

impl Proxy {
    /// Accepts until `shutdown`, then lets connections finish within a bound.
    /// Serves until `shutdown`: one accept loop per worker thread, each on its own
    /// single-threaded runtime, so a connection, its requests and the member connections they
    /// use all stay on one thread (the profile showed cross-thread wake-ups dominating).
    async fn run(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let watcher = tokio::spawn(self.clone().watch(shutdown.clone()));
        let limit = Slots::new(self.config.max_connections);
        let listener = match listener.into_std() {
            Ok(l) => l,
            Err(error) => {
                warn!(proxy = %self.addr, %error, "proxy listener unusable");
                return;
            }
        };
        let mut threads = Critical::default();
        for worker in 0..workers() {
            let cloned = match listener.try_clone() {
                Ok(l) => l,
                Err(error) => {
                    warn!(proxy = %self.addr, %error, "cannot share the proxy listener");
                    break;
                }
            };
            let on_exit = threads.on_exit(format!("worker {worker}"));
            let (proxy, shutdown, limit) = (self.clone(), shutdown.clone(), limit.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("proxy-{worker}"))
                .spawn(move || {
                    let _on_exit = on_exit;
                    WORKER.set(worker);
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(error) => {
                            warn!(%error, "cannot start a proxy worker runtime");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        match TcpListener::from_std(cloned) {
                            Ok(l) => proxy.accept_loop(l, limit, shutdown).await,
                            Err(error) => warn!(%error, "cannot register the proxy listener"),
                        }
                    });
                });
            if let Err(error) = spawned {
                warn!(proxy = %self.addr, %error, "cannot start a proxy worker thread");
            }
        }
        drop(listener);
        // The proxy serves while all of its workers do: one that ends before shutdown ends the
        // proxy (and so aliasd, which supervises this task) rather than leave it short of
        // threads; after shutdown they end as their connections finish.
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            ended = threads.ended() => if !shutdown.is_cancelled() {
                error!(proxy = %self.addr, "proxy {ended} before shutdown");
                return;
            }
        }
        while !threads.is_empty() {
            threads.ended().await;
        }
        let _ = watcher.await;
    }

    /// Accepts and serves connections on this worker thread until `shutdown`, then gives open
    /// connections a bounded grace.
    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        limit: Arc<Slots>,
        shutdown: CancellationToken,
    ) {
        // A TCP-mode connection is a member connection at once, never idle.
        let pinned = self.config.mode == ProxyMode::Tcp;
        let serve = |a: Accepted| {
            let (proxy, shutdown) = (self.clone(), shutdown.clone());
            async move {
                match proxy.config.mode {
                    ProxyMode::Http if proxy.config.fast_path => {
                        let (stream, peer) = (a.stream, a.peer);
                        fast::serve_connection(proxy, stream, peer, shutdown, a.activity, a.slot)
                            .await;
                    }
                    ProxyMode::Http => {
                        let (stream, peer) = (a.stream, a.peer);
                        http::serve_connection(proxy, stream, peer, shutdown, a.activity, a.slot)
                            .await;
                    }
                    ProxyMode::Tcp => {
                        let _slot = a.slot;
                        tcp::serve_connection(proxy, a.stream, a.peer, a.activity).await;
                    }
                }
            }
        };
        let mut conns = accept_all(listener, &limit, pinned, &shutdown, "proxy", serve).await;
        let grace = SHUTDOWN_GRACE.min(match self.config.mode {
            ProxyMode::Http => self.config.request_timeout,
            ProxyMode::Tcp => self.config.drain_deadline,
        });
        info!(proxy = %self.addr, open = conns.len(), "proxy stopping");
        let drained = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drained).await.is_err() {
            warn!(
                proxy = %self.addr,
                open = conns.len(),
                grace_ms = grace.as_millis() as u64,
                "proxy connections still open at shutdown; closing them"
            );
            conns.shutdown().await;
        }
    }

    /// Every [`WATCH_EVERY`]: closes idle pooled connections that expired or lead to members
    /// out of the answers, and (TCP) closes connections to members that left the answers more
    /// than `drain_deadline` ago.
    async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => {
                    self.stopping.store(true, Ordering::Release);
                    return;
                }
            }
            let choice = self.choice();
            let active: HashSet<&Endpoint> = choice
                .active()
                .iter()
                .filter(|e| !choice.draining().contains(e))
                .collect();
            let now = Instant::now();
            let members = self.members.snapshot();
            for (endpoint, member) in members.iter() {
                let active = active.contains(endpoint);
                let limit = self.config.backend_idle_timeout;
                for pool in &member.idle {
                    let mut idle = lock(pool);
                    if active {
                        idle.retain(|i| now.duration_since(i.since) < limit && !i.is_closed());
                    } else {
                        idle.clear();
                    }
                }
                for pool in &member.raw_idle {
                    let mut idle = lock(pool);
                    if active {
                        idle.retain(|i| now.duration_since(i.since) < limit && !i.is_closed());
                    } else {
                        idle.clear();
                    }
                }
                // TCP connections and upgraded HTTP ones (an HTTP request never waits on it).
                self.drain(member, active, now);
            }
            // Members whose endpoint no service lists any more, with nothing left in flight,
            // are forgotten, so churning containers do not grow the maps without end.
            let snapshot = self.snapshots.load();
            let listed = |e: &Endpoint| {
                snapshot
                    .topology
                    .services
                    .values()
                    .any(|s| s.find(e).is_some())
            };
            let idle = |stats: &MemberStats| stats.inflight.load(Ordering::Relaxed) == 0;
            self.members.retain(|e, m| listed(e) || !idle(&m.stats));
            self.entry.members.retain(|e, s| listed(e) || !idle(s));
            self.measurements
                .retain(|s| snapshot.topology.services.contains_key(s));
        }
    }

    /// Closes the connections (TCP, and upgraded HTTP) of a member out of the answers since
    /// `drain_deadline`.
    fn drain(&self, member: &Member, active: bool, now: Instant) {
        let mut drain = lock(&member.drain);
        if active {
            drain.left_at = None;
            return;
        }
        let left = *drain.left_at.get_or_insert(now);
        let open = drain.watching;
        if open > 0 && now.duration_since(left) >= self.config.drain_deadline {
            info!(
                proxy = %self.addr,
                member = %member.endpoint,
                open,
                "closing connections to a member that left the answers {} ago",
                humantime::format_duration(self.config.drain_deadline)
            );
            std::mem::take(&mut drain.token).cancel();
        }
    }

    /// The member set now, from the current snapshot: both sides of a weighted step (what
    /// must not be drained).
    fn choice(&self) -> Choice {
        Choice {
            route: self.route(),
            side: Side::All,
        }
    }

    /// The route of the current snapshot, made again only when a new one was published (two
    /// threads that both see it new make the same route; one of them stays).
    fn route(&self) -> Arc<Route> {
        let snapshot = self.snapshots.load();
        let current = self.route.load_full();
        if current.generation == snapshot.generation {
            return current;
        }
        let services = ServiceMap::build(&self.measurements, &self.config.alias, &snapshot);
        let view = snapshot.aliases.get(&self.config.alias).cloned();
        let candidates = |endpoints: &[Endpoint]| -> Vec<Candidate> {
            let draining = view.as_ref().map_or(&[][..], |v| &v.draining[..]);
            endpoints
                .iter()
                .filter(|e| !draining.contains(e))
                .map(|e| Candidate {
                    member: self.member(e),
                    service: services.of(e),
                })
                .collect()
        };
        let (all, old, new) = match &view {
            None => Default::default(),
            Some(v) => (
                candidates(&v.endpoints),
                v.split
                    .as_ref()
                    .map_or_else(Vec::new, |s| candidates(&s.old)),
                v.split
                    .as_ref()
                    .map_or_else(Vec::new, |s| candidates(&s.new)),
            ),
        };
        let fresh = Arc::new(Route {
            generation: snapshot.generation,
            view,
            services,
            all,
            old,
            new,
        });
        self.route.store(fresh.clone());
        fresh
    }

    /// Counts an attempt on `endpoint` that failed before any answer for its service.
    fn attempt_failed(&self, choice: &Choice, endpoint: &Endpoint) {
        if let Some(counters) = choice.service_of(endpoint) {
            counters.finished(true, None);
        }
    }

    /// The members for `client` now: in a weighted step, its side's (the other side's when
    /// its own has none passing), as DNS answers it; else every active member.
    fn choice_for(&self, client: IpAddr) -> Choice {
        self.choice_remembered(client, &mut SideMemo::default())
    }

    /// [`Proxy::choice_for`] for a connection that remembers its last client's side: the hash
    /// is worked out again only for another client or another route.
    fn choice_remembered(&self, client: IpAddr, memo: &mut SideMemo) -> Choice {
        let route = self.route();
        let side = match route.view.as_ref().and_then(|v| v.split.as_ref()) {
            None => Side::All,
            Some(split) => match memo.0 {
                Some((generation, last, side))
                    if generation == route.generation && last == client =>
                {
                    side
                }
                _ => {
                    let side = if split.on_new(client) {
                        Side::New
                    } else {
                        Side::Old
                    };
                    memo.0 = Some((route.generation, client, side));
                    side
                }
            },
        };
        Choice { route, side }
    }

    /// The client a request from `peer` comes from: the address in the `client_header` when
    /// the config names one and `peer` is trusted to set it, else `peer`. A header that is
    /// missing or not one IP address counts as absent.
    fn client_of(&self, peer: IpAddr, headers: &hyper::HeaderMap) -> IpAddr {
        let (Some(name), Some(header)) = (&self.client_name, &self.config.client_header) else {
            return peer;
        };
        if !header.trusts(peer) {
            return peer;
        }
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .unwrap_or(peer)
    }

    /// Picks an active member not in `exclude` (see [`balance::pick_index`]).
    fn pick(&self, choice: &Choice, exclude: &[Endpoint]) -> Option<Arc<Member>> {
        let candidates = choice.candidates();
        let index = balance::pick_index(
            candidates.len(),
            |i| !exclude.contains(&candidates[i].member.endpoint),
            |i| candidates[i].member.stats.inflight.load(Ordering::Relaxed),
            |i| {
                let member = &candidates[i].member;
                member.passive.ejected_since().is_some() && self.is_ejected(member, now_ms())
            },
            &mut balance::random_below,
        )?;
        Some(candidates[index].member.clone())
    }

    /// The member for `endpoint`, made on its first use.
    fn member(&self, endpoint: &Endpoint) -> Arc<Member> {
        self.members.get_or_insert(endpoint, || {
            Arc::new(Member {
                endpoint: *endpoint,
                stats: self
                    .entry
                    .members
                    .get_or_insert(endpoint, || Arc::new(MemberStats::default())),
                passive: balance::Passive::default(),
                idle: (0..workers()).map(|_| Mutex::new(Vec::new())).collect(),
                raw_idle: (0..workers()).map(|_| Mutex::new(Vec::new())).collect(),
                drain: Mutex::new(Drain::default()),
            })
        })
    }

    /// Whether `member` is ejected; readmits it once its active health check passed after the
    /// ejection (or, unchecked, after [`UNCHECKED_READMIT`]).
    fn is_ejected(&self, member: &Member, now_ms: u64) -> bool {
        let Some(at) = member.passive.ejected_since() else {
            return false;
        };
        // The services that list this endpoint with an active check, as the registry is now.
        let snapshot = self.snapshots.load();
        let checked: Vec<&ServiceName> = snapshot
            .topology
            .services
            .iter()
            .filter(|(_, s)| {
                s.find(&member.endpoint)
                    .is_some_and(|e| e.check.kind != CheckKind::None)
            })
            .map(|(name, _)| name)
            .collect();
        let back = if checked.is_empty() {
            now_ms >= at.saturating_add(UNCHECKED_READMIT.as_millis() as u64)
        } else {
            checked.iter().any(|s| {
                self.board.get(s, &member.endpoint).is_some_and(|st| {
                    st.health == Health::Healthy
                        && st.passes > 0
                        && st.last_check_ms.is_some_and(|t| t > at)
                })
            })
        };
        if back {
            member.passive.readmit();
            info!(proxy = %self.addr, member = %member.endpoint, "member readmitted: its health check passed");
        }
        !back
    }

    /// Counts a failed connect, and ejects the member after too many in a row unless it is the
    /// last usable one.
    fn connect_failed(&self, member: &Member, choice: &Choice, error: &str) {
        member.stats.error();
        self.attempt_failed(choice, &member.endpoint);
        let now = now_ms();
        let others_usable = choice.active().iter().any(|e| {
            *e != member.endpoint
                && !choice.draining().contains(e)
                && self
                    .members
                    .get(e)
                    .is_some_and(|m| !self.is_ejected(&m, now))
        });
        debug!(proxy = %self.addr, member = %member.endpoint, error, "connect failed");
        if member.passive.failure(now, others_usable) {
            warn!(
                proxy = %self.addr,
                member = %member.endpoint,
                error,
                "member ejected after {} connect failures in a row, until its health check passes",
                balance::EJECT_AFTER
            );
        }
    }

    /// Connects to `member` within the connect timeout.
    async fn connect(&self, member: &Member) -> Result<TcpStream, String> {
        let addr = member.endpoint.addr();
        let stream =
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "connect to {addr}: no answer within {}",
                        humantime::format_duration(self.config.connect_timeout)
                    ));
                }
            };
        // Requests and answers are small and latency-bound; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        member.passive.success();
        Ok(stream)
    }
}

/// One unit of work on a member (an HTTP request, a TCP connection): counted in flight while it
/// lives.
struct Flight {
    member: Arc<Member>,
    started: Instant,
    /// Counted as an error when it ends; true until the member answers.
    failed: bool,
    /// Whether its duration goes into the latency histogram.
    timed: bool,
    /// HTTP: where the attempt is counted for its service when it ends ([`measure`]).
    service: Option<Arc<ServiceCounters>>,
    /// HTTP: how long the answer's head took, and whether it was a 5xx.
    head: Option<Duration>,
    server_error: bool,
}

impl Flight {
    /// An HTTP request: timed, and an error unless the member answers ([`Flight::answered`]);
    /// counted for its service in `choice`.
    fn request(member: Arc<Member>, choice: &Choice) -> Self {
        let service = choice.service_of(&member.endpoint);
        Self::start(member, true, service)
    }

    /// A TCP connection: open until it closes; its connect time was recorded already.
    fn connection(member: Arc<Member>) -> Self {
        Self::start(member, false, None)
    }

    fn start(member: Arc<Member>, timed: bool, service: Option<Arc<ServiceCounters>>) -> Self {
        member.stats.requests.fetch_add(1, Ordering::Relaxed);
        member.stats.inflight.fetch_add(1, Ordering::Relaxed);
        Self {
            member,
            started: Instant::now(),
            failed: timed,
            timed,
            service,
            head: None,
            server_error: false,
        }
    }

    /// The member answered (the response head came) with `status`.
    fn answered(&mut self, status: hyper::StatusCode) {
        self.answered_code(status.as_u16());
    }

    /// [`Flight::answered`] with the status as a number.
    fn answered_code(&mut self, status: u16) {
        self.failed = false;
        self.head = Some(self.started.elapsed());
        self.server_error = (500..600).contains(&status);
    }

    /// The answer broke off.
    fn fail(&mut self) {
        self.failed = true;
    }

    /// The request never reached the member (hyper gave it back unsent): not counted.
    fn unsent(mut self) {
        self.member.stats.requests.fetch_sub(1, Ordering::Relaxed);
        self.failed = false;
        self.timed = false;
        self.service = None;
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let stats = &self.member.stats;
        if stats.inflight.fetch_sub(1, Ordering::SeqCst) == 1
            && stats.watched.load(Ordering::SeqCst)
        {
            stats.report_drained();
        }
        if self.failed {
            self.member.stats.error();
        }
        if let Some(service) = &self.service {
            service.finished(self.failed || self.server_error, self.head);
        }
        if self.timed {
            self.member.stats.observe(self.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests;
