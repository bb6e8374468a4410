//! Instances' log files on disk: where they are, their rotation, and reading their tail.
//! Everything that names, reads or removes a log file goes through here, so the layout
//! (`<data_dir>/logs/<class>/<slug>.log`, rotated to `<slug>.log.1`) is known in one place.
//!
//! A file is capped in size: past [`MAX_LOG_BYTES`] it is moved to its [`rotated`] name
//! (replacing the previous one) and a new file starts. Both drivers write through it (the
//! process driver once per output stream, the Docker driver once).

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use valet_core::InstanceId;

/// Largest size of an instance's log file; past it the file becomes `<name>.log.1` (replacing
/// the previous one) and a new file starts. So a key's logs never take more than about twice
/// this on disk, however long it runs and however much it prints.
pub const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// The folder of every class's logs.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// The folder of one class's logs (an instance's file, an image's build output).
pub fn class_dir(data_dir: &Path, class: &str) -> PathBuf {
    root(data_dir).join(class)
}

/// The log file of an instance, in its class's folder.
pub fn path(class_dir: &Path, id: &InstanceId) -> PathBuf {
    class_dir.join(format!("{}.log", id.slug()))
}

/// The output of building a class's image when no instance's start asked for it.
pub fn build_path(class_dir: &Path) -> PathBuf {
    class_dir.join("build.log")
}

/// Where a full log file is moved to make room.
pub fn rotated(path: &Path) -> PathBuf {
    path.with_extension("log.1")
}

/// Removes a log file and its rotated part. Files already gone are no error; the first other
/// failure is returned, after both were tried.
pub fn remove(path: &Path) -> std::io::Result<()> {
    let mut failed = Ok(());
    for file in [rotated(path), path.to_path_buf()] {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound && failed.is_ok() => failed = Err(e),
            _ => {}
        }
    }
    failed
}

/// The last `lines` lines of a log file, read from its end: a log may hold megabytes, and
/// only its tail is wanted. At most about `max_bytes` are read (in whole blocks from the
/// end); lines that do not fit in that are left out.
pub fn tail(path: &Path, lines: usize, max_bytes: u64) -> std::io::Result<Vec<String>> {
    const BLOCK: u64 = 8 * 1024;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut start = len;
    let mut tail: Vec<u8> = Vec::new();
    // Back a block at a time until the tail holds `lines` whole lines (a line end before
    // them), the file's start, or the byte budget.
    while start > 0 && len - start < max_bytes {
        // Whole lines after the first line end: the text before it may be part of a line.
        let ends = tail.iter().filter(|&&b| b == b'\n').count();
        if ends - usize::from(tail.last() == Some(&b'\n')) >= lines {
            break;
        }
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        start = from;
    }
    let text = String::from_utf8_lossy(&tail);
    let mut all: Vec<&str> = text.lines().collect();
    // Unless the file's start was reached, the first line is only the end of a longer one.
    if start > 0 && !all.is_empty() {
        all.remove(0);
    }
    Ok(all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect())
}

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
            if let Err(e) = tokio::fs::rename(&self.path, rotated(&self.path)).await {
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
        let rotated = rotated(&path);
        assert_eq!(rotated, dir.path().join("k.log.1"));
        assert!(size(&rotated) > MAX_LOG_BYTES, "the full file moved to .1");
        assert!(size(&path) <= MAX_LOG_BYTES, "a new file started");
        assert!(size(&path) + size(&rotated) <= 2 * MAX_LOG_BYTES + 2 * 1024 * 1024);
        remove(&path).unwrap();
        assert!(!path.exists() && !rotated.exists());
        remove(&path).unwrap();
    }

    #[test]
    fn an_instance_log_is_named_by_its_class_and_slug() {
        let id = InstanceId::new("web", "main");
        let dir = class_dir(Path::new("/d"), "web");
        assert_eq!(dir, Path::new("/d/logs/web"));
        assert_eq!(path(&dir, &id), dir.join(format!("{}.log", id.slug())));
        assert_eq!(build_path(&dir), Path::new("/d/logs/web/build.log"));
    }

    /// The budget the tests read with: 16 KiB a line.
    fn tail_of(text: &str, lines: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, text).unwrap();
        tail(&path, lines, (lines as u64 + 1) * 16 * 1024).unwrap()
    }

    #[test]
    fn the_last_lines_of_a_large_log_read_from_its_end() {
        // 200,000 numbered lines (about 2 MB): many blocks back from the end.
        let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let expected: Vec<String> = (199_970..200_000).map(|i| format!("line {i}")).collect();
        assert_eq!(tail_of(&text, 30), expected);
        // Without a final line end the last line still counts.
        assert_eq!(tail_of(text.trim_end(), 30), expected);
    }

    #[test]
    fn short_logs_empty_logs_and_lines_across_blocks() {
        assert_eq!(tail_of("a\nb\n", 30), ["a", "b"]);
        assert_eq!(tail_of("", 30), Vec::<String>::new());
        assert_eq!(tail_of("a\nb\nc", 2), ["b", "c"]);
        // A line longer than a block, ending the file.
        let long = "x".repeat(20_000);
        assert_eq!(
            tail_of(&format!("a\n{long}\n"), 1),
            std::slice::from_ref(&long)
        );
        assert_eq!(tail_of(&format!("a\n{long}\n"), 2), ["a".to_string(), long]);
    }

    #[test]
    fn a_tail_past_the_budget_drops_the_cut_line() {
        // 10 lines of 1,000 bytes: a 4 KiB budget reads one 8 KiB block, which starts inside
        // line 1; that part is dropped.
        let text: String = (0..10)
            .map(|i| format!("{i}{}\n", "x".repeat(998)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, text).unwrap();
        let got = tail(&path, 100, 4 * 1024).unwrap();
        assert_eq!(got.len(), 8, "8 KiB hold 8 whole lines after a cut one");
        assert!(got[0].starts_with('2') && got[7].starts_with('9'));
    }

    #[test]
    fn a_missing_log_is_an_error_and_no_lines() {
        let dir = tempfile::tempdir().unwrap();
        assert!(tail(&dir.path().join("none.log"), 5, 1024).is_err());
    }
}
