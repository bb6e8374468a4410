//! Copies an instance's stdout and stderr into its log ring and its log file.

use crate::logfile::LogFile;
use crate::logs::{LineSplitter, LogRing};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Opens the log file for one stream. Each stream gets its own append-mode handle: the kernel
/// then places every write at the end of the file, so lines from stdout and stderr interleave
/// whole instead of overwriting each other.
pub(super) async fn open_log(path: &Path) -> std::io::Result<File> {
    crate::logfile::open(path).await
}

/// Starts a task that reads `stream` to its end. It ends when every process holding the
/// pipe's write end (the leader and its descendants) has exited.
pub(super) fn pump(
    stream: impl AsyncRead + Unpin + Send + 'static,
    file: File,
    path: PathBuf,
    ring: Arc<LogRing>,
) -> JoinHandle<()> {
    tokio::spawn(copy_lines(stream, file, path, ring))
}

async fn copy_lines(
    mut stream: impl AsyncRead + Unpin,
    file: File,
    path: PathBuf,
    ring: Arc<LogRing>,
) {
    let mut log = LogFile::new(file, path).await;
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
        log.write_batch(&mut batch).await;
    }
    splitter.finish(|line| keep(line, &ring, &mut batch));
    log.write_batch(&mut batch).await;
}

fn keep(line: String, ring: &LogRing, batch: &mut Vec<u8>) {
    batch.extend_from_slice(line.as_bytes());
    batch.push(b'\n');
    ring.push(line);
}
