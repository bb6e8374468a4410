//! Who may start an instance. Keys come from clients, so a client could otherwise fill a class
//! with keys of its own and lock every other key out until its instances sleep:
//!
//! - a client address may cause at most `server.cold_starts_per_client` starts per window
//!   ([`ColdStartGate`]; over it the request gets 429 with `Retry-After`);
//! - when a class runs its `max_instances`, the least recently used instance with nothing in
//!   flight and nobody waiting (and not kept up by `min_instances`) is put to sleep to make room
//!   ([`idle_victim`]); only when every instance is busy is the new key refused (503);
//! - a refused key leaves no record behind ([`crate::collect::forget_unstarted`]).

use crate::class::ClassRuntime;
use crate::instance::Instance;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use valet_core::InstanceState;

/// Clients remembered before windows that are over are dropped, so a stream of addresses cannot
/// grow the table without bound.
const SWEEP_ABOVE: usize = 4096;

/// Fixed-window count of cold starts per client address. Taken only on the cold path (a
/// request that starts an instance), so one mutex is cheap enough.
pub(crate) struct ColdStartGate {
    starts: u32,
    per: Duration,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl ColdStartGate {
    /// `starts = 0` or a zero window: no limit.
    pub(crate) fn new(starts: u32, per: Duration) -> Self {
        Self {
            starts,
            per,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `client` has used up its starts in the current window. Counts
    /// nothing: a start is counted by [`Self::count`] once it really happens, so a request
    /// refused for another reason (a full class) costs the client nothing.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.with_window(client, |since, count, now| {
            if *count >= self.starts {
                Err(self.per.saturating_sub(now.duration_since(*since)))
            } else {
                Ok(())
            }
        })
    }

    /// Counts one start for `client`.
    pub(crate) fn count(&self, client: IpAddr) {
        self.with_window(client, |_, count, _| {
            *count += 1;
            Ok(())
        })
        .ok();
    }

    fn with_window(
        &self,
        client: IpAddr,
        f: impl FnOnce(&mut Instant, &mut u32, Instant) -> Result<(), Duration>,
    ) -> Result<(), Duration> {
        if self.starts == 0 || self.per.is_zero() {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_ABOVE {
            windows.retain(|_, (since, _)| now.duration_since(*since) < self.per);
        }
        let (since, count) = windows.entry(bucket(client)).or_insert((now, 0));
        if now.duration_since(*since) >= self.per {
            *since = now;
            *count = 0;
        }
        f(since, count, now)
    }
}

/// The address a window belongs to: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network: a client holding a /64 could otherwise take a new address per start).
fn bucket(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The instance of `class` to put to sleep so that `wanted` can start: running, nothing in
/// flight, nobody waiting, not pinned by `min_instances`, least recently used first.
pub(crate) fn idle_victim(class: &ClassRuntime, wanted: &Arc<Instance>) -> Option<Arc<Instance>> {
    let map = class.instances.pin();
    map.values()
        .filter(|inst| !Arc::ptr_eq(inst, wanted))
        .filter(|inst| {
            inst.has_task()
                && inst.active.load(Ordering::SeqCst) == 0
                && inst.waiting.load(Ordering::Acquire) == 0
                && matches!(
                    inst.state(),
                    InstanceState::Ready | InstanceState::Backoff | InstanceState::Crashed
                )
        })
        .filter(|inst| !class.is_pinned(inst))
        .min_by_key(|inst| inst.last_active_ms())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_cold_starts_waits_and_others_do_not() {
        let gate = ColdStartGate::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(gate.check(a).is_ok());
            gate.count(a);
        }
        let wait = gate.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(gate.check(b).is_ok(), "another client has its own window");
    }

    #[test]
    fn checks_alone_count_nothing_and_a_v6_slash_64_is_one_client() {
        let gate = ColdStartGate::new(2, Duration::from_secs(60));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for _ in 0..10 {
            assert!(gate.check(a).is_ok(), "a refused start costs nothing");
        }
        gate.count(a);
        gate.count(same_net);
        assert!(gate.check(a).is_err());
        assert!(gate.check(same_net).is_err());
        assert!(gate.check(other_net).is_ok());
    }

    #[test]
    fn a_window_that_is_over_starts_again() {
        let gate = ColdStartGate::new(1, Duration::from_millis(30));
        let a: IpAddr = "::1".parse().unwrap();
        assert!(gate.check(a).is_ok());
        gate.count(a);
        assert!(gate.check(a).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(gate.check(a).is_ok());
    }

    #[test]
    fn no_limit_when_off() {
        let gate = ColdStartGate::new(0, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            gate.count(a);
            assert!(gate.check(a).is_ok());
        }
    }
}
