//! aliasctl: the operator's command line for the aliasd control API.
//!
//! Tables for people, `--json` for scripts. Exit 0 on success, 1 with a one-line error otherwise.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use aliasd::api::dto::{AliasDto, ServiceDto};
use aliasd::client::Client;

#[derive(Parser)]
#[command(
    name = "aliasctl",
    version,
    about = "Control aliasd: inspect and relink DNS aliases"
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
}

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
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aliasctl: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<String, aliasd::client::ClientError> {
    let client = Client::new(&cli.server, cli.token.clone())?;
    Ok(match cli.command {
        Command::Status { alias: None } => {
            let aliases = client.aliases().await?;
            if cli.json {
                json(&aliases)
            } else {
                alias_table(&aliases)
            }
        }
        Command::Status { alias: Some(a) } => {
            let alias = client.alias(&a).await?;
            if cli.json {
                json(&alias)
            } else {
                alias_detail(&alias)
            }
        }
        Command::Link { alias, services } => {
            let alias = client.link(&alias, &services).await?;
            if cli.json {
                json(&alias)
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
            if cli.json {
                json(&services)
            } else {
                service_table(&services)
            }
        }
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
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
                a.endpoints.join(","),
                a.revision.to_string(),
                a.changed_by.clone(),
                a.changed_at.clone(),
            ]
        })
        .collect();
    table(
        &["ALIAS", "TARGETS", "ENDPOINTS", "REV", "BY", "CHANGED"],
        &rows,
    )
}

fn alias_detail(a: &AliasDto) -> String {
    format!(
        "alias:      {}\nzone:       {}\ntargets:    {}\nendpoints:  {}\nsrv:        {}\nttl:        {}s\nrevision:   {}\nchanged:    {} by {}\nserial:     {}\ngeneration: {}\n",
        a.name,
        a.zone,
        a.targets.join(", "),
        if a.endpoints.is_empty() {
            "(none)".into()
        } else {
            a.endpoints.join(", ")
        },
        a.srv,
        a.ttl,
        a.revision,
        a.changed_at,
        a.changed_by,
        a.serial,
        a.generation
    )
}

fn service_table(services: &[ServiceDto]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| vec![s.name.clone(), s.endpoints.join(","), s.linked_by.join(",")])
        .collect();
    table(&["SERVICE", "ENDPOINTS", "LINKED BY"], &rows)
}
