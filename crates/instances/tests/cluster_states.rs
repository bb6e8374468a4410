//! The instance table in cluster mode, on `FakeDriver` and paused tokio time, with a scripted
//! [`Coordinator`] in place of the store: what each answer to "may this replica run the key?"
//! does to the key's record, its waiters and its lease. The leases themselves, on a real
//! PostgreSQL, are valet-cluster's tests.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::time::Instant;
use valet_core::shutdown::ShutdownTrigger;
use valet_core::{InstanceId, InstanceState, Shutdown};
use valet_instances::owner::{encode_target, ClaimFuture};
use valet_instances::{
    AcquireError, Claim, ClaimError, ClassRuntime, ClusterCounters, ClusterView, Coordinator,
    FenceAt, Instances, Lease, PeerRoute,
};
use valet_runtime::fake::{one_class_config, FakeDriver, Plan};

/// One scripted answer to a claim.
enum Answer {
    Mine(u64),
    Theirs(Arc<PeerRoute>),
    Fail(&'static str),
}

/// A coordinator that answers claims from a script, one answer per claim in order, after
/// `delay` (a store round trip), and records what the table asked of it. It keeps the epochs
/// of the keys it said were this replica's, as the real one does, until they are released or
/// [`FakeCoordinator::lose`]s them.
struct FakeCoordinator {
    node: &'static str,
    delay: Duration,
    answers: Mutex<VecDeque<Answer>>,
    claims: Mutex<Vec<(InstanceId, Instant)>>,
    releases: Mutex<Vec<(InstanceId, u64)>>,
    unreachable: Mutex<Vec<String>>,
    owned: Mutex<HashMap<InstanceId, u64>>,
    /// When set, each lease it grants is fenced this long after its claim, and never renewed
    /// (a coordinator whose renewals and fence timer both stalled).
    fence_after: Mutex<Option<Duration>>,
    fence_at: Mutex<HashMap<InstanceId, Arc<FenceAt>>>,
}

impl FakeCoordinator {
    fn new(node: &'static str, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            node,
            delay,
            answers: Mutex::default(),
            claims: Mutex::default(),
            releases: Mutex::default(),
            unreachable: Mutex::default(),
            owned: Mutex::default(),
            fence_after: Mutex::default(),
            fence_at: Mutex::default(),
        })
    }

    fn answer(&self, answer: Answer) {
        self.answers.lock().unwrap().push_back(answer);
    }

    fn claims(&self) -> usize {
        self.claims.lock().unwrap().len()
    }

    fn releases(&self) -> Vec<(String, u64)> {
        let releases = self.releases.lock().unwrap();
        releases
            .iter()
            .map(|(id, e)| (id.key().to_string(), *e))
            .collect()
    }

    /// The lease is gone, as the real coordinator has it before it calls `Instances::fence`.
    fn lose(&self, id: &InstanceId) {
        self.owned.lock().unwrap().remove(id);
    }
}

impl Coordinator for FakeCoordinator {
    fn node(&self) -> &str {
        self.node
    }

    fn claim<'a>(&'a self, id: &'a InstanceId) -> ClaimFuture<'a> {
        Box::pin(async move {
            self.claims
                .lock()
                .unwrap()
                .push((id.clone(), Instant::now()));
            tokio::time::sleep(self.delay).await;
            let answer = self.answers.lock().unwrap().pop_front();
            match answer {
                Some(Answer::Mine(epoch)) => {
                    self.owned.lock().unwrap().insert(id.clone(), epoch);
                    if let Some(after) = *self.fence_after.lock().unwrap() {
                        let at = Arc::new(FenceAt::new(Instant::now() + after));
                        self.fence_at.lock().unwrap().insert(id.clone(), at);
                    }
                    Ok(Claim::Mine { epoch })
                }
                Some(Answer::Theirs(route)) => Ok(Claim::Theirs(route)),
                Some(Answer::Fail(why)) => Err(ClaimError(why.into())),
                None => Err(ClaimError(format!("unscripted claim of {id}"))),
            }
        })
    }

    fn release(&self, id: &InstanceId, epoch: u64) {
        let mut owned = self.owned.lock().unwrap();
        if owned.get(id) == Some(&epoch) {
            owned.remove(id);
        }
        self.releases.lock().unwrap().push((id.clone(), epoch));
    }

    fn unreachable(&self, node: &str) {
        self.unreachable.lock().unwrap().push(node.to_string());
    }

    fn epoch_of(&self, id: &InstanceId) -> Option<u64> {
        self.owned.lock().unwrap().get(id).copied()
    }

