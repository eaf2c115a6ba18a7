//! Rollouts of many aliases through the real daemon: batches and their delay, a failing member
//! with `rollback` and with `pause`, and SIGKILL in the middle of a rollout.
//!
//! Every alias `aNN` links `aNN-v1`; `aNN-v2` is its new version. Health checks are off (every
//! endpoint counts as healthy), except that a failing member's new version has no endpoint at
//! all, so its promotion ends with a warm timeout. TTLs are 1 s and there is no observation, so
//! a member's promotion takes about a second (its drain).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ConfigText, Daemon, Fixture, http, post};

/// `n` aliases `a00`...; the ones in `failing` get a `-v2` with no endpoints.
fn fixture(n: usize, failing: &[usize]) -> Fixture {
    let mut config = ConfigText::new()
        .section("[promotion]\nobserve = \"0s\"\nwarm_timeout = \"5s\"\ndrain_grace = \"0s\"\n");
    for i in 0..n {
        let v1 = [format!("10.7.{i}.1:80")];
        let v2: Vec<String> = if failing.contains(&i) {
            Vec::new()
        } else {
            vec![format!("10.7.{i}.2:80")]
        };
        config = config
            .service(&format!("a{i:02}-v1"), v1)
            .service(&format!("a{i:02}-v2"), v2)
            .alias(&format!("a{i:02}"), [format!("a{i:02}-v1")]);
    }
    config.fixture()
}

/// `a00` of `a00.internal`, as the API shows an alias.
fn short(alias: &Value) -> &str {
    let a = alias.as_str().expect("an alias name");
    a.strip_suffix(".internal").unwrap_or(a)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a{i:02}")).collect()
}

