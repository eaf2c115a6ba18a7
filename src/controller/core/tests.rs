//! The planner without a runtime: each case builds a core, plans one batch and reads the plan.

use super::*;
use crate::controller::initial_state;
use crate::controller::tests::{alias, base, services};

const NOW: u64 = 1_700_000_000_000;
/// The serials a first start gives the two zones (file serials 7 and 100, plus one).
const START_SERIALS: [u32; 2] = [8, 101];

/// A first start's core: no stored state, every endpoint's health unknown.
fn core() -> Core {
    let base = Arc::new(base());
    let (mut state, _) = initial_state(&base, None, NOW);
    state.serial_reserve = state
        .serials
        .iter()
        .map(|s| s.wrapping_add(SERIAL_RESERVE))
        .collect();
    let topology = Arc::new(Topology::build(
        &base,
        &state.registry,
        state.named_services(),
    ));
    let health: HealthMap = check_targets(&topology)
        .into_iter()
        .map(|(key, check)| (key, starting_health(&check, true)))
        .collect();
    let last_good = LastGood::new();
    let published = Arc::new(Snapshot::render(
        1,
        topology.clone(),
        &state,
        &health,
        &last_good,
        Arc::default(),
    ));
    Core {
        base,
        topology,
        state,
        health,
        last_good,
        sources: Arc::default(),
        published,
        history: HistoryIndex::default(),
        drain_serials: HashMap::new(),
        step_serials: Default::default(),
        secondaries: BTreeMap::new(),
        proxies: Vec::new(),
        drained: HashMap::new(),
        health_dirty: false,
        health_touched: BTreeSet::new(),
        sources_all_dirty: false,
        replicate: false,
        peers: BTreeMap::new(),
    }
}

/// `name` relinked to `targets`, as the machine's `Link` leaves it.
fn relinked(core: &Core, name: &str, targets: &[&str]) -> (AliasName, AliasState, Change) {
    let current = &core.state.aliases[&alias(name)];
    let next = AliasState {
        targets: services(targets),
        previous: Some(current.targets.clone()),
        revision: current.revision + 1,
        changed_at_ms: NOW,
        changed_by: "deploy".into(),
        ..current.clone()
    };
    let change = Change {
        kind: ChangeKind::Linked,
        actor: "deploy".into(),
        reason: None,
    };
    (alias(name), next, change)
}

/// `service`'s endpoints failed their checks (a health flap, not a batch entry).
fn unhealthy(core: &mut Core, service: &str) {
    let service: ServiceName = service.parse().unwrap();
    for e in &core.topology.services[&service].endpoints {
        core.health
            .insert((service.clone(), e.endpoint), Health::Unhealthy);
    }
    core.health_touched.insert(service);
    core.health_dirty = true;
}

fn reload_entry() -> HistoryEntry {
    HistoryEntry {
        seq: 0,
        subject: Subject::Config,
        at_ms: NOW,
        actor: "deploy".into(),
        change: ChangeKind::Reloaded,
        reason: None,
    }
}

/// How a case makes its batch (and sets the core up for it).
type Setup = fn(&mut Core) -> Batch;

/// The plan of the batch `setup` makes on a first start's core.
fn plan_of(name: &str, setup: Setup) -> Plan {
    let mut core = core();
    let batch = setup(&mut core);
    core.plan(batch, NOW)
        .unwrap_or_else(|| panic!("{name}: no plan"))
}

/// What a case expects of its plan.
#[derive(Debug, PartialEq)]
struct Expect {
    /// The serials published, and the reserve the state stores.
    serials: [u32; 2],
    reserve: [u32; 2],
    /// Whether the plan has a unit to make durable, and the serials its delta stores.
    durable: bool,
    delta_serials: usize,
}

