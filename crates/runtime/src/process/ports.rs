//! Free loopback ports for new instances.
//!
//! A port is picked by binding `127.0.0.1:0` and closing the listener, for the instance to
//! bind. From then until the instance binds it, the kernel counts the port as free and may
//! give it to the next `bind(0)`: with twenty instances starting together that happened about
//! once in sixty bursts (a birthday collision among the ~14,000 ports `bind(0)` draws from).
//! The instance that binds second exits with "address in use", and until it does, its
//! readiness probe is answered by the other one, so requests for its key reach another key's
//! process. Ports handed out recently are therefore remembered and never handed out twice in
//! that time. Another program on the machine can still take a port in between; the instance
//! then fails to bind and is restarted with fresh ports.

use super::command::PickedPort;
use crate::driver::DriverError;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a handed-out port stays reserved: long enough for a slow instance to bind it.
/// One that bound it keeps it from `bind(0)` by itself from then on.
const HOLD: Duration = Duration::from_secs(60);
/// Most ports remembered; past it the oldest go first. A quarter of what `bind(0)` draws from,
/// so picking never has to skip more than a few.
const MOST: usize = 4096;
/// Ports tried per name before a remembered one is taken anyway (only when the list is nearly
/// full can `bind(0)` keep offering remembered ones).
const TRIES: usize = 32;

/// Ports handed out, oldest first, with when. One list for every driver in the process.
static HANDED_OUT: Mutex<VecDeque<(u16, Instant)>> = Mutex::new(VecDeque::new());

/// Picks one free loopback port per named port (the spec's numbers are ignored), none of them
/// handed out in the last [`HOLD`]. Every listener stays open until all are picked, so two
/// names never get the same port; they are then closed for the instance to bind.
pub(super) fn pick_ports(names: &[(String, u16)]) -> Result<Vec<PickedPort>, DriverError> {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    while handed
        .front()
        .is_some_and(|(_, at)| now.duration_since(*at) >= HOLD)
    {
        handed.pop_front();
    }
    // Skipped ports stay bound too, so `bind(0)` does not offer them again.
    let mut listeners = Vec::with_capacity(names.len());
    let mut picked = Vec::with_capacity(names.len());
    for (name, _) in names {
        let mut tries = 0;
        let port = loop {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| DriverError::io("cannot reserve a loopback port", e))?;
            let port = listener
                .local_addr()
                .map_err(|e| DriverError::io("cannot read a reserved port", e))?
                .port();
            listeners.push(listener);
            tries += 1;
            if tries >= TRIES || !handed.iter().any(|(p, _)| *p == port) {
                break port;
            }
        };
        picked.push((name.clone(), port));
    }
    for (_, port) in &picked {
        if handed.len() == MOST {
            handed.pop_front();
        }
        handed.push_back((*port, now));
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_handed_out_and_released_are_not_handed_out_again() {
        // Released at once, as when instances are slow to bind: the kernel alone would offer
        // some of these again within a few hundred picks.
        let names = [("http".to_string(), 80), ("admin".to_string(), 81)];
        let mut seen = HashSet::new();
        for _ in 0..300 {
            for (_, port) in pick_ports(&names).unwrap() {
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
    }
}
