//! One running container as the instance layer holds it: its exit is watched by a task that
//! waits on the engine (so `exited` is cancel-safe), and it is removed once it has stopped, so
//! neither its name nor a stopped container is left behind. Its volume stays.

use crate::driver::{Endpoints, ExitStatus, Running};
use crate::logs::LogRing;
use async_trait::async_trait;
use bollard::errors::Error;
use bollard::query_parameters::{
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopped container's last output may take to reach the ring and the file.
const LOG_DRAIN: Duration = Duration::from_secs(1);
/// Slack over `stop_timeout` for the engine's answer to a stop before valet kills outright.
const STOP_SLACK: Duration = Duration::from_secs(15);

pub struct DockerInstance {
    docker: Docker,
    /// Container id.
    id: String,
    endpoints: Endpoints,
    logs: Arc<LogRing>,
    exit: watch::Receiver<Option<ExitStatus>>,
    waiter: JoinHandle<()>,
    pump: Option<JoinHandle<()>>,
    /// Set once it has stopped and been removed.
    status: Option<ExitStatus>,
    /// Until when the log pump is waited for once the container has stopped: fixed at the
    /// first wait, since `exited` is dropped and called again on every event of the instance
    /// layer's select loop, and a wait taken anew per call would never end while events come.
    drain_until: Option<tokio::time::Instant>,
}

impl DockerInstance {
    /// Takes over a started container: watches its exit and keeps its log pump.
    pub fn watch(
        docker: Docker,
        id: String,
        endpoints: Endpoints,
        logs: Arc<LogRing>,
        pump: JoinHandle<()>,
    ) -> Self {
        let (tx, exit) = watch::channel(None);
        let waiter = tokio::spawn(wait_for_exit(docker.clone(), id.clone(), logs.clone(), tx));
        Self {
            docker,
            id,
            endpoints,
            logs,
            exit,
            waiter,
            pump: Some(pump),
            status: None,
            drain_until: None,
        }
    }

    /// After it stopped: remove it, let its last output land, remember the status.
    async fn finish(&mut self, status: ExitStatus) -> ExitStatus {
        remove(&self.docker, &self.id).await;
        if let Some(pump) = self.pump.as_mut() {
            let until = *self
                .drain_until
                .get_or_insert_with(|| tokio::time::Instant::now() + LOG_DRAIN);
            let _ = tokio::time::timeout_at(until, pump).await;
            self.pump = None;
        }
        self.status = Some(status);
        status
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        wait_sent(&mut self.exit).await
    }
}

#[async_trait]
impl Running for DockerInstance {
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
        let status = self.wait_exit().await;
        self.finish(status).await
    }

    async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        // The engine sends the image's stop signal (SIGTERM by default), waits, then kills.
        let seconds = timeout.as_secs_f64().ceil() as i32;
        let options = StopContainerOptions {
            t: Some(seconds),
            signal: None,
        };
        let stop = self.docker.stop_container(&self.id, Some(options));
        match tokio::time::timeout(timeout + STOP_SLACK, stop).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if super::error::not_found(&e) => {}
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".into(),
                };
                tracing::warn!(container = %self.id, %error, "stop failed; removing by force");
                remove(&self.docker, &self.id).await;
            }
        }
        let waited = tokio::time::timeout(STOP_SLACK, self.wait_exit()).await;
        let status = waited.unwrap_or_default();
        self.finish(status).await
    }
}

impl Drop for DockerInstance {
    fn drop(&mut self) {
        self.waiter.abort();
        if self.status.is_some() {
            return;
        }
        // Dropped without a stop: like a process, it must not outlive its handle.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            runtime.spawn(async move { remove(&docker, &id).await });
        }
    }
}

/// The status a watcher sends once. It only ends after sending; a closed channel means it
/// panicked.
pub(crate) async fn wait_sent(exit: &mut watch::Receiver<Option<ExitStatus>>) -> ExitStatus {
    match exit.wait_for(Option::is_some).await {
        Ok(status) => status.unwrap_or_default(),
        Err(_) => ExitStatus::default(),
    }
}

/// Force-removes a container (killing it if it runs); its named volume is kept.
pub async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: false,
        link: false,
    };
    if let Err(e) = docker.remove_container(id, Some(options)).await {
        // Gone already, or being removed by the engine: both mean it is going away.
        if !super::error::not_found(&e) && !super::error::conflict(&e) {
            tracing::warn!(container = id, error = %e, "cannot remove container");
        }
    }
}

/// Waits until the container no longer runs. A broken connection to the engine (dockerd
/// restarting) is retried; the container's own end is read back from inspect.
async fn wait_for_exit(
    docker: Docker,
    id: String,
    logs: Arc<LogRing>,
    tx: watch::Sender<Option<ExitStatus>>,
) {
    let options = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let code = loop {
        let mut waiting = docker.wait_container(&id, Some(options.clone()));
        match waiting.next().await {
            Some(Ok(response)) => break Some(response.status_code),
            Some(Err(Error::DockerContainerWaitError { code, .. })) => break Some(code),
            Some(Err(e)) if super::error::not_found(&e) => break None,
            other => {
                let error = other.map(|r| r.err().map(|e| e.to_string()));
                tracing::debug!(container = %id, ?error, "waiting on the container failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    if let Ok(inspect) = docker.inspect_container(&id, None).await {
        if inspect.state.and_then(|s| s.oom_killed) == Some(true) {
            logs.push(
                "[valet] container killed: out of memory (its memory limit was reached)".into(),
            );
        }
    }
    let _ = tx.send(Some(code.map(status_of).unwrap_or_default()));
}

/// The engine reports a death by signal N as 128 + N, as a shell does.
pub(crate) fn status_of(code: i64) -> ExitStatus {
    match code {
        129..=192 => ExitStatus {
            code: None,
            signal: Some((code - 128) as i32),
        },
        _ => ExitStatus {
            code: Some(code as i32),
            signal: None,
        },
    }
}
