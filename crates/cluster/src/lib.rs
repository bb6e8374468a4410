//! Cluster mode: several valet replicas on one PostgreSQL store, exactly one instance per key
//! cluster-wide.
//!
//! Every (class, key) has at most one owner replica: a lease row (owner, epoch, endpoint,
//! expiry) taken in one statement ([`sql::CLAIM`]). The owner renews all its leases in one
//! statement per round ([`sql::RENEW`], every quarter `lease_ttl`, on a connection of its
//! own). A lease whose expiry was last set (by its claim or a renewal) three quarters of
//! `lease_ttl` ago stops being served here and its instance stops, at that moment rather than
//! when a round that hangs gives up, before the lease can expire and another replica takes
//! the key with `epoch + 1`. Other replicas cache owners in the instance table (the record
//! routes to the owner's peer listener) and forget them when the store says the lease changed
//! (`LISTEN/NOTIFY`, sent by a trigger in the changing transaction), when their change feed
//! reconnects, when an owner's lease is seen expired (a sweep every `lease_ttl`), or when the
//! owner cannot be reached.
#![forbid(unsafe_code)]

mod sql;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgArguments, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use valet_config::Config;
use valet_core::{InstanceId, Shutdown};
use valet_instances::owner::{encode_target, ClaimFuture};
use valet_instances::{
    Claim, ClaimError, ClusterCounters, ClusterView, Coordinator, FenceAt, Instances, LeaseView,
    NodeView, PeerRoute,
};

/// The field a forwarded request carries the peer token in, and the one naming its instance.
pub const PEER_TOKEN_FIELD: &str = "x-valet-peer";
pub const PEER_TARGET_FIELD: &str = "x-valet-instance";

/// One replica's membership: its leases, its cache of other owners, its background tasks.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    boot: String,
    advertise: SocketAddr,
    ttl: Duration,
    token: Arc<str>,
    pool: PgPool,
    /// Keys this replica holds, each with its epoch and when its expiry was last set.
    owned: Mutex<HashMap<InstanceId, Held>>,
    /// Nodes a forwarded request could not reach lately: their leases are waited out.
    unreachable: Mutex<HashMap<String, Instant>>,
    taken: AtomicU64,
    lost: AtomicU64,
    renewals: AtomicU64,
    renewals_late: AtomicU64,
    /// Releases on their way to the store, awaited at shutdown so that the next owner need
    /// not wait a lease out.
    releasing: tokio_util::task::TaskTracker,
    /// When the change feed last delivered anything (a change, or any replica's heartbeat).
    feed_heard: Mutex<Instant>,
    /// Told by the sweep when the feed stayed silent though the store answers: the feed's
    /// connection hangs (a partition leaves a TCP connection open with nobody behind it), and
    /// the listener must connect again.
    feed_stale: tokio::sync::Notify,
    /// Told of deployed projects that changed (`Some(id)`), and that changes may have been
    /// missed (`None`: the feed was interrupted): see [`Cluster::follow_projects`].
    projects: std::sync::OnceLock<ProjectHook>,
    /// Another boot holds this replica's node name (this one was paused or cut off past its
    /// registration, and a replica of the same name started meanwhile): nothing is claimed
    /// or renewed here any more.
    evicted: AtomicBool,
}

/// What a replica does when a deployed project changes on the store (`Some(id)`: a new
/// version, a rollback, a secret, a delete), or when changes may have been missed (`None`).
pub type ProjectHook = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// A lease this replica holds.
#[derive(Debug, Clone)]
struct Held {
    epoch: u64,
    /// When the last statement that set the lease's expiry (its claim, or a renewal round
    /// that renewed it) was sent. The store set the expiry `lease_ttl` after it ran that
    /// statement, which is no earlier: the lease is fenced `fence_after` from here.
    confirmed: Instant,
    /// `confirmed + fence_after`, where every request for the key's instance reads it.
    fence_at: Arc<FenceAt>,
}

impl Inner {
    /// How long a lease is served here after its expiry was last set: three quarters of
    /// `lease_ttl`, so that the instance has stopped before the lease can expire.
    fn fence_after(&self) -> Duration {
        self.ttl * 3 / 4
    }

