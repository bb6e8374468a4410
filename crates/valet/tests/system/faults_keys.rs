//! A stream of new keys cannot grow valet forever: keys idle for `forget_after` whose instance
//! sleeps are forgotten (record, log file, empty data folder), a data folder holding data is
//! kept, and a forgotten key that comes back gets a fresh instance.

use crate::admin_support::{with_token, Admin, TOKEN};
use crate::support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONFIG: &str = r#"
forget_after = "8s"

[[containers]]
class_name = "Echo"
readiness = { path = "/health" }
sleep_after = "300ms"
max_instances = 50

[[routes]]
pattern = "/k/*"
container = "Echo"
instance = "path:1"
strip_prefix = "/k/*"
"#;

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn known_keys(admin: &Admin) -> usize {
    let (status, list) = admin.get("/v1/instances").await;
    assert_eq!(status, 200);
    list.as_array().expect("a list").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_sleep_long_are_forgotten_with_their_logs_but_not_their_data() {
    // `forget_after` belongs to [server], which with_token opens.
    let valet = Valet::with_config(&with_token(CONFIG)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let data = valet.dir().join(".valet/instances/Echo");
    let logs = valet.dir().join(".valet/logs/Echo");

    let keys: Vec<String> = (0..20).map(|i| format!("random-{i}")).collect();
    let starting: Vec<_> = keys
        .iter()
        .map(|key| {
            valet
                .client
                .get(valet.url(&format!("/k/{key}/echo")))
                .send()
        })
        .collect();
    for (key, response) in keys
        .iter()
        .zip(futures_util::future::join_all(starting).await)
    {
        // Its own backend answers: twenty starts at once must not share a port.
        let echo = echo_of(response.unwrap(), &valet.log()).await;
        assert_eq!(echo["key"], key.as_str(), "{echo}");
    }
    // One key's backend keeps data: its folder is the user's and must survive.
    let env = valet.echo("/k/keeper/echo").await;
    let keeper_dir = valet
        .dir()
        .join(env["data_dir"].as_str().expect("data_dir"));
    std::fs::write(keeper_dir.join("state.db"), "precious").unwrap();
    assert_eq!(entries(&data).len(), 21);
    assert_eq!(entries(&logs).len(), 21);
    assert_eq!(known_keys(&admin).await, 21);

    // They sleep after 300 ms and are forgotten 8 s after their last request.
    eventually(
        Duration::from_secs(40),
        "every idle key to be forgotten",
        || async { (known_keys(&admin).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(entries(&logs), Vec::<PathBuf>::new(), "log files removed");
    assert_eq!(
        entries(&data),
        std::slice::from_ref(&keeper_dir),
        "only the data folder with data stays"
    );
    assert_eq!(
        std::fs::read_to_string(keeper_dir.join("state.db")).unwrap(),
        "precious"
    );
    assert!(valet.log().contains("forgot keys"), "{}", valet.log());

    // A forgotten key that comes back gets a new instance, on its old data.
    let again = valet.echo("/k/keeper/echo").await;
    assert_eq!(again["data_dir"], env["data_dir"]);
    valet.echo("/k/random-0/echo").await;
    assert_eq!(known_keys(&admin).await, 2);
    assert_starts_explained(&valet, &keys);
}

/// Every key started once, and `keeper` and `random-0` once more after being forgotten. A
/// backend that dies by itself (twenty Pythons starting at once on a loaded machine) is
/// restarted by valet, rightly; such a restart counts only if valet logged the exit with the
/// backend's last output. Any other extra start, or a missing one, is a bug.
fn assert_starts_explained(valet: &Valet, keys: &[String]) {
    let starts = valet.starts();
    let failures = valet.failures();
    for failure in &failures {
        eprintln!("a backend failed by itself: {}", failure.line);
        assert!(
            failure.line.contains("exited") && failure.line.contains("log_tail=["),
            "a failure that is not an explained exit: {}",
            failure.line
        );
    }
    let mut expected_total = 0;
    for key in keys.iter().map(String::as_str).chain(["keeper"]) {
        let comebacks = usize::from(key == "keeper" || key == "random-0");
        let instance = format!("Echo/{key}");
        let restarts = failures
            .iter()
            .filter(|f| f.restart && f.instance == instance)
            .count();
        let started = starts.iter().filter(|s| s.key == key).count();
        assert_eq!(
            started,
            1 + comebacks + restarts,
            "starts of {key}: {starts:?}\n{failures:#?}"
        );
        expected_total += 1 + comebacks + restarts;
    }
    assert_eq!(starts.len(), expected_total, "{starts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_the_sweeper_never_get_two_instances_of_a_key() {
    // Sleep after 100 ms, forgotten 200 ms after the last request (swept every 100 ms): two
    // clients 180-480 ms apart keep landing just before, during and after a forget.
    let valet = Valet::with_config(
        r#"
[server]
forget_after = "200ms"

[[containers]]
class_name = "Echo"
readiness = { path = "/health" }
sleep_after = "100ms"

[[routes]]
pattern = "/k/*"
container = "Echo"
instance = "path:1"
strip_prefix = "/k/*"
"#,
    )
    .start()
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2u64)
        .map(|i| {
            let (client, url, stop) = (
                valet.client.clone(),
                valet.url("/k/race/echo"),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut pause = 180 + i * 110;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = client.get(&url).send().await.map(|r| r.status().as_u16());
                    statuses.push(status.map_err(|e| e.to_string()));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    pause = 180 + (pause * 7 + 13) % 300;
                }
                statuses
            })
        })
        .collect();
    // Meanwhile: never two live backends for the key.
    let started = std::time::Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let alive = valet
            .starts()
            .iter()
            .filter(|s| s.key == "race" && pid_alive(s.pid))
            .count();
        most = most.max(alive);
        assert!(
            alive <= 1,
            "{alive} live instances of one key: {:?}",
            valet.starts()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for client in clients {
        for status in client.await.unwrap() {
            assert_eq!(status, Ok(200), "{}", valet.log());
            answered += 1;
        }
    }
    let forgets = valet.log().matches("forgot keys").count();
    eprintln!(
        "race: {answered} requests, {} starts, {forgets} sweeps that forgot the key, at most {most} alive",
        valet.starts().len()
    );
    assert!(
        forgets > 0,
        "the key was never forgotten: the test raced nothing"
    );
}
