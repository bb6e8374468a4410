//! Packaging: how an uploaded version becomes runnable on the engine valet runs on. This is
//! the one place the deploy pipeline differs per engine; the orchestration (upload, build,
//! start, ready, record, switch) never asks which engine it is.
//!
//! - [`ProcessPackager`]: the version is a folder on this host and a command run in it, as
//!   the project's own system user when valet is root.
//! - [`DockerPackager`]: the version is an image built `FROM` the runtime's base image, for
//!   every driver that runs images (Docker, Swarm, Kubernetes); its classes are registered on
//!   the driver, which knows only valet.toml's. Where the image is built and how it reaches the
//!   engine's nodes (loaded onto each, pushed to a registry) is the driver's
//!   [`valet_runtime::ProjectEngine`].

mod docker;
mod process;

pub use docker::DockerPackager;
pub use process::ProcessPackager;

use crate::progress::Progress;
use crate::DeployError;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use valet_config::{Config, ContainerClass};

/// Everything deploys make lives below `<data_dir>/deploy`.
pub(crate) fn deploy_root(config: &Config) -> PathBuf {
    config.data_dir().join("deploy")
}

/// Installed requirement sets, shared by every app with the same set.
fn cache_root(config: &Config) -> PathBuf {
    deploy_root(config).join("cache")
}

/// A runtime valet can prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Python,
    Node,
}

impl Runtime {
    /// The name stored with a deployment.
    pub fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Node => "node",
        }
    }
}

/// An unpacked app, still in its staging folder, whose requirements are to be installed.
pub struct App<'a> {
    pub runtime: Runtime,
    /// The app's top folder (`app.py`, `index.js`, ...).
    pub dir: &'a Path,
    /// Requirements, already parsed and checked for its runtime.
    pub requirements: &'a [String],
}

/// An app whose requirements are installed: what runs it, and what an image needs beside it.
pub struct Prepared {
    pub runtime: Runtime,
    /// argv: on the host, or inside the image.
    pub command: Vec<String>,
    /// Whether its requirement set was already installed.
    pub reused_cache: bool,
    /// Host folders copied into the image, and where (images only).
    pub copies: Vec<(PathBuf, String)>,
    /// Environment baked into the image (images only).
    pub env: Vec<(String, String)>,
}

impl Prepared {
    /// A build that runs `command`, with nothing copied beside it.
    pub fn run(runtime: Runtime, command: Vec<String>, reused_cache: bool) -> Self {
        Self {
            runtime,
            command,
            reused_cache,
            copies: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// One version of a project, as the packager sees it.
pub struct Version<'a> {
    pub project: &'a str,
    /// The build id (`deploy/builds/<build>`).
    pub build: &'a str,
    /// Its number, for messages (0 while it is being deployed).
    pub number: i64,
    /// Its build folder, the app as prepared.
    pub app: &'a Path,
    /// The project's persistent folder on this host, shared by its versions.
    pub data: &'a Path,
}

/// What a version's class needs beyond the settings every version shares.
#[derive(Debug, Default)]
pub struct Runnable {
    /// The image its instances run (`None`: the command, in its build folder).
    pub image: Option<String>,
    /// Where the project's volume is mounted (`None`: its data is a folder on this host).
    pub volume: Option<String>,
    /// The system user it runs as on this host (`None`: valet's, or the image's own).
    pub user: Option<String>,
}

/// How versions become runnable on one engine. Chosen once at start-up with the driver, and
/// called by the deployer only; each method says what it undoes or relies on.
#[async_trait]
pub trait Packager: Send + Sync + 'static {
    /// The engine's name, for logs.
    fn name(&self) -> &'static str;

    /// Installs an app's requirements for where it will run (the host's interpreter, or the
    /// base image's). Called while the app is still in staging; a failure leaves nothing.
    async fn prepare(&self, app: &App<'_>, progress: &Progress) -> Result<Prepared, DeployError>;

    /// Makes a prepared version, now in its build folder, runnable: handed to the project's
    /// user, or built into an image. [`Packager::remove_version`] undoes it.
    async fn package(
        &self,
        version: &Version<'_>,
        prepared: &Prepared,
        progress: &Progress,
    ) -> Result<(), DeployError>;

    /// How a packaged version runs (also for versions packaged by an earlier valet, when
    /// restoring or rolling back). Fails when what it needs is gone.
    async fn runnable(&self, version: &Version<'_>) -> Result<Runnable, DeployError>;

    /// A version's class is about to start: engines that do not read valet.toml's classes
    /// only (Docker) learn it here, and which of its env are the project's secrets.
    fn register(&self, _project: &str, _class: &ContainerClass, _secrets: &[String]) {}

    /// A version's class stopped for good and will not start again.
    fn forget(&self, _class: &str) {}

    /// Removes what [`Packager::package`] made for a version that will not run.
    async fn remove_version(&self, _project: &str, _build: &str) {}

    /// Removes what the engine holds for a deleted project (its images, volume, network).
    async fn remove_project(&self, _project: &str) {}
}
