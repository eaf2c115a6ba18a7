//! `aliasctl` promote, confirm, abort, rollback, history and watch, end to end: the real
//! `aliasctl` and `aliasd` binaries, and real HTTP backends in this process whose health the test
//! switches. Each test has its own loopback addresses for its backends.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Output;
use std::time::{Duration, Instant};

use aliasd::api::dto::{AliasDto, Change, Health, HistoryDto, OpKind, Phase, PlanDto};
use aliasd::backend::{self, Backend};
use aliasd::client::Client;
use tokio_util::sync::CancellationToken;

use crate::support::{Daemon, Fixture, StopOnDrop, TOKEN, run_bin_within};

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");
/// The longest any one aliasctl run may take here.
const RUN_LIMIT: Duration = Duration::from_secs(25);

/// A daemon serving `web` (linked to `web-v1`) with one real backend for each of `web-v1` and
/// `web-v2`.
struct Setup {
    daemon: Daemon,
    v1: Backend,
    v2: Backend,
    _fixture: Fixture,
    _stop: StopOnDrop,
}

impl Setup {
    /// Backends on 127.0.0.`v1` and 127.0.0.`v2` (port 0), then aliasd for them, and waits until
    /// the health checks see `web-v1` healthy. `web-v2` fails its checks from the start unless
    /// `v2_healthy`.
    async fn new(v1: u8, v2: u8, v2_healthy: bool) -> Self {
        let stop = CancellationToken::new();
        let spawn = async |last: u8, name: &str| {
            let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0));
            backend::spawn(addr, name, stop.clone())
                .await
                .expect("backend binds")
        };
        let v1 = spawn(v1, "web-v1").await;
        let v2 = spawn(v2, "web-v2").await;
        v2.set_healthy(v2_healthy);
        let fixture = Fixture::for_backends(
            &[("web-v1", &[v1.addr]), ("web-v2", &[v2.addr])],
            &[("web", &["web-v1"])],
        );
        let daemon = fixture.start();
        let setup = Self {
            daemon,
            v1,
            v2,
            _fixture: fixture,
            _stop: StopOnDrop(stop),
        };
        setup
            .wait_for("web-v1 healthy", |a| {
                a.members
                    .iter()
                    .all(|m| m.endpoints.iter().all(|e| e.health == Health::Healthy))
            })
            .await;
        setup
    }

    fn client(&self) -> Client {
        self.daemon.client()
    }

    async fn alias(&self) -> AliasDto {
        tokio::time::timeout(Duration::from_secs(5), self.client().alias("web"))
            .await
            .expect("the API answers in time")
            .expect("GET the alias")
    }

    /// Polls the alias until `done` holds; panics after 15 s.
    async fn wait_for(&self, what: &str, done: impl Fn(&AliasDto) -> bool) -> AliasDto {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let a = self.alias().await;
            if done(&a) {
                return a;
            }
            assert!(Instant::now() < deadline, "not {what} in 15s: {a:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs aliasctl against this daemon with the test token, off the async threads so the
    /// backends keep serving meanwhile.
    async fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_in_background(args).await.expect("aliasctl ran")
    }

    /// Starts aliasctl with `args` and returns at once; await the handle for its output.
    fn ctl_in_background(&self, args: &[&str]) -> tokio::task::JoinHandle<Output> {
        let server = self.daemon.server_url();
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_bin_within(
                ALIASCTL,
                &args,
                &[
                    ("ALIASCTL_SERVER", server.as_str()),
                    ("ALIASCTL_TOKEN", TOKEN),
                ],
                RUN_LIMIT,
            )
        })
    }

    async fn history(&self) -> Vec<HistoryDto> {
        let out = self.ctl(&["history", "web", "--json"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        serde_json::from_slice(&out.stdout).expect("history --json is a list of entries")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
}

/// Asserts that `words` appear in `haystack` in this order (each after the previous one).
fn assert_in_order(haystack: &str, words: &[&str]) {
    let mut from = 0;
    for word in words {
        match haystack[from..].find(word) {
            Some(i) => from += i + word.len(),
            None => panic!("{word:?} missing after byte {from} (order {words:?}) in:\n{haystack}"),
        }
    }
}

fn changes(history: &[HistoryDto]) -> Vec<&str> {
    history.iter().map(|e| e.change.as_str()).collect()
}

fn assert_back_on_v1(a: &AliasDto) {
    assert_eq!(a.phase, Phase::Stable, "{a:#?}");
    assert_eq!(a.targets, ["web-v1"], "{a:#?}");
    assert_eq!(a.answering, ["web-v1"], "{a:#?}");
    assert!(a.operation.is_none(), "{a:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_wait_prints_every_phase_and_exits_0_when_completed() {
    let setup = Setup::new(41, 42, true).await;
    let out = setup
        .ctl(&[
            "promote",
            "web",
            "--to",
            "web-v2",
            "--reason",
            "release 2",
            "--wait",
            "--timeout",
            "20s",
        ])
        .await;
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert_in_order(
        &stdout,
        &[
            "web.internal: promotion",
            "started: web-v1 → web-v2",
            "web.internal: warming (waiting for 1 healthy endpoint of web-v2",
            "web.internal: mixed: answering web-v1+web-v2",
            "web.internal: draining until ",
            "web.internal: completed: web-v1 is safe to stop since ",
        ],
    );
    assert!(out.stderr.is_empty(), "{}", show(&out));

    let json = setup.ctl(&["--json", "status", "web"]).await;
    assert_exit(&json, 0);
    let a: AliasDto = serde_json::from_slice(&json.stdout).expect("status --json");
    assert_eq!(a.phase, Phase::Stable);
    assert_eq!(a.targets, ["web-v2"]);
    assert!(a.operation.is_none());
    let retired = a.retired.expect("web-v1 is retired");
    assert_eq!(retired.services, ["web-v1"]);
    assert!(retired.safe_to_stop, "{retired:?}");

    let detail = setup.ctl(&["status", "web"]).await;
    assert_exit(&detail, 0);
    let detail = text(&detail.stdout);
    assert!(detail.contains("phase:      stable"), "{detail}");
    assert!(
        detail.contains("retired:    web-v1 safe to stop since "),
        "{detail}"
    );
    assert!(detail.contains("web-v2 (active, answering)"), "{detail}");
    assert!(
        detail.contains(&format!("{}  healthy", setup.v2.addr)),
        "{detail}"
    );

    let history = setup.history().await;
    let last = history.last().unwrap();
    assert_eq!(last.change, Change::Completed);
    let started = history
        .iter()
        .find(|e| e.change == Change::Started)
        .unwrap();
    assert_eq!(started.reason.as_deref(), Some("release 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_v2_times_out_warming_and_exits_3() {
    let setup = Setup::new(43, 44, false).await;
    let out = setup
        .ctl(&[
            "promote",
            "web",
            "--to",
            "web-v2",
            "--warm-timeout",
            "1s",
            "--wait",
            "--timeout",
            "20s",
        ])
        .await;
    assert_exit(&out, 3);
    let stdout = text(&out.stdout);
    assert_in_order(
        &stdout,
        &[
            "web.internal: warming",
            "web.internal: warm_timeout: web-v2 had 0 healthy endpoints of 1 needed",
            "answering web-v1 again",
        ],
    );
    assert!(!stdout.contains("mixed"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ended with warm_timeout: web-v2 had 0 healthy"),
        "{stderr}"
    );
    assert_back_on_v1(&setup.alias().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_failing_while_mixed_rolls_back_and_exits_3() {
    let setup = Setup::new(45, 46, true).await;
    let run = setup.ctl_in_background(&[
        "promote",
        "web",
        "--to",
        "web-v2",
        "--observe",
        "5s",
        "--wait",
        "--timeout",
        "20s",
    ]);
    setup.wait_for("mixed", |a| a.phase == Phase::Mixed).await;
    setup.v2.set_healthy(false);
    let out = run.await.expect("aliasctl ran");
    assert_exit(&out, 3);
    let stdout = text(&out.stdout);
    assert_in_order(
        &stdout,
        &[
            "web.internal: warming",
            "web.internal: mixed",
            "web.internal: auto_rollback: web-v2 turned unhealthy",
            "answering web-v1 again",
        ],
    );
    assert!(!stdout.contains("draining"), "{stdout}");
    let history = setup.history().await;
    let rolled_back = history.last().unwrap();
    assert_eq!(rolled_back.change, Change::AutoRollback);
    assert_eq!(
        rolled_back.actor, "aliasd",
        "aliasd decided it, not the token"
    );
    assert!(
        text(&out.stderr).contains("ended with auto_rollback"),
        "{}",
        show(&out)
    );
    let a = setup.alias().await;
    assert_back_on_v1(&a);
    assert_eq!(a.retired.expect("web-v2 retired").services, ["web-v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_gate_outlasts_the_timeout_then_confirm_finishes_it() {
    let setup = Setup::new(47, 48, true).await;
    let out = setup
        .ctl(&[
            "promote",
            "web",
            "--to",
            "web-v2",
            "--confirm-gate",
            "--wait",
            "--timeout",
            "1s",
        ])
        .await;
    assert_exit(&out, 4);
    let stdout = text(&out.stdout);
    assert_in_order(
        &stdout,
        &[
            "web.internal: warming",
            "web.internal: mixed",
            "then waiting for `aliasctl confirm web.internal`",
            "web.internal: timed out after 1s: phase mixed",
        ],
    );
    assert!(
        text(&out.stderr).contains("timed out after 1s waiting for promotion"),
        "{}",
        show(&out)
    );
    let a = setup.alias().await;
    assert_eq!(a.phase, Phase::Mixed, "the promotion goes on: {a:#?}");
    let op = a.operation.expect("an operation");
    assert!(op.confirm && !op.confirmed, "{op:?}");

    let status = setup.ctl(&["status", "web"]).await;
    assert_exit(&status, 0);
    let detail = text(&status.stdout);
    assert!(
        detail.contains(&format!(
            "operation:  promotion {}: web-v1 → web-v2, by ci",
            op.id
        )),
        "{detail}"
    );
    assert!(detail.contains("confirm needed, not given yet"), "{detail}");
    assert!(detail.contains("web-v2 (incoming, answering)"), "{detail}");
    assert!(
        detail.contains(&format!("{}  healthy", setup.v1.addr)),
        "{detail}"
    );

    let confirm = setup
        .ctl(&["confirm", "web", "--reason", "looks good"])
        .await;
    assert_exit(&confirm, 0);
    assert!(
        text(&confirm.stdout).starts_with("web.internal: confirmed; phase draining"),
        "{}",
        show(&confirm)
    );
    setup
        .wait_for("stable on web-v2", |a| {
            a.phase == Phase::Stable && a.targets == ["web-v2"]
        })
        .await;

    let history = setup.history().await;
    assert_eq!(
        changes(&history),
        [
            "linked",
            "started",
            "mixed",
            "confirmed",
            "draining",
            "completed"
        ]
    );
    let confirmed = &history[3];
    assert_eq!(confirmed.reason.as_deref(), Some("looks good"));
    assert_eq!(confirmed.actor, "ci");
    assert!(
        history[1..].iter().all(|e| e.op == Some(op.id)),
        "{history:#?}"
    );

    let table = setup.ctl(&["history", "web"]).await;
    assert_exit(&table, 0);
    let table = text(&table.stdout);
    let header = table.lines().next().unwrap();
    assert_in_order(
        header,
        &[
            "REV",
            "TIME",
            "CHANGE",
            "OP",
            "PHASE",
            "ANSWERING",
            "ACTOR",
            "REASON",
        ],
    );
    assert_in_order(
        &table,
        &[
            "linked",
            "started",
            "mixed",
            "confirmed",
            "looks good",
            "draining",
            "completed",
        ],
    );
    assert_eq!(table.lines().count(), 7, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_promote_exits_0_and_a_dry_run_changes_nothing() {
    let setup = Setup::new(49, 50, true).await;
    let before = setup.alias().await;

    let noop = setup
        .ctl(&[
            "promote",
            "web",
            "--to",
            "web-v1",
            "--wait",
            "--timeout",
            "5s",
        ])
        .await;
    assert_exit(&noop, 0);
    assert_eq!(
        text(&noop.stdout),
        "web.internal: already answers with web-v1: nothing had to change\n",
        "{}",
        show(&noop)
    );

    let plan = setup
        .ctl(&["promote", "web", "--to", "web-v2", "--dry-run"])
        .await;
    assert_exit(&plan, 0);
    let stdout = text(&plan.stdout);
    assert!(
        stdout.starts_with("plan for web.internal: web-v1 → web-v2 (dry run: nothing was changed)"),
        "{stdout}"
    );
    assert_in_order(
        &stdout,
        &[
            "STEP",
            "PHASE",
            "ANSWERING",
            "UNTIL",
            "1",
            "warming",
            "2",
            "mixed",
            "3",
            "draining",
            "4",
            "stable",
        ],
    );
    assert!(stdout.contains("web-v1,web-v2"), "{stdout}");

    let json = setup
        .ctl(&["--json", "promote", "web", "--to", "web-v2", "--dry-run"])
        .await;
    assert_exit(&json, 0);
    let plan: PlanDto = serde_json::from_slice(&json.stdout).expect("PlanDto");
    assert!(!plan.noop);
    assert_eq!(
        (plan.from, plan.to),
        (vec!["web-v1".into()], vec!["web-v2".into()])
    );
    assert_eq!(plan.steps.len(), 4);

    let after = setup.alias().await;
    assert_eq!(
        after.revision, before.revision,
        "a dry run changed the alias"
    );
    assert_eq!(setup.history().await.len(), 1);
    assert_back_on_v1(&after);

    // A dry run cannot be waited for: a usage error.
    let usage = setup
        .ctl(&["promote", "web", "--to", "web-v2", "--dry-run", "--wait"])
        .await;
    assert_exit(&usage, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_promote_is_refused_and_abort_returns_to_v1() {
    let setup = Setup::new(51, 52, true).await;
    let first = setup
        .ctl(&["promote", "web", "--to", "web-v2", "--confirm-gate"])
        .await;
    assert_exit(&first, 0);
    let stdout = text(&first.stdout);
    assert!(
        stdout.starts_with("web.internal: promotion ")
            && stdout.contains("started: web-v1 → web-v2"),
        "{stdout}"
    );
    let op = setup.alias().await.operation.expect("running").id;

    let second = setup
        .ctl(&[
            "promote",
            "web",
            "--to",
            "web-v2",
            "--wait",
            "--timeout",
            "5s",
        ])
        .await;
    assert_exit(&second, 1);
    let stderr = text(&second.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("aliasctl: error: "), "{stderr}");
    assert!(
        stderr.contains(&format!("promotion {op} of web-v2 is running"))
            && stderr.contains("HTTP 409"),
        "{stderr}"
    );
    assert!(second.stdout.is_empty(), "{}", show(&second));

    let abort = setup
        .ctl(&["abort", "web", "--reason", "changed my mind"])
        .await;
    assert_exit(&abort, 0);
    assert!(
        text(&abort.stdout).starts_with("web.internal: aborted; phase stable, answering web-v1"),
        "{}",
        show(&abort)
    );
    assert_back_on_v1(&setup.alias().await);
    let history = setup.history().await;
    let last = history.last().unwrap();
    assert_eq!(
        (last.change.as_str(), last.reason.as_deref(), last.op),
        ("aborted", Some("changed my mind"), Some(op))
    );

    // Nothing runs any more: confirm and abort are refused.
    for command in ["abort", "confirm"] {
        let out = setup.ctl(&[command, "web"]).await;
        assert_exit(&out, 1);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("no promotion or rollback is running") && stderr.contains("HTTP 409"),
            "{command}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_wait_after_a_completed_promotion_returns_to_v1() {
    let setup = Setup::new(53, 54, true).await;
    let promote = setup
        .ctl(&[
            "promote",
            "web",
            "--to",
            "web-v2",
            "--wait",
            "--timeout",
            "20s",
        ])
        .await;
    assert_exit(&promote, 0);

    let rollback = setup
        .ctl(&[
            "rollback",
            "web",
            "--reason",
            "bad release",
            "--wait",
            "--timeout",
            "20s",
        ])
        .await;
    assert_exit(&rollback, 0);
    assert_in_order(
        &text(&rollback.stdout),
        &[
            "web.internal: rollback",
            "started: web-v2 → web-v1",
            "web.internal: warming",
            "web.internal: mixed",
            "web.internal: draining until ",
            "web.internal: completed: web-v2 is safe to stop since ",
        ],
    );
    let a = setup.alias().await;
    assert_back_on_v1(&a);
    assert_eq!(a.retired.expect("web-v2 retired").services, ["web-v2"]);

    // The history says which changes were the rollback's, and who made each: the operator
    // started both operations, aliasd moved them on.
    let history = setup.history().await;
    let rows: Vec<(&str, Option<&str>, &str)> = history
        .iter()
        .filter(|e| e.op.is_some())
        .map(|e| {
            (
                e.change.as_str(),
                e.op_kind.map(OpKind::as_str),
                e.actor.as_str(),
            )
        })
        .collect();
    let op = |kind| {
        [
            ("started", Some(kind), "ci"),
            ("mixed", Some(kind), "aliasd"),
            ("draining", Some(kind), "aliasd"),
            ("completed", Some(kind), "aliasd"),
        ]
    };
    assert_eq!(
        rows,
        [op("promote"), op("rollback")].concat(),
        "{history:#?}"
    );
    let rollback_id = history
        .iter()
        .rev()
        .find(|e| e.change == Change::Started)
        .unwrap()
        .revision;
    let table = text(&setup.ctl(&["history", "web"]).await.stdout);
    let rollback_rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(&format!("rollback {rollback_id} ")))
        .collect();
    assert_eq!(rollback_rows.len(), 4, "{table}");
    assert!(rollback_rows[0].contains("started") && rollback_rows[0].contains("bad release"));
    assert!(rollback_rows[3].contains("completed"), "{table}");

    // --to names a revision of the history: the first one had web-v1 too, so nothing to do.
    let again = setup
        .ctl(&["rollback", "web", "--to", "1", "--wait", "--timeout", "5s"])
        .await;
    assert_exit(&again, 0);
    assert!(
        text(&again.stdout).contains("nothing had to change"),
        "{}",
        show(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_until_stable_prints_plain_lines_and_exits_0() {
    let setup = Setup::new(55, 56, true).await;
    let promote = setup
        .ctl(&["promote", "web", "--to", "web-v2", "--observe", "2s"])
        .await;
    assert_exit(&promote, 0);

    let watch = setup
        .ctl(&["watch", "web", "--until-stable", "--timeout", "20s"])
        .await;
    assert_exit(&watch, 0);
    let stdout = text(&watch.stdout);
    assert!(
        !stdout.contains('\r') && !stdout.contains('\x1b'),
        "{stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "{stdout}");
    assert!(
        lines[0].contains("web.internal mixed") || lines[0].contains("web.internal warming"),
        "{stdout}"
    );
    assert!(lines[0].contains("web-v2 incoming"), "{stdout}");
    assert_in_order(&stdout, &["draining", "[web.internal: completed"]);
    let last = lines.last().unwrap();
    assert!(
        last.contains("web.internal stable")
            && last.contains("answering web-v2")
            && last.contains("retired web-v1 safe to stop since"),
        "{stdout}"
    );

    // Already stable: it says so and ends at once.
    let stable = setup
        .ctl(&["watch", "web", "--until-stable", "--timeout", "5s"])
        .await;
    assert_exit(&stable, 0);
    assert_eq!(text(&stable.stdout).lines().count(), 1, "{}", show(&stable));

    // Without --until-stable it runs until stopped; --timeout stops it with 4.
    let timed = setup.ctl(&["watch", "web", "--timeout", "1s"]).await;
    assert_exit(&timed, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_aliasd_while_waiting_exits_1_with_one_line() {
    let setup = Setup::new(57, 58, true).await;
    let run = setup.ctl_in_background(&[
        "promote",
        "web",
        "--to",
        "web-v2",
        "--observe",
        "20s",
        "--wait",
        "--timeout",
        "20s",
    ]);
    setup.wait_for("mixed", |a| a.phase == Phase::Mixed).await;
    // Give aliasctl the time to print the mixed change, then take the daemon away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let Setup {
        daemon,
        _fixture,
        _stop,
        ..
    } = setup;
    daemon.kill9();
    let out = run.await.expect("aliasctl ran");
    assert_exit(&out, 1);
    assert!(
        text(&out.stdout).contains("web.internal: mixed"),
        "{}",
        show(&out)
    );
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("aliasctl: error: lost track of promotion ")
            && stderr.contains("the history cannot be read")
            && stderr.contains("cannot reach aliasd"),
        "{stderr}"
    );
}
