use super::*;

use hickory_proto::rr::rdata::SOA;

use crate::registry::Base;
use crate::testkit::{self, ConfigDir};

use crate::controller::initial_state;
use crate::controller::machine::Phase;

const INTERNAL_ZONE: &str = r#"$TTL 300
@          IN SOA   ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
           IN NS    ns1.internal.
ns1        IN A     127.0.0.1
db         IN A     10.0.0.9
db         IN AAAA  fd00::9
www        IN CNAME db
to-web     IN CNAME web
ext        IN CNAME www.example.com.
host.rack1 IN A     10.0.0.10
"#;

/// Its SOA TTL (30) is below the negative TTL, the internal zone's (300) above it.
const EXAMPLE_ZONE: &str = r#"$TTL 30
@   IN SOA ns1.example. hostmaster.example. ( 100 3600 600 86400 5 )
    IN NS  ns1.example.
ns1 IN A   127.0.0.1
"#;

/// Two zones; aliases with several endpoints and IPv6, none, an SRV port name, and one in the
/// second zone. Its last table is the `app.example.` alias (a test appends a key to it).
fn config() -> String {
    use crate::testkit::{alias, service};
    let rest = [
        "[[zone]]\norigin = \"example.\"\nfile = \"example.zone\"\n".to_owned(),
        service("web-v1", &["10.0.0.1:8080", "10.0.0.2:8080"]),
        service(
            "web-v2",
            &["10.0.0.2:8080", "10.0.0.2:9090", "[fd00::2]:8080"],
        ),
        service("idle", &[]),
        alias("web", &["web-v1", "web-v2"]),
        alias("idle", &["idle"]),
        alias("api", &["web-v2"]) + "port_name = \"grpc\"\n",
        alias("app.example.", &["web-v1"]),
    ]
    .join("\n");
    testkit::config(
        r#"["127.0.0.1:5353"]"#,
        "alias_ttl = 30\nnegative_ttl = 60",
        &rest,
    )
}

const ALIAS_TTL: u32 = 30;
const NEGATIVE_TTL: u32 = 60;
/// The serials the tests' state gives the two zones.
const SERIALS: [u32; 2] = [42, 4000];

fn topology() -> Arc<Topology> {
    topology_of(&config())
}

fn topology_of(config: &str) -> Arc<Topology> {
    Arc::new(Topology::from_config(&zones().parse(config)))
}

fn base_of(config: &str) -> Base {
    zones().base(config)
}

/// The two zones the configs name.
fn zones() -> ConfigDir {
    ConfigDir::new(&[
        ("internal.zone", INTERNAL_ZONE),
        ("example.zone", EXAMPLE_ZONE),
    ])
}

/// The state the config describes, with [`SERIALS`].
fn config_state(_topology: &Topology) -> State {
    let (mut state, notes) = initial_state(&base_of(&config()), None, 1);
    assert!(notes.is_empty(), "{notes:?}");
    state.serials = SERIALS.to_vec();
    state
}

/// Renders `state` with every endpoint unchecked (so answered) and no last good sets.
fn render(generation: u64, topology: Arc<Topology>, state: &State) -> Snapshot {
    Snapshot::render(
        generation,
        topology,
        state,
        &HealthMap::new(),
        &LastGood::new(),
        Arc::default(),
    )
}

fn snapshot() -> Snapshot {
    let topology = topology();
    let state = config_state(&topology);
    render(1, topology, &state)
}

fn lower(name: &str) -> LowerName {
    LowerName::new(&Name::from_ascii(name).unwrap())
}

fn alias(name: &str) -> AliasName {
    AliasName::from_fqdn(&Name::from_ascii(name).unwrap())
}

fn service(name: &str) -> ServiceName {
    name.parse().unwrap()
}

fn lookup(snapshot: &Snapshot, name: &str, rtype: RecordType) -> Lookup {
    let name = lower(name);
    let zone = snapshot
        .zone_for(&name)
        .unwrap_or_else(|| panic!("no zone for {name}"));
    zone.lookup(&name, rtype, None)
}

