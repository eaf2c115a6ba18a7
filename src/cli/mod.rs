//! aliasctl: the operator's command line for the aliasd control API. The binary
//! (`src/bin/aliasctl.rs`) only parses the arguments into [`Cli`], runs [`run`] and maps the
//! result to an exit code; everything else is here.
//!
//! Tables for people, `--json` for scripts. Exit 0 on success, 1 with a one-line error otherwise,
//! 2 for a usage error: every duration, count and reason is checked here against the bounds the
//! server applies (`crate::bounds`), with the server's words, before anything is sent.
//! `promote --wait` and `rollback --wait` follow the operation to its end: 0 when it completed (or nothing had to change), 3 when it ended without completing (aborted,
//! warm timeout, automatic rollback), 4 when `--timeout` expired first.
//!
//! `render` turns the API's DTOs into text (pure); `follow` is the `--wait` follower and
//! `watch`.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::dto::{
    OneOrMany, PromoteRequest, PutAliasRequest, PutServiceRequest, RollbackRequest,
};
use crate::check::{CheckConfig, CheckKind, HealthSpec};
use crate::client::{Client, ClientError, Promotion};

mod follow;
mod render;
mod rollout;
#[cfg(test)]
mod tests;

use follow::{operation, watch};
use render::{
    aborted_text, alias_detail, alias_table, cluster_text, confirmed_text, history_table,
    link_text, plan_text, reload_text, service_table, service_text,
};

