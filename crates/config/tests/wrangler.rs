//! `valet import`'s translation: wrangler configs of the shapes the seeds use, the documented
//! fields with JSONC's comments and trailing commas, and bad input.

use std::path::Path;
use valet_config::wrangler::{import_wrangler, strip_jsonc, WranglerFormat};
use valet_config::Config;

/// Translates, then loads the result the way `valet check` does, beside an assets folder.
fn import_and_load(text: &str, format: WranglerFormat) -> (String, Vec<String>, Config) {
    let (toml, notes) = import_wrangler(text, format).expect("import");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("public")).unwrap();
    let config = valet_config::parse_str(&toml, Path::new("valet.toml"), dir.path())
        .unwrap_or_else(|e| panic!("output does not validate:\n{e}\n---\n{toml}"));
    (toml, notes, config)
}

/// The Convex passthrough seed: one container class behind one binding, plus assets.
const SEED: &str = r#"{
  "$schema": "node_modules/wrangler/config-schema.json",
  "name": "convex-passthrough",
  "main": "src/index.ts",
  "compatibility_date": "2025-05-23",
  "containers": [
    { "class_name": "Container", "image": "./Dockerfile", "max_instances": 1 }
  ],
  "durable_objects": {
    "bindings": [{ "class_name": "Container", "name": "CONTAINER" }]
  },
  "assets": { "directory": "./public", "not_found_handling": "single-page-application" },
  "migrations": [{ "new_sqlite_classes": ["Container"], "tag": "v1" }]
}"#;

#[test]
fn the_seed_becomes_one_docker_class_with_a_route_stub() {
    let (toml, notes, config) = import_and_load(SEED, WranglerFormat::Jsonc);
    assert_eq!(config.server.driver, "docker");
    let [class] = config.containers.as_slice() else {
        panic!("one class expected:\n{toml}");
    };
    assert_eq!(class.class_name, "Container");
    assert_eq!(class.image.as_deref(), Some("./Dockerfile"));
    assert_eq!(class.max_instances, 1);
    assert_eq!(class.ports.get("http"), Some(&8080));
    let assets = config.assets.as_ref().expect("assets");
    assert_eq!(assets.directory, Path::new("./public"));
    assert_eq!(assets.not_found_handling, "single-page-application");
    let [route] = config.routes.as_slice() else {
        panic!("one route expected:\n{toml}");
    };
    assert_eq!(route.pattern, "/api/*");
    assert_eq!(route.container.as_deref(), Some("Container"));
    assert_eq!(route.instance.as_str(), "name:CONTAINER");
    assert!(toml.contains("TODO"), "{toml}");
    assert!(toml.contains("binding CONTAINER"), "{toml}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("src/index.ts") && n.contains("cannot be translated")),
        "{notes:?}"
    );
}

/// The FastAPI starter's wrangler.toml: a container class, its binding, assets and vars.
const FASTAPI: &str = r#"
name = "fastapi-container"
main = "src/index.ts"
compatibility_date = "2025-06-01"

[assets]
directory = "./public"
binding = "ASSETS"

[[containers]]
class_name = "FastAPIContainer"
image = "./Dockerfile"
max_instances = 5
instance_type = "standard"

[[durable_objects.bindings]]
name = "FASTAPI_CONTAINER"
class_name = "FastAPIContainer"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["FastAPIContainer"]

[vars]
MESSAGE = "Hello from FastAPI"
DEBUG = true
"#;

#[test]
fn the_fastapi_starter_keeps_its_vars_as_env() {
    let (toml, _notes, config) = import_and_load(FASTAPI, WranglerFormat::Toml);
    let [class] = config.containers.as_slice() else {
        panic!("one class expected:\n{toml}");
    };
    assert_eq!(class.class_name, "FastAPIContainer");
    assert_eq!(class.image.as_deref(), Some("./Dockerfile"));
    assert_eq!(class.max_instances, 5);
    assert_eq!(class.instance_type, "standard-1", "the older name maps");
    assert_eq!(
        class.env.get("MESSAGE").map(String::as_str),
        Some("Hello from FastAPI")
    );
    assert_eq!(class.env.get("DEBUG").map(String::as_str), Some("true"));
    assert_eq!(
        config.assets.as_ref().unwrap().directory,
        Path::new("./public")
    );
    assert_eq!(config.routes[0].instance.as_str(), "name:FASTAPI_CONTAINER");
}

