use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};

use super::*;

fn step(weight: u8, hold: Option<u64>, pause: bool) -> Step {
    Step {
        weight,
        hold: hold.map(Duration::from_secs),
        pause,
    }
}

fn err(steps: &[Step]) -> String {
    check_steps(steps).unwrap_err()
}

// --- Steps: the CLI form ---

#[test]
fn parses_the_cli_form() {
    assert_eq!(
        parse_steps("10%:1m,50%:pause,100%").unwrap(),
        vec![
            step(10, Some(60), false),
            step(50, None, true),
            step(100, None, false)
        ]
    );
    // Spaces around the parts, a weight without `%`, a hold of two units.
    assert_eq!(
        parse_steps(" 5% : 90s , 20:1m 30s, 100% ").unwrap(),
        vec![
            step(5, Some(90), false),
            step(20, Some(90), false),
            step(100, None, false)
        ]
    );
    assert_eq!(parse_steps("100%").unwrap(), vec![step(100, None, false)]);
}

#[test]
fn the_cli_form_round_trips() {
    for text in [
        "10%:1m,50%:pause,100%",
        "1%:1s,2%:1h 30m,99%:1day,100%:pause",
        "100%",
    ] {
        let steps = parse_steps(text).unwrap();
        assert_eq!(format_steps(&steps), text);
        assert_eq!(parse_steps(&format_steps(&steps)).unwrap(), steps);
    }
}

#[test]
fn parse_errors_say_which_step_and_what_to_write() {
    let e = parse_steps("10%:1m,50%:soon,100%").unwrap_err();
    assert!(
        e.starts_with("step 2 (`50%:soon`): `soon` is not a duration"),
        "{e}"
    );
    assert!(e.contains("write `pause`"), "{e}");

    let e = parse_steps("10%,abc%,100%").unwrap_err();
    assert!(
        e.starts_with("step 2 (`abc%`): `abc%` is not a weight"),
        "{e}"
    );
    assert!(e.contains("from 1% to 100%"), "{e}");

    let e = parse_steps("10%,0%,100%").unwrap_err();
    assert!(e.starts_with("step 2 (`0%`)"), "{e}");
    let e = parse_steps("10%,101%").unwrap_err();
    assert!(e.starts_with("step 2 (`101%`)"), "{e}");
    let e = parse_steps("10%,,100%").unwrap_err();
    assert!(e.starts_with("step 2 (``)"), "{e}");

    // The list is checked as a whole too.
    let e = parse_steps("50%,10%,100%").unwrap_err();
    assert!(
        e.starts_with("step 2 (10%): the weight must be above"),
        "{e}"
    );
}

#[test]
fn an_unknown_name_lists_the_presets() {
    let e = parse_steps("canary").unwrap_err();
    assert_eq!(
        e,
        "`canary` is neither steps nor a preset; write steps like `10%:1m,50%:pause,100%` or \
         name a preset (canary10-5m, linear10-1m)"
    );
    assert!(
        parse_steps("")
            .unwrap_err()
            .contains("neither steps nor a preset")
    );
}

// --- Steps: presets ---

#[test]
fn presets_are_what_their_names_say() {
    assert_eq!(
        preset("canary10-5m").unwrap(),
        vec![step(10, Some(300), false), step(100, None, false)]
    );
    let linear = preset("linear10-1m").unwrap();
    assert_eq!(linear.len(), 10);
    for (i, s) in linear[..9].iter().enumerate() {
        assert_eq!(*s, step(10 * (i as u8 + 1), Some(60), false));
    }
    assert_eq!(linear[9], step(100, None, false));
    assert_eq!(preset("nope"), None);
    assert_eq!(parse_steps(" linear10-1m ").unwrap(), linear);
}

