//! Versions: which classes of a project are live (the current version, and old ones still
//! finishing their requests), switching a project's traffic to a new one, and retiring the
//! one it replaces.

use super::{Deployer, KEY, RETIRE_GRACE};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use valet_instances::ClassRuntime;

impl Deployer {
    /// Stops a version's instance that will not serve again. Its data is the project's and
    /// stays (no destroy); its class is forgotten.
    pub(super) async fn stop_for_good(&self, project_id: &str, class: &Arc<ClassRuntime>) {
        self.instances.stop(class, KEY, false).await;
        untrack(&self.live, project_id, class);
        self.packager.forget(&class.name);
        super::lock_map(&self.made_of).remove(&class.name);
    }

    pub(super) fn track(&self, project_id: &str, class: &Arc<ClassRuntime>) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let classes = live.entry(project_id.to_string()).or_default();
        if !classes.iter().any(|c| Arc::ptr_eq(c, class)) {
            classes.push(class.clone());
        }
    }

    pub(super) fn untrack_all(&self, project_id: &str) -> Vec<Arc<ClassRuntime>> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(project_id).unwrap_or_default()
    }

    /// Points the project at `class` and stops the version it replaces once its requests are
    /// done (or after a grace period).
    pub(super) fn switch(&self, project_id: &str, class: Arc<ClassRuntime>) {
        let Some(old) = self.instances.route_project(project_id, class.clone()) else {
            return;
        };
        if Arc::ptr_eq(&old, &class) {
            return;
        }
        let instances = self.instances.clone();
        let (live, packager) = (self.live.clone(), self.packager.clone());
        let made_of = self.made_of.clone();
        let project_id = project_id.to_string();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + RETIRE_GRACE;
            while let Some(inst) = instances.instance_of(&old, KEY) {
                if inst.info().active == 0 || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            instances.stop(&old, KEY, false).await;
            untrack(&live, &project_id, &old);
            packager.forget(&old.name);
            super::lock_map(&made_of).remove(&old.name);
        });
    }
}

/// Live classes per project (see [`Deployer::live`]).
pub(super) type Live = Mutex<HashMap<String, Vec<Arc<ClassRuntime>>>>;

fn untrack(live: &Live, project_id: &str, class: &Arc<ClassRuntime>) {
    let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(classes) = live.get_mut(project_id) {
        classes.retain(|c| !Arc::ptr_eq(c, class));
        if classes.is_empty() {
            live.remove(project_id);
        }
    }
}
