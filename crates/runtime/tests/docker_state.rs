//! What the Docker driver promises beyond one container's life: a volume that survives
//! restarts and new images, resource limits the engine enforces, an internal network with no
//! way out, and adoption of running containers by a restarted valet.

mod docker_common;

use docker_common::{docker_cli, get, Project};
use std::time::Duration;
use valet_runtime::{Driver, Running};

macro_rules! project {
    ($class:expr) => {
        match Project::new($class).await {
            Some(project) => project,
            None => return,
        }
    };
}

async fn run_to_end(project: &Project, key: &str) -> Vec<String> {
    let mut running = project.driver.start(&project.spec(key)).await.unwrap();
    let status = running.exited().await;
    assert_eq!(
        status.code,
        Some(0),
        "{status}: {:?}",
        running.logs().tail(20)
    );
    // The ring holds the image build's output first when the image was just built.
    running.logs().tail(1)
}

#[tokio::test]
async fn the_volume_survives_restarts_and_a_new_image() {
    let project = project!(
        r#"volume = "/data"
command = ["sh", "-c", "echo run >> $VALET_DATA_DIR/runs; echo runs=$(wc -l < /data/runs)"]"#
    );
    assert_eq!(run_to_end(&project, "v").await, ["runs=1"]);
    assert_eq!(run_to_end(&project, "v").await, ["runs=2"]);
    // A changed context is a new image; the data stays.
    std::fs::write(project.app().join("www/new"), "v2").unwrap();
    assert_eq!(run_to_end(&project, "v").await, ["runs=3"]);
    assert_eq!(
        run_to_end(&project, "other").await,
        ["runs=1"],
        "one volume per key"
    );

    let filter = format!("label=valet.scope={}", project.driver.scope());
    let volumes = docker_cli(&["volume", "ls", "-q", "--filter", &filter]);
    assert_eq!(volumes.lines().count(), 2, "{volumes}");
    let labels = docker_cli(&[
        "volume",
        "inspect",
        "-f",
        "{{json .Labels}}",
        volumes.lines().next().unwrap(),
    ]);
    assert!(labels.contains("\"valet.class\":\"Web\""), "{labels}");
}

#[tokio::test]
async fn destroy_removes_the_volume_and_only_that_keys() {
    let project = project!(
        r#"volume = "/data"
command = ["sh", "-c", "echo kept > /data/file"]"#
    );
    run_to_end(&project, "gone").await;
    run_to_end(&project, "kept").await;
    let filter = format!("label=valet.scope={}", project.driver.scope());
    let volumes = || docker_cli(&["volume", "ls", "-q", "--filter", &filter]);
    assert_eq!(volumes().lines().count(), 2, "{}", volumes());

    project.driver.destroy(&project.spec("gone")).await.unwrap();
    let left = volumes();
    assert_eq!(left.lines().count(), 1, "{left}");
    let key = docker_cli(&[
        "volume",
        "inspect",
        "-f",
        "{{index .Labels \"valet.key\"}}",
        left.trim(),
    ]);
    assert_eq!(key.trim(), "kept");
    // Destroying what is already gone (or never was) is no error.
    project.driver.destroy(&project.spec("gone")).await.unwrap();
}

