//! Issue 14's findings on the control plane, at the level a user meets them: a JWT without a
//! configured `iss` or `aud` (gateway and deploy API), a user named like the admin, a file
//! uploaded twice without a name, an admin token from `valet token create --admin` on the
//! admin-only endpoints, and a data_dir that deployed projects' users cannot reach.

use crate::deploy_support::*;
use crate::support::{free_addr, Valet};
use jsonwebtoken::{encode, EncodingKey, Header};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "hardening-secret-0123456789abcdef";

fn jwt(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn later() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_iss_and_aud_are_required_at_the_gateway_and_the_deploy_api() {
    let (valet, admin_api) = valet_with(&format!(
        r#"
[auth]
jwt_secret = "{SECRET}"
issuer = "idp"
audience = "valet"

[[containers]]
class_name = "B"

[[routes]]
pattern = "/api/*"
container = "B"
instance = "name:b"
auth = "jwt"
"#
    ))
    .await;
    let exp = later();
    let full = jwt(serde_json::json!({"sub": "ada", "exp": exp, "iss": "idp", "aud": "valet"}));
    let no_iss = jwt(serde_json::json!({"sub": "ada", "exp": exp, "aud": "valet"}));
    let no_aud = jwt(serde_json::json!({"sub": "ada", "exp": exp, "iss": "idp"}));
    let neither = jwt(serde_json::json!({"sub": "ada", "exp": exp}));
    // `iss` is one string (RFC 7519 4.1.1): a list holding the configured issuer is no issuer.
    let listed = jwt(serde_json::json!({"sub": "ada", "exp": exp, "iss": ["idp"], "aud": "valet"}));
    let listed_two =
        jwt(serde_json::json!({"sub": "ada", "exp": exp, "iss": ["evil", "idp"], "aud": "valet"}));

    let url = valet.url("/api/echo");
    for (missing, token) in [
        ("iss", &no_iss),
        ("aud", &no_aud),
        ("iss", &neither),
        ("iss", &listed),
        ("iss", &listed_two),
    ] {
        let r = valet
            .client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            401,
            "a token without {missing} passed the gateway"
        );
        let (status, body) = admin_api
            .as_token(token)
            .call("GET", "/v1/projects", None)
            .await;
        assert_eq!(
            status, 401,
            "a token without {missing} passed the deploy API: {body}"
        );
        assert!(
            body["message"].as_str().unwrap_or("").contains(missing),
            "the refusal names the missing claim {missing}: {body}"
        );
    }
    assert!(
        valet.starts().is_empty(),
        "a refused token woke an instance"
    );

    let r = valet
        .client
        .get(&url)
        .bearer_auth(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = admin_api
        .as_token(&full)
        .call("GET", "/v1/projects", None)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_user_may_be_named_like_the_admin() {
    let (valet, admin_api) = valet_with(&format!("[auth]\njwt_secret = \"{SECRET}\"\n")).await;
    let (status, body) = admin_api
        .upload(Form::file("app.py", plain_app("admins")).field("name", "mine"))
        .await;
    assert_eq!(status, 201, "{body}");

    for name in ["admin", "Admin", " ADMIN "] {
        let (status, body) = admin_api
            .call(
                "POST",
                "/v1/tokens",
                Some(serde_json::json!({ "user": name })),
            )
            .await;
        assert_eq!(status, 400, "user {name:?} got a token: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains("reserved"),
            "{body}"
        );
    }
    let (ok, out, err) = cli(&valet, &["token", "create", "--user", "admin"]);
    assert!(!ok, "`valet token create --user admin` made a token: {out}");
    assert!(err.contains("reserved"), "{err}");

    let as_admin_sub =
        admin_api.as_token(&jwt(serde_json::json!({"sub": "admin", "exp": later()})));
    for path in ["/v1/projects", "/api/mcp-projects"] {
        let (status, body) = as_admin_sub.call("GET", path, None).await;
        assert_eq!(status, 401, "a JWT with sub admin opened {path}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains("reserved"),
            "{body}"
        );
    }
    // Everyone else still sees none of the admin's projects; the admin sees its own.
    let alice = admin_api.as_token(&admin_api.token_for("alice", None).await);
    assert!(alice.projects().await.is_empty());
    assert_eq!(admin_api.projects().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_uploaded_again_without_a_name_is_its_next_version() {
    let (valet, api) = valet_with("").await;
    // The README's curl, without -F name.
    let (status, first) = api.upload(Form::file("app.py", plain_app("v1"))).await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = api.upload(Form::file("app.py", plain_app("v2"))).await;
    assert_eq!(status, 201, "the second upload of app.py: {second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["version"], 2);
    assert_eq!(
        get_app(&valet, second["endpoint"].as_str().unwrap())
            .await
            .1["version"],
        "v2"
    );

    // Two at once: one project, two versions, no UNIQUE failure for the one that lost the race.
    let (a, b) = tokio::join!(
        api.upload(Form::file("twice.py", plain_app("a"))),
        api.upload(Form::file("twice.py", plain_app("b")))
    );
    assert_eq!((a.0, b.0), (201, 201), "{} / {}", a.1, b.1);
    assert_eq!(a.1["id"], b.1["id"]);

    // `valet deploy FILE` twice, as `--help` promises: the second is a new version.
    let file = valet.dir().join("tool.py");
    std::fs::write(&file, plain_app("cli")).unwrap();
    let path = file.display().to_string();
    for round in 1..=2 {
        let (ok, out, err) = cli(&valet, &["deploy", &path]);
        assert!(ok, "deploy {round}: {out}{err}\n{}", valet.log());
    }
    let projects = api.projects().await;
    let names: Vec<_> = projects.iter().map(|p| p["name"].clone()).collect();
    assert_eq!(projects.len(), 3, "{names:?}");
    let tool = projects.iter().find(|p| p["name"] == "tool").expect("tool");
    assert_eq!(tool["version"], 2, "{tool}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_from_token_create_opens_every_admin_endpoint() {
    let (valet, api) = valet_with("[[containers]]\nclass_name = \"B\"\n").await;
    let (ok, out, err) = cli(&valet, &["token", "create", "--admin"]);
    assert!(ok, "{out}{err}");
    let admin = api.as_token(&last_line(&out));
    let user = api.as_token(&api.token_for("carol", None).await);
    let stranger = api.as_token("vt_not-a-token");
    for path in [
        "/metrics",
        "/v1/instances",
        "/v1/classes",
        "/v1/status",
        "/v1/stats",
        "/v1/projects",
    ] {
        let (status, body) = admin.call("GET", path, None).await;
        assert_eq!(status, 200, "admin token on {path}: {body}");
        let (status, body) = stranger.call("GET", path, None).await;
        assert_eq!(status, 401, "unknown token on {path}: {body}");
    }
    for path in ["/metrics", "/v1/instances", "/v1/classes", "/v1/status"] {
        let (status, body) = user.call("GET", path, None).await;
        assert_eq!(status, 403, "a user token on {path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("admin token"),
            "{body}"
        );
    }
}

/// A config whose data_dir lies under `dir`; its path.
fn config_under(dir: &std::path::Path) -> String {
    let config = dir.join("valet.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{}\"\nadmin_listen = \"{}\"\ndata_dir = \"{}\"\n",
            free_addr(),
            free_addr(),
            dir.join("data").display()
        ),
    )
    .unwrap();
    config.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_a_data_dir_projects_cannot_reach_is_named_by_check_and_refused_per_deploy() {
    if !is_root() {
        // CI runs as root: there a missing root is a broken setup, not a reason to pass.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root under CI=true"
        );
        eprintln!("skipped: projects run as their own users only when valet is root");
        return;
    }
    // What `mktemp -d` makes: mode 0700.
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let folder = closed.path().display().to_string();
    let path = config_under(closed.path());
    // `check` warns naming the folder to open; `up` serves (assets and config classes need
    // no other user) and refuses each deploy instead, below.
    let out = Valet::run(&["check", &path], Duration::from_secs(20));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("chmod o+x {folder}")) && text.contains("warning"),
        "valet check names the folder to open:\n{text}"
    );
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let check = Valet::run(&["check", &path], Duration::from_secs(20));
    assert!(check.status.success(), "{check:?}");
    assert!(
        !String::from_utf8_lossy(&check.stderr).contains("chmod"),
        "no warning once open: {check:?}"
    );

    // Closed after `valet up`: the deploy is refused naming the folder, never "cannot run
    // program /usr/bin/python3: Permission denied".
    let (valet, api) = valet_with("").await;
    std::fs::set_permissions(valet.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (status, body) = api.upload(Form::file("app.py", plain_app("v1"))).await;
    std::fs::set_permissions(valet.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let message = body["message"].as_str().unwrap_or("");
    assert_eq!(status, 503, "{body}");
    assert!(
        message.contains(&format!("chmod o+x {}", valet.dir().display())),
        "{body}"
    );
    assert!(!message.contains("cannot run program"), "{body}");
}
