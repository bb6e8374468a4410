//! Several real `valet up` replicas on one PostgreSQL store, for cluster mode's tests: on
//! loopback, or one per node of a network namespace [`Lab`] so that a node can be cut off.
//!
//! ```ignore
//! let lab = Lab::new(2)?;                       // declared first: dropped last
//! let pg = lab.postgres()?;                     // 10.X.0.2:5432 in the db namespace
//! let replicas = Replicas::with_config(toml).replicas(2).store(&pg.url()).in_lab(&lab)
//!     .start().await;
//! replicas.get(1, "/api/x").await;              // replica gw-1 in node 1 (10.X.0.11)
//! lab.cut(2);
//! ```
//!
//! Replicas, nodes and `gw-<i>` names are numbered from 1. Each replica is a [`Valet`] of its
//! own (its folder, data_dir and log); `[cluster]` is written unless `.cluster(false)`.
//!
//! Reaching the lab: the test process stays in its own network namespace, which `netns.sh up`
//! joins to the lab's bridge with one veth (10.X.0.254), so the replicas' listeners (public,
//! admin, peer) on their node addresses are reached with plain reqwest.

mod lab;
mod postgres;
mod watch;

pub use lab::Lab;
pub use postgres::PrivatePostgres;
pub use watch::{served, who, Answer, Report, Served, Watch};

use super::procs::{kill_backend, Start};
use super::{append, client, free_addr, log_path, spawn_up, wait_listening, Listening, Valet};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;
use toml_edit::{value, DocumentMut, Item, Table};

/// `server.admin_token` of every replica.
pub const ADMIN_TOKEN: &str = "cluster-admin-token-0123456789abcdef";
/// `cluster.secret` shared by every replica (40 characters).
pub const SECRET: &str = "cluster-secret-0123456789abcdef012345678";
/// The fixed ports on a lab node's own address.
const LAB_PORTS: (u16, u16, u16) = (8787, 8788, 8789);

