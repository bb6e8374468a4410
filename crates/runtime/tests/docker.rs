//! The Docker driver against the real engine: images built from a Dockerfile (busybox on
//! `scratch`), containers started, served, stopped and watched.

mod docker_common;

use docker_common::{docker_cli, get, Project};
use std::time::{Duration, Instant};
use valet_runtime::{Driver, DriverError, ExitStatus};

macro_rules! project {
    ($class:expr) => {
        match Project::new($class).await {
            Some(project) => project,
            None => return,
        }
    };
}

#[tokio::test]
async fn a_dockerfile_is_built_once_and_its_container_serves() {
    // A file of its own makes the context, and so the image, unique to this test.
    let project = project!("");
    let marker = format!("{:?}", Instant::now());
    std::fs::write(project.app().join("www/marker"), &marker).unwrap();
    let mut first = project.driver.start(&project.spec("one")).await.unwrap();
    let addr = first.endpoints().get("http").unwrap();
    assert!(
        !addr.ip().is_loopback() && addr.port() == 8080,
        "its own address: {addr}"
    );
    let page = get(addr, "/index.html", Duration::from_secs(10)).await;
    assert!(
        page.contains(" 200 OK") && page.contains("hello from busybox"),
        "{page}"
    );
    let log = project.log_of("one");
    assert!(
        log.contains("Step 1/"),
        "build output in the instance log: {log}"
    );
    assert!(first.logs().tail(100).iter().any(|l| l.contains("Step 1/")));

    let stopped = first.stop(Duration::from_secs(5)).await;
    assert_eq!(stopped.signal, Some(15), "httpd ends by SIGTERM: {stopped}");
    assert!(
        project.containers().is_empty(),
        "a stopped container is removed"
    );

    let mut second = project.driver.start(&project.spec("one")).await.unwrap();
    let addr = second.endpoints().get("http").unwrap();
    get(addr, "/marker", Duration::from_secs(10)).await;
    let log = project.log_of("one");
    assert_eq!(log.matches("Step 1/").count(), 1, "not rebuilt: {log}");
    let image = docker_cli(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &project.containers()[0],
    ]);
    assert!(
        image.starts_with("valet-web:"),
        "tagged by the context hash: {image}"
    );
    second.stop(Duration::from_secs(5)).await;
    // The image is unique to this test; leave no clutter.
    docker_cli(&["rmi", image.trim()]);
}

#[tokio::test]
async fn a_connect_is_refused_until_the_app_listens() {
    // Through docker-proxy a published port accepts before the app listens, which would fool
    // a TCP readiness probe; valet connects to the container itself.
    let project = project!(r#"command = ["sh", "-c", "sleep 2; exec httpd -f -p 8080 -h /www"]"#);
    let mut running = project.driver.start(&project.spec("slow")).await.unwrap();
    let addr = running.endpoints().get("http").unwrap();
    let early = tokio::net::TcpStream::connect(addr).await;
    assert!(early.is_err(), "nothing listens yet, so nothing accepts");
    let page = get(addr, "/index.html", Duration::from_secs(10)).await;
    assert!(page.contains(" 200 OK"), "{page}");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn labels_mark_the_container_and_escape_the_key() {
    let project = project!("");
    let key = "../odd key/é";
    let mut running = project.driver.start(&project.spec(key)).await.unwrap();
    let id = &project.containers()[0];
    let labels = docker_cli(&["inspect", "-f", "{{json .Config.Labels}}", id]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["valet.managed"], "true");
    assert_eq!(labels["valet.class"], "Web");
    assert_eq!(labels["valet.scope"], project.driver.scope());
    assert_eq!(labels["valet.key"], "..%2Fodd%20key%2F%C3%A9");
    assert_eq!(labels["valet.config-hash"].as_str().unwrap().len(), 32);
    let name = docker_cli(&["inspect", "-f", "{{.Name}}", id]);
    assert!(
        !name.contains("odd key") && !name[1..].contains('/'),
        "{name}"
    );
    let bindings = docker_cli(&["inspect", "-f", "{{json .HostConfig.PortBindings}}", id]);
    assert!(bindings.contains("\"HostIp\":\"127.0.0.1\""), "{bindings}");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn env_command_and_port_placeholders_reach_the_container() {
    let project = project!(
        r#"command = ["sh", "-c", "echo $PORT {port} $VALET_PORT_HTTP $VALET_PORT_ADMIN {port.admin} $GREETING $VALET_INSTANCE_KEY $VALET_CLASS"]
ports = { http = 8080, admin = 9000 }
env = { GREETING = "hi" }"#
    );
    let mut running = project.driver.start(&project.spec("k1")).await.unwrap();
    assert_eq!(running.exited().await, code(0));
    let expected = "8080 8080 8080 9000 9000 hi k1 Web";
    assert!(
        running.logs().tail(10).iter().any(|l| l == expected),
        "{:?}",
        running.logs().tail(10)
    );
    assert!(project.log_of("k1").contains(expected));
    assert!(
        project.containers().is_empty(),
        "an exited container is removed"
    );
}

#[tokio::test]
async fn an_exit_code_is_reported_and_a_stubborn_container_is_killed_after_the_timeout() {
    let project = project!(r#"command = ["sh", "-c", "echo bye; exit 3"]"#);
    let mut running = project.driver.start(&project.spec("exit")).await.unwrap();
    assert_eq!(running.exited().await, code(3));
    assert_eq!(running.logs().tail(1), ["bye"]);

    let mut project = project;
    project
        .reconfigure(r#"command = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]"#)
        .await;
    let mut running = project
        .driver
        .start(&project.spec("stubborn"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let status = running.stop(Duration::from_secs(1)).await;
    assert_eq!(status.signal, Some(9), "killed: {status}");
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert!(project.containers().is_empty());
}

#[tokio::test]
async fn a_missing_image_and_a_failing_build_are_errors_naming_the_class() {
    let mut project = project!("");
    project.reconfigure("").await;
    std::fs::write(
        project.path().join("Bad.Dockerfile"),
        "FROM scratch\nRUN [\"/nope\"]\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(project.path().join("valet.toml")).unwrap();

    // A missing reference is pulled (from Docker Hub, unknown or unreachable here), and its
    // error names the image rather than the class: clients are told it as it is.
    for (image, expected) in [
        (
            "valet-test-absent:1",
            "cannot pull image `valet-test-absent:1` from docker.io",
        ),
        ("./Bad.Dockerfile", "image build failed"),
        ("./Missing.Dockerfile", "not found"),
    ] {
        let config = text.replace("./app/Dockerfile", image);
        std::fs::write(project.path().join("valet.toml"), &config).unwrap();
        let config = valet_config::load(&project.path().join("valet.toml")).unwrap();
        let driver = valet_runtime::DockerDriver::connect(&config).await.unwrap();
        let started =
            tokio::time::timeout(Duration::from_secs(60), driver.start(&project.spec("x"))).await;
        let error = match started.expect("a clear error, not a hang") {
            Ok(_) => panic!("{image} started"),
            Err(e) => e,
        };
        let message = error.to_string();
        match &error {
            DriverError::Image { .. } => assert!(message.contains(expected), "{message}"),
            DriverError::Spec(_) => assert!(
                message.contains("class `Web`") && message.contains(expected),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        project.log_of("x").contains("/nope"),
        "the failed build's output is in the log"
    );
}

fn code(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
    }
}
