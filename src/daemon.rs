//! The shell around the core: opens the store, binds every listener, wires the tasks and stops
//! them all on one `CancellationToken`.
//!
//! It also supervises them: when a part aliasd cannot serve without (the writer, DNS over UDP
//! or TCP, the API, a proxy listener) ends or panics before shutdown, it logs which and why,
//! stops the rest and returns [`DaemonError::Ended`], so `aliasd run` exits non-zero and a
//! service manager restarts it, instead of serving a frozen snapshot while the API answers 503.
//!
//! Test hook, in debug builds only: with `ALIASD_TEST_HOOK=panic-writer-on-sigusr1` in its
//! environment, the writer's task panics when the process receives SIGUSR1, so a test can see a
//! dead writer end the process. Release builds (the Docker image's included) compile no hook,
//! and a debug build needs both the variable and the signal.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::LowerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use arc_swap::ArcSwap;

use crate::api::{self, AppState, Auth, ReloadRequest};
use crate::cluster::node::{Node, NodeParts, WriterSetup};
use crate::cluster::{ClusterStatus, definitions_hash};
use crate::config::{Config, ProxyConfig, RestartKey};
use crate::controller::changes::ReloadSummary;
use crate::controller::recover::recover;
use crate::controller::store::StoreError;
use crate::controller::{Busy, ControlError, ControlHandle, Controller, SourceUpdate, StartParts};
use crate::dns::DnsServer;
use crate::health::{Checker, HealthBoard};
use crate::metrics::MetricsSource;
use crate::model::Endpoint;
use crate::proxy::{self, ProxyStats};
use crate::registry::Base;
use crate::secondaries::{Report, Reports};
use crate::snapshot::SharedSnapshot;
use crate::supervise::{Critical, Ended};

/// How long the tasks get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Bind(io::Error),
    /// DNS could not bind one of `dns.listen` (the message names the address and protocol).
    #[error("{0}")]
    BindDns(io::Error),
    #[error("cannot bind the api on {addr}: {source}")]
    BindApi { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    BindProxy(#[from] proxy::BindError),
    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile { path: PathBuf, source: io::Error },
    #[error("{0}; aliasd stopped everything else so that it can be restarted")]
    Ended(Ended),
    /// Asked to stop while it was still waiting for etcd.
    #[error("stopped before etcd could be reached")]
    Stopped,
}

/// The addresses actually bound, written to `--ready-file` once aliasd serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub pid: u32,
    pub dns: Vec<SocketAddr>,
    pub api: SocketAddr,
    /// The `[[proxy]]` listeners, in config order.
    #[serde(default)]
    pub proxies: Vec<SocketAddr>,
}

/// A started daemon: every listener is bound and serving.
pub struct Daemon {
    pub ready: Ready,
    pub snapshots: SharedSnapshot,
    /// The proxies' counters: for a metrics route, and for holding a drain open while old
    /// members still have work.
    pub proxy_stats: Arc<ProxyStats>,
    /// What each zone's secondaries serve, as NOTIFY and SOA polls found.
    pub secondaries: Arc<crate::secondaries::Secondaries>,
    /// Tasks aliasd can serve without for a while (discovery, NOTIFY, the reloader).
    tasks: JoinSet<()>,
    /// The writer, the API and the proxies; DNS supervises its own loops.
    critical: Critical,
    dns: DnsServer,
    shutdown: CancellationToken,
}

/// Who chose the connection caps (`max_connections`) of a config, which decides whether an
/// open-file limit below them is worth a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caps {
    /// The operator's config (`aliasd run`): they can raise the limit or lower the caps, so a
    /// limit below the caps is a warning.
    Operator,
    /// aliasd's defaults in a config it generated (`aliasd demo`): its user chose none of it and
    /// a loopback demo never comes near the caps, so it is only noted at debug level.
    Defaults,
}

