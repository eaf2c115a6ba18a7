//! A Docker lab for the tests that are about Docker: a test image built `FROM scratch` around a
//! static binary of this crate, a network of its own, and containers on it, all labelled with the
//! lab's name and removed when the lab is dropped, even when the test fails.
//!
//! Each lab also has its own label prefix (`aliasd-it-<pid>-<n>.`), so an aliasd under test sees
//! the containers of its lab only, whatever else runs on the machine's daemon. The tests use the
//! `docker` command line for their own actions; aliasd talks to the daemon through bollard.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::support::{ConfigText, FAST_PROMOTION, Fixture};

/// The label every lab object carries, with the lab's name as its value.
pub const LAB_LABEL: &str = "aliasd-test";

/// Runs `docker` with `args`; panics with its output unless it succeeds.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the `docker` command must be installed; .ci/run checks `docker info`")
}

/// The static aliasd binary for the test image: `$ALIASD_STATIC_BIN` (`.ci/run` builds it), or
/// built here once into `target/static` (`-C target-feature=+crt-static`, no debug info).
pub fn static_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("ALIASD_STATIC_BIN") {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "ALIASD_STATIC_BIN={} is not a file",
                path.display()
            );
            return path;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = root.join("target").join("static");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root)
            .args([
                "build",
                "--bin",
                "aliasd",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .status()
            .expect("cargo build of the static test binary");
        assert!(
            status.success(),
            "building the static aliasd for the test image failed"
        );
        target_dir.join("x86_64-unknown-linux-gnu/debug/aliasd")
    })
    .clone()
}

/// A container of the lab.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub id: String,
    pub ip: IpAddr,
}

impl Container {
    pub fn running(&self) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}}", &self.id]) == "true"
    }
}

pub struct Lab {
    /// Unique per lab: names its image, network, containers and label prefix.
    pub name: String,
    pub image: String,
    pub network: String,
    pub gateway: IpAddr,
    pub prefix: String,
    _context: tempfile::TempDir,
}

