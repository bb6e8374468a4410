//! `valet import` through the binary: a wrangler project in, a valet.toml out that `valet check`
//! accepts; an existing file is kept unless --force; bad input writes nothing.

use std::path::Path;
use std::process::{Command, Output};

const VALET: &str = env!("CARGO_BIN_EXE_valet");

/// The Convex seed's wrangler.jsonc, comments and trailing commas as people write them.
const SEED: &str = r#"{
  // the router Worker
  "name": "convex-passthrough",
  "main": "src/index.ts",
  "containers": [
    { "class_name": "Container", "image": "./Dockerfile", "max_instances": 1, },
  ],
  "durable_objects": { "bindings": [{ "class_name": "Container", "name": "CONTAINER" }] },
  /* the React front end */
  "assets": { "directory": "./public", "not_found_handling": "single-page-application" },
}"#;

const FASTAPI: &str = r#"
name = "fastapi"
main = "src/index.ts"

[assets]
directory = "./public"

[[containers]]
class_name = "FastAPIContainer"
image = "./Dockerfile"
max_instances = 3

[[durable_objects.bindings]]
name = "FASTAPI"
class_name = "FastAPIContainer"

[vars]
GREETING = "hi"
"#;

/// A Cloudflare project folder: the wrangler file, its Dockerfile and its assets.
fn project(file: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), text).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::create_dir(dir.path().join("public")).unwrap();
    dir
}

fn valet(dir: &Path, args: &[&str]) -> Output {
    Command::new(VALET)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run valet")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_seed_imports_and_passes_check() {
    let dir = project("wrangler.jsonc", SEED);
    let out = valet(dir.path(), &["import", "wrangler.jsonc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be translated"),
        "{}",
        stderr(&out)
    );
    let toml = std::fs::read_to_string(dir.path().join("valet.toml")).unwrap();
    assert!(toml.contains("class_name = \"Container\""), "{toml}");
    assert!(toml.contains("instance = \"name:CONTAINER\""), "{toml}");

    let check = valet(dir.path(), &["check", "valet.toml"]);
    assert!(check.status.success(), "{}\n{toml}", stderr(&check));
}

