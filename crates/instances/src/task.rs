//! The task of one live instance: start it, probe it ready, watch it while it serves, put it to
//! sleep when idle, restart it with backoff when it crashes. One task per live instance; a
//! sleeping instance has none. Requests talk to it only on the cold path (its mailbox).

use crate::instance::{Command, Instance, Ready};
use crate::owner::{Claim, Coordinator, FenceAt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use valet_core::{InstanceState, Shutdown};
use valet_runtime::{logfile, ProbeError};
use valet_runtime::{Driver, ExitStatus, InstanceSpec, Running};

/// Consecutive failures after which requests get 503 at once instead of waiting for a restart.
pub(crate) const CRASH_LOOP: u32 = 3;
/// An instance that served this long has its failure count reset by its next crash.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Lines of output kept with a crash for the operator (the warning and `Status::last_log`).
const CRASH_LOG_LINES: usize = 10;
/// Bytes of those lines at most: one line may be 16 KiB, and the warning should stay readable.
const CRASH_LOG_BYTES: usize = 2 * 1024;

/// What clients are told while this replica cannot ask the cluster store who runs a key.
const STORE_UNREACHABLE: &str =
    "the cluster store is unreachable, so no replica can start this instance now";

/// Restart delay after `failures` consecutive failures: 100 ms doubling, at most 30 s.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_millis(100u64 << exp).min(Duration::from_secs(30))
}

/// How one life of the instance ended.
enum End {
    /// Stopped on request, idleness or shutdown.
    Stopped { shutdown: bool },
    /// Exited by itself, failed to start, or failed liveness.
    Failed {
        message: String,
        exit: Option<ExitStatus>,
        served_for: Duration,
    },
}

pub(crate) struct Task {
    pub inst: Arc<Instance>,
    pub driver: Arc<dyn Driver>,
    pub mailbox: mpsc::UnboundedReceiver<Command>,
    pub shutdown: Shutdown,
    /// Lives started by this task so far: a `Replace` concerns the adopted container, which is
    /// the first life; a later life (restart after a crash) already runs the current config.
    pub lives: u32,
    /// Cluster mode: the store that says whether this replica may run the key.
    pub coordinator: Option<Arc<dyn Coordinator>>,
    /// The lease this task holds (cluster mode), released when the task ends.
    pub epoch: Option<u64>,
    /// When that lease is fenced (cluster mode), for the ready pointer.
    pub fence_at: Option<Arc<FenceAt>>,
    /// The lease was lost (not renewed in time, or taken): the task ends after this life
    /// whatever is queued, and the next request claims the key again.
    pub fenced: bool,
}

impl Task {
    pub(crate) async fn run(mut self) {
        if let Some(coordinator) = self.coordinator.clone() {
            if !self.claim(&*coordinator).await {
                self.finish_now();
                return;
            }
        }
        loop {
            let end = self.life().await;
            // The drivers drain a finished process's output before `exited` returns, so the
            // ring holds its last words; they go with the crash, the ring goes with the life.
            let ring = self
                .inst
                .logs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            match end {
                End::Stopped { shutdown: true } => {
                    // The record keeps its control (no new task starts during a shutdown).
                    self.inst.class.release_slot();
                    break;
                }
                End::Stopped { shutdown: false } => {
                    self.inst.set_status(|s| s.state = InstanceState::Stopped);
                }
                End::Failed {
                    message,
                    exit,
                    served_for,
                } => {
                    let log_tail = ring.map(|r| crash_tail(r.tail(CRASH_LOG_LINES)));
                    let log_tail = log_tail.unwrap_or_default();
                    if self.crashed(message, exit, served_for, log_tail).await {
                        continue;
                    }
                }
            }
            if self.fenced {
                self.finish_now();
                // The stop was published while the task was still registered, and the wakes
                // the waiters queued are dropped with the mailbox: a waiter that looked in
                // between (another worker thread) saw "stopped, has a task" and waits for a
                // change. Publish again now that the key has no task, so it starts one.
                self.inst.set_status(|_| {});
                break;
            }
            if self.try_finish() {
                break;
            }
        }
        if let (Some(coordinator), Some(epoch)) = (&self.coordinator, self.epoch) {
            coordinator.release(&self.inst.lease_id(), epoch);
        }
    }

