//! valet's own HTTP/1.1 server and hyper's, held to the same answers (issue 20, item 4). Two
//! valets of one config run side by side, one as always and one with `VALET_HTTP1_ENGINE=hyper`
//! (every plain connection served by hyper). Each case, a few hundred raw requests (methods,
//! targets, fields valet rewrites, every body framing, the smuggling shapes) and raw answers of
//! an instance (framings, hop-by-hop fields, lengths that disagree), goes once to each, with a
//! second request pipelined behind it, and what the client sees (statuses, fields, bodies,
//! the echo of what the instance saw) must be the same on both sides. A difference is a rule
//! written twice, or a request the two read differently: a smuggling hole.

use crate::support::wire::exchange;
use crate::support::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

const CONFIG: &str = r#"
[server]
max_body_size = "1MB"

[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
strip_prefix = "/api"
"#;

/// A request that follows every case on the same connection: a case the two servers frame
/// differently shows up as a different answer to this one, or its absence.
const PROBE: &str = "GET /api/echo?probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The request cases: raw bytes, each before [`PROBE`].
fn requests() -> Vec<(String, Vec<u8>)> {
    let mut cases = Vec::new();
    let mut add = |name: String, raw: String| cases.push((name, raw.into_bytes()));
    let targets = [
        "/api/echo",
        "/api/echo?a=b&c=%20d",
        "/api/echo/./x/../y",
        "/api//echo",
        "/api/echo/%2e%2e/z",
        "/api/echo#frag",
        "http://x/api/echo",
        "/api/ech%6f",
        "/api",
        "/other",
    ];
    for method in ["GET", "HEAD", "DELETE", "OPTIONS"] {
        for target in targets {
            add(
                format!("{method} {target}"),
                format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
            );
        }
    }
    let fields = [
        "Connection: close",
        "Connection: keep-alive",
        "Connection: X-Drop\r\nX-Drop: 1\r\nX-Keep: 2",
        "Connection: x-drop, close\r\nx-drop: 1",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Trailer: X-T",
        "Proxy-Connection: keep-alive",
        "Proxy-Authorization: Basic eDp5",
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
        "Upgrade: h2c",
        "Upgrade: websocket",
        "X-Forwarded-For: 10.9.9.9",
        "X_Forwarded_For: 10.9.9.9",
        "Forwarded: for=10.9.9.9",
        "X-Real-IP: 10.9.9.9",
        "X-Request-Id: abc-123",
        "X-Request-Id: ",
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X-Forwarded-Host: evil.test",
        "X-Forwarded-Prefix: /evil",
        "X-Valet-Peer: guess",
        "Host: other.test",
        "Host: x:8080",
        "Content-Type: text/plain",
        "Cookie: a=1\r\nCookie: b=2",
        "X-Many: 1\r\nX-Many: 2\r\nx-many: 3",
        "X-Tab: a\tb",
        "X-Latin: caf\u{e9}",
        "X-Empty:",
        "X-Space:    padded   ",
        "Expect: 100-continue",
        "Accept-Encoding: gzip",
    ];
    for field in fields {
        add(
            format!("GET with {field:?}"),
            format!("GET /api/echo HTTP/1.1\r\nHost: x\r\n{field}\r\n\r\n"),
        );
    }
    add(
        "no Host".into(),
        "GET /api/echo HTTP/1.1\r\nX: y\r\n\r\n".into(),
    );
    add(
        "two Hosts".into(),
        "GET /api/echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n".into(),
    );
    add(
        "HTTP/1.0".into(),
        "GET /api/echo HTTP/1.0\r\nHost: x\r\n\r\n".into(),
    );
    add(
        "HTTP/1.0 keep-alive".into(),
        "GET /api/echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".into(),
    );
    add(
        "obs-fold".into(),
        "GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n".into(),
    );
    add(
        "space before colon".into(),
        "GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Bad : 1\r\n\r\n".into(),
    );
    add(
        "bare LF lines".into(),
        "GET /api/echo HTTP/1.1\nHost: x\n\n".into(),
    );
    add(
        "long field".into(),
        format!(
            "GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
            "v".repeat(20_000)
        ),
    );
    // Bodies: every framing, valid and not, on POST and PUT, to the echo and the hashing upload.
    let bodies: Vec<(&str, String)> = vec![
        ("length", "Content-Length: 5\r\n\r\nhello".into()),
        ("length 0", "Content-Length: 0\r\n\r\n".into()),
        ("no length", "\r\n".into()),
        ("length +5", "Content-Length: +5\r\n\r\nhello".into()),
        ("length -5", "Content-Length: -5\r\n\r\nhello".into()),
        ("length 0x5", "Content-Length: 0x5\r\n\r\nhello".into()),
        ("length list", "Content-Length: 5, 5\r\n\r\nhello".into()),
        ("length twice", "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello".into()),
        ("lengths differ", "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".into()),
        ("length padded", "Content-Length:  5 \r\n\r\nhello".into()),
        ("length huge", "Content-Length: 99999999999999999999\r\n\r\nhello".into()),
        ("chunked", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("chunked in pieces", "Transfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n".into()),
        ("chunked, extension", "Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n".into()),
        ("chunked, trailer", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n".into()),
        ("Chunked", "Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("chunked and length (CL.TE)", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("length and chunked (TE.CL)", "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("identity, chunked", "Transfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("chunked, identity", "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("xchunked", "Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("chunked twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("TE with space", "Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("TE underscore", "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello".into()),
        ("TE tab", "Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("chunk size 0x5", "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n".into()),
        ("chunk size spaces", "Transfer-Encoding: chunked\r\n\r\n5  \r\nhello\r\n0\r\n\r\n".into()),
        ("chunk size too long", "Transfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n".into()),
        ("chunk without CRLF", "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n".into()),
        ("chunk bare LF", "Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n".into()),
        ("chunk too short", "Transfer-Encoding: chunked\r\n\r\n9\r\nhello\r\n0\r\n\r\n".into()),
        ("expect", "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello".into()),
    ];
    for (method, targets) in [
        ("POST", &["/api/echo", "/api/upload?hash=1"][..]),
        ("PUT", &["/api/echo", "/api/upload?hash=1"]),
        ("PATCH", &["/api/echo"]),
    ] {
        for target in targets {
            for (name, body) in &bodies {
                add(
                    format!("{method} {target} {name}"),
                    format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{body}"),
                );
            }
        }
    }
    cases
}

/// The answer cases: raw bytes an instance writes, asked for with GET and with HEAD.
fn answers() -> Vec<(String, Vec<u8>)> {
    let raw = [
        ("plain", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ("until close", "HTTP/1.1 200 OK\r\n\r\nuntil close"),
        ("HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ("lengths differ", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"),
        ("length list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"),
        ("length +2", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"),
        ("Connection names a field", "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\nok"),
        ("Connection names the length", "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok"),
        ("hop-by-hop fields", "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nTrailer: X\r\nProxy-Connection: close\r\nContent-Length: 2\r\n\r\nok"),
        ("close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
        ("204 with length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
        ("304", "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n"),
        ("100 then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"),
        ("their request id", "HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nContent-Length: 2\r\n\r\nok"),
        ("their date", "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok"),
        ("many fields", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok"),
        ("status 599", "HTTP/1.1 599 Odd\r\nContent-Length: 2\r\n\r\nok"),
        ("no reason", "HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno"),
        ("garbage", "not http at all\r\n\r\n"),
        ("truncated", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        ("bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"),
        ("empty", ""),
    ];
    let mut cases = Vec::new();
    for (name, answer) in raw {
        let hex: String = answer.bytes().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        for (method, body) in [("GET", ""), ("HEAD", ""), ("POST", "Content-Length: 2\r\n")] {
            let sent = if body.is_empty() { "" } else { "hi" };
            cases.push((
                format!("{method} answer {name}"),
                format!("{method} /api/raw?hex={hex} HTTP/1.1\r\nHost: x\r\n{body}\r\n{sent}")
                    .into_bytes(),
            ));
        }
    }
    cases
}

/// One answer as a client reads it, with what varies per run taken out.
#[derive(Debug, PartialEq)]
struct Seen {
    status: String,
    fields: Vec<(String, String)>,
    body: String,
}

/// Splits what came back on a connection into answers: status line, fields (names in lower
/// case, sorted: each server has its own order and case), body (chunked bodies decoded;
/// the echo's per-process parts taken out).
fn answers_in(bytes: &[u8], head_request: bool) -> Vec<Seen> {
    let mut rest = bytes;
    let mut seen = Vec::new();
    while !rest.is_empty() {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            seen.push(Seen {
                status: "unparsed".into(),
                fields: Vec::new(),
                body: String::from_utf8_lossy(rest).into_owned(),
            });
            break;
        };
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        // Version and code: both must answer HTTP/1.1 with the same status. (The reason phrase
        // is each server's own: hyper writes `<none>` for a code it has no name for.)
        let status: String = lines.next().unwrap_or_default().chars().take(12).collect();
        let mut fields: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .filter(|(n, _)| n != "date" && n != "x-request-id")
            .collect();
        fields.sort();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let code: u16 = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        // Only the case itself may be a HEAD: the probe behind it is a GET.
        let bodiless =
            (head_request && seen.is_empty()) || code == 204 || code == 304 || code < 200;
        let body: Vec<u8> = if bodiless {
            Vec::new()
        } else if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let (body, used) = dechunk(rest);
            rest = &rest[used..];
            body
        } else if let Some(n) = field("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let n = n.min(rest.len());
            let body = rest[..n].to_vec();
            rest = &rest[n..];
            body
        } else {
            std::mem::take(&mut rest).to_vec()
        };
        seen.push(Seen {
            status,
            body: normalise(&body),
            fields,
        });
    }
    seen
}

/// Decodes a chunked body; the bytes it used.
fn dechunk(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut at = 0;
    let mut body = Vec::new();
    while let Some(end) = bytes[at..].windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&bytes[at..at + end]).into_owned();
        at += end + 2;
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 {
            // Trailers up to the empty line.
            while let Some(end) = bytes[at..].windows(2).position(|w| w == b"\r\n") {
                at += end + 2;
                if end == 0 {
                    break;
                }
            }
            break;
        }
        let take = size.min(bytes.len() - at);
        body.extend_from_slice(&bytes[at..at + take]);
        at = (at + take + 2).min(bytes.len());
    }
    (body, at)
}

/// The echo's JSON without what differs between two backends and two requests (pid, time,
/// request id, data folder); any other body as text.
fn normalise(body: &[u8]) -> String {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::from_utf8_lossy(body).into_owned();
    };
    if let Some(object) = json.as_object_mut() {
        for gone in ["pid", "monotonic_ns", "data_dir", "request_id"] {
            object.remove(gone);
        }
        if let Some(headers) = object.get_mut("headers").and_then(|h| h.as_object_mut()) {
            headers.remove("x-request-id");
        }
    }
    // Sorted keys: serde_json's map keeps them in order.
    json.to_string()
}

async fn run(valet: &Valet, raw: &[u8], head_request: bool) -> (Vec<Seen>, bool) {
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(PROBE.as_bytes());
    let wire = exchange(valet.addr(), &bytes, Duration::from_secs(3)).await;
    (answers_in(&wire.bytes, head_request), wire.closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valets_http1_server_and_hyper_give_every_case_the_same_answers() {
    let fast = Valet::with_config(CONFIG).start().await;
    let hyper = Valet::with_config(CONFIG)
        .env("VALET_HTTP1_ENGINE", "hyper")
        .start()
        .await;
    // Both instances up before the cases, so no case meets a cold start on one side only.
    fast.echo("/api/echo").await;
    hyper.echo("/api/echo").await;
    let cases: Vec<_> = requests().into_iter().chain(answers()).collect();
    assert!(cases.len() >= 300, "{} cases", cases.len());
    let mut differ = BTreeMap::new();
    // A few at a time: enough to keep the test short, few enough for a 2-core machine.
    for batch in cases.chunks(8) {
        let runs = batch.iter().map(|(name, raw)| {
            let head_request = raw.starts_with(b"HEAD ");
            let (fast, hyper) = (&fast, &hyper);
            async move {
                let a = run(fast, raw, head_request).await;
                let b = run(hyper, raw, head_request).await;
                (name, a, b)
            }
        });
        for (name, a, b) in futures_util::future::join_all(runs).await {
            if a != b {
                differ.insert(name.clone(), format!("valet: {a:?}\nhyper: {b:?}"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} cases differ:\n{}",
        differ.len(),
        cases.len(),
        differ
            .iter()
            .map(|(name, diff)| format!("== {name}\n{diff}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
