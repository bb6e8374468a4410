//! After a restart: services outlive valet, so the next valet finds its own (by the scope
//! label and, in cluster mode, its replica's owner label) and adopts each whose task runs on a
//! node that is up and whose class config is unchanged. Everything else is removed: services
//! whose task ended, whose node is lost, whose class is gone, and those made from an older
//! config. The last differ from the Docker driver, which keeps a stale container serving until
//! its successor is ready: the successor needs the key's service name (Swarm's guard against
//! a second copy, cluster-wide) and Swarm cannot rename a service, so a stale one is replaced
//! at the next request instead.

use super::running::{self, SwarmInstance, Watched};
use super::tasks::{self, Progress};
use super::{spec, SwarmDriver};
use crate::docker::error::engine;
use crate::docker::image::ImageSource;
use crate::docker::logs::LogSink;
use crate::docker::names;
use crate::driver::{Adopted, DriverError};
use crate::logfile;
use crate::logs::LogRing;
use bollard::query_parameters::ListServicesOptions;
use std::collections::HashMap;
use std::sync::Arc;

/// Lines kept in memory per adopted instance, as the instance layer asks for new ones.
const LOG_LINES: usize = 1000;

pub async fn run(driver: &SwarmDriver) -> Result<Vec<Adopted>, DriverError> {
    let manager = &driver.inner.manager;
    let options = ListServicesOptions {
        filters: Some(spec::filter(&driver.inner.scope, driver.owner())),
        ..Default::default()
    };
    let found = manager
        .list_services(Some(options))
        .await
        .map_err(|e| engine("cannot list services", e))?;
    let mut hashes: HashMap<String, Option<String>> = HashMap::new();
    let mut adopted = Vec::new();
    for service in found {
        let Some(id) = service.id.clone() else {
            continue;
        };
        let labels = service.spec.and_then(|s| s.labels).unwrap_or_default();
        let instance = driver.instance_of(&labels);
        let class = instance.as_ref().map(|i| i.class().to_string());
        let current = match &class {
            Some(class) if !hashes.contains_key(class) => {
                let hash = current_hash(driver, class).await;
                hashes.insert(class.clone(), hash.clone());
                hash
            }
            Some(class) => hashes[class].clone(),
            None => None,
        };
        let fresh = current.is_some() && labels.get(names::CONFIG_HASH) == current.as_ref();
        match (instance, fresh) {
            (Some(instance), true) => match adopt(driver, &id, &instance).await {
                Some(running) => {
                    tracing::info!(%instance, service = %id, "adopted running service");
                    adopted.push(Adopted {
                        id: instance,
                        running,
                        stale: false,
                    });
                }
                None => {
                    tracing::info!(%instance, service = %id, "service no longer runs; removing it");
                    running::remove(manager, &id).await;
                }
            },
            (instance, _) => {
                let instance = instance.map(|i| i.to_string()).unwrap_or_default();
                tracing::info!(%instance, service = %id, "service's class changed or is gone; removing it");
                running::remove(manager, &id).await;
            }
        }
    }
    Ok(adopted)
}

/// The config hash a class's services should carry; `None` when its image cannot be had.
async fn current_hash(driver: &SwarmDriver, class: &str) -> Option<String> {
    let settings = driver.class(class).ok()?;
    match build(driver, class).await {
        Ok(image_id) => Some(settings.config_hash(&image_id)),
        Err(e) => {
            tracing::warn!(class, error = %e, "cannot have the class's image");
            None
        }
    }
}

/// The class's image, built or pulled on the manager and loaded onto the listed nodes, with
/// the output in `<data_dir>/logs/<class>/build.log`: no instance's start asked for it.
async fn build(driver: &SwarmDriver, class: &str) -> Result<String, DriverError> {
    let settings = driver.class(class)?;
    let path = logfile::build_path(&logfile::class_dir(&driver.inner.data_dir, class));
    let mut sink = LogSink::open(&path, Arc::new(LogRing::new(1))).await;
    let (_, id, _) = driver.image(class, &settings, &mut sink, &|_| {}).await?;
    Ok(id)
}

/// The handle of a service whose task runs on a node that is up; `None` otherwise.
async fn adopt(
    driver: &SwarmDriver,
    service: &str,
    instance: &valet_core::InstanceId,
) -> Option<Box<dyn crate::driver::Running>> {
    let manager = &driver.inner.manager;
    let settings = driver.class(instance.class()).ok()?;
    let found = running::list(manager, service).await.ok()?;
    let task = found
        .iter()
        .find(|t| tasks::desired_running(t) && tasks::progress(t) == Progress::Running)?;
    let node = task.node_id.clone()?;
    let seen = driver.inner.nodes.get(&node)?;
    if seen.lost() {
        return None;
    }
    let endpoints = tasks::endpoints(&settings.ports, task, seen.addr?).ok()?;
    let container = tasks::container(task);
    let watched = Watched {
        manager: manager.clone(),
        nodes: driver.inner.nodes.clone(),
        service: service.to_string(),
        task: task.id.clone()?,
        node,
        container: container.clone(),
    };
    // The file the instance layer gives the instance's later starts; its earlier output is
    // there already.
    let logs = logfile::class_dir(&driver.inner.data_dir, instance.class());
    let ring = Arc::new(LogRing::new(LOG_LINES));
    let sink = LogSink::open(&logfile::path(&logs, instance), ring.clone()).await;
    let pump = driver.follow(&watched, container, "0", sink);
    Some(Box::new(SwarmInstance::watch(
        watched, endpoints, ring, pump,
    )))
}

/// Builds every Dockerfile class's image and loads it onto the nodes in the background, so
/// the first request does not wait for either.
pub fn prebuild(driver: SwarmDriver) {
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
