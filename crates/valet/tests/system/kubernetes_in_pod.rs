//! valet itself in a Pod of the lab's real kube-apiserver 1.20 and kubelet, as
//! `deploy/kubernetes` ships it: `rbac.yaml` and `valet.yaml` applied as they are, valet's
//! image built from the binary under test by `deploy/kubernetes/image.sh`, and valet on its ServiceAccount's in-cluster
//! credentials (no kubeconfig) making, serving and removing an instance's Pod.
//!
//! The lab has no controller-manager and no scheduler, no service proxy and no ServiceAccount
//! admission; the test stands in for each and says so where it does: it creates the
//! Deployment's Pod itself (named to the node), mints the ServiceAccount's token through the
//! TokenRequest API (what the kubelet does for a projected token) and mounts it where every
//! Pod finds it, names the apiserver's address as a service proxy would make
//! `KUBERNETES_SERVICE_HOST` reach it, and adds `node` to the ConfigMap's `[kubernetes]` (no
//! scheduler places instances). Without root or the lab's tools this is skipped, and fails
//! under `CI=true`.

use crate::kubernetes::{apply, left, MANIFESTS};
use crate::support::docker::put;
use crate::support::kube::KubeLab;
use crate::support::VALET;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "valet";
/// What the instance's image answers, so the test knows the answer came through its Pod.
const MARKER: &str = "served-by-an-instance-pod-of-in-cluster-valet";

/// The class image valet.yaml names (`nginxdemos/hello:plain-text`), made here on the node's
/// engine: busybox httpd on port 80, as the ConfigMap's class expects.
fn instance_image(kube: &KubeLab) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
    put(
        dir.path(),
        "www/k1/index.html",
        &format!("{MARKER}\n"),
        false,
    );
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /busybox\nCOPY www /www\n\
         ENTRYPOINT [\"/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    kube.docker_ok(&[
        "build",
        "-q",
        "-t",
        "nginxdemos/hello:plain-text",
        dir.path().to_str().unwrap(),
    ]);
}

