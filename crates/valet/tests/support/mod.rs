//! Test support: start the real `valet` binary on a config written into a temporary folder, talk
//! to it over real sockets, and look at the real backend processes it starts.
//!
//! ```ignore
//! let valet = Valet::with_config(toml).assets(&[("public/index.html", "hi")]).start().await;
//! let echo = valet.echo("/api/x").await;
//! ```
//!
//! Every test file compiles this module on its own and uses a different part of it.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod docker;
pub mod dockerd;
pub mod faults;
pub mod http;
pub mod kube;
pub mod procs;
pub mod swarm;
pub mod wire;

pub use self::http::{assert_crash_loop_answer, client, echo_of, json_of, raw, RawResponse};
pub use self::procs::{eventually, pid_alive, Start};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use toml_edit::{value, Array, DocumentMut, InlineTable, Item, Table};

/// The test backend every class without a `command` runs.
pub const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/backend.py");
pub const VALET: &str = env!("CARGO_BIN_EXE_valet");
/// How long valet may take to listen, and to exit after SIGTERM before the guard kills it.
const START_DEADLINE: Duration = Duration::from_secs(20);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `valet up`. Dropping it stops valet (SIGTERM, then SIGKILL) and any backend that
/// outlived it, so no test leaks processes.
pub struct Valet {
    child: Option<Child>,
    dir: TempDir,
    addr: SocketAddr,
    /// A client that reaches this valet: no proxy, and a pool that lets bursts open as many
    /// connections as they need.
    pub client: reqwest::Client,
}

/// One "instance failed" warning from valet's log; see [`Valet::failures`].
#[derive(Debug, Clone)]
pub struct Failure {
    /// `Class/key`.
    pub instance: String,
    /// Whether valet restarts it right away (someone still wants it).
    pub restart: bool,
    /// The whole line: message, exit status and `log_tail`, the instance's last output.
    pub line: String,
}

/// A config waiting to be started; see [`Valet::with_config`].
pub struct ValetBuilder {
    toml: String,
    files: Vec<(PathBuf, Vec<u8>)>,
    env: Vec<(String, String)>,
    /// A command `valet up` runs under, such as `nsenter --net=/run/netns/NAME`; empty: none.
    wrapper: Vec<String>,
    /// The public listener's address; `None`: a free loopback port.
    listen: Option<SocketAddr>,
}

impl Valet {
    /// A valet for this config. The builder fills in what every test needs: free ports for
    /// `listen` and `admin_listen`, the test backend as the command of any class without one,
    /// and `STARTS_FILE` in every class's env.
    pub fn with_config(toml: &str) -> ValetBuilder {
        ValetBuilder {
            toml: toml.to_string(),
            files: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
            listen: None,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The folder holding valet.toml, its data_dir, the starts file and the captured output.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The valet process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("valet is running").id()
    }

    /// Every backend start so far, in order, from the STARTS_FILE the backends append to.
    pub fn starts(&self) -> Vec<Start> {
        procs::read_starts(&self.dir.path().join("starts"))
    }

    /// Everything valet printed so far, for failure messages.
    pub fn log(&self) -> String {
        read(&log_path(&self.dir))
    }

    /// valet's "instance failed" warnings so far, in order (crashes, failed starts).
    pub fn failures(&self) -> Vec<Failure> {
        self.log()
            .lines()
            .filter(|line| line.contains("instance failed"))
            .map(|line| Failure {
                instance: field(line, "instance").unwrap_or_default().to_string(),
                restart: field(line, "restart") == Some("true"),
                line: line.to_string(),
            })
            .collect()
    }

    /// GET `path`, panicking with valet's log if the request itself fails.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        match self.client.get(self.url(path)).send().await {
            Ok(response) => response,
            Err(e) => panic!("GET {path} failed: {e}\n--- valet log ---\n{}", self.log()),
        }
    }

    /// GET `path`, expect 200 and the backend's echo JSON.
    pub async fn echo(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        echo_of(response, &self.log()).await
    }

    /// Sends SIGTERM and waits (bounded) for valet to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("valet is running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let status = wait_with_deadline(child, STOP_DEADLINE)
            .unwrap_or_else(|| panic!("valet did not exit after SIGTERM\n{}", self.log()));
        self.child = None;
        status
    }

    /// SIGKILL, then waits until its data_dir lock is free, so that another `valet up` on the
    /// folder may start: the killed process's main thread shows as a zombie (and `pid_alive`
    /// says no) before its other threads have exited and closed the lock's file.
    pub async fn kill9(&self) {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        let lock = self.dir().join(".valet").join("lock");
        procs::eventually(
            Duration::from_secs(10),
            "the killed valet's lock to be free",
            || async {
                let file = File::open(&lock).ok()?;
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
                    .ok()
                    .map(drop)
            },
        )
        .await
    }

    /// Starts another `valet up` on this valet's folder and valet.toml as they are now (after
    /// this one was killed, or its config changed), with `env`, its output to the file `log`
    /// in the folder; the caller stops it.
    pub fn up_again(&self, log: &str, env: &[(&str, &str)]) -> (Child, PathBuf) {
        let path = self.dir().join(log);
        File::create(&path).expect("create the log file");
        let child = Command::new(VALET)
            .arg("up")
            .arg(self.dir().join("valet.toml"))
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(append(&path))
            .stderr(append(&path))
            .spawn()
            .expect("spawn valet up");
        (child, path)
    }

    /// Runs another valet command (`check`, a second `up`) on a config file, to completion.
    pub fn run(args: &[&str], within: Duration) -> Output {
        let out = tempfile::NamedTempFile::new().expect("temp file");
        let mut child = Command::new(VALET)
            .args(args)
            .stdin(Stdio::null())
            // Both in append mode: two plain handles keep offsets of their own, and the
            // later writer would overwrite what the other wrote first.
            .stdout(append(out.path()))
            .stderr(append(out.path()))
            .spawn()
            .expect("spawn valet");
        let status = match wait_with_deadline(&mut child, within) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "valet {args:?} still ran after {within:?}: {}",
                    read(out.path())
                );
            }
        };
        Output {
            status,
            stdout: read(out.path()).into_bytes(),
            stderr: Vec::new(),
        }
    }
}

