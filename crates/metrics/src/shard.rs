//! Per-thread shards. The gateway runs one worker thread per core; if they all added to the same
//! atomic, its cache line would bounce between cores on every request. Each thread instead adds
//! to its own cache-line-sized shard, and a scrape sums the shards.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// One value per shard, each on its own cache line (128 bytes covers adjacent-line prefetch).
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl<T: Default> Sharded<T> {
    pub fn new() -> Self {
        Self {
            shards: (0..shard_count()).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Sharded<T> {
    /// The calling thread's shard.
    #[inline]
    pub fn local(&self) -> &T {
        &self.shards[thread_index() & (self.shards.len() - 1)].0
    }

    /// Every shard, for summing at scrape time.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|p| &p.0)
    }
}

/// A power of two (so a shard is picked with a mask), twice the cores so that gateway workers
/// rarely share one even when `workers` exceeds the core count, capped to bound memory.
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 2).next_power_of_two().min(64)
    })
}

/// A small number per thread, handed out in order of first use. Only threads that record get
/// one, so the gateway's workers (the hot path) take consecutive numbers and distinct shards.
#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        let mut i = index.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed);
            index.set(i);
        }
        i
    })
}

/// A monotonic counter.
#[derive(Default)]
pub struct Counter {
    cells: Sharded<AtomicU64>,
}

impl Counter {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.cells.local().fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_many_threads_add_up() {
        let counter = Arc::new(Counter::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| counter.inc()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 80_000);
    }

    #[test]
    fn shard_count_is_a_power_of_two() {
        assert!(shard_count().is_power_of_two());
    }
}
