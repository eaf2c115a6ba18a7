//! Unit tests of the renderers: DTOs built by hand, the exact text aliasctl prints for them.

use super::render::{
    aborted_text, alias_detail, alias_table, cluster_text, event_text, history_table, link_text,
    plan_text, service_table, started_text, status_line,
};
use crate::api::dto::{
    AliasDto, Change, ContainerDto, DockerDto, EndpointDto, EventDto, Health, HistoryDto,
    MemberDto, OpKind, OperationDto, OperationReply, Phase, PlanDto, PlanStepDto, ProblemDto,
    RetiredDto, Role, ServiceDto, ServicesDto,
};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn endpoint(addr: &str, health: Health, last_error: Option<&str>) -> EndpointDto {
    EndpointDto {
        addr: addr.into(),
        health,
        last_check: None,
        last_error: last_error.map(str::to_owned),
        source: "config".into(),
        container: None,
        docker_health: None,
    }
}

/// `web.internal`, stable on web-v1 with one healthy endpoint.
fn stable_alias() -> AliasDto {
    AliasDto {
        name: "web.internal".into(),
        zone: "internal.".into(),
        targets: strings(&["web-v1"]),
        phase: Phase::Stable,
        answering: strings(&["web-v1"]),
        endpoints: strings(&["127.0.0.11:8080"]),
        fallback: None,
        source: "config".into(),
        warnings: Vec::new(),
        members: vec![MemberDto {
            service: "web-v1".into(),
            role: Role::Active,
            answering: true,
            inflight: 0,
            endpoints: vec![endpoint("127.0.0.11:8080", Health::Healthy, None)],
        }],
        operation: None,
        last_operation: None,
        retired: None,
        drain: None,
        weight: None,
        step: None,
        sides: None,
        client: None,
        srv: "_http._tcp.web.internal.".into(),
        ttl: 30,
        revision: 3,
        changed_at: "2025-01-02T03:04:05.000Z".into(),
        changed_by: "alice".into(),
        generation: 7,
        serial: 2025010203,
    }
}

/// `web.internal` in phase mixed of promotion 4 from web-v1 to web-v2, waiting for a confirm,
/// with one of web-v2's two endpoints unhealthy.
fn mixed_alias() -> AliasDto {
    let mut a = stable_alias();
    a.phase = Phase::Mixed;
    a.answering = strings(&["web-v1", "web-v2"]);
    a.endpoints = strings(&["127.0.0.11:8080", "127.0.0.12:8080"]);
    a.members.push(MemberDto {
        service: "web-v2".into(),
        role: Role::Incoming,
        answering: true,
        inflight: 2,
        endpoints: vec![
            endpoint("127.0.0.12:8080", Health::Healthy, None),
            endpoint("127.0.0.13:8080", Health::Unhealthy, Some("HTTP 503")),
        ],
    });
    a.operation = Some(OperationDto {
        stop_old: false,
        id: 4,
        kind: OpKind::Promote,
        from: strings(&["web-v1"]),
        to: strings(&["web-v2"]),
        actor: "ci".into(),
        reason: Some("release 2".into()),
        started_at: "2025-01-02T03:05:00.000Z".into(),
        observe: "30s".into(),
        confirm: true,
        confirmed: false,
        min_healthy: Some(1),
        warm_timeout: "2m".into(),
        phase_deadline: Some("2025-01-02T03:05:40.000Z".into()),
        drain_until: None,
        steps: Vec::new(),
        gates: None,
    });
    a.revision = 5;
    a
}

#[test]
fn alias_table_aligns_columns_two_spaces_apart() {
    let mut api = stable_alias();
    api.name = "api.internal".into();
    api.targets = strings(&["api-v1", "api-v2"]);
    api.phase = Phase::Mixed;
    api.endpoints = strings(&["127.0.0.21:9000"]);
    api.revision = 12;
    api.changed_by = "aliasctl".into();
    let table = alias_table(&[stable_alias(), api]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines,
        [
            "ALIAS         TARGETS        PHASE   ENDPOINTS        REV  BY        CHANGED",
            "web.internal  web-v1         stable  127.0.0.11:8080  3    alice     2025-01-02T03:04:05.000Z",
            "api.internal  api-v1,api-v2  mixed   127.0.0.21:9000  12   aliasctl  2025-01-02T03:04:05.000Z",
        ]
    );
    assert!(table.ends_with('\n'));
}