    /// Asks the cluster whether this replica may run the key. True: it may (the lease is
    /// held). False: another replica owns it (the record now routes to it) or the store could
    /// not say (waiters get 503 with `Retry-After` for a second, so a down store is not asked
    /// once per request).
    async fn claim(&mut self, coordinator: &dyn Coordinator) -> bool {
        let lease_id = self.inst.lease_id();
        let claimed = tokio::select! {
            claimed = coordinator.claim(&lease_id) => claimed,
            _ = self.shutdown.wait() => return false,
        };
        match claimed {
            Ok(Claim::Mine { epoch }) => {
                self.epoch = Some(epoch);
                self.fence_at = coordinator.fence_at(&lease_id);
                self.inst.set_status(|s| {
                    if s.claim_refused {
                        s.claim_refused = false;
                        s.failures = 0;
                        s.message = None;
                    }
                });
                true
            }
            Ok(Claim::Theirs(route)) => {
                let ports = vec![route.endpoint; self.inst.class.ports.len()];
                tracing::debug!(instance = %self.inst.id, owner = %route.node, "key owned by another replica");
                self.inst.ready.store(Some(Arc::new(Ready {
                    ports,
                    via: Some(route),
                    epoch: None,
                    fence_at: None,
                })));
                self.inst.set_status(|s| {
                    s.state = InstanceState::Stopped;
                    // The store answered: a refusal's crash-loop count is not the instance's,
                    // and would otherwise make the first failed start here a 503 at once.
                    if s.claim_refused {
                        s.claim_refused = false;
                        s.failures = 0;
                    }
                    s.message = None;
                });
                false
            }
            Err(e) => {
                tracing::warn!(instance = %self.inst.id, error = %e.0, "cannot claim the key: cluster store unreachable");
                self.inst.set_status(|s| {
                    s.state = InstanceState::Crashed;
                    s.message = Some(format!("cluster store unreachable: {}", e.0));
                    // Clients are told the store is the trouble, not the instance (which
                    // never ran), and not the store's own error, which names its address.
                    s.public_reason = Some(STORE_UNREACHABLE.into());
                    s.failures = s.failures.max(CRASH_LOOP);
                    s.claim_refused = true;
                    s.retry_at = Some(Instant::now() + Duration::from_secs(1));
                });
                false
            }
        }
    }

    /// Whether this replica still holds the key's lease under the epoch the task claimed
    /// (always, outside cluster mode). Checked before the ready pointer is published: a fence
    /// that came while the instance started cleared a pointer that was not set yet.
    fn still_owner(&self) -> bool {
        match (&self.coordinator, self.epoch) {
            (Some(coordinator), Some(epoch)) => {
                coordinator.epoch_of(&self.inst.lease_id()) == Some(epoch)
            }
            _ => true,
        }
    }

    /// Ends the task now, dropping whatever is queued: the waiters find the record's new
    /// state (routed elsewhere, refused, or without a task, which they start again).
    /// Ends the task: its slot is given back under the same lock that clears `control`, so
    /// whoever sees the key without a task (a start that made room by putting it to sleep)
    /// finds its slot free too, and does not put a second instance to sleep for one start.
    fn finish_now(&mut self) {
        let mut control = self.inst.control.lock().unwrap_or_else(|e| e.into_inner());
        while self.mailbox.try_recv().is_ok() {}
        self.inst.class.release_slot();
        *control = None;
    }

