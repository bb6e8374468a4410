//! Docker test helpers: whether the engine can be used, busybox build contexts, and cleanup of a
//! class's containers, volumes and images by label.

use super::Valet;
use std::path::Path;
use std::process::{Command, Stdio};
use tempfile::TempDir;

/// Whether Docker tests can run: the engine answers and Debian's busybox-static is installed.
/// Under `CI=true` a missing piece fails the test instead of skipping it.
pub fn engine_ready() -> bool {
    let engine = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let reason = match engine {
        Ok(status) if status.success() && Path::new("/bin/busybox").is_file() => None,
        Ok(status) if status.success() => Some("no /bin/busybox (apt-get install busybox-static)"),
        _ => Some("the Docker Engine does not answer"),
    };
    let Some(reason) = reason else { return true };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true: Docker tests must run)");
    }
    eprintln!("skipped: {reason}");
    false
}

/// busybox on `scratch` with its applets installed, serving the context's `www` folder.
pub const BUSYBOX_WWW: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
COPY www /www\n";

/// A CGI script (`www/cgi-bin/who`) naming the container that answers: its hostname.
pub const WHO_CGI: &str = "#!/bin/sh\n\
echo 'Content-Type: text/plain'\n\
echo\n\
hostname\n";

/// A build context outside valet's folder holding `busybox` and `Dockerfile`; the caller adds
/// the rest.
pub fn busybox_context(dockerfile: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("valet-e2e-image-")
        .tempdir()
        .unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// Writes `content` at `path` inside `dir`, creating folders; `exec` makes it executable.
pub fn put(dir: &Path, path: &str, content: &str, exec: bool) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    if exec {
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
}

/// Removes the class's containers, volumes and image, however the test ends.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=valet.class={}", self.0);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in ids.lines() {
            docker(&["rm", "-f", id]);
        }
        let volumes = docker(&["volume", "ls", "-q", "--filter", &filter]);
        for volume in volumes.lines() {
            docker(&["volume", "rm", "-f", volume]);
        }
        // The image is named after this run's class: nothing else will use it.
        let images = docker(&["images", "-q", "--filter", &filter]);
        for image in images.lines() {
            docker(&["rmi", "-f", image]);
        }
    }
}

/// The docker CLI's stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Running containers of a class.
pub fn containers(class: &str) -> Vec<String> {
    let filter = format!("label=valet.class={class}");
    docker(&["ps", "-q", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect()
}

/// GET `path` through valet, expecting 200; its body.
pub async fn text(valet: &Valet, path: &str) -> String {
    let response = valet.get(path).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(
        status,
        200,
        "{path}: {body}\n--- valet log ---\n{}",
        valet.log()
    );
    body
}