impl Daemon {
    /// Loads the state, publishes the first snapshot and binds DNS, the API and the proxies.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Self, DaemonError> {
        Self::start_with(config, shutdown, Caps::Operator).await
    }

    /// [`Daemon::start`] for a config whose connection caps were chosen as `caps` says.
    pub async fn start_with(
        mut config: Config,
        shutdown: CancellationToken,
        caps: Caps,
    ) -> Result<Self, DaemonError> {
        raise_fd_limit(&config, caps);
        // The zones' origins are all the rest needs of them; their records move into the base.
        let origins: Vec<LowerName> = config
            .zones
            .iter()
            .map(|z| LowerName::new(&z.origin))
            .collect();
        let restart_key = config.restart_key();
        let base = Arc::new(Base::take_from(&mut config));
        let config_hash = definitions_hash(&base);
        let clock: crate::clock::SharedClock = Arc::new(crate::clock::Wall);
        let started_ms = clock.now_ms();
        let board = Arc::new(HealthBoard::default());
        let (sources_tx, sources_rx) = mpsc::channel(64);
        let mut tasks = JoinSet::new();
        let mut critical = Critical::default();
        let docker_tx = config.docker.as_ref().map(|docker| {
            let (tx, rx) = mpsc::channel(64);
            info!(docker = %docker.host, prefix = %docker.label_prefix, "Docker discovery on");
            tasks.spawn(crate::discovery::docker::run(
                docker.clone(),
                config.cluster.as_ref().map(|c| c.advertise),
                config.default_check.clone(),
                sources_tx.clone(),
                rx,
                shutdown.clone(),
            ));
            tx
        });
        // Bound before the controller starts, so their counters exist from the first moment.
        let proxies = proxy::bind(&config.proxies).await?;
        let proxy_stats = Arc::new(ProxyStats::new(&proxies));
        let proxy_addrs: Vec<SocketAddr> = proxies.iter().map(|p| p.addr()).collect();
        let secondaries = crate::secondaries::Secondaries::new();
        let (drained_tx, drained_rx) = mpsc::unbounded_channel();
        let transfers =
            crate::dns::xfr::Transfers::new(&origins, &config.transfers, &config.tsig_keys);
        // The API's port is part of what a cluster node announces: bound before the writer.
        let (api_listener, api_addr) = bind_api(&config).await?;
        let setup = WriterSetup {
            board: board.clone(),
            health_concurrency: config.health_concurrency,
            // A drain holds the old version while the proxies still have work on it, up to
            // the longest drain deadline of any proxy.
            proxies: proxy_addrs
                .iter()
                .zip(&config.proxies)
                .map(|(addr, p)| (*addr, p.alias.clone()))
                .collect(),
            secondaries: transfers.secondaries(),
            drain_deadline: config
                .proxies
                .iter()
                .map(|p| p.drain_deadline)
                .max()
                .unwrap_or(ProxyConfig::DEFAULT_DRAIN_DEADLINE),
            docker_tx,
            docker_endpoint: config.docker.as_ref().map(|d| d.host.to_string()),
            clock: clock.clone(),
            measurements: proxy_stats.measurements(),
        };
        let single = config.cluster.is_none();
        let (control, snapshots, cluster, cluster_tx) = match &config.cluster {
            None => {
                let (writer, control, snapshots) =
                    single_writer(&config, base, setup, sources_rx, drained_rx, &shutdown)?;
                critical.spawn("the writer", writer);
                // A node on its own: the leader of a cluster of one, named after the host.
                let (cluster_tx, cluster) = watch::channel(ClusterStatus::single(
                    &crate::cluster::host_name(),
                    api_addr,
                    &config_hash,
                    started_ms,
                ));
                (control, snapshots, cluster, cluster_tx)
            }
            Some(settings) => {
                let parts = NodeParts {
                    settings: settings.clone(),
                    base,
                    api: SocketAddr::new(settings.advertise, api_addr.port()),
                    config_hash: config_hash.clone(),
                    setup,
                    sources_rx,
                    drained_rx,
                };
                let Some((node, snapshots, control, cluster)) = Node::start(parts, &shutdown).await
                else {
                    return Err(DaemonError::Stopped);
                };
                critical.spawn("the cluster node", node.run(shutdown.clone()));
                let (cluster_tx, _) = watch::channel(cluster.borrow().clone());
                (control, snapshots, cluster, cluster_tx)
            }
        };

        let dns = DnsServer::start(&config.dns, &origins, snapshots.clone(), transfers.clone())
            .await
            .map_err(DaemonError::BindDns)?;
        crate::dns::notify::spawn(
            transfers,
            snapshots.clone(),
            control.published(),
            &secondaries,
            &to_writer(&sources_tx, &mut tasks),
            &shutdown,
            &mut tasks,
        );
        proxy::spawn_drain_reports(
            &proxy_stats,
            snapshots.clone(),
            control.published(),
            drained_tx,
            &shutdown,
            &mut tasks,
        );
        proxy::spawn(
            proxies,
            &proxy_stats,
            snapshots.clone(),
            board.clone(),
            &shutdown,
            &mut critical,
        );
        let auth = Arc::new(ArcSwap::from_pointee(Auth::new(&config.api.tokens)));
        let reloads = Reloader::spawn(
            restart_key,
            control.clone(),
            auth.clone(),
            cluster_tx,
            single,
            &shutdown,
            &mut tasks,
        )
        .map_err(DaemonError::Bind)?;
        let app = api::router(AppState {
            snapshots: snapshots.clone(),
            control,
            auth,
            board,
            reloads,
            metrics: {
                let mut m = vec![secondaries.clone() as Arc<dyn MetricsSource>];
                if !config.proxies.is_empty() {
                    m.push(proxy_stats.clone() as Arc<dyn MetricsSource>);
                }
                m
            },
            busy: proxy_stats.clone(),
            secondaries: secondaries.clone(),
            cluster,
            // A new leader is elected within the lease's TTL: a change waits that long, and a
            // second more, for one.
            forward_wait: config
                .cluster
                .as_ref()
                .map_or(api::forward::DEFAULT_FORWARD_WAIT, |c| {
                    c.lease_ttl + Duration::from_secs(1)
                }),
        });
        critical.spawn(
            format!("the API on {api_addr}"),
            api::serve::serve(
                api_listener,
                app,
                api::serve::Limits::from(&config.api),
                shutdown.clone(),
            ),
        );

        Ok(Self {
            ready: Ready {
                pid: std::process::id(),
                dns: dns.addrs.clone(),
                api: api_addr,
                proxies: proxy_addrs,
            },
            snapshots,
            proxy_stats,
            secondaries,
            tasks,
            critical,
            dns,
            shutdown,
        })
    }

    /// Waits for shutdown, or for a part aliasd cannot serve without to end; then stops every
    /// task within [`DRAIN_TIMEOUT`]. Returns [`DaemonError::Ended`] in the second case.
    pub async fn wait(mut self) -> Result<(), DaemonError> {
        // Shutdown first: once it is asked for, the parts end because of it.
        let ended = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => None,
            ended = self.critical.ended() => Some(ended),
            ended = self.dns.ended() => Some(ended),
        };
        match &ended {
            None => info!("shutting down"),
            Some(ended) => {
                error!(
                    "aliasd cannot serve without {}, which {}; stopping everything, so that a \
                     service manager restarts aliasd",
                    ended.name, ended.why
                );
                self.shutdown.cancel();
            }
        }
        let drain = async {
            self.dns.shutdown().await;
            while !self.critical.is_empty() {
                self.critical.ended().await;
            }
            while self.tasks.join_next().await.is_some() {}
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            warn!(
                timeout_secs = DRAIN_TIMEOUT.as_secs(),
                "tasks did not stop in time; exiting anyway"
            );
        }
        info!("stopped");
        ended.map_or(Ok(()), |ended| Err(DaemonError::Ended(ended)))
    }
}

