//! Versions run as images on an engine that runs them (Docker, Swarm, Kubernetes): each
//! version is an image built `FROM` the runtime's base image with the app and its
//! requirements copied in. Requirements are installed on the host (no registry is reachable
//! from inside a build here), for the base image's interpreter. Where the image is built and
//! how it reaches the engine's nodes is the driver's ([`ProjectEngine`]); this is the same
//! for all of them.

use super::{App, Packager, Prepared, Runnable, Runtime, Version};
use crate::cache::Cache;
use crate::progress::Progress;
use crate::{node, python, DeployError};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use valet_config::{Config, ContainerClass};
use valet_runtime::docker::{ProjectBuild, APP_DIR};
use valet_runtime::{DriverError, ProjectEngine};

/// Lines of `docker build` output kept for the error of a failed build.
const BUILD_TAIL: usize = 15;

/// Packages versions as images for a driver that runs images.
pub struct DockerPackager {
    engine: Arc<dyn ProjectEngine>,
    cache: Cache,
    python_image: String,
    node_image: String,
}

impl DockerPackager {
    /// Images are built where `engine` builds them from `config`'s `[deploy]` base images;
    /// requirement sets are installed in its deploy cache.
    pub fn new(config: &Config, engine: Arc<dyn ProjectEngine>) -> Self {
        Self {
            engine,
            cache: Cache::new(super::cache_root(config)),
            python_image: config.deploy.python_image.clone(),
            node_image: config.deploy.node_image.clone(),
        }
    }

    fn base(&self, runtime: Runtime) -> &str {
        match runtime {
            Runtime::Python => &self.python_image,
            Runtime::Node => &self.node_image,
        }
    }

    /// A Python app for an image: requirements installed on the host for the base image's
    /// Python, to be copied in and put on `PYTHONPATH`.
    async fn python(&self, app: &App<'_>, progress: &Progress) -> Result<Prepared, DeployError> {
        // A base image the engine lacks is pulled here: its milestones are the deploy's progress.
        let mut pulling = |line: &str| progress.line(line);
        let env = self
            .engine
            .base_image_env(&self.python_image, &mut pulling)
            .await
            .map_err(unavailable)?;
        let target = python::image_python(&env);
        let ready = python::prepare_for_image(
            app.dir,
            app.requirements,
            target.as_deref(),
            &self.cache,
            progress,
        )
        .await?;
        let mut prepared = Prepared::run(Runtime::Python, ready.command, ready.reused);
        if let Some(site) = ready.site {
            prepared.copies.push((site, python::IMAGE_SITE.into()));
            let path = ("PYTHONPATH".to_string(), python::IMAGE_SITE.to_string());
            prepared.env.push(path);
        }
        // print() reaches the log at once, not when a buffer fills.
        prepared.env.push(("PYTHONUNBUFFERED".into(), "1".into()));
        Ok(prepared)
    }

    /// A Node app for an image: prepared as for the process driver, then the cache's
    /// `node_modules`, linked into the build, becomes a copy into the image.
    async fn node(&self, app: &App<'_>, progress: &Progress) -> Result<Prepared, DeployError> {
        // Checked before installing anything: without it nothing can run.
        let mut pulling = |line: &str| progress.line(line);
        self.engine
            .base_image_env(&self.node_image, &mut pulling)
            .await
            .map_err(unavailable)?;
        let ready = node::prepare(app.dir, app.requirements, &self.cache, progress).await?;
        let command = vec!["node".to_string(), "index.js".to_string()];
        let mut prepared = Prepared::run(Runtime::Node, command, ready.reused);
        if let Some(cached) = self.cached_modules(app.dir)? {
            prepared
                .copies
                .push((cached, format!("{APP_DIR}/node_modules")));
        }
        Ok(prepared)
    }

    /// Unlinks the `node_modules` link valet made into its cache and returns its target. An
    /// uploaded `node_modules` link (which may point anywhere relative) is left as it is, a
    /// link in the image.
    fn cached_modules(&self, dir: &Path) -> Result<Option<PathBuf>, DeployError> {
        let link = dir.join("node_modules");
        let cached = std::fs::read_link(&link)
            .ok()
            .filter(|target| target.is_absolute() && target.starts_with(self.cache.root()));
        if cached.is_some() {
            std::fs::remove_file(&link)
                .map_err(|e| DeployError::io("cannot unlink node_modules", e))?;
        }
        Ok(cached)
    }
}

#[async_trait]
impl Packager for DockerPackager {
    fn name(&self) -> &'static str {
        self.engine.name()
    }

    /// Refused before anything is installed when the engine cannot run versions as it is
    /// configured: the engine's reason names what to set.
    async fn prepare(&self, app: &App<'_>, progress: &Progress) -> Result<Prepared, DeployError> {
        self.engine.can_deploy().map_err(DeployError::Unavailable)?;
        match app.runtime {
            Runtime::Python => self.python(app, progress).await,
            Runtime::Node => self.node(app, progress).await,
        }
    }

    /// Builds the version's image; a failed build is the upload's fault (its last lines of
    /// output are the error), an engine that fails is the operator's.
    async fn package(
        &self,
        version: &Version<'_>,
        prepared: &Prepared,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        progress.stage("building image");
        let request = ProjectBuild {
            project: version.project,
            build: version.build,
            base: self.base(prepared.runtime),
            app: version.app,
            copies: prepared.copies.clone(),
            env: prepared.env.clone(),
            command: prepared.command.clone(),
        };
        let mut tail: Vec<String> = Vec::new();
        let built = self
            .engine
            .build_project_image(request, &mut |line| {
                progress.line(line.to_string());
                tail.push(line.to_string());
                if tail.len() > BUILD_TAIL {
                    tail.remove(0);
                }
            })
            .await;
        match built {
            Ok(_) => Ok(()),
            Err(DriverError::Spec(message)) => Err(DeployError::Install {
                tool: "docker build",
                log: if tail.is_empty() {
                    message
                } else {
                    tail.join("\n")
                },
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The image is what runs (its build folder is kept for a rebuild only); the app runs as
    /// the image's unprivileged user, with the project's volume as its data where the engine
    /// keeps one.
    async fn runnable(&self, version: &Version<'_>) -> Result<Runnable, DeployError> {
        let image = self
            .engine
            .project_image(version.project, version.build)
            .await
            .map_err(unavailable)?;
        Ok(Runnable {
            image: Some(image),
            volume: self.engine.project_volume(),
            user: None,
        })
    }

    fn register(&self, project: &str, class: &ContainerClass, secrets: &[String]) {
        self.engine.register_project_class(project, class, secrets);
    }

    fn forget(&self, class: &str) {
        self.engine.forget_project_class(class);
    }

    async fn remove_version(&self, project: &str, build: &str) {
        self.engine.remove_project_image(project, build).await;
    }

    async fn remove_project(&self, project: &str) {
        if let Err(e) = self.engine.remove_project(project).await {
            let engine = self.engine.name();
            tracing::warn!(project, engine, error = %e, "project's engine objects not all removed");
        }
    }
}

/// The engine failed or lacks a base image: nothing the uploader can change.
fn unavailable(e: DriverError) -> DeployError {
    DeployError::Unavailable(e.to_string())
}
