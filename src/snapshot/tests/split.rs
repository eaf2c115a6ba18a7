//! An alias in a weighted step: each client is answered its side, a side with nothing passing
//! answers the other's, zone transfers ship the old side, and the view the proxy reads puts
//! every client where DNS does.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::state::StepAt;
use crate::steps::on_new;

const SALT: &str = "split-test";

/// `app.example.` (web-v1) promoting to web-v2 in a step of `weight` percent.
fn stepped(weight: u8) -> Phase {
    let mut op = testkit::promotion(2, &["web-v1"], &["web-v2"], 1);
    op.salt = SALT.into();
    Phase::Mixed {
        op,
        since_ms: 1,
        observe_until_ms: 2,
        confirmed: false,
        step: Some(StepAt {
            index: 0,
            weight,
            since_ms: 1,
            effective_ms: None,
            confirmed: false,
        }),
    }
}

fn render_app(topology: Arc<Topology>, phase: Phase, health: &HealthMap) -> Snapshot {
    let mut state = config_state(&topology);
    state.aliases.get_mut(&alias(APP)).unwrap().phase = phase;
    Snapshot::render(
        1,
        topology,
        &state,
        health,
        &LastGood::new(),
        Arc::default(),
    )
}

/// The addresses `name` answers `client` for A and AAAA, in order.
fn addresses_for(snapshot: &Snapshot, name: &str, client: Option<IpAddr>) -> Vec<String> {
    let lower = lower(name);
    let zone = snapshot.zone_for(&lower).unwrap();
    [RecordType::A, RecordType::AAAA]
        .into_iter()
        .flat_map(|rtype| match zone.lookup(&lower, rtype, client) {
            Lookup::Found { answers, .. } => records(&answers),
            Lookup::NoData => Vec::new(),
            other => panic!("{name} {rtype}: {other:?}"),
        })
        .map(|r| r.rsplit(' ').next().unwrap().to_owned())
        .collect()
}

/// The first of 127.0.0.1, 127.0.0.2, ... on the new side at `weight` (or on the old side).
fn client_on(new: bool, weight: u8) -> IpAddr {
    (1..10_000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | i)))
        .find(|ip| on_new(SALT.as_bytes(), *ip, weight) == new)
        .unwrap()
}

const OLD: [&str; 2] = ["10.0.0.1", "10.0.0.2"];
const NEW: [&str; 2] = ["10.0.0.2", "fd00::2"];

#[test]
fn a_step_answers_each_client_its_side_and_zone_transfers_the_old_one() {
    let snap = render_app(topology(), stepped(50), &HealthMap::new());
    let (old, new) = (client_on(false, 50), client_on(true, 50));
    assert_eq!(addresses_for(&snap, APP, Some(old)), OLD);
    assert_eq!(addresses_for(&snap, APP, Some(new)), NEW);
    // No client (the catalog's own lookups) and zone transfers: the old side.
    assert_eq!(addresses_for(&snap, APP, None), OLD);
    let example = snap.zone_for(&lower(APP)).unwrap();
    let shipped: Vec<String> = example
        .records()
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .filter(|r| r.name == Name::from_ascii(APP).unwrap())
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(shipped, OLD);
    // A new-side client's SRV answer names the new side's ports.
    let lower_srv = lower("_http._tcp.app.example.");
    let Lookup::Found { answers, .. } = example.lookup(&lower_srv, RecordType::SRV, Some(new))
    else {
        panic!("no SRV")
    };
    let srv = records(&answers).join("\n");
    assert!(srv.contains(" 9090 "), "{srv}");
    // The view: the union in `endpoints`, each side in `split`.
    let view = &snap.aliases[&alias(APP)];
    let split = view.split.as_ref().expect("a split");
    assert_eq!(split.weight, 50);
    assert_eq!(split.old, endpoints(&["10.0.0.1:8080", "10.0.0.2:8080"]));
    assert_eq!(
        split.new,
        endpoints(&["10.0.0.2:8080", "10.0.0.2:9090", "[fd00::2]:8080"])
    );
    assert_eq!(
        view.endpoints,
        endpoints(&[
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.2:9090",
            "[fd00::2]:8080"
        ])
    );
}

