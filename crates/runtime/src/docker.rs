//! The Docker driver: every instance is a container on the local Docker Engine (bollard, API
//! version negotiated, so Engine 20.10 / API 1.41 works).
//!
//! - [`settings`] reads each class's image, volume, limits and network from the config once;
//! - [`image`] builds Dockerfiles (tagged by a hash of [`context`] and build args);
//! - [`pull`] pulls image references by each class's `pull` policy, with the credentials
//!   [`registry`] finds (valet.toml's `[[registries]]`, the user's Docker config);
//! - [`provision`] makes the per-instance volume and the internal network;
//! - [`container`] turns a spec into a create body, [`reach`] says where valet connects;
//! - [`running`] is the handle the instance layer holds: exit, stop, remove;
//! - [`recover`] finds this valet's containers after a restart and adopts the running ones;
//! - [`names`] names and labels everything, scoped to one data folder;
//! - [`volumes`] lists and removes the per-instance volumes for `valet volumes`.

pub(crate) mod container;
mod context;
pub(crate) mod error;
pub(crate) mod image;
pub(crate) mod logs;
pub(crate) mod names;
pub(crate) mod project;
mod provision;
mod pull;
pub(crate) mod reach;
mod recover;
pub(crate) mod registry;
pub(crate) mod running;
pub(crate) mod settings;
mod volumes;

pub use names::{CLASS, CONFIG_HASH, KEY, MANAGED, PROJECT, SCOPE};
pub use project::{ProjectBuild, ProjectImages, APP_DIR, DATA_DIR};
pub use settings::Resources;
pub use volumes::{VolumeInfo, VolumeTarget, VolumeUser, Volumes};

use crate::driver::{
    remove_data_dir, Adopted, Driver, DriverError, Endpoints, InstanceSpec, PhaseSink, Running,
};
use crate::logs::LogRing;
use async_trait::async_trait;
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;
use container::Plan;
use error::engine;
use image::Images;
use provision::Network;
use reach::Reach;
use running::DockerInstance;
use settings::ClassSettings;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use valet_config::Config;

fn unreachable(e: bollard::errors::Error) -> DriverError {
    DriverError::io(
        "cannot reach the Docker Engine (is dockerd running? DOCKER_HOST may point elsewhere)",
        std::io::Error::other(e),
    )
}

