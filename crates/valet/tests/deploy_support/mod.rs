//! Talking to a test valet's deploy API: multipart uploads, JSON calls with a bearer token,
//! the fixture apps, and archives made on the fly (safe and malicious ones).
#![allow(dead_code)]

use crate::admin_support::{with_token, Admin, TOKEN};
use crate::support::Valet;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The fixture folder of the deploy tests.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/deploy");

/// A fixture's text.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).expect("fixture")
}

/// The stdlib app of a given version (no requirements, starts at once).
pub fn plain_app(version: &str) -> String {
    fixture("plain_app.py").replace("VERSION = \"v1\"", &format!("VERSION = \"{version}\""))
}

/// The stdlib app listening on every address of its container (reached at its Pod IP or its
/// node's port), not only its loopback.
pub fn container_app(version: &str) -> String {
    plain_app(version).replace("((\"127.0.0.1\"", "((\"0.0.0.0\"")
}

/// Deploys the container app's v1 as the new project "hello" and checks its first answer
/// through valet's URL: its id, its URL and how long the deploy took.
pub async fn first_version(valet: &Valet, api: &Api) -> (String, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let form = Form::file("app.py", container_app("v1")).field("name", "hello");
    let (status, v1) = api.upload(form).await;
    let took = started.elapsed();
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let id = v1["id"].as_str().unwrap().to_string();
    let url = v1["endpoint"].as_str().unwrap().to_string();
    let (status, answer) = get_app(valet, &format!("{url}hi")).await;
    assert_eq!(status, 200, "{answer}\n{}", valet.log());
    assert_eq!(
        (answer["version"].as_str(), answer["path"].as_str()),
        (Some("v1"), Some("/hi"))
    );
    (id, url, took)
}

/// A deploy the engine cannot run: a 503 at once, whose message names `fix`.
pub async fn refused_deploy(valet: &Valet, api: &Api, fix: &str) {
    let form = Form::file("app.py", container_app("v1")).field("name", "refused");
    let (status, refused) = api.upload(form).await;
    assert_eq!(status, 503, "{refused}\n{}", valet.log());
    let message = refused.to_string();
    assert!(message.contains(fix), "{message}");
}

/// A valet with the deploy API and the test admin token; `extra` is more config.
pub async fn valet_with(extra: &str) -> (Valet, Api) {
    valet_with_env(extra, &[]).await
}

/// [`valet_with`], with variables in valet's own environment.
pub async fn valet_with_env(extra: &str, env: &[(&str, &str)]) -> (Valet, Api) {
    let mut builder = Valet::with_config(&with_token(extra));
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    let valet = builder.start().await;
    // Run as root, valet starts each project as its own user, which must be able to pass
    // through the test's folder (a tempdir is 0700) to reach its build.
    std::fs::set_permissions(valet.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let admin = Admin::of(&valet, TOKEN).await;
    let api = Api {
        base: admin.url(""),
        client: admin.client.clone(),
        token: TOKEN.to_string(),
        _users: std::sync::Arc::new(UserCleanup {
            builds: valet.dir().join(".valet/deploy/builds"),
        }),
    };
    (valet, api)
}

/// The deploy API as one caller (one bearer token) sees it.
#[derive(Clone)]
pub struct Api {
    /// `http://<admin_listen>`.
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    _users: std::sync::Arc<UserCleanup>,
}

/// Removes the system users valet made for this test's projects (run as root, valet makes one
/// per project), so test runs leave none behind on the machine.
struct UserCleanup {
    builds: std::path::PathBuf,
}

impl Drop for UserCleanup {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        for entry in std::fs::read_dir(&self.builds)
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(meta) = entry.metadata() else { continue };
            let uid = nix::unistd::Uid::from_raw(meta.uid());
            if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
                if user.name.starts_with("valet-") {
                    // -f: its app may still run until valet stops right after this.
                    let _ = std::process::Command::new("userdel")
                        .args(["-f", &user.name])
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
        }
    }
}