/// `valet:latest` on the node's engine, made from the binary under test by the script
/// valet.yaml's readers use (`deploy/kubernetes/image.sh`).
fn valet_image(kube: &KubeLab) {
    let out = Command::new("timeout")
        .args([
            "300",
            "bash",
            &format!("{MANIFESTS}/image.sh"),
            VALET,
            "valet:latest",
        ])
        .env("DOCKER_HOST", kube.docker_host())
        .output()
        .expect("run image.sh");
    assert!(
        out.status.success(),
        "image.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// valet.yaml's documents with the one lab change: `node` in the ConfigMap's `[kubernetes]`.
fn valet_manifest(kube: &KubeLab) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{MANIFESTS}/valet.yaml")).unwrap();
    let namespace_line = "    namespace = \"valet\"\n";
    assert_eq!(text.matches(namespace_line).count(), 1, "{text}");
    let text = text.replace(
        namespace_line,
        &format!("{namespace_line}    node = {:?}\n", kube.node()),
    );
    text.split("\n---\n").map(str::to_string).collect()
}

fn curl(url: &str, within: Duration) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            &within.as_secs().to_string(),
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn pod_log(kube: &KubeLab, name: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-m", "30", "-H"])
        .arg(format!("Authorization: Bearer {}", admin_token(kube)))
        .arg(format!(
            "{}/api/v1/namespaces/{NAMESPACE}/pods/{name}/log",
            kube.server()
        ))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn admin_token(kube: &KubeLab) -> String {
    let text = std::fs::read_to_string(kube.kubeconfig()).unwrap();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("token:")
                .map(|t| t.trim().to_string())
        })
        .expect("a token in the lab's kubeconfig")
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_valet_runs_in_a_pod_on_its_service_account_and_serves_through_an_instance_pod()
{
    let Some(kube) = KubeLab::new() else {
        return;
    };
    apply(&kube, "rbac.yaml", false);
    for doc in valet_manifest(&kube) {
        let path = match doc.lines().find_map(|l| l.strip_prefix("kind: ")) {
            Some("ConfigMap") => format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
            Some("Deployment") => format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
            Some("Service") => format!("/api/v1/namespaces/{NAMESPACE}/services"),
            other => panic!("valet.yaml: a document of kind {other:?}"),
        };
        let (status, body) = kube.send("POST", &path, "application/yaml", &doc, None);
        assert_eq!(status, 201, "valet.yaml: {path}: {body}");
    }
    instance_image(&kube);
    valet_image(&kube);

    // Stand-in for ServiceAccount admission and the kubelet's projected token: a token of
    // valet's ServiceAccount with the CA and namespace, in the files every Pod reads.
    let (status, answer) = kube.call(
        "POST",
        &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts/valet/token"),
        Some(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}}),
        ),
    );
    assert_eq!(status, 201, "{answer}");
    let token = answer["status"]["token"].as_str().unwrap();
    let (api_host, api_port, api_ca) = kube.api_for_pods();
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "valet-sa-token"},
        "stringData": {"token": token, "namespace": NAMESPACE,
            "ca.crt": std::fs::read_to_string(api_ca).unwrap()}});
    let (status, body) = kube.call(
        "POST",
        &format!("/api/v1/namespaces/{NAMESPACE}/secrets"),
        Some(&secret),
    );
    assert_eq!(status, 201, "{body}");

    // Stand-in for the controllers and the scheduler: the Deployment's Pod, on the node.
    let (status, deployment) = kube.get(&format!(
        "/apis/apps/v1/namespaces/{NAMESPACE}/deployments/valet"
    ));
    assert_eq!(status, 200, "{deployment}");
    let template = &deployment["spec"]["template"];
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(kube.node());
    spec["volumes"]
        .as_array_mut()
        .expect("the template's volumes")
        .push(json!({"name": "sa-token", "secret": {"secretName": "valet-sa-token"}}));
    let container = &mut spec["containers"][0];
    assert_eq!(container["image"], "valet:latest");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    container["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sa-token",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}));
    container["env"] = json!([
        {"name": "KUBERNETES_SERVICE_HOST", "value": api_host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": api_port},
    ]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "valet-0", "labels": template["metadata"]["labels"]},
        "spec": spec});
    let (status, body) = kube.call(
        "POST",
        &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
        Some(&pod),
    );
    assert_eq!(status, 201, "{body}");

    // The kubelet's readiness probe (`/readyz` on the admin port) passes: valet is up,
    // connected with the in-cluster credentials.
    let started = Instant::now();
    let ip = kube.until(Duration::from_secs(120), "valet's Pod Ready", || {
        let (_, pod) = kube.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods/valet-0"));
        let ip = pod["status"]["podIP"].as_str().map(str::to_string);
        if pod["status"]["phase"] == "Failed" || pod["status"]["phase"] == "Succeeded" {
            panic!("valet's Pod ended: {pod}\n{}", pod_log(&kube, "valet-0"));
        }
        ip.filter(|_| ready(&pod))
    });
    let up = started.elapsed();
    let log = pod_log(&kube, "valet-0");
    assert!(
        log.contains("kubernetes driver connected")
            && log.contains("in-cluster ServiceAccount")
            && log.contains(&format!("https://{api_host}:{api_port}")),
        "valet in the Pod did not connect through KUBERNETES_SERVICE_HOST: {log}"
    );

    // A request to valet's Pod: valet makes the instance's Pod as its ServiceAccount and
    // answers from it.
    let started = Instant::now();
    let (status, body) = curl(
        &format!("http://{ip}:8787/hello/k1/index.html"),
        Duration::from_secs(120),
    );
    let cold = started.elapsed();
    assert_eq!(
        (status, body.trim()),
        (200, MARKER),
        "{}",
        pod_log(&kube, "valet-0")
    );
    let instances = left(&kube, "pods");
    assert_eq!(instances.len(), 1, "one instance Pod: {instances:?}");
    let (_, instance) = kube.get(&format!(
        "/api/v1/namespaces/{NAMESPACE}/pods/{}",
        instances[0]
    ));
    assert_eq!(
        instance["metadata"]["annotations"]["valet.io/class"],
        "Hello"
    );
    assert_eq!(instance["spec"]["automountServiceAccountToken"], false);
    let started = Instant::now();
    let (status, body) = curl(
        &format!("http://{ip}:8787/hello/k1/index.html"),
        Duration::from_secs(30),
    );
    let warm = started.elapsed();
    assert_eq!((status, body.trim()), (200, MARKER));
    assert!(
        !pod_log(&kube, "valet-0").contains("Forbidden"),
        "the shipped Role refused valet something: {}",
        pod_log(&kube, "valet-0")
    );

    // Deleting valet's Pod (SIGTERM, the Deployment's grace period): valet stops its
    // instance and removes its Pod before it exits. Its output to the end is followed.
    let follow = tempfile::NamedTempFile::new().unwrap();
    let mut follower = Command::new("curl")
        .args(["-sk", "-N", "-m", "120", "-H"])
        .arg(format!("Authorization: Bearer {}", admin_token(&kube)))
        .arg(format!(
            "{}/api/v1/namespaces/{NAMESPACE}/pods/valet-0/log?follow=true",
            kube.server()
        ))
        .stdout(follow.reopen().unwrap())
        .spawn()
        .expect("run curl");
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = kube.call(
        "DELETE",
        &format!("/api/v1/namespaces/{NAMESPACE}/pods/valet-0"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    kube.until(
        Duration::from_secs(90),
        "valet's Pod gone and no instance Pod left",
        || {
            let (status, _) = kube.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods/valet-0"));
            (status == 404 && left(&kube, "pods").is_empty() && left(&kube, "secrets").is_empty())
                .then_some(())
        },
    );
    let _ = follower.wait();
    let last = std::fs::read_to_string(follow.path()).unwrap();
    println!("--- valet's output at its stop ---\n{last}");
    println!(
        "  valet in a Pod: Ready {up:.2?} after create; first request {cold:.2?} (instance Pod cold start), warm {warm:.2?}"
    );
}
