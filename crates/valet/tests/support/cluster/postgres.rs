//! [`PrivatePostgres`]: a PostgreSQL server of the test's own, so a test can stop and restart
//! its store (or cut it off) without touching the machine's server or other tests.
//!
//! initdb and postgres run as the `postgres` system user (postgres refuses root), from the
//! newest `/usr/lib/postgresql/<version>/bin` (or `VALET_TEST_PG_BIN`). The bootstrap superuser
//! is `valet` with password `valet` (scram-sha-256 over TCP from anywhere; trust on the unix
//! socket, which the harness's own `psql` uses), and the database `valet` is made at the first
//! start. The postmaster is the child the harness holds, so it is stopped by pid.

use super::required;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const READY_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

pub struct PrivatePostgres {
    /// The data folder (`data/`), the unix socket, the password file and `postgres.log`.
    dir: TempDir,
    bin: PathBuf,
    addr: SocketAddr,
    /// The network namespace it runs in, or `None` for the test process's own.
    netns: Option<String>,
    user: nix::unistd::User,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// One on a free loopback port. `None` (skipped) without root or PostgreSQL's binaries;
    /// under `CI=true` that fails the test.
    pub fn loopback() -> Option<Self> {
        required(Self::try_new(super::super::free_addr(), None))
    }

    /// initdb, then start on `addr`, in the network namespace `netns` when given.
    pub fn try_new(addr: SocketAddr, netns: Option<&str>) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("a private PostgreSQL is started as root (for the postgres user)".into());
        }
        let bin = bin_dir()?;
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or("there is no `postgres` system user")?;
        let dir = tempfile::Builder::new()
            .prefix("valet-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        let pwfile = dir.path().join("password");
        std::fs::write(&pwfile, "valet\n").map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&pwfile, Some(user.uid.as_raw()), None)
            .map_err(|e| e.to_string())?;
        let out = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "valet",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["-E", "UTF8", "--no-locale", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path())
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // initdb lets TCP in from loopback only; the lab's nodes come from 10.X.0.0/24.
        let hba = dir.path().join("data/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).map_err(|e| e.to_string())?;
        rules.push_str("host all all 0.0.0.0/0 scram-sha-256\n");
        std::fs::write(&hba, rules).map_err(|e| e.to_string())?;
        let mut postgres = Self {
            dir,
            bin,
            addr,
            netns: netns.map(str::to_string),
            user,
            child: None,
        };
        postgres.try_start()?;
        postgres.psql_on("postgres", "CREATE DATABASE valet")?;
        Ok(postgres)
    }

    /// `postgres://valet:valet@ADDR:PORT/valet`.
    pub fn url(&self) -> String {
        format!("postgres://valet:valet@{}/valet", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fast shutdown (SIGINT: clients are disconnected, data is kept), waited for; SIGKILL if
    /// it takes longer than 30 s. Nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same data, address and namespace (after [`Self::stop`]).
    pub fn start(&mut self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn try_start(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.path("postgres.log"))
            .map_err(|e| e.to_string())?;
        let postgres = self.bin.join("postgres");
        let mut command = match &self.netns {
            // nsenter enters the namespace as root, then drops to the postgres user and execs.
            Some(netns) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{netns}"))
                    .args(["-S", &self.user.uid.to_string()])
                    .args(["-G", &self.user.gid.to_string()])
                    .arg("--")
                    .arg(postgres);
                command
            }
            None => {
                let mut command = Command::new(postgres);
                command
                    .uid(self.user.uid.as_raw())
                    .gid(self.user.gid.as_raw());
                command
            }
        };
        command
            .arg("-D")
            .arg(self.path("data"))
            .arg("-k")
            .arg(self.dir.path())
            .args(["-p", &self.addr.port().to_string()])
            .args(["-c", &format!("listen_addresses={}", self.addr.ip())])
            // A test store: small, and no waiting on the disk (a fast shutdown still
            // checkpoints, so a stop and start keeps everything).
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=200"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = command.spawn().map_err(|e| format!("postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("postgres exited ({status}):\n{}", self.log()));
            }
            if self.ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        Err(format!(
            "postgres did not accept connections within {READY_DEADLINE:?}:\n{}",
            self.log()
        ))
    }

    /// Runs SQL in the `valet` database over the unix socket; its rows, unaligned (`-tA`).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on("valet", sql).unwrap_or_else(|e| panic!("{e}"))
    }

    fn psql_on(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.addr.port().to_string()])
            .args([
                "-U",
                "valet",
                "-d",
                database,
                "-XtAq",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Refuses new connections from `ip` (a `reject` rule first in pg_hba.conf), or lets them
    /// in again; connections already open stay (terminate them with [`Self::psql`]). The rule
    /// holds once the server has reloaded its configuration, which this waits for.
    pub fn refuse(&self, ip: IpAddr, refuse: bool) {
        let hba = self.path("data/pg_hba.conf");
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let rule = format!("host all all {ip}/{bits} reject\n");
        let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        let rules = rules.replace(&rule, "");
        let rules = if refuse { rule + &rules } else { rules };
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        self.psql("SELECT pg_reload_conf()");
        // The postmaster rereads the file when it handles the signal, a moment later.
        std::thread::sleep(Duration::from_millis(200));
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("postgres.log")).unwrap_or_default()
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.addr.port().to_string(), "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- postgres log ---\n{}", self.log());
        }
        // The TempDir removes the data (owned by postgres; removed as root).
    }
}

/// `VALET_TEST_PG_BIN`, or the newest `/usr/lib/postgresql/<version>/bin` with a `postgres`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("VALET_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .map_err(|e| format!("no PostgreSQL server binaries in {}: {e}", root.display()))?
        .flatten()
        .filter_map(|entry| {
            let version: f64 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    newest
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no PostgreSQL server binaries in {}", root.display()))
}
