//! Health-gated promotion through the real daemon: real HTTP backends on loopback whose health
//! the test switches, DNS queried all along, and SIGKILL at many points.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aliasd::backend::Backend;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Daemon, FAST_PROMOTION, Fixture, StopOnDrop, TOKEN, TOKEN_NAME, Transport, addresses, alias,
    dig, http, post, query, spawn_backends, wait_for,
};

/// Short gates, so a whole promotion takes a second or two.
const FAST: &str = FAST_PROMOTION;

/// Backends for `web-v1` and `web-v2` on their own loopback addresses, and a config for them.
struct Setup {
    fixture: Fixture,
    v1: Vec<Backend>,
    v2: Vec<Backend>,
    _stop: StopOnDrop,
}

impl Setup {
    /// `net` picks the addresses (127.0.<net>.x), distinct per test; `promotion` is the
    /// `[promotion]` section.
    async fn new(net: u8, v1: usize, v2: usize, promotion: &str) -> Self {
        let stop = CancellationToken::new();
        let v1 = spawn_backends(net, 1, v1, "web-v1", &stop).await;
        let v2 = spawn_backends(net, 101, v2, "web-v2", &stop).await;
        let addrs = |bs: &[Backend]| bs.iter().map(|b| b.addr).collect::<Vec<_>>();
        let fixture = Fixture::for_backends_with(
            &[("web-v1", &addrs(&v1)), ("web-v2", &addrs(&v2))],
            &[("web", &["web-v1"])],
            promotion,
        );
        Self {
            fixture,
            v1,
            v2,
            _stop: StopOnDrop(stop),
        }
    }

    fn ips(backends: &[Backend]) -> BTreeSet<String> {
        backends.iter().map(|b| b.addr.ip().to_string()).collect()
    }
}

async fn history(daemon: &Daemon) -> Vec<Value> {
    let (status, body) = http(daemon, "GET", "/v1/aliases/web/history", None, "").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn changes(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .map(|e| e["change"].as_str().unwrap().to_owned())
        .collect()
}

fn phase_is(phase: &'static str) -> impl Fn(&Value) -> bool {
    move |a| a["phase"] == phase
}

/// Runs the real `dig +short` against the alias in a loop until stopped; returns its answers.
fn dig_loop(
    dns: SocketAddr,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<Vec<BTreeSet<String>>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !flag.load(Ordering::SeqCst) && seen.len() < 2_000 {
            let out = dig(dns, &["+short", "web.internal"]);
            seen.push(out.lines().map(str::to_owned).collect());
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    });
    (stop, thread)
}

