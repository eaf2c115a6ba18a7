//! kill -9 at 100 random moments while promotions, aborts and rollbacks run, under DNS and proxy
//! load, against the real daemon restarted on the same state directory each time.
//!
//! After every restart: aliasd starts (its state is never refused as damaged), every change it
//! acknowledged before the kill is in the history at the revision it answered with and the
//! alias is at or past it, the history's revisions are contiguous, and no proxy request or DNS
//! query failed but those in flight at the kill.
//!
//! The moments are random; the seed is printed, and `ALIASD_CRASH_SEED=<seed>` runs the same
//! schedule again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aliasd::daemon::Ready;
use bytes::Bytes;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::support::{
    ConfigText, Daemon, Fixture, StopOnDrop, TOKEN, addresses, http, query_message, spawn_backends,
};

/// Kills in one run.
const KILLS: usize = 100;
/// The kill comes this long (at most) after the daemon came up, uniformly at random.
const MAX_LIFE: Duration = Duration::from_millis(1_500);
/// Proxy and DNS load workers.
const HTTP_WORKERS: usize = 3;
const DNS_WORKERS: usize = 1;

/// A small xorshift generator: enough for a schedule, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(v1: SocketAddr, v2: SocketAddr) -> ConfigText {
    ConfigText::new()
        .section("[promotion]\nobserve = \"300ms\"\nwarm_timeout = \"5s\"\ndrain_grace = \"100ms\"")
        .service("web-v1", [v1])
        .service("web-v2", [v2])
        .alias("web", ["web-v1"])
        .section("[[proxy]]\nlisten = \"127.0.0.1:0\"\nalias = \"web\"")
}

/// Where the load goes now: the running daemon's life number and addresses, or nothing while
/// it is down.
#[derive(Clone, Copy)]
struct Target {
    life: usize,
    proxy: SocketAddr,
    dns: SocketAddr,
}

type Current = Arc<Mutex<Option<Target>>>;

/// One request or query of the load: the life it was sent in, when, and how it ended.
#[derive(Debug)]
struct Attempt {
    life: usize,
    started: Instant,
    ended: Instant,
    result: Result<(), String>,
}

fn current(target: &Current) -> Option<Target> {
    *target.lock().unwrap()
}

