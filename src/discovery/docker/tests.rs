use super::*;

use bollard::models::EventActor;

use crate::check::CheckConfig;

const PREFIX: &str = "aliasd.";

fn facts(id: &str, ip: &str) -> ContainerFacts {
    ContainerFacts {
        id: id.into(),
        name: format!("{id}-name"),
        running: true,
        labels: [("aliasd.service", "web-v1"), ("aliasd.port", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        networks: vec![("appnet".into(), Some(ip.parse().unwrap()), None)],
        health: None,
        stop_signal: None,
        published: Vec::new(),
    }
}

fn tracked(f: ContainerFacts) -> Tracked {
    Rules {
        prefix: PREFIX,
        labels: &[],
        network: None,
        addressing: Addressing::default(),
        default_check: &CheckConfig::default(),
    }
    .track(f)
}

/// A view of two running containers, `a` and `b`.
fn view() -> View {
    let mut v = View::default();
    v.containers
        .insert("a".into(), tracked(facts("a", "172.30.0.2")));
    v.containers
        .insert("b".into(), tracked(facts("b", "172.30.0.3")));
    v
}

fn event(
    typ: EventMessageTypeEnum,
    id: &str,
    action: &str,
    attributes: &[(&str, &str)],
) -> EventMessage {
    EventMessage {
        typ: Some(typ),
        action: Some(action.into()),
        actor: Some(EventActor {
            id: Some(id.into()),
            attributes: Some(
                attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }),
        ..Default::default()
    }
}

fn container(id: &str, action: &str, attributes: &[(&str, &str)]) -> EventMessage {
    event(EventMessageTypeEnum::CONTAINER, id, action, attributes)
}

/// The endpoints of web-v1 in the view's update, and their Docker health.
fn endpoints(v: &View) -> Vec<(String, Option<DockerHealth>)> {
    let SourceUpdate::Docker { services, .. } = v.update() else {
        unreachable!()
    };
    services
        .get(&"web-v1".parse::<ServiceName>().unwrap())
        .map(|eps| {
            eps.iter()
                .map(|e| (e.endpoint.to_string(), e.docker_health.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn docker_stop_takes_the_container_out_at_the_kill_with_its_stop_signal() {
    let mut v = view();
    assert_eq!(
        v.on_event(&container("a", "kill", &[("signal", "15")]), PREFIX),
        Effect::Changed
    );
    assert_eq!(endpoints(&v), [("172.30.0.3:8080".to_owned(), None)]);
    // What follows a stop changes nothing more: the timeout's SIGKILL, die, stop.
    for (action, attrs) in [
        ("kill", &[("signal", "9")][..]),
        ("die", &[("exitCode", "137")][..]),
        ("stop", &[][..]),
    ] {
        assert_eq!(
            v.on_event(&container("a", action, attrs), PREFIX),
            Effect::Nothing,
            "{action}"
        );
    }
    assert_eq!(endpoints(&v).len(), 1);
    assert_eq!(
        v.on_event(&container("a", "destroy", &[]), PREFIX),
        Effect::Changed
    );
    assert!(!v.containers.contains_key("a"));
}

#[test]
fn a_container_with_another_stop_signal_leaves_at_that_one() {
    let mut v = view();
    v.containers.get_mut("a").unwrap().facts.stop_signal = Some("SIGQUIT".into());
    assert_eq!(
        v.on_event(&container("a", "kill", &[("signal", "15")]), PREFIX),
        Effect::Nothing
    );
    assert_eq!(
        v.on_event(&container("a", "kill", &[("signal", "3")]), PREFIX),
        Effect::Changed
    );
    assert_eq!(endpoints(&v).len(), 1);
}

#[test]
fn a_kill_or_a_crash_marks_the_container_died_and_keeps_it_listed() {
    let mut v = view();
    assert_eq!(
        v.on_event(&container("a", "kill", &[("signal", "9")]), PREFIX),
        Effect::Changed
    );
    assert_eq!(
        v.on_event(&container("b", "die", &[("exitCode", "2")]), PREFIX),
        Effect::Changed
    );
    assert_eq!(
        endpoints(&v),
        [
            (
                "172.30.0.2:8080".to_owned(),
                Some(DockerHealth::Died("killed (SIGKILL)".into()))
            ),
            (
                "172.30.0.3:8080".to_owned(),
                Some(DockerHealth::Died("exited with code 2".into()))
            ),
        ]
    );
    // A start brings it back, after a fresh look.
    assert_eq!(
        v.on_event(&container("a", "start", &[]), PREFIX),
        Effect::Refresh("a".into())
    );
}

#[test]
fn a_clean_exit_leaves_and_reload_signals_are_ignored() {
    let mut v = view();
    assert_eq!(
        v.on_event(&container("a", "kill", &[("signal", "1")]), PREFIX),
        Effect::Nothing
    );
    assert_eq!(endpoints(&v).len(), 2);
    assert_eq!(
        v.on_event(&container("a", "die", &[("exitCode", "0")]), PREFIX),
        Effect::Changed
    );
    assert_eq!(endpoints(&v), [("172.30.0.3:8080".to_owned(), None)]);
}

#[test]
fn only_labelled_or_known_containers_and_their_networks_are_looked_at() {
    let mut v = view();
    // An unlabelled container nobody tracks: nothing to do.
    assert_eq!(
        v.on_event(&container("zzz", "start", &[]), PREFIX),
        Effect::Nothing
    );
    // A labelled one that starts is inspected.
    let labelled = container("new", "start", &[("aliasd.service", "web-v2")]);
    assert_eq!(v.on_event(&labelled, PREFIX), Effect::Refresh("new".into()));
    // Network events name the container in an attribute.
    let connect = event(
        EventMessageTypeEnum::NETWORK,
        "net-id",
        "connect",
        &[("container", "b")],
    );
    assert_eq!(v.on_event(&connect, PREFIX), Effect::Refresh("b".into()));
    let health = container("b", "health_status: unhealthy", &[]);
    assert_eq!(v.on_event(&health, PREFIX), Effect::Refresh("b".into()));
    // Other kinds of object are not containers.
    let image = event(EventMessageTypeEnum::IMAGE, "sha256:x", "pull", &[]);
    assert_eq!(v.on_event(&image, PREFIX), Effect::Nothing);
}

#[test]
fn skipped_containers_are_problems_until_they_stop() {
    let mut v = view();
    let mut bad = facts("c", "172.30.0.4");
    bad.labels.insert("aliasd.port".into(), "http".into());
    v.containers.insert("c".into(), tracked(bad));
    let SourceUpdate::Docker { problems, .. } = v.update() else {
        unreachable!()
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].container.name, "c-name");
    assert!(
        problems[0].message.contains("label aliasd.port"),
        "{}",
        problems[0].message
    );
    v.on_event(&container("c", "kill", &[("signal", "15")]), PREFIX);
    let SourceUpdate::Docker { problems, .. } = v.update() else {
        unreachable!()
    };
    assert!(problems.is_empty());
}

#[test]
fn a_timed_out_request_reads_as_a_hung_daemon() {
    let hung = failed(
        "cannot inspect container c1",
        &bollard::errors::Error::RequestTimeoutError,
    );
    assert_eq!(
        hung,
        format!(
            "Docker stopped answering: cannot inspect container c1: no reply within {REQUEST_TIMEOUT_S}s"
        )
    );
    let other = failed(
        "cannot list containers",
        &bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        },
    );
    assert!(other.starts_with("cannot list containers: "), "{other}");
    assert!(other.contains("boom"), "{other}");
}

#[test]
fn the_list_filters_ask_for_the_service_label_and_every_configured_label() {
    let labels = vec![
        ("team".to_owned(), Some("payments".to_owned())),
        ("canary".to_owned(), None),
    ];
    let filters = list_filters("aliasd.", &labels);
    assert_eq!(filters.len(), 1);
    assert_eq!(
        filters["label"],
        ["aliasd.service", "team=payments", "canary"]
    );
    assert_eq!(list_filters("aliasd.", &[])["label"], ["aliasd.service"]);
}

#[test]
fn a_container_without_the_configured_labels_is_not_taken_in() {
    let labels = vec![("team".to_owned(), Some("payments".to_owned()))];
    let check = CheckConfig::default();
    let rules = Rules {
        prefix: PREFIX,
        labels: &labels,
        network: None,
        addressing: Addressing::default(),
        default_check: &check,
    };
    let mut v = View::default();
    // An event (a start) reaches every labelled container, whatever docker.labels says.
    assert!(!v.inspected("a", Some(facts("a", "172.30.0.2")), &rules));
    let mut theirs = facts("b", "172.30.0.3");
    theirs.labels.insert("team".into(), "payments".into());
    assert!(v.inspected("b", Some(theirs), &rules));
    assert_eq!(endpoints(&v).len(), 1);
}

#[test]
fn published_ports_are_read_from_the_network_settings() {
    let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
        "Id": "abc",
        "NetworkSettings": {
            "Ports": {
                "8080/tcp": [
                    {"HostIp": "0.0.0.0", "HostPort": "32768"},
                    {"HostIp": "::", "HostPort": "32768"},
                    {"HostIp": "127.0.0.1", "HostPort": "40000"}
                ],
                "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
                "9090/tcp": null
            }
        }
    }))
    .unwrap();
    let facts = facts_of(&inspect);
    assert_eq!(
        facts.published,
        [
            Published {
                container_port: 8080,
                host_ip: None,
                host_port: 32768
            },
            Published {
                container_port: 8080,
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 40000
            },
        ]
    );
}
