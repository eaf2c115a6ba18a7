//! The README's "Deploy with Docker", run as written: the test reads the ```sh block under that
//! heading from README.md itself, runs its commands (the static build, `docker build`,
//! `docker-compose up -d`, `aliasctl promote web --to web-v2 --wait --stop-old`, ...) against the
//! real Docker daemon, and checks what they print against the README, so the README cannot
//! drift from the code.
//!
//! How the block is read and what a command prints is compared: the rules in `readme_text.rs`,
//! the walk-through's own (`readme.rs`), with what differs between runs of containers
//! (addresses, container ids, versions, counts, a table's ruler) matched loosely. The commands
//! run in order in one `bash`, from the repository's root, so `cd` and `export` carry over, as in
//! the reader's terminal; the first mismatch stops the test, since every later command builds on
//! what went before.
//!
//! What the test sets, only what must be unique per run so that it can run beside other runs
//! and the reader's own project: the variables the README documents, `COMPOSE_PROJECT_NAME`,
//! `ALIASD_IMAGE`, `ALIASD_NETWORK`, `ALIASD_NET`, `ALIASD_API_PORT`, `ALIASD_PUBLIC_PORT` and
//! `ALIASD_DEPLOY_TOKEN`; and `aliasctl` on the PATH is the test's build of it (the README has
//! the reader put theirs there).
//!
//! The README's defaults of those variables, where a command prints them, are replaced by this
//! run's values before lines are compared (container names `compose_web-v1_1`, host ports `15380`
//! and `18000`, the image `aliasd:local`, the network `aliasd-demo`).
//!
//! Beyond the printed lines, the test checks that the build context held only the binary (the
//! `.dockerignore`), that the image is the size the README says, and the app's report: no failed
//! request, answers from web-v1 and from web-v2. Everything it made (containers, network,
//! volume, image) is removed with `docker-compose down -v` and `docker rmi`, even when it fails.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::lab::docker_output;
use crate::readme_text::{Compare, shell_blocks, strip_ansi};

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");

/// The README section this test runs.
const SECTION: &str = "## Deploy with Docker";

/// How long one command may take: a cold static build of every dependency takes about 6 minutes
/// on 2 idle cores, much longer on a busy machine; everything else is bounded by the promotion's
/// own 5-minute timeout.
const BUILD_LIMIT: Duration = Duration::from_secs(60 * 60);
const STEP_LIMIT: Duration = Duration::from_secs(6 * 60);

/// One `bash` that runs the steps in order and says when each has finished.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    /// `<step> <exit status>` lines, as bash prints them after each step.
    done: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
    next: usize,
}

