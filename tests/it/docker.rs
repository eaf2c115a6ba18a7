//! Docker discovery against the real daemon: containers of the lab (`lab.rs`) are found by their
//! labels, followed through their events, promoted between with 0 failed requests, stopped
//! only once safe, and kept when the Docker API goes away.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aliasd::daemon::Ready;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::lab::{Container, Lab, SocketProxy, docker, eventually};
use crate::support::{Daemon, TOKEN, dig, http, run_bin_within};

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");

/// The addresses `name` resolves to through aliasd's loopback DNS, sorted.
fn resolve(daemon: &Daemon, name: &str) -> Vec<String> {
    let out = dig(daemon.dns, &[name, "A", "+short"]);
    let mut got: Vec<String> = out.lines().map(str::to_owned).collect();
    got.sort();
    got
}

fn ips(containers: &[&Container]) -> Vec<String> {
    let mut out: Vec<String> = containers.iter().map(|c| c.ip.to_string()).collect();
    out.sort();
    out
}

/// The addresses of `service`'s endpoints as aliasd lists them (answered or not), sorted.
async fn service_ips(daemon: &Daemon, service: &str) -> Vec<String> {
    let (_, s) = http(daemon, "GET", "/v1/services", None, "").await;
    let mut out: Vec<String> = s["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|svc| svc["name"] == service)
        .flat_map(|svc| svc["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| {
            let addr: std::net::SocketAddr = e["addr"].as_str()?.parse().ok()?;
            Some(addr.ip().to_string())
        })
        .collect();
    out.sort();
    out
}

/// Waits until `name` resolves to exactly `want`.
async fn answers(daemon: &Daemon, name: &str, want: &[String], limit: Duration) {
    let what = format!("{name} answering {want:?}");
    eventually(limit, &what, async || {
        (resolve(daemon, name) == want).then_some(())
    })
    .await;
}

/// The proxy listeners aliasd bound, from its ready file.
fn proxies(fixture: &crate::support::Fixture) -> Vec<SocketAddr> {
    let ready: Ready =
        serde_json::from_slice(&std::fs::read(fixture.dir.path().join("ready.json")).unwrap())
            .unwrap();
    ready.proxies
}

/// Sends GETs through the proxy, one after the other on keep-alive connections, until `stop`;
/// counts answers per backend and failures.
struct Loop {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>, BTreeSet<String>)>,
}

impl Loop {
    fn start(proxy: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), requests.clone());
        let task = tokio::spawn(async move {
            let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let mut failures = Vec::new();
            let mut backends = BTreeSet::new();
            while !s.load(Ordering::Relaxed) {
                r.fetch_add(1, Ordering::Relaxed);
                let request = hyper::Request::get(format!("http://{proxy}/"))
                    .body(Empty::new())
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
                    Ok(Ok(response)) => {
                        let status = response.status();
                        let backend = response
                            .headers()
                            .get("x-backend")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("?")
                            .to_owned();
                        let body = response.into_body().collect().await;
                        if status.is_success() && body.is_ok() {
                            backends.insert(backend);
                        } else {
                            failures.push(format!("status {status} from {backend}"));
                        }
                    }
                    Ok(Err(e)) => failures.push(e.to_string()),
                    Err(_) => failures.push("no answer within 5s".into()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (r.load(Ordering::Relaxed), failures, backends)
        });
        Self { stop, task }
    }

    async fn finish(self) -> (u64, Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the proxy loop")
    }
}

