//! Deployed projects on Kubernetes: each version's image is built on a Docker Engine valet
//! reaches (`[kubernetes] image_engine`, else the local one) and made available to the
//! kubelet's engine one of two ways:
//!
//! - with `image_registry`, pushed there under `<image_registry>/<repository>:<build>`; Pods
//!   name that reference and the kubelet pulls it (`IfNotPresent`: a build's tag never moves);
//! - without it, built on `image_engine`, which must then be the Pods' node's own engine (one
//!   node, or `node` set): Pods run it with `imagePullPolicy: Never`.
//!
//! With neither, deploys are refused with what to set. A version runs as one Pod per project
//! with the driver's instance semantics; projects keep no data volume here.

use super::KubernetesDriver;
use crate::docker::image::Images;
use crate::docker::names;
use crate::docker::project::remove_image;
use crate::docker::settings::ClassSettings;
use crate::docker::{ProjectBuild, ProjectImages};
use crate::driver::DriverError;
use crate::project::{ProjectClasses, ProjectEngine};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{LocalObjectReference, Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use valet_config::{Config, ContainerClass, PullPolicy};

/// Marks the registry's pull Secret among valet's objects: shared by every version Pod and
/// named after no Pod, so recovery must not take it for an orphan.
pub(super) const PULL_SECRET_LABEL: &str = "valet.pull-secret";

/// What the Kubernetes driver keeps for deployed projects.
pub(super) struct Projects {
    pub classes: ProjectClasses,
    /// Each version class's secret names: their values go to the Pod's Secret, as a class's
    /// `secrets` do, never into the Pod's body.
    secrets: RwLock<HashMap<String, HashSet<String>>>,
    /// Where versions are built; `None`: deploys are refused (see [`Projects::connect`]).
    builds: Option<ProjectImages>,
    /// `[kubernetes] image_registry`, without a trailing `/`.
    registry: Option<String>,
    /// The Secret Pods pull pushed versions with, once made (a registry that needs a login).
    pull_secret: std::sync::Mutex<Option<String>>,
}

impl Projects {
    /// Versions are built on `image_engine` (`images`) when it is set, else, when they are
    /// pushed to a registry, on the local Docker Engine (`DOCKER_HOST` or the socket).
    pub async fn connect(
        config: &Config,
        images: Option<&Images>,
        scope: &str,
    ) -> Result<Self, DriverError> {
        let kube = config.kubernetes.clone().unwrap_or_default();
        let registry = (kube.image_registry.as_deref())
            .map(|r| r.trim_end_matches('/').to_string())
            .filter(|r| !r.is_empty());
        let builds = match (images, &registry) {
            (Some(images), _) => Some(images.clone()),
            (None, Some(_)) => Some(Images::new(
                local_engine().await?,
                config.registries.clone(),
                config.server.timeouts.pull.get(),
            )),
            (None, None) => None,
        };
        Ok(Self {
            classes: ProjectClasses::default(),
            secrets: RwLock::default(),
            builds: builds.map(|images| ProjectImages::new(images, scope)),
            registry,
            pull_secret: Default::default(),
        })
    }

    /// The names of a version class's secrets (empty for any other class).
    pub fn secret_names(&self, class: &str) -> HashSet<String> {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        secrets.get(class).cloned().unwrap_or_default()
    }

    /// Gives a version class's Pod the registry's pull Secret, when there is one.
    pub fn pull_with(&self, class: &str, pod: &mut Pod) {
        let secret = self.pull_secret.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(name), Some(_)) = (secret.clone(), self.classes.get(class)) {
            let spec = pod.spec.get_or_insert_with(Default::default);
            spec.image_pull_secrets = Some(vec![LocalObjectReference { name }]);
        }
    }

    fn builds(&self) -> Result<&ProjectImages, DriverError> {
        self.builds
            .as_ref()
            .ok_or_else(|| DriverError::Spec(refusal()))
    }

    /// The reference Pods run: the registry's name when versions are pushed, else the tag
    /// on the node's engine.
    fn reference(&self, builds: &ProjectImages, project: &str, build: &str) -> String {
        let tag = builds.tag(project, build);
        match &self.registry {
            Some(registry) => format!("{registry}/{tag}"),
            None => tag,
        }
    }
}

