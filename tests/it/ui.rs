//! The dashboard (`GET /ui`) in a real browser against a real daemon: it says `loading` until it
//! has read the state, shows the aliases, asks for the token, plans and starts a promotion,
//! follows its phases live, and confirms, aborts and rolls back from the page; after a reload or
//! a restart of aliasd it still shows how the last operation ended, and the recent history. A
//! promotion in weighted steps shows its weight, its steps and a paused step's Confirm. The
//! Services view lists a container Docker discovery skipped; the Cluster view shows a single node
//! as its own leader. Also its headers over a real socket, without a browser.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::browser::Browser;
use crate::lab::Lab;
use crate::support::{
    Daemon, Fixture, StopOnDrop, TOKEN, TOKEN_NAME, alias, http, post, run_bin_within,
    spawn_backends, wait_for, wait_healthy,
};

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");

/// Gates long enough that a poll of the page every 100ms sees every phase: observe is given
/// from the page, the drain lasts the TTL window plus 3s.
const PROMOTION: &str =
    "[promotion]\nobserve = \"2s\"\nwarm_timeout = \"2m\"\ndrain_grace = \"3s\"\n";

/// Where the README's screenshots go: `ALIASD_SCREENSHOTS=docs cargo test --test it ui::`
/// refreshes `docs/dashboard.png`, `docs/dashboard-narrow.png`, `docs/dashboard-cluster.png` and
/// `docs/dashboard-steps.png`;
/// otherwise they go to the test's temporary directory.
fn screenshot_path(fixture: &Fixture, name: &str) -> std::path::PathBuf {
    match std::env::var_os("ALIASD_SCREENSHOTS") {
        Some(dir) => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(dir)
            .join(name),
        None => fixture.dir.path().join(name),
    }
}

/// Waits until `service`'s first endpoint has `health` in the API.
async fn wait_service_health(daemon: &Daemon, service: &str, health: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, s) = http(daemon, "GET", &format!("/v1/services/{service}"), None, "").await;
        if s["endpoints"][0]["health"] == health {
            return;
        }
        assert!(Instant::now() < deadline, "{service} not {health}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs in every page before the page's own script: notes each state of the top bar's badge and
/// of the alias list (how many cards, whether the loading line is there) as the page changes, in
/// `window.seen`, and the state at the `load` event in `window.atLoad`. A MutationObserver sees
/// the page after each task that changed it, which is every state the page can paint.
const RECORDER: &str = r#"(() => {
  window.seen = [];
  window.atLoad = null;
  const note = () => {
    // From when the views are parsed (the alias list and its loading line come before them).
    if (!document.getElementById('view-services')) return null;
    const now = {
      stream: document.getElementById('stream').textContent,
      cards: document.querySelectorAll('#aliases article.card').length,
      loading: document.querySelector('#aliases .loading') !== null,
    };
    const last = window.seen[window.seen.length - 1];
    if (!last || last.stream !== now.stream || last.cards !== now.cards || last.loading !== now.loading) {
      window.seen.push(now);
    }
    return now;
  };
  new MutationObserver(note).observe(document, { subtree: true, childList: true, characterData: true });
  window.addEventListener('load', () => { window.atLoad = note(); });
})();"#;

/// A browser with a `width` x `height` window on the dashboard of `daemon`, once the page
/// follows the events stream with the state read; see [`load_dashboard`].
async fn open_dashboard(daemon: &Daemon, width: u32, height: u32) -> Browser {
    let browser = Browser::start(width, height).await;
    browser.on_new_document(RECORDER).await;
    load_dashboard(&browser, daemon).await;
    browser
}

/// (Re)loads the dashboard and waits until it is `live`. On the way it must have said it was
/// loading: its first state shows the loading line and the `loading` badge, the badge is never
/// `live` while no alias is on the page (every daemon here has aliases), and at the `load` event
/// the page is not blank: it shows the loading line or the aliases.
async fn load_dashboard(browser: &Browser, daemon: &Daemon) {
    browser.goto(&format!("{}/ui", daemon.server_url())).await;
    browser
        .wait_text(
            "#stream",
            "the events stream open and the state read",
            |t| t == "live",
        )
        .await;
    let recorded = browser.script("return [window.seen, window.atLoad]").await;
    let (seen, at_load) = (
        recorded[0].as_array().expect("the recorder ran"),
        &recorded[1],
    );
    let first = &seen[0];
    assert!(
        first["loading"] == true && first["stream"] == "loading" && first["cards"] == 0,
        "the page did not start by saying it was loading: {recorded}"
    );
    for state in seen {
        if state["stream"] == "live" {
            assert!(
                state["cards"].as_u64() > Some(0) && state["loading"] == false,
                "`live` while the aliases were not read yet: {recorded}"
            );
        }
    }
    assert!(
        at_load["loading"] == true || at_load["cards"].as_u64() > Some(0),
        "a blank page at the load event: {recorded}"
    );
}

