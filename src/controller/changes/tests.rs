use super::*;

use crate::controller::initial_state;
use crate::controller::machine::Phase;
use crate::testkit::{self, ConfigDir};

const ZONE: &str = "\
$TTL 300
@   IN SOA ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
    IN NS  ns1.internal.
ns1 IN A   127.0.0.1
db  IN A   10.9.0.1
";

const CONFIG: &str = testkit::BASE;

const NOW: u64 = 1_700_000_000_000;

fn base_of(config: &str) -> Base {
    ConfigDir::new(&[("internal.zone", ZONE)]).base(config)
}

fn base() -> Base {
    base_of(CONFIG)
}

fn start(base: &Base) -> State {
    initial_state(base, None, NOW).0
}

fn topology(base: &Base, state: &State) -> Topology {
    Topology::build(base, &state.registry, state.named_services())
}

fn svc(name: &str) -> ServiceName {
    name.parse().unwrap()
}

fn eps(list: &[&str]) -> Vec<Endpoint> {
    list.iter().map(|e| e.parse().unwrap()).collect()
}

fn alias(name: &str) -> AliasName {
    AliasName::resolve(
        name,
        &hickory_proto::rr::Name::from_ascii("internal.").unwrap(),
    )
    .unwrap()
}

fn put(base: &Base, state: &State, name: &str, endpoints: &[&str]) -> State {
    let (next, entry, _) = put_service(
        base,
        state,
        &svc(name),
        eps(endpoints),
        HealthSpec::default(),
        "deploy",
        NOW,
    )
    .unwrap()
    .unwrap();
    assert_eq!(entry.subject, Subject::Service(name.into()));
    next
}

// ---- services ----

#[test]
fn a_service_defined_through_the_api_joins_the_topology_with_its_source() {
    let base = base();
    let state = start(&base);
    let (next, entry, created) = put_service(
        &base,
        &state,
        &svc("web-v3"),
        eps(&["10.0.0.3:8080", "10.0.0.4:8080"]),
        HealthSpec::from_pairs(["kind=http", "path=/ready"]).unwrap(),
        "deploy",
        NOW,
    )
    .unwrap()
    .unwrap();
    assert!(created);
    assert_eq!(entry.change, ChangeKind::ServiceSet);
    assert_eq!(entry.actor, "deploy");
    assert_eq!(
        entry.reason.as_deref(),
        Some("defined with 10.0.0.3:8080, 10.0.0.4:8080")
    );
    let t = topology(&base, &next);
    let service = &t.services[&svc("web-v3")];
    assert_eq!(service.defined_by, Some(crate::registry::Source::Api));
    assert_eq!(
        t.addrs(&svc("web-v3")),
        eps(&["10.0.0.3:8080", "10.0.0.4:8080"])
    );
    assert!(matches!(
        &service.endpoints[0].check.kind,
        crate::check::CheckKind::Http { path, .. } if path == "/ready"
    ));

    // The same again changes nothing; other endpoints replace the old ones and say so.
    assert!(
        put_service(
            &base,
            &next,
            &svc("web-v3"),
            eps(&["10.0.0.3:8080", "10.0.0.4:8080"]),
            HealthSpec::from_pairs(["kind=http", "path=/ready"]).unwrap(),
            "deploy",
            NOW
        )
        .unwrap()
        .is_none()
    );
    let (_, entry, created) = put_service(
        &base,
        &next,
        &svc("web-v3"),
        eps(&["10.0.0.5:8080"]),
        HealthSpec::default(),
        "deploy",
        NOW,
    )
    .unwrap()
    .unwrap();
    assert!(!created);
    assert_eq!(
        entry.reason.as_deref(),
        Some("endpoints 10.0.0.5:8080 (were 10.0.0.3:8080, 10.0.0.4:8080)")
    );
}

