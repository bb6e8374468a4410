//! DESIGN.md's full valet.toml block, and every alternative its comments name, parses as
//! documented once the files it names exist.

use std::path::{Path, PathBuf};
use std::time::Duration;
use valet_config::{load, parse_str, Config, InstanceRule};

/// The block from DESIGN.md, verbatim.
const DESIGN_BLOCK: &str = r#"[server]
listen = "127.0.0.1:8787"            # public gateway
admin_listen = "127.0.0.1:8788"      # control plane: admin API, deploy API, /metrics, dashboard
data_dir = ".valet"                  # store, instance data, logs; locked (flock) by one valet at a time
driver = "process"                   # "process" | "docker" ("kubernetes" is refused until it exists)
public_url = "http://127.0.0.1:8787" # base of endpoint URLs handed out
store = "sqlite"                     # or "postgres://user@host/db"
tls = { cert = "cert.pem", key = "key.pem" }   # optional, rustls, on the public listener
trusted_proxies = []                 # X-Forwarded-* from anyone else is replaced, never trusted
max_body_size = "0"                  # 0 = no limit on proxied bodies; over a limit: 413
timeouts = { connect = "5s", first_byte = "60s", idle = "5m", header_read = "10s" }

[assets]
directory = "public"
not_found_handling = "single-page-application"   # | "404-page" | "none" (Workers' names)

[[containers]]
class_name = "Backend"
command = ["python3", "app.py"]      # process driver; "{port}" / "{port.NAME}" placeholders allowed
image = "./Dockerfile"               # docker driver: a Dockerfile path or an image reference
ports = { http = 8080 }              # named ports inside the instance
default_port = "http"
env = { LOG_LEVEL = "info" }
secrets = ["INSTANCE_SECRET"]
sleep_after = "10m"
max_instances = 20
min_instances = 0
max_waiting = 10000                  # requests that may wait for one starting instance
instance_type = "basic"              # Cloudflare's names: lite, basic, standard-1..4
cpu = 0.25                           # optional overrides of instance_type
memory = "1GiB"
enable_internet = true
volume = "/data"                     # per-instance persistent storage
user = "nobody"                      # optional: run the instance as this user
readiness = { path = "/health", timeout = "30s" }   # timeout = whole start deadline; no path: TCP
liveness = { path = "/health", interval = "10s", failures = 3 }  # optional: restart a hung instance
stop_timeout = "10s"

[[routes]]
pattern = "/api/*"                   # matches /api and /api/..., not /apiary
host = "example.com"                 # optional
container = "Backend"
instance = "name:backend"   # name:<fixed> | path:<n> | header:<Name> | query:<name> | cookie:<name> | random:<N>
port = "http"
strip_prefix = "/api"                # may hold "*" for one segment: "/containers/*"
auth = "jwt"                         # optional: JWT checked before any instance is woken
rate_limit = { requests = 100, per = "1s", by = "ip" }   # optional; 429 + Retry-After

[auth]
jwt_secret = "..."                   # HS256, or:
jwt_public_keys = ["jwt.pem"]        # RS256 / ES256
issuer = "..."                       # optional checks
audience = "..."

[plans.free]
max_projects = 3
max_running = 1
max_upload = "10MB"
"#;

/// A folder holding what the block names: public/, cert.pem, key.pem, jwt.pem, Dockerfile.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("public")).unwrap();
    for file in ["cert.pem", "key.pem", "jwt.pem", "Dockerfile"] {
        std::fs::write(dir.path().join(file), "x").unwrap();
    }
    dir
}

