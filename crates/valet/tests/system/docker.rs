//! `driver = "docker"` through the real binary and the real engine: a cold request builds and
//! starts a busybox container, its volume keeps data, a valet killed with SIGKILL leaves the
//! container running and the next valet adopts it, and SIGTERM stops it.
//!
//! Without an engine these tests fail under `CI=true` and are skipped with a reason otherwise.

use crate::support::docker::*;
use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// busybox on `scratch` (no registry here), serving /www, with a CGI script that counts its
/// calls in the volume.
const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
COPY www /www\n";
const COUNT_CGI: &str = "#!/bin/sh\n\
echo 'Content-Type: text/plain'\n\
echo\n\
echo hit >> /data/hits\n\
wc -l < /data/hits\n";

/// The image's build context, outside valet's folder; `None` when Docker tests must be skipped.
fn context() -> Option<TempDir> {
    if !engine_ready() {
        return None;
    }
    let dir = busybox_context(DOCKERFILE);
    put(
        dir.path(),
        "www/index.html",
        "hello from a container\n",
        false,
    );
    put(dir.path(), "www/cgi-bin/count", COUNT_CGI, true);
    Some(dir)
}

fn config(class: &str, dockerfile: &Path) -> String {
    let class_options = r#"command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
        readiness = { path = "/index.html", timeout = "60s" }"#;
    config_with(class, dockerfile, class_options)
}

fn config_with(class: &str, dockerfile: &Path, class_options: &str) -> String {
    format!(
        r#"
        [server]
        driver = "docker"

        [[containers]]
        class_name = "{class}"
        image = "{dockerfile}"
        volume = "/data"
        instance_type = "lite"
        stop_timeout = "2s"
        {class_options}

        [[routes]]
        pattern = "/api/*"
        container = "{class}"
        instance = "name:one"
        strip_prefix = "/api"
        "#,
        dockerfile = dockerfile.join("Dockerfile").display()
    )
}

#[tokio::test]
async fn a_container_serves_keeps_its_volume_is_adopted_after_sigkill_and_stops_with_valet() {
    let Some(image) = context() else { return };
    let class = format!("E2e{}", std::process::id());
    let _cleanup = Cleanup(class.clone());
    let valet = Valet::with_config(&config(&class, image.path()))
        .start()
        .await;

    assert_eq!(
        text(&valet, "/api/index.html").await,
        "hello from a container\n"
    );
    assert_eq!(text(&valet, "/api/cgi-bin/count").await.trim(), "1");
    let before = containers(&class);
    assert_eq!(before.len(), 1);
    let bindings = docker(&["port", &before[0]]);
    assert!(
        bindings.trim().starts_with("8080/tcp -> 127.0.0.1:"),
        "{bindings}"
    );

    // valet dies without a chance to stop anything; the container keeps running.
    kill(Pid::from_raw(valet.pid() as i32), Signal::SIGKILL).unwrap();
    eventually(Duration::from_secs(5), "valet to die", || async {
        (!pid_alive(valet.pid())).then_some(())
    })
    .await;
    assert_eq!(containers(&class), before);

    // The next valet on the same folder adopts it: same container, same data, no second one.
    let log = std::fs::File::create(valet.dir().join("second.log")).unwrap();
    let mut second = Command::new(env!("CARGO_BIN_EXE_valet"))
        .arg("up")
        .arg(valet.dir().join("valet.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let second_log = || std::fs::read_to_string(valet.dir().join("second.log")).unwrap_or_default();
    // Its own word that it listens, not a TCP connect: a connect can land in the moment the
    // port is probed free before the gateway's listeners are bound, and be reset.
    eventually(
        Duration::from_secs(30),
        "the second valet to listen",
        || async { second_log().contains("valet listening").then_some(()) },
    )
    .await;
    assert_eq!(
        text(&valet, "/api/cgi-bin/count").await.trim(),
        "2",
        "{}",
        second_log()
    );
    assert_eq!(containers(&class), before, "adopted: {}", second_log());
    assert!(
        second_log().contains("adopted running container"),
        "{}",
        second_log()
    );

    // SIGTERM stops valet and its container; the volume stays.
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || second.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}: {}", second_log());
    assert!(
        containers(&class).is_empty(),
        "stopped with valet: {}",
        second_log()
    );
    let volumes = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=valet.class={class}"),
    ]);
    assert_eq!(volumes.lines().count(), 1, "{volumes}");
}