#[test]
fn bad_service_definitions_are_refused_and_change_nothing() {
    let base = base();
    let state = start(&base);
    let refused = |name: &str, endpoints: &[&str], health: &[&str]| {
        put_service(
            &base,
            &state,
            &svc(name),
            eps(endpoints),
            HealthSpec::from_pairs(health.iter().copied()).unwrap(),
            "deploy",
            NOW,
        )
        .map(|_| ())
        .unwrap_err()
    };
    assert!(matches!(
        refused("web-v1", &["10.0.0.9:80"], &[]),
        ControlError::Conflict(m) if m.contains("defined in the config")
    ));
    assert!(matches!(
        refused("web-v3", &["10.0.0.9:80", "10.0.0.9:80"], &[]),
        ControlError::BadRequest(m) if m.contains("`10.0.0.9:80` is listed twice")
    ));
    assert!(matches!(
        refused("web-v3", &["10.0.0.9:80"], &["kind=ftp"]),
        ControlError::BadRequest(m) if m.contains("health: kind: `ftp`")
    ));
}

#[test]
fn a_linked_service_cannot_be_deleted_and_the_message_names_the_alias() {
    let base = base();
    let state = put(&base, &start(&base), "web-v3", &["10.0.0.3:8080"]);
    let mut linked = state.clone();
    linked.aliases.get_mut(&alias("web")).unwrap().targets = vec![svc("web-v3")];
    let t = topology(&base, &linked);
    let err = delete_service(&base, &linked, &t, &svc("web-v3"), "deploy", NOW).unwrap_err();
    assert_eq!(
        err,
        ControlError::Conflict(
            "service `web-v3` is linked by alias `web.internal`; link the alias elsewhere first"
                .into()
        )
    );
    // Unlinked, it goes, with a history entry.
    let t = topology(&base, &state);
    let (next, entry) = delete_service(&base, &state, &t, &svc("web-v3"), "deploy", NOW).unwrap();
    assert!(!topology(&base, &next).services.contains_key(&svc("web-v3")));
    assert_eq!(entry.change, ChangeKind::ServiceDeleted);
    // Config services and unknown ones are not the API's to delete.
    let err = delete_service(&base, &state, &t, &svc("web-v1"), "deploy", NOW).unwrap_err();
    assert!(matches!(err, ControlError::Conflict(m) if m.contains("defined in the config")));
    let err = delete_service(&base, &state, &t, &svc("nope"), "deploy", NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown service `nope` (known: web-v1, web-v2, web-v3)"
    );
}

#[test]
fn a_service_in_a_running_operation_cannot_be_deleted() {
    let base = base();
    let mut state = put(&base, &start(&base), "web-v3", &["10.0.0.3:8080"]);
    let web = state.aliases.get_mut(&alias("web")).unwrap();
    web.phase = Phase::Warming {
        op: testkit::promotion(2, &["web-v1"], &["web-v3"], NOW),
        deadline_ms: NOW + 1000,
    };
    let t = topology(&base, &state);
    assert!(matches!(
        delete_service(&base, &state, &t, &svc("web-v3"), "deploy", NOW),
        Err(ControlError::Conflict(m)) if m.contains("linked by alias `web.internal`")
    ));
}

// ---- aliases ----

fn put_alias_now(
    base: &Base,
    state: &State,
    name: &str,
    put: AliasPut,
) -> Result<Option<AliasChange>, ControlError> {
    let t = topology(base, state);
    super::put_alias(base, state, &t, &alias(name), put, 0, "deploy", NOW)
}

fn targets(names: &[&str]) -> Option<Vec<ServiceName>> {
    Some(names.iter().map(|n| svc(n)).collect())
}

