//! The README's "Deploy with Docker", run as written: the test reads the ```sh block under that
//! heading from README.md itself, runs its commands (the static build, `docker build`,
//! `docker-compose up -d`, `aliasctl promote web --to web-v2 --wait --stop-old`, ...) against the
//! real Docker daemon, and checks what they print against the README, so the README cannot
//! drift from the code.
//!
//! How the block is read:
//!
//! - Every line that is neither blank nor a comment is a command; a line ending in `\` goes on
//!   on the next one. The commands run in order in one `bash`, from the repository's root, so
//!   `cd` and `export` carry over. Each must exit 0.
//! - The `#` lines right under a command (no blank line between) are what it prints, stdout and
//!   stderr together as a terminal shows them, and all of it: the test checks them. Other
//!   comments (after a blank line, or before a command) are prose.
//!
//! What the test sets, only what must be unique per run so that it can run beside other runs
//! and the reader's own project: the variables the README documents, `COMPOSE_PROJECT_NAME`,
//! `ALIASD_IMAGE`, `ALIASD_NETWORK`, `ALIASD_NET`, `ALIASD_API_PORT`, `ALIASD_PUBLIC_PORT` and
//! `ALIASD_DEPLOY_TOKEN`; and `aliasctl` on the PATH is the test's build of it (the README has
//! the reader put theirs there).
//!
//! How an expected line matches a printed one:
//!
//! - The README's defaults of those variables are replaced by this run's values first (container
//!   names `compose_web-v1_1`, host ports `15380` and `18000`, the image `aliasd:local`, the
//!   network `aliasd-demo`).
//! - Colour codes are dropped (docker-compose v1 colours its log prefixes even into a pipe), and
//!   runs of spaces count as one: a table's columns are as wide as what is in them.
//! - `...` matches any text; a line that is only `...` matches any number of lines.
//! - What varies from run to run is matched loosely, the rest exactly: a dotted number (an IP
//!   address, a version such as `20.10.24+dfsg1`, a size), a 12-digit container id, a count in
//!   JSON (`"requests":132`), and a table's ruler of dashes.
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

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");

/// The README section this test runs.
const SECTION: &str = "## Deploy with Docker";

/// How long one command may take: a cold static build of every dependency takes about 6 minutes
/// on 2 idle cores, much longer on a busy machine; everything else is bounded by the promotion's
/// own 5-minute timeout.
const BUILD_LIMIT: Duration = Duration::from_secs(60 * 60);
const STEP_LIMIT: Duration = Duration::from_secs(6 * 60);

/// One command of the README's block and the lines the README says it prints.
#[derive(Debug)]
struct Step {
    /// The README's line number of the command's first line.
    line: usize,
    command: String,
    expected: Vec<String>,
}

/// The ```sh block under `heading` in `readme`, as steps, and the section's text.
fn section_steps(readme: &str, heading: &str) -> (Vec<Step>, String) {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("README.md has no heading `{heading}`"));
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |n| start + 1 + n);
    let section = lines[start..end].join("\n");
    let open = lines[start..end]
        .iter()
        .position(|l| l.trim_end() == "```sh")
        .map(|n| start + n)
        .unwrap_or_else(|| panic!("README.md's `{heading}` has no ```sh block"));
    let close = lines[open + 1..end]
        .iter()
        .position(|l| l.trim_end() == "```")
        .map(|n| open + 1 + n)
        .unwrap_or_else(|| panic!("README.md line {}: the ```sh block is not closed", open + 1));

    let mut steps: Vec<Step> = Vec::new();
    // Whether the previous line belonged to a command (or its output), so a `#` line is output.
    let mut in_step = false;
    let mut continued = false;
    for (i, raw) in lines[open + 1..close].iter().enumerate() {
        let line = raw.trim_end();
        let number = open + 2 + i;
        if continued {
            let step = steps.last_mut().expect("a continued command");
            step.command.push('\n');
            step.command.push_str(line);
            continued = line.ends_with('\\');
        } else if line.trim().is_empty() {
            in_step = false;
        } else if let Some(comment) = line.trim_start().strip_prefix('#') {
            if in_step {
                let step = steps.last_mut().expect("a command");
                step.expected
                    .push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
            }
        } else {
            steps.push(Step {
                line: number,
                command: line.to_owned(),
                expected: Vec::new(),
            });
            in_step = true;
            continued = line.ends_with('\\');
        }
    }
    assert!(
        !continued,
        "README.md line {close}: the last command goes on past the block"
    );
    (steps, section)
}

