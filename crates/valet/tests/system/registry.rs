//! Images from registries, against real ones: Debian's `docker-registry` (the distribution
//! server) on 127.0.0.1, one open and one behind htpasswd auth, which the engine treats as
//! insecure (plain HTTP) registries. A FROM-scratch busybox image is pushed there and removed
//! from the engine; valet pulls it on the first request, with `[[registries]]` credentials or
//! the user's Docker config, and answers 503 naming the reason when it cannot (a wrong
//! password, an unknown tag, `pull = "never"`). `valet check --pull` says the same ahead. A
//! registry's password can also come from valet's secret store (`valet secret put NAME
//! --registry`), from valet's next start.
//!
//! Without an engine or the registry these tests fail under `CI=true` and are skipped with a
//! reason otherwise.

use crate::deploy_support::{cli, cli_with_stdin, Restarted};
use crate::support::docker::*;
use crate::support::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
COPY www /www\n";
pub(crate) const USER: &str = "valet-ci";
pub(crate) const PASSWORD: &str = "registry-password-1";

/// Whether the registry tests can run: the engine, busybox, `docker-registry` and
/// `htpasswd` (apache2-utils) are all here. Under `CI=true` a missing piece fails the test.
pub(crate) fn ready() -> bool {
    engine_ready() && tools_ready()
}

/// Whether `docker-registry` and `htpasswd` (apache2-utils) are here (a test whose engines
/// are its own, such as the swarm lab's, needs no more). Under `CI=true` a missing one fails
/// the test.
pub(crate) fn tools_ready() -> bool {
    let missing = ["docker-registry", "htpasswd"].into_iter().find(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
    });
    let Some(tool) = missing else { return true };
    let reason = format!("no {tool} (apt-get install docker-registry apache2-utils)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true: registry tests must run)");
    }
    eprintln!("skipped: {reason}");
    false
}

/// A `docker-registry serve` on a loopback port with its storage in a temp folder; killed
/// when dropped.
pub(crate) struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    port: u16,
    _dir: TempDir,
}

impl Registry {
    /// `auth`: only `USER` / `PASSWORD` may pull or push (htpasswd, bcrypt).
    pub fn start(auth: bool) -> Self {
        Self::start_at(auth, free_addr(), &[])
    }

