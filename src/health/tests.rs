use super::*;

use std::time::Duration;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RISE: u32 = 2;
const FALL: u32 = 3;

// ---- observe: the rise/fall rule ----

/// The health after each of `results` (true = pass), starting from `start`; checks that every
/// step records its time and keeps the last error of a failure only.
fn run(start: Health, results: &[bool]) -> Vec<Health> {
    let mut status = EndpointStatus::new(start);
    let mut out = Vec::new();
    for (i, pass) in results.iter().enumerate() {
        let now = 1_000 + i as u64;
        let result = if *pass {
            Ok(())
        } else {
            Err(format!("failure {i}"))
        };
        status = observe(&status, result, RISE, FALL, now);
        assert_eq!(status.last_check_ms, Some(now));
        let want_error = (!pass).then(|| format!("failure {i}"));
        assert_eq!(status.last_error, want_error);
        out.push(status.health);
    }
    out
}

#[test]
fn observe_follows_the_rise_and_fall_rule() {
    use Health::{Healthy as H, Unhealthy as D, Unknown as U};
    // (start, results, health after each)
    let cases: [(Health, &[bool], &[Health]); 8] = [
        // Unknown becomes healthy after `rise` passes...
        (U, &[true, true, true], &[U, H, H]),
        // ...and unhealthy after `fall` failures.
        (U, &[false, false, false], &[U, U, D]),
        // A pass in between starts the count again.
        (U, &[false, false, true, false, false], &[U, U, U, U, U]),
        (U, &[true, false, true], &[U, U, U]),
        // Healthy needs `fall` failures in a row.
        (H, &[false, false, true, false, false], &[H, H, H, H, H]),
        (H, &[false, false, false, true], &[H, H, D, D]),
        // Unhealthy needs `rise` passes in a row.
        (D, &[true, false, true, true], &[D, D, D, H]),
        (D, &[true, true, false], &[D, H, H]),
    ];
    for (start, results, want) in cases {
        assert_eq!(run(start, results), want, "{start:?} {results:?}");
    }
}

#[test]
fn observe_counts_passes_and_failures_in_a_row() {
    let s = EndpointStatus::new(Health::Unknown);
    let s = observe(&s, Err("refused".into()), 1, 5, 10);
    let s = observe(&s, Err("refused".into()), 1, 5, 20);
    assert_eq!((s.passes, s.failures), (0, 2));
    assert_eq!(s.last_error.as_deref(), Some("refused"));
    let s = observe(&s, Ok(()), 1, 5, 30);
    assert_eq!((s.passes, s.failures), (1, 0));
    assert_eq!(s.last_error, None);
    assert_eq!(s.last_check_ms, Some(30));
    // rise = 1: one pass is enough.
    assert_eq!(s.health, Health::Healthy);
}

// ---- run_check against real sockets ----

fn check(kind: CheckKind, timeout: Duration) -> CheckConfig {
    CheckConfig {
        kind,
        interval: Duration::from_secs(2),
        timeout,
        rise: RISE,
        fall: FALL,
    }
}

fn tcp() -> CheckConfig {
    check(CheckKind::Tcp, Duration::from_secs(2))
}

fn http(path: &str, expect: RangeInclusive<u16>) -> CheckConfig {
    http_with_host(path, expect, None)
}

fn http_with_host(path: &str, expect: RangeInclusive<u16>, host: Option<&str>) -> CheckConfig {
    check(
        CheckKind::Http {
            path: path.into(),
            expect,
            host: host.map(str::to_owned),
        },
        Duration::from_secs(2),
    )
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    addr.to_string().parse().unwrap()
}

async fn listener() -> (TcpListener, Endpoint) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, endpoint(addr))
}

/// A loopback port that nothing listens on.
async fn closed_port() -> Endpoint {
    let (listener, endpoint) = listener().await;
    drop(listener);
    endpoint
}

async fn backend(shutdown: &CancellationToken) -> (crate::backend::Backend, Endpoint) {
    let backend = crate::backend::spawn("127.0.0.1:0".parse().unwrap(), "v1", shutdown.clone())
        .await
        .unwrap();
    let endpoint = endpoint(backend.addr);
    (backend, endpoint)
}