/// The engine client (`DOCKER_HOST`, else the local socket), its API version negotiated.
async fn connect_engine() -> Result<Docker, DriverError> {
    let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// How many CPUs the engine's host has: the most a container may be given.
pub async fn engine_cpus() -> Result<u32, DriverError> {
    let info = connect_engine().await?.info().await.map_err(unreachable)?;
    Ok(info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(1))
}

/// One image `valet check --pull` looked at.
#[derive(Debug)]
pub struct ImageCheck {
    /// `class `NAME`` or `[deploy] python_image`.
    pub what: String,
    /// A class's image (its start needs it), rather than a deploy base image (only a deploy
    /// does).
    pub required: bool,
    pub reference: String,
    /// What was found: the registry's digest, or that the engine has it.
    pub outcome: Result<String, String>,
    /// Found, but only on this engine: the registry did not resolve it (the message says
    /// why). Starts work here; another machine's would not.
    pub local_only: Option<String>,
    /// Not asked of the registry: its `[[registries]]` password is not in this process's
    /// environment, and `valet check` cannot read valet's secret store, where `valet up` may
    /// find it. `outcome` says so; a warning, not a failure.
    pub unchecked: bool,
}

/// Whether every class's image reference (and, with `deploy`, the deploy API's base images)
/// can be had: asked of its registry through the engine, with the credentials a pull would
/// use, without pulling. `pull = "never"` asks the engine alone.
pub async fn check_images(config: &Config, deploy: bool) -> Result<Vec<ImageCheck>, DriverError> {
    // On a swarm, images are built and pulled on the manager (and loaded onto the nodes).
    let docker = match config.server.driver.as_str() {
        "swarm" => crate::swarm::manager(config).await?.1,
        _ => connect_engine().await?,
    };
    let mut wanted = Vec::new();
    for class in &config.containers {
        let image = class.image.as_deref().unwrap_or_default();
        match image::ImageSource::parse(image, &config.base_dir, &config.data_dir()) {
            image::ImageSource::Reference(reference) => {
                let what = format!("class `{}`", class.class_name);
                wanted.push((what, true, reference, class.pull));
            }
            // The engine pulls a Dockerfile's bases when it builds: they must resolve too.
            image::ImageSource::Dockerfile { dockerfile, .. } => {
                let text = std::fs::read_to_string(&dockerfile).unwrap_or_default();
                for base in image::from_images(&text) {
                    let what = format!("class `{}` (FROM)", class.class_name);
                    wanted.push((what, true, base, valet_config::PullPolicy::Missing));
                }
            }
        }
    }
    if deploy {
        for (key, image) in [
            ("python_image", &config.deploy.python_image),
            ("node_image", &config.deploy.node_image),
        ] {
            let what = format!("[deploy] {key}");
            wanted.push((
                what,
                false,
                image.clone(),
                valet_config::PullPolicy::Missing,
            ));
        }
    }
    let mut checks = Vec::new();
    for (what, required, reference, policy) in wanted {
        let local = docker.inspect_image(&reference).await.is_ok();
        let host = registry::Reference::parse(&reference).registry;
        let no_password = registry::password_unknown(&config.registries, &host);
        let unchecked = policy != valet_config::PullPolicy::Never && no_password.is_some();
        let (outcome, local_only) = if let Some(no) = no_password.filter(|_| unchecked) {
            let secret = &no.secret;
            let why = format!(
                "image {reference} not checked: {secret}, the password of registry {host}, \
                 is not in this environment; `valet up` also reads valet's secret store \
                 (`valet secret put {secret} --registry`), which `valet check` cannot"
            );
            (Err(why), None)
        } else if policy == valet_config::PullPolicy::Never {
            let outcome = match local {
                true => Ok("on the engine (pull = \"never\")".to_string()),
                false => Err("not on the engine, and pull = \"never\"".to_string()),
            };
            (outcome, None)
        } else {
            match pull::resolve_remote(&docker, &config.registries, &reference).await {
                Ok(digest) => (Ok(digest), None),
                Err(why) if local => (Ok("on the engine".to_string()), Some(why)),
                Err(why) => (Err(why), None),
            }
        };
        checks.push(ImageCheck {
            what,
            required,
            reference,
            outcome,
            local_only,
            unchecked,
        });
    }
    Ok(checks)
}

/// Runs instances as containers. Cheap to clone.
#[derive(Clone)]
pub struct DockerDriver {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    /// Hash of the data folder: this valet's label on everything it makes.
    scope: String,
    classes: HashMap<String, ClassSettings>,
    /// Classes of deployed projects' versions, registered by the deployer (they are not in
    /// valet.toml). Read once per container start, so a plain lock does.
    projects: crate::project::ProjectClasses,
    /// The engine's cores: the most CPU a container may be given.
    host_cpus: u32,
    images: Images,
    data_dir: PathBuf,
    /// A rootless engine's container addresses cannot be reached from here (see [`reach`]).
    rootless: bool,
    /// Held while the internal network is looked up or made, so only one is made.
    network: tokio::sync::Mutex<()>,
}

impl DockerDriver {
    /// Connects to the engine (`DOCKER_HOST`, else the local socket) and reads the classes
    /// from the config. Fails with a clear message when no engine answers.
    pub async fn connect(config: &Config) -> Result<Self, DriverError> {
        let docker = connect_engine().await?;
        let info = docker.info().await.map_err(unreachable)?;
        let host_cpus = info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
        let security = info.security_options.unwrap_or_default();
        let rootless = security.iter().any(|o| o.contains("name=rootless"));
        let data_dir = config.data_dir();
        tokio::fs::create_dir_all(&data_dir)
            .await
            .map_err(|e| DriverError::io(format!("cannot create {}", data_dir.display()), e))?;
        let scope = names::scope_of(&data_dir);
        tracing::info!(
            api = %docker.client_version(),
            engine = info.server_version.as_deref().unwrap_or("?"),
            host_cpus,
            scope = %scope,
            "docker driver connected"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                images: Images::new(
                    docker.clone(),
                    config.registries.clone(),
                    config.server.timeouts.pull.get(),
                ),
                classes: settings::all(config, host_cpus),
                projects: Default::default(),
                host_cpus,
                docker,
                scope,
                data_dir,
                rootless,
                network: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The label value that marks this valet's containers, volumes and network.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// The engine client, for tools and tests that inspect what the driver made.
    pub fn engine(&self) -> &Docker {
        &self.inner.docker
    }

    fn class(&self, name: &str) -> Result<ClassSettings, DriverError> {
        if let Some(settings) = self.inner.classes.get(name) {
            return Ok(settings.clone());
        }
        (self.inner.projects.get(name))
            .ok_or_else(|| DriverError::Spec(format!("class `{name}` is not in the config")))
    }

    /// The network a class's containers join: a project's own, the internal one, or none
    /// (the default bridge).
    async fn network_for(&self, settings: &ClassSettings) -> Result<Option<Network>, DriverError> {
        let (docker, scope) = (&self.inner.docker, &self.inner.scope);
        if let Some(project) = &settings.project {
            let _one_at_a_time = self.inner.network.lock().await;
            return provision::project_network(docker, scope, project)
                .await
                .map(Some);
        }
        if settings.internet {
            return Ok(None);
        }
        let _one_at_a_time = self.inner.network.lock().await;
        let name = provision::internal_network(docker, scope).await?;
        Ok(Some(Network {
            name,
            internal: true,
        }))
    }
}

impl DockerDriver {
    /// Where valet reaches a container just started or found running.
    async fn endpoints_of(
        &self,
        id: &str,
        ports: &[(String, u16)],
        network: Option<&Network>,
    ) -> Result<Endpoints, DriverError> {
        let inspect = self
            .inner
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| engine("cannot inspect the container", e))?;
        let exited = inspect.state.as_ref().and_then(|s| s.running) == Some(false);
        let reach = match network {
            // Nothing is published from an internal network: its address is the only way in.
            Some(n) if n.internal || !self.inner.rootless => Reach::Network(&n.name),
            _ => Reach::choose(None, self.inner.rootless),
        };
        match reach::endpoints(ports, &inspect, reach) {
            Ok(endpoints) => Ok(endpoints),
            // Exited already, so the engine dropped its addresses: hand it over anyway and let
            // the instance layer report the exit code and output like any early exit.
            Err(_) if exited => Ok(reach::unreachable(ports)),
            Err(e) => Err(DriverError::io(
                "container endpoints",
                std::io::Error::other(e),
            )),
        }
    }
}

#[async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn recover(&self) -> Result<Vec<Adopted>, DriverError> {
        let adopted = recover::run(self).await?;
        recover::prebuild(self.clone());
        Ok(adopted)
    }

    async fn start_reporting(
        &self,
        spec: &InstanceSpec,
        phase: PhaseSink<'_>,
    ) -> Result<Box<dyn Running>, DriverError> {
        let class = spec.id.class();
        let settings = &self.class(class)?;
        let docker = &self.inner.docker;
        let ring = Arc::new(LogRing::new(spec.log_lines));
        let mut sink = logs::LogSink::open(&spec.log_path, ring.clone()).await;

        let resolved = self.inner.images.resolve(class, settings).await?;
        let image = resolved.reference.clone();
        let images = &self.inner.images;
        let image_id = images
            .ensure(class, settings, resolved, &mut sink, phase)
            .await?;
        let config_hash = settings.config_hash(&image_id);
        match (&settings.volume, &settings.project) {
            (None, _) => {}
            (Some(_), Some(project)) => {
                provision::project_volume(docker, &self.inner.scope, project).await?;
            }
            (Some(_), None) => {
                provision::volume(docker, &self.inner.scope, &spec.id).await?;
            }
        }
        let network = self.network_for(settings).await?;
        let plan = Plan {
            spec,
            settings,
            scope: &self.inner.scope,
            image: &image,
            config_hash: &config_hash,
            network: network.as_ref(),
        };
        let name = plan.name();
        // A container of this name is a stopped leftover: the instance layer never starts a
        // key that still runs, and the name being taken would fail the create.
        running::remove(docker, &name).await;
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let created = docker
            .create_container(Some(options), plan.body()?)
            .await
            .map_err(|e| engine(format!("class `{class}`: cannot create container"), e))?;
        let id = created.id;
        if let Err(e) = docker.start_container(&id, None).await {
            running::remove(docker, &id).await;
            return Err(engine(
                format!("class `{class}`: cannot start container"),
                e,
            ));
        }
        let pump = logs::follow(docker.clone(), id.clone(), "all", sink);
        let endpoints = match self.endpoints_of(&id, &spec.ports, network.as_ref()).await {
            Ok(endpoints) => endpoints,
            Err(e) => {
                running::remove(docker, &id).await;
                return Err(e);
            }
        };
        tracing::info!(instance = %spec.id, container = %name, %image, "container started");
        Ok(Box::new(DockerInstance::watch(
            docker.clone(),
            id,
            endpoints,
            ring,
            pump,
        )))
    }

    async fn destroy(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        // A project's volume belongs to the project, not to one version's instance: it goes
        // with the project (`remove_project`), never when a version is stopped for good.
        let of_project = self
            .class(spec.id.class())
            .is_ok_and(|settings| settings.project.is_some());
        if !of_project {
            provision::remove_volume(&self.inner.docker, &self.inner.scope, &spec.id).await?;
        }
        // The driver keeps nothing in the data folder, but a class that switched from the
        // process driver may have left data there: destroy means all of it.
        remove_data_dir(spec).await
    }
}
