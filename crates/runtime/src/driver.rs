//! The contract between the instance layer and whatever runs instances.

use crate::logs::LogRing;
use async_trait::async_trait;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use valet_core::InstanceId;

/// Everything a driver needs to start one instance. Built by the instance layer from the class
/// config; drivers never read valet.toml themselves.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Class and key.
    pub id: InstanceId,
    /// argv for the process driver, `{port}` / `{port.NAME}` not yet substituted.
    pub command: Vec<String>,
    /// Image reference or Dockerfile path for the docker driver.
    pub image: Option<String>,
    /// Named ports inside the instance (the process driver ignores the numbers and picks free
    /// loopback ports; docker publishes these container ports).
    pub ports: Vec<(String, u16)>,
    /// Name of the port handed over as `PORT`.
    pub default_port: String,
    /// Environment, secrets included.
    pub env: Vec<(String, String)>,
    /// Working directory (the config file's folder).
    pub work_dir: PathBuf,
    /// Persistent directory of this instance (`VALET_DATA_DIR`); survives sleep and restarts.
    pub data_dir: PathBuf,
    /// File that receives the instance's stdout and stderr.
    pub log_path: PathBuf,
    /// Optional user to run as.
    pub user: Option<String>,
    /// Lines of output kept in memory while the instance lives.
    pub log_lines: usize,
}

/// Where a running instance's named ports can be reached from valet.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub ports: Vec<(String, SocketAddr)>,
}

impl Endpoints {
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.ports.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ExitStatus {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(sig)) => write!(f, "killed by signal {sig}"),
            (None, None) => f.write_str("exit status unknown"),
        }
    }
}

/// A driver failed. Each variant says whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The spec cannot work as given (empty command, unknown user, missing image).
    #[error("{0}")]
    Spec(String),
    /// An image could not be had: not on the engine with `pull = "never"`, or its pull failed
    /// (unknown, unauthorised, registry unreachable). The message names the image and the
    /// registry's own answer and nothing of this machine, so it may be told to clients.
    #[error("{message}")]
    Image { message: String, retryable: bool },
    /// The engine took the instance but cannot run it as asked: no node takes it, its volume
    /// is not bound. The message names the cause (in the engine's terms, nothing of this
    /// machine), so it may be told to clients; a later start may pass.
    #[error("{message}")]
    Stuck { message: String },
    /// The system refused (spawn failed, no free port, engine unreachable). May pass on retry.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the same start may succeed if tried again later.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Image { retryable, .. } => *retryable,
            other => matches!(other, Self::Io { .. } | Self::Stuck { .. }),
        }
    }

    /// What clients waiting on the start may be told of this failure, if anything: other
    /// errors can name paths and commands, and stay in the log and the admin API.
    pub fn public_reason(&self) -> Option<&str> {
        match self {
            Self::Image { message, .. } | Self::Stuck { message } => Some(message),
            _ => None,
        }
    }
}

/// What a start is busy with, for those who wait on it: see [`Driver::start_reporting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPhase {
    /// Getting the instance's image from its registry, or waiting for another start's pull
    /// of it. Not counted against the readiness timeout; the driver bounds it
    /// (`server.timeouts.pull`).
    Pulling,
    /// The image is here: the instance is being created and launched.
    Launching,
}

/// Where a driver tells which [`StartPhase`] a start is in.
pub type PhaseSink<'a> = &'a (dyn Fn(StartPhase) + Send + Sync);

/// Runs instances.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// `"process"`, `"docker"`, ...
    fn name(&self) -> &'static str;

    /// Called once at start-up, before any instance starts: cleans what an earlier valet that
    /// was killed left behind (process groups, containers). Instances that still run and still
    /// match their class (containers survive valet) are handed back to be adopted as ready.
    async fn recover(&self) -> Result<Vec<Adopted>, DriverError>;

    /// Launches one instance. Returns once it is launched, not once it is ready: readiness is
    /// probed by the instance layer on [`Running::endpoints`].
    async fn start(&self, spec: &InstanceSpec) -> Result<Box<dyn Running>, DriverError> {
        self.start_reporting(spec, &|_| {}).await
    }

    /// [`Self::start`], telling `phase` when the start waits for its image to be pulled and
    /// when that is over. A driver that never pulls says nothing.
    async fn start_reporting(
        &self,
        spec: &InstanceSpec,
        phase: PhaseSink<'_>,
    ) -> Result<Box<dyn Running>, DriverError>;

    /// Deletes an instance's persistent data for good (admin `destroy`), after it stopped.
    /// The default removes its data folder, which is all the process driver keeps.
    async fn destroy(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        remove_data_dir(spec).await
    }
}

/// Removes an instance's data folder; one that was never made is no error.
pub async fn remove_data_dir(spec: &InstanceSpec) -> Result<(), DriverError> {
    match tokio::fs::remove_dir_all(&spec.data_dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::io(
            format!("cannot remove {}", spec.data_dir.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// One launched instance. Dropping it without [`Running::stop`] kills it.
#[async_trait]
pub trait Running: Send + Sync {
    /// Addresses of its named ports.
    fn endpoints(&self) -> &Endpoints;

    /// Its recent output.
    fn logs(&self) -> Arc<LogRing>;

    /// How readiness and liveness are probed: over the network unless the engine knows better.
    fn prober(&self) -> Arc<dyn crate::Probe> {
        Arc::new(crate::NetProbe)
    }

    /// Resolves when it exits without being asked. Cancel-safe: may be polled in a select loop.
    async fn exited(&mut self) -> ExitStatus;

    /// Asks it to stop (SIGTERM), waits up to `timeout`, then kills it (SIGKILL), and reaps it.
    async fn stop(&mut self, timeout: Duration) -> ExitStatus;
}

/// An instance an earlier valet started that is still running, found by [`Driver::recover`].
pub struct Adopted {
    pub id: InstanceId,
    pub running: Box<dyn Running>,
    /// Made from an older class config: it serves until the instance layer has started a
    /// successor from the current config and seen it ready, then it is stopped.
    pub stale: bool,
}

/// A driver whose first start hands over an adopted instance instead of launching a new one;
/// later starts (after a crash or sleep) go to the real driver. This lets the instance layer
/// run an adopted instance through its ordinary task, readiness probe included.
pub struct Handover {
    adopted: std::sync::Mutex<Option<Box<dyn Running>>>,
    driver: Arc<dyn Driver>,
}

impl Handover {
    pub fn new(running: Box<dyn Running>, driver: Arc<dyn Driver>) -> Self {
        Self {
            adopted: std::sync::Mutex::new(Some(running)),
            driver,
        }
    }
}

#[async_trait]
impl Driver for Handover {
    fn name(&self) -> &'static str {
        self.driver.name()
    }

    async fn recover(&self) -> Result<Vec<Adopted>, DriverError> {
        Ok(Vec::new())
    }

    async fn start_reporting(
        &self,
        spec: &InstanceSpec,
        phase: PhaseSink<'_>,
    ) -> Result<Box<dyn Running>, DriverError> {
        let adopted = self
            .adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match adopted {
            Some(running) => Ok(running),
            None => self.driver.start_reporting(spec, phase).await,
        }
    }

    async fn destroy(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.driver.destroy(spec).await
    }
}
