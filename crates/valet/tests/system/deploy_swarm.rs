//! Deploying onto the Swarm driver, against the real binary and a real 3-node swarm
//! (`support::swarm`, the manager drained as in production): an uploaded app.py becomes a
//! version image built on the manager's engine, loaded onto every node by image ID, and served
//! by one service per project on a worker node, reached through valet's URL. A second version
//! replaces the first, a rollback runs the first's image again, and a delete leaves no
//! service, container or image of the project on any node. A valet whose swarm lists no
//! nodes refuses a deploy with what to set.
//!
//! The deploy base image is the Docker deploy tests' own (the host's Python, FROM scratch),
//! built on the host's engine and loaded onto the lab's nodes. Without root, the lab's tools
//! or dockerd this is skipped, and fails under `CI=true`.

use crate::deploy_docker::{base_images, lines, PYTHON_BASE};
use crate::deploy_support::*;
use crate::support::swarm::SwarmLab;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `[server]` keys and the lab's swarm (with `[swarm] nodes` when `listed`).
fn config(swarm: &SwarmLab, listed: bool) -> String {
    let nodes: Vec<String> = (1..=swarm.nodes())
        .filter(|_| listed)
        .map(|i| format!("{:?}", swarm.host(i)))
        .collect();
    format!(
        "driver = \"swarm\"\n\n[swarm]\ndocker_host = {manager:?}\nnodes = [{nodes}]\n\n\
         [deploy]\npython_image = \"{PYTHON_BASE}\"\n",
        manager = swarm.host(1),
        nodes = nodes.join(", "),
    )
}

/// What node `i` holds of a project: (containers, images), by the project's label.
fn held(swarm: &SwarmLab, i: usize, project: &str) -> (Vec<String>, Vec<String>) {
    let filter = format!("label=valet.project={project}");
    let containers = swarm.docker_ok(i, &["ps", "-aq", "--filter", &filter]);
    let images = swarm.docker_ok(i, &["images", "-q", "--no-trunc", "--filter", &filter]);
    (lines(&containers), lines(&images))
}

/// The project's services on the manager: (ID, image it runs).
fn project_services(swarm: &SwarmLab, project: &str) -> Vec<(String, String)> {
    let filter = format!("label=valet.project={project}");
    let ids = swarm.docker_ok(1, &["service", "ls", "-q", "--filter", &filter]);
    let format = "{{.ID}} {{.Spec.TaskTemplate.ContainerSpec.Image}}";
    lines(&ids)
        .iter()
        .filter_map(|id| {
            let out = swarm.docker(1, &["service", "inspect", "--format", format, id]);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let (id, image) = text.split_once(' ')?;
            Some((id.to_string(), image.to_string()))
        })
        .collect()
}

/// The nodes (1..=3) whose engine runs a container of the project.
fn running_on(swarm: &SwarmLab, project: &str) -> Vec<usize> {
    let filter = format!("label=valet.project={project}");
    (1..=swarm.nodes())
        .filter(|&i| {
            !swarm
                .docker_ok(i, &["ps", "-q", "--filter", &filter])
                .is_empty()
        })
        .collect()
}

/// Polls `f` until it holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_swarm_an_app_runs_as_one_service_on_a_worker_and_a_delete_leaves_nothing_on_any_node(
) {
    let Some(swarm) = SwarmLab::new(3) else {
        return;
    };
    let manager = swarm.docker_ok(1, &["node", "ls", "-q", "--filter", "role=manager"]);
    swarm.docker_ok(1, &["node", "update", "--availability", "drain", &manager]);
    base_images();
    swarm.load_image(PYTHON_BASE);

    // Without [swarm] nodes a version could run only on the manager: refused, with the fix.
    let (unlisted, unlisted_api) = valet_with(&config(&swarm, false)).await;
    refused_deploy(&unlisted, &unlisted_api, "[swarm] nodes").await;
    drop(unlisted);

    let (valet, api) = valet_with(&config(&swarm, true)).await;
    let (id, url, deploy) = first_version(&valet, &api).await;
    let services = project_services(&swarm, &id);
    assert_eq!(services.len(), 1, "one service per project: {services:?}");
    let (_, image) = &services[0];
    assert!(image.starts_with("sha256:"), "created by image ID: {image}");
    let on = running_on(&swarm, &id);
    assert!(on == [2] || on == [3], "on one worker: {on:?}");
    for i in 1..=3 {
        let (_, images) = held(&swarm, i, &id);
        assert!(
            images.contains(image),
            "node {i} has the version: {images:?}"
        );
    }

    // v2 replaces v1's service; a rollback runs v1's image again.
    let (status, v2) = api
        .upload(Form::file("app.py", container_app("v2")).field("name", "hello"))
        .await;
    assert_eq!(status, 201, "{v2}\n{}", valet.log());
    let (_, answer) = get_app(&valet, &url).await;
    assert_eq!(answer["version"], "v2");
    let (status, back) = api.rollback(&id, 1).await;
    assert_eq!(status, 200, "{back}\n{}", valet.log());
    let (_, answer) = get_app(&valet, &url).await;
    assert_eq!(answer["version"], "v1");
    eventually(Duration::from_secs(60), "v2's service retired", || {
        project_services(&swarm, &id).len() == 1
    })
    .await;
    assert_eq!(
        project_services(&swarm, &id)[0].1,
        *image,
        "v1's image again"
    );

    let (status, gone): (u16, Value) = api
        .call("DELETE", &format!("/v1/projects/{id}"), None)
        .await;
    assert_eq!(status, 200, "{gone}\n{}", valet.log());
    let (status, _) = get_app(&valet, &url).await;
    assert_eq!(status, 404);
    assert_eq!(project_services(&swarm, &id), [], "no service left");
    // The manager removes a service's task containers shortly after the service.
    eventually(Duration::from_secs(60), "no container left", || {
        (1..=3).all(|i| held(&swarm, i, &id).0.is_empty())
    })
    .await;
    for i in 1..=3 {
        let (_, images) = held(&swarm, i, &id);
        assert_eq!(images, Vec::<String>::new(), "node {i} keeps no image");
    }
    eprintln!(
        "deploy_swarm: first deploy (build on the manager, load onto 3 nodes, start) {deploy:.2?}"
    );
}
