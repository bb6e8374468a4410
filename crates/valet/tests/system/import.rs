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
            r#"# command = ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "{port}"]"#
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