#[test]
fn history_table_trims_an_empty_last_column() {
    let entry =
        |revision: u64, change: Change, phase: Phase, answering: &[&str], reason| HistoryDto {
            alias: "web.internal".into(),
            service: None,
            revision,
            at: format!("2025-01-02T03:0{revision}:00.000Z"),
            actor: "ci".into(),
            change,
            reason,
            phase: Some(phase),
            targets: strings(&["web-v1"]),
            answering: strings(answering),
            op: Some(4),
            op_kind: Some(OpKind::Rollback),
        };
    let table = history_table(&[
        entry(
            4,
            Change::Started,
            Phase::Warming,
            &["web-v1"],
            Some("release 2".into()),
        ),
        entry(5, Change::Mixed, Phase::Mixed, &["web-v1", "web-v2"], None),
    ]);
    assert_eq!(
        table,
        "REV  TIME                      CHANGE   OP          PHASE    ANSWERING      ACTOR  REASON\n\
         4    2025-01-02T03:04:00.000Z  started  rollback 4  warming  web-v1         ci     release 2\n\
         5    2025-01-02T03:05:00.000Z  mixed    rollback 4  mixed    web-v1,web-v2  ci\n"
    );
}

#[test]
fn history_marks_each_change_of_an_operation_with_its_kind() {
    let entry = |revision: u64, change: Change, op: Option<u64>, kind: Option<OpKind>| HistoryDto {
        alias: "web.internal".into(),
        service: None,
        revision,
        at: format!("2025-01-02T03:0{revision}:00.000Z"),
        actor: "aliasd".into(),
        change,
        reason: None,
        phase: Some(Phase::Stable),
        targets: strings(&["web-v1"]),
        answering: strings(&["web-v1"]),
        op,
        op_kind: kind,
    };
    let table = history_table(&[
        entry(1, Change::Linked, None, None),
        entry(2, Change::Completed, Some(1), Some(OpKind::Promote)),
        entry(4, Change::Completed, Some(3), Some(OpKind::Rollback)),
        entry(6, Change::Completed, Some(5), None),
    ]);
    let ops: Vec<&str> = table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .nth(3)
                .unwrap()
        })
        .collect();
    assert_eq!(
        ops,
        ["OP", "-", "promotion 1", "rollback 3", "operation 5"],
        "{table}"
    );
    // A service's history has no operations and no OP column.
    let service = history_table(&[entry(1, Change::ServiceSet, None, None)]);
    assert!(service.starts_with("REV  TIME  "), "{service}");
    assert!(!service.contains("OP"), "{service}");
    assert_eq!(
        event_text(&EventDto::Change {
            entry: entry(4, Change::Completed, Some(3), Some(OpKind::Rollback)),
            retired: None,
            drain_until: None,
        }),
        "web.internal: completed (rollback 3, revision 4 by aliasd)"
    );
}