    /// Listening on `addr`, run under `wrapper` (such as `nsenter --net=...`: a lab's
    /// namespace, where swarm nodes reach it).
    pub fn start_at(auth: bool, addr: std::net::SocketAddr, wrapper: &[String]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("valet-e2e-registry-")
            .tempdir()
            .unwrap();
        let port = addr.port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if auth {
            let line = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd");
            assert!(line.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: valet-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        // The wrapper execs the registry: the child's pid is the registry's.
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg("docker-registry");
                command
            }
            None => Command::new("docker-registry"),
        };
        let child = command
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let registry = Self {
            child,
            host: addr.to_string(),
            port,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    /// Until `/v2/` answers (200 open, 401 with auth).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {}", self.host);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the docker CLI (with `config` as its `--config` when given); panics with its output
/// when it fails.
pub(crate) fn docker_ok(config: Option<&Path>, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut command = Command::new("docker");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker CLI");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the busybox web image serving `content` as /index.html, pushes it under every tag
/// in `tags` (logged in to `login`'s registry first, with a Docker config folder of the
/// test's own), and removes it from the engine again: the registries are the only place it is.
pub(crate) fn push_image(tags: &[String], content: &str, login: Option<(&Path, &str)>) {
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let context = busybox_context(DOCKERFILE);
    put(context.path(), "www/index.html", content, false);
    // Tests of this file run at once in one process: each build has a tag of its own.
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let local = format!("valet-e2e-registry-build:{}-{n}", std::process::id());
    let dir = context.path().to_str().unwrap();
    docker_ok(None, &["build", "-q", "-t", &local, dir], None);
    let config = login.map(|(config, _)| config);
    if let Some((config, host)) = login {
        let url = format!("http://{host}");
        let args = ["login", "-u", USER, "--password-stdin", &url];
        docker_ok(Some(config), &args, Some(PASSWORD));
    }
    for tag in tags {
        docker_ok(None, &["tag", &local, tag], None);
        docker_ok(config, &["push", tag], None);
        docker_ok(None, &["rmi", tag], None);
    }
    docker_ok(None, &["rmi", &local], None);
}

/// Removes the images valet pulled, however the test ends: by reference, and by id for those
/// a moved tag left untagged. Declare it before anything whose drop removes containers or
/// images built on them, so it drops last.
pub(crate) struct RemoveImages(pub Vec<String>);

impl RemoveImages {
    /// Also removes the image `reference` names now, whatever tag it has by then.
    pub fn keep_id(&mut self, reference: &str) {
        let id = docker(&["image", "inspect", "-f", "{{.Id}}", reference]);
        let id = id.trim();
        if !id.is_empty() {
            self.0.push(id.to_string());
        }
    }
}

impl Drop for RemoveImages {
    fn drop(&mut self) {
        for image in &self.0 {
            docker(&["rmi", "-f", image]);
        }
    }
}

fn class(name: &str, image: &str, extra: &str) -> String {
    format!(
        r#"
        [[containers]]
        class_name = "{name}"
        image = "{image}"
        command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
        readiness = {{ path = "/index.html", timeout = "60s" }}
        instance_type = "lite"
        stop_timeout = "1s"
        {extra}

        [[routes]]
        pattern = "/{name}/*"
        container = "{name}"
        instance = "name:one"
        strip_prefix = "/{name}"
        "#
    )
}

/// A 503 whose JSON message names `image` and holds `reason`, with `Retry-After`.
async fn refused(valet: &Valet, path: &str, image: &str, reason: &str) {
    let response = valet.get(path).await;
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body = response.text().await.unwrap();
    assert_eq!(status, 503, "{path}: {body}\n{}", valet.log());
    assert!(retry_after.is_some(), "{path}: no Retry-After");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    let message = json["message"].as_str().unwrap_or_default();
    eprintln!("{path}: 503, Retry-After {retry_after:?}: {message}");
    assert!(
        message.contains(image) && message.to_ascii_lowercase().contains(reason),
        "{path}: {reason:?} and {image} not in {message:?}"
    );
}

/// Every instance log under valet's data folder, joined.
fn instance_logs(dir: &Path) -> String {
    let mut all = String::new();
    let mut folders = vec![dir.join(".valet/logs")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    all
}

#[tokio::test]
async fn images_only_in_a_registry_are_pulled_on_the_first_request_and_failures_are_named() {
    if !ready() {
        return;
    }
    let open = Registry::start(false);
    let locked = Registry::start(true);
    let id = std::process::id();
    let web = format!("{}/valet-e2e-{id}/web:v1", open.host);
    let never = format!("{}/valet-e2e-{id}/never:v1", open.host);
    let private = format!("{}/valet-e2e-{id}/private:v1", locked.host);
    let from_login = format!("{}/valet-e2e-{id}/login:v1", locked.host);
    let base = format!("{}/valet-e2e-{id}/base:v1", locked.host);
    // The same registry under another name, so it can have a [[registries]] entry of its own
    // (a wrong password); the engine treats localhost as insecure too.
    let wrong = format!("localhost:{}/valet-e2e-{id}/private:v1", locked.port);
    let unknown = format!("{}/valet-e2e-{id}/web:no-such-tag", open.host);
    // A registry nobody runs.
    let down = format!("{}/valet-e2e-{id}/web:v1", free_addr());
    let login = tempfile::tempdir().unwrap();
    push_image(
        &[
            web.clone(),
            never.clone(),
            private.clone(),
            from_login.clone(),
            base.clone(),
        ],
        "hello from a registry\n",
        Some((login.path(), &locked.host)),
    );
    let _remove = RemoveImages(vec![
        web.clone(),
        never.clone(),
        private.clone(),
        from_login.clone(),
        wrong.clone(),
        base.clone(),
    ]);
    let classes = [
        format!("RegOpen{id}"),
        format!("RegAuth{id}"),
        format!("RegWrong{id}"),
        format!("RegUnknown{id}"),
        format!("RegNever{id}"),
        format!("RegLogin{id}"),
        format!("RegBuild{id}"),
        format!("RegDown{id}"),
    ];
    let _cleanup: Vec<Cleanup> = classes.iter().cloned().map(Cleanup).collect();
    let [c_open, c_auth, c_wrong, c_unknown, c_never, c_login, c_build, c_down] = &classes;

    let mut toml = format!(
        r#"
        [server]
        driver = "docker"

        [[registries]]
        host = "{locked_host}"
        username = "{USER}"
        password_secret = "VALET_TEST_REGISTRY_PASSWORD"

        [[registries]]
        host = "localhost:{locked_port}"
        username = "{USER}"
        password_secret = "VALET_TEST_WRONG_PASSWORD"
        "#,
        locked_host = locked.host,
        locked_port = locked.port,
    );
    toml.push_str(&class(c_open, &web, ""));
    toml.push_str(&class(c_auth, &private, ""));
    toml.push_str(&class(c_wrong, &wrong, ""));
    toml.push_str(&class(c_unknown, &unknown, ""));
    toml.push_str(&class(c_never, &never, "pull = \"never\""));
    toml.push_str(&class(c_down, &down, ""));
    // A Dockerfile whose FROM is only in the registry with auth: the engine pulls it during
    // the build, with the credentials valet hands it.
    toml.push_str(&class(c_build, "./from-registry/Dockerfile", ""));
    let dockerfile = format!("FROM {base}\n");
    let valet = Valet::with_config(&toml)
        .assets(&[("from-registry/Dockerfile", &dockerfile)])
        .env("VALET_TEST_REGISTRY_PASSWORD", PASSWORD)
        .env("VALET_TEST_WRONG_PASSWORD", "not-the-password")
        .start()
        .await;

    // Pulled on the first request, which waits as for any cold start.
    assert_eq!(
        text(&valet, &format!("/{c_open}/index.html")).await,
        "hello from a registry\n"
    );
    assert_eq!(
        text(&valet, &format!("/{c_auth}/index.html")).await,
        "hello from a registry\n"
    );
    assert_eq!(
        text(&valet, &format!("/{c_build}/index.html")).await,
        "hello from a registry\n"
    );
    let log = valet.log();
    assert!(
        log.contains("Pull complete"),
        "no layer milestones in valet's log:\n{log}"
    );
    assert!(!log.contains(PASSWORD), "the password reached valet's log");
    let instance_log = instance_logs(valet.dir());
    assert!(
        instance_log.contains(&format!("pulling image {web}"))
            && instance_log.contains("Pull complete"),
        "no pull progress in the instance logs:\n{instance_log}"
    );

    refused(&valet, &format!("/{c_wrong}/"), &wrong, "unauthorized").await;
    refused(&valet, &format!("/{c_unknown}/"), &unknown, "unknown").await;
    refused(&valet, &format!("/{c_never}/"), &never, "pull = \"never\"").await;
    refused(
        &valet,
        &format!("/{c_down}/"),
        &down,
        "could not be reached: it refused the connection",
    )
    .await;
    assert!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &never])
            .trim()
            .is_empty(),
        "pull = \"never\" pulled"
    );

    // `check --pull` asks the registries ahead of time with the same credentials.
    let check = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(["check", "--pull"])
        .arg(valet.dir().join("valet.toml"))
        .env("VALET_TEST_REGISTRY_PASSWORD", PASSWORD)
        .env("VALET_TEST_WRONG_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    eprintln!("valet check --pull:\n{said}");
    assert!(!check.status.success(), "check --pull passed:\n{said}");
    assert!(
        said.contains(&format!("class `{c_open}`: image {web} resolves (sha256:")),
        "{said}"
    );
    assert!(
        said.contains(&format!("class `{c_auth}`: image {private} resolves")),
        "{said}"
    );
    assert!(
        said.contains(&format!("class `{c_build}` (FROM): image {base} resolves")),
        "{said}"
    );
    for bad in [c_wrong, c_unknown, c_never, c_down] {
        assert!(
            said.contains(&format!("error: class `{bad}`")),
            "{bad}: {said}"
        );
    }
    assert!(!said.contains(PASSWORD), "check printed the password");
    drop(valet);

    // No [[registries]] entry: the user's Docker config (`docker login`) is used, as by
    // `docker pull`.
    let toml = format!(
        "[server]\ndriver = \"docker\"\n{}",
        class(c_login, &from_login, "")
    );
    let valet = Valet::with_config(&toml)
        .env("DOCKER_CONFIG", login.path().to_str().unwrap())
        .start()
        .await;
    assert_eq!(
        text(&valet, &format!("/{c_login}/index.html")).await,
        "hello from a registry\n"
    );
}

/// Files under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                folders.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn a_registry_password_put_in_valets_secret_store_pulls_from_the_next_start() {
    if !ready() {
        return;
    }
    let locked = Registry::start(true);
    let id = std::process::id();
    let image = format!("{}/valet-e2e-{id}/stored:v1", locked.host);
    let login = tempfile::tempdir().unwrap();
    let content = "pulled with a stored password\n";
    push_image(
        std::slice::from_ref(&image),
        content,
        Some((login.path(), &locked.host)),
    );
    let _remove = RemoveImages(vec![image.clone()]);
    let name = format!("RegStored{id}");
    let _cleanup = Cleanup(name.clone());
    // In neither the test's environment nor valet's.
    let secret = format!("VALET_TEST_STORED_PASSWORD_{id}");
    let toml = format!(
        r#"
        [server]
        driver = "docker"

        [[registries]]
        host = "{host}"
        username = "{USER}"
        password_secret = "{secret}"
        {class}
        "#,
        host = locked.host,
        class = class(&name, &image, ""),
    );
    let mut valet = Valet::with_config(&toml).start().await;
    let page = format!("/{name}/index.html");
    // Nowhere yet: the answer says where it may come from.
    refused(&valet, &page, &image, "nor in its secret store").await;

    // `check --pull` cannot read the store: it says so, and does not fail for it.
    let check = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(["check", "--pull"])
        .arg(valet.dir().join("valet.toml"))
        .env_remove(&secret)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    eprintln!("valet check --pull:\n{said}");
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "warning: class `{name}`: image {image} not checked"
        )) && said.contains(&format!("valet secret put {secret} --registry")),
        "{said}"
    );

    let put = ["secret", "put", secret.as_str(), "--registry"];
    let (ok, out, err) = cli_with_stdin(&valet, &put, &format!("{PASSWORD}\n"));
    assert!(ok && out.contains("next start"), "{out}{err}");
    // A name the running config does not use yet is stored (valet.toml may be edited before
    // the restart), with a warning; a name that cannot be one is refused.
    let other = ["secret", "put", "NOT_NAMED_YET", "--registry"];
    let (ok, _, err) = cli_with_stdin(&valet, &other, "x");
    assert!(ok && err.contains("no [[registries]] entry"), "{err}");
    let (ok, _, err) = cli_with_stdin(&valet, &["secret", "put", "1BAD", "--registry"], "x");
    assert!(
        !ok && err.contains("not an environment variable name"),
        "{err}"
    );
    let (ok, out, _) = cli(&valet, &["secret", "list", "--registry"]);
    assert!(ok);
    let mut listed: Vec<&str> = out.lines().collect();
    listed.sort();
    assert_eq!(listed, ["NOT_NAMED_YET", secret.as_str()]);
    let (ok, _, err) = cli(&valet, &["secret", "rm", "NOT_NAMED_YET", "--registry"]);
    assert!(ok, "{err}");

    valet.terminate();
    let again = Restarted::start(valet.dir(), valet.addr()).await;
    assert_eq!(text(&valet, &page).await, content, "{}", again.log());
    let log = again.log();
    assert!(
        log.contains("password from valet's secret store"),
        "the log says where the password came from:\n{log}"
    );
    for log in [valet.log(), again.log()] {
        assert!(!log.contains(PASSWORD), "the password reached valet's log");
    }
    let sealed = files_holding(&valet.dir().join(".valet"), PASSWORD);
    assert_eq!(
        sealed,
        Vec::<String>::new(),
        "the password is sealed at rest"
    );
}

