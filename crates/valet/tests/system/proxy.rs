//! What the backend sees of a proxied request (forwarded headers, request id, stripped path, no
//! hop-by-hop headers), and which route a request takes.

use crate::support::*;
use reqwest::StatusCode;

const ROUTES: &str = r#"
[[containers]]
class_name = "General"
readiness = { path = "/health" }

[[containers]]
class_name = "Special"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "General"
instance = "name:general"
strip_prefix = "/api"

[[routes]]
pattern = "/api/special/*"
container = "Special"
instance = "name:special"

[[routes]]
pattern = "/containers/*"
container = "General"
instance = "path:1"
strip_prefix = "/containers/*"

[[routes]]
pattern = "/tenant/*"
host = "tenant.example"
container = "Special"
instance = "name:tenant"
"#;

#[tokio::test]
async fn the_backend_sees_forwarded_headers_and_the_stripped_path() {
    let valet = Valet::with_config(ROUTES).start().await;
    let response = valet
        .client
        .get(valet.url("/api/things/1?x=y"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Prefix", "/evil")
        .send()
        .await
        .unwrap();
    let echo = echo_of(response, &valet.log()).await;
    let headers = &echo["headers"];

    assert_eq!(echo["path"], "/things/1?x=y");
    assert_eq!(
        headers["x-forwarded-for"], "127.0.0.1",
        "a client's X-Forwarded-For is not trusted"
    );
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], valet.addr().to_string());
    assert_eq!(headers["x-forwarded-prefix"], "/api");
}

#[tokio::test]
async fn a_request_id_is_made_when_absent_and_kept_when_sent() {
    let valet = Valet::with_config(ROUTES).start().await;

    let response = valet.get("/api/echo").await;
    let returned = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let echo = echo_of(response, &valet.log()).await;
    assert!(!returned.is_empty());
    assert_eq!(
        echo["headers"]["x-request-id"],
        returned.as_str(),
        "the backend got the id the client got"
    );

    let response = valet
        .client
        .get(valet.url("/api/echo"))
        .header("X-Request-Id", "mine-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "mine-123");
    let echo = echo_of(response, &valet.log()).await;
    assert_eq!(echo["headers"]["x-request-id"], "mine-123");
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_the_backend() {
    let valet = Valet::with_config(ROUTES).start().await;
    // Raw, because a well-behaved client library would not send these as written.
    let response = raw(
        valet.addr(),
        "GET /api/echo HTTP/1.1\n\
         Host: gateway.test\n\
         Connection: x-secret, keep-alive\n\
         X-Secret: do-not-forward\n\
         Keep-Alive: timeout=5\n\
         Proxy-Connection: keep-alive\n\
         X-Kept: yes",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let headers = &response.json()["headers"];
    for name in ["x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            headers.get(name).is_none(),
            "{name} reached the backend: {headers}"
        );
    }
    assert_ne!(headers["connection"], "x-secret, keep-alive");
    assert_eq!(headers["x-kept"], "yes");
    assert_eq!(headers["x-forwarded-host"], "gateway.test");
}

#[tokio::test]
async fn strip_prefix_with_a_star_strips_the_key_segment() {
    let valet = Valet::with_config(ROUTES).start().await;
    let echo = valet.echo("/containers/abc/x").await;
    assert_eq!(echo["key"], "abc");
    assert_eq!(echo["path"], "/x");
    assert_eq!(echo["headers"]["x-forwarded-prefix"], "/containers/abc");

    let root = valet.echo("/containers/abc").await;
    assert_eq!(root["path"], "/", "nothing after the prefix is the root");
    assert_eq!(root["pid"], echo["pid"]);
}

#[tokio::test]
async fn the_longest_pattern_wins() {
    let valet = Valet::with_config(ROUTES).start().await;
    let special = valet.echo("/api/special/x").await;
    let general = valet.echo("/api/other").await;
    assert_eq!(special["class"], "Special");
    assert_eq!(
        special["path"], "/api/special/x",
        "that route strips nothing"
    );
    assert_eq!(general["class"], "General");
    // `/api/*` matches `/api` itself but not `/apiary`.
    assert_eq!(valet.echo("/api").await["class"], "General");
    assert_eq!(valet.get("/apiary").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_host_bound_route_serves_only_its_host() {
    let valet = Valet::with_config(ROUTES).start().await;
    let for_host = raw(
        valet.addr(),
        "GET /tenant/x HTTP/1.1\nHost: Tenant.Example:8787",
    )
    .await;
    assert_eq!(for_host.status, 200, "{}", for_host.text());
    assert_eq!(for_host.json()["key"], "tenant");

    let other = raw(valet.addr(), "GET /tenant/x HTTP/1.1\nHost: other.example").await;
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["error"], "not_found");
    let keys: Vec<String> = valet.starts().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, ["tenant"]);
}

#[tokio::test]
async fn no_route_and_no_assets_is_a_404_json() {
    let valet = Valet::with_config(ROUTES).start().await;
    let response = valet.get("/nothing/here").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(json_of(response).await["error"], "not_found");
}

// Multi-thread: when the test ends, dropping `Valet` blocks this thread until valet exits, and
// valet's graceful h2 shutdown waits for the client to answer its GOAWAY ping, which the
// client's connection task can only do on another thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_prior_knowledge_client_reaches_the_backend() {
    let valet = Valet::with_config(ROUTES).start().await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();

    let response = h2
        .get(valet.url("/api/echo"))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let echo = echo_of(response, &valet.log()).await;
    assert_eq!(echo["path"], "/echo");
    assert_eq!(
        echo["headers"]["host"],
        valet.addr().to_string(),
        "the h2 authority became Host"
    );

    let posted = h2
        .post(valet.url("/api/upload"))
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    assert_eq!(json_of(posted).await["bytes"], 100_000);
}

/// One class behind `/api` with short first-byte and idle timeouts.
const SHORT_TIMEOUTS: &str = r#"
[server]
timeouts = { first_byte = "2s", idle = "1s" }

[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
strip_prefix = "/api"
"#;

#[tokio::test]
async fn an_upload_slower_than_first_byte_still_gets_its_answer() {
    let valet = Valet::with_config(SHORT_TIMEOUTS).start().await;
    assert_eq!(valet.get("/api/health").await.status(), StatusCode::OK);
    // Five pieces 800 ms apart: 4 s to send, twice `first_byte`, never silent for `idle`.
    let pieces = futures_util::stream::unfold(0, |i| async move {
        if i == 5 {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        }
        Some((Ok::<_, std::io::Error>(vec![b'x'; 1000]), i + 1))
    });
    let response = valet
        .client
        .post(valet.url("/api/upload"))
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", valet.log());
    assert_eq!(json_of(response).await["bytes"], 5000);
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_408_and_the_instance_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let valet = Valet::with_config(SHORT_TIMEOUTS).start().await;
    assert_eq!(valet.get("/api/health").await.status(), StatusCode::OK);
    let mut stream = tokio::net::TcpStream::connect(valet.addr()).await.unwrap();
    let head = "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    stream.write_all(head.as_bytes()).await.unwrap();
    // Then nothing: after `idle` (1 s) of silence valet gives up on the body.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "valet kept waiting for the stalled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(valet.get("/api/health").await.status(), StatusCode::OK);
}
