//! Deploying onto the Docker driver, against the real binary and the real engine: an app.py
//! and an index.ts become one image per version, built on the configured base image with the
//! requirements installed on the host and copied in; each project gets its own network and
//! volume, versions switch once ready, roll back, see secrets as env, keep their data, and a
//! delete removes containers, images, volume, network, data and every version's log.
//!
//! No base image can be pulled here, so the tests build their own once, tagged under a
//! test-only name: a "python" image holding the host's Python (binary, standard library and
//! the shared libraries they link), a "node" image holding the host's node binary and its
//! libraries. Without an engine these tests fail under `CI=true` and are skipped otherwise.
//!
//! The last test checks the same data and log rules on the process driver.

use crate::deploy_support::*;
use crate::support::docker::{docker, engine_ready};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Bump the tag whenever what goes into a base image changes: an existing tag is reused.
pub(crate) const PYTHON_BASE: &str = "valet-test-deploy-python:3";
const NODE_BASE: &str = "valet-test-deploy-node:1";

/// An app that answers with its version, its data folder's note (`/write/<text>` sets it), its
/// user id and the GREETING secret.
const NOTE_APP: &str = r#"import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "v1"
DATA = os.environ["VALET_DATA_DIR"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        note = os.path.join(DATA, "note")
        if self.path.startswith("/write/"):
            with open(note, "w") as f:
                f.write(self.path[len("/write/"):])
        try:
            with open(note) as f:
                saved = f.read()
        except FileNotFoundError:
            saved = None
        body = json.dumps({
            "version": VERSION, "path": self.path, "note": saved, "data_dir": DATA,
            "uid": os.getuid(), "greeting": os.environ.get("GREETING"),
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print(f"starting {VERSION}", flush=True)
ThreadingHTTPServer(("HOST", int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn note_app(version: &str, host: &str) -> String {
    NOTE_APP
        .replace("VERSION = \"v1\"", &format!("VERSION = \"{version}\""))
        .replace("\"HOST\"", &format!("\"{host}\""))
}

fn endpoint(body: &Value) -> String {
    body["endpoint"].as_str().expect("endpoint").to_string()
}

/// A valet on the Docker driver whose base images are the test's own.
async fn docker_valet() -> Option<(crate::support::Valet, Api, Cleanup)> {
    if !engine_ready() {
        return None;
    }
    base_images();
    let config = format!(
        "driver = \"docker\"\n\n[deploy]\npython_image = \"{PYTHON_BASE}\"\nnode_image = \"{NODE_BASE}\"\n"
    );
    let (valet, api) = valet_with(&config).await;
    Some((valet, api, Cleanup::default()))
}

/// Removes what valet made for the listed projects, however the test ends.
#[derive(Default)]
struct Cleanup(std::sync::Mutex<Vec<String>>);

impl Cleanup {
    fn project(&self, id: &str) {
        self.0.lock().unwrap().push(id.to_string());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in self.0.lock().unwrap().iter() {
            let filter = format!("label=valet.project={id}");
            for (list, remove) in [
                (vec!["ps", "-aq"], vec!["rm", "-f"]),
                (vec!["images", "-q"], vec!["rmi", "-f"]),
                (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
                (vec!["network", "ls", "-q"], vec!["network", "rm"]),
            ] {
                let mut args = list.clone();
                args.extend(["--filter", &filter]);
                for found in lines(&docker(&args)) {
                    let mut args = remove.clone();
                    args.push(&found);
                    docker(&args);
                }
            }
        }
    }
}

pub(crate) fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the engine holds of one project.
struct Objects {
    containers: Vec<String>,
    images: Vec<String>,
    volumes: Vec<String>,
    networks: Vec<String>,
}

fn objects_of(project: &str) -> Objects {
    let filter = format!("label=valet.project={project}");
    Objects {
        containers: lines(&docker(&["ps", "-aq", "--filter", &filter])),
        images: lines(&docker(&["images", "-q", "--filter", &filter])),
        volumes: lines(&docker(&["volume", "ls", "-q", "--filter", &filter])),
        networks: lines(&docker(&["network", "ls", "-q", "--filter", &filter])),
    }
}

/// The project's log folders under `data_dir/logs` (one per version started).
fn log_dirs(valet: &crate::support::Valet, project: &str) -> Vec<String> {
    let logs = valet.dir().join(".valet/logs");
    std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("project-{project}-")))
        .collect()
}

pub(crate) async fn put_secret(api: &Api, id: &str, name: &str, value: &str) -> u16 {
    api.client
        .put(format!("{}/v1/projects/{id}/secrets/{name}", api.base))
        .bearer_auth(&api.token)
        .body(value.to_string())
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("PUT secret")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_app_runs_in_its_own_container_keeps_its_data_across_versions_and_is_deleted_whole(
) {
    let Some((valet, api, cleanup)) = docker_valet().await else {
        return;
    };
    let (status, v1) = api
        .upload(Form::file("app.py", note_app("v1", "0.0.0.0")).field("name", "notes"))
        .await;
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let id = v1["id"].as_str().unwrap().to_string();
    cleanup.project(&id);
    let url = endpoint(&v1);
    assert_eq!(url, valet.url(&format!("/containers/{id}/")));

    let (status, first) = get_app(&valet, &format!("{url}write/kept")).await;
    assert_eq!(status, 200, "{first}\n{}", valet.log());
    assert_eq!(first["version"], "v1");
    assert_eq!(
        first["path"], "/write/kept",
        "the app sees the path after its prefix"
    );
    assert_eq!(first["note"], "kept");
    assert_eq!(first["data_dir"], "/data");
    assert_eq!(
        first["uid"], 65534,
        "the app runs unprivileged in its container"
    );

    // Its own container, on its own network, its port published on loopback only, and
    // nothing of the host mounted: only the project's volume.
    let objects = objects_of(&id);
    assert_eq!(objects.containers.len(), 1, "{:?}", objects.containers);
    assert_eq!(objects.networks.len(), 1);
    assert_eq!(objects.volumes.len(), 1);
    let container = &objects.containers[0];
    let networks: Value = serde_json::from_str(&docker(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        container,
    ]))
    .unwrap();
    let joined: Vec<&String> = networks.as_object().unwrap().keys().collect();
    let network_name = docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}}",
        &objects.networks[0],
    ]);
    assert_eq!(
        joined,
        [network_name.trim()],
        "only the project's own network"
    );
    assert!(network_name.contains(&id), "{network_name}");
    let mounts: Value =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .Mounts}}", container])).unwrap();
    let mounts = mounts.as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/data");
    let hardening = docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.CapDrop}} {{json .HostConfig.SecurityOpt}}",
        container,
    ]);
    assert_eq!(hardening.trim(), r#"["ALL"] ["no-new-privileges"]"#);
    let ports = docker(&["port", container]);
    assert!(
        ports.trim().starts_with("8000/tcp -> 127.0.0.1:"),
        "{ports}"
    );
    assert_eq!(ports.trim().lines().count(), 1, "{ports}");

    // A second version: the data written by v1 is there.
    let (status, v2) = api
        .upload(Form::file("app.py", note_app("v2", "0.0.0.0")).field("name", "notes"))
        .await;
    assert_eq!(status, 201, "{v2}\n{}", valet.log());
    assert_eq!(v2["version"], 2);
    let (_, second) = get_app(&valet, &url).await;
    assert_eq!(second["version"], "v2");
    assert_eq!(second["note"], "kept", "data carries across versions");
    assert_eq!(objects_of(&id).images.len(), 2, "one image per version");

    // A secret reaches the app as env (the version restarts with it).
    assert_eq!(put_secret(&api, &id, "GREETING", "hello").await, 200);
    let (_, third) = get_app(&valet, &url).await;
    assert_eq!(
        (third["version"].as_str(), third["greeting"].as_str()),
        (Some("v2"), Some("hello"))
    );

    // Rollback to v1: its image still runs, with the same data and the secret.
    let (status, back) = api
        .call(
            "POST",
            &format!("/v1/projects/{id}/rollback"),
            Some(serde_json::json!({ "version": 1 })),
        )
        .await;
    assert_eq!(status, 200, "{back}\n{}", valet.log());
    let (_, rolled) = get_app(&valet, &url).await;
    assert_eq!(rolled["version"], "v1");
    assert_eq!(rolled["note"], "kept");
    assert_eq!(rolled["greeting"], "hello");
    assert!(
        log_dirs(&valet, &id).len() >= 3,
        "{:?}",
        log_dirs(&valet, &id)
    );

    let (status, gone) = api
        .call("DELETE", &format!("/api/containers/servers/{id}"), None)
        .await;
    assert_eq!(status, 200, "{gone}");
    let (status, _) = get_app(&valet, &url).await;
    assert_eq!(status, 404);
    let left = objects_of(&id);
    assert!(
        left.containers.is_empty(),
        "containers {:?}",
        left.containers
    );
    assert!(left.images.is_empty(), "images {:?}", left.images);
    assert!(left.volumes.is_empty(), "volumes {:?}", left.volumes);
    assert!(left.networks.is_empty(), "networks {:?}", left.networks);
    assert_eq!(
        log_dirs(&valet, &id),
        Vec::<String>::new(),
        "every version's log goes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastapi_app_gets_its_pypi_wheels_copied_into_its_image() {
    let Some((valet, api, cleanup)) = docker_valet().await else {
        return;
    };
    let app = fixture("fastapi_app.py").replace("127.0.0.1", "0.0.0.0");
    let (status, body) = api
        .upload(
            Form::file("app.py", app)
                .field("name", "fastapi-docker")
                .field("requirements", "fastapi uvicorn"),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    cleanup.project(body["id"].as_str().unwrap());
    let url = endpoint(&body);
    let (status, root) = get_app(&valet, &url).await;
    assert_eq!(status, 200, "{root}\n{}", valet.log());
    assert_eq!(
        root,
        serde_json::json!({ "hello": "fastapi", "version": "v1" })
    );
    let (_, item) = get_app(&valet, &format!("{url}items/7")).await;
    assert_eq!(
        (item["item_id"].as_i64(), item["path"].as_str()),
        (Some(7), Some("/items/7"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_typescript_app_runs_on_the_node_base_and_switches_versions_once_ready() {
    let Some((valet, api, cleanup)) = docker_valet().await else {
        return;
    };
    let app = |version: &str| {
        fixture("express_index.ts")
            .replace(
                "app.listen(port, \"127.0.0.1\",",
                "app.listen(port, \"0.0.0.0\",",
            )
            .replace("\"v1\"", &format!("\"{version}\""))
    };
    let (status, v1) = api
        .upload(
            Form::file("index.ts", app("v1"))
                .field("name", "express-docker")
                .field("requirements", "express cors"),
        )
        .await;
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let id = v1["id"].as_str().unwrap().to_string();
    cleanup.project(&id);
    assert_eq!(v1["runtime"], "node");
    let url = endpoint(&v1);
    let (status, root) = get_app(&valet, &url).await;
    assert_eq!(status, 200, "{root}\n{}", valet.log());
    assert_eq!(
        root,
        serde_json::json!({ "hello": "express", "version": "v1" })
    );
    let (_, echo) = get_app(&valet, &format!("{url}echo/word")).await;
    assert_eq!(
        (echo["word"].as_str(), echo["path"].as_str()),
        (Some("word"), Some("/echo/word"))
    );

    // v2 is slow to listen: v1 serves every request until v2 is ready.
    let slow = app("v2").replace(
        "app.listen(",
        "await new Promise((r) => setTimeout(r, 3000));\napp.listen(",
    );
    let uploader = api.clone();
    let deploy = tokio::spawn(async move {
        uploader
            .upload(
                Form::file("index.ts", slow)
                    .field("name", "express-docker")
                    .field("requirements", "express cors"),
            )
            .await
    });
    let served =
        served_through_switch(&valet, &url, &deploy, ("v1", "v2"), Duration::from_secs(3)).await;
    let (status, v2) = deploy.await.unwrap();
    assert_eq!(status, 201, "{v2}\n{}", valet.log());
    assert!(served >= 10, "v1 served while v2 started ({served})");
    assert_eq!(get_app(&valet, &url).await.1["version"], "v2");

    // A version whose app crashes is refused with its log and takes no traffic; its image goes.
    let broken = "console.log('boom: cannot start'); process.exit(3);\n";
    let (status, body) = api
        .upload(Form::file("index.js", broken).field("name", "express-docker"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["log"].to_string().contains("boom: cannot start"),
        "{body}"
    );
    assert_eq!(get_app(&valet, &url).await.1["version"], "v2");
    eventually_images(&id, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_valet_is_killed_the_next_valet_serves_the_project_from_its_image_with_its_data() {
    let Some((mut valet, api, cleanup)) = docker_valet().await else {
        return;
    };
    let (status, v1) = api
        .upload(Form::file("app.py", note_app("v1", "0.0.0.0")).field("name", "survivor"))
        .await;
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let id = v1["id"].as_str().unwrap().to_string();
    cleanup.project(&id);
    let url = endpoint(&v1);
    assert_eq!(
        get_app(&valet, &format!("{url}write/before")).await.1["note"],
        "before"
    );

    // SIGKILL: valet stops nothing; its container keeps running.
    let pid = nix::unistd::Pid::from_raw(valet.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = valet.terminate();
    assert_eq!(objects_of(&id).containers.len(), 1);

    let again = Restarted::start(valet.dir(), valet.addr()).await;
    let (status, body) = get_app(&valet, &url).await;
    assert_eq!(status, 200, "{body}\n{}", again.log());
    assert_eq!(
        (body["version"].as_str(), body["note"].as_str()),
        (Some("v1"), Some("before"))
    );
    assert_eq!(
        objects_of(&id).containers.len(),
        1,
        "the leftover was replaced, not doubled"
    );
    let (status, _) = api
        .call("DELETE", &format!("/v1/projects/{id}"), None)
        .await;
    assert_eq!(status, 200, "{}", again.log());
    let left = objects_of(&id);
    assert!(
        left.containers.is_empty() && left.images.is_empty(),
        "{:?}",
        left.images
    );
    assert!(left.volumes.is_empty() && left.networks.is_empty());
}

/// Waits for the project's image count to settle at `n`.
async fn eventually_images(id: &str, n: usize) {
    for _ in 0..50 {
        if objects_of(id).images.len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "project {id} has images {:?}, not {n}",
        objects_of(id).images
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_upload_that_cannot_start_leaves_no_image_network_volume_or_log() {
    let Some((valet, api, _cleanup)) = docker_valet().await else {
        return;
    };
    let crashing = note_app("v1", "0.0.0.0").replace(
        "print(f\"starting {VERSION}\", flush=True)",
        "print(\"boom: no start\", flush=True)\nraise SystemExit(3)",
    );
    let (status, body) = api
        .upload(Form::file("app.py", crashing).field("name", "never"))
        .await;
    assert_eq!(status, 422, "{body}\n{}", valet.log());
    assert!(body["log"].to_string().contains("boom: no start"), "{body}");
    assert!(api.projects().await.is_empty());
    // Everything this valet made on the engine carries its scope label.
    let log = valet.log();
    let scope = log
        .split_once("scope=")
        .map(|(_, rest)| rest.chars().take(12).collect::<String>())
        .expect("the driver logs its scope");
    let filter = format!("label=valet.scope={scope}");
    for what in [
        vec!["ps", "-aq"],
        vec!["images", "-q"],
        vec!["volume", "ls", "-q"],
        vec!["network", "ls", "-q"],
    ] {
        let mut args = what.clone();
        args.extend(["--filter", &filter]);
        assert_eq!(
            lines(&docker(&args)),
            Vec::<String>::new(),
            "docker {what:?}"
        );
    }
    let data = valet.dir().join(".valet/deploy/data");
    let left: Vec<_> = std::fs::read_dir(data).into_iter().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    let logs = std::fs::read_dir(valet.dir().join(".valet/logs"));
    let project_logs = logs
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("project-"))
        .count();
    assert_eq!(project_logs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_base_image_a_deploy_is_refused_and_nothing_is_kept() {
    if !engine_ready() {
        return;
    }
    let config = "driver = \"docker\"\n\n[deploy]\npython_image = \"valet-test-absent-base:0\"\n";
    let (_valet, api) = valet_with(config).await;
    let (status, body) = api
        .upload(Form::file("app.py", note_app("v1", "0.0.0.0")).field("name", "nobase"))
        .await;
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap();
    // Missing, so valet tried to pull it from Docker Hub, which is unknown or unreachable.
    assert!(
        message.contains("valet-test-absent-base:0") && message.contains("cannot pull"),
        "{body}"
    );
    assert!(api.projects().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_base_image_is_only_in_a_registry_pulls_it_first() {
    if !crate::registry::ready() {
        return;
    }
    base_images();
    let registry = crate::registry::Registry::start(false);
    let base = format!(
        "{}/valet-e2e-{}/python:3",
        registry.host,
        std::process::id()
    );
    for args in [
        vec!["tag", PYTHON_BASE, &base],
        vec!["push", &base],
        vec!["rmi", &base],
    ] {
        crate::registry::docker_ok(None, &args, None);
    }
    // Dropped after `cleanup`, so the project's images built on the base are gone by then;
    // by reference only: the base is the stand-in under another tag, and the stand-in stays.
    let _remove = crate::registry::RemoveImages(vec![base.clone()]);
    let cleanup = Cleanup::default();
    let config = format!("driver = \"docker\"\n\n[deploy]\npython_image = \"{base}\"\n");
    let (valet, _api) = valet_with(&config).await;
    // Through `valet deploy`, which shows the deploy's progress: the pull's milestones too.
    let app = tempfile::tempdir().unwrap();
    let file = app.path().join("app.py");
    std::fs::write(&file, note_app("v1", "0.0.0.0")).unwrap();
    let file = file.to_str().unwrap();
    let (ok, out, err) = cli(&valet, &["deploy", file, "--name", "pulled", "--json"]);
    assert!(ok, "{out}{err}\n{}", valet.log());
    let v1: Value = serde_json::from_str(&out).expect("deploy --json");
    cleanup.project(v1["id"].as_str().unwrap());
    assert!(
        // Its layers are the local stand-in's already: the engine fetches the manifest only.
        err.contains(&format!("pulling image {base}")) && err.contains(&format!("pulled {base}")),
        "no pull progress in valet deploy's output: {err}"
    );
    // Not a terminal: the pull's lines as they came, no bar drawn in place.
    assert!(
        !err.contains(['\r', '\x1b']),
        "escapes through a pipe: {err:?}"
    );
    let (status, body) = get_app(&valet, &endpoint(&v1)).await;
    assert_eq!(
        (status, &body["version"]),
        (200, &Value::from("v1")),
        "{body}"
    );
    let log = valet.log();
    assert!(log.contains("image pulled") && log.contains(&base), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_on_a_terminal_draws_its_base_images_pull_as_one_bar() {
    if !crate::registry::ready() {
        return;
    }
    base_images();
    let registry = crate::registry::Registry::start(false);
    let base = format!(
        "{}/valet-e2e-{}/python-bar:3",
        registry.host,
        std::process::id()
    );
    // The stand-in with a layer of random bytes of its own on top, only in the registry: its
    // pull downloads that layer (the stand-in's "Already exists").
    let context = tempfile::tempdir().unwrap();
    let dockerfile = format!("FROM {PYTHON_BASE}\nCOPY blob /blob\n");
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    let mut blob = vec![0u8; 512 * 1024];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut blob)
        .unwrap();
    std::fs::write(context.path().join("blob"), blob).unwrap();
    let dir = context.path().to_str().unwrap();
    for args in [
        vec!["build", "-q", "-t", &base, dir],
        vec!["push", &base],
        vec!["rmi", &base],
    ] {
        crate::registry::docker_ok(None, &args, None);
    }
    let _remove = crate::registry::RemoveImages(vec![base.clone()]);
    let cleanup = Cleanup::default();
    let config = format!("driver = \"docker\"\n\n[deploy]\npython_image = \"{base}\"\n");
    let (valet, _api) = valet_with(&config).await;
    let file = valet.dir().join("app.py");
    std::fs::write(&file, note_app("v1", "0.0.0.0")).unwrap();

    // util-linux `script` runs `valet deploy` on a pseudo-terminal, stdout to a file.
    let stdout_file = valet.dir().join("deploy-stdout.json");
    let quote = |p: &Path| format!("'{}'", p.display());
    let command = format!(
        "{} deploy {} --name barred --json --config {} > {}",
        quote(Path::new(env!("CARGO_BIN_EXE_valet"))),
        quote(&file),
        quote(&valet.dir().join("valet.toml")),
        quote(&stdout_file),
    );
    let run = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("VALET_ADMIN_URL")
        .env_remove("VALET_ADMIN_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux script runs");
    let terminal = String::from_utf8_lossy(&run.stdout);
    eprintln!("valet deploy on a terminal:\n{terminal:?}");
    let answer = std::fs::read_to_string(&stdout_file).unwrap_or_default();
    if let Ok(v1) = serde_json::from_str::<Value>(&answer) {
        cleanup.project(v1["id"].as_str().unwrap_or_default());
    }
    assert!(run.status.success(), "{terminal}\n{}", valet.log());
    let v1: Value = serde_json::from_str(&answer).expect("stdout is only JSON");
    assert_eq!(v1["version"], 1, "{v1}");

    // Every milestone redraws the one bar in place: (layers on the engine, layers named).
    const CLEAR: &str = "\r\x1b[2K";
    let head = format!("    pulling {base} [");
    let drawn: Vec<(usize, usize)> = terminal
        .split(CLEAR)
        .filter_map(|shown| {
            let counts = shown.strip_prefix(head.as_str())?.split("] ").nth(1)?;
            let (done, of) = counts.strip_suffix(" layers")?.split_once('/')?;
            Some((done.parse().ok()?, of.parse().ok()?))
        })
        .collect();
    assert!(
        drawn.iter().any(|(done, of)| done < of) && drawn.contains(&(2, 2)),
        "the bar of the stand-in's layer and the new one, moving to 2/2: {drawn:?}"
    );
    assert!(
        drawn.windows(2).all(|w| w[0].0 <= w[1].0),
        "layers on the engine only grow: {drawn:?}"
    );
    // Then cleared for the pull's last line, with what it took; no milestone has a line.
    let done = terminal
        .split(CLEAR)
        .find(|shown| shown.starts_with(&format!("    pulled {base}: ")))
        .unwrap_or_else(|| panic!("no `pulled` line after the bar: {terminal:?}"));
    assert!(
        done.contains(" layers, ") && done.contains(" s") && done.ends_with('\n'),
        "{done:?}"
    );
    assert!(
        !terminal.contains("    layer ") && !terminal.contains("Pull complete"),
        "milestones printed as lines: {terminal:?}"
    );
    assert!(
        terminal.contains("==> starting"),
        "then the stages: {terminal:?}"
    );
    let (status, body) = get_app(&valet, &endpoint(&v1)).await;
    assert_eq!(
        (status, &body["version"]),
        (200, &Value::from("v1")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_process_driver_data_outlives_versions_and_delete_removes_data_and_all_logs() {
    let (valet, api) = valet_with("").await;
    let (status, v1) = api
        .upload(Form::file("app.py", note_app("v1", "127.0.0.1")).field("name", "notes"))
        .await;
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let id = v1["id"].as_str().unwrap().to_string();
    let url = endpoint(&v1);
    let (_, first) = get_app(&valet, &format!("{url}write/kept")).await;
    assert_eq!(first["note"], "kept", "{first}");
    let data_dir = PathBuf::from(first["data_dir"].as_str().unwrap());
    assert!(data_dir.is_dir());

    let (status, v2) = api
        .upload(Form::file("app.py", note_app("v2", "127.0.0.1")).field("name", "notes"))
        .await;
    assert_eq!(status, 201, "{v2}");
    let (_, second) = get_app(&valet, &url).await;
    assert_eq!(
        (second["version"].as_str(), second["note"].as_str()),
        (Some("v2"), Some("kept"))
    );
    assert_eq!(
        second["data_dir"], first["data_dir"],
        "one data folder per project"
    );
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/projects/{id}/rollback"),
            Some(serde_json::json!({ "version": 1 })),
        )
        .await;
    assert_eq!(status, 200);
    let (_, rolled) = get_app(&valet, &url).await;
    assert_eq!(
        (rolled["version"].as_str(), rolled["note"].as_str()),
        (Some("v1"), Some("kept"))
    );
    let logs: BTreeSet<String> = log_dirs(&valet, &id).into_iter().collect();
    assert!(logs.len() >= 3, "a log per version started: {logs:?}");

    let (status, _) = api
        .call("DELETE", &format!("/v1/projects/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(!data_dir.exists(), "the project's data goes with it");
    assert_eq!(
        log_dirs(&valet, &id),
        Vec::<String>::new(),
        "and every version's log"
    );
}

/// Builds the test's base images once per run of this file (and not at all when the engine
/// has them from an earlier run).
pub(crate) fn base_images() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !image_present(PYTHON_BASE) {
            build_base(PYTHON_BASE, &python_root());
        }
        if !image_present(NODE_BASE) {
            build_base(NODE_BASE, &node_root());
        }
    });
}

fn image_present(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A root file system staged in a folder, with the environment its image declares.
struct Root {
    dir: tempfile::TempDir,
    env: Vec<String>,
}

fn build_base(tag: &str, root: &Root) {
    let mut dockerfile = "FROM scratch\nCOPY rootfs/ /\n".to_string();
    for env in &root.env {
        dockerfile += &format!("ENV {env}\n");
    }
    std::fs::write(root.dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(root.dir.path())
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "building {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host's Python at the paths it was built for (so it finds its standard library where
/// it expects it), without site-packages, tests and GUI modules, plus every shared library
/// it or its extension modules link; `python3` on the image's PATH.
fn python_root() -> Root {
    let python = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let script = "import os, sys, sysconfig\n\
                  print(os.path.realpath(sys.executable))\n\
                  print(sysconfig.get_paths()['stdlib'])\n\
                  print(sys.version.split()[0])";
    let out = Command::new(python)
        .args(["-c", script])
        .output()
        .expect("python3");
    let answer = String::from_utf8(out.stdout).unwrap();
    let [binary, stdlib, version] = answer.lines().collect::<Vec<_>>()[..] else {
        panic!("python3 said {answer:?}");
    };
    let root = Root {
        dir: tempfile::tempdir().unwrap(),
        env: vec![
            format!("PYTHON_VERSION={version}"),
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "LANG=C.UTF-8".into(),
        ],
    };
    let fs = root.dir.path().join("rootfs");
    copy_file(Path::new(binary), &inside(&fs, Path::new(binary)));
    let skip = [
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "__pycache__",
    ];
    copy_tree(
        Path::new(stdlib),
        &inside(&fs, Path::new(stdlib)),
        &|name| skip.contains(&name) || name.starts_with("config-") || name.starts_with("_tkinter"),
    );
    let mut linked = vec![PathBuf::from(binary)];
    let dynload = Path::new(stdlib).join("lib-dynload");
    for entry in std::fs::read_dir(&dynload).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("_tkinter") {
            linked.push(entry.path());
        }
    }
    copy_libraries(&fs, &linked);
    // What every Debian python:*-slim holds and compiled wheels (pydantic-core) link: all of
    // glibc (libc6), and libgcc_s, which libc6 depends on.
    let libc6 = [
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libresolv.so.2",
        "libutil.so.1",
        "libanl.so.1",
        "libnss_files.so.2",
        "libnss_dns.so.2",
        "libgcc_s.so.1",
        "libstdc++.so.6",
    ];
    for library in libc6 {
        let path = system_library(library);
        if !inside(&fs, &path).exists() {
            copy_file(&path, &inside(&fs, &path));
        }
    }
    std::fs::create_dir_all(fs.join("usr/local/bin")).unwrap();
    std::os::unix::fs::symlink(binary, fs.join("usr/local/bin/python3")).unwrap();
    std::fs::create_dir_all(fs.join("tmp")).unwrap();
    root
}

/// The host's node binary and the libraries it links.
fn node_root() -> Root {
    let out = Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .unwrap();
    let node = std::fs::canonicalize(String::from_utf8(out.stdout).unwrap().trim()).expect("node");
    let version = Command::new(&node).arg("--version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let root = Root {
        dir: tempfile::tempdir().unwrap(),
        env: vec![
            format!("NODE_VERSION={}", version.trim().trim_start_matches('v')),
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
        ],
    };
    let fs = root.dir.path().join("rootfs");
    copy_file(&node, &fs.join("usr/local/bin/node"));
    copy_libraries(&fs, &[node]);
    std::fs::create_dir_all(fs.join("tmp")).unwrap();
    root
}

/// Where the dynamic loader finds a system library (`ldconfig -p`).
fn system_library(name: &str) -> PathBuf {
    // ldconfig may be missing from PATH; the fallback is Debian's folder.
    let out = Command::new("ldconfig").arg("-p").output();
    let listed = out.map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&listed)
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("{name} ")) && l.contains("x86-64"))
        .find_map(|l| l.rsplit_once("=> ").map(|(_, p)| PathBuf::from(p.trim())))
        .or_else(|| {
            let fallback = Path::new("/lib/x86_64-linux-gnu").join(name);
            fallback.is_file().then_some(fallback)
        })
        .unwrap_or_else(|| panic!("no {name} on this host"))
}

/// `path` as a path below `fs`.
fn inside(fs: &Path, path: &Path) -> PathBuf {
    fs.join(path.strip_prefix("/").unwrap_or(path))
}

/// Copies every shared library `ldd` names for these files (and the loader) to the same path
/// inside `fs`, links resolved.
fn copy_libraries(fs: &Path, files: &[PathBuf]) {
    let mut libraries = BTreeSet::new();
    for file in files {
        let Ok(out) = Command::new("ldd").arg(file).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                libraries.insert(PathBuf::from(path));
            }
        }
    }
    for library in libraries {
        let target = inside(fs, &library);
        if !target.exists() {
            copy_file(&library, &target);
        }
    }
}

fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip(&name) {
            continue;
        }
        let path = entry.path();
        let kind = std::fs::metadata(&path).map(|m| m.file_type());
        match kind {
            Ok(kind) if kind.is_dir() => copy_tree(&path, &to.join(&name), skip),
            Ok(kind) if kind.is_file() => copy_file(&path, &to.join(&name)),
            _ => {}
        }
    }
}