impl ValetBuilder {
    /// Files written next to valet.toml before valet starts: `("public/index.html", "...")`.
    pub fn assets(mut self, files: &[(&str, &str)]) -> Self {
        for (path, content) in files {
            self.files
                .push((PathBuf::from(path), content.as_bytes().to_vec()));
        }
        self
    }

    /// Starts valet and waits until its port accepts; panics with its output if it cannot.
    /// A variable in valet's own environment (not the test process's, which other tests
    /// share).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs `valet up` under a command that execs it (so the pid is valet's), such as
    /// `nsenter --net=/run/netns/NAME`.
    pub fn wrapper(mut self, command: &[&str]) -> Self {
        self.wrapper = command.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The public listener's address instead of a free loopback port (waited on from here).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    pub async fn start(self) -> Valet {
        match self.try_start().await {
            Ok(valet) => valet,
            Err(log) => panic!("valet did not start:\n{log}"),
        }
    }

    /// Like [`Self::start`], but an early exit is returned as valet's output instead of a panic.
    pub async fn try_start(self) -> Result<Valet, String> {
        let dir = tempfile::Builder::new()
            .prefix("valet-it-")
            .tempdir()
            .expect("tempdir");
        // Run as root, `valet up` refuses a data_dir that deployed projects' users cannot pass
        // through to (a tempdir may be 0700, under a umask of 077).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("open the tempdir to other users");
        for (path, content) in &self.files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).expect("asset folder");
            std::fs::write(path, content).expect("asset file");
        }
        // A port picked by binding :0 can be taken by someone else before valet binds it:
        // that shows as an early exit, and a fresh port is tried.
        let mut last_log = String::new();
        for _ in 0..3 {
            let addr = self.listen.unwrap_or_else(free_addr);
            let toml = complete_config(&self.toml, addr, dir.path());
            std::fs::write(dir.path().join("valet.toml"), toml).expect("write config");
            let log = File::create(log_path(&dir)).expect("log file");
            let mut child = spawn_up(dir.path(), &self.env, &self.wrapper, log);
            match wait_listening(&mut child, addr).await {
                Listening::Yes => {
                    return Ok(Valet {
                        child: Some(child),
                        dir,
                        addr,
                        client: client(),
                    })
                }
                Listening::Exited => {}
                Listening::TooSlow => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "no listener on {addr} within {START_DEADLINE:?}\n{}",
                        read(&log_path(&dir))
                    ));
                }
            }
            last_log = read(&log_path(&dir));
            if !last_log.contains("cannot listen") {
                return Err(last_log);
            }
        }
        Err(last_log)
    }
}

/// `valet up` on the valet.toml in `dir`, its output into `log`.
fn spawn_up(dir: &Path, env: &[(String, String)], wrapper: &[String], log: File) -> Child {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(VALET);
            command
        }
        None => Command::new(VALET),
    };
    command
        .arg("up")
        .arg(dir.join("valet.toml"))
        .current_dir(dir)
        // Plain text: the log ends up in failure messages.
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn valet")
}

enum Listening {
    Yes,
    Exited,
    TooSlow,
}

/// Whether valet came up: its port accepts while the process still runs.
async fn wait_listening(child: &mut Child, addr: SocketAddr) -> Listening {
    let deadline = Instant::now() + START_DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Listening::Exited;
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Listening::Yes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Listening::TooSlow
}

fn log_path(dir: &TempDir) -> PathBuf {
    dir.path().join("valet.log")
}

impl Drop for Valet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if wait_with_deadline(&mut child, STOP_DEADLINE).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Backends outliving valet would be a valet bug, but must not outlive the test.
        for start in self.starts() {
            procs::kill_backend(start.pid);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- valet log ({}) ---\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
    }
}

/// Adds listeners, backend command and STARTS_FILE to a test's config.
fn complete_config(toml: &str, addr: SocketAddr, dir: &Path) -> String {
    let mut doc: DocumentMut = toml.parse().expect("test config is TOML");
    let server = doc.entry("server").or_insert(Item::Table(Table::new()));
    server["listen"] = value(addr.to_string());
    if server.get("admin_listen").is_none() {
        server["admin_listen"] = value(free_addr().to_string());
    }
    if let Some(classes) = doc
        .get_mut("containers")
        .and_then(Item::as_array_of_tables_mut)
    {
        for class in classes.iter_mut() {
            if !class.contains_key("command") {
                let mut command = Array::new();
                command.push("python3");
                command.push(BACKEND);
                class["command"] = value(command);
            }
            let env = class.entry("env").or_insert(value(InlineTable::new()));
            let starts = dir.join("starts").display().to_string();
            if let Some(env) = env.as_inline_table_mut() {
                env.get_or_insert("STARTS_FILE", starts);
            } else if let Some(env) = env.as_table_mut() {
                env.entry("STARTS_FILE").or_insert(value(starts));
            }
        }
    }
    doc.to_string()
}

/// A loopback address with a port nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    listener.local_addr().expect("local addr")
}

/// The child's exit status, once it exited within `within`; `None` if it still runs.
pub fn wait_with_deadline(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The value of ` name=value` in a plain-text log line, up to the next space.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split(' ').next()
}

fn append(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open output file")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