#[tokio::test]
async fn a_slow_app_behind_a_tcp_probe_is_waited_for_not_answered_502() {
    let Some(image) = context() else { return };
    let class = format!("Slow{}", std::process::id());
    let _cleanup = Cleanup(class.clone());
    let slow = r#"command = ["sh", "-c", "sleep 2; exec httpd -f -p 8080 -h /www"]"#;
    let valet = Valet::with_config(&config_with(&class, image.path(), slow))
        .start()
        .await;
    assert_eq!(
        text(&valet, "/api/index.html").await,
        "hello from a container\n"
    );
}

/// The volumes of a class, by name.
fn volumes(class: &str) -> Vec<String> {
    let filter = format!("label=valet.class={class}");
    docker(&["volume", "ls", "-q", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs a valet command against the running valet's config, to completion.
fn valet_cli(valet: &Valet, args: &[&str]) -> std::process::Output {
    let config = valet.dir().join("valet.toml");
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    Valet::run(&all, Duration::from_secs(60))
}

#[tokio::test]
async fn destroy_deletes_the_instances_volume_and_its_data() {
    let Some(image) = context() else { return };
    let class = format!("Destroy{}", std::process::id());
    let _cleanup = Cleanup(class.clone());
    let valet = Valet::with_config(&config(&class, image.path()))
        .start()
        .await;
    assert_eq!(text(&valet, "/api/cgi-bin/count").await.trim(), "1");
    assert_eq!(volumes(&class).len(), 1);

    let out = valet_cli(&valet, &["destroy", &class, "one"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}\n{}", valet.log());
    assert!(containers(&class).is_empty(), "{}", valet.log());
    assert!(volumes(&class).is_empty(), "{}", valet.log());

    // The next request starts afresh, on an empty volume.
    assert_eq!(text(&valet, "/api/cgi-bin/count").await.trim(), "1");
}

#[tokio::test]
async fn volumes_ls_shows_the_instances_volume_and_rm_refuses_it_while_it_runs() {
    let Some(image) = context() else { return };
    let class = format!("Vols{}", std::process::id());
    let _cleanup = Cleanup(class.clone());
    let valet = Valet::with_config(&config(&class, image.path()))
        .start()
        .await;
    assert_eq!(text(&valet, "/api/cgi-bin/count").await.trim(), "1");
    let said = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let out = valet_cli(&valet, &["volumes", "ls", "--json"]);
    assert!(out.status.success(), "{}", said(&out));
    let listed: serde_json::Value = serde_json::from_str(&said(&out)).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let volume = &listed[0];
    let name = volume["name"].as_str().unwrap().to_string();
    assert_eq!(volumes(&class), std::slice::from_ref(&name));
    assert_eq!(volume["class"], class.as_str());
    assert_eq!(volume["key"], "one");
    assert_eq!(volume["in_use"], true, "{volume}");
    let table = said(&valet_cli(&valet, &["volumes", "ls"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains(&name) && table.contains(" yes"), "{table}");

    let out = valet_cli(
        &valet,
        &["volumes", "rm", "--class", &class, "--key", "one"],
    );
    assert!(!out.status.success());
    assert!(
        said(&out).contains(&format!(
            "error: volume {name} is in use by running container"
        )) && said(&out).contains(&format!("valet stop {class} one")),
        "{}",
        said(&out)
    );
    assert_eq!(volumes(&class).len(), 1);

    // Stopped, the instance keeps its volume until it is removed by hand.
    assert!(valet_cli(&valet, &["stop", &class, "one"]).status.success());
    let listed = said(&valet_cli(&valet, &["volumes", "ls", "--json"]));
    assert!(listed.contains("\"in_use\": false"), "{listed}");
    let out = valet_cli(&valet, &["volumes", "rm", &name]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(said(&out).trim(), format!("removed volume {name}"));
    assert!(volumes(&class).is_empty());

    let out = valet_cli(&valet, &["volumes", "rm", &name]);
    assert!(!out.status.success());
    assert!(said(&out).contains("no volume"), "{}", said(&out));
}

/// A class without a volume whose env says which config made the container: its page is
/// written at start, a second late (so a replacement takes a while, and requests keep coming).
fn versioned_config(class: &str, dockerfile: &Path, version: &str) -> String {
    format!(
        r#"
        [server]
        driver = "docker"

        [[containers]]
        class_name = "{class}"
        image = "{dockerfile}"
        instance_type = "lite"
        stop_timeout = "2s"
        env = {{ VERSION = "{version}" }}
        command = ["sh", "-c", "sleep 1; mkdir /v; echo $VERSION > /v/index.html; exec httpd -f -p 8080 -h /v"]
        readiness = {{ path = "/index.html", timeout = "60s" }}

        [[routes]]
        pattern = "/api/*"
        container = "{class}"
        instance = "name:one"
        strip_prefix = "/api"
        "#,
        dockerfile = dockerfile.join("Dockerfile").display()
    )
}

#[tokio::test]
async fn a_changed_class_without_volume_is_replaced_after_reattach_without_a_failed_request() {
    let Some(image) = context() else { return };
    let class = format!("Swap{}", std::process::id());
    let _cleanup = Cleanup(class.clone());
    let valet = Valet::with_config(&versioned_config(&class, image.path(), "first"))
        .start()
        .await;
    assert_eq!(text(&valet, "/api/index.html").await, "first\n");
    let old = containers(&class);
    assert_eq!(old.len(), 1);

    // valet dies, its container serves on; the config changes before the next valet.
    kill(Pid::from_raw(valet.pid() as i32), Signal::SIGKILL).unwrap();
    eventually(Duration::from_secs(5), "valet to die", || async {
        (!pid_alive(valet.pid())).then_some(())
    })
    .await;
    let path = valet.dir().join("valet.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    assert!(toml.contains("\"first\""), "{toml}");
    std::fs::write(&path, toml.replace("\"first\"", "\"second\"")).unwrap();

    let log = std::fs::File::create(valet.dir().join("second.log")).unwrap();
    let mut second = Command::new(env!("CARGO_BIN_EXE_valet"))
        .arg("up")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let second_log = || std::fs::read_to_string(valet.dir().join("second.log")).unwrap_or_default();
    // Its own word that it listens, not a TCP connect: a connect can land in the moment the
    // port is probed free before the gateway's listeners are bound, and be reset.
    eventually(
        Duration::from_secs(30),
        "the second valet to listen",
        || async { second_log().contains("valet listening").then_some(()) },
    )
    .await;

    // The old container answers until the new one is ready, then the new one does; every
    // request on the way succeeds. A new client: the old one's pooled connections went to the
    // valet that was killed.
    let fresh = client();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = fresh.get(valet.url("/api/index.html")).send().await;
        let response = response.unwrap_or_else(|e| panic!("{e:?}: {}", second_log()));
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{body}\n{}", second_log());
        if seen.last() != Some(&body) {
            seen.push(body.clone());
        }
        if body == "second\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never replaced: {seen:?}\n{}",
            second_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, ["first\n", "second\n"], "{}", second_log());
    // The old container goes once the new one serves: one container, not the old one.
    let now = eventually(Duration::from_secs(20), "the old container to stop", || {
        let now = containers(&class);
        async move { (now.len() == 1).then_some(now) }
    })
    .await;
    assert_ne!(now, old, "{}", second_log());
    assert_eq!(text(&valet, "/api/index.html").await, "second\n");

    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || second.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}: {}", second_log());
    assert!(containers(&class).is_empty(), "{}", second_log());
}
