//! Lookup cost against zone size: prints ns per lookup for an alias, a static name, NXDOMAIN and
//! NODATA in a small and a large zone, side by side, with the large/small ratio. A ratio near 1
//! shows that no answer, negative ones included, depends on the zone's size. Then the fast
//! path's whole answer (query bytes in, response bytes out) for an alias in a weighted step
//! against a stable one: what the per-client choice costs a UDP answer.
//!
//! `cargo bench --bench lookup` measures; under `cargo test` it runs a few iterations only, so
//! the benchmark itself is kept working.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use aliasd::config::Config;
use aliasd::controller::first_render;
use aliasd::dns::agree::{CANARY_WEIGHT, Fixture};
use aliasd::dns::fast::{self, Fast};
use aliasd::registry::Base;
use aliasd::snapshot::{HealthMap, LastGood, Snapshot};
use aliasd::state::State;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{LowerName, Name, RecordType};

fn snapshot(static_names: usize, aliases: usize) -> (Snapshot, State, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut zone = String::from(
        "$TTL 300\n@ IN SOA ns1 hostmaster ( 1 3600 600 86400 5 )\n  IN NS ns1\nns1 IN A 10.0.0.1\n",
    );
    for i in 0..static_names {
        zone.push_str(&format!(
            "host{i} IN A 10.{}.{}.{}\n",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        ));
    }
    std::fs::write(dir.path().join("z.zone"), zone).expect("zone");
    let mut config = String::from(
        "[dns]\nlisten=[\"127.0.0.1:0\"]\n[[zone]]\norigin=\"internal.\"\nfile=\"z.zone\"\n[state]\ndir=\"s\"\n",
    );
    for i in 0..aliases {
        config.push_str(&format!(
            "[[service]]\nname=\"svc{i}\"\nendpoints=[\"10.200.{}.{}:80\", \"10.201.{}.{}:80\"]\n[[alias]]\nname=\"alias{i}\"\ntargets=[\"svc{i}\"]\n",
            i >> 8 & 255, i & 255, i >> 8 & 255, i & 255
        ));
    }
    let path = dir.path().join("aliasd.toml");
    let config = Config::parse(&config, &path, &|_| None).expect("config");
    let (state, snapshot) = first_render(&Base::from_config(&config), None, 0);
    (snapshot, state, dir)
}

fn time_per_op(iterations: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let iterations = if measuring { 2_000_000 } else { 1_000 };
    let (small_n, large_n) = if measuring {
        (100, 200_000)
    } else {
        (10, 1_000)
    };

    let names = [
        ("alias A", "alias7.internal.", RecordType::A),
        ("static A", "host7.internal.", RecordType::A),
        ("NXDOMAIN", "missing.internal.", RecordType::A),
        ("NODATA", "host7.internal.", RecordType::MX),
        (
            "SRV + additionals",
            "_http._tcp.alias7.internal.",
            RecordType::SRV,
        ),
    ];
    let (small, _, _d1) = snapshot(small_n, 10);
    let build = Instant::now();
    let (large, _, _d2) = snapshot(large_n, 10);
    let build_large = build.elapsed();

    println!("lookup cost, {iterations} lookups each (ns per lookup)");
    println!(
        "{:<20} {:>12} {:>12} {:>8}",
        "query",
        format!("{small_n} names"),
        format!("{large_n} names"),
        "ratio"
    );
    for (label, name, rtype) in names {
        let lower = LowerName::new(&Name::from_ascii(name).expect("name"));
        let mut per = [0.0; 2];
        for (slot, snap) in [&small, &large].into_iter().enumerate() {
            let zone = &snap.zones[0];
            per[slot] = time_per_op(iterations, || {
                black_box(zone.lookup(black_box(&lower), rtype, None));
            });
        }
        println!(
            "{label:<20} {:>12.1} {:>12.1} {:>8.2}",
            per[0],
            per[1],
            per[1] / per[0]
        );
    }

    // Rendering a snapshot is the writer's cost per change; it grows with aliases, not static names.
    let (snap, state, _d3) = snapshot(large_n, 1_000);
    let topology = snap.topology.clone();
    let renders = if measuring { 50 } else { 2 };
    let per_render = time_per_op(renders, || {
        black_box(Snapshot::render(
            2,
            topology.clone(),
            &state,
            &HealthMap::new(),
            &LastGood::new(),
            Arc::default(),
        ));
    });
    println!(
        "\nrender of a snapshot with 1000 aliases over {large_n} static names: {:.2} ms (static index built once in {:.0} ms)",
        per_render / 1e6,
        build_large.as_secs_f64() * 1e3
    );

    split_answers(iterations);
}

/// The fast path's answer to `A` for a stable alias and for one in a weighted step, from a
/// client on either side. The agreement fixture has both: `web` stable, `canary` in a 50% step
/// between two services of the same shape, so all three answers hold two A records (the names
/// differ in length by three bytes). The step hashes the client's address for every query.
fn split_answers(iterations: u32) {
    let fixture = Fixture::new(|config| first_render(&Base::from_config(config), None, 1));
    let snapshot = fixture.snapshots.load();
    let query = |name: &str| {
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        m.to_vec().expect("query")
    };
    // The fixture's operation salt is "agree" (`aliasd::dns::agree::step_canary`).
    let client_on = |new: bool| {
        (1..)
            .map(|i: u32| IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | i)))
            .find(|&ip| aliasd::steps::on_new(b"agree", ip, CANARY_WEIGHT) == new)
            .expect("a client on each side")
    };
    let cases = [
        ("stable", query("web.internal."), client_on(false)),
        (
            "50% step, old side",
            query("canary.internal."),
            client_on(false),
        ),
        (
            "50% step, new side",
            query("canary.internal."),
            client_on(true),
        ),
    ];
    println!(
        "\nfast path, a whole UDP answer to alias A, {iterations} answers each (ns per answer)"
    );
    println!("{:<20} {:>12} {:>8}", "alias", "ns", "/stable");
    let mut out = Vec::with_capacity(512);
    let mut stable = 0.0;
    for (label, packet, client) in cases {
        assert_eq!(
            fast::answer(&snapshot, &packet, client, &mut out),
            Fast::Answered,
            "{label}"
        );
        let per = time_per_op(iterations, || {
            black_box(fast::answer(
                &snapshot,
                black_box(&packet),
                black_box(client),
                &mut out,
            ));
        });
        if stable == 0.0 {
            stable = per;
        }
        println!("{label:<20} {per:>12.1} {:>8.2}", per / stable);
    }
}
