//! The gateway's timers, one rule: a deadline that recurs on something long-lived (a client
//! connection, a pooled connection, a body on its way) is a [`LazyTimer`] kept with it; a bound
//! on one single wait that happens once per connection (dialing an instance, a TLS handshake,
//! a turn under `max_concurrent_requests`) is `tokio::time::timeout_at`/`timeout`.
//!
//! A fresh timer per wait is a timer-wheel insert and removal (each under the time driver's
//! lock) for every request or every frame. A connection's successive deadlines mostly lie
//! beyond the last one's, so one timer per connection is left where it is, fires early at most
//! once per timeout, and is only then set again.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub struct LazyTimer(Pin<Box<Sleep>>);

impl LazyTimer {
    /// A timer first set to `at` (it is registered only when first waited on).
    pub fn new(at: Instant) -> Self {
        Self(Box::pin(tokio::time::sleep_until(at)))
    }

    /// Resolves once `at` has passed, never before.
    pub async fn reached(&mut self, at: Instant) {
        std::future::poll_fn(|cx| self.poll_reached(cx, at)).await
    }

    /// Ready once `at` has passed, never before; otherwise `cx` is woken at the latest at `at`.
    pub fn poll_reached(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        if self.0.deadline() > at {
            self.0.as_mut().reset(at);
        }
        loop {
            ready!(self.0.as_mut().poll(cx));
            if Instant::now() >= at {
                return Poll::Ready(());
            }
            self.0.as_mut().reset(at);
        }
    }
}

/// The idle clock of a body on its way: it runs only while the body waits for its next frame,
/// and starts again at each wait. A body that is always ready never allocates its timer nor
/// touches the timer wheel; one that streams (SSE, a large download, a slow upload) keeps one
/// timer for its whole life instead of one per wait.
#[derive(Default)]
pub struct IdleClock {
    timer: Option<LazyTimer>,
    /// When the current wait times out; `None` while the body is not waiting.
    until: Option<Instant>,
}

impl IdleClock {
    /// A frame came: the wait is over.
    pub fn frame(&mut self) {
        self.until = None;
    }

    /// The body waits: ready once it has waited `timeout` in a row.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>, timeout: Duration) -> Poll<()> {
        let until = *self.until.get_or_insert_with(|| Instant::now() + timeout);
        self.timer
            .get_or_insert_with(|| LazyTimer::new(until))
            .poll_reached(cx, until)
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

    #[tokio::test]
    async fn an_idle_clock_counts_each_wait_afresh_and_fires_only_on_a_wait_that_long() {
        let mut clock = IdleClock::default();
        let idle = 100 * MS;
        // Waits of 60 ms, each ended by a frame: 300 ms in all, never 100 ms in a row.
        let start = Instant::now();
        for _ in 0..5 {
            let wait = std::future::poll_fn(|cx| clock.poll_idle(cx, idle));
            assert!(
                tokio::time::timeout(60 * MS, wait).await.is_err(),
                "fired early"
            );
            clock.frame();
        }
        assert!(since(start) >= 300);
        // A wait that lasts: it fires 100 ms after it began, not after the first wait began.
        let start = Instant::now();
        std::future::poll_fn(|cx| clock.poll_idle(cx, idle)).await;
        let waited = since(start);
        assert!((100..250).contains(&waited), "{waited} ms, idle is 100");
    }
}