#[test]
fn the_proxy_view_puts_every_client_on_the_side_dns_answers_it() {
    let snap = render_app(topology(), stepped(30), &HealthMap::new());
    let view = &snap.aliases[&alias(APP)];
    let mut on_new_side = 0;
    for i in 0..2_000u32 {
        let client = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (i * 104_729)));
        let dns = addresses_for(&snap, APP, Some(client));
        assert_eq!(dns, ips(view.endpoints_for(client)), "{client}");
        on_new_side += usize::from(dns == NEW);
    }
    // About 30% of 2,000 (the hash is uniform; 3 points either way is far past chance).
    assert!((540..=660).contains(&on_new_side), "{on_new_side} of 2000");
}

#[test]
fn weight_0_answers_everyone_the_old_side_and_100_the_new() {
    for (weight, want) in [(0, OLD), (100, NEW)] {
        let snap = render_app(topology(), stepped(weight), &HealthMap::new());
        for i in 1..200u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | i));
            assert_eq!(addresses_for(&snap, APP, Some(client)), want, "{weight}%");
        }
    }
}

#[test]
fn a_side_with_nothing_passing_answers_the_other_sides_passing_endpoints() {
    let v2_down = health(&[
        ("web-v2", "10.0.0.2:8080", Health::Unhealthy),
        ("web-v2", "10.0.0.2:9090", Health::Unhealthy),
        ("web-v2", "[fd00::2]:8080", Health::Unhealthy),
    ]);
    let snap = render_app(topology(), stepped(50), &v2_down);
    for new in [false, true] {
        assert_eq!(
            addresses_for(&snap, APP, Some(client_on(new, 50))),
            OLD,
            "web-v2 down, on the new side: {new}"
        );
    }
    let snap = render_app(topology(), stepped(50), &web_v1_down());
    for new in [false, true] {
        assert_eq!(
            addresses_for(&snap, APP, Some(client_on(new, 50))),
            NEW,
            "web-v1 down, on the new side: {new}"
        );
    }
    // Secondaries get the old side's answer, which is then the new side's endpoints.
    assert_eq!(addresses_for(&snap, APP, None), NEW);
    let view = &snap.aliases[&alias(APP)];
    assert_eq!(view.fallback, None);
}

#[test]
fn with_nothing_passing_on_either_side_the_alias_policy_decides_for_both() {
    let all_down = health(&[
        ("web-v1", "10.0.0.1:8080", Health::Unhealthy),
        ("web-v1", "10.0.0.2:8080", Health::Unhealthy),
        ("web-v2", "10.0.0.2:8080", Health::Unhealthy),
        ("web-v2", "10.0.0.2:9090", Health::Unhealthy),
        ("web-v2", "[fd00::2]:8080", Health::Unhealthy),
    ]);
    let union = ["10.0.0.1", "10.0.0.2", "fd00::2"];
    for (policy, want) in [("all", &union[..]), ("none", &[][..])] {
        let snap = render_app(topology_with_policy(policy), stepped(50), &all_down);
        for new in [false, true] {
            assert_eq!(
                addresses_for(&snap, APP, Some(client_on(new, 50))),
                want,
                "{policy}, on the new side: {new}"
            );
        }
        let view = &snap.aliases[&alias(APP)];
        assert!(view.fallback.is_some(), "{policy}");
    }
}

#[test]
fn mixed_without_a_step_answers_both_versions_to_everyone_as_before() {
    let snap = render_app(topology(), promoting("mixed"), &HealthMap::new());
    let view = &snap.aliases[&alias(APP)];
    assert!(view.split.is_none());
    for i in 1..100u32 {
        let client = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | i));
        assert_eq!(
            addresses_for(&snap, APP, Some(client)),
            ["10.0.0.1", "10.0.0.2", "fd00::2"]
        );
        assert_eq!(view.endpoints_for(client), &view.endpoints[..]);
    }
}

#[test]
fn raising_the_weight_changes_nothing_a_secondary_transfers() {
    let topology = topology();
    let at_10 = render_app(topology.clone(), stepped(10), &HealthMap::new());
    let at_50 = render_app(topology, stepped(50), &HealthMap::new());
    let (older, newer) = (
        at_10.zone_for(&lower(APP)).unwrap(),
        at_50.zone_for(&lower(APP)).unwrap(),
    );
    let (removed, added) = newer.changes_since(older).expect("the same zone file");
    assert!(
        removed.is_empty() && added.is_empty(),
        "{removed:?} {added:?}"
    );
    // And no client goes back from the new side to the old one.
    for i in 0..2_000u32 {
        let client = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | i));
        if addresses_for(&at_10, APP, Some(client)) == NEW {
            assert_eq!(addresses_for(&at_50, APP, Some(client)), NEW, "{client}");
        }
    }
}
