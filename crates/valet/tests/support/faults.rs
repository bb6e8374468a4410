//! Helpers for the fault tests: counting a process's open files, killing valet with SIGKILL and
//! starting it again on the same folder, and bounded load from the test.

use super::{log_path, wait_listening, Listening, Valet, VALET};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A misbehaving upstream (see the file's doc comment for its paths).
pub const FAULTY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/faulty.py");

/// How many file descriptors `pid` has open now.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// How many TCP connections `pid` has open now (socket fds).
pub fn open_sockets(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

impl Valet {
    /// Kills valet with SIGKILL (no cleanup of any kind) and reaps it.
    pub fn sigkill(&mut self) {
        let mut child = self.child.take().expect("valet is running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
    }

    /// Starts `valet up` again on the same folder, config and ports, after [`Self::sigkill`] or
    /// [`Self::terminate`]; its output is appended to the same log.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "valet is still running");
        let log = OpenOptions::new()
            .append(true)
            .open(log_path(&self.dir))
            .expect("log file");
        // The listening port may linger for a moment after a kill: retry a few times.
        for _ in 0..20 {
            let mut child = Command::new(VALET)
                .arg("up")
                .arg(self.dir.path().join("valet.toml"))
                .current_dir(self.dir.path())
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log.try_clone().expect("log"))
                .spawn()
                .expect("spawn valet");
            match wait_listening(&mut child, self.addr).await {
                Listening::Yes => {
                    self.child = Some(child);
                    return;
                }
                Listening::Exited => tokio::time::sleep(Duration::from_millis(250)).await,
                Listening::TooSlow => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        panic!("valet did not start again\n{}", self.log());
    }
}
