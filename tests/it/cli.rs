//! The binaries as an operator runs them: `aliasctl` output and exit codes, `aliasd check`, and
//! `aliasd run` refusing a bad config.

use std::time::Duration;

use crate::support::{Fixture, TOKEN, run_bin, run_bin_within};

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

/// `aliasctl cluster` against a single node: one row, this node as the leader, mode single, no
/// etcd; `--json` is the API's status.
#[test]
fn aliasctl_cluster_shows_a_single_node_as_its_own_leader() {
    let fixture = Fixture::new();
    let daemon = fixture.start();
    let server = daemon.server_url();
    let env = [("ALIASCTL_SERVER", server.as_str())];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();

    let out = run_bin(ALIASCTL, &["cluster"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NODE", "API", "ROLE", "APPLIED", "BEHIND", "CONFIG", "STARTED"
        ],
        "{printed}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            host.as_str(),
            &daemon.api.to_string(),
            "leader",
            "0",
            "0",
            "same"
        ],
        "{printed}"
    );
    assert!(row[6].ends_with('Z') && row[6].contains('T'), "{printed}");
    assert_eq!(
        lines[2],
        format!("mode: single (no [cluster]: the local journal, no etcd); this node: {host}"),
        "{printed}"
    );
    assert_eq!(lines.len(), 3, "nothing about etcd or problems:\n{printed}");

    let json = run_bin(ALIASCTL, &["cluster", "--json"], &env);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let status: aliasd::cluster::ClusterStatus =
        serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(status.mode, aliasd::cluster::ClusterMode::Single);
    assert!(status.is_leader(), "{status:?}");
    assert_eq!(status.leader.as_deref(), Some(host.as_str()));
    assert_eq!(status.nodes.len(), 1);
    assert_eq!(status.nodes[0].api, daemon.api);
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
    // A 401 says how to pass a token, in aliasctl's terms: the user never wrote a header.
    let empty_token = [("ALIASCTL_SERVER", server.as_str()), ("ALIASCTL_TOKEN", "")];
    for (what, out) in [
        (
            "no token",
            run_bin(ALIASCTL, &["link", "web", "web-v2"], &no_token),
        ),
        (
            "an empty ALIASCTL_TOKEN",
            run_bin(ALIASCTL, &["link", "web", "web-v2"], &empty_token),
        ),
        (
            "--token ''",
            run_bin(
                ALIASCTL,
                &["--token", "", "link", "web", "web-v2"],
                &no_token,
            ),
        ),
    ] {
        let stderr = text(&out.stderr);
        assert_one_line_error(&out, "HTTP 401");
        for word in ["--token", "ALIASCTL_TOKEN", "[[api.token]]"] {
            assert!(stderr.contains(word), "{what}: {stderr}");
        }
        assert!(
            !stderr.contains("Authorization") && !stderr.contains("refused"),
            "{what}: {stderr}"
        );
    }
    let refused = run_bin(ALIASCTL, &["link", "web", "web-v2"], &bad_token);
    assert_one_line_error(&refused, "HTTP 401");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("refused the token given by --token or ALIASCTL_TOKEN")
            && stderr.contains("the token is not valid")
            && stderr.contains("[[api.token]] in aliasd's config"),
        "{stderr}"
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

/// Asserts a usage error: exit 2, nothing on stdout, `want` on stderr.
fn assert_usage_error(output: &std::process::Output, want: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    assert!(stderr.contains(want), "wanted {want:?} in {stderr}");
}

