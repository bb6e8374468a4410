//! Failures seen by clients: a slow instance times out as 504, an instance that cannot start is
//! a 503, a body over the limit is a 413; every one is short JSON that leaks no path.

use crate::support::*;
use reqwest::StatusCode;

const CONFIG: &str = r#"
[server]
timeouts = { first_byte = "1s" }
max_body_size = "1MB"

[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[containers]]
class_name = "Missing"
command = ["/nonexistent/valet-test/no-such-binary", "--flag"]
readiness = { timeout = "2s" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
strip_prefix = "/api"

[[routes]]
pattern = "/missing/*"
container = "Missing"
instance = "name:missing"
"#;

/// Asserts an error answer is JSON with an `error` code and names no file or folder.
async fn assert_clean_json_error(valet: &Valet, response: reqwest::Response) -> serde_json::Value {
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let dir = valet.dir().display().to_string();
    for leak in [
        dir.as_str(),
        BACKEND,
        "/nonexistent",
        "/tmp",
        "/work",
        "/home",
        "/usr",
        ".py",
        ".rs",
    ] {
        assert!(!text.contains(leak), "error body leaks {leak:?}: {text}");
    }
    let body: serde_json::Value = serde_json::from_str(&text).expect("JSON error body");
    assert!(body["error"].is_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn an_instance_slower_than_first_byte_is_a_504() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await; // warm, so only the answer is slow

    let response = valet.get("/api/slow?ms=3000").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = assert_clean_json_error(&valet, response).await;
    assert_eq!(body["error"], "gateway_timeout");
    assert_eq!(body["instance"], "Echo/one");

    // The instance is still fine for requests within the limit.
    assert_eq!(valet.get("/api/slow?ms=10").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_command_that_cannot_start_is_a_503_without_its_path() {
    let valet = Valet::with_config(CONFIG).start().await;
    let response = valet.get("/missing/x").await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        valet.log()
    );
    assert!(response.headers().contains_key("retry-after"));
    let body = assert_clean_json_error(&valet, response).await;
    assert_eq!(body["instance"], "Missing/missing");
    assert!(
        body["timestamp"].is_string() && body["retry_after"].is_u64(),
        "{body}"
    );
}

#[tokio::test]
async fn a_body_over_max_body_size_is_a_413() {
    let valet = Valet::with_config(CONFIG).start().await;
    let response = valet
        .client
        .post(valet.url("/api/upload"))
        .body(vec![0u8; 2_000_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The body was never read, so the connection cannot be reused: the client must know.
    assert_eq!(response.headers()["connection"], "close");
    let body = assert_clean_json_error(&valet, response).await;
    assert_eq!(body["error"], "payload_too_large");

    let within = valet
        .client
        .post(valet.url("/api/upload"))
        .body(vec![0u8; 500_000])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(within).await["bytes"], 500_000);
}

#[tokio::test]
async fn a_chunked_body_over_max_body_size_is_refused() {
    let valet = Valet::with_config(CONFIG).start().await;
    // No Content-Length: the limit can only be enforced while the body streams.
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 64 * 1024])));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = valet
        .client
        .post(valet.url("/api/upload"))
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => {
            assert_eq!(
                response.status(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "{}",
                valet.log()
            );
            assert_clean_json_error(&valet, response).await;
        }
        // Closing the connection on the client's unfinished upload is also a refusal.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    let uploads = valet.starts().len();
    assert!(uploads <= 1);
}
