//! `/v1/instances/{class}/{key}/logs`: the last lines of an instance's output (`?tail=N`), and
//! with `?follow=1` every new line as Server-Sent Events, across restarts, until the client
//! leaves or valet stops. A running instance is read from its in-memory ring; a sleeping or
//! crashed one (or a key from an earlier run of valet) from its log file.

use crate::error::ApiError;
use crate::Admin;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::Stream;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use valet_core::InstanceId;
use valet_instances::ClassRuntime;
use valet_runtime::{logfile, LogRing};

const DEFAULT_TAIL: usize = 100;
const MAX_TAIL: usize = 10_000;
/// How much of a log file's end is read for a tail: enough for `MAX_TAIL` ordinary lines.
const FILE_TAIL_BYTES: u64 = 2 * 1024 * 1024;
/// How often a follower without a live process looks for a new one.
const RESTART_POLL: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
pub struct LogQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: Option<String>,
}

pub async fn logs(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let runtime = admin.class(&class)?;
    // From here on the class goes by its own name: a project may have been named by its
    // name or id, and its version's class is what holds the ring and the log file.
    let class = runtime.name.to_string();
    let id = InstanceId::new(class.as_str(), key.as_str());
    let mut file = logfile::path(&runtime.log_root, &id);
    let known = admin.instances.instance_of(&runtime, &key).is_some();
    if !known && !file.exists() {
        if let Some(earlier) = earlier_version_log(&runtime, &key) {
            file = earlier;
        }
    }
    if !known && !file.exists() {
        return Err(ApiError::no_instance(runtime.label(), &key));
    }
    let tail = q.tail.unwrap_or(DEFAULT_TAIL).min(MAX_TAIL);
    let follow = matches!(q.follow.as_deref(), Some("1" | "true" | "yes" | ""));
    if follow {
        // A project is followed as `project:<id>`: across its versions, not just this one.
        let followed = match &runtime.project {
            Some(project) => format!("project:{}", project.id),
            None => class,
        };
        return Ok(follow_sse(admin, followed, key, file, tail).into_response());
    }
    let (lines, source) = match ring_of(&admin, &class, &key) {
        Some(ring) => (ring.tail(tail), "memory"),
        None => (file_tail(&file, tail), "file"),
    };
    Ok(
        Json(serde_json::json!({ "class": class, "key": key, "source": source, "lines": lines }))
            .into_response(),
    )
}

/// A project's version has a class of its own per valet run, so after a restart (before its
/// first request) its log file from the earlier run sits under another class's folder: the
/// newest log of any of the project's classes (`logs/project-<id>-*`) is its output.
fn earlier_version_log(runtime: &ClassRuntime, key: &str) -> Option<PathBuf> {
    let project = runtime.project.as_ref()?;
    let prefix = format!("project-{}-", project.id);
    let logs = runtime.log_root.parent()?;
    std::fs::read_dir(logs)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let class = entry.file_name().to_str()?.to_string();
            if !class.starts_with(&prefix) {
                return None;
            }
            let file = logfile::path(&entry.path(), &InstanceId::new(class.as_str(), key));
            let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok()?;
            Some((modified, file))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, file)| file)
}

fn ring_of(admin: &Admin, class: &str, key: &str) -> Option<Arc<LogRing>> {
    let class = admin.instances.class_named(class)?;
    admin.instances.instance_of(&class, key)?.log_ring()
}

/// The last `n` lines of a log file; nothing when it cannot be read.
fn file_tail(path: &std::path::Path, n: usize) -> Vec<String> {
    logfile::tail(path, n, FILE_TAIL_BYTES).unwrap_or_default()
}

fn follow_sse(
    admin: Arc<Admin>,
    class: String,
    key: String,
    file: PathBuf,
    tail: usize,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    // Subscribed here, before the response goes out: a line printed right after the client
    // sees the stream open must not slip past a follower task that has not run yet.
    let (seen, backlog, current) = match ring_of(&admin, &class, &key) {
        Some(ring) => {
            let (lines, follower) = ring.tail_and_follow(tail);
            (Arc::downgrade(&ring), lines, Some((Vec::new(), follower)))
        }
        None => (Weak::new(), file_tail(&file, tail), None),
    };
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        let follower = Follower {
            admin,
            class,
            key,
            tx,
        };
        follower.run(seen, backlog, current).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Lines not yet sent, then the live ones.
type Following = (Vec<String>, broadcast::Receiver<String>);

/// Feeds one SSE client. Events: unnamed (`message`) for a line of output, `notice` for what
/// happened to the stream (the process stopped, lines were skipped).
struct Follower {
    admin: Arc<Admin>,
    class: String,
    key: String,
    tx: mpsc::Sender<Event>,
}

impl Follower {
    /// `seen` only identifies the ring being followed (a Weak keeps no follower channel open);
    /// `backlog` is what the client gets first; `current` the ring's follower, if it runs.
    async fn run(
        self,
        mut seen: Weak<LogRing>,
        backlog: Vec<String>,
        mut current: Option<Following>,
    ) {
        let mut shutdown = self.admin.shutdown.clone();
        for line in backlog {
            if !self.line(line).await {
                return;
            }
        }
        loop {
            if let Some((backlog, mut rx)) = current.take() {
                for line in backlog {
                    if !self.line(line).await {
                        return;
                    }
                }
                loop {
                    tokio::select! {
                        line = rx.recv() => match line {
                            Ok(line) => if !self.line(line).await { return },
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                if !self.notice(format!("{n} lines skipped (reader too slow)")).await { return }
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        },
                        _ = self.tx.closed() => return,
                        _ = shutdown.wait() => return,
                    }
                }
                if !self
                    .notice("the process ended; waiting for the next start".into())
                    .await
                {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RESTART_POLL) => {}
                _ = self.tx.closed() => return,
                _ = shutdown.wait() => return,
            }
            if let Some(ring) = ring_of(&self.admin, &self.class, &self.key) {
                if !std::ptr::eq(Arc::as_ptr(&ring), seen.as_ptr()) {
                    seen = Arc::downgrade(&ring);
                    // A new process: everything in its ring is new to this client.
                    current = Some(ring.tail_and_follow(usize::MAX));
                }
            }
        }
    }

    async fn line(&self, line: String) -> bool {
        // A carriage return would end the SSE line early; the ring already strips trailing ones.
        let line = if line.contains('\r') {
            line.replace('\r', "")
        } else {
            line
        };
        self.tx.send(Event::default().data(line)).await.is_ok()
    }

    async fn notice(&self, text: String) -> bool {
        self.tx
            .send(Event::default().event("notice").data(text))
            .await
            .is_ok()
    }
}
