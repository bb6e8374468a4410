//! The deploy API's records outlive valet: after a restart every project is routed to its
//! current version again (started on its first request), and older versions can still be
//! rolled back to. The same suite on the embedded SQLite store and on a real PostgreSQL server.

use crate::deploy_support::*;

async fn projects_survive_a_restart(store: Option<&str>) {
    let config = match store {
        Some(url) => format!("[server]\nstore = \"{url}\"\n"),
        None => String::new(),
    };
    // with_token adds its own [server] table; merge by putting ours in the same table.
    let config = config.replace("[server]\n", "");
    let (mut valet, api) = valet_with(&config).await;
    let (status, v1) = api
        .upload(Form::file("app.py", plain_app("v1")).field("name", "kept"))
        .await;
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let (status, v2) = api
        .upload(Form::file("app.py", plain_app("v2")).field("name", "kept"))
        .await;
    assert_eq!(status, 201, "{v2}");
    let id = v2["id"].as_str().unwrap().to_string();
    let url = v2["endpoint"].as_str().unwrap().to_string();
    assert_eq!(get_app(&valet, &url).await.1["version"], "v2");
    let sqlite_file = valet.dir().join(".valet/store/valet.db");
    assert_eq!(
        sqlite_file.exists(),
        store.is_none(),
        "the configured store is used"
    );

    valet.terminate();
    let again = Restarted::start(valet.dir(), valet.addr()).await;
    let (status, body) = get_app(&valet, &url).await;
    assert_eq!(
        (status, body["version"].as_str()),
        (200, Some("v2")),
        "{body}\n{}",
        again.log()
    );
    let projects = api.projects().await;
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["version"], 2);
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/projects/{id}/rollback"),
            Some(serde_json::json!({ "version": 1 })),
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", again.log());
    assert_eq!(get_app(&valet, &url).await.1["version"], "v1");
    let (status, _) = api
        .call("DELETE", &format!("/v1/projects/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(api.projects().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_projects_survive_a_restart() {
    projects_survive_a_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projects_survive_a_restart() {
    if let Some(url) = postgres_database().await {
        projects_survive_a_restart(Some(&url)).await;
    }
}
