//! An instance's life through the real binary: it sleeps when idle and wakes on the next request,
//! comes back after a crash or a SIGKILL, reports a crash loop as 503, and stops with valet.

use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::StatusCode;
use std::time::Duration;

/// One instance behind `/api`, with the class options a test needs spliced in.
fn one_instance(class_options: &str) -> String {
    format!(
        r#"
        [[containers]]
        class_name = "Echo"
        readiness = {{ path = "/health" }}
        {class_options}

        [[routes]]
        pattern = "/api/*"
        container = "Echo"
        instance = "name:one"
        strip_prefix = "/api"
        "#
    )
}

fn pid_of(echo: &serde_json::Value) -> u32 {
    echo["pid"].as_u64().expect("echo has a pid") as u32
}

async fn wait_gone(pid: u32, within: Duration, what: &str) {
    eventually(
        within,
        what,
        || async move { (!pid_alive(pid)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn an_idle_instance_sleeps_and_the_next_request_wakes_a_new_one() {
    let valet = Valet::with_config(&one_instance(r#"sleep_after = "1s""#))
        .start()
        .await;

    let first = pid_of(&valet.echo("/api/echo").await);
    wait_gone(
        first,
        Duration::from_secs(10),
        "the idle backend to be stopped",
    )
    .await;

    let second = pid_of(&valet.echo("/api/echo").await);
    assert_ne!(first, second, "a new process serves the woken instance");
    let starts: Vec<u32> = valet.starts().iter().map(|s| s.pid).collect();
    assert_eq!(starts, [first, second]);
}

#[tokio::test]
async fn a_crashed_instance_is_restarted_for_the_next_requests() {
    let valet = Valet::with_config(&one_instance("")).start().await;
    let first = pid_of(&valet.echo("/api/echo").await);

    let crash = valet.get("/api/crash?code=3").await;
    assert_eq!(crash.status(), StatusCode::OK);
    assert_eq!(crash.text().await.unwrap(), "bye");
    wait_gone(first, Duration::from_secs(5), "the crashed backend to exit").await;

    for _ in 0..5 {
        let echo = valet.echo("/api/echo").await;
        assert_ne!(pid_of(&echo), first, "served by the restarted process");
    }
    assert_eq!(valet.starts().len(), 2, "{:?}", valet.starts());
}

#[tokio::test]
async fn a_backend_killed_with_sigkill_is_replaced_on_the_next_request() {
    let valet = Valet::with_config(&one_instance("")).start().await;
    let mut pid = pid_of(&valet.echo("/api/echo").await);

    // Two rounds: each time the request races valet noticing the death. (A third kill within
    // 30 s would count as a crash loop and be answered 503, by design.)
    for round in 1..=2 {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the backend");
        // Right away, while valet may still hold the dead process's address as ready.
        let next = pid_of(&valet.echo("/api/echo").await);
        assert_ne!(next, pid, "round {round}: served by a new process");
        assert!(!pid_alive(pid));
        pid = next;
    }
    assert_eq!(valet.starts().len(), 3);
}

#[tokio::test]
async fn a_crash_loop_answers_503_with_retry_after_and_a_json_body() {
    let valet = Valet::with_config(
        r#"
        [[containers]]
        class_name = "Broken"
        command = ["sh", "-c", "exit 1"]

        [[routes]]
        pattern = "/api/*"
        container = "Broken"
        instance = "name:broken"
        "#,
    )
    .start()
    .await;

    let response = valet.get("/api/anything").await;
    assert_crash_loop_answer(response, "Broken/broken", &valet.log()).await;

    // While the loop lasts, further requests are refused at once rather than queued.
    let again = valet.get("/api/anything").await;
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_instance_that_exits_is_logged_with_its_last_output() {
    let valet = Valet::with_config(
        r#"
        [[containers]]
        class_name = "Broken"
        command = ["sh", "-c", "echo starting; echo boom-marker: cannot open the database >&2; exit 1"]

        [[routes]]
        pattern = "/api/*"
        container = "Broken"
        instance = "name:broken"
        "#,
    )
    .start()
    .await;

    let response = valet.get("/api/anything").await;
    assert_crash_loop_answer(response, "Broken/broken", &valet.log()).await;
    let failures = valet.failures();
    assert!(!failures.is_empty(), "{}", valet.log());
    // What the operator reads: why it ended, and what the app said before.
    for failure in &failures {
        assert_eq!(failure.instance, "Broken/broken");
        let line = &failure.line;
        assert!(line.contains("exited during start (exit code 1)"), "{line}");
        // stdout and stderr are read apart, so the two lines may come in either order.
        assert!(line.contains("log_tail=["), "{line}");
        assert!(line.contains(r#""starting""#), "{line}");
        assert!(
            line.contains(r#""boom-marker: cannot open the database""#),
            "{line}"
        );
    }
}

#[tokio::test]
async fn sigterm_stops_every_instance_and_valet_exits_0() {
    let config = r#"
        [[containers]]
        class_name = "Echo"
        stop_timeout = "5s"
        readiness = { path = "/health" }

        [[routes]]
        pattern = "/k/*"
        container = "Echo"
        instance = "path:1"
        "#;
    let mut valet = Valet::with_config(config).start().await;
    let mut pids = Vec::new();
    for key in ["a", "b", "c"] {
        pids.push(pid_of(&valet.echo(&format!("/k/{key}")).await));
    }

    let started = std::time::Instant::now();
    let status = valet.terminate();
    assert!(
        status.success(),
        "valet exit status {status:?}\n{}",
        valet.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within stop_timeout: {:?}",
        started.elapsed()
    );
    for pid in pids {
        assert!(!pid_alive(pid), "backend {pid} outlived valet");
    }
}

#[tokio::test]
async fn a_backend_ignoring_sigterm_is_killed_after_stop_timeout() {
    let config = one_instance(
        r#"
        stop_timeout = "1s"
        env = { IGNORE_SIGTERM = "1" }
        "#,
    );
    let mut valet = Valet::with_config(&config).start().await;
    let pid = pid_of(&valet.echo("/api/echo").await);

    let started = std::time::Instant::now();
    let status = valet.terminate();
    let took = started.elapsed();
    assert!(
        status.success(),
        "valet exit status {status:?}\n{}",
        valet.log()
    );
    assert!(!pid_alive(pid), "the stubborn backend was killed");
    // SIGTERM is ignored, so it took the whole stop_timeout, and little more.
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before stop_timeout"
    );
    assert!(took < Duration::from_secs(6), "exited after {took:?}");
}
