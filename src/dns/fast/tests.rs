//! The fast path against the full path: for every packet the fast path answers, hickory's
//! `Catalog` (what answered before there was a fast path) must give the same answer: the same
//! header flags and response code, the question with its case, the same records in each
//! section, the same EDNS. Packets are generated (proptest) around the names and types that
//! matter, with random case, flags, EDNS and damage.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::controller::first_render;
use crate::dns::agree::Fixture;
use crate::registry::Base;
use crate::state::State;

const NAMES: &[&str] = &[
    "web.internal.",
    "_http._tcp.web.internal.",
    "_tcp.web.internal.",
    "10-0-0-1.web.internal.",
    "fd00--2.web.internal.",
    "nope.web.internal.",
    "idle.internal.",
    "api.svc.internal.",
    "svc.internal.",
    "_grpc._tcp.api.svc.internal.",
    "big.internal.",
    "_http._tcp.big.internal.",
    "db.internal.",
    "mail.internal.",
    "www.internal.",
    "to-web.internal.",
    "rack1.internal.",
    "host.rack1.internal.",
    "ns1.internal.",
    "internal.",
    "missing.internal.",
    "a.b.missing.internal.",
    "example.com.",
    "canary.internal.",
    "_http._tcp.canary.internal.",
    "10-0-0-1.canary.internal.",
    "10-0-0-3.canary.internal.",
    "fd00--3.canary.internal.",
];

/// A client address for the tests that are not about the split.
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

const TYPES: &[u16] = &[1, 28, 33, 16, 15, 5, 2, 6, 255, 12, 99, 999, 252];

/// Flips the case of letters where `mask` has bits set.
fn recase(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Packet {
    name: usize,
    case: u64,
    qtype: usize,
    id: u16,
    rd: bool,
    cd: bool,
    ad: bool,
    /// None, or (size, dnssec_ok, with an option).
    edns: Option<(u16, bool, bool)>,
    trailing: bool,
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        0..NAMES.len(),
        any::<u64>(),
        0..TYPES.len(),
        any::<u16>(),
        any::<(bool, bool, bool)>(),
        prop_oneof![
            Just(None),
            (
                prop_oneof![Just(0u16), Just(512), Just(1232), Just(4096), 0..600u16],
                any::<bool>(),
                prop::bool::weighted(0.2)
            )
                .prop_map(Some)
        ],
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(name, case, qtype, id, (rd, cd, ad), edns, trailing)| Packet {
                name,
                case,
                qtype,
                id,
                rd,
                cd,
                ad,
                edns,
                trailing,
            },
        )
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = p.id;
    m.metadata.recursion_desired = p.rd;
    m.metadata.checking_disabled = p.cd;
    m.metadata.authentic_data = p.ad;
    let name = Name::from_ascii(recase(NAMES[p.name], p.case)).unwrap();
    m.add_query(Query::query(name, RecordType::from(TYPES[p.qtype])));
    if let Some((size, dnssec_ok, option)) = p.edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_dnssec_ok(dnssec_ok);
        if option {
            e.options_mut()
                .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                    10,
                    vec![1, 2, 3, 4, 5, 6, 7, 8],
                ));
        }
        m.set_edns(e);
    }
    let mut bytes = m.to_vec().unwrap();
    if p.trailing {
        bytes.push(0);
    }
    bytes
}

/// Both paths on one packet: `true` when the fast path answered (and agreed).
fn check(fixture: &Fixture, bytes: &[u8]) -> Result<bool, TestCaseError> {
    fixture.check(bytes).map_err(TestCaseError::fail)
}

