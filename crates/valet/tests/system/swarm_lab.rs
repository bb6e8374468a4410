//! The swarm lab itself (`support::swarm`, `scripts/lab/swarm.sh`), the ground the Swarm
//! driver's tests stand on: three dockerd daemons in network namespaces form a swarm, an image
//! built on one node is loaded on all, and a service placed by node label, created by image ID
//! and published in host mode answers at its node's address. Without root, the lab's tools or
//! dockerd this is skipped, and fails under `CI=true`.

use crate::support::docker::{busybox_context, put};
use crate::support::http::get_blocking as get;
use crate::support::swarm::SwarmLab;
use std::time::{Duration, Instant};

/// The port busybox httpd listens on in the container, and the one published on node 2.
const TARGET: u16 = 8080;
const PUBLISHED: u16 = 18080;
/// From `service create` to the first answer (measured 1.2-1.4 s here).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
const BODY: &str = "swarm-lab-ok";

#[test]
fn swarm_lab_three_nodes_serve_a_service_by_image_id_on_a_labelled_node() {
    let started = Instant::now();
    let Some(swarm) = SwarmLab::new(3) else {
        return;
    };
    let up = started.elapsed();
    println!("swarm lab up (3 nodes) in {up:.2?}:");
    for (phase, took) in swarm.times() {
        println!("  {phase}: {took:.3?}");
    }

    // Node 1, the manager, sees three Ready nodes, labelled n1..n3.
    let nodes = swarm.docker_ok(1, &["node", "ls", "--format", "{{.Status}}"]);
    assert_eq!(
        nodes.lines().filter(|s| *s == "Ready").count(),
        3,
        "{nodes}"
    );
    let ids = swarm.docker_ok(1, &["node", "ls", "-q"]);
    let mut labels: Vec<String> = ids
        .lines()
        .map(|id| {
            swarm.docker_ok(
                1,
                &[
                    "node",
                    "inspect",
                    "--format",
                    "{{index .Spec.Labels \"valet.node\"}}",
                    id,
                ],
            )
        })
        .collect();
    labels.sort();
    assert_eq!(labels, ["n1", "n2", "n3"]);

    // A FROM-scratch busybox httpd, built on node 1 (nothing is pulled) and loaded on all.
    let context = busybox_context(&format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n\
         CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"{TARGET}\", \"-h\", \"/www\"]\n"
    ));
    put(context.path(), "www/index.html", BODY, false);
    let tag = format!("valet-test-swarm-lab:{}", std::process::id());
    let context_path = context.path().display().to_string();
    swarm.docker_ok(1, &["build", "-q", "-t", &tag, &context_path]);
    let loading = Instant::now();
    let id = swarm.load_image(&tag);
    println!("image loaded on 3 nodes in {:.2?}: {id}", loading.elapsed());
    assert!(id.starts_with("sha256:"), "{id}");
    for i in 2..=3 {
        let there = swarm.docker_ok(i, &["image", "inspect", "--format", "{{.Id}}", &tag]);
        assert_eq!(there, id, "node {i} has the same image");
    }

    // A service by image ID, on node 2, published in host mode there.
    let name = format!("valet-lab-check-{}", std::process::id());
    let publish = format!("mode=host,published={PUBLISHED},target={TARGET}");
    let creating = Instant::now();
    swarm.docker_ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            &name,
            "--no-resolve-image",
            "--publish",
            &publish,
            "--constraint",
            "node.labels.valet.node==n2",
            "--stop-grace-period",
            "1s",
            &id,
        ],
    );
    let created = creating.elapsed();
    let answer = loop {
        if let Some(response) = get(swarm.addr(2), PUBLISHED) {
            break response;
        }
        assert!(
            creating.elapsed() < ANSWER_WITHIN,
            "no answer at {}:{PUBLISHED} within {ANSWER_WITHIN:?}\n{}\n--- node 2's dockerd ---\n{}",
            swarm.addr(2),
            String::from_utf8_lossy(&swarm.docker(1, &["service", "ps", "--no-trunc", &name]).stdout),
            swarm.log(2)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let answered = creating.elapsed();
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "{answer}"
    );
    assert!(answer.ends_with(BODY), "{answer}");
    println!(
        "service create returned in {created:.2?}, first answer at node 2 after {answered:.2?}"
    );
    // It runs on node 2 only.
    for (i, expected) in [(1, 0), (2, 1), (3, 0)] {
        let running = swarm.docker_ok(i, &["ps", "-q"]);
        assert_eq!(running.lines().count(), expected, "containers on node {i}");
    }

    // Removed: its container goes from node 2 (busybox ignores SIGTERM: 1 s grace).
    let removing = Instant::now();
    swarm.docker_ok(1, &["service", "rm", &name]);
    while !swarm.docker_ok(2, &["ps", "-aq"]).is_empty() {
        assert!(
            removing.elapsed() < Duration::from_secs(30),
            "the service's container is still on node 2"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "service removed, container gone in {:.2?}",
        removing.elapsed()
    );
    assert!(
        get(swarm.addr(2), PUBLISHED).is_none(),
        "nothing answers any more"
    );

    let down = Instant::now();
    drop(swarm);
    println!("swarm lab down in {:.2?}", down.elapsed());
}
