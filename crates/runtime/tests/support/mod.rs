//! The shared setup of the process driver's tests: a scratch valet and ways to watch processes.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use valet_core::InstanceId;
use valet_runtime::{Driver, DriverError, ExitStatus, InstanceSpec, ProcessDriver, Running};

/// A scratch valet: a data dir with the driver's state folder and one instance's folders.
pub struct Sandbox {
    root: PathBuf,
    pub driver: ProcessDriver,
    /// Deletes `root` when the sandbox owns it.
    _temp: Option<TempDir>,
}

impl Sandbox {
    pub fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let mut sandbox = Self::at(temp.path().to_path_buf());
        sandbox._temp = Some(temp);
        sandbox
    }

    /// A sandbox in a folder someone else owns (another process's sandbox).
    pub fn at(root: PathBuf) -> Self {
        let driver = ProcessDriver::new(root.join("run"));
        Self {
            root,
            driver,
            _temp: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn spec(&self, command: &[&str]) -> InstanceSpec {
        let root = self.root();
        InstanceSpec {
            id: InstanceId::new("Backend", "key-1"),
            command: command.iter().map(|s| s.to_string()).collect(),
            image: None,
            ports: vec![("http".into(), 8080), ("admin".into(), 9090)],
            default_port: "http".into(),
            env: vec![("GREETING".into(), "hello there".into())],
            work_dir: root.to_path_buf(),
            data_dir: root.join("instances/backend/data"),
            log_path: root.join("logs/backend.log"),
            user: None,
            log_lines: 100,
        }
    }

    pub async fn start(&self, command: &[&str]) -> Box<dyn Running> {
        self.driver.start(&self.spec(command)).await.unwrap()
    }

    pub async fn start_err(&self, spec: InstanceSpec) -> DriverError {
        match self.driver.start(&spec).await {
            Ok(_) => panic!("start of {:?} succeeded", spec.command),
            Err(e) => e,
        }
    }

    pub fn log_file(&self) -> String {
        std::fs::read_to_string(self.root().join("logs/backend.log")).unwrap()
    }

    pub fn group_records(&self) -> usize {
        std::fs::read_dir(self.root().join("run/groups")).map_or(0, |d| d.count())
    }
}

pub fn code(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
    }
}

pub fn sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

/// Polls `probe` until it yields, failing the test at `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the instance to print a line of `n` pids and returns them.
pub async fn pids(running: &dyn Running, n: usize) -> Vec<i32> {
    let logs = running.logs();
    poll(Duration::from_secs(5), || {
        let line = logs.tail(1).pop();
        async move {
            let pids: Vec<i32> = line?
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            (pids.len() == n).then_some(pids)
        }
    })
    .await
}

/// Waits until `pid` is gone. A zombie counts as gone: it runs nothing, and who reaps an
/// orphan depends on this machine's init.
pub async fn wait_dead(pid: i32) {
    poll(Duration::from_secs(5), || async move {
        (!alive(pid)).then_some(())
    })
    .await
}

pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        Ok(text) => !text[text.rfind(')').unwrap()..].starts_with(") Z"),
        Err(_) => false,
    }
}

/// Kills a process a test made when an assertion fails before the test could.
pub struct KillOnDrop(pub i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        // Only on failure: after a pass the pid is dead and may already be someone else's.
        if std::thread::panicking() {
            let _ = kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}
