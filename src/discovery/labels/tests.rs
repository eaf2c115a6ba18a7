use super::*;

use crate::check::CheckKind;

fn facts(labels: &[(&str, &str)], networks: &[(&str, &str)]) -> ContainerFacts {
    ContainerFacts {
        id: "0123456789abcdef0123".into(),
        name: "web-v2-1".into(),
        running: true,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        networks: networks
            .iter()
            .map(|(n, ip)| (n.to_string(), Some(ip.parse().unwrap()), None))
            .collect(),
        health: None,
        stop_signal: None,
    }
}

fn endpoint(
    f: &ContainerFacts,
    network: Option<&str>,
) -> Result<(ServiceName, DockerEndpoint), String> {
    endpoint_of(f, "aliasd.", network, &CheckConfig::default())
}

const NET: &[(&str, &str)] = &[("appnet", "172.30.0.5")];

#[test]
fn service_and_port_labels_make_an_endpoint_at_the_network_address() {
    let f = facts(
        &[("aliasd.service", "web-v2"), ("aliasd.port", "8080")],
        NET,
    );
    let (service, ep) = endpoint(&f, None).unwrap();
    assert_eq!(service.as_str(), "web-v2");
    assert_eq!(ep.endpoint.to_string(), "172.30.0.5:8080");
    assert_eq!(ep.container.name, "web-v2-1");
    assert_eq!(ep.container.short_id(), "0123456789ab");
    assert!(ep.health.is_empty());
    assert_eq!(ep.port_name, None);
}

#[test]
fn optional_labels_set_health_port_name_and_network() {
    let f = facts(
        &[
            ("aliasd.service", "web-v2"),
            ("aliasd.port", "8080"),
            ("aliasd.port_name", "grpc"),
            ("aliasd.network", "backend"),
            ("aliasd.health.kind", "http"),
            ("aliasd.health.path", "/ready"),
            ("com.example.other", "ignored"),
        ],
        &[("appnet", "172.30.0.5"), ("backend", "172.31.0.7")],
    );
    let (_, ep) = endpoint(&f, Some("appnet")).unwrap();
    // The container's own label wins over the config's network.
    assert_eq!(ep.endpoint.to_string(), "172.31.0.7:8080");
    assert_eq!(ep.port_name.as_deref(), Some("grpc"));
    let check = ep.health.apply(&CheckConfig::default()).unwrap();
    assert_eq!(
        check.kind,
        CheckKind::Http {
            path: "/ready".into(),
            expect: 200..=399,
            host: None
        }
    );
}

#[test]
fn bad_labels_are_named_in_the_problem() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("aliasd.port", "8080")],
            "label aliasd.service is missing",
        ),
        (
            &[("aliasd.service", "Web_V2!"), ("aliasd.port", "8080")],
            "label aliasd.service: `Web_V2!` is not a valid service name",
        ),
        (
            &[("aliasd.service", "web-v2")],
            "label aliasd.port is missing",
        ),
        (
            &[("aliasd.service", "web-v2"), ("aliasd.port", "http")],
            "label aliasd.port: `http` is not a port number",
        ),
        (
            &[("aliasd.service", "web-v2"), ("aliasd.port", "0")],
            "label aliasd.port: `0` is not a port number",
        ),
        (
            &[
                ("aliasd.service", "web-v2"),
                ("aliasd.port", "80"),
                ("aliasd.helth.path", "/x"),
            ],
            "label aliasd.helth.path is not one aliasd reads",
        ),
        (
            &[
                ("aliasd.service", "web-v2"),
                ("aliasd.port", "80"),
                ("aliasd.health.rise", "0"),
            ],
            "label aliasd.health.rise must be between 1 and 100",
        ),
        (
            &[
                ("aliasd.service", "web-v2"),
                ("aliasd.port", "80"),
                ("aliasd.port_name", "_grpc"),
            ],
            "label aliasd.port_name: port_name `_grpc`",
        ),
    ];
    for (labels, want) in cases {
        let err = endpoint(&facts(labels, NET), None).unwrap_err();
        assert!(err.contains(want), "{labels:?}: {err}");
    }
}

#[test]
fn the_address_needs_one_network_or_a_choice() {
    let labels = &[("aliasd.service", "web-v2"), ("aliasd.port", "8080")];
    let two = &[("a", "172.30.0.5"), ("b", "172.31.0.5")];
    let err = endpoint(&facts(labels, two), None).unwrap_err();
    assert!(err.contains("several networks (a, b)"), "{err}");
    let (_, ep) = endpoint(&facts(labels, two), Some("b")).unwrap();
    assert_eq!(ep.endpoint.to_string(), "172.31.0.5:8080");
    let err = endpoint(&facts(labels, two), Some("c")).unwrap_err();
    assert!(
        err.contains("no address on network `c` (its networks: a, b)"),
        "{err}"
    );
    let err = endpoint(&facts(labels, &[]), None).unwrap_err();
    assert!(err.contains("no address on any network"), "{err}");
}

#[test]
fn another_label_prefix_reads_other_labels() {
    let f = facts(
        &[
            ("com.example.service", "web-v2"),
            ("com.example.port", "81"),
        ],
        NET,
    );
    assert!(f.is_labelled("com.example."));
    assert!(!f.is_labelled("aliasd."));
    let (s, ep) = endpoint_of(&f, "com.example.", None, &CheckConfig::default()).unwrap();
    assert_eq!((s.as_str(), ep.endpoint.addr().port()), ("web-v2", 81));
}

#[test]
fn stop_signals_are_read_by_name_or_number() {
    assert_eq!(signal_number("SIGTERM"), Some(15));
    assert_eq!(signal_number("QUIT"), Some(3));
    assert_eq!(signal_number("9"), Some(9));
    assert_eq!(signal_number("SIGBOGUS"), None);
    let mut f = facts(&[], NET);
    assert_eq!(f.stop_signal_number(), 15);
    f.stop_signal = Some("SIGQUIT".into());
    assert_eq!(f.stop_signal_number(), 3);
}