    /// How long one claim, release or sweep statement may take before the store counts as
    /// unreachable for it.
    fn statement_budget(&self) -> Duration {
        self.ttl / 2
    }
}

/// The cluster settings of a config, resolved (the secret read from its file).
pub struct Settings {
    pub node: String,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    pub secret: String,
    pub ttl: Duration,
    pub store: String,
}

impl Settings {
    /// `None` when the config has no `[cluster]`.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        let Some(c) = &config.cluster else {
            return Ok(None);
        };
        let listen: SocketAddr = c
            .listen
            .parse()
            .map_err(|e| format!("cluster.listen: {e}"))?;
        let advertise = match &c.advertise {
            Some(a) => a.parse().map_err(|e| format!("cluster.advertise: {e}"))?,
            None => listen,
        };
        let secret = match (&c.secret, &c.secret_file) {
            (Some(s), _) => s.trim().to_string(),
            (None, Some(file)) => {
                let path = config.resolve(file);
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cluster.secret_file {}: {e}", path.display()))?
                    .trim()
                    .to_string()
            }
            (None, None) => return Err("[cluster] needs secret or secret_file".into()),
        };
        Ok(Some(Self {
            node: c.node.clone(),
            listen,
            advertise,
            secret,
            ttl: c.lease_ttl.get(),
            store: config.server.store.clone(),
        }))
    }
}

/// The token a forwarded request carries, made from the cluster secret so that the secret
/// itself never travels.
pub fn peer_token(secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"valet cluster peer token\n");
    hash.update(secret.as_bytes());
    hex::encode(hash.finalize())
}

