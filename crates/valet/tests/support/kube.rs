//! [`KubeLab`]: a real kube-apiserver, etcd and kubelet (`scripts/lab/kube.sh`), built once
//! per machine from Debian's `kubernetes` source package and started for one test; removed
//! when it is dropped.
//!
//! ```ignore
//! let Some(kube) = KubeLab::new() else { return };   // skipped (or failed under CI=true)
//! kube.docker_ok(&["build", "-t", "x:1", dir]);       // an image on the node's engine
//! kube.post("/api/v1/namespaces/default/pods", &pod);
//! ```
//!
//! There is no scheduler: a Pod names its node ([`KubeLab::node`]) in `spec.nodeName`. Pods
//! get addresses on a bridge of the lab's own that this machine reaches directly.

use super::cluster::required;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const KUBE_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lab/kube.sh");
/// The longest one call of the docker CLI or curl may take before the test fails.
const CALL_WITHIN: &str = "120";

pub struct KubeLab {
    prefix: String,
    kubeconfig: PathBuf,
    node: String,
    server: String,
    token: String,
    /// The apiserver's address and port as a Pod reaches them, and the CA of its certificate.
    api_host: String,
    api_port: String,
    api_ca: PathBuf,
}

impl KubeLab {
    /// A control plane and one node. `None` (skipped, the reason on stderr) without root or
    /// the lab's tools; under `CI=true` that fails the test instead. The first call on a
    /// machine builds the binaries (about 5 minutes), later ones find them in the cache.
    pub fn new() -> Option<Self> {
        required(Self::try_new())
    }

    pub fn try_new() -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("the kubernetes lab needs root".into());
        }
        for tool in ["dockerd", "docker", "runc", "curl", "ip", "timeout"] {
            let found = std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
            });
            if !found {
                return Err(format!("the kubernetes lab needs `{tool}`"));
            }
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!(
            "vk{}{}",
            std::process::id(),
            (b'a' + (n % 26) as u8) as char
        );
        let out = kube_sh(&["up", &prefix]).inspect_err(|_| {
            let _ = kube_sh(&["down", &prefix]);
        })?;
        let kubeconfig = PathBuf::from(out.trim());
        let env = kube_sh(&["env", &prefix])?;
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
                .ok_or_else(|| format!("kube.sh env printed no {name}: {env}"))
        };
        let node = var("NODE")?;
        let (api_host, api_port, api_ca) = (var("API_HOST")?, var("API_PORT")?, var("API_CA")?);
        let text = std::fs::read_to_string(&kubeconfig).map_err(|e| e.to_string())?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
                .ok_or_else(|| format!("no {key} in {}", kubeconfig.display()))
        };
        Ok(Self {
            server: field("server:")?,
            token: field("token:")?,
            prefix,
            kubeconfig,
            node,
            api_host,
            api_port,
            api_ca: PathBuf::from(api_ca),
        })
    }

    /// The kubeconfig `up` wrote (the admin token, the apiserver on the lab bridge's address).
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// The one node's name, for `spec.nodeName`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's container engine, `unix:///...`.
    pub fn docker_host(&self) -> String {
        format!(
            "unix://{}",
            self.kubeconfig.with_file_name("docker.sock").display()
        )
    }

    /// The docker CLI against the node's engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg(CALL_WITHIN)
            .arg("docker")
            .arg("-H")
            .arg(self.docker_host())
            .args(args)
            .output()
            .expect("run the docker CLI")
    }

    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker -H kube node {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// One apiserver call: (HTTP status, JSON body or Null).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut cmd = Command::new("timeout");
        cmd.args([CALL_WITHIN, "curl", "-sk", "-X", method])
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(["-H", "Content-Type: application/json"])
            .args(["-w", "\n%{http_code}"]);
        if let Some(body) = body {
            cmd.args(["--data-binary", &body.to_string()]);
        }
        let out = cmd
            .arg(format!("{}{path}", self.server))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = status.trim().parse().unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// One apiserver call with a body of `content_type` (the apiserver takes
    /// `application/yaml` as well as JSON), as `token` (the admin's when `None`).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        let token = token.unwrap_or(&self.token);
        let out = Command::new("timeout")
            .args([CALL_WITHIN, "curl", "-sk", "-X", method])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", &format!("Content-Type: {content_type}")])
            .args(["-w", "\n%{http_code}", "--data-binary", body])
            .arg(format!("{}{path}", self.server))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = status.trim().parse().unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Stops the lab's kube-apiserver and starts it again on its port, which cuts every
    /// watch on it; returns once it is ready again, with how long it was away.
    pub fn restart_apiserver(&self) -> Duration {
        let out = kube_sh(&["restart-apiserver", &self.prefix])
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        Duration::from_millis(out.trim().parse().unwrap_or_default())
    }

    /// The apiserver's host and port as a Pod reaches them (`KUBERNETES_SERVICE_HOST` and
    /// `_PORT` in a cluster with a service proxy), and the file with its serving
    /// certificate and the CA that signed it (a ServiceAccount's `ca.crt`).
    pub fn api_for_pods(&self) -> (&str, &str, &std::path::Path) {
        (&self.api_host, &self.api_port, &self.api_ca)
    }

    /// The apiserver's address, for a kubeconfig of another user.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    /// Kubelet and apiserver logs so far, for failure messages.
    pub fn logs(&self) -> String {
        let dir = self.kubeconfig.parent().expect("state folder");
        ["kubelet.log", "apiserver.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!(
                    "--- {f} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `what` every 100 ms until it gives a value, for at most `within`.
    pub fn until<T>(&self, within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let start = std::time::Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                start.elapsed() < within,
                "{what}: not within {within:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for KubeLab {
    fn drop(&mut self) {
        if let Err(e) = kube_sh(&["down", &self.prefix]) {
            eprintln!("{e}");
        }
    }
}

fn kube_sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(KUBE_SH)
        .args(args)
        .output()
        .map_err(|e| format!("kube.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kube.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
