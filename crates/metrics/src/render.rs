//! The Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then one line per
//! series, every series of a family together.

use crate::histogram::HistogramSnapshot;
use crate::stats::{ClassStats, RouteStats};
use std::fmt::{Display, Write};
use std::sync::Arc;

/// A scrape being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// `_bucket` lines (cumulative, with `le`), then `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        for (le, count) in h.cumulative() {
            let le = le.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds());
        self.sample(&format!("{name}_count"), labels, h.count());
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{name}=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values may hold any text; backslash, quote and newline are escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One class as a scrape sees it: its counters plus what the instance table says right now.
pub struct ClassSample<'a> {
    pub name: &'a str,
    /// A deployed project's id (its `project` label); `name` is then `project:<name>`.
    pub project: Option<&'a str>,
    pub stats: &'a ClassStats,
    /// Instances per state name, every state listed (zeros included) so series never vanish.
    pub states: Vec<(&'static str, u64)>,
    /// Requests waiting for an instance of this class to start.
    pub waiting: u64,
    /// Requests, streams and WebSockets holding an instance of this class.
    pub active: u64,
    /// Instances running as a key's replica 1 and up (`scale`).
    pub replicas: u64,
    /// A class with `scale`: each key with instances running and how many (replica 0
    /// included). Empty for other classes: a series per key is only worth its cardinality
    /// where a key may have several instances, and only running keys are listed, so a class
    /// has at most `max_instances` of these series.
    pub keys: Vec<(&'a str, u64)>,
}

impl ClassSample<'_> {
    fn labels(&self) -> Vec<(&str, &str)> {
        let mut labels = vec![("class", self.name)];
        labels.extend(self.project.map(|id| ("project", id)));
        labels
    }
}

fn route_labels(route: &RouteStats) -> Vec<(&str, &str)> {
    let mut labels = vec![("route", &*route.route), ("class", &*route.class)];
    labels.extend(route.project.as_deref().map(|id| ("project", id)));
    labels
}