/// Every record of `sets` in presentation form (`name ttl class type rdata`), in order.
fn records(sets: &[Arc<RecordSet>]) -> Vec<String> {
    sets.iter()
        .flat_map(|s| s.records_without_rrsigs())
        .map(|r| r.to_string())
        .collect()
}

/// The answer and additional records of a lookup that must find something.
fn found(snapshot: &Snapshot, name: &str, rtype: RecordType) -> (Vec<String>, Vec<String>) {
    match lookup(snapshot, name, rtype) {
        Lookup::Found {
            answers,
            additionals,
        } => (records(&answers), records(&additionals)),
        other => panic!("{name} {rtype}: expected an answer, got {other:?}"),
    }
}

fn answers(snapshot: &Snapshot, name: &str, rtype: RecordType) -> Vec<String> {
    found(snapshot, name, rtype).0
}

fn assert_nodata(snapshot: &Snapshot, name: &str, rtype: RecordType) {
    let got = lookup(snapshot, name, rtype);
    assert!(matches!(got, Lookup::NoData), "{name} {rtype}: {got:?}");
}

fn assert_nxdomain(snapshot: &Snapshot, name: &str, rtype: RecordType) {
    let got = lookup(snapshot, name, rtype);
    assert!(matches!(got, Lookup::NxDomain), "{name} {rtype}: {got:?}");
}

/// The host name the SRV records of `alias` name for `ip`, as text.
fn host(alias: &str, ip: &str) -> String {
    let alias = Name::from_ascii(alias).unwrap();
    endpoint_host(&alias, ip.parse().unwrap()).to_ascii()
}

/// `name ttl IN type rdata` with the alias TTL.
fn alias_record(name: &str, rtype: &str, rdata: &str) -> String {
    format!("{name} {ALIAS_TTL} IN {rtype} {rdata}")
}

fn soa_of(snapshot: &Snapshot, zone: usize) -> (u32, SOA) {
    let set = snapshot.zones[zone].soa();
    let record = set.records_without_rrsigs().next().unwrap();
    match &record.data {
        RData::SOA(soa) => (record.ttl, soa.clone()),
        other => panic!("not an SOA: {other:?}"),
    }
}

// ---- alias answers ----

#[test]
fn an_alias_answers_a_with_the_deduplicated_ipv4_addresses_of_its_services() {
    let snap = snapshot();
    assert_eq!(
        answers(&snap, "web.internal.", RecordType::A),
        [
            alias_record("web.internal.", "A", "10.0.0.1"),
            alias_record("web.internal.", "A", "10.0.0.2"),
        ]
    );
}

#[test]
fn an_alias_answers_aaaa_with_its_ipv6_addresses() {
    let snap = snapshot();
    assert_eq!(
        answers(&snap, "web.internal.", RecordType::AAAA),
        [alias_record("web.internal.", "AAAA", "fd00::2")]
    );
    // api links only web-v2, which has one IPv4 address on two ports.
    assert_eq!(
        answers(&snap, "api.internal.", RecordType::A),
        [alias_record("api.internal.", "A", "10.0.0.2")]
    );
}

#[test]
fn an_alias_answers_srv_with_every_endpoint_and_the_host_addresses_as_additionals() {
    let snap = snapshot();
    let web = "web.internal.";
    let srv = |port: u16, ip: &str| {
        alias_record(
            "_http._tcp.web.internal.",
            "SRV",
            &format!("0 1 {port} {}", host(web, ip)),
        )
    };
    let (answers, additionals) = found(&snap, "_http._tcp.web.internal.", RecordType::SRV);
    assert_eq!(
        answers,
        [
            srv(8080, "10.0.0.1"),
            srv(8080, "10.0.0.2"),
            srv(9090, "10.0.0.2"),
            srv(8080, "fd00::2"),
        ]
    );
    assert_eq!(
        additionals,
        [
            alias_record(&host(web, "10.0.0.1"), "A", "10.0.0.1"),
            alias_record(&host(web, "10.0.0.2"), "A", "10.0.0.2"),
            alias_record(&host(web, "fd00::2"), "AAAA", "fd00::2"),
        ]
    );
}

