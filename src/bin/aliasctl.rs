//! aliasctl: the operator's command line for the aliasd control API.
//!
//! Tables for people, `--json` for scripts. Exit 0 on success, 1 with a one-line error otherwise,
//! 2 for a usage error. `promote --wait` and `rollback --wait` follow the operation to its end:
//! 0 when it completed (or nothing had to change), 3 when it ended without completing (aborted,
//! warm timeout, automatic rollback), 4 when `--timeout` expired first.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use tokio::time::Instant;

use aliasd::api::dto::{
    AliasDto, EventDto, HistoryDto, MemberDto, OperationDto, OperationReply, PlanDto,
    PromoteRequest, RetiredDto, RollbackRequest, ServiceDto,
};
use aliasd::client::{Client, ClientError, EventStream, Promotion};

/// The operation completed: the alias is stable on the new services (or nothing had to change).
const EXIT_OK: u8 = 0;
/// Any other error: unreachable, refused (4xx), the state could not be read.
const EXIT_ERROR: u8 = 1;
/// The operation ended without completing: aborted, warm timeout or automatic rollback.
const EXIT_FAILED: u8 = 3;
/// `--timeout` expired before the operation ended; it goes on in aliasd.
const EXIT_TIMEOUT: u8 = 4;
/// `watch` stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
const EXIT_INTERRUPTED: u8 = 130;

/// How long `--wait` waits by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// How often `--wait` reads the history when the events stream is gone.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Consecutive failed history reads before `--wait` gives up (a few seconds: an aliasd restart
/// is ridden out).
const POLL_FAILURES: u32 = 6;