/// Writes every request and instance family.
pub fn render(out: &mut Exposition, routes: &[Arc<RouteStats>], classes: &[ClassSample<'_>]) {
    let snapshots: Vec<_> = routes.iter().map(|r| (r, r.snapshot())).collect();
    out.family(
        "valet_requests_total",
        "counter",
        "Requests answered, by route, class and status.",
    );
    for (route, snap) in &snapshots {
        for (status, n) in &snap.status {
            let status = status.to_string();
            let mut labels = route_labels(route);
            labels.push(("status", &status));
            out.sample("valet_requests_total", &labels, n);
        }
    }
    out.family(
        "valet_request_duration_seconds",
        "histogram",
        "Time from request to response head, by route and class.",
    );
    for (route, snap) in &snapshots {
        let labels = route_labels(route);
        out.histogram("valet_request_duration_seconds", &labels, &snap.duration);
    }
    let class_histogram =
        |out: &mut Exposition, name, help, pick: fn(&ClassStats) -> HistogramSnapshot| {
            out.family(name, "histogram", help);
            for c in classes {
                out.histogram(name, &c.labels(), &pick(c.stats));
            }
        };
    class_histogram(
        out,
        "valet_upstream_duration_seconds",
        "Time from sending a request to an instance to its response head, by class.",
        |s| s.upstream.snapshot(),
    );
    class_histogram(
        out,
        "valet_cold_start_duration_seconds",
        "Instance starts (launch to ready), by class; _count is the number of cold starts.",
        |s| s.cold_start.snapshot(),
    );
    out.family(
        "valet_instances",
        "gauge",
        "Known instances by class and state.",
    );
    for c in classes {
        for (state, n) in &c.states {
            let mut labels = c.labels();
            labels.push(("state", state));
            out.sample("valet_instances", &labels, n);
        }
    }
    let per_class =
        |out: &mut Exposition, name, kind, help, value: &dyn Fn(&ClassSample<'_>) -> u64| {
            out.family(name, kind, help);
            for c in classes {
                out.sample(name, &c.labels(), value(c));
            }
        };
    per_class(
        out,
        "valet_instance_restarts_total",
        "counter",
        "Restarts after a crash, by class.",
        &|c| c.stats.restarts.get(),
    );
    per_class(
        out,
        "valet_instance_crashes_total",
        "counter",
        "Unrequested exits, failed starts and failed liveness checks, by class.",
        &|c| c.stats.crashes.get(),
    );
    per_class(
        out,
        "valet_requests_forwarded_total",
        "counter",
        "Requests sent to the replica that owns their key (cluster mode), by class.",
        &|c| c.stats.forwarded.get(),
    );
    per_class(
        out,
        "valet_scale_ups_total",
        "counter",
        "Replicas started beside a key's first instance for its load (scale), by class.",
        &|c| c.stats.scale_ups.get(),
    );
    per_class(
        out,
        "valet_scale_downs_total",
        "counter",
        "Replicas beside a key's first instance put to sleep after sleep_after idle, by class.",
        &|c| c.stats.scale_downs.get(),
    );
    per_class(
        out,
        "valet_replicas",
        "gauge",
        "Instances running as replica 1 and up of their key (scale), by class.",
        &|c| c.replicas,
    );
    out.family(
        "valet_key_replicas",
        "gauge",
        "Instances running for a key (replica 0 included), for classes with scale; a key \
         with none running has no series.",
    );
    for c in classes {
        for (key, n) in &c.keys {
            let mut labels = c.labels();
            labels.push(("key", key));
            out.sample("valet_key_replicas", &labels, n);
        }
    }
    per_class(
        out,
        "valet_waiting_requests",
        "gauge",
        "Requests waiting for an instance to start.",
        &|c| c.waiting,
    );
    per_class(
        out,
        "valet_active_requests",
        "gauge",
        "Requests, streams and WebSockets in flight.",
        &|c| c.active,
    );
    per_class(
        out,
        "valet_request_bytes_total",
        "counter",
        "Request body bytes passed to instances (declared lengths) and WebSocket bytes upstream.",
        &|c| c.stats.request_bytes.get(),
    );
    per_class(
        out,
        "valet_response_bytes_total",
        "counter",
        "Response body bytes from instances and WebSocket bytes downstream.",
        &|c| c.stats.response_bytes.get(),
    );
    per_class(
        out,
        "valet_websocket_connections",
        "gauge",
        "WebSocket tunnels open now.",
        &|c| c.stats.websockets_open(),
    );
    per_class(
        out,
        "valet_websocket_connections_total",
        "counter",
        "WebSocket tunnels opened.",
        &|c| c.stats.websockets.get(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_scrape_has_every_family_and_escapes_labels() {
        let route = Arc::new(RouteStats::new("/a\"b/*", "Api"));
        route.record(200, Duration::from_millis(2));
        let stats = ClassStats::new();
        stats.cold_start.observe(Duration::from_millis(40));
        stats.scale_ups.inc();
        let class = ClassSample {
            name: "Api",
            project: None,
            stats: &stats,
            states: vec![("ready", 1)],
            waiting: 0,
            active: 0,
            replicas: 2,
            // Keys are tenants' text: a quote, a backslash and a newline must not end the
            // label or the line.
            keys: vec![("a\"b\\c\nd", 3), ("w", 1)],
        };
        let mut out = Exposition::new();
        render(&mut out, &[route], &[class]);
        let text = out.finish();
        assert!(
            text.contains(
                "valet_requests_total{route=\"/a\\\"b/*\",class=\"Api\",status=\"200\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("valet_request_duration_seconds_bucket{route=\"/a\\\"b/*\",class=\"Api\",le=\"0.0025\"} 1\n"));
        assert!(text.contains("valet_cold_start_duration_seconds_count{class=\"Api\"} 1\n"));
        assert!(text.contains("valet_instances{class=\"Api\",state=\"ready\"} 1\n"));
        assert!(text.contains("# TYPE valet_upstream_duration_seconds histogram\n"));
        assert!(
            text.contains("valet_scale_ups_total{class=\"Api\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("valet_scale_downs_total{class=\"Api\"} 0\n"));
        assert!(text.contains("valet_replicas{class=\"Api\"} 2\n"));
        assert!(
            text.contains("valet_key_replicas{class=\"Api\",key=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("valet_key_replicas{class=\"Api\",key=\"w\"} 1\n"));
        assert!(text.contains("# TYPE valet_key_replicas gauge\n"));
    }

    #[test]
    fn a_project_is_labelled_with_its_name_and_id() {
        let route = Arc::new(RouteStats::for_project(
            "/containers/*",
            "project:hello",
            "ab12",
        ));
        route.record(200, Duration::from_millis(2));
        let stats = ClassStats::new();
        stats.cold_start.observe(Duration::from_millis(40));
        let class = ClassSample {
            name: "project:hello",
            project: Some("ab12"),
            stats: &stats,
            states: vec![("ready", 1)],
            waiting: 0,
            active: 0,
            replicas: 0,
            keys: vec![("k", 1)],
        };
        let mut out = Exposition::new();
        render(&mut out, &[route], &[class]);
        let text = out.finish();
        assert!(text.contains(
            "valet_requests_total{route=\"/containers/*\",class=\"project:hello\",project=\"ab12\",status=\"200\"} 1\n"
        ), "{text}");
        assert!(text.contains(
            "valet_cold_start_duration_seconds_count{class=\"project:hello\",project=\"ab12\"} 1\n"
        ));
        assert!(text.contains(
            "valet_instances{class=\"project:hello\",project=\"ab12\",state=\"ready\"} 1\n"
        ));
        assert!(text.contains(
            "valet_key_replicas{class=\"project:hello\",project=\"ab12\",key=\"k\"} 1\n"
        ));
    }
}
