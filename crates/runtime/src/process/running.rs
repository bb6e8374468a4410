//! One running instance of the process driver: its leader, its process group and its output.

use super::groups::Groups;
use crate::driver::{Endpoints, ExitStatus, Running};
use crate::logs::LogRing;
use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Child;
use tokio::task::JoinHandle;

/// How long a finished instance waits for its last output to reach the ring and the file. The
/// pipes close as soon as the group is dead, unless a descendant escaped into its own session.
const LOG_DRAIN: Duration = Duration::from_secs(1);

pub(super) struct ProcessInstance {
    /// The group leader; kept here because `Child::wait` is cancel-safe.
    pub(super) child: Child,
    /// Leader pid, which is also the process group id.
    pub(super) pid: u32,
    pub(super) endpoints: Endpoints,
    pub(super) logs: Arc<LogRing>,
    /// Tasks copying stdout and stderr.
    pub(super) pumps: Vec<JoinHandle<()>>,
    pub(super) groups: Groups,
    /// Its loopback ports, guarded in [`super::listeners`] while it lives.
    pub(super) ports: Vec<u16>,
    /// Set once the leader has been reaped and its group killed.
    pub(super) status: Option<ExitStatus>,
    /// Until when the output pumps are waited for, fixed when the leader is reaped. Kept here,
    /// not taken anew on each call: the instance layer polls `exited` in a select loop, which
    /// drops and calls it again on every other event (each readiness probe, each request), and
    /// a deadline taken per call was never reached while an escaped descendant kept the pipes
    /// open: the exit went unnoticed until the readiness timeout, or for as long as events came.
    pub(super) drain_until: Option<tokio::time::Instant>,
}

impl ProcessInstance {
    fn signal_group(&self, signal: Signal) {
        // ESRCH only means the whole group is gone already.
        if let Err(e) = killpg(Pid::from_raw(self.pid as i32), signal) {
            if e != nix::errno::Errno::ESRCH {
                tracing::warn!(pgid = self.pid, %signal, error = %e, "cannot signal process group");
            }
        }
    }

    /// After the leader is reaped: nothing of the group may outlive it.
    fn finish(&mut self, waited: std::io::Result<std::process::ExitStatus>) -> ExitStatus {
        let status = match waited {
            Ok(status) => ExitStatus {
                code: status.code(),
                signal: status.signal(),
            },
            Err(e) => {
                tracing::warn!(pid = self.pid, error = %e, "cannot wait for instance process");
                ExitStatus::default()
            }
        };
        self.signal_group(Signal::SIGKILL);
        self.groups.forget(self.pid);
        super::listeners::retire(self.pid as i32, &self.ports);
        self.status = Some(status);
        tracing::debug!(pid = self.pid, %status, "instance process ended");
        status
    }

    /// Waits (bounded) for the output pumps, so the last lines are in the ring and the file
    /// when the caller reads them. Cancel-safe: a pump is dropped from the list only once done.
    async fn drain_logs(&mut self) {
        let deadline = *self
            .drain_until
            .get_or_insert_with(|| tokio::time::Instant::now() + LOG_DRAIN);
        while let Some(pump) = self.pumps.last_mut() {
            if tokio::time::timeout_at(deadline, pump).await.is_err() {
                tracing::warn!(pid = self.pid, "instance output still open after exit");
                self.pumps.clear();
                return;
            }
            self.pumps.pop();
        }
    }
}

#[async_trait]
impl Running for ProcessInstance {
    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn logs(&self) -> Arc<LogRing> {
        self.logs.clone()
    }

    async fn exited(&mut self) -> ExitStatus {
        let status = match self.status {
            Some(status) => status,
            None => {
                let waited = self.child.wait().await;
                self.finish(waited)
            }
        };
        self.drain_logs().await;
        status
    }

    async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        let status = match self.status {
            Some(status) => status,
            None => {
                self.signal_group(Signal::SIGTERM);
                let waited = match tokio::time::timeout(timeout, self.child.wait()).await {
                    Ok(waited) => waited,
                    Err(_) => {
                        tracing::info!(
                            pid = self.pid,
                            ?timeout,
                            "instance ignored SIGTERM; killing it"
                        );
                        self.signal_group(Signal::SIGKILL);
                        self.child.wait().await
                    }
                };
                self.finish(waited)
            }
        };
        self.drain_logs().await;
        status
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        if self.status.is_none() {
            // kill_on_drop only reaches the leader; its descendants share its group.
            self.signal_group(Signal::SIGKILL);
            self.groups.forget(self.pid);
            super::listeners::retire(self.pid as i32, &self.ports);
        }
    }
}
