//! The instance tests of `instances.rs` and `lifecycle.rs`, against `driver = "docker"`: one
//! container for a burst to a cold key, sleep and wake, restart after a killed container, a crash
//! loop answered 503, and a container ignoring SIGTERM killed after `stop_timeout`; and a key
//! with `scale` served by a container per replica (issue 21).
//!
//! Without an engine these tests fail under `CI=true` and are skipped with a reason otherwise.

use crate::support::docker::*;
use crate::support::*;
use futures_util::future::join_all;
use reqwest::StatusCode;
use std::time::Duration;
use tempfile::TempDir;

const HTTPD: &str = r#"command = ["httpd", "-f", "-p", "8080", "-h", "/www"]"#;

/// The image's build context; `None` when Docker tests must be skipped.
fn context() -> Option<TempDir> {
    if !engine_ready() {
        return None;
    }
    let dir = busybox_context(BUSYBOX_WWW);
    put(dir.path(), "www/index.html", "hello\n", false);
    put(dir.path(), "www/cgi-bin/who", WHO_CGI, true);
    Some(dir)
}

/// One class behind `/api` on the instance `name:one`, with the options a test needs.
fn config(class: &str, image: &TempDir, class_options: &str) -> String {
    format!(
        r#"
        [server]
        driver = "docker"

        [[containers]]
        class_name = "{class}"
        image = "{dockerfile}"
        instance_type = "lite"
        # busybox httpd listens with a backlog of 9 and forks per connection on 1/16 of a CPU:
        # a burst of fresh connections overflows it and the dropped SYNs are retried only
        # seconds later. Capping the requests in flight keeps valet's connections within it.
        max_concurrent_requests = 8
        {class_options}

        [[routes]]
        pattern = "/api/*"
        container = "{class}"
        instance = "name:one"
        strip_prefix = "/api"
        "#,
        dockerfile = image.path().join("Dockerfile").display()
    )
}

/// A unique class name for this test in this run, so cleanup by label touches nothing else.
fn class(name: &str) -> String {
    format!("{name}{}", std::process::id())
}

/// The hostname (the short container id) of the container answering `/api/cgi-bin/who`.
async fn who(valet: &Valet) -> String {
    text(valet, "/api/cgi-bin/who").await.trim().to_string()
}