    /// Ends the task unless a request queued a wake meanwhile. Requests send under the same
    /// lock, so no wake is lost between the check and the exit.
    fn try_finish(&mut self) -> bool {
        let mut control = self.inst.control.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok(cmd) = self.mailbox.try_recv() {
            if matches!(cmd, Command::Wake) {
                return false;
            }
        }
        // As in `finish_now`: the slot goes with the control, under one lock.
        self.inst.class.release_slot();
        *control = None;
        true
    }

    /// Records a failure and decides on a restart. Returns true to start again now.
    /// `log_tail`: the last lines the failed life printed (empty if it never started).
    async fn crashed(
        &mut self,
        message: String,
        exit: Option<ExitStatus>,
        served_for: Duration,
        log_tail: Vec<String>,
    ) -> bool {
        let inst = &self.inst;
        let class = &inst.class;
        let mut failures = inst.status.borrow().failures;
        if served_for >= STABLE_AFTER {
            failures = 0;
        }
        failures += 1;
        let delay = backoff(failures);
        let wanted = inst.waiting.load(Ordering::Acquire) > 0
            || class.sleep_after.is_none_or(|s| inst.idle_for() < s)
            || class.is_pinned(inst);
        class.stats.crashes.inc();
        tracing::warn!(instance = %inst.id, %message, failures, restart = wanted, ?log_tail, "instance failed");
        let state = if wanted {
            InstanceState::Backoff
        } else {
            InstanceState::Crashed
        };
        inst.set_status(|s| {
            s.state = state;
            s.message = Some(message);
            s.failures = failures;
            s.retry_at = Some(Instant::now() + delay);
            s.last_exit = exit.or(s.last_exit);
            s.last_log = log_tail;
        });
        if !wanted {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.wait() => return false,
            stop = wait_for_stop(&mut self.mailbox) => {
                // Data first: `Instances::stop` returns once the state reads stopped.
                match stop {
                    Command::Stop { destroy: true } => remove_data(&self.inst, &*self.driver).await,
                    Command::Fence { epoch } if Some(epoch) == self.epoch => self.fenced = true,
                    _ => {}
                }
                self.inst.set_status(|s| s.state = InstanceState::Stopped);
                return false;
            }
        }
        inst.restarts.fetch_add(1, Ordering::Relaxed);
        class.stats.restarts.inc();
        true
    }