/// A multipart upload: the file and the text fields.
pub struct Form<'a> {
    pub file_name: &'a str,
    pub bytes: Vec<u8>,
    pub fields: Vec<(&'a str, Vec<u8>)>,
}

impl<'a> Form<'a> {
    pub fn file(file_name: &'a str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            file_name,
            bytes: bytes.into(),
            fields: Vec::new(),
        }
    }

    pub fn field(mut self, name: &'a str, value: impl Into<Vec<u8>>) -> Self {
        self.fields.push((name, value.into()));
        self
    }
}

impl Api {
    /// The deploy API on `base` (`http://<admin_listen>`) of the valet in `valet_dir`, as
    /// `token`: for valets not started by [`valet_with`] (cluster replicas).
    pub fn at(base: &str, client: reqwest::Client, token: &str, valet_dir: &Path) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            client,
            token: token.to_string(),
            _users: std::sync::Arc::new(UserCleanup {
                builds: valet_dir.join(".valet/deploy/builds"),
            }),
        }
    }

    /// The same valet with another token.
    pub fn as_token(&self, token: &str) -> Self {
        Self {
            base: self.base.clone(),
            client: self.client.clone(),
            token: token.to_string(),
            _users: self._users.clone(),
        }
    }

    /// POST a multipart form to `path`: status and JSON body.
    pub async fn upload_to(&self, path: &str, form: Form<'_>) -> (u16, Value) {
        let mut multipart = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(form.bytes).file_name(form.file_name.to_string()),
        );
        for (name, value) in form.fields {
            multipart = multipart.part(name.to_string(), reqwest::multipart::Part::bytes(value));
        }
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .multipart(multipart)
            .timeout(std::time::Duration::from_secs(600))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        status_json(response).await
    }

    /// `POST /api/containers/upload`.
    pub async fn upload(&self, form: Form<'_>) -> (u16, Value) {
        self.upload_to("/api/containers/upload", form).await
    }

    /// A request with the token and an optional JSON body: status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_secs(120));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        status_json(response).await
    }

    /// Moves a project to one of its versions: status and JSON body.
    pub async fn rollback(&self, id: &str, version: i64) -> (u16, Value) {
        let path = format!("/v1/projects/{id}/rollback");
        let body = serde_json::json!({ "version": version });
        self.call("POST", &path, Some(body)).await
    }

    /// `GET /v1/projects` as this caller.
    pub async fn projects(&self) -> Vec<Value> {
        let (status, body) = self.call("GET", "/v1/projects", None).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().expect("a list").clone()
    }

    /// A new user token from `POST /v1/tokens` (as the admin).
    pub async fn token_for(&self, user: &str, plan: Option<&str>) -> String {
        let mut body = serde_json::json!({ "user": user });
        if let Some(plan) = plan {
            body["plan"] = plan.into();
        }
        let (status, body) = self.call("POST", "/v1/tokens", Some(body)).await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_string()
    }
}

async fn status_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// GET a project URL on the gateway: status and JSON body (or text).
pub async fn get_app(valet: &Valet, url: &str) -> (u16, Value) {
    let response = valet
        .client
        .get(url)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", valet.log()));
    status_json(response).await
}

