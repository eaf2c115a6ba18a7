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
//! How a block is read:
//! - A command is a line that is not a comment; a line ending in `\` goes on on the next one.
//! - A `# ...` comment at the end of a command, and every comment-only line right after the
//!   command up to the next command or blank line, is one line of what the command prints, in
//!   order. A bare `#` is an empty line.
//! - Comment-only lines that open a paragraph (at the start of the block or after a blank line)
//!   are for the reader and not checked.
//! - `export` lines stay in effect for every later command, as in the reader's terminal.
//! - A command that starts with `while ` loops until the reader presses Ctrl-C: it is skipped,
//!   with the lines it shows.
//!
//! How output is compared:
//! - What a command prints is its stdout, and when it fails its stdout followed by its stderr
//!   (the error message).
//! - Lines are compared exactly, except that each run of spaces counts as one (table columns are
//!   as wide as their widest cell, and the test's ports are longer than the README's), `...`
//!   inside a line stands for any text (serials, times), and a line that is only `...` stands for
//!   any number of lines. The number of lines counts: a line printed but not shown is a mismatch.
//! - A command must exit 0, unless a line it shows contains `error:`: then it must fail.
//! - A mismatch names the README line of the command and of the lines it shows, with what was
//!   expected and what was printed; the test goes on and reports every mismatch at the end.
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

/// The sections (`## ` headings, by their start) whose shell blocks run, in README order.
const SECTIONS: &[&str] = &[
    "## Walk-through",
    "## Services and aliases at runtime",
    "## Control API",
];

/// How long one command may take: `promote --wait` takes about 20 s with the demo's gates.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// One ```` ```sh ```` block of the README.
#[derive(Debug)]
struct Block {
    /// The README line of its opening fence.
    line: usize,
    /// Its introduction tells the reader to restart the demo first.
    restart: bool,
    commands: Vec<Step>,
}

/// One command of a block with the lines the README says it prints.
#[derive(Debug)]
struct Step {
    /// The README line it starts on.
    line: usize,
    text: String,
    /// `(README line, text)` of each line it shows.
    shown: Vec<(usize, String)>,
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&readme).expect("read README.md");
    let blocks = shell_blocks(&text, SECTIONS);
    for section in SECTIONS {
        assert!(
            blocks.iter().any(|(s, _)| s == section),
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

    let mut demo = Demo::start(work.path(), 0);
    let mut starts = 1;
    let mut exports: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let (mut ran, mut checked, mut skipped) = (0, 0, 0);
    for (_, block) in &blocks {
        assert!(
            !block.commands.is_empty(),
            "README.md:{}: a ```sh block with no command in it",
            block.line
        );
        if block.restart {
            demo.stop();
            demo = Demo::start(work.path(), starts);
            starts += 1;
        }
        for step in &block.commands {
            if step.text.trim_start().starts_with("while ") {
                skipped += 1;
                continue;
            }
            demo.assert_running();
            let script = exports
                .iter()
                .chain(std::iter::once(&step.text))
                .map(|line| localize(line, demo.ports))
                .collect::<Vec<_>>()
                .join("\n");
            let run = run_sh(&script, work.path());
            ran += 1;
            checked += step.shown.len();
            if let Some(problem) = check(step, &run, demo.ports) {
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
    // The rules above found real work: a README whose blocks no longer parse as commands with
    // shown output must not pass by checking nothing.
    assert!(
        ran >= 15 && checked >= 20,
        "only {ran} commands ran, {checked} shown lines were checked and {skipped} watchers \
         skipped: did the README's blocks change shape?"
    );
}

/// The shell blocks of the sections whose headings start with one of `sections`, in README
/// order, each with the section it is in.
fn shell_blocks(text: &str, sections: &[&'static str]) -> Vec<(&'static str, Block)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut section: Option<&'static str> = None;
    // The prose since the last heading or block: a block's introduction.
    let mut intro = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("## ") {
            section = sections.iter().copied().find(|s| line.starts_with(s));
            intro.clear();
        } else if line.starts_with("### ") {
            intro.clear();
        } else if line.trim_start().starts_with("```") {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim_start().starts_with("```"))
                .unwrap_or_else(|| panic!("README.md:{}: a code block is never closed", i + 1));
            if let (Some(name), "```sh") = (section, line.trim()) {
                let block = Block {
                    line: i + 1,
                    restart: intro.contains("Restart the demo"),
                    commands: parse_block(&lines[i + 1..end], i + 2),
                };
                out.push((name, block));
            }
            intro.clear();
            i = end;
        } else {
            intro.push_str(line);
            intro.push('\n');
        }
        i += 1;
    }
    out
}

/// The commands of one block whose first line is README line `first`, by the rules in this
/// file's header.
fn parse_block(lines: &[&str], first: usize) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    // Whether a comment-only line is more of the last command's output (else it is prose).
    let mut output_goes_on = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let number = first + i;
        if line.is_empty() {
            output_goes_on = false;
        } else if let Some(comment) = line.strip_prefix('#') {
            if output_goes_on {
                let step = steps.last_mut().expect("output follows a command");
                step.shown.push((number, comment_text(comment)));
            }
        } else {
            let mut text = String::new();
            let mut last = lines[i];
            while let Some(head) = last.strip_suffix('\\') {
                text.push_str(head);
                text.push_str("\\\n");
                i += 1;
                last = lines.get(i).unwrap_or_else(|| {
                    panic!("README.md:{number}: the block ends inside a continued command")
                });
            }
            let (command, comment) = split_comment(last);
            text.push_str(command.trim_end());
            let mut shown = Vec::new();
            if let Some(comment) = comment {
                shown.push((first + i, comment_text(comment)));
            }
            steps.push(Step {
                line: number,
                text,
                shown,
            });
            output_goes_on = true;
        }
        i += 1;
    }
    steps
}