#[test]
fn serials_bump_once_per_zone_and_move_the_reserve_only_when_reached() {
    let reserve = START_SERIALS.map(|s| s + SERIAL_RESERVE);
    let cases: Vec<(&str, Setup, Expect)> = vec![
        (
            "a relink bumps its zone's serial, within the reserve",
            |c| Batch::of(vec![relinked(c, "web.internal.", &["web-v2"])]),
            Expect {
                serials: [9, 101],
                reserve,
                durable: true,
                delta_serials: 0,
            },
        ),
        (
            "two changes in one zone are one bump",
            |c| {
                let first = relinked(c, "web.internal.", &["web-v2"]);
                let mut second = first.clone();
                second.1.targets = services(&["web-v3"]);
                second.1.revision += 1;
                Batch::of(vec![first, second])
            },
            Expect {
                serials: [9, 101],
                reserve,
                durable: true,
                delta_serials: 0,
            },
        ),
        (
            "health alone bumps the serial without a write",
            |c| {
                unhealthy(c, "web-v3");
                Batch::default()
            },
            Expect {
                serials: [8, 102],
                reserve,
                durable: false,
                delta_serials: 0,
            },
        ),
        (
            "a bump past the reserve moves it, and that is written",
            |c| {
                c.state.serial_reserve[1] = START_SERIALS[1];
                unhealthy(c, "web-v3");
                Batch::default()
            },
            Expect {
                serials: [8, 102],
                reserve: [reserve[0], 102 + SERIAL_RESERVE],
                durable: true,
                delta_serials: 2,
            },
        ),
        (
            "serials set by the batch (a reload) are not bumped again and move the reserve",
            |c| {
                let mut state = c.state.clone();
                state.serials = vec![20, 200];
                Batch {
                    state: Some(state),
                    entries: vec![reload_entry()],
                    serials_set: true,
                    changes: vec![relinked(c, "web.internal.", &["web-v2"])],
                    ..Batch::default()
                }
            },
            Expect {
                serials: [20, 200],
                reserve: [20 + SERIAL_RESERVE, 200 + SERIAL_RESERVE],
                durable: true,
                delta_serials: 2,
            },
        ),
    ];
    for (name, setup, expect) in cases {
        let plan = plan_of(name, setup);
        let zones: Vec<u32> = plan.snapshot.zones.iter().map(|z| z.serial).collect();
        let got = Expect {
            serials: [zones[0], zones[1]],
            reserve: [plan.state.serial_reserve[0], plan.state.serial_reserve[1]],
            durable: plan.durable.is_some(),
            delta_serials: plan.durable.as_ref().map_or(0, |u| u.delta.serials.len()),
        };
        assert_eq!(got, expect, "{name}");
        assert_eq!(
            plan.state.serials, zones,
            "{name}: the state keeps what is published"
        );
    }
}

#[test]
fn a_batch_that_changes_nothing_plans_nothing() {
    let mut core = core();
    assert!(core.plan(Batch::default(), NOW).is_none());
    // Health that moves no answer (web-v1's endpoint passes either way while unknown) is
    // looked at, then forgotten.
    core.health_touched.insert("web-v9".parse().unwrap());
    assert!(core.plan(Batch::default(), NOW).is_none());
    core.nothing_changed();
    assert!(core.health_touched.is_empty());
}

#[test]
fn only_the_aliases_a_batch_touches_are_rendered_again() {
    let cases: Vec<(&str, Setup, Vec<&str>)> = vec![
        (
            "a relink renders its alias",
            |c| Batch::of(vec![relinked(c, "web.internal.", &["web-v2"])]),
            vec!["web.internal."],
        ),
        (
            "a health change renders the aliases using the service",
            |c| {
                unhealthy(c, "web-v2");
                Batch::default()
            },
            vec!["app.example."],
        ),
        (
            "Docker's reachability renders every alias",
            |c| {
                c.sources_all_dirty = true;
                Batch {
                    sources_changed: true,
                    ..Batch::default()
                }
            },
            vec!["app.example.", "web.internal."],
        ),
    ];
    for (name, setup, expect) in cases {
        let plan = plan_of(name, setup);
        let mut rendered: Vec<String> = plan.rendered.iter().map(ToString::to_string).collect();
        rendered.sort();
        let mut expect: Vec<String> = expect.iter().map(|s| alias(s).to_string()).collect();
        expect.sort();
        assert_eq!(rendered, expect, "{name}");
    }
}

#[test]
fn history_entries_are_numbered_after_the_state_and_stored_with_it() {
    let mut core = core();
    core.state.history_seq = 41;
    let batch = Batch {
        changes: vec![relinked(&core, "web.internal.", &["web-v2"])],
        entries: vec![reload_entry()],
        ..Batch::default()
    };
    let plan = core.plan(batch, NOW).unwrap();
    let unit = plan.durable.as_ref().unwrap();
    // Stored: the registry's entries, then the alias transitions; numbered aliases first.
    let stored: Vec<(u64, bool)> = unit
        .entries
        .iter()
        .map(|e| (e.seq, e.alias().is_some()))
        .collect();
    assert_eq!(stored, [(43, false), (42, true)]);
    assert_eq!(plan.state.history_seq, 43);
    assert_eq!(unit.delta.history_seq, 43);
    assert_eq!(unit.delta.aliases.len(), 1);
    // The events carry the same entries.
    let sent: Vec<u64> = plan
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Registry { entry } | Event::Change { entry, .. } => Some(entry.seq),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [43, 42]);
}

