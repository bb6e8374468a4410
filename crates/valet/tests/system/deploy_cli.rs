//! The deploy CLI against a running valet: `valet deploy DIR|FILE`, `projects ls|versions|rm`,
//! `rollback`, and a failing deploy that prints the version's log.

use crate::deploy_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_a_folder_and_a_file_list_roll_back_and_remove() {
    let (valet, _api) = valet_with("").await;
    let app_dir = valet.dir().join("myapp");
    std::fs::create_dir_all(app_dir.join("static")).unwrap();
    std::fs::write(app_dir.join("app.py"), plain_app("from-folder")).unwrap();
    std::fs::write(app_dir.join("static/readme.txt"), "packed too").unwrap();
    let dir_arg = app_dir.display().to_string();

    let (ok, out, err) = cli(&valet, &["deploy", &dir_arg, "--name", "cli-app"]);
    assert!(ok, "{out}{err}\n{}", valet.log());
    assert!(
        err.contains("==> unpacking") && err.contains("==> starting"),
        "progress: {err}"
    );
    // Not a terminal: one line for the upload, no bar drawn with escapes or carriage returns.
    assert_eq!(
        err.lines().filter(|l| l.starts_with("uploaded ")).count(),
        1,
        "{err}"
    );
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let url = last_line(&out);
    assert!(
        url.contains("/containers/"),
        "the URL is the last line: {out}"
    );
    assert_eq!(get_app(&valet, &url).await.1["version"], "from-folder");
    let build = valet.dir().join(".valet/deploy/builds");
    let packed = std::fs::read_dir(&build)
        .unwrap()
        .filter_map(Result::ok)
        .any(|b| b.path().join("static/readme.txt").is_file());
    assert!(packed, "the folder's files were uploaded");

    let file = valet.dir().join("app.py");
    std::fs::write(&file, plain_app("from-file")).unwrap();
    let (ok, out, err) = cli(
        &valet,
        &["deploy", &file.display().to_string(), "--name", "cli-app"],
    );
    assert!(ok, "{out}{err}");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("uploaded {size} bytes in "))),
        "the upload line counts the file's {size} bytes: {err}"
    );
    assert_eq!(last_line(&out), url, "same project, new version");
    assert_eq!(get_app(&valet, &url).await.1["version"], "from-file");

    let (ok, out, err) = cli(&valet, &["projects", "ls", "--json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("--json");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["version"], 2);
    let (ok, out, _) = cli(&valet, &["projects", "ls"]);
    assert!(
        ok && out.contains("cli-app") && out.contains("ENDPOINT"),
        "{out}"
    );
    let (ok, out, _) = cli(&valet, &["projects", "versions", &id]);
    assert!(
        ok && out.lines().count() == 3,
        "header and two versions: {out}"
    );

    let (ok, out, err) = cli(&valet, &["rollback", &id, "1"]);
    assert!(ok, "{out}{err}");
    assert_eq!(get_app(&valet, &url).await.1["version"], "from-folder");

    let broken = valet.dir().join("broken.py");
    std::fs::write(
        &broken,
        plain_app("x").replace("CRASH = False", "CRASH = True"),
    )
    .unwrap();
    let (ok, out, err) = cli(
        &valet,
        &["deploy", &broken.display().to_string(), "--name", "cli-app"],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("did not become ready") && err.contains("boom"),
        "{err}"
    );
    assert_eq!(get_app(&valet, &url).await.1["version"], "from-folder");

    let (ok, out, err) = cli(&valet, &["projects", "rm", &id]);
    assert!(ok, "{out}{err}");
    assert_eq!(get_app(&valet, &url).await.0, 404);
    let (ok, out, _) = cli(&valet, &["projects", "ls", "--json"]);
    assert!(ok);
    assert_eq!(out.trim(), "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_streams_the_installers_output_as_it_runs() {
    let (valet, _api) = valet_with("").await;
    let file = valet.dir().join("index.js");
    std::fs::write(
        &file,
        "const http = require('http');\n\
         const ms = require('ms');\n\
         http.createServer((q, s) => s.end(String(ms('1m')))).listen(process.env.PORT, '127.0.0.1');\n",
    )
    .unwrap();
    let (ok, out, err) = cli(
        &valet,
        &[
            "deploy",
            &file.display().to_string(),
            "--name",
            "ms",
            "--requirements",
            "ms@2.1.3",
        ],
    );
    assert!(ok, "{out}{err}\n{}", valet.log());
    assert!(err.contains("==> installing"), "{err}");
    assert!(
        err.contains("added 1 package"),
        "npm's own output, streamed: {err}"
    );
    let response = valet.client.get(last_line(&out)).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "60000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_draws_an_upload_bar_on_a_terminal_and_keeps_json_clean() {
    let (valet, _api) = valet_with("").await;
    let file = valet.dir().join("app.py");
    // Padded past one upload chunk (64 KiB), so the file goes out in several pieces.
    let app = plain_app("bar") + &format!("# {}\n", "x".repeat(200_000));
    std::fs::write(&file, &app).unwrap();
    let config = valet.dir().join("valet.toml");

    // --json: stdout is one JSON document, whatever the progress on stderr.
    let (ok, out, err) = cli(
        &valet,
        &[
            "deploy",
            &file.display().to_string(),
            "--name",
            "bar",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}\n{}", valet.log());
    let answer: serde_json::Value = serde_json::from_str(&out).expect("stdout is only JSON");
    assert_eq!(answer["version"], 1, "{answer}");
    assert!(
        err.contains(&format!("uploaded {} bytes", app.len())),
        "{err}"
    );

    // A terminal on stderr (util-linux `script` runs valet on a pseudo-terminal; stdout
    // goes to a file): the bar is drawn and redrawn in place, and ends at 100%.
    let stdout_file = valet.dir().join("deploy-stdout.json");
    let quote = |p: &std::path::Path| format!("'{}'", p.display());
    let command = format!(
        "{} deploy {} --name bar --json --config {} > {}",
        quote(std::path::Path::new(env!("CARGO_BIN_EXE_valet"))),
        quote(&file),
        quote(&config),
        quote(&stdout_file),
    );
    let run = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("VALET_ADMIN_URL")
        .env_remove("VALET_ADMIN_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux script runs");
    let terminal = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{terminal}\n{}", valet.log());
    assert!(
        terminal.contains("\r\x1b[2Kuploading [") && terminal.contains("] 100%"),
        "the bar, drawn in place: {terminal:?}"
    );
    let size = format!(
        "{:.1} KiB / {:.1} KiB",
        app.len() as f64 / 1024.0,
        app.len() as f64 / 1024.0
    );
    assert!(
        terminal.contains(&size),
        "bytes sent of the total ({size}): {terminal:?}"
    );
    assert!(
        !terminal.contains("uploaded "),
        "no log line on a terminal: {terminal:?}"
    );
    assert!(
        terminal.contains("==> starting"),
        "then the stages: {terminal:?}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stdout_file).unwrap()).expect("JSON");
    assert_eq!(answer["version"], 2, "{answer}");
}

/// A CLI command as the holder of `token` (VALET_ADMIN_URL and VALET_ADMIN_TOKEN, as a tenant
/// on another machine would run it).
fn cli_as(api: &Api, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .env("VALET_ADMIN_URL", &api.base)
        .env("VALET_ADMIN_TOKEN", token)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run valet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_and_revoked_by_the_admin_and_by_their_user() {
    let (valet, api) = valet_with("").await;
    let make = |user: &str| {
        let (ok, out, err) = cli(&valet, &["token", "create", "--user", user]);
        assert!(ok, "{err}");
        last_line(&out)
    };
    let (alice, bob) = (make("alice"), make("bob"));
    // This config has no [plans]: a plan named anyway is refused, not silently dropped.
    let (ok, _, err) = cli(&valet, &["token", "create", "--plan", "gold"]);
    assert!(!ok && err.contains("no [plans]"), "{err}");

    let (ok, out, err) = cli(&valet, &["token", "list"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ID "), "{out}");
    assert!(out.contains("alice") && out.contains("bob"), "{out}");
    assert!(
        !out.contains(&alice) && !out.contains(&bob),
        "no token is shown: {out}"
    );
    let (ok, out, _) = cli(&valet, &["token", "list", "--json"]);
    assert!(ok);
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id_of = |user: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|t| t["user"] == user)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (alice_id, bob_id) = (id_of("alice"), id_of("bob"));

    // A user sees only its own, and cannot revoke another's.
    let (ok, out, err) = cli_as(&api, &alice, &["token", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains(&alice_id) && !out.contains("bob"), "{out}");
    let (ok, _, err) = cli_as(&api, &alice, &["token", "revoke", &bob_id]);
    assert!(
        !ok && err.contains("no token") && err.contains("of yours"),
        "{err}"
    );

    // The admin revokes bob's by id: it stops working at once.
    let (ok, out, err) = cli(&valet, &["token", "revoke", &bob_id]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("revoked token {bob_id} of user bob"));
    let (status, body) = api.as_token(&bob).call("GET", "/v1/projects", None).await;
    assert_eq!(status, 401, "{body}");

    // Alice revokes her own, by the token itself.
    let (ok, _, err) = cli_as(&api, &alice, &["token", "revoke", &alice]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli_as(&api, &alice, &["token", "list"]);
    assert!(!ok && err.contains("not known"), "{err}");
}
