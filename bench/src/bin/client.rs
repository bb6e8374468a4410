//! `valet-bench`: the load clients behind bench/run.sh. Each subcommand prints one
//! `RESULT k=v ...` line on stdout.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use valet_bench::{
    burst,
    cold::{App, Cold},
    http::BoxError,
    keys::Keys,
    sse,
    ws::Ws,
};

#[derive(Parser)]
#[command(about = "Load clients for bench/run.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cold start: the app alone vs a fresh key through valet.
    Cold {
        #[arg(long)]
        valet: SocketAddr,
        #[arg(long, default_value = "/cold/{key}/")]
        path: String,
        #[arg(long, default_value = "cold")]
        key_prefix: String,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// The binary the class runs (process driver) ...
        #[arg(long, required_unless_present = "docker_image")]
        upstream_bin: Option<PathBuf>,
        /// ... or the image it runs (Docker driver), listening on `--docker-port` inside.
        #[arg(long, conflicts_with = "upstream_bin")]
        docker_image: Option<String>,
        #[arg(long, default_value_t = 8080)]
        docker_port: u16,
        /// Poll interval, in microseconds, while waiting for the app started without valet.
        #[arg(long, default_value_t = 200)]
        poll_us: u64,
    },
    /// Burst: N simultaneous first requests to one path.
    Burst {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
    },
    /// Many keys: one request per key.
    Keys {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long, default_value = "k")]
        key_prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// WebSocket echo: messages per second and round-trip time.
    Ws {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 64)]
        window: usize,
        #[arg(long, default_value_t = 2_000)]
        round_trips: usize,
    },
    /// SSE: delivery delay of timestamped events.
    Sse {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 10)]
        streams: usize,
        #[arg(long, default_value_t = 200)]
        events: u64,
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valet-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), BoxError> {
    match command {
        Command::Cold {
            valet,
            path,
            key_prefix,
            runs,
            upstream_bin,
            docker_image,
            docker_port,
            poll_us,
        } => {
            let poll = Duration::from_micros(poll_us);
            let app = match (upstream_bin, docker_image) {
                (_, Some(image)) => App::Docker {
                    image,
                    port: docker_port,
                },
                (Some(bin), None) => App::Process(bin),
                (None, None) => return Err("--upstream-bin or --docker-image is required".into()),
            };
            Cold {
                valet,
                path,
                key_prefix,
                runs,
                app,
                poll,
            }
            .run()
            .await
        }
        Command::Burst {
            addr,
            path,
            clients,
        } => burst::run(addr, &path, clients).await,
        Command::Keys {
            addr,
            path,
            key_prefix,
            count,
            concurrency,
        } => {
            Keys {
                addr,
                path,
                key_prefix,
                count,
                concurrency,
            }
            .run()
            .await
        }
        Command::Ws {
            url,
            connections,
            messages,
            size,
            window,
            round_trips,
        } => {
            Ws {
                url,
                connections,
                messages,
                size,
                window,
                round_trips,
            }
            .run()
            .await
        }
        Command::Sse {
            addr,
            streams,
            events,
            interval_ms,
        } => sse::run(addr, streams, events, interval_ms).await,
    }
}