/// Queries the alias every few milliseconds until stopped; returns every answer seen.
fn watch_answers(dns: SocketAddr) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<Vec<String>>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while !flag.load(Ordering::SeqCst) {
            let m = query(dns, "web.internal.", RecordType::A, Transport::Udp).await;
            seen.push(addresses(&m));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_moves_through_every_phase_and_answers_are_never_empty() {
    let setup = Setup::new(51, 2, 2, FAST).await;
    let daemon = setup.fixture.start();
    let (v1, v2) = (Setup::ips(&setup.v1), Setup::ips(&setup.v2));
    wait_for(&daemon, Duration::from_secs(5), "v2 healthy", |a| {
        a["members"][0]["endpoints"][0]["health"] == "healthy"
    })
    .await;

    let (stop, answers) = watch_answers(daemon.dns);
    let (dig_stop, digs) = dig_loop(daemon.dns);
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "reason": "release 2"}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["started"], true);
    let op = reply["alias"]["operation"]["id"]
        .as_u64()
        .expect("operation id");

    // The new answer is in DNS while both answer; dig sees it too.
    wait_for(&daemon, Duration::from_secs(5), "mixed", |a| {
        a["phase"] == "mixed" || a["phase"] == "draining"
    })
    .await;
    let done = wait_for(
        &daemon,
        Duration::from_secs(10),
        "stable",
        phase_is("stable"),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let seen = answers.await.unwrap();
    dig_stop.store(true, Ordering::SeqCst);
    let digs = digs.join().unwrap();
    assert!(digs.len() > 5, "dig ran {} times", digs.len());
    for answer in &digs {
        assert!(
            !answer.is_empty(),
            "dig saw an empty answer during the promotion"
        );
        assert!(
            answer.is_subset(&v1.union(&v2).cloned().collect()),
            "{answer:?}"
        );
    }

    assert!(!seen.is_empty());
    for answer in &seen {
        assert!(!answer.is_empty(), "an empty answer during the promotion");
        assert!(
            answer.iter().all(|ip| v1.contains(ip) || v2.contains(ip)),
            "{answer:?}"
        );
    }
    let both: BTreeSet<String> = v1.union(&v2).cloned().collect();
    let as_set = |a: &Vec<String>| a.iter().cloned().collect::<BTreeSet<_>>();
    // The answers went v1 → v1+v2 → v2, in that order.
    let first_mixed = seen.iter().position(|a| as_set(a) == both);
    let first_v2 = seen.iter().position(|a| as_set(a) == v2);
    assert!(as_set(&seen[0]) == v1, "{:?}", seen[0]);
    assert!(first_mixed.is_some() && first_v2.is_some(), "{seen:?}");
    assert!(first_mixed < first_v2);
    assert!(
        seen[first_v2.unwrap()..].iter().all(|a| as_set(a) == v2),
        "v1 came back"
    );

    assert_eq!(done["targets"], json!(["web-v2"]));
    assert_eq!(done["retired"]["services"], json!(["web-v1"]));
    assert_eq!(done["retired"]["safe_to_stop"], true);
    assert_eq!(done["retired"]["op"], op);
    let out = dig(daemon.dns, &["+short", "web.internal"]);
    assert_eq!(out.lines().map(str::to_owned).collect::<BTreeSet<_>>(), v2);

    let h = history(&daemon).await;
    let story: Vec<String> = h
        .iter()
        .filter(|e| e["op"] == op)
        .map(|e| e["change"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(story, ["started", "mixed", "draining", "completed"]);
    // The operator started it; what health and time moved on is aliasd's doing.
    let actors: Vec<(&str, &str)> = h
        .iter()
        .filter(|e| e["op"] == op)
        .map(|e| (e["change"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actors,
        [
            ("started", TOKEN_NAME),
            ("mixed", "aliasd"),
            ("draining", "aliasd"),
            ("completed", "aliasd")
        ]
    );
    assert!(
        h.iter()
            .all(|e| e["op_kind"] == "promote" || e["op"].is_null())
    );
    assert_eq!(
        h.iter().find(|e| e["change"] == "started").unwrap()["reason"],
        "release 2"
    );
    // Revisions count up by one with no gaps.
    let revs: Vec<u64> = h.iter().map(|e| e["revision"].as_u64().unwrap()).collect();
    assert_eq!(revs, (1..=revs.len() as u64).collect::<Vec<_>>());

    // The draining phase lasted at least the TTL window (1 s) plus the grace (200 ms).
    let at = |change: &str| {
        let text = h.iter().find(|e| e["change"] == change).unwrap()["at"]
            .as_str()
            .unwrap()
            .to_owned();
        humantime::parse_rfc3339(&text).unwrap()
    };
    let drained = at("completed").duration_since(at("draining")).unwrap();
    assert!(
        drained >= Duration::from_millis(1200),
        "drained for {drained:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_v2_never_enters_the_answers_and_times_out() {
    let setup = Setup::new(52, 1, 1, FAST).await;
    setup.v2[0].set_healthy(false);
    let daemon = setup.fixture.start();
    let (v1, v2) = (Setup::ips(&setup.v1), Setup::ips(&setup.v2));

    let (stop, answers) = watch_answers(daemon.dns);
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "warm_timeout": "1s"}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["alias"]["phase"], "warming");
    let done = wait_for(
        &daemon,
        Duration::from_secs(5),
        "back to stable",
        phase_is("stable"),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for answer in answers.await.unwrap() {
        let got: BTreeSet<String> = answer.into_iter().collect();
        assert_eq!(
            got, v1,
            "v2 ({v2:?}) must never answer, and v1 must never leave"
        );
    }
    assert_eq!(done["targets"], json!(["web-v1"]));
    let h = history(&daemon).await;
    let last = h.last().unwrap();
    assert_eq!(last["change"], "warm_timeout");
    assert!(
        last["reason"].as_str().unwrap().contains("0 healthy"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_failing_while_mixed_rolls_back_automatically() {
    let setup = Setup::new(53, 1, 1, FAST).await;
    let daemon = setup.fixture.start();
    let v1 = Setup::ips(&setup.v1);
    let (status, _) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "observe": "20s"}),
    )
    .await;
    assert_eq!(status, 202);
    wait_for(&daemon, Duration::from_secs(5), "mixed", phase_is("mixed")).await;

    setup.v2[0].set_healthy(false);
    let done = wait_for(
        &daemon,
        Duration::from_secs(5),
        "rolled back",
        phase_is("stable"),
    )
    .await;
    assert_eq!(done["targets"], json!(["web-v1"]));
    assert_eq!(done["retired"]["services"], json!(["web-v2"]));
    let last = history(&daemon).await.pop().unwrap();
    assert_eq!(last["change"], "auto_rollback");
    assert!(
        last["reason"].as_str().unwrap().contains("unhealthy"),
        "{last}"
    );
    let m = query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(addresses(&m).into_iter().collect::<BTreeSet<_>>(), v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_mixed_and_in_draining_resumes_the_same_phase() {
    // A long grace keeps the promotion in draining long enough to kill and restart it there.
    let setup = Setup::new(
        54,
        1,
        1,
        "[promotion]\nobserve = \"300ms\"\ndrain_grace = \"4s\"\n",
    )
    .await;

    // Killed while mixed: comes back mixed, with the same observe deadline, and carries on.
    let daemon = setup.fixture.start();
    let (status, _) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "observe": "4s"}),
    )
    .await;
    assert_eq!(status, 202);
    let mixed = wait_for(&daemon, Duration::from_secs(5), "mixed", phase_is("mixed")).await;
    daemon.kill9();
    let daemon = setup.fixture.start();
    let resumed = alias(&daemon).await;
    assert_eq!(resumed["phase"], "mixed", "{resumed}");
    assert_eq!(
        resumed["operation"]["phase_deadline"],
        mixed["operation"]["phase_deadline"]
    );
    let done = wait_for(
        &daemon,
        Duration::from_secs(15),
        "completed",
        phase_is("stable"),
    )
    .await;
    assert_eq!(done["targets"], json!(["web-v2"]));

    // Killed while draining: resumes draining with the same deadline, then completes.
    let (status, _) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v1", "observe": "0s"}),
    )
    .await;
    assert_eq!(status, 202);
    let draining = wait_for(
        &daemon,
        Duration::from_secs(5),
        "draining",
        phase_is("draining"),
    )
    .await;
    daemon.kill9();
    let daemon = setup.fixture.start();
    let resumed = alias(&daemon).await;
    assert_eq!(resumed["phase"], "draining", "{resumed}");
    assert_eq!(
        resumed["operation"]["drain_until"],
        draining["operation"]["drain_until"]
    );
    assert_eq!(resumed["answering"], json!(["web-v1"]));
    let done = wait_for(
        &daemon,
        Duration::from_secs(10),
        "completed",
        phase_is("stable"),
    )
    .await;
    assert_eq!(done["targets"], json!(["web-v1"]));
    let story = changes(&history(&daemon).await);
    assert_eq!(
        story.iter().filter(|c| *c == "completed").count(),
        2,
        "{story:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_never_loads_half_written_state() {
    let setup = Setup::new(55, 1, 1, FAST).await;
    let mut daemon = setup.fixture.start();
    let mut to = "web-v2";
    for round in 0..12u64 {
        let a = alias(&daemon).await;
        if a["phase"] == "stable" {
            to = if a["targets"] == json!(["web-v1"]) {
                "web-v2"
            } else {
                "web-v1"
            };
            let (status, body) = post(&daemon, "/v1/aliases/web/promote", json!({"to": to})).await;
            assert!(status == 202 || status == 200, "{body}");
        }
        // Kill at a different point of the promotion each round.
        tokio::time::sleep(Duration::from_millis(round * 157 % 1300)).await;
        daemon.kill9();
        daemon = setup.fixture.start();

        // The alias may move on between the two reads, so the history is read second and
        // must hold the alias's revision with the same phase.
        let a = alias(&daemon).await;
        let h = history(&daemon).await;
        let revs: Vec<u64> = h.iter().map(|e| e["revision"].as_u64().unwrap()).collect();
        assert_eq!(
            revs,
            (1..=revs.len() as u64).collect::<Vec<_>>(),
            "round {round}: gaps"
        );
        let at = h
            .iter()
            .find(|e| e["revision"] == a["revision"])
            .unwrap_or_else(|| panic!("round {round}: revision of {a} not in history"));
        assert_eq!(a["phase"], at["phase"], "round {round}");
        assert!(["stable", "warming", "mixed", "draining"].contains(&a["phase"].as_str().unwrap()));
        let m = query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await;
        assert!(
            !addresses(&m).is_empty(),
            "round {round}: empty answer after restart"
        );
    }
    let done = wait_for(
        &daemon,
        Duration::from_secs(15),
        "stable",
        phase_is("stable"),
    )
    .await;
    assert_eq!(done["targets"], json!([to]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_hold_healthy_endpoints_and_keep_the_last_good_set() {
    let setup = Setup::new(56, 2, 1, FAST).await;
    let daemon = setup.fixture.start();
    let ip = |b: &Backend| b.addr.ip().to_string();
    let answer = || async {
        addresses(&query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await)
    };

    setup.v1[0].set_healthy(false);
    let only_second = vec![ip(&setup.v1[1])];
    let deadline = Instant::now() + Duration::from_secs(5);
    while answer().await != only_second {
        assert!(
            Instant::now() < deadline,
            "the unhealthy endpoint stayed in the answers"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Now the last one fails too: the last known good set stays, and the API says why.
    setup.v1[1].set_healthy(false);
    let a = wait_for(&daemon, Duration::from_secs(5), "fallback", |a| {
        a["fallback"] == "last-known-good"
    })
    .await;
    assert_eq!(a["endpoints"], json!([setup.v1[1].addr.to_string()]));
    assert_eq!(answer().await, only_second);
    let failing = a["members"][0]["endpoints"][1].clone();
    assert_eq!(failing["health"], "unhealthy");
    assert!(
        failing["last_error"].as_str().unwrap().contains("503"),
        "{failing}"
    );

    setup.v1[0].set_healthy(true);
    setup.v1[1].set_healthy(true);
    let mut both: Vec<String> = setup.v1.iter().map(ip).collect();
    both.sort();
    let deadline = Instant::now() + Duration::from_secs(5);
    while answer().await != both {
        assert!(
            Instant::now() < deadline,
            "recovered endpoints did not come back"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_bad_input_and_dry_runs_are_refused_or_change_nothing() {
    let setup = Setup::new(57, 1, 1, FAST).await;
    let daemon = setup.fixture.start();
    let path = "/v1/aliases/web/promote";

    let (status, plan) = http(
        &daemon,
        "POST",
        &format!("{path}?dry_run=true"),
        Some(TOKEN),
        r#"{"to": "web-v2"}"#,
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    let phases: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["warming", "mixed", "draining", "stable"]);
    assert_eq!(plan["drain_window"], "1s 200ms");
    assert_eq!(
        alias(&daemon).await["revision"],
        1,
        "a dry run changes nothing"
    );

    for (body, status_want, text) in [
        (
            json!({"to": "web-v2", "observe": "soon"}),
            400,
            "field `observe`",
        ),
        (
            json!({"to": "web-v2", "warm_timeout": "x"}),
            400,
            "field `warm_timeout`",
        ),
        (json!({"observe": "1s"}), 400, "field `to`"),
        (json!({"to": "web-v9"}), 404, "unknown service `web-v9`"),
        // More than the service has: a conflict with its current endpoints, not malformed.
        (
            json!({"to": "web-v2", "min_healthy": 5}),
            409,
            "min_healthy is 5",
        ),
        (
            json!({"to": "web-v2", "nope": 1}),
            400,
            "unknown field `nope`",
        ),
    ] {
        let (status, err) = post(&daemon, path, body.clone()).await;
        assert_eq!(status, status_want, "{body}: {err}");
        assert!(
            err["error"].as_str().unwrap().contains(text),
            "{body}: {err}"
        );
    }
    let (status, err) = post(&daemon, "/v1/aliases/web/abort", json!({})).await;
    assert_eq!(
        (status, err["error"].as_str().unwrap()),
        (409, "no promotion or rollback is running")
    );
    let (status, _) = http(&daemon, "POST", path, None, r#"{"to": "web-v2"}"#).await;
    assert_eq!(status, 401);

    // Promoting to what already answers is a no-op.
    let (status, reply) = post(&daemon, path, json!({"to": "web-v1"})).await;
    assert_eq!((status, reply["started"].clone()), (200, json!(false)));

    let (status, _) = post(
        &daemon,
        path,
        json!({"to": "web-v2", "confirm": true, "observe": "0s"}),
    )
    .await;
    assert_eq!(status, 202);
    let (status, err) = post(&daemon, path, json!({"to": "web-v2"})).await;
    assert_eq!(status, 409, "{err}");
    let text = err["error"].as_str().unwrap();
    assert!(
        text.contains("promotion") && text.contains(TOKEN_NAME),
        "{text}"
    );
    let (status, err) = http(
        &daemon,
        "PUT",
        "/v1/aliases/web/targets",
        Some(TOKEN),
        r#"{"targets": ["web-v2"]}"#,
    )
    .await;
    assert_eq!(status, 409, "a manual relink during a promotion: {err}");

    // It waits in mixed for the confirm; abort takes v2 out at once.
    wait_for(&daemon, Duration::from_secs(5), "mixed", phase_is("mixed")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        alias(&daemon).await["phase"],
        "mixed",
        "a confirm gate holds mixed"
    );
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/abort",
        json!({"reason": "changed my mind"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["alias"]["phase"], "stable");
    assert_eq!(reply["alias"]["answering"], json!(["web-v1"]));
    let last = history(&daemon).await.pop().unwrap();
    assert_eq!(
        (last["change"].as_str(), last["reason"].as_str()),
        (Some("aborted"), Some("changed my mind"))
    );

    // Rollback goes back through the same gates to the previous targets.
    let (status, _) = post(&daemon, path, json!({"to": "web-v2"})).await;
    assert_eq!(status, 202);
    wait_for(&daemon, Duration::from_secs(10), "on v2", |a| {
        a["phase"] == "stable" && a["targets"] == json!(["web-v2"])
    })
    .await;
    let (status, reply) = post(&daemon, "/v1/aliases/web/rollback", json!({})).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["alias"]["operation"]["kind"], "rollback");
    wait_for(&daemon, Duration::from_secs(10), "back on v1", |a| {
        a["phase"] == "stable" && a["targets"] == json!(["web-v1"])
    })
    .await;
    let (status, err) = post(
        &daemon,
        "/v1/aliases/web/rollback",
        json!({"to_revision": 999}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    let first = history(&daemon).await[0]["revision"].as_u64().unwrap();
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/rollback",
        json!({"to_revision": first}),
    )
    .await;
    assert_eq!(
        (status, reply["started"].clone()),
        (200, json!(false)),
        "revision 1 had web-v1: {reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_stream_reports_each_phase_and_health_change() {
    use http_body_util::BodyExt;
    let setup = Setup::new(58, 1, 1, FAST).await;
    let daemon = setup.fixture.start();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri = format!("{}/v1/events", daemon.server_url());
    let response = client.get(uri.parse().unwrap()).await.expect("events");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    let (status, _) = post(&daemon, "/v1/aliases/web/promote", json!({"to": "web-v2"})).await;
    assert_eq!(status, 202);
    setup.v1[0].set_healthy(false);

    let mut text = String::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.contains(&"change:completed".to_owned())
        && seen.iter().any(|s| s.starts_with("health:")))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame())
            .await
            .expect("events in time");
        let frame = frame.expect("stream open").expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            for line in message.lines().filter_map(|l| l.strip_prefix("data:")) {
                let event: Value = serde_json::from_str(line.trim()).expect("JSON event");
                let tag = match event["type"].as_str().unwrap() {
                    "change" => format!("change:{}", event["change"].as_str().unwrap()),
                    other => format!("{other}:{}", event["service"].as_str().unwrap_or("")),
                };
                seen.push(tag);
            }
        }
    }
    let order: Vec<&String> = seen.iter().filter(|s| s.starts_with("change:")).collect();
    assert_eq!(
        order,
        [
            "change:started",
            "change:mixed",
            "change:draining",
            "change:completed"
        ]
    );
    assert!(seen.contains(&"health:web-v1".to_owned()), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_refuses_what_the_promotion_would_refuse() {
    let setup = Setup::new(59, 1, 1, FAST).await;
    let daemon = setup.fixture.start();
    let url = "/v1/aliases/web/promote?dry_run=true";
    for (body, want, text) in [
        (r#"{"to": ["web-v2", "web-v2"]}"#, 400, "twice"),
        (r#"{"to": "web-v9"}"#, 404, "unknown service"),
        // More than the service has: a conflict with the current endpoints, not malformed.
        (r#"{"to": "web-v2", "min_healthy": 3}"#, 409, "min_healthy"),
    ] {
        let (status, err) = http(&daemon, "POST", url, Some(TOKEN), body).await;
        assert_eq!(status, want, "{body}: {err}");
        assert!(
            err["error"].as_str().unwrap().contains(text),
            "{body}: {err}"
        );
    }
}
