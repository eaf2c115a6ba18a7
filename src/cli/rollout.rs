//! `aliasctl rollout`: start a rollout of many aliases, show rollouts, pause, resume, abort or
//! roll one back; `start --wait` follows the events until the rollout ends, printing each
//! member's change.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::{
    CliError, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, GateArgs, Result, StepArgs, say, to_json,
};
use crate::api::dto::{
    EventDto, FailureAction, MemberStateDto, RolloutDto, RolloutMemberRequest, RolloutRequest,
    RolloutState,
};
use crate::client::Client;
use crate::text::counted;

#[derive(Subcommand)]
pub(super) enum RolloutCommand {
    /// Start a rollout: `--version v2 web api worker` promotes each alias A to `A-v2`; or
    /// `--to ALIAS=SERVICE` (repeat) for other names.
    Start(Box<StartArgs>),
    /// Show every rollout, or one (ID) with each of its aliases.
    Status { id: Option<u64> },
    /// Start no new batch; the running one finishes.
    Pause { id: u64 },
    /// Go on with a paused rollout (its failures so far are accepted).
    Resume { id: u64 },
    /// Start no new alias and abort the running ones.
    Abort { id: u64 },
    /// Move every alias the rollout moved back, newest first.
    Rollback { id: u64 },
}

#[derive(Args)]
pub(super) struct StartArgs {
    /// The aliases to promote, each to `<alias>-<VERSION>`.
    aliases: Vec<String>,
    /// The version suffix of the new services.
    #[arg(long, value_name = "VERSION")]
    version: Option<String>,
    /// An alias and the service it goes to (web=web-green); repeat for several.
    #[arg(long = "to", value_name = "ALIAS=SERVICE")]
    to: Vec<String>,
    /// Aliases promoted at once, per batch [default: 1].
    #[arg(long, value_name = "N")]
    parallelism: Option<u32>,
    /// The wait between batches ("2s") [default: 0s].
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    delay: Option<String>,
    /// How long after an alias completed a failure of its new version still counts ("10s").
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    monitor: Option<String>,
    /// When too many fail: pause, rollback or continue [default: pause].
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    failure_action: Option<FailureAction>,
    /// The share of aliases that may fail, 0 to 1 [default: 0].
    #[arg(long, value_name = "RATIO")]
    max_failure_ratio: Option<f64>,
    #[command(flatten)]
    gates: GateArgs,
    #[command(flatten)]
    steps: StepArgs,
    /// Once each old version is safe to stop, stop its Docker containers.
    #[arg(long)]
    stop_old: bool,
    /// Follow the rollout until it ends: exit 0 when it completed, 3 otherwise, 4 on --timeout.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (exit 4) [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration, requires = "wait")]
    timeout: Option<Duration>,
}

fn parse_wait(text: &str) -> Result<String, String> {
    crate::bounds::ROLLOUT_WAIT.parse("the wait", text)?;
    Ok(text.to_owned())
}

fn parse_action(text: &str) -> Result<FailureAction, String> {
    FailureAction::ALL
        .iter()
        .copied()
        .find(|a| a.as_str() == text)
        .ok_or_else(|| format!("`{text}` is not one of pause, rollback, continue"))
}

impl StartArgs {
    fn request(self) -> Result<RolloutRequest, String> {
        let mut members = Vec::new();
        for pair in &self.to {
            let (alias, service) = pair
                .split_once('=')
                .ok_or_else(|| format!("--to {pair}: write ALIAS=SERVICE (web=web-green)"))?;
            members.push(RolloutMemberRequest {
                alias: alias.to_owned(),
                to: crate::api::dto::OneOrMany::One(service.to_owned()),
            });
        }
        if self.version.is_none() && !self.aliases.is_empty() {
            return Err(
                "aliases need --version (each alias A goes to A-VERSION), or use --to ALIAS=SERVICE"
                    .into(),
            );
        }
        if members.is_empty() && self.aliases.is_empty() {
            return Err("name the aliases: --version v2 web api, or --to web=web-v2".into());
        }
        Ok(RolloutRequest {
            members,
            version: self.version,
            aliases: self.aliases,
            parallelism: self.parallelism,
            delay: self.delay,
            monitor: self.monitor,
            failure_action: self.failure_action,
            max_failure_ratio: self.max_failure_ratio,
            observe: self.gates.observe,
            confirm: self.gates.confirm_gate.then_some(true),
            min_healthy: self.gates.min_healthy,
            warm_timeout: self.gates.warm_timeout,
            stop_old: self.stop_old.then_some(true),
            steps: self.steps.steps.map(serde_json::Value::String),
            max_error_rate: self.steps.max_error_rate,
            max_latency_ratio: self.steps.max_latency_ratio,
            min_requests: self.steps.min_requests,
        })
    }
}

