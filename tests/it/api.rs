//! The control API over a real socket: reads, auth, validation and the JSON error bodies.

use std::time::Duration;

use serde_json::json;

use crate::support::{Fixture, TOKEN, TOKEN_NAME, http, http_text, post, wait_for};

#[tokio::test]
async fn reads_need_no_token_and_show_the_aliases() {
    let fixture = Fixture::new();
    let daemon = fixture.start();

    let (status, health) = http(&daemon, "GET", "/healthz", None, "").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let (status, list) = http(&daemon, "GET", "/v1/aliases", None, "").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api.internal", "big.internal", "web.internal"]);

    for path in [
        "/v1/aliases/web",
        "/v1/aliases/web.internal",
        "/v1/aliases/web.internal.",
    ] {
        let (status, web) = http(&daemon, "GET", path, None, "").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(web["targets"], serde_json::json!(["web-v1"]), "{path}");
        assert_eq!(
            web["endpoints"],
            serde_json::json!(["127.0.0.11:8080", "127.0.0.12:8080"])
        );
        assert_eq!(web["srv"], "_http._tcp.web.internal.");
        assert_eq!(web["changed_by"], "config");
    }

    let (status, services) = http(&daemon, "GET", "/v1/services", None, "").await;
    assert_eq!(status, 200);
    assert_eq!(services["docker"], serde_json::Value::Null);
    let v1 = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web-v1")
        .expect("web-v1 listed");
    assert_eq!(v1["linked_by"], serde_json::json!(["web.internal"]));
    assert_eq!(v1["source"], "config");
    assert_eq!(v1["endpoints"][0]["addr"], "127.0.0.11:8080");
    assert_eq!(v1["endpoints"][0]["source"], "config");
}

#[tokio::test]
async fn a_relink_needs_a_valid_token_and_records_its_name() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let body = r#"{"targets": ["web-v2"]}"#;
    let path = "/v1/aliases/web/targets";

    let (status, err) = http(&daemon, "PUT", path, None, body).await;
    assert_eq!(status, 401);
    assert!(
        err["error"].as_str().unwrap().contains("Authorization"),
        "{err}"
    );
    let (status, err) = http(&daemon, "PUT", path, Some("not-the-token-at-all"), body).await;
    assert_eq!(status, 401);
    assert!(
        err["error"].as_str().unwrap().contains("not valid"),
        "{err}"
    );
    // A refused change changed nothing.
    let (_, web) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(web["targets"], serde_json::json!(["web-v1"]));

    let (status, web) = http(&daemon, "PUT", path, Some(TOKEN), body).await;
    assert_eq!(status, 200, "{web}");
    assert_eq!(web["targets"], serde_json::json!(["web-v2"]));
    assert_eq!(web["changed_by"], TOKEN_NAME);
    assert_eq!(web["revision"], 2);
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_say_what_is_wrong() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let cases: [(&str, &str, u16, &str); 9] = [
        ("/v1/aliases/web/targets", "{not json", 400, "JSON"),
        ("/v1/aliases/web/targets", "", 400, "JSON"),
        (
            "/v1/aliases/web/targets",
            r#"{"targets": []}"#,
            400,
            "at least one",
        ),
        (
            "/v1/aliases/web/targets",
            r#"{"targets": "web-v1"}"#,
            400,
            "sequence",
        ),
        (
            "/v1/aliases/web/targets",
            r#"{"targets": ["web-v1"], "x": 1}"#,
            400,
            "unknown field `x`",
        ),
        (
            "/v1/aliases/web/targets",
            r#"{"targets": ["Web V1"]}"#,
            400,
            "not a valid service name",
        ),
        (
            "/v1/aliases/web/targets",
            r#"{"targets": ["web-v1", "web-v1"]}"#,
            400,
            "twice",
        ),
        (
            "/v1/aliases/web/targets",
            r#"{"targets": ["web-v9"]}"#,
            404,
            // Like an unknown alias, an unknown service lists the known ones.
            "unknown service `web-v9` (known: api-v1, big-v1, empty, web-v1, web-v2)",
        ),
        (
            "/v1/aliases/nope/targets",
            r#"{"targets": ["web-v1"]}"#,
            404,
            "unknown alias `nope`",
        ),
    ];
    for (path, body, want_status, want_text) in cases {
        let (status, err) = http(&daemon, "PUT", path, Some(TOKEN), body).await;
        assert_eq!(status, want_status, "{path} {body}: {err}");
        let text = err["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {err}"));
        assert!(text.contains(want_text), "{path} {body}: {text}");
    }
    let (status, err) = http(&daemon, "GET", "/v1/aliases/nope", None, "").await;
    assert_eq!(status, 404);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("known: api.internal"),
        "{err}"
    );
    let (status, err) = http(&daemon, "GET", "/v2/whatever", None, "").await;
    assert_eq!(status, 404);
    assert!(err["error"].is_string());
    let (status, err) = http(
        &daemon,
        "DELETE",
        "/v1/aliases/web/targets",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, 405, "{err}");

    // After all that, nothing changed.
    let (_, web) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(web["revision"], 1);
}

