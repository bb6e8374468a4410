//! A container class as the instance layer needs it: the config read once into typed values,
//! plus the class's live instances. One `ClassRuntime` per `[[containers]]` entry.

use crate::instance::Instance;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use valet_config::{Config, ContainerClass};

/// How a start or a liveness check is judged.
#[derive(Debug, Clone)]
pub struct Probe {
    /// HTTP path that must answer 2xx/3xx; `None` means a TCP connect is enough.
    pub path: Option<String>,
    /// Index of the probed port in [`ClassRuntime::ports`].
    pub port: usize,
    /// Whole deadline (readiness) or one probe's deadline (liveness).
    pub timeout: Duration,
    /// Pause between probes.
    pub interval: Duration,
    /// Failures in a row that count as dead (liveness only).
    pub failures: u32,
}

/// `scale` (issue 21): how many replicas one key may run, and the load per ready replica at
/// which another one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub max_replicas: u32,
    pub target_concurrency: u32,
}

/// One class, resolved from config.
pub struct ClassRuntime {
    pub name: Arc<str>,
    /// The name its keys' leases go by in cluster mode: the class's own name, or, for a
    /// deployed project's version, `project:<id>`, the same on every replica and for every
    /// version, so that one project runs one instance cluster-wide whichever replica built
    /// which version (its class names differ per build and per process).
    pub lease_name: Arc<str>,
    pub command: Vec<String>,
    pub image: Option<String>,
    /// Named ports in a fixed order; endpoints are indexed the same way.
    pub ports: Vec<(String, u16)>,
    pub default_port: usize,
    pub env: Vec<(String, String)>,
    /// `None`: never sleeps.
    pub sleep_after: Option<Duration>,
    pub max_instances: u32,
    pub min_instances: u32,
    pub max_waiting: u32,
    /// 0: no limit (see the config key).
    pub max_concurrent_requests: u32,
    pub readiness: Probe,
    pub liveness: Option<Probe>,
    pub stop_timeout: Duration,
    /// `server.timeouts.pull`: how long requests wait on a start that pulls its image,
    /// besides the readiness timeout.
    pub pull_timeout: Duration,
    pub work_dir: PathBuf,
    /// `<data_dir>/instances/<class>`: one persistent folder per key below it.
    pub data_root: PathBuf,
    /// `<data_dir>/logs/<class>`: one log file per key.
    pub log_root: PathBuf,
    pub user: Option<String>,
    /// Keys that routes name outright (`name:` and `random:`); the first `min_instances` of
    /// them start at boot and never sleep.
    pub fixed_keys: Vec<String>,
    /// Instances with a task (starting, ready, stopping, backoff): bounded by `max_instances`.
    pub(crate) live: AtomicU32,
    /// Every key seen, sleeping ones included. Lock-free reads: the hot path never blocks here.
    pub(crate) instances: papaya::HashMap<Box<str>, Arc<Instance>>,
    /// The class's metrics (cold starts, crashes, upstream latency), registered once here so
    /// that recording never looks anything up. A deployed project's versions share one set
    /// (its [`ProjectRef::stats`]), so a new version does not restart its counters.
    pub stats: Arc<valet_metrics::ClassStats>,
    /// Set on a deployed project's version: which project it serves.
    pub project: Option<Arc<ProjectRef>>,
    /// `None`: one instance per key.
    pub scale: Option<Scale>,
    /// Held while a request of a scaled key decides where it goes (table.rs), so that two
    /// requests never both start a replica the load asked for once.
    pub(crate) scaling: Mutex<()>,
}

/// The project a deployed version's class serves, and the series all its versions share.
/// Operators know a project by its name and id, never by its version's class name
/// (`project-<id>-<build>-<n>`), so listings, logs and metrics all go by this.
pub struct ProjectRef {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// What `/metrics`, the dashboard and the CLI call the project: `project:<name>`.
    pub label: Arc<str>,
    /// Its `/containers/<id>/...` requests, by status.
    pub requests: Arc<valet_metrics::RouteStats>,
    pub stats: Arc<valet_metrics::ClassStats>,
}

impl ProjectRef {
    /// `route` is the pattern its requests come by (`/containers/*`).
    pub fn new(id: &str, name: &str, route: &str) -> Self {
        // The one place a project's label is decided.
        let label = format!("project:{name}");
        Self {
            requests: Arc::new(valet_metrics::RouteStats::for_project(route, &label, id)),
            stats: Arc::new(valet_metrics::ClassStats::new()),
            id: id.into(),
            name: name.into(),
            label: label.into(),
        }
    }
}

