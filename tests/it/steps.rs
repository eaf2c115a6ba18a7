//! Weighted steps through the API and `aliasctl`: the weight and step shown, a paused step that
//! waits for a confirm, holds counted from when the weight took effect, durability across
//! kill -9, and the errors bad steps get.

use std::time::Duration;

use serde_json::json;

use crate::fixtures::ConfigText;
use crate::support::{Fixture, alias, post, run_bin, wait_for};

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");

/// `web` on web-v1 (two endpoints) with web-v2 (one) to promote to; TTLs of 1 s.
fn fixture() -> Fixture {
    ConfigText::new()
        .service("web-v1", ["127.0.0.11:8080", "127.0.0.12:8080"])
        .service("web-v2", ["127.0.0.21:8081"])
        .alias("web", ["web-v1"])
        .section("[promotion]\ndrain_grace = \"0s\"")
        .fixture()
}

fn kinds(history: &serde_json::Value) -> Vec<String> {
    history["entries"]
        .as_array()
        .or_else(|| history.as_array())
        .expect("history entries")
        .iter()
        .map(|e| e["change"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_paused_step_waits_for_a_confirm_across_kill_9_and_the_promotion_completes() {
    let fixture = fixture();
    let daemon = fixture.start();
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "steps": [{"weight": 10, "pause": true}, {"weight": 50, "hold": "2s"}, {"weight": 100}]}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let op = &reply["alias"]["operation"];
    assert_eq!(op["steps"][1], json!({"weight": 50, "hold": "2s"}), "{op}");
    let paused = wait_for(&daemon, Duration::from_secs(10), "step 1 in effect", |a| {
        a["weight"] == 10 && a["step"]["effective_at"].is_string()
    })
    .await;
    assert_eq!(paused["phase"], "mixed");
    assert_eq!(paused["step"]["number"], 1);
    assert_eq!(paused["step"]["of"], 3);
    assert_eq!(paused["step"]["pause"], true);
    // In effect only once the answers from before it expired: a TTL (1 s) after it began.
    let since = paused["step"]["since"].as_str().unwrap();
    let effective = paused["step"]["effective_at"].as_str().unwrap();
    assert!(effective > since, "{since} .. {effective}");

    let server = daemon.server_url();
    let status_text = run_bin(ALIASCTL, &["--server", &server, "status", "web"], &[]);
    let text = String::from_utf8_lossy(&status_text.stdout);
    assert!(
        text.contains("weight 10% (step 1 of 3, paused: needs a confirm)")
            && text.contains("[10%:pause] -> 50%:2s -> 100%"),
        "{text}"
    );

    // Which version a client (or a resolver, for everyone behind it) gets, and what.
    let mut sides = std::collections::BTreeMap::new();
    for last in 1..=60u8 {
        let path = format!("/v1/aliases/web?client=127.0.3.{last}");
        let (status, a) = crate::support::http(&daemon, "GET", &path, None, "").await;
        assert_eq!(status, 200, "{a}");
        let client = &a["client"];
        let bucket = client["bucket"].as_u64().unwrap();
        let side = client["side"].as_str().unwrap().to_owned();
        assert_eq!(side == "new", bucket < 1000, "{client}");
        let want = if side == "new" {
            "127.0.0.21:8081"
        } else {
            "127.0.0.11:8080"
        };
        assert!(client["endpoints"][0].as_str().unwrap() == want, "{client}");
        *sides.entry(side).or_insert(0) += 1;
    }
    assert!(sides.get("old").copied().unwrap_or(0) > 30, "{sides:?}");
    assert_eq!(paused["sides"]["new"], json!(["127.0.0.21:8081"]));
    let (status, a) =
        crate::support::http(&daemon, "GET", "/v1/aliases/web?client=x", None, "").await;
    assert_eq!(status, 400, "{a}");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("`x` is not an IP address"),
        "{a}"
    );

    // A paused step stays paused across kill -9, where it was.
    daemon.kill9();
    let daemon = fixture.start();
    let after = alias(&daemon).await;
    assert_eq!(after["weight"], 10, "{after}");
    assert_eq!(
        after["step"], paused["step"],
        "the step survived kill -9 as it was"
    );

    let (status, reply) = post(&daemon, "/v1/aliases/web/confirm", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    let second = wait_for(&daemon, Duration::from_secs(10), "step 2", |a| {
        a["weight"] == 50 && a["step"]["hold_until"].is_string()
    })
    .await;
    assert_eq!(second["step"]["number"], 2);
    // A step that holds is not confirmed: it moves on by itself.
    let (status, reply) = post(&daemon, "/v1/aliases/web/confirm", json!({})).await;
    assert_eq!(status, 409, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("step 2 (50%) does not pause"),
        "{reply}"
    );
    let done = wait_for(&daemon, Duration::from_secs(20), "stable on web-v2", |a| {
        a["phase"] == "stable" && a["targets"] == json!(["web-v2"])
    })
    .await;
    assert!(done["weight"].is_null(), "{done}");
    assert_eq!(done["last_operation"]["outcome"], "completed");
    let (_, history) =
        crate::support::http(&daemon, "GET", "/v1/aliases/web/history", None, "").await;
    let kinds = kinds(&history);
    for kind in [
        "started",
        "mixed",
        "in_effect",
        "confirmed",
        "step",
        "draining",
        "completed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} not in {kinds:?}");
    }
}

#[tokio::test]
async fn bad_steps_and_gates_are_refused_naming_the_field_and_a_preset_can_be_aborted() {
    let daemon = fixture().start();
    let cases = [
        (
            json!({"to": "web-v2", "steps": "50%,10%,100%"}),
            "field `steps`: step 2 (10%): the weight must be above",
        ),
        (
            json!({"to": "web-v2", "steps": [{"weight": 10}]}),
            "the last step must be 100%",
        ),
        (
            json!({"to": "web-v2", "steps": [{"weight": 10, "hold": "1m", "pause": true}, {"weight": 100}]}),
            "not both",
        ),
        (
            json!({"to": "web-v2", "steps": "canary99"}),
            "neither steps nor a preset",
        ),
        (
            json!({"to": "web-v2", "max_error_rate": 0.01}),
            "give `steps` too",
        ),
        (
            json!({"to": "web-v2", "steps": "canary10-5m", "confirm": true}),
            "with steps, a step pauses for a confirm",
        ),
        (
            json!({"to": "web-v2", "steps": "canary10-5m", "max_error_rate": 2}),
            "field `max_error_rate` must be from 0 to 1",
        ),
        (
            json!({"to": "web-v2", "steps": "canary10-5m", "max_latency_ratio": 0.5}),
            "field `max_latency_ratio` must be from 1 to 1000",
        ),
    ];
    for (body, want) in cases {
        let (status, reply) = post(&daemon, "/v1/aliases/web/promote", body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{body}: {error}");
    }
    assert_eq!(alias(&daemon).await["revision"], 1, "nothing was applied");

    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "steps": "canary10-5m", "max_error_rate": 0.01, "min_requests": 50}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let op = &reply["alias"]["operation"];
    assert_eq!(
        op["steps"],
        json!([{"weight": 10, "hold": "5m"}, {"weight": 100}])
    );
    assert_eq!(
        op["gates"],
        json!({"max_error_rate": 0.01, "min_requests": 50})
    );
    wait_for(&daemon, Duration::from_secs(10), "at 10%", |a| {
        a["weight"] == 10
    })
    .await;
    let (status, reply) = post(&daemon, "/v1/aliases/web/abort", json!({"reason": "test"})).await;
    assert_eq!(status, 200, "{reply}");
    let back = alias(&daemon).await;
    assert_eq!(back["answering"], json!(["web-v1"]));
    assert_eq!(back["last_operation"]["reached"], "mixed");
}

#[test]
fn aliasctl_lists_the_presets_and_refuses_bad_steps_before_sending() {
    let help = run_bin(ALIASCTL, &["promote", "--help"], &[]);
    let text = String::from_utf8_lossy(&help.stdout);
    for (name, _) in aliasd::steps::PRESETS {
        assert!(text.contains(name), "{name} not in help:\n{text}");
    }
    let bad = run_bin(
        ALIASCTL,
        &[
            "--server",
            "http://127.0.0.1:9",
            "promote",
            "web",
            "--to",
            "web-v2",
            "--steps",
            "10%:1m,5%,100%",
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("step 2 (5%): the weight must be above the previous step's 10%"),
        "{err}"
    );
    let bad = run_bin(
        ALIASCTL,
        &[
            "--server",
            "http://127.0.0.1:9",
            "promote",
            "web",
            "--to",
            "web-v2",
            "--max-error-rate",
            "1%",
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "gates need steps");
}
