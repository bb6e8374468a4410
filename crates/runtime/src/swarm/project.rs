//! Deployed projects on a swarm: each version's image is built on the manager's engine (the
//! Docker driver's project build), loaded onto every node listed in `[swarm] nodes` the way a
//! class's image is, and its services are created by image ID, so no node ever pulls. A
//! version runs as one service per project, with the driver's instance semantics (cold start,
//! sleep as removal, wake). Projects keep no data volume here: a volume is pinned to one node
//! per service name, which changes with every version.

use super::SwarmDriver;
use crate::docker::error::{engine, not_found};
use crate::docker::names;
use crate::docker::project::remove_labelled;
use crate::docker::settings::ClassSettings;
use crate::docker::{ProjectBuild, ProjectImages};
use crate::driver::DriverError;
use crate::project::{ProjectClasses, ProjectEngine};
use async_trait::async_trait;
use bollard::query_parameters::ListServicesOptions;
use valet_config::ContainerClass;

/// What the swarm driver keeps for deployed projects.
pub(super) struct Projects {
    pub classes: ProjectClasses,
    /// Builds on the manager's engine.
    builds: ProjectImages,
    /// The smallest node's cores: a version's CPU limit is clamped to it.
    node_cpus: u32,
}

impl Projects {
    pub fn new(builds: ProjectImages, node_cpus: u32) -> Self {
        Self {
            classes: ProjectClasses::default(),
            builds,
            node_cpus,
        }
    }
}

impl SwarmDriver {
    /// The manager's image ID of a version, which services are created from.
    async fn version_id(&self, project: &str, build: &str) -> Result<String, DriverError> {
        let builds = &self.inner.projects.builds;
        builds
            .id(project, build)
            .await
            .ok_or_else(|| DriverError::Image {
                message: format!(
                    "the image of this version ({}) is gone from the swarm manager's engine: \
                     deploy it again",
                    builds.tag(project, build)
                ),
                retryable: false,
            })
    }
}

#[async_trait]
impl ProjectEngine for SwarmDriver {
    fn name(&self) -> &'static str {
        "swarm"
    }

    /// Versions are built on the manager only: without the nodes' engines a task placed on
    /// another node would ask a registry for an image that is in none.
    fn can_deploy(&self) -> Result<(), String> {
        if self.inner.nodes.distributes() {
            return Ok(());
        }
        Err(
            "deployed projects on driver = \"swarm\" need [swarm] nodes: list every node's \
             Engine API there, and valet loads each version's image (built on the manager) \
             onto them"
                .into(),
        )
    }

    fn builds(&self) -> Result<ProjectImages, DriverError> {
        Ok(self.inner.projects.builds.clone())
    }

    /// Built on the manager, then loaded onto every listed node now rather than at the first
    /// start: a deploy answers once its version serves, and a node that cannot take the image
    /// is said here.
    async fn build_project_image(
        &self,
        build: ProjectBuild<'_>,
        line: &mut (dyn for<'s> FnMut(&'s str) + Send),
    ) -> Result<(), DriverError> {
        let (project, version) = (build.project.to_string(), build.build.to_string());
        let tag = self.inner.projects.builds.build(build, line).await?;
        let id = self.version_id(&project, &version).await?;
        let lacking = self.inner.nodes.distribute(&tag, &id).await;
        if !lacking.is_empty() {
            line(&format!(
                "{} node(s) could not take the image (their engine did not answer); the \
                 version runs on the others",
                lacking.len()
            ));
        }
        Ok(())
    }

    /// The tag: the start resolves it to the manager's image ID and loads that onto any node
    /// that lacks it (one added or pruned since the deploy), then creates the service by ID.
    async fn project_image(&self, project: &str, build: &str) -> Result<String, DriverError> {
        self.version_id(project, build).await?;
        Ok(self.inner.projects.builds.tag(project, build))
    }

    fn project_volume(&self) -> Option<String> {
        None
    }

    /// Secrets are in the container's env, as a class's `secrets` on this driver.
    fn register_project_class(&self, project: &str, class: &ContainerClass, _: &[String]) {
        let projects = &self.inner.projects;
        let settings = ClassSettings::for_project(project, class, projects.node_cpus);
        projects.classes.insert(&class.class_name, settings);
    }

    fn forget_project_class(&self, class: &str) {
        self.inner.projects.classes.remove(class);
    }

    /// From every listed node (by ID), then the manager's tag.
    async fn remove_project_image(&self, project: &str, build: &str) {
        let builds = &self.inner.projects.builds;
        if let Some(id) = builds.id(project, build).await {
            for (node, why) in self.inner.nodes.remove_image(&id).await {
                tracing::warn!(%node, image = %id, error = %why, "a version's image is left on a swarm node");
            }
        }
        builds.remove(project, build).await;
    }

    /// Its services left (a version still being retired), then its images on every listed
    /// node and on the manager.
    async fn remove_project(&self, project: &str) -> Result<(), DriverError> {
        let inner = &self.inner;
        inner.projects.classes.forget_project(project);
        let filter = names::project_filter(&inner.scope, project);
        let options = ListServicesOptions {
            filters: Some(filter),
            ..Default::default()
        };
        let services = (inner.manager.list_services(Some(options)).await)
            .map_err(|e| engine("cannot list a project's services", e))?;
        for id in services.into_iter().filter_map(|s| s.id) {
            match inner.manager.delete_service(&id).await {
                Err(e) if !not_found(&e) => {
                    return Err(engine("cannot remove a project's service", e))
                }
                _ => {}
            }
        }
        let mut kept = Vec::new();
        for (node, docker) in inner.nodes.engines() {
            if let Err(e) = remove_labelled(&docker, &inner.scope, project).await {
                kept.push(format!("{node}: {e}"));
            }
        }
        remove_labelled(&inner.manager, &inner.scope, project).await?;
        if !kept.is_empty() {
            return Err(DriverError::Spec(format!(
                "the project's images are left on some swarm nodes: {}",
                kept.join("; ")
            )));
        }
        tracing::info!(
            project,
            "project's services and images removed from the swarm"
        );
        Ok(())
    }
}