/// A single node's writer, on the state directory: recovers it and starts the controller.
fn single_writer(
    config: &Config,
    base: Arc<Base>,
    setup: WriterSetup,
    sources_rx: mpsc::Receiver<SourceUpdate>,
    drained_rx: mpsc::UnboundedReceiver<crate::controller::Drained>,
    shutdown: &CancellationToken,
) -> Result<
    (
        impl std::future::Future<Output = ()> + Send + 'static,
        ControlHandle,
        SharedSnapshot,
    ),
    DaemonError,
> {
    let recovered = recover(&config.state_dir, &base, setup.clock.now_ms())?;
    info!(dir = %config.state_dir.display(), "state directory opened");
    for note in &recovered.notes {
        warn!("{note}");
    }
    let (health_tx, health_rx) = mpsc::channel(1024);
    let checker = Checker::new(
        setup.board.clone(),
        health_tx,
        setup.health_concurrency,
        shutdown.clone(),
    );
    let (controller, control, snapshots) = Controller::start(StartParts {
        base,
        store: Box::new(recovered.store),
        state: recovered.state,
        topology: recovered.topology,
        history: recovered.entries,
        board: setup.board,
        checker,
        health_rx,
        sources_rx,
        docker_tx: setup.docker_tx,
        docker_endpoint: setup.docker_endpoint,
        proxies: setup.proxies,
        drained_rx,
        secondaries: setup.secondaries,
        drain_deadline: setup.drain_deadline,
        measurements: Some(setup.measurements),
        clock: setup.clock,
        takeover: None,
    });
    let writer = controller.run(shutdown.clone());
    #[cfg(debug_assertions)]
    let writer = test_hook::writer(writer).map_err(DaemonError::Bind)?;
    Ok((writer, control, snapshots))
}

