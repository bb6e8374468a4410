//! Command-line arguments and logging setup.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "valet", version, about = "Serve a front end and wake one backend per key, on your own machine.")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VALET_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (default config: ./valet.toml).
    Up {
        /// Path of valet.toml.
        config: Option<PathBuf>,
    },
    /// Validate a config and print every problem with its line and column.
    Check {
        /// Path of valet.toml.
        config: Option<PathBuf>,
    },
}

/// A command run beside a valet.toml uses it by default.
pub fn config_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| PathBuf::from("valet.toml"))
}

/// `RUST_LOG` filters as usual; the default shows valet's own info lines.
pub fn init_tracing(global: &Global) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
