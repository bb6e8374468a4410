//! Cold start: the app's own start-up, measured by spawning the upstream binary (or creating
//! and starting its container through the Engine API, as valet's Docker driver does) and
//! polling it until it answers, beside the time to first byte of a request to a fresh key
//! through valet. valet's share is the difference. The two run alternately so both see the
//! same machine load.

use crate::http::{get_fresh, BoxError};
use crate::stats::{ResultLine, Samples};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::RemoveContainerOptions;
use bollard::Docker;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Cold {
    /// valet's gateway.
    pub valet: SocketAddr,
    /// Request path with `{key}` where the fresh key goes, e.g. `/cold/{key}/`.
    pub path: String,
    /// Prefix of the fresh keys, so repeated runs against one valet never reuse a key.
    pub key_prefix: String,
    pub runs: usize,
    /// What valet's class runs, started here without valet.
    pub app: App,
    /// How often the direct measurement retries while the app is not up yet.
    pub poll: Duration,
}

/// The app of the measured class.
pub enum App {
    /// A binary taking its port as its only argument (process driver).
    Process(PathBuf),
    /// An image whose default command listens on `port` inside the container (Docker driver).
    Docker { image: String, port: u16 },
}

impl Cold {
    pub async fn run(&self) -> Result<(), BoxError> {
        let mut app = Vec::with_capacity(self.runs);
        let mut through = Vec::with_capacity(self.runs);
        for i in 0..self.runs {
            app.push(self.app_alone().await?);
            let path = self
                .path
                .replace("{key}", &format!("{}{i}", self.key_prefix));
            let (status, first_byte) = get_fresh(self.valet, &path).await?;
            if !status.is_success() {
                return Err(format!("cold request {path} answered {status}").into());
            }
            through.push(first_byte);
        }
        let (app, through) = (
            Samples::from_durations_ms(&app),
            Samples::from_durations_ms(&through),
        );
        ResultLine::new()
            .int("runs", self.runs)
            .num("app_p50_ms", app.pct(50.0))
            .num("app_p90_ms", app.pct(90.0))
            .num("valet_p50_ms", through.pct(50.0))
            .num("valet_p90_ms", through.pct(90.0))
            .num("share_p50_ms", through.pct(50.0) - app.pct(50.0))
            .num("share_p90_ms", through.pct(90.0) - app.pct(90.0))
            .print();
        Ok(())
    }

    async fn app_alone(&self) -> Result<Duration, BoxError> {
        match &self.app {
            App::Process(bin) => self.process_alone(bin).await,
            App::Docker { image, port } => self.container_alone(image, *port).await,
        }
    }

    /// Spawn to first answered request, polling every `poll`; the process is killed after.
    async fn process_alone(&self, bin: &PathBuf) -> Result<Duration, BoxError> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        let mut child = tokio::process::Command::new(bin)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let answered = self.first_answer(addr, started).await;
        child.kill().await?;
        answered
    }

    /// Create and start through the Engine API (the container published on a loopback port,
    /// with an init process, as valet's driver does) to first answered request; removed after.
    async fn container_alone(&self, image: &str, port: u16) -> Result<Duration, BoxError> {
        let docker = Docker::connect_with_local_defaults()?
            .negotiate_version()
            .await?;
        let host_port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], host_port));
        let key = format!("{port}/tcp");
        let binding = PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(host_port.to_string()),
        };
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            exposed_ports: Some(vec![key.clone()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(key, Some(vec![binding]))])),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let started = Instant::now();
        let id = docker.create_container(None, body).await?.id;
        let answered = match docker.start_container(&id, None).await {
            Ok(()) => self.first_answer(addr, started).await,
            Err(e) => Err(e.into()),
        };
        let remove = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        docker.remove_container(&id, Some(remove)).await?;
        answered
    }

    /// Polls `addr` every `poll` until it answers a GET with success; the time since `started`.
    async fn first_answer(&self, addr: SocketAddr, started: Instant) -> Result<Duration, BoxError> {
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Ok((status, _)) = get_fresh(addr, "/").await {
                if status.is_success() {
                    return Ok(started.elapsed());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("the app did not answer on {addr} within 30 s").into());
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// A port that was free a moment ago; the kernel does not hand it out again right away.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
