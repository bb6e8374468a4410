//! One instance's service as the instance layer holds it. A watcher polls the service's tasks
//! and its node: the instance has exited when its task ended, when Swarm replaced it by another
//! task, when the service is gone, or when its node is lost (see [`super::nodes`]). Whatever
//! ends it, the service is removed by its ID, so a later service of the same key (this
//! replica's or another's) is never touched.

use super::nodes::Nodes;
use super::tasks::{self, Progress};
use crate::docker::error::not_found;
use crate::driver::{Endpoints, ExitStatus, Running};
use crate::logs::LogRing;
use async_trait::async_trait;
use bollard::query_parameters::ListTasksOptions;
use bollard::Docker;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopped instance's last output may take to reach the ring and the file.
const LOG_DRAIN: Duration = Duration::from_secs(1);
/// Slack over `stop_timeout` for Swarm to report the task gone.
const STOP_SLACK: Duration = Duration::from_secs(5);

/// What a watcher needs to know about the instance it watches.
#[derive(Clone)]
pub struct Watched {
    pub manager: Docker,
    pub nodes: Arc<Nodes>,
    /// The service's ID.
    pub service: String,
    pub task: String,
    pub node: String,
    /// The task's container on its node, once it had one.
    pub container: Option<String>,
}

pub struct SwarmInstance {
    watched: Watched,
    endpoints: Endpoints,
    logs: Arc<LogRing>,
    exit: watch::Receiver<Option<ExitStatus>>,
    watcher: JoinHandle<()>,
    pump: Option<JoinHandle<()>>,
    /// Set once it has ended and its service is removed.
    status: Option<ExitStatus>,
}

impl SwarmInstance {
    pub fn watch(
        watched: Watched,
        endpoints: Endpoints,
        logs: Arc<LogRing>,
        pump: Option<JoinHandle<()>>,
    ) -> Self {
        let (tx, exit) = watch::channel(None);
        let watcher = tokio::spawn(watch_task(watched.clone(), logs.clone(), tx));
        Self {
            watched,
            endpoints,
            logs,
            exit,
            watcher,
            pump,
            status: None,
        }
    }

    /// After it ended: its service goes, its last output lands, the status is kept.
    async fn finish(&mut self, status: ExitStatus) -> ExitStatus {
        self.watcher.abort();
        remove(&self.watched.manager, &self.watched.service).await;
        if let Some(mut pump) = self.pump.take() {
            // A lost node's log stream may never end.
            if tokio::time::timeout(LOG_DRAIN, &mut pump).await.is_err() {
                pump.abort();
            }
        }
        self.status = Some(status);
        status
    }
}

#[async_trait]
impl Running for SwarmInstance {
    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn logs(&self) -> Arc<LogRing> {
        self.logs.clone()
    }

    async fn exited(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = crate::docker::running::wait_sent(&mut self.exit).await;
        self.finish(status).await
    }

    async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let watched = self.watched.clone();
        let (manager, service) = (&watched.manager, watched.service.as_str());
        // Swarm stops the task with the image's stop signal, waits the service's
        // StopGracePeriod (the class's stop_timeout), then kills it.
        remove(manager, service).await;
        // The manager forgets a service's tasks with it: only the node's engine can tell when
        // the container is gone.
        let status = match (&watched.container, watched.nodes.engine(&watched.node)) {
            (Some(container), Some(engine)) => {
                let deadline = Instant::now() + timeout + STOP_SLACK;
                container_gone(&watched, &engine, container, deadline).await
            }
            _ => ExitStatus::default(),
        };
        self.finish(status).await
    }
}

impl Drop for SwarmInstance {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(pump) = &self.pump {
            pump.abort();
        }
        if self.status.is_some() {
            return;
        }
        // Dropped without a stop: like a process, it must not outlive its handle.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (manager, service) = (self.watched.manager.clone(), self.watched.service.clone());
            runtime.spawn(async move { remove(&manager, &service).await });
        }
    }
}