async fn rollout(daemon: &Daemon, id: u64) -> Value {
    let (status, body) = http(daemon, "GET", &format!("/v1/rollouts/{id}"), None, "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls rollout `id` until `done` holds, or panics after `limit`.
async fn wait_rollout(
    daemon: &Daemon,
    id: u64,
    limit: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let r = rollout(daemon, id).await;
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "rollout {id} not {what} after {limit:?}: {r:#}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn answering(daemon: &Daemon, alias: &str) -> Value {
    let (status, body) = http(daemon, "GET", &format!("/v1/aliases/{alias}"), None, "").await;
    assert_eq!(status, 200, "{body}");
    body["answering"].clone()
}

fn ms(rfc3339: &Value) -> u128 {
    let t = humantime::parse_rfc3339(rfc3339.as_str().expect("a time")).expect("RFC 3339");
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

fn members_of(r: &Value, batch: u64) -> Vec<&Value> {
    r["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["batch"] == batch)
        .collect()
}

async fn start(daemon: &Daemon, body: Value) -> Value {
    let (status, r) = post(daemon, "/v1/rollouts", body).await;
    assert_eq!(status, 202, "{r}");
    r
}

/// 20 aliases, 5 at a time, 2 s between batches: four batches, each started only after the
/// one before ended and the delay passed; every alias ends on its v2.
#[tokio::test]
async fn a_rollout_moves_twenty_aliases_in_four_batches_with_the_delay_between() {
    let fixture = fixture(20, &[]);
    let daemon = fixture.start();
    let r = start(
        &daemon,
        json!({"version": "v2", "aliases": names(20), "parallelism": 5, "delay": "2s"}),
    )
    .await;
    assert_eq!(r["batches"], 4, "{r}");
    assert_eq!(
        members_of(&r, 0)
            .iter()
            .filter(|m| m["state"] == "running")
            .count(),
        5
    );
    let id = r["id"].as_u64().unwrap();
    let r = wait_rollout(&daemon, id, Duration::from_secs(40), "completed", |r| {
        r["state"] == "completed"
    })
    .await;
    for batch in 1..4 {
        let ended_before = members_of(&r, batch - 1)
            .iter()
            .map(|m| ms(&m["ended_at"]))
            .max()
            .unwrap();
        for m in members_of(&r, batch) {
            assert_eq!(m["state"], "completed", "{m}");
            let started = ms(&m["started_at"]);
            assert!(
                started >= ended_before + 2000,
                "batch {batch}: {} started {started}, {}ms after the batch before ended: {r:#}",
                m["alias"],
                started as i128 - ended_before as i128
            );
        }
    }
    for a in names(20) {
        assert_eq!(answering(&daemon, &a).await, json!([format!("{a}-v2")]));
    }
    let (status, list) = http(&daemon, "GET", "/v1/rollouts", None, "").await;
    assert_eq!((status, list[0]["id"].as_u64()), (200, Some(id)), "{list}");
}

/// A member of the second batch fails (its v2 never becomes healthy): with `rollback`, the
/// rollout takes every alias it moved back, newest first, each as a new revision.
#[tokio::test]
async fn a_failure_in_the_second_batch_rolls_every_moved_alias_back_newest_first() {
    let fixture = fixture(10, &[7]);
    let daemon = fixture.start();
    let r = start(
        &daemon,
        json!({"version": "v2", "aliases": names(10), "parallelism": 5,
               "failure_action": "rollback", "warm_timeout": "1s"}),
    )
    .await;
    let id = r["id"].as_u64().unwrap();
    let r = wait_rollout(&daemon, id, Duration::from_secs(30), "rolled back", |r| {
        r["state"] == "rolled_back"
    })
    .await;
    let failed: Vec<&Value> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{r:#}");
    assert_eq!(failed[0]["alias"], "a07.internal");
    assert!(
        failed[0]["why"].as_str().unwrap().contains("warm_timeout"),
        "{r:#}"
    );
    // Every alias answers with its v1 again.
    for a in names(10) {
        assert_eq!(
            answering(&daemon, &a).await,
            json!([format!("{a}-v1")]),
            "{a}"
        );
    }
    // The moved ones went back through a rollback operation each, newest first.
    let rolled: Vec<String> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "rolled_back")
        .map(|m| short(&m["alias"]).to_owned())
        .collect();
    assert!(rolled.len() >= 5, "the first batch moved five: {r:#}");
    let (status, history) = http(&daemon, "GET", "/v1/history?limit=1000", None, "").await;
    assert_eq!(status, 200);
    // The history is newest first: its reverse is the order the rollbacks started in.
    let mut starts: Vec<(String, u64)> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] == "started" && e["op_kind"] == "rollback")
        .map(|e| {
            (
                short(&e["alias"]).to_owned(),
                e["revision"].as_u64().unwrap(),
            )
        })
        .collect();
    starts.reverse();
    let order: Vec<&str> = starts.iter().map(|(a, _)| a.as_str()).collect();
    let mut newest_first: Vec<&str> = rolled.iter().map(String::as_str).collect();
    newest_first.reverse();
    assert_eq!(order, newest_first, "{history:#}");
    for (alias, revision) in &starts {
        let m = r["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| short(&m["alias"]) == alias.as_str())
            .unwrap();
        assert!(
            *revision > m["op"].as_u64().unwrap(),
            "{alias}: the rollback is a new revision"
        );
        assert_eq!(m["rollback_op"].as_u64(), Some(*revision), "{m}");
    }
}

/// With `pause`, the rollout stops once the batch with the failure ended: the next batch
/// stays pending until `resume`, which goes on to the end.
#[tokio::test]
async fn a_failure_with_pause_stops_after_the_batch_until_resumed() {
    let fixture = fixture(15, &[7]);
    let daemon = fixture.start();
    let r = start(
        &daemon,
        json!({"version": "v2", "aliases": names(15), "parallelism": 5,
               "failure_action": "pause", "warm_timeout": "1s"}),
    )
    .await;
    let id = r["id"].as_u64().unwrap();
    let r = wait_rollout(
        &daemon,
        id,
        Duration::from_secs(30),
        "paused with batch 2 ended",
        |r| {
            r["state"] == "paused"
                && members_of(r, 1)
                    .iter()
                    .all(|m| m["state"] == "completed" || m["state"] == "failed")
        },
    )
    .await;
    assert!(r["why"].as_str().unwrap().contains("1 of 15"), "{r:#}");
    assert_eq!(r["batch"], 2, "{r:#}");
    assert!(r.get("next_batch_at").is_none(), "{r:#}");
    for m in members_of(&r, 2) {
        assert_eq!(m["state"], "pending", "{m}");
        let a = short(&m["alias"]);
        assert_eq!(answering(&daemon, a).await, json!([format!("{a}-v1")]));
    }
    // Pausing again is refused; resume goes on with the last batch.
    let (status, body) = post(&daemon, &format!("/v1/rollouts/{id}/pause"), json!({})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(&daemon, &format!("/v1/rollouts/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let r = wait_rollout(&daemon, id, Duration::from_secs(30), "ended", |r| {
        r["state"] == "failed"
    })
    .await;
    for m in members_of(&r, 2) {
        assert_eq!(m["state"], "completed", "{m}");
    }
}

/// SIGKILL in the middle of a rollout: after the restart it goes on from where it was and
/// completes, each alias promoted once.
#[tokio::test]
async fn a_rollout_survives_kill_9_and_completes_after_the_restart() {
    let fixture = fixture(12, &[]);
    let daemon = fixture.start();
    let r = start(
        &daemon,
        json!({"version": "v2", "aliases": names(12), "parallelism": 3, "delay": "500ms"}),
    )
    .await;
    let id = r["id"].as_u64().unwrap();
    let before = wait_rollout(
        &daemon,
        id,
        Duration::from_secs(30),
        "in its second batch",
        |r| r["batch"].as_u64() >= Some(2),
    )
    .await;
    daemon.kill9();
    let daemon = fixture.start();
    let after = rollout(&daemon, id).await;
    assert!(
        after["batch"].as_u64() >= before["batch"].as_u64(),
        "{before:#}\n{after:#}"
    );
    for (b, a) in before["members"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["members"].as_array().unwrap())
    {
        if b["state"] == "completed" {
            assert_eq!(a["state"], "completed", "{a}");
        }
    }
    let r = wait_rollout(&daemon, id, Duration::from_secs(40), "completed", |r| {
        r["state"] == "completed"
    })
    .await;
    for (i, a) in names(12).iter().enumerate() {
        assert_eq!(answering(&daemon, a).await, json!([format!("{a}-v2")]));
        let (_, history) = http(
            &daemon,
            "GET",
            &format!("/v1/aliases/{a}/history"),
            None,
            "",
        )
        .await;
        let started = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["change"] == "started")
            .count();
        assert_eq!(started, 1, "{a} promoted once: {history:#}");
        assert_eq!(r["members"][i]["state"], "completed");
    }
}

/// Bad requests are refused with a 400 (or 404) naming the field, and nothing starts.
#[tokio::test]
async fn bad_rollout_requests_name_the_field() {
    let fixture = fixture(2, &[]);
    let daemon = fixture.start();
    for (body, status, field) in [
        (json!({"aliases": ["a00"]}), 400, "aliases"),
        (
            json!({"version": "v2", "aliases": ["a00"], "parallelism": 0}),
            400,
            "parallelism",
        ),
        (
            json!({"version": "v2", "aliases": ["a00"], "delay": "2days"}),
            400,
            "delay",
        ),
        (
            json!({"version": "v2", "aliases": ["a00"], "max_failure_ratio": 2}),
            400,
            "max_failure_ratio",
        ),
        (
            json!({"version": "v2", "aliases": ["nope"]}),
            404,
            "aliases[0]",
        ),
        (
            json!({"members": [{"alias": "a00", "to": "Bad Name"}]}),
            400,
            "members[0].to",
        ),
        (
            json!({"version": "v2", "aliases": ["a00"], "failure_action": "explode"}),
            400,
            "`pause`, `rollback`, `continue`", // serde names the words it takes
        ),
        (json!({}), 400, "members"),
        (
            json!({"version": "v2", "aliases": ["a00"], "steps": "bogus"}),
            400,
            "steps",
        ),
        (
            json!({"version": "v2", "aliases": ["a00"], "max_error_rate": 0.1}),
            400,
            "give `steps`",
        ),
    ] {
        let (got, reply) = post(&daemon, "/v1/rollouts", body.clone()).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains(field),
            "{body}: {reply}"
        );
    }
    let (status, body) = http(&daemon, "GET", "/v1/rollouts/7", None, "").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(&daemon, "POST", "/v1/rollouts", None, "{}").await;
    assert_eq!(status, 401, "{body}");
    // Weighted steps go to every member's promotion.
    let r = start(
        &daemon,
        json!({"version": "v2", "aliases": names(2), "parallelism": 2, "steps": "50%:1s,100%"}),
    )
    .await;
    let alias = http(&daemon, "GET", "/v1/aliases/a00", None, "").await.1;
    assert_eq!(
        alias["operation"]["steps"].as_array().map(Vec::len),
        Some(2),
        "{alias:#}"
    );
    let id = r["id"].as_u64().unwrap();
    wait_rollout(&daemon, id, Duration::from_secs(20), "completed", |r| {
        r["state"] == "completed"
    })
    .await;
}

/// `aliasctl rollout start --wait` prints each alias's change and exits 0 once the rollout
/// completed; `rollout status` shows it; a command that does not apply is one line and exit 1;
/// a failing rollout's `--wait` exits 3.
#[test]
fn aliasctl_rollout_starts_follows_and_shows_a_rollout() {
    use crate::support::{TOKEN, run_bin_within};
    const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");
    let fixture = fixture(4, &[3]);
    let daemon = fixture.start();
    let server = daemon.server_url();
    let env = [
        ("ALIASCTL_SERVER", server.as_str()),
        ("ALIASCTL_TOKEN", TOKEN),
    ];
    let run = |args: &[&str]| run_bin_within(ALIASCTL, args, &env, Duration::from_secs(60));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let start = run(&[
        "rollout",
        "start",
        "--version",
        "v2",
        "a00",
        "a01",
        "a02",
        "--parallelism",
        "2",
        "--delay",
        "100ms",
        "--wait",
    ]);
    let out = text(&start.stdout);
    assert_eq!(start.status.code(), Some(0), "{out}{}", text(&start.stderr));
    assert!(
        out.starts_with("rollout 1 running (3 aliases): batch 1/2, 1 pending, 2 running"),
        "{out}"
    );
    for a in ["a00", "a01", "a02"] {
        assert!(
            out.contains(&format!("rollout 1: {a}.internal completed")),
            "{out}"
        );
    }
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("rollout 1 completed"),
        "{out}"
    );

    let status = run(&["rollout", "status", "1"]);
    let shown = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let row = shown
        .lines()
        .find(|l| l.starts_with("a02.internal"))
        .expect(&shown);
    assert!(
        row.contains("a02-v2") && row.contains("completed"),
        "{shown}"
    );

    let pause = run(&["rollout", "pause", "1"]);
    assert_eq!(pause.status.code(), Some(1));
    assert!(
        text(&pause.stderr).contains("rollout 1 is completed; pause does not apply"),
        "{}",
        text(&pause.stderr)
    );

    let failing = run(&[
        "rollout",
        "start",
        "--to",
        "a03=a03-v2",
        "--warm-timeout",
        "200ms",
        "--failure-action",
        "rollback",
        "--wait",
    ]);
    let out = text(&failing.stdout);
    assert_eq!(
        failing.status.code(),
        Some(3),
        "{out}{}",
        text(&failing.stderr)
    );
    assert!(
        out.contains("a03.internal failed (batch 1): warm_timeout"),
        "{out}"
    );
    let list = run(&["rollout", "status"]);
    assert!(
        text(&list.stdout).starts_with("rollout 2 rolled_back"),
        "{}",
        text(&list.stdout)
    );

    let usage = run(&["rollout", "start", "a00"]);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage.stderr));
}

