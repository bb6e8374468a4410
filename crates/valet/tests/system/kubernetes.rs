//! `driver = "kubernetes"` against the lab's real kube-apiserver 1.20 and kubelet
//! (`support::kube`): the real `valet up` builds a FROM-scratch busybox class on the node's
//! engine (`image_engine`) and runs each key as a Pod named to the node, reached at its Pod
//! IP. One lab serves the whole story, in order: cold start (and a bare Pod's, for
//! comparison), a secret through a Kubernetes Secret, sleep and wake, a crash and its restart,
//! valet killed and the Pod adopted by the next valet, valet restarted with a changed class (the
//! stale Pod serves until its successor is ready), the apiserver restarted under valet (its Pod
//! watch resyncs: a Pod deleted right after is seen), a Pod whose claim nobody binds answered
//! with a 503 naming it, and cleanup. Cluster mode has a lab of its own: two replicas on a
//! PostgreSQL store make one Pod per key, and the next owner replaces a dead one's Pod. Times
//! are printed. Without root or the lab's tools this is skipped, and fails under `CI=true`.

use crate::support::cluster::Replicas;
use crate::support::docker::{busybox_context, put, text, BUSYBOX_WWW, WHO_CGI};
use crate::support::kube::KubeLab;
use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const NAMESPACE: &str = "valet";
const SECRET: &str = "s3cret-value-of-web";

/// Prints the instance's secret, which reaches it only through a Kubernetes Secret.
const TOKEN_CGI: &str = "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$WEB_TOKEN\"\n";

/// Writes a line to its stderr, which is httpd's: the container's output.
const SAY_CGI: &str =
    "#!/bin/sh\necho \"said-by-$(hostname)\" >&2\necho 'Content-Type: text/plain'\necho\necho ok\n";

/// Names the class config that answers (its `GREETING`) and the Pod (its hostname).
const GREET_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$GREETING $(hostname)\"\n";

fn context() -> TempDir {
    let dir = busybox_context(BUSYBOX_WWW);
    put(dir.path(), "www/index.html", "hello\n", false);
    put(dir.path(), "www/cgi-bin/who", WHO_CGI, true);
    put(dir.path(), "www/cgi-bin/greet", GREET_CGI, true);
    put(dir.path(), "www/cgi-bin/token", TOKEN_CGI, true);
    put(dir.path(), "www/cgi-bin/say", SAY_CGI, true);
    dir
}

/// `Web` (always up, with a secret), `Nap` (asleep after 2 s idle) and `Vol` (a volume: the
/// lab has no provisioner, so its claim stays Pending).
fn config(kube: &KubeLab, image: &TempDir) -> String {
    let dockerfile = image.path().join("Dockerfile");
    let class = |name: &str, extra: &str| {
        format!(
            r#"
            [[containers]]
            class_name = "{name}"
            image = "{dockerfile}"
            command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
            ports = {{ http = 8080 }}
            instance_type = "lite"
            # busybox httpd as PID 1 ignores SIGTERM: keep stops short.
            stop_timeout = "1s"
            readiness = {{ path = "/index.html", timeout = "60s" }}
            {extra}

            [[routes]]
            pattern = "/{lower}/*"
            container = "{name}"
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
        driver = "kubernetes"

        [kubernetes]
        kubeconfig = {kubeconfig:?}
        node = {node:?}
        image_engine = {engine:?}
        {web}
        {nap}
        {vol}
        "#,
        kubeconfig = kube.kubeconfig().display().to_string(),
        node = kube.node(),
        engine = kube.docker_host(),
        web = class(
            "Web",
            "secrets = [\"WEB_TOKEN\"]\n            env = { GREETING = \"hi\" }"
        ),
        nap = class("Nap", "sleep_after = \"2s\""),
        vol = class("Vol", "volume = \"/data\""),
    ) + &class("Gone", "")
        .replace(&dockerfile.display().to_string(), "valet-test-absent:1")
        .replace("stop_timeout", "pull = \"never\"\n            stop_timeout")
}

/// valet's Pods of one class (by its label), not being deleted: (name, uid, pod).
fn pods(kube: &KubeLab, class: &str) -> Vec<(String, String, Value)> {
    let (_, list) = kube.get(&format!(
        "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=valet.managed%3Dtrue"
    ));
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["annotations"]["valet.io/class"] == class)
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let uid = p["metadata"]["uid"].as_str().unwrap_or("").to_string();
            (name, uid, p)
        })
        .collect()
}