/// See the module's documentation.
#[cfg(debug_assertions)]
mod test_hook {
    use std::future::Future;
    use std::io;

    use tokio::signal::unix::{SignalKind, signal};

    /// The variable, and the value that arms the hook.
    const VAR: &str = "ALIASD_TEST_HOOK";
    const PANIC_WRITER: &str = "panic-writer-on-sigusr1";

    /// `writer`, made to panic on SIGUSR1 when the hook is armed.
    pub fn writer(
        writer: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<impl Future<Output = ()> + Send + 'static> {
        let mut usr1 = match std::env::var(VAR) {
            Ok(value) if value == PANIC_WRITER => Some(signal(SignalKind::user_defined1())?),
            _ => None,
        };
        Ok(async move {
            match &mut usr1 {
                None => writer.await,
                Some(usr1) => tokio::select! {
                    () = writer => {}
                    _ = usr1.recv() => panic!("{VAR}={PANIC_WRITER}: SIGUSR1 received"),
                },
            }
        })
    }
}

/// What the NOTIFY tasks learn of a secondary goes to the writer, which decides a drain's wait
/// from it and sends the event. The reports are few (one per change of what a secondary
/// serves) and are queued here, so a NOTIFY task never waits on the writer.
fn to_writer(writer: &mpsc::Sender<SourceUpdate>, tasks: &mut JoinSet<()>) -> Reports {
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    let writer = writer.clone();
    tasks.spawn(async move {
        while let Some(report) = rx.recv().await {
            if writer
                .send(SourceUpdate::Secondary(report.state))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Arc::new(move |report: Report| {
        let _ = tx.send(report);
    })
}

/// Binds the control API's listener and warns about what makes it unsafe or useless.
async fn bind_api(config: &Config) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let listener = TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| DaemonError::BindApi {
            addr: config.api.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(DaemonError::Bind)?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "the control api listens beyond loopback; keep its tokens secret");
    }
    if config.api.tokens.is_empty() {
        warn!("no api tokens are configured: every change through the api will be refused");
    }
    info!(%addr, "api listening");
    Ok((listener, addr))
}

/// Descriptors aliasd needs besides client connections: state files, sockets to members and
/// to Docker, health checks.
const FD_HEADROOM: u64 = 1024;

/// Raises the open-file soft limit to the hard one, as servers do: every client connection is a
/// descriptor, and the listeners' `max_connections` are meant to be what limits them, not a soft
/// default of 1024. Warns when even the hard limit is below what those caps add up to and the
/// operator chose the caps ([`Caps`]).
fn raise_fd_limit(config: &Config, chosen: Caps) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(error) => {
                warn!(%error, soft, hard, "cannot raise the open-file limit");
                soft
            }
        }
    } else {
        soft
    };
    let caps = config.api.max_connections as u64
        + config.dns.listen.len() as u64 * config.dns.tcp_max_connections as u64
        + config
            .proxies
            .iter()
            .map(|p| 2 * p.max_connections as u64)
            .sum::<u64>()
        + FD_HEADROOM;
    if limit < caps {
        match chosen {
            Caps::Operator => warn!(
                open_files = limit,
                needed = caps,
                "the open-file limit is below what the listeners' max_connections add up to \
                 (a proxied connection takes two); raise `ulimit -n` (LimitNOFILE= under systemd) \
                 or lower the caps"
            ),
            Caps::Defaults => debug!(
                open_files = limit,
                needed = caps,
                "the open-file limit is below what the default max_connections add up to"
            ),
        }
    }
}

