//! The `valet` binary: command line, logging and wiring. Everything else lives in the crates.
#![forbid(unsafe_code)]

mod admin_client;
mod admin_cmd;
mod check;
mod cli;
mod lock;
mod table;
mod up;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_tracing(&cli.global);
    match cli.command {
        cli::Command::Up { config } => up::run(&cli::config_path(config)),
        cli::Command::Check { config } => check::run(&cli::config_path(config)),
        admin => admin_cmd::run(admin),
    }
}
