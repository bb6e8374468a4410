//! One instance's record. It outlives the instance's task: a sleeping key keeps only this (no
//! task, no log ring), so ten thousand known keys cost little.

use crate::class::ClassRuntime;
use crate::owner::{FenceAt, PeerRoute};
use arc_swap::ArcSwapOption;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
// tokio's clock, so the state machine runs on paused time in tests (the same clock otherwise).
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use valet_core::{InstanceId, InstanceState};
use valet_runtime::{ExitStatus, LogRing, StartPhase};

/// Where requests for a ready key go: the instance's ports in the class's port order, or, for
/// a key another replica owns (cluster mode), that replica's peer listener in every slot.
/// One value behind one pointer, so a request never pairs an address with the wrong route.
#[derive(Debug)]
pub(crate) struct Ready {
    pub ports: Vec<SocketAddr>,
    pub via: Option<Arc<PeerRoute>>,
    /// Cluster mode: the lease epoch of the task that published a local instance's ports, so
    /// that a fence aimed at an earlier lease never takes a later one's instance down.
    pub epoch: Option<u64>,
    /// Cluster mode: when that lease is fenced. A request that finds it passed fences the
    /// instance itself instead of being served (see `try_lease`).
    pub fence_at: Option<Arc<FenceAt>>,
}

impl Ready {
    pub(crate) fn local(
        ports: Vec<SocketAddr>,
        epoch: Option<u64>,
        fence_at: Option<Arc<FenceAt>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            ports,
            via: None,
            epoch,
            fence_at,
        })
    }
}

/// What the instance's task is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// A request wants it: start if stopped, restart now if in backoff.
    Wake,
    /// Stop it (admin, or shutdown). `destroy` also removes its persistent data.
    Stop { destroy: bool },
    /// Start a successor from the current config while this one serves, switch to it once it is
    /// ready, then stop this one (an adopted container of an older config).
    Replace,
    /// Sleep now if idle: its class is full and another key wants to start (admission.rs).
    Evict,
    /// The key's lease `epoch` is lost (cluster mode): stop now, and end the task. A task
    /// under another epoch ignores it.
    Fence { epoch: u64 },
}

/// The slow-changing part of an instance's state, published to waiters and to the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: InstanceState,
    /// Why it is not ready, when it is not (start failure, crash, crash loop).
    pub message: Option<String>,
    /// The part of the last start failure clients may be told (an image that cannot be
    /// pulled, naming the image and the registry's answer); `None` for every other failure.
    #[serde(skip)]
    pub public_reason: Option<String>,
    /// When a restart is due (backoff), for `Retry-After`.
    #[serde(skip)]
    pub retry_at: Option<Instant>,
    /// Consecutive failed starts or crashes; 0 once an instance served for a while.
    pub failures: u32,
    /// The last failure was the cluster store not answering a claim (not the instance's):
    /// a claim that succeeds clears it and the failure count with it.
    #[serde(skip)]
    pub claim_refused: bool,
    pub last_exit: Option<ExitStatus>,
    /// Last lines of output at the last crash (at most 10 lines, about 2 KiB).
    pub last_log: Vec<String>,
    /// Duration of the last cold start (launch to ready), milliseconds.
    pub last_start_ms: Option<u64>,
    #[serde(skip)]
    pub since: Option<Instant>,
    /// While the start pulls the instance's image: when the pull's time is up
    /// (`server.timeouts.pull`). Requests waiting on the start do not count this time
    /// against the readiness timeout.
    #[serde(skip)]
    pub pulling_until: Option<Instant>,
}

impl Status {
    pub(crate) fn stopped() -> Self {
        Self {
            state: InstanceState::Stopped,
            message: None,
            public_reason: None,
            retry_at: None,
            failures: 0,
            claim_refused: false,
            last_exit: None,
            last_log: Vec::new(),
            last_start_ms: None,
            since: None,
            pulling_until: None,
        }
    }

    /// Seconds a client should wait before trying again.
    pub fn retry_after(&self) -> Duration {
        self.retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    }
}