/// Waits until the class has no running container: its instance went to sleep.
async fn asleep(class: &str, valet: &Valet) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers(class).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{class} did not sleep\n{}",
            valet.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn pull_always_follows_a_moved_tag_and_starts_the_local_copy_when_the_registry_is_gone() {
    if !ready() {
        return;
    }
    let registry = Registry::start(false);
    let id = std::process::id();
    let live = format!("{}/valet-e2e-{id}/live:latest", registry.host);
    let mut remove = RemoveImages(vec![live.clone()]);
    let name = format!("RegAlways{id}");
    let _cleanup = Cleanup(name.clone());
    push_image(std::slice::from_ref(&live), "one\n", None);
    let toml = format!(
        "[server]\ndriver = \"docker\"\n{}",
        class(&name, &live, "pull = \"always\"\nsleep_after = \"1s\"")
    );
    let valet = Valet::with_config(&toml).start().await;
    let page = format!("/{name}/index.html");
    assert_eq!(text(&valet, &page).await, "one\n");
    remove.keep_id(&live);

    // The tag moves: the next cold start pulls it again and runs the new image.
    push_image(std::slice::from_ref(&live), "two\n", None);
    asleep(&name, &valet).await;
    // A pull of the last 2 s counts as fresh (a burst of keys pulls once): outwait it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(text(&valet, &page).await, "two\n");
    remove.keep_id(&live);

    // The registry is gone: the copy on the engine starts, with a warning.
    drop(registry);
    asleep(&name, &valet).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(text(&valet, &page).await, "two\n");
    let log = valet.log();
    assert!(
        log.contains("pull failed; starting the image already on the engine"),
        "{log}"
    );
}
