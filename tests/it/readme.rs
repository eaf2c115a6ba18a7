//! The README is tested: its walk-through runs command by command against a real `aliasd demo`,
//! and every line the README says a command prints is checked, so the README cannot drift from
//! the code.
//!
//! What runs: the ```` ```sh ```` blocks of the sections "Walk-through" (the promote subsection
//! included), "Services and aliases at runtime" and "Control API", in README order, read from
//! README.md itself. Each command runs as `sh -c` in a scratch directory whose
//! `target/release` is this build's binary directory, so the README's own
//! `export PATH="$PWD/target/release:$PATH"` is what puts `aliasd` and `aliasctl` on PATH;
//! `ALIASCTL_SERVER` and `ALIASCTL_TOKEN` are removed from the test's environment, so only the
//! README's `export` lines set them.
//!
//! How a block is read and what a command prints is compared: the rules in `readme_text.rs`,
//! which the Docker walk-through's test (`compose.rs`) follows too. Here besides: `export` lines
//! stay in effect for every later command, as in the reader's terminal; a mismatch does not stop
//! the test, which reports every mismatch at the end. curl runs with a `.curlrc` that turns its
//! progress meter off: curl draws it on stderr only when its output is not a terminal, and here
//! its output is a pipe, not the reader's terminal.
//!
//! The demo: `aliasd demo` on ports of its own (port 0 everywhere, read back from
//! `--ready-file` and, for the backends, from the API), so the test runs beside any other. The
//! README's fixed ports are replaced by the demo's in commands and shown lines alike: each number
//! `5353` (DNS), `5380` (API), `8000` (proxy) and `8080` (backends) that stands alone (not part of
//! a longer number). The backends' addresses, 127.0.0.11 and 127.0.0.12, are the demo's own.
//! Before the first command, and after each start, the test waits until both backends are
//! healthy: a reader takes longer than the two health checks that takes. A block whose
//! introduction tells the reader to restart the demo ("Restart the demo") runs against a newly
//! started one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aliasd::client::Client;
use aliasd::daemon::Ready;

use crate::readme_text::{Compare, shell_blocks};

/// The sections (`## ` headings, by their start) whose shell blocks run, in README order.
const SECTIONS: &[&str] = &[
    "## Walk-through",
    "## Services and aliases at runtime",
    "## Control API",
];

/// How long one command may take: `promote --wait` takes about 20 s with the demo's gates.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn the_readme_walk_through_runs_as_written() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&readme).expect("read README.md");
    let blocks = shell_blocks(&text, SECTIONS);
    for section in SECTIONS {
        assert!(
            blocks.iter().any(|b| b.section == *section),
            "README.md has no ```sh block under a heading starting with {section:?}"
        );
    }

    let work = tempfile::tempdir().expect("tempdir");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_aliasctl"))
        .parent()
        .expect("the binaries' directory");
    std::fs::create_dir(work.path().join("target")).expect("mkdir target");
    std::os::unix::fs::symlink(bin_dir, work.path().join("target").join("release"))
        .expect("symlink target/release");
    let curl_home = work.path().join("curl-home");
    std::fs::create_dir(&curl_home).expect("mkdir curl-home");
    std::fs::write(curl_home.join(".curlrc"), "no-progress-meter\n").expect("write .curlrc");

    let mut demo = Demo::start(work.path(), 0);
    let mut starts = 1;
    let mut exports: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let (mut ran, mut checked, mut skipped) = (0, 0, 0);
    for block in &blocks {
        assert!(
            !block.steps.is_empty(),
            "README.md:{}: a ```sh block with no command in it",
            block.line
        );
        if block.intro.contains("Restart the demo") {
            demo.stop();
            demo = Demo::start(work.path(), starts);
            starts += 1;
        }
        let ports = demo.ports;
        let compare = Compare {
            substitute: &|line| localize(line, ports),
            loose: false,
        };
        for step in &block.steps {
            if step.loops_until_interrupted() {
                skipped += 1;
                continue;
            }
            demo.assert_running();
            let script = exports
                .iter()
                .chain(std::iter::once(&step.text))
                .map(|line| localize(line, ports))
                .collect::<Vec<_>>()
                .join("\n");
            let (code, printed) = run_sh(&script, work.path(), &curl_home);
            ran += 1;
            checked += step.shown.len();
            if let Some(problem) = compare.check(step, code, &printed) {
                failures.push(problem);
            } else if step.text.trim_start().starts_with("export ") {
                exports.push(step.text.clone());
            }
        }
    }
    demo.stop();

    assert!(
        failures.is_empty(),
        "{} of the {ran} README commands did not do what README.md says \
         (the README's ports 5353, 5380, 8000 and 8080 were this demo's own):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The rules found real work: a README whose blocks no longer parse as commands with shown
    // output must not pass by checking nothing.
    assert!(
        ran >= 15 && checked >= 20,
        "only {ran} commands ran, {checked} shown lines were checked and {skipped} watchers \
         skipped: did the README's blocks change shape?"
    );
}