/// Runs aliasd with `config` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    ready_file: Option<&Path>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let daemon = Daemon::start(config, shutdown).await?;
    if let Some(path) = ready_file {
        write_ready_file(path, &daemon.ready).map_err(|source| DaemonError::ReadyFile {
            path: path.to_owned(),
            source,
        })?;
    }
    daemon.wait().await
}

/// Writes the ready file atomically, so a reader never sees half of it (`run` and `demo`).
pub fn write_ready_file(path: &Path, ready: &Ready) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(ready)?)?;
    std::fs::rename(&tmp, path)
}

/// Re-reads the config file and its zone files on SIGHUP, `POST /v1/reload` or `aliasctl
/// reload`: all checked first, then applied as one change by the controller, or refused whole
/// while aliasd keeps serving what it had.
struct Reloader {
    current: RestartKey,
    control: ControlHandle,
    auth: Arc<ArcSwap<Auth>>,
    /// The node's cluster status, whose `config_hash` follows the definitions loaded.
    cluster: watch::Sender<ClusterStatus>,
    /// False on a cluster's node, which refuses reloads (see `reload`).
    single: bool,
}

impl Reloader {
    /// Starts the reloader; returns where the API sends reload requests.
    fn spawn(
        current: RestartKey,
        control: ControlHandle,
        auth: Arc<ArcSwap<Auth>>,
        cluster: watch::Sender<ClusterStatus>,
        single: bool,
        shutdown: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> io::Result<mpsc::Sender<ReloadRequest>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let (tx, mut rx) = mpsc::channel::<ReloadRequest>(8);
        let mut reloader = Self {
            current,
            control,
            auth,
            cluster,
            single,
        };
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        info!("SIGHUP received: reloading the config");
                        if let Err(e) = reloader.reload("sighup").await {
                            warn!(error = %e, "the reload was refused; aliasd keeps serving what it had");
                        }
                    }
                    Some((actor, reply)) = rx.recv() => {
                        let result = reloader.reload(&actor).await;
                        if let Err(e) = &result {
                            warn!(error = %e, actor, "the reload was refused; aliasd keeps serving what it had");
                        }
                        let _ = reply.send(result);
                    }
                    () = shutdown.cancelled() => return,
                }
            }
        });
        Ok(tx)
    }

    async fn reload(&mut self, actor: &str) -> Result<ReloadSummary, ControlError> {
        if !self.single {
            // Every node renders the same definitions, so a reload would have to reach every
            // node at once; a node that changed alone would answer differently.
            return Err(ControlError::Conflict(
                "a cluster's nodes do not reload their config one by one (they would answer differently): change the files on every node and restart the nodes one at a time".into(),
            ));
        }
        let path = self.current.source().to_owned();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| ControlError::Storage(e.to_string()))?
            .map_err(|e| ControlError::Invalid(e.problems))?;
        let key = loaded.restart_key();
        let restart = self.current.restart_needed(&key);
        if !restart.is_empty() {
            return Err(ControlError::Invalid(restart));
        }
        let mut loaded = loaded;
        let base = Arc::new(Base::take_from(&mut loaded));
        let summary = self.control.reload(base.clone(), actor.to_owned()).await?;
        self.auth.store(Arc::new(Auth::new(&loaded.api.tokens)));
        // Hashing a large zone takes a while: off the runtime's threads.
        if let Ok(hash) = tokio::task::spawn_blocking(move || definitions_hash(&base)).await {
            self.cluster
                .send_modify(|status| status.set_config_hash(&hash));
        }
        self.current = key;
        Ok(summary)
    }
}

/// A token cancelled on SIGTERM (what `docker stop` sends) or SIGINT.
pub fn shutdown_on_signals() -> io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        cancel.cancel();
    });
    Ok(token)
}

/// The API shows the front proxies' open work per endpoint; implemented here, where the two
/// are wired, so neither module imports the other.
impl Busy for ProxyStats {
    fn inflight(&self, endpoints: &[Endpoint]) -> u64 {
        ProxyStats::inflight(self, endpoints)
    }

    fn measurements(&self) -> Option<&crate::proxy::Measurements> {
        Some(self.measurements_ref())
    }
}
