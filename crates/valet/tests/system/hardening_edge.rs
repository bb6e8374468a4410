//! Attacks on the edge from issue 14, each sent as raw bytes to the real binary on every path a
//! request can take: valet's own HTTP/1.1 (a small GET), hyper's (a chunked body moves the
//! connection there), h2 (prior knowledge, through curl) and the upgrade handshake.
//!
//! - dot segments and encoded separators must not get past `auth = "jwt"` (item 3);
//! - only WebSocket upgrades are forwarded, `HTTP2-Settings` never (item 7);
//! - client-address fields are replaced unless the peer is trusted (item 8);
//! - two `Host` fields, or a key source sent twice, are refused (item 9);
//! - an upgrade request with a body is answered 400 at once (item 10).
//!
//! And the follow-ups: repeated slashes are merged (`//private/x` is `/private/x`), an HTTP/1.1
//! request without `Host` and a `Host` that disagrees with the target's authority are 400, and
//! a route's `upgrades` names the protocols other than WebSocket it forwards.
//!
//! The red-team pass over the hardened build: a `Connection` that names the key's field (or one
//! valet routes by or sets) is 400 before any instance wakes (F6); `Client-IP`, `X-Forwarded`
//! and `X-Forwarded-Server` pass from trusted proxies only, `X-Original-URL` and
//! `X-Rewrite-URL` never (F7).

use crate::support::wire::exchange;
use crate::support::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CONFIG: &str = r#"
[auth]
jwt_secret = "s3cret"

[[containers]]
class_name = "Pub"
readiness = { path = "/health" }

[[containers]]
class_name = "Priv"
readiness = { path = "/health" }

[[containers]]
class_name = "Keyed"
readiness = { path = "/health" }

[[routes]]
pattern = "/public/*"
container = "Pub"
instance = "name:pub"
strip_prefix = "/public"

[[routes]]
pattern = "/private/*"
container = "Priv"
instance = "name:priv"
auth = "jwt"

[[routes]]
pattern = "/by-path/*"
container = "Keyed"
instance = "path:1"
strip_prefix = "/by-path/*"

[[routes]]
pattern = "/by-header/*"
container = "Keyed"
instance = "header:X-Tenant"

[[routes]]
pattern = "/by-query/*"
container = "Keyed"
instance = "query:tenant"

[[routes]]
pattern = "/by-cookie/*"
container = "Keyed"
instance = "cookie:tenant"
"#;