#[test]
fn srv_records_live_under_the_configured_port_name_and_at_the_alias() {
    let snap = snapshot();
    let (answers, additionals) = found(&snap, "_grpc._tcp.api.internal.", RecordType::SRV);
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(additionals.len(), 2, "{additionals:?}");
    assert_nxdomain(&snap, "_http._tcp.api.internal.", RecordType::SRV);

    let (at_alias, at_alias_additionals) = found(&snap, "api.internal.", RecordType::SRV);
    let owners_replaced: Vec<String> = answers
        .iter()
        .map(|r| r.replacen("_grpc._tcp.api.internal.", "api.internal.", 1))
        .collect();
    assert_eq!(at_alias, owners_replaced);
    assert_eq!(at_alias_additionals, additionals);
}

#[test]
fn endpoint_hosts_are_named_after_the_address_and_answer_it() {
    assert_eq!(host("web.internal.", "10.0.0.5"), "10-0-0-5.web.internal.");
    assert_eq!(host("web.internal.", "fd00::5"), "fd00--5.web.internal.");

    let snap = snapshot();
    let v4 = host("web.internal.", "10.0.0.2");
    let v6 = host("web.internal.", "fd00::2");
    assert_eq!(
        answers(&snap, &v4, RecordType::A),
        [alias_record(&v4, "A", "10.0.0.2")]
    );
    assert_eq!(
        answers(&snap, &v6, RecordType::AAAA),
        [alias_record(&v6, "AAAA", "fd00::2")]
    );
    assert_nodata(&snap, &v4, RecordType::AAAA);
    assert_nxdomain(&snap, &host("web.internal.", "10.0.0.99"), RecordType::A);
}

#[test]
fn alias_records_carry_the_alias_ttl() {
    let snap = snapshot();
    let names = [
        ("web.internal.", RecordType::A),
        ("web.internal.", RecordType::AAAA),
        ("web.internal.", RecordType::SRV),
        ("_http._tcp.web.internal.", RecordType::SRV),
        ("10-0-0-1.web.internal.", RecordType::A),
    ];
    for (name, rtype) in names {
        let Lookup::Found {
            answers,
            additionals,
        } = lookup(&snap, name, rtype)
        else {
            panic!("{name} {rtype}: no answer");
        };
        for set in answers.iter().chain(&additionals) {
            assert_eq!(set.ttl(), ALIAS_TTL, "{name} {rtype}: {set:?}");
            for r in set.records_without_rrsigs() {
                assert_eq!(r.ttl, ALIAS_TTL, "{name} {rtype}: {r}");
            }
        }
    }
}

#[test]
fn the_tcp_label_under_an_alias_is_an_empty_non_terminal() {
    let snap = snapshot();
    for rtype in [RecordType::A, RecordType::SRV, RecordType::ANY] {
        assert_nodata(&snap, "_tcp.web.internal.", rtype);
    }
    assert_nxdomain(&snap, "_udp.web.internal.", RecordType::SRV);
    assert_nxdomain(&snap, "_https._tcp.web.internal.", RecordType::SRV);
}

#[test]
fn an_alias_with_no_endpoints_exists_but_has_no_data() {
    let snap = snapshot();
    for rtype in [RecordType::A, RecordType::AAAA, RecordType::SRV] {
        assert_nodata(&snap, "idle.internal.", rtype);
    }
    assert!(snap.aliases[&alias("idle.internal.")].endpoints.is_empty());
}

#[test]
fn an_existing_alias_asked_for_another_type_is_nodata() {
    let snap = snapshot();
    assert_nodata(&snap, "web.internal.", RecordType::MX);
    assert_nodata(&snap, "web.internal.", RecordType::CNAME);
    assert_nodata(&snap, "_http._tcp.web.internal.", RecordType::A);
}