/// Names of valet's objects of a kind left in the namespace.
pub(crate) fn left(kube: &KubeLab, kind: &str) -> Vec<String> {
    let (_, list) = kube.get(&format!(
        "/api/v1/namespaces/{NAMESPACE}/{kind}?labelSelector=valet.managed%3Dtrue"
    ));
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn get_direct(ip: IpAddr, port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::new(ip, port);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.contains(" 200 ").then_some(response)
}

/// A bare Pod of the same image, created and polled by the test: create to first answer.
fn bare_pod(kube: &KubeLab, image: &str) -> Duration {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare"},
        "spec": {
            "nodeName": kube.node(),
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "web",
                "image": image,
                "imagePullPolicy": "Never",
                "args": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            }],
        },
    });
    let creating = Instant::now();
    let (status, body) = kube.call("POST", "/api/v1/namespaces/default/pods", Some(&pod));
    assert_eq!(status, 201, "{body}");
    kube.until(Duration::from_secs(60), "the bare Pod answers", || {
        let (_, pod) = kube.get("/api/v1/namespaces/default/pods/bare");
        let ip: IpAddr = pod["status"]["podIP"].as_str()?.parse().ok()?;
        get_direct(ip, 8080, "/index.html")
    });
    let took = creating.elapsed();
    kube.call(
        "DELETE",
        "/api/v1/namespaces/default/pods/bare?gracePeriodSeconds=0",
        None,
    );
    took
}

/// Waits (at most `within`) for a Pod other than `old` to answer `/web` through valet; its name.
async fn another_pod(valet: &Valet, old: &str, within: Duration) -> String {
    let what = format!("a Pod other than {old} to serve /web");
    eventually(within, &what, || async {
        let response = valet.get("/web/cgi-bin/who").await;
        let host = response.text().await.unwrap_or_default().trim().to_string();
        (host.starts_with("valet-") && host != old).then_some(host)
    })
    .await
}

/// `valet up` again on `valet`'s folder, its output to `log` there.
fn up_again(valet: &Valet, log: &str) -> (Child, std::path::PathBuf) {
    valet.up_again(log, &[("WEB_TOKEN", SECRET)])
}

/// A `valet up` started by hand on an existing folder (the second valet, adopting); killed
/// if the test ends without stopping it.
pub(crate) struct Second(pub(crate) Option<Child>);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_pods_start_sleep_crash_are_adopted_say_why_they_wait_and_leave_nothing() {
    let Some(kube) = KubeLab::new() else {
        return;
    };
    let image = context();
    let valet = Valet::with_config(&config(&kube, &image))
        .env("WEB_TOKEN", SECRET)
        .start()
        .await;