/// Requests `url` every 100 ms while `deploy` (the upload of a version that listens only after
/// `start_delay`) runs, and returns how many answers came from `old`. Every answer must be a
/// 200 from `old` until the switch, and from `new` after it: never an error, never `new`
/// before it can have started listening, never `old` again once `new` answered. (The switch
/// happens just before the upload's answer is sent, so the last requests may already see
/// `new`.)
pub async fn served_through_switch<T>(
    valet: &Valet,
    url: &str,
    deploy: &tokio::task::JoinHandle<T>,
    (old, new): (&str, &str),
    start_delay: std::time::Duration,
) -> usize {
    let started = std::time::Instant::now();
    let (mut from_old, mut switched) = (0, false);
    while !deploy.is_finished() {
        let (status, body) = get_app(valet, url).await;
        let version = body["version"].as_str();
        assert_eq!(status, 200, "{body}\n{}", valet.log());
        if version == Some(new) && started.elapsed() >= start_delay {
            switched = true;
        } else {
            assert!(!switched, "{old} answered again after {new}: {body}");
            assert_eq!(version, Some(old), "{body}");
            from_old += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    from_old
}

/// An entry of a test archive.
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A .tar.gz of the entries, names written raw (so `..` and `/abs` can be tested).
pub fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let mut raw = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut raw);
        for entry in entries {
            let mut header = tar::Header::new_gnu();
            let (name, kind, link, data): (&str, tar::EntryType, Option<&str>, &[u8]) = match entry
            {
                Entry::File(name, data) => (name, tar::EntryType::Regular, None, data),
                Entry::Symlink(name, to) => (name, tar::EntryType::Symlink, Some(to), b""),
                Entry::HardLink(name, to) => (name, tar::EntryType::Link, Some(to), b""),
            };
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Written into the header bytes directly: set_path refuses `..`, which is the point.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            if let Some(link) = link {
                let l = link.as_bytes();
                header.as_old_mut().linkname[..l.len()].copy_from_slice(l);
            }
            header.set_cksum();
            builder.append(&header, data).expect("tar entry");
        }
        builder.finish().expect("tar");
    }
    gzip(&raw)
}

/// Gzip of `data`, through the system's gzip (the tests add no compression crate).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().unwrap().expect("gzip input");
    out.stdout
}

/// Runs a valet CLI command against this valet's config; stdout and stderr apart (the token
/// must be the last line of stdout alone).
pub fn cli(valet: &Valet, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .arg("--config")
        .arg(valet.dir().join("valet.toml"))
        .env_remove("VALET_ADMIN_URL")
        .env_remove("VALET_ADMIN_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run valet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last line of a command's stdout.
pub fn last_line(stdout: &str) -> String {
    stdout.lines().last().unwrap_or("").to_string()
}

/// A second `valet up` on a stopped test valet's folder (same config, same data_dir): what a
/// restart sees. Dropping it stops it.
pub struct Restarted {
    child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl Restarted {
    /// Starts valet again on `dir/valet.toml` and waits until `listen` accepts.
    pub async fn start(dir: &Path, listen: std::net::SocketAddr) -> Self {
        let log = dir.join("valet-restarted.log");
        let file = std::fs::File::create(&log).expect("log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_valet"))
            .arg("up")
            .arg(dir.join("valet.toml"))
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn valet");
        let restarted = Self { child, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while tokio::net::TcpStream::connect(listen).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "restarted valet did not listen:\n{}",
                restarted.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        restarted
    }

    /// What it printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// A fresh database on the test PostgreSQL server (`VALET_TEST_POSTGRES`, default
/// `postgres://valet:valet@127.0.0.1:5432/postgres`), dropped when the returned value is.
/// `None` when there is no server, which fails the test under `CI=true`.
pub async fn postgres_database() -> Option<PgDatabase> {
    let base = std::env::var("VALET_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://valet:valet@127.0.0.1:5432/postgres".to_string());
    sqlx::any::install_default_drivers();
    let mut admin = match <sqlx::AnyConnection as sqlx::Connection>::connect(&base).await {
        Ok(conn) => conn,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is required under CI=true, but {base} is unreachable: {e}");
            }
            eprintln!("NOT RUN: no PostgreSQL at {base}: {e}");
            return None;
        }
    };
    let name = format!("valet_it_{}", valet_store::random_hex(6));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (server, _) = base.rsplit_once('/').expect("URL with a database");
    Some(PgDatabase {
        url: format!("{server}/{name}"),
        name,
        base,
    })
}

/// A test database; its URL derefs as a `&str`.
pub struct PgDatabase {
    url: String,
    name: String,
    base: String,
}

impl std::ops::Deref for PgDatabase {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Dropped inside the test's runtime, which cannot be blocked on: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

/// Like [`cli`], with `input` on stdin.
pub fn cli_with_stdin(valet: &Valet, args: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .arg("--config")
        .arg(valet.dir().join("valet.toml"))
        .env_remove("VALET_ADMIN_URL")
        .env_remove("VALET_ADMIN_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run valet");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("valet output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