#[test]
fn any_returns_every_record_set_of_the_name() {
    let snap = snapshot();
    let mut any = answers(&snap, "web.internal.", RecordType::ANY);
    let mut each: Vec<String> = [RecordType::A, RecordType::AAAA, RecordType::SRV]
        .into_iter()
        .flat_map(|t| answers(&snap, "web.internal.", t))
        .collect();
    any.sort();
    each.sort();
    assert_eq!(any, each);

    assert_eq!(
        answers(&snap, "db.internal.", RecordType::ANY),
        [
            "db.internal. 300 IN A 10.0.0.9",
            "db.internal. 300 IN AAAA fd00::9"
        ]
    );
    let apex = answers(&snap, "internal.", RecordType::ANY);
    assert!(
        apex.contains(&"internal. 300 IN NS ns1.internal.".to_owned()),
        "{apex:?}"
    );
    let soa = apex.iter().find(|r| r.contains(" SOA ")).expect("no SOA");
    assert!(soa.contains(" 42 3600 600 86400 60"), "{soa}");
}

// ---- static data ----

#[test]
fn static_records_come_from_the_zone_file() {
    let snap = snapshot();
    assert_eq!(
        answers(&snap, "db.internal.", RecordType::A),
        ["db.internal. 300 IN A 10.0.0.9"]
    );
    assert_eq!(
        answers(&snap, "host.rack1.internal.", RecordType::A),
        ["host.rack1.internal. 300 IN A 10.0.0.10"]
    );
    assert_eq!(
        answers(&snap, "internal.", RecordType::NS),
        ["internal. 300 IN NS ns1.internal."]
    );
    assert_eq!(
        answers(&snap, "ns1.example.", RecordType::A),
        ["ns1.example. 30 IN A 127.0.0.1"]
    );
}

#[test]
fn unknown_names_are_nxdomain_and_known_names_of_another_type_nodata() {
    let snap = snapshot();
    assert_nxdomain(&snap, "nope.internal.", RecordType::A);
    assert_nxdomain(&snap, "a.db.internal.", RecordType::A);
    assert_nxdomain(&snap, "nope.web.internal.", RecordType::A);
    assert_nxdomain(&snap, "nope.example.", RecordType::A);
    assert_nodata(&snap, "db.internal.", RecordType::MX);
    assert_nodata(&snap, "ns1.internal.", RecordType::AAAA);
    assert_nodata(&snap, "internal.", RecordType::A);
    // `rack1` owns nothing but has `host.rack1` below it.
    assert_nodata(&snap, "rack1.internal.", RecordType::A);
}

#[test]
fn cnames_are_followed_inside_the_zone() {
    let snap = snapshot();
    assert_eq!(
        answers(&snap, "www.internal.", RecordType::A),
        [
            "www.internal. 300 IN CNAME db.internal.",
            "db.internal. 300 IN A 10.0.0.9"
        ]
    );
    assert_eq!(
        answers(&snap, "www.internal.", RecordType::CNAME),
        ["www.internal. 300 IN CNAME db.internal."]
    );
    // Into an alias.
    assert_eq!(
        answers(&snap, "to-web.internal.", RecordType::AAAA),
        [
            "to-web.internal. 300 IN CNAME web.internal.".to_owned(),
            alias_record("web.internal.", "AAAA", "fd00::2"),
        ]
    );
    // Out of the zone: the CNAME alone, the resolver follows it.
    assert_eq!(
        answers(&snap, "ext.internal.", RecordType::A),
        ["ext.internal. 300 IN CNAME www.example.com."]
    );
    // The target exists but lacks the type: the CNAME alone.
    assert_eq!(
        answers(&snap, "www.internal.", RecordType::MX),
        ["www.internal. 300 IN CNAME db.internal."]
    );
}

// ---- the SOA ----

#[test]
fn the_apex_soa_carries_the_state_serial_and_the_negative_ttl() {
    let snap = snapshot();
    for (zone, origin) in [(0, "internal."), (1, "example.")] {
        let (ttl, soa) = soa_of(&snap, zone);
        assert_eq!(soa.serial, SERIALS[zone], "{origin}");
        assert_eq!(snap.zones[zone].serial, SERIALS[zone], "{origin}");
        assert_eq!(soa.minimum, NEGATIVE_TTL, "{origin}");
        assert!(ttl <= NEGATIVE_TTL, "{origin}: ttl {ttl}");
        assert_eq!(soa.refresh, 3600, "{origin}");
        let (answers, additionals) = found(&snap, origin, RecordType::SOA);
        assert_eq!(answers, records(&[snap.zones[zone].soa().clone()]));
        assert!(additionals.is_empty());
    }
    // The SOA TTL is the smaller of the file's and the negative TTL.
    assert_eq!(soa_of(&snap, 0).0, NEGATIVE_TTL);
    assert_eq!(soa_of(&snap, 1).0, 30);
}