#[test]
fn every_listed_preset_exists_passes_the_checks_and_round_trips() {
    assert_eq!(PRESETS.len(), 2);
    for (name, description) in PRESETS {
        let steps = preset(name).unwrap_or_else(|| panic!("{name} is listed but unknown"));
        check_steps(&steps).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!description.is_empty());
        assert_eq!(parse_steps(&format_steps(&steps)).unwrap(), steps);
    }
}

// --- Steps: the rules ---

#[test]
fn steps_must_not_be_empty() {
    let e = err(&[]);
    assert!(e.starts_with("no steps; give at least one"), "{e}");
}

#[test]
fn at_most_twenty_steps() {
    let twenty: Vec<Step> = (1..=20).map(|i| step(i * 5, None, false)).collect();
    check_steps(&twenty).unwrap();
    let mut many: Vec<Step> = (1..=20).map(|i| step(i, None, false)).collect();
    many.push(step(100, None, false));
    assert_eq!(
        err(&many),
        "21 steps; at most 20 are allowed, merge some of them"
    );
}

#[test]
fn weights_are_from_1_to_100() {
    assert_eq!(
        err(&[step(0, None, false), step(100, None, false)]),
        "step 1 (0%): the weight must be from 1% to 100% of the clients"
    );
    let e = err(&[step(10, None, false), step(101, None, false)]);
    assert!(
        e.starts_with("step 2 (101%): the weight must be from 1% to 100%"),
        "{e}"
    );
}

#[test]
fn weights_strictly_increase() {
    assert_eq!(
        err(&[
            step(50, None, false),
            step(50, None, false),
            step(100, None, false)
        ]),
        "step 2 (50%): the weight must be above the previous step's 50%; list the weights in \
         increasing order, like `10%:1m,50%:pause,100%`"
    );
    let e = err(&[
        step(50, None, false),
        step(20, None, false),
        step(100, None, false),
    ]);
    assert!(e.starts_with("step 2 (20%): the weight must be above the previous step's 50%"));
}

#[test]
fn the_last_step_is_100() {
    assert_eq!(
        err(&[step(10, Some(60), false), step(50, None, true)]),
        "step 2 (50%): the last step must be 100%, so the promotion ends with every client on \
         the new version; add `100%` at the end"
    );
}

#[test]
fn a_step_holds_or_pauses_not_both() {
    assert_eq!(
        err(&[step(10, Some(60), true), step(100, None, false)]),
        "step 1 (10%): a step either holds for a time or pauses for a confirm, not both; drop \
         one of them"
    );
}

#[test]
fn a_hold_is_from_one_second_to_a_day() {
    let with_hold = |hold| {
        check_steps(&[
            Step {
                weight: 10,
                hold: Some(hold),
                pause: false,
            },
            step(100, None, false),
        ])
    };
    with_hold(Duration::from_secs(1)).unwrap();
    with_hold(Duration::from_secs(24 * 3600)).unwrap();
    assert_eq!(
        with_hold(Duration::from_millis(999)).unwrap_err(),
        "step 1 (10%): the hold 999ms is out of range; hold from 1s to 1day, or pause for a \
         confirm instead"
    );
    let e = with_hold(Duration::from_secs(24 * 3600 + 1)).unwrap_err();
    assert!(
        e.starts_with("step 1 (10%): the hold 1day 1s is out of range"),
        "{e}"
    );
    let e = parse_steps("10%:0s,100%").unwrap_err();
    assert!(
        e.starts_with("step 1 (10%): the hold 0s is out of range"),
        "{e}"
    );
}

// --- Steps: the API form ---