impl Shell {
    fn start(root: &Path, envs: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin_dir = Path::new(ALIASCTL).parent().expect("aliasctl's directory");
        let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let errors = std::fs::File::create(dir.path().join("bash.err")).expect("bash.err");
        // Its own process group, so that a step that overruns is ended with all it started.
        let mut child = Command::new("bash")
            .current_dir(root)
            .env("PATH", path)
            .env_remove("ALIASCTL_SERVER")
            .env_remove("ALIASCTL_TOKEN")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(errors)
            .process_group(0)
            .spawn()
            .expect("bash must be installed");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            done,
            dir,
            next: 0,
        }
    }

    /// Runs `command` (its output to a file, its stdin empty so it cannot read the script) and
    /// returns its exit status and what it printed, or why it did not finish.
    fn run(&mut self, command: &str, limit: Duration) -> Result<(i32, String), String> {
        let n = self.next;
        self.next += 1;
        let out = self.dir.path().join(format!("{n}.out"));
        // `$?` after the step is the command's own status again, for a README line that says
        // `echo $?`.
        let script = format!(
            "{{\n{command}\n}} >'{out}' 2>&1 </dev/null\n__rc=$?; echo \"{n} $__rc\"; (exit $__rc)\n",
            out = out.display()
        );
        self.stdin
            .write_all(script.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("bash is gone ({e}): {}", self.errors()))?;
        let read = || std::fs::read_to_string(&out).unwrap_or_default();
        match self.done.recv_timeout(limit) {
            Ok(line) => {
                let (step, rc) = line
                    .split_once(' ')
                    .ok_or_else(|| format!("bash printed `{line}`"))?;
                assert_eq!(step, n.to_string(), "bash's steps out of order");
                Ok((rc.parse().expect("an exit status"), read()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "still running after {limit:?}; it printed:\n{}",
                read()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!(
                "bash exited ({:?}): {}\nthe command printed:\n{}",
                self.child.try_wait(),
                self.errors(),
                read()
            )),
        }
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bash.err")).unwrap_or_default()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // bash and whatever a step left running, by the process group's id (bash's own).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What this run made; taken down on drop, even when the test fails.
struct Project {
    compose_dir: PathBuf,
    envs: Vec<(String, String)>,
    image: String,
}

impl Project {
    fn compose(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker-compose")
            .current_dir(&self.compose_dir)
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect(
                "docker-compose must be installed (Debian: docker-compose; .ci/run installs it)",
            )
    }

    /// aliasd's last log lines, for a failure's message.
    fn aliasd_logs(&self) -> String {
        let logs = self.compose(&["logs", "--no-color", "--tail", "40", "aliasd"]);
        strip_ansi(&format!(
            "aliasd's last log lines:\n{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        ))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // v1's syntax: `-v` is --volumes here (with Docker's v2 plugin missing, `docker compose
        // down -v` would print Docker's version and remove nothing).
        let down = self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        if !down.status.success() {
            eprintln!(
                "docker-compose down -v failed: {}",
                String::from_utf8_lossy(&down.stderr)
            );
        }
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

/// A `/24` for the app network (its first three octets) that no network on the daemon uses,
/// starting from one that depends on the process, so that runs side by side differ.
fn free_net() -> String {
    let ids = docker_output(&["network", "ls", "-q"]);
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut args = vec![
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ];
    args.extend(ids.iter().map(String::as_str));
    let used = String::from_utf8_lossy(&docker_output(&args).stdout).into_owned();
    let start = std::process::id() % 150;
    (0..150)
        .map(|i| format!("172.29.{}", 100 + (start + i) % 150))
        .find(|net| !used.contains(&format!("{net}.")))
        .expect("a free 172.29.x.0/24 for the app network")
}

/// The number before ` MB` in `text` after `lead`, e.g. the README's "an image of 14.8 MB".
fn megabytes_after(text: &str, lead: &str) -> Option<f64> {
    let at = text.find(lead)? + lead.len();
    let rest = &text[at..];
    let number = rest.split(" MB").next()?;
    number.trim().parse().ok()
}

/// Docker's human size (`14.68MB`, `812kB`) in bytes.
fn docker_size(text: &str) -> Option<f64> {
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let factor = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * factor)
}

#[test]
fn the_readme_deploys_with_docker_as_written() {
    let info = docker_output(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "the Docker daemon does not answer (`docker info` failed: {}); this test needs it",
        String::from_utf8_lossy(&info.stderr)
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let blocks = shell_blocks(&readme, &[SECTION]);
    let [block] = blocks.as_slice() else {
        panic!(
            "README.md's `{SECTION}` has {} ```sh blocks; the test runs one",
            blocks.len()
        );
    };
    let steps = &block.steps;
    assert!(
        steps.iter().any(|s| s.text.contains("docker-compose up")),
        "README.md's `{SECTION}` block does not start the compose example: {steps:#?}"
    );

    // `aliasd-compose-` is what .ci/run clears after an interrupted run.
    let name = format!("aliasd-compose-{}", std::process::id());
    let image = format!("{name}:test");
    let api_port = free_port().to_string();
    let public_port = free_port().to_string();
    let envs: Vec<(String, String)> = [
        ("COMPOSE_PROJECT_NAME", name.as_str()),
        ("ALIASD_IMAGE", image.as_str()),
        ("ALIASD_NETWORK", name.as_str()),
        ("ALIASD_NET", free_net().as_str()),
        ("ALIASD_API_PORT", api_port.as_str()),
        ("ALIASD_PUBLIC_PORT", public_port.as_str()),
        ("ALIASD_DEPLOY_TOKEN", "compose-test-token-0123456789"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // The README's defaults, as they appear in what the commands print, and this run's values.
    let defaults = [
        ("compose_".to_owned(), format!("{name}_")),
        ("aliasd-demo".to_owned(), name.clone()),
        ("aliasd:local".to_owned(), image.clone()),
        ("15380".to_owned(), api_port.clone()),
        ("18000".to_owned(), public_port.clone()),
    ];
    let project = Project {
        compose_dir: root.join("examples/compose"),
        envs: envs.clone(),
        image: image.clone(),
    };
    let mut shell = Shell::start(root, &envs);

    let substitute = |line: &str| {
        defaults
            .iter()
            .fold(line.to_owned(), |line, (from, to)| line.replace(from, to))
    };
    let compare = Compare {
        substitute: &substitute,
        loose: true,
    };
    let mut printed = Vec::new();
    for step in steps.iter().filter(|s| !s.loops_until_interrupted()) {
        let limit = if step.text.contains("cargo ") {
            BUILD_LIMIT
        } else {
            STEP_LIMIT
        };
        let (rc, out) = shell.run(&step.text, limit).unwrap_or_else(|e| {
            panic!(
                "README.md:{}: `{}`: {e}\n{}",
                step.line,
                step.text,
                project.aliasd_logs()
            )
        });
        if let Some(problem) = compare.check(step, Some(rc), &out) {
            panic!(
                "a README command did not do what README.md says (with this run's names and \
                 ports):\n{problem}\n{}",
                project.aliasd_logs()
            );
        }
        printed.push((step, strip_ansi(&out)));
    }

    // The .dockerignore sends the daemon only the binary: the context is the binary's size.
    let binary = root.join("target/x86_64-unknown-linux-gnu/dist/aliasd");
    let binary_size = std::fs::metadata(&binary)
        .unwrap_or_else(|e| panic!("{}: {e} (the README's build makes it)", binary.display()))
        .len() as f64;
    let (_, build) = printed
        .iter()
        .find(|(s, _)| s.text.starts_with("docker build"))
        .expect("the README builds the image with `docker build`");
    // The classic builder, the only one Debian's Docker 20.10 has without buildx, says so.
    let context = build
        .lines()
        .find_map(|l| l.strip_prefix("Sending build context to Docker daemon"))
        .and_then(|size| docker_size(size.trim()))
        .unwrap_or_else(|| panic!("no build context size in `docker build`'s output:\n{build}"));
    assert!(
        (context - binary_size).abs() < binary_size * 0.01 + 100_000.0,
        "the build context was {context} bytes, the binary {binary_size}: the .dockerignore \
         sends more than the binary"
    );
    // The image is the size the README says, within what a change of the code moves it.
    let said = megabytes_after(&block.intro, "an image of ")
        .expect("README.md's `Deploy with Docker` says `an image of N MB` before its block");
    let size: f64 = String::from_utf8_lossy(
        &docker_output(&["image", "inspect", "-f", "{{.Size}}", &image]).stdout,
    )
    .trim()
    .parse()
    .expect("the image's size");
    assert!(
        (size / 1e6 - said).abs() <= said * 0.15,
        "the image is {:.1} MB, the README says {said} MB",
        size / 1e6
    );

    // The app's report, the line the README picks from its logs: no failed request, and answers
    // from web-v1 and from web-v2.
    let (_, logs) = printed
        .iter()
        .find(|(s, _)| s.text.contains("logs app"))
        .expect("the README shows the app's report with `docker-compose logs app`");
    let report = logs
        .lines()
        .find_map(|l| l.split_once("| ").map(|(_, r)| r.trim()))
        .unwrap_or_else(|| panic!("no report in the app's logs:\n{logs}"));
    let report: aliasd::probe::ProbeReport =
        serde_json::from_str(report).unwrap_or_else(|e| panic!("{e}: {report}"));
    assert_eq!(report.failures, 0, "{report:?}");
    assert!(report.backends.contains_key("web-v1"), "{report:?}");
    assert!(report.backends.contains_key("web-v2"), "{report:?}");
    drop(shell);
    drop(project);
}
