//! The instance table: every class, every known key, and the acquire path the gateway calls per
//! request. The warm path is a lock-free map read, an atomic increment and an `ArcSwap` load; only
//! a request that finds its instance not ready goes to the instance's task and waits.

use crate::admission::{idle_victim, ColdStartGate};
use crate::class::{ClassRuntime, Scale};
use crate::error::AcquireError;
use crate::instance::{Command, Instance, InstanceInfo, Lease};
use crate::owner::{Coordinator, PeerRoute};
use crate::task::{Task, CRASH_LOOP};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use valet_config::Config;
use valet_core::{
    replica_key, validate_instance_key, InstanceId, InstanceState, Shutdown, REPLICA_SEP,
};
use valet_runtime::{Adopted, Driver, Handover};

/// Cheap-to-clone handle on the instance table.
#[derive(Clone)]
pub struct Instances {
    inner: Arc<Inner>,
}

struct Inner {
    classes: Vec<Arc<ClassRuntime>>,
    by_name: HashMap<String, usize>,
    driver: Arc<dyn Driver>,
    shutdown: Shutdown,
    tasks: TaskTracker,
    /// Instance tasks run on the runtime that made the table, not on whichever gateway worker
    /// happened to take the cold request: a worker's runtime ends before instances are stopped.
    runtime: tokio::runtime::Handle,
    /// Deployed projects (the deploy API): project id -> the class of the version that takes
    /// traffic. Swapped whole when a new version is ready; read lock-free per request.
    projects: papaya::HashMap<Box<str>, Arc<ClassRuntime>>,
    /// Cluster mode: projects another replica deployed that this one is still building, with
    /// how many builds of each are under way. Read only when a project has no route.
    arriving: Mutex<HashMap<Box<str>, usize>>,
    /// `server.cold_starts_per_client`.
    cold_starts: ColdStartGate,
    /// Cluster mode: who may run which key (`valet-cluster`).
    coordinator: std::sync::OnceLock<Arc<dyn Coordinator>>,
}