/// Every container of a class, running or not.
fn all_containers(class: &str) -> Vec<String> {
    let filter = format!("label=valet.class={class}");
    docker(&["ps", "-aq", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_cold_key_starts_exactly_one_container() {
    let Some(image) = context() else { return };
    let class = class("Burst");
    let _cleanup = Cleanup(class.clone());
    let options = format!(
        r#"{HTTPD}
        readiness = {{ path = "/index.html", timeout = "60s" }}"#
    );
    let valet = Valet::with_config(&config(&class, &image, &options))
        .start()
        .await;

    // A static file: a CGI fork per request on a lite container's 1/16 vCPU would be the
    // bottleneck of the test, not valet.
    let requests = (0..200).map(|i| {
        let request = valet
            .client
            .get(valet.url(&format!("/api/index.html?i={i}")))
            .send();
        tokio::spawn(request)
    });
    for response in join_all(requests).await {
        let response = response
            .expect("task")
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", valet.log()));
        assert_eq!(response.status(), StatusCode::OK, "{}", valet.log());
        assert_eq!(response.text().await.unwrap(), "hello\n");
    }
    let created = all_containers(&class);
    assert_eq!(created.len(), 1, "one container for one key: {created:?}");
    let host = who(&valet).await;
    assert!(created[0].starts_with(&host), "{host} vs {created:?}");
}

#[tokio::test]
async fn an_idle_container_is_stopped_and_the_next_request_starts_a_new_one() {
    let Some(image) = context() else { return };
    let class = class("Sleepy");
    let _cleanup = Cleanup(class.clone());
    let options = format!(
        r#"{HTTPD}
        sleep_after = "2s"
        stop_timeout = "1s"
        readiness = {{ path = "/index.html", timeout = "60s" }}"#
    );
    let valet = Valet::with_config(&config(&class, &image, &options))
        .start()
        .await;

    let first = who(&valet).await;
    assert_eq!(containers(&class).len(), 1);
    eventually(
        Duration::from_secs(20),
        "the idle container to be stopped",
        || async { containers(&class).is_empty().then_some(()) },
    )
    .await;

    let second = who(&valet).await;
    assert_ne!(first, second, "a new container serves the woken instance");
    assert_eq!(containers(&class).len(), 1);
}

#[tokio::test]
async fn a_killed_container_is_replaced_for_the_next_requests() {
    let Some(image) = context() else { return };
    let class = class("Crashy");
    let _cleanup = Cleanup(class.clone());
    let options = format!(
        r#"{HTTPD}
        readiness = {{ path = "/index.html", timeout = "60s" }}"#
    );
    let valet = Valet::with_config(&config(&class, &image, &options))
        .start()
        .await;

    let first = who(&valet).await;
    let running = containers(&class);
    assert_eq!(running.len(), 1);
    docker(&["kill", &running[0]]);
    eventually(
        Duration::from_secs(10),
        "the killed container to stop",
        || async { (!containers(&class).contains(&running[0])).then_some(()) },
    )
    .await;

    for _ in 0..5 {
        let next = who(&valet).await;
        assert_ne!(next, first, "served by a new container\n{}", valet.log());
    }
    assert_eq!(containers(&class).len(), 1, "{}", valet.log());
}

#[tokio::test]
async fn a_crash_loop_answers_503_with_retry_after_and_a_json_body() {
    let Some(image) = context() else { return };
    let class = class("Broken");
    let _cleanup = Cleanup(class.clone());
    let options = r#"command = ["sh", "-c", "exit 1"]"#;
    let valet = Valet::with_config(&config(&class, &image, options))
        .start()
        .await;

    let response = valet.get("/api/anything").await;
    assert_crash_loop_answer(response, &format!("{class}/one"), &valet.log()).await;

    let again = valet.get("/api/anything").await;
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_container_ignoring_sigterm_is_killed_after_stop_timeout() {
    let Some(image) = context() else { return };
    let class = class("Stubborn");
    let _cleanup = Cleanup(class.clone());
    let options = r#"command = ["sh", "-c", "trap '' TERM; httpd -f -p 8080 -h /www; sleep 1"]
        stop_timeout = "2s"
        readiness = { path = "/index.html", timeout = "60s" }"#;
    let mut valet = Valet::with_config(&config(&class, &image, options))
        .start()
        .await;
    who(&valet).await;
    assert_eq!(containers(&class).len(), 1);

    let started = std::time::Instant::now();
    let status = valet.terminate();
    let took = started.elapsed();
    assert!(
        status.success(),
        "valet exit status {status:?}\n{}",
        valet.log()
    );
    assert!(
        containers(&class).is_empty(),
        "the stubborn container was killed\n{}",
        valet.log()
    );
    // SIGTERM is ignored, so stopping took the whole stop_timeout, and not much more.
    assert!(
        took >= Duration::from_millis(1800),
        "exited after {took:?}, before stop_timeout"
    );
    assert!(took < Duration::from_secs(15), "exited after {took:?}");
}

/// A CGI script (`www/cgi-bin/slow`) that holds its request a second, then names the
/// container that answered.
const SLOW_WHO_CGI: &str = "#!/bin/sh\n\
sleep 1\n\
echo 'Content-Type: text/plain'\n\
echo\n\
hostname\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_key_gets_a_container_per_replica_and_each_sleeps_after_idle() {
    let Some(image) = context() else { return };
    put(image.path(), "www/cgi-bin/slow", SLOW_WHO_CGI, true);
    let class = class("Scaled");
    let _cleanup = Cleanup(class.clone());
    let options = format!(
        r#"{HTTPD}
        sleep_after = "2s"
        stop_timeout = "1s"
        readiness = {{ path = "/index.html", timeout = "60s" }}
        scale = {{ max_replicas = 3, target_concurrency = 1 }}"#
    );
    let valet = Valet::with_config(&config(&class, &image, &options))
        .start()
        .await;

    // Six requests of a second each at once: three replicas' worth at target 1, and no more.
    let requests = (0..6).map(|i| {
        let request = valet
            .client
            .get(valet.url(&format!("/api/cgi-bin/slow?i={i}")))
            .send();
        tokio::spawn(request)
    });
    let mut hosts = Vec::new();
    for response in join_all(requests).await {
        let response = response
            .expect("task")
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", valet.log()));
        assert_eq!(response.status(), StatusCode::OK, "{}", valet.log());
        hosts.push(response.text().await.unwrap().trim().to_string());
    }
    hosts.sort();
    hosts.dedup();
    let created = all_containers(&class);
    assert!(
        created.len() <= 3,
        "at most max_replicas containers: {created:?}"
    );
    assert!(
        hosts.len() > 1,
        "more than one container answered: {hosts:?}\n{}",
        valet.log()
    );
    for host in &hosts {
        assert!(
            created.iter().any(|c| c.starts_with(host.as_str())),
            "{host} vs {created:?}"
        );
    }
    eventually(
        Duration::from_secs(30),
        "every replica's container to be stopped after idle",
        || async { containers(&class).is_empty().then_some(()) },
    )
    .await;
}
