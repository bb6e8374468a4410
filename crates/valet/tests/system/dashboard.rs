//! The dashboard in a real browser: headless Chromium driven through chromedriver loads the
//! page from the admin listener, signs in with the token, sees an instance appear after a
//! request to the gateway, stops and starts it with the buttons, follows its logs, and draws
//! its charts; lists deployed projects with their versions and rolls one back with its
//! button; and says how many replicas a key with `scale` runs. Screenshots of each step are kept under `<target>/test-artifacts/dashboard/`.
//!
//! Without Chromium and chromedriver (Debian: `chromium`, `chromium-driver`) the test is skipped,
//! except under `CI=true`, where it fails: CI must never pass without having run it.

use crate::admin_support::{with_token, Admin, TOKEN};
use crate::support::*;
use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CONFIG: &str = r#"
[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
strip_prefix = "/api"
"#;

/// How long any one thing may take to show up on the page.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_an_instance_and_stops_it_with_its_button() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let valet = Valet::with_config(&with_token(CONFIG)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let page = &browser.client;
    let shots = Screenshots::new();

    page.goto(&admin.url("/"))
        .await
        .expect("open the dashboard");
    let token = wait_for(page, "#token").await;
    token.send_keys("not-the-admin-token-at-all").await.unwrap();
    click(page, "#login").await;
    wait_for(page, "#login-error:not([hidden])").await;
    shots.take(page, "01-token-refused").await;

    let token = wait_for(page, "#token").await;
    token.clear().await.unwrap();
    token.send_keys(TOKEN).await.unwrap();
    click(page, "#login").await;
    wait_for(page, "#app:not([hidden])").await;
    wait_for(page, "#no-instances:not([hidden])").await;
    shots.take(page, "02-signed-in").await;

    for _ in 0..3 {
        assert_eq!(valet.get("/api/echo").await.status(), 200);
    }
    let row = r#"tr[data-instance="Echo/one"]"#;
    wait_for(page, &format!("{row}[data-state=\"ready\"]")).await;
    shots.take(page, "03-instance-ready").await;

    click(page, &format!("{row} button[data-action=\"stop\"]")).await;
    wait_for(page, &format!("{row}[data-state=\"stopped\"]")).await;
    assert_eq!(admin.instance("Echo", "one").await["state"], "stopped");
    shots.take(page, "04-instance-stopped").await;

    click(page, &format!("{row} button[data-action=\"start\"]")).await;
    wait_for(page, &format!("{row}[data-state=\"ready\"]")).await;
    click(page, &format!("{row} button[data-action=\"logs\"]")).await;
    wait_for_text(page, "#logs", "backend ready on").await;
    for _ in 0..5 {
        assert_eq!(valet.get("/api/echo").await.status(), 200);
    }
    // The charts get a class once two stats polls have come in.
    wait_for(page, "#legend-rate span").await;
    shots.take(page, "05-logs-and-charts").await;

    // The token lives in sessionStorage: a reload stays signed in.
    page.refresh().await.unwrap();
    wait_for(page, &format!("{row}[data-state=\"ready\"]")).await;

    // Everything the page loaded came from the admin listener itself.
    let loaded = page
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    for url in loaded.as_array().unwrap() {
        assert!(
            url.as_str().unwrap().starts_with(&admin.url("/")),
            "loaded from elsewhere: {url}"
        );
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_projects_and_rolls_one_back_with_its_button() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (valet, api) = crate::deploy_support::valet_with("").await;
    let mut id = String::new();
    let mut url = String::new();
    for version in ["v1", "v2"] {
        let (status, body) = api
            .upload(
                crate::deploy_support::Form::file(
                    "app.py",
                    crate::deploy_support::plain_app(version),
                )
                .field("name", "site"),
            )
            .await;
        assert_eq!(status, 201, "{body}\n{}", valet.log());
        id = body["id"].as_str().unwrap().to_string();
        url = body["endpoint"].as_str().unwrap().to_string();
    }
    assert_eq!(
        crate::deploy_support::get_app(&valet, &url).await.1["version"],
        "v2"
    );

    let admin = Admin::of(&valet, TOKEN).await;
    let page = &browser.client;
    let shots = Screenshots::new();
    page.goto(&admin.url("/"))
        .await
        .expect("open the dashboard");
    wait_for(page, "#token")
        .await
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(page, "#login").await;
    let row = format!(r#"tr[data-project="{id}"]"#);
    wait_for(page, &format!(r#"{row}[data-version="2"]"#)).await;
    click(page, &format!(r#"{row} button[data-action="versions"]"#)).await;
    wait_for(page, r#"button[data-rollback="1"]"#).await;
    shots.take(page, "06-project-versions").await;

    click(page, r#"button[data-rollback="1"]"#).await;
    wait_for(page, &format!(r#"{row}[data-version="1"]"#)).await;
    // The version in the table is the one that serves.
    assert_eq!(
        crate::deploy_support::get_app(&valet, &url).await.1["version"],
        "v1"
    );
    wait_for(page, r#"button[data-rollback="2"]"#).await;
    shots.take(page, "07-rolled-back").await;
    browser.close().await;
}

/// Issue 19, items 1 and 7: a deployed project's instance row goes by the project's name, its
/// requests move its chart line (labelled `project:<name>`), and its Stop and Logs buttons work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_deployed_project_by_name_with_its_chart_stop_and_logs() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (valet, api) = crate::deploy_support::valet_with("").await;
    let (status, body) = api
        .upload(
            crate::deploy_support::Form::file("app.py", crate::deploy_support::plain_app("shown"))
                .field("name", "shop"),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", valet.log());
    let id = body["id"].as_str().unwrap().to_string();
    let url = body["endpoint"].as_str().unwrap().to_string();

    let admin = Admin::of(&valet, TOKEN).await;
    let page = &browser.client;
    let shots = Screenshots::new();
    page.goto(&admin.url("/"))
        .await
        .expect("open the dashboard");
    wait_for(page, "#token")
        .await
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(page, "#login").await;
    let row = r#"tr[data-instance="project:shop/main"]"#;
    wait_for(page, &format!("{row}[data-state=\"ready\"]")).await;
    let cell = wait_for(page, &format!("{row} td:first-child")).await;
    assert_eq!(cell.text().await.unwrap(), format!("project:shop ({id})"));

    // Requests while the page polls: the project's rate line rises above zero.
    let moved = "return (series.rate['project:shop'] || []).some(p => p[1] > 0)";
    eventually(WAIT, "the project's chart moves", || async {
        for _ in 0..5 {
            assert_eq!(crate::deploy_support::get_app(&valet, &url).await.0, 200);
        }
        let answer = page.execute(moved, vec![]).await.ok()?;
        (answer == serde_json::Value::Bool(true)).then_some(())
    })
    .await;
    wait_for_text(page, "#legend-rate", "project:shop").await;
    shots.take(page, "08-project-row-and-chart").await;

    click(page, &format!("{row} button[data-action=\"logs\"]")).await;
    wait_for_text(page, "#logs", "starting shown").await;
    click(page, &format!("{row} button[data-action=\"stop\"]")).await;
    wait_for(page, &format!("{row}[data-state=\"stopped\"]")).await;
    let (status, listed) = admin.get("/v1/instances").await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["state"], "stopped", "{listed}");
    shots.take(page, "09-project-stopped").await;
    browser.close().await;
}

/// A key with `scale` and two replicas running: one held by an open WebSocket, the other
/// started for a request that found it busy (issue 21).
const SCALED: &str = r#"
[[containers]]
class_name = "Echo"
readiness = { path = "/health" }
scale = { max_replicas = 2, target_concurrency = 1 }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:w"
strip_prefix = "/api"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_how_many_replicas_a_scaled_key_runs() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let valet = Valet::with_config(&with_token(SCALED)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let page = &browser.client;
    let shots = Screenshots::new();

    // The open WebSocket is replica 0's request in flight; a request now starts replica 1.
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", valet.addr()))
        .await
        .unwrap_or_else(|e| panic!("websocket handshake: {e}\n{}", valet.log()));
    let env: serde_json::Value = valet.get("/api/env").await.json().await.unwrap();
    assert_eq!(env["VALET_REPLICA"], "1", "{env}");

    page.goto(&admin.url("/"))
        .await
        .expect("open the dashboard");
    let token = wait_for(page, "#token").await;
    token.send_keys(TOKEN).await.unwrap();
    click(page, "#login").await;
    wait_for(page, "#app:not([hidden])").await;
    // The key's first row says how many of its replicas run; each replica has its own row.
    let row = r#"tr[data-instance="Echo/w"][data-replicas="2"]"#;
    wait_for(page, row).await;
    wait_for_text(page, &format!("{row} td.key"), "2 replicas").await;
    wait_for(page, r#"tr[data-instance="Echo/w #1"][data-state="ready"]"#).await;
    shots.take(page, "10-scaled-key-replicas").await;
    drop(ws);
    browser.close().await;
}

/// chromedriver (in its own process group, with the browsers it starts) and a session on it.
struct Browser {
    client: Client,
    _driver: DriverProcess,
    _profile: tempfile::TempDir,
}

/// Kills chromedriver's whole process group when dropped, so that no Chromium outlives a
/// failed test.
struct DriverProcess(Child);

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Browser {
    async fn start() -> Option<Self> {
        let (Some(chromium), Some(chromedriver)) = (
            find(&["chromium", "chromium-browser", "google-chrome"]),
            find(&["chromedriver"]),
        ) else {
            let message = "chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{message}");
            }
            eprintln!("skipping the browser test: {message}");
            return None;
        };
        let port = free_addr().port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(DriverProcess)
            .expect("start chromedriver");
        eventually(WAIT, "chromedriver listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        let profile = tempfile::Builder::new()
            .prefix("valet-chromium-")
            .tempdir()
            .unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1100",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = serde_json::json!({
            "goog:chromeOptions": { "binary": chromium, "args": args }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        Some(Self {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// Ends the session (Chromium quits) before the driver is killed.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// The first of `names` found on PATH.
fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

async fn wait_for(page: &Client, css: &str) -> fantoccini::elements::Element {
    match page
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => panic!("{css} did not appear: {e}\n{}", page_text(page).await),
    }
}

async fn wait_for_text(page: &Client, css: &str, needle: &str) {
    let what = format!("{needle:?} in {css}");
    eventually(WAIT, &what, || async {
        let text = page.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
        text.contains(needle).then_some(())
    })
    .await
}

/// Clicks what `css` finds. The instance table is redrawn every second, so an element found a
/// moment ago may be gone: find and click again until it works.
async fn click(page: &Client, css: &str) {
    for _ in 0..100 {
        if let Ok(element) = page.find(Locator::Css(css)).await {
            if element.click().await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not click {css}\n{}", page_text(page).await);
}

async fn page_text(page: &Client) -> String {
    match page.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Screenshots kept as test artifacts, outside the source tree.
struct Screenshots {
    dir: PathBuf,
}

impl Screenshots {
    fn new() -> Self {
        // The binary is <target>/<profile>/valet.
        let target = Path::new(env!("CARGO_BIN_EXE_valet"))
            .parent()
            .and_then(Path::parent)
            .expect("target dir");
        let dir = target.join("test-artifacts").join("dashboard");
        std::fs::create_dir_all(&dir).expect("artifacts folder");
        Self { dir }
    }

    async fn take(&self, page: &Client, name: &str) {
        let png = page.screenshot().await.expect("screenshot");
        std::fs::write(self.dir.join(format!("{name}.png")), png).expect("write screenshot");
    }
}
