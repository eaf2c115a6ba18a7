use super::*;

fn origin() -> Name {
    Name::from_ascii("internal.").unwrap()
}

#[test]
fn alias_names_resolve_relative_to_the_origin() {
    let rel = AliasName::resolve("web", &origin()).unwrap();
    let abs = AliasName::resolve("web.internal.", &origin()).unwrap();
    let typed = AliasName::resolve("Web.Internal", &origin()).unwrap();
    assert_eq!(rel, abs);
    assert_eq!(rel, typed);
    assert_eq!(rel.to_string(), "web.internal");
    assert_eq!(rel.name().to_ascii(), "web.internal.");
}

#[test]
fn alias_names_reject_bad_input() {
    assert!(AliasName::resolve("", &origin()).is_err());
    assert!(AliasName::resolve("a..b", &origin()).is_err());
    let err = AliasName::resolve("*.web", &origin()).unwrap_err();
    assert!(err.0.contains("wildcard"), "{err}");
}

#[test]
fn service_names_are_label_shaped() {
    assert!("web-v1".parse::<ServiceName>().is_ok());
    assert!("db_2".parse::<ServiceName>().is_ok());
    for bad in ["", "Web", "-web", "web.v1", "web v1", &"a".repeat(64)] {
        let err = bad.parse::<ServiceName>().unwrap_err();
        assert!(err.0.contains("not a valid service name"), "{bad}: {err}");
    }
}

#[test]
fn endpoints_need_a_usable_ip_and_port() {
    assert_eq!(
        "10.0.0.5:8080".parse::<Endpoint>().unwrap().to_string(),
        "10.0.0.5:8080"
    );
    assert!("[fd00::5]:8080".parse::<Endpoint>().is_ok());
    for bad in [
        "10.0.0.5",
        "10.0.0.5:0",
        "0.0.0.0:80",
        "host:80",
        "10.0.0.300:80",
    ] {
        assert!(bad.parse::<Endpoint>().is_err(), "{bad} was accepted");
    }
}
