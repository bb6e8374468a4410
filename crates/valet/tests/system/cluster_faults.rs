//! Cluster mode (issue 16) when replicas or the store go away: an owner SIGKILLed, an owner
//! stopped gracefully, a `min_instances` key whose owner dies, the store stopped and started
//! again. Each test watches one key continuously (every 50 ms through every reachable replica,
//! and its backend processes every 10 ms, see `support::cluster::Watch`) and asserts that no
//! two replicas ever served it at once; the numbers it prints are RELIABILITY.md's "Cluster
//! mode" table. Partitions and lost notifications are in `cluster_network.rs`.

use crate::cluster::{lease, who_on, CONFIG};
use crate::support::cluster::{who, Replicas, Watch};
use crate::support::*;
use std::time::Duration;

/// `cluster.lease_ttl` of these tests (the harness's default).
pub const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_killed_with_sigkill_has_its_key_taken_over_within_the_lease() {
    let Some((pg, mut replicas)) = Replicas::with_config(CONFIG).start_on_loopback().await else {
        return;
    };
    let before = who_on(&replicas, 1, "kill").await;
    assert_eq!(before.node, "gw-1");
    assert_eq!(who_on(&replicas, 2, "kill").await, before, "forwarded");
    let watch = Watch::key(&replicas, "kill", "/k/kill/who")
        .within(Duration::from_secs(15))
        .start();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The whole node dies: valet and its backends.
    watch.pause(1);
    let killed_at = watch.now();
    replicas.kill_node(1);
    let within = 2 * TTL + Duration::from_secs(8);
    watch.served_by("gw-2", killed_at, within).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = watch.stop().await;

    let first = report.first_from("gw-2", killed_at).unwrap();
    let takeover = first.done - killed_at;
    let after = report.last_served();
    let (served, lost) = report.tally(2, killed_at);
    eprintln!(
        "owner SIGKILL: takeover {takeover:?} after the kill, through replica 2 {served} x 200 \
         and {lost} lost since; epoch {} -> {}; duplicates {}\n{report}",
        before.epoch,
        after.epoch,
        report.duplicates()
    );
    assert_eq!(report.duplicates(), 0, "{report}");
    assert_eq!(
        lost, 0,
        "requests through the survivor wait for the takeover: {report}"
    );
    assert!(
        takeover < 2 * TTL + Duration::from_secs(2),
        "takeover took {takeover:?}"
    );
    assert_eq!(after.node, "gw-2");
    assert!(after.epoch > before.epoch, "{before:?} -> {after:?}");
    assert_eq!(lease(&pg, "kill"), Some(("gw-2".into(), after.epoch)));

    // The killed replica comes back as a forwarder: the key stays where it is.
    replicas.restart(1).await;
    assert_eq!(who_on(&replicas, 1, "kill").await, after);
    let starts: Vec<usize> = replicas.starts().iter().map(|(i, _)| *i).collect();
    assert_eq!(starts, [1, 2], "one start per owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_store_fences_warm_keys_before_their_leases_expire_and_service_resumes() {
    let Some((pg, replicas)) = Replicas::with_config(CONFIG).start_on_loopback().await else {
        return;
    };
    let before = who_on(&replicas, 1, "warm").await;
    assert_eq!(who_on(&replicas, 2, "warm").await, before, "forwarded");
    let watch = Watch::key(&replicas, "warm", "/k/warm/who").start();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping_at = watch.now();
    let mut pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let stopped_at = watch.now();
    // The owner stops its instance before the lease would expire.
    eventually(
        TTL + Duration::from_secs(3),
        "the fenced instance stops",
        || async { (!pid_alive(before.pid)).then_some(()) },
    )
    .await;
    let fenced_at = watch.now();
    // A key nobody runs cannot be claimed: 503 with Retry-After, through either replica.
    for i in 1..=2 {
        let answer = who(
            replicas.client(),
            &replicas.url(i, "/k/fresh/who"),
            Duration::from_secs(5),
        )
        .await;
        let error = answer.expect_err("no claim without the store");
        assert!(
            error.starts_with("503 retry-after="),
            "replica {i}: {error}"
        );
        assert!(
            error.contains("the cluster store is unreachable"),
            "{error}"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let starting_at = watch.now();
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.start();
        pg
    })
    .await
    .unwrap();
    let back_at = watch.now();
    let resumed = eventually(Duration::from_secs(10), "service resumes", || async {
        let answers = watch.answers();
        let since = |i: usize| {
            answers
                .iter()
                .filter(|a| a.replica == i && a.sent >= back_at && a.result.is_ok())
                .map(|a| a.done)
                .min()
        };
        Some(since(1)?.max(since(2)?) - back_at)
    })
    .await;
    assert_eq!(who_on(&replicas, 2, "fresh").await.node.len(), 4);
    let report = watch.stop().await;

    // Until the fence both replicas served the warm key, the forwarder without the store too.
    let last_ok = |i: usize| {
        report
            .answers
            .iter()
            .filter(|a| a.replica == i)
            .filter(|a| a.result.as_ref().is_ok_and(|s| s.pid == before.pid))
            .map(|a| a.sent)
            .max()
            .unwrap()
    };
    let fenced: Vec<_> = report
        .answers
        .iter()
        // Answered before the store was started again (a request may also wait for it).
        .filter(|a| a.sent > stopped_at + TTL && a.done < starting_at)
        .collect();
    let refusals: Vec<_> = report
        .answers
        .iter()
        .filter_map(|a| a.result.as_ref().err())
        .collect();
    let after = report.last_served();
    eprintln!(
        "store stopped ({:?} to stop): warm key served through the owner until {:?} and the \
         forwarder until {:?} after, its instance gone {:?} after; {} refusals; resumed {resumed:?} \
         after the store was back, epoch {} -> {}; duplicates {}",
        stopped_at - stopping_at,
        last_ok(1) - stopping_at,
        last_ok(2) - stopping_at,
        fenced_at - stopping_at,
        refusals.len(),
        before.epoch,
        after.epoch,
        report.duplicates()
    );
    assert_eq!(report.duplicates(), 0, "{report}");
    for i in 1..=2 {
        assert!(
            last_ok(i) >= stopped_at + TTL / 4,
            "replica {i} stopped serving the warm key at once: {report}"
        );
        assert!(
            last_ok(i) <= stopped_at + TTL,
            "replica {i} served past the lease: {report}"
        );
    }
    assert!(fenced_at <= stopped_at + TTL + Duration::from_millis(500));
    assert!(fenced.len() > 10, "{report}");
    let served_fenced: Vec<_> = fenced.iter().filter(|a| a.result.is_ok()).collect();
    assert!(
        served_fenced.is_empty(),
        "served while fenced: {served_fenced:?} (stopped at {stopped_at:?}, store started at \
         {starting_at:?})\n{report}"
    );
    for refusal in &refusals {
        assert!(refusal.starts_with("503 retry-after="), "{refusal}");
    }
    assert!(after.epoch > before.epoch, "claimed again after the outage");
    assert_eq!(lease(&pg, "warm").map(|l| l.1), Some(after.epoch));
    pg.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_stopped_gracefully_hands_its_key_over_without_waiting_out_the_lease() {
    let Some((_pg, mut replicas)) = Replicas::with_config(CONFIG).start_on_loopback().await else {
        return;
    };
    let before = who_on(&replicas, 1, "calm").await;
    assert_eq!(who_on(&replicas, 2, "calm").await, before, "forwarded");
    let watch = Watch::key(&replicas, "calm", "/k/calm/who")
        .within(Duration::from_secs(10))
        .start();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A slow request on the owner keeps it draining for a second after the signal: its peer
    // listener is closed by then while it still holds (and renews) the lease.
    let slow = {
        let (client, url) = (
            replicas.client().clone(),
            replicas.url(1, "/k/calm/slow?ms=1000"),
        );
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    watch.pause(1);
    let stopping_at = watch.now();
    let status = tokio::task::block_in_place(|| replicas.terminate(1));
    assert!(status.success(), "{status}");
    let exited_at = watch.now();
    let within = 2 * TTL + Duration::from_secs(5);
    watch.served_by("gw-2", stopping_at, within).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = watch.stop().await;

    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "the owner drained its request"
    );
    let takeover = report.first_from("gw-2", stopping_at).unwrap().done - stopping_at;
    let (served, lost) = report.tally(2, stopping_at);
    let after = report.last_served();
    // The owner released its lease before it exited; the new instance's process is up soon
    // after, not when the lease would have expired (it was renewed while the owner drained).
    let born = report.processes.alive[&after.pid].0;
    let born_after_exit = born.saturating_sub(exited_at);
    eprintln!(
        "owner SIGTERM: exited after {:?}, takeover {takeover:?} after the signal (the new \
         backend up {born_after_exit:?} after the exit), through replica 2 {served} x 200 and \
         {lost} lost; epoch {} -> {}; duplicates {}\n{report}",
        exited_at - stopping_at,
        before.epoch,
        after.epoch,
        report.duplicates()
    );
    assert_eq!(report.duplicates(), 0, "{report}");
    assert_eq!(lost, 0, "{report}");
    assert_eq!(after.node, "gw-2");
    assert!(after.epoch > before.epoch);
    assert!(
        born_after_exit < TTL / 2,
        "a released lease is not waited out: {born_after_exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_instances_key_runs_on_one_replica_and_moves_when_its_owner_dies() {
    let Some((_pg, mut replicas)) = Replicas::with_config(
        r#"
        [[containers]]
        class_name = "Echo"
        readiness = { path = "/health" }
        min_instances = 1

        [[routes]]
        pattern = "/pinned/*"
        container = "Echo"
        instance = "name:pinned"
        strip_prefix = "/pinned"
        "#,
    )
    .start_on_loopback()
    .await
    else {
        return;
    };
    let first = eventually(Duration::from_secs(10), "the pinned key starts", || async {
        replicas.starts().into_iter().next()
    })
    .await;
    // Both replicas boot the key and sweep for it every lease_ttl: still one instance.
    tokio::time::sleep(2 * TTL + Duration::from_millis(500)).await;
    let starts = replicas.starts();
    assert_eq!(starts.len(), 1, "{starts:?}\n{}", replicas.logs());
    let (owner, survivor) = (first.0, 3 - first.0);
    let url = replicas.url(survivor, "/pinned/who");
    let before = who(replicas.client(), &url, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(before.node, format!("gw-{owner}"));

    // Its owner dies; no request comes, yet the survivor runs it again.
    let killed = std::time::Instant::now();
    replicas.kill_node(owner);
    let restarted = eventually(
        3 * TTL + Duration::from_secs(5),
        "the key moves",
        || async {
            let starts = replicas.starts();
            starts
                .iter()
                .any(|(i, _)| *i == survivor)
                .then(|| killed.elapsed())
        },
    )
    .await;
    let after = who(replicas.client(), &url, Duration::from_secs(5))
        .await
        .unwrap();
    eprintln!(
        "min_instances key: started again by the survivor {restarted:?} after its owner was \
         killed, without a request; epoch {} -> {}",
        before.epoch, after.epoch
    );
    assert_eq!(after.node, format!("gw-{survivor}"));
    assert!(after.epoch > before.epoch);
    assert_eq!(replicas.starts().len(), 2);
}