impl Instances {
    /// Must be called inside the Tokio runtime that will run the instance tasks.
    pub fn new(config: &Config, driver: Arc<dyn Driver>, shutdown: Shutdown) -> Self {
        let classes: Vec<Arc<ClassRuntime>> = config
            .containers
            .iter()
            .map(|c| Arc::new(ClassRuntime::from_config(config, c)))
            .collect();
        let by_name = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.to_string(), i))
            .collect();
        let runtime = tokio::runtime::Handle::current();
        let tasks = TaskTracker::new();
        let table = Self {
            inner: Arc::new(Inner {
                classes,
                by_name,
                driver,
                shutdown: shutdown.clone(),
                tasks,
                runtime: runtime.clone(),
                projects: papaya::HashMap::new(),
                arriving: Mutex::default(),
                cold_starts: ColdStartGate::new(
                    config.server.cold_starts_per_client.starts,
                    config.server.cold_starts_per_client.per.get(),
                ),
                coordinator: std::sync::OnceLock::new(),
            }),
        };
        let forget_after = config.server.forget_after.get();
        if !forget_after.is_zero() {
            runtime.spawn(crate::collect::sweep(table.clone(), forget_after, shutdown));
        }
        table
    }

    pub fn class(&self, name: &str) -> Option<&Arc<ClassRuntime>> {
        self.inner
            .by_name
            .get(name)
            .map(|&i| &self.inner.classes[i])
    }

    pub fn classes(&self) -> &[Arc<ClassRuntime>] {
        &self.inner.classes
    }

    /// The class serving a deployed project, if the project exists.
    pub fn project(&self, id: &str) -> Option<Arc<ClassRuntime>> {
        self.inner.projects.pin().get(id).cloned()
    }

    /// Points a project's traffic at `class` (a version that passed readiness). Returns the
    /// class that served it before, which the caller stops once its requests are done.
    pub fn route_project(&self, id: &str, class: Arc<ClassRuntime>) -> Option<Arc<ClassRuntime>> {
        self.inner.projects.pin().insert(id.into(), class).cloned()
    }

    /// Marks a project with no route here as being built here (cluster mode: another replica
    /// deployed it) until the guard is dropped: its requests get 503 with `Retry-After`
    /// meanwhile, not 404.
    pub fn project_arriving(&self, id: &str) -> ArrivingProject {
        *lock_arriving(&self.inner.arriving)
            .entry(id.into())
            .or_default() += 1;
        ArrivingProject {
            table: self.inner.clone(),
            id: id.into(),
        }
    }

    /// Whether a project with no route is being built here (see [`Self::project_arriving`]).
    pub fn is_project_arriving(&self, id: &str) -> bool {
        lock_arriving(&self.inner.arriving).contains_key(id)
    }

    /// Removes a project's route; later requests get 404. Returns the class it had.
    pub fn unroute_project(&self, id: &str) -> Option<Arc<ClassRuntime>> {
        self.inner.projects.pin().remove(id).cloned()
    }

    /// Classes of every routed project, for listings.
    pub fn project_classes(&self) -> Vec<Arc<ClassRuntime>> {
        self.inner.projects.pin().values().cloned().collect()
    }

    pub fn driver_name(&self) -> &'static str {
        self.inner.driver.name()
    }

    /// The driver instances run on (the deployer builds project images through it).
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.inner.driver
    }

    /// The instance for `key`, started if it sleeps. Hold the lease while the request, its
    /// streamed response or its WebSocket lasts.
    /// `port` is an index from [`ClassRuntime::port_index`].
    pub async fn acquire(
        &self,
        class: &Arc<ClassRuntime>,
        key: &str,
        port: usize,
    ) -> Result<Lease, AcquireError> {
        self.acquire_for(class, key, port, None).await
    }

    /// [`Self::acquire`] for a request from `client`, whose cold starts are counted against
    /// `server.cold_starts_per_client` (see admission.rs). `None`: not a client's request
    /// (admin start, `min_instances`), never limited.
    pub async fn acquire_for(
        &self,
        class: &Arc<ClassRuntime>,
        key: &str,
        port: usize,
        client: Option<IpAddr>,
    ) -> Result<Lease, AcquireError> {
        if let Some(scale) = class.scale {
            // A replica's own key (a peer's forward names it) goes to that replica.
            if !key.contains(REPLICA_SEP) {
                return self.acquire_scaled(class, key, port, client, scale).await;
            }
        }
        let inst = self.record(class, key)?;
        self.acquire_record(inst, port, client).await
    }

    /// [`Self::acquire_for`] when it takes no wait: a key of a class without `scale` whose
    /// instance is ready (the warm path, most requests). `None`: call [`Self::acquire_for`],
    /// which may start the instance or wait for it. A plain call, so that the warm path costs
    /// its caller no future of the cold path's size.
    pub fn acquire_ready(
        &self,
        class: &Arc<ClassRuntime>,
        key: &str,
        port: usize,
    ) -> Option<Lease> {
        if class.scale.is_some() {
            return None;
        }
        let inst = self.record(class, key).ok()?;
        let lease = try_lease(&inst, port)?;
        inst.requests.fetch_add(1, Ordering::Relaxed);
        Some(lease)
    }

    /// [`Self::acquire_for`] on one record, whatever its class's `scale`.
    async fn acquire_record(
        &self,
        inst: Arc<Instance>,
        port: usize,
        client: Option<IpAddr>,
    ) -> Result<Lease, AcquireError> {
        inst.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(lease) = try_lease(&inst, port) {
            return Ok(lease);
        }
        let result = self.wait_ready(inst.clone(), port, client).await;
        if let Err(AcquireError::ClassFull { .. } | AcquireError::TooManyStarts { .. }) = &result {
            // A refused key must not cost a record: 3,000 refusals are not 3,000 keys.
            crate::collect::forget_unstarted(&inst);
        }
        result
    }

    /// [`Self::acquire_for`] for a class with `scale` (issue 21): the key's ready replica with
    /// the fewest requests in flight, if it has fewer than `target_concurrency`. Otherwise the
    /// request is placed under the class's scaling lock by [`Self::place`]: it may start one
    /// more replica and wait for it, as a cold start waits.
    async fn acquire_scaled(
        &self,
        class: &Arc<ClassRuntime>,
        key: &str,
        port: usize,
        client: Option<IpAddr>,
        scale: Scale,
    ) -> Result<Lease, AcquireError> {
        let first = self.record(class, key)?;
        // The common case, looked up without a list: the first replica serves and has
        // nothing in flight, so none has fewer, and it is the lowest-numbered.
        if first.active.load(Ordering::SeqCst) == 0 {
            if let Some(lease) = try_lease(&first, port) {
                return Ok(lease.count_request());
            }
        }
        let replicas = self.replicas(class, &first, scale);
        if let Some(lease) = least_loaded(&replicas, port, Some(scale.target_concurrency)) {
            return Ok(lease.count_request());
        }
        // Unplaced until this request holds a lease: while it waits for a starting replica
        // it is part of the load that replica was started for.
        first.unplaced.fetch_add(1, Ordering::AcqRel);
        let _unplaced = UnplacedGuard(&first);
        let placed = {
            let _deciding = class.scaling.lock().unwrap_or_else(|e| e.into_inner());
            self.place(class, &first, key, port, client, scale)
        };
        match placed {
            Placed::Leased(lease) => Ok(lease.count_request()),
            Placed::Cold(inst) => {
                inst.requests.fetch_add(1, Ordering::Relaxed);
                let result = self.wait_ready(inst.clone(), port, client).await;
                if let Err(AcquireError::ClassFull { .. } | AcquireError::TooManyStarts { .. }) =
                    &result
                {
                    crate::collect::forget_unstarted(&inst);
                }
                result
            }
            Placed::Wait(inst) => {
                let result = self.wait_ready(inst, port, None).await;
                match result {
                    Ok(lease) => Ok(lease.count_request()),
                    // A replica that cannot start (crash loop, timeout): the ones that run
                    // serve the request rather than refusing it.
                    Err(error) => {
                        let replicas = self.replicas(class, &first, scale);
                        least_loaded(&replicas, port, None)
                            .map(Lease::count_request)
                            .ok_or(error)
                    }
                }
            }
        }
    }

    /// Where a request of a scaled key goes that found no ready replica below target. Called
    /// under the class's scaling lock, and every start happens inside it (`wake` is
    /// synchronous), so the next request to decide already sees a replica it started.
    ///
    /// The load is the requests in flight on ready replicas plus the key's unplaced requests
    /// (this one among them). It asks for ceil(load / target_concurrency) replicas, at most
    /// `max_replicas`; a replica already starting counts as one, so a burst starts only as
    /// many as its requests need and a request whose load a starting replica will take starts
    /// none.
    fn place(
        &self,
        class: &Arc<ClassRuntime>,
        first: &Arc<Instance>,
        key: &str,
        port: usize,
        client: Option<IpAddr>,
        scale: Scale,
    ) -> Placed {
        let replicas = self.replicas(class, first, scale);
        // Room may have come while this request waited for the lock.
        if let Some(lease) = least_loaded(&replicas, port, Some(scale.target_concurrency)) {
            return Placed::Leased(lease);
        }
        let ready: Vec<&Arc<Instance>> =
            replicas.iter().flatten().filter(|i| is_ready(i)).collect();
        // A replica in a crash loop is no capacity to come: it neither counts against a
        // scale-up nor is waited for.
        let starting: Vec<&Arc<Instance>> = replicas
            .iter()
            .flatten()
            .filter(|i| !is_ready(i) && i.has_task() && !in_crash_loop(i))
            .collect();
        if ready.is_empty() && starting.is_empty() {
            // The key's first start: the cold path as without scale, on its own instance.
            // Woken here so that the requests deciding after this one see it starting.
            let _ = self.wake(first, client);
            return Placed::Cold(first.clone());
        }
        let in_flight: u32 = ready
            .iter()
            .map(|i| i.active.load(Ordering::SeqCst) as u32)
            .sum();
        let load = in_flight + first.unplaced.load(Ordering::Acquire);
        let wanted = load
            .div_ceil(scale.target_concurrency)
            .min(scale.max_replicas);
        if ((ready.len() + starting.len()) as u32) < wanted {
            if let Some(replica) = self.scale_up(class, key, &replicas) {
                return Placed::Wait(replica);
            }
        }
        if let Some(replica) = starting
            .iter()
            .min_by_key(|i| i.waiting.load(Ordering::Acquire))
        {
            return Placed::Wait((*replica).clone());
        }
        match least_loaded(&replicas, port, None) {
            Some(lease) => Placed::Leased(lease),
            // Every ready replica went to sleep since it was looked at: start again.
            None => {
                let _ = self.wake(first, client);
                Placed::Cold(first.clone())
            }
        }
    }

    /// Starts the lowest-numbered replica of `key` that has no task and may start (one in a
    /// crash loop may not). `None` when none can, or the class is at `max_instances` (a
    /// scale-up puts no other key to sleep: the key is served already, by the replicas it has).
    fn scale_up(
        &self,
        class: &Arc<ClassRuntime>,
        key: &str,
        replicas: &[Option<Arc<Instance>>],
    ) -> Option<Arc<Instance>> {
        for (index, record) in replicas.iter().enumerate() {
            if record.as_ref().is_some_and(|r| r.has_task()) {
                continue;
            }
            let replica = match record {
                Some(replica) => replica.clone(),
                None => replica_record(class, &replica_key(key, index as u32)),
            };
            // Not a client's cold start: a key's replicas are bounded by max_replicas already.
            match self.wake(&replica, None) {
                Ok(true) => {
                    // Counted as the gauge counts: replicas beside the key's first instance.
                    if index > 0 {
                        class.stats.scale_ups.inc();
                    }
                    tracing::info!(instance = %replica.id, "load past target_concurrency: starting a replica");
                    return Some(replica);
                }
                Err(AcquireError::ClassFull { .. }) => return None,
                Ok(false) | Err(_) => continue,
            }
        }
        None
    }

    /// The records of `key`'s replicas, by replica number; `None` for one never started.
    fn replicas(
        &self,
        class: &Arc<ClassRuntime>,
        first: &Arc<Instance>,
        scale: Scale,
    ) -> Vec<Option<Arc<Instance>>> {
        let keys = first.replica_keys.get_or_init(|| {
            (1..scale.max_replicas)
                .map(|i| replica_key(first.id.key(), i).into())
                .collect()
        });
        let map = class.instances.pin();
        std::iter::once(Some(first.clone()))
            .chain(keys.iter().map(|key| map.get(&**key).cloned()))
            .collect()
    }

    /// The record for a key, made on first sight.
    fn record(&self, class: &Arc<ClassRuntime>, key: &str) -> Result<Arc<Instance>, AcquireError> {
        let map = class.instances.pin();
        if let Some(inst) = map.get(key) {
            return Ok(inst.clone());
        }
        // A replica's own key comes from a peer's forward (cluster mode), for a replica this
        // node owns: only of a class that scales, and within its max_replicas.
        let replica = validate_instance_key(key)?;
        if replica > 0 && class.scale.is_none_or(|s| replica >= s.max_replicas) {
            return Err(valet_core::KeyError::ControlChar.into());
        }
        Ok(map
            .get_or_insert_with(key.into(), || Arc::new(Instance::new(class.clone(), key)))
            .clone())
    }

    /// The cold path: make sure the task runs, then wait for ready, a clear failure or the
    /// start deadline, whichever comes first.
    async fn wait_ready(
        &self,
        inst: Arc<Instance>,
        port: usize,
        client: Option<IpAddr>,
    ) -> Result<Lease, AcquireError> {
        let mut inst = inst;
        // Forgotten (collect.rs) between finding the record and starting it: the key has a
        // new record by now, or gets one; once is all it takes, a few tries are a bound.
        for _ in 0..3 {
            match self.wait_on(&inst, port, client).await? {
                Some(lease) => return Ok(lease),
                None => inst = self.record(&inst.class, inst.id.key())?,
            }
        }
        Err(AcquireError::StartTimeout {
            state: inst.state(),
            timeout: Duration::ZERO,
        })
    }

    /// [`Self::wait_ready`] on one record; `None` when that record was forgotten.
    async fn wait_on(
        &self,
        inst: &Arc<Instance>,
        port: usize,
        client: Option<IpAddr>,
    ) -> Result<Option<Lease>, AcquireError> {
        let class = inst.class.clone();
        if inst.waiting.fetch_add(1, Ordering::AcqRel) >= class.max_waiting {
            inst.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AcquireError::QueueFull {
                state: inst.state(),
            });
        }
        let _waiting = WaitingGuard(inst);
        let timeout = class.readiness.timeout + Duration::from_secs(1);
        let mut deadline = tokio::time::Instant::now() + timeout;
        // A pull does not count against the readiness timeout: while the start pulls, this
        // clock stops (the wait is bounded by the pull's own time instead), and it runs on
        // from where it stopped once the pull is over.
        let mut pull_seen: Option<Instant> = None;
        let mut status = inst.status.subscribe();
        let mut evictions = 0;
        loop {
            match self.wake(inst, client) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(AcquireError::ClassFull { .. }) if evictions < MAX_EVICTIONS => {
                    evictions += 1;
                    self.make_room(inst).await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            loop {
                // The status is marked seen before the ready pointer is read: the task stores the
                // pointer, then changes the status, so a start that completes after this read
                // still wakes `changed()` below. Read the other way round, a start completing
                // between the two reads was consumed unseen and the wait ran to its timeout.
                let (state, failures, pulling_until) = {
                    let s = status.borrow_and_update();
                    (s.state, s.failures, s.pulling_until)
                };
                if let Some(lease) = try_lease(inst, port) {
                    return Ok(Some(lease));
                }
                match (pulling_until, pull_seen) {
                    (Some(_), None) => pull_seen = Some(Instant::now()),
                    (None, Some(since)) => {
                        deadline += since.elapsed();
                        pull_seen = None;
                    }
                    _ => {}
                }
                match state {
                    InstanceState::Backoff | InstanceState::Crashed if failures >= CRASH_LOOP => {
                        return Err(unavailable(inst));
                    }
                    InstanceState::Stopped | InstanceState::Crashed if !inst.has_task() => break,
                    _ => {}
                }
                let (until, waited) = match pulling_until {
                    Some(until) => (until + Duration::from_secs(1), class.pull_timeout),
                    None => (deadline, timeout),
                };
                match tokio::time::timeout_at(until, status.changed()).await {
                    Ok(_) => continue,
                    Err(_) => {
                        return Err(AcquireError::StartTimeout {
                            state: inst.state(),
                            timeout: waited,
                        })
                    }
                }
            }
        }
    }

    /// Queues a wake for the instance's task, or starts the task when it has none. False when
    /// the record was forgotten (collect.rs): nothing may start on it.
    fn wake(&self, inst: &Arc<Instance>, client: Option<IpAddr>) -> Result<bool, AcquireError> {
        if self.inner.shutdown.is_shutdown() {
            return Err(AcquireError::ShuttingDown);
        }
        let mut control = inst.control.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = control.as_ref() {
            let _ = tx.send(Command::Wake);
            return Ok(true);
        }
        if !crate::collect::is_current(inst) {
            return Ok(false);
        }
        {
            let s = inst.status.borrow();
            let in_loop =
                s.failures >= CRASH_LOOP && s.retry_at.is_some_and(|at| at > Instant::now());
            if s.state == InstanceState::Crashed && in_loop {
                return Err(unavailable(inst));
            }
        }
        // Checked before the slot, counted once it is taken: a client over its limit must not
        // make room by putting other keys to sleep, and a refused start costs it nothing.
        if let Some(client) = client {
            self.inner
                .cold_starts
                .check(client)
                .map_err(|retry_after| AcquireError::TooManyStarts { retry_after })?;
        }
        if !inst.class.try_take_slot() {
            return Err(AcquireError::ClassFull {
                class: inst.class.name.to_string(),
                max: inst.class.max_instances,
            });
        }
        if let Some(client) = client {
            self.inner.cold_starts.count(client);
        }
        let (tx, mailbox) = mpsc::unbounded_channel();
        *control = Some(tx);
        inst.set_status(|s| s.state = InstanceState::Starting);
        self.spawn_task(inst, self.inner.driver.clone(), mailbox);
        Ok(true)
    }

    /// The class of `inst` is full: puts its least recently used idle instance to sleep and
    /// waits (bounded by the class's `stop_timeout`) until its slot is free. `ClassFull` when
    /// every instance is busy.
    async fn make_room(&self, inst: &Arc<Instance>) -> Result<(), AcquireError> {
        let class = &inst.class;
        let full = || AcquireError::ClassFull {
            class: class.name.to_string(),
            max: class.max_instances,
        };
        let victim = idle_victim(class, inst).ok_or_else(full)?;
        let sent = victim
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.send(Command::Evict).is_ok());
        if !sent {
            // Its task ended meanwhile: its slot is free already.
            return Ok(());
        }
        let deadline = Instant::now() + class.stop_timeout + Duration::from_secs(1);
        let mut status = victim.status.subscribe();
        while victim.has_task() && Instant::now() < deadline {
            if matches!(victim.state(), InstanceState::Ready)
                && victim.active.load(Ordering::SeqCst) > 0
            {
                // A request reached it after it was picked: it stays, and so does the refusal.
                return Err(full());
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), status.changed()).await;
        }
        Ok(())
    }

    /// Takes over an instance that an earlier valet started and [`Driver::recover`] found still
    /// running (containers outlive valet). Its task gets it as its first start, so it is probed
    /// ready, then served, put to sleep and stopped like any other. False when its class is gone
    /// or full: the instance is then dropped, which stops it. A stale one (older config) is
    /// replaced by its task once it serves: see `Command::Replace`.
    pub fn adopt(&self, adopted: Adopted) -> bool {
        let Adopted { id, running, stale } = adopted;
        let Some(class) = self.class(id.class()).cloned() else {
            return false;
        };
        let Ok(inst) = self.record(&class, id.key()) else {
            return false;
        };
        let mut control = inst.control.lock().unwrap_or_else(|e| e.into_inner());
        if control.is_some() || !class.try_take_slot() {
            return false;
        }
        let (tx, mailbox) = mpsc::unbounded_channel();
        if stale {
            // Queued first: the task reads its mailbox only once the adopted container is ready
            // and serving, which is when a successor may start beside it.
            let _ = tx.send(Command::Replace);
        }
        *control = Some(tx);
        inst.set_status(|s| s.state = InstanceState::Starting);
        let driver = Arc::new(Handover::new(running, self.inner.driver.clone()));
        self.spawn_task(&inst, driver, mailbox);
        true
    }

    fn spawn_task(
        &self,
        inst: &Arc<Instance>,
        driver: Arc<dyn Driver>,
        mailbox: mpsc::UnboundedReceiver<Command>,
    ) {
        let task = Task {
            inst: inst.clone(),
            driver,
            mailbox,
            shutdown: self.inner.shutdown.clone(),
            lives: 0,
            coordinator: self.inner.coordinator.get().cloned(),
            epoch: None,
            fence_at: None,
            fenced: false,
        };
        self.inner.tasks.spawn_on(task.run(), &self.inner.runtime);
    }

    /// Cluster mode: from now on every start first asks `coordinator` whether this replica may
    /// run the key. Set once, before the first request.
    pub fn set_coordinator(&self, coordinator: Arc<dyn Coordinator>) {
        let _ = self.inner.coordinator.set(coordinator);
    }

    /// This replica's node name in cluster mode.
    pub fn node(&self) -> Option<&str> {
        self.inner.coordinator.get().map(|c| c.node())
    }

    /// The coordinator, in cluster mode (the peer listener checks epochs with it).
    pub fn coordinator(&self) -> Option<&Arc<dyn Coordinator>> {
        self.inner.coordinator.get()
    }

    /// The key's lease `epoch` is lost: no new request reaches its instance from now on, and
    /// its task stops it and ends. Requests already in flight end with the instance. A task
    /// that holds a later lease of the key (claimed since) is left alone.
    pub fn fence(&self, id: &InstanceId, epoch: u64) {
        if let Some(inst) = self.record_of(id) {
            fence_record(&inst, epoch);
        }
    }

    /// Forgets which replica owns a key another replica served (its lease changed hands or
    /// was given up): the next request asks the store again.
    pub fn forget_owner(&self, id: &InstanceId) {
        if let Some(inst) = self.record_of(id) {
            if let Some(route) = forget_route(&inst) {
                route.moved.cancel();
            }
        }
    }

    /// [`Self::forget_owner`] for every key another replica serves (after the change feed
    /// was interrupted and changes may have been missed).
    pub fn forget_owners(&self) {
        // The owners very likely still serve: requests waiting on them keep waiting.
        for (_, inst) in self.remote_records() {
            forget_route(&inst);
        }
    }

    /// A request for `inst` could not reach its owner replica `node`: the route is forgotten,
    /// and the next claim waits the owner's lease out rather than trusting it.
    pub fn owner_unreachable(&self, inst: &Instance, node: &str) {
        if let Some(coordinator) = self.inner.coordinator.get() {
            coordinator.unreachable(node);
        }
        // Requests still waiting on the unreachable owner (a partition leaves their
        // connections open and silent) go again where the key is served next, if they may.
        if let Some(route) = forget_route(inst) {
            route.moved.cancel();
        }
    }

    /// Keys whose requests go to another replica, with the route they take.
    pub fn remote_records(&self) -> Vec<(Arc<PeerRoute>, Arc<Instance>)> {
        let mut out = Vec::new();
        for class in self.classes().iter().chain(&self.project_classes()) {
            for inst in class.instances.pin().values() {
                if let Some(route) = inst.remote() {
                    out.push((route, inst.clone()));
                }
            }
        }
        out
    }

    /// A config class or a deployed version's class by name, or by lease name: a project's
    /// `project:<id>` is the class of its current version.
    pub fn class_named(&self, name: &str) -> Option<Arc<ClassRuntime>> {
        if let Some(class) = self.class(name) {
            return Some(class.clone());
        }
        if let Some(project) = name.strip_prefix("project:") {
            return self.project(project);
        }
        self.project_classes()
            .into_iter()
            .find(|c| &*c.name == name)
    }

    fn record_of(&self, id: &InstanceId) -> Option<Arc<Instance>> {
        let class = self.class_named(id.class())?;
        let inst = class.instances.pin().get(id.key()).cloned();
        inst
    }

    /// Starts an instance without a request (admin `start`, `min_instances` at boot).
    pub async fn start(&self, class: &Arc<ClassRuntime>, key: &str) -> Result<(), AcquireError> {
        self.acquire(class, key, class.default_port).await.map(drop)
    }

    /// Stops an instance; `destroy` also deletes its persistent data and forgets the key.
    /// Returns false when the key is unknown.
    pub async fn stop(&self, class: &Arc<ClassRuntime>, key: &str, destroy: bool) -> bool {
        if let Some(scale) = class.scale.filter(|_| !key.contains(REPLICA_SEP)) {
            // A scaled key's replicas go with it.
            for i in 1..scale.max_replicas {
                Box::pin(self.stop(class, &replica_key(key, i), destroy)).await;
            }
        }
        let Some(inst) = class.instances.pin().get(key).cloned() else {
            return false;
        };
        let mut status = inst.status.subscribe();
        let sent = {
            let control = inst.control.lock().unwrap_or_else(|e| e.into_inner());
            control
                .as_ref()
                .is_some_and(|tx| tx.send(Command::Stop { destroy }).is_ok())
        };
        if sent {
            let _ = status
                .wait_for(|s| matches!(s.state, InstanceState::Stopped | InstanceState::Crashed))
                .await;
        }
        if destroy {
            // A sleeping or crashed instance has no task to delete its data: do it here.
            if !sent {
                crate::task::remove_data(&inst, &*self.inner.driver).await;
            }
            class.instances.pin().remove(key);
        }
        true
    }

    /// Boots the fixed keys that `min_instances` keeps running.
    pub async fn start_pinned(&self) {
        for class in self.classes().to_vec() {
            for key in class
                .pinned_fixed_keys()
                .map(|k| k.into_owned())
                .collect::<Vec<_>>()
            {
                // That very instance, a replica too: not a pick among the key's replicas.
                let started = match self.record(&class, &key) {
                    Ok(inst) => self.acquire_record(inst, class.default_port, None).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = started.map(drop) {
                    tracing::warn!(class = %class.name, key = %key, error = %e, "pinned instance did not start");
                }
            }
        }
    }

    /// The record of a known key (sleeping ones included), without creating one.
    pub fn get(&self, class: &str, key: &str) -> Option<Arc<Instance>> {
        self.class(class)?.instances.pin().get(key).cloned()
    }

    /// The record of a key of any class (deployed project classes included), without creating one.
    pub fn instance_of(&self, class: &ClassRuntime, key: &str) -> Option<Arc<Instance>> {
        class.instances.pin().get(key).cloned()
    }

    /// Every known instance, sleeping ones included; in cluster mode also the keys another
    /// replica owns that this one forwarded to (their `owner` names that replica).
    pub fn list(&self) -> Vec<InstanceInfo> {
        let mut all = Vec::new();
        for class in self.classes().iter().chain(&self.project_classes()) {
            all.extend(class.instances.pin().values().map(|i| self.info_of(i)));
        }
        all.sort_by(|a, b| (&a.class, &a.key, a.replica).cmp(&(&b.class, &b.key, b.replica)));
        all
    }

    /// A snapshot of one instance, its `owner` filled in: in cluster mode this replica's node
    /// name for a key whose lease it holds, the owner's for a key it forwards, and none for a
    /// key nobody here knows to be held (asleep, or its owner forgotten).
    pub fn info_of(&self, inst: &Instance) -> InstanceInfo {
        let mut info = inst.info();
        if info.owner.is_none() {
            if let Some(coordinator) = self.inner.coordinator.get() {
                if coordinator.epoch_of(&inst.lease_id()).is_some() {
                    info.owner = Some(coordinator.node().to_string());
                }
            }
        }
        info
    }

    /// Number of known keys per class (for memory accounting and metrics).
    pub fn known(&self) -> usize {
        self.classes().iter().map(|c| c.instances.len()).sum()
    }

    /// Waits until every instance task has stopped its instance. Call after the shutdown
    /// signal fired: each task stops its instance gracefully (SIGTERM, stop_timeout, SIGKILL).
    pub async fn wait_stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// Idle instances put to sleep for one request before its key is refused as over
/// `max_instances`: each may lose its slot to another request in between.
const MAX_EVICTIONS: usize = 3;

/// The warm path. `active` goes up before the pointer is read, so an instance going to sleep
/// (which clears the pointer, then checks `active`) can never stop under a leased request.
/// No new request reaches the instance of `inst` under lease `epoch`; its task stops it.
fn fence_record(inst: &Instance, epoch: u64) {
    let current = inst.ready.load_full();
    if current.as_ref().is_some_and(|r| r.epoch == Some(epoch)) {
        let _ = inst
            .ready
            .compare_and_swap(&current, None::<Arc<crate::instance::Ready>>);
    }
    let control = inst.control.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = control.as_ref() {
        let _ = tx.send(Command::Fence { epoch });
    }
}

fn try_lease(inst: &Arc<Instance>, port: usize) -> Option<Lease> {
    inst.active.fetch_add(1, Ordering::SeqCst);
    match &*inst.ready.load() {
        // A lease whose fence is due is not served, even if the timer that fences it has not
        // run yet (a starved machine): this request fences it and waits as after a fence.
        Some(ready) if ready.fence_at.as_ref().is_some_and(|f| f.due()) => {
            inst.active.fetch_sub(1, Ordering::SeqCst);
            if let Some(epoch) = ready.epoch {
                fence_record(inst, epoch);
            }
            None
        }
        Some(ready) => Some(Lease::counted(
            inst.clone(),
            ready.ports[port.min(ready.ports.len() - 1)],
            ready.via.clone(),
        )),
        None => {
            inst.active.fetch_sub(1, Ordering::SeqCst);
            None
        }
    }
}

/// The record of a replica by its internal key, made on first sight. Not checked as a
/// client's key: valet makes these keys itself ([`replica_key`]).
fn replica_record(class: &Arc<ClassRuntime>, key: &str) -> Arc<Instance> {
    class
        .instances
        .pin()
        .get_or_insert_with(key.into(), || Arc::new(Instance::new(class.clone(), key)))
        .clone()
}

/// Where [`Instances::place`] sends a request.
enum Placed {
    /// To a ready replica, leased already.
    Leased(Lease),
    /// The key has no replica running: its first instance starts, as without `scale`.
    Cold(Arc<Instance>),
    /// To a replica that is starting: the request waits for it as for a cold start.
    Wait(Arc<Instance>),
}

/// Failing its starts again and again: requests get 503 at once rather than wait for it.
fn in_crash_loop(inst: &Instance) -> bool {
    let s = inst.status.borrow();
    s.failures >= CRASH_LOOP && matches!(s.state, InstanceState::Backoff | InstanceState::Crashed)
}

/// A replica that serves now: here, or (cluster mode) on the node that holds its lease.
fn is_ready(inst: &Instance) -> bool {
    inst.ready.load().is_some()
}

/// A lease on the ready replica with the fewest requests in flight (the lowest-numbered among
/// equals, so higher ones are the first to idle and sleep), if it has fewer than `below`.
fn least_loaded(
    replicas: &[Option<Arc<Instance>>],
    port: usize,
    below: Option<u32>,
) -> Option<Lease> {
    let (active, replica) = replicas
        .iter()
        .flatten()
        .filter(|i| i.ready.load().is_some())
        .map(|i| (i.active.load(Ordering::SeqCst), i))
        .min_by_key(|(active, _)| *active)?;
    if below.is_some_and(|below| active >= below as usize) {
        return None;
    }
    try_lease(replica, port)
}

/// Counts a request of a scaled key as unplaced until it has a replica or gives up.
struct UnplacedGuard<'a>(&'a Instance);

