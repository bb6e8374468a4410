//! Histograms with fixed buckets and atomic counts, sharded per thread like [`crate::Counter`].

use crate::shard::Sharded;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) for request and upstream latency: fine below a millisecond, where a
/// warm proxy hop lives, up to the minute a long request may take.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Upper bounds (seconds) for cold starts: from a sub-10 ms process start to a container that
/// takes minutes to pull and boot.
pub const COLD_START_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// Most finite buckets a histogram may have; one more slot holds `+Inf`.
const MAX_BOUNDS: usize = 16;

/// The counts of one shard. Buckets are not cumulative here; rendering accumulates them.
pub(crate) struct Cells {
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    sum_nanos: AtomicU64,
}

impl Default for Cells {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Cells {
    #[inline]
    pub(crate) fn observe(&self, bounds: &[u64], nanos: u64) {
        let slot = bounds
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(bounds.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn add_to(&self, snapshot: &mut HistogramSnapshot) {
        for (total, cell) in snapshot.buckets.iter_mut().zip(&self.buckets) {
            *total += cell.load(Ordering::Relaxed);
        }
        snapshot.sum_nanos += self.sum_nanos.load(Ordering::Relaxed);
    }
}

/// Bucket bounds in nanoseconds, so that observing compares integers.
pub(crate) fn bounds_in_nanos(bounds: &'static [f64]) -> Vec<u64> {
    assert!(bounds.len() <= MAX_BOUNDS, "at most {MAX_BOUNDS} buckets");
    bounds.iter().map(|s| (s * 1e9) as u64).collect()
}

/// A histogram of durations.
pub struct Histogram {
    bounds: &'static [f64],
    nanos: Vec<u64>,
    cells: Sharded<Cells>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            nanos: bounds_in_nanos(bounds),
            cells: Sharded::new(),
        }
    }

    #[inline]
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.cells.local().observe(&self.nanos, nanos);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut snapshot = HistogramSnapshot::empty(self.bounds);
        self.cells.iter().for_each(|c| c.add_to(&mut snapshot));
        snapshot
    }
}

/// Summed counts of a histogram at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// Per-bucket counts, not cumulative; the last one is above every bound (`+Inf`).
    pub buckets: [u64; MAX_BOUNDS + 1],
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    pub fn empty(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: [0; MAX_BOUNDS + 1],
            sum_nanos: 0,
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }

    /// Running totals per bound, as Prometheus wants them: `(le, count)`, ending with `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<f64>, u64)> + '_ {
        let bounds = self
            .bounds
            .iter()
            .map(|b| Some(*b))
            .chain(std::iter::once(None));
        let counts = self.buckets[..self.bounds.len()]
            .iter()
            .copied()
            .chain(std::iter::once(
                self.buckets[self.bounds.len()..].iter().sum(),
            ));
        bounds.zip(counts).scan(0u64, |total, (le, n)| {
            *total += n;
            Some((le, *total))
        })
    }

    /// Adds another snapshot of the same bounds (for totals across routes).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_nanos += other.sum_nanos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(LATENCY_BOUNDS);
        h.observe(Duration::from_micros(300)); // <= 0.5 ms
        h.observe(Duration::from_micros(500)); // == 0.5 ms: bounds are inclusive
        h.observe(Duration::from_millis(3)); // <= 5 ms
        h.observe(Duration::from_secs(600)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        let cumulative: Vec<_> = s.cumulative().collect();
        assert_eq!(cumulative[0], (Some(0.0005), 2));
        assert_eq!(cumulative[3], (Some(0.005), 3));
        assert_eq!(*cumulative.last().unwrap(), (None, 4));
        assert!((s.sum_seconds() - 600.0038).abs() < 1e-9);
    }
}