#[test]
fn nothing_is_published_before_the_plan_is_applied() {
    let mut core = core();
    let before = (core.state.clone(), core.published.generation);
    let plan = core
        .plan(
            Batch::of(vec![relinked(&core, "web.internal.", &["web-v2"])]),
            NOW,
        )
        .unwrap();
    assert!(plan.durable.is_some());
    // Planning changed nothing: a unit the store refuses leaves the core as it was.
    assert_eq!((core.state.clone(), core.published.generation), before);
    assert!(core.history.recent(10).is_empty());
    let (snapshot, events, _) = core.apply(plan, NOW);
    assert_eq!(snapshot.generation, 2);
    assert_eq!(core.published.generation, 2);
    assert_eq!(events.len(), 1);
    assert_eq!(core.history.of_alias(&alias("web.internal.")).len(), 1);
    assert_eq!(
        core.state.aliases[&alias("web.internal.")].targets,
        services(&["web-v2"])
    );
}

#[test]
fn applied_entries_are_kept_under_the_retention() {
    let mut core = core();
    let mut base = base();
    base.retention.keep_per_alias = 2;
    core.base = Arc::new(base);
    for targets in [["web-v2"], ["web-v3"], ["web-v1"], ["web-v2"]] {
        let batch = Batch::of(vec![relinked(&core, "web.internal.", &targets)]);
        let plan = core.plan(batch, NOW).unwrap();
        core.apply(plan, NOW);
    }
    let kept: Vec<u64> = core
        .history
        .of_alias(&alias("web.internal."))
        .iter()
        .map(HistoryEntry::revision)
        .collect();
    assert_eq!(kept, [4, 5]);
    assert_eq!(core.history.garbage(), 2);
}

#[test]
fn a_drain_waits_until_every_secondary_of_its_zone_reported_the_serial() {
    let a: SocketAddr = "10.0.0.53:53".parse().unwrap();
    let b: SocketAddr = "[2001:db8::53]:53".parse().unwrap();
    let other_zone: SocketAddr = "10.0.1.53:53".parse().unwrap();
    type Reported = Vec<((usize, SocketAddr), Option<(u32, u64)>)>;
    let cases: Vec<(&str, Reported, Caught)> = vec![
        ("a zone without secondaries", vec![], Caught::Since(0)),
        (
            "one has not reported yet",
            vec![((0, a), Some((9, 5))), ((0, b), None)],
            Caught::Waiting,
        ),
        (
            "one serves an older serial",
            vec![((0, a), Some((9, 5))), ((0, b), Some((8, 2)))],
            Caught::Waiting,
        ),
        (
            "all serve it or a later one: since the last caught up",
            vec![((0, a), Some((9, 5))), ((0, b), Some((10, 7)))],
            Caught::Since(7),
        ),
        (
            "another zone's secondaries do not count",
            vec![((0, a), Some((9, 5))), ((1, other_zone), None)],
            Caught::Since(5),
        ),
    ];
    for (name, secondaries, expect) in cases {
        let mut core = core();
        core.secondaries = secondaries.into_iter().collect();
        assert_eq!(core.caught(0, 9), expect, "{name}");
    }
    // Serials wrap (RFC 1982): 2 comes after 4294967295.
    let mut core = core();
    core.secondaries = [((0, a), Some((2, 3)))].into_iter().collect();
    assert_eq!(core.caught(0, u32::MAX), Caught::Since(3));
}

#[test]
fn a_drain_waits_for_every_proxy_of_its_alias_to_report_the_old_members_idle() {
    let (p, q): (SocketAddr, SocketAddr) = (
        "127.0.0.1:8080".parse().unwrap(),
        "127.0.0.1:9090".parse().unwrap(),
    );
    let web = alias("web.internal.");
    let old: Endpoint = "10.0.0.2:8080".parse().unwrap();
    // Each case: the proxies of the alias, those that reported the old member idle, the
    // services the drain takes out, and the open work it still waits for.
    type Case<'a> = (
        &'a str,
        Vec<SocketAddr>,
        Vec<SocketAddr>,
        &'a [&'a str],
        u64,
    );
    let cases: Vec<Case> = vec![
        ("no proxy fronts the alias", vec![], vec![], &["web-v2"], 0),
        ("one proxy, not reported", vec![p], vec![], &["web-v2"], 1),
        ("one proxy, reported", vec![p], vec![p], &["web-v2"], 0),
        (
            "two proxies, one reported",
            vec![p, q],
            vec![q],
            &["web-v2"],
            1,
        ),
        (
            "members still answering are not waited for",
            vec![p],
            vec![],
            &["web-v1"],
            0,
        ),
    ];
    for (name, proxies, reported, services_, expect) in cases {
        let mut core = core();
        core.proxies = proxies.into_iter().map(|p| (p, web.clone())).collect();
        core.drained.insert(
            web.clone(),
            reported.into_iter().map(|p| (p, old)).collect(),
        );
        assert_eq!(core.open_work(&web, &services(services_)), expect, "{name}");
    }
    // A report for an alias that is not draining is late, and forgotten.
    let mut core = core();
    core.drained(Drained {
        proxy: p,
        alias: web.clone(),
        endpoint: old,
    });
    assert!(core.drained.is_empty());
}

