//! `scale` (issue 21): one key served by several replicas, on `FakeDriver` and paused tokio
//! time. Each test is one rule of the scaling decisions: a replica starts only when the key's
//! requests in flight per ready replica reach `target_concurrency`, a replica already starting
//! counts for the load it will take, requests go to the least-loaded ready replica, and every
//! replica sleeps after `sleep_after` idle.

use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use valet_core::{replica_key, InstanceState, Shutdown};
use valet_instances::{AcquireError, ClassRuntime, Instances, Lease};
use valet_runtime::fake::{one_class_config, FakeDriver, Plan};

struct Table {
    instances: Instances,
    driver: FakeDriver,
    _trigger: valet_core::shutdown::ShutdownTrigger,
    _dir: TempDir,
}

fn table(class_options: &str) -> Table {
    table_with(class_options, "")
}

/// [`table`] with `more` tables after the class and its route (other routes, classes).
fn table_with(class_options: &str, more: &str) -> Table {
    let (config, dir) = one_class_config("", class_options, more);
    let driver = FakeDriver::new();
    let (trigger, shutdown) = Shutdown::new();
    let instances = Instances::new(&config, Arc::new(driver.clone()), shutdown);
    Table {
        instances,
        driver,
        _trigger: trigger,
        _dir: dir,
    }
}

impl Table {
    fn class(&self) -> Arc<ClassRuntime> {
        self.instances.class("C").unwrap().clone()
    }

    async fn acquire(&self, key: &str) -> Result<Lease, AcquireError> {
        self.instances.acquire(&self.class(), key, 0).await
    }

    /// Starts of `key`'s replicas on the engine, all replicas together.
    fn starts(&self) -> usize {
        self.driver.starts().len()
    }

    /// Replicas of `key` running on the engine.
    fn running(&self) -> usize {
        self.driver.alive_total()
    }

    fn state(&self, key: &str) -> InstanceState {
        self.instances.get("C", key).expect("known key").state()
    }

    async fn settle(&self) {
        // Paused time: sleeping lets every task run up to its next timer.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn replica(lease: &Lease) -> u32 {
    lease.instance().id.replica()
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_first_requests_starts_at_most_max_replicas() {
    let t = Arc::new(table(
        "scale = { max_replicas = 4, target_concurrency = 1 }",
    ));
    t.driver.default_plan(Plan::Serve {
        ready_after: Duration::from_secs(1),
    });
    let mut burst = Vec::new();
    for _ in 0..200 {
        let t = t.clone();
        burst.push(tokio::spawn(async move {
            let lease = t.acquire("k").await?;
            // Each request holds its replica a while, as a worker-bound backend would.
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<u32, AcquireError>(replica(&lease))
        }));
    }
    let mut served_by = [0usize; 4];
    for request in burst {
        served_by[request.await.unwrap().unwrap() as usize] += 1;
    }
    // 200 requests in flight at target 1 ask for 200 replicas: the bound is what holds.
    assert_eq!(t.starts(), 4, "{:?}", t.driver.starts());
    assert_eq!(t.running(), 4);
    assert!(
        served_by.iter().all(|&n| n > 0),
        "every replica served: {served_by:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replica_starts_only_once_the_load_passes_target() {
    let t = table("scale = { max_replicas = 4, target_concurrency = 2 }");
    let a = t.acquire("k").await.unwrap();
    let b = t.acquire("k").await.unwrap();
    assert_eq!((replica(&a), replica(&b)), (0, 0));
    assert_eq!(
        t.starts(),
        1,
        "two in flight at target 2: one replica serves"
    );
    let c = t.acquire("k").await.unwrap();
    assert_eq!(
        replica(&c),
        1,
        "the third request past target goes to a new replica"
    );
    assert_eq!(t.starts(), 2);
    assert_eq!(t.class().stats.scale_ups.get(), 1);
    drop((a, b, c));
    // Load back under target: no start.
    for _ in 0..10 {
        let lease = t.acquire("k").await.unwrap();
        assert_eq!(
            replica(&lease),
            0,
            "the least loaded, lowest-numbered replica"
        );
    }
    assert_eq!(t.starts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_starting_replica_counts_for_the_load_it_will_take() {
    let t = Arc::new(table(
        "scale = { max_replicas = 4, target_concurrency = 2 }",
    ));
    let held = [t.acquire("k").await.unwrap(), t.acquire("k").await.unwrap()];
    t.driver.plan(
        &replica_key("k", 1),
        Plan::Serve {
            ready_after: Duration::from_secs(5),
        },
    );
    let spawn = |t: &Arc<Table>| {
        let t = t.clone();
        tokio::spawn(async move { t.acquire("k").await.map(|l| replica(&l)) })
    };
    let third = spawn(&t);
    t.settle().await;
    assert_eq!(t.starts(), 2, "the third request started replica 1");
    let fourth = spawn(&t);
    t.settle().await;
    assert_eq!(
        t.starts(),
        2,
        "replica 1 will take two requests: the fourth waits for it, starting nothing"
    );
    assert_eq!(
        t.instances.get("C", &replica_key("k", 1)).unwrap().state(),
        InstanceState::Starting
    );
    let fifth = spawn(&t);
    t.settle().await;
    assert_eq!(t.starts(), 3, "a fifth is past what replica 1 will take");
    assert_eq!(third.await.unwrap().unwrap(), 1);
    assert_eq!(fourth.await.unwrap().unwrap(), 1);
    assert_eq!(fifth.await.unwrap().unwrap(), 2);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn no_replica_past_max_replicas_and_max_instances_counts_replicas() {
    let t = table("scale = { max_replicas = 2, target_concurrency = 1 }");
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(t.acquire("k").await.unwrap());
    }
    assert_eq!(t.starts(), 2);
    let per_replica = |n| held.iter().filter(|l| replica(l) == n).count();
    assert_eq!(
        (per_replica(0), per_replica(1)),
        (3, 3),
        "fewest in flight first"
    );

    // max_instances = 3: a key's replicas share the class's slots with the other keys.
    let t = table("max_instances = 3\nscale = { max_replicas = 3, target_concurrency = 1 }");
    let other = t.acquire("b").await.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(t.acquire("a").await.unwrap());
    }
    assert_eq!(
        t.running(),
        3,
        "key b's instance and two replicas of a fill the class"
    );
    assert!(
        held.iter().all(|l| replica(l) < 2),
        "a third replica of a never started"
    );
    assert_eq!(
        t.state("b"),
        InstanceState::Ready,
        "a scale-up puts no other key to sleep"
    );
    drop(other);
    assert_eq!(t.class().live(), 3);
}

#[tokio::test(start_paused = true)]
async fn replicas_sleep_after_idle_and_a_held_stream_keeps_its_replica_up() {
    let t = table("sleep_after = \"10s\"\nscale = { max_replicas = 3, target_concurrency = 1 }");
    let held: Vec<Lease> = [
        t.acquire("k").await.unwrap(),
        t.acquire("k").await.unwrap(),
        t.acquire("k").await.unwrap(),
    ]
    .into();
    assert_eq!(t.running(), 3);
    // A WebSocket or stream holds its lease for its life: replica 2 stays busy.
    let mut held = held;
    let stream = held.pop().unwrap();
    assert_eq!(replica(&stream), 2);
    drop(held);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        t.running(),
        1,
        "replicas 0 and 1 slept; the stream's replica did not"
    );
    let listed: Vec<(String, u32, InstanceState)> = t
        .instances
        .list()
        .into_iter()
        .map(|i| (i.key, i.replica, i.state))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("k".into(), 0, InstanceState::Stopped),
            ("k".into(), 1, InstanceState::Stopped),
            ("k".into(), 2, InstanceState::Ready),
        ]
    );
    drop(stream);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(t.running(), 0, "every replica sleeps again");
    assert_eq!(t.class().stats.scale_downs.get(), 2);
    // The next request starts the key again from its first replica.
    let lease = t.acquire("k").await.unwrap();
    assert_eq!(replica(&lease), 0);
}

#[tokio::test(start_paused = true)]
async fn without_scale_a_key_keeps_one_instance() {
    let t = table("");
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(t.acquire("k").await.unwrap());
    }
    assert_eq!(t.starts(), 1);
    assert!(held.iter().all(|l| replica(l) == 0));
}

