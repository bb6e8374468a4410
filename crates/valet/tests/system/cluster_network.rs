//! Cluster mode (issue 16) when the network fails: an owner cut off from everything by a
//! partition (network namespaces, `support::cluster::Lab`), with clients on both sides, and
//! lease notifications lost (LISTEN connections terminated while keys change hands, and a
//! replica shut out of the store while one does). As in `cluster_faults.rs`, a watched key must
//! never be served by two replicas at once.

use crate::cluster::{lease, who_on, CONFIG};
use crate::cluster_faults::TTL;
use crate::support::cluster::{who, PrivatePostgres, Replicas, Served, Watch};
use crate::support::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_owner_stops_within_the_lease_and_owns_nothing_after_healing() {
    let Some((lab, pg, replicas)) = Replicas::with_config(CONFIG).start_in_lab().await else {
        return;
    };
    let before = who_on(&replicas, 1, "part").await;
    assert_eq!(before.node, "gw-1");
    assert_eq!(who_on(&replicas, 2, "part").await, before, "forwarded");
    // Clients on both sides: the test process (cut off from node 1 with it) and curl inside
    // node 1, which still reaches replica 1 during the partition.
    let watch = Watch::key(&replicas, "part", "/k/part/who")
        .within(Duration::from_secs(5))
        .inside(1, &lab.nsenter(1))
        .start();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The test process cannot reach a cut node either: only replica 2 is asked meanwhile.
    watch.pause(1);
    let cut_at = watch.now();
    lab.cut(1);
    eventually(
        TTL + Duration::from_secs(3),
        "the cut owner stops",
        || async { (!pid_alive(before.pid)).then_some(()) },
    )
    .await;
    let stopped_at = watch.now();
    let within = 2 * TTL + Duration::from_secs(8);
    watch.served_by("gw-2", cut_at, within).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    lab.heal(1);
    let healed_at = watch.now();
    watch.resume(1);
    eventually(
        Duration::from_secs(15),
        "the healed replica forwards",
        || async {
            let answers = watch.answers();
            let ok = answers.iter().any(|a| {
                a.replica == 1
                    && a.sent > healed_at
                    && a.result.as_ref().is_ok_and(|s| s.node == "gw-2")
            });
            ok.then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = watch.stop().await;

    let after = report.last_served();
    let takeover = report.first_from("gw-2", cut_at).unwrap().done - cut_at;
    let (served, lost) = report.tally(2, cut_at);
    let (_, lost_after_heal) = report.tally(1, healed_at);
    let inside_cut: Vec<_> = report
        .answers
        .iter()
        .filter(|a| a.inside && a.sent >= cut_at && a.sent < healed_at)
        .collect();
    let served_inside = inside_cut
        .iter()
        .filter(|a| a.result.is_ok())
        .map(|a| a.done - cut_at)
        .max();
    let old = report.processes.alive[&before.pid];
    let new = report.processes.alive[&after.pid];
    eprintln!(
        "partition: the cut owner's instance gone {:?} after the cut, replica 2 served it \
         {takeover:?} after (its backend up {:?} after the old one was last seen), {served} x 200 \
         and {lost} lost through replica 2; inside node 1 served until {served_inside:?} after \
         the cut, then {} refused; after healing replica 1 forwarded, {lost_after_heal} lost; \
         epoch {} -> {}; duplicates {}\n{report}",
        stopped_at - cut_at,
        new.0.saturating_sub(old.1),
        inside_cut.iter().filter(|a| a.result.is_err()).count(),
        before.epoch,
        after.epoch,
        report.duplicates()
    );
    assert_eq!(report.duplicates(), 0, "{report}");
    // GETs through replica 2 that were waiting on the cut owner when the key moved went to
    // the new owner instead of waiting out their 5 s (failed before the routes' `moved`).
    assert_eq!(lost, 0, "requests lost through replica 2\n{report}");
    assert!(
        new.0 > old.1,
        "the new instance started after the old one stopped"
    );
    // Inside node 1 the key was served until the fence, then refused, never by anyone else.
    assert!(inside_cut.len() > 10, "{report}");
    assert!(served_inside.is_some_and(|t| t <= TTL), "{report}");
    for answer in &inside_cut {
        match &answer.result {
            Ok(served) => assert_eq!(served, &before),
            Err(e) => assert!(e.starts_with("503 "), "{e}"),
        }
    }
    assert!(
        stopped_at - cut_at <= TTL + Duration::from_millis(300),
        "the cut owner's instance ran {:?} after the cut",
        stopped_at - cut_at
    );
    assert_eq!(after.node, "gw-2");
    assert!(after.epoch > before.epoch);
    // Healed, replica 1 holds nothing and runs nothing: the key is gw-2's.
    assert_eq!(lease(&pg, "part"), Some(("gw-2".into(), after.epoch)));
    let held = pg.psql(
        "SELECT count(*) FROM valet_leases WHERE owner = 'gw-1' AND expires_at > clock_timestamp()",
    );
    assert_eq!(held.trim(), "0");
    assert_eq!(who_on(&replicas, 1, "part").await, after);
    let starts: Vec<usize> = replicas.starts().iter().map(|(i, _)| *i).collect();
    assert_eq!(starts, [1, 2]);
    assert!(
        replicas.log(1).contains("lease lost"),
        "{}",
        replicas.log(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_follows_the_owner_when_lease_notifications_are_lost() {
    // A long lease: the sweep (every lease_ttl) cannot be what corrects a stale route here.
    let replicas = Replicas::with_config(CONFIG).replicas(3).lease_ttl("6s");
    let Some((lab, pg, replicas)) = replicas.start_in_lab().await else {
        return;
    };
    let pg = Arc::new(pg);
    let mut owner = 1;
    let mut served = who_on(&replicas, owner, "note").await;
    assert_eq!(who_on(&replicas, 2, "note").await, served);

    // Every replica's LISTEN connection is terminated over and over while the key changes
    // hands between replicas 1 and 3; replica 2 forwards it after every change.
    let (stop, terminated) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let storm = {
        let (pg, stop, terminated) = (pg.clone(), stop.clone(), terminated.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let n = pg.psql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
                );
                terminated.fetch_add(n.trim().parse().unwrap_or(0), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut failed = Vec::new();
    for _ in 0..4 {
        let next = move_key(&replicas, &pg, "note", owner, 4 - owner).await;
        assert!(next.epoch > served.epoch);
        owner = 4 - owner;
        served = next;
        // Replica 2 must forward to the new owner within a second (the sweep is 6 s away).
        let url = replicas.url(2, "/k/note/who");
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            let within = Duration::from_secs(5);
            match who(replicas.client(), &url, within).await {
                Ok(s) if s == served => break,
                Ok(s) => failed.push(format!("served by {s:?}")),
                Err(e) => failed.push(e),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "replica 2 does not follow the owner: {failed:?}\n{}",
                replicas.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    storm.join().unwrap();
    let terminated = terminated.load(Ordering::SeqCst);
    eprintln!(
        "lost NOTIFY: {terminated} LISTEN connections terminated during 4 changes of owner; \
         replica 2 followed each, {} answers not from the owner: {failed:?}",
        failed.len()
    );
    assert!(terminated >= 4, "the storm terminated {terminated}");
    assert!(failed.is_empty(), "{failed:?}\n{}", replicas.logs());

    // Notifications that surely never arrive: replica 2 loses every store connection and
    // cannot open another while "note" moves from replica 1 to replica 3. "other" stays put.
    assert_eq!(owner, 1);
    // The storm's last terminations settle (a reconnect forgets every route) before replica 2
    // learns both routes again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = who_on(&replicas, 3, "other").await;
    assert_eq!(who_on(&replicas, 2, "other").await, other);
    assert_eq!(who_on(&replicas, 2, "note").await, served);
    pg.refuse(lab.addr(2), true);
    pg.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_addr = '{}'",
        lab.addr(2)
    ));
    let moved = move_key(&replicas, &pg, "note", 1, 3).await;
    // Replica 2 still forwards both keys where it last knew them: "other" is served, "note"
    // refused by its old owner, which never forwards again.
    let stale = who(
        replicas.client(),
        &replicas.url(2, "/k/note/who"),
        Duration::from_secs(5),
    )
    .await;
    let kept = who_on(&replicas, 2, "other").await;
    pg.refuse(lab.addr(2), false);
    let back = std::time::Instant::now();
    eventually(
        Duration::from_secs(3),
        "replica 2 follows once it listens",
        || async {
            let url = replicas.url(2, "/k/note/who");
            let answer = who(replicas.client(), &url, Duration::from_secs(5)).await;
            (answer.ok()? == moved).then_some(())
        },
    )
    .await;
    eprintln!(
        "replica 2 without the store while note moved: note got {stale:?}, other served by \
         {kept:?}; note forwarded to gw-3 {:?} after the store let replica 2 in again",
        back.elapsed()
    );
    assert_eq!(kept, other, "a warm forwarded key needs no store");
    // The old owner refuses (`not_owner`, never forwarding again); replica 2 forgets the
    // stale route and asks the store for the owner, which it cannot reach: 503, saying so.
    let refused = stale.expect_err("the old owner does not serve a key it gave up");
    assert!(
        refused.starts_with("503 retry-after=1 ") && refused.contains("store is unreachable"),
        "{refused}"
    );
    let starts = replicas.starts();
    assert_eq!(starts.len(), 7, "one start per ownership: {starts:?}");
    assert!(
        starts.iter().all(|(i, _)| *i != 2),
        "replica 2 only forwards"
    );
}

/// Moves `key` from replica `from` (its owner) to replica `to`: stopped there (the lease is
/// released), then claimed by a request to `to`. Returns the new owner's backend.
async fn move_key(
    replicas: &Replicas,
    pg: &PrivatePostgres,
    key: &str,
    from: usize,
    to: usize,
) -> Served {
    let response = replicas
        .client()
        .post(replicas.admin_url(from, &format!("/v1/instances/Echo/{key}/stop")))
        .bearer_auth(replicas.admin_token())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    eventually(Duration::from_secs(5), "the lease is released", || async {
        lease(pg, key).is_none().then_some(())
    })
    .await;
    let served = who_on(replicas, to, key).await;
    assert_eq!(served.node, format!("gw-{to}"));
    served
}