#[test]
fn a_new_state_renders_a_new_serial_and_new_links_while_the_old_snapshot_stands() {
    let topology = topology();
    let old_state = config_state(&topology);
    let old = render(1, topology.clone(), &old_state);
    let mut new_state = old_state.clone();
    new_state.serials[0] += 1;
    new_state
        .aliases
        .get_mut(&alias("web.internal."))
        .unwrap()
        .targets = vec![service("idle"), service("web-v1")];
    let new = render(2, topology, &new_state);

    assert_eq!(new.generation, 2);
    assert_eq!(soa_of(&new, 0).1.serial, SERIALS[0] + 1);
    assert_eq!(soa_of(&new, 1).1.serial, SERIALS[1]);
    assert_nodata(&new, "web.internal.", RecordType::AAAA);
    assert_nxdomain(&new, &host("web.internal.", "fd00::2"), RecordType::AAAA);

    assert_eq!(old.generation, 1);
    assert_eq!(soa_of(&old, 0).1.serial, SERIALS[0]);
    assert_eq!(answers(&old, "web.internal.", RecordType::AAAA).len(), 1);
}

// ---- zones and views ----

#[test]
fn zone_for_picks_the_zone_that_holds_the_name() {
    let snap = snapshot();
    let origin_of = |name: &str| snap.zone_for(&lower(name)).map(|z| z.origin.to_string());
    assert_eq!(origin_of("web.internal.").as_deref(), Some("internal."));
    assert_eq!(
        origin_of("Deep.Below.Internal.").as_deref(),
        Some("internal.")
    );
    assert_eq!(origin_of("internal.").as_deref(), Some("internal."));
    assert_eq!(origin_of("app.example.").as_deref(), Some("example."));
    assert_eq!(origin_of("example.").as_deref(), Some("example."));
    assert_eq!(origin_of("notinternal."), None);
    assert_eq!(origin_of("example.com."), None);
    assert_eq!(origin_of("."), None);
}

#[test]
fn an_alias_in_the_second_zone_is_served_there_only() {
    let snap = snapshot();
    assert_eq!(
        answers(&snap, "app.example.", RecordType::A),
        [
            alias_record("app.example.", "A", "10.0.0.1"),
            alias_record("app.example.", "A", "10.0.0.2"),
        ]
    );
    let internal = &snap.zones[0];
    let name = lower("app.example.");
    assert!(matches!(
        internal.lookup(&name, RecordType::A, None),
        Lookup::NxDomain
    ));
}

#[test]
fn alias_views_show_the_state_endpoints_and_srv_name() {
    let snap = snapshot();
    assert_eq!(snap.generation, 1);
    let names: Vec<String> = snap.aliases.keys().map(|a| a.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "api.internal",
            "app.example",
            "idle.internal",
            "web.internal"
        ]
    );

    let web = &snap.aliases[&alias("web.internal.")];
    assert_eq!(web.name, alias("web.internal."));
    assert_eq!(web.zone.to_ascii(), "internal.");
    assert_eq!(web.srv_name.to_ascii(), "_http._tcp.web.internal.");
    assert_eq!(web.state.targets, [service("web-v1"), service("web-v2")]);
    assert_eq!(web.state.revision, 1);
    let endpoints: Vec<String> = web.endpoints.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        endpoints,
        [
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.2:9090",
            "[fd00::2]:8080"
        ]
    );
    let app = &snap.aliases[&alias("app.example.")];
    assert_eq!(app.zone.to_ascii(), "example.");
    assert_eq!(
        snap.aliases[&alias("api.internal.")].srv_name.to_ascii(),
        "_grpc._tcp.api.internal."
    );
}

#[test]
fn endpoints_of_keeps_target_order_and_drops_repeats_and_unknown_services() {
    let topology = topology();
    let got = endpoints_of(
        &topology,
        &[service("web-v2"), service("gone"), service("web-v1")],
    );
    let got: Vec<String> = got.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "10.0.0.2:8080",
            "10.0.0.2:9090",
            "[fd00::2]:8080",
            "10.0.0.1:8080"
        ]
    );
}

