//! Leases on a real PostgreSQL: replicas are `Cluster`s joined in this process, each with its
//! own instance table on `FakeDriver`, all on one database made for the test (and dropped
//! after it, so tests never see each other's leases). PostgreSQL comes from
//! `VALET_TEST_POSTGRES` (default `postgres://valet:valet@127.0.0.1:5432/postgres`, a role
//! that may create databases). Without a reachable server these tests fail under `CI=true`;
//! elsewhere they print that they did not run.
//!
//! `lease_ttl` is 1 s (5 s where a test must tell a notification from the sweep), so the
//! whole file runs in a few seconds of wall time.

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use valet_cluster::{Cluster, Settings};
use valet_core::shutdown::ShutdownTrigger;
use valet_core::{InstanceId, InstanceState, Shutdown};
use valet_instances::owner::encode_target;
use valet_instances::{
    AcquireError, Claim, ClassRuntime, Coordinator, Instances, Lease, LeaseView, PeerRoute,
};
use valet_runtime::fake::{one_class_config, FakeDriver, Plan};

const TTL: Duration = Duration::from_secs(1);

/// A database of the test's own on the test server, dropped with this value (also when the
/// test fails).
struct Db {
    admin_url: String,
    name: String,
    url: String,
}

impl Db {
    /// `None` (the test did not run) when the server is unreachable outside CI.
    async fn new() -> Option<Self> {
        let admin_url = std::env::var("VALET_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://valet:valet@127.0.0.1:5432/postgres".to_string());
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!(
                        "PostgreSQL is required under CI=true, but {admin_url} is unreachable: {e}"
                    );
                }
                eprintln!("NOT RUN: no PostgreSQL at {admin_url}: {e}");
                return None;
            }
        };
        let name = format!("valet_cluster_test_{:016x}", fastrand::u64(..));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        let (server, _) = admin_url.rsplit_once('/').unwrap();
        Some(Self {
            url: format!("{server}/{name}"),
            admin_url,
            name,
        })
    }
}

impl Db {
    /// Runs `statements` on the test's database, in order (after a replica made the tables).
    async fn execute(&self, statements: &[&str]) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        for statement in statements {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        let _ = conn.close().await;
    }

    /// Makes the next claim statement (an insert into the lease table) run `action` once it
    /// has decided and before it answers, in its transaction: what a test wants to happen
    /// between a claim and the replica's next statement.
    async fn at_next_claim(&self, action: &str) {
        self.execute(&[
            "CREATE TABLE IF NOT EXISTS test_hook (action TEXT NOT NULL)",
            "CREATE OR REPLACE FUNCTION test_hook() RETURNS trigger AS $$
             DECLARE todo TEXT;
             BEGIN
               DELETE FROM test_hook RETURNING action INTO todo;
               IF todo IS NOT NULL THEN EXECUTE todo; END IF;
               RETURN NULL;
             END $$ LANGUAGE plpgsql",
            "DROP TRIGGER IF EXISTS test_hook ON valet_leases",
            "CREATE TRIGGER test_hook AFTER INSERT ON valet_leases
             FOR EACH STATEMENT EXECUTE FUNCTION test_hook()",
            &format!(
                "INSERT INTO test_hook VALUES ('{}')",
                action.replace('\'', "''")
            ),
        ])
        .await;
    }

    /// Makes every claim of a key that starts with `prefix` take `secs` in the store.
    async fn slow_claims(&self, prefix: &str, secs: f64) {
        self.execute(&[
            &format!(
                "CREATE OR REPLACE FUNCTION test_slow() RETURNS trigger AS $$
                 BEGIN
                   IF starts_with(NEW.key, '{prefix}') THEN PERFORM pg_sleep({secs}); END IF;
                   RETURN NEW;
                 END $$ LANGUAGE plpgsql"
            ),
            "DROP TRIGGER IF EXISTS test_slow ON valet_leases",
            "CREATE TRIGGER test_slow BEFORE INSERT ON valet_leases
             FOR EACH ROW EXECUTE FUNCTION test_slow()",
        ])
        .await;
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Dropped on the test's runtime, which cannot block on a future: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(e) = sqlx::query(&drop).execute(&mut admin).await {
                        eprintln!("cannot drop the test database {name}: {e}");
                    }
                }
            })
        })
        .join();
    }
}