/// In a cluster: a rollout started through a follower is stored in etcd (`state/rollout/1`),
/// every node shows it, and after kill -9 of the leader mid-rollout the next leader carries it
/// on to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_next_leader_finishes_a_rollout_after_kill_9_of_the_leader() {
    use crate::etcd::{AliasdNode, EtcdCluster};
    use aliasd::api::dto::{RolloutRequest, RolloutState};
    use aliasd::client::Client;

    let etcd = EtcdCluster::start().await;
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let dirs: Vec<Fixture> = (0..3u8)
        .map(|i| {
            let ip = etcd.ip(11 + i);
            let mut config = ConfigText::new()
                .dns("listen", format!("[\"{ip}:0\"]"))
                .api_listen(format!("{ip}:0"))
                .section("[promotion]\nobserve = \"0s\"\nwarm_timeout = \"5s\"\ndrain_grace = \"0s\"\n");
            for a in 0..6 {
                config = config
                    .service(&format!("a{a:02}-v1"), [format!("10.7.{a}.1:80")])
                    .service(&format!("a{a:02}-v2"), [format!("10.7.{a}.2:80")])
                    .alias(&format!("a{a:02}"), [format!("a{a:02}-v1")]);
            }
            config
                .section(&format!(
                    "[cluster]\netcd = [{endpoints}]\nnode = \"n{i}\"\nadvertise = \"{ip}\"\nlease_ttl = \"2s\""
                ))
                .fixture()
        })
        .collect();
    let mut nodes: Vec<AliasdNode> = tokio::task::block_in_place(|| {
        dirs.iter()
            .map(|d| AliasdNode::start(&d.config(), &[]))
            .collect()
    });
    let client = |n: &AliasdNode| {
        Client::new(&n.server_url(), Some(crate::support::TOKEN.to_owned())).unwrap()
    };
    let leader = wait_until(Duration::from_secs(20), "a leader", || async {
        let status = client(&nodes[0]).cluster().await.ok()?;
        let name = status.leader?;
        name.strip_prefix('n')?.parse::<usize>().ok()
    })
    .await;
    let follower = (leader + 1) % 3;
    let r = client(&nodes[follower])
        .start_rollout(&RolloutRequest {
            version: Some("v2".into()),
            aliases: names(6),
            parallelism: Some(2),
            delay: Some("1s".into()),
            ..RolloutRequest::default()
        })
        .await
        .expect("started through a follower");
    assert_eq!(r.batches, 3);
    // Every node shows it; the leader is killed once the second batch ran.
    for n in &nodes {
        wait_until(
            Duration::from_secs(20),
            "the rollout on every node",
            || async { client(n).rollout(1).await.ok() },
        )
        .await;
    }
    wait_until(Duration::from_secs(20), "the second batch", || async {
        let r = client(&nodes[follower]).rollout(1).await.ok()?;
        (r.batch >= 2).then_some(())
    })
    .await;
    nodes[leader].kill9();
    let survivors: Vec<&AliasdNode> = nodes.iter().filter(|n| n.is_running()).collect();
    for n in &survivors {
        let r = wait_until(Duration::from_secs(30), "the rollout completed", || async {
            let r = client(n).rollout(1).await.ok()?;
            (r.state == RolloutState::Completed).then_some(r)
        })
        .await;
        assert!(
            r.members.iter().all(|m| m.state.as_str() == "completed"),
            "{r:#?}"
        );
        for a in names(6) {
            let alias = client(n).alias(&a).await.expect("alias");
            assert_eq!(alias.answering, [format!("{a}-v2")], "{a}");
        }
    }
}

