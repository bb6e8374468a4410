//! `/metrics` (Prometheus), `/v1/status` (the CLI's summary) and `/v1/stats` (the numbers the
//! dashboard charts). Counters come from the pre-registered route and class stats; gauges of
//! state (instances by state, waiting, in flight) from the instance table at this moment.

use crate::views::unix_ms;
use crate::Admin;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;
use valet_core::InstanceState;
use valet_instances::ClassRuntime;
use valet_metrics::{ClassSample, Exposition, HistogramSnapshot, RouteStats, LATENCY_BOUNDS};

/// What the instance table says about one class right now.
#[derive(Default)]
struct Census {
    states: HashMap<InstanceState, u64>,
    waiting: u64,
    active: u64,
    /// Replicas 1 and up of scaled keys with a task.
    replicas: u64,
    /// Instances running per key (every replica), running keys only: at most
    /// `max_instances` entries, however many keys the class has seen.
    keys: BTreeMap<String, u64>,
}

impl Admin {
    fn census(&self) -> HashMap<String, Census> {
        let mut by_class: HashMap<String, Census> = HashMap::new();
        let node = self.instances.node();
        // Keys another replica owns run no instance here: they are that replica's to count.
        let own = |info: &valet_instances::InstanceInfo| info.owner.as_deref() == node;
        for info in self.instances.list().into_iter().filter(own) {
            let census = by_class.entry(info.class).or_default();
            *census.states.entry(info.state).or_default() += 1;
            census.waiting += u64::from(info.waiting);
            census.active += info.active as u64;
            let running = !matches!(info.state, InstanceState::Stopped | InstanceState::Crashed);
            census.replicas += u64::from(info.replica > 0 && running);
            if running {
                *census.keys.entry(info.key).or_default() += 1;
            }
        }
        by_class
    }
}

pub async fn metrics(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    let census = admin.census();
    let empty = Census::default();
    // Config classes, then each project's current version, which carries the series every
    // version of the project shares (labelled `project:<name>` plus its id).
    let classes = admin.every_class();
    let samples: Vec<ClassSample<'_>> = classes
        .iter()
        .map(|class| {
            let c = census.get(&*class.name).unwrap_or(&empty);
            ClassSample {
                name: class.label(),
                project: class.project.as_ref().map(|p| &*p.id),
                stats: &class.stats,
                states: InstanceState::ALL
                    .iter()
                    .map(|s| (s.as_str(), c.states.get(s).copied().unwrap_or(0)))
                    .collect(),
                waiting: c.waiting,
                active: c.active,
                replicas: c.replicas,
                // Per-key series only where a key may have several instances (issue 21).
                keys: match class.scale {
                    Some(_) => c.keys.iter().map(|(k, n)| (&**k, *n)).collect(),
                    None => Vec::new(),
                },
            }
        })
        .collect();
    let routes: Vec<Arc<RouteStats>> = admin
        .routes
        .iter()
        .cloned()
        .chain(
            classes
                .iter()
                .filter_map(|c| c.project.as_ref().map(|p| p.requests.clone())),
        )
        .collect();
    let mut out = Exposition::new();
    valet_metrics::render(&mut out, &routes, &samples);
    if let Some(cluster) = admin.instances.coordinator() {
        cluster_metrics(&mut out, cluster.node(), cluster.counters());
    }
    out.family(
        "valet_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    out.sample(
        "valet_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.family(
        "valet_start_time_seconds",
        "gauge",
        "When this valet started (Unix seconds).",
    );
    out.sample(
        "valet_start_time_seconds",
        &[],
        unix_ms(admin.started_at) / 1000,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.finish(),
    )
}

/// Lease counters of this replica (cluster mode), labelled with its node name.
fn cluster_metrics(out: &mut Exposition, node: &str, c: valet_instances::ClusterCounters) {
    let series = [
        (
            "valet_cluster_leases_taken_total",
            "counter",
            "Leases this replica took (first claims, takeovers, claims after a release).",
            c.taken,
        ),
        (
            "valet_cluster_leases_lost_total",
            "counter",
            "Leases this replica lost: not renewed in time (fenced) or found taken.",
            c.lost,
        ),
        (
            "valet_cluster_renewals_total",
            "counter",
            "Lease renewal rounds that succeeded (one statement renews every lease).",
            c.renewals,
        ),
        (
            "valet_cluster_renewals_late_total",
            "counter",
            "Renewal rounds that failed or came over half a lease_ttl after the last good one.",
            c.renewals_late,
        ),
        (
            "valet_cluster_leases_held",
            "gauge",
            "Leases this replica holds now.",
            c.held,
        ),
    ];
    for (name, kind, help, value) in series {
        out.family(name, kind, help);
        out.sample(name, &[("node", node)], value);
    }
}

