//! After a restart: containers outlive valet, so the next valet finds its own (by the scope
//! label) and adopts every running one whose class config is unchanged. Stopped leftovers are
//! removed. A container whose class config changed is adopted as stale when its class has no
//! volume: it keeps serving while the instance layer starts its successor (graceful
//! replacement). With a volume it is stopped here, before anything else starts, so two
//! containers never write one volume; the next request starts a fresh one. Containers of a
//! removed class are stopped and removed. No container is left unowned, none is duplicated.

use super::error::engine;
use super::image::ImageSource;
use super::logs::{follow, LogSink};
use super::running::{remove, DockerInstance};
use super::{names, DockerDriver};
use crate::driver::{Adopted, DriverError, Running};
use crate::logfile;
use crate::logs::LogRing;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListContainersOptions, RenameContainerOptions};
use futures_util::future::join_all;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use valet_core::{validate_key, InstanceId};

/// Lines kept in memory per instance, as the instance layer asks for new ones.
const LOG_LINES: usize = 1000;
/// Grace for a container whose class is gone from the config.
const ORPHAN_STOP: Duration = Duration::from_secs(10);

pub async fn run(driver: &DockerDriver) -> Result<Vec<Adopted>, DriverError> {
    let docker = &driver.inner.docker;
    let options = ListContainersOptions {
        all: true,
        filters: Some(names::scope_filter(&driver.inner.scope)),
        ..Default::default()
    };
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| engine("cannot list containers", e))?;
    let hashes = current_hashes(driver, &found).await;
    let mut adopted = Vec::new();
    let mut retire = Vec::new();
    for summary in &found {
        let Some(id) = summary.id.clone() else {
            continue;
        };
        let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
        match (running, adoptable(driver, summary, &hashes)) {
            (true, Some((instance, stale))) => match adopt(driver, &id, &instance, stale).await {
                Ok(running) => {
                    tracing::info!(%instance, container = %id, stale, "adopted running container");
                    adopted.push(Adopted {
                        id: instance,
                        running,
                        stale,
                    });
                }
                Err(e) => {
                    tracing::warn!(%instance, error = %e, "cannot adopt container; removing it");
                    remove(docker, &id).await;
                }
            },
            (true, None) => {
                let class = summary_label(summary, names::CLASS).unwrap_or_default();
                let class = driver.inner.classes.get(class);
                let grace = class.map_or(ORPHAN_STOP, |c| c.stop_timeout);
                tracing::info!(container = %id, "container's class changed or is gone; stopping it");
                retire.push(retire_one(driver, id, grace));
            }
            (false, _) => remove(docker, &id).await,
        }
    }
    join_all(retire).await;
    Ok(adopted)
}

fn summary_label<'a>(summary: &'a ContainerSummary, name: &str) -> Option<&'a str> {
    summary.labels.as_ref()?.get(name).map(String::as_str)
}

/// The instance a container may be adopted as, and whether it is stale: its class exists and
/// its key label decodes to a valid key; the same config hash adopts it as is, a different one
/// adopts it as stale only when the class has no volume (see the module comment). A class
/// whose image cannot be had has no current hash: its containers are not adopted.
fn adoptable(
    driver: &DockerDriver,
    summary: &ContainerSummary,
    hashes: &HashMap<String, Option<String>>,
) -> Option<(InstanceId, bool)> {
    let class = summary_label(summary, names::CLASS)?;
    let current = hashes.get(class)?.as_deref()?;
    let stale = summary_label(summary, names::CONFIG_HASH) != Some(current);
    if stale && driver.inner.classes.get(class)?.volume.is_some() {
        return None;
    }
    let key = names::unescape_key(summary_label(summary, names::KEY)?)?;
    validate_key(&key).ok()?;
    Some((InstanceId::new(class, key), stale))
}