#[tokio::test(start_paused = true)]
async fn min_instances_keeps_that_many_replicas_of_a_name_key_warm() {
    let t = table_with(
        "sleep_after = \"10s\"\nmin_instances = 3\nscale = { max_replicas = 4, target_concurrency = 1 }",
        "[[routes]]\npattern = \"/w/*\"\ncontainer = \"C\"\ninstance = \"name:w\"",
    );
    t.instances.start_pinned().await;
    let started: Vec<String> = t.driver.starts().into_iter().map(|s| s.key).collect();
    let expected: Vec<String> = (0..3).map(|i| replica_key("w", i).into_owned()).collect();
    assert_eq!(started, expected);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(t.running(), 3, "pinned replicas never sleep");
    // Four requests in flight at target 1: the fourth replica is for load, and sleeps.
    let held: Vec<Lease> = vec![
        t.acquire("w").await.unwrap(),
        t.acquire("w").await.unwrap(),
        t.acquire("w").await.unwrap(),
        t.acquire("w").await.unwrap(),
    ];
    let mut served: Vec<u32> = held.iter().map(replica).collect();
    served.sort();
    assert_eq!(
        served,
        [0, 1, 2, 3],
        "one request per replica, warm ones first"
    );
    drop(held);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(t.running(), 3);
    assert_eq!(t.class().stats.scale_downs.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_replica_cannot_start_is_served_by_a_ready_one() {
    let t = table("scale = { max_replicas = 3, target_concurrency = 1 }");
    let held = t.acquire("k").await.unwrap();
    for _ in 0..100 {
        t.driver
            .plan(&replica_key("k", 1), Plan::FailToStart { retryable: false });
    }
    let lease = t.acquire("k").await.expect("served rather than refused");
    assert_eq!(
        replica(&lease),
        0,
        "replica 1 never started: replica 0 serves"
    );
    let tried = t.driver.starts().len();
    assert!(tried >= 2, "replica 1 was tried");
    // Replica 1 fails on in its backoff: the next request past target starts replica 2.
    let next = t.acquire("k").await.unwrap();
    assert_eq!(replica(&next), 2);
    drop((held, lease, next));
}
