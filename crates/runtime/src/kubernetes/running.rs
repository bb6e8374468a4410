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
use k8s_openapi::jiff;
use kube::api::{DeleteParams, LogParams, Preconditions};
use kube::Api;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// After its grace period, how long a deleted Pod's container may take to be seen stopped
/// (the kubelet reports it on its next sync).
pub(super) const STOPPED_WITHIN: Duration = Duration::from_secs(30);

/// The UIDs of the Pods this replica holds a [`KubePod`] of. Cheap to clone.
#[derive(Clone, Default)]
pub struct Held(Arc<std::sync::Mutex<HashSet<String>>>);

impl Held {
    /// Marks a Pod held until the returned guard is dropped (with its handle).
    pub fn hold(&self, uid: &str) -> HeldPod {
        self.lock().insert(uid.to_string());
        HeldPod {
            held: self.clone(),
            uid: uid.to_string(),
        }
    }

    pub fn has(&self, uid: &str) -> bool {
        self.lock().contains(uid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One Pod's mark in [`Held`], removed when dropped.
pub struct HeldPod {
    held: Held,
    uid: String,
}

impl Drop for HeldPod {
    fn drop(&mut self) {
        self.held.lock().remove(&self.uid);
    }
}

pub struct KubePod {
    /// Marks the Pod as this replica's while the handle lives.
    pub(super) _held: HeldPod,
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
    let mut retry = Retry::new();
    loop {
        match pods.delete(name, &params).await {
            Ok(_) => return tracing::info!(pod = name, "pod deleted"),
            Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => return,
            Err(e) if retry.again(&e).await => {}
            Err(e) => return tracing::warn!(pod = name, error = %e, "cannot delete pod"),
        }
    }
}

/// How long a delete keeps trying while the apiserver cannot be reached: a restart of it takes
/// seconds, and a Pod left behind would run on unseen until valet's next start.
const DELETE_WITHIN: Duration = Duration::from_secs(30);

/// Retries of a delete that did not reach the apiserver (an answer of its, such as 403, is
/// final): 0.25 s doubling to 4 s, for [`DELETE_WITHIN`].
struct Retry {
    until: tokio::time::Instant,
    pause: Duration,
}

impl Retry {
    fn new() -> Self {
        Self {
            until: tokio::time::Instant::now() + DELETE_WITHIN,
            pause: Duration::from_millis(250),
        }
    }

    /// Waits and says true when `error` is worth another try within the bound.
    async fn again(&mut self, error: &kube::Error) -> bool {
        if matches!(error, kube::Error::Api(_))
            || tokio::time::Instant::now() + self.pause > self.until
        {
            return false;
        }
        tracing::debug!(%error, "apiserver unreachable; trying the delete again");
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(4));
        true
    }
}

/// Deletes an instance's Secret (named as its Pod); one already gone is no error.
pub async fn delete_secret(secrets: &Api<Secret>, name: &str) {
    let mut retry = Retry::new();
    loop {
        match secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.is_not_found() => return,
            Err(e) if retry.again(&e).await => {}
            Err(e) => return tracing::warn!(secret = name, error = %e, "cannot delete secret"),
        }
    }
}

/// How long a log stream that ended while its Pod runs waits before it is opened again, at
/// first; doubled at each failed try up to [`RESUME_AT_MOST`].
const RESUME_AFTER: Duration = Duration::from_secs(1);
const RESUME_AT_MOST: Duration = Duration::from_secs(8);
/// A stream that stayed open this long (or gave a line) was healthy: the next loss is a new
/// one, logged and retried from [`RESUME_AFTER`].
const HEALTHY_FOR: Duration = Duration::from_secs(5);

/// When to open a Pod's log stream again, and whether to say so: while the apiserver is away
/// every try fails at once, and one line per try per Pod would flood valet's log.
struct Resume {
    wait: Duration,
    told: bool,
}

impl Resume {
    fn new() -> Self {
        Self {
            wait: RESUME_AFTER,
            told: false,
        }
    }

