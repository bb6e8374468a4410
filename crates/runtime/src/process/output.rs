//! Copies an instance's stdout and stderr into its log ring and its log file.

use crate::logs::{LineSplitter, LogRing};
use std::path::Path;
use std::sync::Arc;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Opens the log file for one stream. Each stream gets its own append-mode handle: the kernel
/// then places every write at the end of the file, so lines from stdout and stderr interleave
/// whole instead of overwriting each other.
pub(super) async fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

/// Starts a task that reads `stream` to its end. It ends when every process holding the
/// pipe's write end (the leader and its descendants) has exited.
pub(super) fn pump(
    stream: impl AsyncRead + Unpin + Send + 'static,
    file: File,
    ring: Arc<LogRing>,
) -> JoinHandle<()> {
    tokio::spawn(copy_lines(stream, file, ring))
}

async fn copy_lines(mut stream: impl AsyncRead + Unpin, file: File, ring: Arc<LogRing>) {
    let mut file = Some(file);
    let mut splitter = LineSplitter::new();
    let mut chunk = vec![0u8; 8 * 1024];
    let mut batch = Vec::new();
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read instance output");
                break;
            }
        };
        splitter.feed(&chunk[..read], |line| keep(line, &ring, &mut batch));
        // Write what this read completed at once: a line reaches the file as soon as its
        // newline arrives, and a burst of output costs one write rather than one per line.
        write_batch(&mut file, &mut batch).await;
    }
    splitter.finish(|line| keep(line, &ring, &mut batch));
    write_batch(&mut file, &mut batch).await;
}

fn keep(line: String, ring: &LogRing, batch: &mut Vec<u8>) {
    batch.extend_from_slice(line.as_bytes());
    batch.push(b'\n');
    ring.push(line);
}

/// Appends `batch` to the file. After a failed write (disk full, file removed) the file is
/// given up on and the ring alone keeps the output: the instance must not block on its logs.
async fn write_batch(file: &mut Option<File>, batch: &mut Vec<u8>) {
    if batch.is_empty() {
        return;
    }
    if let Some(f) = file {
        let written = async {
            f.write_all(batch).await?;
            f.flush().await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, "cannot write instance log file; keeping output in memory only");
            *file = None;
        }
    }
    batch.clear();
}
