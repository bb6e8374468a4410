//! Each semantic check, one small config at a time: the key it blames, the line it reports and
//! what it says.

use std::path::Path;
use valet_config::parse_str;

/// A folder with `public/`, `cert.pem` and `jwt.pem`, so file checks can pass.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("public")).unwrap();
    std::fs::write(dir.path().join("cert.pem"), "pem").unwrap();
    std::fs::write(dir.path().join("jwt.pem"), "pem").unwrap();
    dir
}

/// The one problem `text` has: (line, key, message).
fn only_problem(text: &str) -> (usize, String, String) {
    let dir = folder();
    let errors = parse_str(text, Path::new("valet.toml"), dir.path())
        .expect_err(&format!("should be refused:\n{text}"));
    assert_eq!(
        errors.errors.len(),
        1,
        "expected one problem, got:\n{errors}"
    );
    let e = &errors.errors[0];
    (e.line, e.key.clone(), e.message.clone())
}

fn assert_problem(text: &str, line: usize, key: &str, message_part: &str) {
    let (got_line, got_key, message) = only_problem(text);
    assert_eq!((got_line, got_key.as_str()), (line, key), "{message}");
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
}

const CLASS: &str = "[[containers]]\nclass_name = \"App\"\ncommand = [\"app\"]\n";

#[test]
fn server_checks() {
    assert_problem(
        "[server]\nlisten = \"localhost\"\n",
        2,
        "server.listen",
        "socket address",
    );
    assert_problem(
        "[server]\nadmin_listen = \"127.0.0.1:8787\"\n",
        2,
        "server.admin_listen",
        "differ",
    );
    assert_problem(
        "[server]\nadmin_token = \"short\"\n",
        2,
        "server.admin_token",
        "at least 16 characters",
    );
    assert_problem(
        "[server]\ndriver = \"podman\"\n",
        2,
        "server.driver",
        "unknown driver \"podman\"",
    );
    assert_problem(
        "[server]\nstore = \"mysql://x\"\n",
        2,
        "server.store",
        "postgres://",
    );
    assert_problem(
        "[server]\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n",
        2,
        "server.tls.key",
        "does not exist",
    );
    assert_problem(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n",
        2,
        "server.trusted_proxies[1]",
        "not an IP address or CIDR block",
    );
    assert_problem(
        "[server]\nmax_body_size = \"lots\"\n",
        2,
        "server.max_body_size",
        "size",
    );
    assert_problem(
        "[server]\ntimeouts = { idle = \"5 min\" }\n",
        2,
        "server.timeouts.idle",
        "5 min",
    );
}

#[test]
fn port_zero_listeners_may_repeat() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    parse_str(text, Path::new("valet.toml"), folder().path()).expect("port 0 never clashes");
}

#[test]
fn assets_and_auth_checks() {
    assert_problem(
        "[assets]\ndirectory = \"dist\"\n",
        2,
        "assets.directory",
        "does not exist",
    );
    assert_problem(
        "[assets]\ndirectory = \"cert.pem\"\n",
        2,
        "assets.directory",
        "not a directory",
    );
    assert_problem(
        "[assets]\ndirectory = \"public\"\nnot_found_handling = \"spa\"\n",
        3,
        "assets.not_found_handling",
        "\"spa\" is unknown",
    );
    assert_problem("[auth]\nissuer = \"me\"\n", 1, "auth", "needs jwt_secret");
    assert_problem(
        "[auth]\njwt_public_keys = [\"nope.pem\"]\n",
        2,
        "auth.jwt_public_keys[0]",
        "nope.pem",
    );
}