fn assert_err_contains(result: Result<(), String>, words: &[&str]) {
    let err = result.expect_err("the check passed");
    for word in words {
        assert!(err.contains(word), "{word:?} not in {err:?}");
    }
}

#[tokio::test]
async fn a_tcp_check_passes_when_something_listens() {
    let (_listener, endpoint) = listener().await;
    assert_eq!(run_check(&tcp(), endpoint).await, Ok(()));
}

#[tokio::test]
async fn a_tcp_check_fails_on_a_closed_port() {
    let endpoint = closed_port().await;
    assert_err_contains(run_check(&tcp(), endpoint).await, &["connect: "]);
}

#[tokio::test]
async fn a_check_of_kind_none_always_passes() {
    let endpoint = closed_port().await;
    let none = check(CheckKind::None, Duration::from_secs(2));
    assert_eq!(run_check(&none, endpoint).await, Ok(()));
}

#[tokio::test]
async fn an_http_check_follows_the_status_of_the_health_endpoint() {
    let shutdown = CancellationToken::new();
    let (backend, endpoint) = backend(&shutdown).await;
    let healthz = http("/healthz", 200..=399);
    assert_eq!(run_check(&healthz, endpoint).await, Ok(()));

    backend.set_healthy(false);
    assert_err_contains(
        run_check(&healthz, endpoint).await,
        &["status 503", "expected 200-399"],
    );

    backend.set_healthy(true);
    assert_eq!(run_check(&healthz, endpoint).await, Ok(()));
    shutdown.cancel();
}

#[tokio::test]
async fn an_http_check_fails_on_a_status_outside_expect() {
    let shutdown = CancellationToken::new();
    let (_backend, endpoint) = backend(&shutdown).await;
    let only_204 = http("/healthz", 204..=204);
    assert_err_contains(
        run_check(&only_204, endpoint).await,
        &["status 200", "expected 204-204"],
    );
    assert_eq!(
        run_check(&http("/healthz", 200..=200), endpoint).await,
        Ok(())
    );
    shutdown.cancel();
}

#[tokio::test]
async fn an_http_check_fails_on_a_closed_port() {
    let endpoint = closed_port().await;
    assert_err_contains(
        run_check(&http("/", 200..=399), endpoint).await,
        &["connect: "],
    );
}

#[tokio::test]
async fn an_http_check_sends_its_path_and_host() {
    let (listener, endpoint) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(request).unwrap().to_ascii_lowercase()
    });
    let check = http_with_host("/ready?deep=1", 200..=299, Some("web.example"));
    assert_eq!(run_check(&check, endpoint).await, Ok(()));
    let request = server.await.unwrap();
    assert!(
        request.starts_with("get /ready?deep=1 http/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\nhost: web.example\r\n"), "{request}");
}

#[tokio::test]
async fn a_check_that_gets_no_answer_times_out() {
    let (listener, endpoint) = listener().await;
    // Accepts and holds every connection without a word.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    let mut slow = http("/healthz", 200..=399);
    slow.timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    assert_err_contains(run_check(&slow, endpoint).await, &["timed out after 200ms"]);
    assert!(started.elapsed() >= Duration::from_millis(200));
    holder.abort();
}

// ---- the checker: one per endpoint, matching the registry ----

fn key(service: &str, endpoint: &str) -> Key {
    (service.parse().unwrap(), endpoint.parse().unwrap())
}

/// A checker whose checks run every 50 ms against real sockets.
fn checker() -> (
    Checker,
    Arc<HealthBoard>,
    mpsc::Receiver<HealthChange>,
    CancellationToken,
) {
    let board = Arc::new(HealthBoard::default());
    let (tx, rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    (
        Checker::new(board.clone(), tx, 4, stop.clone()),
        board,
        rx,
        stop,
    )
}

fn fast_tcp() -> CheckConfig {
    CheckConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(50),
        rise: 1,
        fall: 1,
        kind: CheckKind::Tcp,
    }
}