#[test]
fn find_alias_accepts_what_users_type() {
    let topology = topology();
    for text in ["web", "web.internal", "web.internal.", "WEB"] {
        assert_eq!(
            topology.find_alias(text),
            Some(&alias("web.internal.")),
            "{text}"
        );
    }
    assert_eq!(
        topology.find_alias("app.example."),
        Some(&alias("app.example."))
    );
    assert_eq!(topology.find_alias("db"), None);
    assert_eq!(topology.find_alias("nope"), None);
    assert_eq!(topology.find_alias(""), None);
}

#[test]
fn an_alias_missing_from_the_state_is_not_served() {
    let topology = topology();
    let mut state = config_state(&topology);
    state.aliases.remove(&alias("web.internal."));
    let snap = render(1, topology, &state);
    assert!(!snap.aliases.contains_key(&alias("web.internal.")));
    assert_nxdomain(&snap, "web.internal.", RecordType::A);
    assert_nxdomain(&snap, "_http._tcp.web.internal.", RecordType::SRV);
}

// ---- the health filter ----

const APP: &str = "app.example.";

fn endpoints(texts: &[&str]) -> Vec<Endpoint> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

fn health(entries: &[(&str, &str, Health)]) -> HealthMap {
    entries
        .iter()
        .map(|(s, e, h)| ((service(s), e.parse().unwrap()), *h))
        .collect()
}

/// Both endpoints of `web-v1`, which is all `app.example.` links, known unhealthy.
fn web_v1_down() -> HealthMap {
    health(&[
        ("web-v1", "10.0.0.1:8080", Health::Unhealthy),
        ("web-v1", "10.0.0.2:8080", Health::Unhealthy),
    ])
}

fn last_good(good: &[&str]) -> LastGood {
    [(alias(APP), endpoints(good))].into_iter().collect()
}

/// The config with `if_none_healthy = policy` on `app.example.`, its last `[[alias]]`.
fn topology_with_policy(policy: &str) -> Arc<Topology> {
    topology_of(&format!("{}if_none_healthy = \"{policy}\"\n", config()))
}

/// The addresses `name` answers for A and AAAA, in order.
fn addresses(snapshot: &Snapshot, name: &str) -> Vec<String> {
    [RecordType::A, RecordType::AAAA]
        .into_iter()
        .flat_map(|rtype| match lookup(snapshot, name, rtype) {
            Lookup::Found { answers, .. } => records(&answers),
            Lookup::NoData => Vec::new(),
            other => panic!("{name} {rtype}: {other:?}"),
        })
        .map(|r| r.rsplit(' ').next().unwrap().to_owned())
        .collect()
}

