//! The Kubernetes lab itself (`support::kube`, `scripts/lab/kube.sh`), the ground issue 18's
//! driver tests stand on: a kube-apiserver and kubelet built from Debian's source package run a
//! Pod named to the node, from an image on the node's engine (nothing is pulled), and it answers
//! at its Pod IP from this machine; deleted, its containers go. Without root or the lab's tools
//! this is skipped, and fails under `CI=true`.

use crate::support::docker::{busybox_context, put};
use crate::support::http::get_blocking as get;
use crate::support::kube::KubeLab;
use serde_json::json;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const PORT: u16 = 8080;
const BODY: &str = "kube-lab-ok";

#[test]
fn kube_lab_runs_a_pod_on_its_node_that_answers_at_its_pod_ip() {
    let started = Instant::now();
    let Some(kube) = KubeLab::new() else {
        return;
    };
    println!("kube lab up in {:.2?}", started.elapsed());

    // The apiserver is the real one, at the version the README names.
    let (status, version) = kube.get("/version");
    assert_eq!(status, 200, "{version}");
    assert_eq!(version["major"], "1", "{version}");
    assert_eq!(version["minor"], "20", "{version}");

    let context = busybox_context(&format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n\
         CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"{PORT}\", \"-h\", \"/www\"]\n"
    ));
    put(context.path(), "www/index.html", BODY, false);
    let image = format!("valet-test-kube-lab:{}", std::process::id());
    kube.docker_ok(&[
        "build",
        "-q",
        "-t",
        &image,
        &context.path().display().to_string(),
    ]);

    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lab-check", "labels": {"valet.test": "kube-lab"}},
        "spec": {
            "nodeName": kube.node(),
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web",
                "image": image,
                "imagePullPolicy": "Never",
                "ports": [{"name": "http", "containerPort": PORT}],
            }],
        },
    });
    let creating = Instant::now();
    let (status, body) = kube.call("POST", "/api/v1/namespaces/default/pods", Some(&pod));
    assert_eq!(status, 201, "{body}");
    let ip: IpAddr = kube.until(Duration::from_secs(60), "the Pod has an IP", || {
        let (_, pod) = kube.get("/api/v1/namespaces/default/pods/lab-check");
        pod["status"]["podIP"].as_str()?.parse().ok()
    });
    let answer = kube.until(Duration::from_secs(30), "the Pod answers", || get(ip, PORT));
    let answered = creating.elapsed();
    assert!(
        answer.contains(" 200 ") && answer.ends_with(BODY),
        "{answer}"
    );
    println!("Pod created to first answer at {ip}:{PORT}: {answered:.2?}");
    let (_, pod) = kube.get("/api/v1/namespaces/default/pods/lab-check");
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");

    // Deleted at once (no grace): the kubelet removes its containers.
    let deleting = Instant::now();
    let (status, body) = kube.call(
        "DELETE",
        "/api/v1/namespaces/default/pods/lab-check?gracePeriodSeconds=0",
        None,
    );
    assert_eq!(status, 200, "{body}");
    kube.until(Duration::from_secs(60), "the Pod's containers go", || {
        let running = kube.docker_ok(&[
            "ps",
            "-q",
            "--filter",
            "label=io.kubernetes.pod.name=lab-check",
        ]);
        running.is_empty().then_some(())
    });
    println!("Pod deleted, containers gone in {:.2?}", deleting.elapsed());
    assert!(get(ip, PORT).is_none(), "nothing answers any more");
}
