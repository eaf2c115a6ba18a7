//! Gates on the front proxy's own figures, through the real daemon: clients (named by a trusted
//! `X-Real-IP`, a thousand of them) go through the proxy while a promotion moves in steps; a new
//! version that fails a fifth of its requests is rolled back at its 10% step with the measured
//! rate in the history, and a healthy one passes every step and completes.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{
    FAST_PROMOTION, Fixture, StopOnDrop, http, post, spawn_backends, wait_for, wait_healthy,
};

/// An HTTP front proxy for `web` that believes `X-Real-IP` from loopback.
pub(crate) const PROXY: &str = "\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"\nclient_header = \"X-Real-IP\"\ntrusted = [\"127.0.0.0/8\"]\n";

/// web-v1 and web-v2 (one in-process backend each, on 127.0.`net`.x), and aliasd with an HTTP
/// proxy for `web` that believes `X-Real-IP` from loopback.
async fn setup(net: u8) -> (Fixture, Vec<aliasd::backend::Backend>, StopOnDrop) {
    let stop = CancellationToken::new();
    let v1 = spawn_backends(net, 1, 1, "web-v1", &stop).await;
    let v2 = spawn_backends(net, 101, 1, "web-v2", &stop).await;
    let fixture = Fixture::for_backends_with(
        &[("web-v1", &[v1[0].addr]), ("web-v2", &[v2[0].addr])],
        &[("web", &["web-v1"])],
        &format!("{FAST_PROMOTION}{PROXY}"),
    );
    (fixture, v2, StopOnDrop(stop))
}

/// Requests through the proxy, each naming one of a thousand clients in turn, until stopped
/// (at most 60 s or `limit` requests). Counts the answers by backend and status.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<std::collections::BTreeMap<String, u64>>,
}

impl Traffic {
    pub(crate) fn start(proxy: std::net::SocketAddr, limit: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let deadline = Instant::now() + Duration::from_secs(150);
            let mut seen = std::collections::BTreeMap::new();
            let mut i: u32 = 0;
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline && i < limit {
                let ip = Ipv4Addr::new(10, 9, (i % 1000 / 250) as u8, (i % 250) as u8 + 1);
                i += 1;
                let request = hyper::Request::get(format!("http://{proxy}/"))
                    .header("x-real-ip", ip.to_string())
                    .body(Empty::new())
                    .unwrap();
                let key = match client.request(request).await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let backend = r
                            .headers()
                            .get("x-backend")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let _ = r.into_body().collect().await;
                        format!("{backend} {status}")
                    }
                    Err(e) => format!("transport: {e}"),
                };
                *seen.entry(key).or_insert(0) += 1;
            }
            seen
        });
        Self { stop, task }
    }

    pub(crate) async fn finish(self) -> std::collections::BTreeMap<String, u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

pub(crate) fn proxy_of(fixture: &Fixture) -> std::net::SocketAddr {
    let bytes = std::fs::read(fixture.dir.path().join("ready.json")).unwrap();
    let ready: aliasd::daemon::Ready = serde_json::from_slice(&bytes).unwrap();
    ready.proxies[0]
}

async fn history(daemon: &crate::support::Daemon) -> Vec<Value> {
    let (_, h) = http(daemon, "GET", "/v1/aliases/web/history", None, "").await;
    h.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_failing_a_fifth_of_its_requests_is_rolled_back_at_its_first_step() {
    let (fixture, v2, _stop) = setup(81).await;
    v2[0].set_failing(20);
    let daemon = fixture.start();
    wait_healthy(&daemon).await;
    let traffic = Traffic::start(proxy_of(&fixture), 200_000);
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "steps": "10%:3m,100%", "max_error_rate": 0.01, "min_requests": 50}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    // While the step is in effect the API shows the figures against the gates.
    let shown = wait_for(&daemon, Duration::from_secs(60), "figures", |a| {
        a["step"]["figures"]["new"]["requests"].as_u64() > Some(0) || a["phase"] == "stable"
    })
    .await;
    let back = wait_for(&daemon, Duration::from_secs(120), "rolled back", |a| {
        a["phase"] == "stable"
    })
    .await;
    let seen = traffic.finish().await;
    let last = &back["last_operation"];
    assert_eq!(last["outcome"], "auto_rollback", "{back}\nseen: {seen:?}");
    assert_eq!(last["reached"], "mixed");
    let why = last["ended_reason"].as_str().unwrap();
    // A fifth of v2's answers fail; the window starts when the step took effect, so it may
    // begin anywhere in the backend's run of five: the rate is near 20%, not exactly it.
    let rate: f64 = why
        .strip_prefix("step 1 of 2 (10%): error rate ")
        .and_then(|rest| rest.split_once("% > 1% over "))
        .and_then(|(rate, _)| rate.parse().ok())
        .unwrap_or_else(|| panic!("{why}"));
    assert!((15.0..=25.0).contains(&rate), "{why}");
    assert_eq!(back["answering"], json!(["web-v1"]));
    let entry = history(&daemon)
        .await
        .into_iter()
        .find(|e| e["change"] == "auto_rollback")
        .expect("an auto_rollback entry");
    assert_eq!(entry["reason"].as_str(), Some(why));
    // Only the new version's failures: the old one answered everything.
    assert!(seen.keys().all(|k| !k.starts_with("web-v1 5")), "{seen:?}");
    assert!(seen.contains_key("web-v2 500"), "{seen:?}");
    if shown["phase"] == "mixed" {
        let figures = &shown["step"]["figures"];
        assert!(figures["verdict"].is_string(), "{figures}");
        assert!(figures["old"]["requests"].is_u64(), "{figures}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_new_version_passes_every_step_with_its_figures_in_the_history() {
    let (fixture, _v2, _stop) = setup(82).await;
    let daemon = fixture.start();
    wait_healthy(&daemon).await;
    let traffic = Traffic::start(proxy_of(&fixture), 200_000);
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "steps": "10%:2s,50%:2s,100%", "max_error_rate": 0.01, "max_latency_ratio": 50, "min_requests": 5}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let done = wait_for(&daemon, Duration::from_secs(40), "completed", |a| {
        a["phase"] == "stable"
    })
    .await;
    let seen = traffic.finish().await;
    assert_eq!(
        done["last_operation"]["outcome"], "completed",
        "{done}\nseen: {seen:?}"
    );
    assert!(seen.keys().all(|k| k.ends_with(" 200")), "{seen:?}");
    let passed: Vec<String> = history(&daemon)
        .await
        .iter()
        .filter(|e| e["change"] == "step" || e["change"] == "draining")
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(passed.len(), 2, "{passed:?}");
    for (reason, step) in passed
        .iter()
        .zip(["step 1 of 3 (10%)", "step 2 of 3 (50%)"])
    {
        assert!(
            reason.starts_with(&format!("{step} passed: error rate 0% ≤ 1%")),
            "{reason}"
        );
    }
}
