//! An instance's log file on disk, capped in size: past [`MAX_LOG_BYTES`] it is moved to
//! `<name>.log.1` (replacing the previous one) and a new file starts. Both drivers write
//! through it (the process driver once per output stream, the Docker driver once).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

/// Largest size of an instance's log file; past it the file becomes `<name>.log.1` (replacing
/// the previous one) and a new file starts. So a key's logs never take more than about twice
/// this on disk, however long it runs and however much it prints.
pub const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// Opens (creating) a log file for appending. A new file is readable by valet alone: an
/// instance's output may hold what its app printed of its secrets, and with the process driver
/// other projects run as other users on the same machine.
pub(crate) async fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .await
}

/// One stream's handle on the instance's log file. stdout and stderr each append through
/// their own handle; whichever passes [`MAX_LOG_BYTES`] first rotates the file, and the other
/// follows to the new file when it next passes the limit.
pub(crate) struct LogFile {
    file: Option<File>,
    path: PathBuf,
    /// Bytes in the file when opened plus what this handle wrote since.
    size: u64,
}

impl LogFile {
    pub(crate) async fn new(file: File, path: PathBuf) -> Self {
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        Self {
            file: Some(file),
            path,
            size,
        }
    }

    /// Appends `batch`. After a failed write (disk full, file removed) the file is given up on
    /// and the ring alone keeps the output: the instance must not block on its logs.
    pub(crate) async fn write_batch(&mut self, batch: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        if let Some(f) = &mut self.file {
            let written = async {
                f.write_all(batch).await?;
                f.flush().await
            };
            match written.await {
                Ok(()) => self.size += batch.len() as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write instance log file; keeping output in memory only");
                    self.file = None;
                }
            }
        }
        batch.clear();
        if self.size > MAX_LOG_BYTES && self.file.is_some() {
            self.rotate().await;
        }
    }

    /// Moves the file to `.1` (unless the other stream already did) and reopens the path.
    async fn rotate(&mut self) {
        let ours = match &self.file {
            Some(f) => f.metadata().await.ok().map(|m| m.ino()),
            None => None,
        };
        let current = tokio::fs::metadata(&self.path).await.ok().map(|m| m.ino());
        if ours.is_some() && ours == current {
            if let Err(e) = tokio::fs::rename(&self.path, self.path.with_extension("log.1")).await {
                tracing::warn!(error = %e, "cannot rotate instance log file");
            }
        }
        match open(&self.path).await {
            Ok(file) => {
                self.size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                self.file = Some(file);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reopen instance log file; keeping output in memory only");
                self.file = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_new_log_file_is_readable_by_its_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.log");
        drop(open(&path).await.unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    #[tokio::test]
    async fn a_log_past_the_limit_is_rotated_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.log");
        let mut log = LogFile::new(open(&path).await.unwrap(), path.clone()).await;
        let line = vec![b'x'; 1024 * 1024 - 1];
        for _ in 0..20 {
            let mut batch = line.clone();
            batch.push(b'\n');
            log.write_batch(&mut batch).await;
        }
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let rotated = path.with_extension("log.1");
        assert!(size(&rotated) > MAX_LOG_BYTES, "the full file moved to .1");
        assert!(size(&path) <= MAX_LOG_BYTES, "a new file started");
        assert!(size(&path) + size(&rotated) <= 2 * MAX_LOG_BYTES + 2 * 1024 * 1024);
    }
}