    fn fence_at(&self, id: &InstanceId) -> Option<Arc<FenceAt>> {
        self.fence_at.lock().unwrap().get(id).cloned()
    }

    fn view(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<ClusterView, ClaimError>> + Send + '_>,
    > {
        Box::pin(async { Err(ClaimError("no store in this test".into())) })
    }

    fn counters(&self) -> ClusterCounters {
        ClusterCounters::default()
    }
}

/// The route to another replica `node` for key `key` of class `C`.
fn route(node: &str, epoch: u64, port: u16, key: &str) -> Arc<PeerRoute> {
    Arc::new(PeerRoute {
        node: node.into(),
        epoch,
        endpoint: SocketAddr::from(([10, 0, 0, 2], port)),
        token: "peer-token".into(),
        target: encode_target(&InstanceId::new("C", key)),
        moved: Default::default(),
    })
}

struct Table {
    instances: Instances,
    driver: FakeDriver,
    coordinator: Arc<FakeCoordinator>,
    trigger: ShutdownTrigger,
    _dir: TempDir,
}

/// One class `C` with `class_options`, on a replica named `gw-a` whose claims take 10 ms.
fn table(class_options: &str) -> Table {
    table_on(class_options, Some(FakeCoordinator::new("gw-a", ms(10))))
}

fn table_on(class_options: &str, coordinator: Option<Arc<FakeCoordinator>>) -> Table {
    let (config, dir) = one_class_config("", class_options, "");
    let driver = FakeDriver::new();
    let (trigger, shutdown) = Shutdown::new();
    let instances = Instances::new(&config, Arc::new(driver.clone()), shutdown);
    let coordinator = coordinator.unwrap_or_else(|| FakeCoordinator::new("unused", ms(0)));
    if coordinator.node != "unused" {
        instances.set_coordinator(coordinator.clone());
    }
    Table {
        instances,
        driver,
        coordinator,
        trigger,
        _dir: dir,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn id(key: &str) -> InstanceId {
    InstanceId::new("C", key)
}

impl Table {
    fn class(&self) -> Arc<ClassRuntime> {
        self.instances.class("C").unwrap().clone()
    }

    async fn acquire(&self, key: &str) -> Result<Lease, AcquireError> {
        self.instances.acquire(&self.class(), key, 0).await
    }

    fn state(&self, key: &str) -> InstanceState {
        self.instances.get("C", key).expect("known key").state()
    }

    fn remote(&self, key: &str) -> Option<Arc<PeerRoute>> {
        self.instances.get("C", key).expect("known key").remote()
    }
}

fn env_of(driver: &FakeDriver, start: usize, name: &str) -> Option<String> {
    driver.starts()[start]
        .env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test(start_paused = true)]
async fn a_mine_claim_starts_the_instance_told_its_node_and_epoch() {
    let t = table("");
    t.coordinator.answer(Answer::Mine(7));
    let lease = t.acquire("k").await.unwrap();
    assert!(
        lease.via().is_none(),
        "a key of this replica is served here"
    );
    assert_eq!(t.driver.starts_of("k"), 1);
    assert_eq!(env_of(&t.driver, 0, "VALET_NODE").as_deref(), Some("gw-a"));
    assert_eq!(env_of(&t.driver, 0, "VALET_EPOCH").as_deref(), Some("7"));
    assert_eq!(t.state("k"), InstanceState::Ready);
    drop(t.acquire("k").await.unwrap());
    assert_eq!(t.coordinator.claims(), 1, "a warm key is not claimed again");

    // Without a coordinator (one replica) the instance is told nothing of the kind.
    let single = table_on("", None);
    drop(single.acquire("k").await.unwrap());
    assert_eq!(env_of(&single.driver, 0, "VALET_NODE"), None);
    assert_eq!(env_of(&single.driver, 0, "VALET_EPOCH"), None);
}

#[tokio::test(start_paused = true)]
async fn a_theirs_claim_starts_nothing_and_every_waiter_gets_the_owners_route() {
    let t = Arc::new(table("max_instances = 1"));
    let theirs = route("gw-b", 4, 8789, "k");
    t.coordinator.answer(Answer::Theirs(theirs.clone()));
    let mut burst = Vec::new();
    for _ in 0..50 {
        let t = t.clone();
        burst.push(tokio::spawn(async move { t.acquire("k").await }));
    }
    for request in burst {
        let lease = request.await.unwrap().unwrap();
        let via = lease.via().expect("routed to the owner");
        assert!(Arc::ptr_eq(via, &theirs));
        assert_eq!(lease.addr(), theirs.endpoint);
        assert!(!lease.needs_turn(), "the owner applies the class's limits");
    }
    assert_eq!(t.coordinator.claims(), 1, "one claim for the whole burst");
    assert_eq!(t.driver.starts().len(), 0, "nothing starts here");
    assert_eq!(t.state("k"), InstanceState::Stopped);
    assert!(Arc::ptr_eq(&t.remote("k").unwrap(), &theirs));

    // The warm path of a forwarded key asks nobody.
    let lease = t.acquire("k").await.unwrap();
    assert_eq!(lease.addr(), theirs.endpoint);
    assert_eq!(t.coordinator.claims(), 1);

    // The class slot taken for the claim was given back: max_instances = 1 lets another key
    // start here.
    t.coordinator.answer(Answer::Mine(1));
    let local = t.acquire("other").await.unwrap();
    assert!(local.via().is_none());
    assert_eq!(t.driver.alive("other"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_claim_the_store_cannot_answer_refuses_for_a_second_then_a_good_claim_starts() {
    let t = Arc::new(table(""));
    t.coordinator.answer(Answer::Fail("connection refused"));
    let mut burst = Vec::new();
    for _ in 0..20 {
        let t = t.clone();
        burst.push(tokio::spawn(async move { t.acquire("k").await.map(drop) }));
    }
    for request in burst {
        match request.await.unwrap() {
            Err(AcquireError::Unavailable {
                retry_after,
                message,
                ..
            }) => {
                assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}");
                assert!(message.contains("connection refused"), "{message}");
            }
            other => panic!("expected 503 with Retry-After, got {other:?}"),
        }
    }
    assert_eq!(t.coordinator.claims(), 1);
    let refused_at = t.coordinator.claims.lock().unwrap()[0].1 + t.coordinator.delay;

    // Within the second, requests are refused without asking the store again.
    tokio::time::sleep(ms(500)).await;
    for _ in 0..5 {
        let error = t.acquire("k").await.map(drop).unwrap_err();
        assert!(
            matches!(error, AcquireError::Unavailable { .. }),
            "{error:?}"
        );
    }
    assert_eq!(
        t.coordinator.claims(),
        1,
        "the store is not asked per request"
    );
    assert_eq!(t.driver.starts().len(), 0);

    // After it, the next request claims again; a claim that succeeds clears the refusal.
    tokio::time::sleep_until(refused_at + Duration::from_secs(1)).await;
    t.coordinator.answer(Answer::Mine(2));
    let lease = t.acquire("k").await.unwrap();
    assert!(lease.via().is_none());
    assert_eq!(t.coordinator.claims(), 2);
    assert_eq!(t.driver.starts_of("k"), 1);
    let status = t.instances.get("C", "k").unwrap().status();
    assert_eq!(status.state, InstanceState::Ready);
    assert_eq!(status.failures, 0);
    assert_eq!(status.message, None);
}

#[tokio::test(start_paused = true)]
async fn a_refused_claim_answered_by_another_owner_later_leaves_no_failures_behind() {
    // The store was down (failures set to the crash-loop count so waiters get 503 at once),
    // then said another replica owns the key; when that owner gives it up and this replica
    // takes it, a first start that fails must be retried like any first failure, not be
    // counted on top of the store's refusal.
    let t = table("");
    t.coordinator.answer(Answer::Fail("timeout"));
    assert!(t.acquire("k").await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let theirs = route("gw-b", 1, 8789, "k");
    t.coordinator.answer(Answer::Theirs(theirs.clone()));
    assert_eq!(t.acquire("k").await.unwrap().addr(), theirs.endpoint);
    assert_eq!(t.instances.get("C", "k").unwrap().status().failures, 0);

    t.instances.forget_owner(&id("k"));
    t.coordinator.answer(Answer::Mine(2));
    t.driver.plan("k", Plan::FailToStart { retryable: true });
    let began = Instant::now();
    let lease = t
        .acquire("k")
        .await
        .expect("restarted after the first backoff");
    assert!(lease.via().is_none());
    assert_eq!(t.driver.starts_of("k"), 2);
    assert!(began.elapsed() < ms(500), "{:?}", began.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_fence_aimed_at_an_earlier_lease_leaves_a_later_one_serving() {
    let t = table("");
    t.coordinator.answer(Answer::Mine(8));
    let lease = t.acquire("k").await.unwrap();
    let addr = lease.addr();
    drop(lease);
    // Epoch 7 was this replica's before (lost, then the key claimed again as 8): its fence
    // arrives late.
    t.instances.fence(&id("k"), 7);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.state("k"), InstanceState::Ready);
    assert_eq!(t.driver.alive("k"), 1);
    assert_eq!(t.acquire("k").await.unwrap().addr(), addr);
}

#[tokio::test(start_paused = true)]
async fn fence_takes_the_address_away_at_once_stops_the_instance_and_the_next_acquire_claims() {
    let t = table("");
    t.coordinator.answer(Answer::Mine(7));
    let in_flight = t.acquire("k").await.unwrap();
    let old = in_flight.addr();
    assert_eq!(t.driver.alive("k"), 1);

    t.coordinator.lose(&id("k"));
    t.instances.fence(&id("k"), 7);
    // At once, before the task ran: no new request gets the old address.
    assert!(
        t.instances.get("C", "k").unwrap().remote().is_none(),
        "no route either"
    );
    let theirs = route("gw-b", 8, 8789, "k");
    t.coordinator.answer(Answer::Theirs(theirs.clone()));
    let lease = t.acquire("k").await.unwrap();
    assert_ne!(lease.addr(), old);
    assert!(Arc::ptr_eq(lease.via().unwrap(), &theirs));

    // The instance stopped although a request was still in flight on it, its task ended
    // (the acquire above had to claim again) and gave its lease up under its epoch.
    assert_eq!(t.driver.alive("k"), 0);
    assert_eq!(t.driver.stops().len(), 1);
    assert_eq!(t.coordinator.claims(), 2);
    assert_eq!(t.coordinator.releases(), [("k".to_string(), 7)]);
    drop(in_flight);
}

#[tokio::test(start_paused = true)]
async fn a_request_after_the_fence_is_due_is_not_served_even_if_nothing_fenced_the_key() {
    // The timer that fences a lease runs on the replica's runtime; on a starved machine it
    // runs late. The deadline is read by the requests themselves.
    let t = table("");
    *t.coordinator.fence_after.lock().unwrap() = Some(ms(1500));
    t.coordinator.answer(Answer::Mine(7));
    let first = t.acquire("k").await.unwrap();
    let old = first.addr();
    drop(first);
    tokio::time::sleep(ms(1000)).await;
    let before = t.acquire("k").await.unwrap();
    assert_eq!(before.addr(), old, "served until the fence is due");
    drop(before);
    assert_eq!(t.coordinator.claims(), 1);

    tokio::time::sleep(ms(600)).await;
    let theirs = route("gw-b", 8, 8789, "k");
    t.coordinator.answer(Answer::Theirs(theirs.clone()));
    let after = t.acquire("k").await.unwrap();
    assert_ne!(
        after.addr(),
        old,
        "not served by the instance past its fence"
    );
    assert!(Arc::ptr_eq(after.via().unwrap(), &theirs));
    assert_eq!(t.coordinator.claims(), 2, "claimed again");
    assert_eq!(t.driver.alive("k"), 0, "the request fenced the instance");
    assert_eq!(t.driver.stops().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lease_lost_while_the_instance_starts_never_serves_a_request() {
    let t = table("");
    t.driver.plan(
        "k",
        Plan::Serve {
            ready_after: Duration::from_secs(2),
        },
    );
    t.coordinator.answer(Answer::Mine(1));
    let theirs = route("gw-b", 2, 8789, "k");
    t.coordinator.answer(Answer::Theirs(theirs.clone()));
    let t = Arc::new(t);
    let waiter = {
        let t = t.clone();
        tokio::spawn(async move { t.acquire("k").await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.state("k"), InstanceState::Starting);
    t.coordinator.lose(&id("k"));
    t.instances.fence(&id("k"), 1);
    let lease = waiter.await.unwrap().unwrap();
    assert!(
        Arc::ptr_eq(lease.via().expect("the new owner's route"), &theirs),
        "the waiter went to the new owner, not to the fenced instance"
    );
    assert_eq!(t.driver.starts_of("k"), 1);
    assert_eq!(t.driver.alive("k"), 0, "stopped once it got ready");
    assert_eq!(t.coordinator.releases(), [("k".to_string(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_given_up_under_its_epoch_when_the_instance_sleeps_stops_or_shuts_down() {
    let t = table(r#"sleep_after = "10s""#);
    t.coordinator.answer(Answer::Mine(3));
    drop(t.acquire("k").await.unwrap());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(t.coordinator.releases(), [], "held while it runs");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(t.driver.alive("k"), 0);
    assert_eq!(t.coordinator.releases(), [("k".to_string(), 3)]);
    assert_eq!(t.coordinator.epoch_of(&id("k")), None);

    t.coordinator.answer(Answer::Mine(4));
    drop(t.acquire("k").await.unwrap());
    assert!(t.instances.stop(&t.class(), "k", false).await);
    tokio::time::sleep(ms(1)).await;
    assert_eq!(
        t.coordinator.releases(),
        [("k".to_string(), 3), ("k".to_string(), 4)]
    );

    t.coordinator.answer(Answer::Mine(5));
    drop(t.acquire("k").await.unwrap());
    t.trigger.trigger();
    t.instances.wait_stopped().await;
    assert_eq!(t.driver.alive("k"), 0);
    assert_eq!(t.coordinator.releases().last(), Some(&("k".to_string(), 5)));
}

#[tokio::test(start_paused = true)]
async fn forgetting_owners_clears_routes_to_other_replicas_and_nothing_else() {
    let t = table("");
    let (b1, b2) = (route("gw-b", 1, 8789, "k1"), route("gw-c", 1, 8790, "k2"));
    t.coordinator.answer(Answer::Theirs(b1.clone()));
    t.coordinator.answer(Answer::Theirs(b2.clone()));
    t.coordinator.answer(Answer::Mine(1));
    drop(t.acquire("k1").await.unwrap());
    drop(t.acquire("k2").await.unwrap());
    let local = t.acquire("k3").await.unwrap().addr();
    assert_eq!(t.coordinator.claims(), 3);

    t.instances.forget_owner(&id("k1"));
    assert!(t.remote("k1").is_none());
    assert!(t.remote("k2").is_some(), "only the key named");
    // Requests still waiting on the forgotten route are told the key moved; the others not.
    assert!(b1.moved.is_cancelled());
    assert!(!b2.moved.is_cancelled());
    // A key of this replica has no route to forget: it keeps serving.
    t.instances.forget_owner(&id("k3"));
    assert_eq!(t.acquire("k3").await.unwrap().addr(), local);
    assert_eq!(t.coordinator.claims(), 3);

    // The next request for the forgotten key asks again and learns the new owner.
    let moved = route("gw-c", 2, 8790, "k1");
    t.coordinator.answer(Answer::Theirs(moved.clone()));
    let lease = t.acquire("k1").await.unwrap();
    assert!(Arc::ptr_eq(lease.via().unwrap(), &moved));
    assert_eq!(t.coordinator.claims(), 4);
    drop(lease);

    t.instances.forget_owners();
    assert!(t.remote("k1").is_none() && t.remote("k2").is_none());
    // A lost feed says nothing of where keys are: the owners likely serve on, and requests
    // waiting on them keep waiting.
    assert!(!b2.moved.is_cancelled() && !moved.moved.is_cancelled());
    assert_eq!(t.acquire("k3").await.unwrap().addr(), local);
    assert_eq!(t.coordinator.claims(), 4);
    t.coordinator.answer(Answer::Mine(2));
    assert!(t.acquire("k2").await.unwrap().via().is_none());
    assert_eq!(t.coordinator.claims(), 5);
}

#[tokio::test(start_paused = true)]
async fn an_owner_that_cannot_be_reached_is_reported_and_its_route_forgotten() {
    let t = table("");
    t.coordinator
        .answer(Answer::Theirs(route("gw-b", 3, 8789, "k")));
    let lease = t.acquire("k").await.unwrap();
    t.instances.owner_unreachable(lease.instance(), "gw-b");
    assert_eq!(*t.coordinator.unreachable.lock().unwrap(), ["gw-b"]);
    assert!(t.remote("k").is_none());
    assert!(
        lease.via().unwrap().moved.is_cancelled(),
        "waiting requests go again"
    );
    drop(lease);
    t.coordinator.answer(Answer::Mine(4));
    assert!(t.acquire("k").await.unwrap().via().is_none());
    assert_eq!(t.coordinator.claims(), 2);
}

#[tokio::test(start_paused = true)]
async fn listings_name_each_keys_owner() {
    let t = table("");
    t.coordinator.answer(Answer::Mine(1));
    t.coordinator
        .answer(Answer::Theirs(route("gw-b", 1, 8789, "remote")));
    drop(t.acquire("local").await.unwrap());
    drop(t.acquire("remote").await.unwrap());
    let owners: Vec<(String, Option<String>, bool)> = t
        .instances
        .list()
        .into_iter()
        .map(|i| (i.key, i.owner, i.forwarded))
        .collect();
    // The forwarded key's own state here ("stopped": nothing runs on this replica) must not
    // read as the instance's: listings mark it forwarded.
    assert_eq!(
        owners,
        [
            ("local".to_string(), Some("gw-a".to_string()), false),
            ("remote".to_string(), Some("gw-b".to_string()), true),
        ]
    );
    let remote = t.instances.get("C", "remote").unwrap();
    assert_eq!(t.instances.info_of(&remote).owner.as_deref(), Some("gw-b"));
    // The record alone does not know this replica's name; the table fills it in.
    let local = t.instances.get("C", "local").unwrap();
    assert_eq!(local.info().owner, None);
    assert_eq!(t.instances.info_of(&local).owner.as_deref(), Some("gw-a"));

    let single = table_on("", None);
    drop(single.acquire("k").await.unwrap());
    assert_eq!(
        single.instances.list()[0].owner,
        None,
        "not in cluster mode"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fenced_instance_is_killed_within_the_fence_grace_not_its_stop_timeout() {
    // The next owner may start the key once the lease expires: a fenced instance that ignores
    // SIGTERM must not run on for the class's stop_timeout.
    let t = table(r#"stop_timeout = "10s""#);
    t.driver.plan(
        "k",
        Plan::IgnoreStop {
            ready_after: Duration::ZERO,
        },
    );
    t.coordinator.answer(Answer::Mine(3));
    drop(t.acquire("k").await.unwrap());
    t.coordinator.lose(&id("k"));
    let fenced = Instant::now();
    t.instances.fence(&id("k"), 3);
    while t.driver.alive("k") > 0 {
        tokio::time::sleep(ms(10)).await;
    }
    // FakeCoordinator keeps the trait's default grace, 1 s.
    assert!(
        fenced.elapsed() <= Duration::from_millis(1010),
        "{:?}",
        fenced.elapsed()
    );
    let stops = t.driver.stops();
    assert_eq!(
        stops.last().unwrap().1.signal,
        Some(9),
        "killed after the grace"
    );
}

#[tokio::test(start_paused = true)]
async fn a_scaled_keys_replica_is_a_lease_of_its_own_and_may_be_served_by_another_node() {
    // Issue 21: replica 1 of `k` is claimed under its own key; another node holds it, and
    // requests past the first replica's load go there through its peer listener.
    let t = table("scale = { max_replicas = 2, target_concurrency = 1 }");
    let second = valet_core::replica_key("k", 1).into_owned();
    t.coordinator.answer(Answer::Mine(3));
    t.coordinator
        .answer(Answer::Theirs(route("gw-b", 5, 8789, &second)));
    let here = t.acquire("k").await.unwrap();
    assert!(here.via().is_none());
    let there = t.acquire("k").await.unwrap();
    assert_eq!(there.instance().id.replica(), 1);
    assert_eq!(there.via().map(|r| &*r.node), Some("gw-b"));
    let claimed: Vec<String> = t
        .coordinator
        .claims
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.key().to_string())
        .collect();
    assert_eq!(claimed, ["k".to_string(), second.clone()]);
    // Both replicas serve, each with one in flight: at max_replicas a third request goes to
    // one of them, and nothing more is claimed.
    let third = t.acquire("k").await.unwrap();
    assert_eq!(t.coordinator.claims(), 2);
    drop((here, there, third));
    assert_eq!(
        t.driver.starts().len(),
        1,
        "only this node's replica runs here"
    );
}

#[tokio::test(start_paused = true)]
async fn a_forwarded_replica_key_reaches_that_replica_and_a_malformed_one_is_refused() {
    // The owner's side of a forward: the peer listener acquires the replica's own key.
    let t = table_on("scale = { max_replicas = 3 }", None);
    let second = valet_core::replica_key("k", 2).into_owned();
    let lease = t.acquire(&second).await.unwrap();
    assert_eq!(lease.instance().id.replica(), 2);
    assert_eq!(t.driver.starts().len(), 1);
    for bad in ["k\u{1f}3", "k\u{1f}0", "k\u{1f}x"] {
        assert!(
            matches!(t.acquire(bad).await, Err(AcquireError::BadKey(_))),
            "{bad:?} is no replica of a class with max_replicas = 3"
        );
    }
    let unscaled = table_on("", None);
    assert!(matches!(
        unscaled.acquire("k\u{1f}1").await,
        Err(AcquireError::BadKey(_))
    ));
}