#[test]
fn plan_text_lists_the_steps_and_the_gates() {
    let plan = PlanDto {
        alias: "web.internal".into(),
        from: strings(&["web-v1"]),
        to: strings(&["web-v2"]),
        noop: false,
        steps: vec![
            PlanStepDto {
                phase: Phase::Warming,
                services: strings(&["web-v1"]),
                endpoints: strings(&["127.0.0.11:8080"]),
                until: "web-v2 healthy, at most 2m".into(),
            },
            PlanStepDto {
                phase: Phase::Mixed,
                services: strings(&["web-v1", "web-v2"]),
                endpoints: strings(&["127.0.0.11:8080", "127.0.0.12:8080"]),
                until: "30s, then a confirm".into(),
            },
        ],
        ttl: 30,
        negative_ttl: 60,
        drain_window: "1m 30s".into(),
        observe: "30s".into(),
        confirm: true,
        min_healthy: 1,
        warm_timeout: "2m".into(),
        healthy_now: 0,
        total: 1,
    };
    assert_eq!(
        plan_text(&plan),
        "plan for web.internal: web-v1 → web-v2 (dry run: nothing was changed)\n\
         STEP  PHASE    ANSWERING      ENDPOINTS                        UNTIL\n\
         1     warming  web-v1         127.0.0.11:8080                  web-v2 healthy, at most 2m\n\
         2     mixed    web-v1,web-v2  127.0.0.11:8080,127.0.0.12:8080  30s, then a confirm\n\
         web-v2: 0 of 1 endpoint healthy now, 1 needed; warm timeout 2m, observe 30s, then a \
         confirm; ttl 30s, negative ttl 60s, drain window 1m 30s\n"
    );

    let noop = PlanDto {
        from: strings(&["web-v2"]),
        noop: true,
        steps: vec![],
        ..plan
    };
    assert_eq!(
        plan_text(&noop),
        "web.internal: already answers with web-v2: a promote would change nothing (dry run)\n"
    );
}

#[test]
fn status_line_shows_the_operation_and_each_members_health() {
    assert_eq!(
        status_line(&stable_alias()),
        "web.internal stable answering web-v1 | web-v1 active 1/1 healthy"
    );
    assert_eq!(
        status_line(&mixed_alias()),
        "web.internal mixed (promotion 4 web-v1 → web-v2, until 2025-01-02T03:05:40.000Z, \
         needs a confirm) answering web-v1+web-v2 | web-v1 active 1/1 healthy \
         | web-v2 incoming 1/2 healthy (127.0.0.13:8080 unhealthy: HTTP 503)"
    );
}

#[test]
fn alias_detail_shows_the_operation_gates_and_members() {
    let text = alias_detail(&mixed_alias());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "alias:      web.internal",
            "zone:       internal.",
            "phase:      mixed",
            "targets:    web-v1",
            "answering:  web-v1, web-v2",
            "endpoints:  127.0.0.11:8080, 127.0.0.12:8080",
            "operation:  promotion 4: web-v1 → web-v2, by ci at 2025-01-02T03:05:00.000Z (release 2)",
            "  gates:    observe 30s, min healthy 1, warm timeout 2m, confirm needed, not given yet",
            "  observe until:  2025-01-02T03:05:40.000Z",
            "members:",
            "  web-v1 (active, answering)",
            "    127.0.0.11:8080  healthy",
            "  web-v2 (incoming, answering, 2 in flight through the proxy)",
            "    127.0.0.12:8080  healthy",
            "    127.0.0.13:8080  unhealthy  last error: HTTP 503",
            "srv:        _http._tcp.web.internal.",
            "ttl:        30s",
            "revision:   5",
            "changed:    2025-01-02T03:04:05.000Z by alice",
            "serial:     2025010203",
            "generation: 7",
        ]
    );
}

#[test]
fn replies_to_link_promote_and_abort_are_one_line() {
    assert_eq!(
        link_text(&stable_alias()),
        "web.internal -> web-v1 (revision 3, serial 2025010203)\n"
    );
    assert_eq!(
        started_text(&OperationReply {
            started: false,
            alias: stable_alias(),
        }),
        "web.internal: already answers with web-v1: nothing had to change"
    );
    assert_eq!(
        started_text(&OperationReply {
            started: true,
            alias: mixed_alias(),
        }),
        "web.internal: promotion 4 started: web-v1 → web-v2 \
         (phase mixed, until 2025-01-02T03:05:40.000Z)"
    );
    let mut aborted = stable_alias();
    aborted.retired = Some(RetiredDto {
        services: strings(&["web-v2"]),
        safe_to_stop_at: "2025-01-02T03:07:00.000Z".into(),
        safe_to_stop: false,
        op: 4,
        stop_old: false,
        stopped_at: None,
    });
    assert_eq!(
        aborted_text(&OperationReply {
            started: false,
            alias: aborted,
        }),
        "web.internal: aborted; phase stable, answering web-v1; \
         web-v2 not safe to stop before 2025-01-02T03:07:00.000Z\n"
    );
}

