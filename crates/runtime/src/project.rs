//! Deployed projects on an engine that runs images (Docker, Swarm, Kubernetes): what the
//! deployer's image packager asks of the driver, whichever it is. Each version is an image
//! built `FROM` a runtime's base image ([`ProjectImages`]); the engine makes it reachable
//! where its instances run (the local engine already has it, a swarm's nodes get it loaded,
//! a Kubernetes node pulls it from a registry) and runs the version's class, which is not in
//! valet.toml and so is registered here.

use crate::docker::settings::ClassSettings;
use crate::docker::{ProjectBuild, ProjectImages};
use crate::driver::DriverError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::RwLock;
use valet_config::ContainerClass;

/// An engine that runs deployed versions as images.
#[async_trait]
pub trait ProjectEngine: Send + Sync + 'static {
    /// The driver's name, as valet.toml writes it.
    fn name(&self) -> &'static str;

    /// Whether deploys can work as the engine is configured; the error names the cause and
    /// the fix. Asked before anything is installed or built.
    fn can_deploy(&self) -> Result<(), String> {
        Ok(())
    }

    /// Where versions are built (an error when nowhere is configured).
    fn builds(&self) -> Result<ProjectImages, DriverError>;

    /// A base image's env, pulled first where versions are built when that engine lacks it.
    async fn base_image_env(
        &self,
        image: &str,
        progress: &mut (dyn for<'s> FnMut(&'s str) + Send),
    ) -> Result<Vec<String>, DriverError> {
        self.builds()?.base_image_env(image, progress).await
    }

    /// Builds a version's image and makes it available where its instances may run.
    async fn build_project_image(
        &self,
        build: ProjectBuild<'_>,
        line: &mut (dyn for<'s> FnMut(&'s str) + Send),
    ) -> Result<(), DriverError>;

    /// What a version's class names as its image (built by an earlier valet, too). Fails when
    /// the image is gone.
    async fn project_image(&self, project: &str, build: &str) -> Result<String, DriverError>;

    /// Where the project's data volume is mounted in its containers; `None`: the engine keeps
    /// no data for projects.
    fn project_volume(&self) -> Option<String>;

    /// A version's class is about to start: the driver learns it, and which of its env
    /// variables are the project's secrets (the instance's env holds their values).
    fn register_project_class(&self, project: &str, class: &ContainerClass, secrets: &[String]);

    /// A version's class stopped for good.
    fn forget_project_class(&self, class: &str);

    /// Removes one version's image wherever it was made available; says why in valet's log
    /// when it cannot.
    async fn remove_project_image(&self, project: &str, build: &str);

    /// Removes everything the engine holds of a deleted project.
    async fn remove_project(&self, project: &str) -> Result<(), DriverError>;
}

/// The classes of deployed projects' versions, by class name, which a driver reads beside
/// valet.toml's. Read once per instance start, so a plain lock does.
#[derive(Default)]
pub(crate) struct ProjectClasses(RwLock<HashMap<String, ClassSettings>>);

impl ProjectClasses {
    pub fn insert(&self, class: &str, settings: ClassSettings) {
        let mut classes = self.0.write().unwrap_or_else(|e| e.into_inner());
        classes.insert(class.to_string(), settings);
    }

    pub fn remove(&self, class: &str) {
        let mut classes = self.0.write().unwrap_or_else(|e| e.into_inner());
        classes.remove(class);
    }

    pub fn get(&self, class: &str) -> Option<ClassSettings> {
        let classes = self.0.read().unwrap_or_else(|e| e.into_inner());
        classes.get(class).cloned()
    }

    /// Forgets every class of one project.
    pub fn forget_project(&self, project: &str) {
        let mut classes = self.0.write().unwrap_or_else(|e| e.into_inner());
        classes.retain(|_, s| s.project.as_deref() != Some(project));
    }
}
