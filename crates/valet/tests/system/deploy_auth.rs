//! Who may use the deploy API: admin token, user tokens from `valet token create`, JWTs from
//! `[auth]` (forged and expired ones refused); each project belongs to its owner alone; plan
//! limits answer 403, 413 and 429 with the limit's name, and change nothing.

use crate::deploy_support::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "deploy-test-secret-0123456789abcdef";

const CONFIG: &str = r#"
[auth]
jwt_secret = "deploy-test-secret-0123456789abcdef"

[plans.free]
max_projects = 2
max_running = 1
max_upload = "4KB"

[plans.pro]
max_projects = 10
max_running = 1
max_upload = "10MB"

# Sorts after "free", which stays the plan of tokens made without --plan.
[plans.throttled]
max_projects = 10
max_upload = "10MB"
deploys_per_hour = 2
"#;

fn jwt(secret: &str, sub: &str, plan: &str, exp_from_now: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({ "sub": sub, "plan": plan, "exp": now + exp_from_now });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// `CONFIG`, on the embedded store or on the PostgreSQL database `store`.
fn config_on(store: Option<&str>) -> String {
    // with_token opens [server]; the store line lands in it, before [auth].
    match store {
        Some(url) => format!("store = \"{url}\"\n{CONFIG}"),
        None => CONFIG.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sees_and_deletes_only_their_own_projects() {
    owners_alone(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_user_sees_and_deletes_only_their_own_projects() {
    if let Some(url) = postgres_database().await {
        owners_alone(Some(&url)).await;
    }
}

async fn owners_alone(store: Option<&str>) {
    let (valet, admin_api) = valet_with(&config_on(store)).await;
    // `valet token create` prints the token as the last line; --json prints {"token": ...}.
    let (ok, out, err) = cli(
        &valet,
        &["token", "create", "--user", "alice", "--plan", "pro"],
    );
    assert!(ok, "{out}{err}");
    let alice = admin_api.as_token(&last_line(&out));
    let (ok, _, err) = cli(&valet, &["token", "create", "--plan", "gold"]);
    assert!(
        !ok && err.contains("no plan named \"gold\" in [plans] (plans: free, pro, throttled)"),
        "{err}"
    );
    let (ok, out, err) = cli(&valet, &["token", "create", "--user", "bob", "--json"]);
    assert!(ok, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&last_line(&out)).expect("--json");
    let bob = admin_api.as_token(json["token"].as_str().unwrap());

    let (status, body) = alice
        .upload(Form::file("app.py", plain_app("alice")).field("name", "mine"))
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    let id = body["id"].as_str().unwrap().to_string();
    let url = body["endpoint"].as_str().unwrap().to_string();

    assert!(
        bob.projects().await.is_empty(),
        "bob sees nothing of alice's"
    );
    for (method, path) in [
        ("GET", format!("/v1/projects/{id}")),
        ("GET", format!("/v1/projects/{id}/versions")),
        ("GET", format!("/v1/projects/{id}/logs")),
        ("DELETE", format!("/v1/projects/{id}")),
        ("DELETE", format!("/api/containers/servers/{id}")),
    ] {
        let (status, body) = bob.call(method, &path, None).await;
        assert_eq!(status, 404, "bob {method} {path}: {body}");
    }
    let (status, _) = bob
        .upload(Form::file("app.py", plain_app("bob")).field("id", id.as_str()))
        .await;
    assert_eq!(status, 404, "bob cannot deploy over alice's project");
    // The same name is bob's own, separate project.
    let (status, bobs) = bob
        .upload(Form::file("app.py", plain_app("bob")).field("name", "mine"))
        .await;
    assert_eq!(status, 201, "{bobs}");
    assert_ne!(bobs["id"], id.as_str());

    assert_eq!(get_app(&valet, &url).await.1["version"], "alice");
    let mine = alice.projects().await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["owner"], "alice");
    assert_eq!(admin_api.projects().await.len(), 2, "the admin sees all");
    // A user token is not an admin token: known, so 403 rather than 401.
    let (status, _) = alice.call("GET", "/v1/instances", None).await;
    assert_eq!(status, 403);
    let (status, _) = alice
        .call(
            "POST",
            "/v1/tokens",
            Some(serde_json::json!({ "admin": true })),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = alice
        .call("DELETE", &format!("/v1/projects/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(alice.projects().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_limits_are_enforced_and_name_the_limit() {
    plan_limits(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_plan_limits_are_enforced_and_name_the_limit() {
    if let Some(url) = postgres_database().await {
        plan_limits(Some(&url)).await;
    }
}

async fn plan_limits(store: Option<&str>) {
    let (valet, admin_api) = valet_with(&config_on(store)).await;
    let free = admin_api.as_token(&admin_api.token_for("fred", Some("free")).await);
    for name in ["one", "two"] {
        let (status, body) = free
            .upload(Form::file("app.py", plain_app(name)).field("name", name))
            .await;
        assert_eq!(status, 201, "{body}\n{}", valet.log());
    }
    let (status, body) = free
        .upload(Form::file("app.py", plain_app("three")).field("name", "three"))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_projects = 2"),
        "{body}"
    );
    // A new version of an existing project is not a new project.
    let (status, body) = free
        .upload(Form::file("app.py", plain_app("two-b")).field("name", "two"))
        .await;
    assert_eq!(status, 201, "{body}");
    // 4KB plan limit; the file is a valid app padded with a comment.
    let big = plain_app("big") + &format!("# {}\n", "x".repeat(5000));
    let (status, body) = free
        .upload(Form::file("app.py", big).field("name", "two"))
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("max_upload"),
        "{body}"
    );
    let projects = free.projects().await;
    assert_eq!(projects.len(), 2, "refusals changed nothing");
    assert!(projects.iter().all(|p| p["version"] != 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_per_hour_answers_429_with_retry_after() {
    deploy_rate(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_deploys_per_hour_answers_429_with_retry_after() {
    if let Some(url) = postgres_database().await {
        deploy_rate(Some(&url)).await;
    }
}

/// An upload to `path` as `api`'s caller: status, `Retry-After` (if any) and JSON body.
async fn upload_seeing_retry_after(
    api: &Api,
    path: &str,
    form: Form<'_>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut multipart = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(form.bytes).file_name(form.file_name.to_string()),
    );
    for (name, value) in form.fields {
        multipart = multipart.part(name.to_string(), reqwest::multipart::Part::bytes(value));
    }
    let response = api
        .client
        .post(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .multipart(multipart)
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, retry_after, body)
}

async fn deploy_rate(store: Option<&str>) {
    let (valet, admin_api) = valet_with(&config_on(store)).await;
    let tess = admin_api.as_token(&admin_api.token_for("tess", Some("throttled")).await);
    // A new project and a new version: both count.
    for version in ["one-a", "one-b"] {
        let (status, body) = tess
            .upload(Form::file("app.py", plain_app(version)).field("name", "one"))
            .await;
        assert_eq!(status, 201, "{body}\n{}", valet.log());
    }
    let id = tess.projects().await[0]["id"].as_str().unwrap().to_string();
    let versions_before = tess
        .call("GET", &format!("/v1/projects/{id}/versions"), None)
        .await;

    // The third, as a new project, a new version, and through the CLI's streamed endpoint.
    for (path, name, what) in [
        ("/api/containers/upload", "two", "a new project"),
        ("/api/containers/upload", "one", "a new version"),
        ("/v1/projects?progress=1", "one", "a streamed deploy"),
    ] {
        let (status, retry_after, body) = upload_seeing_retry_after(
            &tess,
            path,
            Form::file("app.py", plain_app("three")).field("name", name),
        )
        .await;
        assert_eq!(status, 429, "{what}: {body}");
        assert_eq!(body["error"], "rate_limited", "{what}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("deploys_per_hour = 2") && message.contains("throttled"),
            "{what}: the message names the plan and the limit: {body}"
        );
        // The oldest counted deploy was made moments ago: it leaves the hour in just under
        // 3600 s (the margin covers a slow test machine).
        let seconds: u64 = retry_after
            .unwrap_or_else(|| panic!("{what}: no Retry-After"))
            .parse()
            .expect("Retry-After in seconds");
        assert!(
            (3000..=3600).contains(&seconds),
            "{what}: Retry-After {seconds}"
        );
    }

    let projects = tess.projects().await;
    assert_eq!(projects.len(), 1, "no project was made: {projects:?}");
    assert_eq!(projects[0]["version"], 2, "no version was added");
    assert_eq!(
        tess.call("GET", &format!("/v1/projects/{id}/versions"), None)
            .await,
        versions_before,
        "the versions are unchanged"
    );
    assert_eq!(
        get_app(&valet, projects[0]["endpoint"].as_str().unwrap())
            .await
            .1["version"],
        "one-b"
    );

    // The limit is per user: another user on the same plan, and the admin, still deploy.
    let tom = admin_api.as_token(&admin_api.token_for("tom", Some("throttled")).await);
    let (status, body) = tom
        .upload(Form::file("app.py", plain_app("tom")).field("name", "one"))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin_api
        .upload(Form::file("app.py", plain_app("admin")).field("name", "admins"))
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_open_the_api_for_their_sub_and_forged_or_expired_ones_are_refused() {
    jwts(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_jwts_open_the_api_for_their_sub_and_forged_or_expired_ones_are_refused() {
    if let Some(url) = postgres_database().await {
        jwts(Some(&url)).await;
    }
}

async fn jwts(store: Option<&str>) {
    let (valet, admin_api) = valet_with(&config_on(store)).await;
    let carol = admin_api.as_token(&jwt(SECRET, "carol", "free", 600));
    let (status, body) = carol
        .upload(Form::file("app.py", plain_app("carol")).field("name", "c"))
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    assert_eq!(carol.projects().await[0]["owner"], "carol");

    let forged = admin_api.as_token(&jwt("not-the-secret-0123456789abcdef", "carol", "pro", 600));
    let expired = admin_api.as_token(&jwt(SECRET, "carol", "free", -3600));
    let unknown = admin_api.as_token("vt_0000000000000000000000000000000000000000");
    let nobody = admin_api.as_token("");
    for (who, api) in [
        ("forged", &forged),
        ("expired", &expired),
        ("unknown token", &unknown),
        ("no token", &nobody),
    ] {
        let (status, body) = api.call("GET", "/v1/projects", None).await;
        assert_eq!(status, 401, "{who}: {body}");
        // The deploy API takes user tokens too: a refusal never says only an admin's would do.
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("admin token is required"),
            "{who}: {body}"
        );
        match who {
            "unknown token" => assert!(message.contains("not known"), "{body}"),
            "no token" => assert!(message.contains("a token is required"), "{body}"),
            _ => assert!(message.starts_with("invalid token"), "{who}: {body}"),
        }
        let (status, _) = api
            .upload(Form::file("app.py", plain_app("x")).field("name", "x"))
            .await;
        assert_eq!(status, 401, "{who} upload");
    }
    // A valid JWT whose plan is not configured gets no unlimited pass: 403 naming the plan.
    let gold = admin_api.as_token(&jwt(SECRET, "dave", "gold", 600));
    let (status, body) = gold
        .upload(Form::file("app.py", plain_app("dave")).field("name", "d"))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"] == "unknown_plan" && body["message"].to_string().contains("gold"),
        "the refusal names the plan: {body}"
    );
    assert_eq!(
        admin_api.projects().await.len(),
        1,
        "nothing was deployed by them"
    );
}
