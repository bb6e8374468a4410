//! The Docker daemon restarted under valet, on a daemon of the test's own (its own roots,
//! socket and bridge; see `support/dockerd.rs`) so no other test shares it: while the daemon
//! is down requests get clear answers, never a hang, and once it is back the instance comes
//! back by itself on the next requests.

use crate::support::docker::{busybox_context, engine_ready, put};
use crate::support::dockerd::OwnDockerd;
use crate::support::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
COPY www /www\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_docker_daemon_brings_the_instance_back_with_clear_errors_between() {
    if !engine_ready() {
        return;
    }
    let Some(mut daemon) = OwnDockerd::start() else {
        return;
    };
    let image = busybox_context(DOCKERFILE);
    put(image.path(), "www/index.html", "hello\n", false);
    let valet = Valet::with_config(&format!(
        r#"
[server]
driver = "docker"

[[containers]]
class_name = "Restarted"
image = "{}"
command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
readiness = {{ path = "/index.html", timeout = "60s" }}
instance_type = "lite"
stop_timeout = "2s"

[[routes]]
pattern = "/api/*"
container = "Restarted"
instance = "name:one"
strip_prefix = "/api"
"#,
        image.path().join("Dockerfile").display()
    ))
    // valet's own environment only: other tests in this binary use the default engine.
    .env("DOCKER_HOST", &daemon.host())
    .start()
    .await;
    let first = valet.get("/api/index.html").await;
    assert_eq!(first.status(), StatusCode::OK, "{}", valet.log());

    daemon.stop();
    let down = Instant::now();
    let mut answers = Vec::new();
    while down.elapsed() < Duration::from_secs(4) {
        let response = valet.get("/api/index.html").await;
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let body = response.text().await.unwrap_or_default();
        answers.push((status.as_u16(), retry_after, body));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    statuses.dedup();
    eprintln!(
        "while the daemon is down: {statuses:?}; last {:?}",
        answers.last()
    );
    for (status, retry_after, body) in &answers {
        assert!(
            *status == 503 && *retry_after,
            "a clear 503 with Retry-After, got {status}: {body}\n{}",
            valet.log()
        );
    }

    daemon.start_again();
    let back = Instant::now();
    eventually(
        Duration::from_secs(90),
        "the instance to come back after the daemon restart",
        || async {
            let r = valet
                .client
                .get(valet.url("/api/index.html"))
                .send()
                .await
                .ok()?;
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    eprintln!("back {:?} after the daemon", back.elapsed());
    let running = daemon.docker(&["ps", "-q", "--filter", "label=valet.class=Restarted"]);
    assert_eq!(running.lines().count(), 1, "one container: {running}");
    drop(valet);
}
