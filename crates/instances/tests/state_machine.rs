//! The instance state machine on `FakeDriver` (valet-runtime's `test-util` fake engine) and
//! paused tokio time: no processes, no sockets, every timing exact. Each test says one rule of
//! DESIGN.md's instance semantics.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::time::Instant;
use valet_core::shutdown::ShutdownTrigger;
use valet_core::{InstanceId, InstanceState, Shutdown};
use valet_instances::{AcquireError, ClassRuntime, Instances};
use valet_runtime::fake::{one_class_config, FakeDriver, Plan};
use valet_runtime::{Adopted, Driver, InstanceSpec};

struct Table {
    instances: Instances,
    driver: FakeDriver,
    trigger: ShutdownTrigger,
    _dir: TempDir,
}

/// One class `C` (path:1 keys) with `class_options`, and `server_options`.
fn table_with(server_options: &str, class_options: &str) -> Table {
    let (config, dir) = one_class_config(server_options, class_options, "");
    let driver = FakeDriver::new();
    let (trigger, shutdown) = Shutdown::new();
    let instances = Instances::new(&config, Arc::new(driver.clone()), shutdown);
    Table {
        instances,
        driver,
        trigger,
        _dir: dir,
    }
}

fn table(class_options: &str) -> Table {
    table_with("", class_options)
}

impl Table {
    fn class(&self) -> Arc<ClassRuntime> {
        self.instances.class("C").unwrap().clone()
    }

    async fn acquire(&self, key: &str) -> Result<valet_instances::Lease, AcquireError> {
        self.instances.acquire(&self.class(), key, 0).await
    }

    fn state(&self, key: &str) -> InstanceState {
        self.instances.get("C", key).expect("known key").state()
    }

    /// An instance of `key` launched on the fake engine without the table, as one an earlier
    /// valet left running would be: for `Instances::adopt`.
    async fn launched_outside(&self, key: &str) -> (InstanceId, Box<dyn valet_runtime::Running>) {
        let id = InstanceId::new("C", key);
        let spec = InstanceSpec {
            id: id.clone(),
            command: vec!["fake".into()],
            image: None,
            ports: vec![("http".into(), 8080)],
            default_port: "http".into(),
            env: Vec::new(),
            work_dir: self._dir.path().into(),
            data_dir: self._dir.path().join(key),
            log_path: self._dir.path().join(format!("{key}.log")),
            user: None,
            log_lines: 10,
        };
        (id, self.driver.start(&spec).await.unwrap())
    }

