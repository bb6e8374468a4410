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
