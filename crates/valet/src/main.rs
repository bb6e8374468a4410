//! The `valet` binary: command line, logging and wiring. Everything else lives in the crates.
#![forbid(unsafe_code)]

mod admin_client;
mod admin_cmd;
mod check;
mod cli;
mod config_mode;
mod deploy;
mod deploy_cmd;
mod import;
mod lock;
mod pull_progress;
mod table;
mod up;
mod upload_progress;
mod volumes;

use clap::Parser;
use std::process::ExitCode;

/// The proxy allocates a few small buffers per request on every worker thread. In a warm-hop
/// profile glibc's malloc and free took about 5% of valet's samples; with mimalloc's per-thread
/// free lists that fell to under 2%.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // mimalloc asks for transparent huge pages, and on a machine where THP is `madvise` every
    // fresh 2 MB page is then zeroed whole on first touch: a burst of 1,000 new connections
    // spent a third of valet's CPU in the kernel's clear_page. valet's heap gains nothing from
    // huge pages that is worth that. Instances get the setting back (process spawner).
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = cli::Cli::parse();
    cli::init_tracing(&cli.global);
    match cli.command {
        cli::Command::Up { config } => up::run(&cli::config_path(config)),
        cli::Command::Check { config, pull } => check::run(&cli::config_path(config), pull),
        cli::Command::Import {
            file,
            output,
            force,
        } => import::run(&file, output.as_deref(), force),
        cli::Command::Volumes(command) => volumes::run(command),
        command @ (cli::Command::Token(_)
        | cli::Command::Deploy { .. }
        | cli::Command::Projects(_)
        | cli::Command::Rollback { .. }
        | cli::Command::Secret(_)) => deploy_cmd::run(command),
        admin => admin_cmd::run(admin),
    }
}