/// Process-wide clock for activity stamps: milliseconds since valet started, so a stamp fits
/// in an atomic and costs one `Instant::now()` to make.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One (class, key).
pub struct Instance {
    pub id: InstanceId,
    pub class: Arc<ClassRuntime>,
    /// Set exactly while the instance is ready, or while another replica owns the key and its
    /// route is known: the hot path reads only this.
    pub(crate) ready: ArcSwapOption<Ready>,
    pub(crate) status: watch::Sender<Status>,
    /// Requests and streams in flight (leases alive).
    pub(crate) active: AtomicUsize,
    pub(crate) last_active: AtomicU64,
    /// Requests waiting for this instance to start.
    pub(crate) waiting: AtomicU32,
    /// On the first replica of a scaled key only: the key's requests that found no replica
    /// below `target_concurrency` and wait for a decision or a starting replica. Their count
    /// is the load that starting replicas are for.
    pub(crate) unplaced: AtomicU32,
    /// On the first replica of a scaled key: the internal keys of replicas 1 and up, made
    /// once, so that looking the replicas up per request allocates no key.
    pub(crate) replica_keys: OnceLock<Box<[Box<str>]>>,
    pub(crate) requests: AtomicU64,
    pub(crate) restarts: AtomicU64,
    /// The task's mailbox while it runs; `None` when asleep. Taken only on the cold path.
    pub(crate) control: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    /// Output of the running process; dropped when it sleeps.
    pub(crate) logs: Mutex<Option<Arc<LogRing>>>,
    pub(crate) started_at: Mutex<Option<SystemTime>>,
    /// Permits for `max_concurrent_requests`; `None` (8 bytes) when the class sets no limit.
    pub limiter: Option<Arc<Semaphore>>,
}

impl Instance {
    pub(crate) fn new(class: Arc<ClassRuntime>, key: &str) -> Self {
        Self {
            id: InstanceId::new(class.name.clone(), key),
            ready: ArcSwapOption::empty(),
            status: watch::Sender::new(Status::stopped()),
            active: AtomicUsize::new(0),
            last_active: AtomicU64::new(now_ms()),
            waiting: AtomicU32::new(0),
            unplaced: AtomicU32::new(0),
            replica_keys: OnceLock::new(),
            requests: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            control: Mutex::new(None),
            logs: Mutex::new(None),
            started_at: Mutex::new(None),
            limiter: (class.max_concurrent_requests > 0)
                .then(|| Arc::new(Semaphore::new(class.max_concurrent_requests as usize))),
            class,
        }
    }

