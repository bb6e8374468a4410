//! After a restart: Pods outlive valet, so the next valet finds its own (by the scope label
//! and, in cluster mode, its replica's owner label) and adopts each that runs with its class's
//! current config; one made from an older config serves until its successor is ready (as with
//! the Docker driver: Pod names are unique per start, so both may exist at once), unless its
//! class has a volume. Everything else goes: Pods that ended or are stuck, Pods of classes no
//! longer in the config, and Secrets whose Pod is gone (not the registry's pull Secret).

use super::pods::{self, State};
use super::running::{self, KubePod};
use super::{spec, KubernetesDriver};
use crate::docker::logs::LogSink;
use crate::driver::{Adopted, DriverError, Endpoints};
use crate::logfile;
use crate::logs::LogRing;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::Api;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Lines kept in memory per adopted instance, as the instance layer asks for new ones.
const LOG_LINES: usize = 1000;

fn selector(driver: &KubernetesDriver) -> String {
    let mut selector = spec::scope_selector(&driver.inner.scope);
    if let Some(owner) = &driver.inner.owner {
        let labels = spec::labels("", &valet_core::InstanceId::new("c", "k"), Some(owner));
        selector.push_str(&format!(",{}={}", spec::OWNER, labels[spec::OWNER]));
    }
    selector
}

pub async fn run(driver: &KubernetesDriver) -> Result<Vec<Adopted>, DriverError> {
    let pods: Api<Pod> = driver.api();
    let secrets: Api<Secret> = driver.api();
    let params = ListParams::default().labels(&selector(driver));
    let found = pods
        .list(&params)
        .await
        .map_err(|e| super::api_error("cannot list pods", e))?;
    let mut hashes: HashMap<String, Option<String>> = HashMap::new();
    let mut adopted = Vec::new();
    let mut alive = HashSet::new();
    for pod in found.items {
        let (Some(name), Some(uid)) = (pod.metadata.name.clone(), pod.metadata.uid.clone()) else {
            continue;
        };
        let instance = spec::instance_of(&pod.metadata);
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
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let stale = current.is_none() || labels.get(spec::CONFIG_HASH) != current.as_ref();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let has_secret = secrets.get_opt(&name).await.ok().flatten().is_some();
        // A stale Pod with a volume cannot serve beside its successor: both would mount the
        // key's claim, which a node other than its own cannot attach.
        let stale_with_volume = stale && class_has_volume(driver, instance.as_ref());
        match (instance, pods::state(&pod), deleting) {
            (Some(instance), State::Running { ip }, false)
                if class_known(driver, &instance) && !stale_with_volume =>
            {
                let running = adopt(driver, &instance, &name, &uid, ip, has_secret).await;
                tracing::info!(%instance, pod = %name, stale, "adopted running pod");
                alive.insert(name);
                adopted.push(Adopted {
                    id: instance,
                    running,
                    stale,
                });
            }
            (_, _, true) => {
                alive.insert(name);
            }
            (instance, state, false) => {
                let instance = instance.map(|i| i.to_string()).unwrap_or_default();
                tracing::info!(%instance, pod = %name, ?state, "pod not adoptable; deleting it");
                running::delete(&pods, &name, &uid, Duration::ZERO).await;
            }
        }
    }
    // A Secret outlives its Pod only when an earlier valet died between the two deletes. The
    // registry's pull Secret belongs to no Pod: it is left out.
    let orphans = ListParams::default().labels(&format!(
        "{},!{}",
        selector(driver),
        super::project::PULL_SECRET_LABEL
    ));
    if let Ok(list) = secrets.list(&orphans).await {
        for secret in list.items {
            let Some(name) = secret.metadata.name else {
                continue;
            };
            if !alive.contains(&name) {
                running::delete_secret(&secrets, &name).await;
            }
        }
    }
    Ok(adopted)
}

fn class_has_volume(driver: &KubernetesDriver, instance: Option<&valet_core::InstanceId>) -> bool {
    instance
        .and_then(|i| driver.inner.classes.get(i.class()))
        .is_some_and(|s| s.volume.is_some())
}

fn class_known(driver: &KubernetesDriver, instance: &valet_core::InstanceId) -> bool {
    driver.inner.classes.contains_key(instance.class())
}

/// The config hash a class's Pods should carry; `None` when its image cannot be had.
async fn current_hash(driver: &KubernetesDriver, class: &str) -> Option<String> {
    let settings = driver.class(class).ok()?;
    let path = logfile::build_path(&logfile::class_dir(&driver.inner.data_dir, class));
    let mut sink = LogSink::open(&path, Arc::new(LogRing::new(1))).await;
    match driver.image(class, &settings, &mut sink, &|_| {}).await {
        Ok((_, _, image_id)) => Some(settings.config_hash(&image_id)),
        Err(e) => {
            tracing::warn!(class, error = %e, "cannot have the class's image");
            None
        }
    }
}

async fn adopt(
    driver: &KubernetesDriver,
    instance: &valet_core::InstanceId,
    name: &str,
    uid: &str,
    ip: std::net::IpAddr,
    has_secret: bool,
) -> Box<dyn crate::driver::Running> {
    let ports = driver
        .inner
        .classes
        .get(instance.class())
        .map(|s| s.ports.clone())
        .unwrap_or_default();
    let endpoints = Endpoints {
        ports: ports
            .into_iter()
            .map(|(n, p)| (n, SocketAddr::new(ip, p)))
            .collect(),
    };
    // The file the instance layer gives the instance's later starts; its earlier output is
    // there already, so only new lines are followed.
    let logs = logfile::class_dir(&driver.inner.data_dir, instance.class());
    let ring = Arc::new(LogRing::new(LOG_LINES));
    let sink = LogSink::open(&logfile::path(&logs, instance), ring.clone()).await;
    let mut pod = KubePod {
        _held: driver.inner.held.hold(uid),
        pods: driver.api(),
        secrets: driver.api(),
        name: name.to_string(),
        uid: uid.to_string(),
        has_secret,
        watch: driver.inner.watch.clone(),
        endpoints,
        ring,
        pump: None,
        stopped: false,
        wait_stopped: class_has_volume(driver, Some(instance)),
    };
    pod.pump = Some(running::follow_new(&pod, sink));
    Box::new(pod)
}