/// Every time on the page is in the one form the API and aliasctl write: RFC 3339 in UTC with
/// milliseconds, the same as the element's `datetime`. Returns how many there are.
async fn times_are_rfc3339(browser: &Browser) -> u64 {
    let odd = browser
        .script(
            r"const times = [...document.querySelectorAll('time')];
            const odd = times
              .filter((t) => !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(t.textContent) || t.textContent !== t.getAttribute('datetime'))
              .map((t) => t.textContent);
            return [times.length, odd];",
        )
        .await;
    assert_eq!(odd[1], json!([]), "times in another form: {odd}");
    odd[0].as_u64().unwrap()
}

/// A CSS selector inside the card of `web.internal`.
fn web(css: &str) -> String {
    format!(r#"article.card[data-alias="web.internal"] {css}"#)
}

/// Opens the promote dialog of `web`, fills it, shows the plan and checks it, then sends it.
async fn promote_from_the_page(browser: &Browser, to: &str, observe: &str, healthy_now: &str) {
    browser
        .click(&web(r#"button[data-action="promote"]"#))
        .await;
    browser
        .wait_text("#act-title", "the promote dialog", |t| {
            t == "Promote web.internal"
        })
        .await;
    browser.type_into("#f-to", to).await;
    browser.type_into("#f-observe", observe).await;
    browser.type_into("#f-min-healthy", "1").await;
    browser.click("#f-confirm").await;
    browser.type_into("#f-reason", "from the dashboard").await;
    browser.click("#act-plan").await;
    let plan = browser
        .wait_text("#act-plan-view", "the dry-run plan", |t| {
            t.contains(&format!("→ {to}")) && t.contains("draining")
        })
        .await;
    for part in [
        "warming",
        "mixed",
        "stable",
        healthy_now,
        "then an explicit confirm",
    ] {
        assert!(plan.contains(part), "the plan lacks `{part}`: {plan}");
    }
    browser.click("#act-send").await;
    wait_closed(browser).await;
}

async fn wait_closed(browser: &Browser) {
    let closed = Browser::poll(async || {
        let open = browser
            .script("return document.getElementById('action').open")
            .await;
        (open == json!(false)).then_some(())
    })
    .await;
    if closed.is_none() {
        let error = browser.text("#act-error").await.unwrap_or_default();
        panic!("the dialog stayed open: {error}");
    }
}

/// Opens the dialog of `action` on `web`, presses `button`, and sees the API's refusal in the
/// dialog, worded as the API words it.
async fn refused_on_the_page(browser: &Browser, action: &str, button: &str, words: &str) {
    browser
        .click(&web(&format!(r#"button[data-action="{action}"]"#)))
        .await;
    browser.click(button).await;
    browser
        .wait_text("#act-error", "the API's refusal on the page", |t| {
            t.contains(words)
        })
        .await;
    browser.click("#act-cancel").await;
}

/// Opens the dialog of a card action (confirm, abort) and sends it.
async fn act(browser: &Browser, action: &str, title: &str) {
    browser
        .click(&web(&format!(r#"button[data-action="{action}"]"#)))
        .await;
    browser
        .wait_text("#act-title", "the dialog", |t| t.starts_with(title))
        .await;
    browser.click("#act-send").await;
    wait_closed(browser).await;
}

async fn wait_current(browser: &Browser, phase: &str) {
    browser
        .wait_text(&web(".timeline li.current"), phase, |t| t == phase)
        .await;
}

/// `web` on web-v1 with web-v2 to promote to, and `api` on api-v1: each service one real
/// backend (on 127.0.63.`first`, the next and the one after), checked every 100ms, in a started
/// daemon that has seen them healthy.
struct Web {
    v1: Vec<aliasd::backend::Backend>,
    v2: Vec<aliasd::backend::Backend>,
    fixture: Fixture,
    daemon: Daemon,
}

impl Web {
    async fn start(first: u8, stop: &tokio_util::sync::CancellationToken) -> Self {
        let v1 = spawn_backends(63, first, 1, "web-v1", stop).await;
        let v2 = spawn_backends(63, first + 1, 1, "web-v2", stop).await;
        let api = spawn_backends(63, first + 2, 1, "api-v1", stop).await;
        let fixture = Fixture::for_backends_with(
            &[
                ("web-v1", &[v1[0].addr]),
                ("web-v2", &[v2[0].addr]),
                ("api-v1", &[api[0].addr]),
            ],
            &[("web", &["web-v1"]), ("api", &["api-v1"])],
            PROMOTION,
        );
        let daemon = fixture.start();
        wait_healthy(&daemon).await;
        Self {
            v1,
            v2,
            fixture,
            daemon,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_promotion_live_and_drives_every_action() {
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop = StopOnDrop(stop.clone());
    let Web {
        v1,
        v2,
        fixture,
        daemon,
    } = Web::start(1, &stop).await;
    let browser = open_dashboard(&daemon, 1280, 1000).await;

    // The demo's alias, as it stands, from the open reads.
    browser
        .wait_text(&web(".phase"), "web stable", |t| t == "stable")
        .await;
    browser
        .wait_text(&web(".answering"), "web answering v1", |t| {
            t.contains("answering web-v1")
        })
        .await;
    let v1_addr = v1[0].addr.to_string();
    browser
        .wait_text(
            &web(r#".member[data-service="web-v1"]"#),
            "v1's endpoint",
            |t| t.contains(&v1_addr) && t.contains("healthy"),
        )
        .await;
    browser
        .wait_text("#count", "both aliases counted", |t| t == "2 aliases")
        .await;

    // An action without a token is refused, and the page says so in the API's words; so is
    // one with a wrong token.
    let missing = "missing Authorization: Bearer <token> header";
    refused_on_the_page(&browser, "promote", "#act-plan", missing).await;
    browser
        .type_into("#token-input", "not-the-token-at-all")
        .await;
    browser.click("#token-save").await;
    refused_on_the_page(&browser, "link", "#act-send", "the token is not valid").await;
    assert_eq!(
        alias(&daemon).await["revision"],
        1,
        "a refused action changed nothing"
    );

    // The right token, asked for once and kept in this tab's sessionStorage only.
    browser.click("#token-forget").await;
    browser.type_into("#token-input", TOKEN).await;
    browser.click("#token-save").await;
    browser
        .wait_text("#token-set", "the token taken", |t| t.contains("token set"))
        .await;
    let kept = browser
        .script(
            "return [sessionStorage.getItem('aliasd.token'), localStorage.length, document.cookie]",
        )
        .await;
    assert_eq!(kept, json!([TOKEN, 0, ""]));

    // A promotion started from the page waits in warming while web-v2 is unhealthy, and the
    // page says why.
    v2[0].set_healthy(false);
    wait_service_health(&daemon, "web-v2", "unhealthy").await;
    promote_from_the_page(&browser, "web-v2", "3s", "0 of 1 endpoint healthy now").await;
    wait_current(&browser, "warming").await;
    browser
        .wait_text(&web(".waiting"), "why it waits in warming", |t| {
            t.contains("waiting for 1 healthy endpoint of web-v2: 0 of 1 healthy now")
        })
        .await;
    browser
        .wait_text(&web(".gates"), "the gates", |t| {
            t.contains("min healthy 1") && t.contains("confirm: required")
        })
        .await;
    assert_eq!(alias(&daemon).await["phase"], "warming");

    // web-v2 heals: mixed, both answer, the observation counts down, then the confirm gate.
    v2[0].set_healthy(true);
    wait_current(&browser, "mixed").await;
    browser
        .wait_text(&web(".answering"), "both answering", |t| {
            t.contains("answering web-v1, web-v2")
        })
        .await;
    let first = browser
        .wait_text(&web(".deadline .countdown"), "a countdown", |t| {
            t.starts_with("in ")
        })
        .await;
    browser
        .wait_text(&web(".timeline li.done"), "warming done", |t| {
            t == "warming"
        })
        .await;
    browser
        .wait_text(&web(".deadline .countdown"), "the countdown moving", |t| {
            t != first
        })
        .await;
    browser
        .wait_text(&web(".waiting"), "the confirm gate", |t| {
            t.contains("waiting for an explicit confirm")
        })
        .await;
    act(&browser, "confirm", "Confirm").await;
    wait_current(&browser, "draining").await;
    browser
        .wait_text(&web(".answering"), "v2 alone", |t| {
            t.contains("answering web-v2 ")
        })
        .await;
    wait_current(&browser, "stable").await;
    browser
        .wait_text(&web(".phase"), "web stable on v2", |t| t == "stable")
        .await;
    browser
        .wait_text(&web(".retired"), "v1 retired", |t| {
            t.contains("retired web-v1") && t.contains("safe to stop")
        })
        .await;
    assert_eq!(alias(&daemon).await["targets"], json!(["web-v2"]));

    // The history, with the diff of the answers at each revision.
    browser.click(&web("details.history summary")).await;
    let history = browser
        .wait_text(&web(".history-table"), "the history", |t| {
            t.contains("completed")
        })
        .await;
    for part in ["+web-v2", "−web-v1", "from the dashboard", "ci"] {
        assert!(
            history.contains(part),
            "the history lacks `{part}`: {history}"
        );
    }

    // Abort one: back to web-v1, held in mixed (observing, then the confirm gate), aborted
    // from the page. Meanwhile the README's picture, with the history open: taller, to hold it.
    promote_from_the_page(&browser, "web-v1", "1m", "1 of 1 endpoint healthy now").await;
    wait_current(&browser, "mixed").await;
    browser
        .wait_text(
            &web(".history-table"),
            "the new promotion in the history",
            |t| t.matches("started").count() == 2,
        )
        .await;
    browser.resize(1280, 1500).await;
    browser
        .screenshot(&screenshot_path(&fixture, "dashboard.png"))
        .await;
    browser.resize(1280, 1000).await;
    act(&browser, "abort", "Abort").await;
    browser
        .wait_text(&web(".op .outcome"), "the abort shown", |t| {
            t.starts_with("aborted")
        })
        .await;
    browser
        .wait_text(&web(".answering"), "v2 alone again", |t| {
            t.contains("answering web-v2 ")
        })
        .await;
    assert_eq!(alias(&daemon).await["targets"], json!(["web-v2"]));
    browser
        .wait_text(&web(".history-table"), "the abort in the history", |t| {
            t.contains("aborted")
        })
        .await;

    // A reload forgets nothing: the page reads how the last operation ended from the API, with
    // when and by whom, and fills Activity from the recent history, which it did not see live.
    let ended = alias(&daemon).await["last_operation"].clone();
    assert_eq!(ended["outcome"], "aborted", "{ended}");
    let ended_at = ended["ended_at"].as_str().unwrap().to_owned();
    load_dashboard(&browser, &daemon).await;
    let outcome = browser
        .wait_text(
            &web(".op-ended .outcome"),
            "the ended operation after a reload",
            |t| t.starts_with("aborted"),
        )
        .await;
    assert!(
        outcome.contains(&format!("{ended_at} by {TOKEN_NAME}")),
        "{outcome} (the API: {ended})"
    );
    let title = browser
        .text(&web(".op-ended .op-title"))
        .await
        .unwrap_or_default();
    assert!(
        title.starts_with("promote #")
            && title.contains("web-v2 → web-v1 by")
            && title.contains("from the dashboard"),
        "{title}"
    );
    // Aborted in mixed: draining was skipped.
    let skipped = browser.text(&web(".op-ended .timeline li.skipped")).await;
    assert_eq!(skipped.as_deref(), Some("draining"));
    browser.click("#tab-activity").await;
    let activity = browser
        .wait_text(
            "#activity",
            "the recent history in Activity after a reload",
            |t| t.contains("web.internal: aborted") && t.contains("web.internal: completed"),
        )
        .await;
    assert!(
        activity.contains(&format!("{ended_at} web.internal: aborted (stable)")),
        "{activity}"
    );
    // The history the page read comes newest first.
    let order: Vec<String> = serde_json::from_value(
        browser
            .script(
                "return [...document.querySelectorAll('#activity li')].map((li) => li.dataset.at)",
            )
            .await,
    )
    .unwrap();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{order:?}");
    browser.click("#tab-aliases").await;
    assert!(times_are_rfc3339(&browser).await > 0);
    // The history is closed after a reload; open it again for the rollback below.
    browser.click(&web("details.history summary")).await;
    browser
        .wait_text(&web(".history-table"), "the history again", |t| {
            t.contains("aborted")
        })
        .await;

    // Roll back to a chosen revision: the first one that answered with web-v1.
    let (_, entries) = http(&daemon, "GET", "/v1/aliases/web/history", None, "").await;
    let revision = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["targets"] == json!(["web-v1"]))
        .map(|e| e["revision"].as_u64().unwrap())
        .expect("a revision on web-v1");
    browser
        .click(&web(&format!(
            r#"tr[data-revision="{revision}"] button[data-action="rollback-to"]"#
        )))
        .await;
    browser
        .wait_text("#act-title", "the rollback dialog", |t| {
            t == "Roll back web.internal"
        })
        .await;
    let chosen = browser
        .script("return document.getElementById('f-revision').value")
        .await;
    assert_eq!(chosen, json!(revision.to_string()));
    browser.type_into("#f-observe", "0s").await;
    browser.click("#act-send").await;
    wait_closed(&browser).await;
    browser
        .wait_text(&web(".op-title"), "the rollback running", |t| {
            t.starts_with("rollback")
        })
        .await;
    wait_current(&browser, "stable").await;
    browser
        .wait_text(&web(".answering"), "back on v1", |t| {
            t.contains("answering web-v1 ")
        })
        .await;
    assert_eq!(alias(&daemon).await["targets"], json!(["web-v1"]));

    // The activity view: the events as they came.
    browser.click("#tab-activity").await;
    browser
        .wait_text("#activity", "the events listed", |t| {
            t.contains("web.internal: completed") && t.contains("web.internal: aborted")
        })
        .await;
    browser.click("#tab-aliases").await;

    // Readable with 200 more aliases: search and filter narrow the cards.
    for i in 0..200 {
        let (status, body) = http(
            &daemon,
            "PUT",
            &format!("/v1/aliases/bulk{i:03}"),
            Some(TOKEN),
            r#"{"targets": ["api-v1"]}"#,
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    browser
        .wait_text("#count", "every alias on the page", |t| t == "202 aliases")
        .await;
    browser.type_into("#search", "bulk123").await;
    browser
        .wait_text("#count", "the search", |t| t == "1 of 202 aliases")
        .await;
    browser.type_into("#search", "web-v").await;
    browser
        .wait_text("#count", "a search by service", |t| t == "1 of 202 aliases")
        .await;

    browser
        .click(r#"#phase-filter option[value="moving"]"#)
        .await;
    browser
        .wait_text("#count", "the phase filter", |t| t == "0 of 202 aliases")
        .await;
    browser.click(r#"#phase-filter option[value=""]"#).await;
    browser
        .wait_text("#count", "every phase again", |t| t == "1 of 202 aliases")
        .await;

    // The service view: every service, where it is defined, and the aliases that link it.
    browser.click("#tab-services").await;
    browser
        .wait_text(
            r#"#services tr[data-service="api-v1"]"#,
            "api-v1 listed",
            |t| {
                t.contains("config") && t.contains("api.internal") && t.contains("bulk123.internal")
            },
        )
        .await;
    browser
        .wait_text(
            r#"#services tr[data-service="web-v1"]"#,
            "web-v1 listed",
            |t| t.contains("web.internal") && t.contains(&v1_addr) && t.contains("healthy"),
        )
        .await;
    browser.click("#tab-aliases").await;

    // And on a narrow screen nothing runs off the side.
    browser.resize(390, 844).await;
    let fits = browser
        .script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(fits, json!(true), "the page is wider than a phone");
    browser
        .screenshot(&screenshot_path(&fixture, "dashboard-narrow.png"))
        .await;

    // The page ran under its CSP without a violation or any other error.
    let errors: Vec<_> = browser
        .console()
        .await
        .into_iter()
        // The refused requests above are logged as failed loads (source `network`): expected.
        .filter(|entry| entry["level"] == "SEVERE" && entry["source"] != "network")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// The text of each step's chip on `web`'s card, with its class: `["current state-paused",
/// "10%paused"]`.
async fn chips(browser: &Browser) -> serde_json::Value {
    browser
        .script(&format!(
            "return [...document.querySelectorAll('{}')].map((li) => [li.className, li.textContent])",
            web(".steps li")
        ))
        .await
}

/// Whether `web`'s card action `action` is enabled.
async fn enabled(browser: &Browser, action: &str) -> serde_json::Value {
    browser
        .script(&format!(
            r#"return !document.querySelector('{}').disabled"#,
            web(&format!("button[data-action=\"{action}\"]"))
        ))
        .await
}

/// The page shows the step's figures exactly when the API gives them: the proxy's requests of
/// the new version in the table, or else that there are none yet.
async fn figures_as_the_api_gives_them(browser: &Browser, daemon: &Daemon) {
    let figures = alias(daemon).await["step"]["figures"].clone();
    if figures.is_null() {
        browser
            .wait_text(&web(".figures-none"), "no figures yet", |t| {
                t.starts_with("No figures yet")
            })
            .await;
    } else {
        let requests = figures["new"]["requests"].to_string();
        browser
            .wait_text(
                &web(r#".figures-table tr[data-side="new"]"#),
                "the new version's figures",
                |t| t.contains(&requests),
            )
            .await;
    }
}

/// A promotion in weighted steps started from the page (the steps as text, with the presets
/// offered, and limits on the proxy's figures): the share of clients on each version as a bar,
/// the steps as chips (done, current with its state, to come), a paused step confirmed from
/// its own Confirm button, the next step holding with a countdown, and the end. Also on a
/// phone's width. Its screenshot is `docs/dashboard-steps.png` (see [`screenshot_path`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_promotion_in_weighted_steps() {
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop = StopOnDrop(stop.clone());
    let Web {
        fixture, daemon, ..
    } = Web::start(21, &stop).await;
    let browser = open_dashboard(&daemon, 1280, 900).await;
    browser.type_into("#token-input", TOKEN).await;
    browser.click("#token-save").await;

    // The promote dialog takes steps as text and offers the presets.
    browser
        .click(&web(r#"button[data-action="promote"]"#))
        .await;
    browser
        .wait_text("#act-title", "the promote dialog", |t| {
            t == "Promote web.internal"
        })
        .await;
    let presets = browser
        .script("return [...document.querySelectorAll('#step-presets option')].map((o) => o.value)")
        .await;
    assert_eq!(presets, json!(["canary10-5m", "linear10-1m"]));
    let steps = "10%:pause,50%:5s,100%";
    browser.type_into("#f-to", "web-v2").await;
    browser.type_into("#f-steps", steps).await;
    browser.type_into("#f-max-error-rate", "0.01").await;
    browser.type_into("#f-max-latency-ratio", "2").await;
    browser.type_into("#f-min-requests", "50").await;
    browser.type_into("#f-reason", "canary in steps").await;
    browser.click("#act-plan").await;
    let plan = browser
        .wait_text("#act-plan-view", "the plan with the steps", |t| {
            t.contains("until step 1 of 3: 10% of clients on web-v2")
        })
        .await;
    for part in [
        "then a confirm",
        "step 2 of 3: 50% of clients on web-v2",
        &format!("weighted steps {steps}"),
    ] {
        assert!(plan.contains(part), "the plan lacks `{part}`: {plan}");
    }
    browser.click("#act-send").await;
    wait_closed(&browser).await;
    let op = alias(&daemon).await["operation"].clone();
    assert_eq!(
        op["gates"],
        json!({"max_error_rate": 0.01, "max_latency_ratio": 2.0, "min_requests": 50}),
        "{op}"
    );

    // Step 1 in effect and paused: 10% of the clients on web-v2, shown as a bar, the steps as
    // chips, the limits, and a Confirm button on the step and among the card's actions.
    browser
        .wait_text(&web(".step-state"), "step 1 paused", |t| {
            t.starts_with("Step 1 of 3 · 10% of clients · paused since ") && t.ends_with("Confirm")
        })
        .await;
    let label = browser.text(&web(".weight-label")).await.unwrap();
    assert!(
        label.starts_with("10% on web-v2") && label.ends_with("90% on web-v1"),
        "{label}"
    );
    let bar = browser
        .script(&format!(
            "return [...document.querySelectorAll('{}')].map((s) => [s.className, s.textContent, s.getBoundingClientRect().width])",
            web(".split > span")
        ))
        .await;
    let part = |i: usize| {
        let p = &bar[i];
        (p[0].clone(), p[1].clone(), p[2].as_f64().unwrap())
    };
    let (new, old) = (part(0), part(1));
    assert_eq!(
        (&new.0, &new.1),
        (&json!("split-new"), &json!("10%")),
        "{bar}"
    );
    assert_eq!(
        (&old.0, &old.1),
        (&json!("split-old"), &json!("90%")),
        "{bar}"
    );
    assert!(
        (old.2 / new.2 - 9.0).abs() < 0.5,
        "the bar is not split 10/90: {bar}"
    );
    let now = alias(&daemon).await;
    let side = |name: &str| -> String {
        let endpoints: Vec<&str> = now["sides"][name]
            .as_array()
            .unwrap_or_else(|| panic!("no {name} side: {now}"))
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        endpoints.join(", ")
    };
    assert_eq!(
        browser.text(&web(".sides")).await.unwrap(),
        format!(
            "DNS answers the clients on web-v2 with {}; the others with {}",
            side("new"),
            side("old")
        )
    );
    assert_eq!(
        chips(&browser).await,
        json!([
            ["current state-paused", "10%paused"],
            ["todo", "50%5s"],
            ["todo", "100%no hold"]
        ])
    );
    let gates = browser.text(&web(".gates")).await.unwrap();
    assert!(
        gates.contains("error rate ≤ 1% · p99 ≤ 2× the old · judged from 50 requests")
            && !gates.contains("observe"),
        "{gates}"
    );
    browser
        .wait_text(&web(".waiting"), "why it waits", |t| {
            t == "in effect; paused until someone confirms, then step 2, 50% of clients"
        })
        .await;
    figures_as_the_api_gives_them(&browser, &daemon).await;
    assert_eq!(enabled(&browser, "confirm").await, json!(true));
    browser
        .screenshot(&screenshot_path(&fixture, "dashboard-steps.png"))
        .await;

    // On a phone's width nothing runs off the side.
    browser.resize(390, 844).await;
    let fits = browser
        .script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(fits, json!(true), "the page is wider than a phone");
    browser.resize(1280, 900).await;

    // Confirmed from the step's own button, through the same dialog and endpoint: step 2 takes
    // effect, then holds with a countdown; no confirm is wanted there.
    browser
        .click(&web(r#".step-state button[data-action="confirm-step"]"#))
        .await;
    let help = browser
        .wait_text("#act-help", "the confirm dialog for the step", |t| {
            t.starts_with("Ends the paused step")
        })
        .await;
    assert_eq!(
        help,
        "Ends the paused step 1 of 3 (10% of clients on web-v2); next: step 2, 50% of clients."
    );
    assert_eq!(
        browser.text("#act-title").await.as_deref(),
        Some("Confirm the promotion of web.internal")
    );
    browser.click("#act-send").await;
    wait_closed(&browser).await;
    browser
        .wait_text(&web(".weight-label"), "50% on web-v2", |t| {
            t.starts_with("50% on web-v2") && t.ends_with("50% on web-v1")
        })
        .await;
    browser
        .wait_text(
            &web(".step-state .countdown"),
            "the hold counting down",
            |t| t.starts_with("in "),
        )
        .await;
    let state = browser.text(&web(".step-state")).await.unwrap();
    assert!(
        state.starts_with("Step 2 of 3 · 50% of clients · holding until "),
        "{state}"
    );
    assert_eq!(
        chips(&browser).await,
        json!([
            ["done", "10%✓ pause"],
            ["current state-holding", "50%holding"],
            ["todo", "100%no hold"]
        ])
    );
    assert_eq!(enabled(&browser, "confirm").await, json!(false));

    // After the hold the old version drains (every step done, every client on web-v2), then
    // the promotion completes and the bar leaves the card.
    browser
        .wait_text(&web(".weight-label"), "100% on web-v2", |t| {
            t.starts_with("100% on web-v2")
        })
        .await;
    wait_current(&browser, "stable").await;
    browser
        .wait_text(&web(".op-ended .outcome"), "completed", |t| {
            t.starts_with("completed")
        })
        .await;
    let gone = browser
        .script(&format!(
            "return [document.querySelector('{}'), document.querySelector('{}')]",
            web(".weight"),
            web(".steps")
        ))
        .await;
    assert_eq!(gone, json!([null, null]));
    browser.click("#tab-activity").await;
    browser
        .wait_text("#activity", "the steps in Activity", |t| {
            t.contains("web.internal: in_effect (mixed)")
                && t.contains("web.internal: step (mixed)")
                && t.contains("web.internal: confirmed (mixed)")
        })
        .await;
    let errors: Vec<_> = browser
        .console()
        .await
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// When the stream breaks (aliasd restarts), the page says so, reconnects with backoff, reads
/// everything again and follows the new stream; how the last operation ended, and the recent
/// history, come back from the restarted aliasd, also into a reloaded page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reconnects_when_the_stream_breaks() {
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop = StopOnDrop(stop.clone());
    let v1 = spawn_backends(63, 11, 1, "web-v1", &stop).await;
    let v2 = spawn_backends(63, 12, 1, "web-v2", &stop).await;
    let fixture = Fixture::for_backends(
        &[("web-v1", &[v1[0].addr]), ("web-v2", &[v2[0].addr])],
        &[("web", &["web-v1"])],
    );
    // A fixed API port, so the restarted daemon is where the page left it.
    let config = std::fs::read_to_string(fixture.config()).unwrap();
    let fixed = format!(
        "[api]\nlisten = \"127.0.0.1:{}\"",
        crate::browser::free_port()
    );
    let moved = config.replace("[api]\nlisten = \"127.0.0.1:0\"", &fixed);
    assert_ne!(moved, config, "the fixture's [api] section moved");
    std::fs::write(fixture.config(), moved).unwrap();
    let daemon = fixture.start();
    let browser = open_dashboard(&daemon, 1024, 800).await;
    browser
        .wait_text(&web(".answering"), "web on v1", |t| {
            t.contains("answering web-v1 ")
        })
        .await;

    // An operation that ends before the restart, started and aborted through the API.
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "observe": "1m", "reason": "canary"}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    wait_current(&browser, "mixed").await;
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/abort",
        json!({"reason": "by hand"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let ended = wait_for(&daemon, Duration::from_secs(5), "the abort", |a| {
        a["last_operation"]["outcome"] == "aborted"
    })
    .await;
    let ended_at = ended["last_operation"]["ended_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let said = format!("aborted {ended_at} by {TOKEN_NAME} — by hand");
    browser
        .wait_text(&web(".op-ended .outcome"), "the abort", |t| t == said)
        .await;

    assert!(daemon.terminate().success());
    browser
        .wait_text("#stream", "the break shown", |t| {
            t.starts_with("reconnecting in")
        })
        .await;
    let daemon = fixture.start();
    browser
        .wait_text("#stream", "the stream open again", |t| t == "live")
        .await;
    // Read again from the restarted aliasd, which kept it in its state directory.
    assert_eq!(
        browser.text(&web(".op-ended .outcome")).await.as_deref(),
        Some(said.as_str())
    );
    let (status, body) = http(
        &daemon,
        "PUT",
        "/v1/aliases/web/targets",
        Some(TOKEN),
        r#"{"targets": ["web-v2"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    browser
        .wait_text(&web(".answering"), "the relink, from the new stream", |t| {
            t.contains("answering web-v2 ")
        })
        .await;

    // A fresh page on the restarted aliasd: the ended operation and the history are there.
    load_dashboard(&browser, &daemon).await;
    assert_eq!(
        browser.text(&web(".op-ended .outcome")).await.as_deref(),
        Some(said.as_str())
    );
    browser.click("#tab-activity").await;
    browser
        .wait_text(
            "#activity",
            "the history before and after the restart",
            |t| {
                t.contains(&format!("{ended_at} web.internal: aborted (stable)"))
                    && t.contains("web.internal: started")
                    && t.contains("web.internal: linked")
            },
        )
        .await;
}

/// A container Docker discovery skipped is listed in the Services view as `aliasctl services`
/// lists it, by name and short id with the label at fault (the page once printed the API's
/// container object there), with Docker's status and its time. A real container with a
/// misspelt label on the real Docker daemon; the lab removes it, its network and its image on
/// drop, even when the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_view_lists_the_containers_discovery_skipped() {
    let lab = Lab::new();
    let service = format!("{}service=web-v1", lab.prefix);
    let port = format!("{}port=8080", lab.prefix);
    let misspelt = format!("{}helth.path=/healthz", lab.prefix);
    let skipped = lab.run(
        "misspelt",
        &["--label", &service, "--label", &port, "--label", &misspelt],
        &["backend", "--listen", "0.0.0.0:8080", "--name", "web-v1"],
    );
    let fixture = lab.fixture(&[("web", &["web-v1"])], None, false, "");
    let daemon = fixture.start();
    let browser = open_dashboard(&daemon, 1280, 900).await;
    browser.click("#tab-services").await;
    let short_id = &skipped.id[..12];
    let problems = browser
        .wait_text("#problems", "the skipped container", |t| {
            t.contains(&skipped.name)
        })
        .await;
    let expected = format!(
        "{} ({short_id}): label {}helth.path is not one aliasd reads",
        skipped.name, lab.prefix
    );
    assert!(problems.starts_with(&expected), "{problems}");
    assert!(!problems.contains("[object Object]"), "{problems}");
    // The full id is on the short one, as in the endpoint tables.
    let title = browser
        .script("return document.querySelector('#problems li .mono').title")
        .await;
    assert_eq!(title, json!(skipped.id));
    // Word for word what aliasctl prints for it.
    let out = run_bin_within(
        ALIASCTL,
        &["--server", &daemon.server_url(), "services"],
        &[],
        Duration::from_secs(10),
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.lines().any(|l| l.trim() == problems.trim()),
        "the page says {problems:?}; aliasctl printed:\n{printed}"
    );
    let (_, services) = http(&daemon, "GET", "/v1/services", None, "").await;
    let docker = browser
        .wait_text("#docker", "Docker's status", |t| t.contains("connected to"))
        .await;
    let since = services["docker"]["since"].as_str().unwrap();
    assert!(docker.contains(&format!("since {since}")), "{docker}");
    assert!(times_are_rfc3339(&browser).await > 0);
}

/// The Cluster view of a single node: one row, this node, as the leader with its definitions
/// the same, no etcd, no problems; the row says what `aliasctl cluster` prints for it. Its
/// screenshot is `docs/dashboard-cluster.png` (see [`screenshot_path`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_view_shows_a_single_node_as_its_leader() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let browser = open_dashboard(&daemon, 1280, 600).await;
    browser.click("#tab-cluster").await;
    let row = browser
        .wait_text("#cluster tbody", "this node in the table", |t| {
            t.contains(&host)
        })
        .await;
    let cells = browser
        .script(
            "return [...document.querySelectorAll('#cluster tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent))",
        )
        .await;
    let rows = cells.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{cells}");
    let api = daemon.api.to_string();
    assert_eq!(
        rows[0].as_array().unwrap()[..6],
        [
            json!(format!("{host} (this node)")),
            json!(api),
            json!("leader"),
            json!("0"),
            json!("0"),
            json!("same")
        ],
        "{row}"
    );
    let summary = browser.text("#cluster-summary").await.unwrap();
    assert_eq!(
        summary,
        format!(
            "A single node (no [cluster]: the local journal, no etcd). This page is served by {host}; the leader is {host}."
        )
    );
    assert_eq!(
        browser.text("#etcd").await.unwrap(),
        "etcd: not used (a single node)."
    );
    assert_eq!(browser.text("#cluster-problems").await.unwrap(), "");
    assert!(times_are_rfc3339(&browser).await > 0);
    // The same row as aliasctl prints, started time included.
    let out = run_bin_within(
        ALIASCTL,
        &["--server", &daemon.server_url(), "cluster"],
        &[],
        Duration::from_secs(10),
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let line: Vec<&str> = printed.lines().nth(1).unwrap().split_whitespace().collect();
    let page: Vec<String> = rows[0]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(line[1..], page[..], "aliasctl printed:\n{printed}");
    browser
        .screenshot(&screenshot_path(&fixture, "dashboard-cluster.png"))
        .await;
}

/// The page and its assets over a real socket: their types and the security headers.
#[tokio::test]
async fn the_dashboard_is_served_with_its_security_headers() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let response = client
            .get(format!("{}{path}", daemon.server_url()).parse().unwrap())
            .await
            .expect("the api answers");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("{path} has no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty(), "{path}");
    }
}
