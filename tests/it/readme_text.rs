//! How the tests that run the README read its shell blocks and compare what a command prints with
//! what the README shows: one set of rules, the convention the README teaches its reader, for
//! `readme.rs` (the walk-through against `aliasd demo`) and `compose.rs` ("Deploy with Docker"
//! against the Docker daemon) alike. Each test decides only how it runs the commands, and which
//! of the README's values stand for its own (ports, names) before lines are compared.
//!
//! How a block is read:
//! - A command is a line that is not a comment; a line ending in `\` goes on on the next one.
//! - A `# ...` comment at the end of a command, and every comment-only line right after the
//!   command up to the next command or blank line, is one line of what the command prints, in
//!   order. A bare `#` is an empty line.
//! - Comment-only lines that open a paragraph (at the start of the block or after a blank line)
//!   are for the reader and not checked.
//! - A command that starts with `while ` loops until the reader presses Ctrl-C: it is not run,
//!   and the lines it shows are not checked.
//!
//! How what a command prints is compared:
//! - What a command prints is its stdout and its stderr together, in the order it printed them,
//!   as the reader's terminal shows them: colour codes are dropped.
//! - Lines are compared exactly, except that each run of spaces counts as one (table columns are
//!   as wide as their widest cell), `...` inside a line stands for any text (serials, times), and
//!   a line that is only `...` stands for any number of lines. The number of lines counts: a line
//!   printed but not shown is a mismatch. A command that shows nothing is not compared.
//! - With [`Compare::loose`] (for what differs between runs of containers), also: a dotted number
//!   (an IP address, a version such as `20.10.24+dfsg1`, a size) matches any dotted number, 12
//!   hex digits (a container id) any 12 hex digits, a count in JSON (`"requests":132`) any count,
//!   and a ruler of dashes any ruler. Every other character still counts.
//! - A command must exit 0, unless a line it shows contains `error:`: then it must fail.
//! - A mismatch names the README line of the command and of the lines it shows, with what was
//!   expected and what was printed.

/// One ```` ```sh ```` block of the README.
#[derive(Debug)]
pub struct Block {
    /// The heading (by its start, as asked for) of the section it is in.
    pub section: &'static str,
    /// The README line of its opening fence.
    pub line: usize,
    /// The prose between the last heading or code block and this block: its introduction.
    pub intro: String,
    pub steps: Vec<Step>,
}

/// One command of a block with the lines the README says it prints.
#[derive(Debug)]
pub struct Step {
    /// The README line it starts on.
    pub line: usize,
    /// The command as it runs: its lines, without the comment at its end.
    pub text: String,
    /// `(README line, text)` of each line it shows.
    pub shown: Vec<(usize, String)>,
}

impl Step {
    /// A loop the reader ends with Ctrl-C: not run.
    pub fn loops_until_interrupted(&self) -> bool {
        self.text.trim_start().starts_with("while ")
    }

    /// The README shows an error: the command must fail.
    pub fn expects_failure(&self) -> bool {
        self.shown.iter().any(|(_, text)| text.contains("error:"))
    }
}