/// The first answer on a connection: status, head (lower-cased) and body (by Content-Length,
/// else what is left).
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: not JSON ({e}): {}",
                self.status,
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` as is and reads the first answer.
async fn send(valet: &Valet, request: &str) -> Answer {
    let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(3)).await;
    let bytes = &wire.bytes;
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer to {request:?}: {:?}", wire.text()));
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|n| n.trim().parse::<usize>().unwrap());
    let rest = &bytes[end + 4..];
    let body = rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec();
    Answer {
        status: head[9..12].parse().unwrap(),
        head,
        body,
    }
}

/// A GET as valet serves it itself.
fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: valet.test\r\n{extra}Connection: close\r\n\r\n")
}

/// The same request with a chunked (empty) body: valet hands the connection to hyper.
fn chunked(target: &str, extra: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: valet.test\r\n{extra}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    )
}

/// A WebSocket handshake: it takes the upgrade path (hyper's client to the instance). To a
/// path other than `/ws` the test backend answers with its echo, which comes back as is.
fn upgrade(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: valet.test\r\n{extra}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// curl over h2 with prior knowledge, the path sent as written; (status, body).
fn curl_h2(valet: &Valet, target: &str, headers: &[&str]) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--max-time",
        "20",
        "--http2-prior-knowledge",
        "--path-as-is",
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command
        .args(["-w", "\n%{http_code}"])
        .arg(format!("http://{}{target}", valet.addr()))
        .output()
        .expect("curl must be installed");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.parse().unwrap(), body.to_string())
}

fn classes_started(valet: &Valet) -> Vec<String> {
    valet.starts().into_iter().map(|s| s.key).collect()
}

#[tokio::test]
async fn dot_segments_and_encoded_separators_do_not_get_past_jwt() {
    let valet = Valet::with_config(CONFIG).start().await;
    // Each of these resolves to /private/x (or a backend may read it so): routed by its
    // normalised path it meets the JWT check, or it has no single meaning and is refused.
    let unauthorized = [
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/public/%2E./private/x",
        "/public/./../private/x",
        "/public//../../private/x",
        "/%70ublic/%2e%2e/%70rivate/x",
    ];
    let refused = [
        "/public/..%2fprivate/x",
        "/public/..%2Fprivate/x",
        "/public/%2e%2e%2fprivate/x",
        "/public/..%5cprivate/x",
        "/public/..\\private/x",
        "/public/..;/private/x",
        "/public/%%32%65%%32%65/private/x",
    ];
    for (targets, want) in [(&unauthorized[..], 401), (&refused[..], 400)] {
        for target in targets {
            for (how, request) in [("valet", get(target, "")), ("hyper", chunked(target, ""))] {
                let answer = send(&valet, &request).await;
                assert_eq!(answer.status, want, "{target} over {how}: {}", answer.head);
            }
            let (status, body) = curl_h2(&valet, target, &[]);
            assert_eq!(status, want, "{target} over h2: {body}");
        }
    }
    // Read as /private/x by a backend that decodes %2F (WSGI, ASGI), routes without regard
    // to case (Express) or drops `;` parameters (servlet containers), while valet's own
    // reading matches no route with auth: no single meaning, refused.
    for target in [
        "/private%2Fx",
        "/private%2fx",
        "/%2Fprivate/x",
        "/private%5Cx",
        "/private\\x",
        "/PRIVATE/x",
        "/Private/x",
        "/private;a=b/x",
    ] {
        for (how, request) in [("valet", get(target, "")), ("hyper", chunked(target, ""))] {
            let answer = send(&valet, &request).await;
            assert_eq!(answer.status, 400, "{target} over {how}: {}", answer.head);
            assert_eq!(
                answer.json()["error"],
                "ambiguous_path",
                "{target} over {how}"
            );
        }
    }
    // An encoded slash inside a route without auth, read leniently, stays in that route.
    let echo = send(&valet, &get("/public/a%2Fb", "")).await.json();
    assert_eq!(echo["class"], "Pub");
    assert_eq!(echo["path"], "/a%2Fb");
    // The WebSocket handshake is routed the same way.
    let answer = send(&valet, &upgrade("/public/%2e%2e/private/x", "")).await;
    assert_eq!(answer.status, 401, "{}", answer.head);
    assert!(
        !classes_started(&valet).contains(&"priv".to_string()),
        "a refused request woke the JWT route's instance: {:?}",
        valet.starts()
    );

    // What the instance sees is the normalised path, after strip_prefix.
    for (target, path) in [
        ("/public/a/../echo", "/echo"),
        ("/public/%2e/echo?x=../y", "/echo?x=../y"),
        ("/%70ublic/echo", "/echo"),
        ("/public/a/%2E%2E", "/"),
    ] {
        let echo = send(&valet, &get(target, "")).await.json();
        assert_eq!(echo["class"], "Pub", "{target}");
        assert_eq!(echo["path"], path, "{target}");
        let (status, body) = curl_h2(&valet, target, &[]);
        assert_eq!(status, 200, "{target}: {body}");
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["path"], path, "{target} over h2");
    }
    // The key of `path:1` and the stripped prefix read the same normalised path.
    for (target, key) in [
        ("/by-path/a/../b/echo", "b"),
        ("/by-path/%61/echo", "a"),
        ("/by-path/x/%2e%2e/y/./echo", "y"),
    ] {
        let echo = send(&valet, &get(target, "")).await.json();
        assert_eq!(echo["key"], key, "{target}");
        assert_eq!(echo["path"], "/echo", "{target}");
    }
}

#[tokio::test]
async fn only_websocket_upgrades_are_forwarded_and_http2_settings_never() {
    let valet = Valet::with_config(CONFIG).start().await;
    let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    // An h2c upgrade is an ordinary request: no 101, no tunnel, the next request on the same
    // connection is routed (and checked) like any other.
    let request = format!(
        "GET /public/echo HTTP/1.1\r\nHost: valet.test\r\n{h2c}\r\n{}",
        get("/private/x", "")
    );
    let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(3)).await;
    // (The echo's body ends without a line end, so the second status follows it directly.)
    let text = wire.text();
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("}HTTP/1.1 401 "), "{text}");
    assert!(!text.contains(" 101 "), "{text}");
    let echo = send(
        &valet,
        &format!("GET /public/echo HTTP/1.1\r\nHost: valet.test\r\n{h2c}\r\n"),
    )
    .await
    .json();
    let headers = echo["headers"].as_object().unwrap();
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !headers.contains_key(name),
            "{name} reached the instance: {echo}"
        );
    }
    // Another protocol, or websocket in a list with another, is no WebSocket upgrade either.
    for upgrade in ["TLS/1.0", "websocket, h2c"] {
        let request = format!(
            "GET /public/echo HTTP/1.1\r\nHost: valet.test\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\nConnection: close\r\n\r\n"
        );
        let answer = send(&valet, &request).await;
        assert_eq!(answer.status, 200, "{upgrade}: {}", answer.head);
        assert!(answer.json()["headers"].get("upgrade").is_none());
    }
    // WebSocket itself still works.
    let url = format!("ws://{}/public/ws", valet.addr());
    let (_ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket handshake through valet");
    assert_eq!(response.status(), 101);
}

const CLIENT_ADDRESS: &str = "X-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\nTrue-Client-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Port: 6666\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Scheme: https\r\nFront-End-Https: on\r\nX-Url-Scheme: https\r\nX_Forwarded_Port: 6666\r\n";

#[tokio::test]
async fn client_address_fields_from_an_untrusted_peer_never_reach_the_instance() {
    let valet = Valet::with_config(CONFIG).start().await;
    let h2_headers = [
        "X-Real-IP: 6.6.6.6",
        "Forwarded: for=6.6.6.6",
        "True-Client-IP: 6.6.6.6",
        "X-Client-IP: 6.6.6.6",
        "CF-Connecting-IP: 6.6.6.6",
    ];
    let (_, h2) = curl_h2(&valet, "/public/echo", &h2_headers);
    let mut echoes = vec![(
        "h2",
        serde_json::from_str::<serde_json::Value>(&h2).unwrap(),
    )];
    for (how, request) in [
        ("valet", get("/public/echo", CLIENT_ADDRESS)),
        ("hyper", chunked("/public/echo", CLIENT_ADDRESS)),
        ("upgrade", upgrade("/public/echo", CLIENT_ADDRESS)),
    ] {
        echoes.push((how, send(&valet, &request).await.json()));
    }
    let port = valet.addr().port();
    for (how, echo) in echoes {
        let headers = &echo["headers"];
        let text = echo.to_string();
        assert!(!text.contains("6.6.6.6"), "over {how}: {text}");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{how}");
        assert_eq!(headers["x-real-ip"], "127.0.0.1", "{how}");
        let host = if how == "h2" {
            format!("127.0.0.1:{port}")
        } else {
            "valet.test".to_string()
        };
        assert_eq!(
            headers["forwarded"],
            format!("for=127.0.0.1;host=\"{host}\";proto=http"),
            "{how}"
        );
        for name in ["true-client-ip", "x-client-ip", "cf-connecting-ip"] {
            assert!(headers.get(name).is_none(), "{name} over {how}");
        }
        // What the client's connection was, in any `X-Forwarded-*` or its kin: an app that
        // reads them would take plain HTTP for HTTPS, or build URLs with the client's port.
        for name in [
            "x-forwarded-port",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "front-end-https",
            "x-url-scheme",
            "x_forwarded_port",
        ] {
            assert!(headers.get(name).is_none(), "{name} over {how}: {text}");
        }
    }
}

#[tokio::test]
async fn a_trusted_proxys_client_address_fields_pass_and_forwarded_is_extended() {
    let config = format!("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n{CONFIG}");
    let valet = Valet::with_config(&config).start().await;
    for (how, request) in [
        ("valet", get("/public/echo", CLIENT_ADDRESS)),
        ("hyper", chunked("/public/echo", CLIENT_ADDRESS)),
        ("upgrade", upgrade("/public/echo", CLIENT_ADDRESS)),
    ] {
        let echo = send(&valet, &request).await.json();
        let headers = &echo["headers"];
        assert_eq!(headers["x-real-ip"], "6.6.6.6", "{how}");
        assert_eq!(headers["true-client-ip"], "6.6.6.6", "{how}");
        assert_eq!(headers["x-forwarded-for"], "6.6.6.6, 127.0.0.1", "{how}");
        assert_eq!(headers["x-forwarded-port"], "6666", "{how}");
        assert_eq!(headers["front-end-https"], "on", "{how}");
        assert!(headers.get("x_forwarded_port").is_none(), "{how}");
        assert_eq!(
            headers["forwarded"],
            "for=6.6.6.6;proto=https, for=127.0.0.1;host=\"valet.test\";proto=http",
            "{how}"
        );
    }
}

#[tokio::test]
async fn two_host_fields_and_a_key_source_sent_twice_are_refused() {
    let valet = Valet::with_config(CONFIG).start().await;
    let two_hosts = "Host: other.test\r\n";
    for (how, request) in [
        ("valet", get("/public/echo", two_hosts)),
        ("hyper", chunked("/public/echo", two_hosts)),
        ("upgrade", upgrade("/public/echo", two_hosts)),
    ] {
        let answer = send(&valet, &request).await;
        assert_eq!(answer.status, 400, "two Hosts over {how}: {}", answer.head);
        assert_eq!(answer.json()["error"], "duplicate_host");
    }

    let cases = [
        ("/by-header/echo", "X-Tenant: a\r\nX-Tenant: b\r\n"),
        ("/by-header/echo", "X-Tenant: a\r\nx-tenant: a\r\n"),
        ("/by-header/echo", "X-Tenant: a\r\nX_Tenant: b\r\n"),
        ("/by-query/echo?tenant=a&tenant=b", ""),
        ("/by-query/echo?tenant=a&t%65nant=b", ""),
        ("/by-cookie/echo", "Cookie: tenant=a; tenant=b\r\n"),
        (
            "/by-cookie/echo",
            "Cookie: tenant=a\r\nCookie: tenant=b\r\n",
        ),
    ];
    for (target, extra) in cases {
        for (how, request) in [
            ("valet", get(target, extra)),
            ("hyper", chunked(target, extra)),
        ] {
            let answer = send(&valet, &request).await;
            assert_eq!(answer.status, 400, "{target} {extra:?} over {how}");
            assert_eq!(answer.json()["error"], "ambiguous_instance_key");
        }
    }
    assert!(valet.starts().is_empty(), "{:?}", valet.starts());
    // Sent once, each is the key.
    for (target, extra) in [
        ("/by-header/echo", "X-Tenant: a\r\n"),
        ("/by-query/echo?tenant=a&other=b", ""),
        ("/by-cookie/echo", "Cookie: tenant=a; other=b\r\n"),
    ] {
        let echo = send(&valet, &get(target, extra)).await.json();
        assert_eq!(echo["key"], "a", "{target}");
    }
}

#[tokio::test]
async fn an_upgrade_request_with_a_body_is_answered_400_at_once() {
    let valet = Valet::with_config(CONFIG).start().await;
    for framing in [
        "Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let request = format!(
            "GET /public/ws HTTP/1.1\r\nHost: valet.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{framing}"
        );
        let sent = Instant::now();
        let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(wire.statuses(), [400], "{framing:?}: {}", wire.text());
        assert!(wire.text().contains("upgrade_with_body"), "{}", wire.text());
        assert!(wire.closed, "the connection closes after the refusal");
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
    }
    assert!(valet.starts().is_empty(), "{:?}", valet.starts());
}

/// A token the JWT route takes.
fn token() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({ "sub": "ada", "exp": exp });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap()
}

#[tokio::test]
async fn repeated_slashes_route_key_and_reach_the_instance_as_one() {
    // A catch-all without auth: were `//private/x` routed as sent, it would land here, and a
    // backend that merges slashes would serve it as `/private/x`.
    let config = format!(
        "{CONFIG}\n[[routes]]\npattern = \"/*\"\ncontainer = \"Pub\"\ninstance = \"name:all\"\n"
    );
    let valet = Valet::with_config(&config).start().await;
    for target in [
        "//private/x",
        "///private/x",
        "//private//x",
        "/.//private/x",
        "//public/..//private/x",
    ] {
        for (how, request) in [
            ("valet", get(target, "")),
            ("hyper", chunked(target, "")),
            ("upgrade", upgrade(target, "")),
        ] {
            let answer = send(&valet, &request).await;
            assert_eq!(answer.status, 401, "{target} over {how}: {}", answer.head);
        }
        let (status, body) = curl_h2(&valet, target, &[]);
        assert_eq!(status, 401, "{target} over h2: {body}");
    }
    assert!(valet.starts().is_empty(), "{:?}", valet.starts());

    // With a token the instance sees the merged path, on every path a request can take.
    let bearer = format!("Authorization: Bearer {}\r\n", token());
    for (how, request) in [
        ("valet", get("//private//x", &bearer)),
        ("hyper", chunked("//private//x", &bearer)),
    ] {
        let echo = send(&valet, &request).await.json();
        assert_eq!(echo["class"], "Priv", "{how}");
        assert_eq!(echo["path"], "/private/x", "{how}");
    }
    let (status, body) = curl_h2(
        &valet,
        "//private//x",
        &[&format!("Authorization: Bearer {}", token())],
    );
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/private/x", "over h2");

    // strip_prefix and `path:<n>` read the merged path too.
    for (target, key, path) in [
        ("/public//echo", "pub", "/echo"),
        ("//by-path//a//echo", "a", "/echo"),
        ("/by-path/b//echo//", "b", "/echo/"),
    ] {
        let echo = send(&valet, &get(target, "")).await.json();
        assert_eq!(
            (&echo["key"], &echo["path"]),
            (&key.into(), &path.into()),
            "{target}"
        );
    }
}

