//! The handle of one instance's Pod: its endpoints, its output, its end (read from the Pod
//! watch) and its stop (the Pod deleted by name and UID, so a stop never hits a newer Pod of
//! the same key that another replica or a later start made).

use super::pods::{self, Snapshot, State};
use crate::docker::logs::LogSink;
use crate::driver::{Endpoints, ExitStatus, Running};
use crate::logs::LogRing;
use async_trait::async_trait;
use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, LogParams, Preconditions};
use kube::Api;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// After its grace period, how long a deleted Pod's container may take to be seen stopped
/// (the kubelet reports it on its next sync).
const STOPPED_WITHIN: Duration = Duration::from_secs(30);

pub struct KubePod {
    pub(super) pods: Api<Pod>,
    pub(super) secrets: Api<Secret>,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) has_secret: bool,
    pub(super) watch: watch::Receiver<Snapshot>,
    pub(super) endpoints: Endpoints,
    pub(super) ring: Arc<LogRing>,
    pub(super) pump: Option<JoinHandle<()>>,
    pub(super) stopped: bool,
    /// Whether a stop waits for the container to be seen stopped: only when the key's next
    /// Pod may mount the same claim. Without a volume the next Pod has its own name and
    /// address, and the kubelet's report of the kill can lag it by seconds.
    pub(super) wait_stopped: bool,
}

impl KubePod {
    /// How it ended, once it has: its container's exit, or unknown when the Pod went away.
    fn ended(&self) -> Option<ExitStatus> {
        let snapshot = self.watch.borrow();
        match snapshot.get(&self.name, &self.uid) {
            Some(pod) => match pods::state(pod) {
                State::Ended(exit, _) => Some(exit),
                _ => None,
            },
            // Deleted (or evicted and removed) by someone else.
            None if snapshot.synced => Some(ExitStatus::default()),
            None => None,
        }
    }
}

/// Deletes a Pod by name and UID with `grace`; one already gone is no error.
pub async fn delete(pods: &Api<Pod>, name: &str, uid: &str, grace: Duration) {
    let params = DeleteParams {
        grace_period_seconds: Some(grace.as_secs_f64().ceil() as u32),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(name, &params).await {
        Ok(_) => tracing::info!(pod = name, "pod deleted"),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = name, error = %e, "cannot delete pod"),
    }
}

/// Deletes an instance's Secret (named as its Pod); one already gone is no error.
pub async fn delete_secret(secrets: &Api<Secret>, name: &str) {
    match secrets.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => tracing::warn!(secret = name, error = %e, "cannot delete secret"),
    }
}

/// Copies the container's output into `sink` from the apiserver's log stream, following it.
pub fn follow(pods: Api<Pod>, name: String, sink: LogSink) -> JoinHandle<()> {
    pump(pods, name, sink, None)
}

/// [`follow`] from now on: an adopted Pod's earlier output is in its file already.
pub fn follow_new(pods: Api<Pod>, name: String, sink: LogSink) -> JoinHandle<()> {
    pump(pods, name, sink, Some(0))
}

fn pump(pods: Api<Pod>, name: String, mut sink: LogSink, tail: Option<i64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let params = LogParams {
            follow: true,
            container: Some(super::spec::CONTAINER.into()),
            tail_lines: tail,
            ..Default::default()
        };
        let stream = match pods.log_stream(&name, &params).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "no pod logs");
                return;
            }
        };
        let mut lines = stream.lines();
        while let Some(Ok(line)) = lines.next().await {
            sink.keep(line);
            sink.flush().await;
        }
    })
}

#[async_trait]
impl Running for KubePod {
    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn logs(&self) -> Arc<LogRing> {
        self.ring.clone()
    }

    async fn exited(&mut self) -> ExitStatus {
        loop {
            if let Some(exit) = self.ended() {
                return exit;
            }
            if self.watch.changed().await.is_err() {
                // The watch is gone with the driver: nothing more will be known.
                std::future::pending::<()>().await;
            }
        }
    }

    async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.stopped = true;
        delete(&self.pods, &self.name, &self.uid, timeout).await;
        if !self.wait_stopped {
            if self.has_secret {
                delete_secret(&self.secrets, &self.name).await;
            }
            return self.ended().unwrap_or_default();
        }
        // Bounded: the containers stopping is what matters (a key's next Pod may share its
        // volume), not the object vanishing, which the kubelet does later.
        let waited = tokio::time::timeout(timeout + STOPPED_WITHIN, self.exited()).await;
        if self.has_secret {
            delete_secret(&self.secrets, &self.name).await;
        }
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        waited.unwrap_or_else(|_| {
            tracing::warn!(pod = %self.name, "pod not seen stopped in time");
            ExitStatus::default()
        })
    }
}

impl Drop for KubePod {
    /// Dropped without a stop (a start given up): the Pod goes at once.
    fn drop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.stopped {
            let (pods, secrets) = (self.pods.clone(), self.secrets.clone());
            let (name, uid, secret) = (self.name.clone(), self.uid.clone(), self.has_secret);
            runtime.spawn(async move {
                delete(&pods, &name, &uid, Duration::ZERO).await;
                if secret {
                    delete_secret(&secrets, &name).await;
                }
            });
        }
    }
}
