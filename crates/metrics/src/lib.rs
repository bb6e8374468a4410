//! valet's metrics: counters and histograms cheap enough for the request hot path, and their
//! Prometheus text rendering.
//!
//! Every series is registered up front: one [`RouteStats`] per configured route (made when the
//! gateway compiles its routes) and one [`ClassStats`] per container class (held by the class).
//! Recording is a thread-local shard lookup and a few relaxed atomic adds: no lock, no map
//! lookup, no allocation. Gauges that describe state (instances by state, waiting requests) are
//! not recorded at all; the admin API computes them from the instance table at scrape time.
#![forbid(unsafe_code)]

mod histogram;
mod render;
mod shard;
mod stats;

pub use histogram::{Histogram, HistogramSnapshot, COLD_START_BOUNDS, LATENCY_BOUNDS};
pub use render::{render, ClassSample, Exposition};
pub use shard::{Counter, Sharded};
pub use stats::{ClassStats, OpenGuard, RouteSnapshot, RouteStats, UNROUTED};