/// Runs `aliasctl rollout ...`; returns the exit status.
pub(super) async fn run(client: &Client, command: RolloutCommand, json: bool) -> Result<u8> {
    let (id, word) = match command {
        RolloutCommand::Start(args) => return start(client, *args, json).await,
        RolloutCommand::Status { id: None } => {
            let all = client.rollouts().await?;
            super::out(&if json {
                to_json(&all)
            } else {
                rollout_table(&all)
            });
            return Ok(EXIT_OK);
        }
        RolloutCommand::Status { id: Some(id) } => {
            let r = client.rollout(id).await?;
            super::out(&if json {
                to_json(&r)
            } else {
                rollout_detail(&r)
            });
            return Ok(EXIT_OK);
        }
        RolloutCommand::Pause { id } => (id, "pause"),
        RolloutCommand::Resume { id } => (id, "resume"),
        RolloutCommand::Abort { id } => (id, "abort"),
        RolloutCommand::Rollback { id } => (id, "rollback"),
    };
    let r = client.rollout_command(id, word).await?;
    super::out(&if json {
        to_json(&r)
    } else {
        rollout_detail(&r)
    });
    Ok(EXIT_OK)
}

async fn start(client: &Client, args: StartArgs, json: bool) -> Result<u8> {
    let (wait, timeout) = (args.wait, args.timeout);
    let request = args.request().map_err(CliError::Usage)?;
    // Subscribed before the start, so no change of the rollout is missed.
    let events = if wait {
        Some(client.events().await?)
    } else {
        None
    };
    let r = client.start_rollout(&request).await?;
    if json {
        super::out(&to_json(&r));
    } else {
        say(&rollout_line(&r));
    }
    let Some(mut events) = events else {
        return Ok(EXIT_OK);
    };
    let deadline = tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(3600));
    let mut last = r;
    loop {
        if let Some(code) = ended(&last) {
            return Ok(code);
        }
        let event = tokio::time::timeout_at(deadline, events.next_event()).await;
        let next = match event {
            Err(_) => {
                say(&format!(
                    "rollout {}: still {} after the timeout",
                    last.id, last.state
                ));
                return Ok(EXIT_TIMEOUT);
            }
            Ok(None) => {
                return Err(CliError::EventsEnded {
                    server: client.server().to_owned(),
                });
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(EventDto::Rollout { rollout, .. }))) if rollout.id == last.id => *rollout,
            Ok(Some(Ok(EventDto::Lagged { .. }))) => client.rollout(last.id).await?,
            Ok(Some(Ok(_))) => continue,
        };
        let lines = changes(&last, &next);
        if json && !lines.is_empty() {
            say(&super::compact_json(&next));
        } else if !json {
            lines.iter().for_each(|l| say(l));
        }
        last = next;
    }
}

/// The exit status of a rollout that ended, `None` while it goes on.
fn ended(r: &RolloutDto) -> Option<u8> {
    match r.state {
        RolloutState::Completed => Some(EXIT_OK),
        RolloutState::Failed | RolloutState::Aborted | RolloutState::RolledBack => {
            Some(EXIT_FAILED)
        }
        RolloutState::Running | RolloutState::Paused | RolloutState::RollingBack => None,
    }
}

/// One line per member whose state changed from `before` to `after`, and one for the
/// rollout's own state.
pub(super) fn changes(before: &RolloutDto, after: &RolloutDto) -> Vec<String> {
    let mut lines: Vec<String> = after
        .members
        .iter()
        .filter(|m| {
            before
                .members
                .iter()
                .find(|b| b.alias == m.alias)
                .is_none_or(|b| b.state != m.state)
        })
        .map(|m| {
            format!(
                "rollout {}: {} {} (batch {}){}",
                after.id,
                m.alias,
                m.state,
                m.batch + 1,
                m.why
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if before.state != after.state {
        lines.push(rollout_line(after));
    }
    lines
}

/// One line: the rollout's state and how many of its aliases are where.
pub fn rollout_line(r: &RolloutDto) -> String {
    let count = |s: MemberStateDto| r.members.iter().filter(|m| m.state == s).count();
    let mut parts = vec![format!("batch {}/{}", r.batch, r.batches)];
    for s in MemberStateDto::ALL {
        let n = count(*s);
        if n > 0 {
            parts.push(format!("{n} {s}"));
        }
    }
    format!(
        "rollout {} {} ({}): {}{}",
        r.id,
        r.state,
        counted(r.members.len() as u64, "alias", "aliases"),
        parts.join(", "),
        r.why
            .as_deref()
            .map(|w| format!("; {w}"))
            .unwrap_or_default()
    )
}

/// Every rollout, one a line.
pub fn rollout_table(all: &[RolloutDto]) -> String {
    if all.is_empty() {
        return "no rollouts\n".into();
    }
    let mut s = String::new();
    for r in all {
        s.push_str(&rollout_line(r));
        s.push('\n');
    }
    s
}

/// One rollout: its settings and each alias.
pub fn rollout_detail(r: &RolloutDto) -> String {
    let mut s = format!("{}\n", rollout_line(r));
    s.push_str(&format!(
        "  by {}, started {}; parallelism {}, delay {}, monitor {}, failure action {} over {}\n",
        r.actor,
        r.created_at,
        r.parallelism,
        r.delay,
        r.monitor,
        r.failure_action,
        r.max_failure_ratio
    ));
    if let Some(at) = &r.next_batch_at {
        s.push_str(&format!("  next batch at {at}\n"));
    }
    let rows: Vec<[String; 5]> = r
        .members
        .iter()
        .map(|m| {
            [
                m.alias.clone(),
                m.to.join("+"),
                (m.batch + 1).to_string(),
                m.state.to_string(),
                m.why.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ALIAS", "TO", "BATCH", "STATE", "WHY"].map(String::from);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}