/// The operation completed: the alias is stable on the new services (or nothing had to change).
pub const EXIT_OK: u8 = 0;
/// Any other error: unreachable, refused (4xx), the state could not be read.
pub const EXIT_ERROR: u8 = 1;
/// A usage error: a flag's value is out of its bounds or malformed (clap exits with it too).
pub const EXIT_USAGE: u8 = 2;
/// The operation ended without completing: aborted, warm timeout or automatic rollback.
pub const EXIT_FAILED: u8 = 3;
/// `--timeout` expired before the operation ended; it goes on in aliasd.
pub const EXIT_TIMEOUT: u8 = 4;
/// `watch` stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The command line: global options and one command. Parse it with [`Parser::parse`].
#[derive(Parser)]
#[command(
    name = "aliasctl",
    version,
    about = "Control aliasd: inspect, relink and promote DNS aliases"
)]
pub struct Cli {
    /// The aliasd API base URL.
    #[arg(
        long,
        global = true,
        env = "ALIASCTL_SERVER",
        default_value = "http://127.0.0.1:5380"
    )]
    server: String,
    /// Bearer token for changes: the secret of an [[api.token]] in aliasd's config (an empty
    /// one counts as none).
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
    /// List every service: each endpoint with its source (config, api, docker), container and
    /// health, the aliases that link it, and the containers Docker discovery skipped.
    Services,
    /// Define, change or delete a service through the API (for VMs and anything not in Docker).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Create, change or remove an alias through the API.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Re-read aliasd's config and zone files: applied as one change, or refused whole.
    Reload,
    /// The cluster as the node asked sees it: each node with its role, applied revision, how
    /// far behind it is and whether its definitions are the leader's; etcd's health; problems.
    Cluster,
    /// Promote ALIAS to new services: warm, mixed, draining, then stable on the new ones.
    Promote {
        alias: String,
        /// A service to promote to; repeat for several.
        #[arg(long = "to", value_name = "SERVICE", required = true)]
        to: Vec<String>,
        #[command(flatten)]
        gates: GateArgs,
        /// Why, recorded in the history.
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: Option<String>,
        /// Once the old services are safe to stop, stop their Docker containers (never removes
        /// them; endpoints not from Docker are left alone).
        #[arg(long)]
        stop_old: bool,
        #[command(flatten)]
        steps: StepArgs,
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
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: Option<String>,
    },
    /// Abort the running promotion or rollback of ALIAS: it answers with its old services again.
    Abort {
        alias: String,
        /// Why, recorded in the history.
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
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
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Every change of ALIAS, oldest first.
    History { alias: String },
    /// Rollouts of many aliases in batches: start, status, pause, resume, abort, rollback.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
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

#[derive(Subcommand)]
enum ServiceCommand {
    /// Define SERVICE with exactly these ENDPOINTs (IP:PORT), or replace its endpoints.
    Set {
        service: String,
        endpoints: Vec<String>,
        /// A health setting over the config's [health]: kind, path, expect, host, interval,
        /// timeout, rise or fall; repeat for several (--health kind=http --health path=/ready).
        #[arg(long = "health", value_name = "KEY=VALUE", value_parser = parse_health)]
        health: Vec<String>,
    },
    /// Delete SERVICE (defined through the API); refused while an alias links it.
    Delete { service: String },
    /// Every change of SERVICE made through the API.
    History { service: String },
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Create ALIAS answering with the services given by --to.
    Create {
        alias: String,
        #[arg(long = "to", value_name = "SERVICE", required = true)]
        to: Vec<String>,
        #[command(flatten)]
        settings: AliasSettings,
    },
    /// Change how ALIAS answers.
    Set {
        alias: String,
        #[command(flatten)]
        settings: AliasSettings,
    },
    /// Remove ALIAS (created through the API); refused during a promotion.
    Delete { alias: String },
}

#[derive(Args)]
struct AliasSettings {
    /// SRV records at _<NAME>._tcp.<alias> [default: http].
    #[arg(long, value_name = "NAME")]
    port_name: Option<String>,
    /// When no endpoint is healthy: last-known-good, all or none.
    #[arg(long, value_name = "POLICY")]
    if_none_healthy: Option<String>,
}

impl AliasSettings {
    fn request(self, targets: Option<Vec<String>>) -> PutAliasRequest {
        PutAliasRequest {
            targets,
            port_name: self.port_name,
            if_none_healthy: self.if_none_healthy,
        }
    }
}

/// The gates of a promotion or rollback; unset ones come from the server's defaults.
#[derive(Args)]
struct GateArgs {
    /// How long both versions answer before the old one drains ("30s").
    #[arg(long, value_name = "DURATION", value_parser = parse_observe)]
    observe: Option<String>,
    /// After observing, wait in phase mixed for `aliasctl confirm`.
    #[arg(long)]
    confirm_gate: bool,
    /// Healthy endpoints the new services need (default: all of them).
    #[arg(long, value_name = "N", value_parser = parse_min_healthy)]
    min_healthy: Option<u32>,
    /// How long the new services have to become healthy ("2m").
    #[arg(long, value_name = "DURATION", value_parser = parse_warm_timeout)]
    warm_timeout: Option<String>,
}

/// Weighted steps and the gates on the proxy's figures that judge them.
#[derive(Args)]
struct StepArgs {
    /// Move clients to the new version in steps: `10%:1m,50%:pause,100%` (a percent of the
    /// clients, then a hold once in effect, or `pause` for `aliasctl confirm`), or a preset:
    /// canary10-5m (10% of clients for 5 minutes, then everybody), linear10-1m (10%, 20%, ...
    /// 90%, one minute each, then everybody).
    #[arg(long, value_name = "STEPS", value_parser = parse_steps, conflicts_with_all = ["observe", "confirm_gate"])]
    steps: Option<String>,
    /// With --steps: roll back when more than this share of the new version's requests fail
    /// through the proxy (5xx or no answer) over a step: `1%` or `0.01`.
    #[arg(long, value_name = "RATE", value_parser = parse_error_rate, requires = "steps")]
    max_error_rate: Option<f64>,
    /// With --steps: roll back when the new version's p99 latency through the proxy is more
    /// than this many times the old one's over a step (`2` or `2x`).
    #[arg(long, value_name = "RATIO", value_parser = parse_latency_ratio, requires = "steps")]
    max_latency_ratio: Option<f64>,
    /// With gates: requests to the new version needed before a step's figures are judged.
    #[arg(long, value_name = "N", requires = "steps")]
    min_requests: Option<u64>,
}

/// `--steps`: steps in the CLI form or a preset, checked as the server does.
fn parse_steps(text: &str) -> Result<String, String> {
    crate::steps::parse_steps(text)?;
    Ok(text.to_owned())
}

/// `--max-error-rate`: `1%` or `0.01`, from 0 to 1.
fn parse_error_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let rate = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| {
        format!("`{text}` is not a rate; write a percent like `1%` or a fraction like `0.01`")
    })?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "`{text}` is out of range; an error rate is from 0% to 100%"
        ));
    }
    Ok(rate)
}

/// `--max-latency-ratio`: `2` or `2x`, from 1 to 1000.
fn parse_latency_ratio(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let ratio = t
        .strip_suffix(['x', '×'])
        .unwrap_or(t)
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("`{text}` is not a ratio; write a number like `2` or `1.5x`"))?;
    if !(1.0..=1000.0).contains(&ratio) {
        return Err(format!(
            "`{text}` is out of range; a latency ratio is from 1 to 1000"
        ));
    }
    Ok(ratio)
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

// The value parsers below check on this side what the server would refuse, with the same
// bounds and words, so a typo is a usage error (exit 2) even when aliasd cannot be reached.
// Durations are sent as written: the server parses the same text the same way.

/// `--timeout`: a duration within [`crate::bounds::WAIT_TIMEOUT`].
fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::bounds::WAIT_TIMEOUT.parse("the timeout", text)
}