/// The distinct addresses of `endpoints` as DNS answers them: IPv4 (A) first, then IPv6.
fn ips(endpoints: &[Endpoint]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v6 in [false, true] {
        for e in endpoints.iter().filter(|e| e.addr().is_ipv6() == v6) {
            let ip = e.addr().ip().to_string();
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Renders the config state (with `app.example.` in `phase`, if given) and returns the view
/// of `app.example.`, after checking that DNS answers exactly the view's endpoints.
fn app(
    topology: Arc<Topology>,
    phase: Option<Phase>,
    health: &HealthMap,
    last_good: &LastGood,
) -> AliasView {
    let mut state = config_state(&topology);
    if let Some(phase) = phase {
        state.aliases.get_mut(&alias(APP)).unwrap().phase = phase;
    }
    let snap = Snapshot::render(1, topology, &state, health, last_good, Arc::default());
    let view = (*snap.aliases[&alias(APP)]).clone();
    assert_eq!(addresses(&snap, APP), ips(&view.endpoints));
    view
}

/// `app.example.` in `phase` of a promotion from web-v1 to web-v2.
fn promoting(phase: &str) -> Phase {
    let op = testkit::promotion(2, &["web-v1"], &["web-v2"], 1);
    match phase {
        "warming" => Phase::Warming { op, deadline_ms: 2 },
        "mixed" => Phase::Mixed {
            step: None,
            op,
            since_ms: 1,
            observe_until_ms: 2,
            confirmed: false,
        },
        "draining" => Phase::Draining {
            op,
            since_ms: 1,
            until_ms: 2,
        },
        other => panic!("no phase {other}"),
    }
}

#[test]
fn an_unhealthy_endpoint_is_left_out_and_unknown_ones_are_answered() {
    let down = health(&[("web-v1", "10.0.0.1:8080", Health::Unhealthy)]);
    let up = health(&[
        ("web-v1", "10.0.0.1:8080", Health::Unhealthy),
        ("web-v1", "10.0.0.2:8080", Health::Healthy),
    ]);
    let unknown = health(&[
        ("web-v1", "10.0.0.1:8080", Health::Unhealthy),
        ("web-v1", "10.0.0.2:8080", Health::Unknown),
    ]);
    for health in [down, up, unknown] {
        let view = app(topology(), None, &health, &LastGood::new());
        assert_eq!(view.endpoints, endpoints(&["10.0.0.2:8080"]));
        assert_eq!(view.passing, view.endpoints);
        assert_eq!(view.fallback, None);
    }
}

#[test]
fn an_unhealthy_endpoint_is_left_out_of_the_srv_records_too() {
    let topology = topology();
    let state = config_state(&topology);
    let health = health(&[("web-v2", "10.0.0.2:9090", Health::Unhealthy)]);
    let snap = Snapshot::render(
        1,
        topology,
        &state,
        &health,
        &LastGood::new(),
        Arc::default(),
    );
    let (srv, _) = found(&snap, "_grpc._tcp.api.internal.", RecordType::SRV);
    let ports: Vec<&str> = srv.iter().map(|r| r.split(' ').nth(6).unwrap()).collect();
    assert_eq!(ports, ["8080", "8080"], "{srv:?}");
}

#[test]
fn when_no_endpoint_is_healthy_the_alias_policy_decides() {
    let both = ["10.0.0.1:8080", "10.0.0.2:8080"];
    // (policy, last good, endpoints answered, the policy shown)
    let cases: [(&str, &[&str], &[&str], IfNoneHealthy); 3] = [
        ("all", &[], &both, IfNoneHealthy::All),
        ("none", &both, &[], IfNoneHealthy::None),
        (
            "last-known-good",
            &["10.0.0.2:8080"],
            &["10.0.0.2:8080"],
            IfNoneHealthy::LastKnownGood,
        ),
    ];
    for (policy, good, want, want_fallback) in cases {
        let view = app(
            topology_with_policy(policy),
            None,
            &web_v1_down(),
            &last_good(good),
        );
        assert_eq!(view.endpoints, endpoints(want), "{policy}");
        assert_eq!(view.fallback, Some(want_fallback), "{policy}");
        assert!(view.passing.is_empty(), "{policy}: {:?}", view.passing);
    }
}

#[test]
fn answering_nothing_leaves_the_alias_with_no_data() {
    let topology = topology_with_policy("none");
    let state = config_state(&topology);
    let snap = Snapshot::render(
        1,
        topology,
        &state,
        &web_v1_down(),
        &LastGood::new(),
        Arc::default(),
    );
    for rtype in [RecordType::A, RecordType::AAAA, RecordType::SRV] {
        assert_nodata(&snap, APP, rtype);
    }
    assert_nxdomain(&snap, "_http._tcp.app.example.", RecordType::SRV);
}

#[test]
fn last_known_good_keeps_only_endpoints_of_the_services_answering_now() {
    // [fd00::2]:8080 is web-v2's, which app.example. does not link.
    let view = app(
        topology(),
        None,
        &web_v1_down(),
        &last_good(&["[fd00::2]:8080", "10.0.0.1:8080"]),
    );
    assert_eq!(view.endpoints, endpoints(&["10.0.0.1:8080"]));
    assert_eq!(view.fallback, Some(IfNoneHealthy::LastKnownGood));
}

#[test]
fn last_known_good_answers_every_endpoint_when_it_has_none_of_them() {
    let other_services = last_good(&["[fd00::2]:8080", "10.0.0.2:9090"]);
    for good in [LastGood::new(), last_good(&[]), other_services] {
        let view = app(topology(), None, &web_v1_down(), &good);
        assert_eq!(
            view.endpoints,
            endpoints(&["10.0.0.1:8080", "10.0.0.2:8080"]),
            "{good:?}"
        );
        assert_eq!(view.fallback, Some(IfNoneHealthy::LastKnownGood));
    }
}

#[test]
fn an_alias_without_endpoints_needs_no_policy() {
    let topology = topology();
    let state = config_state(&topology);
    let snap = Snapshot::render(
        1,
        topology,
        &state,
        &web_v1_down(),
        &LastGood::new(),
        Arc::default(),
    );
    let idle = &snap.aliases[&alias("idle.internal.")];
    assert!(idle.endpoints.is_empty());
    assert_eq!(idle.fallback, None);
}

#[test]
fn a_promotion_answers_a_then_both_then_b() {
    let a = ["10.0.0.1:8080", "10.0.0.2:8080"];
    let both = [
        "10.0.0.1:8080",
        "10.0.0.2:8080",
        "10.0.0.2:9090",
        "[fd00::2]:8080",
    ];
    let b = ["10.0.0.2:8080", "10.0.0.2:9090", "[fd00::2]:8080"];
    let cases: [(&str, &[&str], &[&str]); 3] = [
        ("warming", &["web-v1"], &a),
        ("mixed", &["web-v1", "web-v2"], &both),
        ("draining", &["web-v2"], &b),
    ];
    for (phase, services, want) in cases {
        let view = app(
            topology(),
            Some(promoting(phase)),
            &HealthMap::new(),
            &LastGood::new(),
        );
        let services: Vec<ServiceName> = services.iter().map(|s| service(s)).collect();
        assert_eq!(view.answering, services, "{phase}");
        assert_eq!(view.endpoints, endpoints(want), "{phase}");
        assert_eq!(view.state.targets, [service("web-v1")], "{phase}");
    }
}

#[test]
fn while_mixed_the_health_filter_applies_to_both_versions() {
    let health = health(&[
        ("web-v1", "10.0.0.1:8080", Health::Unhealthy),
        ("web-v2", "[fd00::2]:8080", Health::Unhealthy),
    ]);
    let view = app(
        topology(),
        Some(promoting("mixed")),
        &health,
        &LastGood::new(),
    );
    assert_eq!(
        view.endpoints,
        endpoints(&["10.0.0.2:8080", "10.0.0.2:9090"])
    );
}

#[test]
fn while_draining_last_known_good_does_not_bring_back_the_old_version() {
    let health = health(&[
        ("web-v2", "10.0.0.2:8080", Health::Unhealthy),
        ("web-v2", "10.0.0.2:9090", Health::Unhealthy),
        ("web-v2", "[fd00::2]:8080", Health::Unhealthy),
    ]);
    // The last good set is web-v1's only endpoint that web-v2 does not share.
    let view = app(
        topology(),
        Some(promoting("draining")),
        &health,
        &last_good(&["10.0.0.1:8080"]),
    );
    assert_eq!(
        view.endpoints,
        endpoints(&["10.0.0.2:8080", "10.0.0.2:9090", "[fd00::2]:8080"])
    );
    assert_eq!(view.fallback, Some(IfNoneHealthy::LastKnownGood));
}

#[test]
fn a_draining_alias_names_the_old_members_that_no_answering_service_has() {
    let none = health(&[]);
    for phase in [None, Some(promoting("warming")), Some(promoting("mixed"))] {
        let view = app(topology(), phase.clone(), &none, &LastGood::new());
        assert!(view.draining.is_empty(), "{phase:?}: {:?}", view.draining);
    }
    let view = app(
        topology(),
        Some(promoting("draining")),
        &none,
        &LastGood::new(),
    );
    // 10.0.0.2:8080 is web-v2's too, so it goes on answering instead of draining.
    assert_eq!(view.draining, endpoints(&["10.0.0.1:8080"]));
    assert_eq!(view.answering, [service("web-v2")]);
}

mod split;
