//! The writer run whole (recovery, the task, its store) in virtual time: tokio's paused clock
//! and the injected [`crate::clock::Tokio`] wall clock move together, so a promotion's observe
//! window, its drain, a drain deadline and a warm timeout pass without the test sleeping.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::clock::{Clock, Tokio};
use crate::config::Config;
use crate::controller::recover::recover;

/// web-v1 and web-v2 are unchecked (always healthy); web-v3 is checked over TCP on a port
/// nothing listens on, so it never becomes healthy.
const CONFIG: &str = r#"[dns]
listen = ["127.0.0.1:5353"]
alias_ttl = 5
negative_ttl = 5

[[zone]]
origin = "internal."
file = "internal.zone"

[state]
dir = "state"

[health]
kind = "none"

[promotion]
observe = "10s"
warm_timeout = "30s"
drain_grace = "2s"

[[service]]
name = "web-v1"
endpoints = ["10.0.0.1:8080"]

[[service]]
name = "web-v2"
endpoints = ["10.0.0.2:8080"]

[[service]]
name = "web-v3"
endpoints = ["127.0.0.1:9"]
[service.health]
kind = "tcp"
interval = "1s"
timeout = "1s"

[[alias]]
name = "web"
targets = ["web-v1"]
"#;

const STARTED_AT: u64 = 1_700_000_000_000;
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// The proxy's open work: the same count on every endpoint, set by the test.
#[derive(Default)]
struct OpenWork(AtomicU64);

impl Busy for OpenWork {
    fn inflight(&self, _endpoints: &[Endpoint]) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

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

#[tokio::test(start_paused = true)]
async fn a_whole_promotion_its_drain_deadline_a_rollback_and_a_warm_timeout_run_in_virtual_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("internal.zone"), INTERNAL_ZONE).unwrap();
    let config = Config::parse(CONFIG, &dir.path().join("aliasd.toml"), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let base = Arc::new(Base::from_config(&config));
    let clock = Arc::new(Tokio::starting_at(STARTED_AT));
    let recovered = recover(&dir.path().join("state"), &base, clock.now_ms()).unwrap();
    let shutdown = CancellationToken::new();
    let board = Arc::new(HealthBoard::default());
    let (health_tx, health_rx) = mpsc::channel(64);
    let (_sources_tx, sources_rx) = mpsc::channel(64);
    let open_work = Arc::new(OpenWork::default());
    let (controller, control, _snapshots) = Controller::start(StartParts {
        base,
        store: Box::new(recovered.store),
        state: recovered.state,
        topology: recovered.topology,
        history: recovered.entries,
        board: board.clone(),
        checker: Checker::new(board, health_tx, 4, shutdown.clone()),
        health_rx,
        sources_rx,
        docker_tx: None,
        docker_endpoint: None,
        busy: open_work.clone(),
        drain_deadline: DRAIN_DEADLINE,
        secondaries: crate::dns::notify::Secondaries::new(),
        clock: clock.clone(),
    });
    let mut events = control.subscribe();
    let writer = tokio::spawn(controller.run(shutdown.clone()));
    let web = AliasName::resolve("web.internal.", &hickory_proto::rr::Name::root()).unwrap();
    let svc = |n: &str| vec![n.parse::<ServiceName>().unwrap()];

    // A promotion while the proxy keeps work open on the old version: web-v2 is healthy at
    // once, both answer for the observe window, and the drain waits out the TTL window and
    // grace, then the proxy's work until the drain deadline.
    open_work.0.store(1, Ordering::SeqCst);
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

    // A rollback to the previous targets, with no open work: its drain ends with the window.
    open_work.0.store(0, Ordering::SeqCst);
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
    let seen = changes(&mut events, 4).await;
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

    shutdown.cancel();
    writer.await.unwrap();
}
