//! `driver = "swarm"` against a real 3-node Docker Swarm (`support::swarm`): the real `valet up`
//! builds a FROM-scratch busybox class on the manager, loads it onto every node and runs each
//! key as a service published in host mode on its node (the manager drained, as in production).
//! Three tests, each on a lab of its own (~10 s to bring up; the three run side by side in about
//! a minute):
//!
//! - the main story, in order: cold start, sleep and wake, a crash and its restart, valet killed
//!   and the service adopted by the next valet, valet restarted with a changed class (the stale
//!   service serves until its successor is ready, no request fails), a node's dockerd killed under the key (served
//!   from another node, the old copy never again through valet), a partitioned node, and no
//!   service, container, volume or network left on any node after valet stops; times printed;
//! - a key's volume kept on its node across sleeps and across a valet restart with a changed
//!   class (its stale service removed before the successor starts), `valet destroy` removing it
//!   there, and a crash loop reported with the task's exit code and output;
//! - cluster mode: two replicas make one service per key, and the next owner replaces a dead
//!   owner's service.
//!
//! Without root, the lab's tools, dockerd (or PostgreSQL, for the last) these are skipped, and
//! fail under `CI=true`.

use crate::support::cluster::Replicas;
use crate::support::docker::{busybox_context, put, text, BUSYBOX_WWW, WHO_CGI};
use crate::support::swarm::SwarmLab;
use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The longest a takeover after a node loss may take: the manager marks a partitioned node
/// Down after its heartbeats stop (~13 s here), then a new service starts.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(120);

/// Names the class config that answers (its `GREETING`) and the container (its hostname).
const GREET_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$GREETING $(hostname)\"\n";

fn context() -> TempDir {
    let dir = busybox_context(BUSYBOX_WWW);
    put(dir.path(), "www/index.html", "hello\n", false);
    put(dir.path(), "www/cgi-bin/who", WHO_CGI, true);
    put(dir.path(), "www/cgi-bin/greet", GREET_CGI, true);
    dir
}

/// Two classes on the lab's swarm: `Web` (always up, `GREETING = "hi"`) and `Nap` (asleep
/// after 2 s idle).
fn config(swarm: &SwarmLab, tag: &str, image: &TempDir) -> String {
    let nodes: Vec<String> = (1..=swarm.nodes())
        .map(|i| format!("{:?}", swarm.host(i)))
        .collect();
    let dockerfile = image.path().join("Dockerfile");
    let class = |name: &str, extra: &str| {
        format!(
            r#"
            [[containers]]
            class_name = "{name}{tag}"
            image = "{dockerfile}"
            command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
            ports = {{ http = 8080 }}
            instance_type = "lite"
            # busybox httpd as PID 1 under tini still takes a while: keep stops short.
            stop_timeout = "1s"
            readiness = {{ path = "/index.html", timeout = "60s" }}
            {extra}

            [[routes]]
            pattern = "/{lower}/*"
            container = "{name}{tag}"
            instance = "name:one"
            strip_prefix = "/{lower}"
            "#,
            dockerfile = dockerfile.display(),
            lower = name.to_lowercase(),
        )
    };
    format!(
        r#"
        [server]
        driver = "swarm"

        [swarm]
        docker_host = {manager:?}
        nodes = [{nodes}]
        publish = "host"
        {web}
        {nap}
        "#,
        manager = swarm.host(1),
        nodes = nodes.join(", "),
        web = class("Web", "env = { GREETING = \"hi\" }"),
        nap = class("Nap", "sleep_after = \"2s\""),
    )
}

/// A service of the lab's swarm: ID, name and the node (1..=3) its running task is on.
#[derive(Debug, Clone, PartialEq)]
struct Placed {
    service: String,
    node: usize,
}