#[test]
fn a_clusters_writer_makes_every_change_of_the_answers_durable() {
    // A single node: health alone moves the serial within the reserve, without a write.
    let single = plan_of("single node", |core| {
        unhealthy(core, "web-v1");
        Batch::default()
    });
    assert!(single.durable.is_none(), "a single node stores no health");

    // A cluster's writer stores the health it decided, the serials it publishes and the
    // last good answers, so every other node renders the same answers.
    let mut c = core();
    c.replicate = true;
    unhealthy(&mut c, "web-v1");
    let plan = c.plan(Batch::default(), NOW).expect("a plan");
    let unit = plan.durable.as_ref().expect("health is replicated");
    let web_v1: ServiceName = "web-v1".parse().unwrap();
    let health = unit.live.health[&web_v1].as_ref().expect("web-v1's health");
    assert!(!health.is_empty());
    assert!(health.iter().all(|(_, h)| *h == Health::Unhealthy));
    // The serials are stored when they moved (here the answers fell back, so they did not).
    let moved = plan.state.serials != START_SERIALS;
    assert_eq!(
        !unit.live.serials.is_empty(),
        moved,
        "{:?}",
        unit.live.serials
    );
    assert!(unit.delta.aliases.is_empty(), "no alias changed");

    // A relink stores the alias and nothing about services whose health did not move.
    let mut c = core();
    c.replicate = true;
    let change = relinked(&c, "web.internal.", &["web-v2"]);
    let plan = c.plan(Batch::of(vec![change]), NOW).expect("a plan");
    let unit = plan.durable.expect("durable");
    assert_eq!(unit.delta.aliases.len(), 1);
    assert!(unit.live.health.is_empty(), "{:?}", unit.live.health);
    let stored: Vec<u32> = plan
        .topology
        .zones
        .iter()
        .map(|z| unit.live.serials[&z.origin.name().to_ascii()])
        .collect();
    assert_eq!(
        stored, plan.state.serials,
        "the serials published are stored"
    );
    assert_ne!(plan.state.serials, START_SERIALS, "the zone's serial moved");
}

#[test]
fn a_drain_waits_for_every_other_node_of_a_cluster() {
    let peer = |serial: Option<(u32, u64)>| Peer {
        proxies: vec![("127.0.0.2:8080".parse().unwrap(), alias("web.internal."))],
        serials: vec![serial, None],
    };
    let mut c = core();
    assert_eq!(c.caught(0, 9), Caught::Since(0), "no other node");
    c.peers.insert("b".into(), peer(Some((9, 5))));
    assert_eq!(c.caught(0, 9), Caught::Since(5));
    c.peers.insert("c".into(), peer(Some((8, 7))));
    assert_eq!(c.caught(0, 9), Caught::Waiting, "c serves an older serial");
    c.peers.insert("c".into(), peer(Some((10, 7))));
    assert_eq!(c.caught(0, 9), Caught::Since(7));
    c.peers.insert("d".into(), peer(None));
    assert_eq!(c.caught(0, 9), Caught::Waiting, "d reported no serial");
    // A peer's proxy is waited for like a local one, until it reports the member idle.
    let web = alias("web.internal.");
    let mut c = core();
    c.peers.insert("b".into(), peer(Some((9, 5))));
    assert_eq!(c.open_work(&web, &services(&["web-v2"])), 1);
    let old = c.topology.services[&services(&["web-v2"])[0]].endpoints[0].endpoint;
    c.drained.insert(
        web.clone(),
        [("127.0.0.2:8080".parse().unwrap(), old)]
            .into_iter()
            .collect(),
    );
    assert_eq!(c.open_work(&web, &services(&["web-v2"])), 0);
}
