//! The deploy API against the real binary, real PyPI and npm installs and real app processes:
//! upload a FastAPI app.py and an express index.ts, call them through `/containers/<id>/`,
//! deploy new versions (traffic moves only once the new one is ready; a failing one never takes
//! traffic), roll back, delete.

use crate::deploy_support::*;
use serde_json::Value;
use std::time::Duration;

fn endpoint(body: &Value) -> String {
    body["endpoint"].as_str().expect("endpoint").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_app_from_pypi_is_served_under_its_container_path_and_deleted() {
    let (valet, api) = valet_with("").await;
    let (status, body) = api
        .upload(
            Form::file("app.py", fixture("fastapi_app.py"))
                .field("name", "hello-fastapi")
                .field("requirements", "fastapi uvicorn"),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    assert_eq!(body["name"], "hello-fastapi");
    assert_eq!(body["runtime"], "python");
    assert_eq!(body["version"], 1);
    let id = body["id"].as_str().unwrap().to_string();
    let url = endpoint(&body);
    assert_eq!(url, valet.url(&format!("/containers/{id}/")));

    let (status, root) = get_app(&valet, &url).await;
    assert_eq!(status, 200, "{root}");
    assert_eq!(
        root,
        serde_json::json!({ "hello": "fastapi", "version": "v1" })
    );
    // The app sees the path after /containers/<id>.
    let (status, item) = get_app(&valet, &format!("{url}items/42?x=1")).await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["item_id"], 42);
    assert_eq!(item["path"], "/items/42");

    let (status, listed) = api.call("GET", "/api/mcp-projects", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["state"], "ready");

    let (status, gone) = api
        .call("DELETE", &format!("/api/containers/servers/{id}"), None)
        .await;
    assert_eq!(status, 200, "{gone}");
    let (status, _) = get_app(&valet, &url).await;
    assert_eq!(status, 404, "a deleted project is not served");
    assert!(api.projects().await.is_empty());
    let (status, _) = api
        .call("DELETE", &format!("/api/containers/servers/{id}"), None)
        .await;
    assert_eq!(status, 404, "deleting twice");
}

/// Issue 19, item 4: a FastAPI app that valet serves with uvicorn (no `__main__` block) is
/// told its root path, so its docs page, opened at `/containers/<id>/docs`, loads its
/// `openapi.json` from under the prefix too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastapi_app_served_by_uvicorn_knows_its_prefix_and_its_docs_load() {
    let (valet, api) = valet_with("").await;
    let app = "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n@app.get(\"/hello\")\ndef hello():\n    return {\"hello\": \"docs\"}\n";
    let (status, body) = api
        .upload(
            Form::file("app.py", app)
                .field("name", "docs")
                .field("requirements", "fastapi uvicorn"),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    let id = body["id"].as_str().unwrap().to_string();
    let url = endpoint(&body);
    let (status, hello) = get_app(&valet, &format!("{url}hello")).await;
    assert_eq!(
        (status, hello["hello"].as_str()),
        (200, Some("docs")),
        "{hello}"
    );
    let (status, page) = get_app(&valet, &format!("{url}docs")).await;
    assert_eq!(status, 200);
    let page = page.as_str().unwrap_or_default().to_string();
    let openapi = format!("/containers/{id}/openapi.json");
    assert!(page.contains(&format!("'{openapi}'")), "{page}");
    let (status, spec) = get_app(&valet, &valet.url(&openapi)).await;
    assert_eq!(status, 200, "{spec}");
    assert!(spec["paths"]["/hello"].is_object(), "{spec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_typescript_app_from_npm_runs_and_a_second_app_reuses_the_install() {
    let (valet, api) = valet_with("").await;
    let (status, body) = api
        .upload(
            Form::file("index.ts", fixture("express_index.ts"))
                .field("name", "hello-express")
                .field("requirements", "express cors"),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    assert_eq!(body["runtime"], "node");
    assert_eq!(body["reused_cache"], false);
    let url = endpoint(&body);
    let (status, root) = get_app(&valet, &url).await;
    assert_eq!(status, 200, "{root}");
    assert_eq!(
        root,
        serde_json::json!({ "hello": "express", "version": "v1" })
    );
    let (_, echo) = get_app(&valet, &format!("{url}echo/word")).await;
    assert_eq!(echo["word"], "word");
    assert_eq!(echo["path"], "/echo/word");

    // Same requirements in another order: the installed set is reused.
    let (status, second) = api
        .upload(
            Form::file(
                "index.ts",
                fixture("express_index.ts").replace("\"v1\"", "\"other\""),
            )
            .field("name", "second-express")
            .field("requirements", "cors express"),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["reused_cache"], true);
    let (_, root) = get_app(&valet, &endpoint(&second)).await;
    assert_eq!(root["version"], "other");
    assert_eq!(api.projects().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_traffic_only_once_ready_and_rollback_returns() {
    let (valet, api) = valet_with("").await;
    let (status, v1) = api
        .upload(Form::file("app.py", plain_app("v1")).field("name", "site"))
        .await;
    assert_eq!(status, 201, "{v1}\n{}", valet.log());
    let id = v1["id"].as_str().unwrap().to_string();
    let url = endpoint(&v1);
    assert_eq!(get_app(&valet, &url).await.1["version"], "v1");

    // v2 needs three seconds to listen: while it starts, every request is still served by v1.
    let slow = plain_app("v2").replace("STARTUP_DELAY = 0", "STARTUP_DELAY = 3");
    let uploader = api.clone();
    let deploy = tokio::spawn(async move {
        uploader
            .upload(Form::file("app.py", slow).field("name", "site"))
            .await
    });
    let served_during_start =
        served_through_switch(&valet, &url, &deploy, ("v1", "v2"), Duration::from_secs(3)).await;
    assert!(served_during_start >= 10, "v1 served while v2 started");
    let (status, v2) = deploy.await.unwrap();
    assert_eq!(status, 201, "{v2}");
    assert_eq!(
        (v2["id"].as_str(), v2["version"].as_i64()),
        (Some(&*id), Some(2))
    );
    assert_eq!(get_app(&valet, &url).await.1["version"], "v2");

    let (status, versions) = api
        .call("GET", &format!("/v1/projects/{id}/versions"), None)
        .await;
    assert_eq!(status, 200);
    let current: Vec<bool> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["current"].as_bool().unwrap())
        .collect();
    assert_eq!(current, [false, true]);

    let (status, back) = api
        .call(
            "POST",
            &format!("/v1/projects/{id}/rollback"),
            Some(serde_json::json!({ "version": 1 })),
        )
        .await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["version"], 1);
    assert_eq!(get_app(&valet, &url).await.1["version"], "v1");
    let (status, missing) = api
        .call(
            "POST",
            &format!("/v1/projects/{id}/rollback"),
            Some(serde_json::json!({ "version": 7 })),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(get_app(&valet, &url).await.1["version"], "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_cannot_start_is_reported_with_its_log_and_takes_no_traffic() {
    let (valet, api) = valet_with("").await;
    let (status, v1) = api
        .upload(Form::file("app.py", plain_app("v1")).field("name", "site"))
        .await;
    assert_eq!(status, 201, "{v1}");
    let (id, url) = (v1["id"].as_str().unwrap().to_string(), endpoint(&v1));
    let broken = plain_app("v2").replace("CRASH = False", "CRASH = True");
    let (status, body) = api
        .upload(Form::file("app.py", broken).field("name", "site"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "not_ready");
    let log = body["log"].to_string();
    assert!(log.contains("boom: this version cannot start"), "{body}");
    assert_eq!(get_app(&valet, &url).await.1["version"], "v1");
    let (_, versions) = api
        .call("GET", &format!("/v1/projects/{id}/versions"), None)
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");

    let (status, logs) = api
        .call("GET", &format!("/v1/projects/{id}/logs?lines=5"), None)
        .await;
    assert_eq!(status, 200);
    assert!(logs["lines"].to_string().contains("starting v1"), "{logs}");
}