/// The shell blocks of the sections whose `## ` headings start with one of `sections`, in
/// README order.
pub fn shell_blocks(text: &str, sections: &[&'static str]) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut section: Option<&'static str> = None;
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
                out.push(Block {
                    section: name,
                    line: i + 1,
                    intro: std::mem::take(&mut intro),
                    steps: parse_block(&lines[i + 1..end], i + 2),
                });
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

/// The commands of one block whose first line is README line `first`.
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

/// How one test compares: what it needs beyond the rules in this file's header.
pub struct Compare<'a> {
    /// This run's values for the README's (ports, names), put into each shown line first.
    pub substitute: &'a dyn Fn(&str) -> String,
    /// What differs between runs of containers matches loosely (this file's header says what).
    pub loose: bool,
}

impl Compare<'_> {
    /// Whether `printed` (stdout and stderr together) and the exit status `code` (`None`: killed
    /// by a signal) are what the README says `step` does; if not, the report of the mismatch.
    pub fn check(&self, step: &Step, code: Option<i32>, printed: &str) -> Option<String> {
        let printed = strip_ansi(printed);
        let printed: Vec<&str> = printed.lines().collect();
        let shown: Vec<String> = step
            .shown
            .iter()
            .map(|(_, text)| (self.substitute)(text))
            .collect();
        let status_ok = (code == Some(0)) != step.expects_failure();
        let output_ok = shown.is_empty() || self.lines_match(&shown, &printed);
        if status_ok && output_ok {
            return None;
        }
        let mut report = format!("README.md:{}: `{}`\n", step.line, step.text);
        if !status_ok {
            report.push_str(&format!(
                "  exit status {}, but the README {}\n",
                code.map_or_else(|| "(killed)".to_owned(), |c| c.to_string()),
                if step.expects_failure() {
                    "shows an error"
                } else {
                    "shows no error (it must exit 0)"
                }
            ));
        }
        if !output_ok {
            report.push_str(&format!(
                "  the README shows (`...`: anything; runs of spaces count as one{}):\n",
                if self.loose {
                    "; any addresses, versions, container ids and counts"
                } else {
                    ""
                }
            ));
            for ((line, _), text) in step.shown.iter().zip(&shown) {
                report.push_str(&format!("    README.md:{line}: {text}\n"));
            }
            if let Some((line, want, got)) = self.first_difference(step, &shown, &printed) {
                report.push_str(&format!(
                    "  first difference, README.md:{line}:\n    expected: {want}\n    printed:  {got}\n"
                ));
            }
        }
        report.push_str("  it printed:\n");
        for line in &printed {
            report.push_str(&format!("    {line}\n"));
        }
        Some(report)
    }

    /// The first shown line that does not match the printed line at the same place, as long as
    /// no `...` line makes places ambiguous.
    fn first_difference(
        &self,
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
                (Some(w), Some(g)) if self.line_matches(w, g) => None,
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

    /// Whether `printed` matches `shown` line by line; a shown line that is only `...` matches
    /// any number of printed lines.
    fn lines_match(&self, shown: &[String], printed: &[&str]) -> bool {
        match shown.split_first() {
            None => printed.is_empty(),
            Some((first, rest)) if first.trim() == "..." => {
                (0..=printed.len()).any(|skip| self.lines_match(rest, &printed[skip..]))
            }
            Some((first, rest)) => printed.split_first().is_some_and(|(line, more)| {
                self.line_matches(first, line) && self.lines_match(rest, more)
            }),
        }
    }

    /// Whether one printed line matches one shown line.
    fn line_matches(&self, shown: &str, printed: &str) -> bool {
        let (shown, printed) = (squeeze(shown), squeeze(printed));
        let ruler = |line: &str| !line.is_empty() && line.chars().all(|c| c == '-');
        if self.loose && ruler(&shown) {
            return ruler(&printed);
        }
        let printed: Vec<char> = printed.chars().collect();
        matches(&pieces(&shown, self.loose), &printed)
    }
}

/// Runs of spaces as one, none at either end.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` without its ANSI escape sequences: docker-compose v1 colours its log prefixes even
/// into a pipe, and a terminal shows the colours, not the codes.
pub fn strip_ansi(text: &str) -> String {
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

/// A piece of a shown line.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Char(char),
    /// `...`: any text.
    Any,
    /// Loose: digits with dots between them, and an optional `+suffix`.
    Dotted,
    /// Loose: 12 hex digits, a container id.
    Id,
    /// Loose: digits after `":`, a count in JSON.
    Count,
}

/// The pieces of a shown line; only `...` stands for something else unless `loose`.
fn pieces(shown: &str, loose: bool) -> Vec<Piece> {
    let chars: Vec<char> = shown.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['.', '.', '.']) {
            out.push(Piece::Any);
            i += 3;
        } else if let Some(n) = dotted_len(rest).filter(|_| loose) {
            out.push(Piece::Dotted);
            i += n;
        } else if let Some(n) = id_len(rest, i.checked_sub(1).map(|p| chars[p])).filter(|_| loose) {
            out.push(Piece::Id);
            i += n;
        } else if loose && chars[i].is_ascii_digit() && i >= 2 && chars[i - 2..i] == ['"', ':'] {
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

/// Whether `printed` matches the pieces of a shown line.
fn matches(pieces: &[Piece], printed: &[char]) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return printed.is_empty();
    };
    match first {
        Piece::Char(c) => printed.first() == Some(c) && matches(rest, &printed[1..]),
        Piece::Any => (0..=printed.len()).any(|n| matches(rest, &printed[n..])),
        Piece::Dotted => dotted_len(printed).is_some_and(|n| matches(rest, &printed[n..])),
        Piece::Id => id_len(printed, None).is_some_and(|n| matches(rest, &printed[n..])),
        Piece::Count => {
            let n = digits_len(printed);
            n > 0 && matches(rest, &printed[n..])
        }
    }
}

