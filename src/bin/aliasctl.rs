//! aliasctl: the operator's command line for the aliasd control API. Parse arguments, run the
//! command on a current-thread runtime, map the outcome to an exit code. The commands, the
//! `--wait` follower, `watch` and every table live in the library (`aliasd::cli`).

use std::process::ExitCode;

use clap::Parser;

use aliasd::cli::{self, Cli};

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
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aliasctl: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