impl ClassRuntime {
    pub fn from_config(config: &Config, class: &ContainerClass) -> Self {
        let ports: Vec<(String, u16)> = class.ports.iter().map(|(n, p)| (n.clone(), *p)).collect();
        let port_index = |name: Option<&str>| -> usize {
            name.and_then(|n| ports.iter().position(|(p, _)| p == n))
                .unwrap_or(0)
        };
        let default_port = port_index(class.default_port_name());
        let readiness = Probe {
            path: class.readiness.path.clone(),
            port: class
                .readiness
                .port
                .as_deref()
                .map_or(default_port, |p| port_index(Some(p))),
            timeout: class.readiness.timeout.get(),
            interval: class.readiness.interval.get().max(Duration::from_millis(1)),
            failures: 1,
        };
        let liveness = class.liveness.as_ref().map(|l| Probe {
            path: l.path.clone(),
            port: default_port,
            timeout: l.timeout.get(),
            interval: l.interval.get(),
            failures: l.failures.max(1),
        });
        let mut env: Vec<(String, String)> = class
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Secrets come from valet's own environment until the store holds them; a missing one is
        // left unset rather than set empty, so the app's own "missing secret" check still fires.
        for name in &class.secrets {
            // Put into the class's env from the store by `valet up` (see valet's deploy.rs).
            if class.env.contains_key(name) {
                continue;
            }
            match std::env::var(name) {
                Ok(value) => env.push((name.clone(), value)),
                Err(_) => {
                    tracing::warn!(class = %class.class_name, secret = %name, "secret not set")
                }
            }
        }
        for name in &class.env_from_host {
            if class.env.contains_key(name) || class.secrets.contains(name) {
                continue;
            }
            if let Ok(value) = std::env::var(name) {
                env.push((name.clone(), value));
            }
        }
        let data_dir = config.data_dir();
        let sleep_after = class.sleep_after.get();
        Self {
            name: class.class_name.as_str().into(),
            lease_name: class.class_name.as_str().into(),
            command: class.command.clone(),
            image: class.image.clone(),
            default_port,
            env,
            sleep_after: (!sleep_after.is_zero()).then_some(sleep_after),
            max_instances: class.max_instances.max(1),
            min_instances: class.min_instances,
            max_waiting: class.max_waiting.max(1),
            max_concurrent_requests: class.max_concurrent_requests,
            readiness,
            liveness,
            stop_timeout: class.stop_timeout.get(),
            pull_timeout: config.server.timeouts.pull.get(),
            work_dir: config.base_dir.clone(),
            data_root: data_dir.join("instances").join(&class.class_name),
            log_root: valet_runtime::logfile::class_dir(&data_dir, &class.class_name),
            user: class.user.clone(),
            fixed_keys: fixed_keys(config, &class.class_name),
            live: AtomicU32::new(0),
            instances: papaya::HashMap::new(),
            stats: Arc::new(valet_metrics::ClassStats::new()),
            project: None,
            scale: class.scale.map(|s| Scale {
                max_replicas: s.max_replicas.max(1),
                target_concurrency: s.target_concurrency.max(1),
            }),
            scaling: Mutex::new(()),
            ports,
        }
    }

    /// The name operators see: the class's, or `project:<name>` for a project's version.
    pub fn label(&self) -> &str {
        self.project.as_ref().map_or(&self.name, |p| &p.label)
    }

    /// Makes this class a version of `project`, sharing the project's series.
    pub fn serve_project(&mut self, project: Arc<ProjectRef>) {
        self.stats = project.stats.clone();
        self.project = Some(project);
    }

    /// Index of a named port, for routes resolving their `port` once at build time.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|(p, _)| p == name)
    }

    /// Number of instances with a task right now.
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Acquire)
    }

    /// Number of keys known, sleeping ones included.
    pub fn known(&self) -> usize {
        self.instances.len()
    }

    /// Takes a slot under `max_instances`; false when the class is full.
    pub(crate) fn try_take_slot(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_instances).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn release_slot(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether this key must stay up (min_instances). Fixed keys: the first `min_instances`.
    /// Open key spaces: the `min_instances` most recently used live keys.
    pub(crate) fn is_pinned(&self, me: &Instance) -> bool {
        if self.min_instances == 0 {
            return false;
        }
        if !self.fixed_keys.is_empty() {
            return self.pinned_fixed_keys().any(|k| k == me.id.key());
        }
        if me.id.replica() > 0 {
            // A replica of an open key space's key is there for load, not for warmth.
            return false;
        }
        let mine = me.last_active_ms();
        let guard = self.instances.pin();
        let newer = guard
            .values()
            .filter(|other| other.has_task() && other.last_active_ms() > mine)
            .count();
        newer < self.min_instances as usize
    }

    /// The instances of fixed keys started at boot, by their internal keys: the first
    /// `min_instances` fixed keys; with `scale`, when `min_instances` is more than the fixed
    /// keys, their further replicas too, replica 1 of each key before replica 2 of any (so
    /// `min_instances = 3` with one `name:` key keeps three of its replicas warm).
    pub fn pinned_fixed_keys(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        let replicas = self.scale.map_or(1, |s| s.max_replicas);
        (0..replicas)
            .flat_map(move |r| {
                self.fixed_keys
                    .iter()
                    .map(move |key| valet_core::replica_key(key, r))
            })
            .take(self.min_instances as usize)
    }
}

fn fixed_keys(config: &Config, class: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for route in config
        .routes
        .iter()
        .filter(|r| r.container.as_deref() == Some(class))
    {
        for key in route.rule().fixed_keys().unwrap_or_default() {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}
