//! The live registry through the real daemon: services and aliases defined and removed over the
//! API without a restart, durable across SIGKILL, and config reloads by SIGHUP and the API that
//! apply whole or not at all.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::support::{Fixture, TOKEN, Transport, addresses, dig, http, query};

async fn put(
    daemon: &crate::support::Daemon,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    http(daemon, "PUT", path, Some(TOKEN), &body.to_string()).await
}

async fn delete(daemon: &crate::support::Daemon, path: &str) -> (u16, serde_json::Value) {
    http(daemon, "DELETE", path, Some(TOKEN), "").await
}

async fn a_records(daemon: &crate::support::Daemon, name: &str) -> Vec<String> {
    addresses(&query(daemon.dns, name, RecordType::A, Transport::Udp).await)
}

#[tokio::test]
async fn a_service_and_an_alias_defined_over_the_api_answer_at_once_and_go_again() {
    let fixture = Fixture::new();
    let daemon = fixture.start();

    // A new version for VMs: defined through the API, with its own health settings.
    let (status, body) = put(
        &daemon,
        "/v1/services/vm-v1",
        json!({"endpoints": ["10.7.0.1:9000", "10.7.0.2:9000"], "health": {"kind": "none"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"], "api");
    assert_eq!(body["check"], "none");
    assert_eq!(body["endpoints"][1]["addr"], "10.7.0.2:9000");
    // The same again is a 200 and changes nothing.
    let (status, _) = put(
        &daemon,
        "/v1/services/vm-v1",
        json!({"endpoints": ["10.7.0.1:9000", "10.7.0.2:9000"], "health": {"kind": "none"}}),
    )
    .await;
    assert_eq!(status, 200);

    // An alias for it, created at runtime: the real dig resolves it on the next query.
    let (status, body) = put(
        &daemon,
        "/v1/aliases/vm",
        json!({"targets": ["vm-v1"], "port_name": "grpc"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"], "api");
    assert_eq!(body["revision"], 1);
    let answer = dig(daemon.dns, &["vm.internal", "A", "+short"]);
    let mut got: Vec<&str> = answer.lines().collect();
    got.sort();
    assert_eq!(got, ["10.7.0.1", "10.7.0.2"]);
    let srv = dig(daemon.dns, &["_grpc._tcp.vm.internal", "SRV", "+short"]);
    assert!(srv.contains("9000 10-7-0-1.vm.internal."), "{srv}");

    // The endpoints change: the answers follow.
    let (status, _) = put(
        &daemon,
        "/v1/services/vm-v1",
        json!({"endpoints": ["10.7.0.3:9000"], "health": {"kind": "none"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(a_records(&daemon, "vm.internal.").await, ["10.7.0.3"]);

    // A linked service cannot be deleted; the 409 names the alias.
    let (status, body) = delete(&daemon, "/v1/services/vm-v1").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("alias `vm.internal`"),
        "{body}"
    );
    // Config services and aliases are the config's.
    let (status, body) = delete(&daemon, "/v1/services/web-v1").await;
    assert_eq!(status, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("defined in the config")
    );
    let (status, _) = delete(&daemon, "/v1/aliases/web").await;
    assert_eq!(status, 409);

    // The alias goes (NXDOMAIN), then its service can go too.
    let (status, body) = delete(&daemon, "/v1/aliases/vm").await;
    assert_eq!(
        (status, body["deleted"].as_str()),
        (200, Some("vm.internal"))
    );
    let m = query(daemon.dns, "vm.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    let (status, _) = delete(&daemon, "/v1/services/vm-v1").await;
    assert_eq!(status, 200);
    let (status, _) = http(&daemon, "GET", "/v1/services/vm-v1", None, "").await;
    assert_eq!(status, 404);

    // Its history says who did what.
    let (status, history) = http(&daemon, "GET", "/v1/services/vm-v1/history", None, "").await;
    assert_eq!(status, 200);
    let changes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["service_set", "service_set", "service_deleted"]);
    assert_eq!(history[0]["actor"], crate::support::TOKEN_NAME);
}

#[tokio::test]
async fn bad_registry_requests_are_refused_with_the_field_and_nothing_changes() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let cases = [
        (
            "/v1/services/Web!",
            json!({"endpoints": []}),
            "not a valid service name",
        ),
        (
            "/v1/services/vm",
            json!({"endpoints": ["10.0.0.1"]}),
            "endpoints: `10.0.0.1` is not an endpoint",
        ),
        (
            "/v1/services/vm",
            json!({"endpoints": [], "health": {"kind": "udp"}}),
            "health: kind: `udp`",
        ),
        (
            "/v1/services/vm",
            json!({"endpoints": [], "health": {"interval": "1ms"}}),
            "interval must be at least 50ms",
        ),
        (
            "/v1/services/vm",
            json!({"endpoint": []}),
            "unknown field `endpoint`",
        ),
        (
            "/v1/aliases/db",
            json!({"targets": ["web-v1"]}),
            "collides with the static name",
        ),
        (
            "/v1/aliases/x.web",
            json!({"targets": ["web-v1"]}),
            "nested with alias `web.internal`",
        ),
        (
            "/v1/aliases/new",
            json!({"targets": ["web-v1"], "if_none_healthy": "maybe"}),
            "if_none_healthy: `maybe`",
        ),
        (
            "/v1/aliases/other.example.",
            json!({"targets": ["web-v1"]}),
            "outside every configured zone",
        ),
    ];
    for (path, body, want) in cases {
        let (status, err) = put(&daemon, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {err}");
        assert!(
            err["error"].as_str().unwrap().contains(want),
            "{path} {body}: {err}"
        );
    }
    let (status, err) = put(&daemon, "/v1/aliases/new", json!({"targets": ["nope"]})).await;
    assert_eq!(status, 404, "{err}");
    // An alias that does not exist has nothing to change: without `targets` it is not created.
    let (status, err) = put(&daemon, "/v1/aliases/new", json!({})).await;
    assert_eq!(status, 404, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("`targets` is required"),
        "{err}"
    );
    let (status, _) = put(&daemon, "/v1/services/vm", json!({"endpoints": []})).await;
    assert_eq!(status, 201);
    let (status, _) = http(
        &daemon,
        "PUT",
        "/v1/services/vm2",
        None,
        r#"{"endpoints": []}"#,
    )
    .await;
    assert_eq!(status, 401);
    let (_, list) = http(&daemon, "GET", "/v1/aliases", None, "").await;
    assert_eq!(list.as_array().unwrap().len(), 3, "no alias was added");
}

#[tokio::test]
async fn api_services_and_aliases_survive_sigkill() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let (status, _) = put(
        &daemon,
        "/v1/services/vm-v1",
        json!({"endpoints": ["10.7.0.1:9000"], "health": {"kind": "none"}}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = put(&daemon, "/v1/aliases/vm", json!({"targets": ["vm-v1"]})).await;
    assert_eq!(status, 201);
    daemon.kill9();

    let daemon = fixture.start();
    assert_eq!(a_records(&daemon, "vm.internal.").await, ["10.7.0.1"]);
    let (_, vm) = http(&daemon, "GET", "/v1/aliases/vm", None, "").await;
    assert_eq!(vm["source"], "api");
    // A deleted alias comes back with its revisions continued, never reused.
    let (status, _) = delete(&daemon, "/v1/aliases/vm").await;
    assert_eq!(status, 200);
    daemon.kill9();
    let daemon = fixture.start();
    let m = query(daemon.dns, "vm.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    let (status, body) = put(&daemon, "/v1/aliases/vm", json!({"targets": ["vm-v1"]})).await;
    assert_eq!(status, 201);
    assert_eq!(
        body["revision"], 3,
        "created 1, removed 2, created again 3: {body}"
    );
}

#[tokio::test]
async fn a_reload_applies_a_good_config_whole_and_refuses_a_bad_one_whole() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let config = std::fs::read_to_string(fixture.config()).unwrap();

    // A new service and alias, through SIGHUP.
    let more = format!(
        "{config}\n[[service]]\nname = \"shop-v1\"\nendpoints = [\"10.8.0.1:80\"]\n\n[[alias]]\nname = \"shop\"\ntargets = [\"shop-v1\"]\n"
    );
    std::fs::write(fixture.config(), &more).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a_records(&daemon, "shop.internal.").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not add shop:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a_records(&daemon, "shop.internal.").await, ["10.8.0.1"]);

    // A broken config: refused whole with file:line:col, and the answers stay as they were.
    let broken = more.replace(
        "endpoints = [\"10.8.0.1:80\"]",
        "endpoints = [\"10.8.0.1:80\", \"nope\"]",
    ) + "\n[[alias]]\nname = \"extra\"\ntargets = [\"shop-v1\"]\n";
    std::fs::write(fixture.config(), &broken).unwrap();
    let (status, err) = http(&daemon, "POST", "/v1/reload", Some(TOKEN), "").await;
    assert_eq!(status, 400, "{err}");
    let problem = err["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("aliasd.toml:") && problem.contains("`nope` is not an endpoint"),
        "{err}"
    );
    let line = broken.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    assert!(
        problem.contains(&format!("aliasd.toml:{line}:")),
        "{problem} (line {line})"
    );
    let m = query(daemon.dns, "extra.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    assert_eq!(a_records(&daemon, "shop.internal.").await, ["10.8.0.1"]);

    // Changes that need a restart are refused too, naming what changed.
    std::fs::write(
        fixture.config(),
        more.replace("udp_sockets = 2", "udp_sockets = 1"),
    )
    .unwrap();
    let (status, err) = http(&daemon, "POST", "/v1/reload", Some(TOKEN), "").await;
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("dns.udp_sockets changed, which takes a restart"),
        "{err}"
    );

    // Removing the alias and its service in one reload is fine; the summary says so.
    std::fs::write(fixture.config(), &config).unwrap();
    let (status, summary) = http(&daemon, "POST", "/v1/reload", Some(TOKEN), "").await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["aliases_removed"], json!(["shop.internal"]));
    assert_eq!(summary["services_removed"], json!(["shop-v1"]));
    let m = query(daemon.dns, "shop.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    // A reload needs a token like any change.
    let (status, _) = http(&daemon, "POST", "/v1/reload", None, "").await;
    assert_eq!(status, 401);
}