    /// Starts the instance, serves until it stops or fails.
    async fn life(&mut self) -> End {
        if !self.still_owner() {
            self.fenced = true;
            return End::Stopped { shutdown: false };
        }
        self.lives += 1;
        let inst = self.inst.clone();
        inst.set_status(|s| {
            s.state = InstanceState::Starting;
            s.retry_at = None;
        });
        let launched = Instant::now();
        let spec = self.spec();
        // The driver says when it pulls the image: waiters stop their readiness clock meanwhile.
        let started = self
            .driver
            .start_reporting(&spec, &|phase| inst.start_phase(phase))
            .await;
        let reason = started.as_ref().err().and_then(|e| e.public_reason());
        let reason = reason.map(str::to_string);
        inst.set_status(|s| {
            s.public_reason = reason;
            s.pulling_until = None;
        });
        let mut running = match started {
            Ok(running) => running,
            Err(e) => return failed(format!("could not start: {e}"), None, Duration::ZERO),
        };
        *inst.logs.lock().unwrap_or_else(|e| e.into_inner()) = Some(running.logs());
        // The readiness clock starts with the instance, not with a pull before it.
        if let Err(end) = self.wait_ready(&mut *running, Instant::now()).await {
            return end;
        }
        if !self.still_owner() {
            // The lease was lost while the instance started: it must not serve a request.
            self.fenced = true;
            self.stop_running(&mut *running).await;
            return End::Stopped { shutdown: false };
        }
        let ports = ports_of(&inst, &*running, self.epoch, self.fence_at.clone());
        let start_ms = launched.elapsed().as_millis() as u64;
        *inst.started_at.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::time::SystemTime::now());
        inst.touch();
        inst.ready.store(Some(ports));
        inst.set_status(|s| {
            s.state = InstanceState::Ready;
            s.message = None;
            s.last_start_ms = Some(start_ms);
        });
        inst.class.stats.cold_start.observe(launched.elapsed());
        tracing::info!(instance = %inst.id, start_ms, "instance ready");
        let ready_at = Instant::now();
        self.serve(&mut running, ready_at).await
    }

    /// Probes until ready, the deadline passes, the process exits, or valet shuts down.
    async fn wait_ready(
        &mut self,
        running: &mut dyn Running,
        launched: Instant,
    ) -> Result<(), End> {
        let probe = self.inst.class.readiness.clone();
        let addr = running.endpoints().ports[probe.port].1;
        let prober = running.prober();
        let deadline = launched + probe.timeout;
        let mut last_error = String::from("not probed yet");
        // Probes start 1 ms apart and back off to the configured interval: a loopback connect
        // costs microseconds, and a fast app should not wait out a whole interval to be seen.
        let mut pause = Duration::from_millis(1).min(probe.interval);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stop_running(running).await;
                let message = format!("not ready within {:?}: {last_error}", probe.timeout);
                return Err(failed(message, None, Duration::ZERO));
            }
            tokio::select! {
                exit = running.exited() => {
                    return Err(failed(format!("exited during start ({exit})"), Some(exit), Duration::ZERO));
                }
                _ = self.shutdown.wait() => {
                    self.stop_running(running).await;
                    return Err(End::Stopped { shutdown: true });
                }
                result = prober.probe(addr, probe.path.as_deref(), left.min(Duration::from_secs(2))) => {
                    match result {
                        Ok(()) => return Ok(()),
                        // Another program answers on the instance's port: waiting longer
                        // cannot make it the instance's, and no request may go there.
                        Err(e @ ProbeError::Conflict(_)) => {
                            self.stop_running(running).await;
                            tracing::warn!(instance = %self.inst.id, error = %e, "instance port taken by another program");
                            return Err(failed(format!("could not start: {e}"), None, Duration::ZERO));
                        }
                        Err(e) => last_error = e.to_string(),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(probe.interval),
                exit = running.exited() => {
                    return Err(failed(format!("exited during start ({exit})"), Some(exit), Duration::ZERO));
                }
            }
        }
    }

    /// Watches a ready instance until it exits, idles out, is stopped or fails liveness.
    /// `running` is swapped for its successor when a `Replace` succeeds.
    async fn serve(&mut self, running: &mut Box<dyn Running>, ready_at: Instant) -> End {
        let class = self.inst.class.clone();
        let check_every = class.sleep_after.map_or(Duration::from_secs(3600), |s| {
            (s / 10).clamp(Duration::from_millis(50), Duration::from_secs(5))
        });
        let mut idle_tick = tokio::time::interval(check_every);
        let live_every = class
            .liveness
            .as_ref()
            .map_or(Duration::from_secs(3600), |l| l.interval);
        let mut live_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + live_every, live_every);
        let mut live_failures = 0;
        loop {
            tokio::select! {
                exit = running.exited() => {
                    self.inst.ready.store(None);
                    return failed(format!("exited unexpectedly ({exit})"), Some(exit), ready_at.elapsed());
                }
                _ = self.shutdown.wait() => {
                    self.stop_running(&mut **running).await;
                    return End::Stopped { shutdown: true };
                }
                cmd = self.mailbox.recv() => match cmd {
                    Some(Command::Stop { destroy }) => {
                        self.stop_running(&mut **running).await;
                        if destroy { remove_data(&self.inst, &*self.driver).await }
                        return End::Stopped { shutdown: false };
                    }
                    Some(Command::Fence { epoch }) if Some(epoch) == self.epoch => {
                        tracing::warn!(instance = %self.inst.id, "lease lost: no longer this replica's key, stopping");
                        self.fenced = true;
                        // Within what is left of the lease, not the class's stop_timeout:
                        // the next owner may start the key once the lease expires.
                        let grace = self.coordinator.as_ref().map(|c| c.fence_grace());
                        let grace = grace.unwrap_or_default().min(self.inst.class.stop_timeout);
                        self.stop_running_within(&mut **running, grace).await;
                        return End::Stopped { shutdown: false };
                    }
                    Some(Command::Replace) if self.lives == 1 => {
                        if let Some(end) = self.replace(running).await {
                            return end;
                        }
                    }
                    Some(Command::Evict) => {
                        // Its class is full and a new key wants the slot (admission.rs). A
                        // request that came in since it was picked keeps it up.
                        if !class.is_pinned(&self.inst) && self.release_if_idle() {
                            tracing::info!(instance = %self.inst.id, "class full: least recently used idle instance put to sleep");
                            self.stop_running(&mut **running).await;
                            return End::Stopped { shutdown: false };
                        }
                    }
                    // A fence of an earlier lease of this key: this task's is another.
                    Some(Command::Wake | Command::Replace | Command::Fence { .. }) | None => {}
                },
                _ = idle_tick.tick() => {
                    if self.should_sleep() {
                        tracing::info!(instance = %self.inst.id, "instance idle, sleeping");
                        if self.inst.id.replica() > 0 {
                            class.stats.scale_downs.inc();
                        }
                        self.stop_running(&mut **running).await;
                        return End::Stopped { shutdown: false };
                    }
                }
                _ = live_tick.tick() => {
                    let Some(probe) = &class.liveness else { continue };
                    let addr = running.endpoints().ports[probe.port].1;
                    match running.prober().probe(addr, probe.path.as_deref(), probe.timeout).await {
                        Ok(()) => live_failures = 0,
                        Err(e) => {
                            // A port that another program holds fails at once.
                            live_failures = if matches!(e, ProbeError::Conflict(_)) { probe.failures } else { live_failures + 1 };
                            if live_failures >= probe.failures {
                                self.stop_running(&mut **running).await;
                                return failed(format!("liveness failed {live_failures} times: {e}"), None, ready_at.elapsed());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Graceful replacement (an adopted container of an older config): starts a successor from
    /// the current config while `running` keeps serving, points requests at it once its
    /// readiness probe passes, lets requests already on the old one finish (at most
    /// `stop_timeout`), then stops the old one. A successor that does not get ready is stopped
    /// and the old one serves on: an old config serving beats none, and the next restart of
    /// the instance uses the current one anyway. Returns an end only if valet shuts down.
    ///
    /// Meanwhile the task watches neither the old one's exit nor its mailbox: a stop waits for
    /// the replacement to finish, bounded by the readiness timeout.
    async fn replace(&mut self, running: &mut Box<dyn Running>) -> Option<End> {
        let inst = self.inst.clone();
        let class = inst.class.clone();
        tracing::info!(instance = %inst.id, "config changed: starting a successor beside the serving instance");
        let launched = Instant::now();
        let mut successor = match self.driver.start(&self.spec()).await {
            Ok(successor) => successor,
            Err(e) => {
                tracing::warn!(instance = %inst.id, error = %e, "successor did not start; the old instance serves on");
                return None;
            }
        };
        let probe = &class.readiness;
        let addr = successor.endpoints().ports[probe.port].1;
        let prober = successor.prober();
        let deadline = launched + probe.timeout;
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(format!("not ready within {:?}", probe.timeout));
            }
            tokio::select! {
                exit = successor.exited() => break Err(format!("exited during start ({exit})")),
                _ = self.shutdown.wait() => {
                    successor.stop(class.stop_timeout).await;
                    self.stop_running(&mut **running).await;
                    return Some(End::Stopped { shutdown: true });
                }
                result = prober.probe(addr, probe.path.as_deref(), left.min(Duration::from_secs(2))) => {
                    match result {
                        Ok(()) => break Ok(()),
                        Err(e @ ProbeError::Conflict(_)) => break Err(e.to_string()),
                        Err(_) => {}
                    }
                }
            }
            tokio::time::sleep(probe.interval.min(Duration::from_millis(50))).await;
        };
        if let Err(message) = ready {
            tracing::warn!(instance = %inst.id, %message, "successor not ready; the old instance serves on");
            successor.stop(class.stop_timeout).await;
            return None;
        }
        if !self.still_owner() {
            // The lease went while the successor started: neither may serve.
            self.fenced = true;
            successor.stop(class.stop_timeout).await;
            self.stop_running(&mut **running).await;
            return Some(End::Stopped { shutdown: false });
        }
        // New requests go to the successor from here on; leases taken before still hold the
        // old endpoints. `active` counts both, so it reaching zero means the old one is idle.
        inst.ready.store(Some(ports_of(
            &inst,
            &*successor,
            self.epoch,
            self.fence_at.clone(),
        )));
        *inst.logs.lock().unwrap_or_else(|e| e.into_inner()) = Some(successor.logs());
        let mut old = std::mem::replace(running, successor);
        let drain_until = Instant::now() + class.stop_timeout;
        while inst.active.load(Ordering::SeqCst) > 0 && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let exit = old.stop(class.stop_timeout).await;
        let start_ms = launched.elapsed().as_millis() as u64;
        *inst.started_at.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::time::SystemTime::now());
        inst.set_status(|s| s.last_start_ms = Some(start_ms));
        tracing::info!(instance = %inst.id, start_ms, %exit, "instance replaced; old one stopped");
        None
    }

    /// Idle past `sleep_after`, not pinned, and no request slipped in while we looked. The ready
    /// pointer is cleared before the last check: a request that leased before sees `active > 0`
    /// here, one that comes after finds no pointer and queues a wake.
    fn should_sleep(&self) -> bool {
        let inst = &self.inst;
        let Some(sleep_after) = inst.class.sleep_after else {
            return false;
        };
        if inst.idle_for() < sleep_after || inst.class.is_pinned(inst) {
            return false;
        }
        self.release_if_idle()
    }

    /// Takes the ready pointer away unless a request holds a lease: true when the instance may
    /// stop now without cutting a request short.
    fn release_if_idle(&self) -> bool {
        let inst = &self.inst;
        let ports = inst.ready.swap(None);
        if inst.active.load(Ordering::SeqCst) > 0 {
            // Put back only while the lease holds: a fence may have cleared the pointer in
            // between, and its instance is about to stop.
            if self.still_owner() {
                inst.ready.store(ports);
            }
            return false;
        }
        true
    }

    /// What the driver starts. In cluster mode the instance is told its replica and its
    /// fencing number (`VALET_NODE`, `VALET_EPOCH`), so that what it writes elsewhere can be
    /// fenced too: a write under an older epoch than one already seen is a stale owner's.
    fn spec(&self) -> InstanceSpec {
        let mut spec = spec_for(&self.inst);
        if let (Some(coordinator), Some(epoch)) = (&self.coordinator, self.epoch) {
            spec.env
                .push(("VALET_NODE".into(), coordinator.node().to_string()));
            spec.env.push(("VALET_EPOCH".into(), epoch.to_string()));
        }
        spec
    }

    async fn stop_running(&self, running: &mut dyn Running) {
        self.stop_running_within(running, self.inst.class.stop_timeout)
            .await
    }

    /// Stops the instance, killing it when it has not exited after `grace`.
    async fn stop_running_within(&self, running: &mut dyn Running, grace: Duration) {
        self.inst.ready.store(None);
        self.inst.set_status(|s| s.state = InstanceState::Stopping);
        let exit = running.stop(grace).await;
        self.inst.set_status(|s| s.last_exit = Some(exit));
        tracing::info!(instance = %self.inst.id, %exit, "instance stopped");
    }
}

fn failed(message: String, exit: Option<ExitStatus>, served_for: Duration) -> End {
    End::Failed {
        message,
        exit,
        served_for,
    }
}

/// The end of `lines` that fits in [`CRASH_LOG_BYTES`], oldest first. A newest line longer
/// than that keeps its end, where the error usually is.
fn crash_tail(mut lines: Vec<String>) -> Vec<String> {
    let mut budget = CRASH_LOG_BYTES;
    let mut keep = 0;
    for line in lines.iter_mut().rev() {
        if line.len() > budget {
            if keep == 0 {
                let mut cut = line.len() - budget;
                while !line.is_char_boundary(cut) {
                    cut += 1;
                }
                line.replace_range(..cut, "");
                keep = 1;
            }
            break;
        }
        budget -= line.len();
        keep += 1;
    }
    lines.split_off(lines.len() - keep)
}

/// Waits for a command that ends a failed instance's backoff (stop, evict, fence), ignoring
/// wakes, and returns it.
async fn wait_for_stop(mailbox: &mut mpsc::UnboundedReceiver<Command>) -> Command {
    loop {
        match mailbox.recv().await {
            // A failed instance nobody waits for gives its slot up when asked.
            Some(cmd @ (Command::Stop { .. } | Command::Evict | Command::Fence { .. })) => {
                return cmd
            }
            Some(Command::Wake | Command::Replace) => continue,
            None => std::future::pending::<()>().await,
        }
    }
}

/// Where requests reach a running instance, in the class's port order.
fn ports_of(
    inst: &Instance,
    running: &dyn Running,
    epoch: Option<u64>,
    fence_at: Option<Arc<FenceAt>>,
) -> Arc<Ready> {
    let ports = inst
        .class
        .ports
        .iter()
        .map(|(name, _)| {
            running
                .endpoints()
                .get(name)
                .expect("driver returns every port")
        })
        .collect();
    Ready::local(ports, epoch, fence_at)
}

fn spec_for(inst: &Instance) -> InstanceSpec {
    let class = &inst.class;
    let slug = inst.id.slug();
    InstanceSpec {
        id: inst.id.clone(),
        command: class.command.clone(),
        image: class.image.clone(),
        ports: class.ports.clone(),
        default_port: class.ports[class.default_port].0.clone(),
        env: class.env.clone(),
        work_dir: class.work_dir.clone(),
        data_dir: class.data_root.join(&slug),
        log_path: logfile::path(&class.log_root, &inst.id),
        user: class.user.clone(),
        log_lines: 1000,
    }
}

/// Deletes a stopped instance's persistent data through its driver (data folder, volume),
/// then its log file.
pub(crate) async fn remove_data(inst: &Instance, driver: &dyn Driver) {
    if let Err(e) = driver.destroy(&spec_for(inst)).await {
        tracing::warn!(instance = %inst.id, error = %e, "cannot delete the instance's data");
    }
    let _ = logfile::remove(&logfile::path(&inst.class.log_root, &inst.id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_short_tail_is_kept_whole() {
        let tail = lines(&["Traceback", "OSError: boom"]);
        assert_eq!(crash_tail(tail.clone()), tail);
        assert_eq!(crash_tail(Vec::new()), Vec::<String>::new());
    }

    #[test]
    fn older_lines_past_the_byte_budget_are_dropped() {
        let long = "x".repeat(CRASH_LOG_BYTES - 10);
        let tail = crash_tail(lines(&["first", &long, "0123456789", "last"]));
        assert_eq!(tail, lines(&["0123456789", "last"]));
    }

    #[test]
    fn one_huge_last_line_keeps_its_end_on_a_char_boundary() {
        let huge = format!("{}{}", "é".repeat(CRASH_LOG_BYTES), "the error");
        let tail = crash_tail(lines(&["before", &huge]));
        assert_eq!(tail.len(), 1);
        assert!(tail[0].len() <= CRASH_LOG_BYTES, "{}", tail[0].len());
        assert!(tail[0].ends_with("the error"));
    }
}