impl Drop for UnplacedGuard<'_> {
    fn drop(&mut self) {
        self.0.unplaced.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Clears a record's route to another replica, if it still has one.
/// Forgets the key's route to another replica, if it has one; returns it.
fn forget_route(inst: &Instance) -> Option<Arc<PeerRoute>> {
    let current = inst.ready.load_full();
    let route = current.as_ref().and_then(|r| r.via.clone())?;
    // Only the route read just now: a local start that replaced it meanwhile stays.
    let _ = inst
        .ready
        .compare_and_swap(&current, None::<Arc<crate::instance::Ready>>);
    Some(route)
}

fn unavailable(inst: &Instance) -> AcquireError {
    let s = inst.status.borrow();
    AcquireError::Unavailable {
        state: s.state,
        message: s
            .message
            .clone()
            .unwrap_or_else(|| "instance is not available".into()),
        retry_after: s.retry_after(),
        public_reason: s.public_reason.clone(),
    }
}

struct WaitingGuard<'a>(&'a Instance);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A project being built on this replica; see [`Instances::project_arriving`].
pub struct ArrivingProject {
    table: Arc<Inner>,
    id: Box<str>,
}

impl Drop for ArrivingProject {
    fn drop(&mut self) {
        let mut arriving = lock_arriving(&self.table.arriving);
        if let Some(n) = arriving.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                arriving.remove(&self.id);
            }
        }
    }
}

fn lock_arriving(
    map: &Mutex<HashMap<Box<str>, usize>>,
) -> std::sync::MutexGuard<'_, HashMap<Box<str>, usize>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}