/// The value, or `None` after printing why the test is skipped; under `CI=true`, where every
/// test must run, a panic instead.
pub fn required<T>(result: Result<T, String>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{why} (CI=true: the cluster tests must run)")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// The variable naming valet's secret key file.
pub const SECRET_KEY_FILE: &str = "VALET_SECRET_KEY_FILE";

/// Replicas waiting to be started; see [`Replicas::with_config`].
pub struct ClusterBuilder {
    toml: String,
    replicas: usize,
    store: Option<String>,
    lease_ttl: String,
    cluster: bool,
    lab: Option<lab::Hosts>,
    env: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

/// Where one replica listens.
#[derive(Clone, Copy, Debug)]
struct Addrs {
    public: SocketAddr,
    admin: SocketAddr,
    peer: SocketAddr,
}

/// Running replicas; dropping them stops each like a [`Valet`].
pub struct Replicas {
    replicas: Vec<Replica>,
    client: reqwest::Client,
}

struct Replica {
    valet: Valet,
    addrs: Addrs,
    wrapper: Vec<String>,
    env: Vec<(String, String)>,
}

impl ClusterBuilder {
    /// How many replicas (default 2; at most the lab's nodes).
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// `server.store` of every replica: a `postgres://` URL ([`PrivatePostgres::url`]).
    pub fn store(mut self, url: &str) -> Self {
        self.store = Some(url.to_string());
        self
    }

    /// `cluster.lease_ttl` (default `"2s"`).
    pub fn lease_ttl(mut self, ttl: &str) -> Self {
        self.lease_ttl = ttl.to_string();
        self
    }

    /// Whether to write the `[cluster]` section (default true). Without it the replicas are
    /// independent valets that share a store.
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// Runs replica i in node i of `lab` (through `nsenter`), listening on the node's address:
    /// public :8787, admin :8788, peer :8789. The lab must outlive the replicas.
    pub fn in_lab(mut self, lab: &Lab) -> Self {
        self.lab = Some(lab.hosts());
        self
    }

    /// A variable in every replica's environment.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Files written next to each replica's valet.toml: `("public/index.html", "...")`.
    pub fn assets(mut self, files: &[(&str, &str)]) -> Self {
        for (path, content) in files {
            self.files.push((path.to_string(), content.to_string()));
        }
        self
    }

    /// Replica `i`'s valet.toml before the support module completes it (classes' commands):
    /// the template with listeners, admin token, store and `[cluster]` filled in. On loopback
    /// every call picks fresh free ports.
    pub fn config(&self, i: usize) -> String {
        self.config_with(i, &self.addrs(i))
    }

    /// Starts the replicas on loopback, on a [`PrivatePostgres`] of their own; `None` (the
    /// test does not run, see [`required`]) without PostgreSQL. Bound as
    /// `let Some((pg, replicas)) = ...`, the replicas stop before their store.
    pub async fn start_on_loopback(self) -> Option<(PrivatePostgres, Replicas)> {
        let pg = PrivatePostgres::loopback()?;
        let replicas = self.store(&pg.url()).start().await;
        Some((pg, replicas))
    }

    /// Starts replica i in node i of a new [`Lab`] of as many nodes, on a PostgreSQL in the
    /// lab's own namespace; `None` where a lab cannot be made (see [`Lab::new`]). Bound as
    /// `let Some((lab, pg, replicas)) = ...`, the replicas stop first and the lab goes last.
    pub async fn start_in_lab(self) -> Option<(Lab, PrivatePostgres, Replicas)> {
        let lab = Lab::new(self.replicas)?;
        let pg = lab.postgres()?;
        let replicas = self.store(&pg.url()).in_lab(&lab).start().await;
        Some((lab, pg, replicas))
    }

    /// Starts the replicas one after the other; panics with the failing one's log.
    pub async fn start(self) -> Replicas {
        match self.try_start().await {
            Ok(replicas) => replicas,
            Err(log) => panic!("a replica did not start:\n{log}"),
        }
    }

    pub async fn try_start(self) -> Result<Replicas, String> {
        let mut replicas = Vec::new();
        let mut env = self.env.clone();
        for i in 1..=self.replicas {
            let mut addrs = self.addrs(i);
            let wrapper = match &self.lab {
                Some(hosts) => hosts.nsenter(i),
                None => Vec::new(),
            };
            let files: Vec<(&str, &str)> = self
                .files
                .iter()
                .map(|(p, c)| (p.as_str(), c.as_str()))
                .collect();
            let mut builder = Valet::with_config(&self.config_with(i, &addrs))
                .assets(&files)
                .wrapper(&wrapper.iter().map(String::as_str).collect::<Vec<_>>());
            // On loopback the builder picks the public port (and retries a taken one).
            if self.lab.is_some() {
                builder = builder.listen(addrs.public);
            }
            for (name, val) in &env {
                builder = builder.env(name, val);
            }
            let valet = builder
                .try_start()
                .await
                .map_err(|log| format!("replica {i}: {log}"))?;
            addrs.public = valet.addr();
            // Every replica of a cluster seals and opens secrets with one key (valet refuses
            // to join with another): the first replica's, made at its start.
            if self.cluster && !env.iter().any(|(name, _)| name == SECRET_KEY_FILE) {
                let key = valet.dir().join(".valet/secret.key");
                assert!(key.exists(), "replica 1 made no {}", key.display());
                env.push((SECRET_KEY_FILE.into(), key.display().to_string()));
            }
            replicas.push(Replica {
                valet,
                addrs,
                wrapper,
                env: env.clone(),
            });
        }
        Ok(Replicas {
            replicas,
            client: client(),
        })
    }

    fn addrs(&self, i: usize) -> Addrs {
        assert!(i >= 1, "replicas are numbered from 1");
        match &self.lab {
            Some(hosts) => {
                let ip = hosts.addr(i);
                Addrs {
                    public: SocketAddr::new(ip, LAB_PORTS.0),
                    admin: SocketAddr::new(ip, LAB_PORTS.1),
                    peer: SocketAddr::new(ip, LAB_PORTS.2),
                }
            }
            None => Addrs {
                public: free_addr(),
                admin: free_addr(),
                peer: free_addr(),
            },
        }
    }

    fn config_with(&self, i: usize, addrs: &Addrs) -> String {
        let mut doc: DocumentMut = self.toml.parse().expect("test config is TOML");
        let server = doc.entry("server").or_insert(Item::Table(Table::new()));
        server["admin_listen"] = value(addrs.admin.to_string());
        if server.get("admin_token").is_none() {
            server["admin_token"] = value(ADMIN_TOKEN);
        }
        if let Some(store) = &self.store {
            server["store"] = value(store.as_str());
        }
        if self.cluster {
            let cluster = doc.entry("cluster").or_insert(Item::Table(Table::new()));
            cluster["node"] = value(format!("gw-{i}"));
            cluster["listen"] = value(addrs.peer.to_string());
            cluster["advertise"] = value(addrs.peer.to_string());
            cluster["secret"] = value(SECRET);
            cluster["lease_ttl"] = value(self.lease_ttl.as_str());
        }
        doc.to_string()
    }
}

impl Replicas {
    /// Replicas of one config template (its classes and routes).
    pub fn with_config(toml: &str) -> ClusterBuilder {
        ClusterBuilder {
            toml: toml.to_string(),
            replicas: 2,
            store: None,
            lease_ttl: "2s".into(),
            cluster: true,
            lab: None,
            env: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// `gw-<i>`.
    pub fn node(&self, i: usize) -> String {
        self.replica(i);
        format!("gw-{i}")
    }

    /// Replica i's public listener: `http://ADDR:PORT<path>`.
    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.replica(i).addrs.public)
    }

    /// Replica i's admin listener: `http://ADDR:PORT<path>`; send [`ADMIN_TOKEN`] as a bearer
    /// (or use [`Self::admin_get`]).
    pub fn admin_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.replica(i).addrs.admin)
    }

    pub fn admin_token(&self) -> &'static str {
        ADMIN_TOKEN
    }

    /// Replica i's peer listener (`cluster.listen` and `cluster.advertise`).
    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        self.replica(i).addrs.peer
    }

    /// The replica as a [`Valet`]: its folder, starts, failures.
    pub fn valet(&self, i: usize) -> &Valet {
        &self.replica(i).valet
    }

    /// A client that reaches every replica (no proxy, 60 s timeout).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GET on replica i's public listener; panics with the replicas' logs if it fails.
    pub async fn get(&self, i: usize, path: &str) -> reqwest::Response {
        match self.client.get(self.url(i, path)).send().await {
            Ok(response) => response,
            Err(e) => panic!("GET {path} on replica {i} failed: {e}\n{}", self.logs()),
        }
    }

    /// GET with the admin token on replica i: status and JSON body (`Null` if not JSON).
    pub async fn admin_get(&self, i: usize, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.admin_url(i, path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin GET {path} on replica {i}: {e}\n{}", self.logs()));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Whether replica i's admin listener answers `/healthz` with 200 within a second.
    pub async fn answers(&self, i: usize) -> bool {
        let quick = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("reqwest client");
        let response = quick.get(self.admin_url(i, "/healthz")).send().await;
        response.is_ok_and(|r| r.status().is_success())
    }

    /// Replica i's valet process id (panics when it is not running).
    pub fn pid(&self, i: usize) -> u32 {
        self.replica(i).valet.pid()
    }

    /// Everything replica i printed, over all its runs.
    pub fn log(&self, i: usize) -> String {
        self.replica(i).valet.log()
    }

    /// Every replica's log, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.len())
            .map(|i| format!("--- replica {i} ---\n{}", self.log(i)))
            .collect()
    }

    /// SIGKILL to replica i's valet, reaped. Its backends are left running (as after a crash)
    /// until it is restarted or the replicas are dropped.
    pub fn kill9(&mut self, i: usize) {
        let valet = &mut self.replica_mut(i).valet;
        let mut child = valet.child.take().expect("replica is running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
    }

    /// A whole node dies: SIGKILL to replica i's valet and to every backend it started.
    pub fn kill_node(&mut self, i: usize) {
        self.kill9(i);
        for start in self.valet(i).starts() {
            kill_backend(start.pid);
        }
    }

    /// Every backend start of every replica so far, with the replica that started it.
    pub fn starts(&self) -> Vec<(usize, Start)> {
        (1..=self.len())
            .flat_map(|i| self.valet(i).starts().into_iter().map(move |s| (i, s)))
            .collect()
    }

    /// SIGTERM to replica i, waited for (bounded).
    pub fn terminate(&mut self, i: usize) -> ExitStatus {
        self.replica_mut(i).valet.terminate()
    }

    /// Starts replica i again on its folder, config and addresses (after [`Self::kill9`] or
    /// [`Self::terminate`]; a running one is terminated first); its log is appended to.
    pub async fn restart(&mut self, i: usize) {
        if self.replica(i).valet.child.is_some() {
            self.terminate(i);
        }
        let replica = self.replica_mut(i);
        let path = log_path(&replica.valet.dir);
        let mut log = append(&path);
        let _ = writeln!(log, "--- restarted by the test ---");
        let mut child = spawn_up(replica.valet.dir(), &replica.env, &replica.wrapper, log);
        let addr = replica.addrs.public;
        match wait_listening(&mut child, addr).await {
            Listening::Yes => replica.valet.child = Some(child),
            Listening::Exited | Listening::TooSlow => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "replica {i} did not listen on {addr} again:\n{}",
                    std::fs::read_to_string(&path).unwrap_or_default()
                );
            }
        }
    }

    fn replica(&self, i: usize) -> &Replica {
        assert!(
            (1..=self.len()).contains(&i),
            "replica {i}: there are replicas 1..={}",
            self.len()
        );
        &self.replicas[i - 1]
    }

    fn replica_mut(&mut self, i: usize) -> &mut Replica {
        self.replica(i);
        &mut self.replicas[i - 1]
    }
}
