//! `driver = "swarm"` with a class image that is only in a registry behind htpasswd auth, on the
//! real 3-node lab swarm (`support::swarm`, the manager drained). The registry (Debian's
//! `docker-registry`) runs in the lab's db namespace at 10.X.0.2, where every node reaches it
//! (the lab's daemons treat their subnet as insecure registries). Without `[swarm] nodes` valet
//! does not load images onto the nodes: the worker that gets the task pulls the image itself,
//! with the credentials valet hands on with the service. With a wrong password the request is
//! answered 503 naming the image and the registry, whether the manager's pull or a node's fails.
//!
//! Without root, the lab's tools, dockerd or the registry these are skipped, and fail under
//! `CI=true`.

use crate::registry::{tools_ready, Registry, PASSWORD, USER};
use crate::support::docker::{busybox_context, put, text};
use crate::support::swarm::SwarmLab;
use crate::support::*;
use std::net::SocketAddr;

const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
COPY www /www\n";
const BODY: &str = "hello from a private registry on a swarm\n";
const PASSWORD_VAR: &str = "VALET_TEST_SWARM_REGISTRY_PASSWORD";

fn config(swarm: &SwarmLab, registry: &str, classes: &[(&str, &str)]) -> String {
    let mut toml = format!(
        r#"
        [server]
        driver = "swarm"

        [swarm]
        docker_host = {manager:?}
        publish = "host"

        [[registries]]
        host = "{registry}"
        username = "{USER}"
        password_secret = "{PASSWORD_VAR}"
        "#,
        manager = swarm.host(1),
    );
    for (name, image) in classes {
        toml.push_str(&format!(
            r#"
            [[containers]]
            class_name = "{name}"
            image = "{image}"
            command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
            ports = {{ http = 8080 }}
            instance_type = "lite"
            stop_timeout = "1s"
            readiness = {{ path = "/index.html", timeout = "60s" }}

            [[routes]]
            pattern = "/{lower}/*"
            container = "{name}"
            instance = "name:one"
            strip_prefix = "/{lower}"
            "#,
            lower = name.to_lowercase(),
        ));
    }
    toml
}

/// Whether node `i` has `image`.
fn has_image(swarm: &SwarmLab, i: usize, image: &str) -> bool {
    swarm
        .docker(i, &["image", "inspect", "--format", "{{.Id}}", image])
        .status
        .success()
}

/// The node (by its `valet.node` label, 1..=3) of the running task of `class`'s service, and
/// the service's `inspect` output.
fn placed(swarm: &SwarmLab, class: &str) -> (usize, String) {
    let filter = format!("label=valet.class={class}");
    let id = swarm.docker_ok(1, &["service", "ls", "-q", "--filter", &filter]);
    assert_eq!(id.lines().count(), 1, "one service of {class}: {id}");
    let format = "{{.NodeID}}";
    let tasks = swarm.docker_ok(
        1,
        &[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &id,
        ],
    );
    let task = tasks.lines().next().expect("a running task");
    let node = swarm.docker_ok(1, &["inspect", "--format", format, task]);
    let label = "{{index .Spec.Labels \"valet.node\"}}";
    let label = swarm.docker_ok(1, &["node", "inspect", "--format", label, &node]);
    let inspect = swarm.docker_ok(1, &["service", "inspect", &id]);
    (label[1..].parse().expect("valet.node=nI"), inspect)
}

