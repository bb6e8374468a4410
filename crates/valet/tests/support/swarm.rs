//! [`SwarmLab`]: a real Docker Swarm of one dockerd per node of a [`Lab`]
//! (`scripts/lab/swarm.sh`), made for one test and removed when it is dropped.
//!
//! ```ignore
//! let Some(swarm) = SwarmLab::new(3) else { return };   // skipped (or failed under CI=true)
//! let id = swarm.load_image("valet-test-x:1");             // on every node, one image ID
//! swarm.docker_ok(1, &["service", "create", "--no-resolve-image", ..., &id]);
//! swarm.kill(2);                                            // node 2's dockerd, SIGKILL
//! ```
//!
//! Node 1 is the manager, nodes 2..N workers; every node carries the label `valet.node=n<i>`
//! (every node's hostname is "vm"). Services are reached at their node's address
//! ([`SwarmLab::addr`]) on host-mode published ports: the kernel has no IPVS.

use super::cluster::{required, Lab};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const SWARM_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lab/swarm.sh");
/// swarm.sh's state folder; a lab's is `<STATE>/<prefix>`.
const STATE: &str = "/tmp/valet-lab";
/// The longest one docker CLI call may take before the test fails (a hung daemon).
const DOCKER_WITHIN: &str = "120";

/// A swarm of `n` nodes; drop it after everything that uses it. Its [`Lab`] goes with it.
pub struct SwarmLab {
    // Dropped after `Drop::drop` ran `swarm.sh down`: its own `netns.sh down` then finds
    // nothing left.
    lab: Lab,
    sockets: Vec<PathBuf>,
    times: Vec<(String, Duration)>,
}

impl SwarmLab {
    /// A swarm of `nodes` nodes. `None` (skipped, the reason on stderr) without root, the lab's
    /// tools or dockerd; under `CI=true` that fails the test instead.
    pub fn new(nodes: usize) -> Option<Self> {
        required(Self::try_new(nodes))
    }

    pub fn try_new(nodes: usize) -> Result<Self, String> {
        for tool in ["dockerd", "docker", "runc", "timeout"] {
            if !on_path(tool) {
                return Err(format!("the swarm lab needs `{tool}`"));
            }
        }
        remove_stale_swarms();
        // Root, ip, nsenter and flock are checked here.
        let lab = Lab::try_new(nodes)?;
        let prefix = lab.prefix().to_string();
        let out = match swarm_sh(&["up", &prefix, &nodes.to_string()]) {
            Ok(out) => out,
            Err(e) => {
                let _ = swarm_sh(&["down", &prefix]);
                return Err(e);
            }
        };
        let sockets: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
        if sockets.len() != nodes {
            let _ = swarm_sh(&["down", &prefix]);
            return Err(format!("swarm.sh up printed {out:?}"));
        }
        let times = std::fs::read_to_string(Path::new(STATE).join(&prefix).join("times"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (name, secs) = line.split_once(' ')?;
                Some((
                    name.to_string(),
                    Duration::from_secs_f64(secs.parse().ok()?),
                ))
            })
            .collect();
        Ok(Self {
            lab,
            sockets,
            times,
        })
    }

    /// The namespace lab the daemons run in (cut/heal, nsenter, addresses).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn nodes(&self) -> usize {
        self.sockets.len()
    }

    /// Node `i`'s dockerd socket (a path).
    pub fn socket(&self, i: usize) -> &Path {
        assert!(
            (1..=self.nodes()).contains(&i),
            "node {i}: the swarm has nodes 1..={}",
            self.nodes()
        );
        &self.sockets[i - 1]
    }

    /// Node `i`'s Engine API address, `unix:///...` (for `-H`, `DOCKER_HOST` or bollard).
    pub fn host(&self, i: usize) -> String {
        format!("unix://{}", self.socket(i).display())
    }

    /// Node `i`'s address on the lab's bridge, 10.X.0.(10+i): its host-mode published ports.
    pub fn addr(&self, i: usize) -> IpAddr {
        self.socket(i);
        self.lab.addr(i)
    }

    /// How long `up`'s phases took: `daemons`, `init`, `join<i>`, `labels`.
    pub fn times(&self) -> &[(String, Duration)] {
        &self.times
    }

    /// The docker CLI against node `i` (bounded: a call still running after two minutes is
    /// killed and fails).
    pub fn docker(&self, i: usize, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg(DOCKER_WITHIN)
            .arg("docker")
            .arg("-H")
            .arg(self.host(i))
            .args(args)
            .output()
            .expect("run the docker CLI")
    }

    /// [`Self::docker`] that must succeed; its trimmed stdout.
    pub fn docker_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.docker(i, args);
        assert!(
            out.status.success(),
            "docker -H node{i} {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Puts `image` (from the host's engine, or node 1's) on every node; its ID, `sha256:...`,
    /// the same on every node. Create services with it and `--no-resolve-image`: a tag makes
    /// Swarm try a pull.
    pub fn load_image(&self, image: &str) -> String {
        swarm_sh(&["load", self.lab.prefix(), image])
            .unwrap_or_else(|e| panic!("{e}"))
            .trim()
            .to_string()
    }

    /// SIGKILL of node `i`'s dockerd: its containers keep running, the swarm sees the node go
    /// Down. [`Self::restart`] brings it back.
    pub fn kill(&self, i: usize) {
        self.socket(i);
        swarm_sh(&["kill", self.lab.prefix(), &i.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts again any node whose dockerd is not running (after [`Self::kill`]): as after a
    /// reboot, its old containers are gone; it rejoins the swarm with its old identity.
    pub fn restart(&self) {
        swarm_sh(&["up", self.lab.prefix(), &self.nodes().to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Partitions node `i` from the other nodes and the test process ([`Lab::cut`]).
    pub fn cut(&self, i: usize) {
        self.socket(i);
        self.lab.cut(i);
    }

    /// Undoes [`Self::cut`].
    pub fn heal(&self, i: usize) {
        self.socket(i);
        self.lab.heal(i);
    }

    /// Node `i`'s dockerd log so far, for failure messages.
    pub fn log(&self, i: usize) -> String {
        let path = self.socket(i).with_file_name("log");
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for SwarmLab {
    fn drop(&mut self) {
        if let Err(e) = swarm_sh(&["down", self.lab.prefix()]) {
            eprintln!("{e}");
        }
    }
}

/// Swarms of labs whose test process died without dropping them: their daemons still run.
/// Lab prefixes are `vl<pid><letters>` (see `Lab`).
fn remove_stale_swarms() {
    let Ok(entries) = std::fs::read_dir(STATE) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("vl") else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let letters = &rest[digits.len()..];
        let owner_gone = digits
            .parse::<u32>()
            .is_ok_and(|pid| !super::pid_alive(pid));
        if owner_gone && !letters.is_empty() && letters.chars().all(|c| c.is_ascii_lowercase()) {
            let _ = swarm_sh(&["down", &name]);
        }
    }
}

fn swarm_sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(SWARM_SH)
        .args(args)
        .output()
        .map_err(|e| format!("swarm.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "swarm.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}
