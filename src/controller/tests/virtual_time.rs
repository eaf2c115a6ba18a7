//! The writer run whole (recovery, the task, its store) in virtual time: tokio's paused clock
//! and the injected [`crate::clock::Tokio`] wall clock move together, so a promotion's observe
//! window, its drain, a drain deadline and a warm timeout pass without the test sleeping.

use std::sync::atomic::Ordering;

use super::*;
use crate::clock::{Clock, Tokio};
use crate::controller::recover::recover;
use crate::controller::store::FileStore;
use crate::state::{Live, StoredState};
use crate::testkit::{self, ConfigDir};

/// The settings of the test and `web-v3`, checked over TCP on a port nothing listens on, so it
/// never becomes healthy.
const SETTINGS: &str = r#"[health]
kind = "none"

[promotion]
observe = "10s"
warm_timeout = "30s"
drain_grace = "2s"
"#;

const WEB_V3: &str = r#"[[service]]
name = "web-v3"
endpoints = ["127.0.0.1:9"]
[service.health]
kind = "tcp"
interval = "1s"
timeout = "1s"
"#;

/// The config: web-v1 and web-v2 are unchecked (always healthy), web-v3 never becomes healthy,
/// and `web` is linked to web-v1.
fn config() -> String {
    let rest = format!(
        "{SETTINGS}\n{}\n{}\n{WEB_V3}\n{}",
        testkit::service("web-v1", &["10.0.0.1:8080"]),
        testkit::service("web-v2", &["10.0.0.2:8080"]),
        testkit::alias("web", &["web-v1"]),
    );
    testkit::config(
        r#"["127.0.0.1:5353"]"#,
        "alias_ttl = 5\nnegative_ttl = 5",
        &rest,
    )
}

const STARTED_AT: u64 = 1_700_000_000_000;
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// The front proxy of `web` the writer waits for (the test sends its reports).
const PROXY: &str = "127.0.0.1:8080";

/// The next alias change of `alias` on `events`, skipping everything else.
async fn next_change(events: &mut broadcast::Receiver<Event>) -> HistoryEntry {
    loop {
        if let Event::Change { entry, .. } = events.recv().await.expect("the writer runs") {
            return entry;
        }
    }
}

/// The kinds of the next `n` changes, with when each happened (virtual ms since the start).
async fn changes(events: &mut broadcast::Receiver<Event>, n: usize) -> Vec<(ChangeKind, u64)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let e = next_change(events).await;
        out.push((e.change, e.at_ms - STARTED_AT));
    }
    out
}

/// A writer started on a fresh state directory, as the daemon starts it.
struct Writer {
    control: ControlHandle,
    /// The proxy's reports.
    drained: mpsc::UnboundedSender<Drained>,
    snapshots: SharedSnapshot,
    clock: Arc<Tokio>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: ConfigDir,
}