#[test]
fn every_duration_and_count_flag_is_checked_before_anything_is_sent() {
    // Nothing listens here: each refusal comes from aliasctl itself, in the server's words.
    let closed = [("ALIASCTL_SERVER", "http://127.0.0.1:9")];
    let promote = |flags: &[&str]| {
        let mut args = vec!["promote", "web", "--to", "web-v2"];
        args.extend_from_slice(flags);
        run_bin(ALIASCTL, &args, &closed)
    };
    assert_usage_error(
        &promote(&["--observe", "5x"]),
        "observe: `5x` is not a duration",
    );
    assert_usage_error(
        &promote(&["--observe", "8days"]),
        "observe must be between 0s and 7days (got 8days)",
    );
    assert_usage_error(
        &promote(&["--warm-timeout", "10ms"]),
        "warm_timeout must be between 100ms and 1day (got 10ms)",
    );
    assert_usage_error(
        &promote(&["--min-healthy", "0"]),
        "min_healthy must be between 1 and 10000 (got 0)",
    );
    assert_usage_error(
        &promote(&["--reason", &"x".repeat(1025)]),
        "reason must be at most 1024 characters",
    );
    assert_usage_error(
        &promote(&["--wait", "--timeout", "5x"]),
        "`5x` is not a duration",
    );
    assert_usage_error(
        &run_bin(ALIASCTL, &["rollback", "web", "--observe", "soon"], &closed),
        "observe: `soon` is not a duration",
    );
    assert_usage_error(
        &run_bin(ALIASCTL, &["watch", "web", "--timeout", "0s"], &closed),
        "the timeout must be between",
    );
    let set = |health: &[&str]| {
        let mut args = vec!["service", "set", "vm-v1", "10.7.0.1:9000"];
        for h in health {
            args.extend(["--health", h]);
        }
        run_bin(ALIASCTL, &args, &closed)
    };
    assert_usage_error(&set(&["rise"]), "`rise` is not KEY=VALUE");
    assert_usage_error(&set(&["interval=5x"]), "interval: `5x` is not a duration");
    assert_usage_error(&set(&["fall=0"]), "fall must be between 1 and 100");
    assert_usage_error(
        &set(&["kind=udp"]),
        "kind: `udp` is not one of http, tcp, none",
    );
    // Settings that only conflict together are checked together, still before sending.
    let both = set(&["interval=1s", "timeout=2s"]);
    assert_usage_error(&both, "--health: timeout must not exceed interval");
    assert_eq!(text(&both.stderr).lines().count(), 1);
    // Values in bounds go through to the server, which is not there.
    assert_one_line_error(
        &promote(&["--observe", "30s", "--min-healthy", "1"]),
        "cannot reach aliasd",
    );
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
    assert!(
        text(&ok.stdout).ends_with(": ok (1 zone, 5 services, 3 aliases)\n"),
        "{}",
        text(&ok.stdout)
    );

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

/// Runs `aliasd` in `dir` without `ALIASD_DEPLOY_TOKEN` in its environment; kills it after 30s
/// (a `run` that wrongly started would otherwise serve forever).
fn aliasd_without_the_deploy_token(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(ALIASD)
        .args(args)
        .current_dir(dir)
        .env_remove("ALIASD_DEPLOY_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aliasd");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

#[test]
fn aliasd_check_of_the_shipped_config_warns_of_its_token_variable_and_run_refuses_it() {
    // The command the example config's first line suggests, where the secret is not set.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join("config/aliasd.toml")).unwrap();
    let (line, col) = config
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("\"ALIASD_DEPLOY_TOKEN\"").map(|c| (i + 1, c + 1)))
        .expect("the example config reads its token from ALIASD_DEPLOY_TOKEN");
    let check = aliasd_without_the_deploy_token(root, &["check", "--config", "config/aliasd.toml"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    assert_eq!(
        text(&check.stderr),
        format!(
            "aliasd: warning: config/aliasd.toml:{line}:{col}: api.token `deploy`: environment variable \
             `ALIASD_DEPLOY_TOKEN` is not set here; `aliasd run` refuses to start without it\n"
        )
    );
    assert_eq!(
        text(&check.stdout),
        "config/aliasd.toml: ok (1 zone, 3 services, 2 aliases); 1 warning on stderr\n"
    );

    // `run` refuses it: the secret is needed to serve.
    let run = aliasd_without_the_deploy_token(root, &["run", "--config", "config/aliasd.toml"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains(&format!(
            "config/aliasd.toml:{line}:{col}: api.token `deploy`: environment variable `ALIASD_DEPLOY_TOKEN` is not set"
        )),
        "{stderr}"
    );
}

#[test]
fn aliasd_check_names_a_misspelt_table_where_it_is_written() {
    let fixture = Fixture::new();
    let config = fixture.config();
    let good = std::fs::read_to_string(&config).unwrap();
    let bad = good.replace("[[service]]", "[[services]]");
    assert_ne!(bad, good);
    std::fs::write(&config, &bad).unwrap();
    let line = bad.lines().position(|l| l == "[[services]]").unwrap() + 1;
    let out = run_bin(
        ALIASD,
        &["check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "aliasd.toml:{line}:3: unknown key `services` at the top level; did you mean `service`? (each one is written [[service]])"
        )),
        "{stderr}"
    );
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
    assert_usage_error(&bad, "`rise` is not KEY=VALUE");

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

/// Runs `aliasd demo` with `flags`, which must make it fail; returns its one error line after
/// checking that stderr holds nothing else worth a user's attention.
fn failing_demo(flags: &[&str]) -> String {
    let mut args = vec!["demo"];
    args.extend_from_slice(flags);
    let out = run_bin_within(ALIASD, &args, &[], Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("aliasd: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    // The demo's connection caps are aliasd's defaults: nothing for its user to act on.
    assert!(!stderr.contains("WARN"), "{stderr}");
    errors[0].to_owned()
}

#[test]
fn a_taken_demo_port_is_one_line_naming_the_address_and_the_flag() {
    // A free port for the backends: bound and let go (the demo binds it a moment later).
    let backend_port = std::net::TcpListener::bind("127.0.0.11:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let dns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns_port = dns.local_addr().unwrap().port().to_string();
    let line = failing_demo(&[
        "--dns-port",
        &dns_port,
        "--api-port",
        "0",
        "--proxy-port",
        "0",
        "--backend-port",
        &backend_port,
    ]);
    assert_eq!(
        line,
        format!(
            "aliasd: error: cannot listen for DNS on 127.0.0.1:{dns_port}: another program has that port; choose another port with --dns-port"
        )
    );
    drop(dns);

    let backend = std::net::TcpListener::bind("127.0.0.11:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port().to_string();
    let line = failing_demo(&[
        "--dns-port",
        "0",
        "--api-port",
        "0",
        "--proxy-port",
        "0",
        "--backend-port",
        &backend_port,
    ]);
    assert_eq!(
        line,
        format!(
            "aliasd: error: cannot listen for backend web-v1 on 127.0.0.11:{backend_port}: another program has that port; choose another port with --backend-port"
        )
    );
}