/// What a [`Relay`] does with the traffic between a replica and the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Passes it both ways.
    Open,
    /// Closes every connection, old and new, at once: the replica's statements fail fast.
    Reset,
    /// Forwards nothing either way and holds every connection open, old and new, as a network
    /// partition does (no error, no close: only silence, which is the case the renewal's
    /// timeouts are for).
    Silent,
}

/// A TCP relay to the store whose path can be changed while replicas use it.
struct Relay {
    url: String,
    path: watch::Sender<Path>,
}

impl Relay {
    async fn to(db: &Db) -> Self {
        let options: PgConnectOptions = db.url.parse().unwrap();
        let upstream = (options.get_host().to_string(), options.get_port());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (path, _) = watch::channel(Path::Open);
        let path_rx = path.subscribe();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut path = path_rx.clone();
                tokio::spawn(async move {
                    let now = *path.borrow_and_update();
                    match now {
                        Path::Silent => return std::future::pending::<()>().await,
                        Path::Reset => return,
                        Path::Open => {}
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let changed = async { path.wait_for(|p| *p != Path::Open).await.map(|p| *p) };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        changed = changed => {
                            if let Ok(Path::Silent) = changed {
                                std::future::pending::<()>().await;
                            }
                            // Reset: both ends close as they are dropped here.
                        }
                    }
                });
            }
        });
        // Query parameters override the URL's host and port.
        let sep = if db.url.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{}{sep}host=127.0.0.1&port={port}", db.url),
            path,
        }
    }

    fn cut(&self) {
        self.path.send_replace(Path::Silent);
    }

    fn reset(&self) {
        self.path.send_replace(Path::Reset);
    }
}

/// One valet replica: its cluster membership and its instance table.
struct Replica {
    node: &'static str,
    cluster: Cluster,
    instances: Instances,
    driver: FakeDriver,
    _trigger: ShutdownTrigger,
    _dir: TempDir,
}

/// Each node's peer listener, as the others are told it.
fn advertise(node: &str) -> SocketAddr {
    let n: u16 = node.bytes().map(u16::from).sum();
    SocketAddr::from(([127, 0, 0, 1], 9000 + n % 1000))
}

fn id(key: &str) -> InstanceId {
    InstanceId::new("C", key)
}

async fn join(store: &str, node: &'static str, ttl: Duration) -> Result<Replica, String> {
    join_with(store, node, ttl, "", FakeDriver::new()).await
}

/// [`join`] with `more` tables in its config (classes, routes), on `driver`.
async fn join_with(
    store: &str,
    node: &'static str,
    ttl: Duration,
    more: &str,
    driver: FakeDriver,
) -> Result<Replica, String> {
    let (config, dir) = one_class_config("", "", more);
    let (trigger, shutdown) = Shutdown::new();
    let instances = Instances::new(&config, Arc::new(driver.clone()), shutdown.clone());
    let settings = Settings {
        node: node.to_string(),
        listen: advertise(node),
        advertise: advertise(node),
        secret: "s".repeat(32),
        ttl,
        store: store.to_string(),
    };
    let cluster = Cluster::join(&settings, &instances, shutdown).await?;
    Ok(Replica {
        node,
        cluster,
        instances,
        driver,
        _trigger: trigger,
        _dir: dir,
    })
}

impl Replica {
    fn class(&self) -> Arc<ClassRuntime> {
        self.instances.class("C").unwrap().clone()
    }

    async fn acquire(&self, key: &str) -> Result<Lease, AcquireError> {
        self.instances.acquire(&self.class(), key, 0).await
    }

    async fn claim(&self, key: &str) -> Claim {
        self.cluster
            .claim(&id(key))
            .await
            .expect("the store answers")
    }

    /// The key's lease as the store has it now (`None`: free, expired or released).
    async fn lease(&self, key: &str) -> Option<LeaseView> {
        let view = self.cluster.view().await.expect("the store answers");
        view.leases.into_iter().find(|l| l.key == key)
    }

    fn remote(&self, key: &str) -> Option<Arc<PeerRoute>> {
        self.instances.get("C", key)?.remote()
    }
}

fn mine(claim: Claim) -> u64 {
    match claim {
        Claim::Mine { epoch } => epoch,
        Claim::Theirs(route) => panic!("expected the lease, {} has it", route.node),
    }
}