#[test]
fn an_alias_is_created_through_the_api_and_answers_from_its_zone() {
    let base = base();
    let state = start(&base);
    let change = put_alias_now(
        &base,
        &state,
        "api",
        AliasPut {
            targets: targets(&["web-v2"]),
            port_name: Some("grpc".into()),
            if_none_healthy: Some(IfNoneHealthy::None),
        },
    )
    .unwrap()
    .unwrap();
    assert!(change.created);
    assert_eq!(change.change.kind, ChangeKind::Created);
    assert_eq!(change.alias.targets, vec![svc("web-v2")]);
    assert_eq!(change.alias.revision, 1);
    let mut next = change.state;
    next.aliases.insert(alias("api"), change.alias);
    let t = topology(&base, &next);
    let def = &t.aliases[&alias("api")];
    assert_eq!(def.source, crate::registry::Source::Api);
    assert_eq!(def.port_name, "grpc");
    assert_eq!(def.if_none_healthy, IfNoneHealthy::None);

    // Changing a setting bumps the revision and records it; the same again is a no-op.
    let updated = put_alias_now(
        &base,
        &next,
        "api",
        AliasPut {
            if_none_healthy: Some(IfNoneHealthy::All),
            ..AliasPut::default()
        },
    )
    .unwrap()
    .unwrap();
    assert!(!updated.created);
    assert_eq!(updated.change.kind, ChangeKind::Updated);
    assert_eq!(updated.alias.revision, 2);
    assert!(
        put_alias_now(
            &base,
            &next,
            "api",
            AliasPut {
                targets: targets(&["web-v2"]),
                ..AliasPut::default()
            }
        )
        .unwrap()
        .is_none()
    );
    // New targets relink it.
    let relinked = put_alias_now(
        &base,
        &next,
        "api",
        AliasPut {
            targets: targets(&["web-v1"]),
            ..AliasPut::default()
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(relinked.change.kind, ChangeKind::Linked);
    assert_eq!(relinked.alias.targets, vec![svc("web-v1")]);
}

#[test]
fn a_recreated_alias_continues_its_revisions() {
    let base = base();
    let state = start(&base);
    let t = topology(&base, &state);
    let change = super::put_alias(
        &base,
        &state,
        &t,
        &alias("api"),
        AliasPut {
            targets: targets(&["web-v2"]),
            ..AliasPut::default()
        },
        7,
        "deploy",
        NOW,
    )
    .unwrap()
    .unwrap();
    assert_eq!(change.alias.revision, 8);
}

#[test]
fn bad_alias_requests_are_refused_with_the_reason() {
    let base = base();
    let state = start(&base);
    let err = |name: &str, put: AliasPut| {
        put_alias_now(&base, &state, name, put)
            .map(|_| ())
            .unwrap_err()
    };
    assert!(matches!(
        err("web", AliasPut { targets: targets(&["web-v2"]), ..AliasPut::default() }),
        ControlError::Conflict(m) if m.contains("defined in the config")
    ));
    assert!(matches!(
        err("api", AliasPut::default()),
        ControlError::NotFound(m) if m.contains("`targets` is required")
    ));
    assert_eq!(
        err(
            "api",
            AliasPut {
                targets: targets(&["nope"]),
                ..AliasPut::default()
            }
        ),
        ControlError::UnknownService {
            name: "nope".into(),
            known: "web-v1, web-v2".into()
        }
    );
    assert!(matches!(
        err("db", AliasPut { targets: targets(&["web-v1"]), ..AliasPut::default() }),
        ControlError::BadRequest(m) if m.contains("collides with the static name `db.internal.`")
    ));
    assert!(matches!(
        err("x.web", AliasPut { targets: targets(&["web-v1"]), ..AliasPut::default() }),
        ControlError::BadRequest(m) if m.contains("is nested with alias `web.internal`")
    ));
    assert!(matches!(
        err("api.example.", AliasPut { targets: targets(&["web-v1"]), ..AliasPut::default() }),
        ControlError::BadRequest(m) if m.contains("outside every configured zone")
    ));
    assert!(matches!(
        err("api", AliasPut { targets: targets(&["web-v1"]), port_name: Some("_x".into()), ..AliasPut::default() }),
        ControlError::BadRequest(m) if m.contains("port_name `_x`")
    ));
}

#[test]
fn an_alias_in_a_promotion_cannot_be_removed_and_config_aliases_not_at_all() {
    let base = base();
    let state = start(&base);
    let change = put_alias_now(
        &base,
        &state,
        "api",
        AliasPut {
            targets: targets(&["web-v2"]),
            ..AliasPut::default()
        },
    )
    .unwrap()
    .unwrap();
    let mut state = change.state;
    state.aliases.insert(alias("api"), change.alias);
    assert!(matches!(
        delete_alias(&base, &state, &alias("web"), "deploy", NOW),
        Err(ControlError::Conflict(m)) if m.contains("defined in the config")
    ));
    let mut busy = state.clone();
    busy.aliases.get_mut(&alias("api")).unwrap().phase = Phase::Mixed {
        step: None,
        op: testkit::promotion(2, &["web-v2"], &["web-v1"], NOW),
        since_ms: NOW,
        observe_until_ms: NOW + 1,
        confirmed: false,
    };
    assert!(matches!(
        delete_alias(&base, &busy, &alias("api"), "deploy", NOW),
        Err(ControlError::Conflict(m)) if m.contains("is in a promotion (operation 2, phase mixed)")
    ));
    let (next, entry) = delete_alias(&base, &state, &alias("api"), "deploy", NOW).unwrap();
    assert!(!next.aliases.contains_key(&alias("api")));
    assert!(!next.registry.api_aliases.contains_key(&alias("api")));
    assert_eq!(entry.change, ChangeKind::Removed);
    assert_eq!(entry.revision(), 2);
}

// ---- reload ----

#[test]
fn a_reload_adds_and_removes_config_aliases_and_continues_the_serial() {
    let old = base();
    let state = start(&old);
    let new = base_of(&CONFIG.replace(
        "[[alias]]\nname = \"web\"\ntargets = [\"web-v1\"]\n",
        "[[alias]]\nname = \"www\"\ntargets = [\"web-v2\"]\n",
    ));
    let Reloaded {
        state: next,
        created,
        entries,
        summary,
    } = reload(&old, &new, &state, "ops", NOW).unwrap();
    assert_eq!(summary.aliases_added, ["www.internal"]);
    assert_eq!(summary.aliases_removed, ["web.internal"]);
    assert!(!next.aliases.contains_key(&alias("web")));
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].0, alias("www"));
    assert_eq!(created[0].1.targets, vec![svc("web-v2")]);
    let kinds: Vec<ChangeKind> = entries.iter().map(|e| e.change).collect();
    assert_eq!(kinds, [ChangeKind::Removed, ChangeKind::Reloaded]);
    assert_eq!(next.serials[0], state.serials[0] + 1);
}

