use super::*;

fn origin() -> Name {
    Name::from_ascii("internal.").unwrap()
}

const GOOD: &str = "\
$TTL 300
@   IN SOA ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
    IN NS  ns1.internal.
ns1 IN A   127.0.0.1
db  IN A   10.0.0.9
www IN CNAME db
";

fn parse(text: &str) -> Result<StaticZone, ZoneError> {
    StaticZone::parse(text, Path::new("zones/test.zone"), &origin())
}

#[test]
fn a_good_zone_loads_with_its_serial_and_names() {
    let zone = parse(GOOD).unwrap();
    assert_eq!(zone.serial, 7);
    let names: Vec<String> = zone.names.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        names,
        // DNS order: the apex sorts first.
        [
            "internal.",
            "db.internal.",
            "ns1.internal.",
            "www.internal."
        ]
    );
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let text = GOOD.replace("db  IN A   10.0.0.9", "db  IN A   10.0.0.999");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("zones/test.zone:5: "), "{err}");
}

#[test]
fn an_unknown_type_names_its_line() {
    let text = format!("{GOOD}foo IN BOGUS 1\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("zones/test.zone:7: "), "{err}");
}

#[test]
fn semantic_errors_say_what_is_wrong() {
    let cases = [
        ("sub IN NS ns.elsewhere.\n", "delegations below the apex"),
        ("other.example. IN A 10.0.0.1\n", "outside the zone"),
        ("*.wild IN A 10.0.0.1\n", "wildcard"),
        ("www IN A 10.0.0.1\n", "CNAME must stand alone"),
        ("a IN CNAME b\nb IN CNAME a\n", "loops"),
        ("self IN CNAME self\n", "loops"),
    ];
    for (extra, want) in cases {
        let err = parse(&format!("{GOOD}{extra}")).unwrap_err().to_string();
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    let no_soa = "$TTL 300\n@ IN NS ns1.internal.\nns1 IN A 127.0.0.1\n";
    assert!(parse(no_soa).unwrap_err().to_string().contains("no SOA"));
    let no_ns = "$TTL 300\n@ IN SOA ns1 h ( 1 1 1 1 1 )\n";
    assert!(parse(no_ns).unwrap_err().to_string().contains("no NS"));
}

/// `$INCLUDE` of a device or a huge file would read forever; a self-include would loop. Found
/// while writing the `zonefile` fuzz target: `$INCLUDE /dev/zero` would read until memory ran out.
#[test]
fn includes_must_be_regular_files_that_do_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("top.zone");
    let err = StaticZone::parse(&format!("{GOOD}$INCLUDE /dev/zero\n"), &top, &origin())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("$INCLUDE /dev/zero: `/dev/zero` is not a regular file"),
        "{err}"
    );
    assert!(err.starts_with(&top.display().to_string()), "{err}");

    std::fs::write(dir.path().join("loop.zone"), "$INCLUDE loop.zone\n").unwrap();
    let err = StaticZone::parse(&format!("{GOOD}$INCLUDE \"loop.zone\"\n"), &top, &origin())
        .unwrap_err()
        .to_string();
    assert!(err.contains("includes itself"), "{err}");

    // A real include still works, relative to the including file.
    std::fs::write(dir.path().join("more.zone"), "extra IN A 10.0.0.77\n").unwrap();
    let zone = StaticZone::parse(&format!("{GOOD}$INCLUDE more.zone\n"), &top, &origin()).unwrap();
    assert!(
        zone.names
            .iter()
            .any(|n| n.to_string() == "extra.internal.")
    );

    // The file named in the config is checked before it is read.
    let err = StaticZone::load(Path::new("/dev/zero"), &origin())
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a regular file"), "{err}");
}
