use super::*;

use crate::check::{CheckKind, HealthSpec};
use crate::testkit::{self, ConfigDir};

const ZONE: &str = "\
$TTL 300
@   IN SOA ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
    IN NS  ns1.internal.
db  IN A   10.9.0.1
";

fn base_with(extra: &str) -> Base {
    let rest = format!(
        "[health]\nkind = \"tcp\"\n{}{extra}\n",
        testkit::service("web-v1", &["10.0.0.1:8080"])
    );
    ConfigDir::new(&[("internal.zone", ZONE)]).base(&testkit::config(
        r#"["127.0.0.1:5353"]"#,
        "",
        &rest,
    ))
}

fn svc(name: &str) -> ServiceName {
    name.parse().unwrap()
}

fn docker(service: &str, addr: &str, name: &str) -> (ServiceName, DockerEndpoint) {
    (
        svc(service),
        DockerEndpoint {
            endpoint: addr.parse().unwrap(),
            container: ContainerRef {
                id: format!("{name}-0123456789abcdef"),
                name: name.into(),
            },
            health: HealthSpec::default(),
            port_name: None,
            docker_health: None,
        },
    )
}

fn registry(docker_eps: Vec<(ServiceName, DockerEndpoint)>) -> Registry {
    let mut r = Registry::default();
    for (s, e) in docker_eps {
        r.docker.entry(s).or_default().push(e);
    }
    r
}

#[test]
fn docker_endpoints_join_a_config_service_and_define_new_ones() {
    let base = base_with("");
    let mut r = registry(vec![
        docker("web-v1", "172.30.0.5:8080", "web-v1-a"),
        // The same address as the config's is listed once.
        docker("web-v1", "10.0.0.1:8080", "web-v1-b"),
        docker("web-v2", "172.30.0.6:8080", "web-v2-a"),
    ]);
    r.api_services.insert(
        svc("vm"),
        ApiService {
            endpoints: vec!["10.1.0.1:9000".parse().unwrap()],
            health: HealthSpec::from_pairs(["kind=none"]).unwrap(),
            changed_by: "deploy".into(),
            changed_at_ms: 1,
        },
    );
    let t = Topology::build(&base, &r, []);
    let v1 = &t.services[&svc("web-v1")];
    assert_eq!(v1.defined_by, Some(Source::Config));
    let sources: Vec<(String, Source)> = v1
        .endpoints
        .iter()
        .map(|e| (e.endpoint.to_string(), e.source))
        .collect();
    assert_eq!(
        sources,
        [
            ("10.0.0.1:8080".to_owned(), Source::Config),
            ("172.30.0.5:8080".to_owned(), Source::Docker)
        ]
    );
    assert_eq!(
        v1.endpoints[1].container.as_ref().map(|c| c.name.as_str()),
        Some("web-v1-a")
    );
    let v2 = &t.services[&svc("web-v2")];
    assert_eq!(v2.defined_by, None);
    assert_eq!(v2.check.kind, CheckKind::Tcp);
    let vm = &t.services[&svc("vm")];
    assert_eq!(vm.defined_by, Some(Source::Api));
    assert_eq!(vm.endpoints[0].check.kind, CheckKind::None);
}

#[test]
fn container_labels_override_the_service_check_per_endpoint() {
    let base = base_with("[service.health]\nkind = \"http\"\npath = \"/healthz\"\n");
    let (s, mut e) = docker("web-v1", "172.30.0.5:8080", "a");
    e.health = HealthSpec::from_pairs(["path=/ready"]).unwrap();
    let t = Topology::build(&base, &registry(vec![(s, e)]), []);
    let kinds: Vec<&CheckKind> = t.services[&svc("web-v1")]
        .endpoints
        .iter()
        .map(|e| &e.check.kind)
        .collect();
    assert!(matches!(kinds[0], CheckKind::Http { path, .. } if path == "/healthz"));
    assert!(matches!(kinds[1], CheckKind::Http { path, .. } if path == "/ready"));
}

#[test]
fn with_docker_on_a_named_service_exists_before_its_first_container() {
    let on = base_with(
        "[docker]\nenabled = true\nsocket = \"/tmp/none.sock\"\n[[alias]]\nname = \"web\"\ntargets = [\"web-v2\"]\n",
    );
    let t = Topology::build(&on, &Registry::default(), [&svc("web-v3")]);
    for name in ["web-v2", "web-v3"] {
        let s = &t.services[&svc(name)];
        assert!(s.endpoints.is_empty(), "{name}");
        assert_eq!(s.defined_by, None);
    }
    // Without Docker nothing is made up.
    let off = base_with("");
    let t = Topology::build(&off, &Registry::default(), [&svc("web-v3")]);
    assert!(!t.services.contains_key(&svc("web-v3")));
}

#[test]
fn a_container_health_check_counts_with_aliasds_own() {
    let (_, e) = docker("web-v1", "172.30.0.5:8080", "a");
    let info = |docker_health: Option<DockerHealth>| EndpointInfo {
        endpoint: e.endpoint,
        source: Source::Docker,
        container: Some(e.container.clone()),
        check: CheckConfig::default(),
        port_name: None,
        docker_health,
    };
    let cases = [
        (None, Health::Healthy, Health::Healthy),
        (None, Health::Unhealthy, Health::Unhealthy),
        (
            Some(DockerHealth::Healthy),
            Health::Unknown,
            Health::Unknown,
        ),
        (
            Some(DockerHealth::Starting),
            Health::Healthy,
            Health::Starting,
        ),
        (
            Some(DockerHealth::Starting),
            Health::Unhealthy,
            Health::Unhealthy,
        ),
        (
            Some(DockerHealth::Unhealthy),
            Health::Healthy,
            Health::Unhealthy,
        ),
        (
            Some(DockerHealth::Died("killed".into())),
            Health::Healthy,
            Health::Unhealthy,
        ),
    ];
    for (docker_health, checked, want) in cases {
        let i = info(docker_health.clone());
        assert_eq!(
            i.effective(checked),
            want,
            "{docker_health:?} + {checked:?}"
        );
        assert_eq!(
            i.is_dead(),
            matches!(docker_health, Some(DockerHealth::Died(_)))
        );
    }
}

#[test]
fn port_names_become_dns_labels() {
    assert!(check_port_name("http").is_ok());
    assert!(check_port_name("grpc-web").is_ok());
    for bad in ["", "_http", "HTTP", &"a".repeat(63)] {
        assert!(check_port_name(bad).is_err(), "{bad:?}");
    }
}
