//! Per-route rate limits (`rate_limit = { requests, per, by }`), checked before any instance is
//! woken. GCRA from governor: no background refill task, one atomic per check.

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

/// One route's limiter. `by = "route"` shares one bucket among all clients.
pub struct RouteLimiter {
    limiter: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>,
    per_client: bool,
}

impl RouteLimiter {
    /// `requests` per `per`, with bursts of up to `requests`.
    pub fn new(requests: u32, per: Duration, by: &str) -> Self {
        let burst = NonZeroU32::new(requests.max(1)).expect("at least 1");
        let period = (per / burst.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("non-zero period")
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            per_client: by != "route",
        }
    }

    /// `Err(wait)` when the client is over its limit.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let key = if self.per_client {
            client
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets clients whose buckets are full again, so a stream of new addresses cannot grow
    /// the table without bound. Called from a periodic task.
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
