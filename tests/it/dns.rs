//! DNS behaviour through real sockets: answers, negative answers, refusal, truncation, relinks.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::{
    BIG_ENDPOINTS, Fixture, Transport, addresses, dig, exchange, exchange_raw, query,
    query_message, soa_serial,
};

#[tokio::test]
async fn alias_answers_a_aaaa_and_srv_over_udp_and_tcp() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    for transport in [Transport::Udp, Transport::Tcp] {
        let a = query(daemon.dns, "web.internal.", RecordType::A, transport).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative, "answers are authoritative");
        assert_eq!(addresses(&a), ["127.0.0.11", "127.0.0.12"], "{transport:?}");
        assert!(
            a.answers.iter().all(|r| r.ttl == 5),
            "alias TTL is alias_ttl"
        );

        let aaaa = query(daemon.dns, "api.internal.", RecordType::AAAA, transport).await;
        assert_eq!(addresses(&aaaa), ["fd00::1:11"]);
        let a_of_api = query(daemon.dns, "api.internal.", RecordType::A, transport).await;
        assert_eq!(addresses(&a_of_api), ["127.0.0.31"]);

        let srv = query(
            daemon.dns,
            "_grpc._tcp.api.internal.",
            RecordType::SRV,
            transport,
        )
        .await;
        let mut targets: Vec<(u16, String)> = srv
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.port, s.target.to_ascii())),
                _ => None,
            })
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            [
                (9000, "127-0-0-31.api.internal.".to_owned()),
                (9000, "fd00--1-11.api.internal.".to_owned())
            ]
        );
        // The addresses of the SRV targets ride along in the additional section.
        let mut extra: Vec<String> = srv.additionals.iter().map(|r| r.name.to_ascii()).collect();
        extra.sort();
        assert_eq!(
            extra,
            ["127-0-0-31.api.internal.", "fd00--1-11.api.internal."]
        );
        // And each target name resolves on its own.
        let host = query(
            daemon.dns,
            "fd00--1-11.api.internal.",
            RecordType::AAAA,
            transport,
        )
        .await;
        assert_eq!(addresses(&host), ["fd00::1:11"]);
    }
}