/// `/v1/cluster`: the replicas, the held leases and this replica's lease counters, as the
/// store has them now. 404 outside cluster mode.
pub async fn cluster(State(admin): State<Arc<Admin>>) -> axum::response::Response {
    let Some(cluster) = admin.instances.coordinator() else {
        let body = json!({
            "error": "not_clustered",
            "message": "this valet runs alone: its config has no [cluster]",
        });
        return (axum::http::StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    match cluster.view().await {
        Ok(view) => Json(view).into_response(),
        Err(e) => {
            let body = json!({
                "error": "store_unavailable",
                "message": format!("the cluster store did not answer: {}", e.0),
            });
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

impl Admin {
    /// Config classes, then the current version of every project (by label).
    fn every_class(&self) -> Vec<Arc<ClassRuntime>> {
        let mut projects = self.instances.project_classes();
        projects.sort_by(|a, b| a.label().cmp(b.label()));
        self.instances
            .classes()
            .iter()
            .cloned()
            .chain(projects)
            .collect()
    }
}

/// Requests and latency of a class, summed over its routes (a project: its own series).
fn class_requests(admin: &Admin, class: &ClassRuntime) -> (u64, u64, HistogramSnapshot) {
    let (mut requests, mut errors) = (0, 0);
    let mut duration = HistogramSnapshot::empty(LATENCY_BOUNDS);
    let routes: Vec<&Arc<RouteStats>> = match &class.project {
        Some(project) => vec![&project.requests],
        None => admin
            .routes
            .iter()
            .filter(|r| *r.class == *class.name)
            .collect(),
    };
    for route in routes {
        let snap = route.snapshot();
        requests += snap.status.iter().map(|(_, n)| n).sum::<u64>();
        errors += snap
            .status
            .iter()
            .filter(|(s, _)| *s >= 500)
            .map(|(_, n)| n)
            .sum::<u64>();
        duration.merge(&snap.duration);
    }
    (requests, errors, duration)
}

/// `{id, name}` of a project's class, `null` for a config class.
fn project_of(class: &ClassRuntime) -> Value {
    class
        .project
        .as_ref()
        .map_or(Value::Null, |p| json!({ "id": &*p.id, "name": &*p.name }))
}

/// A histogram in JSON: cumulative buckets as `[le, count]`, `le` null for `+Inf`.
fn histogram(h: &HistogramSnapshot) -> Value {
    let buckets: Vec<Value> = h.cumulative().map(|(le, n)| json!([le, n])).collect();
    json!({ "count": h.count(), "sum_s": h.sum_seconds(), "buckets": buckets })
}

#[derive(Serialize)]
struct StatusView {
    version: &'static str,
    started_at: u64,
    uptime_ms: u64,
    driver: &'static str,
    listen: String,
    admin_listen: String,
    /// Cluster mode: this replica's node name.
    node: Option<String>,
    classes: Vec<Value>,
}

pub async fn status(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let census = admin.census();
    let classes = admin
        .every_class()
        .iter()
        .map(|class| {
            let states: serde_json::Map<String, Value> = census
                .get(&*class.name)
                .map(|c| {
                    c.states
                        .iter()
                        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
                        .collect()
                })
                .unwrap_or_default();
            let (requests, errors, _) = class_requests(&admin, class);
            json!({
                "name": class.label(),
                "class": &*class.name,
                "project": project_of(class),
                "live": class.live(),
                "known": class.known(),
                "max_instances": class.max_instances,
                "states": states,
                "requests": requests,
                "errors": errors,
                "cold_starts": class.stats.cold_start.snapshot().count(),
                "crashes": class.stats.crashes.get(),
            })
        })
        .collect();
    let view = StatusView {
        version: env!("CARGO_PKG_VERSION"),
        started_at: unix_ms(admin.started_at),
        uptime_ms: admin.started.elapsed().as_millis() as u64,
        driver: admin.instances.driver_name(),
        listen: admin.listen.clone(),
        admin_listen: admin.admin_listen.clone(),
        node: admin.instances.node().map(str::to_string),
        classes,
    };
    Json(serde_json::to_value(view).unwrap_or_default())
}

pub async fn stats(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let census = admin.census();
    let every = admin.every_class();
    let classes: Vec<Value> = every
        .iter()
        .map(|class| {
            let (requests, errors, duration) = class_requests(&admin, class);
            let c = census.get(&*class.name);
            let s = &class.stats;
            json!({
                "class": class.label(),
                "project": project_of(class),
                "requests": requests,
                "errors": errors,
                "duration": histogram(&duration),
                "upstream": histogram(&s.upstream.snapshot()),
                "cold_start": histogram(&s.cold_start.snapshot()),
                "crashes": s.crashes.get(),
                "restarts": s.restarts.get(),
                "websockets_open": s.websockets_open(),
                "request_bytes": s.request_bytes.get(),
                "response_bytes": s.response_bytes.get(),
                "waiting": c.map_or(0, |c| c.waiting),
                "active": c.map_or(0, |c| c.active),
            })
        })
        .collect();
    let routes: Vec<Value> = admin
        .routes
        .iter()
        .map(|r| {
            let snap = r.snapshot();
            let status: serde_json::Map<String, Value> =
                snap.status.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
            json!({ "route": &*r.route, "class": &*r.class, "status": status, "duration": histogram(&snap.duration) })
        })
        .collect();
    Json(json!({ "at": unix_ms(SystemTime::now()), "classes": classes, "routes": routes }))
}
