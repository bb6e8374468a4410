//! With the process driver and valet running as root, each project runs as its own
//! unprivileged user: it cannot read valet's store or secret key, nor another project's code.

use crate::deploy_support::*;

/// An app that reports who it runs as and whether it can read each of `paths`.
fn probe_app(paths: &[String]) -> String {
    let list = serde_json::to_string(paths).unwrap();
    format!(
        r#"
import json, os, pwd
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATHS = {list}

def probe(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        return "readable"
    except PermissionError:
        return "denied"
    except FileNotFoundError:
        return "missing"

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        uid = os.getuid()
        body = json.dumps({{
            "uid": uid,
            "user": pwd.getpwuid(uid).pw_name,
            "probes": {{p: probe(p) for p in PATHS}},
        }}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#
    )
}

/// Whether the test may run: it needs root to switch users (CI runs as root, so there a
/// missing root fails the test).
fn root_or_not_run() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs root (CI runs as root)");
    }
    eprintln!("NOT RUN: needs root to switch users");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_project_runs_as_its_own_user_and_cannot_read_valets_files_or_other_projects() {
    if !root_or_not_run() {
        return;
    }
    let (valet, api) = valet_with("").await;
    let (status, first) = api
        .upload(Form::file("app.py", plain_app("a")).field("name", "a"))
        .await;
    assert_eq!(status, 201, "{first}\n{}", valet.log());
    let data = valet.dir().join(".valet");
    let mut paths: Vec<String> = std::fs::read_dir(data.join("deploy/builds"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("app.py").display().to_string())
        .collect();
    assert_eq!(paths.len(), 1);
    paths.push(data.join("store/valet.db").display().to_string());
    paths.push(data.join("secret.key").display().to_string());
    let (status, second) = api
        .upload(Form::file("app.py", probe_app(&paths)).field("name", "b"))
        .await;
    assert_eq!(status, 201, "{second}\n{}", valet.log());
    let (status, report) = get_app(&valet, second["endpoint"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{report}");
    assert_ne!(report["uid"], 0, "{report}");
    let user = report["user"].as_str().unwrap();
    assert!(user.starts_with("valet-"), "{report}");
    for path in &paths {
        assert_eq!(report["probes"][path], "denied", "{path}: {report}");
    }
    // The first project runs as another user.
    let (_, a) = get_app(&valet, first["endpoint"].as_str().unwrap()).await;
    assert_eq!(a["version"], "a");
    let owner = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().uid()
    };
    assert_ne!(owner(&paths[0]), report["uid"].as_u64().unwrap() as u32);
    // Deleting a project removes its user.
    let id = second["id"].as_str().unwrap();
    let (status, _) = api
        .call("DELETE", &format!("/v1/projects/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        nix::unistd::User::from_name(user).unwrap().is_none(),
        "{user} removed"
    );
}

/// System users whose names valet gives projects (`valet-<project id>`).
fn project_users() -> Vec<String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|name| name.starts_with("valet-"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deploy_that_fails_to_start_leaves_no_system_user_behind() {
    if !root_or_not_run() {
        return;
    }
    let (valet, api) = valet_with("").await;
    let before = project_users();
    // It runs as its project's user, leaves a process of that user behind in a session of its
    // own, and exits before it ever listens: the deploy fails at its first start.
    let app = "import os, subprocess, sys\n\
               subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n\
               sys.exit(3)\n";
    let started = std::time::Instant::now();
    let (status, body) = api
        .upload(Form::file("app.py", app.to_string()).field("name", "broken"))
        .await;
    eprintln!("refused after {:?}: {status} {body}", started.elapsed());
    assert!(status >= 400, "{status} {body}\n{}", valet.log());
    let after = project_users();
    let left: Vec<&String> = after.iter().filter(|u| !before.contains(u)).collect();
    assert!(
        left.is_empty(),
        "a refused first upload left users {left:?}\n{}",
        valet.log()
    );
}
