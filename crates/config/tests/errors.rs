//! Loading reports every problem of a file at once, each at its line and column.

use std::path::Path;
use valet_config::{load, parse_str, render_report, ConfigErrors};

/// Parses `text` as valet.toml in a folder where no file exists.
fn errors_of(text: &str) -> ConfigErrors {
    parse_str(
        text,
        Path::new("valet.toml"),
        Path::new("/nonexistent-valet-test"),
    )
    .expect_err("the config should be refused")
}

/// (line, column, key) of each error, for compact assertions.
fn positions(errors: &ConfigErrors) -> Vec<(usize, usize, &str)> {
    errors
        .errors
        .iter()
        .map(|e| (e.line, e.column, e.key.as_str()))
        .collect()
}

const FIVE_MISTAKES: &str = r#"[server]
listen = "127.0.0.1:9000"

[[containers]]
class_name = "Backend"
command = ["python3", "app.py", "--port", "{port}"]
ports = { http = 8080 }
sleep_after = "ten minutes"
sleep_aftr = "10m"

[[routes]]
pattern = "/api/*"
container = "Backend"
port = "admin"

[[routes]]
pattern = "/dash/*"
container = "Dashboard"
instance = "path:first"
"#;

#[test]
fn five_mistakes_are_all_reported_at_their_lines() {
    let errors = errors_of(FIVE_MISTAKES);
    assert_eq!(
        positions(&errors),
        vec![
            (8, 1, "containers[0].sleep_after"),
            (9, 1, "containers[0].sleep_aftr"),
            (14, 1, "routes[0].port"),
            (18, 1, "routes[1].container"),
            (19, 1, "routes[1].instance"),
        ]
    );
    let messages: Vec<&str> = errors.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages[0],
        "expected a number like \"30s\" or \"10m\": \"ten minutes\""
    );
    assert_eq!(messages[1], "unknown key \"sleep_aftr\" in containers[0]");
    assert_eq!(
        messages[2],
        "class \"Backend\" has no port \"admin\" (defined: http)"
    );
    assert_eq!(
        messages[3],
        "unknown container class \"Dashboard\" (defined: Backend)"
    );
    assert_eq!(
        messages[4],
        "instance rule \"path:first\": path segments count from 1"
    );

    let report = render_report(&errors);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines[3],
        "valet.toml:18:1: routes[1].container: unknown container class \"Dashboard\" (defined: Backend)"
    );
    assert_eq!(lines[5], "5 problems");
}

#[test]
fn a_syntax_error_gives_its_line_and_column() {
    let errors = errors_of("[server]\nlisten = \"127.0.0.1:8787\"\ndriver = process\n");
    assert_eq!(errors.errors.len(), 1);
    let error = &errors.errors[0];
    assert_eq!((error.line, error.column, error.key.as_str()), (3, 10, ""));
    assert!(
        error.message.starts_with("invalid string"),
        "{}",
        error.message
    );
    assert!(errors
        .to_string()
        .starts_with("valet.toml:3:10: invalid string"));
}

#[test]
fn a_duplicate_key_is_a_syntax_error_at_the_second_one() {
    let errors = errors_of("[server]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n");
    assert_eq!(positions(&errors), vec![(3, 1, "")]);
    assert_eq!(
        errors.errors[0].message,
        "duplicate key `listen` in table `server`"
    );
}

#[test]
fn type_errors_in_several_entries_are_all_reported() {
    let text = r#"
[[containers]]
class_name = "A"
command = ["a"]
max_instances = "many"
ports = { http = 70000 }

[[containers]]
command = ["b"]

[[routes]]
pattern = "/a/*"
container = "A"
rate_limit = { requests = -1 }
"#;
    let errors = errors_of(text);
    assert_eq!(
        positions(&errors),
        vec![
            (5, 17, "containers[0].max_instances"),
            (6, 18, "containers[0].ports.http"),
            (8, 1, "containers[1]"),
            (14, 27, "routes[0].rate_limit.requests"),
        ]
    );
    assert_eq!(
        errors.errors[0].message,
        "invalid type: string \"many\", expected u32"
    );
    assert_eq!(
        errors.errors[1].message,
        "invalid value: integer `70000`, expected u16"
    );
    assert_eq!(errors.errors[2].message, "missing field `class_name`");
    assert_eq!(
        errors.errors[3].message,
        "invalid value: integer `-1`, expected u32"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("valet.toml");
    let errors = load(&path).expect_err("there is no file");
    assert_eq!(errors.file, path);
    assert_eq!(positions(&errors), vec![(0, 0, "")]);
    assert!(errors.errors[0]
        .message
        .starts_with("cannot read the config file: "));
    let shown = errors.to_string();
    assert!(shown.starts_with(&format!("{}: cannot read the config file", path.display())));
    assert!(render_report(&errors).ends_with("\n1 problem\n"));
}

#[test]
fn load_reports_the_file_as_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("valet.toml");
    std::fs::write(&path, "[server]\ndriver = \"nomad\"\n").unwrap();
    let errors = load(&path).expect_err("an unknown driver is refused");
    assert_eq!(
        errors.to_string(),
        format!(
            "{}:2:1: server.driver: unknown driver \"nomad\" \
             (use \"process\", \"docker\", \"swarm\" or \"kubernetes\")",
            path.display()
        )
    );
}