#[test]
fn starting_health_answers_known_endpoints_and_holds_back_new_ones() {
    let none = check(CheckKind::None, Duration::from_secs(1));
    assert_eq!(starting_health(&none, true), Health::Healthy);
    assert_eq!(starting_health(&none, false), Health::Healthy);
    assert_eq!(starting_health(&tcp(), true), Health::Unknown);
    assert_eq!(starting_health(&tcp(), false), Health::Starting);
}

#[tokio::test]
async fn the_checker_follows_the_targets_and_reports_each_run_with_its_epoch() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap().to_string();
    let (mut checker, board, mut changes, stop) = checker();
    let web = key("web-v1", &up);
    let other = key("static", "10.0.0.9:80");
    let none = check(CheckKind::None, Duration::from_secs(1));
    checker.reconcile([
        (web.clone(), fast_tcp(), Health::Starting),
        (other.clone(), none.clone(), Health::Healthy),
    ]);
    assert_eq!(board.get(&web.0, &web.1).unwrap().health, Health::Starting);
    assert_eq!(
        board.get(&other.0, &other.1).unwrap().health,
        Health::Healthy
    );
    let first_epoch = board.epoch(&web).unwrap();

    // The real listener accepts: one pass (rise 1) makes it healthy, reported with its epoch.
    let change = tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((change.service.clone(), change.endpoint), web);
    assert_eq!(change.health, Health::Healthy);
    assert_eq!(change.epoch, first_epoch);
    assert_eq!(board.get(&web.0, &web.1).unwrap().health, Health::Healthy);

    // Unchanged targets keep their checker (and its status); a changed check restarts it from
    // the health given, under a new epoch.
    checker.reconcile([
        (web.clone(), fast_tcp(), Health::Healthy),
        (other.clone(), none.clone(), Health::Healthy),
    ]);
    assert_eq!(board.epoch(&web), Some(first_epoch));
    let mut slower = fast_tcp();
    slower.interval = Duration::from_millis(60);
    checker.reconcile([(web.clone(), slower, Health::Healthy)]);
    let second_epoch = board.epoch(&web).unwrap();
    assert_ne!(second_epoch, first_epoch);
    assert_eq!(board.get(&web.0, &web.1).unwrap().health, Health::Healthy);
    // An endpoint that left is no longer on the board.
    assert!(board.get(&other.0, &other.1).is_none());
    assert_eq!(board.healths().len(), 1);

    // The listener goes: the restarted checker sees it fail (fall 1) under its new epoch.
    drop(listener);
    let change = tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change.health, Health::Unhealthy);
    assert_eq!(change.epoch, second_epoch);

    // Removing every target stops every checker: nothing more is reported.
    checker.reconcile([]);
    assert!(board.healths().is_empty());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.recv())
            .await
            .is_err()
    );
    stop.cancel();
}

#[tokio::test]
async fn a_followed_health_is_what_the_board_shows_until_the_node_checks_again() {
    let (mut checker, board, _changes, stop) = checker();
    let web = key("web-v1", "10.0.0.1:80");
    let db = key("db", "10.0.0.2:5432");
    let none = check(CheckKind::None, Duration::from_secs(1));
    checker.reconcile([(web.clone(), none, Health::Healthy)]);
    assert_eq!(board.get(&web.0, &web.1).unwrap().health, Health::Healthy);

    // A follower: only what the leader decided, its own (stale) checker's slot aside.
    board.follow(Some(HashMap::from([
        (web.clone(), Health::Unhealthy),
        (db.clone(), Health::Healthy),
    ])));
    assert_eq!(board.get(&web.0, &web.1).unwrap().health, Health::Unhealthy);
    assert_eq!(board.get(&db.0, &db.1).unwrap().health, Health::Healthy);
    assert_eq!(
        board.healths(),
        HashMap::from([
            (web.clone(), Health::Unhealthy),
            (db.clone(), Health::Healthy)
        ])
    );

    // Leading again: its own checkers decide.
    board.follow(None);
    assert_eq!(board.get(&web.0, &web.1).unwrap().health, Health::Healthy);
    assert!(board.get(&db.0, &db.1).is_none());
    stop.cancel();
}