#[tokio::test]
async fn static_records_come_from_the_zone_file() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let dns = daemon.dns;
    let db = query(dns, "db.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(addresses(&db), ["10.9.0.1"]);
    assert_eq!(db.answers[0].ttl, 300);
    let db6 = query(dns, "DB.Internal.", RecordType::AAAA, Transport::Udp).await;
    assert_eq!(addresses(&db6), ["fd00::9:1"], "names are case-insensitive");

    let cache = query(dns, "cache.internal.", RecordType::A, Transport::Udp).await;
    assert!(
        matches!(cache.answers[0].data, RData::CNAME(_)),
        "{cache:?}"
    );
    assert_eq!(
        addresses(&cache),
        ["10.9.0.1"],
        "the CNAME is followed inside the zone"
    );

    let mx = query(dns, "mail.internal.", RecordType::MX, Transport::Udp).await;
    assert!(matches!(mx.answers[0].data, RData::MX(_)), "{mx:?}");
    let txt = query(dns, "internal.", RecordType::TXT, Transport::Udp).await;
    assert_eq!(txt.answers.len(), 1);
    let ns = query(dns, "internal.", RecordType::NS, Transport::Udp).await;
    assert!(matches!(ns.answers[0].data, RData::NS(_)), "{ns:?}");
    let soa = query(dns, "internal.", RecordType::SOA, Transport::Udp).await;
    assert!(matches!(soa.answers[0].data, RData::SOA(_)), "{soa:?}");
    assert!(
        soa.authorities
            .iter()
            .any(|r| matches!(r.data, RData::NS(_))),
        "an SOA answer carries the zone's NS records"
    );
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let cases = [
        ("nope.internal.", RecordType::A, ResponseCode::NXDomain),
        ("x.web.internal.", RecordType::A, ResponseCode::NXDomain),
        ("db.internal.", RecordType::SRV, ResponseCode::NoError),
        ("web.internal.", RecordType::MX, ResponseCode::NoError),
        // An empty non-terminal exists (RFC 8020): NODATA, not NXDOMAIN.
        ("_tcp.web.internal.", RecordType::SRV, ResponseCode::NoError),
    ];
    for (name, rtype, rcode) in cases {
        for transport in [Transport::Udp, Transport::Tcp] {
            let m = query(daemon.dns, name, rtype, transport).await;
            assert_eq!(m.metadata.response_code, rcode, "{name} {rtype}");
            assert!(m.answers.is_empty(), "{name} {rtype}: {:?}", m.answers);
            assert!(m.metadata.authoritative, "{name} {rtype}");
            let soa = m
                .authorities
                .iter()
                .find_map(|r| match &r.data {
                    RData::SOA(soa) => Some((r.ttl, soa.minimum)),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name} {rtype}: no SOA in {m:?}"));
            // negative_ttl = 7 in the fixture; the file says 300 for both.
            assert_eq!(soa, (7, 7), "{name} {rtype}");
        }
    }
}

#[tokio::test]
async fn names_outside_the_zone_are_refused() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    for name in ["example.com.", "internal.example.", "."] {
        let m = query(daemon.dns, name, RecordType::A, Transport::Udp).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(
            m.answers.is_empty() && !m.metadata.recursion_available,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let plain = query_message("big.internal.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let udp = exchange(daemon.dns, &plain, Transport::Udp).await;
    assert!(
        udp.metadata.truncation,
        "TC must be set when 512 bytes do not hold the answer"
    );
    assert!(udp.answers.len() < BIG_ENDPOINTS);
    let tcp = exchange(daemon.dns, &plain, Transport::Tcp).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), BIG_ENDPOINTS);

    // dig sees TC and retries the same query over TCP by itself.
    let out = dig(daemon.dns, &["+noedns", "big.internal", "A"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains(&format!("ANSWER: {BIG_ENDPOINTS},")), "{out}");
}

#[tokio::test]
async fn a_relink_is_visible_on_the_next_query_and_bumps_the_serial() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let client = daemon.client();
    let soa = |dns| async move {
        soa_serial(&query(dns, "internal.", RecordType::SOA, Transport::Udp).await)
    };
    let before = soa(daemon.dns).await;

    let steps: [(&[&str], &[&str]); 3] = [
        (
            &["web-v1", "web-v2"],
            &["127.0.0.11", "127.0.0.12", "127.0.0.21"],
        ),
        (&["web-v2"], &["127.0.0.21"]),
        (&["web-v1"], &["127.0.0.11", "127.0.0.12"]),
    ];
    let mut serial = before;
    for (targets, want) in steps {
        let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        let dto = client.link("web", &targets).await.expect("link");
        // No wait: the answer is published before the API acknowledges.
        let m = query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await;
        assert_eq!(addresses(&m), want, "after linking {targets:?}");
        let now = soa(daemon.dns).await;
        assert_eq!(now, serial + 1, "each relink bumps the serial by one");
        assert_eq!(dto.serial, now, "the API reports the serial DNS serves");
        serial = now;
    }

    // Linking what is already linked changes nothing, not even the serial.
    let same = client
        .link("web", &["web-v1".to_owned()])
        .await
        .expect("link");
    assert_eq!(soa(daemon.dns).await, serial);
    assert_eq!(same.revision, 4);

    // An alias whose services have no endpoints still exists: NODATA, not NXDOMAIN.
    client
        .link("web", &["empty".to_owned()])
        .await
        .expect("link");
    let m = query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn dig_resolves_the_alias_and_follows_a_relink() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let short = |args: &[&str]| {
        let mut lines: Vec<String> = dig(daemon.dns, args).lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        short(&["+short", "web.internal"]),
        ["127.0.0.11", "127.0.0.12"]
    );
    assert_eq!(
        short(&["+short", "+tcp", "web.internal"]),
        ["127.0.0.11", "127.0.0.12"]
    );
    let full = dig(daemon.dns, &["web.internal"]);
    assert!(
        full.contains("status: NOERROR") && full.contains(" aa "),
        "{full}"
    );

    daemon
        .client()
        .link("web", &["web-v2".to_owned()])
        .await
        .expect("link");
    assert_eq!(short(&["+short", "web.internal"]), ["127.0.0.21"]);
    assert_eq!(
        short(&["+short", "_http._tcp.web.internal", "SRV"]),
        ["0 1 8081 127-0-0-21.web.internal."]
    );
    let nx = dig(daemon.dns, &["nope.internal"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let refused = dig(daemon.dns, &["example.com"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_serving() {
    let fixture = Fixture::new();
    let daemon = fixture.start();

    // Garbage too short for a header: nothing sensible can be answered.
    let _ = exchange_raw(daemon.dns, &[0xde, 0xad, 0xbe], Transport::Udp).await;
    // A valid header that promises a question and then ends.
    let mut header_only = query_message("web.internal.", RecordType::A, None)
        .to_vec()
        .unwrap();
    header_only.truncate(12);
    if let Some(raw) = exchange_raw(daemon.dns, &header_only, Transport::Udp).await {
        let m = hickory_proto::op::Message::from_vec(&raw).expect("decodes");
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
    // Two questions in one query is not allowed.
    let mut two = query_message("web.internal.", RecordType::A, None);
    two.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("db.internal.").unwrap(),
        RecordType::A,
    ));
    let m = exchange(daemon.dns, &two.to_vec().unwrap(), Transport::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

    let ok = query(daemon.dns, "web.internal.", RecordType::A, Transport::Udp).await;
    assert_eq!(addresses(&ok), ["127.0.0.11", "127.0.0.12"]);
}

/// Many clients at once, so the kernel queues their queries and the server takes them in
/// batches: every client gets its own answer (its ID, its question's case), fast-path and
/// full-path queries mixed in one burst, and nothing answers the wrong socket.
#[tokio::test]
async fn a_burst_from_many_clients_gets_every_answer_to_its_own_client() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    const CLIENTS: usize = 300;
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        sockets.push(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    // Even clients ask the alias with a case of their own (fast path); odd ones ask the SOA
    // (full path, hickory).
    let questions: Vec<(u16, String, RecordType)> = (0..CLIENTS)
        .map(|i| {
            let name: String = "web.internal."
                .chars()
                .enumerate()
                .map(|(k, c)| {
                    if (i >> (k % 9)) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            if i % 2 == 0 {
                (i as u16 * 3 + 1, name, RecordType::A)
            } else {
                (i as u16 * 3 + 1, "Internal.".to_owned(), RecordType::SOA)
            }
        })
        .collect();
    for (socket, (id, name, rtype)) in sockets.iter().zip(&questions) {
        let mut m = query_message(name, *rtype, None);
        m.metadata.id = *id;
        socket
            .send_to(&m.to_vec().unwrap(), daemon.dns)
            .await
            .unwrap();
    }
    for (i, (socket, (id, name, rtype))) in sockets.iter().zip(&questions).enumerate() {
        let mut buf = vec![0u8; 4096];
        let (n, from) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            socket.recv_from(&mut buf),
        )
        .await
        .unwrap_or_else(|_| panic!("client {i} got no answer"))
        .unwrap();
        assert_eq!(from, daemon.dns);
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, *id, "client {i}");
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "client {i}"
        );
        assert_eq!(
            m.queries[0].name().to_ascii(),
            *name,
            "client {i}: case echoed"
        );
        assert_eq!(m.queries[0].query_type(), *rtype, "client {i}");
        match rtype {
            RecordType::A => assert_eq!(addresses(&m), ["127.0.0.11", "127.0.0.12"]),
            _ => assert!(soa_serial(&m) > 0, "client {i}: {m:?}"),
        }
    }
    // Exactly one answer per query.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for (i, socket) in sockets.iter().enumerate() {
        let mut buf = [0u8; 512];
        assert!(
            socket.try_recv_from(&mut buf).is_err(),
            "client {i} got a second datagram"
        );
    }
}

/// Zone transfers are refused to everyone (nothing configures secondaries), and aliasd never
/// recurses: `dig AXFR` and `dig IXFR` get no records, a name elsewhere gets REFUSED with no
/// recursion offered.
#[tokio::test]
async fn zone_transfers_are_refused_and_aliasd_is_not_a_resolver() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    for kind in ["AXFR", "IXFR=1"] {
        let out = dig(daemon.dns, &["internal.", kind]);
        assert!(
            out.contains("Transfer failed") || out.contains("REFUSED"),
            "{kind}: {out}"
        );
        assert!(!out.contains("127.0.0.11"), "{kind} leaked the zone: {out}");
    }
    let out = dig(daemon.dns, &["+recurse", "example.com", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(!out.contains(" ra"), "recursion offered: {out}");
}
