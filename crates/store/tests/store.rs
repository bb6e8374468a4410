//! The store on real SQLite and on a real PostgreSQL server: the same operations, the same
//! answers. PostgreSQL comes from `VALET_TEST_POSTGRES` (default
//! `postgres://valet:valet@127.0.0.1:5432/postgres`, a role that may create databases); each
//! test makes its own database. Without a reachable server the PostgreSQL tests fail under
//! `CI=true`; elsewhere they print that they did not run.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use valet_store::{Backend, NewDeployment, Store};

fn new_deployment(project: &str, owner: &str, build: &str) -> NewDeployment {
    NewDeployment {
        project_id: project.into(),
        name: format!("{project}-name"),
        owner: owner.into(),
        build: build.into(),
        runtime: "python".into(),
        command: vec!["python".into(), "app.py".into()],
        requirements: "fastapi uvicorn".into(),
    }
}

/// Runs `body` on a fresh SQLite store.
async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("sqlite", dir.path()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    body(store).await;
}

/// Runs `body` on a fresh database of the test PostgreSQL server.
async fn on_postgres<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
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
            return;
        }
    };
    let name = format!("valet_test_{}", valet_store::random_hex(6));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    let store = Store::open(&format!("{server}/{name}"), Path::new("/nonexistent"))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    body(store.clone()).await;
    store.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// One test per backend for each body.
macro_rules! on_both {
    ($body:ident) => {
        mod $body {
            #[tokio::test]
            async fn sqlite() {
                super::on_sqlite(super::$body).await
            }
            #[tokio::test]
            async fn postgres() {
                super::on_postgres(super::$body).await
            }
        }
    };
}

async fn deployments_number_versions_and_move_current(store: Store) {
    let (project, first) = store
        .record_deployment(&new_deployment("p1", "alice", "b1"))
        .await
        .unwrap();
    assert_eq!((project.current_version, first.version), (1, 1));
    assert_eq!(project.owner, "alice");
    let (project, second) = store
        .record_deployment(&new_deployment("p1", "alice", "b2"))
        .await
        .unwrap();
    assert_eq!((project.current_version, second.version), (2, 2));
    let all = store.deployments("p1").await.unwrap();
    assert_eq!(
        all.iter().map(|d| &*d.build).collect::<Vec<_>>(),
        ["b1", "b2"]
    );
    assert_eq!(all[0].command, ["python", "app.py"]);
    assert!(store.set_current("p1", 1).await.unwrap());
    assert_eq!(
        store.project("p1").await.unwrap().unwrap().current_version,
        1
    );
    assert!(
        !store.set_current("p1", 9).await.unwrap(),
        "unknown version"
    );
    assert_eq!(
        store.project("p1").await.unwrap().unwrap().current_version,
        1
    );
    assert_eq!(store.usage("alice").await.unwrap().len(), 2);
}
on_both!(deployments_number_versions_and_move_current);

async fn projects_belong_to_their_owner(store: Store) {
    store
        .record_deployment(&new_deployment("a1", "alice", "b1"))
        .await
        .unwrap();
    store
        .record_deployment(&new_deployment("b1", "bob", "b2"))
        .await
        .unwrap();
    let alice = store.projects(Some("alice")).await.unwrap();
    assert_eq!(alice.iter().map(|p| &*p.id).collect::<Vec<_>>(), ["a1"]);
    assert_eq!(store.projects(None).await.unwrap().len(), 2);
    assert_eq!(store.count_projects("bob").await.unwrap(), 1);
    let named = store
        .project_named("bob", "b1-name")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(named.id, "b1");
    assert!(store
        .project_named("alice", "b1-name")
        .await
        .unwrap()
        .is_none());
    assert!(store.delete_project("a1").await.unwrap());
    assert!(!store.delete_project("a1").await.unwrap());
    assert!(store.deployments("a1").await.unwrap().is_empty());
    assert_eq!(store.projects(None).await.unwrap().len(), 1);
}
on_both!(projects_belong_to_their_owner);

/// A deploy that fails midway (here: its project's name is taken by the same owner, so the
/// project insert fails after the version was computed) leaves nothing behind.
async fn a_failed_deploy_writes_nothing(store: Store) {
    store
        .record_deployment(&new_deployment("p1", "alice", "b1"))
        .await
        .unwrap();
    let mut clash = new_deployment("p2", "alice", "b2");
    clash.name = "p1-name".into();
    assert!(store.record_deployment(&clash).await.is_err());
    assert!(store.project("p2").await.unwrap().is_none());
    assert!(store.deployments("p2").await.unwrap().is_empty());
    assert_eq!(store.usage("alice").await.unwrap().len(), 1);
}
on_both!(a_failed_deploy_writes_nothing);