#[derive(Parser)]
#[command(
    name = "aliasctl",
    version,
    about = "Control aliasd: inspect, relink and promote DNS aliases"
)]
struct Cli {
    /// The aliasd API base URL.
    #[arg(
        long,
        global = true,
        env = "ALIASCTL_SERVER",
        default_value = "http://127.0.0.1:5380"
    )]
    server: String,
    /// Bearer token for changes.
    #[arg(long, global = true, env = "ALIASCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show every alias, or one alias in detail.
    Status { alias: Option<String> },
    /// Link ALIAS to exactly the SERVICEs given (web web-v1 web-v2).
    Link {
        alias: String,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// List the services and the aliases that link them.
    Services,
    /// Promote ALIAS to new services: warm, mixed, draining, then stable on the new ones.
    Promote {
        alias: String,
        /// A service to promote to; repeat for several.
        #[arg(long = "to", value_name = "SERVICE", required = true)]
        to: Vec<String>,
        #[command(flatten)]
        gates: GateArgs,
        /// Why, recorded in the history.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Show the plan and change nothing.
        #[arg(long, conflicts_with_all = ["wait", "timeout"])]
        dry_run: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Confirm the running promotion of ALIAS (one started with --confirm-gate).
    Confirm {
        alias: String,
        /// Why, recorded in the history.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Abort the running promotion or rollback of ALIAS: it answers with its old services again.
    Abort {
        alias: String,
        /// Why, recorded in the history.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Roll ALIAS back to an earlier revision (by default the targets before the last change),
    /// through the same gates as a promotion.
    Rollback {
        alias: String,
        /// The revision (from `aliasctl history`) whose services to return to.
        #[arg(long = "to", value_name = "REV")]
        to: Option<u64>,
        #[command(flatten)]
        gates: GateArgs,
        /// Why, recorded in the history.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Every change of ALIAS, oldest first.
    History { alias: String },
    /// Follow ALIAS live: its phase and the health of its members, until Ctrl-C.
    Watch {
        alias: String,
        /// Exit (0) as soon as the alias is stable with no operation running.
        #[arg(long)]
        until_stable: bool,
        /// Give up (exit 4) after this long.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
}

/// The gates of a promotion or rollback; unset ones come from the server's defaults.
#[derive(Args)]
struct GateArgs {
    /// How long both versions answer before the old one drains ("30s").
    #[arg(long, value_name = "DURATION")]
    observe: Option<String>,
    /// After observing, wait in phase mixed for `aliasctl confirm`.
    #[arg(long)]
    confirm_gate: bool,
    /// Healthy endpoints the new services need (default: all of them).
    #[arg(long, value_name = "N")]
    min_healthy: Option<u32>,
    /// How long the new services have to become healthy ("2m").
    #[arg(long, value_name = "DURATION")]
    warm_timeout: Option<String>,
}

#[derive(Args)]
struct WaitArgs {
    /// Follow the operation to its end; the exit status says how it ended (0, 3 or 4).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (exit 4) [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "wait")]
    timeout: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    aliasd::config::parse_duration(text)
}

/// Why a command failed: one line, exit 1.
#[derive(Debug)]
struct Error(String);

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        Self(e.to_string())
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aliasctl: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Error(e)) => {
            eprintln!("aliasctl: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Writes `text` to stdout at once. A closed stdout (`aliasctl watch | head`) ends the program.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(i32::from(EXIT_ERROR));
    }
}

/// Writes one line to stdout.
fn say(line: &str) {
    out(&format!("{line}\n"));
}

async fn run(cli: Cli) -> Result<u8> {
    let client = Client::new(&cli.server, cli.token.clone())?;
    let json = cli.json;
    let text = match cli.command {
        Command::Status { alias: None } => {
            let aliases = client.aliases().await?;
            if json {
                to_json(&aliases)
            } else {
                alias_table(&aliases)
            }
        }
        Command::Status { alias: Some(a) } => {
            let alias = client.alias(&a).await?;
            if json {
                to_json(&alias)
            } else {
                alias_detail(&alias)
            }
        }
        Command::Link { alias, services } => {
            let alias = client.link(&alias, &services).await?;
            if json {
                to_json(&alias)
            } else {
                format!(
                    "{} -> {} (revision {}, serial {})\n",
                    alias.name,
                    alias.targets.join(", "),
                    alias.revision,
                    alias.serial
                )
            }
        }
        Command::Services => {
            let services = client.services().await?;
            if json {
                to_json(&services)
            } else {
                service_table(&services)
            }
        }
        Command::Promote {
            alias,
            to,
            gates,
            reason,
            dry_run,
            wait,
        } => {
            let request = PromoteRequest {
                to: Some(aliasd::api::dto::OneOrMany::Many(to)),
                observe: gates.observe,
                confirm: gates.confirm_gate.then_some(true),
                min_healthy: gates.min_healthy,
                warm_timeout: gates.warm_timeout,
                reason,
                stop_old: None,
            };
            if dry_run {
                match client.promote(&alias, &request, true).await? {
                    Promotion::Planned(plan) if json => to_json(&plan),
                    Promotion::Planned(plan) => plan_text(&plan),
                    Promotion::Operation(reply) => {
                        return Err(Error(format!(
                            "asked for a dry run but aliasd started an operation on {}",
                            reply.alias.name
                        )));
                    }
                }
            } else {
                let send = async {
                    match client.promote(&alias, &request, false).await? {
                        Promotion::Operation(reply) => Ok(*reply),
                        Promotion::Planned(_) => Err(Error(
                            "aliasd answered with a plan, not an operation".into(),
                        )),
                    }
                };
                return operation(&client, json, &wait, send).await;
            }
        }
        Command::Rollback {
            alias,
            to,
            gates,
            reason,
            wait,
        } => {
            let request = RollbackRequest {
                to_revision: to,
                observe: gates.observe,
                confirm: gates.confirm_gate.then_some(true),
                min_healthy: gates.min_healthy,
                warm_timeout: gates.warm_timeout,
                reason,
            };
            let send = async { Ok::<_, Error>(client.rollback(&alias, &request).await?) };
            return operation(&client, json, &wait, send).await;
        }
        Command::Confirm { alias, reason } => {
            let reply = client.confirm(&alias, reason).await?;
            if json {
                to_json(&reply)
            } else {
                let a = &reply.alias;
                format!("{}: confirmed; {}\n", a.name, where_is(a))
            }
        }
        Command::Abort { alias, reason } => {
            let reply = client.abort(&alias, reason).await?;
            if json {
                to_json(&reply)
            } else {
                let a = &reply.alias;
                let mut line = format!("{}: aborted; {}", a.name, where_is(a));
                if let Some(r) = &a.retired {
                    line.push_str(&format!("; {}", retired_text(r)));
                }
                line + "\n"
            }
        }
        Command::History { alias } => {
            let history = client.history(&alias).await?;
            if json {
                to_json(&history)
            } else {
                history_table(&history)
            }
        }
        Command::Watch {
            alias,
            until_stable,
            timeout,
        } => return watch(&client, &alias, until_stable, timeout, json).await,
    };
    out(&text);
    Ok(EXIT_OK)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn compact_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

// ---- promote and rollback ----

/// Sends a promote or rollback (`send`) and, with `--wait`, follows it to its end.
async fn operation(
    client: &Client,
    json: bool,
    wait: &WaitArgs,
    send: impl Future<Output = Result<OperationReply>>,
) -> Result<u8> {
    if !wait.wait {
        let reply = send.await?;
        out(&if json {
            to_json(&reply)
        } else {
            started_text(&reply) + "\n"
        });
        return Ok(EXIT_OK);
    }
    let timeout = wait.timeout.unwrap_or(DEFAULT_WAIT);
    let deadline = Instant::now() + timeout;
    // Subscribe before sending, so no change of the operation can slip by unseen.
    // Should aliasd not offer the stream, the history is read instead.
    let events = match client.events().await {
        Ok(stream) => Ok(stream),
        Err(e @ (ClientError::Unreachable { .. } | ClientError::BadUrl(_))) => return Err(e.into()),
        Err(e) => Err(e.to_string()),
    };
    let reply = send.await?;
    if json {
        say(&compact_json(&reply));
    } else if let (true, Some(op)) = (reply.started, &reply.alias.operation) {
        // The phases follow, one line each.
        say(&format!(
            "{}: {} {} started: {} → {}",
            reply.alias.name,
            op_word(&op.kind),
            op.id,
            plus(&op.from),
            plus(&op.to)
        ));
    } else {
        say(&started_text(&reply));
    }
    if !reply.started {
        return Ok(EXIT_OK);
    }
    let op = match &reply.alias.operation {
        Some(op) => op.id,
        None => started_op(client, &reply.alias).await?,
    };
    let mut follow = Follow::new(client, &reply.alias, op, json);
    match tokio::time::timeout_at(deadline, follow.run(events)).await {
        Ok(result) => result,
        Err(_) => {
            follow.timed_out(timeout).await;
            Ok(EXIT_TIMEOUT)
        }
    }
}

/// The id of the operation a reply started when the reply no longer shows it (it ended within
/// the request): the last `started` change up to the reply's revision.
async fn started_op(client: &Client, alias: &AliasDto) -> Result<u64> {
    client
        .history(&alias.name)
        .await?
        .iter()
        .rev()
        .find(|e| e.change == "started" && e.revision <= alias.revision)
        .and_then(|e| e.op.or(Some(e.revision)))
        .ok_or_else(|| {
            Error(format!(
                "{}: the operation started, but its start is not in the history",
                alias.name
            ))
        })
}

fn op_word(kind: &str) -> &'static str {
    if kind == "rollback" {
        "rollback"
    } else {
        "promotion"
    }
}

fn plus(services: &[String]) -> String {
    if services.is_empty() {
        "(nothing)".into()
    } else {
        services.join("+")
    }
}

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The one-line summary of what a promote or rollback did.
fn started_text(reply: &OperationReply) -> String {
    let a = &reply.alias;
    if !reply.started {
        return format!(
            "{}: already answers with {}: nothing had to change",
            a.name,
            plus(&a.answering)
        );
    }
    match &a.operation {
        Some(op) => format!(
            "{}: {} {} started: {} → {} (phase {}{})",
            a.name,
            op_word(&op.kind),
            op.id,
            plus(&op.from),
            plus(&op.to),
            a.phase,
            op.phase_deadline
                .as_ref()
                .map(|d| format!(", until {d}"))
                .unwrap_or_default()
        ),
        None => format!("{}: started and already ended; {}", a.name, where_is(a)),
    }
}

/// Where an alias is, in a few words: its phase, its answers, what ends the phase.
fn where_is(a: &AliasDto) -> String {
    let mut s = format!("phase {}, answering {}", a.phase, plus(&a.answering));
    if let Some(op) = &a.operation {
        s.push_str(&format!(
            " ({} {} {} → {})",
            op_word(&op.kind),
            op.id,
            plus(&op.from),
            plus(&op.to)
        ));
        if let Some(until) = &op.drain_until {
            s.push_str(&format!(", draining until {until}"));
        } else if a.phase == "mixed" && op.confirm && !op.confirmed {
            s.push_str(&format!(
                ", observing until {} then waiting for a confirm",
                op.phase_deadline.as_deref().unwrap_or("?")
            ));
        } else if let Some(deadline) = &op.phase_deadline {
            s.push_str(&format!(", until {deadline}"));
        }
    }
    s
}

fn retired_text(r: &RetiredDto) -> String {
    if r.safe_to_stop {
        format!(
            "{} safe to stop since {}",
            plus(&r.services),
            r.safe_to_stop_at
        )
    } else {
        format!(
            "{} not safe to stop before {}",
            plus(&r.services),
            r.safe_to_stop_at
        )
    }
}

/// Follows one operation through the events (or, without them, the history) and prints one
/// line per change.
struct Follow<'a> {
    client: &'a Client,
    /// The alias's full name, as events carry it.
    alias: String,
    op: u64,
    kind: &'static str,
    json: bool,
    to: Vec<String>,
    from: Vec<String>,
    /// The warming gate: healthy endpoints needed, and of how many.
    need: u32,
    confirm: bool,
    observe: String,
    warm_timeout: String,
    /// The highest revision handled, so the history and the events never print a change twice.
    seen: u64,
    /// The phase after the last change handled.
    phase: String,
}

impl<'a> Follow<'a> {
    fn new(client: &'a Client, alias: &AliasDto, op: u64, json: bool) -> Self {
        let operation: Option<&OperationDto> = alias.operation.as_ref().filter(|o| o.id == op);
        let to = operation.map(|o| o.to.clone()).unwrap_or_default();
        let total: usize = alias
            .members
            .iter()
            .filter(|m| to.contains(&m.service))
            .map(|m| m.endpoints.len())
            .sum();
        let need = operation
            .and_then(|o| o.min_healthy)
            .unwrap_or(total as u32)
            .max(1);
        Self {
            client,
            alias: alias.name.clone(),
            op,
            kind: operation.map_or("promotion", |o| op_word(&o.kind)),
            json,
            from: operation.map(|o| o.from.clone()).unwrap_or_default(),
            to,
            need,
            confirm: operation.is_some_and(|o| o.confirm),
            observe: operation.map(|o| o.observe.clone()).unwrap_or_default(),
            warm_timeout: operation
                .map(|o| o.warm_timeout.clone())
                .unwrap_or_default(),
            seen: op.saturating_sub(1),
            phase: alias.phase.clone(),
        }
    }

    /// Whether `entry` is a change of this operation.
    ///
    /// Changes normally carry the operation's id. One that ends the operation may lack it (when
    /// it retired nothing); operations of one alias never overlap, so the first end after the
    /// start is this one's.
    fn is_ours(&self, entry: &HistoryDto) -> bool {
        entry.alias == self.alias
            && entry.revision > self.seen
            && (entry.op == Some(self.op)
                || (entry.op.is_none() && entry.revision > self.op && is_end(&entry.change)))
    }

    /// Follows the events until the operation ends; falls back to the history when the stream
    /// breaks. Returns the exit status.
    async fn run(&mut self, events: Result<EventStream, String>) -> Result<u8> {
        // Why the events are not followed (any more), for the message should the history fail too.
        let gone = match events {
            Err(why) => why,
            Ok(mut stream) => loop {
                match stream.next_event().await {
                    Some(Ok(EventDto::Change {
                        entry,
                        retired,
                        drain_until,
                    })) => {
                        if self.is_ours(&entry)
                            && let Some(code) = self.handle(&entry, retired.as_ref(), drain_until)
                        {
                            return Ok(code);
                        }
                    }
                    Some(Ok(EventDto::Health {
                        service,
                        endpoint,
                        health,
                        error,
                        ..
                    })) => self.health(&service, &endpoint, &health, error.as_deref()),
                    Some(Ok(EventDto::Lagged { .. })) => {
                        // Changes may have been skipped: the history has them.
                        if let Some(code) = self.poll().await? {
                            return Ok(code);
                        }
                    }
                    Some(Ok(_)) => {}
                    // One message that is not an event; the next ones may be fine.
                    Some(Err(ClientError::Protocol { .. })) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "the events stream ended".to_owned(),
                }
            },
        };
        let mut failures = 0;
        loop {
            match self.poll().await {
                Ok(Some(code)) => return Ok(code),
                Ok(None) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures >= POLL_FAILURES {
                        return Err(Error(format!(
                            "lost track of {} {} of {} ({gone}, and the history cannot be read): {}",
                            self.kind, self.op, self.alias, e.0
                        )));
                    }
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Reads the history once and handles the changes not seen yet.
    async fn poll(&mut self) -> Result<Option<u8>> {
        let history = self.client.history(&self.alias).await?;
        let new: Vec<&HistoryDto> = history.iter().filter(|e| self.is_ours(e)).collect();
        if new.is_empty() {
            return Ok(None);
        }
        // The history lacks what the events carry besides the entry; the alias has it now.
        let now = self.client.alias(&self.alias).await.ok();
        let last = new.len() - 1;
        for (i, entry) in new.into_iter().enumerate() {
            let (retired, drain_until) = match (&now, i == last) {
                (Some(a), true) => (
                    a.retired.clone().filter(|r| r.op == self.op),
                    a.operation
                        .as_ref()
                        .filter(|o| o.id == self.op)
                        .and_then(|o| o.drain_until.clone()),
                ),
                _ => (None, None),
            };
            if let Some(code) = self.handle(entry, retired.as_ref(), drain_until) {
                return Ok(Some(code));
            }
        }
        Ok(None)
    }

    /// Prints one change; returns the exit status when it ended the operation.
    fn handle(
        &mut self,
        entry: &HistoryDto,
        retired: Option<&RetiredDto>,
        drain_until: Option<String>,
    ) -> Option<u8> {
        self.seen = self.seen.max(entry.revision);
        self.phase = entry.phase.clone();
        let name = &self.alias;
        let why = entry
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let line = match entry.change.as_str() {
            "started" => format!(
                "{name}: warming (waiting for {} of {}{})",
                plural(self.need, "healthy endpoint"),
                plus(&self.to),
                if self.warm_timeout.is_empty() {
                    String::new()
                } else {
                    format!(", at most {}", self.warm_timeout)
                }
            ),
            "mixed" => format!(
                "{name}: mixed: answering {}{why}; observing for {}{}",
                plus(&entry.answering),
                self.observe,
                if self.confirm {
                    format!(", then waiting for `aliasctl confirm {name}`")
                } else {
                    String::new()
                }
            ),
            "confirmed" => format!("{name}: confirmed by {}{why}", entry.actor),
            "draining" => {
                let old: Vec<String> = self
                    .from
                    .iter()
                    .filter(|s| !self.to.contains(s))
                    .cloned()
                    .collect();
                format!(
                    "{name}: draining{}: answering {}{}",
                    drain_until
                        .map(|u| format!(" until {u}"))
                        .unwrap_or_default(),
                    plus(&entry.answering),
                    if old.is_empty() {
                        String::new()
                    } else {
                        format!("; keep {} running for cached answers", plus(&old))
                    }
                )
            }
            "completed" => match retired.filter(|r| r.op == self.op) {
                Some(r) => format!(
                    "{name}: completed: {} {} safe to stop since {}",
                    plus(&r.services),
                    if r.services.len() == 1 { "is" } else { "are" },
                    r.safe_to_stop_at
                ),
                None => format!("{name}: completed: answering {}", plus(&entry.answering)),
            },
            change => format!(
                "{name}: {change}: {}; answering {} again",
                entry.reason.as_deref().unwrap_or("no reason given"),
                plus(&entry.answering)
            ),
        };
        if self.json {
            say(&compact_json(entry));
        } else {
            say(&line);
        }
        match entry.change.as_str() {
            "completed" => Some(EXIT_OK),
            change if is_end(change) => {
                eprintln!(
                    "aliasctl: {} {} of {name} ended with {change}: {}",
                    self.kind,
                    self.op,
                    entry.reason.as_deref().unwrap_or("no reason given")
                );
                Some(EXIT_FAILED)
            }
            _ => None,
        }
    }

    /// Prints a health change of the services involved while the operation runs.
    fn health(&self, service: &str, endpoint: &str, health: &str, error: Option<&str>) {
        if self.json
            || !(self.to.iter().any(|s| s == service) || self.from.iter().any(|s| s == service))
        {
            return;
        }
        say(&format!(
            "{}: {service} endpoint {endpoint} is {health}{}",
            self.alias,
            error.map(|e| format!(": {e}")).unwrap_or_default()
        ));
    }

    /// Says where the operation was when `--timeout` expired.
    async fn timed_out(&self, timeout: Duration) {
        let now = tokio::time::timeout(Duration::from_secs(5), self.client.alias(&self.alias))
            .await
            .ok()
            .and_then(Result::ok);
        let at = match &now {
            Some(a) => where_is(a),
            None => format!("phase {} at the last change seen", self.phase),
        };
        let waited = humantime::format_duration(timeout);
        say(&format!(
            "{}: timed out after {waited}: {at}; the {} goes on in aliasd",
            self.alias, self.kind
        ));
        eprintln!(
            "aliasctl: timed out after {waited} waiting for {} {} of {}: {at}",
            self.kind, self.op, self.alias
        );
    }
}

/// Whether a change ends an operation.
fn is_end(change: &str) -> bool {
    matches!(
        change,
        "completed" | "aborted" | "warm_timeout" | "auto_rollback"
    )
}

fn plan_text(plan: &PlanDto) -> String {
    if plan.noop {
        return format!(
            "{}: already answers with {}: a promote would change nothing (dry run)\n",
            plan.alias,
            plus(&plan.to)
        );
    }
    let mut s = format!(
        "plan for {}: {} → {} (dry run: nothing was changed)\n",
        plan.alias,
        plus(&plan.from),
        plus(&plan.to)
    );
    let rows: Vec<Vec<String>> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            vec![
                (i + 1).to_string(),
                step.phase.clone(),
                step.services.join(","),
                step.endpoints.join(","),
                step.until.clone(),
            ]
        })
        .collect();
    s.push_str(&table(
        &["STEP", "PHASE", "ANSWERING", "ENDPOINTS", "UNTIL"],
        &rows,
    ));
    s.push_str(&format!(
        "{}: {} of {} healthy now, {} needed; warm timeout {}, observe {}{}; ttl {}s, negative ttl {}s, drain window {}\n",
        plus(&plan.to),
        plan.healthy_now,
        plural(plan.total, "endpoint"),
        plan.min_healthy,
        plan.warm_timeout,
        plan.observe,
        if plan.confirm { ", then a confirm" } else { "" },
        plan.ttl,
        plan.negative_ttl,
        plan.drain_window
    ));
    s
}

// ---- watch ----

/// Follows one alias until Ctrl-C (or until it is stable, or the timeout).
async fn watch(
    client: &Client,
    alias: &str,
    until_stable: bool,
    timeout: Option<Duration>,
    json: bool,
) -> Result<u8> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut stream = client.events().await?;
    let mut a = client.alias(alias).await?;
    let mut view = Watch {
        tty: !json && std::io::stdout().is_terminal(),
        json,
        drawn: false,
    };
    view.show(&a, None);
    let stable = |a: &AliasDto| a.phase == "stable" && a.operation.is_none();
    if until_stable && stable(&a) {
        view.finish();
        return Ok(EXIT_OK);
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let event = tokio::select! {
            event = stream.next_event() => event,
            _ = &mut ctrl_c => {
                view.finish();
                return Ok(EXIT_INTERRUPTED);
            }
            () = sleep_until(deadline) => {
                view.finish();
                eprintln!(
                    "aliasctl: timed out after {} watching {}: {}",
                    humantime::format_duration(timeout.unwrap_or_default()),
                    a.name,
                    where_is(&a)
                );
                return Ok(EXIT_TIMEOUT);
            }
        };
        let relevant = match &event {
            Some(Ok(EventDto::Change { entry, .. })) => entry.alias == a.name,
            Some(Ok(EventDto::Health { service, .. })) => {
                a.members.iter().any(|m| &m.service == service)
            }
            Some(Ok(EventDto::Lagged { .. })) => true,
            Some(Ok(_)) => false,
            Some(Err(ClientError::Protocol { .. })) => false,
            Some(Err(e)) => {
                view.finish();
                return Err(Error(e.to_string()));
            }
            None => {
                view.finish();
                return Err(Error(format!(
                    "the events stream from {} ended (aliasd stopped?)",
                    client.server()
                )));
            }
        };
        if !relevant {
            continue;
        }
        let Some(Ok(event)) = event else { continue };
        a = match client.alias(&a.name).await {
            Ok(a) => a,
            Err(e) => {
                view.finish();
                return Err(e.into());
            }
        };
        view.show(&a, Some(&event));
        if until_stable && stable(&a) {
            view.finish();
            return Ok(EXIT_OK);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The watch output: one line per event, or on a terminal a status line redrawn in place with
/// the alias's changes printed above it.
struct Watch {
    tty: bool,
    json: bool,
    /// A status line is on the screen without its newline.
    drawn: bool,
}

impl Watch {
    fn show(&mut self, a: &AliasDto, event: Option<&EventDto>) {
        if self.json {
            match event {
                Some(e) => say(&compact_json(e)),
                None => say(&compact_json(a)),
            }
            return;
        }
        let status = status_line(a);
        let cause = event.map(event_text);
        if self.tty {
            // Back to the start of the line and clear it; changes stay on lines of their own.
            let mut text = String::from("\r\x1b[2K");
            if let (Some(cause), Some(EventDto::Change { .. })) = (&cause, event) {
                text.push_str(&format!("{} {cause}\n", clock()));
            }
            // The status line must stay one screen line to be redrawn in place: autowrap is off
            // while it is written, so the terminal cuts it at its width.
            text.push_str(&format!("\x1b[?7l{status}\x1b[?7h"));
            out(&text);
            self.drawn = true;
        } else {
            say(&match cause {
                Some(cause) => format!("{} {status} [{cause}]", clock()),
                None => format!("{} {status}", clock()),
            });
        }
    }

    /// Ends the status line so the shell prompt starts on a fresh one.
    fn finish(&mut self) {
        if self.drawn {
            out("\n");
            self.drawn = false;
        }
    }
}

fn clock() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn event_text(event: &EventDto) -> String {
    match event {
        EventDto::Change { entry, .. } => format!(
            "{}: {} (revision {} by {}){}",
            entry.alias,
            entry.change,
            entry.revision,
            entry.actor,
            entry
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        EventDto::Health {
            service,
            endpoint,
            health,
            error,
            ..
        } => format!(
            "{service} {endpoint} {health}{}",
            error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        EventDto::Lagged { skipped } => format!("{skipped} events skipped; state re-read"),
        _ => String::new(),
    }
}

/// One line: phase, operation, answers and each member's health.
fn status_line(a: &AliasDto) -> String {
    let mut s = format!("{} {}", a.name, a.phase);
    if let Some(op) = &a.operation {
        s.push_str(&format!(
            " ({} {} {} → {}",
            op_word(&op.kind),
            op.id,
            plus(&op.from),
            plus(&op.to)
        ));
        if let Some(until) = &op.drain_until {
            s.push_str(&format!(", drain until {until}"));
        } else if let Some(deadline) = &op.phase_deadline {
            s.push_str(&format!(", until {deadline}"));
        }
        if a.phase == "mixed" && op.confirm && !op.confirmed {
            s.push_str(", needs a confirm");
        }
        s.push(')');
    }
    s.push_str(&format!(" answering {}", plus(&a.answering)));
    for m in &a.members {
        s.push_str(&format!(" | {}", member_summary(m)));
    }
    if let Some(r) = &a.retired {
        s.push_str(&format!(" | retired {}", retired_text(r)));
    }
    s
}

/// `web-v2 incoming 1/2 healthy (127.0.0.42:80 unhealthy: HTTP 503)`.
fn member_summary(m: &MemberDto) -> String {
    let healthy = m.endpoints.iter().filter(|e| e.health == "healthy").count();
    let mut s = format!(
        "{} {} {healthy}/{} healthy",
        m.service,
        m.role,
        m.endpoints.len()
    );
    let unknown = m.endpoints.iter().filter(|e| e.health == "unknown").count();
    if unknown > 0 {
        s.push_str(&format!(", {unknown} unknown"));
    }
    if let Some(bad) = m.endpoints.iter().find(|e| e.health == "unhealthy") {
        s.push_str(&format!(
            " ({} unhealthy{})",
            bad.addr,
            bad.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    s
}

// ---- tables ----

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn alias_table(aliases: &[AliasDto]) -> String {
    let rows: Vec<Vec<String>> = aliases
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.targets.join(","),
                a.phase.clone(),
                a.endpoints.join(","),
                a.revision.to_string(),
                a.changed_by.clone(),
                a.changed_at.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ALIAS",
            "TARGETS",
            "PHASE",
            "ENDPOINTS",
            "REV",
            "BY",
            "CHANGED",
        ],
        &rows,
    )
}

fn alias_detail(a: &AliasDto) -> String {
    let none = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut s = format!(
        "alias:      {}\nzone:       {}\nphase:      {}\ntargets:    {}\nanswering:  {}\nendpoints:  {}\n",
        a.name,
        a.zone,
        a.phase,
        none(&a.targets),
        none(&a.answering),
        none(&a.endpoints),
    );
    if let Some(f) = &a.fallback {
        s.push_str(&format!(
            "fallback:   {f} (no endpoint is healthy; the if_none_healthy policy chose the answer)\n"
        ));
    }
    if let Some(op) = &a.operation {
        s.push_str(&format!(
            "operation:  {} {}: {} → {}, by {} at {}{}\n",
            op_word(&op.kind),
            op.id,
            plus(&op.from),
            plus(&op.to),
            op.actor,
            op.started_at,
            op.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        s.push_str(&format!(
            "  gates:    observe {}, min healthy {}, warm timeout {}, confirm {}\n",
            op.observe,
            op.min_healthy.map_or("all".to_owned(), |n| n.to_string()),
            op.warm_timeout,
            match (op.confirm, op.confirmed) {
                (false, _) => "not needed",
                (true, false) => "needed, not given yet",
                (true, true) => "given",
            }
        ));
        if let Some(until) = &op.drain_until {
            s.push_str(&format!("  drain until:    {until}\n"));
        } else if let Some(deadline) = &op.phase_deadline {
            let what = match a.phase.as_str() {
                "warming" => "warm deadline:  ",
                "mixed" => "observe until:  ",
                _ => "phase deadline: ",
            };
            s.push_str(&format!("  {what}{deadline}\n"));
        }
    }
    s.push_str("members:\n");
    if a.members.is_empty() {
        s.push_str("  (none)\n");
    }
    for m in &a.members {
        s.push_str(&format!(
            "  {} ({}{}{})\n",
            m.service,
            m.role,
            if m.answering { ", answering" } else { "" },
            if m.inflight > 0 {
                format!(", {} in flight through the proxy", m.inflight)
            } else {
                String::new()
            }
        ));
        if m.endpoints.is_empty() {
            s.push_str("    (no endpoints)\n");
        }
        for e in &m.endpoints {
            s.push_str(&format!("    {}  {}", e.addr, e.health));
            if let Some(at) = &e.last_check {
                s.push_str(&format!("  checked {at}"));
            }
            if let Some(err) = &e.last_error {
                s.push_str(&format!("  last error: {err}"));
            }
            s.push('\n');
        }
    }
    if let Some(d) = &a.drain {
        s.push_str(&format!(
            "drain:      {}: TTL window {} {}; {} request(s)/connection(s) still open through the proxy\n",
            d.services.join(", "),
            if d.ttl_window_over { "ended" } else { "ends" },
            d.ttl_window_until,
            d.proxy_inflight
        ));
    }
    if let Some(r) = &a.retired {
        s.push_str(&format!(
            "retired:    {} (by operation {})\n",
            retired_text(r),
            r.op
        ));
    }
    s.push_str(&format!(
        "srv:        {}\nttl:        {}s\nrevision:   {}\nchanged:    {} by {}\nserial:     {}\ngeneration: {}\n",
        a.srv, a.ttl, a.revision, a.changed_at, a.changed_by, a.serial, a.generation
    ));
    s
}

fn history_table(history: &[HistoryDto]) -> String {
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|e| {
            vec![
                e.revision.to_string(),
                e.at.clone(),
                e.change.clone(),
                e.phase.clone(),
                e.answering.join(","),
                e.actor.clone(),
                e.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "REV",
            "TIME",
            "CHANGE",
            "PHASE",
            "ANSWERING",
            "ACTOR",
            "REASON",
        ],
        &rows,
    )
}

fn service_table(services: &[ServiceDto]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| vec![s.name.clone(), s.endpoints.iter().map(|e| e.addr.clone()).collect::<Vec<_>>().join(","), s.linked_by.join(",")])
        .collect();
    table(&["SERVICE", "ENDPOINTS", "LINKED BY"], &rows)
}