/// The config hash each class's containers should carry, for the classes that have some;
/// `None` when its image cannot be had (its containers are then replaced, and the start
/// reports why). A changed Dockerfile context is built here, before anything is served.
async fn current_hashes(
    driver: &DockerDriver,
    found: &[ContainerSummary],
) -> HashMap<String, Option<String>> {
    let mut hashes = HashMap::new();
    for summary in found {
        let Some(class) = summary_label(summary, names::CLASS) else {
            continue;
        };
        let Some(settings) = driver.inner.classes.get(class) else {
            continue;
        };
        if hashes.contains_key(class) {
            continue;
        }
        let hash = match build(driver, class).await {
            Ok(image_id) => Some(settings.config_hash(&image_id)),
            Err(e) => {
                tracing::warn!(class, error = %e, "cannot have the class's image");
                None
            }
        };
        hashes.insert(class.to_string(), hash);
    }
    hashes
}

/// Resolves (and builds, if needed) a class's image, with the build output in
/// `<data_dir>/logs/<class>/build.log`: no instance's start asked for this build.
async fn build(driver: &DockerDriver, class: &str) -> Result<String, DriverError> {
    let settings = driver.class(class)?;
    let path = logfile::build_path(&logfile::class_dir(&driver.inner.data_dir, class));
    let mut sink = LogSink::open(&path, Arc::new(LogRing::new(1))).await;
    let images = &driver.inner.images;
    let resolved = images.resolve(class, &settings).await?;
    images
        .ensure(class, &settings, resolved, &mut sink, &|_| {})
        .await
}

async fn adopt(
    driver: &DockerDriver,
    id: &str,
    instance: &InstanceId,
    stale: bool,
) -> Result<Box<dyn Running>, DriverError> {
    let docker = &driver.inner.docker;
    let settings = driver.class(instance.class())?;
    if stale {
        // The successor is created under the instance's name, and a start removes whatever
        // holds that name: move the old one aside so it serves on until it is replaced. Its
        // labels stay, so a valet that dies meanwhile still finds it and retires it.
        let aside = format!(
            "{}-stale-{}",
            names::instance_name(&driver.inner.scope, instance),
            &id[..12.min(id.len())]
        );
        let options = RenameContainerOptions { name: aside };
        docker
            .rename_container(id, options)
            .await
            .map_err(|e| engine("cannot rename the stale container", e))?;
    }
    let internal = (!settings.internet).then(|| super::Network {
        name: names::internal_network(&driver.inner.scope),
        internal: true,
    });
    // With a matching hash the class's ports are the ones the container was made with. A stale
    // one may have been made with other ports: a port it does not publish fails the adoption,
    // and the container is removed like any unadoptable one.
    let endpoints = driver
        .endpoints_of(id, &settings.ports, internal.as_ref())
        .await?;
    // The file the instance layer gives the instance's later starts.
    let logs = logfile::class_dir(&driver.inner.data_dir, instance.class());
    let log_path = logfile::path(&logs, instance);
    let ring = Arc::new(LogRing::new(LOG_LINES));
    let sink = LogSink::open(&log_path, ring.clone()).await;
    let pump = follow(docker.clone(), id.to_string(), "0", sink);
    let handle = DockerInstance::watch(docker.clone(), id.to_string(), endpoints, ring, pump);
    Ok(Box::new(handle))
}

/// Stops a container the same way as any instance (signal, grace, kill) and removes it.
async fn retire_one(driver: &DockerDriver, id: String, grace: Duration) {
    let docker = driver.inner.docker.clone();
    let ring = Arc::new(LogRing::new(1));
    let no_logs = tokio::spawn(async {});
    let mut handle = DockerInstance::watch(docker, id, Default::default(), ring, no_logs);
    handle.stop(grace).await;
}

/// Builds every Dockerfile class's image in the background, so the first request does not
/// wait for a build. A start that comes meanwhile waits for the same build.
pub fn prebuild(driver: DockerDriver) {
    tokio::spawn(async move {
        for (class, settings) in &driver.inner.classes {
            if !matches!(settings.image, ImageSource::Dockerfile { .. }) {
                continue;
            }
            if let Err(e) = build(&driver, class).await {
                tracing::warn!(class = %class, error = %e, "image not built ahead of the first start");
            }
        }
    });
}
