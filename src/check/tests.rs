use super::*;

fn http_base() -> CheckConfig {
    CheckConfig {
        kind: CheckKind::Http {
            path: "/healthz".into(),
            expect: 200..=299,
            host: None,
        },
        ..CheckConfig::default()
    }
}

#[test]
fn an_empty_spec_keeps_the_base() {
    let base = http_base();
    assert_eq!(HealthSpec::default().apply(&base), Ok(base));
}

#[test]
fn settings_override_the_base_one_by_one() {
    let spec =
        HealthSpec::from_pairs(["path=/ready", "interval=500ms", "rise=1", "fall = 4"]).unwrap();
    let got = spec.apply(&http_base()).unwrap();
    assert_eq!(
        got.kind,
        CheckKind::Http {
            path: "/ready".into(),
            expect: 200..=299,
            host: None
        }
    );
    assert_eq!(got.interval, Duration::from_millis(500));
    // The inherited 1 s timeout is held to the shorter interval.
    assert_eq!(got.timeout, Duration::from_millis(500));
    assert_eq!((got.rise, got.fall), (1, 4));
}

#[test]
fn switching_to_http_starts_from_the_http_defaults() {
    let spec = HealthSpec::from_pairs(["kind=http"]).unwrap();
    let got = spec.apply(&CheckConfig::default()).unwrap();
    assert_eq!(
        got.kind,
        CheckKind::Http {
            path: "/".into(),
            expect: 200..=399,
            host: None
        }
    );
    let tcp = HealthSpec::from_pairs(["kind=tcp"]).unwrap();
    assert_eq!(tcp.apply(&http_base()).unwrap().kind, CheckKind::Tcp);
}

#[test]
fn every_bad_setting_is_reported_with_its_key() {
    let spec = HealthSpec::from_pairs([
        "kind=ftp",
        "interval=10ms",
        "timeout=2h",
        "rise=0",
        "fall=101",
        "expect=2xx",
    ])
    .unwrap();
    let problems = spec.apply(&http_base()).unwrap_err();
    let text = problems.join("\n");
    for want in [
        "kind: `ftp` is not one of http, tcp, none",
        "interval must be at least 50ms",
        "timeout must be at most 1h",
        "rise must be between 1 and 100",
        "fall must be between 1 and 100",
        "expect: `2xx` is not a status or range",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn http_settings_on_a_tcp_check_and_a_timeout_over_the_interval_are_refused() {
    let spec = HealthSpec::from_pairs(["path=/x"]).unwrap();
    assert_eq!(
        spec.apply(&CheckConfig::default()).unwrap_err(),
        ["path applies only to kind http"]
    );
    let spec = HealthSpec::from_pairs(["interval=1s", "timeout=2s"]).unwrap();
    assert_eq!(
        spec.apply(&CheckConfig::default()).unwrap_err(),
        ["timeout must not exceed interval"]
    );
    let spec = HealthSpec::from_pairs(["kind=http", "path=healthz"]).unwrap();
    assert!(spec.apply(&CheckConfig::default()).unwrap_err()[0].starts_with("path must start"));
}

#[test]
fn pairs_need_a_known_key_and_an_equals_sign() {
    assert!(
        HealthSpec::from_pairs(["paht=/x"])
            .unwrap_err()
            .contains("`paht` is not a health setting")
    );
    assert!(
        HealthSpec::from_pairs(["path"])
            .unwrap_err()
            .contains("is not KEY=VALUE")
    );
    assert!(
        HealthSpec::from_pairs(["rise=two"])
            .unwrap_err()
            .contains("rise: `two` is not a whole number")
    );
}

#[test]
fn a_spec_reads_from_json_and_refuses_unknown_fields() {
    let spec: HealthSpec =
        serde_json::from_str(r#"{"kind": "http", "path": "/healthz", "rise": 3}"#).unwrap();
    assert_eq!(spec.kind.as_deref(), Some("http"));
    assert_eq!(spec.rise, Some(3));
    assert!(serde_json::from_str::<HealthSpec>(r#"{"kinds": "http"}"#).is_err());
}

#[test]
fn only_unknown_and_healthy_endpoints_are_answered() {
    assert!(Health::Unknown.passes());
    assert!(Health::Healthy.passes());
    assert!(!Health::Unhealthy.passes());
    assert!(!Health::Starting.passes());
}