/// `--observe`: a duration within [`crate::bounds::OBSERVE`].
fn parse_observe(text: &str) -> Result<String, String> {
    crate::bounds::OBSERVE.parse("observe", text)?;
    Ok(text.to_owned())
}

/// `--warm-timeout`: a duration within [`crate::bounds::WARM_TIMEOUT`].
fn parse_warm_timeout(text: &str) -> Result<String, String> {
    crate::bounds::WARM_TIMEOUT.parse("warm_timeout", text)?;
    Ok(text.to_owned())
}

/// `--min-healthy`: a whole number within [`crate::bounds::min_healthy`].
fn parse_min_healthy(text: &str) -> Result<u32, String> {
    let n = text
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("min_healthy: `{text}` is not a whole number"))?;
    crate::bounds::min_healthy(Some(n))?;
    Ok(n)
}

/// `--reason`: within [`crate::bounds::reason`].
fn parse_reason(text: &str) -> Result<String, String> {
    crate::bounds::reason(Some(text))?;
    Ok(text.to_owned())
}

/// One `--health KEY=VALUE`: the key is one aliasd knows and the value is within its bounds.
/// Whether the settings fit together is checked once all are read ([`health_spec`]).
fn parse_health(text: &str) -> Result<String, String> {
    health_spec(std::slice::from_ref(&text.to_owned()))?;
    Ok(text.to_owned())
}

/// The `--health` settings as one spec, checked as the server checks them, so far as that
/// does not depend on the server's `[health]` defaults (which this side does not know): over
/// an HTTP check whose interval and timeout leave every value in bounds its room.
fn health_spec(pairs: &[String]) -> Result<HealthSpec, String> {
    let spec = HealthSpec::from_pairs(pairs.iter().map(String::as_str))?;
    let roomy = CheckConfig {
        kind: CheckKind::Http {
            path: "/".to_owned(),
            expect: 200..=399,
            host: None,
        },
        interval: crate::check::MAX_INTERVAL,
        timeout: crate::check::MIN_TIMEOUT,
        ..CheckConfig::default()
    };
    spec.apply(&roomy).map_err(|problems| problems.join("; "))?;
    Ok(spec)
}

/// Why a command failed: one line, exit 1 ([`EXIT_USAGE`] for [`CliError::Usage`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API could not be reached, refused the request or answered nonsense.
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("asked for a dry run but aliasd started an operation on {alias}")]
    DryRunStarted { alias: String },
    #[error("aliasd answered with a plan, not an operation")]
    PlanNotOperation,
    #[error("{alias}: the operation started, but its start is not in the history")]
    StartNotInHistory { alias: String },
    /// `--wait` lost the events stream (`gone` says why) and then the history too. The client
    /// error is part of the message, not a source, so it is printed once.
    #[error(
        "lost track of {kind} {op} of {alias} ({gone}, and the history cannot be read): {error}"
    )]
    LostTrack {
        kind: &'static str,
        op: u64,
        alias: String,
        gone: String,
        error: ClientError,
    },
    #[error("the events stream from {server} ended (aliasd stopped?)")]
    EventsEnded { server: String },
    /// A change was sent without a token and aliasd asked for one.
    #[error(
        "this change needs a token and none was given: pass --token TOKEN or set ALIASCTL_TOKEN to the secret of an [[api.token]] in aliasd's config (HTTP 401)"
    )]
    NoToken,
    /// The token was sent and aliasd refused it (`said` is aliasd's reason).
    #[error(
        "aliasd at {server} refused the token given by --token or ALIASCTL_TOKEN ({said}): it must be the secret of an [[api.token]] in aliasd's config (HTTP 401)"
    )]
    TokenRefused { server: String, said: String },
    /// An argument was wrong before anything was sent: exit 2.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// The exit status for this error: [`EXIT_USAGE`] for a usage error, else [`EXIT_ERROR`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            _ => EXIT_ERROR,
        }
    }

    /// A 401 told in terms of what the user can do: aliasctl's flags, not HTTP headers, which
    /// aliasctl writes itself. `token` says whether one was sent.
    fn explain_401(self, server: &str, token: bool) -> Self {
        match self {
            Self::Client(ClientError::Api { status, message })
                if status == hyper::StatusCode::UNAUTHORIZED =>
            {
                if token {
                    Self::TokenRefused {
                        server: server.to_owned(),
                        said: message,
                    }
                } else {
                    Self::NoToken
                }
            }
            other => other,
        }
    }
}

type Result<T, E = CliError> = std::result::Result<T, E>;

/// Writes `text` to stdout at once. A closed stdout (`aliasctl watch | head`) ends the program.
///
/// It exits here rather than returning an error because a closed pipe can happen in the middle
/// of `watch` or a follower, where there is nobody left to tell and nothing left to do.
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

