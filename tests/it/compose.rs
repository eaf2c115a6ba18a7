//! The compose example as the README runs it: the image from the repository's Dockerfile,
//! `docker-compose up -d`, then `aliasctl promote web --to web-v2 --wait --stop-old` is the
//! whole deploy. Everything the test made is taken down with `docker-compose down -v` and the
//! image removed, even when it fails.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::lab::{LAB_LABEL, docker, docker_output, eventually, static_binary};
use crate::support::run_bin_within;

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");
const TOKEN: &str = "compose-test-token-0123456789";

/// A compose project of the example, under names of its own.
struct Project {
    name: String,
    image: String,
    envs: Vec<(String, String)>,
    _context: tempfile::TempDir,
}

impl Project {
    fn compose(&self, args: &[&str]) -> std::process::Output {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose");
        Command::new("docker-compose")
            .current_dir(&dir)
            .args(["-p", &self.name])
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect(
                "docker-compose must be installed (Debian: docker-compose); .ci/run installs it",
            )
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        let _ = docker_output(&["rmi", "-f", &self.image]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_example_deploys_v2_with_one_promote() {
    let name = format!("aliasd-compose-{}", std::process::id());
    // The image exactly as the Dockerfile builds it, from a context holding the static binary
    // where the Dockerfile expects the release build.
    let context = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = context
        .path()
        .join("target/x86_64-unknown-linux-gnu/release");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(static_binary(), bin_dir.join("aliasd")).unwrap();
    std::fs::copy(root.join("Dockerfile"), context.path().join("Dockerfile")).unwrap();
    let image = format!("{name}:test");
    let label = format!("{LAB_LABEL}={name}");
    let api_port = free_port();
    let net = format!("172.29.{}", 100 + std::process::id() % 150);
    let project = Project {
        image: image.clone(),
        envs: vec![
            ("ALIASD_IMAGE".into(), image.clone()),
            ("ALIASD_NET".into(), net),
            ("ALIASD_NETWORK".into(), name.clone()),
            ("ALIASD_API_PORT".into(), api_port.to_string()),
            ("ALIASD_PUBLIC_PORT".into(), free_port().to_string()),
            ("ALIASD_DEPLOY_TOKEN".into(), TOKEN.into()),
        ],
        name,
        _context: context,
    };
    docker(&[
        "build",
        "-q",
        "--label",
        &label,
        "-t",
        &image,
        &project._context.path().to_string_lossy(),
    ]);
    let up = project.compose(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let server = format!("http://127.0.0.1:{api_port}");
    let client = aliasd::client::Client::new(&server, None).unwrap();
    eventually(
        Duration::from_secs(60),
        "web answering web-v1 through compose",
        async || {
            let web = client.alias("web").await.ok()?;
            (web.endpoints.len() == 1
                && web.members.iter().any(|m| {
                    m.service == "web-v1" && m.endpoints.iter().any(|e| e.health == "healthy")
                }))
            .then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "web-v2 discovered and healthy",
        async || {
            let s = client.service("web-v2").await.ok()?;
            s.endpoints
                .iter()
                .any(|e| e.health == "healthy")
                .then_some(())
        },
    )
    .await;

    let out = tokio::task::spawn_blocking(move || {
        let envs = [
            ("ALIASCTL_SERVER", server.as_str()),
            ("ALIASCTL_TOKEN", TOKEN),
        ];
        run_bin_within(
            ALIASCTL,
            &[
                "promote",
                "web",
                "--to",
                "web-v2",
                "--wait",
                "--stop-old",
                "--timeout",
                "2m",
            ],
            &envs,
            Duration::from_secs(150),
        )
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let logs = project.compose(&["logs", "--no-color", "aliasd"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{printed}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&logs.stdout)
    );
    assert!(printed.contains("stopped"), "{printed}");

    // web-v1's container is stopped, not removed; the app never failed a request.
    let ps = project.compose(&["ps", "-a"]);
    let ps = String::from_utf8_lossy(&ps.stdout);
    let v1 = ps
        .lines()
        .find(|l| l.contains("web-v1"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(v1.contains("Exit"), "{ps}");
    let stop = project.compose(&["stop", "-t", "5", "app"]);
    assert!(stop.status.success());
    let app = project.compose(&["logs", "--no-color", "app"]);
    let app = String::from_utf8_lossy(&app.stdout);
    let report = app
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once("| ")
                .map(|(_, r)| r)
                .filter(|r| r.starts_with('{'))
        })
        .unwrap_or_else(|| panic!("no report in the app's logs:\n{app}"));
    let report: aliasd::probe::ProbeReport = serde_json::from_str(report).unwrap();
    assert_eq!(report.failures, 0, "{report:?}");
    // The app was answered by v1 before the switch and by v2 after it.
    assert!(report.backends.contains_key("web-v1"), "{report:?}");
    assert!(report.backends.contains_key("web-v2"), "{report:?}");
}
