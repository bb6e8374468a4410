//! The per-instance volumes of one valet, for `valet volumes ls` / `rm`. These run without a
//! valet (the volumes outlive it), so they find the volumes by the labels the driver set:
//! managed, the scope of the config's data folder, class and key.

use super::error::{conflict, engine, not_found};
use super::names;
use crate::driver::DriverError;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, Volume};
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions, RemoveVolumeOptions};
use bollard::Docker;
use std::path::{Path, PathBuf};

/// One volume valet made for an instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub class: String,
    /// The instance key; `None` when the label does not decode (made by hand, or damaged).
    pub key: Option<String>,
    /// Bytes stored, when the engine's folder for it can be read from here (a local engine
    /// and enough rights); `None` otherwise.
    pub size: Option<u64>,
    /// Containers that mount it, running or not.
    pub used_by: Vec<VolumeUser>,
}

impl VolumeInfo {
    /// The first running container that mounts it.
    pub fn running_user(&self) -> Option<&VolumeUser> {
        self.used_by.iter().find(|u| u.running)
    }
}

/// A container that mounts a volume.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeUser {
    pub container: String,
    pub running: bool,
}

/// Which volume `rm` means.
#[derive(Debug, Clone)]
pub enum VolumeTarget {
    Name(String),
    Instance { class: String, key: String },
}

/// The volumes of the valet whose data folder is given.
pub struct Volumes {
    docker: Docker,
    scope: String,
}

impl Volumes {
    /// Connects to the engine the driver would use. `data_dir` is the config's data folder:
    /// its hash is the scope label that tells this valet's volumes from any other's.
    pub async fn connect(data_dir: &Path) -> Result<Self, DriverError> {
        Ok(Self {
            docker: super::connect_engine().await?,
            scope: names::scope_of(data_dir),
        })
    }

    /// Every volume of this valet, sorted by class and key.
    pub async fn list(&self) -> Result<Vec<VolumeInfo>, DriverError> {
        let options = ListVolumesOptions {
            filters: Some(names::scope_filter(&self.scope)),
        };
        let found = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| engine("cannot list volumes", e))?;
        // Every container, not only valet's: a volume mounted by anything is in use.
        let all = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(all))
            .await
            .map_err(|e| engine("cannot list containers", e))?;
        let mut volumes = Vec::new();
        for volume in found.volumes.unwrap_or_default() {
            let size = size_of(PathBuf::from(&volume.mountpoint)).await;
            volumes.push(describe(volume, &containers, size));
        }
        volumes.sort_by(|a, b| (&a.class, &a.key).cmp(&(&b.class, &b.key)));
        Ok(volumes)
    }

    /// Removes one volume of this valet and its data; returns its name. Refuses one that a
    /// running container mounts: its instance must be stopped (or destroyed) first.
    pub async fn remove(&self, target: &VolumeTarget) -> Result<String, DriverError> {
        let volumes = self.list().await?;
        let volume = volumes.iter().find(|v| matches(v, target)).ok_or_else(|| {
            DriverError::Spec(format!("{} (see `valet volumes ls`)", missing(target)))
        })?;
        let name = &volume.name;
        if let Some(user) = volume.running_user() {
            return Err(DriverError::Spec(format!(
                "volume {name} is in use by running container {}{}",
                user.container,
                stop_hint(volume)
            )));
        }
        let options = RemoveVolumeOptions { force: false };
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(name.clone()),
            Err(e) if not_found(&e) => Ok(name.clone()),
            // Mounted by a container that stopped but was not removed, or one that started
            // since the list: the engine refuses, and says by which container.
            Err(e) if conflict(&e) => Err(engine(format!("volume {name} is in use"), e)),
            Err(e) => Err(engine(format!("cannot remove volume {name}"), e)),
        }
    }
}

fn describe(volume: Volume, containers: &[ContainerSummary], size: Option<u64>) -> VolumeInfo {
    let label = |name: &str| volume.labels.get(name).cloned();
    let used_by = containers
        .iter()
        .filter(|c| mounts(c, &volume.name))
        .map(|c| VolumeUser {
            container: container_name(c),
            running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
        })
        .collect();
    VolumeInfo {
        class: label(names::CLASS).unwrap_or_default(),
        key: label(names::KEY).and_then(|k| names::unescape_key(&k)),
        size,
        used_by,
        name: volume.name,
    }
}

fn mounts(container: &ContainerSummary, volume: &str) -> bool {
    let mounts = container.mounts.as_deref().unwrap_or_default();
    mounts.iter().any(|m| m.name.as_deref() == Some(volume))
}

/// The container's name without the engine's leading slash, else its short id.
fn container_name(container: &ContainerSummary) -> String {
    let name = container.names.as_ref().and_then(|n| n.first());
    match name {
        Some(name) => name.trim_start_matches('/').to_string(),
        None => container
            .id
            .clone()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect(),
    }
}

fn matches(volume: &VolumeInfo, target: &VolumeTarget) -> bool {
    match target {
        VolumeTarget::Name(name) => volume.name == *name,
        VolumeTarget::Instance { class, key } => {
            volume.class == *class && volume.key.as_deref() == Some(key.as_str())
        }
    }
}

fn missing(target: &VolumeTarget) -> String {
    match target {
        VolumeTarget::Name(name) => format!("no volume {name} belongs to this config's valet"),
        VolumeTarget::Instance { class, key } => {
            format!("instance {class}/{key} has no volume")
        }
    }
}

fn stop_hint(volume: &VolumeInfo) -> String {
    match &volume.key {
        Some(key) => format!(
            " (instance {class}/{key}); stop it first: valet stop {class} {key}",
            class = volume.class
        ),
        None => "; stop that container first".into(),
    }
}

/// Bytes under the volume's folder on this host, walked off the async threads; `None` when
/// the folder cannot be read (a remote or rootless engine, or no rights).
async fn size_of(root: PathBuf) -> Option<u64> {
    tokio::task::spawn_blocking(move || {
        std::fs::read_dir(&root).ok()?;
        Some(dir_size(&root))
    })
    .await
    .ok()
    .flatten()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        // symlink_metadata: a link inside the volume may point anywhere on the host.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
