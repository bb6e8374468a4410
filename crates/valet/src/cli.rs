//! Command-line arguments and logging setup.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "valet",
    version,
    about = "Serve a front end and wake one backend per key, on your own machine."
)]
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
        /// Also ask each image's registry (through the Docker Engine, with valet's
        /// credentials) whether every class's image reference resolves, without pulling.
        #[arg(long)]
        pull: bool,
    },
    /// Write a valet.toml from a Cloudflare wrangler config (wrangler.jsonc, .json or .toml).
    Import {
        /// wrangler.jsonc, wrangler.json or wrangler.toml.
        file: PathBuf,
        /// Where to write (default: valet.toml beside FILE; `-` prints it to stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Show what a running valet is doing: classes, instances by state, requests.
    Status(AdminArgs),
    /// Cluster mode: the replicas on this store and which one holds each key's lease.
    Cluster(AdminArgs),
    /// List instances, sleeping ones included (all classes, or one).
    Instances {
        /// Only this class.
        class: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start an instance and wait until it is ready.
    Start(InstanceArgs),
    /// Stop an instance gracefully; the next request starts it again.
    Stop(InstanceArgs),
    /// Stop an instance and delete its persistent data and log.
    Destroy(InstanceArgs),
    /// Print an instance's output; -f follows it.
    Logs {
        /// A container class, or a deployed project by its name or id.
        class: String,
        /// Needed when the class has more than one key (a project has one).
        key: Option<String>,
        /// Keep printing new lines (across restarts) until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Lines of earlier output to print first.
        #[arg(short = 'n', long, default_value_t = 100)]
        tail: usize,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The Docker driver's per-instance volumes of this config (no running valet needed).
    #[command(subcommand)]
    Volumes(VolumesCommand),
    /// API tokens for the deploy API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Deploy an app (index.ts, index.js, app.py, an archive or a folder) and print its URL.
    Deploy {
        /// The file or folder to upload.
        path: PathBuf,
        /// Project name (default: from the file name); an existing name gets a new version.
        #[arg(long)]
        name: Option<String>,
        /// `python` or `node`, overriding detection.
        #[arg(long)]
        runtime: Option<String>,
        /// Requirements, e.g. "express cors" or "fastapi uvicorn".
        #[arg(long)]
        requirements: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Deployed projects.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Secrets of a project, a class or the registries: encrypted at rest, never shown again.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Move a project's traffic back to one of its versions (once that version is ready).
    Rollback {
        /// Project id.
        project: String,
        /// Version number, as `valet projects versions` shows it.
        version: i64,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once, as the last line of stdout.
    Create {
        /// An admin token (every admin endpoint) instead of a user token.
        #[arg(long)]
        admin: bool,
        /// Whose token (default: a new user).
        #[arg(long)]
        user: Option<String>,
        /// The user's plan, a [plans.*] name (default: the first plan).
        #[arg(long)]
        plan: Option<String>,
        #[command(flatten)]
        args: AdminArgs,
    },
    /// List stored tokens by id (never the token): all with an admin token, your own with a
    /// user token (VALET_ADMIN_TOKEN).
    List(AdminArgs),
    /// Revoke a token by its id (as `token list` shows it) or by the token itself; it stops
    /// working at once. A user may revoke only its own.
    Revoke {
        /// The token's id, or the token.
        id: String,
        #[command(flatten)]
        args: AdminArgs,
    },
}

/// Whose secret: a deployed project's, a `[[containers]]` class's or a `[[registries]]`
/// password (the last two admin only).
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
pub struct SecretScope {
    /// Project id.
    #[arg(long)]
    pub project: Option<String>,
    /// Container class name (from valet's next start; must be in its `secrets`).
    #[arg(long)]
    pub class: Option<String>,
    /// A registry password: NAME is a `[[registries]]` entry's `password_secret` (from
    /// valet's next start; valet's environment still wins).
    #[arg(long)]
    pub registry: bool,
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Set a secret from stdin. A project restarts with it once the new env is ready.
    Put {
        /// The environment variable it becomes.
        name: String,
        #[command(flatten)]
        scope: SecretScope,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List secret names.
    List {
        #[command(flatten)]
        scope: SecretScope,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a secret; a project restarts without it.
    Rm {
        name: String,
        #[command(flatten)]
        scope: SecretScope,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
pub enum ProjectsCommand {
    /// List projects (yours, or all with an admin token).
    Ls(AdminArgs),
    /// Delete a project: its instance, versions and files.
    Rm {
        /// Project id.
        project: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A project's versions.
    Versions {
        /// Project id.
        project: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
pub enum VolumesCommand {
    /// List them: class, key, size, and whether a container uses them.
    Ls(AdminArgs),
    /// Remove one and its data, by name or by instance; refused while its container runs.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["name", "class"])))]
    Rm {
        /// The volume's name, as `valet volumes ls` shows it.
        name: Option<String>,
        /// The instance's class (with --key) instead of a name.
        #[arg(long, requires = "key")]
        class: Option<String>,
        #[arg(long, requires = "class")]
        key: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How an admin command finds the running valet: the admin listener and token of the config
/// beside it (`admin_listen`; `server.admin_token` or `<data_dir>/admin-token`).
#[derive(Args, Clone)]
pub struct AdminArgs {
    /// Path of valet.toml.
    #[arg(short, long, default_value = "valet.toml", env = "VALET_CONFIG")]
    pub config: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
pub struct InstanceArgs {
    /// A container class, or a deployed project by its name or id.
    pub class: String,
    /// Needed when the class has more than one key (a project has one).
    pub key: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// A command run beside a valet.toml uses it by default.
pub fn config_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| PathBuf::from("valet.toml"))
}

/// `RUST_LOG` filters as usual; the default shows valet's own info lines.
pub fn init_tracing(global: &Global) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file or a pipe (journald, `| grep`) gets
    // plain text, and NO_COLOR turns it off everywhere.
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs a command's async body on a small runtime of its own and turns its outcome into the
/// exit code: `error: ...` on stderr and failure, or success.
pub fn run_to_exit(
    body: impl std::future::Future<Output = Result<(), String>>,
) -> std::process::ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(body));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