/// A comment's text without the one space that follows `#`.
fn comment_text(after_hash: &str) -> String {
    after_hash
        .strip_prefix(' ')
        .unwrap_or(after_hash)
        .to_owned()
}

/// Splits a command line at its comment: the first `#` outside quotes that follows whitespace.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => {
                return (&line[..at], Some(&line[at + 1..]));
            }
            None => {}
        }
        previous = c;
    }
    (line, None)
}

/// What one command did.
struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `script` with `sh -c` in `dir`, in a process group of its own that is killed if it
/// overruns [`COMMAND_LIMIT`].
fn run_sh(script: &str, dir: &Path) -> Run {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_remove("ALIASCTL_SERVER")
        .env_remove("ALIASCTL_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run sh");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
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
                "`{script}` still ran after {COMMAND_LIMIT:?}\nstdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        success: status.success(),
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Whether `run` did what the README says `step` does; if not, the report of the mismatch.
fn check(step: &Step, run: &Run, ports: Ports) -> Option<String> {
    let expect_failure = step.shown.iter().any(|(_, text)| text.contains("error:"));
    let printed = if run.success {
        run.stdout.clone()
    } else {
        format!("{}{}", run.stdout, run.stderr)
    };
    let printed: Vec<&str> = printed.lines().collect();
    let shown: Vec<String> = step
        .shown
        .iter()
        .map(|(_, text)| localize(text, ports))
        .collect();
    let status_ok = run.success != expect_failure;
    let output_ok = step.shown.is_empty() || lines_match(&shown, &printed);
    if status_ok && output_ok {
        return None;
    }
    let mut report = format!("README.md:{}: `{}`\n", step.line, step.text);
    if !status_ok {
        report.push_str(&format!(
            "  exit status {}, but the README {}\n",
            run.code
                .map_or_else(|| "(killed)".to_owned(), |c| c.to_string()),
            if expect_failure {
                "shows an error"
            } else {
                "shows no error (it must exit 0)"
            }
        ));
    }
    if !output_ok {
        report.push_str("  the README shows (`...`: anything; runs of spaces count as one):\n");
        for ((line, _), text) in step.shown.iter().zip(&shown) {
            report.push_str(&format!("    README.md:{line}: {text}\n"));
        }
        if let Some((line, want, got)) = first_difference(step, &shown, &printed) {
            report.push_str(&format!(
                "  first difference, README.md:{line}:\n    expected: {want}\n    printed:  {got}\n"
            ));
        }
    }
    report.push_str("  it printed:\n");
    for line in &printed {
        report.push_str(&format!("    {line}\n"));
    }
    if run.success && !run.stderr.trim().is_empty() {
        report.push_str(&format!(
            "  and on stderr:\n    {}\n",
            run.stderr.trim_end()
        ));
    }
    Some(report)
}

/// The first shown line that does not match the printed line at the same place, as long as no
/// `...` line makes places ambiguous.
fn first_difference(
    step: &Step,
    shown: &[String],
    printed: &[&str],
) -> Option<(usize, String, String)> {
    if shown.iter().any(|s| s.trim() == "...") {
        return None;
    }
    (0..shown.len().max(printed.len())).find_map(|k| {
        let want = shown.get(k).map(String::as_str);
        let got = printed.get(k).copied();
        match (want, got) {
            (Some(w), Some(g)) if line_matches(w, g) => None,
            _ => Some((
                step.shown
                    .get(k)
                    .map_or_else(|| step.shown.last().map_or(step.line, |s| s.0), |s| s.0),
                want.unwrap_or("(nothing more)").to_owned(),
                got.unwrap_or("(nothing more)").to_owned(),
            )),
        }
    })
}

/// Whether `printed` matches `shown` line by line; a shown line that is only `...` matches any
/// number of printed lines.
fn lines_match(shown: &[String], printed: &[&str]) -> bool {
    match shown.split_first() {
        None => printed.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=printed.len()).any(|skip| lines_match(rest, &printed[skip..]))
        }
        Some((first, rest)) => printed
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && lines_match(rest, more)),
    }
}

