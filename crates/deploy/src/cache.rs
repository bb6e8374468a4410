//! Installed requirement sets, shared between apps: one folder per hash of (runtime,
//! interpreter version, sorted requirements). A set is built once under its own lock and
//! marked complete last, so a crash mid-install leaves a folder that the next deploy
//! rebuilds, never one that is used half-made.

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

/// Runs an installer; on failure, its last output lines become the error.
pub async fn run_installer(
    tool: &'static str,
    command: &mut tokio::process::Command,
) -> Result<(), DeployError> {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(600);
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(LIMIT, command.output())
        .await
        .map_err(|_| DeployError::Install {
            tool,
            log: format!("{tool} did not finish within {} s", LIMIT.as_secs()),
        })?
        .map_err(|e| DeployError::Install {
            tool,
            log: format!("cannot run {tool}: {e}"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
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