#[test]
fn the_api_form_reads_and_writes_holds_as_text() {
    let json = r#"[{"weight":10,"hold":"1m"},{"weight":50,"pause":true},{"weight":100}]"#;
    let steps: Vec<Step> = serde_json::from_str(json).unwrap();
    assert_eq!(steps, parse_steps("10%:1m,50%:pause,100%").unwrap());
    assert_eq!(serde_json::to_string(&steps).unwrap(), json);

    let linear = preset("linear10-1m").unwrap();
    let back: Vec<Step> = serde_json::from_str(&serde_json::to_string(&linear).unwrap()).unwrap();
    assert_eq!(back, linear);

    // `null` and `false` are the same as leaving the field out.
    let s: Step = serde_json::from_str(r#"{"weight":100,"hold":null,"pause":false}"#).unwrap();
    assert_eq!(s, step(100, None, false));
}

#[test]
fn the_api_form_rejects_what_it_cannot_read() {
    let e = serde_json::from_str::<Step>(r#"{"weight":10,"hold":"soon"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hold: `soon` is not a duration"), "{e}");
    let e = serde_json::from_str::<Step>(r#"{"weight":10,"holds":"1m"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `holds`"), "{e}");
    assert!(serde_json::from_str::<Step>(r#"{"weight":300}"#).is_err());
    assert!(serde_json::from_str::<Step>(r#"{"hold":"1m"}"#).is_err());
}

fn any_step() -> impl Strategy<Value = Step> {
    (1u8..=100, prop::option::of(1u64..=24 * 3600), any::<bool>()).prop_map(
        |(weight, hold, pause)| Step {
            weight,
            hold: hold.map(Duration::from_secs),
            pause: pause && hold.is_none(),
        },
    )
}

proptest! {
    /// Whatever steps pass the checks, the CLI form and the API form give them back unchanged.
    #[test]
    fn checked_steps_round_trip_through_both_forms(
        mut steps in prop::collection::vec(any_step(), 1..=MAX_STEPS),
    ) {
        steps.sort_by_key(|s| s.weight);
        steps.dedup_by_key(|s| s.weight);
        let last = steps.len() - 1;
        steps[last].weight = 100;
        steps.dedup_by_key(|s| s.weight);
        prop_assume!(check_steps(&steps).is_ok());
        prop_assert_eq!(&parse_steps(&format_steps(&steps)).unwrap(), &steps);
        let json = serde_json::to_string(&steps).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Vec<Step>>(&json).unwrap(), &steps);
    }

    /// Any text either parses to steps that pass the checks or is refused with a message.
    #[test]
    fn parse_steps_never_returns_unchecked_steps(text in "[0-9%:,a-z ]{0,30}") {
        match parse_steps(&text) {
            Ok(steps) => prop_assert!(check_steps(&steps).is_ok()),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }
}

// --- Assignment ---

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Random addresses from a fixed seed, half IPv4 and half IPv6, so the share tests are
/// reproducible.
fn addresses(n: usize, seed: u8) -> Vec<IpAddr> {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(rng.next_u32()))
            } else {
                let mut octets = [0u8; 16];
                rng.fill_bytes(&mut octets);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        })
        .collect()
}

fn share_on_new(salt: &[u8], clients: &[IpAddr], weight: u8) -> f64 {
    let on = clients.iter().filter(|&&c| on_new(salt, c, weight)).count();
    100.0 * on as f64 / clients.len() as f64
}

/// Pinned so that any change of the hash (tag, layout, byte order, normalization) is caught: it
/// would move clients between the versions of every alias in a stepped promotion across an
/// upgrade, and make nodes of different versions disagree.
#[test]
fn buckets_are_pinned() {
    // Computed once outside Rust, with Python's hashlib:
    // int.from_bytes(sha256(tag + len(salt).to_bytes(8, "big") + salt + packed)[:8], "big") % 10000
    let pinned: [(&[u8], IpAddr, u16); 7] = [
        (b"", v4(127, 0, 0, 1), 4399),
        (b"web", v4(127, 0, 0, 1), 2565),
        (b"web", v4(192, 0, 2, 1), 7592),
        (b"web", "::ffff:192.0.2.1".parse().unwrap(), 7592),
        (b"api", v4(192, 0, 2, 1), 131),
        (b"web", "2001:db8::1".parse().unwrap(), 1299),
        (&[0, 1, 2, 3, 4, 5, 6, 7], "::1".parse().unwrap(), 9495),
    ];
    for (salt, client, expected) in pinned {
        assert_eq!(
            bucket(salt, client),
            expected,
            "salt {salt:?}, client {client}"
        );
    }
}

#[test]
fn an_ipv4_mapped_address_is_its_ipv4_address() {
    for client in addresses(200, 1).into_iter().filter(IpAddr::is_ipv4) {
        let IpAddr::V4(v4) = client else {
            unreachable!()
        };
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(bucket(b"web", mapped), bucket(b"web", client), "{client}");
    }
    // A compatible (not mapped) address is a different client.
    let compatible = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_compatible());
    assert_ne!(bucket(b"web", compatible), bucket(b"web", v4(192, 0, 2, 1)));
}

#[test]
fn shares_are_close_to_the_weight() {
    // Random addresses, and the adjacent ones of the issue's DNS test (127.x.y.z).
    let random = addresses(10_000, 7);
    let adjacent: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x7f00_0001 + i)))
        .collect();
    for clients in [&random, &adjacent] {
        for salt in [&b"web"[..], b"api", b""] {
            for weight in [10u8, 50] {
                let share = share_on_new(salt, clients, weight);
                assert!(
                    (share - f64::from(weight)).abs() <= 2.0,
                    "salt {salt:?}: {share:.2}% on new at weight {weight}%"
                );
            }
        }
    }
}

