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

    /// Counts one start for `client`; `Err(wait)` when it is over its limit (nothing counted).
    pub(crate) fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        if self.starts == 0 || self.per.is_zero() {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_ABOVE {
            windows.retain(|_, (since, _)| now.duration_since(*since) < self.per);
        }
        let (since, count) = windows.entry(client).or_insert((now, 0));
        if now.duration_since(*since) >= self.per {
            *since = now;
            *count = 0;
        }
        if *count >= self.starts {
            return Err(self.per.saturating_sub(now.duration_since(*since)));
        }
        *count += 1;
        Ok(())
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
            assert!(gate.admit(a).is_ok());
        }
        let wait = gate.admit(a).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(gate.admit(b).is_ok(), "another client has its own window");
    }

    #[test]
    fn a_window_that_is_over_starts_again() {
        let gate = ColdStartGate::new(1, Duration::from_millis(30));
        let a: IpAddr = "::1".parse().unwrap();
        assert!(gate.admit(a).is_ok());
        assert!(gate.admit(a).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(gate.admit(a).is_ok());
    }

    #[test]
    fn no_limit_when_off() {
        let gate = ColdStartGate::new(0, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert!(gate.admit(a).is_ok());
        }
    }
}
