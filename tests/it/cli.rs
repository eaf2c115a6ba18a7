//! The binaries as an operator runs them: `aliasctl` output and exit codes, `aliasd check`, and
//! `aliasd run` refusing a bad config.

use crate::support::{Fixture, TOKEN, run_bin};

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");
const ALIASD: &str = env!("CARGO_BIN_EXE_aliasd");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failed run: exit 1 and exactly one line on stderr that contains `want`.
fn assert_one_line_error(output: &std::process::Output, want: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("aliasctl: error: "), "{stderr}");
    assert!(stderr.contains(want), "wanted {want:?} in {stderr}");
}

#[test]
fn aliasctl_shows_links_and_relinks() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let server = daemon.server_url();
    let env = [
        ("ALIASCTL_SERVER", server.as_str()),
        ("ALIASCTL_TOKEN", TOKEN),
    ];

    let status = run_bin(ALIASCTL, &["status"], &env);
    assert!(status.status.success());
    let out = text(&status.stdout);
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("ALIAS") && header.contains("TARGETS"),
        "{out}"
    );
    let web = out
        .lines()
        .find(|l| l.starts_with("web.internal"))
        .expect(&out);
    assert!(
        web.contains("web-v1") && web.contains("127.0.0.11:8080"),
        "{web}"
    );

    let link = run_bin(ALIASCTL, &["link", "web", "web-v1", "web-v2"], &env);
    assert!(link.status.success(), "{}", text(&link.stderr));
    assert!(text(&link.stdout).contains("web.internal -> web-v1, web-v2"));

    let json = run_bin(ALIASCTL, &["--json", "status", "web"], &env);
    assert!(json.status.success());
    let dto: aliasd::api::dto::AliasDto = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(dto.targets, ["web-v1", "web-v2"]);
    assert_eq!(dto.changed_by, "ci");

    let services = run_bin(ALIASCTL, &["services", "--json"], &env);
    let list: aliasd::api::dto::ServicesDto =
        serde_json::from_slice(&services.stdout).expect("JSON");
    let v2 = list.services.iter().find(|s| s.name == "web-v2").unwrap();
    assert_eq!(v2.linked_by, ["web.internal"]);
    let table = run_bin(ALIASCTL, &["services"], &env);
    assert!(
        text(&table.stdout).starts_with("SERVICE"),
        "{}",
        text(&table.stdout)
    );

    // Flags work as well as the environment.
    let flags = run_bin(
        ALIASCTL,
        &[
            "--server", &server, "--token", TOKEN, "link", "web", "web-v2",
        ],
        &[],
    );
    assert!(flags.status.success(), "{}", text(&flags.stderr));
}

