//! Deployed projects on the Docker driver. The deployer prepares an upload on the host (its
//! requirements installed into the host's cache, since no registry is reachable from inside
//! an image here) and hands it over: each version becomes an image built `FROM` the runtime's
//! base image with the app and its installed requirements copied in. Each project gets its own
//! network and volume (shared by its versions); its versions' classes are registered here,
//! since they are not in valet.toml. Deleting the project removes all of it.

use super::error::{conflict, engine, not_found};
use super::image::{run_build, Images};
use super::names;
use super::settings::ClassSettings;
use super::DockerDriver;
use crate::driver::DriverError;
use crate::project::ProjectEngine;
use async_trait::async_trait;
use bollard::query_parameters::{
    BuildImageOptions, ListContainersOptions, ListImagesOptions, RemoveContainerOptions,
    RemoveImageOptions, RemoveVolumeOptions,
};
use std::path::{Path, PathBuf};
use valet_config::{ContainerClass, PullPolicy};

/// Where the app sits in its image, and its working directory.
pub const APP_DIR: &str = "/app";
/// The mount point of the project's volume (`VALET_DATA_DIR`).
pub const DATA_DIR: &str = "/data";
/// The app runs as this unprivileged user (nobody), which owns its folder and its volume.
const APP_USER: &str = "65534:65534";

/// One version's image, as the deployer asks for it.
pub struct ProjectBuild<'a> {
    pub project: &'a str,
    /// The version's build id (part of the image tag).
    pub build: &'a str,
    /// The runtime's base image; it must be on the engine already.
    pub base: &'a str,
    /// The prepared app folder, copied to [`APP_DIR`].
    pub app: &'a Path,
    /// Folders installed on the host, copied to a path in the image (read-only for the app).
    pub copies: Vec<(PathBuf, String)>,
    /// Environment baked into the image (`PYTHONPATH`, ...).
    pub env: Vec<(String, String)>,
    /// The image's command (the container is created with the same one).
    pub command: Vec<String>,
}

/// Builds and removes deployed versions' images on one engine: the Docker driver's, a swarm
/// manager's, or the engine a Kubernetes valet builds on. Images are tagged and labelled
/// under `scope`, the valet they belong to.
#[derive(Clone)]
pub struct ProjectImages {
    images: Images,
    scope: String,
}

impl ProjectImages {
    /// Images built on `images`' engine (pulling bases with its credentials and timeout).
    pub(crate) fn new(images: Images, scope: &str) -> Self {
        Self {
            images,
            scope: scope.to_string(),
        }
    }

    /// The engine the images are built on.
    pub(crate) fn engine(&self) -> &bollard::Docker {
        &self.images.docker
    }

