//! The static front end through the binary: index, validators, ranges, the single-page-app
//! fallback, and no way out of the public folder.

use crate::support::*;
use reqwest::StatusCode;

const CONFIG: &str = r#"
[assets]
directory = "public"
not_found_handling = "single-page-application"

[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
strip_prefix = "/api"
"#;

const INDEX: &str = "<!doctype html><title>valet test</title><div id=app></div>";
const SECRET: &str = "top-secret-value-42";

/// A public folder with a page and a script, and a secret right next to it.
async fn start() -> Valet {
    Valet::with_config(CONFIG)
        .assets(&[
            ("public/index.html", INDEX),
            ("public/app.js", "console.log('0123456789abcdefghij');"),
            ("secret", SECRET),
            ("public/../secret.txt", SECRET),
        ])
        .start()
        .await
}

#[tokio::test]
async fn the_root_serves_index_html() {
    let valet = start().await;
    let response = valet.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(response.headers().contains_key("etag"));
    assert_eq!(response.text().await.unwrap(), INDEX);
    assert!(valet.starts().is_empty(), "assets never wake an instance");
}

#[tokio::test]
async fn a_matching_if_none_match_is_a_304() {
    let valet = start().await;
    let first = valet.get("/app.js").await;
    let etag = first.headers()["etag"].clone();

    let again = valet
        .client
        .get(valet.url("/app.js"))
        .header("If-None-Match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());

    let other = valet
        .client
        .get(valet.url("/app.js"))
        .header("If-None-Match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_range_request_gets_206_with_those_bytes() {
    let valet = start().await;
    let response = valet
        .client
        .get(valet.url("/app.js"))
        .header("Range", "bytes=13-22")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()["content-range"], "bytes 13-22/36");
    assert_eq!(response.text().await.unwrap(), "0123456789");
}

#[tokio::test]
async fn client_side_routes_get_the_app() {
    let valet = start().await;
    let response = valet
        .client
        .get(valet.url("/settings/profile"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), INDEX);
    // A missing script is a 404, not HTML with status 200.
    let script = valet
        .client
        .get(valet.url("/missing.js"))
        .header("Accept", "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn encoded_dot_segments_do_not_leave_the_public_folder() {
    let valet = start().await;
    // Raw, because a URL library would normalize these before sending.
    for target in [
        "/..%2f..%2fsecret",
        "/..%2fsecret",
        "/%2e%2e/secret",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret",
        "/../secret",
        "/..%5csecret",
        "/%252e%252e/secret",
        "/app.js/../../secret",
    ] {
        let response = raw(
            valet.addr(),
            &format!("GET {target} HTTP/1.1\nHost: localhost\nAccept: text/html"),
        )
        .await;
        assert!(
            !response.text().contains(SECRET),
            "{target} leaked the secret: {response:?}"
        );
        assert!(
            response.status == 404
                || response.status == 400
                || (response.status == 200 && response.text() == INDEX),
            "{target}: status {} {}",
            response.status,
            response.text()
        );
    }
}
