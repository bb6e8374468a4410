//! After a restart: services outlive valet, so the next valet finds its own (by the scope
//! label and, in cluster mode, its replica's owner label) and adopts each whose task runs on a
//! node that is up. One made from an older class config is adopted as stale, as with the
//! Docker driver: it serves until the instance layer has started its successor and seen it
//! ready. Swarm cannot rename a service and two cannot share a name, so the successor is a
//! second service under the key's other name (`spec::service_names`), started beside it; the
//! stale one is then removed by its ID. (An update of the service in place with a start-first
//! order was not used: Swarm stops the old task as soon as the new task's container runs,
//! before valet's readiness probe, unless the image carries a HEALTHCHECK.) A stale service of
//! a class with a volume is removed instead, and its container waited for: its successor
//! needs the key's volume, which two containers must not share; the next request starts it.
//! Everything else is removed: services whose task ended, whose node is lost, whose class is
//! gone, and a second service of one key (a replacement cut short by valet's exit).

use super::running::{self, SwarmInstance, Watched};
use super::tasks::{self, Progress};
use super::{spec, Stale, SwarmDriver};
use crate::docker::error::engine;
use crate::docker::image::ImageSource;
use crate::docker::logs::LogSink;
use crate::docker::names;
use crate::driver::{Adopted, DriverError};
use crate::logfile;
use crate::logs::LogRing;
use bollard::query_parameters::ListServicesOptions;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use valet_core::InstanceId;

/// Lines kept in memory per adopted instance, as the instance layer asks for new ones.
const LOG_LINES: usize = 1000;

/// What recovery does with one service, given what it knows of it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Its class's current config: adopt it.
    Adopt,
    /// An older config of a class without a volume: adopt it, and its successor starts beside.
    AdoptStale,
    /// An older config of a class with a volume: remove it and wait for its container.
    RemoveAndWait,
    /// Not valet's to keep (no class, or a second service of a key already adopted).
    Remove,
}

/// `fresh`: it carries its class's current config hash. `volume`: its class has one (`None`:
/// the class is gone). `taken`: another service of the key was adopted already.
fn verdict(fresh: bool, volume: Option<bool>, taken: bool) -> Verdict {
    match (volume, fresh, taken) {
        (None, _, _) | (_, _, true) => Verdict::Remove,
        (Some(_), true, false) => Verdict::Adopt,
        (Some(false), false, false) => Verdict::AdoptStale,
        (Some(true), false, false) => Verdict::RemoveAndWait,
    }
}

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
    let mut looked = Vec::new();
    for service in found {
        let Some(id) = service.id.clone() else {
            continue;
        };
        let spec = service.spec.unwrap_or_default();
        let name = spec.name.unwrap_or_default();
        let labels = spec.labels.unwrap_or_default();
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
        // A class whose image cannot be had now counts as changed: its service serves on, and
        // the successor's start says why it cannot be made.
        let fresh = current.is_some() && labels.get(names::CONFIG_HASH) == current.as_ref();
        looked.push((id, name, instance, fresh));
    }
    // A key's current service first: when a replacement was cut short, it is the one kept.
    looked.sort_by_key(|(_, _, _, fresh)| !fresh);
    let mut adopted = Vec::new();
    let mut taken: HashSet<InstanceId> = HashSet::new();
    for (id, name, instance, fresh) in looked {
        let volume = instance
            .as_ref()
            .and_then(|i| driver.class(i.class()).ok())
            .map(|s| s.volume.is_some());
        let is_taken = instance.as_ref().is_some_and(|i| taken.contains(i));
        let shown = instance.as_ref().map(|i| i.to_string()).unwrap_or_default();
        match (verdict(fresh, volume, is_taken), instance) {
            (verdict @ (Verdict::Adopt | Verdict::AdoptStale), Some(instance)) => {
                let stale = verdict == Verdict::AdoptStale;
                match adopt(driver, &id, &instance).await {
                    Some(running) => {
                        tracing::info!(%instance, service = %id, stale, "adopted running service");
                        if stale {
                            let mut marks =
                                driver.inner.stale.lock().unwrap_or_else(|e| e.into_inner());
                            marks.insert(instance.clone(), Stale { id, name });
                        }
                        taken.insert(instance.clone());
                        adopted.push(Adopted {
                            id: instance,
                            running,
                            stale,
                        });
                    }
                    None => {
                        tracing::info!(%instance, service = %id, "service no longer runs; removing it");
                        running::remove(manager, &id).await;
                    }
                }
            }
            (Verdict::RemoveAndWait, Some(instance)) => {
                let settle = driver
                    .class(instance.class())
                    .map_or(Duration::ZERO, |s| s.stop_timeout)
                    + Duration::from_secs(5);
                tracing::info!(%instance, service = %id, "service of an older config of a class with a volume; removing it before its successor starts");
                driver.remove_ids(&[id], Some(settle)).await;
            }
            _ => {
                tracing::info!(instance = %shown, service = %id, "service's class is gone or its key has another; removing it");
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
    instance: &InstanceId,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_service_serves_until_its_successor_unless_its_class_has_a_volume() {
        assert_eq!(verdict(true, Some(false), false), Verdict::Adopt);
        assert_eq!(verdict(true, Some(true), false), Verdict::Adopt);
        assert_eq!(verdict(false, Some(false), false), Verdict::AdoptStale);
        assert_eq!(verdict(false, Some(true), false), Verdict::RemoveAndWait);
        // The class is gone, or the key's current service was adopted already.
        assert_eq!(verdict(true, None, false), Verdict::Remove);
        assert_eq!(verdict(false, Some(false), true), Verdict::Remove);
        assert_eq!(verdict(true, Some(false), true), Verdict::Remove);
    }
}
