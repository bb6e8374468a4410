//! Deploying onto the Kubernetes driver, against the real binary, the lab's kube-apiserver and
//! kubelet (`support::kube`) and Debian's `docker-registry` on a loopback port:
//!
//! - with `image_registry` (one that needs a login), a version's image is built on the host's
//!   engine, pushed to the registry with `[[registries]]`'s login, and pulled from there by the
//!   kubelet's own dockerd for the project's Pod (labelled with its project, through the pull
//!   Secret valet made from that login), which answers through valet's URL; valet killed and
//!   started again keeps that Secret; a delete leaves no Pod and no image
//!   on the build engine; a class whose image is only in that registry is pulled by the
//!   kubelet with the same login, through a pull Secret valet made for that registry;
//! - with `image_engine` alone (the node's engine), the version is built there and its Pod
//!   runs it with `imagePullPolicy: Never`; a project secret reaches it through a Secret,
//!   never in the Pod's body; a delete removes the image from that engine;
//! - with neither, a deploy is refused at once with what to set.
//!
//! The deploy base image is the Docker deploy tests' own (the host's Python, FROM scratch).
//! Without root, the lab's tools, dockerd or docker-registry this is skipped, and fails under
//! `CI=true`.

use crate::deploy_docker::{base_images, lines, put_secret, PYTHON_BASE};
use crate::deploy_support::*;
use crate::kubernetes::Second;
use crate::registry::{push_image, ready as registry_ready, Registry, PASSWORD, USER};
use crate::support::docker::docker;
use crate::support::kube::KubeLab;
use serde_json::Value;
use std::time::Duration;

/// A Pod deleted in the lab (no controller-manager) is gone once the kubelet confirmed it.
const GONE_WITHIN: Duration = Duration::from_secs(120);

/// `[server]` keys for the lab, valet's objects in `namespace`, and more `[kubernetes]` keys.
fn config(kube: &KubeLab, namespace: &str, extra: &str) -> String {
    format!(
        "driver = \"kubernetes\"\n\n[kubernetes]\nkubeconfig = {kubeconfig:?}\n\
         namespace = {namespace:?}\nnode = {node:?}\n{extra}\n\n\
         [deploy]\npython_image = \"{PYTHON_BASE}\"\n",
        kubeconfig = kube.kubeconfig().display().to_string(),
        node = kube.node(),
    )
}

/// valet's objects of a kind (`pods`, `secrets`) in `namespace`, as the apiserver lists them.
fn listed(kube: &KubeLab, namespace: &str, kind: &str) -> Vec<Value> {
    let (_, list) = kube.get(&format!(
        "/api/v1/namespaces/{namespace}/{kind}?labelSelector=valet.managed%3Dtrue"
    ));
    list["items"].as_array().cloned().unwrap_or_default()
}

/// valet's Pods in `namespace` (every one is the project's here): (name, image, pull policy).
fn pods(kube: &KubeLab, namespace: &str) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (listed(kube, namespace, "pods").iter())
        .map(|pod| {
            let container = &pod["spec"]["containers"][0];
            (
                text(&pod["metadata"]["name"]),
                text(&container["image"]),
                text(&container["imagePullPolicy"]),
            )
        })
        .collect()
}