#[test]
fn services_and_events_render_as_text() {
    let docker_endpoint = EndpointDto {
        source: "docker".into(),
        container: Some(ContainerDto {
            id: "4c46bfba1c5e208d".into(),
            short_id: "4c46bfba1c5e".into(),
            name: "web-v2-1".into(),
        }),
        ..endpoint("172.18.0.2:8080", Health::Starting, None)
    };
    let services = service_table(&ServicesDto {
        services: vec![
            ServiceDto {
                name: "web-v1".into(),
                source: "config".into(),
                endpoints: vec![endpoint("127.0.0.11:8080", Health::Healthy, None)],
                linked_by: strings(&["web.internal"]),
                check: "http /healthz".into(),
                warnings: vec![],
            },
            ServiceDto {
                name: "web-v2".into(),
                source: "docker".into(),
                endpoints: vec![docker_endpoint],
                linked_by: vec![],
                check: "tcp".into(),
                warnings: vec![],
            },
            ServiceDto {
                name: "web-v3".into(),
                source: "docker".into(),
                endpoints: vec![],
                linked_by: strings(&["next.internal"]),
                check: "tcp".into(),
                warnings: strings(&["no endpoints: no container of it runs"]),
            },
        ],
        problems: vec![ProblemDto {
            container: ContainerDto {
                id: "0123456789abcdef".into(),
                short_id: "0123456789ab".into(),
                name: "web-bad".into(),
            },
            problem: "label aliasd.port: `http` is not a port number (1 to 65535)".into(),
        }],
        docker: Some(DockerDto {
            endpoint: "unix:///var/run/docker.sock".into(),
            connected: false,
            since: "2025-01-02T03:04:00.000Z".into(),
            last_sync: Some("2025-01-02T03:03:59.000Z".into()),
            error: Some("connection refused".into()),
            version: None,
        }),
    });
    assert_eq!(
        services,
        "SERVICE  DEFINED  ENDPOINT         FROM    CONTAINER                HEALTH    LINKED BY\n\
         web-v1   config   127.0.0.11:8080  config  -                        healthy   web.internal\n\
         web-v2   docker   172.18.0.2:8080  docker  web-v2-1 (4c46bfba1c5e)  starting  -\n\
         web-v3   docker   -                -       -                        -         next.internal\n\
         warning: web-v3: no endpoints: no container of it runs\n\
         docker: UNREACHABLE at unix:///var/run/docker.sock since 2025-01-02T03:04:00.000Z (connection refused); answers keep the containers last seen (at 2025-01-02T03:03:59.000Z)\n\
         problems (containers skipped):\n  \
         web-bad (0123456789ab): label aliasd.port: `http` is not a port number (1 to 65535)\n"
    );
    assert_eq!(
        event_text(&EventDto::Health {
            service: "web-v2".into(),
            endpoint: "127.0.0.13:8080".into(),
            health: Health::Unhealthy,
            error: Some("HTTP 503".into()),
            at: "2025-01-02T03:05:10.000Z".into(),
        }),
        "web-v2 127.0.0.13:8080 unhealthy: HTTP 503"
    );
    assert_eq!(
        event_text(&EventDto::Lagged { skipped: 3 }),
        "3 events skipped; state re-read"
    );
}

