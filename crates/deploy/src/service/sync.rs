//! Cluster mode: every replica serves every deployed project, whichever replica built it.
//!
//! The replica that takes an upload builds it, tries it and records it as usual, and keeps the
//! upload with the version's records (one transaction). The store announces each change of a
//! project at its commit on the cluster's change feed (`Store::announce`); every replica then
//! brings its own copy in line ([`Deployer::follow`]): it builds a version it lacks from the
//! kept upload, routes the project to it and retires the class it replaces (its instance, if
//! it ran here, stops and gives the project's lease back), or, for a deleted project, stops and
//! removes everything of it. Which replica runs the project's one instance is the project
//! lease's business (`project:<id>`), as for any key: a replica that does not hold it forwards.

use super::{Deployer, KEY};
use crate::progress::Progress;
use crate::upload::{FileKind, Upload};
use crate::DeployError;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use valet_instances::ClassRuntime;
use valet_store::Deployment;

impl Deployer {
    /// Brings this replica in line with the store for one project (`Some(id)`), or for every
    /// project (`None`: changes may have been missed). Runs in the background; call it with
    /// every change the cluster's feed announces.
    pub fn follow(self: &Arc<Self>, changed: Option<&str>) {
        let deployer = self.clone();
        let changed = changed.map(str::to_string);
        tokio::spawn(async move {
            let ids = match changed {
                Some(id) => vec![id],
                None => match deployer.known_projects().await {
                    Ok(ids) => ids,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list projects to follow the cluster");
                        return;
                    }
                },
            };
            // Every project new to this replica answers 503 until its turn has come and its
            // build is done, not only the one being built (one sync at a time).
            let _arriving: Vec<_> = ids
                .iter()
                .filter(|id| deployer.instances.project(id).is_none())
                .map(|id| deployer.instances.project_arriving(id))
                .collect();
            for id in ids {
                if let Err(e) = deployer.sync(&id).await {
                    tracing::warn!(project = %id, error = %e, "project not brought in line with the cluster");
                }
            }
        });
    }

    /// Every project the store has and every one this replica has anything of.
    async fn known_projects(&self) -> Result<Vec<String>, DeployError> {
        let mut ids: Vec<String> = self
            .store
            .projects(None)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        let mut here: Vec<String> = self
            .instances
            .project_classes()
            .into_iter()
            .filter_map(|c| c.project.as_ref().map(|p| p.id.to_string()))
            .collect();
        here.extend(lock_map(&self.builds).keys().cloned());
        here.extend(lock_map(&self.live).keys().cloned());
        for id in here {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// One project: under its lock, so that a deploy, rollback or delete made here finishes
    /// first (its own announcement then finds nothing to do).
    async fn sync(&self, id: &str) -> Result<(), DeployError> {
        let lock = self.lock(id);
        let _held = lock.lock().await;
        let Some(project) = self.store.project(id).await? else {
            self.remove_here(id).await;
            return Ok(());
        };
        let Some(deployment) = self.store.deployment(id, project.current_version).await? else {
            return Ok(());
        };
        let env = self.env_of(id).await?;
        let wanted = made_of(&deployment.build, &env);
        let routed = self.instances.project(id);
        let current = routed
            .as_ref()
            .and_then(|class| lock_map(&self.made_of).get(&class.name).cloned());
        if current.is_some_and(|c| c == wanted) {
            return Ok(());
        }
        // A project new to this replica answers 503 with Retry-After while it is built here,
        // not 404 (a version replacing a routed one keeps serving the old meanwhile).
        let _arriving = routed
            .is_none()
            .then(|| self.instances.project_arriving(id));
        self.ensure_built(&deployment).await?;
        let class = self.class_with_env(&deployment, &project.name, env).await?;
        // Tracked, so that a delete stops it; not started: the first request that finds the
        // project's lease free starts it wherever it arrives.
        self.track(id, &class);
        tracing::info!(project = %id, version = deployment.version, "project follows the cluster: version routed here");
        self.switch(id, class);
        Ok(())
    }

    /// A project deleted on another replica: its route, its instance (if it ran here), its
    /// builds, data, logs and system user go, as with a delete made here.
    async fn remove_here(&self, id: &str) {
        let mut classes: Vec<Arc<ClassRuntime>> = self.untrack_all(id);
        if let Some(class) = self.instances.unroute_project(id) {
            if !classes.iter().any(|c| Arc::ptr_eq(c, &class)) {
                classes.push(class);
            }
        }
        let builds = self.take_builds(id);
        if classes.is_empty() && builds.is_empty() {
            return;
        }
        tracing::info!(project = %id, "project deleted on another replica: removed here");
        for class in &classes {
            self.instances.stop(class, KEY, false).await;
            self.packager.forget(&class.name);
        }
        self.forget_made_of(&classes);
        lock_map(&self.refs).remove(id);
        for build in builds {
            self.remove_build(id, &build).await;
        }
        self.packager.remove_project(id).await;
        let _ = tokio::fs::remove_dir_all(self.data_root(id)).await;
        self.remove_logs(id).await;
        crate::tenant::remove_user(id).await;
    }

    /// Makes a version runnable here if it is not: built from the upload the store kept,
    /// under the same build id (so its folder and its engine objects are named alike on every
    /// replica). Only in cluster mode; elsewhere a missing build stays an error.
    pub(super) async fn ensure_built(&self, deployment: &Deployment) -> Result<(), DeployError> {
        let project = &deployment.project_id;
        let (app, data) = (self.build_dir(&deployment.build), self.data_root(project));
        let version = super::Version {
            project,
            build: &deployment.build,
            number: deployment.version,
            app: &app,
            data: &data,
        };
        if !self.shared || self.packager.runnable(&version).await.is_ok() {
            return Ok(());
        }
        let Some(kept) = self.store.upload(project, &deployment.build).await? else {
            return Err(DeployError::NotFound(format!(
                "version {} of project {project} was built on another replica and its upload \
                 was not kept (it predates cluster mode): deploy it again",
                deployment.version
            )));
        };
        tracing::info!(project = %project, version = deployment.version, "building a version another replica deployed");
        let upload = Upload {
            file_name: kept.file_name,
            bytes: kept.body,
            name: None,
            runtime: kept.runtime,
            requirements: kept.requirements,
        };
        let kind = FileKind::of(&upload.file_name, &upload.bytes)?;
        self.note_build(project, &deployment.build);
        let progress = Progress::none();
        let prepared = self
            .build(&deployment.build, kind, &upload, &progress)
            .await?;
        if let Err(e) = self.packager.package(&version, &prepared, &progress).await {
            self.remove_build(project, &deployment.build).await;
            return Err(e);
        }
        Ok(())
    }

    /// Remembers that `build` of `project` may be on this replica's disk.
    pub(super) fn note_build(&self, project: &str, build: &str) {
        lock_map(&self.builds)
            .entry(project.to_string())
            .or_default()
            .insert(build.to_string());
    }

    /// The builds of `project` this replica may have, forgotten.
    pub(super) fn take_builds(&self, project: &str) -> HashSet<String> {
        lock_map(&self.builds).remove(project).unwrap_or_default()
    }

    pub(super) fn forget_made_of(&self, classes: &[Arc<ClassRuntime>]) {
        let mut made_of = lock_map(&self.made_of);
        for class in classes {
            made_of.remove(&class.name);
        }
    }
}

/// What a version's class is made of, hashed: its build and the project's secrets it got. Two classes of one project with the same value run the same thing.
pub(super) fn made_of(build: &str, env: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = env.iter().collect();
    sorted.sort();
    let mut hash = Sha256::new();
    hash.update(build.as_bytes());
    for (name, value) in sorted {
        hash.update([0]);
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
    }
    hex::encode(hash.finalize())
}

pub(super) fn lock_map<K, V>(map: &Mutex<HashMap<K, V>>) -> MutexGuard<'_, HashMap<K, V>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}