async fn delete(valet: &crate::support::Valet, api: &Api, id: &str, url: &str) {
    let (status, gone) = api
        .call("DELETE", &format!("/v1/projects/{id}"), None)
        .await;
    assert_eq!(status, 200, "{gone}\n{}", valet.log());
    let (status, _) = get_app(valet, url).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_kubernetes_versions_reach_the_kubelet_through_a_registry_or_its_own_engine() {
    if !registry_ready() {
        return;
    }
    let Some(kube) = KubeLab::new() else {
        return;
    };
    base_images();
    // Pushing and pulling both need the login: the kubelet's engine has none of its own.
    let registry = Registry::start(true);

    // Neither a registry nor the node's engine: refused before anything is built.
    let (bare, bare_api) = valet_with(&config(&kube, "deploy-bare", "")).await;
    refused_deploy(&bare, &bare_api, "image_registry").await;
    drop(bare);

    // Through the registry: built on the host's engine, pushed with [[registries]]'s login,
    // pulled by the kubelet's dockerd with the same login from the pull Secret.
    let namespace = "deploy-registry";
    let prefix = format!("{}/valet", registry.host);
    let extra = format!("image_registry = {prefix:?}");
    let login = format!(
        "\n[[registries]]\nhost = {host:?}\nusername = {USER:?}\npassword_secret = \"REG_PW\"\n",
        host = registry.host
    );
    // A class whose image is only in that registry: the kubelet pulls it with the same
    // login, from a pull Secret valet made for the registry.
    let private = format!("{}/valet/kube-class:{}", registry.host, std::process::id());
    let docker_config = tempfile::tempdir().unwrap();
    push_image(
        std::slice::from_ref(&private),
        "private-class\n",
        Some((docker_config.path(), &registry.host)),
    );
    let class = format!(
        r#"
[[containers]]
class_name = "Private"
image = "{private}"
command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
ports = {{ http = 8080 }}
stop_timeout = "1s"
readiness = {{ path = "/index.html", timeout = "60s" }}

[[routes]]
pattern = "/private/*"
container = "Private"
instance = "name:one"
strip_prefix = "/private"
"#
    );
    let toml = config(&kube, namespace, &extra) + &login + &class;
    let (valet, api) = valet_with_env(&toml, &[("REG_PW", PASSWORD)]).await;
    let (id, url, pushed) = first_version(&valet, &api).await;
    let running = pods(&kube, namespace);
    assert_eq!(running.len(), 1, "one Pod per project: {running:?}");
    let (_, image, policy) = &running[0];
    assert!(image.starts_with(&format!("{prefix}/")), "{image}");
    assert_eq!(policy, "IfNotPresent");
    let pulled = kube.docker_ok(&["images", "-q", image]);
    assert!(!pulled.is_empty(), "the kubelet's engine pulled {image}");
    let pod = &listed(&kube, namespace, "pods")[0];
    let pull_secret = pod["spec"]["imagePullSecrets"][0]["name"]
        .as_str()
        .unwrap_or("");
    let secrets = listed(&kube, namespace, "secrets");
    let kept = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == pull_secret)
        .unwrap_or_else(|| panic!("the Pod's pull Secret {pull_secret:?} in {secrets:?}"));
    assert_eq!(kept["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        pod["metadata"]["labels"]["valet.project"],
        id.as_str(),
        "the Pod names its project"
    );

    // valet is killed and started again: its recovery keeps the pull Secret, which belongs to
    // no Pod (the same object, not one made again at the next lookup), and the version serves
    // (from a new Pod: recovery runs before deployed projects are registered).
    let pull_uid = kept["metadata"]["uid"].as_str().unwrap().to_string();
    valet.kill9().await;
    let (second, second_log) = valet.up_again("second.log", &[("REG_PW", PASSWORD)]);
    let second = Second(Some(second));
    let second_log = || std::fs::read_to_string(&second_log).unwrap_or_default();
    kube.until(
        Duration::from_secs(60),
        "the second valet to listen",
        || second_log().contains("valet listening").then_some(()),
    );
    let (status, answer) = get_app(&valet, &format!("{url}hi")).await;
    assert_eq!(status, 200, "{answer}\n{}", second_log());
    let secrets = listed(&kube, namespace, "secrets");
    let kept = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == pull_secret)
        .unwrap_or_else(|| panic!("{pull_secret} in {secrets:?}\n{}", second_log()));
    assert_eq!(
        kept["metadata"]["uid"].as_str(),
        Some(pull_uid.as_str()),
        "the pull Secret was deleted and made again\n{}",
        second_log()
    );
    delete(&valet, &api, &id, &url).await;
    kube.until(GONE_WITHIN, "the project's Pod deleted", || {
        pods(&kube, namespace).is_empty().then_some(())
    });
    let filter = format!("label=valet.project={id}");
    let built = lines(&docker(&["images", "-q", "--filter", &filter]));
    assert_eq!(
        built,
        Vec::<String>::new(),
        "the build engine keeps no image"
    );
    // The private class: its Pod names the registry's pull Secret and the kubelet's engine,
    // which has no login of its own, pulled the image with it.
    let response = valet.get("/private/index.html").await;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}\n{}", second_log());
    assert_eq!(body, "private-class\n");
    let pod = listed(&kube, namespace, "pods")
        .into_iter()
        .find(|p| p["metadata"]["annotations"]["valet.io/class"] == "Private")
        .expect("the class's Pod");
    assert!(
        pod["metadata"]["labels"]["valet.project"].is_null(),
        "{pod}"
    );
    let class_secret = pod["spec"]["imagePullSecrets"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let secrets = listed(&kube, namespace, "secrets");
    let made = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == class_secret.as_str())
        .unwrap_or_else(|| panic!("the class Pod's pull Secret {class_secret:?} in {secrets:?}"));
    assert_eq!(made["type"], "kubernetes.io/dockerconfigjson");
    assert!(!pod.to_string().contains(PASSWORD), "{pod}");
    let pulled = kube.docker_ok(&["images", "-q", &private]);
    assert!(!pulled.is_empty(), "the kubelet's engine pulled {private}");
    drop(second);
    drop(valet);

    // On the node's own engine: no registry, no pull.
    let namespace = "deploy-node";
    let extra = format!("image_engine = {:?}", kube.docker_host());
    load_base(&kube);
    let (valet, api) = valet_with(&config(&kube, namespace, &extra)).await;
    let (id, url, local) = first_version(&valet, &api).await;
    let running = pods(&kube, namespace);
    assert_eq!(running.len(), 1, "one Pod per project: {running:?}");
    assert_eq!(running[0].2, "Never", "{running:?}");
    let filter = format!("label=valet.project={id}");
    let on_node = lines(&kube.docker_ok(&["images", "-q", "--filter", &filter]));
    assert_eq!(on_node.len(), 1, "{on_node:?}");

    // A project secret restarts the version with it, kept in a Secret as a class's are:
    // never in the Pod's body.
    assert_eq!(
        put_secret(&api, &id, "GREETING", "secret-value-1").await,
        200
    );
    let pods_now = listed(&kube, namespace, "pods");
    let bodies = serde_json::to_string(&pods_now).unwrap();
    assert!(!bodies.contains("secret-value-1"), "{bodies}");
    let by_ref = pods_now.iter().find_map(|pod| {
        let env = pod["spec"]["containers"][0]["env"].as_array()?;
        let greeting = env.iter().find(|e| e["name"] == "GREETING")?;
        let name = greeting["valueFrom"]["secretKeyRef"]["name"].as_str()?;
        Some(name.to_string())
    });
    let secret = by_ref.expect("a Pod reads GREETING from a Secret");
    let secrets = listed(&kube, namespace, "secrets");
    assert!(
        secrets
            .iter()
            .any(|s| s["metadata"]["name"] == secret.as_str()),
        "{secret} in {secrets:?}"
    );
    delete(&valet, &api, &id, &url).await;
    kube.until(
        GONE_WITHIN,
        "the project's Pods and Secrets deleted",
        || {
            let gone = pods(&kube, namespace).is_empty();
            (gone && listed(&kube, namespace, "secrets").is_empty()).then_some(())
        },
    );
    let on_node = lines(&kube.docker_ok(&["images", "-q", "--filter", &filter]));
    assert_eq!(
        on_node,
        Vec::<String>::new(),
        "the node's engine keeps no image"
    );
    eprintln!(
        "deploy_kubernetes: first deploy through the registry {pushed:.2?}, on the node's engine {local:.2?}"
    );
}

/// The deploy base image on the kubelet's engine (saved from the host's, loaded there).
fn load_base(kube: &KubeLab) {
    let saved = tempfile::NamedTempFile::new().unwrap();
    let path = saved.path().display().to_string();
    let out = std::process::Command::new("docker")
        .args(["save", "-o", &path, PYTHON_BASE])
        .output()
        .expect("docker save");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kube.docker_ok(&["load", "-q", "-i", &path]);
}