/// The Unix time in ms of an RFC 3339 timestamp, as aliasd and Docker print them.
fn unix_ms(text: &str) -> u128 {
    humantime::parse_rfc3339_weak(text.trim())
        .unwrap_or_else(|e| panic!("`{text}`: {e}"))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The seeds' experiment: v1 runs as labelled containers; an app container resolves
/// `web.internal` through aliasd before every request and a second loop goes through the front
/// proxy; v2 starts; `aliasctl promote --wait --stop-old` moves the alias. No request fails in
/// either loop, and v1's containers are stopped (not removed) only after aliasd reported them
/// safe to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_deploy_with_stop_old_costs_no_request_and_stops_v1_only_when_safe() {
    let lab = Lab::new();
    let v1 = [
        lab.backend("web-v1-a", "web-v1", "1s"),
        lab.backend("web-v1-b", "web-v1", "1s"),
    ];
    let fixture = lab.fixture(
        &[("web", &["web-v1"])],
        None,
        true,
        "\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n",
    );
    let daemon = fixture.start();
    let proxy = proxies(&fixture)[0];
    answers(
        &daemon,
        "web.internal",
        &ips(&[&v1[0], &v1[1]]),
        Duration::from_secs(20),
    )
    .await;
    // Both v1 endpoints pass their checks before the loops start.
    eventually(Duration::from_secs(20), "v1 healthy", async || {
        let (_, a) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
        a["members"][0]["endpoints"]
            .as_array()
            .filter(|e| e.len() == 2 && e.iter().all(|e| e["health"] == "healthy"))
            .map(|_| ())
    })
    .await;

    let probe = lab.probe("web.internal:8080");
    let through_proxy = Loop::start(proxy);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let v2 = [
        lab.backend("web-v2-a", "web-v2", "1s"),
        lab.backend("web-v2-b", "web-v2", "1s"),
    ];
    eventually(Duration::from_secs(20), "web-v2 discovered", async || {
        let (_, s) = http(&daemon, "GET", "/v1/services/web-v2", None, "").await;
        (s["endpoints"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;

    let server = daemon.server_url();
    let out = tokio::task::spawn_blocking(move || {
        let envs = [
            ("ALIASCTL_SERVER", server.as_str()),
            ("ALIASCTL_TOKEN", TOKEN),
        ];
        run_bin_within(
            ALIASCTL,
            &[
                "promote",
                "web",
                "--to",
                "web-v2",
                "--wait",
                "--stop-old",
                "--timeout",
                "90s",
            ],
            &envs,
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{printed}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    assert!(printed.contains("safe to stop since"), "{printed}");
    assert!(printed.contains("stopped "), "{printed}");

    // Let the loops run on v2 alone for a moment, then read what they saw.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (proxied, proxy_failures, proxy_backends) = through_proxy.finish().await;
    let report = lab.probe_report(&probe);
    assert_eq!(
        report.failures, 0,
        "requests resolved through aliasd failed: {report:?}"
    );
    assert!(report.requests > 100, "{report:?}");
    assert!(
        report.backends.contains_key("web-v1") && report.backends.contains_key("web-v2"),
        "{report:?}"
    );
    assert!(
        proxy_failures.is_empty(),
        "{} of {proxied} proxied requests failed: {proxy_failures:?}",
        proxy_failures.len()
    );
    assert!(
        proxy_backends.contains("web-v1") && proxy_backends.contains("web-v2"),
        "{proxy_backends:?}"
    );

    // v1 stopped, not removed; v2 runs. Each v1 container stopped after aliasd's safe time.
    let (_, history) = http(&daemon, "GET", "/v1/aliases/web/history", None, "").await;
    let history = history.as_array().unwrap();
    let completed = history
        .iter()
        .find(|e| e["change"] == "completed")
        .expect("completed");
    let stopped = history
        .iter()
        .find(|e| e["change"] == "stopped")
        .expect("stopped entry");
    let safe_at = unix_ms(completed["at"].as_str().unwrap());
    let reason = stopped["reason"].as_str().unwrap();
    for c in &v1 {
        assert!(!c.running(), "{} still runs", c.name);
        assert!(reason.contains(&c.name), "{reason}");
        let finished = docker(&["inspect", "-f", "{{.State.FinishedAt}}", &c.id]);
        assert!(
            unix_ms(&finished) >= safe_at,
            "{} finished at {finished}, before it was safe to stop ({})",
            c.name,
            completed["at"]
        );
    }
    for c in &v2 {
        assert!(c.running(), "{} stopped", c.name);
    }
    answers(
        &daemon,
        "web.internal",
        &ips(&[&v2[0], &v2[1]]),
        Duration::from_secs(5),
    )
    .await;
}

/// A v2 container killed in phase mixed leaves the answers at once, and the promotion rolls
/// back to v1 by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_container_killed_while_mixed_leaves_the_answers_and_the_promotion_rolls_back() {
    let lab = Lab::new();
    let v1 = lab.backend("web-v1", "web-v1", "0s");
    let fixture = lab.fixture(&[("web", &["web-v1"])], None, false, "");
    let daemon = fixture.start();
    answers(
        &daemon,
        "web.internal",
        &ips(&[&v1]),
        Duration::from_secs(20),
    )
    .await;
    let v2 = lab.backend("web-v2", "web-v2", "0s");
    eventually(Duration::from_secs(20), "web-v2 discovered", async || {
        let (_, s) = http(&daemon, "GET", "/v1/services/web-v2", None, "").await;
        (s["endpoints"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    // A confirm gate holds the promotion in mixed.
    let (status, body) = crate::support::post(
        &daemon,
        "/v1/aliases/web/promote",
        serde_json::json!({"to": "web-v2", "confirm": true}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    answers(
        &daemon,
        "web.internal",
        &ips(&[&v1, &v2]),
        Duration::from_secs(20),
    )
    .await;

    docker(&["kill", &v2.id]);
    let killed = Instant::now();
    answers(
        &daemon,
        "web.internal",
        &ips(&[&v1]),
        Duration::from_secs(5),
    )
    .await;
    let gone_after = killed.elapsed();
    assert!(
        gone_after < Duration::from_secs(2),
        "v2 left the answers {gone_after:?} after the kill"
    );
    let web = crate::support::wait_for(&daemon, Duration::from_secs(10), "rolled back", |a| {
        a["phase"] == "stable"
    })
    .await;
    assert_eq!(web["targets"], serde_json::json!(["web-v1"]));
    let (_, history) = http(&daemon, "GET", "/v1/aliases/web/history", None, "").await;
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["change"], "auto_rollback", "{history}");
    // The killed container shows as died until it is removed.
    let (_, s) = http(&daemon, "GET", "/v1/services/web-v2", None, "").await;
    assert_eq!(s["endpoints"][0]["docker_health"], "died", "{s}");
    docker(&["rm", &v2.id]);
    // Removed, it is gone, and so is the service only it made (no alias names it now).
    eventually(
        Duration::from_secs(5),
        "the removed container gone",
        async || {
            let (status, _) = http(&daemon, "GET", "/v1/services/web-v2", None, "").await;
            (status == 404).then_some(())
        },
    )
    .await;
}

/// `docker stop` takes a container out of the answers as soon as the stop begins, while the
/// container still runs (it serves on for its stop delay), not when it has died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_takes_a_container_out_of_the_answers_before_it_dies() {
    let lab = Lab::new();
    let a = lab.backend("web-v1-a", "web-v1", "5s");
    let b = lab.backend("web-v1-b", "web-v1", "5s");
    let fixture = lab.fixture(&[("web", &["web-v1"])], None, false, "");
    let daemon = fixture.start();
    answers(
        &daemon,
        "web.internal",
        &ips(&[&a, &b]),
        Duration::from_secs(20),
    )
    .await;

    let id = a.id.clone();
    let stopping = std::thread::spawn(move || docker(&["stop", "-t", "10", &id]));
    answers(&daemon, "web.internal", &ips(&[&b]), Duration::from_secs(4)).await;
    assert!(
        a.running(),
        "the container had died before it left the answers"
    );
    stopping.join().unwrap();
    assert!(!a.running());
    assert_eq!(resolve(&daemon, "web.internal"), ips(&[&b]));
}

/// With the Docker API hung or cut (a socket proxy between aliasd and the daemon), the answers
/// stay as they were, and aliasd says so; once it is back, a full list brings them up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_docker_api_changes_no_answer_and_a_resync_follows_its_return() {
    let lab = Lab::new();
    let a = lab.backend("web-v1-a", "web-v1", "0s");
    let b = lab.backend("web-v1-b", "web-v1", "0s");
    let dir = tempfile::tempdir().unwrap();
    let mut socket = SocketProxy::start(dir.path().join("docker.sock")).await;
    let fixture = lab.fixture(&[("web", &["web-v1"])], Some(&socket.path), false, "");
    let daemon = fixture.start();
    answers(
        &daemon,
        "web.internal",
        &ips(&[&a, &b]),
        Duration::from_secs(20),
    )
    .await;

    // An API that answers nothing: the ping catches it; the answers stay.
    socket.hang();
    let error = eventually(
        Duration::from_secs(20),
        "a hung Docker noticed",
        async || {
            let (_, s) = http(&daemon, "GET", "/v1/services", None, "").await;
            (s["docker"]["connected"] == false).then(|| s["docker"]["error"].to_string())
        },
    )
    .await;
    assert!(error.contains("stopped answering"), "{error}");
    assert_eq!(resolve(&daemon, "web.internal"), ips(&[&a, &b]));
    socket.restore();
    eventually(Duration::from_secs(20), "Docker back", async || {
        let (_, s) = http(&daemon, "GET", "/v1/services", None, "").await;
        (s["docker"]["connected"] == true).then_some(())
    })
    .await;

    // The socket gone altogether.
    socket.cut();
    eventually(
        Duration::from_secs(15),
        "Docker seen as unreachable",
        async || {
            let (_, s) = http(&daemon, "GET", "/v1/services", None, "").await;
            (s["docker"]["connected"] == false).then_some(())
        },
    )
    .await;
    // Meanwhile a container goes; aliasd cannot know from Docker, and keeps what it had: the
    // endpoint stays in the service (its own health check may take it out of the answers).
    docker(&["stop", "-t", "2", &a.id]);
    assert_eq!(service_ips(&daemon, "web-v1").await, ips(&[&a, &b]));
    let (_, web) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert!(
        web["warnings"]
            .to_string()
            .contains("Docker is unreachable"),
        "{web}"
    );
    let text = metrics(&daemon).await;
    assert!(text.contains("aliasd_docker_connected 0"), "{text}");
    let status = run_bin_within(
        ALIASCTL,
        &["--server", &daemon.server_url(), "status", "web"],
        &[],
        Duration::from_secs(10),
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("Docker is unreachable"),
        "{status:?}"
    );

    socket.restore();
    answers(
        &daemon,
        "web.internal",
        &ips(&[&b]),
        Duration::from_secs(20),
    )
    .await;
    // The resync's full list drops the container that went while Docker was away.
    eventually(Duration::from_secs(20), "the resync", async || {
        (service_ips(&daemon, "web-v1").await == ips(&[&b])).then_some(())
    })
    .await;
    let text = metrics(&daemon).await;
    assert!(text.contains("aliasd_docker_connected 1"), "{text}");
    assert!(
        daemon.log().contains("Docker unreachable"),
        "the log says so"
    );
}

async fn metrics(daemon: &Daemon) -> String {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("{}/metrics", daemon.server_url()).parse().unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A container with bad labels is skipped, named in the problems list with the label, and
/// discovery goes on with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_labels_are_reported_and_do_not_stop_discovery() {
    let lab = Lab::new();
    let good = lab.backend("web-v1", "web-v1", "0s");
    let service = format!("{}service=web-v1", lab.prefix);
    let port = format!("{}port=http", lab.prefix);
    let bad = lab.run(
        "bad-port",
        &["--label", &service, "--label", &port],
        &["backend", "--listen", "0.0.0.0:8080", "--name", "bad"],
    );
    let name = format!("{}service=Web_V1!", lab.prefix);
    let port = format!("{}port=8080", lab.prefix);
    let bad_name = lab.run(
        "bad-name",
        &["--label", &name, "--label", &port],
        &["backend", "--listen", "0.0.0.0:8080", "--name", "bad"],
    );
    // `next` names a service no container of which runs yet.
    let fixture = lab.fixture(
        &[("web", &["web-v1"]), ("next", &["web-v9"])],
        None,
        false,
        "",
    );
    let daemon = fixture.start();
    answers(
        &daemon,
        "web.internal",
        &ips(&[&good]),
        Duration::from_secs(20),
    )
    .await;
    let nodata = dig(daemon.dns, &["next.internal", "A"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );
    let status = run_bin_within(
        ALIASCTL,
        &["--server", &daemon.server_url(), "status", "next"],
        &[],
        Duration::from_secs(10),
    );
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("warning:    service `web-v9` has no endpoints (no container of it runs)"),
        "{status}"
    );
    let (_, services) = http(&daemon, "GET", "/v1/services", None, "").await;
    let problems = services["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{services}");
    let text = services["problems"].to_string();
    assert!(
        text.contains(&bad.name)
            && text.contains(&format!(
                "label {}port: `http` is not a port number",
                lab.prefix
            )),
        "{text}"
    );
    assert!(
        text.contains(&bad_name.name) && text.contains(&format!("label {}service", lab.prefix)),
        "{text}"
    );

    let out = run_bin_within(
        ALIASCTL,
        &["--server", &daemon.server_url(), "services"],
        &[],
        Duration::from_secs(10),
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("problems (containers skipped):"),
        "{printed}"
    );
    assert!(printed.contains(&bad.name), "{printed}");
    assert!(
        printed.contains(&good.name) && printed.contains("docker: connected"),
        "{printed}"
    );
    // Discovery goes on: a new good container is answered.
    let more = lab.backend("web-v1-more", "web-v1", "0s");
    answers(
        &daemon,
        "web.internal",
        &ips(&[&good, &more]),
        Duration::from_secs(20),
    )
    .await;
}

/// Docker's own HEALTHCHECK counts with aliasd's: a container whose HEALTHCHECK has not passed
/// (`starting`) or fails (`unhealthy`) is not answered, though aliasd's HTTP check of it
/// passes. (The image has no shell, so a shell-form health command can only fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_own_healthcheck_fails_is_never_answered() {
    let lab = Lab::new();
    let plain = lab.backend("web-v1-plain", "web-v1", "0s");
    let service = format!("{}service=web-v1", lab.prefix);
    let port = format!("{}port=8080", lab.prefix);
    let sick = lab.run(
        "web-v1-sick",
        &[
            "--label",
            &service,
            "--label",
            &port,
            "--health-cmd",
            "exit 0",
            "--health-interval",
            "300ms",
            "--health-retries",
            "1",
        ],
        &["backend", "--listen", "0.0.0.0:8080", "--name", "web-v1"],
    );
    let fixture = lab.fixture(&[("web", &["web-v1"])], None, false, "");
    let daemon = fixture.start();
    answers(
        &daemon,
        "web.internal",
        &ips(&[&plain]),
        Duration::from_secs(20),
    )
    .await;
    let health = eventually(
        Duration::from_secs(20),
        "Docker's verdict seen",
        async || {
            let (_, s) = http(&daemon, "GET", "/v1/services/web-v1", None, "").await;
            s["endpoints"]
                .as_array()?
                .iter()
                .find(|e| e["container"]["name"] == sick.name.as_str())
                .filter(|e| e["docker_health"] == "unhealthy")
                .cloned()
        },
    )
    .await;
    assert_eq!(health["health"], "unhealthy", "{health}");
    // Over a few rounds of checks it never joins the answers.
    for _ in 0..10 {
        assert_eq!(resolve(&daemon, "web.internal"), ips(&[&plain]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The addresses (`ip:port`) of `service`'s endpoints as aliasd lists them, sorted.
async fn service_addrs(daemon: &Daemon, service: &str) -> Vec<String> {
    let (_, s) = http(daemon, "GET", &format!("/v1/services/{service}"), None, "").await;
    let mut out: Vec<String> = s["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["addr"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// `docker.labels`: two aliasd on one daemon, with one label prefix but different `labels`,
/// each discover only the containers carrying theirs, from the first list and from the events
/// after it; a container with neither is nobody's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_discoveries_with_different_labels_each_see_only_their_own_containers() {
    let lab = Lab::new();
    let team = format!("{}-team", lab.name);
    let backend = |name: &str, team_label: Option<&str>| {
        let service = format!("{}service=web-v1", lab.prefix);
        let port = format!("{}port=8080", lab.prefix);
        let mut args = vec!["--label".to_owned(), service, "--label".to_owned(), port];
        if let Some(t) = team_label {
            args.extend(["--label".to_owned(), format!("{team}={t}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.run(
            name,
            &args,
            &["backend", "--listen", "0.0.0.0:8080", "--name", name],
        )
    };
    // Before the two start: found by their lists.
    let pay_1 = backend("pay-1", Some("payments"));
    let bill_1 = backend("bill-1", Some("billing"));
    let _nobodys = backend("nobody", None);
    let fixture = |value: &str| {
        lab.fixture_with(
            &[("web", &["web-v1"])],
            None,
            false,
            &format!("labels = [\"{team}={value}\"]"),
            "",
        )
    };
    let (payments, billing) = (fixture("payments"), fixture("billing"));
    let (payments, billing) = (payments.start(), billing.start());
    let limit = Duration::from_secs(20);
    answers(&payments, "web.internal", &ips(&[&pay_1]), limit).await;
    answers(&billing, "web.internal", &ips(&[&bill_1]), limit).await;
    // After: found through the events. Each side sees its second container before the test
    // looks at what the other side sees, so a leak would be there by then.
    let pay_2 = backend("pay-2", Some("payments"));
    let bill_2 = backend("bill-2", Some("billing"));
    answers(&payments, "web.internal", &ips(&[&pay_1, &pay_2]), limit).await;
    answers(&billing, "web.internal", &ips(&[&bill_1, &bill_2]), limit).await;
    assert_eq!(
        service_ips(&payments, "web-v1").await,
        ips(&[&pay_1, &pay_2])
    );
    assert_eq!(
        service_ips(&billing, "web-v1").await,
        ips(&[&bill_1, &bill_2])
    );
    for daemon in [&payments, &billing] {
        let (_, services) = http(daemon, "GET", "/v1/services", None, "").await;
        assert_eq!(services["problems"], serde_json::json!([]), "{services}");
    }
}

/// A real etcd on loopback ports of its own, for configs with a `[cluster]` table; killed and
/// its data removed when dropped.
struct Etcd {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Self {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
        };
        let (client, peer) = (free(), free());
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let child = std::process::Command::new("etcd")
            .args([
                "--name",
                "it",
                "--data-dir",
                &dir.path().join("data").to_string_lossy(),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("it={peer_url}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log"))
            .spawn()
            .expect("the `etcd` binary must be installed for the cluster tests");
        let etcd = Self {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(client).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen within 20s");
            std::thread::sleep(Duration::from_millis(20));
        }
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host port Docker published container port 8080 of `container` on.
fn published_port(container: &Container) -> u16 {
    let out = docker(&["port", &container.id, "8080/tcp"]);
    let first = out.lines().next().unwrap_or_default();
    first
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("`docker port` printed `{out}`"))
}

/// `docker.address = "host"`: the endpoint is this node's `[cluster] advertise` address and
/// the host port the container publishes for its port label, and it answers there; a container
/// labelled `address=container` keeps its own address, and one that publishes nothing is a
/// problem saying to publish the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_host_makes_endpoints_of_the_advertise_address_and_the_published_port() {
    let lab = Lab::new();
    let etcd = Etcd::start();
    let service = format!("{}service=web-v1", lab.prefix);
    let port = format!("{}port=8080", lab.prefix);
    let labels = ["--label", service.as_str(), "--label", port.as_str()];
    let backend = |name: &str, more: &[&str]| {
        let args: Vec<&str> = labels.iter().chain(more).copied().collect();
        lab.run(
            name,
            &args,
            &["backend", "--listen", "0.0.0.0:8080", "--name", name],
        )
    };
    let published = backend("published", &["-p", "8080"]);
    let own_label = format!("{}address=container", lab.prefix);
    let own = backend("own", &["--label", &own_label]);
    let unpublished = backend("unpublished", &[]);
    let host_port = published_port(&published);
    let fixture = lab.fixture_with(
        &[("web", &["web-v1"])],
        None,
        false,
        "address = \"host\"",
        &format!(
            "[cluster]\netcd = [\"{}\"]\nnode = \"it-node\"\nadvertise = \"127.0.0.1\"\nprefix = \"/{}\"",
            etcd.url, lab.name
        ),
    );
    let daemon = fixture.start();
    let on_host = format!("127.0.0.1:{host_port}");
    let want = {
        let mut want = vec![on_host.clone(), format!("{}:8080", own.ip)];
        want.sort();
        want
    };
    eventually(
        Duration::from_secs(20),
        "both endpoints listed",
        async || (service_addrs(&daemon, "web-v1").await == want).then_some(()),
    )
    .await;
    // aliasd's own checks (HTTP /healthz) reach the endpoint on the host port.
    eventually(
        Duration::from_secs(20),
        "the host endpoint healthy",
        async || {
            let (_, s) = http(&daemon, "GET", "/v1/services/web-v1", None, "").await;
            s["endpoints"]
                .as_array()?
                .iter()
                .find(|e| e["addr"] == on_host.as_str() && e["health"] == "healthy")
                .map(|_| ())
        },
    )
    .await;
    // And so does a client, at the address DNS answers.
    let mut both = vec!["127.0.0.1".to_owned(), own.ip.to_string()];
    both.sort();
    answers(&daemon, "web.internal", &both, Duration::from_secs(20)).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&on_host).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: web\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        std::io::Result::Ok(answer)
    })
    .await
    .expect("an answer within 5s")
    .expect("the published port answers");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    let (_, services) = http(&daemon, "GET", "/v1/services", None, "").await;
    let problems = services["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{services}");
    let text = problems[0].to_string();
    assert!(
        text.contains(&unpublished.name)
            && text.contains("container port 8080 is not published on the host: publish port 8080 (docker run -p 8080) or use address = container"),
        "{text}"
    );
}

/// The zero-failure promise through weighted steps: an app container resolving `web.internal`
/// through glibc before every request, and a loop through the front proxy, see no failed request
/// across a promotion in steps (30%, then 60%, then everybody) and the rollback after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stepped_promotion_and_its_rollback_cost_no_request_through_glibc_or_the_proxy() {
    let lab = Lab::new();
    let v1 = lab.backend("web-v1-s", "web-v1", "1s");
    let _v2 = lab.backend("web-v2-s", "web-v2", "1s");
    let fixture = lab.fixture(
        &[("web", &["web-v1"])],
        None,
        true,
        "\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\n",
    );
    let daemon = fixture.start();
    let proxy = proxies(&fixture)[0];
    answers(
        &daemon,
        "web.internal",
        &ips(&[&v1]),
        Duration::from_secs(20),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "both versions healthy",
        async || {
            let (_, s) = http(&daemon, "GET", "/v1/services/web-v2", None, "").await;
            let (_, a) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
            let healthy = |e: &serde_json::Value| {
                e["endpoints"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["health"] == "healthy"))
            };
            (healthy(&s) && healthy(&a["members"][0])).then_some(())
        },
    )
    .await;

    let probe = lab.probe("web.internal:8080");
    let through_proxy = Loop::start(proxy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server = daemon.server_url();
    let run = |args: &'static [&'static str]| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let envs = [
                ("ALIASCTL_SERVER", server.as_str()),
                ("ALIASCTL_TOKEN", TOKEN),
            ];
            run_bin_within(ALIASCTL, args, &envs, Duration::from_secs(120))
        })
    };
    for args in [
        &[
            "promote",
            "web",
            "--to",
            "web-v2",
            "--steps",
            "30%:2s,60%:2s,100%",
            "--wait",
            "--timeout",
            "90s",
        ][..],
        &["rollback", "web", "--wait", "--timeout", "90s"][..],
    ] {
        let out = run(args).await.unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (proxied, proxy_failures, proxy_backends) = through_proxy.finish().await;
    let report = lab.probe_report(&probe);
    assert_eq!(
        report.failures, 0,
        "requests resolved through glibc failed: {report:?}"
    );
    assert!(report.requests > 50, "{report:?}");
    assert!(
        proxy_failures.is_empty(),
        "{} of {proxied} proxied requests failed: {proxy_failures:?}",
        proxy_failures.len()
    );
    assert!(
        proxy_backends.contains("web-v1") && proxy_backends.contains("web-v2"),
        "{proxy_backends:?}"
    );
    let (_, history) = http(&daemon, "GET", "/v1/aliases/web/history", None, "").await;
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["change"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "in_effect").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "completed").count(),
        2,
        "{kinds:?}"
    );
    answers(
        &daemon,
        "web.internal",
        &ips(&[&v1]),
        Duration::from_secs(5),
    )
    .await;
}