#[test]
fn a_block_is_read_as_commands_and_the_lines_they_show() {
    let readme = "\
# Title

## Walk-through

Restart the demo first.

```sh
# prose for the reader
export A=1

cmd one          # first
                 # second
cmd 'a # not a comment' \\
  --more         # only
cmd three
# printed by three
#
while sleep 1; do x; done
# skipped with it
```

```text
not a shell block
```

## Elsewhere

```sh
not read
```
";
    let blocks = shell_blocks(readme, &["## Walk-through"]);
    let [block] = blocks.as_slice() else {
        panic!("one block: {blocks:#?}");
    };
    assert_eq!((block.section, block.line), ("## Walk-through", 7));
    assert_eq!(block.intro.trim(), "Restart the demo first.");
    let summary: Vec<(usize, &str, Vec<&str>)> = block
        .steps
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
            (9, "export A=1", vec![]),
            (11, "cmd one", vec!["first", "second"]),
            (13, "cmd 'a # not a comment' \\\n  --more", vec!["only"]),
            (15, "cmd three", vec!["printed by three", ""]),
            (18, "while sleep 1; do x; done", vec!["skipped with it"]),
        ]
    );
    assert_eq!(
        block.steps[1].shown[1].0, 12,
        "each shown line keeps its README line"
    );
    assert!(block.steps[4].loops_until_interrupted());
    assert!(!block.steps[3].loops_until_interrupted());
}

#[test]
fn printed_lines_match_exactly_but_for_spaces_and_dots() {
    let exact = Compare {
        substitute: &|s: &str| s.replace("5380", "40002"),
        loose: false,
    };
    let step = |shown: &[&str]| Step {
        line: 1,
        text: "cmd".to_owned(),
        shown: shown.iter().map(|s| (2, (*s).to_owned())).collect(),
    };
    let ok = |c: &Compare, shown: &[&str], printed: &str| c.check(&step(shown), Some(0), printed);
    assert_eq!(
        ok(
            &exact,
            &["a  b ... (revision 2, serial ...)"],
            "a b x (revision 2, serial 7)\n"
        ),
        None
    );
    assert!(
        ok(
            &exact,
            &["a (revision 2, serial ...)"],
            "a (revision 3, serial 7)"
        )
        .is_some()
    );
    assert!(ok(&exact, &["web-v1"], "web-v1 web-v2").is_some());
    assert_eq!(ok(&exact, &["a", "...", "z"], "a\nb\nc\nz"), None);
    assert_eq!(ok(&exact, &["a", "...", "z"], "a\nz"), None);
    assert!(ok(&exact, &["a", "z"], "a\nb\nz").is_some());
    assert!(ok(&exact, &["a"], "a\nmore").is_some());
    assert_eq!(
        ok(&exact, &[], "anything"),
        None,
        "nothing shown, nothing compared"
    );
    assert_eq!(
        ok(
            &exact,
            &["api: 127.0.0.1:5380"],
            "\u{1b}[36mapi:\u{1b}[0m 127.0.0.1:40002"
        ),
        None,
        "this run's values, and no colour codes"
    );
    assert!(
        ok(&exact, &["127.0.0.11"], "127.0.0.12").is_some(),
        "addresses count unless loose"
    );

    // The exit status: 0, unless the README shows an error.
    let fails = step(&["aliasctl: error: no such alias"]);
    assert_eq!(
        exact.check(&fails, Some(1), "aliasctl: error: no such alias"),
        None
    );
    let report = exact
        .check(&fails, Some(0), "aliasctl: error: no such alias")
        .expect("an error shown, but exit 0");
    assert!(
        report.contains("exit status 0, but the README shows an error"),
        "{report}"
    );
    let report = exact
        .check(&step(&["web-v1"]), None, "web-v2")
        .expect("killed and a different line");
    assert!(report.contains("exit status (killed)"), "{report}");
    assert!(
        report
            .contains("first difference, README.md:2:\n    expected: web-v1\n    printed:  web-v2"),
        "{report}"
    );
}

#[test]
fn loose_lines_let_only_what_differs_between_container_runs_vary() {
    let loose = Compare {
        substitute: &|s: &str| s.to_owned(),
        loose: true,
    };
    let ok = |shown: &str, printed: &str| loose.line_matches(shown, printed);
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
    assert!(ok("-----", "--------"));
    assert!(!ok("-----", "--------x"));
}
