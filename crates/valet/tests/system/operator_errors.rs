//! Issue 19, item 3: a Docker image build that fails tells why to the requests waiting on it
//! (their 503's message) and to `valet instances`, not only in valet's log.

use crate::admin_support::{Admin, TOKEN};
use crate::support::docker::*;
use crate::support::*;

#[tokio::test]
async fn a_failed_image_build_reaches_the_503_and_valet_instances() {
    if !engine_ready() {
        return;
    }
    let dir = busybox_context(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"false\"]\n",
    );
    let class = format!("BuildFails{}", std::process::id());
    let _cleanup = Cleanup(class.clone());
    let toml = format!(
        r#"
        [server]
        driver = "docker"
        admin_token = "{TOKEN}"

        [[containers]]
        class_name = "{class}"
        image = "{dockerfile}"
        command = ["httpd", "-f", "-p", "8080"]
        instance_type = "lite"

        [[routes]]
        pattern = "/api/*"
        container = "{class}"
        instance = "name:one"
        "#,
        dockerfile = dir.path().join("Dockerfile").display()
    );
    let valet = Valet::with_config(&toml).start().await;
    let response = valet
        .client
        .get(valet.url("/api/x"))
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("image build failed") && message.contains("returned a non-zero code"),
        "the 503 says why: {body}\n{}",
        valet.log()
    );
    let admin = Admin::of(&valet, TOKEN).await;
    let out = admin.cli(&["instances"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{class}/one: ")) && text.contains("image build failed"),
        "{text}"
    );
}
