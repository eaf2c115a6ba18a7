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
        published: Vec::new(),
    }
}

fn endpoint(
    f: &ContainerFacts,
    network: Option<&str>,
) -> Result<(ServiceName, DockerEndpoint), String> {
    endpoint_of(
        f,
        "aliasd.",
        network,
        &CheckConfig::default(),
        Addressing::default(),
    )
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
    let (s, ep) = endpoint_of(
        &f,
        "com.example.",
        None,
        &CheckConfig::default(),
        Addressing::default(),
    )
    .unwrap();
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

// ---- address = host: the advertise address and the published port ----

const ADVERTISE: &str = "10.0.0.1";

fn host_addressing() -> Addressing {
    Addressing {
        default: DockerAddress::Host,
        advertise: Some(ADVERTISE.parse().unwrap()),
    }
}

fn published(container_port: u16, host_ip: Option<&str>, host_port: u16) -> Published {
    Published {
        container_port,
        host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        host_port,
    }
}

fn with_ports(mut f: ContainerFacts, ports: Vec<Published>) -> ContainerFacts {
    f.published = ports;
    f
}

const WEB: &[(&str, &str)] = &[("aliasd.service", "web-v2"), ("aliasd.port", "8080")];

#[test]
fn address_host_takes_the_advertise_address_and_the_published_port() {
    // Several networks do not matter: the container's own address is not used.
    let f = with_ports(
        facts(WEB, &[("a", "172.30.0.5"), ("b", "172.31.0.5")]),
        vec![published(8080, None, 32768), published(9090, None, 32769)],
    );
    let (_, ep) = endpoint_of(
        &f,
        "aliasd.",
        None,
        &CheckConfig::default(),
        host_addressing(),
    )
    .unwrap();
    assert_eq!(ep.endpoint.to_string(), "10.0.0.1:32768");
}

#[test]
fn the_address_label_overrides_the_config_default_both_ways() {
    let mut labels = WEB.to_vec();
    labels.push(("aliasd.address", "container"));
    let f = with_ports(facts(&labels, NET), vec![published(8080, None, 32768)]);
    let (_, ep) = endpoint_of(
        &f,
        "aliasd.",
        None,
        &CheckConfig::default(),
        host_addressing(),
    )
    .unwrap();
    assert_eq!(ep.endpoint.to_string(), "172.30.0.5:8080");

    let mut labels = WEB.to_vec();
    labels.push(("aliasd.address", "host"));
    let f = with_ports(facts(&labels, NET), vec![published(8080, None, 32768)]);
    let addressing = Addressing {
        default: DockerAddress::Container,
        advertise: Some(ADVERTISE.parse().unwrap()),
    };
    let (_, ep) = endpoint_of(&f, "aliasd.", None, &CheckConfig::default(), addressing).unwrap();
    assert_eq!(ep.endpoint.to_string(), "10.0.0.1:32768");
}

#[test]
fn a_bad_address_label_is_a_problem_of_the_container() {
    let mut labels = WEB.to_vec();
    labels.push(("aliasd.address", "bridge"));
    let e = endpoint(&facts(&labels, NET), None).unwrap_err();
    assert!(
        e.contains("label aliasd.address: `bridge` is not one of container, host"),
        "{e}"
    );
}

#[test]
fn address_host_without_an_advertise_address_is_a_problem_of_the_container() {
    let mut labels = WEB.to_vec();
    labels.push(("aliasd.address", "host"));
    let f = with_ports(facts(&labels, NET), vec![published(8080, None, 32768)]);
    let e = endpoint(&f, None).unwrap_err();
    assert!(e.contains("set [cluster] advertise"), "{e}");
}

#[test]
fn address_host_without_the_port_published_says_to_publish_it() {
    let f = with_ports(facts(WEB, NET), vec![published(9090, None, 32769)]);
    let e = endpoint_of(
        &f,
        "aliasd.",
        None,
        &CheckConfig::default(),
        host_addressing(),
    )
    .unwrap_err();
    assert!(
        e.contains("label aliasd.port: container port 8080 is not published on the host: publish port 8080 (docker run -p 8080) or use address = container"),
        "{e}"
    );
}

#[test]
fn published_port_takes_a_binding_the_advertise_address_reaches() {
    let advertise = ADVERTISE.parse().unwrap();
    // Bound to loopback only: not reachable from other hosts.
    let only_loopback = [published(8080, Some("127.0.0.1"), 40000)];
    let e = published_port(&only_loopback, 8080, advertise).unwrap_err();
    assert!(
        e.contains(
            "published only on 127.0.0.1:40000, not on this node's advertise address 10.0.0.1"
        ),
        "{e}"
    );
    // Bound to the advertise address itself, or to all addresses; the lowest port wins.
    let several = [
        published(8080, Some("127.0.0.1"), 40000),
        published(8080, Some("10.0.0.1"), 40002),
        published(8080, None, 40001),
        published(8081, None, 30000),
    ];
    assert_eq!(published_port(&several, 8080, advertise), Ok(40001));
    assert_eq!(published_port(&several[1..2], 8080, advertise), Ok(40002));
}

#[test]
fn carries_matches_keys_with_any_value_and_keys_with_a_value() {
    let f = facts(&[("team", "payments"), ("tier", "web")], NET);
    let filter = |items: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    };
    assert!(f.carries(&[]));
    assert!(f.carries(&filter(&[("team", None)])));
    assert!(f.carries(&filter(&[("team", Some("payments")), ("tier", None)])));
    assert!(!f.carries(&filter(&[("team", Some("billing"))])));
    assert!(!f.carries(&filter(&[("team", None), ("zone", None)])));
}
