//! Installed requirement sets, shared between apps: one folder per hash of (runtime,
//! interpreter version, sorted requirements). A set is built once under its own lock and
//! marked complete last, so a crash mid-install leaves a folder that the next deploy
//! rebuilds, never one that is used half-made.

use crate::progress::Progress;
use crate::DeployError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const COMPLETE: &str = ".valet-complete";

/// The cache of installed requirement sets under `<data_dir>/deploy/cache`.
pub struct Cache {
    root: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The cache key of a requirement set: order and duplicates do not matter.
pub fn key(runtime: &str, interpreter: &str, requirements: &[String]) -> String {
    let mut sorted: Vec<&str> = requirements.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hash = Sha256::new();
    hash.update(runtime.as_bytes());
    hash.update(b"\0");
    hash.update(interpreter.as_bytes());
    for r in sorted {
        hash.update(b"\0");
        hash.update(r.as_bytes());
    }
    hex::encode(&hash.finalize()[..16])
}

impl Cache {
    /// A cache rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The folder every set lives below.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of `key`, built by `build` when it is not there yet. Returns the folder and
    /// whether it was reused.
    pub async fn ensure<F, Fut>(
        &self,
        runtime: &str,
        key: &str,
        build: F,
    ) -> Result<(PathBuf, bool), DeployError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), DeployError>>,
    {
        let dir = self.root.join(runtime).join(key);
        if dir.join(COMPLETE).exists() {
            return Ok((dir, true));
        }
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(format!("{runtime}/{key}")).or_default().clone()
        };
        let _held = lock.lock().await;
        if dir.join(COMPLETE).exists() {
            return Ok((dir, true));
        }
        remove_dir(&dir).await;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| DeployError::io(format!("cannot make {}", dir.display()), e))?;
        if let Err(e) = build(dir.clone()).await {
            remove_dir(&dir).await;
            return Err(e);
        }
        tokio::fs::write(dir.join(COMPLETE), b"")
            .await
            .map_err(|e| DeployError::io("cannot mark a cache entry complete", e))?;
        Ok((dir, false))
    }
}

async fn remove_dir(dir: &Path) {
    let _ = tokio::fs::remove_dir_all(dir).await;
}

/// Runs an installer, reporting its output line by line; on failure its last lines (stderr
/// first: that is where pip and npm say what went wrong) become the error.
pub async fn run_installer(
    tool: &'static str,
    command: &mut tokio::process::Command,
    progress: &Progress,
) -> Result<(), DeployError> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(600);
    let cannot = |e: std::io::Error| DeployError::Install {
        tool,
        log: format!("cannot run {tool}: {e}"),
    };
    let mut child = command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(cannot)?;
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let progress = progress.clone();
        async move {
            let mut kept = Vec::new();
            let Some(pipe) = pipe else { return kept };
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                progress.line(line.clone());
                kept.push(line);
                if kept.len() > 200 {
                    kept.remove(0);
                }
            }
            kept
        }
    };
    let stdout = child.stdout.take().map(|p| Box::new(p) as Box<_>);
    let stderr = child.stderr.take().map(|p| Box::new(p) as Box<_>);
    let run = async {
        let (out, err, status) = tokio::join!(read(stdout), read(stderr), child.wait());
        status.map(|s| (out, err, s))
    };
    let (out, err, status) = tokio::time::timeout(LIMIT, run)
        .await
        .map_err(|_| DeployError::Install {
            tool,
            log: format!("{tool} did not finish within {} s", LIMIT.as_secs()),
        })?
        .map_err(cannot)?;
    if status.success() {
        return Ok(());
    }
    let lines = if err.is_empty() { out } else { err };
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    Err(DeployError::Install { tool, log: tail })
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_ignores_order_and_duplicates() {
        let a = super::key("node", "v20", &["express".into(), "cors".into()]);
        let b = super::key(
            "node",
            "v20",
            &["cors".into(), "express".into(), "cors".into()],
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            super::key("node", "v22", &["cors".into(), "express".into()])
        );
    }
}