/// Whether one printed line matches one shown line: runs of spaces count as one, and `...`
/// stands for any text.
fn line_matches(shown: &str, printed: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (shown, printed) = (squeeze(shown), squeeze(printed));
    let pieces: Vec<&str> = shown.split("...").collect();
    let [first, middle @ .., last] = pieces.as_slice() else {
        return shown == printed;
    };
    let Some(mut rest) = printed.strip_prefix(first) else {
        return false;
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
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
            if endpoints.len() == 2 && endpoints.iter().all(|e| e.health == "healthy") {
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
fn the_readme_rules_read_blocks_and_compare_lines() {
    let block = "\
# prose for the reader
export A=1

cmd one          # first
                 # second
cmd 'a # not a comment' \\
  --more         # only
cmd three
# printed by three
while sleep 1; do x; done
# skipped with it
";
    let lines: Vec<&str> = block.lines().collect();
    let steps = parse_block(&lines, 10);
    let summary: Vec<(usize, &str, Vec<&str>)> = steps
        .iter()
        .map(|s| {
            (
                s.line,
                s.text.as_str(),
                s.shown.iter().map(|(_, t)| t.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (11, "export A=1", vec![]),
            (13, "cmd one", vec!["first", "second"]),
            (15, "cmd 'a # not a comment' \\\n  --more", vec!["only"]),
            (17, "cmd three", vec!["printed by three"]),
            (19, "while sleep 1; do x; done", vec!["skipped with it"]),
        ]
    );
    assert_eq!(
        steps[1].shown[1].0, 14,
        "each shown line keeps its README line"
    );

    assert!(line_matches(
        "a  b ... (revision 2, serial ...)",
        "a b x (revision 2, serial 7)"
    ));
    assert!(!line_matches(
        "a (revision 2, serial ...)",
        "a (revision 3, serial 7)"
    ));
    assert!(!line_matches("web-v1", "web-v1 web-v2"));
    let shown = |lines: &[&str]| lines.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(lines_match(
        &shown(&["a", "...", "z"]),
        &["a", "b", "c", "z"]
    ));
    assert!(lines_match(&shown(&["a", "...", "z"]), &["a", "z"]));
    assert!(!lines_match(&shown(&["a", "z"]), &["a", "b", "z"]));
    assert!(!lines_match(&shown(&["a"]), &["a", "more"]));

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