#[tokio::test]
async fn instance_types_and_overrides_are_enforced_by_the_engine() {
    let host_cpus: i64 = docker_cli(&["info", "-f", "{{.NCPU}}"])
        .trim()
        .parse()
        .unwrap();
    let gib = 1i64 << 30;
    let mib = 1i64 << 20;
    for (class, nano_cpus, memory) in [
        ("instance_type = \"lite\"", 62_500_000, 256 * mib),
        ("instance_type = \"basic\"", 250_000_000, gib),
        (
            "instance_type = \"standard-1\"\ncpu = 0.75\nmemory = \"300MiB\"",
            750_000_000,
            300 * mib,
        ),
        (
            "instance_type = \"standard-4\"",
            (4 * 1_000_000_000i64).min(host_cpus * 1_000_000_000),
            12 * gib,
        ),
    ] {
        let project = project!(class);
        let mut running = project.driver.start(&project.spec("r")).await.unwrap();
        let id = &project.containers()[0];
        let limits = docker_cli(&[
            "inspect",
            "-f",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
            id,
        ]);
        assert_eq!(limits.trim(), format!("{nano_cpus} {memory}"), "{class}");
        running.stop(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn without_internet_the_container_sits_on_an_internal_network_only() {
    let project = project!("enable_internet = false");
    let mut running = project.driver.start(&project.spec("n")).await.unwrap();
    let addr = running.endpoints().get("http").unwrap();
    assert!(
        !addr.ip().is_loopback(),
        "reached on its network address: {addr}"
    );
    assert_eq!(addr.port(), 8080);
    let page = get(addr, "/index.html", Duration::from_secs(10)).await;
    assert!(page.contains("hello from busybox"), "{page}");

    let id = &project.containers()[0];
    let networks = docker_cli(&[
        "inspect",
        "-f",
        "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}",
        id,
    ]);
    let network = format!("valet-{}-internal", project.driver.scope());
    assert_eq!(networks.trim(), network, "on the internal network only");
    let published = docker_cli(&["port", id]);
    assert!(
        published.trim().is_empty(),
        "nothing published: {published}"
    );
    let internal = docker_cli(&[
        "network",
        "inspect",
        "-f",
        "{{.Internal}} {{.Id}}",
        &network,
    ]);
    let (flag, net_id) = internal.trim().split_once(' ').unwrap();
    assert_eq!(flag, "true");
    // The engine's own rule: what leaves this bridge for anywhere else is dropped, and no
    // masquerading gives its subnet a way out. Shown by inspection, no traffic sent.
    if let Ok(rules) = std::process::Command::new("iptables").args(["-S"]).output() {
        let rules = String::from_utf8_lossy(&rules.stdout);
        let bridge = format!("br-{}", &net_id[..12]);
        let drop_out = rules.lines().any(|r| {
            r.contains(&format!("-i {bridge}")) && r.contains("! -d") && r.ends_with("-j DROP")
        });
        assert!(
            drop_out,
            "no DROP rule for traffic out of {bridge}:\n{rules}"
        );
    }
    let routes = docker_cli(&["exec", id, "ip", "route"]);
    let gateway = docker_cli(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &network,
    ]);
    assert!(
        routes
            .lines()
            .all(|r| !r.contains(" via ") || r.contains(gateway.trim())),
        "{routes}"
    );
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_restarted_valet_adopts_running_containers_and_replaces_changed_ones() {
    let mut project = project!("");
    assert!(project.driver.recover().await.unwrap().is_empty());
    let first = project.driver.start(&project.spec("a")).await.unwrap();
    let addr = first.endpoints().get("http").unwrap();
    get(addr, "/index.html", Duration::from_secs(10)).await;
    // valet is killed: its handles vanish without stopping anything.
    std::mem::forget(first);

    project.reconfigure("").await;
    let mut adopted = project.driver.recover().await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!((adopted[0].id.class(), adopted[0].id.key()), ("Web", "a"));
    assert_eq!(adopted[0].running.endpoints().get("http"), Some(addr));
    assert_eq!(project.containers().len(), 1, "adopted, not duplicated");
    get(addr, "/index.html", Duration::from_secs(5)).await;

    assert!(!adopted[0].stale);

    // Killed again, and this time the class changed meanwhile. Without a volume the old
    // container is adopted as stale: it serves on, moved off the instance's name, until the
    // instance layer has its successor ready.
    std::mem::forget(adopted.pop());
    project.reconfigure("env = { CHANGED = \"yes\" }").await;
    let mut adopted = project.driver.recover().await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert!(adopted[0].stale);
    get(addr, "/index.html", Duration::from_secs(5)).await;
    let successor = project.driver.start(&project.spec("a")).await.unwrap();
    get(addr, "/index.html", Duration::from_secs(5)).await;
    assert_eq!(project.containers().len(), 2, "old and new side by side");
    adopted
        .pop()
        .unwrap()
        .running
        .stop(Duration::from_secs(5))
        .await;
    std::mem::forget(successor);
    assert_eq!(project.containers().len(), 1);

    // With a volume, a changed class's container is stopped at once: two containers never
    // share the volume.
    project.reconfigure("volume = \"/data\"").await;
    assert!(project.driver.recover().await.unwrap().is_empty());
    assert!(project.containers().is_empty());
    let successor = project.driver.start(&project.spec("a")).await.unwrap();
    std::mem::forget(successor);
    project
        .reconfigure("volume = \"/data\"\nenv = { CHANGED = \"again\" }")
        .await;
    assert!(project.driver.recover().await.unwrap().is_empty());
    assert!(
        project.containers().is_empty(),
        "the stale container is gone"
    );

    // A stopped leftover is removed too.
    let running = project.driver.start(&project.spec("b")).await.unwrap();
    let id = project.containers()[0].clone();
    docker_cli(&["kill", &id]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::mem::forget(running);
    assert!(project.driver.recover().await.unwrap().is_empty());
    assert!(project.containers().is_empty());
}

#[tokio::test]
async fn an_adopted_container_is_watched_and_stopped_like_any_other() {
    let mut project = project!("");
    let first = project.driver.start(&project.spec("w")).await.unwrap();
    std::mem::forget(first);
    project.reconfigure("").await;
    let mut adopted = project.driver.recover().await.unwrap();
    let mut running: Box<dyn Running> = adopted.pop().unwrap().running;
    let status = running.stop(Duration::from_secs(5)).await;
    assert_eq!(status.signal, Some(15), "{status}");
    assert!(project.containers().is_empty());
}
