//! Forwarding over real sockets: a follower (the real API router over a real writer) and a
//! stand-in leader on loopback that records what reaches it and answers with bytes of its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{FORWARDED_BY, to_leader};
use crate::api::{AppState, Auth, ReloadRequest, router};
use crate::cluster::{ClusterMode, ClusterStatus, EtcdStatus, NodeStatus};
use crate::config::ApiToken;
use crate::controller::recover::recover;
use crate::controller::{Busy, ControlError, Controller, StartParts};
use crate::health::{Checker, HealthBoard};
use crate::model::Endpoint;
use crate::testkit::{BASE, ConfigDir};

const TOKEN: &str = "forward-test-token";

/// What the leader answers to every request but a DELETE: a status, a header and a body that no
/// handler of the follower would make.
const LEADER_BODY: &[u8] = b"{\"answered_by\": \"a\",  \"spacing\": [1, 2]}\n";

/// One request as it reached the stand-in leader.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A task serving `app` on loopback until dropped.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stand-in leader: records every request; answers 201 with [`LEADER_BODY`], a DELETE
/// with a 409 in the API's error form.
async fn leader() -> (Server, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .fallback(
            |State(seen): State<Arc<Mutex<Vec<Seen>>>>, request: Request| async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 4 << 20).await.unwrap();
                seen.lock().unwrap().push(Seen {
                    method: parts.method.clone(),
                    uri: parts.uri.to_string(),
                    headers: parts.headers,
                    body,
                });
                if parts.method == Method::DELETE {
                    return (
                        StatusCode::CONFLICT,
                        [("content-type", "application/json")],
                        "{\"error\": \"the leader refused\", \"problems\": []}",
                    )
                        .into_response();
                }
                (
                    StatusCode::CREATED,
                    [("content-type", "application/json"), ("x-leader", "a")],
                    LEADER_BODY,
                )
                    .into_response()
            },
        )
        .with_state(seen.clone());
    (Server::start(app).await, seen)
}

struct Idle;

impl Busy for Idle {
    fn inflight(&self, _: &[Endpoint]) -> u64 {
        0
    }
}

/// The follower `b`: the real API router over a real writer (on [`BASE`], unchecked), whose
/// cluster status the test sets through `cluster`; reloads arrive at `reloads`.
struct Follower {
    server: Server,
    cluster: watch::Sender<ClusterStatus>,
    reloads: mpsc::Receiver<ReloadRequest>,
    shutdown: CancellationToken,
    writer: tokio::task::JoinHandle<()>,
    _dir: ConfigDir,
}

