//! Following aliasd live: `promote --wait` / `rollback --wait` (the follower that prints one line
//! per change of the operation and says how it ended) and `watch`.
//!
//! Both read the events stream; the follower falls back to polling the history when the stream
//! is missing or breaks, so an aliasd restart is ridden out.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::render::{
    event_text, op_move, op_name, op_word, plus, started_text, status_line, where_is,
};
use super::{
    CliError, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIMEOUT, Result, WaitArgs, compact_json,
    out, say, to_json,
};
use crate::api::dto::{
    AliasDto, Change, EventDto, Health, HistoryDto, OperationDto, OperationReply, Phase, RetiredDto,
};
use crate::client::{Client, ClientError, EventStream};
use crate::text::plural;

const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// How often `--wait` reads the history when the events stream is gone.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Consecutive failed history reads before `--wait` gives up (a few seconds: an aliasd restart
/// is ridden out).
const POLL_FAILURES: u32 = 6;

// ---- promote and rollback ----

/// Sends a promote or rollback (`send`) and, with `--wait`, follows it to its end.
pub(super) async fn operation(
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
            "{}: {} started: {}",
            reply.alias.name,
            op_name(op),
            op_move(op)
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
        .find(|e| e.change == Change::Started && e.revision <= alias.revision)
        .and_then(|e| e.op.or(Some(e.revision)))
        .ok_or_else(|| CliError::StartNotInHistory {
            alias: alias.name.clone(),
        })
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
    /// The old version's containers are stopped after it completes: wait for that too.
    stop_old: bool,
    observe: String,
    /// The weighted steps, if the operation has them (each step's change is printed as it comes).
    steps: Vec<crate::api::dto::StepSpecDto>,
    warm_timeout: String,
    /// The highest revision handled, so the history and the events never print a change twice.
    seen: u64,
    /// The phase after the last change handled.
    phase: Phase,
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
            kind: operation.map_or("promotion", |o| op_word(o.kind)),
            json,
            from: operation.map(|o| o.from.clone()).unwrap_or_default(),
            to,
            need,
            confirm: operation.is_some_and(|o| o.confirm),
            stop_old: operation.is_some_and(|o| o.stop_old),
            observe: operation.map(|o| o.observe.clone()).unwrap_or_default(),
            steps: operation.map(|o| o.steps.clone()).unwrap_or_default(),
            warm_timeout: operation
                .map(|o| o.warm_timeout.clone())
                .unwrap_or_default(),
            seen: op.saturating_sub(1),
            phase: alias.phase,
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
                || (entry.op.is_none()
                    && entry.revision > self.op
                    && entry.change.ends_operation()))
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
                    })) => self.health(&service, &endpoint, health, error.as_deref()),
                    Some(Ok(EventDto::Lagged { .. })) => {
                        // Changes may have been skipped: the history has them.
                        if let Some(code) = self.poll().await? {
                            return Ok(code);
                        }
                    }
                    // Services, endpoints and Docker's status: the phases show their effect.
                    Some(Ok(
                        EventDto::Registry { .. }
                        | EventDto::Endpoints { .. }
                        | EventDto::Docker { .. }
                        | EventDto::Rollout { .. }
                        | EventDto::Secondary { .. },
                    )) => {}
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
                        return Err(CliError::LostTrack {
                            kind: self.kind,
                            op: self.op,
                            alias: self.alias.clone(),
                            gone,
                            error: e,
                        });
                    }
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Reads the history once and handles the changes not seen yet.
    async fn poll(&mut self) -> Result<Option<u8>, ClientError> {
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
        if let Some(phase) = entry.phase {
            self.phase = phase;
        }
        let name = &self.alias;
        let why = entry
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let line = match entry.change {
            Change::Started => format!(
                "{name}: warming (waiting for {} of {}{})",
                plural(self.need, "healthy endpoint"),
                plus(&self.to),
                if self.warm_timeout.is_empty() {
                    String::new()
                } else {
                    format!(", at most {}", self.warm_timeout)
                }
            ),
            Change::Mixed if !self.steps.is_empty() => format!(
                "{name}: mixed{why}: step 1 of {}: {}% of clients on {}",
                self.steps.len(),
                self.steps[0].weight,
                plus(&self.to)
            ),
            Change::Step | Change::InEffect => format!(
                "{name}: {}",
                entry.reason.as_deref().unwrap_or("next step")
            ),
            Change::Mixed => format!(
                "{name}: mixed: answering {}{why}; observing for {}{}",
                plus(&entry.answering),
                self.observe,
                if self.confirm {
                    format!(", then waiting for `aliasctl confirm {name}`")
                } else {
                    String::new()
                }
            ),
            Change::Confirmed => format!("{name}: confirmed by {}{why}", entry.actor),
            Change::Draining => {
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
            Change::Completed => match retired.filter(|r| r.op == self.op) {
                Some(r) => format!(
                    "{name}: completed: {} {} safe to stop since {}{}",
                    plus(&r.services),
                    if r.services.len() == 1 { "is" } else { "are" },
                    r.safe_to_stop_at,
                    if self.stop_old {
                        "; stopping its containers"
                    } else {
                        ""
                    }
                ),
                None => format!("{name}: completed: answering {}", plus(&entry.answering)),
            },
            Change::Stopped => format!("{name}: {}", entry.reason.as_deref().unwrap_or("stopped")),
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
        match entry.change {
            // With stop_old, the end is the stop of the old containers (if anything retired).
            Change::Completed if self.stop_old && retired.is_some_and(|r| r.stop_old) => None,
            Change::Completed | Change::Stopped => Some(EXIT_OK),
            change if change.ends_operation() => {
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
    fn health(&self, service: &str, endpoint: &str, health: Health, error: Option<&str>) {
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

// ---- watch ----

/// Follows one alias until Ctrl-C (or until it is stable, or the timeout).
pub(super) async fn watch(
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
    let stable = |a: &AliasDto| a.phase == Phase::Stable && a.operation.is_none();
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
        let event = match event {
            Some(Ok(event)) => event,
            // One message that is not an event; the next ones may be fine.
            Some(Err(ClientError::Protocol { .. })) => continue,
            Some(Err(e)) => {
                view.finish();
                return Err(e.into());
            }
            None => {
                view.finish();
                return Err(CliError::EventsEnded {
                    server: client.server().to_owned(),
                });
            }
        };
        if !concerns(&a, &event) {
            continue;
        }
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

/// Whether `event` concerns the watched alias `a`: a change of it, health or endpoints of one
/// of its services, a registry change of it or of one of its services, a reload (which may
/// change anything), Docker's status, a lag, and while it drains its zone's secondaries.
/// Everything else is about other aliases and services, and `watch` stays quiet about it.
pub(super) fn concerns(a: &AliasDto, event: &EventDto) -> bool {
    let member = |service: &str| a.members.iter().any(|m| m.service == service);
    match event {
        EventDto::Change { entry, .. } => entry.alias == a.name,
        EventDto::Health { service, .. } | EventDto::Endpoints { service, .. } => member(service),
        EventDto::Registry { entry } => match (&entry.service, entry.alias.as_str()) {
            (Some(service), _) => member(service),
            (None, "") => true,
            (None, alias) => alias == a.name,
        },
        EventDto::Docker { .. } | EventDto::Lagged { .. } => true,
        EventDto::Rollout { rollout, .. } => rollout.members.iter().any(|m| m.alias == a.name),
        EventDto::Secondary { secondary, .. } => {
            a.phase == Phase::Draining
                && format!("{}.", a.zone.trim_end_matches('.')) == secondary.zone
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