    /// After a stream ended (`healthy`: it had been open a while or gave lines): how long to
    /// wait, and whether this loss is the first of its outage (logged at info).
    fn next(&mut self, healthy: bool) -> (Duration, bool) {
        if healthy {
            *self = Self::new();
        }
        let wait = self.wait;
        self.wait = (self.wait * 2).min(RESUME_AT_MOST);
        let tell = !self.told;
        self.told = true;
        (wait, tell)
    }
}

/// Copies the container's output into `sink` from the apiserver's log stream, following it.
pub fn follow(pod: &KubePod, sink: LogSink) -> JoinHandle<()> {
    pump(pod, sink, None)
}

/// [`follow`] from now on: an adopted Pod's earlier output is in its file already.
pub fn follow_new(pod: &KubePod, sink: LogSink) -> JoinHandle<()> {
    pump(pod, sink, Some(jiff::Timestamp::now()))
}

/// A log line with `timestamps`: its time and its text.
fn stamped(line: &str) -> (Option<jiff::Timestamp>, &str) {
    match line.split_once(' ') {
        Some((at, text)) => match at.parse() {
            Ok(at) => (Some(at), text),
            Err(_) => (None, line),
        },
        None => (line.parse().ok(), ""),
    }
}

/// The stream ends with the container, but also when the apiserver restarts or the connection
/// drops: while the watch says the Pod still runs, it is opened again from the last line's
/// time (`since`: none yet), and the lines up to that time are skipped (the apiserver counts
/// `sinceTime` in whole seconds), so nothing is lost or kept twice.
fn pump(pod: &KubePod, mut sink: LogSink, mut since: Option<jiff::Timestamp>) -> JoinHandle<()> {
    let (pods, name, uid) = (pod.pods.clone(), pod.name.clone(), pod.uid.clone());
    let watch = pod.watch.clone();
    tokio::spawn(async move {
        let mut resume = Resume::new();
        loop {
            let opened = std::time::Instant::now();
            let mut lines_seen = false;
            let params = LogParams {
                follow: true,
                container: Some(super::spec::CONTAINER.into()),
                timestamps: true,
                // Whole seconds, rounded down: kube rounds to the nearest, which could skip
                // the rest of the last line's second.
                since_time: since.and_then(|at| jiff::Timestamp::from_second(at.as_second()).ok()),
                ..Default::default()
            };
            match pods.log_stream(&name, &params).await {
                Ok(stream) => {
                    let mut lines = stream.lines();
                    while let Some(Ok(line)) = lines.next().await {
                        let (at, text) = stamped(&line);
                        if let Some(at) = at {
                            if since.is_some_and(|since| at <= since) {
                                continue;
                            }
                            since = Some(at);
                        }
                        lines_seen = true;
                        sink.keep(text.to_string());
                        sink.flush().await;
                    }
                }
                Err(e) => tracing::debug!(pod = %name, error = %e, "no pod logs"),
            }
            let healthy = lines_seen || opened.elapsed() >= HEALTHY_FOR;
            let over = {
                let snapshot = watch.borrow();
                match snapshot.get(&name, &uid) {
                    Some(pod) => !matches!(pods::state(pod), State::Running { .. }),
                    None => snapshot.synced,
                }
            };
            if over {
                return;
            }
            let (wait, tell) = resume.next(healthy);
            if tell {
                tracing::info!(pod = %name, "pod log stream ended while the pod runs; following it again");
            } else {
                tracing::debug!(pod = %name, ?wait, "pod log stream still cut; trying again");
            }
            tokio::time::sleep(wait).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_log_stream_is_told_once_and_tried_again_ever_later_until_it_holds() {
        let mut resume = Resume::new();
        let tries: Vec<(u64, bool)> = (0..6)
            .map(|_| resume.next(false))
            .map(|(wait, tell)| (wait.as_secs(), tell))
            .collect();
        assert_eq!(
            tries,
            [
                (1, true),
                (2, false),
                (4, false),
                (8, false),
                (8, false),
                (8, false)
            ],
            "one line per outage, not one per try; at most {RESUME_AT_MOST:?} apart"
        );
        assert_eq!(
            resume.next(true),
            (RESUME_AFTER, true),
            "a stream that held makes the next loss a new outage"
        );
    }

    #[test]
    fn log_lines_are_split_from_their_time() {
        let (at, text) = stamped("2026-12-05T12:34:56.123456789Z said-by-x a b");
        assert_eq!(text, "said-by-x a b");
        let at = at.unwrap();
        assert_eq!(at.to_string(), "2026-12-05T12:34:56.123456789Z");
        let (later, _) = stamped("2026-12-05T12:34:56.5Z next");
        assert!(later.unwrap() > at, "compared as times, not as text");
        assert_eq!(stamped("no time here"), (None, "no time here"));
    }
}