/// Waits until the container no longer runs on its node (bounded by `deadline`); its exit
/// status when the engine still has it. A lost node cannot confirm anything: Swarm removes the
/// container when the node returns.
async fn container_gone(
    watched: &Watched,
    engine: &Docker,
    container: &str,
    deadline: Instant,
) -> ExitStatus {
    loop {
        if watched.nodes.get(&watched.node).is_none_or(|n| n.lost()) {
            return ExitStatus::default();
        }
        match engine.inspect_container(container, None).await {
            Err(e) if not_found(&e) => return ExitStatus::default(),
            Ok(inspect) => {
                let state = inspect.state.unwrap_or_default();
                if state.running != Some(true) {
                    let code = state.exit_code.unwrap_or_default();
                    return crate::docker::running::status_of(code);
                }
            }
            Err(e) => {
                tracing::debug!(container, error = %e, "cannot inspect the stopping container")
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                container,
                "the service's container did not stop within stop_timeout"
            );
            return ExitStatus::default();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes a service by its ID; one already gone is no error.
pub async fn remove(manager: &Docker, service: &str) {
    if let Err(e) = manager.delete_service(service).await {
        if !not_found(&e) {
            tracing::warn!(service, error = %e, "cannot remove service");
        }
    }
}

/// The tasks of one service (by its ID).
pub async fn list(
    manager: &Docker,
    service: &str,
) -> Result<Vec<bollard::models::Task>, bollard::errors::Error> {
    let options = ListTasksOptions {
        filters: Some(HashMap::from([(
            "service".to_string(),
            vec![service.to_string()],
        )])),
    };
    manager.list_tasks(Some(options)).await
}

/// Why an instance has ended, given its service's tasks in a look (`None`: the service is
/// gone); `None` while its task runs.
fn ended(found: Option<&Vec<bollard::models::Task>>, task: &str) -> Option<(ExitStatus, String)> {
    let Some(found) = found else {
        return Some((ExitStatus::default(), "its service was removed".into()));
    };
    let ours = found.iter().find(|t| t.id.as_deref() == Some(task));
    let other = found
        .iter()
        .any(|t| t.id.as_deref() != Some(task) && tasks::desired_running(t));
    match ours.map(tasks::progress) {
        None => Some((ExitStatus::default(), "its task is gone".into())),
        Some(Progress::Ended { why, status }) => Some((status.unwrap_or_default(), why)),
        Some(_) if other => Some((
            ExitStatus::default(),
            "Swarm replaced its task by another".into(),
        )),
        Some(_) => None,
    }
}

/// Resolves the exit channel when the task ends, is replaced, or its node is lost, from the
/// driver's shared looks at nodes and tasks.
async fn watch_task(watched: Watched, logs: Arc<LogRing>, tx: watch::Sender<Option<ExitStatus>>) {
    let Watched {
        nodes,
        service,
        task,
        node,
        ..
    } = watched;
    // Looks at the tasks that began before the instance was handed over may not have its
    // service yet.
    let since = Instant::now();
    let (mut view, mut looks) = (nodes.view(), nodes.tasks());
    let (status, why) = loop {
        if let Some(seen) = view.borrow_and_update().get(&node).cloned() {
            if seen.lost() {
                let why = match seen.ready {
                    false => format!("its node {} is down", seen.name),
                    true => format!("the engine of its node {} does not answer", seen.name),
                };
                break (ExitStatus::default(), why);
            }
        }
        let look = looks.borrow_and_update().clone();
        if look.taken_at.is_some_and(|at| at > since) {
            if let Some(ended) = ended(look.by_service.get(&service), &task) {
                break ended;
            }
        }
        // The manager not answering keeps the last look: the nodes' tasks go on meanwhile.
        let changed = tokio::select! {
            changed = view.changed() => changed,
            changed = looks.changed() => changed,
        };
        if changed.is_err() {
            // The watches end with the driver: nothing more will be known.
            std::future::pending::<()>().await;
        }
    };
    tracing::info!(service, task, %why, "swarm instance ended");
    logs.push(format!("[valet] instance ended: {why}"));
    let _ = tx.send(Some(status));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: serde_json::Value) -> bollard::models::Task {
        serde_json::from_value(json).expect("a task as the Engine API sends it")
    }

    #[test]
    fn an_instance_ends_with_its_task_its_service_or_its_replacement() {
        let running = task(serde_json::json!({
            "ID": "t1", "DesiredState": "running", "Status": {"State": "running"}
        }));
        assert_eq!(ended(Some(&vec![running.clone()]), "t1"), None);
        let (_, why) = ended(None, "t1").unwrap();
        assert!(why.contains("service was removed"), "{why}");
        let (_, why) = ended(Some(&vec![]), "t1").unwrap();
        assert!(why.contains("task is gone"), "{why}");
        let failed = task(serde_json::json!({
            "ID": "t1", "DesiredState": "shutdown",
            "Status": {"State": "failed", "ContainerStatus": {"ExitCode": 3}}
        }));
        let (status, _) = ended(Some(&vec![failed]), "t1").unwrap();
        assert_eq!(status.code, Some(3));
        let successor = task(serde_json::json!({
            "ID": "t2", "DesiredState": "running", "Status": {"State": "pending"}
        }));
        let (_, why) = ended(Some(&vec![running, successor]), "t1").unwrap();
        assert!(why.contains("replaced"), "{why}");
    }
}