/// A transaction abandoned before its commit (what a crash does) is invisible afterwards.
async fn an_uncommitted_deploy_is_invisible(store: Store) {
    store
        .record_deployment_uncommitted(&new_deployment("p1", "alice", "b1"))
        .await
        .unwrap();
    assert!(store.project("p1").await.unwrap().is_none());
    assert!(store.deployments("p1").await.unwrap().is_empty());
    assert!(store.usage("alice").await.unwrap().is_empty());
}
on_both!(an_uncommitted_deploy_is_invisible);

async fn tokens_are_kept_hashed(store: Store) {
    let token = store.create_token("alice", "free", false).await.unwrap();
    let record = store.token(&token).await.unwrap().unwrap();
    assert_eq!(
        (record.user.as_str(), record.plan.as_str(), record.admin),
        ("alice", "free", false)
    );
    assert!(store.token("vt_forged").await.unwrap().is_none());
    let admin = store.create_token("root", "free", true).await.unwrap();
    assert!(store.token(&admin).await.unwrap().unwrap().admin);
    assert!(
        !store.token_hashes().await.unwrap().contains(&token),
        "the token itself is never stored"
    );
}
on_both!(tokens_are_kept_hashed);

async fn tokens_are_listed_by_id_and_revoked(store: Store) {
    let alice = store.create_token("alice", "free", false).await.unwrap();
    let bob = store.create_token("bob", "free", false).await.unwrap();
    let root = store.create_token("alice", "free", true).await.unwrap();
    let all = store.tokens(None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|t| t.id.len() == valet_store::TOKEN_ID_LEN));
    assert!(all
        .iter()
        .all(|t| !alice.contains(&t.id) && !bob.contains(&t.id)));
    let mine = store.tokens(Some("alice")).await.unwrap();
    assert_eq!(mine.len(), 2, "{mine:?}");
    let bobs = store.tokens(Some("bob")).await.unwrap();
    assert_eq!(bobs.len(), 1);
    // A user cannot revoke another user's token, nor an admin token under its own name.
    assert_eq!(
        store
            .revoke_token(&bobs[0].id, Some("alice"))
            .await
            .unwrap(),
        None
    );
    let admin_id = mine.iter().find(|t| t.admin).unwrap().id.clone();
    assert_eq!(
        store.revoke_token(&admin_id, Some("alice")).await.unwrap(),
        None
    );
    // By the token itself, by the user; by id, by the admin.
    assert!(store
        .revoke_token(&alice, Some("alice"))
        .await
        .unwrap()
        .is_some());
    assert!(store.token(&alice).await.unwrap().is_none());
    assert!(store
        .revoke_token(&bobs[0].id, None)
        .await
        .unwrap()
        .is_some());
    assert!(store.token(&bob).await.unwrap().is_none());
    assert!(store.token(&root).await.unwrap().is_some());
    assert_eq!(store.revoke_token("nothex", None).await.unwrap(), None);
    assert_eq!(store.tokens(None).await.unwrap().len(), 1);
}

on_both!(tokens_are_listed_by_id_and_revoked);

#[tokio::test]
async fn sqlite_file_is_private_wal_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open("sqlite", dir.path()).await.unwrap();
        assert_eq!(store.journal_mode().await.unwrap(), "wal");
        store
            .record_deployment(&new_deployment("p1", "alice", "b1"))
            .await
            .unwrap();
        store.close().await;
    }
    let file = dir.path().join("store/valet.db");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "store file mode");
    let folder = std::fs::metadata(dir.path().join("store"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(folder, 0o700, "store folder mode");
    // Migrations run again on reopen and keep what is there.
    let store = Store::open("sqlite", dir.path()).await.unwrap();
    assert_eq!(
        store.project("p1").await.unwrap().unwrap().current_version,
        1
    );
}

#[tokio::test]
async fn unknown_store_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open("mysql://x", dir.path()).await.err().unwrap();
    assert!(err.to_string().contains("not supported"), "{err}");
}