    async fn settle(&self) {
        // Paused time: sleeping lets every task run up to its next timer.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_to_a_cold_key_starts_exactly_one_instance() {
    let t = Arc::new(table(""));
    let mut burst = Vec::new();
    for _ in 0..200 {
        let t = t.clone();
        burst.push(tokio::spawn(async move { t.acquire("k").await.map(drop) }));
    }
    for request in burst {
        request.await.unwrap().unwrap();
    }
    assert_eq!(t.driver.starts_of("k"), 1);
    assert_eq!(t.driver.alive("k"), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_wait_for_a_slow_start_and_are_then_served() {
    let t = table(r#"readiness = { timeout = "30s" }"#);
    t.driver.plan(
        "k",
        Plan::Serve {
            ready_after: Duration::from_secs(3),
        },
    );
    let began = Instant::now();
    t.acquire("k").await.unwrap();
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(t.state("k"), InstanceState::Ready);
}

#[tokio::test(start_paused = true)]
async fn an_instance_never_ready_fails_at_the_readiness_deadline() {
    let t = table(r#"readiness = { timeout = "2s" }"#);
    t.driver.default_plan(Plan::NeverReady);
    let began = Instant::now();
    let error = t.acquire("k").await.map(drop).unwrap_err();
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    assert!(
        matches!(
            error,
            AcquireError::StartTimeout { .. } | AcquireError::Unavailable { .. }
        ),
        "{error:?}"
    );
    let status = t.instances.get("C", "k").unwrap().status();
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("not ready within"),
        "the status says why: {status:?}"
    );
    assert_eq!(
        t.driver.stops().len(),
        1,
        "the unready instance was stopped"
    );
}

fn pull_then(takes: u64, then: Plan) -> Plan {
    Plan::Pull {
        takes: Duration::from_secs(takes),
        then: Box::new(then),
    }
}

#[tokio::test(start_paused = true)]
async fn a_pull_is_not_counted_against_the_readiness_timeout() {
    let t = Arc::new(table(r#"readiness = { timeout = "2s" }"#));
    // A minute's pull, then the app takes a second to listen.
    let ready_after = Duration::from_secs(1);
    t.driver
        .plan("k", pull_then(60, Plan::Serve { ready_after }));
    let began = Instant::now();
    let first = {
        let t = t.clone();
        tokio::spawn(async move { t.acquire("k").await.map(drop) })
    };
    // One more request comes in the middle of the pull: it waits for it too.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let status = t.instances.get("C", "k").unwrap().status();
    assert_eq!(status.state, InstanceState::Starting);
    assert!(status.pulling_until.is_some(), "{status:?}");
    t.acquire("k").await.unwrap();
    first.await.unwrap().unwrap();
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(61) && waited < Duration::from_secs(62),
        "{waited:?}"
    );
    assert_eq!(t.driver.starts_of("k"), 1);
    let status = t.instances.get("C", "k").unwrap().status();
    assert_eq!(status.pulling_until, None, "the pull is over");
}

#[tokio::test(start_paused = true)]
async fn the_readiness_clock_starts_when_the_pulled_instance_does() {
    let t = table(r#"readiness = { timeout = "2s" }"#);
    t.driver.plan("k", pull_then(60, Plan::NeverReady));
    t.driver.default_plan(Plan::NeverReady);
    let began = Instant::now();
    let error = t.acquire("k").await.map(drop).unwrap_err();
    // The instance had its whole 2 s once the pull was done (not 0 s left of it), and the
    // request its 2 s + 1 s of waiting besides the pull.
    let status = t.instances.get("C", "k").unwrap().status();
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("not ready within 2s"),
        "{status:?}"
    );
    let waited = began.elapsed();
    assert!(
        matches!(error, AcquireError::StartTimeout { timeout, .. } if timeout == Duration::from_secs(3)),
        "{error:?}"
    );
    assert!(
        waited >= Duration::from_secs(63) && waited < Duration::from_secs(64),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_wait_for_a_pull_no_longer_than_the_pull_timeout() {
    let t = table_with(
        r#"timeouts = { pull = "30s" }"#,
        r#"readiness = { timeout = "2s" }"#,
    );
    // The driver gives a pull up at the timeout itself; this one never does.
    t.driver.plan("k", pull_then(3600, Plan::serve()));
    let began = Instant::now();
    let error = t.acquire("k").await.map(drop).unwrap_err();
    let waited = began.elapsed();
    assert!(
        matches!(error, AcquireError::StartTimeout { timeout, .. } if timeout == Duration::from_secs(30)),
        "{error:?}"
    );
    assert!(
        waited >= Duration::from_secs(31) && waited < Duration::from_secs(32),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_answers_its_reason_after_the_pull() {
    let t = table(r#"readiness = { timeout = "2s" }"#);
    let reason = "cannot pull image `r:1/a:b` from r:1: unauthorized";
    let no_image = || Plan::NoImage {
        reason: reason.into(),
    };
    // Ten seconds to be told no, then the crash loop's quick retries (remembered failures).
    t.driver.plan("k", pull_then(10, no_image()));
    t.driver.default_plan(no_image());
    let began = Instant::now();
    let error = t.acquire("k").await.map(drop).unwrap_err();
    assert!(
        matches!(error, AcquireError::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(error.public_message(), reason);
    assert!(
        began.elapsed() >= Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_instance_sleeps_after_sleep_after() {
    let t = table(r#"sleep_after = "10s""#);
    drop(t.acquire("k").await.unwrap());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(t.driver.alive("k"), 1, "not idle long enough yet");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(t.driver.alive("k"), 0);
    assert_eq!(t.state("k"), InstanceState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_held_lease_keeps_an_instance_awake_and_its_release_lets_it_sleep() {
    let t = table(r#"sleep_after = "10s""#);
    let lease = t.acquire("k").await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(t.driver.alive("k"), 1, "an open stream is activity");
    drop(lease);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(t.driver.alive("k"), 0);
}

#[tokio::test(start_paused = true)]
async fn the_next_request_wakes_a_sleeping_instance() {
    let t = table(r#"sleep_after = "1s""#);
    drop(t.acquire("k").await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.driver.alive("k"), 0);
    drop(t.acquire("k").await.unwrap());
    assert_eq!(t.driver.starts_of("k"), 2);
    assert_eq!(t.driver.alive("k"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_crash_restarts_with_backoff_doubling_from_100_ms() {
    let t = table(r#"sleep_after = "10m""#);
    drop(t.acquire("k").await.unwrap());
    let mut gaps = Vec::new();
    for _ in 0..3 {
        let crashed_at = Instant::now();
        assert_eq!(t.driver.crash("k", 1), 1);
        let before = t.driver.starts_of("k");
        while t.driver.starts_of("k") == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gaps.push(crashed_at.elapsed());
        // Ready again before the next crash; served for less than a stable run, so the
        // failures add up.
        t.settle().await;
    }
    let ms: Vec<u128> = gaps.iter().map(|g| g.as_millis()).collect();
    assert!((100..=102).contains(&ms[0]), "{ms:?}");
    assert!((200..=203).contains(&ms[1]), "{ms:?}");
    assert!((400..=404).contains(&ms[2]), "{ms:?}");
}

#[test]
fn backoff_is_capped_at_30_s() {
    assert_eq!(
        valet_instances::restart_backoff(1),
        Duration::from_millis(100)
    );
    assert_eq!(
        valet_instances::restart_backoff(2),
        Duration::from_millis(200)
    );
    assert_eq!(
        valet_instances::restart_backoff(30),
        Duration::from_secs(30)
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_answers_unavailable_with_a_retry_time() {
    let t = table(r#"sleep_after = "10m""#);
    t.driver.default_plan(Plan::ExitAfter {
        ready_after: Duration::ZERO,
        after: Duration::from_millis(5),
        code: 3,
    });
    let _ = t.acquire("k").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let error = t.acquire("k").await.map(drop).unwrap_err();
    match error {
        AcquireError::Unavailable { retry_after, .. } => {
            assert!(retry_after >= Duration::from_secs(1))
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    let status = t.instances.get("C", "k").unwrap().status();
    assert_eq!(status.last_exit.and_then(|e| e.code), Some(3));
    assert!(status.failures >= 3, "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn a_launch_that_fails_is_reported_with_its_cause() {
    let t = table("");
    t.driver
        .default_plan(Plan::FailToStart { retryable: false });
    let _ = t.acquire("k").await;
    let status = t.instances.get("C", "k").unwrap().status();
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("fake program not found"),
        "the cause is kept for operators"
    );
    assert_eq!(t.driver.alive("k"), 0);
}

#[tokio::test(start_paused = true)]
async fn clients_are_told_why_an_image_cannot_be_had_and_nothing_else_of_a_failed_start() {
    let t = table("");
    let reason = "cannot pull image `r:1/a:b` from r:1: manifest unknown";
    // Every start fails (the crash loop answers after three).
    for _ in 0..5 {
        let no_image = Plan::NoImage {
            reason: reason.into(),
        };
        t.driver.plan("image", no_image);
        t.driver
            .plan("spec", Plan::FailToStart { retryable: false });
    }
    let error = t.acquire("image").await.map(drop).unwrap_err();
    assert!(
        matches!(error, AcquireError::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(error.public_message(), reason);
    let error = t.acquire("spec").await.map(drop).unwrap_err();
    assert!(
        !error.public_message().contains("fake program"),
        "a driver's detail stays with operators: {}",
        error.public_message()
    );
}

#[tokio::test(start_paused = true)]
async fn an_instance_put_to_sleep_is_not_counted_as_a_crash() {
    let t = table(r#"sleep_after = "1s""#);
    t.driver.plan(
        "k",
        Plan::ExitAfter {
            ready_after: Duration::ZERO,
            after: Duration::from_secs(5),
            code: 0,
        },
    );
    drop(t.acquire("k").await.unwrap());
    // Idle for 1 s: it sleeps before the planned exit, so no crash at all.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(t.driver.starts_of("k"), 1);
    assert_eq!(t.state("k"), InstanceState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn an_exit_of_a_recently_active_instance_is_a_crash_and_restarts() {
    let t = table(r#"sleep_after = "10s""#);
    drop(t.acquire("k").await.unwrap());
    tokio::time::sleep(Duration::from_secs(9)).await;
    // Exit code 0 is a crash too. Active within sleep_after: restarted.
    t.driver.crash("k", 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(t.driver.starts_of("k"), 2);
}

#[tokio::test(start_paused = true)]
async fn stop_asks_then_kills_after_stop_timeout() {
    let t = table(r#"stop_timeout = "3s""#);
    t.driver.plan(
        "k",
        Plan::IgnoreStop {
            ready_after: Duration::ZERO,
        },
    );
    drop(t.acquire("k").await.unwrap());
    let began = Instant::now();
    assert!(t.instances.stop(&t.class(), "k", false).await);
    assert_eq!(began.elapsed(), Duration::from_secs(3));
    let stops = t.driver.stops();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].1.signal, Some(9), "killed after the timeout");
    assert_eq!(t.state("k"), InstanceState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_cooperative_instance_stops_at_once() {
    let t = table(r#"stop_timeout = "3s""#);
    drop(t.acquire("k").await.unwrap());
    let began = Instant::now();
    t.instances.stop(&t.class(), "k", false).await;
    assert!(began.elapsed() < Duration::from_millis(10));
    assert_eq!(t.driver.stops()[0].1.signal, Some(15));
}

#[tokio::test(start_paused = true)]
async fn destroy_forgets_the_key() {
    let t = table("");
    drop(t.acquire("k").await.unwrap());
    t.instances.stop(&t.class(), "k", true).await;
    assert!(t.instances.get("C", "k").is_none());
}

#[tokio::test(start_paused = true)]
async fn max_instances_refuses_a_new_key_while_every_instance_is_busy() {
    let t = table("max_instances = 2");
    let _a = t.acquire("a").await.unwrap();
    let _b = t.acquire("b").await.unwrap();
    let error = t.acquire("c").await.map(drop).unwrap_err();
    assert!(
        matches!(error, AcquireError::ClassFull { max: 2, .. }),
        "{error:?}"
    );
    assert!(
        t.instances.get("C", "c").is_none(),
        "a refused key leaves no record"
    );
    assert_eq!(t.driver.alive_total(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_class_puts_its_least_recently_used_idle_instance_to_sleep() {
    let t = table("max_instances = 2\nsleep_after = \"10m\"");
    drop(t.acquire("a").await.unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(t.acquire("b").await.unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(t.acquire("a").await.unwrap());
    drop(t.acquire("c").await.unwrap());
    assert_eq!(t.driver.alive("b"), 0, "b was the least recently used");
    assert_eq!(t.driver.alive("a"), 1);
    assert_eq!(t.driver.alive("c"), 1);
    assert_eq!(t.state("b"), InstanceState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn one_clients_cold_starts_are_limited_and_refusals_leave_no_record() {
    let t = table_with(
        r#"cold_starts_per_client = { starts = 2, per = "1m" }"#,
        "max_instances = 10",
    );
    let client: IpAddr = "10.1.2.3".parse().unwrap();
    let other: IpAddr = "10.9.9.9".parse().unwrap();
    let class = t.class();
    for key in ["a", "b"] {
        drop(
            t.instances
                .acquire_for(&class, key, 0, Some(client))
                .await
                .unwrap(),
        );
    }
    let error = t
        .instances
        .acquire_for(&class, "c", 0, Some(client))
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(error, AcquireError::TooManyStarts { .. }),
        "{error:?}"
    );
    assert!(t.instances.get("C", "c").is_none());
    // Running keys are not starts; other clients have their own count; the window passes.
    drop(
        t.instances
            .acquire_for(&class, "a", 0, Some(client))
            .await
            .unwrap(),
    );
    drop(
        t.instances
            .acquire_for(&class, "c", 0, Some(other))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    drop(
        t.instances
            .acquire_for(&class, "d", 0, Some(client))
            .await
            .unwrap(),
    );
}

#[tokio::test(start_paused = true)]
async fn min_instances_start_fixed_keys_at_boot_and_keep_them_awake() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [server]
        data_dir = "{data}"

        [[containers]]
        class_name = "P"
        command = ["fake"]
        min_instances = 1
        sleep_after = "1s"

        [[routes]]
        pattern = "/p/*"
        container = "P"
        instance = "name:main"
        "#,
        data = dir.path().join("data").display()
    );
    let config =
        valet_config::parse_str(&text, &dir.path().join("valet.toml"), dir.path()).unwrap();
    let driver = FakeDriver::new();
    let (_trigger, shutdown) = Shutdown::new();
    let instances = Instances::new(&config, Arc::new(driver.clone()), shutdown);
    instances.start_pinned().await;
    assert_eq!(driver.starts_of("main"), 1);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(driver.alive("main"), 1, "a pinned key never sleeps");
}

#[tokio::test(start_paused = true)]
async fn keys_asleep_past_forget_after_are_forgotten() {
    let t = table(r#"sleep_after = "1s""#);
    drop(t.acquire("k").await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        valet_instances::collect::forget_sleeping(&t.instances, Duration::from_secs(10)),
        0,
        "asleep, but not for forget_after yet"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        valet_instances::collect::forget_sleeping(&t.instances, Duration::from_secs(10)),
        1
    );
    assert!(t.instances.get("C", "k").is_none());
    drop(t.acquire("k").await.unwrap());
    assert_eq!(t.driver.starts_of("k"), 2, "a forgotten key starts afresh");
}

#[tokio::test(start_paused = true)]
async fn a_running_instance_is_never_forgotten() {
    let t = table(r#"sleep_after = "0""#);
    drop(t.acquire("k").await.unwrap());
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(
        valet_instances::collect::forget_sleeping(&t.instances, Duration::from_secs(1)),
        0
    );
    assert_eq!(t.driver.alive("k"), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_instance() {
    let t = table("");
    for key in ["a", "b", "c"] {
        drop(t.acquire(key).await.unwrap());
    }
    t.trigger.trigger();
    t.instances.wait_stopped().await;
    assert_eq!(t.driver.alive_total(), 0);
    let error = t.acquire("d").await.map(drop).unwrap_err();
    assert!(matches!(error, AcquireError::ShuttingDown), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn an_adopted_instance_of_an_older_config_is_replaced_once_its_successor_is_ready() {
    let t = table(r#"readiness = { timeout = "10s" }"#);
    let (id, running) = t.launched_outside("k").await;
    let old_addr = running.endpoints().ports[0].1;
    t.driver.plan(
        "k",
        Plan::Serve {
            ready_after: Duration::from_secs(2),
        },
    );
    assert!(t.instances.adopt(Adopted {
        id,
        running,
        stale: true
    }));
    let lease = t.acquire("k").await.unwrap();
    assert_eq!(
        lease.addr(),
        old_addr,
        "the old one serves while its successor starts"
    );
    drop(lease);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.driver.starts_of("k"), 2);
    assert_eq!(t.driver.alive("k"), 1, "the old one was stopped");
    let lease = t.acquire("k").await.unwrap();
    assert_ne!(lease.addr(), old_addr, "requests go to the successor");
}

#[tokio::test(start_paused = true)]
async fn a_successor_that_never_gets_ready_leaves_the_old_one_serving() {
    let t = table(r#"readiness = { timeout = "2s" }"#);
    let (id, running) = t.launched_outside("k").await;
    let old_addr = running.endpoints().ports[0].1;
    t.driver.plan("k", Plan::NeverReady);
    assert!(t.instances.adopt(Adopted {
        id,
        running,
        stale: true
    }));
    drop(t.acquire("k").await.unwrap());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let lease = t.acquire("k").await.unwrap();
    assert_eq!(lease.addr(), old_addr, "an old config serving beats none");
    assert_eq!(t.driver.alive("k"), 1);
}

/// On a runtime with worker threads a stopping task runs beside the start that waits for its
/// slot: the start must find the slot free once the victim has no task, or it puts a second,
/// recently used instance to sleep for one new key (seen in CI under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_key_in_a_full_class_puts_exactly_one_instance_to_sleep() {
    let t = table("max_instances = 2\nsleep_after = \"10m\"");
    drop(t.acquire("hot").await.unwrap());
    for i in 0..200 {
        // Dropped leases: both instances are idle before the new key comes. The sleeps keep
        // the two last uses apart on the millisecond clock that orders them.
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(t.acquire("hot").await.unwrap());
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(t.acquire(&format!("k{i}")).await.unwrap());
        assert_eq!(
            t.driver.alive("hot"),
            1,
            "round {i}: the recently used instance was put to sleep for a new key"
        );
    }
}