#[test]
fn watch_reports_only_what_concerns_its_alias() {
    use super::follow::concerns;
    let web = stable_alias();
    let registry = |alias: &str, service: Option<&str>, change: Change| EventDto::Registry {
        entry: HistoryDto {
            alias: alias.into(),
            service: service.map(str::to_owned),
            revision: 2,
            at: "2025-01-02T03:04:05.000Z".into(),
            actor: "demo".into(),
            change,
            reason: Some("removed through the API".into()),
            phase: None,
            targets: vec![],
            answering: vec![],
            op: None,
            op_kind: None,
        },
    };
    let other_alias_removed = registry("api.internal", None, Change::Removed);
    assert!(!concerns(&web, &other_alias_removed));
    assert_eq!(
        event_text(&other_alias_removed),
        "api.internal: removed by demo: removed through the API"
    );
    assert!(concerns(
        &web,
        &registry("web.internal", None, Change::Updated)
    ));
    assert!(concerns(
        &web,
        &registry("", Some("web-v1"), Change::ServiceSet)
    ));
    assert!(!concerns(
        &web,
        &registry("", Some("vm-v1"), Change::ServiceSet)
    ));
    // A reload may change anything.
    assert!(concerns(&web, &registry("", None, Change::Reloaded)));
    let health = |service: &str| EventDto::Health {
        service: service.into(),
        endpoint: "127.0.0.13:8080".into(),
        health: Health::Unhealthy,
        error: None,
        at: "2025-01-02T03:05:10.000Z".into(),
    };
    assert!(concerns(&web, &health("web-v1")));
    assert!(!concerns(&web, &health("web-v2")));
}

#[test]
fn the_cluster_renders_as_a_table_then_etcd_and_the_problems() {
    use crate::cluster::{ClusterMode, ClusterStatus, EtcdStatus, NodeStatus};
    let node =
        |name: &str, port: u16, leader: bool, applied: i64, behind: i64, same: bool| NodeStatus {
            name: name.into(),
            api: format!("10.0.0.{port}:5380").parse().unwrap(),
            leader,
            applied_revision: applied,
            behind,
            config_hash: if same { "h1" } else { "h2" }.into(),
            config_matches: same,
            started_ms: 1_735_787_045_000,
        };
    let single = ClusterStatus::single("host-a", "127.0.0.1:5380".parse().unwrap(), "h1", 0);
    assert_eq!(
        cluster_text(&single),
        "\
NODE    API             ROLE    APPLIED  BEHIND  CONFIG  STARTED
host-a  127.0.0.1:5380  leader  0        0       same    1970-01-01T00:00:00.000Z
mode: single (no [cluster]: the local journal, no etcd); this node: host-a
"
    );
    let cluster = ClusterStatus {
        mode: ClusterMode::Etcd,
        node: "b".into(),
        leader: Some("a".into()),
        revision: 120,
        etcd: Some(EtcdStatus {
            endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.2:2379".into()],
            connected: true,
            since_ms: 1_735_787_046_000,
            error: None,
        }),
        config_hash: "h2".into(),
        nodes: vec![
            node("a", 1, true, 120, 0, true),
            node("b", 2, false, 117, 3, false),
        ],
        problems: vec!["node b answers from other definitions than the leader a".into()],
    };
    assert_eq!(
        cluster_text(&cluster),
        "\
NODE  API            ROLE      APPLIED  BEHIND  CONFIG   STARTED
a     10.0.0.1:5380  leader    120      0       same     2025-01-02T03:04:05.000Z
b     10.0.0.2:5380  follower  117      3       differs  2025-01-02T03:04:05.000Z
mode: etcd; this node: b; latest revision seen: 120
etcd: connected to http://10.0.0.1:2379, http://10.0.0.2:2379 since 2025-01-02T03:04:06.000Z
problems:
  node b answers from other definitions than the leader a
"
    );
    let cut_off = ClusterStatus {
        leader: None,
        etcd: Some(EtcdStatus {
            endpoints: vec!["http://10.0.0.1:2379".into()],
            connected: false,
            since_ms: 1_735_787_046_000,
            error: Some("connection refused".into()),
        }),
        problems: Vec::new(),
        ..cluster
    };
    let text = cluster_text(&cut_off);
    assert!(
        text.contains(
            "etcd: UNREACHABLE at http://10.0.0.1:2379 since 2025-01-02T03:04:06.000Z (connection refused); this node serves its last state and takes no changes\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("leader: none known; changes wait for one, then are refused (HTTP 503)\n"),
        "{text}"
    );
}