/// Runs one command and returns its exit status (see the module docs); an `Err` is printed as
/// one line and exits with [`CliError::exit_code`].
pub async fn run(cli: Cli) -> Result<u8> {
    let client = Client::new(&cli.server, cli.token.clone())?;
    command(&client, cli)
        .await
        .map_err(|e| e.explain_401(client.server(), client.has_token()))
}

async fn command(client: &Client, cli: Cli) -> Result<u8> {
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
                link_text(&alias)
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
        Command::Service(ServiceCommand::Set {
            service,
            endpoints,
            health,
        }) => {
            let health =
                health_spec(&health).map_err(|e| CliError::Usage(format!("--health: {e}")))?;
            let request = PutServiceRequest {
                endpoints,
                health: (!health.is_empty()).then_some(health),
            };
            let dto = client.put_service(&service, &request).await?;
            if json {
                to_json(&dto)
            } else {
                service_text(&dto)
            }
        }
        Command::Service(ServiceCommand::Delete { service }) => {
            let deleted = client.delete_service(&service).await?;
            if json {
                to_json(&deleted)
            } else {
                format!("service {} deleted\n", deleted.deleted)
            }
        }
        Command::Service(ServiceCommand::History { service }) => {
            let history = client.service_history(&service).await?;
            if json {
                to_json(&history)
            } else {
                history_table(&history)
            }
        }
        Command::Alias(AliasCommand::Delete { alias }) => {
            let deleted = client.delete_alias(&alias).await?;
            if json {
                to_json(&deleted)
            } else {
                format!("alias {} removed\n", deleted.deleted)
            }
        }
        Command::Alias(AliasCommand::Create {
            alias,
            to,
            settings,
        }) => put_alias(client, &alias, settings.request(Some(to)), json).await?,
        Command::Alias(AliasCommand::Set { alias, settings }) => {
            put_alias(client, &alias, settings.request(None), json).await?
        }
        Command::Cluster => {
            let status = client.cluster().await?;
            if json {
                to_json(&status)
            } else {
                cluster_text(&status)
            }
        }
        Command::Reload => {
            let summary = client.reload().await?;
            if json {
                to_json(&summary)
            } else {
                reload_text(&summary)
            }
        }
        Command::Promote {
            alias,
            to,
            gates,
            reason,
            stop_old,
            steps,
            dry_run,
            wait,
        } => {
            let request = PromoteRequest {
                to: OneOrMany::Many(to),
                observe: gates.observe,
                confirm: gates.confirm_gate.then_some(true),
                min_healthy: gates.min_healthy,
                warm_timeout: gates.warm_timeout,
                reason,
                stop_old: stop_old.then_some(true),
                steps: steps.steps.map(serde_json::Value::String),
                max_error_rate: steps.max_error_rate,
                max_latency_ratio: steps.max_latency_ratio,
                min_requests: steps.min_requests,
            };
            if dry_run {
                match client.promote(&alias, &request, true).await? {
                    Promotion::Planned(plan) if json => to_json(&plan),
                    Promotion::Planned(plan) => plan_text(&plan),
                    Promotion::Operation(reply) => {
                        return Err(CliError::DryRunStarted {
                            alias: reply.alias.name.clone(),
                        });
                    }
                }
            } else {
                let send = async {
                    match client.promote(&alias, &request, false).await? {
                        Promotion::Operation(reply) => Ok(*reply),
                        Promotion::Planned(_) => Err(CliError::PlanNotOperation),
                    }
                };
                return operation(client, json, &wait, send).await;
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
            let send = async { Ok::<_, CliError>(client.rollback(&alias, &request).await?) };
            return operation(client, json, &wait, send).await;
        }
        Command::Confirm { alias, reason } => {
            let reply = client.confirm(&alias, reason).await?;
            if json {
                to_json(&reply)
            } else {
                confirmed_text(&reply)
            }
        }
        Command::Abort { alias, reason } => {
            let reply = client.abort(&alias, reason).await?;
            if json {
                to_json(&reply)
            } else {
                aborted_text(&reply)
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
        } => return watch(client, &alias, until_stable, timeout, json).await,
        Command::Rollout(command) => return rollout::run(client, command, json).await,
    };
    out(&text);
    Ok(EXIT_OK)
}

/// `PUT /v1/aliases/{alias}` and what to print for it.
async fn put_alias(
    client: &Client,
    alias: &str,
    request: PutAliasRequest,
    json: bool,
) -> Result<String> {
    let dto = client.put_alias(alias, &request).await?;
    Ok(if json { to_json(&dto) } else { link_text(&dto) })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn compact_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
