//! The lifecycle of one instance, as DESIGN.md names it.

use serde::Serialize;
use std::fmt;

/// `stopped -> starting -> ready -> stopping -> stopped`, plus `crashed` and `backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Not running; the next request starts it.
    Stopped,
    /// Process or container launched, readiness not yet passed.
    Starting,
    /// Passed readiness; requests go straight to it.
    Ready,
    /// Asked to stop (idle, shutdown, admin); waits for exit.
    Stopping,
    /// Exited without being asked; exit code and last log lines are kept.
    Crashed,
    /// Crashed and waiting out a restart delay.
    Backoff,
}

impl InstanceState {
    pub const ALL: [InstanceState; 6] = [
        Self::Stopped,
        Self::Starting,
        Self::Ready,
        Self::Stopping,
        Self::Crashed,
        Self::Backoff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Stopping => "stopping",
            Self::Crashed => "crashed",
            Self::Backoff => "backoff",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