/// The documented fields, written the way people write JSONC.
const DOCUMENTED: &str = r#"// wrangler.jsonc
{
  /* the Worker */
  "name": "app", // trailing comments too
  "main": "src/worker.ts",
  "containers": [
    {
      "class_name": "Api",
      "image": "registry.example/api:1", // an image reference
      "max_instances": 10,
      "instance_type": "basic",
    },
    {
      "class_name": "Worker-2",
      "image": "./worker/Dockerfile",
      "instance_type": { "vcpu": 0.5, "memory_mib": 2048, "disk_mb": 4000 },
    },
  ],
  "durable_objects": {
    "bindings": [
      { "name": "API", "class_name": "Api", },
      { "name": "WORKER", "class_name": "Worker-2" },
      { "name": "COUNTER", "class_name": "Counter" },
    ],
  },
  "assets": { "directory": "public", "not_found_handling": "404-page", },
  "vars": { "URL": "http://x//y /* not a comment */", "LIMIT": 5, },
  "kv_namespaces": [{ "binding": "KV", "id": "abc" }],
  "env": { "staging": { "vars": { "URL": "http://staging" } } },
}
"#;

#[test]
fn documented_fields_with_comments_and_trailing_commas() {
    let with_bom = format!("\u{feff}{DOCUMENTED}");
    let (toml, notes, config) = import_and_load(&with_bom, WranglerFormat::Jsonc);
    assert_eq!(config.containers.len(), 2, "{toml}");
    let api = &config.containers[0];
    assert_eq!(api.image.as_deref(), Some("registry.example/api:1"));
    assert_eq!(api.instance_type, "basic");
    assert_eq!(
        api.env.get("URL").map(String::as_str),
        Some("http://x//y /* not a comment */"),
        "comment markers inside strings are text"
    );
    assert_eq!(api.env.get("LIMIT").map(String::as_str), Some("5"));
    let worker = &config.containers[1];
    assert_eq!(worker.cpu, Some(0.5));
    assert_eq!(
        config.assets.as_ref().unwrap().not_found_handling,
        "404-page"
    );
    assert_eq!(
        config.routes.len(),
        1,
        "the second class's route is a commented stub"
    );
    assert!(toml.contains("# container = \"Worker-2\""), "{toml}");
    for expected in ["kv_namespaces", "Counter", "disk_mb", "per-environment"] {
        assert!(
            notes.iter().any(|n| n.contains(expected)),
            "{expected}: {notes:?}"
        );
    }
}

#[test]
fn the_stripper_keeps_lines_and_strings() {
    let text = "{\"a\": \"//\\\"/*\", // x\n/* y\n */ \"b\": [1,],}";
    let json = strip_jsonc(text).unwrap();
    assert_eq!(json.lines().count(), text.lines().count());
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["a"], "//\"/*");
    assert_eq!(value["b"], serde_json::json!([1]));
}

#[test]
fn invalid_json_names_its_line() {
    let text = "{\n  // fine\n  \"name\": \"x\",\n  \"main\" \"src/index.ts\"\n}";
    let err = import_wrangler(text, WranglerFormat::Jsonc).unwrap_err();
    assert!(err.contains("line 4"), "{err}");
    let err = import_wrangler("{ /* open", WranglerFormat::Jsonc).unwrap_err();
    assert!(
        err.contains("unterminated") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn invalid_toml_names_its_line() {
    let err = import_wrangler("name = \"x\"\n[[containers]\n", WranglerFormat::Toml).unwrap_err();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn every_missing_field_is_reported_at_once() {
    let text = r#"{
      "containers": [{ "image": "./Dockerfile" }, { "class_name": "B", "max_instances": 0 }],
      "durable_objects": { "bindings": [{ "class_name": "B" }] },
      "assets": { "not_found_handling": "spa" }
    }"#;
    let err = import_wrangler(text, WranglerFormat::Jsonc).unwrap_err();
    for expected in [
        "containers[0].class_name is missing",
        "containers[1].image is missing",
        "containers[1].max_instances",
        "durable_objects.bindings[0].name is missing",
        "assets.directory is missing",
        "assets.not_found_handling",
    ] {
        assert!(err.contains(expected), "{expected}:\n{err}");
    }
}

#[test]
fn formats_by_extension() {
    let of = |p: &str| WranglerFormat::from_path(Path::new(p));
    assert_eq!(of("wrangler.jsonc"), Some(WranglerFormat::Jsonc));
    assert_eq!(of("wrangler.json"), Some(WranglerFormat::Jsonc));
    assert_eq!(of("wrangler.toml"), Some(WranglerFormat::Toml));
    assert_eq!(of("wrangler.yaml"), None);
}
