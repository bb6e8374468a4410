//! The series of one route and of one container class.

use crate::histogram::{
    bounds_in_nanos, Cells, Histogram, HistogramSnapshot, COLD_START_BOUNDS, LATENCY_BOUNDS,
};
use crate::shard::{Counter, Sharded};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Route label of requests that no route matched (served by assets, or 404).
pub const UNROUTED: &str = "(none)";

/// One slot per status code 100..=599; anything above 599 counts as 599.
const STATUS_SLOTS: usize = 500;

/// Requests of one route: counts by status and the latency histogram.
pub struct RouteStats {
    /// The pattern as written (with its host, when it has one).
    pub route: Box<str>,
    /// The class the route goes to; empty for assets; `project:<name>` for a deployed project.
    pub class: Box<str>,
    /// A deployed project's id, rendered as a `project` label: two tenants may both name a
    /// project `api`, and their series must stay apart.
    pub project: Option<Box<str>>,
    nanos: Vec<u64>,
    cells: Sharded<RouteCells>,
}

struct RouteCells {
    status: [AtomicU64; STATUS_SLOTS],
    duration: Cells,
}

impl Default for RouteCells {
    fn default() -> Self {
        Self {
            status: std::array::from_fn(|_| AtomicU64::new(0)),
            duration: Cells::default(),
        }
    }
}

impl RouteStats {
    pub fn new(route: &str, class: &str) -> Self {
        Self {
            route: route.into(),
            class: class.into(),
            project: None,
            nanos: bounds_in_nanos(LATENCY_BOUNDS),
            cells: Sharded::new(),
        }
    }

    /// The requests of one deployed project (every version), labelled `class` and `project`.
    pub fn for_project(route: &str, class: &str, project_id: &str) -> Self {
        Self {
            project: Some(project_id.into()),
            ..Self::new(route, class)
        }
    }

    /// One finished request: its status and the time until its response head was ready.
    #[inline]
    pub fn record(&self, status: u16, elapsed: Duration) {
        let cells = self.cells.local();
        let slot = usize::from(status)
            .saturating_sub(100)
            .min(STATUS_SLOTS - 1);
        cells.status[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        cells.duration.observe(&self.nanos, nanos);
    }

    pub fn snapshot(&self) -> RouteSnapshot {
        let mut by_status = [0u64; STATUS_SLOTS];
        let mut duration = HistogramSnapshot::empty(LATENCY_BOUNDS);
        for cells in self.cells.iter() {
            for (total, cell) in by_status.iter_mut().zip(&cells.status) {
                *total += cell.load(Ordering::Relaxed);
            }
            cells.duration.add_to(&mut duration);
        }
        let status = by_status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(slot, n)| (slot as u16 + 100, *n))
            .collect();
        RouteSnapshot { status, duration }
    }
}

/// Summed counts of a route at one moment.
#[derive(Debug, Clone)]
pub struct RouteSnapshot {
    /// `(status, requests)` for every status seen, in order.
    pub status: Vec<(u16, u64)>,
    pub duration: HistogramSnapshot,
}

/// Everything counted per container class.
pub struct ClassStats {
    /// Time from sending a request to an instance until its response head arrived.
    pub upstream: Histogram,
    /// Launch to ready, for every start (first starts and restarts).
    pub cold_start: Histogram,
    /// Exits valet did not ask for, failed starts and failed liveness checks.
    pub crashes: Counter,
    /// Restarts after a crash (by backoff, not by a new request).
    pub restarts: Counter,
    /// Bodies the gateway passed to instances (declared lengths) and WebSocket bytes upstream.
    pub request_bytes: Counter,
    /// Bodies instances answered with, and WebSocket bytes downstream.
    pub response_bytes: Counter,
    websockets_open: AtomicI64,
    pub websockets: Counter,
    /// Requests sent to the replica that owns their key (cluster mode).
    pub forwarded: Counter,
    /// Replicas started for a key's load beyond its first instance (`scale`).
    pub scale_ups: Counter,
    /// Such replicas put to sleep after `sleep_after` idle.
    pub scale_downs: Counter,
}

impl Default for ClassStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ClassStats {
    pub fn new() -> Self {
        Self {
            upstream: Histogram::new(LATENCY_BOUNDS),
            cold_start: Histogram::new(COLD_START_BOUNDS),
            crashes: Counter::new(),
            restarts: Counter::new(),
            forwarded: Counter::new(),
            scale_ups: Counter::new(),
            scale_downs: Counter::new(),
            request_bytes: Counter::new(),
            response_bytes: Counter::new(),
            websockets_open: AtomicI64::new(0),
            websockets: Counter::new(),
        }
    }

    /// Counts a WebSocket as open until the guard drops.
    pub fn websocket_opened(&self) -> OpenGuard<'_> {
        self.websockets.inc();
        self.websockets_open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(&self.websockets_open)
    }

    pub fn websockets_open(&self) -> u64 {
        self.websockets_open.load(Ordering::Relaxed).max(0) as u64
    }
}

/// Holds one open WebSocket in [`ClassStats`]' gauge.
pub struct OpenGuard<'a>(&'a AtomicI64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_count_by_status() {
        let r = RouteStats::new("/api/*", "Api");
        r.record(200, Duration::from_millis(1));
        r.record(200, Duration::from_millis(2));
        r.record(503, Duration::from_millis(3));
        r.record(999, Duration::ZERO);
        let s = r.snapshot();
        assert_eq!(s.status, vec![(200, 2), (503, 1), (599, 1)]);
        assert_eq!(s.duration.count(), 4);
    }

    #[test]
    fn websocket_gauge_follows_guards() {
        let c = ClassStats::new();
        let a = c.websocket_opened();
        let b = c.websocket_opened();
        assert_eq!(c.websockets_open(), 2);
        drop(a);
        drop(b);
        assert_eq!(c.websockets_open(), 0);
        assert_eq!(c.websockets.get(), 2);
    }
}
