//! What valet assumes for every key left out, as model.rs documents it.

use std::path::{Path, PathBuf};
use std::time::Duration;
use valet_config::{load, parse_str, InstanceRule};

const MINIMAL: &str = r#"
[[containers]]
class_name = "Backend"
command = ["python3", "app.py"]

[[routes]]
pattern = "/api/*"
container = "Backend"
rate_limit = { requests = 10 }
liveness = {}
"#;

#[test]
fn an_empty_file_is_a_valid_config_with_every_default() {
    let config = parse_str("", Path::new("valet.toml"), Path::new("/srv/app")).unwrap();
    let server = &config.server;
    assert_eq!(server.listen, "127.0.0.1:8787");
    assert_eq!(server.admin_listen, "127.0.0.1:8788");
    assert_eq!(server.driver, "process");
    assert_eq!(server.store, "sqlite");
    assert_eq!(server.public_url(), "http://127.0.0.1:8787");
    assert_eq!(config.data_dir(), PathBuf::from("/srv/app/.valet"));
    assert_eq!(server.max_body_size.get(), 0);
    assert_eq!(server.timeouts.connect.get(), Duration::from_secs(5));
    assert_eq!(server.timeouts.first_byte.get(), Duration::from_secs(60));
    assert_eq!(server.timeouts.idle.get(), Duration::from_secs(300));
    assert_eq!(server.timeouts.header_read.get(), Duration::from_secs(10));
    assert!(server.access_log);
    assert!(server.tls.is_none() && server.trusted_proxies.is_empty());
    assert!(config.assets.is_none() && config.auth.is_none());
    assert!(config.containers.is_empty() && config.routes.is_empty() && config.plans.is_empty());
}

#[test]
fn a_class_and_a_route_get_their_documented_defaults() {
    let config = parse_str(
        MINIMAL.replace("liveness = {}\n", "").as_str(),
        Path::new("v.toml"),
        Path::new("/"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let class = config.class("Backend").unwrap();
    assert_eq!(class.sleep_after.get(), Duration::from_secs(600));
    assert_eq!(class.max_instances, 20);
    assert_eq!(class.min_instances, 0);
    assert_eq!(class.max_waiting, 10_000);
    assert_eq!(class.instance_type, "basic");
    assert_eq!(class.ports.len(), 1);
    assert_eq!(class.ports["http"], 8080);
    assert_eq!(class.default_port_name(), Some("http"));
    assert!(class.enable_internet);
    assert_eq!(
        (class.cpu, class.memory.as_ref(), class.volume.as_ref()),
        (None, None, None)
    );
    assert_eq!(class.readiness.path, None);
    assert_eq!(class.readiness.timeout.get(), Duration::from_secs(30));
    assert_eq!(class.readiness.interval.get(), Duration::from_millis(50));
    assert!(class.liveness.is_none());
    assert_eq!(class.stop_timeout.get(), Duration::from_secs(10));

    let route = &config.routes[0];
    assert_eq!(route.instance, "name:default");
    assert_eq!(route.rule(), InstanceRule::Name("default".into()));
    assert_eq!(route.upgrades, ["websocket"]);
    assert_eq!(
        (
            route.host.as_ref(),
            route.port.as_ref(),
            route.auth.as_ref()
        ),
        (None, None, None)
    );
    let limit = route.rate_limit.as_ref().unwrap();
    assert_eq!(
        (limit.per.get(), limit.by.as_str()),
        (Duration::from_secs(1), "ip")
    );
}

#[test]
fn a_key_in_the_wrong_table_is_unknown_there() {
    // `liveness` belongs to a class; under a route it is a mistake, not a silent no-op.
    let errors = parse_str(MINIMAL, Path::new("v.toml"), Path::new("/")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "v.toml:10:1: routes[0].liveness: unknown key \"liveness\" in routes[0]"
    );
}

#[test]
fn liveness_and_plan_defaults() {
    let text =
        "[[containers]]\nclass_name = \"A\"\ncommand = [\"a\"]\nliveness = {}\n[plans.free]\n";
    let config = parse_str(text, Path::new("v.toml"), Path::new("/")).unwrap();
    let liveness = config.containers[0].liveness.as_ref().unwrap();
    assert_eq!(liveness.interval.get(), Duration::from_secs(10));
    assert_eq!(liveness.timeout.get(), Duration::from_secs(2));
    assert_eq!(liveness.failures, 3);
    let free = &config.plans["free"];
    assert_eq!(
        (free.max_projects, free.max_running, free.max_upload.get()),
        (3, 1, 10_000_000)
    );
}

#[test]
fn load_makes_the_base_dir_absolute_even_for_a_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("public")).unwrap();
    std::fs::write(
        dir.path().join("valet.toml"),
        "[assets]\ndirectory = \"public\"\n",
    )
    .unwrap();
    // A relative path to the same file, from the test's working directory.
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd.components().count() - 1;
    let relative = PathBuf::from("../".repeat(ups)).join(dir.path().strip_prefix("/").unwrap());
    let config = load(&relative.join("valet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.base_dir.is_absolute(),
        "{}",
        config.base_dir.display()
    );
    assert!(config
        .resolve(&config.assets.as_ref().unwrap().directory)
        .is_dir());
}