impl Follower {
    async fn start(status: ClusterStatus, forward_wait: Duration) -> Self {
        let dir = ConfigDir::internal();
        let base = Arc::new(dir.base(&format!("{BASE}\n[health]\nkind = \"none\"\n")));
        let recovered = recover(&dir.root().join("state"), &base, crate::clock::now_ms()).unwrap();
        let shutdown = CancellationToken::new();
        let board = Arc::new(HealthBoard::default());
        let (health_tx, health_rx) = mpsc::channel(64);
        let (_sources_tx, sources_rx) = mpsc::channel(64);
        let (_drained_tx, drained_rx) = mpsc::unbounded_channel();
        let (controller, control, snapshots) = Controller::start(StartParts {
            base,
            store: Box::new(recovered.store),
            state: recovered.state,
            topology: recovered.topology,
            history: recovered.entries,
            board: board.clone(),
            checker: Checker::new(board.clone(), health_tx, 4, shutdown.clone()),
            health_rx,
            sources_rx,
            docker_tx: None,
            docker_endpoint: None,
            proxies: Vec::new(),
            drained_rx,
            drain_deadline: Duration::from_secs(1),
            measurements: None,
            secondaries: Vec::new(),
            clock: Arc::new(crate::clock::Wall),
            takeover: None,
        });
        let writer = tokio::spawn(controller.run(shutdown.clone()));
        let (reloads_tx, reloads) = mpsc::channel(1);
        let (cluster, cluster_rx) = watch::channel(status);
        let app = router(AppState {
            snapshots,
            control,
            auth: Arc::new(arc_swap::ArcSwap::from_pointee(Auth::new(&[ApiToken {
                name: "ci".into(),
                secret: TOKEN.into(),
            }]))),
            board,
            reloads: reloads_tx,
            metrics: Vec::new(),
            busy: Arc::new(Idle),
            secondaries: crate::secondaries::Secondaries::new(),
            cluster: cluster_rx,
            forward_wait,
        });
        Self {
            server: Server::start(app).await,
            cluster,
            reloads,
            shutdown,
            writer,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.writer.await.unwrap();
    }

    /// Waits until a request is held in the forwarding layer: it holds two more receivers of
    /// the status (its layer's state and the one it waits on) than the `idle` count.
    async fn wait_held(&self, idle: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.cluster.receiver_count() < idle + 2 {
            assert!(Instant::now() < deadline, "the request never waited");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Node `name` at `api`.
fn node(name: &str, api: SocketAddr, leader: bool) -> NodeStatus {
    NodeStatus {
        name: name.into(),
        api,
        leader,
        applied_revision: 7,
        behind: 0,
        config_hash: "h".into(),
        config_matches: true,
        started_ms: 1,
    }
}

/// Node `b` of an etcd cluster led by `a`, whose API is at `leader_api`; with `None`, no leader.
fn follower_of(leader_api: Option<SocketAddr>) -> ClusterStatus {
    let b = node("b", "127.0.0.1:9".parse().unwrap(), false);
    ClusterStatus {
        mode: ClusterMode::Etcd,
        node: "b".into(),
        leader: leader_api.map(|_| "a".into()),
        revision: 7,
        etcd: Some(EtcdStatus {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            connected: leader_api.is_some(),
            since_ms: 1,
            error: leader_api
                .is_none()
                .then(|| "etcdserver: no leader (quorum lost)".into()),
        }),
        config_hash: "h".into(),
        nodes: match leader_api {
            Some(api) => vec![node("a", api, true), b],
            None => vec![b],
        },
        problems: Vec::new(),
    }
}

/// One request to `addr`: its status, headers and body as they came.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let client: HyperClient<HttpConnector, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("an answer within 20s")
        .expect("the follower answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn error_of(body: &Bytes) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON error");
    json["error"].as_str().expect("an error field").to_owned()
}

const AUTH: (&str, &str) = ("authorization", "Bearer forward-test-token");

#[test]
fn the_changes_but_reload_and_the_history_reads_go_to_the_leader() {
    let spec = serde_json::to_value(crate::api::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let concrete = path
                .replace("{alias}", "web")
                .replace("{service}", "web-v1")
                .replace("{file}", "app.js");
            let change = op.get("security").is_some();
            let want = (change && path != "/v1/reload") || path.ends_with("/history");
            let method: Method = method.to_uppercase().parse().unwrap();
            assert_eq!(to_leader(&method, &concrete), want, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} routes in the spec");
    assert!(to_leader(&Method::HEAD, "/v1/history"));
    assert!(!to_leader(&Method::GET, "/v1/events"));
    assert!(!to_leader(&Method::GET, "/v1/cluster"));
    assert!(!to_leader(&Method::GET, "/v1/aliases/history"));
}

#[tokio::test]
async fn a_change_reaches_the_leader_whole_and_its_answer_comes_back_byte_for_byte() {
    let (leader, seen) = leader().await;
    let mut follower =
        Follower::start(follower_of(Some(leader.addr)), Duration::from_secs(5)).await;
    let at = follower.server.addr;
    let body = r#"{"targets": ["web-v2"]}"#;

    let (status, headers, answer) = call(
        at,
        "PUT",
        "/v1/aliases/web/targets?note=1",
        &[AUTH, ("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["x-leader"], "a");
    assert_eq!(answer, LEADER_BODY);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let put = &seen[0];
        assert_eq!(put.method, Method::PUT);
        assert_eq!(put.uri, "/v1/aliases/web/targets?note=1");
        assert_eq!(put.headers["authorization"], AUTH.1);
        assert_eq!(put.headers["content-type"], "application/json");
        assert_eq!(put.headers[FORWARDED_BY], "b");
        assert_eq!(put.headers["host"], leader.addr.to_string());
        assert_eq!(put.body, body);
    }
    // The leader's refusal comes back as it said it.
    let (status, _, answer) = call(at, "DELETE", "/v1/services/web-v2", &[AUTH], "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        answer,
        "{\"error\": \"the leader refused\", \"problems\": []}"
    );
    // The history is the writer's: read from the leader, query included.
    for path in ["/v1/aliases/web/history", "/v1/history?limit=5"] {
        let (status, _, answer) = call(at, "GET", path, &[], "").await;
        assert_eq!(
            (status, &answer[..]),
            (StatusCode::CREATED, LEADER_BODY),
            "{path}"
        );
        assert_eq!(seen.lock().unwrap().last().unwrap().uri, path);
    }
    let forwarded = seen.lock().unwrap().len();
    assert_eq!(forwarded, 4);

    // Reads are this node's own: the aliases, the cluster, the events stream.
    let (status, _, answer) = call(at, "GET", "/v1/aliases", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let aliases: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(aliases[0]["name"], "web.internal", "{aliases}");
    assert_eq!(aliases[0]["targets"], serde_json::json!(["web-v1"]));
    let (status, _, answer) = call(at, "GET", "/v1/cluster", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let cluster: ClusterStatus = serde_json::from_slice(&answer).unwrap();
    assert_eq!(cluster, *follower.cluster.borrow());
    let client: HyperClient<HttpConnector, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let events = client
        .get(format!("http://{at}/v1/events").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    drop(events);
    // A reload is this node's own too: it reaches this node's reloader.
    let reload = tokio::spawn(async move { call(at, "POST", "/v1/reload", &[AUTH], "").await });
    let (actor, reply) = tokio::time::timeout(Duration::from_secs(5), follower.reloads.recv())
        .await
        .expect("the reload reached this node")
        .unwrap();
    assert_eq!(actor, "ci");
    let _ = reply.send(Err(ControlError::Invalid(vec!["refused on b".into()])));
    let (status, _, answer) = reload.await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&answer).contains("refused on b"), "{answer:?}");
    assert_eq!(
        seen.lock().unwrap().len(),
        forwarded,
        "a read went to the leader"
    );
    follower.stop().await;
}

#[tokio::test]
async fn a_request_forwarded_once_is_never_forwarded_again() {
    let (leader, seen) = leader().await;
    let follower = Follower::start(follower_of(Some(leader.addr)), Duration::from_secs(5)).await;
    let (status, _, answer) = call(
        follower.server.addr,
        "PUT",
        "/v1/aliases/web/targets",
        &[AUTH, ("x-aliasd-forwarded-by", "c")],
        r#"{"targets": ["web-v2"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = error_of(&answer);
    assert!(
        error.starts_with("forward loop: c forwarded this request to b"),
        "{error}"
    );
    assert!(seen.lock().unwrap().is_empty());
    follower.stop().await;
}

#[tokio::test]
async fn a_body_over_the_apis_limit_is_refused_not_forwarded() {
    let (leader, seen) = leader().await;
    let follower = Follower::start(follower_of(Some(leader.addr)), Duration::from_secs(5)).await;
    let at = follower.server.addr;
    let just_fits = format!("{{\"pad\": \"{}\"}}", "x".repeat(super::MAX_BODY - 11));
    assert_eq!(just_fits.len(), super::MAX_BODY);
    let (status, _, _) = call(at, "PUT", "/v1/services/vm-v1", &[AUTH], &just_fits).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(seen.lock().unwrap()[0].body.len(), super::MAX_BODY);
    let over = format!("{just_fits} ");
    let (status, _, answer) = call(at, "PUT", "/v1/services/vm-v1", &[AUTH], &over).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        error_of(&answer).contains("nothing was forwarded"),
        "{answer:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    follower.stop().await;
}

#[tokio::test]
async fn with_no_leader_a_change_waits_its_bound_then_is_refused_with_the_reason() {
    let wait = Duration::from_millis(400);
    let follower = Follower::start(follower_of(None), wait).await;
    let started = Instant::now();
    let (status, _, answer) = call(
        follower.server.addr,
        "POST",
        "/v1/aliases/web/abort",
        &[AUTH],
        "",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took >= wait && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        error_of(&answer),
        "no leader: etcd cannot be reached: etcdserver: no leader (quorum lost); the change was not applied (waited 400ms)"
    );

    // A leader whose API does not answer: the same, with why.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    follower.cluster.send_replace(follower_of(Some(gone)));
    let (status, _, answer) = call(follower.server.addr, "GET", "/v1/history", &[], "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = error_of(&answer);
    assert!(
        error.starts_with(&format!(
            "no leader: the leader a cannot be reached at {gone}: "
        )),
        "{error}"
    );
    assert!(
        error.ends_with("the leader keeps the history; try again (waited 400ms)"),
        "{error}"
    );
    follower.stop().await;
}

/// A leader that takes the request and closes the connection without an answer may have
/// applied it: the follower says so at once and never sends it again.
#[tokio::test]
async fn a_change_the_leader_took_without_answering_is_not_sent_again() {
    use tokio::io::AsyncReadExt;
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = mute.local_addr().unwrap();
    let (took_tx, mut took) = mpsc::unbounded_channel();
    let leader = tokio::spawn(async move {
        loop {
            let (mut conn, _) = mute.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let n = conn.read(&mut head).await.unwrap();
            let _ = took_tx.send(String::from_utf8_lossy(&head[..n]).into_owned());
        }
    });
    let follower = Follower::start(follower_of(Some(addr)), Duration::from_secs(20)).await;
    let started = Instant::now();
    let (status, _, answer) = call(
        follower.server.addr,
        "POST",
        "/v1/aliases/web/confirm",
        &[AUTH],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = error_of(&answer);
    assert!(
        error.starts_with(&format!(
            "the leader a at {addr} took the request but did not answer"
        )) && error
            .ends_with("the change may or may not have been applied: see `aliasctl history`"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let first = took.recv().await.unwrap();
    assert!(
        first.starts_with("POST /v1/aliases/web/confirm "),
        "{first}"
    );
    assert!(took.try_recv().is_err(), "the change was sent again");
    leader.abort();
    follower.stop().await;
}

#[tokio::test]
async fn a_change_that_waits_goes_to_the_leader_elected_meanwhile() {
    let (leader, seen) = leader().await;
    let follower = Follower::start(follower_of(None), Duration::from_secs(20)).await;
    let idle = follower.cluster.receiver_count();
    let at = follower.server.addr;
    let started = Instant::now();
    let put = tokio::spawn(async move {
        call(
            at,
            "PUT",
            "/v1/services/vm-v1",
            &[AUTH],
            r#"{"endpoints": []}"#,
        )
        .await
    });
    follower.wait_held(idle).await;
    follower
        .cluster
        .send_replace(follower_of(Some(leader.addr)));
    let (status, _, answer) = put.await.unwrap();
    assert_eq!((status, &answer[..]), (StatusCode::CREATED, LEADER_BODY));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(seen.lock().unwrap()[0].uri, "/v1/services/vm-v1");
    follower.stop().await;
}

#[tokio::test]
async fn a_follower_elected_while_a_change_waits_applies_it_itself() {
    let follower = Follower::start(follower_of(None), Duration::from_secs(20)).await;
    let idle = follower.cluster.receiver_count();
    let at = follower.server.addr;
    let link = tokio::spawn(async move {
        call(
            at,
            "PUT",
            "/v1/aliases/web/targets",
            &[AUTH],
            r#"{"targets": ["web-v2"]}"#,
        )
        .await
    });
    follower.wait_held(idle).await;
    follower
        .cluster
        .send_replace(ClusterStatus::single("b", at, "h", 1));
    let (status, _, answer) = link.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let alias: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(alias["targets"], serde_json::json!(["web-v2"]), "{alias}");
    assert_eq!(alias["changed_by"], "ci");
    follower.stop().await;
}

/// `b` names itself the leader, but cannot reach etcd (its term may be over already).
fn leader_cut_off() -> ClusterStatus {
    let mut status = follower_of(None);
    status.leader = Some("b".into());
    status.nodes[0].leader = true;
    status
}

#[tokio::test]
async fn a_leader_cut_off_from_etcd_refuses_a_change_with_why_also_a_forwarded_one() {
    let wait = Duration::from_millis(400);
    let node = Follower::start(leader_cut_off(), wait).await;
    for headers in [&[AUTH][..], &[AUTH, ("x-aliasd-forwarded-by", "c")][..]] {
        let started = Instant::now();
        let (status, _, answer) = call(
            node.server.addr,
            "PUT",
            "/v1/aliases/web/targets",
            headers,
            r#"{"targets": ["web-v2"]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{headers:?}");
        assert!(started.elapsed() >= wait, "{headers:?}");
        assert_eq!(
            error_of(&answer),
            "no leader: etcd cannot be reached: etcdserver: no leader (quorum lost); the change was not applied (waited 400ms)",
            "{headers:?}"
        );
    }
    // Reads are still its own, and the history its writer's.
    let (status, _, _) = call(node.server.addr, "GET", "/v1/history", &[], "").await;
    assert_eq!(status, StatusCode::OK);

    // etcd back while a change waits: the change is applied here.
    let idle = node.cluster.receiver_count();
    let at = node.server.addr;
    let link = tokio::spawn(async move {
        call(
            at,
            "PUT",
            "/v1/aliases/web/targets",
            &[AUTH],
            r#"{"targets": ["web-v2"]}"#,
        )
        .await
    });
    node.wait_held(idle).await;
    node.cluster.send_modify(|s| {
        if let Some(e) = s.etcd.as_mut() {
            e.connected = true;
            e.error = None;
        }
    });
    let (status, _, answer) = link.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    node.stop().await;
}