async fn http_worker(target: Current, stop: CancellationToken) -> Vec<Attempt> {
    let mut out = Vec::new();
    let mut client: Option<(usize, Client<_, Empty<Bytes>>)> = None;
    // Bounded by the test's own length, and by count.
    while !stop.is_cancelled() && out.len() < 200_000 {
        // Taken before the target is read: a request that saw a life began before its kill.
        let started = Instant::now();
        let Some(t) = current(&target) else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        if client.as_ref().is_none_or(|(life, _)| *life != t.life) {
            // No client-side retries: every failure the proxy lets through is counted.
            let c = Client::builder(TokioExecutor::new())
                .retry_canceled_requests(false)
                .build_http::<Empty<Bytes>>();
            client = Some((t.life, c));
        }
        let (_, c) = client.as_ref().unwrap();
        let uri: hyper::Uri = format!("http://{}/", t.proxy).parse().unwrap();
        let result = async {
            let response = tokio::time::timeout(Duration::from_secs(5), c.get(uri))
                .await
                .map_err(|_| "no answer within 5s".to_owned())?
                .map_err(|e| format!("transport: {e:?}"))?;
            let status = response.status();
            let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
                .await
                .map_err(|_| "body not complete within 5s".to_owned())?
                .map_err(|e| format!("body: {e:?}"))?
                .to_bytes();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
            }
        }
        .await;
        out.push(Attempt {
            life: t.life,
            started,
            ended: Instant::now(),
            result,
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    out
}

async fn dns_worker(target: Current, stop: CancellationToken) -> Vec<Attempt> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !stop.is_cancelled() && out.len() < 200_000 {
        // Taken before the target is read: a request that saw a life began before its kill.
        let started = Instant::now();
        let Some(t) = current(&target) else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        let query = query_message("web.internal.", RecordType::A, None);
        let id = query.metadata.id;
        let bytes = query.to_vec().expect("encode");
        let result = async {
            socket
                .send_to(&bytes, t.dns)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let (n, _) =
                    tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf))
                        .await
                        .map_err(|_| "no answer within 1s".to_owned())?
                        .map_err(|e| e.to_string())?;
                let Ok(answer) = hickory_proto::op::Message::from_vec(&buf[..n]) else {
                    return Err("an answer that does not parse".to_owned());
                };
                if answer.metadata.id != id {
                    // A late answer to an earlier query that timed out.
                    continue;
                }
                if answer.metadata.response_code != ResponseCode::NoError {
                    return Err(format!("{:?}", answer.metadata.response_code));
                }
                return if addresses(&answer).is_empty() {
                    Err("an empty answer".to_owned())
                } else {
                    Ok(())
                };
            }
        }
        .await;
        out.push(Attempt {
            life: t.life,
            started,
            ended: Instant::now(),
            result,
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    out
}

/// A change aliasd acknowledged: the revision it answered with (the alias may have moved on by
/// itself before answering, a promotion from warming to mixed say), what it was and the
/// operation it started or ended.
#[derive(Debug, Clone)]
struct Ack {
    life: usize,
    revision: u64,
    what: &'static str,
    op: u64,
}

/// Operations, one after another, chosen by the alias's phase: promotions to the other version,
/// rollbacks, aborts. Every 2xx answer is an acknowledged change.
async fn operate(daemon_url: String, life: usize, seed: u64, acks: Arc<Mutex<Vec<Ack>>>) {
    let mut rng = Rng(seed | 1);
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let call = |method: &'static str, path: String, body: Value| {
        let client = client.clone();
        let url = format!("{daemon_url}{path}");
        async move {
            let request = hyper::Request::builder()
                .method(method)
                .uri(url)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(http_body_util::Full::new(Bytes::from(body.to_string())))
                .unwrap();
            let response = client.request(request).await.ok()?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.ok()?.to_bytes();
            let value: Value = serde_json::from_slice(&bytes).ok()?;
            Some((status, value))
        }
    };
    // Bounded: the kill ends it long before.
    for _ in 0..1_000 {
        let Some((200, alias)) = call("GET", "/v1/aliases/web".into(), Value::Null).await else {
            return;
        };
        let phase = alias["phase"].as_str().unwrap_or("").to_owned();
        let answering = alias["answering"].clone();
        let running = alias["operation"]["id"].as_u64();
        let (what, path, body) = match (phase.as_str(), rng.below(10)) {
            ("stable", 0..=6) => {
                let to = if answering == json!(["web-v1"]) {
                    "web-v2"
                } else {
                    "web-v1"
                };
                let observe = format!("{}ms", rng.below(400));
                ("promote", "/promote", json!({"to": to, "observe": observe}))
            }
            ("stable", _) => ("rollback", "/rollback", json!({"observe": "100ms"})),
            ("warming" | "mixed", 0..=4) => ("abort", "/abort", json!({})),
            _ => {
                tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
                continue;
            }
        };
        match call("POST", format!("/v1/aliases/web{path}"), body).await {
            Some((status, reply)) if (200..300).contains(&status) => {
                let op = match what {
                    "abort" => running,
                    _ => reply["alias"]["operation"]["id"].as_u64(),
                };
                if reply["started"] != json!(false)
                    && let Some(op) = op
                {
                    let revision = reply["alias"]["revision"].as_u64().expect("revision");
                    acks.lock().unwrap().push(Ack {
                        life,
                        revision,
                        what,
                        op,
                    });
                }
            }
            // Refused (409: something else is running), or cut off by the kill: not acknowledged.
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
    }
}

fn ready_of(fixture: &Fixture) -> Ready {
    let bytes = std::fs::read(fixture.dir.path().join("ready.json")).expect("ready");
    serde_json::from_slice(&bytes).expect("ready file is JSON")
}

/// The alias's history, as `(revision, change, operation)` in order.
async fn history(daemon: &Daemon) -> Vec<(u64, String, Option<u64>)> {
    let (status, body) = http(daemon, "GET", "/v1/aliases/web/history", None, "").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("history is an array")
        .iter()
        .map(|e| {
            (
                e["revision"].as_u64().expect("revision"),
                e["change"].as_str().expect("change").to_owned(),
                e["op"].as_u64(),
            )
        })
        .collect()
}

/// What history entry an acknowledged operation writes.
fn change_of(what: &str) -> &'static [&'static str] {
    match what {
        "promote" | "rollback" => &["started"],
        "abort" => &["aborted"],
        _ => &[],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_100_random_moments_loses_no_acknowledged_change_and_fails_no_request_but_those_in_flight()
 {
    let seed = std::env::var("ALIASD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash schedule seed: {seed} (ALIASD_CRASH_SEED={seed} repeats it)");
    let mut rng = Rng(seed | 1);

    let stop_backends = CancellationToken::new();
    let v1 = spawn_backends(0, 81, 1, "web-v1", &stop_backends).await;
    let v2 = spawn_backends(0, 82, 1, "web-v2", &stop_backends).await;
    let _backends = StopOnDrop(stop_backends);
    let fixture = config(v1[0].addr, v2[0].addr).fixture();

    let target: Current = Arc::default();
    let stop_load = CancellationToken::new();
    let _load_stops = StopOnDrop(stop_load.clone());
    let mut load = Vec::new();
    for _ in 0..HTTP_WORKERS {
        load.push((
            "proxy",
            tokio::spawn(http_worker(target.clone(), stop_load.clone())),
        ));
    }
    for _ in 0..DNS_WORKERS {
        load.push((
            "dns",
            tokio::spawn(dns_worker(target.clone(), stop_load.clone())),
        ));
    }

    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    // When each life was killed.
    let mut killed_at: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut checked = 0u64;
    // The phase each restart came back in: what the kill interrupted.
    let mut resumed: BTreeMap<String, usize> = BTreeMap::new();
    let mut daemon = fixture.start();
    for life in 0..=KILLS {
        // Up: the load and the operations start on this life.
        let ready = ready_of(&fixture);
        *target.lock().unwrap() = Some(Target {
            life,
            proxy: ready.proxies[0],
            dns: daemon.dns,
        });
        // What was acknowledged before must all be here.
        let (status, alias) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
        assert_eq!(
            status, 200,
            "life {life}: the alias does not render: {alias}"
        );
        let revision = alias["revision"].as_u64().expect("revision");
        if life > 0 {
            let phase = alias["phase"].as_str().unwrap_or("?").to_owned();
            *resumed.entry(phase).or_default() += 1;
        }
        let entries = history(&daemon).await;
        for pair in entries.windows(2) {
            assert_eq!(
                pair[1].0,
                pair[0].0 + 1,
                "life {life}: the history skips from revision {} to {}: {entries:?}",
                pair[0].0,
                pair[1].0
            );
        }
        // The alias goes on by itself (a promotion's next phase), so its history is read
        // between two looks at it.
        let (_, after) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
        let after = after["revision"].as_u64().expect("revision");
        let last = entries.last().map_or(0, |e| e.0);
        assert!(
            (revision..=after).contains(&last),
            "life {life}: the alias went from revision {revision} to {after}, its history ends at {last}"
        );
        for ack in acks.lock().unwrap().iter() {
            let kept = entries.iter().any(|e| e.0 == ack.revision)
                && entries.iter().any(|e| {
                    e.0 <= ack.revision
                        && e.2 == Some(ack.op)
                        && change_of(ack.what).contains(&e.1.as_str())
                });
            assert!(
                kept,
                "life {life}: the {} acknowledged in life {} at revision {} is lost: {entries:?}",
                ack.what, ack.life, ack.revision
            );
            assert!(revision >= ack.revision);
            checked += 1;
        }
        if life == KILLS {
            break;
        }

        let ops = tokio::spawn(operate(daemon.server_url(), life, rng.next(), acks.clone()));
        let life_time = Duration::from_millis(rng.below(MAX_LIFE.as_millis() as u64));
        tokio::time::sleep(life_time).await;
        // Down: nothing new is sent to this life from the moment it is marked.
        *target.lock().unwrap() = None;
        killed_at.insert(life, Instant::now());
        daemon.kill9();
        ops.abort();
        let _ = ops.await;
        daemon = fixture.start();
    }

    // The load: every failure was in flight at its life's kill.
    stop_load.cancel();
    let mut totals: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (what, worker) in load {
        for a in worker.await.expect("load worker") {
            let total = totals.entry(what).or_default();
            total.0 += 1;
            let Err(error) = &a.result else { continue };
            total.1 += 1;
            let kill = killed_at.get(&a.life).copied();
            let in_flight = kill.is_some_and(|kill| a.started <= kill && a.ended >= kill);
            assert!(
                in_flight,
                "a {what} request of life {} failed without a kill under it: {error} \
                 (it started {:?} and ended {:?} before that life's kill)",
                a.life,
                kill.map(|k| k.saturating_duration_since(a.started)),
                kill.map(|k| k.saturating_duration_since(a.ended)),
            );
        }
    }
    let acked = acks.lock().unwrap().len();
    eprintln!(
        "{KILLS} kills: {acked} acknowledged changes, {checked} checks of them, all kept; \
         phases the restarts resumed in {resumed:?}; load {totals:?} (sent, failed in flight at a kill)"
    );
    assert!(
        acked >= KILLS / 2,
        "too few operations were acknowledged to mean much: {acked}"
    );
    for (what, (sent, _)) in &totals {
        assert!(*sent >= KILLS, "the {what} load sent only {sent}");
    }
    daemon.terminate();
}
