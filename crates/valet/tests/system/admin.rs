//! The admin listener against the real binary: tokens, the instance API (list, start, stop,
//! destroy, percent-encoded keys), metrics after real traffic, crashes, logs (tail and follow)
//! and the CLI that talks to it.

use crate::admin_support::{instance_path, sample, with_token, Admin, SseReader, TOKEN};
use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// Test backends keyed by a header, so a test can make any key (slashes, spaces) it likes.
const ECHO: &str = r#"
[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "header:X-Tenant"
strip_prefix = "/api"
"#;

async fn request(valet: &Valet, path: &str, tenant: &str) -> reqwest::Response {
    let response = valet
        .client
        .get(valet.url(path))
        .header("X-Tenant", tenant)
        .send()
        .await;
    response.unwrap_or_else(|e| panic!("GET {path} failed: {e}\n{}", valet.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_the_dashboard_page_need_no_token_and_everything_else_does() {
    let valet = Valet::with_config(&with_token(ECHO)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let plain = |path: &str| admin.client.get(admin.url(path)).send();
    assert_eq!(plain("/healthz").await.unwrap().status(), 200);
    assert_eq!(plain("/readyz").await.unwrap().status(), 200);
    let page = plain("/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Admin token"));
    for path in [
        "/metrics",
        "/v1/instances",
        "/v1/classes",
        "/v1/status",
        &instance_path("Echo", "x"),
    ] {
        let anonymous = plain(path).await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path} without a token");
        assert!(anonymous.headers().contains_key("www-authenticate"));
        let wrong = admin
            .client
            .get(admin.url(path))
            .bearer_auth("test-admin-token-0123456789abcdeX")
            .send();
        assert_eq!(
            wrong.await.unwrap().status(),
            401,
            "{path} with a wrong token"
        );
    }
    let (status, classes) = admin.get("/v1/classes").await;
    assert_eq!(status, 200);
    assert_eq!(classes[0]["name"], "Echo");
    assert_eq!(classes[0]["readiness"]["path"], "/health");
    // Env values may be secrets: only their names are shown.
    assert!(classes[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "STARTS_FILE"));
    assert!(!classes
        .to_string()
        .contains(&valet.dir().join("starts").display().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_one_is_made_once_kept_0600_and_never_logged() {
    let valet = Valet::with_config(ECHO).start().await;
    let path = valet.dir().join(".valet").join("admin-token");
    let token = eventually(Duration::from_secs(10), "token file", || async {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| !t.trim().is_empty())
    })
    .await;
    let token = token.trim().to_string();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let admin = Admin::of(&valet, &token).await;
    assert_eq!(admin.get("/v1/instances").await.0, 200);
    let log = valet.log();
    assert!(
        log.contains("admin-token"),
        "the token's path is logged: {log}"
    );
    assert!(!log.contains(&token), "the token itself is never logged");
    // The CLI beside the config finds the same file.
    let out = admin.cli(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_listed_stopped_started_and_destroyed_by_key() {
    let valet = Valet::with_config(&with_token(ECHO)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let key = "team a/b%c";
    assert_eq!(request(&valet, "/api/echo", key).await.status(), 200);

    let (_, list) = admin.get("/v1/instances").await;
    let one = &list.as_array().unwrap()[0];
    assert_eq!(
        (
            one["class"].as_str(),
            one["key"].as_str(),
            one["state"].as_str()
        ),
        (Some("Echo"), Some(key), Some("ready"))
    );
    assert_eq!(one["requests"], 1);
    assert!(
        one["uptime_ms"].is_u64()
            && one["last_start_ms"].is_u64()
            && one["last_activity_at"].is_u64()
    );

    let pid = valet.starts()[0].pid;
    let (status, stopped) = admin
        .post(&format!("{}/stop", instance_path("Echo", key)))
        .await;
    assert_eq!(
        (status, stopped["state"].as_str()),
        (200, Some("stopped")),
        "{stopped}"
    );
    assert!(!pid_alive(pid), "the backend process is gone after stop");

    let (status, started) = admin
        .post(&format!("{}/start", instance_path("Echo", key)))
        .await;
    assert_eq!(
        (status, started["state"].as_str()),
        (200, Some("ready")),
        "{started}"
    );
    assert_eq!(valet.starts().len(), 2);

    let (status, _) = admin
        .post(&format!("{}/destroy", instance_path("Echo", key)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(admin.get(&instance_path("Echo", key)).await.0, 404);
    assert_eq!(
        admin
            .post(&format!("{}/stop", instance_path("Echo", "never-seen")))
            .await
            .0,
        404
    );
    let (status, body) = admin.get(&instance_path("Nope", key)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_cold_starts_and_instances_by_state() {
    let valet = Valet::with_config(&with_token(ECHO)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    for _ in 0..5 {
        assert_eq!(request(&valet, "/api/echo", "m").await.status(), 200);
    }
    assert_eq!(valet.get("/nowhere").await.status(), 404);
    let upload = valet
        .client
        .post(valet.url("/api/upload"))
        .header("X-Tenant", "m");
    let upload = upload.body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(upload.status(), 200);
    let missing_key = valet
        .client
        .get(valet.url("/api/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing_key.status(), 400);

    let m = admin.metrics().await;
    let expected = [
        (
            r#"valet_requests_total{route="/api/*",class="Echo",status="200"}"#,
            6.0,
        ),
        (
            r#"valet_requests_total{route="/api/*",class="Echo",status="400"}"#,
            1.0,
        ),
        (
            r#"valet_requests_total{route="(none)",class="",status="404"}"#,
            1.0,
        ),
        (
            r#"valet_request_duration_seconds_count{route="/api/*",class="Echo"}"#,
            7.0,
        ),
        (
            r#"valet_request_duration_seconds_bucket{route="/api/*",class="Echo",le="+Inf"}"#,
            7.0,
        ),
        // The request without a key never reached an instance.
        (
            r#"valet_upstream_duration_seconds_count{class="Echo"}"#,
            6.0,
        ),
        (r#"valet_request_bytes_total{class="Echo"}"#, 1000.0),
        (
            r#"valet_cold_start_duration_seconds_count{class="Echo"}"#,
            1.0,
        ),
        (r#"valet_instances{class="Echo",state="ready"}"#, 1.0),
        (r#"valet_instances{class="Echo",state="stopped"}"#, 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&m, series), Some(value), "{series} in\n{m}");
    }
    let positive = |s: &str| sample(&m, s).is_some_and(|v| v > 0.0);
    assert!(positive(
        r#"valet_cold_start_duration_seconds_sum{class="Echo"}"#
    ));
    assert!(positive(r#"valet_response_bytes_total{class="Echo"}"#));
    for family in [
        "valet_instance_restarts_total",
        "valet_waiting_requests",
        "valet_websocket_connections",
    ] {
        assert!(m.contains(&format!("# TYPE {family} ")), "{family} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_counted_reported_with_its_exit_code_and_restarted() {
    let valet = Valet::with_config(&with_token(ECHO)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    assert_eq!(
        request(&valet, "/api/crash?code=3", "c").await.status(),
        200
    );
    let info = eventually(
        Duration::from_secs(20),
        "restarted after the crash",
        || async {
            let info = admin.instance("Echo", "c").await;
            (info["restarts"] == 1 && info["state"] == "ready").then_some(info)
        },
    )
    .await;
    assert_eq!(info["last_exit"]["code"], 3, "{info}");
    // Its last output is kept for the API and the dashboard, and logged with the crash.
    let crashing = "backend: crashing with code 3";
    let last_log = info["last_log"].as_array().expect("last_log");
    assert_eq!(
        last_log.last(),
        Some(&serde_json::json!(crashing)),
        "{info}"
    );
    let failures = valet.failures();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let line = &failures[0].line;
    assert!(line.contains("exited unexpectedly (exit code 3)"), "{line}");
    assert!(line.contains(crashing), "{line}");
    let m = admin.metrics().await;
    assert_eq!(
        sample(&m, r#"valet_instance_crashes_total{class="Echo"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"valet_instance_restarts_total{class="Echo"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"valet_cold_start_duration_seconds_count{class="Echo"}"#
        ),
        Some(2.0)
    );
}

/// The hello example's app logs every request line, which makes its output easy to look for.
const HELLO: &str = concat!(
    "[[containers]]\nclass_name = \"Hello\"\ncommand = [\"python3\", \"",
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/hello/app.py\"]\nreadiness = { path = \"/health\" }\n\n",
    "[[routes]]\npattern = \"/hello/*\"\ncontainer = \"Hello\"\ninstance = \"name:one\"\nstrip_prefix = \"/hello\"\n"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_tailed_and_followed_across_a_restart() {
    let valet = Valet::with_config(&with_token(HELLO)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    assert_eq!(valet.get("/hello/hello?first=1").await.status(), 200);
    let logs = format!("{}/logs", instance_path("Hello", "one"));
    let (_, tail) = admin.get(&format!("{logs}?tail=50")).await;
    assert_eq!(tail["source"], "memory");
    assert!(tail["lines"].to_string().contains("first=1"), "{tail}");

    let follow = admin
        .client
        .get(admin.url(&format!("{logs}?tail=0&follow=1")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.headers()["content-type"], "text/event-stream");
    let mut events = SseReader::new(follow);
    assert_eq!(valet.get("/hello/hello?second=2").await.status(), 200);
    events.wait_for("second=2").await;
    assert_eq!(
        admin
            .post(&format!("{}/stop", instance_path("Hello", "one")))
            .await
            .0,
        200
    );
    events.wait_for("event: notice").await;
    assert_eq!(valet.get("/hello/hello?third=3").await.status(), 200);
    events.wait_for("third=3").await;

    assert_eq!(
        admin
            .post(&format!("{}/stop", instance_path("Hello", "one")))
            .await
            .0,
        200
    );
    let (_, tail) = admin.get(&format!("{logs}?tail=500")).await;
    assert_eq!(
        tail["source"], "file",
        "a sleeping instance's log comes from its file"
    );
    let text = tail["lines"].to_string();
    assert!(
        text.contains("first=1") && text.contains("third=3"),
        "{tail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_stops_and_prints_logs_as_tables_or_json() {
    let valet = Valet::with_config(&with_token(ECHO)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    assert_eq!(request(&valet, "/api/echo", "cli-key").await.status(), 200);
    let text = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let table = text(&admin.cli(&["instances"]));
    assert!(table.starts_with("CLASS"), "{table}");
    assert!(
        table.contains("cli-key") && table.contains("ready"),
        "{table}"
    );
    assert!(
        !table.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    let json: serde_json::Value =
        serde_json::from_str(&text(&admin.cli(&["instances", "Echo", "--json"]))).unwrap();
    assert_eq!(json[0]["key"], "cli-key");

    assert!(text(&admin.cli(&["stop", "Echo", "cli-key"])).contains("Echo/cli-key: stopped"));
    assert_eq!(admin.instance("Echo", "cli-key").await["state"], "stopped");
    assert!(text(&admin.cli(&["logs", "Echo"])).contains("backend ready on"));
    let status = text(&admin.cli(&["status"]));
    assert!(
        status.contains("Echo") && status.contains("1 stopped"),
        "{status}"
    );

    let missing = admin.cli(&["stop", "Echo", "nobody"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stdout).contains("no instance Echo/nobody"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_counted_while_open_and_their_bytes_both_ways() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let config = format!(
        "{ECHO}\n[[routes]]\npattern = \"/ws/*\"\ncontainer = \"Echo\"\ninstance = \"name:ws\"\nstrip_prefix = \"/ws\"\n"
    );
    let valet = Valet::with_config(&with_token(&config)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let url = format!("ws://{}/ws/ws", valet.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket through valet");
    ws.send(Message::text("x".repeat(5000))).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap();
    assert_eq!(echo.unwrap().unwrap().len(), 5000);
    let open = r#"valet_websocket_connections{class="Echo"}"#;
    assert_eq!(sample(&admin.metrics().await, open), Some(1.0));

    ws.close(None).await.unwrap();
    drop(ws);
    let m = eventually(
        Duration::from_secs(10),
        "the tunnel is counted closed",
        || async {
            let m = admin.metrics().await;
            (sample(&m, open) == Some(0.0)).then_some(m)
        },
    )
    .await;
    assert_eq!(
        sample(&m, r#"valet_websocket_connections_total{class="Echo"}"#),
        Some(1.0)
    );
    let up = sample(&m, r#"valet_request_bytes_total{class="Echo"}"#).unwrap();
    let down = sample(&m, r#"valet_response_bytes_total{class="Echo"}"#).unwrap();
    assert!(up >= 5000.0 && down >= 5000.0, "up {up}, down {down}");
}

/// Issue 19, item 6: after a restart no instance of a `name:` class is known yet, and
/// `valet logs CLASS` still needs no key (the rule names it) and prints the log file; and
/// valet's own log, written to a file, carries no colour codes (NO_COLOR not set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_name_rule_class_need_no_key_and_a_log_file_has_no_colour() {
    let mut valet = Valet::with_config(&with_token(HELLO)).start().await;
    assert_eq!(valet.get("/hello/hello?before=restart").await.status(), 200);
    valet.terminate();

    let log = valet.dir().join("second.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_valet"))
        .arg("up")
        .arg(valet.dir().join("valet.toml"))
        .current_dir(valet.dir())
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let admin = Admin::of(&valet, TOKEN).await;
    let out = admin.cli(&["logs", "Hello"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = wait_with_deadline(&mut second, Duration::from_secs(20));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("before=restart"), "{stdout}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("valet listening"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no escape codes in a log file: {text:?}"
    );
}
