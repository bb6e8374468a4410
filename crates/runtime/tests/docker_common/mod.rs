//! Support for the Docker driver tests: a project folder with a `FROM scratch` busybox image
//! (there is no registry here), a driver for it, specs built the way the instance layer builds
//! them, and cleanup of everything the test's valet made on the engine.
//!
//! Without an engine the tests fail under `CI=true` and are skipped with a reason otherwise.
#![allow(dead_code)]

use bollard::Docker;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;
use valet_core::InstanceId;
use valet_runtime::{DockerDriver, InstanceSpec};

const BUSYBOX: &str = "/bin/busybox";

/// A Dockerfile for an image holding only busybox (applets installed, so `sh` and `httpd`
/// exist) and a page to serve.
pub const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
COPY www /www\n\
CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// Whether the engine answers; `None` (after printing why) when the test should be skipped.
pub async fn engine() -> Option<Docker> {
    let reason = match Docker::connect_with_local_defaults() {
        Ok(docker) => match docker.negotiate_version().await {
            Ok(docker) => return Some(docker),
            Err(e) => format!("the Docker Engine does not answer: {e}"),
        },
        Err(e) => format!("no Docker client: {e}"),
    };
    skip_or_fail(&reason)
}

fn skip_or_fail<T>(reason: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true: Docker tests must run; .ci/run starts dockerd)");
    }
    eprintln!("skipped: {reason}");
    None
}

/// A project folder: valet.toml's folder, the image's build context and valet's data folder.
pub struct Project {
    dir: TempDir,
    pub driver: DockerDriver,
    pub docker: Docker,
    pub config: valet_config::Config,
}

impl Project {
    /// A project with one class `Web` built from [`DOCKERFILE`]; `class` adds keys to it.
    /// `None` when the test should be skipped.
    pub async fn new(class: &str) -> Option<Self> {
        let docker = engine().await?;
        if !Path::new(BUSYBOX).is_file() {
            return skip_or_fail("no /bin/busybox (apt-get install busybox-static)");
        }
        let dir = tempfile::Builder::new()
            .prefix("valet-docker-")
            .tempdir()
            .unwrap();
        // The build context is a folder of its own, so tests that differ only in valet.toml
        // share one image tag.
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("www")).unwrap();
        std::fs::copy(BUSYBOX, app.join("busybox")).unwrap();
        std::fs::write(app.join("www/index.html"), "hello from busybox\n").unwrap();
        std::fs::write(app.join("Dockerfile"), DOCKERFILE).unwrap();
        let config = configure(dir.path(), class);
        let driver = DockerDriver::connect(&config)
            .await
            .expect("driver connects");
        Some(Self {
            dir,
            driver,
            docker,
            config,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The image's build context.
    pub fn app(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    /// Rereads valet.toml with a changed class, as a restarted valet would.
    pub async fn reconfigure(&mut self, class: &str) {
        self.config = configure(self.dir.path(), class);
        self.driver = DockerDriver::connect(&self.config)
            .await
            .expect("driver connects");
    }

    /// A spec for `key` of class `Web`, as the instance layer makes it.
    pub fn spec(&self, key: &str) -> InstanceSpec {
        let class = &self.config.containers[0];
        let id = InstanceId::new(class.class_name.as_str(), key);
        let data_dir = self.config.data_dir();
        let mut env: Vec<(String, String)> = class
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.sort();
        InstanceSpec {
            command: class.command.clone(),
            image: class.image.clone(),
            ports: class.ports.iter().map(|(n, p)| (n.clone(), *p)).collect(),
            default_port: class.default_port_name().unwrap_or("http").to_string(),
            env,
            work_dir: self.dir.path().to_path_buf(),
            data_dir: data_dir.join("instances/Web").join(id.slug()),
            log_path: self.log_path(&id),
            user: class.user.clone(),
            log_lines: 1000,
            id,
        }
    }

    pub fn log_path(&self, id: &InstanceId) -> PathBuf {
        let logs = self.config.data_dir().join("logs").join(id.class());
        logs.join(format!("{}.log", id.slug()))
    }

    pub fn log_of(&self, key: &str) -> String {
        std::fs::read_to_string(self.log_path(&InstanceId::new("Web", key))).unwrap_or_default()
    }

    /// Ids of this project's containers, running or not.
    pub fn containers(&self) -> Vec<String> {
        let filter = format!("label=valet.scope={}", self.driver.scope());
        lines(&docker_cli(&["ps", "-aq", "--filter", &filter]))
    }
}

impl Drop for Project {
    /// Removes what this project's valet made; the CLI works even while a test panics.
    fn drop(&mut self) {
        let filter = format!("label=valet.scope={}", self.driver.scope());
        for (list, remove) in [
            (vec!["ps", "-aq"], vec!["rm", "-f"]),
            (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
            (vec!["network", "ls", "-q"], vec!["network", "rm"]),
        ] {
            let mut args = list.clone();
            args.extend(["--filter", &filter]);
            let ids = lines(&docker_cli(&args));
            if !ids.is_empty() {
                let mut args = remove.clone();
                args.extend(ids.iter().map(String::as_str));
                docker_cli(&args);
            }
        }
    }
}

fn configure(dir: &Path, class: &str) -> valet_config::Config {
    let text = format!(
        "[server]\ndriver = \"docker\"\n\n[[containers]]\nclass_name = \"Web\"\n\
         image = \"./app/Dockerfile\"\n{class}\n"
    );
    let file = dir.join("valet.toml");
    std::fs::write(&file, &text).unwrap();
    match valet_config::parse_str(&text, &file, dir) {
        Ok(config) => config,
        Err(errors) => panic!("{}", valet_config::render_report(&errors)),
    }
}

/// Runs the docker CLI, returning stdout.
pub fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// GET `path` on `addr` over HTTP/1.0; retries until `within` for a server still starting.
pub async fn get(addr: std::net::SocketAddr, path: &str, within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await.ok()?;
            (!response.is_empty()).then_some(response)
        };
        if let Some(response) = attempt.await {
            return response;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("no answer from {addr}{path} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