fn theirs(claim: Claim) -> Arc<PeerRoute> {
    match claim {
        Claim::Theirs(route) => route,
        Claim::Mine { epoch } => panic!("expected another owner, got the lease ({epoch})"),
    }
}

/// Waits (at most `within`) until `check` (an expression, `.await`s allowed) holds; the
/// value is how long that took.
macro_rules! until {
    ($within:expr, $what:expr, $check:expr) => {{
        let began = Instant::now();
        loop {
            if $check {
                break began.elapsed();
            }
            assert!(
                began.elapsed() < $within,
                "not within {:?}: {}",
                $within,
                $what
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_of_first_claims_across_three_replicas_has_exactly_one_winner() {
    let Some(db) = Db::new().await else { return };
    let replicas = Arc::new([
        join(&db.url, "gw-a", TTL).await.unwrap(),
        join(&db.url, "gw-b", TTL).await.unwrap(),
        join(&db.url, "gw-c", TTL).await.unwrap(),
    ]);
    // Claims straight to the coordinator: every replica asks for every key at once.
    for round in 0..10 {
        let key = format!("race-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let mut racers = Vec::new();
        for r in 0..3 {
            let (replicas, barrier, key) = (replicas.clone(), barrier.clone(), key.clone());
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                replicas[r].claim(&key).await
            }));
        }
        let mut winners = Vec::new();
        let mut routes = Vec::new();
        for (r, racer) in racers.into_iter().enumerate() {
            match racer.await.unwrap() {
                Claim::Mine { epoch } => winners.push((replicas[r].node, epoch)),
                Claim::Theirs(route) => routes.push(route),
            }
        }
        assert_eq!(winners.len(), 1, "{key}: one owner, got {winners:?}");
        let (owner, epoch) = winners[0];
        assert_eq!(epoch, 1, "a key's first lease");
        for route in routes {
            assert_eq!((&*route.node, route.epoch), (owner, epoch));
            assert_eq!(route.endpoint, advertise(owner));
            assert_eq!(route.target, encode_target(&id(&key)));
        }
    }

    // Through the instance tables: a burst of requests on every replica starts one instance
    // cluster-wide, and the other replicas' requests go to its owner.
    let mut burst = Vec::new();
    for r in 0..3 {
        for _ in 0..10 {
            let replicas = replicas.clone();
            burst.push(tokio::spawn(async move {
                let lease = replicas[r].acquire("burst").await.unwrap();
                (r, lease.via().map(|v| v.node.to_string()))
            }));
        }
    }
    let mut served = Vec::new();
    for request in burst {
        served.push(request.await.unwrap());
    }
    let starts: usize = replicas.iter().map(|r| r.driver.starts_of("burst")).sum();
    assert_eq!(starts, 1, "one start cluster-wide");
    let owner = replicas
        .iter()
        .position(|r| r.driver.starts_of("burst") == 1)
        .unwrap();
    for (r, via) in served {
        if r == owner {
            assert_eq!(via, None, "the owner serves its key itself");
        } else {
            assert_eq!(via.as_deref(), Some(replicas[owner].node));
        }
    }
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_grow_with_every_change_of_owner_and_every_claim_and_are_never_reused() {
    let Some(db) = Db::new().await else { return };
    let a = join(&db.url, "gw-a", TTL).await.unwrap();
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    let k = id("k");

    let mut epochs = vec![mine(a.claim("k").await)];
    a.cluster.release(&k, epochs[0]);
    until!(
        TTL,
        "the release reached the store",
        a.lease("k").await.is_none()
    );
    epochs.push(mine(b.claim("k").await)); // another owner
    b.cluster.release(&k, epochs[1]);
    until!(
        TTL,
        "the release reached the store",
        b.lease("k").await.is_none()
    );
    epochs.push(mine(a.claim("k").await)); // back to the first
    epochs.push(mine(a.claim("k").await)); // claimed again by its owner
    assert_eq!(a.cluster.epoch_of(&k), Some(epochs[3]));
    a.cluster.release(&k, epochs[3]);
    until!(
        TTL,
        "the release reached the store",
        a.lease("k").await.is_none()
    );
    epochs.push(mine(a.claim("k").await)); // again after its own release
    assert_eq!(epochs, [1, 2, 3, 4, 5]);
    let held = a.lease("k").await.unwrap();
    assert_eq!((held.owner.as_str(), held.epoch), ("gw-a", 5));
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_lets_another_replica_take_the_key_at_once_with_the_next_epoch() {
    let Some(db) = Db::new().await else { return };
    let a = join(&db.url, "gw-a", TTL).await.unwrap();
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    let epoch = mine(a.claim("k").await);
    assert_eq!(&*theirs(b.claim("k").await).node, "gw-a");

    a.cluster.release(&id("k"), epoch);
    let mut taken = None;
    let took = until!(TTL / 2, "taken by gw-b well before any expiry", {
        if let Claim::Mine { epoch } = b.claim("k").await {
            taken = Some(epoch);
        }
        taken.is_some()
    });
    assert_eq!(taken, Some(epoch + 1), "after {took:?}");
    let route = theirs(a.claim("k").await);
    assert_eq!((&*route.node, route.epoch), ("gw-b", epoch + 1));
    assert_eq!(a.cluster.epoch_of(&id("k")), None);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_under_an_old_epoch_does_not_end_a_newer_lease() {
    let Some(db) = Db::new().await else { return };
    let a = join(&db.url, "gw-a", TTL).await.unwrap();
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    let k = id("k");

    // The same replica: an earlier task's release after the key was claimed again.
    let old = mine(a.claim("k").await);
    let new = mine(a.claim("k").await);
    a.cluster.release(&k, old);
    // Another owner's: gw-b gives up a lease it never held under this epoch.
    b.cluster.release(&k, new);
    a.cluster.drain(TTL).await;
    b.cluster.drain(TTL).await;
    assert_eq!(a.cluster.epoch_of(&k), Some(new), "still held here");
    let held = a.lease("k").await.expect("still held in the store");
    assert_eq!((held.owner.as_str(), held.epoch), ("gw-a", new));
    let route = theirs(b.claim("k").await);
    assert_eq!((&*route.node, route.epoch), ("gw-a", new));

    // An owner's release after the key moved on to another replica.
    a.cluster.release(&k, new);
    until!(TTL, "released", a.lease("k").await.is_none());
    let next = mine(b.claim("k").await);
    a.cluster.release(&k, new);
    a.cluster.drain(TTL).await;
    let held = b.lease("k").await.expect("gw-b's lease stands");
    assert_eq!((held.owner.as_str(), held.epoch), ("gw-b", next));
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_under_a_live_replicas_node_name_is_refused() {
    let Some(db) = Db::new().await else { return };
    let _a = join(&db.url, "gw-a", TTL).await.unwrap();
    let began = Instant::now();
    let error = match join(&db.url, "gw-a", TTL).await {
        Ok(_) => panic!("a second gw-a joined while the first renews"),
        Err(e) => e,
    };
    let waited = began.elapsed();
    assert!(error.contains("\"gw-a\""), "names the node: {error}");
    assert!(
        error.contains(&advertise("gw-a").to_string()),
        "and the live replica: {error}"
    );
    // It waits for the name about one lease_ttl (a replica restarted after a kill finds its
    // old registration expiring), no longer.
    assert!(
        waited >= TTL && waited < TTL + Duration::from_millis(1500),
        "{waited:?}"
    );
    // Another name joins at once.
    let began = Instant::now();
    join(&db.url, "gw-b", TTL).await.unwrap();
    assert!(began.elapsed() < TTL, "{:?}", began.elapsed());
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_claimed_again_by_its_owner_keeps_one_fence_deadline_that_renewals_move() {
    // A project's next version starts beside the one serving, under the same lease: both
    // instances read one deadline, and renewals move it for both.
    let Some(db) = Db::new().await else { return };
    let a = join(&db.url, "gw-a", TTL).await.unwrap();
    let k = id("k");
    let first = mine(a.claim("k").await);
    let serving = a.cluster.fence_at(&k).expect("a deadline for a held lease");
    let again = mine(a.claim("k").await);
    assert!(again > first);
    let starting = a.cluster.fence_at(&k).expect("still held");
    assert!(Arc::ptr_eq(&serving, &starting), "one deadline per lease");
    tokio::time::sleep(TTL * 2).await;
    assert!(!serving.due(), "renewed past two lease_ttls, so never due");
    assert_eq!(a.cluster.epoch_of(&k), Some(again));
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_keep_a_lease_alive_past_several_lease_ttls() {
    let Some(db) = Db::new().await else { return };
    let a = join(&db.url, "gw-a", TTL).await.unwrap();
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    drop(a.acquire("k").await.unwrap());
    let epoch = a.cluster.epoch_of(&id("k")).expect("gw-a holds k");

    tokio::time::sleep(TTL * 7 / 2).await;
    let held = b.lease("k").await.expect("still held");
    assert_eq!((held.owner.as_str(), held.epoch), ("gw-a", epoch));
    assert!(held.expires_in_ms > 0);
    let route = theirs(b.claim("k").await);
    assert_eq!((&*route.node, route.epoch), ("gw-a", epoch));
    assert_eq!(a.driver.alive("k"), 1, "never fenced");
    assert_eq!(a.cluster.epoch_of(&id("k")), Some(epoch));
    let counters = a.cluster.counters();
    assert!(
        counters.renewals >= 10,
        "one round every ttl/4: {counters:?}"
    );
    assert_eq!((counters.lost, counters.held), (0, 1), "{counters:?}");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_cut_off_from_the_store_stops_its_instance_before_another_takes_the_key() {
    let Some(db) = Db::new().await else { return };
    let relay = Relay::to(&db).await;
    let a = join(&relay.url, "gw-a", TTL).await.unwrap();
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    drop(a.acquire("k").await.unwrap());
    let epoch = a.cluster.epoch_of(&id("k")).unwrap();
    tokio::time::sleep(TTL / 2).await;
    assert_eq!(a.driver.alive("k"), 1, "renewed through the relay");

    relay.cut();
    let cut = Instant::now();
    // Its last good renewal was sent before the cut, and its lease expires one lease_ttl
    // after that at the earliest: the instance stops within 3/4 of it.
    let stopped = until!(TTL * 2, "gw-a stops k", a.driver.alive("k") == 0);
    assert!(
        stopped <= TTL * 3 / 4 + Duration::from_millis(200),
        "{stopped:?}"
    );
    assert_eq!(
        a.instances.get("C", "k").unwrap().state(),
        InstanceState::Stopped
    );
    assert_eq!(a.cluster.epoch_of(&id("k")), None);
    assert_eq!(a.cluster.counters().lost, 1);

    // gw-b is sent to gw-a until the lease expires, then takes the key under the next epoch
    // and runs it.
    let mut routed_to_a = 0;
    until!(TTL * 3, "gw-b takes k", {
        let lease = b.acquire("k").await.unwrap();
        match lease.via() {
            Some(route) => {
                assert_eq!(&*route.node, "gw-a");
                routed_to_a += 1;
                b.instances.forget_owner(&id("k"));
                false
            }
            None => true,
        }
    });
    let taken = cut.elapsed();
    assert!(routed_to_a > 0, "gw-a's lease outlived its fence");
    assert!(taken > stopped, "stopped {stopped:?}, taken {taken:?}");
    assert_eq!(b.cluster.epoch_of(&id("k")), Some(epoch + 1));
    assert_eq!(b.driver.alive("k"), 1);
    let env = &b.driver.starts()[0].env;
    assert!(env.contains(&("VALET_EPOCH".into(), (epoch + 1).to_string())));
    assert!(env.contains(&("VALET_NODE".into(), "gw-b".into())));
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_owner_reaches_the_other_replicas_by_notification() {
    let Some(db) = Db::new().await else { return };
    // A long lease_ttl: the sweep (every lease_ttl) cannot be what forgets the routes here.
    let ttl = Duration::from_secs(5);
    let a = join(&db.url, "gw-a", ttl).await.unwrap();
    let b = join(&db.url, "gw-b", ttl).await.unwrap();
    let began = Instant::now();
    // The change feeds are listening (a feed that connects forgets every route anyway).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // gw-a holds k (claimed straight, no instance: its release below is the only one).
    let first = mine(a.claim("k").await);
    let lease = b.acquire("k").await.unwrap();
    assert_eq!(
        lease.via().map(|r| (&*r.node, r.epoch)),
        Some(("gw-a", first))
    );
    drop(lease);

    // The owner claims its key again (a new epoch, the same owner): told.
    let second = mine(a.claim("k").await);
    assert!(second > first);
    until!(
        Duration::from_secs(1),
        "gw-b forgets the old epoch",
        b.remote("k").is_none()
    );
    let lease = b.acquire("k").await.unwrap();
    assert_eq!(
        lease.via().map(|r| (&*r.node, r.epoch)),
        Some(("gw-a", second))
    );
    drop(lease);

    // The owner gives the key up: told; gw-b's next request takes it and runs it.
    a.cluster.release(&id("k"), second);
    until!(
        Duration::from_secs(1),
        "gw-b forgets gw-a",
        b.remote("k").is_none()
    );
    assert!(b.acquire("k").await.unwrap().via().is_none());
    assert_eq!(b.driver.alive("k"), 1);
    let lease = a.acquire("k").await.unwrap();
    let now_b = lease.via().map(|r| (r.node.to_string(), r.epoch));
    assert_eq!(now_b, Some(("gw-b".to_string(), second + 1)));
    drop(lease);

    // And back: gw-b's instance stops, its task gives the key up, gw-a is told.
    assert!(b.instances.stop(&b.class(), "k", false).await);
    until!(
        Duration::from_secs(1),
        "gw-a forgets gw-b",
        a.remote("k").is_none()
    );
    assert!(began.elapsed() < ttl, "all within one sweep period");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_loses_to_a_lease_released_right_after_takes_the_key() {
    let Some(db) = Db::new().await else { return };
    let a = join(&db.url, "gw-a", TTL).await.unwrap();
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    let held = mine(b.claim("k").await);
    // gw-a's claim finds gw-b's lease live, and gw-b gives the key up (its instance went to
    // sleep) before gw-a reads who holds it: a released lease, which expires at -infinity.
    db.at_next_claim("UPDATE valet_leases SET expires_at = '-infinity' WHERE key = 'k'")
        .await;
    match a.cluster.claim(&id("k")).await {
        Ok(Claim::Mine { epoch }) => assert_eq!(epoch, held + 1),
        other => panic!("expected gw-a to take the released key, got {other:?}"),
    }
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_never_comes_fails_within_the_lease_ttl() {
    let Some(db) = Db::new().await else { return };
    let relay = Relay::to(&db).await;
    let a = join(&relay.url, "gw-a", TTL).await.unwrap();
    // The store takes the claim, and the path to it goes silent before the answer is back.
    db.at_next_claim("SELECT pg_sleep(0.5)").await;
    let (instances, class) = (a.instances.clone(), a.class());
    let began = Instant::now();
    let request = tokio::spawn(async move { instances.acquire(&class, "k", 0).await.map(drop) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.cut();
    let answer = tokio::time::timeout(TTL * 3, request)
        .await
        .expect("the claim waited on the silent store past three lease_ttls")
        .unwrap();
    assert!(
        matches!(answer, Err(AcquireError::Unavailable { .. })),
        "503 with Retry-After: {answer:?}"
    );
    assert!(began.elapsed() < TTL * 2, "{:?}", began.elapsed());
    assert_eq!(a.driver.starts_of("k"), 0);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_round_that_hangs_does_not_put_the_fence_off_until_the_lease_expires() {
    let Some(db) = Db::new().await else { return };
    let relay = Relay::to(&db).await;
    let a = join(&relay.url, "gw-a", TTL).await.unwrap();
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    drop(a.acquire("k").await.unwrap());

    // Right after a good renewal round the store starts refusing gw-a: its next rounds fail
    // at once. Its lease expires one lease_ttl after that round, as the store has it.
    let renewals = a.cluster.counters().renewals;
    until!(
        TTL,
        "a renewal round",
        a.cluster.counters().renewals > renewals
    );
    relay.reset();
    let left = b.lease("k").await.expect("gw-a holds k").expires_in_ms;
    let expiry = Instant::now() + Duration::from_millis(left as u64);
    // Two rounds failed at once; then the path goes silent, and the next round hangs until
    // its own timeout, which ends when the lease does.
    let late = a.cluster.counters().renewals_late;
    until!(TTL, "two failed rounds", {
        a.cluster.counters().renewals_late >= late + 2
    });
    relay.cut();
    until!(TTL * 2, "gw-a stops k", a.driver.alive("k") == 0);
    let margin = expiry.saturating_duration_since(Instant::now());
    assert!(
        margin >= TTL / 8,
        "k stopped only {margin:?} before its lease expired"
    );
    assert_eq!(a.cluster.epoch_of(&id("k")), None);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_keep_the_store_busy_do_not_hold_up_the_renewals() {
    let Some(db) = Db::new().await else { return };
    let a = Arc::new(join(&db.url, "gw-a", TTL).await.unwrap());
    drop(a.acquire("k").await.unwrap());
    let epoch = a.cluster.epoch_of(&id("k")).unwrap();

    // For two lease_ttls, claims of other keys that take their time in the store (a burst of
    // cold keys on a busy store) keep every pooled connection busy.
    db.slow_claims("slow-", 0.6).await;
    let until = Instant::now() + TTL * 2;
    let mut claims = tokio::task::JoinSet::new();
    for n in 0..8 {
        let a = a.clone();
        claims.spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
                let _ = a.cluster.claim(&id(&format!("slow-{n}-{i}"))).await;
                i += 1;
            }
        });
    }
    while claims.join_next().await.is_some() {}
    assert_eq!(a.driver.alive("k"), 1, "fenced: {:?}", a.cluster.counters());
    assert_eq!(a.cluster.epoch_of(&id("k")), Some(epoch));
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_instances_start_that_takes_long_does_not_hold_the_sweep_up() {
    let Some(db) = Db::new().await else { return };
    // gw-a runs the pinned key P/main, which takes 30 s to fail its readiness.
    let pinned = r#"
        [[containers]]
        class_name = "P"
        command = ["fake"]
        min_instances = 1
        readiness = { timeout = "30s" }

        [[routes]]
        pattern = "/p/*"
        container = "P"
        instance = "name:main"
    "#;
    let driver = FakeDriver::new();
    driver.plan("main", Plan::NeverReady);
    let a = join_with(&db.url, "gw-a", TTL, pinned, driver)
        .await
        .unwrap();
    until!(TTL, "gw-a starts P/main", a.driver.starts_of("main") == 1);
    let b = join_with(&db.url, "gw-b", TTL, pinned, FakeDriver::new())
        .await
        .unwrap();

    // gw-a forwards k to gw-b, whose lease then expires without a word (as when gw-b dies:
    // an expiry sends no notification). Only the sweep can tell gw-a.
    mine(b.claim("k").await);
    let lease = a.acquire("k").await.unwrap();
    assert_eq!(lease.via().map(|r| &*r.node), Some("gw-b"));
    drop(lease);
    db.execute(&[
        "UPDATE valet_leases SET expires_at = clock_timestamp() - interval '1 second' \
                  WHERE key = 'k'",
    ])
    .await;
    until!(TTL * 3, "gw-a forgets gw-b's expired lease", {
        a.remote("k").is_none()
    });
    assert_eq!(b.driver.starts_of("main"), 0, "P/main is gw-a's");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_node_name_was_taken_over_serves_and_claims_nothing() {
    let Some(db) = Db::new().await else { return };
    let a = join(&db.url, "gw-a", TTL).await.unwrap();
    drop(a.acquire("k").await.unwrap());
    let b = join(&db.url, "gw-b", TTL).await.unwrap();
    let epoch = a.cluster.epoch_of(&id("k")).unwrap();

    // Another process registered as gw-a, as one may once this one's registration lapsed (it
    // was paused, or cut off, past lease_ttl): this one must not go on as gw-a.
    db.execute(&["UPDATE valet_nodes SET boot = 'another boot' WHERE node = 'gw-a'"])
        .await;
    until!(TTL, "gw-a's k stops", a.driver.alive("k") == 0);
    let refused = a.cluster.claim(&id("k2")).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.0.contains("took over node name")),
        "{refused:?}"
    );
    // Its lease is no longer renewed: once it expires the key is free for the new gw-a, or
    // anyone, and never taken back by this one.
    let taken = until!(TTL * 2, "gw-b takes k", {
        matches!(b.claim("k").await, Claim::Mine { .. })
    });
    assert!(taken <= TTL + Duration::from_millis(300), "{taken:?}");
    assert!(a.cluster.claim(&id("k")).await.is_err());
    let held = b.lease("k").await.unwrap();
    assert_eq!((held.owner.as_str(), held.epoch), ("gw-b", epoch + 1));
    drop(db);
}
