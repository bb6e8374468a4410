//! [`Lab`]: hosts as network namespaces on a bridge (`scripts/lab/netns.sh`), made for one test
//! and removed when it is dropped.
//!
//! The test process stays in its own namespace. `netns.sh up` gives that namespace a veth into
//! the hub's bridge (`<prefix>-r`, 10.X.0.254/24), so reqwest reaches every node's address
//! directly; a cut node is unreachable from the test process too.

use super::postgres::PrivatePostgres;
use super::required;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const NETNS_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lab/netns.sh");
/// Where [`Lab::postgres`] listens in the db namespace.
const DB_PORT: u16 = 5432;

/// A hub namespace with a bridge, a db namespace at 10.X.0.2 and nodes `1..=n` at 10.X.0.(10+i).
/// Nodes are numbered from 1, as in `netns.sh` and the replicas' names (`gw-1`).
///
/// Drop it after everything that runs in it (declare it first): `down` kills what is left.
pub struct Lab {
    hosts: Hosts,
}

/// What a replica needs to know about the lab it runs in.
#[derive(Clone, Debug)]
pub(super) struct Hosts {
    prefix: String,
    subnet: u8,
    nodes: usize,
}

impl Hosts {
    pub(super) fn addr(&self, i: usize) -> IpAddr {
        assert!(
            (1..=self.nodes).contains(&i),
            "node {i}: the lab has nodes 1..={}",
            self.nodes
        );
        IpAddr::V4(Ipv4Addr::new(10, self.subnet, 0, 10 + i as u8))
    }

    pub(super) fn netns(&self, i: usize) -> String {
        self.addr(i); // the range check
        format!("{}-n{i}", self.prefix)
    }

    /// The command prefix that runs a program in node `i`.
    pub(super) fn nsenter(&self, i: usize) -> Vec<String> {
        vec![
            "nsenter".to_string(),
            format!("--net=/run/netns/{}", self.netns(i)),
        ]
    }
}

impl Lab {
    /// A lab of `nodes` nodes. `None` (the test is skipped, with the reason on stderr) without
    /// root, `ip` or `nsenter`; under `CI=true` that fails the test instead.
    pub fn new(nodes: usize) -> Option<Self> {
        required(Self::try_new(nodes))
    }

    pub fn try_new(nodes: usize) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("the network namespace lab needs root".into());
        }
        for tool in ["ip", "nsenter", "flock"] {
            if !on_path(tool) {
                return Err(format!("the network namespace lab needs `{tool}`"));
            }
        }
        remove_stale_labs();
        let prefix = next_prefix();
        let out = netns_sh(&["up", &prefix, &nodes.to_string()])?;
        let subnet = out
            .trim()
            .parse()
            .map_err(|_| format!("netns.sh up: {out}"))?;
        Ok(Self {
            hosts: Hosts {
                prefix,
                subnet,
                nodes,
            },
        })
    }

    /// The namespaces' common prefix (`<prefix>-hub`, `<prefix>-db`, `<prefix>-n1`...).
    pub fn prefix(&self) -> &str {
        &self.hosts.prefix
    }

    pub fn nodes(&self) -> usize {
        self.hosts.nodes
    }

    /// Node `i`'s address, 10.X.0.(10+i).
    pub fn addr(&self, i: usize) -> IpAddr {
        self.hosts.addr(i)
    }

    /// The db namespace's address, 10.X.0.2.
    pub fn db_addr(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, self.hosts.subnet, 0, 2))
    }

    /// Node `i`'s namespace name (`/run/netns/<name>`).
    pub fn netns(&self, i: usize) -> String {
        self.hosts.netns(i)
    }

    pub fn db_netns(&self) -> String {
        format!("{}-db", self.hosts.prefix)
    }

    /// `["nsenter", "--net=/run/netns/<node i>"]`: prefix a command with it to run it in node i.
    pub fn nsenter(&self, i: usize) -> Vec<String> {
        self.hosts.nsenter(i)
    }

    /// Partitions node `i` from everything (the db, the other nodes, the test process).
    pub fn cut(&self, i: usize) {
        self.hosts.addr(i);
        netns_sh(&["cut", &self.hosts.prefix, &i.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Undoes [`Self::cut`].
    pub fn heal(&self, i: usize) {
        self.hosts.addr(i);
        netns_sh(&["heal", &self.hosts.prefix, &i.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// A PostgreSQL server of the test's own in the db namespace, on 10.X.0.2:5432. `None`
    /// (skipped) without PostgreSQL's binaries; under `CI=true` that fails the test.
    pub fn postgres(&self) -> Option<PrivatePostgres> {
        let addr = SocketAddr::new(self.db_addr(), DB_PORT);
        required(PrivatePostgres::try_new(addr, Some(&self.db_netns())))
    }

    pub(super) fn hosts(&self) -> Hosts {
        self.hosts.clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = netns_sh(&["down", &self.hosts.prefix]) {
            eprintln!("{e}");
        }
    }
}

/// `vl<pid><letters>`: unique per test in this process, and the pid tells a later run whether
/// the lab's owner is gone. At most 12 characters, as netns.sh wants.
fn next_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut letters = String::new();
    loop {
        letters.insert(0, (b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    format!("vl{}{letters}", std::process::id())
}

/// Labs whose test process died without dropping them (killed, or aborted).
fn remove_stale_labs() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(prefix) = name.strip_suffix("-hub") else {
            continue;
        };
        let Some(rest) = prefix.strip_prefix("vl") else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let letters = &rest[digits.len()..];
        let owner_gone = digits
            .parse::<u32>()
            .is_ok_and(|pid| !super::super::pid_alive(pid));
        if owner_gone && !letters.is_empty() && letters.chars().all(|c| c.is_ascii_lowercase()) {
            let _ = netns_sh(&["down", prefix]);
        }
    }
}

fn netns_sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(NETNS_SH)
        .args(args)
        .output()
        .map_err(|e| format!("netns.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "netns.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}
