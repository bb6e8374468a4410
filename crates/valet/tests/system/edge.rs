//! What the gateway checks at the edge, before any instance is woken: TLS on the public
//! listener, JWT on routes with `auth = "jwt"`, and per-route rate limits.

use crate::support::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::StatusCode;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// A self-signed certificate for `localhost`, made by the openssl command line tool.
fn self_signed() -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl must be installed");
    assert!(
        status.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    (read("cert.pem"), read("key.pem"))
}

/// `curl` over TLS, trusting only our certificate; returns (status and HTTP version, body).
fn curl_tls(valet: &Valet, path: &str, http2: bool) -> (String, String) {
    let port = valet.addr().port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(valet.dir().join("cert.pem"))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl must be installed");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.to_string(), body.to_string())
}

#[tokio::test]
async fn tls_serves_http1_and_http2_and_says_https_to_the_backend() {
    let (cert, key) = self_signed();
    let valet = Valet::with_config(
        r#"
[server]
tls = { cert = "cert.pem", key = "key.pem" }

[[containers]]
class_name = "B"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "B"
instance = "name:b"
strip_prefix = "/api"
"#,
    )
    .assets(&[("cert.pem", &cert), ("key.pem", &key)])
    .start()
    .await;

    let (status, body) = curl_tls(&valet, "/api/echo", false);
    assert_eq!(status, "200 1.1", "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");

    let (status, _) = curl_tls(&valet, "/api/echo", true);
    assert_eq!(status, "200 2", "ALPN must offer h2");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(secret: &str, exp: u64) -> String {
    let claims = serde_json::json!({ "sub": "ada", "exp": exp, "iss": "valet-tests" });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn jwt_routes_refuse_bad_tokens_before_waking_anything() {
    let valet = Valet::with_config(
        r#"
[auth]
jwt_secret = "right-secret"
issuer = "valet-tests"

[[containers]]
class_name = "B"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "B"
instance = "name:b"
auth = "jwt"
"#,
    )
    .start()
    .await;
    let url = valet.url("/api/echo");
    let c = &valet.client;

    let none = c.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let bad_key = token("wrong-secret", now() + 600);
    let expired = token("right-secret", now() - 3600);
    // alg "none": a header and claims with no signature.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZGEiLCJleHAiOjk5OTk5OTk5OTl9.";
    let mut tampered = token("right-secret", now() + 600);
    tampered.insert_str(tampered.find('.').unwrap() + 1, "eyJh");
    for bad in [
        bad_key.as_str(),
        expired.as_str(),
        unsigned,
        tampered.as_str(),
    ] {
        let r = c.get(&url).bearer_auth(bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "token {bad}");
    }
    assert!(
        valet.starts().is_empty(),
        "no instance may start for a refused request"
    );

    let good = token("right-secret", now() + 600);
    let r = c.get(&url).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Browsers cannot set headers on a WebSocket: a cookie or the query carries the token.
    let r = c
        .get(&url)
        .header("cookie", format!("access_token={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{url}?access_token={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(valet.starts().len(), 1);
}

#[tokio::test]
async fn rate_limit_answers_429_and_ignores_a_spoofed_forwarded_for() {
    let valet = Valet::with_config(
        r#"
[[containers]]
class_name = "B"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "B"
instance = "name:b"
rate_limit = { requests = 3, per = "60s", by = "ip" }
"#,
    )
    .start()
    .await;
    let url = valet.url("/api/echo");
    for i in 0..3 {
        let r = valet
            .client
            .get(&url)
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "request {i} is within the limit"
        );
    }
    let over = valet
        .client
        .get(&url)
        .header("x-forwarded-for", "10.9.9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
}