#[test]
fn class_checks() {
    let class = |extra: &str| format!("{CLASS}{extra}\n");
    assert_problem(
        "[[containers]]\nclass_name = \"my app\"\ncommand = [\"a\"]\n",
        2,
        "containers[0].class_name",
        "A-Z",
    );
    assert_problem(
        &format!("{CLASS}{CLASS}"),
        5,
        "containers[1].class_name",
        "already defined by containers[0]",
    );
    assert_problem(
        "[[containers]]\nclass_name = \"App\"\n",
        1,
        "containers[0].command",
        "needs a command",
    );
    assert_problem(
        "[server]\ndriver = \"docker\"\n[[containers]]\nclass_name = \"App\"\n",
        3,
        "containers[0].image",
        "needs an image",
    );
    assert_problem(
        &class("ports = {}"),
        4,
        "containers[0].ports",
        "at least one port",
    );
    assert_problem(
        &class("ports = { Web = 80 }"),
        4,
        "containers[0].ports.Web",
        "a-z, 0-9",
    );
    assert_problem(
        &class("ports = { api = 1, dash = 2 }"),
        4,
        "containers[0].ports",
        "set default_port",
    );
    assert_problem(
        &class("default_port = \"web\""),
        4,
        "containers[0].default_port",
        "\"web\"",
    );
    assert_problem(
        &class("readiness = { port = \"web\" }"),
        4,
        "containers[0].readiness.port",
        "\"web\"",
    );
    assert_problem(
        &class("readiness = { path = \"up\" }"),
        4,
        "containers[0].readiness.path",
        "start with",
    );
    assert_problem(
        &class("liveness = { failures = 0 }"),
        4,
        "containers[0].liveness.failures",
        "at least 1",
    );
    assert_problem(
        &class("liveness = { path = \"up\" }"),
        4,
        "containers[0].liveness.path",
        "start with",
    );
    assert_problem(
        &class("env = { OK = \"b\", \"A.B\" = \"a\" }"),
        4,
        "containers[0].env.\"A.B\"",
        "environment variable",
    );
    assert_problem(
        &class("secrets = [\"OK\", \"NOT-OK\"]"),
        4,
        "containers[0].secrets[1]",
        "NOT-OK",
    );
    assert_problem(
        &class("instance_type = \"huge\""),
        4,
        "containers[0].instance_type",
        "standard-4",
    );
    assert_problem(&class("cpu = 0.0"), 4, "containers[0].cpu", "more than 0");
    assert_problem(
        &class("max_instances = 0"),
        4,
        "containers[0].max_instances",
        "at least 1",
    );
    assert_problem(
        &class("min_instances = 30"),
        4,
        "containers[0].min_instances",
        "(30) is more than max_instances (20)",
    );
    assert_problem(
        &class("max_waiting = 0"),
        4,
        "containers[0].max_waiting",
        "at least 1",
    );
    assert_problem(
        &class("memory = \"1 GiBi\""),
        4,
        "containers[0].memory",
        "size unit",
    );
    assert_problem(
        &class("stop_timeout = \"soon\""),
        4,
        "containers[0].stop_timeout",
        "soon",
    );
}

#[test]
fn route_checks() {
    let route = |lines: &str| format!("{CLASS}[[routes]]\n{lines}\n");
    assert_problem(
        &route("pattern = \"api/*\"\ncontainer = \"App\""),
        5,
        "routes[0].pattern",
        "start with \"/\"",
    );
    assert_problem(
        &route("pattern = \"/api/*/x\"\ncontainer = \"App\""),
        5,
        "routes[0].pattern",
        "last",
    );
    assert_problem(
        &route("pattern = \"/api*\"\ncontainer = \"App\""),
        5,
        "routes[0].pattern",
        "last",
    );
    assert_problem(
        &route("pattern = \"/a/*\"\ncontainer = \"App\"\nport = \"x\""),
        7,
        "routes[0].port",
        "no port \"x\"",
    );
    assert_problem(
        &route("pattern = \"/a/*\"\ncontainer = \"App\"\ninstance = \"random:0\""),
        7,
        "routes[0].instance",
        "at least 1",
    );
    assert_problem(
        &route("pattern = \"/a/*\"\ncontainer = \"App\"\nstrip_prefix = \"a\""),
        7,
        "routes[0].strip_prefix",
        "start with",
    );
    assert_problem(
        &route("pattern = \"/a/*\"\ncontainer = \"App\"\nstrip_prefix = \"/*/*\""),
        7,
        "routes[0].strip_prefix",
        "one \"*\"",
    );
    assert_problem(
        &route("pattern = \"/a/*\"\ncontainer = \"App\"\nstrip_prefix = \"/b\""),
        7,
        "routes[0].strip_prefix",
        "never matches",
    );
    assert_problem(
        &route("pattern = \"/a/*\"\ncontainer = \"App\"\nauth = \"basic\""),
        7,
        "routes[0].auth",
        "only \"jwt\"",
    );
    assert_problem(
        &route("pattern = \"/a/*\"\ncontainer = \"App\"\nauth = \"jwt\""),
        7,
        "routes[0].auth",
        "needs an [auth]",
    );
    assert_problem(
        &route("pattern = \"/\""),
        4,
        "routes[0]",
        "no [assets] section",
    );
    assert_problem(
        &route(
            "pattern = \"/a/*\"\ncontainer = \"App\"\nrate_limit = { requests = 5, by = \"user\" }",
        ),
        7,
        "routes[0].rate_limit.by",
        "\"user\" is unknown",
    );
    assert_problem(
        &route(
            "pattern = \"/a/*\"\ncontainer = \"App\"\nupgrades = [\"websocket\", \"web socket\"]",
        ),
        7,
        "routes[0].upgrades[1]",
        "no protocol name",
    );
    let twice = route("pattern = \"/a/*\"\ncontainer = \"App\"\nhost = \"Example.com\"\n[[routes]]\npattern = \"/a/*\"\ncontainer = \"App\"\nhost = \"example.com\"");
    assert_problem(&twice, 9, "routes[1].pattern", "duplicate route: routes[0]");
}