impl Lab {
    /// Builds the image and creates the network. Panics, saying why, if Docker does not answer.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let info = docker_output(&["info", "--format", "{{.ServerVersion}}"]);
        assert!(
            info.status.success(),
            "the Docker daemon does not answer (`docker info` failed: {}); these tests need it",
            String::from_utf8_lossy(&info.stderr)
        );
        let name = format!(
            "aliasd-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let context = tempfile::tempdir().expect("tempdir");
        std::fs::copy(static_binary(), context.path().join("aliasd")).expect("copy the binary");
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY aliasd /aliasd\nENTRYPOINT [\"/aliasd\"]\n",
        )
        .expect("Dockerfile");
        let mut lab = Self {
            image: format!("{name}:test"),
            network: name.clone(),
            gateway: IpAddr::from([0, 0, 0, 0]),
            prefix: format!("{name}."),
            name,
            _context: context,
        };
        let context_path = lab._context.path().to_string_lossy().into_owned();
        let label = format!("{LAB_LABEL}={}", lab.name);
        docker(&[
            "build",
            "-q",
            "--label",
            &label,
            "-t",
            &lab.image,
            &context_path,
        ]);
        docker(&["network", "create", "--label", &label, &lab.network]);
        let gateway = docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            &lab.network,
        ]);
        lab.gateway = gateway
            .parse()
            .unwrap_or_else(|_| panic!("gateway `{gateway}`"));
        lab
    }

    /// Runs a container of the test image on the lab network: `docker_args` go to `docker run`,
    /// `args` to aliasd in the container.
    pub fn run(&self, name: &str, docker_args: &[&str], args: &[&str]) -> Container {
        let full = format!("{}-{name}", self.name);
        let label = format!("{LAB_LABEL}={}", self.name);
        let mut cmd: Vec<&str> = vec![
            "run",
            "-d",
            "--name",
            &full,
            "--network",
            &self.network,
            "--label",
            &label,
        ];
        cmd.extend_from_slice(docker_args);
        cmd.push(&self.image);
        cmd.extend_from_slice(args);
        let id = docker(&cmd);
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ]);
        Container {
            name: full,
            id,
            ip: ip.parse().unwrap_or_else(|_| panic!("container IP `{ip}`")),
        }
    }

    /// A backend of `service` on port 8080, labelled for discovery. After SIGTERM it goes on
    /// serving for `stop_delay`, like an app that waits for its deregistration to spread.
    pub fn backend(&self, name: &str, service: &str, stop_delay: &str) -> Container {
        let service_label = format!("{}service={service}", self.prefix);
        let port_label = format!("{}port=8080", self.prefix);
        self.run(
            name,
            &[
                "--label",
                &service_label,
                "--label",
                &port_label,
                "--stop-timeout",
                "10",
            ],
            &[
                "backend",
                "--listen",
                "0.0.0.0:8080",
                "--name",
                service,
                "--stop-delay",
                stop_delay,
            ],
        )
    }

    /// A client container whose resolver is aliasd (on the gateway, port 53): it resolves
    /// `target` before every request.
    pub fn probe(&self, target: &str) -> Container {
        let dns = self.gateway.to_string();
        self.run(
            "probe",
            &["--dns", &dns],
            &[
                "probe",
                "--target",
                target,
                "--interval",
                "10ms",
                "--duration",
                "5m",
            ],
        )
    }

    /// Stops the probe (SIGTERM) and reads its report.
    pub fn probe_report(&self, probe: &Container) -> aliasd::probe::ProbeReport {
        docker(&["stop", "-t", "10", &probe.id]);
        let out = docker_output(&["logs", &probe.id]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "the probe printed no report:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        serde_json::from_str(line).expect("the probe's report is JSON")
    }

    /// A fixture for an aliasd that discovers this lab's containers. `aliases` are
    /// `(name, targets)` naming services that only Docker defines; `extra` is more TOML.
    pub fn fixture(
        &self,
        aliases: &[(&str, &[&str])],
        socket: Option<&Path>,
        dns_on_gateway: bool,
        extra: &str,
    ) -> Fixture {
        self.fixture_with(aliases, socket, dns_on_gateway, "", extra)
    }

    /// [`Lab::fixture`] with more `[docker]` keys (`docker`: TOML lines).
    pub fn fixture_with(
        &self,
        aliases: &[(&str, &[&str])],
        socket: Option<&Path>,
        dns_on_gateway: bool,
        docker: &str,
        extra: &str,
    ) -> Fixture {
        let mut listen = vec!["\"127.0.0.1:0\"".to_owned()];
        if dns_on_gateway {
            listen.push(format!("\"{}:53\"", self.gateway));
        }
        let socket = socket.map_or(String::new(), |p| format!("socket = \"{}\"\n", p.display()));
        let mut config = ConfigText::new()
            .dns("listen", format!("[{}]", listen.join(", ")))
            .health(
                "kind = \"http\"\npath = \"/healthz\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nrise = 2\nfall = 2",
            )
            .section(FAST_PROMOTION)
            .section(&format!(
                "[docker]\nenabled = true\n{socket}label_prefix = \"{}\"\nnetwork = \"{}\"\n{docker}",
                self.prefix, self.network
            ))
            .section(extra);
        for (name, targets) in aliases {
            config = config.alias(name, targets.iter());
        }
        config.fixture()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let filter = format!("label={LAB_LABEL}={}", self.name);
        let ids = docker_output(&["ps", "-aq", "--filter", &filter]);
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker_output(&args);
        }
        let _ = docker_output(&["network", "rm", &self.network]);
        let _ = docker_output(&["rmi", "-f", &self.image]);
    }
}

/// Waits until `done` holds, polling every 20 ms; panics naming `what` after `limit`.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut done: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = done().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Unix socket that forwards to the real Docker socket, which a test can cut, hang and
/// restore: the Docker API going away, or answering nothing, and coming back, without touching
/// the daemon.
pub struct SocketProxy {
    pub path: PathBuf,
    /// Closes every connection and the listener.
    cut: CancellationToken,
    /// Stops forwarding but holds every connection open: an API that answers nothing.
    hang: CancellationToken,
}

impl SocketProxy {
    pub async fn start(path: PathBuf) -> Self {
        let mut proxy = Self {
            path,
            cut: CancellationToken::new(),
            hang: CancellationToken::new(),
        };
        proxy.restore();
        proxy
    }

    /// Closes every forwarded connection and the listening socket.
    pub fn cut(&mut self) {
        self.cut.cancel();
        let _ = std::fs::remove_file(&self.path);
    }

    /// Goes on accepting, but forwards nothing either way any more.
    pub fn hang(&mut self) {
        self.hang.cancel();
    }

    /// Closes what there was and forwards again.
    pub fn restore(&mut self) {
        self.cut();
        let listener = UnixListener::bind(&self.path).expect("bind the socket proxy");
        self.cut = CancellationToken::new();
        self.hang = CancellationToken::new();
        let (cut, hang) = (self.cut.clone(), self.hang.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => return,
                    },
                    () = cut.cancelled() => return,
                };
                let (cut, hang) = (cut.clone(), hang.clone());
                tokio::spawn(async move {
                    if !hang.is_cancelled()
                        && let Ok(mut daemon) = UnixStream::connect("/var/run/docker.sock").await
                    {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut daemon) => return,
                            () = cut.cancelled() => return,
                            () = hang.cancelled() => {}
                        }
                    }
                    // Hung: hold the client's connection, answer nothing.
                    cut.cancelled().await;
                    drop(client);
                });
            }
        });
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
