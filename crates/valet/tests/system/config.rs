//! Config mistakes through the binary: `valet check` lists every one with its line, `valet up`
//! refuses the file without starting anything, and one data_dir serves one valet.

use crate::support::*;
use std::path::Path;
use std::time::Duration;

/// Five mistakes on lines 3, 10, 11, 15 and 16.
const FIVE_MISTAKES: &str = r#"# line 1
[server]
listen = "127.0.0.1:not-a-port"
data_dir = "data"

[[containers]]
class_name = "Api"
command = ["python3", "app.py"]
# line 9
sleep_after = "ten minutes"
max_instances = -1

[[routes]]
pattern = "/api/*"
container = "Nope"
instance = "sometimes:1"
"#;

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("valet.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn output_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_lists_all_five_mistakes_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), FIVE_MISTAKES);

    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "check passed a broken config:\n{text}"
    );
    for (line, key) in [
        (3, "server.listen"),
        (10, "containers[0].sleep_after"),
        (11, "containers[0].max_instances"),
        (15, "routes[0].container"),
        (16, "routes[0].instance"),
    ] {
        let found = text
            .lines()
            .any(|l| l.starts_with(&format!("{path}:{line}:")) && l.contains(key));
        assert!(found, "no line-{line} report for {key} in:\n{text}");
    }
    assert!(text.contains("5 problems"), "{text}");
}

#[test]
fn up_refuses_a_broken_config_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), FIVE_MISTAKES);

    let out = Valet::run(&["up", &path], Duration::from_secs(20));
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "up accepted a broken config:\n{text}"
    );
    assert!(
        text.contains("5 problems") && text.contains(":16:"),
        "{text}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "up created its data_dir before refusing"
    );
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    // As root, check refuses a data_dir that deployed projects cannot reach (a tempdir may be
    // 0700, under a umask of 077).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let config = format!(
        "[[containers]]\nclass_name = \"Api\"\ncommand = [\"python3\", \"{BACKEND}\"]\n\n\
         [[routes]]\npattern = \"/api/*\"\ncontainer = \"Api\"\n"
    );
    let path = write_config(dir.path(), &config);
    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    assert!(out.status.success(), "{}", output_text(&out));
}

#[tokio::test]
async fn a_second_valet_on_the_same_data_dir_is_refused() {
    let first = Valet::with_config(
        r#"
        [server]
        data_dir = "shared-data"

        [[containers]]
        class_name = "Echo"

        [[routes]]
        pattern = "/api/*"
        container = "Echo"
        "#,
    )
    .start()
    .await;
    let data_dir = first.dir().join("shared-data");

    let other = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"{}\"\nadmin_listen = \"{}\"\ndata_dir = \"{}\"\n",
        free_addr(),
        free_addr(),
        data_dir.display()
    );
    let path = write_config(other.path(), &config);
    let out = Valet::run(&["up", &path], Duration::from_secs(20));
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "a second valet ran on a locked data_dir:\n{text}"
    );
    assert!(
        text.contains("another valet is running"),
        "unclear refusal:\n{text}"
    );
    assert!(
        text.contains(&data_dir.display().to_string()),
        "the message names the data_dir:\n{text}"
    );

    // The first one is unaffected.
    assert_eq!(first.echo("/api/echo").await["class"], "Echo");
}

#[test]
fn check_warns_but_passes_when_a_docker_class_asks_for_more_cpus_than_the_host_has() {
    let dir = tempfile::tempdir().unwrap();
    // No host has 4096 cores; the second class overrides its big instance type downwards.
    let config = "[server]\ndriver = \"docker\"\n\n\
         [[containers]]\nclass_name = \"Greedy\"\nimage = \"busybox:valet-check\"\ncpu = 4096\n\n\
         [[containers]]\nclass_name = \"Modest\"\nimage = \"busybox:valet-check\"\n\
         instance_type = \"standard-4\"\ncpu = 0.5\n";
    let path = write_config(dir.path(), config);
    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    let text = output_text(&out);
    assert!(out.status.success(), "a warning is not a failure: {text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("class `Greedy`: cpu = 4096 asks for 4096 CPUs")
            && warnings[0].contains("clamps it to"),
        "{text}"
    );

    // The process driver sets no CPU limit: nothing to warn about.
    let process = config.replace("driver = \"docker\"", "driver = \"process\"");
    let path = write_config(dir.path(), &process);
    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    assert!(
        !output_text(&out).contains("warning:"),
        "{}",
        output_text(&out)
    );
}

const ADMIN_TOKEN_CONFIG: &str =
    "[server]\nadmin_token = \"config-mode-test-token-0123456789abcdef\"\n";

fn chmod(path: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn check_warns_when_a_config_holding_a_secret_is_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), ADMIN_TOKEN_CONFIG);
    chmod(&path, 0o644);
    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    let text = output_text(&out);
    assert!(out.status.success(), "a warning is not a failure: {text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    for part in [
        path.as_str(),
        "server.admin_token",
        "mode 0644",
        &format!("`chmod 600 {path}`"),
    ] {
        assert!(warnings[0].contains(part), "no {part:?} in: {text}");
    }

    chmod(&path, 0o600);
    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("warning:"), "0600 is right: {text}");

    // The JWT signing secret is one too, and a group is enough to be told.
    let path = write_config(dir.path(), "[auth]\njwt_secret = \"s3cret-s3cret\"\n");
    chmod(&path, 0o640);
    let text = output_text(&Valet::run(&["check", &path], Duration::from_secs(20)));
    assert!(
        text.contains("warning:") && text.contains("auth.jwt_secret") && text.contains("mode 0640"),
        "{text}"
    );
}

#[test]
fn check_reports_a_mistyped_deploys_per_hour_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[plans.free]\nmax_projects = 3\ndeploys_per_hour = -1\n",
    );
    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{path}:3:")) && text.contains("plans.free.deploys_per_hour"),
        "{text}"
    );
}

#[tokio::test]
async fn up_warns_when_its_config_holding_a_secret_is_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let valet = Valet::with_config(ADMIN_TOKEN_CONFIG).start().await;
    // The test harness writes valet.toml under this process's umask: the warning must follow
    // the mode the file really has.
    let config = valet.dir().join("valet.toml");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    let log = valet.log();
    let fix = format!("chmod 600 {}", config.display());
    if mode & 0o044 != 0 {
        assert!(
            log.contains(&fix) && log.contains(&format!("mode {mode:04o}")),
            "{log}"
        );
    } else {
        assert!(!log.contains("chmod 600"), "mode {mode:o}: {log}");
    }
}
