//! A container's output (and its image build's) into the instance's log ring and log file,
//! split into lines the same way as a process's output.

use crate::logfile::LogFile;
use crate::logs::{LineSplitter, LogRing};
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::path::Path;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Where an instance's lines go. A log file that cannot be written is given up on, and the
/// ring alone keeps the output: an instance never waits on its logs.
pub struct LogSink {
    ring: Arc<LogRing>,
    file: Option<LogFile>,
    batch: Vec<u8>,
}

impl LogSink {
    pub async fn open(path: &Path, ring: Arc<LogRing>) -> Self {
        if let Some(parent) = path.parent() {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        let file = match crate::logfile::open(path).await {
            Ok(file) => Some(LogFile::new(file, path.to_path_buf()).await),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open instance log file");
                None
            }
        };
        Self {
            ring,
            file,
            batch: Vec::new(),
        }
    }

    /// Keeps one line; it reaches the file at the next [`Self::flush`].
    pub fn keep(&mut self, line: String) {
        self.batch.extend_from_slice(line.as_bytes());
        self.batch.push(b'\n');
        self.ring.push(line);
    }

    pub async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match &mut self.file {
            Some(file) => file.write_batch(&mut self.batch).await,
            None => self.batch.clear(),
        }
    }
}

/// Follows a container's stdout and stderr until it stops. `tail`: `"all"` for a container
/// just made, `"0"` for an adopted one whose earlier output is in the file already.
pub fn follow(docker: Docker, container: String, tail: &str, sink: LogSink) -> JoinHandle<()> {
    let frames = docker.logs(&container, Some(following(tail)));
    pump(frames, container, sink)
}

/// Options of a log stream that follows stdout and stderr from `tail` on.
pub fn following(tail: &str) -> LogsOptions {
    LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        tail: tail.to_string(),
        ..Default::default()
    }
}

/// Copies a log stream of the Engine API (a container's, a Swarm service's) into `sink` until
/// it ends; `source` names it in valet's own debug log.
pub fn pump<S>(frames: S, source: String, mut sink: LogSink) -> JoinHandle<()>
where
    S: futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
{
    let container = source;
    tokio::spawn(async move {
        // The engine sends frames per stream; each keeps its own unfinished line.
        let (mut out, mut err) = (LineSplitter::new(), LineSplitter::new());
        let mut frames = std::pin::pin!(frames);
        while let Some(frame) = frames.next().await {
            match frame {
                Ok(LogOutput::StdErr { message }) => err.feed(&message, |l| sink.keep(l)),
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    out.feed(&message, |l| sink.keep(l))
                }
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => {
                    tracing::debug!(container, error = %e, "container log stream ended");
                    break;
                }
            }
            sink.flush().await;
        }
        out.finish(|l| sink.keep(l));
        err.finish(|l| sink.keep(l));
        sink.flush().await;
    })
}
