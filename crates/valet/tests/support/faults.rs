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

/// A small tmpfs mounted for one test (needs root), unmounted on drop. Declare it before the
/// `Valet` that uses it, so valet stops (and closes its files) first.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`"1m"`). `None` (skipped) when mounting is not allowed, except
    /// under `CI=true`, where that fails the test.
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("valet-small-disk-")
            .tempdir()
            .expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { dir }),
            other => {
                let why = format!("cannot mount a tmpfs (root needed): {other:?}");
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{why} (CI=true: the full-disk test must run)");
                }
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the disk is full; returns its size.
    pub fn fill(&self) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.path().join("filler")).expect("filler");
        let block = vec![0u8; 4096];
        let mut written = 0;
        while file.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        let _ = file.sync_all();
        written
    }

    /// Removes the filler file.
    pub fn free(&self) {
        std::fs::remove_file(self.dir.path().join("filler")).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
