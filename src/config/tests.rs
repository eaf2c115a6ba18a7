use super::*;
use std::ops::RangeInclusive;

use crate::testkit::{self, ConfigDir};

/// The zone of most tests: `db` and `host.rack1` are static names an alias must not take.
const INTERNAL_ZONE: &str = "\
$TTL 300
@          IN SOA ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )
           IN NS  ns1.internal.
ns1        IN A   127.0.0.1
db         IN A   10.0.0.9
host.rack1 IN A   10.0.0.10
";

/// A small valid config; error tests change one thing in it.
const BASE: &str = testkit::BASE;

const TOKEN_SECRET: &str = "0123456789abcdef";

/// A temporary directory holding the zone files; the config "lives" in it as `aliasd.toml`.
struct Fixture {
    dir: ConfigDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: ConfigDir::new(&[
                ("internal.zone", INTERNAL_ZONE),
                ("example.zone", testkit::EXAMPLE_ZONE),
            ]),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path()
    }

    fn parse_with_env(
        &self,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::parse(text, &self.config_path(), env)
    }

    fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        self.dir.try_parse(text)
    }

    fn problems(&self, text: &str) -> Vec<String> {
        match self.parse(text) {
            Ok(_) => panic!("the config was accepted:\n{text}"),
            Err(e) => e.problems,
        }
    }

    /// Asserts that `text` is refused with exactly one problem, which starts with the config path
    /// and the `line:column` of the first occurrence of `at` (or just the path when `at` is
    /// `None`), and contains every one of `words`. Returns the problem.
    fn refused(&self, text: &str, at: Option<&str>, words: &[&str]) -> String {
        let problems = self.problems(text);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let problem = problems.into_iter().next().unwrap();
        let prefix = match at {
            Some(needle) => format!(
                "{}:{}: ",
                self.config_path().display(),
                position(text, needle)
            ),
            None => format!("{}: ", self.config_path().display()),
        };
        assert!(
            problem.starts_with(&prefix),
            "expected the prefix {prefix:?} in:\n{problem}"
        );
        for word in words {
            assert!(problem.contains(word), "expected {word:?} in:\n{problem}");
        }
        problem
    }
}

/// `line:column` (both from 1) of the first occurrence of `needle` in `text`; when `needle`
/// holds a `|`, of the place it marks (`"udp_sockets = |0"` is the `0`).
fn position(text: &str, needle: &str) -> String {
    let (lead, rest) = needle.split_once('|').unwrap_or(("", needle));
    let found = text
        .find(&format!("{lead}{rest}"))
        .unwrap_or_else(|| panic!("{needle:?} is not in the config"));
    let start = found + lead.len();
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = start - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{column}")
}

/// `BASE` with `old` replaced by `new`; `old` must be there.
fn base_with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old:?} is not in BASE");
    BASE.replacen(old, new, 1)
}

/// `BASE` with `[dns]` settings added.
fn base_with_dns(settings: &str) -> String {
    base_with("[dns]\n", &format!("[dns]\n{settings}\n"))
}

/// `BASE` with more text after it (more `[[service]]`, `[[alias]]` or `[[api.token]]` tables).
fn base_plus(extra: &str) -> String {
    format!("{BASE}\n{extra}\n")
}

fn token(name: &str, secret: &str) -> String {
    format!("[[api.token]]\nname = \"{name}\"\nsecret = \"{secret}\"\n")
}

fn alias(name: &str, targets: &str) -> String {
    format!("[[alias]]\nname = \"{name}\"\ntargets = {targets}\n")
}

fn alias_names(config: &Config) -> Vec<String> {
    config.aliases.keys().map(|a| a.name().to_ascii()).collect()
}

fn targets(config: &Config, alias: &str) -> Vec<String> {
    let origin = &config.zones[0].origin;
    let key = AliasName::resolve(alias, origin).unwrap();
    config.aliases[&key]
        .targets
        .iter()
        .map(|t| t.to_string())
        .collect()
}

// ---- the TOML itself ----

#[test]
fn an_unknown_top_level_key_is_refused_with_its_position() {
    let text = format!("bogus = 1\n{BASE}");
    Fixture::new().refused(
        &text,
        Some("bogus"),
        &["unknown key `bogus` at the top level", "`dns`", "`service`"],
    );
}

#[test]
fn an_unknown_key_inside_a_table_is_refused_with_its_position() {
    let fx = Fixture::new();
    let cases = [
        ("[dns]\n", "in [dns]", "`listen`"),
        ("[[service]]\n", "in [[service]]", "`endpoints`"),
        ("[[alias]]\n", "in [[alias]]", "`targets`"),
    ];
    for (table, place, expected_key) in cases {
        let text = base_with(table, &format!("{table}bogus = 1\n"));
        fx.refused(
            &text,
            Some("bogus"),
            &[&format!("unknown key `bogus` {place}"), expected_key],
        );
    }
}

#[test]
fn a_misspelt_key_is_refused_with_the_key_it_resembles() {
    let fx = Fixture::new();
    let cases = [
        (
            base_with_dns("alias_tll = 5"),
            "alias_tll",
            "`alias_tll` in [dns]; did you mean `alias_ttl`?",
        ),
        (
            base_with("[state]", "[State]"),
            "State",
            "`State` at the top level; did you mean `state`?",
        ),
        (
            base_with("name = \"web\"\n", "name = \"web\"\nport-name = \"grpc\"\n"),
            "port-name",
            "`port-name` in [[alias]]; did you mean `port_name`?",
        ),
    ];
    for (text, at, words) in cases {
        fx.refused(&text, Some(at), &[&format!("unknown key {words}")]);
    }
}

#[test]
fn services_written_as_a_table_name_the_key_and_how_to_write_it() {
    // `[[services]]` for every service, and a `[service.health]` after one of them: serde alone
    // fails at the second with "invalid type: map, expected a sequence".
    let fx = Fixture::new();
    let text = BASE.replace("[[service]]", "[[services]]") + "[service.health]\nkind = \"tcp\"\n";
    let problems = fx.problems(&text);
    let path = fx.config_path().display().to_string();
    assert_eq!(
        problems,
        [
            format!(
                "{path}:{}: unknown key `services` at the top level; did you mean `service`? (each one is written [[service]])",
                position(&text, "services")
            ),
            format!(
                "{path}:{}: `service` is a list of tables: write each one as [[service]] (a table such as [service.x] belongs after the [[service]] it is part of)",
                position(&text, "service.health")
            ),
        ]
    );
    // Without the table after it, the one problem is the key.
    let text = BASE.replace("[[service]]", "[[services]]");
    fx.refused(
        &text,
        Some("services"),
        &[
            "unknown key `services`",
            "did you mean `service`?",
            "[[service]]",
        ],
    );
}