#[tokio::test]
async fn an_http11_request_names_one_host_and_http10_may_name_none() {
    let valet = Valet::with_config(CONFIG).start().await;
    // No Host at all: HTTP/1.1 is 400 on both HTTP/1 paths and the upgrade.
    let no_host = |request: String| request.replace("Host: valet.test\r\n", "");
    for (how, request) in [
        ("valet", no_host(get("/public/echo", ""))),
        ("hyper", no_host(chunked("/public/echo", ""))),
        ("upgrade", no_host(upgrade("/public/echo", ""))),
        (
            "absolute form",
            "GET http://valet.test/public/echo HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
        ),
    ] {
        assert!(!request.contains("Host:"), "{request}");
        let answer = send(&valet, &request).await;
        assert_eq!(answer.status, 400, "{how}: {}", answer.head);
        assert_eq!(answer.json()["error"], "missing_host", "{how}");
    }
    // HTTP/1.0 has no Host field to require: it is served, the instance gets a Host of valet's.
    let answer = send(&valet, "GET /public/echo HTTP/1.0\r\n\r\n").await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(answer.json()["headers"]["host"].is_string());

    // An absolute-form target and a Host must name one host (RFC 9112 3.2.2: routing reads
    // one, the instance may read the other).
    let absolute = |host: &str| {
        format!("GET http://valet.test/public/echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let answer = send(&valet, &absolute("other.test")).await;
    assert_eq!(answer.status, 400, "{}", answer.head);
    assert_eq!(answer.json()["error"], "host_mismatch");
    assert_eq!(send(&valet, &absolute("Valet.Test:80")).await.status, 200);

    // h2: `:authority` and a Host field beside it must agree as well.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let authority = valet.addr().to_string();
    for (host, want) in [
        ("other.test", 400),
        (authority.as_str(), 200),
        (&format!("{}:80", valet.addr().ip()), 400),
    ] {
        let response = client
            .get(valet.url("/public/echo"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(
            status, want,
            "Host {host} beside :authority {authority}: {body}"
        );
        if want == 400 {
            assert!(body.contains("host_mismatch"), "{body}");
        }
    }
}

#[tokio::test]
async fn upgrades_other_than_websocket_pass_only_where_the_route_names_them() {
    let config = format!(
        "{CONFIG}
[[routes]]
pattern = \"/open/*\"
container = \"Pub\"
instance = \"name:pub\"
strip_prefix = \"/open\"
upgrades = [\"websocket\", \"h2c\"]

[[routes]]
pattern = \"/closed/*\"
container = \"Pub\"
instance = \"name:pub\"
strip_prefix = \"/closed\"
upgrades = []
"
    );
    let valet = Valet::with_config(&config).start().await;
    let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    let websocket = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    // (route, upgrade fields, the Upgrade the instance gets). The test backend answers an
    // upgrade to /echo with its echo (no 101), which shows what was forwarded.
    for (route, fields, forwarded) in [
        ("/open", h2c, Some("h2c")),
        ("/open", websocket, Some("websocket")),
        ("/public", h2c, None),
        ("/public", websocket, Some("websocket")),
        ("/closed", h2c, None),
        ("/closed", websocket, None),
    ] {
        let request = format!(
            "GET {route}/echo HTTP/1.1\r\nHost: valet.test\r\n{fields}Connection: close\r\n\r\n"
        );
        let echo = send(&valet, &request).await.json();
        let headers = &echo["headers"];
        assert_eq!(
            headers["upgrade"].as_str(),
            forwarded,
            "{route} {fields:?}: {echo}"
        );
        // HTTP2-Settings never passes, not even where h2c does.
        assert!(headers.get("http2-settings").is_none(), "{route}: {echo}");
    }
    // WebSocket where the route allows it (the default and a list naming it), not elsewhere.
    for (route, opens) in [("/public", true), ("/open", true), ("/closed", false)] {
        let url = format!("ws://{}{route}/ws", valet.addr());
        let opened = tokio_tungstenite::connect_async(url).await;
        assert_eq!(opened.is_ok(), opens, "{route}: {:?}", opened.err());
    }
}

#[tokio::test]
async fn connection_naming_the_key_field_or_one_valet_sets_is_refused_before_any_instance_wakes() {
    let valet = Valet::with_config(CONFIG).start().await;
    // Each would be keyed or routed by a field that is then dropped as hop-by-hop: the
    // instance would serve key k1 without seeing k1.
    let refused = [
        (
            "/by-header/echo",
            "X-Tenant: k1\r\nConnection: X-Tenant\r\n",
        ),
        (
            "/by-header/echo",
            "X-Tenant: k1\r\nConnection: keep-alive, x-tenant\r\n",
        ),
        (
            "/by-header/echo",
            "X_Tenant: k1\r\nConnection: X_Tenant\r\n",
        ),
        (
            "/by-header/echo",
            "X-Tenant: k1\r\nConnection: X_TENANT\r\n",
        ),
        (
            "/by-cookie/echo",
            "Cookie: tenant=k1\r\nConnection: Cookie\r\n",
        ),
        ("/public/echo", "Connection: Host\r\n"),
        (
            "/public/echo",
            "X-Forwarded-For: 1.2.3.4\r\nConnection: X-Forwarded-For\r\n",
        ),
        ("/public/echo", "Connection: X-Forwarded-Proto\r\n"),
        ("/public/echo", "Connection: X-Request-Id\r\n"),
        ("/public/echo", "Connection: x_real_ip\r\n"),
        ("/private/x", "Connection: Forwarded\r\n"),
    ];
    for (target, extra) in refused {
        for (how, request) in [
            ("valet", get(target, extra)),
            ("hyper", chunked(target, extra)),
            ("upgrade", upgrade(target, extra)),
        ] {
            let answer = send(&valet, &request).await;
            assert_eq!(
                answer.status, 400,
                "{target} {extra:?} over {how}: {}",
                answer.head
            );
            assert_eq!(answer.json()["error"], "connection_names_own_field");
        }
    }
    assert!(valet.starts().is_empty(), "{:?}", valet.starts());

    // A field valet neither reads nor sets is still dropped, and the key is what the instance
    // sees.
    let fine = "X-Tenant: k1\r\nX-Other: 1\r\nConnection: X-Other\r\n";
    for (how, request) in [
        ("valet", get("/by-header/echo", fine)),
        ("hyper", chunked("/by-header/echo", fine)),
        ("upgrade", upgrade("/by-header/echo", fine)),
    ] {
        let echo = send(&valet, &request).await.json();
        assert_eq!(echo["key"], "k1", "{how}");
        assert_eq!(echo["headers"]["x-tenant"], "k1", "{how}: {echo}");
        assert!(echo["headers"].get("x-other").is_none(), "{how}: {echo}");
    }
    // h2 has no Connection field (RFC 9113 8.2.2): whatever curl does with one, the key the
    // instance runs under is the value it sees.
    let (status, body) = curl_h2(
        &valet,
        "/by-header/echo",
        &["X-Tenant: k2", "Connection: X-Tenant"],
    );
    if status == 200 {
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["key"], "k2", "{echo}");
        assert_eq!(echo["headers"]["x-tenant"], "k2", "{echo}");
    } else {
        assert_eq!(status, 400, "{body}");
    }
}

/// Client-address and URL-override fields beyond those of issue 14, with `_` spellings.
const MORE_CLIENT_FIELDS: &str = "Client-IP: 6.6.6.6\r\nX-Forwarded: for=6.6.6.6\r\nX-Forwarded-Server: evil.test\r\nX-Original-URL: /private/x\r\nX-Rewrite-URL: /private/x\r\nclient_ip: 6.6.6.6\r\nX_Original_URL: /private/x\r\nx_rewrite_url: /private/x\r\nX_Forwarded_Server: evil.test\r\nX-Original-URI: /private/x\r\nX-Forwarded-Uri: /private/x\r\nX-Forwarded-Path: /private/x\r\nx_original_uri: /private/x\r\n";

/// The echo of `/public/echo` sent with `fields` over each path: h2 (curl), valet's own
/// HTTP/1.1, hyper's and the upgrade handshake.
async fn echoes_over_every_path(
    valet: &Valet,
    fields: &str,
) -> Vec<(&'static str, serde_json::Value)> {
    let h2_headers: Vec<&str> = fields.trim_end().split("\r\n").collect();
    let (status, h2) = curl_h2(valet, "/public/echo", &h2_headers);
    assert_eq!(status, 200, "{h2}");
    let mut echoes = vec![("h2", serde_json::from_str(&h2).unwrap())];
    for (how, request) in [
        ("valet", get("/public/echo", fields)),
        ("hyper", chunked("/public/echo", fields)),
        ("upgrade", upgrade("/public/echo", fields)),
    ] {
        echoes.push((how, send(valet, &request).await.json()));
    }
    echoes
}

#[tokio::test]
async fn url_overrides_never_reach_the_instance_and_more_client_fields_only_from_a_trusted_proxy() {
    let valet = Valet::with_config(CONFIG).start().await;
    for (how, echo) in echoes_over_every_path(&valet, MORE_CLIENT_FIELDS).await {
        let text = echo.to_string();
        for sent in ["6.6.6.6", "evil.test", "/private"] {
            assert!(!text.contains(sent), "{sent} over {how}: {text}");
        }
        assert_eq!(echo["path"], "/echo", "{how}");
    }

    // A trusted proxy's client fields pass; it still cannot send the instance to another path.
    let config = format!("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n{CONFIG}");
    let trusted = Valet::with_config(&config).start().await;
    for (how, echo) in echoes_over_every_path(&trusted, MORE_CLIENT_FIELDS).await {
        let headers = &echo["headers"];
        assert_eq!(headers["client-ip"], "6.6.6.6", "{how}: {echo}");
        assert_eq!(headers["x-forwarded"], "for=6.6.6.6", "{how}: {echo}");
        assert_eq!(headers["x-forwarded-server"], "evil.test", "{how}: {echo}");
        let text = echo.to_string();
        assert!(!text.contains("/private"), "over {how}: {text}");
        for lookalike in ["client_ip", "x_forwarded_server"] {
            assert!(headers.get(lookalike).is_none(), "{lookalike} over {how}");
        }
    }
}

#[tokio::test]
async fn the_token_valet_checks_is_the_one_the_instance_acts_on() {
    let valet = Valet::with_config(CONFIG).start().await;
    let good = token();
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.Zm9yZ2Vk";
    let with_query = format!("/private/x?access_token={good}");
    let cases = [
        // A bearer field whatever the case of its scheme, or with a tab, is a token: with a
        // different valid one in a cookie or parameter beside it, the request has two.
        (
            format!("Authorization: BEARER {forged}\r\nCookie: access_token={good}\r\n"),
            "/private/x",
            400,
        ),
        (
            format!("Authorization: Bearer\t{forged}\r\n"),
            with_query.as_str(),
            400,
        ),
        // Twice where it is taken from: a backend may read the last.
        (
            format!("Authorization: Bearer {good}\r\nAuthorization: Bearer {forged}\r\n"),
            "/private/x",
            400,
        ),
        (
            format!("Cookie: access_token={good}; access_token={forged}\r\n"),
            "/private/x",
            400,
        ),
        // A valid token in one place and another token in a place some framework reads
        // first; an Authorization field that is not a plain bearer token beside a valid cookie.
        (
            format!("Authorization: Bearer {good}\r\nCookie: access_token={forged}\r\n"),
            "/private/x",
            400,
        ),
        (
            format!("Cookie: access_token={good}; access_token ={forged}\r\n"),
            "/private/x",
            400,
        ),
        (
            format!("Authorization: Token {forged}\r\nCookie: access_token={good}\r\n"),
            "/private/x",
            401,
        ),
        // One token, in any spelling of the scheme, or the same one in two places: served.
        (
            format!("Authorization: Bearer {good}\r\nCookie: access_token={good}\r\n"),
            "/private/x",
            200,
        ),
        (
            format!("Authorization: bearer {good}\r\n"),
            "/private/x",
            200,
        ),
        (
            format!("Cookie: access_token={good}\r\n"),
            "/private/x",
            200,
        ),
    ];
    for (extra, target, want) in &cases {
        for (how, request) in [
            ("valet", get(target, extra)),
            ("hyper", chunked(target, extra)),
        ] {
            let answer = send(&valet, &request).await;
            assert_eq!(
                answer.status, *want,
                "{extra:?} over {how}: {}",
                answer.head
            );
            if *want == 400 {
                assert_eq!(answer.json()["error"], "ambiguous_token", "{extra:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501() {
    let valet = Valet::with_config(CONFIG).start().await;
    for coding in ["gzip, chunked", "deflate, chunked", "identity, chunked"] {
        let request = format!(
            "POST /public/echo HTTP/1.1\r\nHost: valet.test\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let answer = send(&valet, &request).await;
        assert_eq!(answer.status, 501, "{coding}: {}", answer.head);
        assert_eq!(answer.json()["error"], "not_implemented", "{coding}");
    }
    assert!(valet.starts().is_empty(), "{:?}", valet.starts());
}

#[tokio::test]
async fn a_host_that_is_not_a_host_is_400() {
    let valet = Valet::with_config(CONFIG).start().await;
    for host in ["x@y", "x, y", "[::1", "a:8x"] {
        for (how, body) in [("valet", ""), ("hyper", "Transfer-Encoding: chunked\r\n")] {
            let tail = if body.is_empty() { "" } else { "0\r\n\r\n" };
            let request = format!(
                "POST /public/echo HTTP/1.1\r\nHost: {host}\r\n{body}Connection: close\r\n\r\n{tail}"
            );
            let answer = send(&valet, &request).await;
            assert_eq!(answer.status, 400, "{host:?} over {how}: {}", answer.head);
            assert_eq!(answer.json()["error"], "bad_host", "{host:?} over {how}");
        }
    }
    assert!(valet.starts().is_empty(), "{:?}", valet.starts());
}