fn parse_in(dir: &Path, text: &str) -> Config {
    parse_str(text, Path::new("valet.toml"), dir).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

#[test]
fn the_design_block_parses_with_every_value() {
    let dir = folder();
    std::fs::write(dir.path().join("valet.toml"), DESIGN_BLOCK).unwrap();
    let config = load(&dir.path().join("valet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.base_dir, dir.path());
    let server = &config.server;
    assert_eq!(server.listen, "127.0.0.1:8787");
    assert_eq!(server.admin_listen, "127.0.0.1:8788");
    assert_eq!(config.data_dir(), dir.path().join(".valet"));
    assert_eq!(server.driver, "process");
    assert_eq!(server.public_url(), "http://127.0.0.1:8787");
    assert_eq!(server.store, "sqlite");
    assert_eq!(
        config.resolve(&server.tls.as_ref().unwrap().cert),
        dir.path().join("cert.pem")
    );
    assert!(server.trusted_proxy_nets().is_empty());
    assert_eq!(server.max_body_size.get(), 0);
    assert_eq!(server.timeouts.connect.get(), Duration::from_secs(5));
    assert_eq!(server.timeouts.first_byte.get(), Duration::from_secs(60));
    assert_eq!(server.timeouts.idle.get(), Duration::from_secs(300));
    assert_eq!(server.timeouts.header_read.get(), Duration::from_secs(10));

    let assets = config.assets.as_ref().unwrap();
    assert_eq!(config.resolve(&assets.directory), dir.path().join("public"));
    assert_eq!(assets.not_found_handling, "single-page-application");

    let class = config.class("Backend").expect("class Backend");
    assert_eq!(class.command, ["python3", "app.py"]);
    assert_eq!(class.image.as_deref(), Some("./Dockerfile"));
    assert_eq!(class.ports.get("http"), Some(&8080));
    assert_eq!(class.default_port_name(), Some("http"));
    assert_eq!(class.env.get("LOG_LEVEL").map(String::as_str), Some("info"));
    assert_eq!(class.secrets, ["INSTANCE_SECRET"]);
    assert_eq!(class.sleep_after.get(), Duration::from_secs(600));
    assert_eq!(
        (class.max_instances, class.min_instances, class.max_waiting),
        (20, 0, 10_000)
    );
    assert_eq!(class.instance_type, "basic");
    assert_eq!(class.cpu, Some(0.25));
    assert_eq!(class.memory.as_ref().unwrap().get(), 1 << 30);
    assert!(class.enable_internet);
    assert_eq!(class.volume.as_deref(), Some("/data"));
    assert_eq!(class.user.as_deref(), Some("nobody"));
    assert_eq!(class.readiness.path.as_deref(), Some("/health"));
    assert_eq!(class.readiness.timeout.get(), Duration::from_secs(30));
    let liveness = class.liveness.as_ref().unwrap();
    assert_eq!(
        (liveness.path.as_deref(), liveness.failures),
        (Some("/health"), 3)
    );
    assert_eq!(liveness.interval.get(), Duration::from_secs(10));
    assert_eq!(class.stop_timeout.get(), Duration::from_secs(10));

    let route = &config.routes[0];
    assert_eq!(route.pattern, "/api/*");
    assert_eq!(route.host.as_deref(), Some("example.com"));
    assert_eq!(route.container.as_deref(), Some("Backend"));
    assert_eq!(route.rule(), InstanceRule::Name("backend".into()));
    assert_eq!(route.port.as_deref(), Some("http"));
    assert_eq!(route.strip_prefix.as_deref(), Some("/api"));
    assert_eq!(route.auth.as_deref(), Some("jwt"));
    let limit = route.rate_limit.as_ref().unwrap();
    assert_eq!(
        (limit.requests, limit.per.get(), limit.by.as_str()),
        (100, Duration::from_secs(1), "ip")
    );

    let auth = config.auth.as_ref().unwrap();
    assert_eq!(auth.jwt_secret.as_deref(), Some("..."));
    assert_eq!(auth.jwt_public_keys, [PathBuf::from("jwt.pem")]);
    assert_eq!(
        (auth.issuer.as_deref(), auth.audience.as_deref()),
        (Some("..."), Some("..."))
    );

    let free = &config.plans["free"];
    assert_eq!(
        (free.max_projects, free.max_running, free.max_upload.get()),
        (3, 1, 10_000_000)
    );
}

/// Swaps one line of the block for `with`, the way a user picks an alternative.
fn variant(line_start: &str, with: &str) -> String {
    let mut found = false;
    let text: Vec<String> = DESIGN_BLOCK
        .lines()
        .map(|line| {
            if line.starts_with(line_start) && !found {
                found = true;
                with.to_string()
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(found, "no line starts with {line_start:?}");
    text.join("\n")
}

#[test]
fn every_alternative_the_comments_name_parses() {
    let dir = folder();
    let docker = parse_in(dir.path(), &variant("driver =", "driver = \"docker\""));
    assert_eq!(docker.server.driver, "docker");
    let postgres = parse_in(
        dir.path(),
        &variant("store =", "store = \"postgres://user@host/db\""),
    );
    assert_eq!(postgres.server.store, "postgres://user@host/db");
    for handling in ["404-page", "none"] {
        let text = variant(
            "not_found_handling",
            &format!("not_found_handling = \"{handling}\""),
        );
        assert_eq!(
            parse_in(dir.path(), &text)
                .assets
                .unwrap()
                .not_found_handling,
            handling
        );
    }
    let rules = [
        ("path:2", InstanceRule::Path(2)),
        ("header:X-Project", InstanceRule::Header("X-Project".into())),
        ("query:project", InstanceRule::Query("project".into())),
        ("cookie:sid", InstanceRule::Cookie("sid".into())),
        ("random:4", InstanceRule::Random(4)),
    ];
    for (raw, rule) in rules {
        let config = parse_in(
            dir.path(),
            &variant("instance =", &format!("instance = \"{raw}\"")),
        );
        assert_eq!(config.routes[0].rule(), rule);
    }
    let per_project = variant("pattern =", "pattern = \"/containers/*\"").replace(
        "strip_prefix = \"/api\"",
        "strip_prefix = \"/containers/*\"",
    );
    let config = parse_in(dir.path(), &per_project);
    assert_eq!(
        config.routes[0].strip_prefix.as_deref(),
        Some("/containers/*")
    );
    for placeholder in ["{port}", "{port.http}"] {
        let text = variant(
            "command =",
            &format!("command = [\"app\", \"--port={placeholder}\"]"),
        );
        assert_eq!(
            parse_in(dir.path(), &text).containers[0].command[1],
            format!("--port={placeholder}")
        );
    }
    let without_path = variant("readiness =", "readiness = { timeout = \"30s\" }");
    assert_eq!(
        parse_in(dir.path(), &without_path).containers[0]
            .readiness
            .path,
        None
    );
}

#[test]
fn the_block_names_files_that_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let errors = parse_str(DESIGN_BLOCK, Path::new("valet.toml"), dir.path()).unwrap_err();
    let keys: Vec<&str> = errors.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.tls.cert",
            "server.tls.key",
            "assets.directory",
            "auth.jwt_public_keys[0]"
        ]
    );
    assert_eq!((errors.errors[0].line, errors.errors[0].column), (8, 9));
}
