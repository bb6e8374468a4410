//! Pod state from one watch over this valet's Pods (kube-runtime's watcher): every start and
//! every running instance reads it from a `watch` channel instead of asking the apiserver.
//! After a lost watch the watcher lists again (`Init` .. `InitDone`) and the snapshot is
//! swapped whole, so a Pod deleted meanwhile drops out.

use crate::driver::ExitStatus;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// What the watch knows, by Pod name.
#[derive(Default, Clone)]
pub struct Snapshot {
    pub pods: Arc<HashMap<String, Arc<Pod>>>,
    /// A full listing has been seen: a Pod missing now is gone.
    pub synced: bool,
}

impl Snapshot {
    /// The Pod of this name and UID: a newer Pod of the same name is another Pod.
    pub fn get(&self, name: &str, uid: &str) -> Option<&Arc<Pod>> {
        self.pods
            .get(name)
            .filter(|p| p.metadata.uid.as_deref() == Some(uid))
    }
}

/// Starts the watch; it lives as long as `tx` has receivers (the driver's).
pub fn spawn(api: Api<Pod>, selector: String) -> watch::Receiver<Snapshot> {
    let (tx, rx) = watch::channel(Snapshot::default());
    tokio::spawn(async move {
        let config = watcher::Config::default().labels(&selector);
        // Backoff between relists when the apiserver is away; every error is logged.
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut relisting: Option<HashMap<String, Arc<Pod>>> = None;
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = tx.closed() => return,
            };
            let Some(event) = event else { return };
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "kubernetes pod watch failed; relisting");
                    continue;
                }
            };
            match event {
                Event::Init => relisting = Some(HashMap::new()),
                Event::InitApply(pod) => {
                    if let (Some(list), Some(name)) = (&mut relisting, pod.metadata.name.clone()) {
                        list.insert(name, Arc::new(pod));
                    }
                }
                Event::InitDone => {
                    let pods = relisting.take().unwrap_or_default();
                    tx.send_replace(Snapshot {
                        pods: Arc::new(pods),
                        synced: true,
                    });
                }
                Event::Apply(pod) | Event::Delete(pod) if pod.metadata.name.is_none() => {}
                Event::Apply(pod) => tx.send_modify(|s| {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    Arc::make_mut(&mut s.pods).insert(name, Arc::new(pod));
                }),
                Event::Delete(pod) => tx.send_modify(|s| {
                    let name = pod.metadata.name.as_deref().unwrap_or_default();
                    let same = s
                        .get(name, pod.metadata.uid.as_deref().unwrap_or(""))
                        .is_some();
                    if same {
                        Arc::make_mut(&mut s.pods).remove(name);
                    }
                }),
            }
        }
    });
    rx
}

/// Where a Pod is, as a start or a running instance needs to know.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Its container runs and it has an address.
    Running { ip: std::net::IpAddr },
    /// Its container ran and ended (or the Pod failed, was evicted).
    Ended(ExitStatus, String),
    /// Its image cannot be had (pull failed, not on the node with `Never`): the cause.
    NoImage(String),
    /// It cannot start until someone acts: the cause, told to waiting clients.
    Stuck(String),
    /// On its way; what it waits for.
    Waiting(String),
}

/// Reasons a container waits for an image that no waiting brings.
const NO_IMAGE: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
];

/// Other reasons a container waits that no waiting fixes by itself.
const STUCK: [&str; 3] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

pub fn state(pod: &Pod) -> State {
    let Some(status) = &pod.status else {
        return State::Waiting("no status yet".into());
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let container = status.container_statuses.iter().flatten().next();
    let current = container.and_then(|c| c.state.as_ref());
    if let Some(ended) = current.and_then(|s| s.terminated.as_ref()) {
        let exit = ExitStatus {
            code: Some(ended.exit_code),
            signal: ended.signal,
        };
        let why = ended.reason.clone().unwrap_or_default();
        return State::Ended(exit, why);
    }
    if matches!(phase, "Failed" | "Succeeded") {
        // Evicted, or the node lost: no container status to read an exit from.
        let why = status.reason.clone().unwrap_or_else(|| phase.to_string());
        let message = status.message.clone().unwrap_or_default();
        return State::Ended(
            ExitStatus::default(),
            format!("{why} {message}").trim().into(),
        );
    }
    if let Some(waiting) = current.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.as_deref().unwrap_or("Waiting");
        let message = waiting.message.as_deref().unwrap_or("");
        if NO_IMAGE.contains(&reason) {
            return State::NoImage(format!("the Pod cannot start: {reason}: {message}"));
        }
        if STUCK.contains(&reason) {
            return State::Stuck(format!("the Pod cannot start: {reason}: {message}"));
        }
        return State::Waiting(format!("{reason} {message}").trim().into());
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(condition) = unschedulable {
        let message = condition.message.as_deref().unwrap_or("");
        return State::Stuck(format!(
            "no node can take the Pod (Unschedulable): {message}"
        ));
    }
    let running = current.is_some_and(|s| s.running.is_some());
    match status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()) {
        Some(ip) if running && phase == "Running" => State::Running { ip },
        _ => State::Waiting(format!("phase {phase}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "status": status}))
            .expect("a Pod")
    }

    #[test]
    fn pod_states_are_read_from_the_container_and_the_conditions() {
        let running = pod(json!({"phase": "Running", "podIP": "172.31.0.5",
            "containerStatuses": [{"name": "instance", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"running": {}}}]}));
        assert_eq!(
            state(&running),
            State::Running {
                ip: "172.31.0.5".parse().unwrap()
            }
        );

        let never = pod(json!({"phase": "Pending",
            "containerStatuses": [{"name": "instance", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull",
                "message": "Container image \"x:1\" is not present with pull policy of Never"}}}]}));
        let State::NoImage(why) = state(&never) else {
            panic!("stuck")
        };
        assert!(
            why.contains("ErrImageNeverPull") && why.contains("x:1"),
            "{why}"
        );

        let creating = pod(json!({"phase": "Pending",
            "containerStatuses": [{"name": "instance", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(state(&creating), State::Waiting("ContainerCreating".into()));

        let unschedulable = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
        );
        let State::Stuck(why) = state(&unschedulable) else {
            panic!("stuck")
        };
        assert!(why.contains("0/3 nodes"), "{why}");

        let crashed = pod(json!({"phase": "Failed",
            "containerStatuses": [{"name": "instance", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}));
        let State::Ended(exit, _) = state(&crashed) else {
            panic!("ended")
        };
        assert_eq!(exit.code, Some(3));

        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted", "message": "low memory"}));
        let State::Ended(exit, why) = state(&evicted) else {
            panic!("ended")
        };
        assert_eq!((exit.code, why.as_str()), (None, "Evicted low memory"));
    }
}