/// The lab's view of one class's services (on the manager) and where each runs. A service
/// removed between the listing and its inspection is left out.
fn services(swarm: &SwarmLab, class: &str) -> Vec<Placed> {
    let filter = format!("label=valet.class={class}");
    let ids = swarm.docker_ok(1, &["service", "ls", "-q", "--filter", &filter]);
    ids.lines()
        .filter_map(|id| {
            let out = swarm.docker(1, &["service", "inspect", "--format", "{{.ID}}", id]);
            let service = String::from_utf8_lossy(&out.stdout).trim().to_string();
            out.status.success().then(|| Placed {
                node: running_node(swarm, id).unwrap_or(0),
                service,
            })
        })
        .collect()
}

/// Waits (at most `within`) until `class` has one service, with a running task.
async fn one_service(swarm: &SwarmLab, class: &str, within: Duration) -> Vec<Placed> {
    let what = format!("one service of {class}, running");
    eventually(within, &what, || async {
        let placed = services(swarm, class);
        (placed.len() == 1 && placed[0].node != 0).then_some(placed)
    })
    .await
}

/// The node (1..=3, by its `valet.node` label) of a service's running task.
fn running_node(swarm: &SwarmLab, service: &str) -> Option<usize> {
    let out = swarm.docker(
        1,
        &[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.CurrentState}}",
            "--no-trunc",
            service,
        ],
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let task = listing
        .lines()
        .find(|l| l.contains("Running"))?
        .split(' ')
        .next()?
        .to_string();
    let out = swarm.docker(1, &["inspect", "--format", "{{.NodeID}}", &task]);
    let node = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let format = "{{index .Spec.Labels \"valet.node\"}}";
    let out = swarm.docker(1, &["node", "inspect", "--format", format, &node]);
    let label = String::from_utf8_lossy(&out.stdout).trim().to_string();
    label.strip_prefix('n')?.parse().ok()
}