#[test]
fn the_fastapi_toml_imports_and_passes_check() {
    let dir = project("wrangler.toml", FASTAPI);
    let out = valet(dir.path(), &["import", "wrangler.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let check = valet(dir.path(), &["check"]);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn an_existing_file_is_kept_unless_forced() {
    let dir = project("wrangler.jsonc", SEED);
    let existing = dir.path().join("valet.toml");
    std::fs::write(&existing, "# mine\n").unwrap();
    let out = valet(dir.path(), &["import", "wrangler.jsonc"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "# mine\n");

    let out = valet(dir.path(), &["import", "wrangler.jsonc", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&existing)
        .unwrap()
        .contains("[[containers]]"));
}

#[test]
fn dash_prints_to_stdout_and_writes_nothing() {
    let dir = project("wrangler.jsonc", SEED);
    let out = valet(dir.path(), &["import", "wrangler.jsonc", "-o", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("[[routes]]"), "{printed}");
    assert!(!dir.path().join("valet.toml").exists());
}

#[test]
fn bad_json_names_its_line_and_writes_nothing() {
    let dir = project(
        "wrangler.json",
        "{\n  \"name\": \"x\"\n  \"main\": \"y\"\n}",
    );
    let out = valet(dir.path(), &["import", "wrangler.json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("wrangler.json") && err.contains("line 3"),
        "{err}"
    );
    assert!(!dir.path().join("valet.toml").exists());
}

/// Issue 19, item 5: the port comes from the Dockerfile (its command's `--port`, or EXPOSE),
/// readiness and sleep_after are suggested, what is dropped is named with its reason, and
/// where no Docker Engine answers the notes say how to run the image's command on the process
/// driver (whose `command` line is suggested in the output).
#[test]
fn ports_come_from_the_dockerfile_and_dropped_parts_are_named() {
    let wrangler = r#"{
      "name": "api", "main": "src/index.ts",
      "compatibility_flags": ["nodejs_compat"],
      "containers": [{ "class_name": "Api", "image": "./Dockerfile" }],
      "durable_objects": { "bindings": [{ "class_name": "Api", "name": "API" }] },
      "migrations": [{ "new_sqlite_classes": ["Api"], "tag": "v1" }],
      "r2_buckets": [{ "binding": "FILES", "bucket_name": "files" }],
      "kv_namespaces": [{ "binding": "CACHE", "id": "x" }],
    }"#;
    let dir = project("wrangler.jsonc", wrangler);
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM python:3.12-slim\nEXPOSE 8000 9090\n\
         CMD [\"uvicorn\", \"main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"8000\"]\n",
    )
    .unwrap();
    let out = Command::new(VALET)
        .args(["import", "wrangler.jsonc"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("run valet");
    let notes = stderr(&out);
    assert!(out.status.success(), "{notes}");
    let toml = std::fs::read_to_string(dir.path().join("valet.toml")).unwrap();
    assert!(
        toml.contains("ports = { http = 8000, p9090 = 9090 }"),
        "{toml}"
    );
    assert!(
        toml.contains("# readiness = { path = \"/health\""),
        "{toml}"
    );
    assert!(toml.contains("# sleep_after = \"10m\""), "{toml}");
    assert!(
        toml.contains(
            r#"# command = ["uvicorn", "main:app", "--host", "127.0.0.1", "--port", "{port}"]"#
        ),
        "{toml}"
    );
    for dropped in [
        "`migrations`",
        "`compatibility_flags`",
        "`r2_buckets`",
        "`kv_namespaces`",
    ] {
        assert!(notes.contains(dropped), "{dropped}: {notes}");
    }
    assert!(
        notes.contains("Api: port 8000 from ./Dockerfile"),
        "{notes}"
    );
    assert!(
        notes.contains("no Docker Engine answers here") && notes.contains("driver = \"process\""),
        "{notes}"
    );
    let check = valet(dir.path(), &["check"]);
    assert!(check.status.success(), "{}\n{toml}", stderr(&check));
}

/// A Cloudflare starter as it comes: a Worker that serves assets and passes `/api/*`, without
/// the prefix, to one container named "main"; a Dockerfile that copies `app/` into its WORKDIR
/// and serves on 0.0.0.0. The app is standard-library Python, so "install what the Dockerfile
/// installs" is nothing here.
const STARTER_WRANGLER: &str = r#"{
  "name": "starter",
  "main": "src/index.ts",
  "compatibility_date": "2025-06-20",
  "assets": { "directory": "./public", "not_found_handling": "single-page-application" },
  "containers": [{ "class_name": "AppContainer", "image": "./Dockerfile", "max_instances": 5 }],
  "durable_objects": { "bindings": [{ "class_name": "AppContainer", "name": "APP" }] },
  "migrations": [{ "new_sqlite_classes": ["AppContainer"], "tag": "v1" }],
  "vars": { "GREETING": "hello from the import" },
}"#;

const STARTER_WORKER: &str = r#"import { Container, getContainer } from "@cloudflare/containers";
export class AppContainer extends Container { defaultPort = 30001; }
export default {
  async fetch(request: Request, env: Env) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/api/")) {
      url.pathname = url.pathname.slice(4);
      return getContainer(env.APP, "main").fetch(new Request(url, request));
    }
    return env.ASSETS.fetch(request);
  },
};
"#;

const STARTER_DOCKERFILE: &str = "FROM python:3.12-slim\nWORKDIR /app\nCOPY app/ .\n\
    EXPOSE 30001\nCMD [\"python3\", \"server.py\", \"--host\", \"0.0.0.0\", \"--port\", \"30001\"]\n";

/// Answers /health, and /env with what it was started with and the path it was asked for.
const STARTER_SERVER: &str = r#"import argparse, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--host")
parser.add_argument("--port", type=int)
args = parser.parse_args()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok"
        elif self.path == "/env":
            body = json.dumps({
                "host": args.host,
                "cwd": os.path.basename(os.getcwd()),
                "greeting": os.environ.get("GREETING"),
                "prefix": self.headers.get("X-Forwarded-Prefix"),
            }).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
"#;

/// README's "From a Cloudflare project", followed to a served request: `valet import` on a
/// starter, `valet check`, then only the edits the guide names (process driver, the suggested
/// command uncommented, readiness, the Worker's instance name and its prefix cut) and `valet
/// up`. The imported route reaches the app, run in the folder the Dockerfile copied and on
/// loopback only; the assets are served beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_starter_serves_through_its_route_on_the_process_driver() {
    let dir = project("wrangler.jsonc", STARTER_WRANGLER);
    let files = [
        ("Dockerfile", STARTER_DOCKERFILE),
        ("src/index.ts", STARTER_WORKER),
        ("app/server.py", STARTER_SERVER),
        ("public/index.html", "<h1>starter</h1>"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = valet(dir.path(), &["import", "wrangler.jsonc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let imported = std::fs::read_to_string(dir.path().join("valet.toml")).unwrap();
    let check = valet(dir.path(), &["check"]);
    assert!(check.status.success(), "{}\n{imported}", stderr(&check));

    // The guide's hand edits, each a line the import wrote, changed as the guide says.
    let suggested = r#"# command = ["sh", "-c", "cd app && exec python3 server.py --host 127.0.0.1 --port {port}"]"#;
    let edits = [
        ("driver = \"docker\"", "driver = \"process\""),
        (suggested, &suggested[2..]),
        ("# readiness = {", "readiness = {"),
        ("instance = \"name:APP\"", "instance = \"name:main\""),
        ("# strip_prefix = \"/api\"", "strip_prefix = \"/api\""),
    ];
    let mut edited = imported.clone();
    for (from, to) in edits {
        assert_eq!(edited.matches(from).count(), 1, "{from}:\n{imported}");
        edited = edited.replacen(from, to, 1);
    }
    // valet up in a folder of its own holding the same project (the test support picks free
    // listen ports in place of 127.0.0.1:8787/8788).
    let mut assets: Vec<(&str, &str)> = files.to_vec();
    assets.push(("wrangler.jsonc", STARTER_WRANGLER));
    let valet_up = crate::support::Valet::with_config(&edited)
        .assets(&assets)
        .start()
        .await;
    let check = valet(valet_up.dir(), &["check"]);
    assert!(check.status.success(), "{}\n{edited}", stderr(&check));

    let response = valet_up.get("/api/env").await;
    assert_eq!(response.status(), 200, "{}", valet_up.log());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["greeting"], "hello from the import", "{body}");
    assert_eq!(body["host"], "127.0.0.1", "{body}");
    assert_eq!(body["cwd"], "app", "{body}");
    assert_eq!(body["prefix"], "/api", "{body}");

    let page = valet_up.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "<h1>starter</h1>");
    // The imported not_found_handling: an app route the front end owns gets its page.
    let deep = valet_up.get("/settings/profile").await;
    assert_eq!(deep.text().await.unwrap(), "<h1>starter</h1>");
}