async fn secrets_replace_list_and_go_with_their_project(store: Store) {
    use valet_store::SealedSecret;
    let sealed = |name: &str, v: &str| SealedSecret {
        name: name.into(),
        nonce: "00".into(),
        sealed: v.into(),
    };
    store
        .record_deployment(&new_deployment("p1", "alice", "b1"))
        .await
        .unwrap();
    store
        .put_secret("project:p1", &sealed("B", "1"))
        .await
        .unwrap();
    store
        .put_secret("project:p1", &sealed("A", "2"))
        .await
        .unwrap();
    store
        .put_secret("project:p1", &sealed("B", "3"))
        .await
        .unwrap();
    let all = store.secrets("project:p1").await.unwrap();
    assert_eq!(all, [sealed("A", "2"), sealed("B", "3")]);
    assert!(store.delete_secret("project:p1", "A").await.unwrap());
    assert!(!store.delete_secret("project:p1", "A").await.unwrap());
    assert!(store.delete_project("p1").await.unwrap());
    assert!(store.secrets("project:p1").await.unwrap().is_empty());
}
on_both!(secrets_replace_list_and_go_with_their_project);

/// The first of two writers keeps its value, whatever the order they race in: the second
/// neither fails nor replaces it.
async fn a_secret_put_if_absent_never_replaces_one_there(store: Store) {
    use valet_store::SealedSecret;
    let sealed = |v: &str| SealedSecret {
        name: "key".into(),
        nonce: "00".into(),
        sealed: v.into(),
    };
    let (first, second) = (sealed("a"), sealed("b"));
    let (a, b) = tokio::join!(
        store.put_secret_if_absent("valet:key-check", &first),
        store.put_secret_if_absent("valet:key-check", &second),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one went in: {a} {b}");
    let kept = store.secrets("valet:key-check").await.unwrap();
    assert_eq!(kept, [sealed(if a { "a" } else { "b" })]);
    assert!(!store
        .put_secret_if_absent("valet:key-check", &sealed("c"))
        .await
        .unwrap());
    assert_eq!(store.secrets("valet:key-check").await.unwrap(), kept);
}
on_both!(a_secret_put_if_absent_never_replaces_one_there);

/// The deploys counted against `deploys_per_hour`: one owner's, after the window's start,
/// oldest first, still counted once their project is deleted.
async fn deploy_times_count_one_owners_recent_deploys(store: Store) {
    let before = now();
    for (project, owner, build) in [
        ("p1", "alice", "b1"),
        ("p1", "alice", "b2"),
        ("q1", "bob", "b3"),
    ] {
        store
            .record_deployment(&new_deployment(project, owner, build))
            .await
            .unwrap();
    }
    let after = now();
    let times = store.deploy_times_since("alice", before - 1).await.unwrap();
    assert_eq!(times.len(), 2, "alice's two versions, not bob's: {times:?}");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );
    assert!(
        times.iter().all(|&t| (before..=after).contains(&t)),
        "{times:?}"
    );
    assert!(
        store
            .deploy_times_since("alice", after)
            .await
            .unwrap()
            .is_empty(),
        "the window's start is exclusive"
    );
    assert!(store
        .deploy_times_since("carol", 0)
        .await
        .unwrap()
        .is_empty());
    // Deleting the project does not give its deploys back.
    assert!(store.delete_project("p1").await.unwrap());
    assert_eq!(
        store
            .deploy_times_since("alice", before - 1)
            .await
            .unwrap()
            .len(),
        2
    );
}
on_both!(deploy_times_count_one_owners_recent_deploys);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Cluster mode keeps each version's upload (binary, any size) with its records, for the
/// replicas that did not build it; it goes with its project.
async fn uploads_are_kept_byte_for_byte_and_go_with_their_project(store: Store) {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let kept = valet_store::StoredUpload {
        file_name: "site.tar.gz".into(),
        runtime: Some("python".into()),
        requirements: None,
        body,
    };
    let new = new_deployment("p1", "alice", "b1");
    store
        .record_deployment_with(&new, Some(&kept))
        .await
        .unwrap();
    store
        .record_deployment(&new_deployment("p1", "alice", "b2"))
        .await
        .unwrap();
    assert_eq!(store.upload("p1", "b1").await.unwrap(), Some(kept));
    assert_eq!(store.upload("p1", "b2").await.unwrap(), None, "not kept");
    assert_eq!(store.upload("p2", "b1").await.unwrap(), None);
    assert!(store.delete_project("p1").await.unwrap());
    assert_eq!(store.upload("p1", "b1").await.unwrap(), None);
}
on_both!(uploads_are_kept_byte_for_byte_and_go_with_their_project);