/// Containers of valet's scope on node `i`, running or not.
fn containers_on(swarm: &SwarmLab, i: usize, class: &str) -> Vec<String> {
    let filter = format!("label=valet.class={class}");
    swarm
        .docker_ok(i, &["ps", "-aq", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The container answering `/<route>/cgi-bin/who` through valet.
async fn who(valet: &Valet, route: &str) -> String {
    text(valet, &format!("/{route}/cgi-bin/who"))
        .await
        .trim()
        .to_string()
}

/// A `valet up` started by hand on an existing folder (the second valet, adopting); killed
/// if the test ends without stopping it.
struct Second(Option<Child>);

impl Drop for Second {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if wait_with_deadline(&mut child, Duration::from_secs(30)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// What answered each request sent through valet while a node was lost.
#[derive(Default)]
struct Samples {
    answers: Mutex<Vec<(Duration, Result<String, String>)>>,
}

impl Samples {
    /// When the first answer that is `wanted` came, waiting for it at most `within`.
    async fn first(&self, within: Duration, what: &str, wanted: impl Fn(&str) -> bool) -> Duration {
        eventually(within, what, || async {
            let answers = self.answers.lock().unwrap();
            answers
                .iter()
                .find(|(_, a)| a.as_deref().is_ok_and(&wanted))
                .map(|(at, _)| *at)
        })
        .await
    }

    /// Waits until ten more answers came after `at`.
    async fn ten_after(&self, at: Duration, what: &str) {
        eventually(Duration::from_secs(20), what, || async {
            let answers = self.answers.lock().unwrap();
            let after = answers.iter().filter(|(t, a)| *t > at && a.is_ok());
            (after.count() >= 10).then_some(())
        })
        .await
    }
}

/// Sends a GET to `valet_url` again and again until `stop`.
fn sample(
    valet_url: String,
    client: reqwest::Client,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> (Arc<Samples>, tokio::task::JoinHandle<()>) {
    let samples = Arc::new(Samples::default());
    let keep = samples.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let request = client
                .get(&valet_url)
                .timeout(Duration::from_secs(30))
                .send();
            let answer = match request.await {
                Ok(response) if response.status() == 200 => {
                    Ok(response.text().await.unwrap_or_default().trim().to_string())
                }
                Ok(response) => Err(format!("status {}", response.status())),
                Err(e) => Err(e.to_string()),
            };
            keep.answers
                .lock()
                .unwrap()
                .push((started.elapsed(), answer));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (samples, task)
}

/// Samples while `lose` takes the node running `/web` away, until another container answers
/// and a few more answers came. Asserts the old container never answers after the first answer
/// of the new one; returns the new container and how long after the loss it first answered.
async fn takeover(valet: &Valet, old: &str, lose: impl FnOnce()) -> (String, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let url = valet.url("/web/cgi-bin/who");
    let (samples, sampler) = sample(url, valet.client.clone(), started, stop.clone());
    // The sampler is under way before the loss.
    eventually(Duration::from_secs(10), "a first sample", || async {
        (!samples.answers.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let lost_at = started.elapsed();
    lose();
    let new_at = samples
        .first(
            TAKEOVER_WITHIN,
            "another container to answer /web",
            |host| host != old,
        )
        .await;
    // A few more answers after the takeover, then a look at all of them.
    samples
        .ten_after(new_at, "answers after the takeover")
        .await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let answers = samples.answers.lock().unwrap();
    let new = answers
        .iter()
        .find_map(|(at, a)| (*at == new_at).then(|| a.clone().unwrap()))
        .unwrap();
    for (at, answer) in answers.iter().filter(|(at, _)| *at > new_at) {
        assert_ne!(
            answer.as_deref().ok(),
            Some(old),
            "the old copy answered through valet at {at:?}, after {new} took over at {new_at:?}"
        );
        if let Ok(host) = answer {
            assert_eq!(host, &new, "one serving copy at {at:?}");
        }
    }
    let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
    println!(
        "  {} samples, {failed} failed (while the key moved), old copy last at {:?}",
        answers.len(),
        answers
            .iter()
            .rev()
            .find(|(_, a)| a.as_deref().ok() == Some(old))
            .map(|(at, _)| *at)
    );
    (new, new_at.saturating_sub(lost_at))
}

impl Second {
    /// SIGKILL: the valet dies without stopping anything.
    fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
            let _ = child.wait();
        }
    }
}

/// Sets `name = value` in the env of `class` in `valet`'s valet.toml (the test harness gave
/// every class an env table), which changes the class's config hash.
fn change_class(valet: &Valet, class: &str, name: &str, value: &str) {
    let path = valet.dir().join("valet.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    let classes = doc["containers"].as_array_of_tables_mut().unwrap();
    let found = classes
        .iter_mut()
        .find(|c| c["class_name"].as_str() == Some(class))
        .unwrap();
    found["env"][name] = toml_edit::value(value);
    std::fs::write(&path, doc.to_string()).unwrap();
}

/// `valet up` again on `valet`'s folder (its config as it is now), its output to `log` there.
fn up_again(valet: &Valet, log: &str) -> (Second, std::path::PathBuf) {
    let (child, path) = valet.up_again(log, &[]);
    (Second(Some(child)), path)
}

/// Waits until the valet writing `log` listens; fails with its log.
async fn listening(log: &impl Fn() -> String, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log().contains("valet listening") {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen within 60 s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples `/web/cgi-bin/greet` through a valet that adopted `/web`'s container `old` (made
/// with `GREETING = "hi"`) as stale, while its successor (`"hello"`) starts. Asserts every
/// request is answered, the old container answers first and the successor alone from its
/// first answer on; returns the successor's hostname and when it first answered.
async fn replaced(valet: &Valet, old: &str, log: &impl Fn() -> String) -> (String, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let url = valet.url("/web/cgi-bin/greet");
    let (samples, sampler) = sample(url, valet.client.clone(), started, stop.clone());
    let new_at = samples
        .first(
            Duration::from_secs(60),
            "the successor to answer /web",
            |text| text.starts_with("hello "),
        )
        .await;
    samples.ten_after(new_at, "answers after the switch").await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let answers = samples.answers.lock().unwrap();
    let failed: Vec<_> = answers.iter().filter(|(_, a)| a.is_err()).collect();
    assert!(
        failed.is_empty(),
        "requests failed during the replacement: {failed:?}\n{}",
        log()
    );
    let old = format!("hi {old}");
    let new = answers
        .iter()
        .find_map(|(at, a)| (*at == new_at).then(|| a.clone().unwrap()))
        .unwrap();
    assert_eq!(
        answers[0].1.as_deref(),
        Ok(old.as_str()),
        "the stale service serves until its successor is ready\n{}",
        log()
    );
    for (at, answer) in answers.iter() {
        let want = if *at < new_at { &old } else { &new };
        assert_eq!(answer.as_deref(), Ok(want.as_str()), "at {at:?}");
    }
    let before = answers.iter().filter(|(at, _)| *at < new_at).count();
    println!(
        "  class changed: {before} answers from the stale service, then {new:?} from {new_at:.2?} on; {} samples, none failed",
        answers.len()
    );
    let host = new.strip_prefix("hello ").unwrap().to_string();
    (host, new_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swarm_instances_start_sleep_crash_are_adopted_survive_node_loss_and_leave_nothing() {
    let Some(swarm) = SwarmLab::new(3) else {
        return;
    };
    // The manager takes no tasks, as in production: every key runs on node 2 or 3, and losing
    // one never takes the swarm's control with it.
    let manager = swarm.docker_ok(1, &["node", "ls", "-q", "--filter", "role=manager"]);
    swarm.docker_ok(1, &["node", "update", "--availability", "drain", &manager]);
    let image = context();
    let tag = std::process::id().to_string();
    let (web, nap) = (format!("Web{tag}"), format!("Nap{tag}"));
    let valet = Valet::with_config(&config(&swarm, &tag, &image))
        .start()
        .await;

    // Cold start: the image is built on the manager and loaded onto every node.
    let cold = Instant::now();
    let first = who(&valet, "web").await;
    let cold = cold.elapsed();
    let placed = services(&swarm, &web);
    assert_eq!(placed.len(), 1, "one service per key: {placed:?}");
    assert!([2, 3].contains(&placed[0].node), "{placed:?}");
    let image_id = swarm.docker_ok(
        1,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &placed[0].service,
        ],
    );
    assert!(image_id.starts_with("sha256:"), "by image ID: {image_id}");
    for i in 1..=3 {
        let there = swarm.docker_ok(i, &["image", "inspect", "--format", "{{.Id}}", &image_id]);
        assert_eq!(there, image_id, "node {i} has the image");
    }
    let spec = swarm.docker_ok(
        1,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec}}",
            &placed[0].service,
        ],
    );
    assert!(spec.contains("\"PublishMode\":\"host\""), "{spec}");
    assert!(spec.contains("\"Condition\":\"none\""), "{spec}");
    assert!(first.len() >= 12, "a container's hostname: {first}");
    // A warm key: create-to-first-byte of a service alone, through valet (image in place).
    let nap_cold = Instant::now();
    assert_eq!(text(&valet, "/nap/index.html").await, "hello\n");
    let nap_cold = nap_cold.elapsed();

    // Sleep and wake: the idle key's service is removed, the next request creates one.
    eventually(
        Duration::from_secs(30),
        "the idle key's service to go",
        || async { services(&swarm, &nap).is_empty().then_some(()) },
    )
    .await;
    let wake = Instant::now();
    assert_eq!(text(&valet, "/nap/index.html").await, "hello\n");
    let wake = wake.elapsed();
    assert_eq!(services(&swarm, &nap).len(), 1);

    // A crash: the container is killed on its node; valet starts a new service for the key.
    let node = placed[0].node;
    let container = containers_on(&swarm, node, &web);
    assert_eq!(container.len(), 1, "{container:?}");
    swarm.docker_ok(node, &["kill", &container[0]]);
    let after_crash = eventually(
        Duration::from_secs(60),
        "a new container to serve /web",
        || async {
            let host = who(&valet, "web").await;
            (host != first).then_some(host)
        },
    )
    .await;
    let placed = one_service(&swarm, &web, Duration::from_secs(20)).await;
    assert!(valet.log().contains("instance failed"), "{}", valet.log());

    // valet is killed: the service runs on; the next valet on the folder adopts it.
    valet.kill9().await;
    assert_eq!(services(&swarm, &web), placed, "the service outlives valet");
    let (mut second, second_log) = up_again(&valet, "second.log");
    let second_log = || std::fs::read_to_string(&second_log).unwrap_or_default();
    listening(&second_log, "the second valet").await;
    assert_eq!(who(&valet, "web").await, after_crash, "{}", second_log());
    assert_eq!(
        services(&swarm, &web),
        placed,
        "adopted, no second service: {}",
        second_log()
    );
    assert!(
        second_log().contains("adopted running service"),
        "{}",
        second_log()
    );

    // The class changes while valet is down (its env): the next valet adopts the service as
    // stale, and it serves until a successor service, started beside it, passes valet's
    // readiness probe; then the old one goes. No request fails meanwhile.
    second.kill9();
    change_class(&valet, &web, "GREETING", "hello");
    let (mut second, third_log) = up_again(&valet, "third.log");
    let second_log = || std::fs::read_to_string(&third_log).unwrap_or_default();
    listening(&second_log, "the third valet").await;
    let (current, replacement) = replaced(&valet, &after_crash, &second_log).await;
    let stale = placed[0].service.clone();
    // The stale one is removed once the requests on it are done.
    let placed = one_service(&swarm, &web, Duration::from_secs(30)).await;
    assert_ne!(placed[0].service, stale, "{}", second_log());
    let log = second_log();
    assert!(log.contains("stale=true"), "{log}");
    assert!(log.contains("successor beside the stale service"), "{log}");
    assert!(log.contains("instance replaced"), "{log}");

    // The node running the key loses its dockerd: its container runs on, but valet moves the
    // key to the other node and never routes to the old copy again.
    let lost = placed[0].node;
    let (moved, took) = takeover(&valet, &current, || swarm.kill(lost)).await;
    let placed = services(&swarm, &web);
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0].node, 5 - lost, "on the other worker: {placed:?}");
    let node_loss = took;
    println!(
        "  node {lost}'s dockerd killed: served by {moved} on node {} after {took:.2?}",
        placed[0].node
    );

    // The lost node comes back (as after a reboot): nothing of the key is left on it.
    swarm.restart();
    eventually(
        Duration::from_secs(60),
        "the restarted node to be Ready",
        || async {
            let nodes = swarm.docker_ok(1, &["node", "ls", "--format", "{{.Status}}"]);
            (nodes.lines().filter(|s| *s == "Ready").count() == 3).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "no container of the key on the returned node",
        || async { containers_on(&swarm, lost, &web).is_empty().then_some(()) },
    )
    .await;

    // The node running the key is cut off from everyone: the manager marks it Down, valet
    // moves the key back to the returned node.
    let cut = placed[0].node;
    let (back, took) = takeover(&valet, &moved, || swarm.cut(cut)).await;
    let partition = took;
    let placed = services(&swarm, &web);
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0].node, lost, "{placed:?}");
    println!("  node {cut} cut off: served by {back} on node {lost} after {took:.2?}");
    swarm.heal(cut);

    // valet stops: every service goes, and with them every container on every node.
    let pid = second.0.as_ref().unwrap().id();
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let mut child = second.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}: {}", second_log());
    let scope = swarm.docker_ok(
        1,
        &[
            "service",
            "ls",
            "-q",
            "--filter",
            "label=valet.managed=true",
        ],
    );
    assert_eq!(scope, "", "no service left");
    eventually(
        Duration::from_secs(60),
        "no container, volume or network of valet on any node",
        || async {
            let left: Vec<String> = (1..=3)
                .flat_map(|i| {
                    let filter = "label=valet.managed=true";
                    let mut left = swarm.docker_ok(i, &["ps", "-aq", "--filter", filter]);
                    left.push_str(&swarm.docker_ok(i, &["volume", "ls", "-q", "--filter", filter]));
                    left.push_str(
                        &swarm.docker_ok(i, &["network", "ls", "-q", "--filter", filter]),
                    );
                    (!left.trim().is_empty()).then(|| format!("node {i}: {left}"))
                })
                .collect();
            left.is_empty().then_some(())
        },
    )
    .await;

    println!("swarm driver, through valet:");
    println!(
        "  cold start (build on the manager, load onto 3 nodes, create, first byte): {cold:.2?}"
    );
    println!("  cold start of a second class (service create to first byte): {nap_cold:.2?}");
    println!("  wake 0 -> 1 (service create to first byte): {wake:.2?}");
    println!(
        "  a changed class's successor answering after the third valet listened: {replacement:.2?}"
    );
    println!("  node loss (dockerd killed) to the first answer from another node: {node_loss:.2?}");
    println!("  partition to the first answer from another node: {partition:.2?}");
    drop(valet);
    drop(image);
}

/// A CGI script counting its calls in the key's volume.
const COUNT_CGI: &str = "#!/bin/sh\n\
echo 'Content-Type: text/plain'\n\
echo\n\
n=$(cat /data/count 2>/dev/null || echo 0)\n\
n=$((n + 1))\n\
echo $n > /data/count\n\
echo $n\n";

/// Volumes of a class on node `i`.
fn volumes_on(swarm: &SwarmLab, i: usize, class: &str) -> Vec<String> {
    let filter = format!("label=valet.class={class}");
    swarm
        .docker_ok(i, &["volume", "ls", "-q", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect()
}

/// `valet destroy CLASS one` against the running valet.
fn destroy(valet: &Valet, class: &str) {
    let config = valet.dir().join("valet.toml");
    let args = [
        "destroy",
        class,
        "one",
        "--config",
        config.to_str().unwrap(),
    ];
    let out = Valet::run(&args, Duration::from_secs(60));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}\n{}", valet.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_volumes_stay_on_their_node_and_a_crash_loop_shows_exit_code_and_output() {
    let Some(swarm) = SwarmLab::new(3) else {
        return;
    };
    let manager = swarm.docker_ok(1, &["node", "ls", "-q", "--filter", "role=manager"]);
    swarm.docker_ok(1, &["node", "update", "--availability", "drain", &manager]);
    let image = context();
    put(image.path(), "www/cgi-bin/count", COUNT_CGI, true);
    let tag = format!("{}v", std::process::id());
    let nap = format!("Nap{tag}");
    let boom = format!("Boom{tag}");
    let mut toml = config(&swarm, &tag, &image).replace(
        "sleep_after = \"2s\"",
        // Long enough that the node of the woken key is read before it sleeps again, also
        // on a loaded machine (each look at the swarm is a few docker CLI calls).
        "sleep_after = \"6s\"\n            volume = \"/data\"",
    );
    // A class whose every start exits at once, after a line of output.
    toml.push_str(&format!(
        r#"
        [[containers]]
        class_name = "{boom}"
        image = "{dockerfile}"
        command = ["sh", "-c", "echo boom on stdout; exit 3"]
        ports = {{ http = 8080 }}
        stop_timeout = "1s"

        [[routes]]
        pattern = "/boom/*"
        container = "{boom}"
        instance = "name:one"
        strip_prefix = "/boom"
        "#,
        dockerfile = image.path().join("Dockerfile").display(),
    ));
    let valet = Valet::with_config(&toml).start().await;

    // The crash loop: restarted with valet's backoff, then 503; each end carries the task's
    // exit code and the container's output, read from its node's engine.
    let response = valet.get("/boom/x").await;
    assert_crash_loop_answer(response, &format!("{boom}/one"), &valet.log()).await;
    let failures = valet.failures();
    let ours: Vec<_> = failures
        .iter()
        .filter(|f| f.instance == format!("{boom}/one"))
        .collect();
    assert!(!ours.is_empty(), "{}", valet.log());
    for failure in &ours {
        assert!(failure.line.contains("exit code 3"), "{}", failure.line);
        assert!(failure.line.contains("boom on stdout"), "{}", failure.line);
    }
    eventually(
        Duration::from_secs(20),
        "no service left of the crashed key",
        || async { services(&swarm, &boom).is_empty().then_some(()) },
    )
    .await;

    assert_eq!(text(&valet, "/nap/cgi-bin/count").await.trim(), "1");
    let placed = services(&swarm, &nap);
    assert_eq!(placed.len(), 1, "{placed:?}");
    let node = placed[0].node;
    assert_eq!(volumes_on(&swarm, node, &nap).len(), 1, "on its node");
    assert!(volumes_on(&swarm, 5 - node, &nap).is_empty(), "only there");
    let record = swarm.docker_ok(1, &["config", "ls", "-q", "--filter", "label=valet.class"]);
    assert_eq!(
        record.lines().count(),
        1,
        "the volume's node is recorded: {record}"
    );

    // Asleep and woken (twice, so that the scheduler's spread would have moved it once):
    // the same node, the same data.
    for count in ["2", "3"] {
        eventually(
            Duration::from_secs(30),
            "the idle key's service to go",
            || async { services(&swarm, &nap).is_empty().then_some(()) },
        )
        .await;
        assert_eq!(text(&valet, "/nap/cgi-bin/count").await.trim(), count);
        let placed = services(&swarm, &nap);
        assert_eq!(placed.len(), 1, "{placed:?}");
        assert_eq!(placed[0].node, node, "kept on the node of its volume");
    }

    // valet is killed while the key runs and restarted with a changed class: a stale service
    // with a volume is not served beside its successor (both would use the volume). The
    // next valet removes it and waits for its container; the next request starts the key
    // anew, on its node, with its data.
    let stale = services(&swarm, &nap);
    assert_eq!(stale.len(), 1, "{stale:?}");
    valet.kill9().await;
    change_class(&valet, &nap, "CHANGED", "1");
    let (_second, second_log) = up_again(&valet, "second.log");
    let second_log = || std::fs::read_to_string(&second_log).unwrap_or_default();
    listening(&second_log, "the second valet").await;
    assert!(
        second_log().contains("removing it before its successor starts"),
        "{}",
        second_log()
    );
    assert!(services(&swarm, &nap).is_empty(), "{}", second_log());
    let running = swarm.docker_ok(
        node,
        &["ps", "-q", "--filter", &format!("label=valet.class={nap}")],
    );
    assert_eq!(running, "", "its container stopped before valet listened");
    assert_eq!(text(&valet, "/nap/cgi-bin/count").await.trim(), "4");
    let placed = services(&swarm, &nap);
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0].node, node, "kept on the node of its volume");
    assert_ne!(placed[0].service, stale[0].service);

    // `valet volumes` lists one engine's volumes: it points at `destroy` instead.
    let config = valet.dir().join("valet.toml");
    let ls = ["volumes", "ls", "--config", config.to_str().unwrap()];
    let out = Valet::run(&ls, Duration::from_secs(30));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("valet destroy CLASS KEY"), "{said}");

    // destroy stops the instance and removes its volume on its node, and the record.
    destroy(&valet, &nap);
    assert!(services(&swarm, &nap).is_empty(), "{}", valet.log());
    assert!(volumes_on(&swarm, node, &nap).is_empty(), "{}", valet.log());
    let record = swarm.docker_ok(1, &["config", "ls", "-q", "--filter", "label=valet.class"]);
    assert_eq!(record, "", "the record goes with the volume");
    // The next request starts afresh, on an empty volume.
    assert_eq!(text(&valet, "/nap/cgi-bin/count").await.trim(), "1");
    destroy(&valet, &nap);
    for i in 1..=3 {
        assert!(volumes_on(&swarm, i, &nap).is_empty(), "node {i}");
    }
    drop(valet);
}

/// The `valet.owner` label of a service: the replica that made it.
fn owner(swarm: &SwarmLab, service: &str) -> String {
    let format = "{{index .Spec.Labels \"valet.owner\"}}";
    swarm.docker_ok(1, &["service", "inspect", "--format", format, service])
}

/// GET `/web/cgi-bin/who` through replica i: the answering container, or why none did.
async fn who_via(replicas: &Replicas, i: usize) -> Result<String, String> {
    let response = replicas
        .client()
        .get(replicas.url(i, "/web/cgi-bin/who"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    match status.as_u16() {
        200 => Ok(body.trim().to_string()),
        _ => Err(format!("{status}: {body}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swarm_in_cluster_mode_runs_one_service_per_key_and_the_next_owner_replaces_a_dead_ones() {
    let Some(swarm) = SwarmLab::new(3) else {
        return;
    };
    let manager = swarm.docker_ok(1, &["node", "ls", "-q", "--filter", "role=manager"]);
    swarm.docker_ok(1, &["node", "update", "--availability", "drain", &manager]);
    let image = context();
    let tag = format!("{}c", std::process::id());
    let web = format!("Web{tag}");
    let Some((_pg, mut replicas)) = Replicas::with_config(&config(&swarm, &tag, &image))
        .replicas(2)
        .lease_ttl("2s")
        .start_on_loopback()
        .await
    else {
        return;
    };

    // A burst of first requests through both replicas: one service, cluster-wide.
    let burst = (0..8).map(|i| who_via(&replicas, 1 + i % 2));
    let answers = futures_util::future::join_all(burst).await;
    let first = answers[0]
        .clone()
        .unwrap_or_else(|e| panic!("{e}\n{}", replicas.logs()));
    for answer in &answers {
        assert_eq!(
            answer.as_ref(),
            Ok(&first),
            "one copy serves\n{}",
            replicas.logs()
        );
    }
    let placed = services(&swarm, &web);
    assert_eq!(placed.len(), 1, "{placed:?}\n{}", replicas.logs());
    let old = placed[0].service.clone();
    let made_by = owner(&swarm, &old);
    let dead: usize = made_by.strip_prefix("gw-").unwrap().parse().unwrap();
    let survivor = 3 - dead;

    // The owner dies without stopping anything; once its lease expires the other replica
    // takes the key: it removes the dead owner's service (same name, by ID) and makes its own.
    replicas.kill9(dead);
    let moved = Instant::now();
    let next = eventually(
        Duration::from_secs(60),
        "the survivor to serve the key",
        || async {
            match who_via(&replicas, survivor).await {
                Ok(host) if host != first => Some(host),
                _ => None,
            }
        },
    )
    .await;
    println!(
        "  owner gw-{dead} killed: gw-{survivor} served the key after {:.2?}",
        moved.elapsed()
    );
    let placed = services(&swarm, &web);
    assert_eq!(placed.len(), 1, "{placed:?}\n{}", replicas.logs());
    assert_ne!(placed[0].service, old, "a new service");
    assert_eq!(owner(&swarm, &placed[0].service), format!("gw-{survivor}"));
    assert_eq!(who_via(&replicas, survivor).await, Ok(next));

    // The survivor stops: it removes its service; nothing of the key is left.
    replicas.terminate(survivor);
    assert!(services(&swarm, &web).is_empty(), "{}", replicas.logs());
}