/// A piece of an expected line.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Char(char),
    /// `...`: any text.
    Any,
    /// Digits with dots between them, and an optional `+suffix`: an address, version or size.
    Dotted,
    /// 12 hex digits: a container id.
    Id,
    /// Digits after `":`: a count in JSON.
    Count,
}

fn pieces(expected: &str) -> Vec<Piece> {
    let chars: Vec<char> = expected.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['.', '.', '.']) {
            out.push(Piece::Any);
            i += 3;
        } else if let Some(n) = dotted_len(rest) {
            out.push(Piece::Dotted);
            i += n;
        } else if let Some(n) = id_len(rest, i.checked_sub(1).map(|p| chars[p])) {
            out.push(Piece::Id);
            i += n;
        } else if chars[i].is_ascii_digit() && i >= 2 && chars[i - 2..i] == ['"', ':'] {
            out.push(Piece::Count);
            i += digits_len(rest);
        } else {
            out.push(Piece::Char(chars[i]));
            i += 1;
        }
    }
    out
}

fn digits_len(s: &[char]) -> usize {
    s.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// The length of a dotted number at the start of `s` (`172.29.0.3`, `1.41`,
/// `20.10.24+dfsg1`, `14.68`), if there is one.
fn dotted_len(s: &[char]) -> Option<usize> {
    let mut n = digits_len(s);
    if n == 0 {
        return None;
    }
    let mut dots = 0;
    while s.get(n) == Some(&'.') && s.get(n + 1).is_some_and(char::is_ascii_digit) {
        n += 1 + digits_len(&s[n + 1..]);
        dots += 1;
    }
    if dots == 0 {
        return None;
    }
    if s.get(n) == Some(&'+') {
        n += 1 + s[n + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '~'))
            .count();
    }
    Some(n)
}

/// The length of a container id (12 lowercase hex digits, not part of a longer word) at the
/// start of `s`, whose previous character is `before`.
fn id_len(s: &[char], before: Option<char>) -> Option<usize> {
    let word = |c: &char| c.is_ascii_alphanumeric();
    let hex = s
        .iter()
        .take_while(|c| c.is_ascii_digit() || ('a'..='f').contains(*c))
        .count();
    (hex == 12 && !before.is_some_and(|c| word(&c)) && !s.get(12).is_some_and(word)).then_some(12)
}

/// Whether `actual` matches the pieces of an expected line.
fn matches(pieces: &[Piece], actual: &[char]) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return actual.is_empty();
    };
    match first {
        Piece::Char(c) => actual.first() == Some(c) && matches(rest, &actual[1..]),
        Piece::Any => (0..=actual.len()).any(|n| matches(rest, &actual[n..])),
        Piece::Dotted => dotted_len(actual).is_some_and(|n| matches(rest, &actual[n..])),
        Piece::Id => id_len(actual, None).is_some_and(|n| matches(rest, &actual[n..])),
        Piece::Count => {
            let n = digits_len(actual);
            n > 0 && matches(rest, &actual[n..])
        }
    }
}

/// `text` without its ANSI escape sequences: docker-compose v1 colours its log prefixes even
/// into a pipe, and a terminal shows the colours, not the codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: `ESC [`, parameters, then one final byte in `@`..=`~`.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs of spaces as one, no trailing space.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_ruler(line: &str) -> bool {
    !line.is_empty() && line.chars().all(|c| c == '-')
}