    /// A base image's env, pulled first when the engine lacks it (the same pull as a class's
    /// image with `pull = "missing"`); the pull's milestones go to `progress` and valet's log.
    pub async fn base_image_env(
        &self,
        image: &str,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Vec<String>, DriverError> {
        self.images
            .reference_id("deploy", image, PullPolicy::Missing, &|_| {}, progress)
            .await?;
        match self.images.docker.inspect_image(image).await {
            Ok(found) => Ok(found.config.and_then(|c| c.env).unwrap_or_default()),
            Err(e) => Err(engine(format!("cannot inspect image `{image}`"), e)),
        }
    }

    /// Builds a version's image; returns its tag. Build output goes to `line`.
    pub async fn build(
        &self,
        build: ProjectBuild<'_>,
        line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String, DriverError> {
        self.base_image_env(build.base, &mut |line| tracing::debug!(line, "base image"))
            .await?;
        let scope = &self.scope;
        let tag = names::project_image(scope, build.project, build.build);
        let dockerfile = dockerfile(&build)?;
        let app = build.app.to_path_buf();
        let copies = build.copies.clone();
        let context = tokio::task::spawn_blocking(move || context(&dockerfile, &app, &copies))
            .await
            .map_err(|e| DriverError::io("context archiving stopped", std::io::Error::other(e)))?
            .map_err(|e| DriverError::io("cannot archive the build context", e))?;
        let options = BuildImageOptions {
            t: Some(tag.clone()),
            rm: true,
            forcerm: true,
            labels: Some(names::project_labels(scope, build.project)),
            ..Default::default()
        };
        tracing::info!(project = build.project, %tag, base = build.base, "building project image");
        let registries = &self.images.registries;
        run_build(&self.images.docker, options, context, registries, line)
            .await
            .map_err(|message| {
                DriverError::Spec(format!("image build failed: {}", message.trim()))
            })?;
        Ok(tag)
    }

    /// Gives a built image a registry's name (`target`, `host[:port]/path:tag`) and pushes it
    /// there with the `[[registries]]` (or Docker config) credentials of that host; the push's
    /// milestones go to `line`.
    pub(crate) async fn push(
        &self,
        image: &str,
        target: &str,
        line: &mut (dyn for<'s> FnMut(&'s str) + Send),
    ) -> Result<(), DriverError> {
        use bollard::query_parameters::{PushImageOptions, TagImageOptions};
        use futures_util::StreamExt;
        let reference = super::registry::Reference::parse(target);
        let docker = &self.images.docker;
        let options = TagImageOptions {
            repo: Some(reference.name.clone()),
            tag: Some(reference.tag.clone()),
        };
        (docker.tag_image(image, Some(options)).await)
            .map_err(|e| engine(format!("cannot tag {image} as {target}"), e))?;
        let host = &reference.registry;
        let credentials = super::registry::credentials(&self.images.registries, host)
            .await
            .map_err(|no| DriverError::Spec(no.to_string()))?
            .map(|(credentials, _)| credentials);
        let options = PushImageOptions {
            tag: Some(reference.tag.clone()),
            ..Default::default()
        };
        line(&format!("pushing {target}"));
        let mut push = docker.push_image(&reference.name, Some(options), credentials);
        while let Some(step) = push.next().await {
            let step = step.map_err(|e| DriverError::Image {
                message: format!("cannot push {target} to registry {host}: {e}"),
                retryable: true,
            })?;
            if let (Some(status), None) = (step.status, step.progress_detail) {
                line(&status);
            }
        }
        tracing::info!(%image, %target, "project image pushed");
        Ok(())
    }

    /// The account valet pushes to `reference`'s registry with (`[[registries]]`, else the
    /// Docker config): its registry host, user name and password; `None`: anonymous.
    pub(crate) async fn login_for(
        &self,
        reference: &str,
    ) -> Result<Option<(String, String, String)>, DriverError> {
        let host = super::registry::Reference::parse(reference).registry;
        let found = super::registry::credentials(&self.images.registries, &host)
            .await
            .map_err(|no| DriverError::Spec(no.to_string()))?;
        Ok(found.and_then(|(credentials, _)| {
            Some((host, credentials.username?, credentials.password?))
        }))
    }

    /// The tag of a version's image (built by [`Self::build`]).
    pub fn tag(&self, project: &str, build: &str) -> String {
        names::project_image(&self.scope, project, build)
    }

    /// The image ID behind a version's tag, when this engine has it.
    pub(crate) async fn id(&self, project: &str, build: &str) -> Option<String> {
        let tag = self.tag(project, build);
        let found = self.images.docker.inspect_image(&tag).await;
        found.ok().and_then(|image| image.id)
    }

    /// Removes one version's image (a version that will not run).
    pub async fn remove(&self, project: &str, build: &str) {
        let tag = self.tag(project, build);
        if let Err(e) = remove_image(&self.images.docker, &tag).await {
            tracing::warn!(%tag, error = %e, "cannot remove a project image");
        }
    }

    /// Removes every image of a deleted project from this engine (by its labels).
    pub async fn remove_all(&self, project: &str) -> Result<(), DriverError> {
        remove_labelled(&self.images.docker, &self.scope, project).await
    }
}

/// How long an image removal waits for a container that still runs it to stop: a Pod's
/// container is stopped by its kubelet after the grace period, not before the Pod's deletion
/// returns.
const REMOVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Removes an image (by tag or ID) even while a stopped container still names it, waiting
/// (at most [`REMOVE_PATIENCE`]) for one that runs it to stop. Gone already is done.
pub(crate) async fn remove_image(
    docker: &bollard::Docker,
    image: &str,
) -> Result<(), bollard::errors::Error> {
    let deadline = tokio::time::Instant::now() + REMOVE_PATIENCE;
    loop {
        let options = RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        match docker.remove_image(image, Some(options), None).await {
            // "image is being used by running container": even a forced removal waits.
            Err(e) if conflict(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await
            }
            Err(e) if !not_found(&e) => return Err(e),
            _ => return Ok(()),
        }
    }
}

/// Removes every image of `project` (of the valet `scope`) from one engine.
pub(crate) async fn remove_labelled(
    docker: &bollard::Docker,
    scope: &str,
    project: &str,
) -> Result<(), DriverError> {
    let images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(names::project_filter(scope, project)),
            ..Default::default()
        }))
        .await
        .map_err(|e| engine("cannot list a project's images", e))?;
    for image in images {
        remove_image(docker, &image.id)
            .await
            .map_err(|e| engine("cannot remove a project's image", e))?;
    }
    Ok(())
}