impl Writer {
    /// Starts the writer behind a proxy of `web` ([`PROXY`]); `store` wraps the directory's
    /// store.
    fn start(store: impl FnOnce(FileStore) -> Box<dyn Store>) -> Self {
        let (drained, drained_rx) = mpsc::unbounded_channel();
        let dir = ConfigDir::internal();
        let base = Arc::new(dir.base(&config()));
        let clock = Arc::new(Tokio::starting_at(STARTED_AT));
        let recovered = recover(&dir.root().join("state"), &base, clock.now_ms()).unwrap();
        let shutdown = CancellationToken::new();
        let board = Arc::new(HealthBoard::default());
        let (health_tx, health_rx) = mpsc::channel(64);
        let (_sources_tx, sources_rx) = mpsc::channel(64);
        let (controller, control, snapshots) = Controller::start(StartParts {
            base,
            store: store(recovered.store),
            state: recovered.state,
            topology: recovered.topology,
            history: recovered.entries,
            board: board.clone(),
            checker: Checker::new(board, health_tx, 4, shutdown.clone()),
            health_rx,
            sources_rx,
            docker_tx: None,
            docker_endpoint: None,
            proxies: vec![(PROXY.parse().unwrap(), web())],
            drained_rx,
            drain_deadline: DRAIN_DEADLINE,
            measurements: None,
            secondaries: Vec::new(),
            clock: clock.clone(),
            takeover: None,
        });
        let task = tokio::spawn(controller.run(shutdown.clone()));
        Self {
            control,
            drained,
            snapshots,
            clock,
            shutdown,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn web() -> AliasName {
    AliasName::resolve("web.internal.", &hickory_proto::rr::Name::root()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_whole_promotion_its_drain_deadline_a_rollback_and_a_warm_timeout_run_in_virtual_time() {
    let writer = Writer::start(|s| Box::new(s));
    let (control, clock) = (&writer.control, &writer.clock);
    let mut events = control.subscribe();
    let web = web();
    let svc = |n: &str| vec![n.parse::<ServiceName>().unwrap()];

    // A promotion while the proxy keeps work open on the old version (it never reports the
    // member idle): web-v2 is healthy at once, both answer for the observe window, and the
    // drain waits out the TTL window and grace, then the proxy's work until the deadline.
    let started = control
        .promote(
            web.clone(),
            svc("web-v2"),
            Gates::default(),
            None,
            "deploy".into(),
        )
        .await
        .unwrap();
    assert!(started.started);
    let seen = changes(&mut events, 4).await;
    let kinds: Vec<ChangeKind> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Started,
            ChangeKind::Mixed,
            ChangeKind::Draining,
            ChangeKind::Completed
        ]
    );
    let (mixed_at, draining_at, completed_at) = (seen[1].1, seen[2].1, seen[3].1);
    assert!(draining_at - mixed_at >= 10_000, "{seen:?}");
    // The TTL window (5 s) and the grace (2 s), then the deadline for the open work.
    assert!(
        completed_at - draining_at >= 7_000 + DRAIN_DEADLINE.as_millis() as u64,
        "{seen:?}"
    );
    let after = control.history(web.clone()).await.unwrap();
    assert_eq!(after.last().unwrap().alias().unwrap().targets, ["web-v2"]);

    // A rollback to the previous targets: once the proxy reports web-v2's member idle, the
    // drain ends with the window.
    control
        .rollback(
            web.clone(),
            RollbackTo::Previous,
            Gates::default(),
            Some("back".into()),
            "deploy".into(),
        )
        .await
        .unwrap();
    let mut seen = changes(&mut events, 3).await;
    assert_eq!(seen[2].0, ChangeKind::Draining, "{seen:?}");
    writer
        .drained
        .send(Drained {
            proxy: PROXY.parse().unwrap(),
            alias: web.clone(),
            endpoint: "10.0.0.2:8080".parse().unwrap(),
        })
        .unwrap();
    seen.extend(changes(&mut events, 1).await);
    assert_eq!(seen[3].0, ChangeKind::Completed, "{seen:?}");
    assert!(
        seen[3].1 - seen[2].1 < DRAIN_DEADLINE.as_millis() as u64,
        "{seen:?}"
    );
    let last = control.history(web.clone()).await.unwrap();
    let last = last.last().unwrap().alias().unwrap().clone();
    assert_eq!(last.targets, ["web-v1"]);
    assert_eq!(last.op_kind, Some(OpKind::Rollback));

    // A promotion to a version that never becomes healthy ends at its warm timeout, and the
    // alias stays on the old version.
    let before = clock.now_ms();
    control
        .promote(
            web.clone(),
            svc("web-v3"),
            Gates::default(),
            None,
            "deploy".into(),
        )
        .await
        .unwrap();
    let seen = changes(&mut events, 2).await;
    assert_eq!(seen[0].0, ChangeKind::Started);
    assert_eq!(seen[1].0, ChangeKind::WarmTimeout, "{seen:?}");
    assert!(seen[1].1 + STARTED_AT - before >= 30_000, "{seen:?}");
    let view = control.history(web).await.unwrap();
    assert_eq!(view.last().unwrap().alias().unwrap().answering, ["web-v1"]);

    writer.stop().await;
}

/// The directory's store, refusing every commit while `refuse` is set.
struct Refusing {
    store: FileStore,
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

impl Store for Refusing {
    fn commit(
        &mut self,
        delta: StoredDelta,
        entries: &[HistoryEntry],
        live: &Live,
        whole: &dyn Fn() -> StoredState,
    ) -> Result<(), StoreError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                path: "state.journal".into(),
                error: std::io::Error::other("the disk is full"),
            });
        }
        self.store.commit(delta, entries, live, whole)
    }

    fn compact_history(&mut self, kept: &mut [&HistoryEntry]) -> Result<(), StoreError> {
        self.store.compact_history(kept)
    }
}

#[tokio::test(start_paused = true)]
async fn a_change_the_store_refuses_leaves_the_snapshot_and_history_as_they_were() {
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = Writer::start({
        let refuse = refuse.clone();
        move |store| Box::new(Refusing { store, refuse })
    });
    let control = &writer.control;
    let before = writer.snapshots.load_full();
    let history = control.history(web()).await.unwrap();
    let svc = vec!["web-v2".parse::<ServiceName>().unwrap()];
    let refused = control
        .link(web(), svc.clone(), "deploy".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ControlError::Storage(m) if m.contains("the disk is full")),
        "{refused:?}"
    );
    let after = writer.snapshots.load_full();
    assert_eq!(after.generation, before.generation);
    assert_eq!(
        after.aliases[&web()].endpoints,
        before.aliases[&web()].endpoints
    );
    assert_eq!(control.history(web()).await.unwrap(), history);
    // The writer goes on: once the store takes it, the same change is made.
    refuse.store(false, Ordering::SeqCst);
    let view = control.link(web(), svc, "deploy".into()).await.unwrap();
    assert_eq!(view.answering, ["web-v2".parse::<ServiceName>().unwrap()]);
    assert_eq!(writer.snapshots.load().generation, before.generation + 1);
    writer.stop().await;
}