    // Cold start: the image is built on the node's engine, the Pod created and run there.
    let cold = Instant::now();
    assert_eq!(text(&valet, "/web/index.html").await, "hello\n");
    let cold = cold.elapsed();
    let web = pods(&kube, "Web");
    assert_eq!(web.len(), 1, "one Pod per key: {web:?}");
    let (first, first_uid, pod) = web[0].clone();
    assert_eq!(
        text(&valet, "/web/cgi-bin/who").await.trim(),
        first,
        "its hostname"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never", "{pod}");
    assert_eq!(spec["nodeName"], kube.node(), "{pod}");
    assert_eq!(spec["terminationGracePeriodSeconds"], 1, "{pod}");
    assert_eq!(spec["automountServiceAccountToken"], false, "{pod}");
    let container = &spec["containers"][0];
    assert_eq!(container["imagePullPolicy"], "Never", "{pod}");
    assert_eq!(container["ports"][0]["name"], "http", "{pod}");
    assert_eq!(container["resources"]["limits"]["cpu"], "62m", "{pod}");
    assert_eq!(
        container["resources"]["limits"]["memory"], "268435456",
        "{pod}"
    );
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["valet.managed"], "true", "{pod}");
    assert!(labels["valet.config-hash"].is_string(), "{pod}");
    assert_eq!(
        pod["metadata"]["annotations"]["valet.io/key"], "one",
        "{pod}"
    );
    // The secret: in a Secret the Pod refers to, never in the Pod's body.
    assert!(!pod.to_string().contains(SECRET), "{pod}");
    let env = container["env"].as_array().unwrap();
    let token = env.iter().find(|e| e["name"] == "WEB_TOKEN").unwrap();
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], first.as_str());
    assert_eq!(text(&valet, "/web/cgi-bin/token").await.trim(), SECRET);
    assert_eq!(left(&kube, "secrets"), vec![first.clone()]);
    // Its output reaches `valet logs` through the apiserver's log stream.
    assert_eq!(text(&valet, "/web/cgi-bin/say").await.trim(), "ok");
    let config = valet.dir().join("valet.toml");
    let config = config.to_str().unwrap().to_string();
    let said = format!("said-by-{first}");
    eventually(
        Duration::from_secs(10),
        "the Pod's output in valet logs",
        || async {
            let out = Valet::run(
                &["logs", "Web", "one", "--config", &config],
                Duration::from_secs(30),
            );
            String::from_utf8_lossy(&out.stdout)
                .contains(&said)
                .then_some(())
        },
    )
    .await;

    // For comparison: a bare Pod of the image valet built, created and polled directly.
    let image_ref = container["image"].as_str().unwrap().to_string();
    let bare = bare_pod(&kube, &image_ref);

    // A second class, image in place: Pod create to first byte through valet.
    let nap_cold = Instant::now();
    assert_eq!(text(&valet, "/nap/index.html").await, "hello\n");
    let nap_cold = nap_cold.elapsed();

    // Sleep and wake: the idle key's Pod is deleted, the next request creates another.
    let napping = pods(&kube, "Nap");
    assert_eq!(napping.len(), 1, "{napping:?}");
    eventually(
        Duration::from_secs(30),
        "the idle key's Pod to go",
        || async { pods(&kube, "Nap").is_empty().then_some(()) },
    )
    .await;
    let wake = Instant::now();
    assert_eq!(text(&valet, "/nap/index.html").await, "hello\n");
    let wake = wake.elapsed();
    let woken = pods(&kube, "Nap");
    assert_eq!(woken.len(), 1, "{woken:?}");
    assert_ne!(woken[0].0, napping[0].0, "a new Pod");

    // A crash: the container is killed on the node; valet starts a new Pod for the key.
    let filter = format!("label=io.kubernetes.pod.name={first}");
    let ids = kube.docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "label=io.kubernetes.container.name=instance",
    ]);
    assert_eq!(ids.lines().count(), 1, "{ids}");
    kube.docker_ok(&["kill", ids.trim()]);
    let after_crash = another_pod(&valet, &first, Duration::from_secs(60)).await;
    assert!(valet.log().contains("instance failed"), "{}", valet.log());
    let web = eventually(
        Duration::from_secs(30),
        "one live Pod for the key",
        || async {
            let web = pods(&kube, "Web");
            (web.len() == 1).then_some(web)
        },
    )
    .await;
    assert_eq!(web[0].0, after_crash);
    let served_uid = web[0].1.clone();
    assert_ne!(served_uid, first_uid);

    // valet is killed: the Pod runs on; the next valet on the folder adopts it.
    valet.kill9().await;
    let (second, second_log) = up_again(&valet, "second.log");
    let mut second = Second(Some(second));
    let second_log = || std::fs::read_to_string(&second_log).unwrap_or_default();
    eventually(
        Duration::from_secs(60),
        "the second valet to listen",
        || async { second_log().contains("valet listening").then_some(()) },
    )
    .await;
    let adopted = Instant::now();
    assert_eq!(
        text(&valet, "/web/cgi-bin/who").await.trim(),
        after_crash,
        "{}",
        second_log()
    );
    let adopted_answer = adopted.elapsed();
    let web = pods(&kube, "Web");
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(
        web[0].1,
        served_uid,
        "the same Pod serves: {}",
        second_log()
    );
    assert!(
        second_log().contains("adopted running pod"),
        "{}",
        second_log()
    );

    // The class changes while valet is down: the next valet adopts the Pod as stale, it serves
    // until its successor (another Pod) is ready, then goes.
    let pid = second.0.as_ref().unwrap().id();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    drop(second.0.take().map(|mut c| c.wait()));
    let toml = valet.dir().join("valet.toml");
    let changed = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("GREETING = \"hi\"", "GREETING = \"hello\"");
    std::fs::write(&toml, changed).unwrap();
    let (third, third_log) = up_again(&valet, "third.log");
    let mut second = Second(Some(third));
    let second_log = || std::fs::read_to_string(&third_log).unwrap_or_default();
    eventually(
        Duration::from_secs(60),
        "the third valet to listen",
        || async { second_log().contains("valet listening").then_some(()) },
    )
    .await;
    assert!(second_log().contains("stale=true"), "{}", second_log());
    // Every request is answered: first by the stale Pod (the old GREETING), then, from the
    // successor's first answer on, by the successor alone; then the stale Pod goes.
    let answers = std::sync::Mutex::new(Vec::new());
    let switching = Instant::now();
    let old = format!("hi {after_crash}");
    let replaced = eventually(
        Duration::from_secs(60),
        "the successor Pod alone",
        || async {
            let response = valet.get("/web/cgi-bin/greet").await;
            let status = response.status();
            let text = response.text().await.unwrap_or_default().trim().to_string();
            assert_eq!(status, 200, "served throughout: {text}\n{}", second_log());
            answers.lock().unwrap().push(text.clone());
            let host = text.strip_prefix("hello ")?.to_string();
            let web = pods(&kube, "Web");
            (web.len() == 1 && web[0].0 == host).then_some(host)
        },
    )
    .await;
    let switched = switching.elapsed();
    let answers = answers.into_inner().unwrap();
    assert_eq!(
        answers[0], old,
        "the stale Pod serves until its successor is ready"
    );
    let first_new = answers.iter().position(|a| *a != old).unwrap();
    assert!(
        answers[first_new..]
            .iter()
            .all(|a| *a == format!("hello {replaced}")),
        "one serving copy: {answers:?}"
    );
    assert_ne!(replaced, after_crash);
    // Logged once the stale Pod's delete was sent, a moment after the watch shows it going.
    eventually(
        Duration::from_secs(10),
        "the replacement's end in the log",
        || async { second_log().contains("instance replaced").then_some(()) },
    )
    .await;

    // The apiserver restarts under valet (every watch on it cut), and right after it is back
    // the serving Pod is deleted by someone else: valet's Pod watch, listed again or resumed,
    // still sees it go, and the key starts anew in another Pod.
    let away = kube.restart_apiserver();
    // The Pod's log stream was cut too: it is followed again, and its new output still
    // reaches `valet logs`.
    assert_eq!(text(&valet, "/web/cgi-bin/say").await.trim(), "ok");
    let said = format!("said-by-{replaced}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Valet::run(
            &["logs", "Web", "one", "--config", &config],
            Duration::from_secs(30),
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        if shown.contains(&said) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Pod's output after the restart is not in valet logs within 20 s:\n{shown}\n{}",
            second_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its follower said once that the stream was cut, not once per try while it was away.
    let told = second_log()
        .lines()
        .filter(|l| l.contains("pod log stream ended") && l.contains(&replaced))
        .count();
    assert!(told <= 1, "{told} lines for one outage:\n{}", second_log());
    let (_, pod) = kube.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods/{replaced}"));
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, body) = kube.call(
        "DELETE",
        &format!("/api/v1/namespaces/{NAMESPACE}/pods/{replaced}?gracePeriodSeconds=0"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let deleted = Instant::now();
    let resynced = another_pod(&valet, &replaced, Duration::from_secs(90)).await;
    let resync = deleted.elapsed();
    assert!(
        second_log().contains("kubernetes pod watch failed"),
        "the watch was cut: {}",
        second_log()
    );
    let web = pods(&kube, "Web");
    assert!(
        web.iter().all(|(_, u, _)| *u != uid) && web.iter().any(|(n, _, _)| *n == resynced),
        "{web:?}\n{}",
        second_log()
    );

    // An image the node lacks, with pull = "never": a 503 naming the kubelet's reason.
    let response = valet.get("/gone/index.html").await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 503, "{body}\n{}", second_log());
    assert!(body.contains("ErrImageNeverPull"), "{body}");

    // A key whose claim nobody binds: its waiting request gets a 503 naming the cause.
    let pending = Instant::now();
    let response = valet.get("/vol/index.html").await;
    let pending = pending.elapsed();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 503, "{body}\n{}", second_log());
    assert!(body.contains("PersistentVolumeClaim"), "{body}");
    assert!(
        pending < Duration::from_secs(30),
        "never a hang: {pending:?}"
    );
    assert_eq!(left(&kube, "persistentvolumeclaims").len(), 1);
    // destroy deletes the key's claim.
    let config = valet.dir().join("valet.toml");
    let out = Valet::run(
        &[
            "destroy",
            "Vol",
            "one",
            "--config",
            config.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // valet stops: every Pod of valet's is deleted, and its Secret; no claim is left.
    let pid = second.0.as_ref().unwrap().id();
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let mut child = second.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}: {}", second_log());
    // Objects being deleted count as gone: a claim keeps its protection finalizer until a
    // controller-manager (none in the lab) sees no Pod uses it.
    let live = |kind: &str| -> Vec<String> {
        left(&kube, kind)
            .into_iter()
            .filter(|name| {
                let (status, object) =
                    kube.get(&format!("/api/v1/namespaces/{NAMESPACE}/{kind}/{name}"));
                status == 200 && object["metadata"]["deletionTimestamp"].is_null()
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut remaining;
    loop {
        remaining = ["pods", "secrets", "persistentvolumeclaims"].map(|kind| (kind, live(kind)));
        if remaining.iter().all(|(_, names)| names.is_empty()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        remaining.iter().all(|(_, names)| names.is_empty()),
        "valet's objects left: {remaining:?}\n{}",
        second_log()
    );
    eventually(
        Duration::from_secs(60),
        "no container of valet's running on the node",
        || async {
            let running = kube.docker_ok(&[
                "ps",
                "-q",
                "--filter",
                "label=io.kubernetes.container.name=instance",
            ]);
            running.is_empty().then_some(())
        },
    )
    .await;

    println!(
        "kubernetes driver (lab: kube-apiserver 1.20, one kubelet on dockerd), through valet:"
    );
    println!("  cold start (build on the node's engine, Pod create, first byte): {cold:.2?}");
    println!("  cold start of a second class (its tag built from cached layers, Pod, first byte): {nap_cold:.2?}");
    println!("  bare Pod of the same image, create to first answer (polled): {bare:.2?}");
    println!("  wake 0 -> 1 (Pod create to first byte): {wake:.2?}");
    println!("  adopted Pod's first answer through the second valet: {adopted_answer:.2?}");
    println!("  a Pod whose claim nobody binds: 503 after {pending:.2?}");
    println!(
        "  a changed class: {} answers from the stale Pod, the successor's from {switched:.2?} on",
        first_new
    );
    println!("  apiserver restarted ({away:.2?} away), then the serving Pod deleted: a new Pod answered after {resync:.2?}");
    drop(valet);
    drop(image);
}

pub(crate) const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes");

/// The apiserver path a manifest document is created at, from its `kind:` and `namespace:`.
fn collection(doc: &str) -> String {
    let field = |key: &str| {
        doc.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let (kind, namespace) = (field("kind:"), field("namespace:"));
    let core = format!("/api/v1/namespaces/{namespace}");
    let rbac = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}");
    match kind.as_str() {
        "Namespace" => "/api/v1/namespaces".into(),
        "ServiceAccount" => format!("{core}/serviceaccounts"),
        "ConfigMap" => format!("{core}/configmaps"),
        "Service" => format!("{core}/services"),
        "Role" => format!("{rbac}/roles"),
        "RoleBinding" => format!("{rbac}/rolebindings"),
        "Deployment" => format!("/apis/apps/v1/namespaces/{namespace}/deployments"),
        other => panic!("a manifest of an unexpected kind {other:?}:\n{doc}"),
    }
}

/// Creates every document of a manifest file as YAML (`dry_run`: validated, not stored).
pub(crate) fn apply(kube: &KubeLab, file: &str, dry_run: bool) {
    let text = std::fs::read_to_string(format!("{MANIFESTS}/{file}")).unwrap();
    for doc in text.split("\n---\n") {
        let path = collection(doc);
        let path = if dry_run {
            format!("{path}?dryRun=All")
        } else {
            path
        };
        let (status, body) = kube.send("POST", &path, "application/yaml", doc, None);
        assert_eq!(status, 201, "{file}: {path}: {body}");
    }
}

/// The config valet.yaml's ConfigMap holds.
fn configmap_toml() -> String {
    let text = std::fs::read_to_string(format!("{MANIFESTS}/valet.yaml")).unwrap();
    let start = text
        .find("valet.toml: |")
        .expect("a valet.toml in valet.yaml");
    text[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("---"))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_the_shipped_role_is_all_valet_needs_and_the_manifests_are_accepted() {
    // The ConfigMap's valet.toml is a valid config.
    let dir = tempfile::tempdir().unwrap();
    let shipped = dir.path().join("valet.toml");
    std::fs::write(&shipped, configmap_toml()).unwrap();
    let out = Valet::run(
        &["check", shipped.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let Some(kube) = KubeLab::new() else {
        return;
    };
    apply(&kube, "rbac.yaml", false);
    apply(&kube, "valet.yaml", true);

    // valet's ServiceAccount token, and a kubeconfig with nothing else.
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}});
    let (status, answer) = kube.call(
        "POST",
        "/api/v1/namespaces/valet/serviceaccounts/valet/token",
        Some(&request),
    );
    assert_eq!(status, 201, "{answer}");
    let token = answer["status"]["token"].as_str().unwrap().to_string();
    let (status, _) = kube.send(
        "GET",
        "/api/v1/namespaces",
        "application/json",
        "",
        Some(&token),
    );
    assert_eq!(status, 403, "the token is not the admin's");
    let kubeconfig = dir.path().join("valet-sa.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {}\n    \
             insecure-skip-tls-verify: true\nusers:\n- name: valet\n  user:\n    token: {token}\n\
             contexts:\n- name: lab\n  context: {{cluster: lab, user: valet, namespace: valet}}\n\
             current-context: lab\n",
            kube.server()
        ),
    )
    .unwrap();

    // Everything the driver does, as valet's ServiceAccount: Pods with a Secret and the
    // egress policy, their logs, a claim (Pending here) and its destroy, cleanup at stop.
    let image = context();
    let text_config = config(&kube, &image)
        .replace(
            &format!("kubeconfig = {:?}", kube.kubeconfig().display().to_string()),
            &format!("kubeconfig = {:?}", kubeconfig.display().to_string()),
        )
        .replace(
            "env = { GREETING = \"hi\" }",
            "env = { GREETING = \"hi\" }\n            enable_internet = false",
        );
    assert!(
        text_config.contains("valet-sa.kubeconfig")
            && text_config.contains("enable_internet = false")
    );
    let mut valet = Valet::with_config(&text_config)
        .env("WEB_TOKEN", SECRET)
        .start()
        .await;
    assert_eq!(text(&valet, "/web/cgi-bin/token").await.trim(), SECRET);
    let web = pods(&kube, "Web");
    assert_eq!(web.len(), 1, "{web:?}");
    let said = format!("said-by-{}", web[0].0);
    assert_eq!(text(&valet, "/web/cgi-bin/say").await.trim(), "ok");
    let config = valet.dir().join("valet.toml");
    let config = config.to_str().unwrap().to_string();
    eventually(
        Duration::from_secs(10),
        "the Pod's output in valet logs",
        || async {
            let out = Valet::run(
                &["logs", "Web", "one", "--config", &config],
                Duration::from_secs(30),
            );
            String::from_utf8_lossy(&out.stdout)
                .contains(&said)
                .then_some(())
        },
    )
    .await;
    let (status, policies) =
        kube.get("/apis/networking.k8s.io/v1/namespaces/valet/networkpolicies");
    assert_eq!(status, 200);
    assert_eq!(
        policies["items"].as_array().map(Vec::len),
        Some(1),
        "{policies}"
    );
    let response = valet.get("/vol/index.html").await;
    assert_eq!(response.status(), 503);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("PersistentVolumeClaim"));
    let out = Valet::run(
        &["destroy", "Vol", "one", "--config", &config],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = valet.terminate();
    assert!(status.success(), "{status}: {}", valet.log());
    for kind in ["pods", "secrets", "persistentvolumeclaims"] {
        let live: Vec<String> = left(&kube, kind)
            .into_iter()
            .filter(|name| {
                let (status, object) =
                    kube.get(&format!("/api/v1/namespaces/{NAMESPACE}/{kind}/{name}"));
                status == 200 && object["metadata"]["deletionTimestamp"].is_null()
            })
            .collect();
        assert!(live.is_empty(), "{kind} left: {live:?}\n{}", valet.log());
    }
    assert!(!valet.log().contains("Forbidden"), "{}", valet.log());
}

/// GET `/web/cgi-bin/who` through replica i: the answering Pod's hostname, or why none did.
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

/// The names of a class's Pods that serve: not being deleted, their container running.
fn serving(kube: &KubeLab, class: &str) -> Vec<String> {
    pods(kube, class)
        .into_iter()
        .filter(|(_, _, pod)| {
            pod["status"]["phase"] == "Running"
                && !pod["status"]["containerStatuses"][0]["state"]["running"].is_null()
        })
        .map(|(name, _, _)| name)
        .collect()
}

/// Every Pod of a class's, also those being deleted: (name, owner label).
fn all_pods(kube: &KubeLab, class: &str) -> Vec<(String, String)> {
    let (_, list) = kube.get(&format!(
        "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=valet.managed%3Dtrue"
    ));
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["annotations"]["valet.io/class"] == class)
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let owner = p["metadata"]["labels"]["valet.owner"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (name, owner)
        })
        .collect()
}

/// Names of valet's objects of a kind that are not being deleted (a claim keeps its
/// protection finalizer until a controller-manager, none in the lab, sees no Pod uses it).
fn live(kube: &KubeLab, kind: &str) -> Vec<String> {
    left(kube, kind)
        .into_iter()
        .filter(|name| {
            let (status, object) =
                kube.get(&format!("/api/v1/namespaces/{NAMESPACE}/{kind}/{name}"));
            status == 200 && object["metadata"]["deletionTimestamp"].is_null()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_in_cluster_mode_runs_one_pod_per_key_and_the_next_owner_replaces_a_dead_ones() {
    let Some(kube) = KubeLab::new() else {
        return;
    };
    let image = context();
    let Some((_pg, mut replicas)) = Replicas::with_config(&config(&kube, &image))
        .replicas(2)
        .lease_ttl("2s")
        .env("WEB_TOKEN", SECRET)
        .start_on_loopback()
        .await
    else {
        return;
    };

    // A burst of first requests through both replicas: one Pod, cluster-wide, and no other
    // was made and deleted on the way.
    let burst = (0..8).map(|i| who_via(&replicas, 1 + i % 2));
    let answers = futures_util::future::join_all(burst).await;
    let first = answers[0]
        .clone()
        .unwrap_or_else(|e| panic!("{e}\n{}", replicas.logs()));
    for answer in &answers {
        assert_eq!(
            answer.as_ref(),
            Ok(&first),
            "one Pod serves\n{}",
            replicas.logs()
        );
    }
    let made = all_pods(&kube, "Web");
    assert_eq!(made.len(), 1, "{made:?}\n{}", replicas.logs());
    let (name, made_by) = made[0].clone();
    assert_eq!(name, first);
    let dead: usize = made_by
        .strip_prefix("gw-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("owner label {made_by:?}"));
    let survivor = 3 - dead;
    assert_eq!(live(&kube, "secrets"), vec![first.clone()], "its Secret");

    // The owner dies without stopping anything; once its lease expires the other replica
    // takes the key: the dead owner's Pod (and its Secret) go, another Pod serves, and at no
    // moment do two Pods of the key serve.
    replicas.kill9(dead);
    let moved = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let most = std::sync::Mutex::new(Vec::<String>::new());
    let sample = async {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let now = tokio::task::block_in_place(|| serving(&kube, "Web"));
            {
                let mut most = most.lock().unwrap();
                if now.len() > most.len() {
                    *most = now;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let takeover = async {
        let next = eventually(
            Duration::from_secs(60),
            "the survivor to serve the key from another Pod",
            || async {
                match who_via(&replicas, survivor).await {
                    Ok(host) if host != first => Some(host),
                    _ => None,
                }
            },
        )
        .await;
        let took = moved.elapsed();
        // A while longer: a dead owner's Pod left running would show here.
        tokio::time::sleep(Duration::from_secs(2)).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (next, took)
    };
    let ((), (next, took)) = tokio::join!(sample, takeover);
    let most = most.into_inner().unwrap();
    assert!(
        most.len() <= 1,
        "two Pods of one key served at once: {most:?}\n{}",
        replicas.logs()
    );
    println!(
        "  owner gw-{dead} killed: gw-{survivor} served the key from a new Pod after {took:.2?}"
    );
    let web = pods(&kube, "Web");
    assert_eq!(web.len(), 1, "{web:?}\n{}", replicas.logs());
    assert_eq!(web[0].0, next);
    assert_eq!(
        web[0].2["metadata"]["labels"]["valet.owner"],
        format!("gw-{survivor}").as_str()
    );
    assert_eq!(
        live(&kube, "secrets"),
        vec![next.clone()],
        "the dead owner's Secret went with its Pod\n{}",
        replicas.logs()
    );
    assert!(
        replicas
            .log(survivor)
            .contains("deleting a pod of the key that this replica does not hold"),
        "{}",
        replicas.logs()
    );
    let uid = web[0].1.clone();

    // The dead replica comes back: it adopts nothing of the key (its Pod is gone) and serves
    // it through the owner, from the same Pod.
    replicas.restart(dead).await;
    assert_eq!(who_via(&replicas, dead).await, Ok(next.clone()));
    let web = pods(&kube, "Web");
    assert_eq!(web.len(), 1, "{web:?}\n{}", replicas.logs());
    assert_eq!(web[0].1, uid, "the same Pod serves");

    // Both stop: nothing of valet's is left in the namespace or on the node.
    for i in [dead, survivor] {
        let status = replicas.terminate(i);
        assert!(
            status.success(),
            "replica {i}: {status}\n{}",
            replicas.logs()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut remaining;
    loop {
        remaining =
            ["pods", "secrets", "persistentvolumeclaims"].map(|kind| (kind, live(&kube, kind)));
        if remaining.iter().all(|(_, names)| names.is_empty()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        remaining.iter().all(|(_, names)| names.is_empty()),
        "valet's objects left: {remaining:?}\n{}",
        replicas.logs()
    );
    eventually(
        Duration::from_secs(60),
        "no container of valet's running on the node",
        || async {
            let running = kube.docker_ok(&[
                "ps",
                "-q",
                "--filter",
                "label=io.kubernetes.container.name=instance",
            ]);
            running.is_empty().then_some(())
        },
    )
    .await;
    drop(replicas);
    drop(image);
}
