//! Deployed projects as operators meet them (issue 19, item 1): `valet status` and `valet
//! instances` name a project by its name and id, `valet logs|stop|start|destroy` take its name
//! or id, the admin API's instance paths take `project:<id>` (the dashboard's Stop and Logs
//! buttons), and `/metrics` labels its requests and cold starts with it, never `class=""`.

use crate::admin_support::{sample, Admin, TOKEN};
use crate::deploy_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_named_by_its_name_in_the_cli_api_and_metrics() {
    let (valet, _api) = valet_with("").await;
    let admin = Admin::of(&valet, TOKEN).await;
    let file = valet.dir().join("app.py");
    std::fs::write(&file, plain_app("ops-v1")).unwrap();
    let (ok, out, err) = cli(
        &valet,
        &["deploy", &file.display().to_string(), "--name", "shop"],
    );
    assert!(ok, "{out}{err}\n{}", valet.log());
    let url = last_line(&out);
    let id = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(get_app(&valet, &url).await.0, 200);
    }

    // Listings: the project's name and id, not its version's class name.
    let shown = format!("project:shop ({id})");
    let (ok, out, err) = cli(&valet, &["instances"]);
    assert!(ok, "{err}");
    assert!(out.contains(&shown), "instances: {out}");
    assert!(!out.contains("project-"), "no version class name: {out}");
    let (ok, out, err) = cli(&valet, &["status"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&shown))
        .unwrap_or_else(|| panic!("status has a row for the project: {out}"));
    assert!(row.contains("1 ready"), "{row}");
    let (ok, out, _) = cli(&valet, &["instances", "--json"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["label"], "project:shop");
    assert_eq!(list[0]["project"]["id"], id.as_str());

    // Logs by name and by id, no key needed.
    for name in ["shop", id.as_str(), &format!("project:{id}")] {
        let (ok, out, err) = cli(&valet, &["logs", name]);
        assert!(ok, "logs {name}: {err}");
        assert!(out.contains("starting ops-v1"), "logs {name}: {out}");
    }

    // Metrics: the project's requests and its cold start carry its name and id.
    let metrics = admin.metrics().await;
    let labels = format!("class=\"project:shop\",project=\"{id}\"");
    assert_eq!(
        sample(
            &metrics,
            &format!("valet_requests_total{{route=\"/containers/*\",{labels},status=\"200\"}}")
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("valet_cold_start_duration_seconds_count{{{labels}}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("route=\"/containers/*\",class=\"\""),
        "{metrics}"
    );

    // Stop and start by name; then the dashboard's way: `project:<id>` in the API path.
    let (ok, out, err) = cli(&valet, &["stop", "shop"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "project:shop/main: stopped");
    let (ok, out, err) = cli(&valet, &["start", &id]);
    assert!(ok, "{err}");
    assert!(out.starts_with("project:shop/main: ready"), "{out}");
    let by_id = format!("project:{id}");
    let (status, body) = admin
        .post(&format!("/v1/instances/{by_id}/main/stop"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "stopped");
    let (status, body) = admin
        .get(&format!("/v1/instances/{by_id}/main/logs?tail=5"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["lines"].to_string().contains("starting ops-v1"),
        "{body}"
    );

    // The next request wakes it; a new version keeps counting into the same series.
    assert_eq!(get_app(&valet, &url).await.0, 200);
    std::fs::write(&file, plain_app("ops-v2")).unwrap();
    let (ok, out, err) = cli(
        &valet,
        &["deploy", &file.display().to_string(), "--name", "shop"],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(get_app(&valet, &url).await.1["version"], "ops-v2");
    let metrics = admin.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            &format!("valet_requests_total{{route=\"/containers/*\",{labels},status=\"200\"}}")
        ),
        Some(5.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            &format!("valet_cold_start_duration_seconds_count{{{labels}}}")
        )
        .is_some_and(|n| n >= 3.0),
        "first start, the start after the stop, the new version: {metrics}"
    );

    let (ok, out, err) = cli(&valet, &["destroy", "shop"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "project:shop/main: destroyed");
}

/// Issue 19, item 3: a failed deploy says what to fix, in the CLI's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_says_its_cause() {
    let (valet, _api) = valet_with("").await;
    // An ASGI app with no server: as a script it defines `app`, returns, and exits with 0.
    let asgi = valet.dir().join("app.py");
    std::fs::write(
        &asgi,
        "async def app(scope, receive, send):\n    pass\n\napp = app\n",
    )
    .unwrap();
    let (ok, out, err) = cli(
        &valet,
        &["deploy", &asgi.display().to_string(), "--name", "asgi"],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("exit code 0") && err.contains("an ASGI app needs uvicorn in requirements"),
        "{err}"
    );

    // A server the app starts itself, from a package its requirements lack.
    std::fs::create_dir_all(valet.dir().join("nouvicorn")).unwrap();
    let missing = valet.dir().join("nouvicorn/app.py");
    std::fs::write(
        &missing,
        "app = None\nif __name__ == \"__main__\":\n    import uvicorn\n    uvicorn.run(app)\n",
    )
    .unwrap();
    let (ok, out, err) = cli(
        &valet,
        &[
            "deploy",
            &missing.display().to_string(),
            "--name",
            "nouvicorn",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("it imports \"uvicorn\", which is not installed: add it to its requirements"),
        "{err}"
    );

    let ts = valet.dir().join("index.ts");
    std::fs::write(&ts, "const port: number = 8000;\nconst broken = (;\n").unwrap();
    let (ok, out, err) = cli(&valet, &["deploy", &ts.display().to_string()]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("index.ts does not compile: index.ts: line 2, column 17: "),
        "{err}"
    );
}

/// `valet logs PROJECT -f` follows the project, not one version: a new version's output
/// arrives on the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_log_is_followed_across_its_versions() {
    let (valet, _api) = valet_with("").await;
    let admin = Admin::of(&valet, TOKEN).await;
    let file = valet.dir().join("app.py");
    std::fs::write(&file, plain_app("follow-v1")).unwrap();
    let deploy = |valet: &crate::support::Valet| {
        let (ok, out, err) = cli(
            valet,
            &["deploy", &file.display().to_string(), "--name", "followed"],
        );
        assert!(ok, "{out}{err}");
    };
    deploy(&valet);
    let follow = admin
        .client
        .get(admin.url("/v1/instances/followed/main/logs?tail=10&follow=1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), 200);
    let mut events = crate::admin_support::SseReader::new(follow);
    events.wait_for("starting follow-v1").await;
    std::fs::write(&file, plain_app("follow-v2")).unwrap();
    deploy(&valet);
    events.wait_for("starting follow-v2").await;
}

/// After a restart a project's version runs under a class of this run, with no instance yet:
/// `valet logs PROJECT` still prints what it wrote in the earlier run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_log_from_before_a_restart_is_still_shown() {
    let (mut valet, _api) = valet_with("").await;
    let file = valet.dir().join("app.py");
    // Two versions: the second's class is this run's second (`-1`), and the restarted valet
    // numbers its classes from 0 again, so its log is not where the new class looks.
    for version in ["first-version", "before-restart"] {
        std::fs::write(&file, plain_app(version)).unwrap();
        let (ok, out, err) = cli(
            &valet,
            &["deploy", &file.display().to_string(), "--name", "kept"],
        );
        assert!(ok, "{out}{err}");
    }
    valet.terminate();
    let restarted = Restarted::start(valet.dir(), valet.addr()).await;
    let (ok, out, err) = cli(&valet, &["logs", "kept"]);
    assert!(ok, "{err}\n{}", restarted.log());
    assert!(out.contains("starting before-restart"), "{out}");
}
