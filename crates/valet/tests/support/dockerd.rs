//! A Docker daemon of the test's own, so that stopping and restarting it cannot break other
//! tests: its own data and exec roots, its own socket, and its own bridge (no iptables rules,
//! no masquerading: its containers are reached on published loopback ports only).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub struct OwnDockerd {
    dir: TempDir,
    bridge: String,
    child: Option<Child>,
}

impl OwnDockerd {
    /// Starts one (needs root and dockerd). `None` (skipped) when it cannot, except under
    /// `CI=true`, where that fails the test.
    pub fn start() -> Option<Self> {
        match Self::try_start() {
            Ok(daemon) => Some(daemon),
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{why} (CI=true: the Docker daemon restart test must run)");
                }
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("valet-dockerd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // Interface names are at most 15 bytes; the pid keeps parallel runs apart.
        let id = std::process::id() % 100_000;
        let bridge = format!("valetbr{id}");
        let subnet = format!("10.{}.{}.1/24", 200 + id % 50, id % 250);
        for args in [
            vec!["link", "add", &bridge, "type", "bridge"],
            vec!["addr", "add", &subnet, "dev", &bridge],
            vec!["link", "set", &bridge, "up"],
        ] {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if !out.status.success() {
                let _ = Command::new("ip").args(["link", "del", &bridge]).status();
                return Err(format!(
                    "cannot make a bridge for a test dockerd: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let mut daemon = Self {
            dir,
            bridge,
            child: None,
        };
        daemon.run()?;
        Ok(daemon)
    }

    /// `unix://<socket>`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path("docker.sock").display())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts dockerd and waits until it answers.
    fn run(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("dockerd.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("docker.pid"))
            .arg("-H")
            .arg(self.host())
            .arg(format!("--bridge={}", self.bridge))
            .args(["--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("the test dockerd did not answer:\n{}", self.log()))
    }

    fn answers(&self) -> bool {
        Command::new("docker")
            .args(["-H", &self.host(), "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops dockerd (SIGTERM; its containers stop with it) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same roots and socket.
    pub fn start_again(&mut self) {
        self.run().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The docker CLI against this daemon: its stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(["-H", &self.host()])
            .args(args)
            .output()
            .expect("docker CLI");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for OwnDockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers and images live in this daemon's own data root, deleted below.
            for id in self.docker(&["ps", "-aq"]).lines() {
                self.docker(&["rm", "-f", id]);
            }
        }
        self.stop();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        // dockerd unmounts its overlays on exit; anything left is removed with the folder.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.path("exec"))
            .stderr(Stdio::null())
            .status();
    }
}
