//! Looking at processes: backend starts, liveness of a pid, memory of valet, bounded waits.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// One line of the STARTS_FILE: a backend process and the key it was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub pid: u32,
    pub key: String,
}

pub(crate) fn read_starts(path: &Path) -> Vec<Start> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (pid, key) = line.split_once(' ')?;
            Some(Start {
                pid: pid.parse().ok()?,
                key: key.to_string(),
            })
        })
        .collect()
}

/// Whether `pid` is a running process. A zombie (exited, not yet reaped by valet) is not.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => false,
    }
}

/// Resident memory of a process, in bytes, from /proc/<pid>/status.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

/// Kills a leftover test backend; checks the command line first so a recycled pid is never hit.
pub(crate) fn kill_backend(pid: u32) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if pid_alive(pid) && String::from_utf8_lossy(&cmdline).contains("backend.py") {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