/// Whether the printed `actual` lines are the `expected` ones, by the rules in the module's doc.
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    let Some((first, rest)) = expected.split_first() else {
        return actual.is_empty();
    };
    if first == "..." {
        return (0..=actual.len()).any(|n| lines_match(rest, &actual[n..]));
    }
    let Some((line, actual_rest)) = actual.split_first() else {
        return false;
    };
    let ok = if is_ruler(first) {
        is_ruler(line)
    } else {
        let chars: Vec<char> = line.chars().collect();
        matches(&pieces(first), &chars)
    };
    ok && lines_match(rest, actual_rest)
}

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
    let (steps, section) = section_steps(&readme, SECTION);
    assert!(
        steps
            .iter()
            .any(|s| s.command.contains("docker-compose up")),
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

    let mut printed = Vec::new();
    for step in &steps {
        let limit = if step.command.contains("cargo ") {
            BUILD_LIMIT
        } else {
            STEP_LIMIT
        };
        let what = format!("README.md line {}: `{}`", step.line, step.command);
        let (rc, out) = shell
            .run(&step.command, limit)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", project.aliasd_logs()));
        let out = strip_ansi(&out);
        assert_eq!(
            rc,
            0,
            "{what} exited with {rc}; it printed:\n{out}\n{}",
            project.aliasd_logs()
        );
        if !step.expected.is_empty() {
            let expected: Vec<String> = step
                .expected
                .iter()
                .map(|l| {
                    let l = defaults
                        .iter()
                        .fold(l.clone(), |l, (from, to)| l.replace(from, to));
                    squeeze(&l)
                })
                .collect();
            let actual: Vec<String> = out.lines().map(squeeze).collect();
            assert!(
                lines_match(&expected, &actual),
                "{what} printed what the README does not say\n--- README (with this run's \
                 names):\n{}\n--- printed:\n{}\n{}",
                expected.join("\n"),
                out,
                project.aliasd_logs()
            );
        }
        printed.push((step, out));
    }

    // The .dockerignore sends the daemon only the binary: the context is the binary's size.
    let binary = root.join("target/x86_64-unknown-linux-gnu/dist/aliasd");
    let binary_size = std::fs::metadata(&binary)
        .unwrap_or_else(|e| panic!("{}: {e} (the README's build makes it)", binary.display()))
        .len() as f64;
    let (_, build) = printed
        .iter()
        .find(|(s, _)| s.command.starts_with("docker build"))
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
    let said = megabytes_after(&section, "an image of ")
        .expect("README.md's `Deploy with Docker` says `an image of N MB`");
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
        .find(|(s, _)| s.command.contains("logs app"))
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

#[test]
fn an_expected_line_matches_loosely_only_what_varies() {
    let ok = |expected: &str, actual: &str| {
        let chars: Vec<char> = squeeze(actual).chars().collect();
        matches(&pieces(&squeeze(expected)), &chars)
    };
    let row = "web-v1   docker   172.29.0.3:8080  docker  compose_web-v1_1 (d7a3859d366b)  healthy";
    assert!(ok(
        row,
        "web-v1 docker 172.29.131.2:8080 docker compose_web-v1_1 (0123456789ab) healthy"
    ));
    assert!(!ok(
        row,
        "web-v1 docker 172.29.131.2:8081 docker compose_web-v1_1 (0123456789ab) healthy"
    ));
    assert!(!ok(
        row,
        "web-v1 docker 172.29.0.3:8080 docker compose_web-v1_1 (0123456789ab) unhealthy"
    ));
    assert!(ok(
        "connected (API 1.41 (Docker 20.10.24+dfsg1)) since ...",
        "connected (API 1.45 (Docker 26.1.5)) since 2025-01-01T00:00:00Z"
    ));
    assert!(ok(
        r#"{"requests":132,"failures":0,"backends":{"web-v1":85},...}"#,
        r#"{"requests":7,"failures":0,"backends":{"web-v1":7},"x":1}"#
    ));
    assert!(!ok(r#"{"web-v1":85}"#, r#"{"web-v2":85}"#));
    assert!(!ok("promotion 2 started", "promotion 3 started"));
    assert!(!ok("Exit 0", "Exit 137"));
    let lines = |s: &str| s.lines().map(squeeze).collect::<Vec<_>>();
    assert!(lines_match(&lines("a\n...\nz"), &lines("a\nb\nc\nz")));
    assert!(!lines_match(&lines("a\nz"), &lines("a\nb\nz")));
    assert!(lines_match(&lines("-----"), &lines("--------")));
    assert_eq!(strip_ansi("\u{1b}[36mapp_1 |\u{1b}[0m {}"), "app_1 | {}");
}

#[test]
fn the_readme_block_is_read_as_commands_and_their_output() {
    let readme = "## Deploy with Docker\n\ntext\n\n```sh\n# prose\nRUSTFLAGS=x \\\n  cargo build\n\
                  echo hi   # says hi\n# hi\n\n# more prose\ntrue\n```\n\n## Next\n```sh\nno\n```\n";
    let (steps, section) = section_steps(readme, "## Deploy with Docker");
    let got: Vec<(usize, &str, Vec<&str>)> = steps
        .iter()
        .map(|s| {
            (
                s.line,
                s.command.as_str(),
                s.expected.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (7, "RUSTFLAGS=x \\\n  cargo build", vec![]),
            (9, "echo hi   # says hi", vec!["hi"]),
            (13, "true", vec![]),
        ]
    );
    assert!(!section.contains("## Next"));
}
