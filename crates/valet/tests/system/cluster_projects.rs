//! Cluster mode and the deploy API (issue 16): a project deployed on one replica is served
//! through every replica, runs one instance cluster-wide (the project's lease,
//! `project:<id>`), takes a new version deployed on another replica, moves to a survivor when
//! its owner dies, and is gone from every replica once deleted on one. Real `valet up`
//! replicas on a private PostgreSQL, the process driver, the stdlib app (no requirements).

use crate::deploy_support::{plain_app, Api, Form};
use crate::support::cluster::{PrivatePostgres, Replicas};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// No classes: only deployed projects.
const CONFIG: &str = r#"
[server]
timeouts = { connect = "1s", first_byte = "10s" }
"#;

/// The stdlib app of `version`, answering also with the replica that runs it, its lease's
/// epoch and its process id.
fn app(version: &str) -> String {
    let body = r#"{"version": VERSION, "path": self.path}"#;
    let with_owner = r#"{"version": VERSION, "path": self.path, "node": os.environ.get("VALET_NODE"), "epoch": os.environ.get("VALET_EPOCH"), "pid": os.getpid()}"#;
    let app = plain_app(version);
    assert!(app.contains(body), "the fixture changed");
    app.replace(body, with_owner)
}

/// The deploy API of replica i, as the admin.
fn api(replicas: &Replicas, i: usize) -> Api {
    Api::at(
        &replicas.admin_url(i, ""),
        replicas.client().clone(),
        replicas.admin_token(),
        replicas.valet(i).dir(),
    )
}

/// One answer of the project: (version, node, pid).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Answer {
    version: String,
    node: String,
    pid: u64,
}