/// A client's address: IPv4 (on either side of the `canary` split), IPv6, or IPv4 as a
/// dual-stack socket reports it (mapped into IPv6).
fn client() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::from((std::net::Ipv6Addr::from(ip), port))),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
            SocketAddr::from((std::net::Ipv4Addr::from(ip).to_ipv6_mapped(), port))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_path_answers_as_the_full_path_does(packets in prop::collection::vec((packet(), client()), 1..4)) {
        thread_local! {
            static SETUP: Fixture = Fixture::new(first);
        }
        SETUP.with(|fixture| {
            for (p, src) in &packets {
                fixture.check_from(&encode(p), *src).map_err(TestCaseError::fail)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn damaged_packets_are_declined_or_answered_alike(bytes in prop::collection::vec(any::<u8>(), 0..80), base in packet(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
        thread_local! {
            static SETUP: Fixture = Fixture::new(first);
        }
        SETUP.with(|fixture| {
            // Random bytes, and a good query cut short or with one byte changed.
            check(fixture, &bytes)?;
            let good = encode(&base);
            check(fixture, &good[..cut % (good.len() + 1)])?;
            let mut flipped = good.clone();
            let at = flip.0 % flipped.len();
            flipped[at] ^= flip.1;
            check(fixture, &flipped)?;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// The common queries are all the fast path's: the property test above would prove nothing if
/// it declined them.
#[test]
fn plain_queries_take_the_fast_path() {
    let snapshots = Fixture::new(first).snapshots;
    let cases: &[(&str, u16, Option<u16>)] = &[
        ("web.internal.", 1, None),
        ("WeB.InTeRnAl.", 1, Some(1232)),
        ("web.internal.", 28, None),
        ("_http._tcp.web.internal.", 33, Some(4096)),
        ("10-0-0-1.web.internal.", 1, None),
        ("db.internal.", 16, None),
        ("missing.internal.", 1, None),
        ("web.internal.", 16, None),
        ("_tcp.web.internal.", 1, None),
        ("idle.internal.", 1, None),
    ];
    for (name, qtype, edns) in cases {
        let p = Packet {
            name: 0,
            case: 0,
            qtype: 0,
            id: 7,
            rd: true,
            cd: false,
            ad: false,
            edns: edns.map(|s| (s, false, false)),
            trailing: false,
        };
        let mut m = Message::from_vec(&encode(&p)).unwrap();
        m.queries.clear();
        m.add_query(Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::from(*qtype),
        ));
        let mut out = Vec::new();
        assert_eq!(
            answer(&snapshots.load(), &m.to_vec().unwrap(), LOCAL, &mut out),
            Fast::Answered,
            "{name} {qtype}"
        );
    }
}

/// An answer too big for 512 bytes goes to the full path, which truncates it.
#[test]
fn an_answer_too_big_for_the_buffer_is_declined() {
    let snapshots = Fixture::new(first).snapshots;
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii("big.internal.").unwrap(),
        RecordType::A,
    ));
    let mut out = Vec::new();
    assert_eq!(
        answer(&snapshots.load(), &m.to_vec().unwrap(), LOCAL, &mut out),
        Fast::Declined
    );
    let mut e = Edns::new();
    e.set_max_payload(4096);
    m.set_edns(e);
    assert_eq!(
        answer(&snapshots.load(), &m.to_vec().unwrap(), LOCAL, &mut out),
        Fast::Answered
    );
    let response = Message::from_vec(&out).unwrap();
    assert_eq!(response.answers.len(), 60);
}

/// The fixture's first state and snapshot, as the writer renders them at start.
fn first(config: &Config) -> (State, Snapshot) {
    first_render(&Base::from_config(config), None, 1)
}

/// The alias in a weighted step answers each client its side, by the bucket of its address,
/// on both paths (UDP's fast path and hickory's, which TCP uses too); a client mapped into
/// IPv6 gets the side of its IPv4 address.
#[test]
fn a_split_alias_answers_each_client_its_side_on_both_paths() {
    let fixture = Fixture::new(first);
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii("canary.internal.").unwrap(),
        RecordType::A,
    ));
    let packet = m.to_vec().unwrap();
    let old = ["10.0.0.1", "10.0.0.2"];
    let new = ["10.0.0.3", "10.0.0.4"];
    let mut on_new = 0;
    for i in 0..400u32 {
        let v4 = std::net::Ipv4Addr::from(0x7f00_0000 | (i * 7919));
        for ip in [IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped())] {
            let src = SocketAddr::new(ip, 40_000);
            assert_eq!(fixture.check_from(&packet, src), Ok(true), "{src}");
            let mut out = Vec::new();
            answer(&fixture.snapshots.load(), &packet, ip, &mut out);
            let got: Vec<String> = Message::from_vec(&out)
                .unwrap()
                .answers
                .iter()
                .map(|r| r.data.to_string())
                .collect();
            let expect_new = crate::steps::on_new(b"agree", IpAddr::V4(v4), 50);
            let want = if expect_new { new } else { old };
            assert_eq!(got, want, "{src}");
            on_new += usize::from(expect_new && ip.is_ipv4());
        }
    }
    // Both sides are exercised (a fair split of 400 is nowhere near either end).
    assert!(
        (100..300).contains(&on_new),
        "{on_new} of 400 on the new side"
    );
}