    pub fn state(&self) -> InstanceState {
        self.status.borrow().state
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// The output ring of the running process (tail and follow); `None` while it sleeps.
    pub fn log_ring(&self) -> Option<Arc<LogRing>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn last_active_ms(&self) -> u64 {
        self.last_active.load(Ordering::Relaxed)
    }

    pub(crate) fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn has_task(&self) -> bool {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Time since the last request or stream ended, or zero while one is open.
    pub(crate) fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(now_ms().saturating_sub(self.last_active_ms()))
    }

    /// Waits, at most `within`, until `addr` is no longer a port of the ready instance. Called
    /// after `addr` refused a connection: the process behind it is gone (killed, crashed) and
    /// its task notices within moments. Until it has, an acquire would hand out the same dead
    /// address; afterwards it waits for the restart instead.
    pub async fn wait_address_retired(&self, addr: SocketAddr, within: Duration) {
        // Subscribed before the first look: the task clears the pointer, then publishes the
        // crash, so a change after this point is never missed.
        let mut status = self.status.subscribe();
        let retired = || match &*self.ready.load() {
            Some(ready) => !ready.ports.contains(&addr),
            None => true,
        };
        let _ = tokio::time::timeout(within, async {
            while !retired() {
                if status.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// What the driver says its start is busy with: a pull stops the waiters' readiness
    /// clock, up to the class's pull timeout.
    pub(crate) fn start_phase(&self, phase: StartPhase) {
        let until = match phase {
            StartPhase::Pulling => Some(Instant::now() + self.class.pull_timeout),
            StartPhase::Launching => None,
        };
        self.set_status(|s| s.pulling_until = until);
    }

    pub(crate) fn set_status(&self, change: impl FnOnce(&mut Status)) {
        self.status.send_modify(|s| {
            let before = s.state;
            change(s);
            if s.state != before {
                s.since = Some(Instant::now());
            }
        });
    }

    /// The key's name in the cluster's leases: its class's lease name and its key.
    pub fn lease_id(&self) -> InstanceId {
        InstanceId::new(self.class.lease_name.clone(), self.id.key())
    }

    /// The owner replica's route while another replica owns this key (cluster mode).
    pub fn remote(&self) -> Option<Arc<PeerRoute>> {
        self.ready.load().as_ref().and_then(|r| r.via.clone())
    }

    /// A snapshot for listings.
    pub fn info(&self) -> InstanceInfo {
        let status = self.status();
        let owner = self.remote().map(|r| r.node.to_string());
        let forwarded = owner.is_some();
        InstanceInfo {
            class: self.id.class().to_string(),
            key: self.id.user_key().to_string(),
            replica: self.id.replica(),
            state: status.state,
            state_for_ms: status.since.map(|s| s.elapsed().as_millis() as u64),
            idle_ms: self.idle_for().as_millis() as u64,
            active: self.active.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            started_at: *self.started_at.lock().unwrap_or_else(|e| e.into_inner()),
            status,
            owner,
            forwarded,
            project: self.class.project.as_ref().map(|p| ProjectName {
                id: p.id.to_string(),
                name: p.name.to_string(),
            }),
        }
    }
}

/// The deployed project an instance serves, as listings show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectName {
    pub id: String,
    pub name: String,
}

/// What listings show of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceInfo {
    pub class: String,
    /// The key clients ask for; every replica of it shows the same key.
    pub key: String,
    /// Which replica of the key this is (`scale`); 0 for the key's own instance.
    pub replica: u32,
    pub state: InstanceState,
    pub state_for_ms: Option<u64>,
    pub idle_ms: u64,
    pub active: usize,
    pub requests: u64,
    pub restarts: u64,
    /// Requests waiting for it to start.
    pub waiting: u32,
    pub started_at: Option<SystemTime>,
    pub status: Status,
    /// Cluster mode: the replica that owns the key when it is not this one (this replica
    /// forwards the key's requests there); `None`: this replica's own. Listings fill in this
    /// replica's name for its own keys.
    pub owner: Option<String>,
    /// Cluster mode: another replica owns the key and this one forwards its requests there;
    /// `state` is then only this replica's view (no instance runs here).
    pub forwarded: bool,
    /// Set when the instance runs a deployed project's version.
    pub project: Option<ProjectName>,
}

/// Held by the gateway for as long as a request, a streamed response or a WebSocket lasts:
/// it counts as activity for `sleep_after`, and dropping it stamps the idle clock.
pub struct Lease {
    instance: Arc<Instance>,
    addr: SocketAddr,
    /// A turn under `max_concurrent_requests`, held until the response ends.
    turn: Option<OwnedSemaphorePermit>,
    /// Set when the key is another replica's: `addr` is its peer listener.
    via: Option<Arc<PeerRoute>>,
}

impl Lease {
    /// Takes over one count of `active` that the caller already added.
    pub(crate) fn counted(
        instance: Arc<Instance>,
        addr: SocketAddr,
        via: Option<Arc<PeerRoute>>,
    ) -> Self {
        Self {
            instance,
            addr,
            turn: None,
            via,
        }
    }

    /// The owner replica's route when the key is another replica's: the request goes to its
    /// peer listener with the fields this names, and the owner applies the class's limits.
    pub fn via(&self) -> Option<&Arc<PeerRoute>> {
        self.via.as_ref()
    }

    /// Waits for the instance to have fewer than `max_concurrent_requests` requests in flight,
    /// then counts this one until the lease is dropped. Immediate when the class sets no limit.
    /// Waiters are served first come, first served.
    pub async fn take_turn(&mut self) {
        if self.turn.is_some() || self.via.is_some() {
            return;
        }
        if let Some(limiter) = &self.instance.limiter {
            // The semaphore is never closed, so acquiring cannot fail.
            self.turn = limiter.clone().acquire_owned().await.ok();
        }
    }

    /// Whether [`Self::take_turn`] may have to wait: the class limits concurrent requests and
    /// this lease has no turn yet.
    pub fn needs_turn(&self) -> bool {
        self.turn.is_none() && self.instance.limiter.is_some() && self.via.is_none()
    }

    /// Address of the port the lease was taken for.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// Counts the request on the instance it was given (a replica of a scaled key).
    pub(crate) fn count_request(self) -> Self {
        self.instance.requests.fetch_add(1, Ordering::Relaxed);
        self
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.instance.touch();
        self.instance.active.fetch_sub(1, Ordering::SeqCst);
    }
}