/// A 503 with `Retry-After` whose JSON message holds every one of `wanted`; the message.
async fn refused(valet: &Valet, path: &str, wanted: &[&str]) -> String {
    let response = valet.get(path).await;
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body = response.text().await.unwrap();
    assert_eq!(status, 503, "{path}: {body}\n{}", valet.log());
    assert!(retry_after.is_some(), "{path}: no Retry-After");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    let message = json["message"].as_str().unwrap_or_default().to_string();
    eprintln!("{path}: 503, Retry-After {retry_after:?}: {message}");
    for part in wanted {
        assert!(
            message.contains(part),
            "{path}: {part:?} not in {message:?}"
        );
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_nodes_pull_a_private_image_with_the_credentials_valet_hands_on() {
    let Some(swarm) = SwarmLab::new(3) else {
        return;
    };
    if !tools_ready() {
        return;
    }
    let manager = swarm.docker_ok(1, &["node", "ls", "-q", "--filter", "role=manager"]);
    swarm.docker_ok(1, &["node", "update", "--availability", "drain", &manager]);

    // The registry in the lab's db namespace: reached at 10.X.0.2 by the nodes and from here.
    let nsenter = vec![
        "nsenter".to_string(),
        format!("--net=/run/netns/{}", swarm.lab().db_netns()),
    ];
    let addr = SocketAddr::new(swarm.lab().db_addr(), 5000);
    let registry = Registry::start_at(true, addr, &nsenter);
    let host = registry.host.clone();
    let v1 = format!("{host}/valet-e2e/private:v1");
    let v2 = format!("{host}/valet-e2e/private:v2");

    // Built on the manager, pushed there with a login of the test's own, removed again: the
    // registry is the only place the image is.
    let context = busybox_context(DOCKERFILE);
    put(context.path(), "www/index.html", BODY, false);
    let login = tempfile::tempdir().unwrap();
    let config_dir = login.path().to_str().unwrap();
    let context_dir = context.path().to_str().unwrap();
    swarm.docker_ok(1, &["build", "-q", "-t", &v1, context_dir]);
    swarm.docker_ok(1, &["tag", &v1, &v2]);
    let login_args = ["--config", config_dir, "login", "-u", USER, "-p", PASSWORD];
    swarm.docker_ok(1, &[&login_args[..], &[host.as_str()]].concat());
    for image in [&v1, &v2] {
        swarm.docker_ok(1, &["--config", config_dir, "push", image]);
        swarm.docker_ok(1, &["rmi", image]);
    }
    for i in 1..=3 {
        assert!(!has_image(&swarm, i, &v1), "node {i} has {v1} already");
    }

    // The right password (valet's environment): the manager pulls (valet's own pull), and so
    // does the worker that gets the task, with the credentials on the service.
    let class = format!("Private{}", std::process::id());
    let route = class.to_lowercase();
    let toml = config(&swarm, &host, &[(&class, &v1)]);
    let mut valet = Valet::with_config(&toml)
        .env(PASSWORD_VAR, PASSWORD)
        .start()
        .await;
    assert_eq!(text(&valet, &format!("/{route}/index.html")).await, BODY);
    let (node, inspect) = placed(&swarm, &class);
    assert!(
        [2, 3].contains(&node),
        "the manager is drained: node {node}"
    );
    assert!(
        has_image(&swarm, node, &v1),
        "node {node} runs the task but has no {v1}"
    );
    assert!(
        inspect.contains(&format!("\"Image\": \"{v1}\"")),
        "the service names the reference, so its node pulls: {inspect}"
    );
    // The manager keeps the credentials for the node's pull but shows them to no one (not
    // even base64-encoded as the header carried them).
    assert!(
        !inspect.contains(PASSWORD)
            && !inspect.contains("RegistryAuth")
            && !inspect.contains("PullOptions"),
        "service inspect shows the credentials: {inspect}"
    );
    let log = valet.log();
    assert!(!log.contains(PASSWORD), "the password reached valet's log");
    valet.terminate();
    drop(valet);

    // A wrong password. v1 is on the manager (not pulled again: `pull = "missing"`) but on no
    // worker: the worker's pull fails, the task is rejected, and the request hears why. v2 is
    // nowhere: the manager's own pull is refused by the registry.
    for i in 2..=3 {
        let _ = swarm.docker(i, &["rmi", "-f", &v1]);
        assert!(!has_image(&swarm, i, &v1), "node {i} still has {v1}");
    }
    let newer = format!("Newer{}", std::process::id());
    let toml = config(&swarm, &host, &[(&class, &v1), (&newer, &v2)]);
    let valet = Valet::with_config(&toml)
        .env(PASSWORD_VAR, "not-the-password")
        .start()
        .await;
    let wanted = [v1.as_str(), host.as_str(), "could not pull"];
    refused(&valet, &format!("/{route}/index.html"), &wanted).await;
    let wanted = [v2.as_str(), host.as_str(), "unauthorized"];
    refused(
        &valet,
        &format!("/{}/index.html", newer.to_lowercase()),
        &wanted,
    )
    .await;
    let log = valet.log();
    assert!(
        log.contains("a swarm node could not pull the image"),
        "no warning naming the node in valet's log:\n{log}"
    );
    assert!(
        !log.contains("not-the-password"),
        "the password reached valet's log"
    );
}