#[test]
fn accepted_forms_pass() {
    let text = format!(
        "{CLASS}ports = {{ api = 1, dash = 2 }}\ndefault_port = \"api\"\n\
         command = [\"app\", \"--dash={{port.dash}}\"]\n\
         [[routes]]\npattern = \"/containers/*\"\ncontainer = \"App\"\ninstance = \"path:1\"\n\
         strip_prefix = \"/containers/*\"\nport = \"dash\"\n\
         [[routes]]\npattern = \"/\"\nhost = \"a.example\"\n\
         [assets]\ndirectory = \"public\"\nnot_found_handling = \"404-page\"\n\
         [auth]\njwt_public_keys = [\"jwt.pem\"]\n\
         [server]\ntrusted_proxies = [\"10.0.0.1\", \"fd00::/8\"]\nstore = \"postgresql://u@h/db\"\n"
    );
    let text = text.replacen("command = [\"app\"]\n", "", 1);
    let dir = folder();
    let config =
        parse_str(&text, Path::new("valet.toml"), dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.routes[0].rule(), valet_config::InstanceRule::Path(1));
    assert_eq!(
        config.class("App").unwrap().default_port_name(),
        Some("api")
    );
    assert_eq!(config.server.trusted_proxy_nets().len(), 2);
}

/// A `[cluster]` that passes, on the PostgreSQL store.
const CLUSTER: &str = r#"[server]
store = "postgres://valet@db/valet"

[cluster]
node = "gw-a"
listen = "10.0.0.11:8789"
secret = "0123456789abcdef0123456789abcdef"
"#;

#[test]
fn cluster_checks() {
    let dir = folder();
    parse_str(CLUSTER, Path::new("valet.toml"), dir.path()).expect("a valid cluster");
    // Replicas share their leases through PostgreSQL: SQLite cannot be shared.
    let (line, key, message) =
        only_problem(&CLUSTER.replace("postgres://valet@db/valet", "sqlite"));
    assert_eq!((line, key.as_str()), (2, "server.store"), "{message}");
    assert!(message.contains("needs the PostgreSQL store"), "{message}");
    let (_, key, message) =
        only_problem(&CLUSTER.replace("[server]\nstore = \"postgres://valet@db/valet\"\n", ""));
    assert_eq!(
        key, "server.store",
        "the default store is SQLite: {message}"
    );
    assert_problem(
        &CLUSTER.replace("0123456789abcdef0123456789abcdef", "short-secret"),
        7,
        "cluster.secret",
        "at least 32",
    );
    assert_problem(
        &CLUSTER.replace("secret = \"0123456789abcdef0123456789abcdef\"\n", ""),
        4,
        "cluster",
        "needs secret (or secret_file)",
    );
    assert_problem(
        &CLUSTER.replace("gw-a", "gw a"),
        5,
        "cluster.node",
        "unique in the cluster",
    );
    assert_problem(
        &CLUSTER.replace("10.0.0.11:8789", "0.0.0.0:8789"),
        4,
        "cluster.advertise",
        "set advertise",
    );
    assert_problem(
        &format!("{CLUSTER}lease_ttl = \"500ms\"\n"),
        8,
        "cluster.lease_ttl",
        "at least 1s",
    );
}

#[test]
fn scale_checks() {
    // Issue 21: a class scales only without a volume, and within sane bounds.
    let text = format!("{CLASS}volume = \"/data\"\nscale = {{ max_replicas = 4 }}\n");
    let (line, key, message) = only_problem(&text);
    assert_eq!(
        (line, key.as_str()),
        (5, "containers[0].scale"),
        "{message}"
    );
    for part in ["\"App\"", "scale", "volume"] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    assert_problem(
        &format!("{CLASS}scale = {{ max_replicas = 0 }}\n"),
        4,
        "containers[0].scale.max_replicas",
        "at least 1",
    );
    assert_problem(
        &format!("{CLASS}scale = {{ max_replicas = 2, target_concurrency = 0 }}\n"),
        4,
        "containers[0].scale.target_concurrency",
        "at least 1",
    );
    assert_problem(
        &format!("{CLASS}max_instances = 4\nscale = {{ max_replicas = 5 }}\n"),
        5,
        "containers[0].scale.max_replicas",
        "more than max_instances (4)",
    );
    assert_problem(
        &format!("{CLASS}scale = {{ max_replicas = 2, target = 3 }}\n"),
        4,
        "containers[0].scale.target",
        "unknown key",
    );
    let dir = folder();
    let config = parse_str(
        &format!("{CLASS}scale = {{ max_replicas = 8 }}\n"),
        Path::new("valet.toml"),
        dir.path(),
    )
    .expect("a class without a volume may scale");
    let scale = config.containers[0].scale.expect("scale read");
    assert_eq!((scale.max_replicas, scale.target_concurrency), (8, 1));
}