#[test]
fn a_reload_that_would_break_a_link_or_a_promotion_is_refused_whole() {
    let old = base();
    let mut state = start(&old);
    state.aliases.get_mut(&alias("web")).unwrap().targets = vec![svc("web-v2")];
    // web-v2 leaves the config while `web` links it.
    let new = base_of(&CONFIG.replace(
        "[[service]]\nname = \"web-v2\"\nendpoints = [\"10.0.0.2:8080\"]\n",
        "",
    ));
    let problems = reload(&old, &new, &state, "ops", NOW)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        problems,
        [
            "service `web-v2` is linked by alias `web.internal` and the new config no longer defines it; link the alias elsewhere first"
        ]
    );
    // An API service whose name the config now takes too.
    let state = put(&old, &start(&old), "web-v3", &["10.0.0.3:8080"]);
    let new = base_of(&format!(
        "{CONFIG}\n[[service]]\nname = \"web-v3\"\nendpoints = []\n"
    ));
    let problems = reload(&old, &new, &state, "ops", NOW)
        .map(|_| ())
        .unwrap_err();
    assert!(
        problems[0]
            .contains("service `web-v3` is defined through the API and now in the config too")
    );
}

#[test]
fn an_unchanged_reload_records_itself_and_changes_no_alias() {
    let old = base();
    let state = start(&old);
    let new = base();
    let Reloaded {
        state: next,
        created,
        entries,
        summary,
    } = reload(&old, &new, &state, "ops", NOW).unwrap();
    assert!(created.is_empty());
    assert_eq!(next.aliases, state.aliases);
    assert_eq!(summary.text(), "no alias or service changed");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "ops");
}

#[test]
fn a_reload_summary_counts_in_words() {
    let summary = ReloadSummary {
        aliases_added: vec!["api.internal".into()],
        services_added: vec!["api-v1".into(), "api-v2".into()],
        ..ReloadSummary::default()
    };
    assert_eq!(
        summary.text(),
        "alias added: api.internal; services added: api-v1, api-v2"
    );
}
