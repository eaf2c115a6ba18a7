//! The digest is the same for the same definitions, whatever the order they were written in
//! or where the files are, and changes with anything that changes an answer.

use super::definitions_hash;
use crate::testkit::{BASE, ConfigDir, ZONE, alias, config, service};

/// The digest of `text` in a fresh directory whose `internal.zone` is `zone`.
fn hash(text: &str, zone: &str) -> String {
    let dir = ConfigDir::new(&[("internal.zone", zone)]);
    definitions_hash(&dir.base(text))
}

#[test]
fn the_same_definitions_hash_the_same_wherever_and_in_whatever_order_they_are_written() {
    let first = hash(BASE, ZONE);
    assert_eq!(first.len(), 64, "{first}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    // Another directory, another load: the same digest.
    assert_eq!(hash(BASE, ZONE), first);
    // The same services and aliases in another order.
    let listen = r#"["127.0.0.1:5353"]"#;
    let reordered = config(
        listen,
        "",
        &format!(
            "{}{}{}",
            alias("web", &["web-v1"]),
            service("web-v2", &["10.0.0.2:8080"]),
            service("web-v1", &["10.0.0.1:8080"]),
        ),
    );
    assert_eq!(hash(&reordered, ZONE), first);
    // The zone file's records in another order.
    let shuffled = "\
$TTL 300
ns1 IN A   127.0.0.1
@   IN SOA ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
    IN NS  ns1.internal.
";
    assert_eq!(hash(BASE, shuffled), first);
}

#[test]
fn a_changed_alias_service_zone_record_or_ttl_changes_the_digest() {
    let first = hash(BASE, ZONE);
    let changed = [
        (
            "an alias's target",
            BASE.replace(
                "name = \"web\"\ntargets = [\"web-v1\"]",
                "name = \"web\"\ntargets = [\"web-v2\"]",
            ),
            ZONE.to_owned(),
        ),
        (
            "a service's endpoint",
            BASE.replace("10.0.0.2:8080", "10.0.0.3:8080"),
            ZONE.to_owned(),
        ),
        (
            "a static record",
            BASE.to_owned(),
            ZONE.replace("ns1 IN A   127.0.0.1", "ns1 IN A   127.0.0.2"),
        ),
        (
            "a static record added",
            BASE.to_owned(),
            format!("{ZONE}db  IN A   10.9.0.1\n"),
        ),
        (
            "the zone's serial",
            BASE.to_owned(),
            ZONE.replace("( 7 3600", "( 8 3600"),
        ),
        (
            "the alias TTL",
            BASE.replace("[dns]\n", "[dns]\nalias_ttl = 11\n"),
            ZONE.to_owned(),
        ),
        (
            "the negative TTL",
            BASE.replace("[dns]\n", "[dns]\nnegative_ttl = 11\n"),
            ZONE.to_owned(),
        ),
        (
            "a service's check",
            BASE.replace(
                "endpoints = [\"10.0.0.2:8080\"]",
                "endpoints = [\"10.0.0.2:8080\"]\nhealth = { kind = \"none\" }",
            ),
            ZONE.to_owned(),
        ),
    ];
    for (what, text, zone) in changed {
        assert!(
            text != BASE || zone != ZONE,
            "{what}: the test changed nothing"
        );
        let digest = hash(&text, &zone);
        assert_ne!(digest, first, "{what} left the digest as it was");
    }
}
