//! A timer that lives as long as a connection and is moved lazily.
//!
//! A fresh timer per wait is a timer-wheel insert and removal (each under the time driver's
//! lock) for every request. A connection's successive deadlines mostly lie beyond the last
//! one's, so one timer per connection is left where it is, fires early at most once per
//! timeout, and is only then set again.

use std::pin::Pin;
use tokio::time::{Instant, Sleep};

pub struct LazyTimer(Pin<Box<Sleep>>);

impl LazyTimer {
    /// A timer first set to `at` (it is registered only when first waited on).
    pub fn new(at: Instant) -> Self {
        Self(Box::pin(tokio::time::sleep_until(at)))
    }

    /// Resolves once `at` has passed, never before.
    pub async fn reached(&mut self, at: Instant) {
        if self.0.deadline() > at {
            self.0.as_mut().reset(at);
        }
        loop {
            self.0.as_mut().await;
            if Instant::now() >= at {
                return;
            }
            self.0.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    /// Time since `start` in whole milliseconds.
    fn since(start: Instant) -> u128 {
        start.elapsed().as_millis()
    }

    #[tokio::test]
    async fn fires_at_the_deadline_asked_for_whether_earlier_or_later_than_the_last() {
        let start = Instant::now();
        let mut timer = LazyTimer::new(start + 100 * MS);
        // Later than where the timer stands: it fires early, is set again, and only then ends.
        timer.reached(start + 250 * MS).await;
        let waited = since(start);
        assert!((250..400).contains(&waited), "{waited} ms, asked for 250");
        // Earlier than where it stands (set far out first): it is moved back.
        let start = Instant::now();
        timer.reached(start + 100 * MS).await;
        let mut far = LazyTimer::new(start + 60_000 * MS);
        far.reached(start + 150 * MS).await;
        let waited = since(start);
        assert!((150..300).contains(&waited), "{waited} ms, asked for 150");
        // A deadline already past resolves at once.
        let start = Instant::now();
        timer.reached(start - MS).await;
        assert!(since(start) < 50);
    }

    #[tokio::test]
    async fn a_wait_that_another_branch_ends_leaves_the_timer_for_the_next() {
        let start = Instant::now();
        let mut timer = LazyTimer::new(start + 200 * MS);
        let raced = tokio::time::timeout(100 * MS, timer.reached(start + 200 * MS)).await;
        assert!(raced.is_err(), "the other branch won");
        timer.reached(start + 300 * MS).await;
        let waited = since(start);
        assert!((300..450).contains(&waited), "{waited} ms, asked for 300");
    }
}