/// The local Docker Engine, for building when `image_engine` is not set.
async fn local_engine() -> Result<bollard::Docker, DriverError> {
    let unreachable = |e: bollard::errors::Error| {
        DriverError::io(
            "[kubernetes] image_registry: deployed versions are built on the local Docker \
             Engine (no image_engine is set), which does not answer",
            std::io::Error::other(e),
        )
    };
    let docker = bollard::Docker::connect_with_local_defaults().map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

impl KubernetesDriver {
    /// With a registry valet pushes to with a login, a `kubernetes.io/dockerconfigjson`
    /// Secret holding that login, which version Pods name in `imagePullSecrets`: the kubelet
    /// then pulls with the account valet pushed with. Made again when it changed or is gone.
    async fn ensure_pull_secret(&self, reference: &str) -> Result<(), DriverError> {
        let projects = &self.inner.projects;
        let login = projects.builds()?.login_for(reference).await?;
        let Some((host, username, password)) = login else {
            return Ok(());
        };
        let name = format!("valet-{}-registry", self.inner.scope);
        self.pull_secret(&name, &host, &username, &password).await?;
        *projects
            .pull_secret
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(name);
        Ok(())
    }

    /// Makes (or brings up to date) the `kubernetes.io/dockerconfigjson` Secret `name` with
    /// the login to `host`. Labelled as a pull Secret: it belongs to no Pod, and recovery
    /// leaves it.
    pub(super) async fn pull_secret(
        &self,
        name: &str,
        host: &str,
        username: &str,
        password: &str,
    ) -> Result<(), DriverError> {
        let config = serde_json::json!({
            "auths": { host: { "username": username, "password": password } }
        });
        let labels = BTreeMap::from([
            (names::MANAGED.to_string(), "true".to_string()),
            (names::SCOPE.to_string(), self.inner.scope.clone()),
            (PULL_SECRET_LABEL.to_string(), "true".to_string()),
        ]);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(config.to_string().into_bytes()),
            )])),
            ..Default::default()
        };
        let secrets: Api<Secret> = self.api();
        let failed = |e| super::api_error(format!("cannot make the pull Secret {name}"), e);
        match secrets.get_opt(name).await.map_err(failed)? {
            Some(found) if found.data == secret.data => {}
            Some(found) => {
                let mut secret = secret;
                secret.metadata.resource_version = found.metadata.resource_version;
                secrets
                    .replace(name, &PostParams::default(), &secret)
                    .await
                    .map_err(failed)?;
            }
            None => match secrets.create(&PostParams::default(), &secret).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                created => drop(created.map_err(failed)?),
            },
        }
        Ok(())
    }
}

fn refusal() -> String {
    "deployed projects on driver = \"kubernetes\" need a way to get each version's image to \
     the kubelet: set [kubernetes] image_registry = \"host:port/prefix\" (built on the local \
     Docker Engine or image_engine, pushed there, pulled by every node), or image_engine = \
     the Pods' node's Docker Engine API (built there, run with imagePullPolicy: Never)"
        .into()
}

#[async_trait]
impl ProjectEngine for KubernetesDriver {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn can_deploy(&self) -> Result<(), String> {
        self.inner
            .projects
            .builds()
            .map(drop)
            .map_err(|_| refusal())
    }

    fn builds(&self) -> Result<ProjectImages, DriverError> {
        self.inner.projects.builds().cloned()
    }

    async fn build_project_image(
        &self,
        build: ProjectBuild<'_>,
        line: &mut (dyn for<'s> FnMut(&'s str) + Send),
    ) -> Result<(), DriverError> {
        let projects = &self.inner.projects;
        let builds = projects.builds()?;
        let (project, version) = (build.project.to_string(), build.build.to_string());
        let tag = builds.build(build, line).await?;
        if projects.registry.is_some() {
            let target = projects.reference(builds, &project, &version);
            builds.push(&tag, &target, line).await?;
            self.ensure_pull_secret(&target).await?;
        }
        Ok(())
    }

    /// Without a registry the node's engine must still hold the tag; a pushed version is
    /// the registry's to keep.
    async fn project_image(&self, project: &str, build: &str) -> Result<String, DriverError> {
        let projects = &self.inner.projects;
        let builds = projects.builds()?;
        if projects.registry.is_some() {
            let pushed = projects.reference(builds, project, build);
            self.ensure_pull_secret(&pushed).await?;
            return Ok(pushed);
        }
        if builds.id(project, build).await.is_none() {
            return Err(DriverError::Image {
                message: format!(
                    "the image of this version ({}) is gone from [kubernetes] image_engine: \
                     deploy it again",
                    builds.tag(project, build)
                ),
                retryable: false,
            });
        }
        Ok(projects.reference(builds, project, build))
    }

    fn project_volume(&self) -> Option<String> {
        None
    }

    fn register_project_class(&self, project: &str, class: &ContainerClass, secrets: &[String]) {
        let projects = &self.inner.projects;
        // No engine caps CPU here: the scheduler refuses what no node has.
        let mut settings = ClassSettings::for_project(project, class, u32::MAX);
        if projects.registry.is_some() {
            settings.pull = PullPolicy::Missing;
        }
        projects.classes.insert(&class.class_name, settings);
        let names = secrets.iter().cloned().collect();
        let mut by_class = projects.secrets.write().unwrap_or_else(|e| e.into_inner());
        by_class.insert(class.class_name.clone(), names);
    }

    fn forget_project_class(&self, class: &str) {
        let projects = &self.inner.projects;
        projects.classes.remove(class);
        let mut by_class = projects.secrets.write().unwrap_or_else(|e| e.into_inner());
        by_class.remove(class);
    }

    /// From the engine it was built on (both its names). A pushed copy stays in the
    /// registry, which valet does not delete from (most refuse deletes by default): its
    /// tags are named after the project, for the registry's own clean-up.
    async fn remove_project_image(&self, project: &str, build: &str) {
        let projects = &self.inner.projects;
        let Ok(builds) = projects.builds() else {
            return;
        };
        let pushed = projects.reference(builds, project, build);
        if projects.registry.is_some() {
            if let Err(e) = remove_image(builds.engine(), &pushed).await {
                tracing::warn!(image = %pushed, error = %e, "cannot remove a version's image");
            }
            tracing::info!(image = %pushed, "a version's image stays in the registry");
        }
        builds.remove(project, build).await;
    }

    async fn remove_project(&self, project: &str) -> Result<(), DriverError> {
        let projects = &self.inner.projects;
        projects.classes.forget_project(project);
        match projects.builds() {
            Ok(builds) => builds.remove_all(project).await,
            Err(_) => Ok(()),
        }
    }
}