impl DockerDriver {
    /// What builds this valet's project images: the driver's own engine and scope.
    pub fn project_images(&self) -> ProjectImages {
        ProjectImages::new(self.inner.images.clone(), &self.inner.scope)
    }
}

/// Versions run on the driver's own engine, where they are built: nothing to distribute.
#[async_trait]
impl ProjectEngine for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn builds(&self) -> Result<ProjectImages, DriverError> {
        Ok(self.project_images())
    }

    async fn build_project_image(
        &self,
        build: ProjectBuild<'_>,
        line: &mut (dyn for<'s> FnMut(&'s str) + Send),
    ) -> Result<(), DriverError> {
        self.project_images().build(build, line).await.map(drop)
    }

    async fn project_image(&self, project: &str, build: &str) -> Result<String, DriverError> {
        Ok(self.project_images().tag(project, build))
    }

    fn project_volume(&self) -> Option<String> {
        Some(DATA_DIR.to_string())
    }

    async fn remove_project_image(&self, project: &str, build: &str) {
        self.project_images().remove(project, build).await;
    }

    /// Makes a version's class known to the driver: `class.image` is its built image. Its
    /// containers join the project's network and mount its volume at `class.volume`.
    /// Secrets are in the container's env, as a class's `secrets` on this driver.
    fn register_project_class(&self, project: &str, class: &ContainerClass, _: &[String]) {
        let settings = ClassSettings::for_project(project, class, self.inner.host_cpus);
        self.inner.projects.insert(&class.class_name, settings);
    }

    /// Forgets a version's class (its instance has stopped for good).
    fn forget_project_class(&self, class: &str) {
        self.inner.projects.remove(class);
    }

    /// Removes everything of a deleted project: containers left running (a version still
    /// being retired), its images, its volume and its network. Its classes are forgotten.
    async fn remove_project(&self, project: &str) -> Result<(), DriverError> {
        let docker = &self.inner.docker;
        let scope = &self.inner.scope;
        let filter = names::project_filter(scope, project);
        self.inner.projects.forget_project(project);
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filter.clone()),
                ..Default::default()
            }))
            .await
            .map_err(|e| engine("cannot list a project's containers", e))?;
        for id in containers.into_iter().filter_map(|c| c.id) {
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            match docker.remove_container(&id, Some(options)).await {
                Err(e) if !not_found(&e) => {
                    return Err(engine("cannot remove a project's container", e))
                }
                _ => {}
            }
        }
        remove_labelled(docker, scope, project).await?;
        let volume = names::project_volume(scope, project);
        match docker
            .remove_volume(&volume, None::<RemoveVolumeOptions>)
            .await
        {
            Err(e) if !not_found(&e) => {
                return Err(engine(format!("cannot remove volume {volume}"), e))
            }
            _ => {}
        }
        let network = names::project_network(scope, project);
        let _one_at_a_time = self.inner.network.lock().await;
        match docker.remove_network(&network).await {
            Err(e) if !not_found(&e) => {
                return Err(engine(format!("cannot remove network {network}"), e))
            }
            _ => {}
        }
        tracing::info!(
            project,
            "project's containers, images, volume and network removed"
        );
        Ok(())
    }
}