impl Cluster {
    /// Connects to the store, makes the tables, registers this replica under its node name
    /// (refused while another live replica has that name) and starts renewing, listening and
    /// sweeping. `instances` gets this cluster as its coordinator.
    pub async fn join(
        settings: &Settings,
        instances: &Instances,
        shutdown: Shutdown,
    ) -> Result<Self, String> {
        let ttl = settings.ttl;
        // A statement that cannot get a connection within a quarter lease is as good as failed:
        // the renewal after it must still come in time.
        let pool = PgPoolOptions::new()
            .max_connections(6)
            .acquire_timeout((ttl / 4).max(Duration::from_millis(250)))
            .connect(&settings.store)
            .await
            .map_err(|e| format!("cluster store: {e}"))?;
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| format!("cluster store: {e}"))?;
        for statement in sql::SCHEMA {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("cluster store: making the lease tables: {e}"))?;
        }
        tx.commit()
            .await
            .map_err(|e| format!("cluster store: {e}"))?;
        let cluster = Self {
            inner: Arc::new(Inner {
                node: settings.node.clone(),
                boot: format!("{:016x}", fastrand::u64(..)),
                advertise: settings.advertise,
                ttl,
                token: peer_token(&settings.secret).into(),
                pool,
                owned: Mutex::new(HashMap::new()),
                unreachable: Mutex::new(HashMap::new()),
                taken: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                renewals: AtomicU64::new(0),
                renewals_late: AtomicU64::new(0),
                releasing: tokio_util::task::TaskTracker::new(),
                feed_heard: Mutex::new(Instant::now()),
                feed_stale: tokio::sync::Notify::new(),
                evicted: AtomicBool::new(false),
                projects: std::sync::OnceLock::new(),
            }),
        };
        cluster.register().await?;
        instances.set_coordinator(Arc::new(cluster.clone()));
        // Renewal goes on through shutdown: instances still stopping are still this replica's.
        tokio::spawn(renew(cluster.clone(), instances.clone()));
        tokio::spawn(listen(cluster.clone(), instances.clone(), shutdown.clone()));
        tokio::spawn(sweep(cluster.clone(), instances.clone(), shutdown));
        tracing::info!(node = %settings.node, advertise = %settings.advertise, lease_ttl = ?ttl, "joined the cluster");
        Ok(cluster)
    }

    /// Waits (at most `within`) for releases still on their way to the store: call after every
    /// instance stopped, before exiting.
    pub async fn drain(&self, within: Duration) {
        self.inner.releasing.close();
        let _ = tokio::time::timeout(within, self.inner.releasing.wait()).await;
    }

    /// Calls `hook` for every deployed project that changes on any replica, from the same
    /// change feed as the leases (the store sends `!project\n<id>` on it at the commit of the
    /// change), and with `None` whenever the feed was interrupted, since changes sent
    /// meanwhile are lost. Set once, before the projects are first read from the store: what
    /// changed before that is in what is read.
    pub fn follow_projects(&self, hook: ProjectHook) {
        let _ = self.inner.projects.set(hook);
    }

    fn projects_changed(&self, id: Option<&str>) {
        if let Some(hook) = self.inner.projects.get() {
            hook(id);
        }
    }

    /// The peer token every forwarded request must carry.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Takes this replica's node name; a live replica already using it has it renewed at
    /// least every quarter `lease_ttl`, so it is waited for at most one `lease_ttl` (a replica
    /// restarted right after it was killed finds its old registration expiring).
    async fn register(&self) -> Result<(), String> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.ttl + Duration::from_millis(500);
        loop {
            let row = sqlx::query(sql::REGISTER)
                .bind(&inner.node)
                .bind(&inner.boot)
                .bind(inner.advertise.to_string())
                .bind(inner.ttl.as_secs_f64())
                .fetch_optional(&inner.pool)
                .await
                .map_err(|e| format!("cluster store: registering node {}: {e}", inner.node))?;
            if row.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let holder = sqlx::query(sql::NODE_HOLDER)
                    .bind(&inner.node)
                    .fetch_optional(&inner.pool)
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.get::<String, _>(0))
                    .unwrap_or_default();
                return Err(format!(
                    "[cluster] node {:?} is in use by a running replica (peer listener {holder}), \
                     which keeps renewing it: give every replica its own node name",
                    inner.node
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn route(
        &self,
        owner: String,
        epoch: u64,
        endpoint: &str,
        id: &InstanceId,
    ) -> Option<PeerRoute> {
        Some(PeerRoute {
            node: owner.into(),
            epoch,
            endpoint: endpoint.parse().ok()?,
            token: self.inner.token.clone(),
            target: encode_target(id),
            moved: Default::default(),
        })
    }

    async fn try_claim(&self, id: &InstanceId) -> Result<Claim, ClaimError> {
        let inner = &self.inner;
        // A lease whose owner stopped answering is waited out, at most this long.
        let deadline = Instant::now() + inner.ttl * 2 + Duration::from_secs(1);
        let mut waiting = false;
        let budget = inner.statement_budget();
        for _ in 0..64 {
            if inner.evicted.load(Ordering::Relaxed) {
                return Err(evicted(&inner.node));
            }
            let sent = Instant::now();
            let claim = sqlx::query(sql::CLAIM)
                .bind(id.class())
                .bind(id.key())
                .bind(&inner.node)
                .bind(inner.advertise.to_string())
                .bind(inner.ttl.as_secs_f64())
                .bind(&inner.boot);
            let claimed = on_store(&inner.pool, budget, claim)
                .await
                .map_err(store_error)?;
            if let Some(row) = claimed.first() {
                let epoch = row.get::<i64, _>(0) as u64;
                if sent.elapsed() >= inner.fence_after() {
                    // An answer this late is for a lease about to expire, if it has not:
                    // claim again (the same owner's claim sets a new expiry and epoch).
                    continue;
                }
                let due = sent + inner.fence_after();
                let mut owned = lock(&inner.owned);
                // Claimed again while held here (a project's next version starting beside the
                // one that serves, under the same lease): one lease, one deadline, shared by
                // every instance that serves under it here.
                let fence_at = match owned.get(id) {
                    Some(held) => {
                        held.fence_at.set(due);
                        held.fence_at.clone()
                    }
                    None => Arc::new(FenceAt::new(due)),
                };
                let held = Held {
                    epoch,
                    confirmed: sent,
                    fence_at,
                };
                owned.insert(id.clone(), held);
                drop(owned);
                inner.taken.fetch_add(1, Ordering::Relaxed);
                tracing::info!(instance = %id, epoch, "lease taken");
                return Ok(Claim::Mine { epoch });
            }
            let owner = sqlx::query(sql::OWNER).bind(id.class()).bind(id.key());
            let owner = on_store(&inner.pool, budget, owner)
                .await
                .map_err(store_error)?;
            // No row or an expired one: the race's winner committed in between, or gave up;
            // claim again.
            let Some(row) = owner.first() else { continue };
            let (node, epoch, endpoint, left_ms) = (
                row.get::<String, _>(0),
                row.get::<i64, _>(1) as u64,
                row.get::<String, _>(2),
                row.get::<i64, _>(3),
            );
            if node == inner.node {
                // A claim of this replica's own lease fails only when another boot has its
                // name, or when another claim of the key here took it in between.
                let mine = sqlx::query(sql::REGISTERED)
                    .bind(&inner.node)
                    .bind(&inner.boot);
                let mine = on_store(&inner.pool, budget, mine)
                    .await
                    .map_err(store_error)?;
                if mine.is_empty() {
                    inner.evicted.store(true, Ordering::Relaxed);
                    return Err(evicted(&inner.node));
                }
                continue;
            }
            if left_ms <= 0 {
                continue;
            }
            let suspect = lock(&inner.unreachable)
                .get(&node)
                .is_some_and(|at| at.elapsed() < inner.ttl * 2);
            let expiry = Duration::from_millis(left_ms as u64 + 20);
            if suspect && Instant::now() + expiry <= deadline {
                if !waiting {
                    tracing::info!(instance = %id, owner = %node, wait_ms = left_ms, "owner unreachable: waiting for its lease to expire");
                    waiting = true;
                }
                // In slices, claiming again after each: an owner that shuts down closes its
                // peer listener first and releases its leases only once it drained, and a
                // released lease is taken at once rather than when it would have expired.
                tokio::time::sleep(expiry.min(inner.ttl / 8)).await;
                continue;
            }
            return match self.route(node, epoch, &endpoint, id) {
                Some(route) => Ok(Claim::Theirs(Arc::new(route))),
                None => Err(ClaimError(format!(
                    "the owner's endpoint {endpoint:?} is not an address"
                ))),
            };
        }
        Err(ClaimError(
            "the lease changed hands too often to settle".into(),
        ))
    }
}

fn evicted(node: &str) -> ClaimError {
    ClaimError(format!(
        "another replica took over node name {node:?} while this one could not renew it: \
         this replica runs no instance until it is restarted"
    ))
}

fn store_error(e: sqlx::Error) -> ClaimError {
    ClaimError(e.to_string())
}

/// Runs one statement on a pooled connection, `within` at most (waiting for a connection
/// included). A connection whose statement timed out is closed, not given back: the pool
/// would test it with a ping that waits, with no bound, for as long as a partition lasts,
/// and keep one of its connections meanwhile.
async fn on_store(
    pool: &PgPool,
    within: Duration,
    statement: sqlx::query::Query<'_, Postgres, PgArguments>,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let deadline = Instant::now() + within;
    let mut conn = tokio::time::timeout_at(deadline, pool.acquire())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    match tokio::time::timeout_at(deadline, statement.fetch_all(&mut *conn)).await {
        Ok(rows) => rows,
        Err(_) => {
            drop(conn.detach());
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the cluster store did not answer within {within:?}"),
            )))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Coordinator for Cluster {
    fn node(&self) -> &str {
        &self.inner.node
    }

    fn claim<'a>(&'a self, id: &'a InstanceId) -> ClaimFuture<'a> {
        Box::pin(self.try_claim(id))
    }

    fn release(&self, id: &InstanceId, epoch: u64) {
        let inner = self.inner.clone();
        {
            let mut owned = lock(&inner.owned);
            if owned.get(id).is_some_and(|held| held.epoch == epoch) {
                owned.remove(id);
            }
        }
        let id = id.clone();
        let tracker = self.inner.releasing.clone();
        tracker.spawn(async move {
            let release = sqlx::query(sql::RELEASE)
                .bind(id.class())
                .bind(id.key())
                .bind(&inner.node)
                .bind(epoch as i64);
            let done = on_store(&inner.pool, inner.statement_budget(), release).await;
            match done {
                Ok(_) => tracing::debug!(instance = %id, epoch, "lease released"),
                // It expires by itself within lease_ttl.
                Err(e) => tracing::warn!(instance = %id, epoch, error = %e, "lease not released"),
            }
        });
    }

    fn unreachable(&self, node: &str) {
        lock(&self.inner.unreachable).insert(node.to_string(), Instant::now());
    }

    /// `None` also for a lease held here whose fence is due: it may be about to expire.
    /// The fence comes at 3/4 lease_ttl: a fenced instance has the next eighth to stop, so
    /// that it is gone an eighth before its lease can expire.
    fn fence_grace(&self) -> Duration {
        self.inner.ttl / 8
    }

    fn epoch_of(&self, id: &InstanceId) -> Option<u64> {
        let owned = lock(&self.inner.owned);
        let held = owned.get(id)?;
        (held.confirmed.elapsed() < self.inner.fence_after()).then_some(held.epoch)
    }

    fn fence_at(&self, id: &InstanceId) -> Option<Arc<FenceAt>> {
        lock(&self.inner.owned)
            .get(id)
            .map(|held| held.fence_at.clone())
    }

    fn view(
        &self,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<ClusterView, ClaimError>> + Send + '_>>
    {
        Box::pin(async move {
            let (pool, within) = (&self.inner.pool, self.inner.ttl);
            let nodes = on_store(pool, within, sqlx::query(sql::NODES))
                .await
                .map_err(store_error)?
                .into_iter()
                .map(|r| NodeView {
                    node: r.get(0),
                    endpoint: r.get(1),
                    alive: r.get(2),
                })
                .collect();
            let leases = on_store(pool, within, sqlx::query(sql::LEASES))
                .await
                .map_err(store_error)?
                .into_iter()
                .map(|r| LeaseView {
                    class: r.get(0),
                    key: r.get(1),
                    owner: r.get(2),
                    epoch: r.get::<i64, _>(3) as u64,
                    endpoint: r.get(4),
                    expires_in_ms: r.get(5),
                })
                .collect();
            Ok(ClusterView {
                node: self.inner.node.clone(),
                nodes,
                leases,
                counters: self.counters(),
            })
        })
    }

    fn counters(&self) -> ClusterCounters {
        let i = &self.inner;
        ClusterCounters {
            taken: i.taken.load(Ordering::Relaxed),
            lost: i.lost.load(Ordering::Relaxed),
            renewals_late: i.renewals_late.load(Ordering::Relaxed),
            renewals: i.renewals.load(Ordering::Relaxed),
            held: lock(&i.owned).len() as u64,
        }
    }
}

/// Renews every held lease every quarter `lease_ttl`, in one statement, on a connection of
/// its own: claims queued for the pool's connections (a burst of cold keys) never hold a
/// renewal up. A lease missing from the answer is lost: its instance stops. A lease whose
/// expiry was last set three quarters of `lease_ttl` ago is fenced at that moment, also while
/// a round hangs (see [`fencing`]): every key is fenced before its lease can have expired.
async fn renew(cluster: Cluster, instances: Instances) {
    let inner = &cluster.inner;
    let every = inner.ttl / 4;
    let mut last_ok = Instant::now();
    let mut conn: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        fencing(inner, &instances, tick.tick()).await;
        let held: Vec<(InstanceId, u64)> = lock(&inner.owned)
            .iter()
            .map(|(id, held)| (id.clone(), held.epoch))
            .collect();
        let sent = Instant::now();
        let round = tokio::time::timeout(every, renew_round(inner, &mut conn, &held));
        match fencing(inner, &instances, round).await {
            Ok(Ok(rows)) => {
                if sent.duration_since(last_ok) > inner.ttl / 2 {
                    inner.renewals_late.fetch_add(1, Ordering::Relaxed);
                }
                inner.renewals.fetch_add(1, Ordering::Relaxed);
                last_ok = sent;
                // Leases renewed, and a row of NULLs for the node's registration.
                let mut registered = false;
                let mut kept: HashSet<(String, String, i64)> = HashSet::new();
                for r in &rows {
                    match r.get::<Option<String>, _>(0) {
                        Some(class) => {
                            kept.insert((class, r.get(1), r.get(2)));
                        }
                        None => registered = true,
                    }
                }
                if !registered && !inner.evicted.swap(true, Ordering::Relaxed) {
                    tracing::error!(node = %inner.node, "another replica took over this node name: every lease here is lost, and nothing is claimed until restart");
                }
                for (id, epoch) in held {
                    let key = (id.class().to_string(), id.key().to_string(), epoch as i64);
                    if kept.contains(&key) {
                        confirm(inner, &id, epoch, sent);
                        continue;
                    }
                    lose(
                        inner,
                        &instances,
                        &id,
                        epoch,
                        "not renewed: taken or expired",
                    );
                }
            }
            Ok(Err(e)) => {
                // The connection may be broken: the next round connects again.
                conn = None;
                inner.renewals_late.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot renew leases");
            }
            Err(_) => {
                // Closed, not reused: a statement may still be on its way.
                conn = None;
                inner.renewals_late.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("cannot renew leases: the store did not answer in time");
            }
        }
        fence_due(inner, &instances);
    }
}

/// One renewal round on the renewal's own connection, made first if there is none.
async fn renew_round(
    inner: &Inner,
    conn: &mut Option<PgConnection>,
    held: &[(InstanceId, u64)],
) -> Result<Vec<PgRow>, sqlx::Error> {
    if conn.is_none() {
        let options = inner.pool.connect_options();
        *conn = Some(PgConnection::connect_with(&options).await?);
    }
    let conn = conn.as_mut().expect("connected above");
    let classes: Vec<&str> = held.iter().map(|(id, _)| id.class()).collect();
    let keys: Vec<&str> = held.iter().map(|(id, _)| id.key()).collect();
    let epochs: Vec<i64> = held.iter().map(|(_, e)| *e as i64).collect();
    sqlx::query(sql::RENEW)
        .bind(&inner.node)
        .bind(inner.ttl.as_secs_f64())
        .bind(&classes)
        .bind(&keys)
        .bind(&epochs)
        .bind(&inner.boot)
        .fetch_all(conn)
        .await
}

/// Awaits `work`, fencing each held lease the moment its fence is due meanwhile: a round
/// that hangs until its timeout must not put a fence off (three quarters of `lease_ttl` plus
/// a round's quarter is a whole `lease_ttl`: the lease's expiry).
async fn fencing<F: Future>(inner: &Inner, instances: &Instances, work: F) -> F::Output {
    tokio::pin!(work);
    loop {
        // Looked at again at least every quarter lease_ttl: a key claimed meanwhile is due
        // no sooner than three quarters after its claim.
        let soonest = Instant::now() + inner.ttl / 4;
        let wake = fence_due(inner, instances).map_or(soonest, |due| due.min(soonest));
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Fences every held lease whose expiry was set `fence_after` ago or longer; returns when
/// the next one is due.
fn fence_due(inner: &Inner, instances: &Instances) -> Option<Instant> {
    let now = Instant::now();
    let mut due = Vec::new();
    let mut next: Option<Instant> = None;
    for (id, held) in lock(&inner.owned).iter() {
        let at = held.confirmed + inner.fence_after();
        if at <= now {
            due.push((id.clone(), held.epoch));
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    for (id, epoch) in due {
        lose(
            inner,
            instances,
            &id,
            epoch,
            "store unreachable: fenced before expiry",
        );
    }
    next
}

/// A renewal round sent at `sent` renewed the lease held under `epoch`.
fn confirm(inner: &Inner, id: &InstanceId, epoch: u64, sent: Instant) {
    if let Some(held) = lock(&inner.owned).get_mut(id) {
        if held.epoch == epoch && held.confirmed < sent {
            held.confirmed = sent;
            held.fence_at.set(sent + inner.fence_after());
        }
    }
}

/// A lease this replica held is gone: the key stops being served here.
fn lose(inner: &Inner, instances: &Instances, id: &InstanceId, epoch: u64, why: &str) {
    {
        let mut owned = lock(&inner.owned);
        if owned.get(id).is_none_or(|held| held.epoch != epoch) {
            return;
        }
        if let Some(held) = owned.remove(id) {
            // Due now: a request that reads the ready pointer before the fence below clears
            // it is not served either.
            held.fence_at.set(Instant::now());
        }
    }
    inner.lost.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(instance = %id, epoch, reason = why, "lease lost; stopping the instance");
    instances.fence(id, epoch);
}

/// Follows lease changes (`LISTEN valet_leases`): a key whose lease changed is looked up again
/// on its next request. After any gap in the feed every cached owner is forgotten as soon as
/// the feed listens again, since notifications sent meanwhile are lost.
async fn listen(cluster: Cluster, instances: Instances, mut shutdown: Shutdown) {
    let pool = cluster.inner.pool.clone();
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(valet_store::CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            l = connected => l,
            _ = shutdown.wait() => return,
        };
        let Ok(listener) = listener.as_mut() else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                _ = shutdown.wait() => return,
            }
        };
        instances.forget_owners();
        cluster.projects_changed(None);
        *lock(&cluster.inner.feed_heard) = Instant::now();
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = cluster.inner.feed_stale.notified() => {
                    tracing::warn!("lease change feed silent while the store answers; reconnecting");
                    break;
                }
                _ = shutdown.wait() => return,
            };
            match next {
                Ok(Some(note)) => {
                    *lock(&cluster.inner.feed_heard) = Instant::now();
                    // A heartbeat has an empty class (see `sweep`); a change names its key.
                    match note.payload().split_once('\n') {
                        Some(("", _)) | None => {}
                        Some((valet_store::PROJECT_CHANGE, id)) => {
                            cluster.projects_changed(Some(id))
                        }
                        Some((class, key)) => instances.forget_owner(&InstanceId::new(class, key)),
                    }
                }
                // The connection dropped and the listener has already reconnected and listens
                // again (sqlx's eager reconnect): what was sent in between is lost.
                Ok(None) => {
                    instances.forget_owners();
                    cluster.projects_changed(None);
                }
                // Cached owners are kept until the feed is back (the loop above forgets them
                // once it listens again): while the store is down nobody can take a key over,
                // so the owners they name still serve until they fence themselves, and a stale
                // one is harmless anyway, since an owner checks its own lease and epoch before
                // serving a forwarded request. Forgetting them now would turn every warm
                // forwarded request into a claim that the unreachable store cannot answer.
                Err(e) => {
                    tracing::warn!(error = %e, "lease change feed lost; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Every `lease_ttl`: forgets cached owners whose lease expired or changed (an owner that
/// died sends no notification), and starts this replica's share of the `min_instances` keys
/// nobody runs (whoever claims one first runs it).
async fn sweep(cluster: Cluster, instances: Instances, mut shutdown: Shutdown) {
    let inner = &cluster.inner;
    let mut tick = tokio::time::interval(inner.ttl);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pinning: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        // A heartbeat through the feed: every listener hears every replica's once per
        // lease_ttl, so a feed silent for two while the store answers this one is dead.
        let beat = sqlx::query(sql::HEARTBEAT).bind(&inner.node);
        let beat = on_store(&inner.pool, inner.ttl, beat).await;
        if beat.is_ok() && lock(&inner.feed_heard).elapsed() > inner.ttl * 2 {
            inner.feed_stale.notify_waiters();
        }
        let remote = instances.remote_records();
        if !remote.is_empty() {
            let classes: Vec<&str> = remote.iter().map(|(_, i)| &*i.class.lease_name).collect();
            let keys: Vec<&str> = remote.iter().map(|(_, i)| i.id.key()).collect();
            let owners = sqlx::query(sql::OWNERS_OF).bind(&classes).bind(&keys);
            if let Ok(rows) = on_store(&inner.pool, inner.ttl, owners).await {
                let current: HashMap<(String, String), (String, i64, bool)> = rows
                    .into_iter()
                    .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4))))
                    .collect();
                for (route, inst) in &remote {
                    let key = (inst.class.lease_name.to_string(), inst.id.key().to_string());
                    let same = current.get(&key).is_some_and(|(owner, epoch, live)| {
                        *live && owner.as_str() == &*route.node && *epoch as u64 == route.epoch
                    });
                    if !same {
                        instances.forget_owner(&inst.lease_id());
                    }
                }
            }
        }
        // On a task of its own, one at a time: a start waits for its instance to be ready
        // (a pull, a slow readiness), and the heartbeat and the owners' check above must go
        // on every lease_ttl meanwhile.
        if pinning.as_ref().is_none_or(|p| p.is_finished()) {
            let instances = instances.clone();
            pinning = Some(tokio::spawn(async move { instances.start_pinned().await }));
        }
    }
}