/// GET `/containers/<id>/hi` on replica i: the status and, on 200, the answer.
async fn hit(replicas: &Replicas, i: usize, id: &str) -> (u16, Option<Answer>) {
    let url = replicas.url(i, &format!("/containers/{id}/hi"));
    let response = replicas
        .client()
        .get(&url)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let Ok(response) = response else {
        return (0, None);
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    let answer = (status == 200).then(|| Answer {
        version: body["version"].as_str().unwrap_or_default().to_string(),
        node: body["node"].as_str().unwrap_or_default().to_string(),
        pid: body["pid"].as_u64().unwrap_or_default(),
    });
    (status, answer)
}

/// Asks replica i until it answers with `version` (within `within`), and returns that answer.
async fn until_version(
    replicas: &Replicas,
    i: usize,
    id: &str,
    version: &str,
    within: Duration,
) -> Answer {
    let deadline = Instant::now() + within;
    let mut last = (0, None);
    while Instant::now() < deadline {
        last = hit(replicas, i, id).await;
        if let (200, Some(answer)) = &last {
            if answer.version == version {
                return answer.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "replica {i} did not serve {version} of {id} within {within:?}: last {last:?}\n{}",
        replicas.logs()
    )
}

/// The project lease's `(owner, epoch)` as the store has it, while live.
fn project_lease(pg: &PrivatePostgres, id: &str) -> Option<(String, u64)> {
    let row = pg.psql(&format!(
        "SELECT owner || ' ' || epoch FROM valet_leases \
         WHERE class = 'project:{id}' AND key = 'main' AND expires_at > clock_timestamp()"
    ));
    let (owner, epoch) = row.trim().split_once(' ')?;
    Some((owner.to_string(), epoch.parse().ok()?))
}

fn alive(pid: u64) -> bool {
    // Zombies count as gone: the owner reaps its children, a killed owner's are orphans.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
}

/// Waits (at most `within`) for a process to be gone.
async fn gone_within(pid: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn kill_pid(pid: u64) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_deployed_on_one_replica_is_served_by_every_replica_once_follows_new_versions_moves_when_its_owner_dies_and_is_deleted_everywhere(
) {
    let Some((pg, mut replicas)) = Replicas::with_config(CONFIG)
        .replicas(2)
        .start_on_loopback()
        .await
    else {
        return;
    };
    // Kept to the end: dropping one removes the projects' system users.
    let apis = [api(&replicas, 1), api(&replicas, 2)];
    for i in 1..=2 {
        // Run as root, valet starts each project as its own user, which must be able to pass
        // through the test's folder (a tempdir is 0700) to reach its build.
        let dir = replicas.valet(i).dir();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }

    // Deployed on replica 1: started there for its readiness, so gw-1 holds its lease.
    let form = Form::file("app.py", app("v1")).field("name", "shared");
    let (status, v1) = apis[0].upload(form).await;
    assert_eq!(status, 201, "{v1}\n{}", replicas.logs());
    let id = v1["id"].as_str().unwrap().to_string();
    let (owner, epoch) = project_lease(&pg, &id).expect("a live project lease");
    assert_eq!(owner, "gw-1");

    // Replica 2 never saw the upload: it learns of the project from the store's change
    // feed, builds it from the kept upload and forwards to the owner.
    let learned = Instant::now();
    let first = until_version(&replicas, 2, &id, "v1", Duration::from_secs(30)).await;
    eprintln!(
        "replica 2 served the project {:?} after the deploy",
        learned.elapsed()
    );
    assert_eq!(
        first.node, "gw-1",
        "forwarded to the owner, not started again"
    );
    let mut seen = BTreeSet::new();
    for n in 0..20 {
        let i = 1 + n % 2;
        let (status, answer) = hit(&replicas, i, &id).await;
        assert_eq!(status, 200, "replica {i}\n{}", replicas.logs());
        seen.insert(answer.unwrap());
    }
    assert_eq!(seen.len(), 1, "one instance cluster-wide: {seen:?}");
    assert_eq!(seen.first().unwrap().pid, first.pid);
    assert_eq!(project_lease(&pg, &id), Some((owner.clone(), epoch)));
    // Both replicas list the project's instance with its owner; replica 2 marks it
    // forwarded.
    for i in 1..=2 {
        let (status, list) = replicas.admin_get(i, "/v1/instances").await;
        assert_eq!(status, 200, "{list}");
        let entry = list
            .as_array()
            .and_then(|all| all.iter().find(|e| e.to_string().contains(&id)))
            .unwrap_or_else(|| panic!("replica {i} lists no instance of {id}: {list}"));
        assert_eq!(entry["owner"], "gw-1", "replica {i}: {entry}");
        assert_eq!(entry["forwarded"], i == 2, "replica {i}: {entry}");
    }

    // A new version deployed through replica 2, which does not own the project: tried there
    // under a lease of its own, then taken by both replicas, and still one instance.
    let form = Form::file("app.py", app("v2")).field("name", "shared");
    let (status, v2) = apis[1].upload(form).await;
    assert_eq!(status, 201, "{v2}\n{}", replicas.logs());
    assert_eq!(v2["id"], id.as_str(), "the same project");
    assert_eq!(v2["version"], 2);
    assert!(
        replicas
            .log(2)
            .contains("project owned by another replica: trying the new version here"),
        "v2 was tried on gw-2, which did not own the project\n{}",
        replicas.log(2)
    );
    for i in 1..=2 {
        until_version(&replicas, i, &id, "v2", Duration::from_secs(30)).await;
    }
    let mut seen = BTreeSet::new();
    for n in 0..20 {
        let i = 1 + n % 2;
        let (status, answer) = hit(&replicas, i, &id).await;
        assert_eq!(status, 200, "replica {i}\n{}", replicas.logs());
        seen.insert(answer.unwrap());
    }
    assert_eq!(seen.len(), 1, "one v2 instance cluster-wide: {seen:?}");
    let v2_answer = seen.into_iter().next().unwrap();
    assert_eq!(v2_answer.version, "v2");
    assert!(
        gone_within(first.pid, Duration::from_secs(10)).await,
        "v1's instance stopped once v2 took over"
    );
    let (owner, _) = project_lease(&pg, &id).expect("a live project lease");
    assert_eq!(owner, v2_answer.node, "the store agrees on the owner");

    // The owner dies with its instance: the survivor takes the project over within
    // lease_ttl (2 s) plus the start.
    let (dead, survivor) = if owner == "gw-1" { (1, 2) } else { (2, 1) };
    replicas.kill9(dead);
    kill_pid(v2_answer.pid);
    let killed = Instant::now();
    let moved = until_version(&replicas, survivor, &id, "v2", Duration::from_secs(20)).await;
    let took = killed.elapsed();
    assert_eq!(moved.node, replicas.node(survivor), "{moved:?}");
    assert!(took < Duration::from_secs(8), "takeover took {took:?}");
    eprintln!("project takeover after its owner's SIGKILL: {took:?}");
    let (owner, _) = project_lease(&pg, &id).expect("a live project lease");
    assert_eq!(owner, replicas.node(survivor));

    // The dead replica comes back and forwards to the new owner; a delete on it stops the
    // instance on the owner and every replica answers 404. (Both replicas run on this host,
    // where a project has one system user: the delete's removal of that user also ends the
    // survivor's process. The 404s show that each replica dropped the project's route.)
    replicas.restart(dead).await;
    let back = until_version(&replicas, dead, &id, "v2", Duration::from_secs(30)).await;
    assert_eq!(back.pid, moved.pid, "forwarded to the survivor's instance");
    let path = format!("/api/containers/servers/{id}");
    let (status, gone) = apis[dead - 1].call("DELETE", &path, None).await;
    assert_eq!(status, 200, "{gone}\n{}", replicas.logs());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let statuses = [
            hit(&replicas, 1, &id).await.0,
            hit(&replicas, 2, &id).await.0,
        ];
        if statuses == [404, 404] && !alive(moved.pid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still served after the delete: {statuses:?}, instance alive {}\n{}",
            alive(moved.pid),
            replicas.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The survivor built the project from the store: its builds go too.
    let builds = replicas.valet(survivor).dir().join(".valet/deploy/builds");
    let left: Vec<_> = std::fs::read_dir(&builds)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "builds left on replica {survivor}: {left:?}"
    );
}