/// The Dockerfile of a version. Everything in it comes from valet (the base image is checked
/// by config validation, the rest is fixed or made by the deployer), but values are still
/// written as JSON strings so nothing can end a line.
fn dockerfile(build: &ProjectBuild<'_>) -> Result<String, DriverError> {
    let json = |v: &str| serde_json::to_string(v).unwrap_or_default();
    if build
        .base
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(DriverError::Spec(format!(
            "base image {:?} is not an image reference",
            build.base
        )));
    }
    let mut file = format!("FROM {}\n", build.base);
    // The app owns its folder and the volume's mount point (a fresh volume takes the owner of
    // the folder it is mounted on), as a process-driver project owns its build folder.
    file += &format!("COPY --chown={APP_USER} app {APP_DIR}\n");
    file += &format!("COPY --chown={APP_USER} data {DATA_DIR}\n");
    for (i, (_, target)) in build.copies.iter().enumerate() {
        file += &format!("COPY [\"copy{i}\", {}]\n", json(target));
    }
    file += &format!("WORKDIR {APP_DIR}\n");
    for (name, value) in &build.env {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(DriverError::Spec(format!("bad variable name {name:?}")));
        }
        file += &format!("ENV {name}={}\n", json(value));
    }
    file += &format!("USER {APP_USER}\n");
    let command: Vec<String> = build.command.iter().map(|a| json(a)).collect();
    file += &format!("CMD [{}]\n", command.join(", "));
    Ok(file)
}

/// The build context: the Dockerfile, the app as `app/`, an empty `data/`, and each copied
/// folder as `copy<n>/`. Links are kept as links, never followed out of their folder.
fn context(dockerfile: &str, app: &Path, copies: &[(PathBuf, String)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_cksum();
    builder.append_data(&mut dir, "data/", std::io::empty())?;
    builder.append_dir_all("app", app)?;
    for (i, (from, _)) in copies.iter().enumerate() {
        builder.append_dir_all(format!("copy{i}"), from)?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_copies_the_app_and_its_requirements_and_runs_unprivileged() {
        let build = ProjectBuild {
            project: "abc",
            build: "b1",
            base: "python:3.11-slim",
            app: Path::new("/nowhere"),
            copies: vec![("/cache/x/site".into(), "/opt/valet/python".into())],
            env: vec![("PYTHONPATH".into(), "/opt/valet/python".into())],
            command: vec!["python3".into(), "app.py".into()],
        };
        let file = dockerfile(&build).unwrap();
        assert!(file.starts_with("FROM python:3.11-slim\n"), "{file}");
        assert!(
            file.contains("COPY --chown=65534:65534 app /app\n"),
            "{file}"
        );
        assert!(
            file.contains("COPY [\"copy0\", \"/opt/valet/python\"]\n"),
            "{file}"
        );
        assert!(
            file.contains("ENV PYTHONPATH=\"/opt/valet/python\"\n"),
            "{file}"
        );
        assert!(file.contains("USER 65534:65534\n"), "{file}");
        assert!(file.ends_with("CMD [\"python3\", \"app.py\"]\n"), "{file}");
        let evil = ProjectBuild {
            base: "x\nRUN rm -rf /",
            ..build
        };
        assert!(dockerfile(&evil).is_err());
    }
}
