//! The aliasd daemon: parse arguments, set up logging, load the config, run, map the outcome to
//! an exit code. All logic lives in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use aliasd::config::Config;
use aliasd::daemon;
use aliasd::demo::{self, DemoOptions};
use aliasd::text::{counted, plural};

#[derive(Parser)]
#[command(
    name = "aliasd",
    version,
    about = "Authoritative DNS for service aliases, with blue/green relinking"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS and the control API with a config file.
    Run {
        /// The config file (TOML).
        #[arg(long, short, env = "ALIASD_CONFIG")]
        config: PathBuf,
        /// Once serving, write the bound addresses here as JSON (for scripts and tests).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Check a config file and its zone files, then exit; serves nothing.
    Check {
        #[arg(long, short, env = "ALIASD_CONFIG")]
        config: PathBuf,
    },
    /// Run a self-contained demo on loopback: two web versions, DNS and the API.
    Demo {
        #[arg(long, default_value_t = 5353)]
        dns_port: u16,
        #[arg(long, default_value_t = 5380)]
        api_port: u16,
        /// Port of the public HTTP proxy for `web`, on 127.0.0.1.
        #[arg(long, default_value_t = 8000)]
        proxy_port: u16,
        /// Port of the two demo backends (on 127.0.0.11 and 127.0.0.12); 0 picks a free one.
        #[arg(long, default_value_t = 8080)]
        backend_port: u16,
        /// Keep the demo's state (links, phases, history) here across runs; by default each
        /// run starts fresh in a temporary directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Once serving, write the bound addresses here as JSON (for scripts and tests).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Run one demo backend until SIGTERM (for tests that must SIGKILL a member). Prints the
    /// bound address on a line of its own once it serves.
    #[command(hide = true)]
    Backend {
        /// The address to serve on; port 0 picks a free port.
        #[arg(long)]
        listen: SocketAddr,
        /// The name the backend answers with (`x-backend` header and body).
        #[arg(long)]
        name: String,
        /// After SIGTERM, go on serving this long before no longer accepting ("2s").
        #[arg(long, value_parser = aliasd::check::parse_duration, default_value = "0s")]
        stop_delay: std::time::Duration,
    },
    /// Use an alias the way an app does until SIGTERM: resolve it with the system resolver
    /// before every request, GET, count failures; then print a JSON report.
    #[command(hide = true)]
    Probe {
        /// HOST:PORT to resolve and connect to, such as web.internal:8080.
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, value_parser = aliasd::check::parse_duration, default_value = "20ms")]
        interval: std::time::Duration,
        #[arg(long, value_parser = aliasd::check::parse_duration, default_value = "2s")]
        timeout: std::time::Duration,
        /// Stop after this long without SIGTERM.
        #[arg(long, value_parser = aliasd::check::parse_duration, default_value = "10m")]
        duration: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aliasd: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            // A secret that only the server's environment holds is not a fault of the file:
            // say so, and leave the refusal to `run`.
            let checked = Config::check(&config)?;
            for warning in &checked.warnings {
                eprintln!("aliasd: warning: {warning}");
            }
            let loaded = &checked.config;
            println!(
                "{}: ok ({}, {}, {}){}",
                config.display(),
                plural(loaded.zones.len() as u64, "zone"),
                plural(loaded.services.len() as u64, "service"),
                counted(loaded.aliases.len() as u64, "alias", "aliases"),
                if checked.warnings.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} on stderr",
                        plural(checked.warnings.len() as u64, "warning")
                    )
                }
            );
            Ok(())
        }
        Command::Run { config, ready_file } => {
            let loaded = Config::load(&config)?;
            runtime()?.block_on(async {
                let shutdown =
                    daemon::shutdown_on_signals().context("cannot install signal handlers")?;
                daemon::run(loaded, ready_file.as_deref(), shutdown).await?;
                Ok(())
            })
        }
        Command::Demo {
            dns_port,
            api_port,
            proxy_port,
            backend_port,
            state_dir,
            ready_file,
        } => runtime()?.block_on(async {
            let shutdown =
                daemon::shutdown_on_signals().context("cannot install signal handlers")?;
            let options = DemoOptions {
                dns_port,
                api_port,
                proxy_port,
                backend_port,
                state_dir,
                ready_file,
            };
            demo::run(options, shutdown).await?;
            Ok(())
        }),
        Command::Backend {
            listen,
            name,
            stop_delay,
        } => runtime()?.block_on(async {
            let shutdown =
                daemon::shutdown_on_signals().context("cannot install signal handlers")?;
            let backend = aliasd::backend::spawn_with(listen, &name, shutdown.clone(), stop_delay)
                .await
                .with_context(|| format!("cannot serve backend {name} on {listen}"))?;
            tracing::info!(addr = %backend.addr, name, "backend listening");
            // The parent reads this line to learn the port when it asked for port 0.
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", backend.addr).context("cannot write to stdout")?;
            out.flush().context("cannot write to stdout")?;
            drop(out);
            shutdown.cancelled().await;
            // Open requests finish; a bound keeps a stuck client from holding the exit.
            let drained = tokio::time::timeout(
                stop_delay + std::time::Duration::from_secs(10),
                backend.closed(),
            )
            .await;
            if drained.is_err() {
                tracing::warn!(name, "connections still open at exit");
            }
            Ok(())
        }),
        Command::Probe {
            target,
            path,
            interval,
            timeout,
            duration,
        } => runtime()?.block_on(async {
            let shutdown =
                daemon::shutdown_on_signals().context("cannot install signal handlers")?;
            let options = aliasd::probe::ProbeOptions {
                target,
                path,
                interval,
                timeout,
                duration,
            };
            let report = aliasd::probe::run(&options, shutdown).await;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