/// Polls `probe` until it gives a value, or panics after `limit` saying `what` was awaited.
async fn wait_until<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    probe: impl Fn() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dashboard's Rollouts tab lists a rollout started after the page loaded and follows
/// each alias's state live from the events stream, to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_rollout_and_its_aliases_live() {
    use crate::browser::Browser;
    let fixture = fixture(4, &[]);
    let daemon = fixture.start();
    let browser = Browser::start(1280, 800).await;
    browser.goto(&format!("{}/ui", daemon.server_url())).await;
    browser
        .wait_text("#stream", "the events stream open", |t| t == "live")
        .await;
    browser.click("#tab-rollouts").await;
    browser
        .wait_text("#rollouts-summary", "no rollouts yet", |t| {
            t.starts_with("No rollouts yet")
        })
        .await;
    start(
        &daemon,
        json!({"version": "v2", "aliases": names(4), "parallelism": 2, "delay": "200ms"}),
    )
    .await;
    browser
        .wait_text("#rollouts", "the rollout running", |t| {
            t.contains("Rollout 1 running")
        })
        .await;
    browser
        .wait_text("#rollouts", "the rollout completed", |t| {
            t.contains("Rollout 1 completed")
        })
        .await;
    let states = browser
        .script(
            "return [...document.querySelectorAll('#rollouts tbody tr')].map((tr) => [tr.dataset.alias, tr.dataset.state, tr.cells[2].textContent])",
        )
        .await;
    assert_eq!(
        states,
        json!([
            ["a00.internal", "completed", "1"],
            ["a01.internal", "completed", "1"],
            ["a02.internal", "completed", "2"],
            ["a03.internal", "completed", "2"]
        ])
    );
}