/// Runs `script` with `sh -c` in `dir`, in a process group of its own that is killed if it
/// overruns [`COMMAND_LIMIT`]; returns its exit status (`None`: killed by a signal) and what it
/// printed, stdout and stderr through one pipe as a terminal would show them.
fn run_sh(script: &str, dir: &Path, curl_home: &Path) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let (mut output, writer) = std::io::pipe().expect("pipe");
    let mut child = {
        // The command holds its copies of the pipe's writing end until it is dropped: dropped
        // here, so that the pipe ends when the shell and all it started have exited.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env_remove("ALIASCTL_SERVER")
            .env_remove("ALIASCTL_TOKEN")
            .env("CURL_HOME", curl_home)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("pipe"))
            .stderr(writer)
            .process_group(0);
        command.spawn().expect("run sh")
    };
    let printed = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = output.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            // The whole group: `sh` and whatever it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "`{script}` still ran after {COMMAND_LIMIT:?}; it printed:\n{}",
                printed.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), printed.join().expect("the output's reader"))
}

/// The demo's ports, which stand for the README's.
#[derive(Debug, Clone, Copy)]
struct Ports {
    dns: u16,
    api: u16,
    proxy: u16,
    backends: u16,
}

/// `text` with the README's ports replaced by `ports`: each of the numbers 5353, 5380, 8000 and
/// 8080 that is not part of a longer number.
fn localize(text: &str, ports: Ports) -> String {
    let port = |readme: &str| match readme {
        "5353" => Some(ports.dns),
        "5380" => Some(ports.api),
        "8000" => Some(ports.proxy),
        "8080" => Some(ports.backends),
        _ => None,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let digits = &rest[start..];
        let len = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        match port(&digits[..len]) {
            Some(p) => out.push_str(&p.to_string()),
            None => out.push_str(&digits[..len]),
        }
        rest = &digits[len..];
    }
    out.push_str(rest);
    out
}

/// A running `aliasd demo`.
struct Demo {
    child: Child,
    ports: Ports,
    log: PathBuf,
}

impl Demo {
    /// Starts the demo on free ports (the `n`th start in `dir`) and waits until both backends
    /// are healthy.
    fn start(dir: &Path, n: usize) -> Self {
        let ready_file = dir.join(format!("demo-{n}.json"));
        let log = dir.join(format!("demo-{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args([
                "demo",
                "--dns-port",
                "0",
                "--api-port",
                "0",
                "--proxy-port",
                "0",
                "--backend-port",
                "0",
                "--ready-file",
            ])
            .arg(&ready_file)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("demo-{n}.out"))).expect("out"))
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn aliasd demo");
        // Made at once, so that a failed start still kills the process (Drop).
        let mut demo = Self {
            child,
            ports: Ports {
                dns: 0,
                api: 0,
                proxy: 0,
                backends: 0,
            },
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready: Ready = loop {
            if let Ok(bytes) = std::fs::read(&ready_file) {
                break serde_json::from_slice(&bytes).expect("the ready file is JSON");
            }
            demo.assert_running();
            assert!(
                Instant::now() < deadline,
                "aliasd demo not ready in 30s:\n{}",
                demo.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let (Some(dns), Some(proxy)) = (ready.dns.first(), ready.proxies.first()) else {
            panic!("the demo has a DNS listener and a proxy: {ready:?}");
        };
        demo.ports = Ports {
            dns: dns.port(),
            api: ready.api.port(),
            proxy: proxy.port(),
            backends: demo.wait_healthy(&ready),
        };
        demo
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("aliasd demo exited with {status}:\n{}", self.log());
        }
    }

    /// Waits until every endpoint of the demo's services is healthy; returns the backends' port.
    fn wait_healthy(&mut self, ready: &Ready) -> u16 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = Client::new(&format!("http://{}", ready.api), None).expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let services = runtime
                .block_on(client.services())
                .expect("the demo's API answers");
            let endpoints: Vec<_> = services
                .services
                .iter()
                .flat_map(|s| &s.endpoints)
                .collect();
            if endpoints.len() == 2
                && endpoints
                    .iter()
                    .all(|e| e.health == aliasd::api::dto::Health::Healthy)
            {
                let addr: std::net::SocketAddr =
                    endpoints[0].addr.parse().expect("an endpoint address");
                return addr.port();
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the demo's backends not healthy in 30s: {:?}\n{}",
                services.services,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for the clean exit that removes the demo's temporary directory.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "aliasd demo ended with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "aliasd demo ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_readmes_ports_become_the_demos() {
    let ports = Ports {
        dns: 40001,
        api: 40002,
        proxy: 40003,
        backends: 40004,
    };
    assert_eq!(
        localize(
            "dig @127.0.0.1 -p 5353 x; 0 1 8080 h; 127.0.0.1:5380/ :8000 58080 80800",
            ports
        ),
        "dig @127.0.0.1 -p 40001 x; 0 1 40004 h; 127.0.0.1:40002/ :40003 58080 80800"
    );
}