/// Well-formed but absurd values: each is refused with a 400 that names the field and its
/// range, nothing changes, and the alias still renders (a deadline past year 9999 once made
/// `GET /v1/aliases/web` fail for good).
#[tokio::test]
async fn out_of_range_values_are_refused_naming_the_field_and_the_alias_still_renders() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let long_reason = "x".repeat(aliasd::bounds::MAX_REASON + 1);
    let too_many: Vec<String> = (0..=aliasd::bounds::MAX_TARGETS)
        .map(|i| format!("svc-{i}"))
        .collect();
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "POST",
            "/v1/aliases/web/promote",
            r#"{"to": "web-v2", "observe": "100000years"}"#.into(),
            "`observe` must be between 0s and 7days",
        ),
        (
            "POST",
            "/v1/aliases/web/promote?dry_run=true",
            r#"{"to": "web-v2", "observe": "100000years"}"#.into(),
            "`observe` must be between",
        ),
        (
            "POST",
            "/v1/aliases/web/promote",
            r#"{"to": "web-v2", "warm_timeout": "50years"}"#.into(),
            "`warm_timeout` must be between 100ms and 1day",
        ),
        (
            "POST",
            "/v1/aliases/web/promote",
            r#"{"to": "web-v2", "min_healthy": 0}"#.into(),
            "`min_healthy` must be between 1 and",
        ),
        (
            "POST",
            "/v1/aliases/web/promote",
            serde_json::json!({"to": "web-v2", "reason": long_reason}).to_string(),
            "`reason` must be at most 1024 characters",
        ),
        (
            "POST",
            "/v1/aliases/web/promote",
            serde_json::json!({"to": too_many}).to_string(),
            "at most 64 services",
        ),
        (
            "POST",
            "/v1/aliases/web/rollback",
            r#"{"observe": "1000000h"}"#.into(),
            "`observe` must be between",
        ),
        (
            "POST",
            "/v1/aliases/web/abort",
            r#"{"reason": "two\nlines"}"#.into(),
            "control characters",
        ),
        (
            "PUT",
            "/v1/aliases/web/targets",
            serde_json::json!({"targets": too_many}).to_string(),
            "at most 64 services",
        ),
    ];
    for (method, path, body, want) in &cases {
        let (status, err) = http(&daemon, method, path, Some(TOKEN), body).await;
        assert_eq!(status, 400, "{method} {path} {body}: {err}");
        let text = err["error"].as_str().unwrap_or_default();
        assert!(text.contains(want), "{method} {path}: {text}");
        assert!(text.starts_with("field `"), "{text}");
    }
    let (status, web) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(status, 200, "{web}");
    assert_eq!(web["revision"], 1);
    assert_eq!(web["phase"], "stable");

    // The largest values in range are accepted and render.
    let (status, reply) = http(
        &daemon,
        "POST",
        "/v1/aliases/web/promote",
        Some(TOKEN),
        r#"{"to": "web-v2", "observe": "7days", "warm_timeout": "1day", "confirm": true}"#,
    )
    .await;
    assert!(status == 202, "{status} {reply}");
    let (status, web) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(status, 200, "{web}");
    assert!(web["operation"]["phase_deadline"].is_string(), "{web}");
    let (status, _) = http(&daemon, "POST", "/v1/aliases/web/abort", Some(TOKEN), "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_show_phases_revisions_and_endpoint_health_in_prometheus_text() {
    use http_body_util::BodyExt;
    let fixture = Fixture::new();
    let daemon = fixture.start();
    daemon
        .client()
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("link");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri = format!("{}/metrics", daemon.server_url()).parse().unwrap();
    let response = client.get(uri).await.expect("metrics");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let leader = format!("aliasd_cluster_leader{{node=\"{}\"}} 1", host_name());
    for line in [
        "aliasd_alias_phase{alias=\"web.internal\",phase=\"stable\"} 1",
        "aliasd_alias_phase{alias=\"web.internal\",phase=\"mixed\"} 0",
        "aliasd_alias_revision{alias=\"web.internal\"} 2",
        "aliasd_alias_answered_endpoints{alias=\"web.internal\"} 1",
        "aliasd_endpoint_healthy{service=\"web-v1\",endpoint=\"127.0.0.11:8080\",source=\"config\"} 1",
        "# TYPE aliasd_generation gauge",
        // A single node: the leader of a cluster of one, with no etcd.
        "# TYPE aliasd_cluster_leader gauge",
        leader.as_str(),
        "aliasd_cluster_nodes 1",
        "aliasd_cluster_applied_revision 0",
        "aliasd_cluster_behind_revisions 0",
        "aliasd_cluster_config_matches 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

/// This machine's host name, the name a single node takes.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_owned())
        .unwrap_or_default()
}

/// A single node shows itself as the leader of a cluster of one, named after the host, with a
/// digest of its definitions that a reload of other definitions changes and a reload of the
/// same ones gives back.
#[tokio::test]
async fn a_single_node_is_the_leader_of_a_cluster_of_one() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let (status, cluster) = http(&daemon, "GET", "/v1/cluster", None, "").await;
    assert_eq!(status, 200, "{cluster}");
    let name = host_name();
    assert!(!name.is_empty());
    assert_eq!(cluster["mode"], "single", "{cluster}");
    assert_eq!(cluster["node"], name.as_str(), "{cluster}");
    assert_eq!(cluster["leader"], name.as_str(), "{cluster}");
    assert_eq!(cluster["etcd"], serde_json::Value::Null, "{cluster}");
    assert_eq!(cluster["problems"], json!([]), "{cluster}");
    let hash = cluster["config_hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64, "{cluster}");
    let nodes = cluster["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{cluster}");
    let me = &nodes[0];
    assert_eq!(me["name"], name.as_str());
    assert_eq!(me["api"], daemon.api.to_string());
    assert_eq!(
        (&me["leader"], &me["config_matches"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(me["config_hash"], hash.as_str());
    let started = me["started_ms"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        started <= now && now - started < 120_000,
        "{started} vs {now}"
    );
    // The typed client reads the same.
    let typed = daemon.client().cluster().await.expect("cluster");
    assert_eq!(serde_json::to_value(&typed).unwrap(), cluster);

    // Other definitions, another digest; the same ones again, the same digest as at start.
    let config = std::fs::read_to_string(fixture.config()).unwrap();
    let changed = config.replace("127.0.0.21:8081", "127.0.0.22:8081");
    assert_ne!(changed, config);
    for (text, same) in [(&changed, false), (&config, true)] {
        std::fs::write(fixture.config(), text).unwrap();
        let (status, summary) = http(&daemon, "POST", "/v1/reload", Some(TOKEN), "").await;
        assert_eq!(status, 200, "{summary}");
        let (_, cluster) = http(&daemon, "GET", "/v1/cluster", None, "").await;
        assert_eq!(cluster["config_hash"] == hash.as_str(), same, "{cluster}");
        assert_eq!(cluster["config_hash"], cluster["nodes"][0]["config_hash"]);
        assert_eq!(cluster["nodes"][0]["config_matches"], true);
    }
}

#[tokio::test]
async fn an_open_events_stream_ends_when_aliasd_stops_cleanly() {
    use http_body_util::BodyExt;
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri = format!("{}/v1/events", daemon.server_url())
        .parse()
        .unwrap();
    let mut body = client.get(uri).await.expect("events").into_body();
    let log = daemon.log_path();
    let status = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    // The stream was closed by the server, not left hanging.
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the events stream stayed open after aliasd stopped"
    );
    // The shutdown did not have to give up on a listener that never left.
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("did not stop in time"), "{log}");
}

/// How an alias's last operation ended is part of the alias, read from what aliasd stores, so
/// it is still there after a restart; `GET /v1/history` is the newest history of every alias,
/// service and the config, newest first, within its bounds.
#[tokio::test]
async fn the_last_operation_and_the_recent_history_survive_a_restart() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/promote",
        json!({"to": "web-v2", "observe": "1m", "reason": "try v2"}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["alias"].get("last_operation"), None, "{reply}");
    wait_for(&daemon, Duration::from_secs(5), "mixed", |a| {
        a["phase"] == "mixed"
    })
    .await;
    let (status, reply) = post(
        &daemon,
        "/v1/aliases/web/abort",
        json!({"reason": "errors on v2"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    // Something newer, about a service, for the history across lists.
    let (status, body) = http(
        &daemon,
        "PUT",
        "/v1/services/vm",
        Some(TOKEN),
        r#"{"endpoints": ["127.0.0.41:9000"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let (_, web) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(web.get("operation"), None, "{web}");
    let last = &web["last_operation"];
    let (_, history) = http(&daemon, "GET", "/v1/aliases/web/history", None, "").await;
    let aborted = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["change"] == "aborted")
        .expect("the abort in the history");
    assert_eq!(
        *last,
        json!({
            "id": 2,
            "kind": "promote",
            "outcome": "aborted",
            "ended_at": aborted["at"],
            "ended_by": TOKEN_NAME,
            "ended_reason": "errors on v2",
            "reached": "mixed",
            "revision": aborted["revision"],
            "from": ["web-v1"],
            "to": ["web-v2"],
            "actor": TOKEN_NAME,
            "reason": "try v2",
            "started_at": last["started_at"],
            "observe": "1m",
            "confirm": false,
            "min_healthy": null,
            "warm_timeout": last["warm_timeout"],
            "stop_old": false,
        }),
        "{web}"
    );
    assert_eq!(aborted["revision"], web["revision"], "{history}");

    let recent = async |query: &str| {
        let (status, body) = http(&daemon, "GET", &format!("/v1/history{query}"), None, "").await;
        assert_eq!(status, 200, "{query}: {body}");
        body.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["alias"].as_str().unwrap(),
                    e["service"].as_str().unwrap_or("-"),
                    e["change"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    let newest = recent("?limit=3").await;
    assert_eq!(
        newest,
        [
            " vm service_set",
            "web.internal - aborted",
            "web.internal - mixed"
        ]
    );
    let all = recent("").await;
    assert_eq!(all[..3], newest[..], "{all:?}");
    assert!(
        all.contains(&"web.internal - started".to_owned()),
        "{all:?}"
    );
    for (query, words) in [
        ("?limit=0", "limit must be between 1 and 1000 (got 0)"),
        ("?limit=1001", "limit must be between 1 and 1000 (got 1001)"),
        ("?limit=many", "limit"),
        ("?since=1", "unknown field `since`"),
    ] {
        let (status, body) = http(&daemon, "GET", &format!("/v1/history{query}"), None, "").await;
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{query}: {body}");
    }

    // After a restart both read the same from the state directory.
    assert!(daemon.terminate().success());
    let daemon = fixture.start();
    let (_, again) = http(&daemon, "GET", "/v1/aliases/web", None, "").await;
    assert_eq!(again["last_operation"], *last, "{again}");
    let (status, body) = http(&daemon, "GET", "/v1/history?limit=3", None, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[1]["change"], "aborted", "{body}");
    assert_eq!(body[1]["at"], last["ended_at"], "{body}");
}

/// The spec is served, is OpenAPI 3.1, and lists every route the server answers: each path
/// and method in it reaches its handler (a read answers, a change without a token is 401, where
/// an unknown route would be the fallback's 404 or 405), and nothing the server routes is
/// missing from it.
#[tokio::test]
async fn the_openapi_spec_is_served_and_every_route_in_it_is_answered() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let (status, spec) = http(&daemon, "GET", "/v1/openapi.json", None, "").await;
    assert_eq!(status, 200);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().expect("paths");
    let mut listed: Vec<String> = Vec::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete"] {
            let Some(op) = item.get(method) else { continue };
            listed.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path
                .replace("{alias}", "web")
                .replace("{service}", "web-v1")
                .replace("{file}", "app.js")
                .replace("{id}", "1");
            if path == "/v1/events" {
                continue; // an endless stream, checked in its own tests
            }
            let (status, body) =
                http_text(&daemon, &method.to_uppercase(), &concrete, None, "").await;
            let secured = op.get("security").is_some();
            if secured {
                assert_eq!(status, 401, "{method} {concrete} without a token: {body}");
            } else {
                assert!(
                    status == 200
                        || ((path.contains("/services/") || path.contains("/rollouts/"))
                            && status == 404),
                    "{method} {concrete}: {status} {body}"
                );
            }
            // Every status the server answered is one the spec documents.
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {path} answered {status}, which the spec does not list"
            );
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
        }
    }
    listed.sort();
    let mut routes = vec![
        "GET /healthz",
        "GET /metrics",
        "GET /v1/aliases",
        "GET /v1/aliases/{alias}",
        "PUT /v1/aliases/{alias}",
        "DELETE /v1/aliases/{alias}",
        "PUT /v1/aliases/{alias}/targets",
        "POST /v1/aliases/{alias}/promote",
        "POST /v1/aliases/{alias}/rollback",
        "POST /v1/aliases/{alias}/confirm",
        "POST /v1/aliases/{alias}/abort",
        "GET /v1/aliases/{alias}/history",
        "GET /v1/history",
        "GET /v1/secondaries",
        "GET /v1/cluster",
        "GET /v1/services",
        "GET /v1/services/{service}",
        "PUT /v1/services/{service}",
        "DELETE /v1/services/{service}",
        "GET /v1/services/{service}/history",
        "POST /v1/reload",
        "GET /v1/rollouts",
        "POST /v1/rollouts",
        "GET /v1/rollouts/{id}",
        "POST /v1/rollouts/{id}/pause",
        "POST /v1/rollouts/{id}/resume",
        "POST /v1/rollouts/{id}/abort",
        "POST /v1/rollouts/{id}/rollback",
        "GET /v1/events",
        "GET /v1/openapi.json",
        "GET /ui",
        "GET /ui/{file}",
    ];
    routes.sort();
    assert_eq!(listed, routes);
    // The bounds are in the spec, not only in the code.
    let promote = &spec["components"]["schemas"]["PromoteRequest"]["properties"];
    assert_eq!(promote["min_healthy"]["maximum"], 10000, "{promote}");
    assert_eq!(promote["reason"]["maxLength"], 1024, "{promote}");
    let limit = &spec["paths"]["/v1/history"]["get"]["parameters"][0];
    assert_eq!(
        (
            &limit["name"],
            &limit["schema"]["minimum"],
            &limit["schema"]["maximum"]
        ),
        (&json!("limit"), &json!(1), &json!(1000)),
        "{limit}"
    );
    let last = &spec["components"]["schemas"]["AliasDto"]["properties"]["last_operation"];
    assert!(
        last.is_object(),
        "the alias's last operation is not in the spec"
    );
}
