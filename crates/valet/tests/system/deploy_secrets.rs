//! Project secrets: `valet secret put NAME` (value from stdin), `list`, `rm`; sealed at rest
//! with a key kept apart from the store; injected as env (the app restarts with it once
//! ready); never in API answers, error bodies or valet's log; only the owner may touch them.

use crate::deploy_support::*;
use std::os::unix::fs::PermissionsExt;

const VALUE: &str = "s3cret-value-7f3a9c";

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_injected_as_env_and_never_shown() {
    let (valet, api) = valet_with("").await;
    let (status, body) = api
        .upload(Form::file("app.py", fixture("env_app.py")).field("name", "env"))
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    let id = body["id"].as_str().unwrap().to_string();
    let url = body["endpoint"].as_str().unwrap().to_string();
    assert_eq!(
        get_app(&valet, &url).await.1["API_KEY"],
        serde_json::Value::Null
    );

    let (ok, out, err) = cli_with_stdin(
        &valet,
        &["secret", "put", "API_KEY", "--project", &id],
        &format!("{VALUE}\n"),
    );
    assert!(ok, "{out}{err}\n{}", valet.log());
    assert!(!out.contains(VALUE) && !err.contains(VALUE));
    assert_eq!(
        get_app(&valet, &url).await.1["API_KEY"],
        VALUE,
        "injected as env"
    );

    let (ok, out, _) = cli(&valet, &["secret", "list", "--project", &id]);
    assert!(ok);
    assert_eq!(out.trim(), "API_KEY");
    let (status, listed) = api
        .call("GET", &format!("/v1/projects/{id}/secrets"), None)
        .await;
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains(VALUE), "{listed}");

    // Sealed at rest: neither the store nor anything else under data_dir holds the value,
    // except the running app's own environment (not a file). The key is apart and 0600.
    let data = valet.dir().join(".valet");
    assert_eq!(files_containing(&data, VALUE), Vec::<String>::new());
    assert!(!valet.log().contains(VALUE), "never in valet's log");
    let key = data.join("secret.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!key.starts_with(data.join("store")));

    // Bad names change nothing; another user sees no such project.
    for bad in ["1BAD", "PORT", "VALET_X", "A-B"] {
        let (status, body) = api
            .call("PUT", &format!("/v1/projects/{id}/secrets/{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let other = api.as_token(&api.token_for("mallory", None).await);
    let (status, _) = other
        .call("GET", &format!("/v1/projects/{id}/secrets"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = other
        .call(
            "DELETE",
            &format!("/v1/projects/{id}/secrets/API_KEY"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let (ok, out, err) = cli(&valet, &["secret", "rm", "API_KEY", "--project", &id]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        get_app(&valet, &url).await.1["API_KEY"],
        serde_json::Value::Null
    );
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/v1/projects/{id}/secrets/API_KEY"),
            None,
        )
        .await;
    assert_eq!(status, 404, "already gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_class_gets_its_stored_secrets_from_valets_next_start() {
    let config = format!(
        r#"
[[containers]]
class_name = "Keyed"
command = ["python3", "{FIXTURES}/env_app.py"]
secrets = ["API_KEY"]

[[routes]]
pattern = "/api/*"
container = "Keyed"
instance = "name:one"
strip_prefix = "/api"
"#
    );
    let (mut valet, api) = valet_with(&config).await;
    let url = valet.url("/api/");
    assert_eq!(
        get_app(&valet, &url).await.1["API_KEY"],
        serde_json::Value::Null
    );

    let put = ["secret", "put", "API_KEY", "--class", "Keyed"];
    let (ok, out, err) = cli_with_stdin(&valet, &put, VALUE);
    assert!(ok, "{out}{err}");
    assert!(out.contains("next start"), "says when it applies: {out}");
    let (ok, _, err) = cli_with_stdin(&valet, &["secret", "put", "NOPE", "--class", "Keyed"], "x");
    assert!(!ok && err.contains("does not list"), "{err}");
    let (ok, _, err) = cli_with_stdin(&valet, &["secret", "put", "A", "--class", "Missing"], "x");
    assert!(!ok && err.contains("no container class"), "{err}");
    let user = api.as_token(&api.token_for("tenant", None).await);
    let (status, _) = user.call("GET", "/v1/classes/Keyed/secrets", None).await;
    assert_eq!(status, 403, "class secrets are the operator's");
    let (ok, out, _) = cli(&valet, &["secret", "list", "--class", "Keyed"]);
    assert!(ok);
    assert_eq!(out.trim(), "API_KEY");

    valet.terminate();
    let again = Restarted::start(valet.dir(), valet.addr()).await;
    let (status, body) = get_app(&valet, &url).await;
    assert_eq!(
        (status, body["API_KEY"].as_str()),
        (200, Some(VALUE)),
        "{}",
        again.log()
    );
    let data = valet.dir().join(".valet");
    assert_eq!(files_containing(&data, VALUE), Vec::<String>::new());
    assert!(!again.log().contains(VALUE) && !valet.log().contains(VALUE));
}