#[test]
fn a_wrong_type_without_an_unknown_key_keeps_the_parsers_message() {
    let text = base_with(r#"listen = ["127.0.0.1:5353"]"#, "listen = 5");
    Fixture::new().refused(
        &text,
        Some("listen = |5"),
        &["invalid type: integer `5`, expected a sequence"],
    );
}

#[test]
fn a_toml_syntax_error_is_refused_with_its_position() {
    let text = base_with(r#"dir = "state""#, "dir = state");
    Fixture::new().refused(&text, Some("state\n"), &["string values must be quoted"]);
}

// ---- [dns] ----

#[test]
fn a_bad_dns_listen_address_is_refused() {
    let text = base_with(r#"["127.0.0.1:5353"]"#, r#"["localhost:53"]"#);
    Fixture::new().refused(
        &text,
        Some(r#""localhost:53""#),
        &["dns.listen", "`localhost:53`", "not a socket address"],
    );
}

#[test]
fn a_dns_listen_address_listed_twice_is_refused_at_the_second() {
    let text = base_with(
        r#"["127.0.0.1:5353"]"#,
        r#"["127.0.0.1:5353", "127.0.0.1:5353"]"#,
    );
    Fixture::new().refused(
        &text,
        Some(r#""127.0.0.1:5353"]"#),
        &["dns.listen", "`127.0.0.1:5353`", "listed twice"],
    );
}

#[test]
fn an_empty_dns_listen_is_refused() {
    let text = base_with(r#"["127.0.0.1:5353"]"#, "[]");
    Fixture::new().refused(&text, None, &["dns.listen", "at least one address"]);
}

#[test]
fn udp_sockets_out_of_range_are_refused() {
    let fx = Fixture::new();
    for n in ["0", "65"] {
        let text = base_with_dns(&format!("udp_sockets = {n}"));
        fx.refused(
            &text,
            Some(&format!("udp_sockets = |{n}")),
            &["dns.udp_sockets", "between 1 and 64"],
        );
    }
    for n in [1, 64] {
        let config = fx
            .parse(&base_with_dns(&format!("udp_sockets = {n}")))
            .unwrap();
        assert_eq!(config.dns.udp_sockets, n);
    }
}

#[test]
fn an_alias_ttl_that_is_not_a_duration_is_refused() {
    let text = base_with_dns(r#"alias_ttl = "five""#);
    Fixture::new().refused(
        &text,
        Some(r#""five""#),
        &["dns.alias_ttl", "`five` is not a duration"],
    );
}

#[test]
fn a_negative_alias_ttl_is_refused() {
    let text = base_with_dns("alias_ttl = -5");
    Fixture::new().refused(&text, Some("-5"), &["dns.alias_ttl", "negative"]);
}

#[test]
fn a_fractional_alias_ttl_is_refused() {
    let fx = Fixture::new();
    for value in [r#""1500ms""#, r#""1.5s""#] {
        let text = base_with_dns(&format!("alias_ttl = {value}"));
        fx.refused(&text, Some(value), &["dns.alias_ttl", "whole seconds"]);
    }
}

#[test]
fn an_alias_ttl_above_31_bits_is_refused() {
    let fx = Fixture::new();
    let text = base_with_dns("alias_ttl = 2147483648");
    fx.refused(
        &text,
        Some("2147483648"),
        &["dns.alias_ttl", "at most 2147483647 seconds"],
    );
    let config = fx.parse(&base_with_dns("alias_ttl = 2147483647")).unwrap();
    assert_eq!(config.dns.alias_ttl, 2_147_483_647);
}

#[test]
fn a_negative_ttl_over_three_hours_is_refused() {
    let fx = Fixture::new();
    let text = base_with_dns(r#"negative_ttl = "3h 1s""#);
    fx.refused(
        &text,
        Some(r#""3h 1s""#),
        &["dns.negative_ttl", "at most 10800 seconds"],
    );
    let config = fx.parse(&base_with_dns(r#"negative_ttl = "3h""#)).unwrap();
    assert_eq!(config.dns.negative_ttl, 10_800);
}

#[test]
fn a_tcp_idle_timeout_under_100ms_is_refused() {
    let text = base_with_dns(r#"tcp_idle_timeout = "50ms""#);
    Fixture::new().refused(
        &text,
        Some(r#""50ms""#),
        &[
            "dns.tcp_idle_timeout",
            "must be between 100ms and 1h (got 50ms)",
        ],
    );
}

// ---- [[zone]] ----

#[test]
fn a_config_without_zones_is_refused() {
    let fx = Fixture::new();
    let zone = "[[zone]]\norigin = \"internal.\"\nfile = \"internal.zone\"\n";
    fx.refused(&base_with(zone, ""), None, &["missing field `zone`"]);
    let text = format!("zone = []\n{}", base_with(zone, ""));
    fx.refused(&text, None, &["at least one [[zone]]"]);
}

#[test]
fn a_bad_zone_origin_is_refused() {
    let text = base_with(r#"origin = "internal.""#, r#"origin = "bad..internal.""#);
    Fixture::new().refused(
        &text,
        Some(r#""bad..internal.""#),
        &["zone.origin", "`bad..internal.`"],
    );
}

#[test]
fn overlapping_zones_are_refused() {
    let fx = Fixture::new();
    for origin in ["sub.internal.", "internal.", "Internal"] {
        let text = base_plus(&format!(
            "[[zone]]\norigin = \"{origin}\"\nfile = \"example.zone\"\n"
        ));
        let at = format!("\"{origin}\"\nfile = \"example.zone\"");
        fx.refused(&text, Some(&at), &["overlaps another [[zone]]", "disjoint"]);
    }
}

#[test]
fn a_missing_zone_file_is_refused_with_its_path() {
    let fx = Fixture::new();
    let text = base_with("internal.zone", "missing.zone");
    let missing = fx.dir.root().join("missing.zone");
    fx.refused(
        &text,
        Some(r#""missing.zone""#),
        &[
            "zone.file",
            &format!("{}: cannot read zone file", missing.display()),
        ],
    );
}

#[test]
fn a_zone_file_syntax_error_names_the_zone_file_and_its_line() {
    let fx = Fixture::new();
    let bad = fx.dir.root().join("bad.zone");
    std::fs::write(&bad, INTERNAL_ZONE.replace("10.0.0.9", "10.0.0.999")).unwrap();
    let text = base_with("internal.zone", "bad.zone");
    fx.refused(
        &text,
        Some(r#""bad.zone""#),
        &["zone.file", &format!("{}:5: ", bad.display())],
    );
}

#[test]
fn a_zone_file_path_may_be_absolute() {
    let fx = Fixture::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let zone = elsewhere.path().join("internal.zone");
    std::fs::write(&zone, INTERNAL_ZONE).unwrap();
    let text = base_with(
        r#"file = "internal.zone""#,
        &format!("file = {:?}", zone.display().to_string()),
    );
    let config = fx.parse(&text).unwrap();
    assert_eq!(config.zones[0].path, zone);
}

// ---- [api] ----

#[test]
fn a_bad_api_listen_address_is_refused() {
    let text = base_plus("[api]\nlisten = \"127.0.0.1\"\n");
    Fixture::new().refused(
        &text,
        Some("\"127.0.0.1\"\n"),
        &["api.listen", "`127.0.0.1`", "not a socket address"],
    );
}

#[test]
fn a_token_needs_exactly_one_of_secret_and_secret_env() {
    let fx = Fixture::new();
    let both = format!("{}secret_env = \"TOKEN\"\n", token("deploy", TOKEN_SECRET));
    let neither = "[[api.token]]\nname = \"deploy\"\n";
    for table in [both.as_str(), neither] {
        fx.refused(
            &base_plus(table),
            Some(r#""deploy""#),
            &[
                "api.token `deploy`",
                "exactly one of `secret` and `secret_env`",
            ],
        );
    }
}

#[test]
fn a_token_whose_environment_variable_is_unset_is_refused() {
    let fx = Fixture::new();
    let text = base_plus("[[api.token]]\nname = \"deploy\"\nsecret_env = \"DEPLOY_TOKEN\"\n");
    let other_var = |name: &str| (name == "OTHER").then(|| TOKEN_SECRET.to_owned());
    let problems = fx.parse_with_env(&text, &other_var).unwrap_err().problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let want = format!(
        "{}:{}: api.token `deploy`: environment variable `DEPLOY_TOKEN` is not set",
        fx.config_path().display(),
        position(&text, r#""DEPLOY_TOKEN""#)
    );
    assert_eq!(problems[0], want);
}

#[test]
fn check_warns_of_an_unset_secret_variable_where_run_refuses() {
    let fx = Fixture::new();
    let text = base_plus("[[api.token]]\nname = \"deploy\"\nsecret_env = \"DEPLOY_TOKEN\"\n");
    let checked = Config::parse_checked(&text, &fx.config_path(), &|_| None).unwrap();
    assert_eq!(
        checked.warnings,
        [format!(
            "{}:{}: api.token `deploy`: environment variable `DEPLOY_TOKEN` is not set here; \
             `aliasd run` refuses to start without it",
            fx.config_path().display(),
            position(&text, r#""DEPLOY_TOKEN""#)
        )]
    );
    assert!(checked.config.api.tokens.is_empty());
    // What `run` reads refuses the same file.
    assert!(fx.parse(&text).is_err());
    // Set, it is neither a warning nor a problem.
    let set = |_: &str| Some(TOKEN_SECRET.to_owned());
    let checked = Config::parse_checked(&text, &fx.config_path(), &set).unwrap();
    assert!(checked.warnings.is_empty());
    assert_eq!(checked.config.api.tokens.len(), 1);
}

#[test]
fn check_still_refuses_a_real_problem_beside_an_unset_secret() {
    let fx = Fixture::new();
    let text = base_plus("[[api.token]]\nname = \"deploy\"\nsecret_env = \"DEPLOY_TOKEN\"\n")
        .replace(r#"["web-v1"]"#, r#"["web-v9"]"#);
    let problems = Config::parse_checked(&text, &fx.config_path(), &|_| None)
        .unwrap_err()
        .problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("unknown service `web-v9`"),
        "{problems:#?}"
    );
}

#[test]
fn a_short_token_secret_is_refused() {
    let fx = Fixture::new();
    let fifteen = &TOKEN_SECRET[..15];
    for secret in [fifteen.to_owned(), format!("  {fifteen}  ")] {
        fx.refused(
            &base_plus(&token("deploy", &secret)),
            Some(r#""deploy""#),
            &["api.token `deploy`", "at least 16 characters"],
        );
    }
}

#[test]
fn a_token_name_defined_twice_is_refused_at_the_second() {
    let text = base_plus(&format!(
        "{}{}",
        token("deploy", TOKEN_SECRET),
        token("deploy ", "another-secret-0123")
    ));
    Fixture::new().refused(
        &text,
        Some(r#""deploy ""#),
        &["api.token `deploy` is defined twice"],
    );
}

#[test]
fn two_tokens_with_the_same_secret_are_refused() {
    let text = base_plus(&format!(
        "{}{}",
        token("deploy", TOKEN_SECRET),
        token("ci", TOKEN_SECRET)
    ));
    Fixture::new().refused(&text, Some(r#""ci""#), &["api.token `ci`", "same secret"]);
}

// ---- [[service]] ----

#[test]
fn a_bad_service_name_is_refused() {
    let text = base_with(r#"name = "web-v2""#, r#"name = "Web V2""#);
    Fixture::new().refused(
        &text,
        Some(r#""Web V2""#),
        &["service.name", "`Web V2` is not a valid service name"],
    );
}

#[test]
fn a_service_defined_twice_is_refused_at_the_second() {
    let text = base_with(r#"name = "web-v2""#, r#"name = "web-v1" "#);
    Fixture::new().refused(
        &text,
        Some(r#""web-v1" "#),
        &["service `web-v1` is defined twice"],
    );
}

#[test]
fn a_bad_endpoint_is_refused() {
    let fx = Fixture::new();
    for endpoint in ["10.0.0.2", "10.0.0.2:0", "0.0.0.0:8080", "web:8080"] {
        let text = base_with(
            r#"["10.0.0.2:8080"]"#,
            &format!(r#"["10.0.0.3:80", "{endpoint}"]"#),
        );
        fx.refused(
            &text,
            Some(&format!("\"{endpoint}\"")),
            &["service `web-v2`: ", &format!("`{endpoint}`")],
        );
    }
}

#[test]
fn an_endpoint_listed_twice_is_refused_at_the_second() {
    let text = base_with(
        r#"["10.0.0.2:8080"]"#,
        r#"["10.0.0.2:8080", "10.0.0.2:8080"]"#,
    );
    Fixture::new().refused(
        &text,
        Some(r#""10.0.0.2:8080"]"#),
        &[
            "service `web-v2`",
            "endpoint `10.0.0.2:8080` is listed twice",
        ],
    );
}

// ---- [[alias]] ----

#[test]
fn an_alias_linking_an_unknown_service_is_refused() {
    let text = base_with(r#"["web-v1"]"#, r#"["web-v1", "web-v9"]"#);
    Fixture::new().refused(
        &text,
        Some(r#""web-v9""#),
        &[
            "alias `web.internal`",
            "unknown service `web-v9`",
            "known: web-v1, web-v2)",
        ],
    );
}

#[test]
fn an_alias_listing_a_service_twice_is_refused() {
    let text = base_with(r#"["web-v1"]"#, r#"["web-v1", "web-v2", "web-v1"]"#);
    Fixture::new().refused(
        &text,
        Some(r#""web-v1"]"#),
        &["alias `web.internal`", "lists service `web-v1` twice"],
    );
}

#[test]
fn an_alias_without_targets_is_refused() {
    let text = base_with(r#"["web-v1"]"#, "[]");
    Fixture::new().refused(
        &text,
        Some("[]"),
        &["alias `web.internal`", "at least one service"],
    );
}

#[test]
fn an_alias_outside_every_zone_is_refused() {
    let text = base_with(r#"name = "web""#, r#"name = "web.example.""#);
    Fixture::new().refused(
        &text,
        Some(r#""web.example.""#),
        &[
            "alias `web.example`",
            "outside every configured zone",
            "internal.",
        ],
    );
}

#[test]
fn an_alias_at_the_zone_apex_is_refused() {
    let fx = Fixture::new();
    let text = base_with(r#"name = "web""#, r#"name = "internal.""#);
    fx.refused(
        &text,
        Some(r#"name = |"internal.""#),
        &["alias `internal`", "cannot be the zone apex"],
    );
}

#[test]
fn an_alias_defined_twice_is_refused_at_the_second() {
    let text = base_plus(&alias("web.internal.", r#"["web-v2"]"#));
    Fixture::new().refused(
        &text,
        Some(r#""web.internal.""#),
        &["alias `web.internal` is defined twice"],
    );
}

#[test]
fn nested_aliases_are_refused_in_either_order() {
    let fx = Fixture::new();
    let inner = base_plus(&alias("x.web", r#"["web-v2"]"#));
    fx.refused(
        &inner,
        Some(r#""x.web""#),
        &["alias `x.web.internal` is nested with alias `web.internal`"],
    );
    let outer_last =
        base_with(r#"name = "web""#, r#"name = "x.web""#) + &alias("web", r#"["web-v2"]"#);
    fx.refused(
        &outer_last,
        Some("\"web\""),
        &["alias `web.internal` is nested with alias `x.web.internal`"],
    );
}

#[test]
fn an_alias_colliding_with_a_static_name_is_refused() {
    let fx = Fixture::new();
    let zone = fx.dir.root().join("internal.zone");
    // `db` is a static name; `rack1` is above the static `host.rack1`.
    for (name, clash) in [("db", "db.internal."), ("rack1", "host.rack1.internal.")] {
        let text = base_with(r#"name = "web""#, &format!("name = \"{name}\""));
        fx.refused(
            &text,
            Some(&format!("\"{name}\"")),
            &[
                &format!("alias `{name}.internal` collides with the static name `{clash}`"),
                &zone.display().to_string(),
            ],
        );
    }
}

#[test]
fn a_bad_port_name_is_refused() {
    let fx = Fixture::new();
    let too_long = "p".repeat(63);
    for port_name in ["HTTP", "_http", "", "h p", too_long.as_str()] {
        let text = base_with(
            r#"targets = ["web-v1"]"#,
            &format!("targets = [\"web-v1\"]\nport_name = \"{port_name}\""),
        );
        fx.refused(
            &text,
            Some(&format!("\"{port_name}\"\n")),
            &["alias `web.internal`", &format!("port_name `{port_name}`")],
        );
    }
    let longest = "p".repeat(62);
    let text = base_with(
        r#"targets = ["web-v1"]"#,
        &format!("targets = [\"web-v1\"]\nport_name = \"{longest}\""),
    );
    let config = fx.parse(&text).unwrap();
    assert_eq!(config.aliases.values().next().unwrap().port_name, longest);
}

// ---- several problems, and good configs ----

#[test]
fn every_problem_is_reported_at_once() {
    let fx = Fixture::new();
    let text = base_with(r#"["127.0.0.1:5353"]"#, r#"["nowhere"]"#)
        .replacen(r#"["10.0.0.1:8080"]"#, r#"["10.0.0.1"]"#, 1)
        .replacen(r#"["web-v1"]"#, r#"["web-v9"]"#, 1);
    let problems = fx.problems(&text);
    let path = fx.config_path().display().to_string();
    let expected = [
        (r#""nowhere""#, "dns.listen"),
        (r#""10.0.0.1""#, "is not an endpoint"),
        (r#""web-v9""#, "unknown service `web-v9`"),
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (problem, (needle, words)) in problems.iter().zip(expected) {
        assert!(
            problem.starts_with(&format!("{path}:{}: ", position(&text, needle))),
            "{problem}"
        );
        assert!(problem.contains(words), "{problem}");
    }
    let display = ConfigError { problems }.to_string();
    assert_eq!(display.lines().count(), 3, "{display}");
}

#[test]
fn the_base_config_parses_with_the_defaults() {
    let fx = Fixture::new();
    let config = fx.parse(BASE).unwrap();
    assert_eq!(config.source, fx.config_path());
    assert_eq!(
        config.dns.listen,
        ["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
    );
    assert!(config.dns.udp_sockets >= 1);
    assert_eq!(config.dns.alias_ttl, DEFAULT_ALIAS_TTL);
    assert_eq!(config.dns.alias_ttl, 5);
    assert_eq!(config.dns.negative_ttl, DEFAULT_NEGATIVE_TTL);
    assert_eq!(config.dns.negative_ttl, 5);
    assert_eq!(config.dns.tcp_idle_timeout, Duration::from_secs(10));
    assert!(!config.dns.log_queries);
    assert_eq!(
        config.api.listen,
        "127.0.0.1:5380".parse::<SocketAddr>().unwrap()
    );
    assert!(config.api.tokens.is_empty());
    assert_eq!(config.state_dir, fx.dir.root().join("state"));
    assert_eq!(config.zones.len(), 1);
    assert_eq!(config.zones[0].origin.to_ascii(), "internal.");
    assert_eq!(config.zones[0].path, fx.dir.root().join("internal.zone"));
    assert_eq!(config.zones[0].serial, 7);
    let services: Vec<&str> = config.services.keys().map(|s| s.as_str()).collect();
    assert_eq!(services, ["web-v1", "web-v2"]);
    let web_v2 = &config.services[&"web-v2".parse().unwrap()];
    assert_eq!(web_v2.endpoints, ["10.0.0.2:8080".parse().unwrap()]);
    assert_eq!(alias_names(&config), ["web.internal."]);
    let web = config.aliases.values().next().unwrap();
    assert_eq!(web.zone, 0);
    assert_eq!(web.port_name, "http");
    assert_eq!(targets(&config, "web"), ["web-v1"]);
}

#[test]
fn a_full_config_parses_with_every_value() {
    let fx = Fixture::new();
    let text = r#"[dns]
listen = ["127.0.0.1:5353", "[::1]:5353"]
udp_sockets = 4
alias_ttl = 30
negative_ttl = "1m"
tcp_idle_timeout = "2s"
log_queries = true

[[zone]]
origin = "Internal"
file = "internal.zone"

[[zone]]
origin = "example."
file = "./example.zone"

[api]
listen = "[::1]:9000"

[[api.token]]
name = "deploy"
secret = "0123456789abcdef"

[[api.token]]
name = "ci"
secret_env = "ALIASD_CI_TOKEN"

[state]
dir = "/var/lib/aliasd"

[[service]]
name = "web-v1"
endpoints = ["10.0.0.1:8080", "[fd00::1]:8080"]

[[service]]
name = "web-v2"
endpoints = []

[[alias]]
name = "web"
targets = ["web-v2", "web-v1"]

[[alias]]
name = "api.internal."
targets = ["web-v1"]
port_name = "grpc"

[[alias]]
name = "app.example."
targets = ["web-v2"]
"#;
    let env = |name: &str| (name == "ALIASD_CI_TOKEN").then(|| "ci-secret-0123456789".to_owned());
    let config = fx.parse_with_env(text, &env).unwrap();

    let dns = &config.dns;
    assert_eq!(
        dns.listen,
        [
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    assert_eq!(dns.udp_sockets, 4);
    assert_eq!(dns.alias_ttl, 30);
    assert_eq!(dns.negative_ttl, 60);
    assert_eq!(dns.tcp_idle_timeout, Duration::from_secs(2));
    assert!(dns.log_queries);

    let origins: Vec<String> = config.zones.iter().map(|z| z.origin.to_ascii()).collect();
    assert_eq!(origins, ["internal.", "example."]);
    assert_eq!(config.zones[1].serial, 100);

    assert_eq!(
        config.api.listen,
        "[::1]:9000".parse::<SocketAddr>().unwrap()
    );
    let tokens: Vec<(&str, &str)> = config
        .api
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.secret.as_str()))
        .collect();
    assert_eq!(
        tokens,
        [("deploy", TOKEN_SECRET), ("ci", "ci-secret-0123456789")]
    );
    assert!(!format!("{:?}", config.api.tokens).contains(TOKEN_SECRET));
    assert_eq!(config.state_dir, Path::new("/var/lib/aliasd"));

    let web_v1 = &config.services[&"web-v1".parse().unwrap()];
    assert_eq!(web_v1.endpoints.len(), 2);
    assert!(
        config.services[&"web-v2".parse().unwrap()]
            .endpoints
            .is_empty()
    );

    let mut names = alias_names(&config);
    names.sort();
    assert_eq!(names, ["api.internal.", "app.example.", "web.internal."]);
    assert_eq!(targets(&config, "web"), ["web-v2", "web-v1"]);
    let by_name =
        |n: &str| &config.aliases[&AliasName::resolve(n, &config.zones[0].origin).unwrap()];
    assert_eq!(by_name("web").zone, 0);
    assert_eq!(by_name("api").port_name, "grpc");
    assert_eq!(by_name("api").zone, 0);
    assert_eq!(by_name("app.example.").zone, 1);
    assert_eq!(by_name("app.example.").port_name, "http");
}

#[test]
fn durations_accept_integers_and_human_strings() {
    let fx = Fixture::new();
    let cases = [
        ("10", 10),
        (r#""10s""#, 10),
        (r#""2m""#, 120),
        (r#""1h 30m""#, 5400),
        (r#"" 7s ""#, 7),
        ("0", 0),
    ];
    for (written, seconds) in cases {
        let text = base_with_dns(&format!("alias_ttl = {written}\nnegative_ttl = {written}"));
        let config = fx.parse(&text).unwrap();
        assert_eq!(config.dns.alias_ttl, seconds, "{written}");
        assert_eq!(config.dns.negative_ttl, seconds, "{written}");
    }
    let config = fx
        .parse(&base_with_dns("tcp_idle_timeout = \"250ms\""))
        .unwrap();
    assert_eq!(config.dns.tcp_idle_timeout, Duration::from_millis(250));
}

#[test]
fn alias_names_resolve_against_the_first_zone() {
    let fx = Fixture::new();
    for (written, expected) in [
        ("web", "web.internal."),
        ("Web", "web.internal."),
        ("web.internal", "web.internal."),
        ("api.internal.", "api.internal."),
        ("a.b", "a.b.internal."),
    ] {
        let text = base_with(r#"name = "web""#, &format!("name = \"{written}\""));
        let config = fx.parse(&text).unwrap();
        assert_eq!(alias_names(&config), [expected], "{written}");
    }
}

#[test]
fn secret_env_is_read_through_the_env_function() {
    let fx = Fixture::new();
    let text = base_plus("[[api.token]]\nname = \"deploy\"\nsecret_env = \"DEPLOY_TOKEN\"\n");
    let asked = std::cell::RefCell::new(Vec::new());
    let env = |name: &str| {
        asked.borrow_mut().push(name.to_owned());
        Some("from-the-environment-123".to_owned())
    };
    let config = fx.parse_with_env(&text, &env).unwrap();
    assert_eq!(asked.into_inner(), ["DEPLOY_TOKEN"]);
    assert_eq!(config.api.tokens.len(), 1);
    assert_eq!(config.api.tokens[0].name, "deploy");
    assert_eq!(config.api.tokens[0].secret, "from-the-environment-123");
}

#[test]
fn load_reads_the_file_and_names_it_when_it_is_missing() {
    let fx = Fixture::new();
    let path = fx.config_path();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.problems[0].starts_with(&format!("{}: cannot read config", path.display())),
        "{err}"
    );
    std::fs::write(&path, BASE).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.source, path);
    assert_eq!(alias_names(&config), ["web.internal."]);
}

#[test]
fn parse_duration_explains_the_expected_form() {
    assert_eq!(parse_duration(" 90s ").unwrap(), Duration::from_secs(90));
    let err = parse_duration("soon").unwrap_err();
    assert!(err.contains("`soon` is not a duration"), "{err}");
    assert!(err.contains("\"30s\""), "{err}");
}

// ---- [health], [service.health], [promotion] and if_none_healthy ----

/// The `web-v2` service of `BASE`.
const WEB_V2: &str = "[[service]]\nname = \"web-v2\"\nendpoints = [\"10.0.0.2:8080\"]\n";

/// `BASE` with `web-v1` as its only service and a `[health]` section of `settings`.
fn with_health(settings: &str) -> String {
    format!("{}\n[health]\n{settings}\n", base_with(WEB_V2, ""))
}

/// `BASE` with `[service.health]` of `settings` for `web-v2`.
fn with_service_health(settings: &str) -> String {
    base_with(WEB_V2, &format!("{WEB_V2}\n[service.health]\n{settings}\n"))
}

fn with_promotion(settings: &str) -> String {
    base_plus(&format!("[promotion]\n{settings}"))
}

fn with_if_none_healthy(value: &str) -> String {
    base_with(
        r#"targets = ["web-v1"]"#,
        &format!("targets = [\"web-v1\"]\nif_none_healthy = {value}"),
    )
}

fn check_of<'a>(config: &'a Config, service: &str) -> &'a CheckConfig {
    &config.services[&service.parse::<ServiceName>().unwrap()].check
}

fn http_check(path: &str, expect: RangeInclusive<u16>, host: Option<&str>) -> CheckKind {
    CheckKind::Http {
        path: path.into(),
        expect,
        host: host.map(str::to_owned),
    }
}

fn default_check(kind: CheckKind) -> CheckConfig {
    CheckConfig {
        kind,
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
    }
}

#[test]
fn without_health_and_promotion_sections_the_defaults_apply() {
    let config = Fixture::new().parse(BASE).unwrap();
    for service in ["web-v1", "web-v2"] {
        assert_eq!(
            check_of(&config, service),
            &default_check(CheckKind::Tcp),
            "{service}"
        );
    }
    assert_eq!(config.health_concurrency, 256);
    assert_eq!(
        config.promotion,
        PromotionDefaults {
            observe: Duration::from_secs(10),
            warm_timeout: Duration::from_secs(120),
            drain_grace: Duration::from_secs(2),
        }
    );
    assert_eq!(config.promotion, PromotionDefaults::default());
    let web = config.aliases.values().next().unwrap();
    assert_eq!(web.if_none_healthy, IfNoneHealthy::LastKnownGood);
}

#[test]
fn an_http_check_defaults_to_slash_and_any_2xx_or_3xx() {
    let config = Fixture::new()
        .parse(&with_health(r#"kind = "http""#))
        .unwrap();
    assert_eq!(
        check_of(&config, "web-v1"),
        &default_check(http_check("/", 200..=399, None))
    );
}

#[test]
fn every_health_setting_is_read() {
    let fx = Fixture::new();
    let text = with_health(
        r#"kind = "http"
path = "/healthz"
expect = "200"
host = "web.example"
interval = "5s"
timeout = "500ms"
rise = 1
fall = 100
concurrency = 65536"#,
    );
    let config = fx.parse(&text).unwrap();
    assert_eq!(
        check_of(&config, "web-v1"),
        &CheckConfig {
            kind: http_check("/healthz", 200..=200, Some("web.example")),
            interval: Duration::from_secs(5),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 100,
        }
    );
    assert_eq!(config.health_concurrency, 65_536);

    for (settings, kind) in [
        (r#"kind = "tcp""#, CheckKind::Tcp),
        (r#"kind = "none""#, CheckKind::None),
        (
            "kind = \"http\"\nexpect = \"204-299\"",
            http_check("/", 204..=299, None),
        ),
    ] {
        let config = fx.parse(&with_health(settings)).unwrap();
        assert_eq!(check_of(&config, "web-v1").kind, kind, "{settings}");
    }
}

#[test]
fn health_limits_are_inclusive() {
    let fx = Fixture::new();
    let accepted = [
        "rise = 1\nfall = 1",
        "rise = 100\nfall = 100",
        "concurrency = 1",
        "interval = \"50ms\"\ntimeout = \"10ms\"",
        "interval = \"1s\"\ntimeout = \"1s\"",
        "interval = \"1s\"\ntimeout = \"10ms\"",
    ];
    for settings in accepted {
        fx.parse(&with_health(settings))
            .unwrap_or_else(|e| panic!("{settings}: {e}"));
    }
}

#[test]
fn bad_health_settings_are_refused_with_their_position() {
    let fx = Fixture::new();
    let not_a_range = "is not a status or range like \"200-399\"";
    // (settings, where the problem is, words of the problem)
    let cases: [(&str, &str, &[&str]); 17] = [
        (
            r#"kind = "udp""#,
            r#""udp""#,
            &["health.kind", "`udp` is not one of http, tcp, none"],
        ),
        (
            "kind = \"http\"\npath = \"healthz\"",
            r#""healthz""#,
            &["health.path must start with `/`"],
        ),
        (
            "kind = \"http\"\nexpect = \"2xx\"",
            r#""2xx""#,
            &["health.expect", "`2xx`", not_a_range],
        ),
        (
            "kind = \"http\"\nexpect = \"600\"",
            r#""600""#,
            &["health.expect", "`600`", not_a_range],
        ),
        (
            "kind = \"http\"\nexpect = \"399-200\"",
            r#""399-200""#,
            &["health.expect", "`399-200`", not_a_range],
        ),
        (
            r#"interval = "soon""#,
            r#""soon""#,
            &["health.interval", "`soon` is not a duration"],
        ),
        (
            r#"interval = "10ms""#,
            r#""10ms""#,
            &["health.interval must be between 50ms and 1h (got 10ms)"],
        ),
        (
            "interval = -2",
            "-2",
            &["health.interval", "-2 is negative"],
        ),
        (
            "interval = \"2s\"\ntimeout = \"3s\"",
            r#""3s""#,
            &["health.timeout must not exceed", "health.interval"],
        ),
        (
            "rise = 0",
            "rise = |0",
            &["health.rise must be between 1 and 100"],
        ),
        (
            "rise = 101",
            "101",
            &["health.rise must be between 1 and 100"],
        ),
        (
            "fall = 0",
            "fall = |0",
            &["health.fall must be between 1 and 100"],
        ),
        (
            "fall = 101",
            "101",
            &["health.fall must be between 1 and 100"],
        ),
        (
            "concurrency = 0",
            "concurrency = |0",
            &["health.concurrency must be between 1 and 65536"],
        ),
        (
            "concurrency = 65537",
            "65537",
            &["health.concurrency must be between 1 and 65536"],
        ),
        (
            "bogus = 1",
            "bogus",
            &["unknown key `bogus` in [health]", "`kind`"],
        ),
        (r#"kind = 1"#, "kind = |1", &["invalid type"]),
    ];
    for (settings, at, words) in cases {
        fx.refused(&with_health(settings), Some(at), words);
    }
}

#[test]
fn service_health_overrides_the_defaults_field_by_field() {
    let text = base_plus(
        r#"[health]
kind = "http"
path = "/healthz"
interval = "5s"
rise = 4"#,
    )
    .replacen(
        WEB_V2,
        &format!("{WEB_V2}\n[service.health]\npath = \"/ready\"\nfall = 7\n"),
        1,
    );
    let config = Fixture::new().parse(&text).unwrap();
    let defaults = CheckConfig {
        kind: http_check("/healthz", 200..=399, None),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        rise: 4,
        fall: 3,
    };
    assert_eq!(check_of(&config, "web-v1"), &defaults);
    assert_eq!(
        check_of(&config, "web-v2"),
        &CheckConfig {
            kind: http_check("/ready", 200..=399, None),
            fall: 7,
            ..defaults
        }
    );
}

#[test]
fn a_service_can_turn_its_checks_off() {
    let text = with_service_health(r#"kind = "none""#);
    let config = Fixture::new().parse(&text).unwrap();
    assert_eq!(check_of(&config, "web-v2").kind, CheckKind::None);
    assert_eq!(check_of(&config, "web-v1").kind, CheckKind::Tcp);
}

#[test]
fn bad_service_health_settings_are_refused_naming_the_service() {
    let fx = Fixture::new();
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            r#"kind = "udp""#,
            r#""udp""#,
            &["service `web-v2` health.kind", "`udp` is not one of"],
        ),
        (
            "kind = \"http\"\npath = \"ready\"",
            r#""ready""#,
            &["service `web-v2` health.path must start with `/`"],
        ),
        (
            "concurrency = 4",
            "concurrency = |4",
            &["health.concurrency belongs in the top-level [health] only"],
        ),
        (
            "bogus = 1",
            "bogus",
            &["unknown key `bogus` in [service.health]"],
        ),
    ];
    for (settings, at, words) in cases {
        fx.refused(&with_service_health(settings), Some(at), words);
    }
}

#[test]
fn promotion_settings_are_read() {
    let text = with_promotion("observe = \"30s\"\nwarm_timeout = \"100ms\"\ndrain_grace = 0");
    let config = Fixture::new().parse(&text).unwrap();
    assert_eq!(
        config.promotion,
        PromotionDefaults {
            observe: Duration::from_secs(30),
            warm_timeout: Duration::from_millis(100),
            drain_grace: Duration::ZERO,
        }
    );
    // Each one alone; the others keep their defaults.
    let config = Fixture::new()
        .parse(&with_promotion("observe = 0"))
        .unwrap();
    assert_eq!(
        config.promotion,
        PromotionDefaults {
            observe: Duration::ZERO,
            ..PromotionDefaults::default()
        }
    );
}

#[test]
fn bad_promotion_settings_are_refused_with_their_position() {
    let fx = Fixture::new();
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            r#"warm_timeout = "99ms""#,
            r#""99ms""#,
            &["promotion.warm_timeout must be between 100ms and 1day"],
        ),
        (
            r#"observe = "soon""#,
            r#""soon""#,
            &["promotion.observe", "`soon` is not a duration"],
        ),
        (
            "drain_grace = -1",
            "-1",
            &["promotion.drain_grace", "-1 is negative"],
        ),
        (
            "observe = -10",
            "-10",
            &["promotion.observe", "-10 is negative"],
        ),
        (
            "bogus = 1",
            "bogus",
            &["unknown key `bogus` in [promotion]", "`observe`"],
        ),
    ];
    for (settings, at, words) in cases {
        fx.refused(&with_promotion(settings), Some(at), words);
    }
}

#[test]
fn if_none_healthy_takes_one_of_three_policies() {
    let fx = Fixture::new();
    for (written, policy) in [
        (r#""last-known-good""#, IfNoneHealthy::LastKnownGood),
        (r#""all""#, IfNoneHealthy::All),
        (r#""none""#, IfNoneHealthy::None),
    ] {
        let config = fx.parse(&with_if_none_healthy(written)).unwrap();
        let web = config.aliases.values().next().unwrap();
        assert_eq!(web.if_none_healthy, policy, "{written}");
    }
    for bad in ["fail-open", "All", ""] {
        let written = format!("\"{bad}\"");
        fx.refused(
            &with_if_none_healthy(&written),
            Some(&format!("if_none_healthy = |{written}")),
            &[
                "alias `web.internal`",
                &format!("if_none_healthy `{bad}` is not one of last-known-good, all, none"),
            ],
        );
    }
}

// ---- the [health] defaults are checked once ----

#[test]
fn a_bad_health_default_is_reported_once_at_its_place_whatever_the_services() {
    let f = Fixture::new();
    let two_services = base_plus(
        "[[service]]\nname = \"extra-v1\"\nendpoints = [\"10.0.0.77:80\"]\n[health]\nkind = \"udp\"\n",
    );
    f.refused(
        &two_services,
        Some("kind = |\"udp\""),
        &["health.kind", "udp"],
    );
    let overridden = base_plus(
        "[health]\nrise = 0\n[[service]]\nname = \"extra-v1\"\nendpoints = [\"10.0.0.77:80\"]\n[service.health]\nkind = \"tcp\"\n",
    );
    f.refused(&overridden, Some("rise = |0"), &["health.rise"]);
}

#[test]
fn a_short_interval_without_a_timeout_takes_the_interval_as_its_timeout() {
    let f = Fixture::new();
    let config = f
        .parse(&base_plus("[health]\ninterval = \"300ms\"\n"))
        .expect("a short interval alone is valid");
    let check = &config.services.values().next().unwrap().check;
    assert_eq!(check.interval, Duration::from_millis(300));
    assert_eq!(check.timeout, Duration::from_millis(300));
}

// ---- zone transfers ----

fn with_secondaries(zone_keys: &str, keys: &str) -> String {
    let text = base_with(
        "file = \"internal.zone\"\n",
        &format!("file = \"internal.zone\"\n{zone_keys}\n"),
    );
    format!("{text}\n{keys}\n")
}

const KEY: &str =
    "[[tsig_key]]\nname = \"xfr\"\nsecret = \"Gk2x7hU3C5kS5u7wK1m2b7cQ6N4pYy1cZt6o9b0aXkE=\"\n";

#[test]
fn secondaries_transfer_allow_and_tsig_keys_are_read() {
    let text = with_secondaries(
        "secondaries = [{ address = \"10.0.0.21:5301\", tsig_key = \"xfr\" }, { address = \"10.0.0.22\", notify = false }]\ntransfer_allow = [\"10.0.1.0/24\", \"10.0.2.7\"]",
        KEY,
    );
    let config = Fixture::new().parse(&text).unwrap();
    let t = &config.transfers[0];
    assert_eq!(t.secondaries.len(), 2);
    assert_eq!(t.secondaries[0].address, "10.0.0.21:5301".parse().unwrap());
    assert_eq!(
        t.secondaries[0].tsig_key.as_ref().unwrap().to_ascii(),
        "xfr."
    );
    assert!(t.secondaries[0].notify);
    assert_eq!(t.secondaries[1].address, "10.0.0.22:53".parse().unwrap());
    assert!(!t.secondaries[1].notify);
    assert_eq!(t.allow.len(), 2);
    assert_eq!(config.tsig_keys[0].secret.len(), 32);
    assert!(
        !format!("{:?}", config.tsig_keys).contains("Gk2x"),
        "secrets stay out of Debug"
    );
}

#[test]
fn check_warns_of_an_unset_tsig_secret_variable_and_keeps_the_key_name() {
    let fx = Fixture::new();
    let text = with_secondaries(
        "secondaries = [{ address = \"10.0.0.21\", tsig_key = \"xfr\" }]",
        "[[tsig_key]]\nname = \"xfr\"\nsecret_env = \"XFR_SECRET\"\n",
    );
    let checked = Config::parse_checked(&text, &fx.config_path(), &|_| None).unwrap();
    assert_eq!(checked.warnings.len(), 1, "{:#?}", checked.warnings);
    let warning = &checked.warnings[0];
    let at = format!(
        "{}:{}: tsig_key `xfr.`: environment variable `XFR_SECRET` is not set here",
        fx.config_path().display(),
        position(&text, r#""XFR_SECRET""#)
    );
    assert!(warning.starts_with(&at), "{warning}");
    assert!(warning.contains("`aliasd run` refuses"), "{warning}");
    let problems = fx.problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("environment variable `XFR_SECRET` is not set"),
        "{problems:#?}"
    );
}

#[test]
fn bad_secondaries_and_keys_are_refused_where_they_are_written() {
    let f = Fixture::new();
    f.refused(
        &with_secondaries("secondaries = [{ address = \"ns2.example\" }]", ""),
        Some("\"ns2.example\""),
        &[
            "zone.secondaries.address",
            "`ns2.example`",
            "not an address",
        ],
    );
    f.refused(
        &with_secondaries(
            "secondaries = [{ address = \"10.0.0.21\", tsig_key = \"nope\" }]",
            KEY,
        ),
        Some("\"nope\""),
        &["tsig_key", "no [[tsig_key]] is named `nope`"],
    );
    f.refused(
        &with_secondaries("transfer_allow = [\"10.0.0.0/99\"]", ""),
        Some("\"10.0.0.0/99\""),
        &["zone.transfer_allow", "`10.0.0.0/99`"],
    );
    f.refused(
        &with_secondaries(
            "",
            "[[tsig_key]]\nname = \"xfr\"\nsecret = \"not base64!\"\n",
        ),
        Some("\"not base64!\""),
        &["tsig_key `xfr.`", "not base64"],
    );
    f.refused(
        &with_secondaries("", "[[tsig_key]]\nname = \"xfr\"\nsecret = \"c2hvcnQ=\"\n"),
        Some("\"c2hvcnQ=\""),
        &["tsig_key `xfr.`", "5 bytes", "at least 16"],
    );
    f.refused(
        &with_secondaries(
            "",
            "[[tsig_key]]\nname = \"xfr\"\nalgorithm = \"hmac-md5\"\nsecret = \"Gk2x7hU3C5kS5u7wK1m2b7cQ6N4pYy1cZt6o9b0aXkE=\"\n",
        ),
        Some("\"hmac-md5\""),
        &["hmac-md5", "only hmac-sha256"],
    );
}

// ---- [cluster] ----

/// `BASE` with a `[cluster]` table of these lines.
fn base_with_cluster(lines: &str) -> String {
    base_plus(&format!("[cluster]\n{lines}\n"))
}

const CLUSTER: &str =
    "etcd = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379/\"]\nadvertise = \"10.0.0.1\"";

/// `CLUSTER` with one more line.
fn cluster_plus(line: &str) -> String {
    base_with_cluster(&format!("{CLUSTER}\n{line}"))
}

#[test]
fn without_a_cluster_table_a_single_node_runs() {
    let fx = Fixture::new();
    assert!(fx.parse(BASE).unwrap().cluster.is_none());
}

#[test]
fn a_cluster_table_parses_with_the_defaults() {
    let fx = Fixture::new();
    let cluster = fx
        .parse(&base_with_cluster(CLUSTER))
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(
        cluster.etcd,
        ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(cluster.advertise, "10.0.0.1".parse::<IpAddr>().unwrap());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(cluster.node, host.trim().to_ascii_lowercase());
    assert_eq!(cluster.prefix, "/aliasd");
    assert_eq!(cluster.lease_ttl, Duration::from_secs(5));
    assert_eq!(cluster.username, None);
    assert_eq!(cluster.password, None);
    assert_eq!(cluster.ca_file, None);
    assert_eq!(cluster.cert_file, None);
    assert_eq!(cluster.key_file, None);
}

#[test]
fn a_full_cluster_table_parses_with_tls_files_relative_to_the_config() {
    let fx = Fixture::new();
    for name in ["ca.pem", "client.pem", "client-key.pem"] {
        std::fs::write(fx.dir.root().join(name), "PEM").unwrap();
    }
    let text = base_with_cluster(
        r#"etcd = ["https://etcd-1.internal:2379", "https://[fd00::1]:2379"]
node = "host-a"
advertise = "fd00::10"
prefix = "/prod/aliasd"
lease_ttl = "10s"
username = "aliasd"
password_env = "ALIASD_ETCD_PASSWORD"
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client-key.pem""#,
    );
    let env = |name: &str| (name == "ALIASD_ETCD_PASSWORD").then(|| "hunter2".to_owned());
    let cluster = fx.parse_with_env(&text, &env).unwrap().cluster.unwrap();
    assert_eq!(
        cluster.etcd,
        ["https://etcd-1.internal:2379", "https://[fd00::1]:2379"]
    );
    assert_eq!(cluster.node, "host-a");
    assert_eq!(cluster.advertise, "fd00::10".parse::<IpAddr>().unwrap());
    assert_eq!(cluster.prefix, "/prod/aliasd");
    assert_eq!(cluster.lease_ttl, Duration::from_secs(10));
    assert_eq!(cluster.username.as_deref(), Some("aliasd"));
    assert_eq!(cluster.password.as_deref(), Some("hunter2"));
    assert_eq!(cluster.ca_file, Some(fx.dir.root().join("ca.pem")));
    assert_eq!(cluster.cert_file, Some(fx.dir.root().join("client.pem")));
    assert_eq!(cluster.key_file, Some(fx.dir.root().join("client-key.pem")));
    // The password stays out of logs.
    let debug = format!("{cluster:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn an_unknown_cluster_key_is_refused_with_its_position() {
    let fx = Fixture::new();
    let text = cluster_plus("lease = \"5s\"");
    fx.refused(
        &text,
        Some("lease = "),
        &["unknown key `lease` in [cluster]"],
    );
}

#[test]
fn a_cluster_table_without_etcd_or_advertise_is_refused_saying_what_to_add() {
    let fx = Fixture::new();
    let text = base_with_cluster("advertise = \"10.0.0.1\"");
    fx.refused(
        &text,
        Some("[cluster]"),
        &[
            "cluster.etcd is missing",
            "etcd = [\"http://10.0.0.1:2379\"]",
        ],
    );
    let text = base_with_cluster("etcd = [\"http://10.0.0.1:2379\"]");
    fx.refused(
        &text,
        Some("[cluster]"),
        &["cluster.advertise is missing", "advertise = \"10.0.0.1\""],
    );
    let text = base_with_cluster("etcd = []\nadvertise = \"10.0.0.1\"");
    fx.refused(
        &text,
        Some("[]"),
        &["cluster.etcd must name at least one endpoint"],
    );
}

#[test]
fn bad_etcd_urls_are_refused_each_at_its_position() {
    let fx = Fixture::new();
    for (url, words) in [
        ("10.0.0.1:2379", "is not an http:// or https:// URL"),
        ("unix:///run/etcd.sock", "is not an http:// or https:// URL"),
        ("http://10.0.0.1:2379/v3", "with no path"),
        ("http://10.0.0.1", "needs a host and a port"),
        ("http://:2379", "needs a host and a port"),
        ("http://10.0.0.1:0", "needs a host and a port"),
        ("http://user@10.0.0.1:2379", "with no path"),
    ] {
        let text = base_with_cluster(&format!(
            "etcd = [\"http://10.0.0.9:2379\", \"{url}\"]\nadvertise = \"10.0.0.1\""
        ));
        let problem = fx.refused(
            &text,
            Some(&format!("\"{url}\"")),
            &["cluster.etcd: ", url, words],
        );
        assert!(problem.contains("http://10.0.0.1:2379"), "{problem}");
    }
}

#[test]
fn an_etcd_url_listed_twice_or_mixed_schemes_are_refused() {
    let fx = Fixture::new();
    let text = base_with_cluster(
        "etcd = [\"http://10.0.0.1:2379\", \"http://10.0.0.1:2379/\"]\nadvertise = \"10.0.0.1\"",
    );
    fx.refused(
        &text,
        Some("\"http://10.0.0.1:2379/\""),
        &["`http://10.0.0.1:2379` is listed twice"],
    );
    let text = base_with_cluster(
        "etcd = [\"https://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\nadvertise = \"10.0.0.1\"\nca_file = \"/etc/hostname\"",
    );
    fx.refused(
        &text,
        Some("\"http://10.0.0.2:2379\""),
        &["mixes http:// and https://", "use one scheme for all"],
    );
}

#[test]
fn a_bad_node_name_is_refused() {
    let fx = Fixture::new();
    for node in ["Host-A", "", "host a", "host/a", &"a".repeat(64)] {
        let text = cluster_plus(&format!("node = \"{node}\""));
        fx.refused(
            &text,
            Some(&format!("node = |\"{node}\"")),
            &[
                "cluster.node: ",
                "lower-case letters, digits",
                "such as \"host-a\"",
            ],
        );
    }
    let fx_ok = fx.parse(&cluster_plus("node = \"node_1.rack-2\"")).unwrap();
    assert_eq!(fx_ok.cluster.unwrap().node, "node_1.rack-2");
}

#[test]
fn an_advertise_address_must_be_an_ip_alone() {
    let fx = Fixture::new();
    for (value, words) in [
        ("10.0.0.1:5380", "has a port; write the IP address alone"),
        ("host-a.internal", "is not an IP address"),
        ("0.0.0.0", "is the unspecified address"),
        ("::", "is the unspecified address"),
    ] {
        let text = base_with_cluster(&format!(
            "etcd = [\"http://10.0.0.1:2379\"]\nadvertise = \"{value}\""
        ));
        fx.refused(
            &text,
            Some(&format!("advertise = |\"{value}\"")),
            &["cluster.advertise: ", value, words],
        );
    }
}

#[test]
fn a_bad_prefix_is_refused() {
    let fx = Fixture::new();
    for prefix in ["aliasd", "/aliasd/", "/", "/ali asd", ""] {
        let text = cluster_plus(&format!("prefix = \"{prefix}\""));
        fx.refused(
            &text,
            Some(&format!("prefix = |\"{prefix}\"")),
            &[
                "cluster.prefix",
                "must start with `/`",
                "such as \"/aliasd\"",
            ],
        );
    }
}

#[test]
fn a_lease_ttl_out_of_range_or_fractional_is_refused() {
    let fx = Fixture::new();
    for (ttl, words) in [
        ("\"1s\"", "between 2s and 1m"),
        ("61", "between 2s and 1m"),
        ("\"2500ms\"", "must be whole seconds"),
        ("\"soon\"", "cluster.lease_ttl: "),
    ] {
        let text = cluster_plus(&format!("lease_ttl = {ttl}"));
        fx.refused(
            &text,
            Some(&format!("lease_ttl = |{ttl}")),
            &["cluster.lease_ttl", words],
        );
    }
    let config = fx.parse(&cluster_plus("lease_ttl = 60")).unwrap();
    assert_eq!(config.cluster.unwrap().lease_ttl, Duration::from_secs(60));
}

#[test]
fn a_username_needs_a_password_env_and_the_other_way_round() {
    let fx = Fixture::new();
    let text = cluster_plus("username = \"aliasd\"");
    fx.refused(
        &text,
        Some("username = |\"aliasd\""),
        &["cluster.username needs cluster.password_env"],
    );
    let text = cluster_plus("password_env = \"ETCD_PASSWORD\"");
    fx.refused(
        &text,
        Some("\"ETCD_PASSWORD\""),
        &["cluster.password_env is set without cluster.username"],
    );
}

#[test]
fn a_password_env_whose_variable_is_unset_or_empty_is_refused_naming_it() {
    let fx = Fixture::new();
    let text = cluster_plus("username = \"aliasd\"\npassword_env = \"ETCD_PASSWORD\"");
    let problems = fx.parse_with_env(&text, &|_| None).unwrap_err().problems;
    assert_eq!(
        problems,
        [format!(
            "{}:{}: cluster.password_env: environment variable `ETCD_PASSWORD` is not set",
            fx.config_path().display(),
            position(&text, "\"ETCD_PASSWORD\"")
        )]
    );
    let empty = |_: &str| Some(String::new());
    let problems = fx.parse_with_env(&text, &empty).unwrap_err().problems;
    assert_eq!(
        problems,
        [format!(
            "{}:{}: cluster.password_env: environment variable `ETCD_PASSWORD` is empty",
            fx.config_path().display(),
            position(&text, "\"ETCD_PASSWORD\"")
        )]
    );
    // `aliasd check` warns instead, like for the other secrets.
    let checked = Config::parse_checked(&text, &fx.config_path(), &|_| None).unwrap();
    assert_eq!(checked.warnings.len(), 1, "{:#?}", checked.warnings);
    assert!(checked.warnings[0].contains("`ETCD_PASSWORD` is not set here"));
}

#[test]
fn https_endpoints_need_a_ca_file() {
    let fx = Fixture::new();
    let text = base_with_cluster("etcd = [\"https://10.0.0.1:2379\"]\nadvertise = \"10.0.0.1\"");
    fx.refused(
        &text,
        Some("[\"https://"),
        &[
            "cluster.etcd uses https:// and cluster.ca_file is not set",
            "set it to the CA certificate",
        ],
    );
}

#[test]
fn tls_files_with_http_endpoints_are_refused() {
    let fx = Fixture::new();
    for key in ["ca_file", "cert_file", "key_file"] {
        let text = cluster_plus(&format!("{key} = \"/etc/hostname\""));
        fx.refused(
            &text,
            Some(&format!("{key} = |\"")),
            &[&format!(
                "cluster.{key} is only for https:// etcd endpoints"
            )],
        );
    }
}

#[test]
fn a_client_certificate_needs_its_key_and_the_other_way_round() {
    let fx = Fixture::new();
    for name in ["ca.pem", "client.pem"] {
        std::fs::write(fx.dir.root().join(name), "PEM").unwrap();
    }
    let https =
        "etcd = [\"https://10.0.0.1:2379\"]\nadvertise = \"10.0.0.1\"\nca_file = \"ca.pem\"";
    let text = base_with_cluster(&format!("{https}\ncert_file = \"client.pem\""));
    fx.refused(
        &text,
        Some("cert_file = |\""),
        &["cluster.cert_file needs cluster.key_file"],
    );
    let text = base_with_cluster(&format!("{https}\nkey_file = \"client.pem\""));
    fx.refused(
        &text,
        Some("key_file = |\""),
        &["cluster.key_file needs cluster.cert_file"],
    );
}

#[test]
fn a_tls_file_that_cannot_be_read_is_refused_naming_the_key_and_the_path() {
    let fx = Fixture::new();
    let text = base_with_cluster(
        "etcd = [\"https://10.0.0.1:2379\"]\nadvertise = \"10.0.0.1\"\nca_file = \"missing-ca.pem\"",
    );
    let path = fx.dir.root().join("missing-ca.pem");
    fx.refused(
        &text,
        Some("ca_file = |\""),
        &[&format!("cluster.ca_file: cannot read {}", path.display())],
    );
    // A directory is not a certificate.
    let text = base_with_cluster(&format!(
        "etcd = [\"https://10.0.0.1:2379\"]\nadvertise = \"10.0.0.1\"\nca_file = \"{}\"",
        fx.dir.root().display()
    ));
    fx.refused(
        &text,
        Some("ca_file = |\""),
        &["cluster.ca_file: cannot read", "it is not a file"],
    );
}

#[test]
fn changing_the_cluster_table_takes_a_restart() {
    let fx = Fixture::new();
    let single = fx.parse(BASE).unwrap().restart_key();
    let clustered = fx.parse(&base_with_cluster(CLUSTER)).unwrap().restart_key();
    let other_ttl = fx
        .parse(&cluster_plus("lease_ttl = \"6s\""))
        .unwrap()
        .restart_key();
    assert!(clustered.restart_needed(&clustered.clone()).is_empty());
    for (from, to) in [(&single, &clustered), (&clustered, &other_ttl)] {
        let why = from.restart_needed(to);
        assert_eq!(why.len(), 1, "{why:#?}");
        assert!(
            why[0].contains("[cluster] changed, which takes a restart"),
            "{}",
            why[0]
        );
    }
}

// ---- [docker] labels and address ----

fn base_with_docker(lines: &str) -> String {
    base_plus(&format!(
        "[docker]\nenabled = true\nsocket = \"/var/run/docker.sock\"\n{lines}\n"
    ))
}

#[test]
fn docker_labels_and_address_default_to_every_container_and_its_own_address() {
    let fx = Fixture::new();
    let docker = fx.parse(&base_with_docker("")).unwrap().docker.unwrap();
    assert!(docker.labels.is_empty());
    assert_eq!(docker.address, DockerAddress::Container);
}

#[test]
fn docker_labels_parse_as_keys_with_or_without_a_value() {
    let fx = Fixture::new();
    let text = base_with_docker("labels = [\"com.example.team=payments\", \"canary\", \"empty=\"]");
    let docker = fx.parse(&text).unwrap().docker.unwrap();
    assert_eq!(
        docker.labels,
        [
            ("com.example.team".to_owned(), Some("payments".to_owned())),
            ("canary".to_owned(), None),
            ("empty".to_owned(), Some(String::new())),
        ]
    );
}

#[test]
fn bad_docker_labels_are_refused_each_at_its_position() {
    let fx = Fixture::new();
    for (label, words) in [
        ("=payments", "has no label key"),
        ("team = payments", "holds whitespace"),
        ("", "has no label key"),
    ] {
        let text = base_with_docker(&format!("labels = [\"canary\", \"{label}\"]"));
        fx.refused(
            &text,
            Some(&format!("\"canary\", |\"{label}\"")),
            &["docker.labels: ", words, "write key=value or key"],
        );
    }
    let text = base_with_docker("labels = [\"canary\", \"canary\"]");
    fx.refused(
        &text,
        Some("\"canary\", |\"canary\""),
        &["docker.labels: `canary` is listed twice"],
    );
}

#[test]
fn docker_address_host_needs_a_cluster_advertise_address() {
    let fx = Fixture::new();
    let text = base_with_docker("address = \"host\"");
    fx.refused(
        &text,
        Some("address = |\"host\""),
        &[
            "there is no [cluster] advertise",
            "set [cluster] advertise or use address = \"container\"",
        ],
    );
    let text = format!(
        "{}\n[cluster]\n{CLUSTER}\n",
        base_with_docker("address = \"host\"")
    );
    let config = fx.parse(&text).unwrap();
    assert_eq!(config.docker.unwrap().address, DockerAddress::Host);
    let text = base_with_docker("address = \"bridge\"");
    fx.refused(
        &text,
        Some("address = |\"bridge\""),
        &["docker.address `bridge` is not one of container, host"],
    );
}

#[test]
fn a_cluster_node_needs_no_state_table_and_a_single_node_is_told_to_add_one() {
    let fx = Fixture::new();
    let without_state = |text: &str| text.replace("[state]\ndir = \"state\"\n", "");
    let single = without_state(BASE);
    assert_ne!(
        single, BASE,
        "the base config has a [state] table to take out"
    );
    let problems = fx.problems(&single);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("aliasd.toml: the [state] table is missing")),
        "{problems:?}"
    );
    let cluster = fx
        .parse(&without_state(&base_with_cluster(CLUSTER)))
        .unwrap();
    assert!(cluster.cluster.is_some());
}