#[test]
fn aliasctl_fails_with_one_line_and_exit_1() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let server = daemon.server_url();
    let good = [
        ("ALIASCTL_SERVER", server.as_str()),
        ("ALIASCTL_TOKEN", TOKEN),
    ];
    let no_token = [("ALIASCTL_SERVER", server.as_str())];
    let bad_token = [
        ("ALIASCTL_SERVER", server.as_str()),
        ("ALIASCTL_TOKEN", "wrong-token-wrong-token"),
    ];
    let closed = [("ALIASCTL_SERVER", "http://127.0.0.1:9")];

    assert_one_line_error(
        &run_bin(ALIASCTL, &["status"], &closed),
        "cannot reach aliasd",
    );
    assert_one_line_error(
        &run_bin(ALIASCTL, &["link", "web", "web-v2"], &no_token),
        "HTTP 401",
    );
    assert_one_line_error(
        &run_bin(ALIASCTL, &["link", "web", "web-v2"], &bad_token),
        "HTTP 401",
    );
    assert_one_line_error(&run_bin(ALIASCTL, &["status", "nope"], &good), "HTTP 404");
    assert_one_line_error(
        &run_bin(ALIASCTL, &["link", "web", "web-v9"], &good),
        "HTTP 404",
    );
    assert_one_line_error(
        &run_bin(ALIASCTL, &["link", "web", "Bad Name"], &good),
        "HTTP 400",
    );
    assert_one_line_error(
        &run_bin(ALIASCTL, &["status", "--server", "ftp://x"], &[]),
        "invalid server URL",
    );
    // Usage errors are clap's: exit 2.
    let usage = run_bin(ALIASCTL, &["link", "web"], &good);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn aliasd_check_accepts_a_good_config_and_names_the_line_of_a_bad_one() {
    let fixture = Fixture::new();
    let config = fixture.config();
    let ok = run_bin(
        ALIASD,
        &["check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains(": ok ("), "{}", text(&ok.stdout));

    let good = std::fs::read_to_string(&config).unwrap();
    let bad = good.replace("targets = [\"web-v1\"]", "targets = [\"web-v7\"]");
    std::fs::write(&config, &bad).unwrap();
    let line = bad.lines().position(|l| l.contains("web-v7")).unwrap() + 1;
    let out = run_bin(
        ALIASD,
        &["check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("aliasd.toml:{line}:"))
            && stderr.contains("unknown service `web-v7`"),
        "{stderr}"
    );

    // `run` refuses the same config: non-zero, the same message, nothing served.
    let (status, stderr) = fixture.start_failing();
    assert!(!status.success());
    assert!(stderr.contains("unknown service `web-v7`"), "{stderr}");
    assert!(
        !fixture.state_file().exists(),
        "a refused config must not touch the state"
    );

    let missing = run_bin(
        ALIASD,
        &["check", "--config", "/nonexistent/aliasd.toml"],
        &[],
    );
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("/nonexistent/aliasd.toml: cannot read config"));
}

#[test]
fn an_unknown_config_key_is_refused_with_its_position() {
    let fixture = Fixture::new();
    let config = fixture.config();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("alias_ttl = 5", "alias_tll = 5")).unwrap();
    let out = run_bin(
        ALIASD,
        &["check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("aliasd.toml:") && stderr.contains("alias_tll"),
        "{stderr}"
    );
}

#[test]
fn aliasctl_defines_services_and_aliases_and_reloads() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let server = daemon.server_url();
    let env = [
        ("ALIASCTL_SERVER", server.as_str()),
        ("ALIASCTL_TOKEN", TOKEN),
    ];
    let run = |args: &[&str]| {
        let out = run_bin(ALIASCTL, args, &env);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };

    let set = run(&[
        "service",
        "set",
        "vm-v1",
        "10.7.0.1:9000",
        "10.7.0.2:9000",
        "--health",
        "kind=none",
    ]);
    assert_eq!(
        set,
        "service vm-v1 (api): 10.7.0.1:9000, 10.7.0.2:9000; check none\n"
    );
    let created = run(&[
        "alias",
        "create",
        "vm",
        "--to",
        "vm-v1",
        "--port-name",
        "grpc",
    ]);
    assert!(created.contains("vm.internal -> vm-v1"), "{created}");
    let services = run(&["services"]);
    let row = services
        .lines()
        .find(|l| l.starts_with("vm-v1") && l.contains("10.7.0.2:9000"))
        .unwrap_or_else(|| panic!("{services}"));
    assert!(
        row.contains(" api ") && row.contains("vm.internal"),
        "{row}"
    );

    // Refusals come back as one line, exit 1.
    let linked = run_bin(ALIASCTL, &["service", "delete", "vm-v1"], &env);
    assert_one_line_error(&linked, "linked by alias `vm.internal`");
    let bad = run_bin(
        ALIASCTL,
        &["service", "set", "vm-v2", "--health", "rise"],
        &env,
    );
    assert_one_line_error(&bad, "`rise` is not KEY=VALUE");

    let removed = run(&["alias", "delete", "vm"]);
    assert_eq!(removed, "alias vm.internal removed\n");
    assert_eq!(
        run(&["service", "delete", "vm-v1"]),
        "service vm-v1 deleted\n"
    );
    let history = run(&["service", "history", "vm-v1"]);
    assert!(history.contains("service_deleted"), "{history}");

    // A reload of the unchanged config applies and says so; a broken one is refused whole.
    assert_eq!(run(&["reload"]), "reloaded: no alias or service changed\n");
    let config = std::fs::read_to_string(fixture.config()).unwrap();
    std::fs::write(
        fixture.config(),
        format!("{config}\n[[alias]]\nname = \"x\"\ntargets = [\"nope\"]\n"),
    )
    .unwrap();
    let refused = run_bin(ALIASCTL, &["reload"], &env);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("aliasd.toml:") && stderr.contains("links unknown service `nope`"),
        "{stderr}"
    );
}
