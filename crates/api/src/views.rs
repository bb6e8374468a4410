//! What the admin API answers with, in JSON. Kept apart from the internal types so that their
//! changes do not silently change the API, and so that nothing secret (env values) leaks.

use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use valet_core::InstanceState;
use valet_instances::{ClassRuntime, InstanceInfo, ProjectName};
use valet_runtime::ExitStatus;

/// One instance with everything an operator asks about it.
#[derive(Serialize)]
pub struct InstanceView {
    /// The class's own name (a deployed version's is `project-<id>-<build>-<n>`).
    pub class: String,
    /// What operators call it: the class name, or `project:<name>` for a deployed project.
    pub label: String,
    /// The deployed project it serves (`{id, name}`), if any; `project:<id>` names it in
    /// every `/v1/instances/{class}/...` path, across versions.
    pub project: Option<ProjectName>,
    pub key: String,
    pub state: InstanceState,
    /// Why it is not ready, when it is not (start failure, crash, crash loop).
    pub message: Option<String>,
    /// Milliseconds in the current state.
    pub state_for_ms: Option<u64>,
    /// Which replica of its key this row is (`scale`); 0 for the key's own instance.
    pub replica: u32,
    /// Milliseconds since it became ready, while it runs.
    pub uptime_ms: Option<u64>,
    /// When it last became ready (Unix milliseconds).
    pub started_at: Option<u64>,
    /// When a request last ended (Unix milliseconds); now while one is open.
    pub last_activity_at: u64,
    pub idle_ms: u64,
    /// Requests, streams and WebSockets in flight.
    pub active: usize,
    /// Requests waiting for it to start.
    pub waiting: u32,
    /// Requests it was asked to serve since valet started.
    pub requests: u64,
    pub restarts: u64,
    /// Failed starts or crashes in a row.
    pub failures: u32,
    pub last_exit: Option<ExitStatus>,
    /// Its last lines of output at the last crash.
    pub last_log: Vec<String>,
    /// Duration of the last cold start, milliseconds.
    pub last_start_ms: Option<u64>,
    /// Cluster mode: the replica that owns the key (this one's node name for its own; another
    /// replica's for a key this one forwards to it, whose other fields are this replica's
    /// view: its requests forwarded, no process here). `null` outside cluster mode.
    pub owner: Option<String>,
    /// Cluster mode: another replica (`owner`) runs the key; this one forwards to it.
    pub forwarded: bool,
}

impl From<InstanceInfo> for InstanceView {
    fn from(info: InstanceInfo) -> Self {
        let now = SystemTime::now();
        let running = matches!(info.state, InstanceState::Ready | InstanceState::Stopping);
        let uptime_ms = info
            .started_at
            .filter(|_| running)
            .and_then(|at| now.duration_since(at).ok())
            .map(|d| d.as_millis() as u64);
        let label = info
            .project
            .as_ref()
            .map_or_else(|| info.class.clone(), |p| format!("project:{}", p.name));
        Self {
            class: info.class,
            label,
            project: info.project,
            key: info.key,
            replica: info.replica,
            state: info.state,
            message: info.status.message,
            state_for_ms: info.state_for_ms,
            uptime_ms,
            started_at: info.started_at.map(unix_ms),
            last_activity_at: unix_ms(
                now.checked_sub(Duration::from_millis(info.idle_ms))
                    .unwrap_or(now),
            ),
            idle_ms: info.idle_ms,
            active: info.active,
            waiting: info.waiting,
            requests: info.requests,
            restarts: info.restarts,
            failures: info.status.failures,
            last_exit: info.status.last_exit,
            last_log: info.status.last_log,
            last_start_ms: info.status.last_start_ms,
            owner: info.owner,
            forwarded: info.forwarded,
        }
    }
}

pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A container class's config (env values left out: they may be secrets) and its counts.
#[derive(Serialize)]
pub struct ClassView {
    pub name: String,
    /// `project:<name>` for a deployed project's version, else the name.
    pub label: String,
    /// The deployed project's `{id, name}`, if any.
    pub project: Option<ProjectName>,
    pub command: Vec<String>,
    pub image: Option<String>,
    pub ports: Vec<PortView>,
    pub default_port: String,
    /// Names only.
    pub env: Vec<String>,
    /// `null`: never sleeps.
    pub sleep_after_ms: Option<u64>,
    pub max_instances: u32,
    pub min_instances: u32,
    pub max_waiting: u32,
    /// 0: no limit.
    pub max_concurrent_requests: u32,
    pub readiness: ProbeView,
    pub liveness: Option<ProbeView>,
    pub stop_timeout_ms: u64,
    pub user: Option<String>,
    /// Keys that routes name outright (`name:`, `random:`).
    pub fixed_keys: Vec<String>,
    /// Instances with a task now (counted against `max_instances`).
    pub live: u32,
    /// Keys known, sleeping ones included.
    pub known: usize,
}

#[derive(Serialize)]
pub struct PortView {
    pub name: String,
    pub port: u16,
}

#[derive(Serialize)]
pub struct ProbeView {
    /// `null`: a TCP connect is enough.
    pub path: Option<String>,
    pub port: String,
    pub timeout_ms: u64,
    pub interval_ms: u64,
    pub failures: u32,
}

impl ClassView {
    pub fn of(class: &ClassRuntime) -> Self {
        let port_name = |i: usize| {
            class
                .ports
                .get(i)
                .map(|(n, _)| n.clone())
                .unwrap_or_default()
        };
        let probe = |p: &valet_instances::class::Probe| ProbeView {
            path: p.path.clone(),
            port: port_name(p.port),
            timeout_ms: ms(p.timeout),
            interval_ms: ms(p.interval),
            failures: p.failures,
        };
        Self {
            name: class.name.to_string(),
            label: class.label().to_string(),
            project: class.project.as_ref().map(|p| ProjectName {
                id: p.id.to_string(),
                name: p.name.to_string(),
            }),
            command: class.command.clone(),
            image: class.image.clone(),
            ports: class
                .ports
                .iter()
                .map(|(name, port)| PortView {
                    name: name.clone(),
                    port: *port,
                })
                .collect(),
            default_port: port_name(class.default_port),
            env: class.env.iter().map(|(k, _)| k.clone()).collect(),
            sleep_after_ms: class.sleep_after.map(ms),
            max_instances: class.max_instances,
            min_instances: class.min_instances,
            max_waiting: class.max_waiting,
            max_concurrent_requests: class.max_concurrent_requests,
            readiness: probe(&class.readiness),
            liveness: class.liveness.as_ref().map(probe),
            stop_timeout_ms: ms(class.stop_timeout),
            user: class.user.clone(),
            fixed_keys: class.fixed_keys.clone(),
            live: class.live(),
            known: class.known(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}