#[test]
fn different_salts_pick_different_clients() {
    let clients = addresses(10_000, 9);
    let salts: [&[u8]; 4] = [b"web", b"web2", b"api", b"\0web"];
    for (i, a) in salts.iter().enumerate() {
        for b in &salts[i + 1..] {
            // At 50% two independent assignments agree on about half of the clients; the same
            // assignment would agree on all of them.
            let agree = clients
                .iter()
                .filter(|&&c| on_new(a, c, 50) == on_new(b, c, 50))
                .count();
            let share = 100.0 * agree as f64 / clients.len() as f64;
            assert!(
                (share - 50.0).abs() <= 3.0,
                "salts {a:?} and {b:?} agree on {share:.2}% of clients"
            );
            // At 10% the overlap of the two new sides is about 10% of 10%.
            let both = clients
                .iter()
                .filter(|&&c| on_new(a, c, 10) && on_new(b, c, 10))
                .count();
            let overlap = 100.0 * both as f64 / clients.len() as f64;
            assert!(
                (overlap - 1.0).abs() <= 1.0,
                "salts {a:?} and {b:?} both put {overlap:.2}% on new at 10%"
            );
        }
    }
}

fn any_client() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

proptest! {
    #[test]
    fn buckets_are_below_10000(salt in prop::collection::vec(any::<u8>(), 0..32), client in any_client()) {
        prop_assert!(bucket(&salt, client) < BUCKETS);
    }

    #[test]
    fn raising_the_weight_never_moves_a_client_back_to_old(
        salt in prop::collection::vec(any::<u8>(), 0..32),
        client in any_client(),
        low in 0u8..=100,
        high in 0u8..=100,
    ) {
        let (low, high) = (low.min(high), low.max(high));
        if on_new(&salt, client, low) {
            prop_assert!(on_new(&salt, client, high));
        }
    }

    #[test]
    fn weight_0_is_nobody_and_100_is_everybody(
        salt in prop::collection::vec(any::<u8>(), 0..32),
        client in any_client(),
    ) {
        prop_assert!(!on_new(&salt, client, 0));
        prop_assert!(on_new(&salt, client, 100));
    }

    #[test]
    fn a_client_is_on_new_exactly_from_the_weight_its_bucket_reaches(
        salt in prop::collection::vec(any::<u8>(), 0..32),
        client in any_client(),
    ) {
        let b = bucket(&salt, client);
        let first = (0u8..=100).find(|&w| on_new(&salt, client, w)).unwrap();
        prop_assert_eq!(u16::from(first), b / 100 + 1);
    }
}
