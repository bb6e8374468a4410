//! Bad input on the public listener, over raw TCP: request smuggling patterns (CL.TE, TE.CL,
//! obfuscated Transfer-Encoding, duplicate Content-Length), bad chunked bodies, invalid header
//! bytes, oversized heads, slowloris clients, clients that connect and send nothing, and
//! 10,000 idle connections held by another process. Every bad request is refused (400, 431) or
//! its connection closed, and no smuggled second request ever reaches the instance.

use crate::support::faults::open_fds;
use crate::support::procs::rss_bytes;
use crate::support::wire::{exchange, Holder, Wire};
use crate::support::*;
use std::time::Duration;

fn config(header_read: &str) -> String {
    format!(
        r#"
[server]
max_body_size = "1MB"
timeouts = {{ header_read = "{header_read}" }}

[[containers]]
class_name = "Echo"
readiness = {{ path = "/health" }}

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
"#
    )
}

/// A request hiding `GET /api/smuggled` behind a body whose framing is ambiguous.
const SMUGGLED: &str = "GET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Sends `request` and asserts valet refused it (400) or answered one request and closed the
/// connection; never a second answer, and the smuggled path never reached the instance.
async fn assert_no_smuggling(valet: &Valet, name: &str, request: &[u8]) -> Wire {
    let wire = exchange(valet.addr(), request, Duration::from_secs(5)).await;
    let statuses = wire.statuses();
    assert!(
        statuses.len() <= 1,
        "{name}: one answer at most, got {statuses:?}:\n{}",
        wire.text()
    );
    assert!(
        wire.closed,
        "{name}: the connection must close:\n{}",
        wire.text()
    );
    if statuses.first() != Some(&400) {
        assert!(
            wire.text()
                .to_ascii_lowercase()
                .contains("connection: close"),
            "{name}: an answer to an ambiguous request says it closes:\n{}",
            wire.text()
        );
    }
    assert!(
        !valet.log().contains("path=/api/smuggled"),
        "{name}: the smuggled request was forwarded\n{}",
        valet.log()
    );
    wire
}

#[tokio::test]
async fn request_smuggling_patterns_never_reach_the_instance() {
    let valet = Valet::with_config(&config("2s")).start().await;
    valet.echo("/api/echo").await;
    let te_cl_chunk = format!("{:x}", SMUGGLED.len());
    let cases: Vec<(&str, String)> = vec![
        (
            "CL.TE: Content-Length covers the smuggled request, chunked ends before it",
            format!(
                "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
        ),
        (
            "TE.CL: chunked covers the smuggled request, Content-Length ends before it",
            format!(
                "POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: 4\r\n\r\n{te_cl_chunk}\r\n{SMUGGLED}\r\n0\r\n\r\n"
            ),
        ),
        (
            "two different Content-Length",
            format!(
                "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
                 Content-Length: {}\r\n\r\nhello{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
        ),
        (
            "Content-Length list",
            format!(
                "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5, {}\r\n\r\nhello{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
        ),
    ];
    let obfuscated_te = [
        "Transfer-Encoding : chunked",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding:\r\n chunked",
        "Transfer-Encoding: \x0bchunked",
    ];
    let mut all: Vec<(String, String)> =
        cases.into_iter().map(|(n, r)| (n.to_string(), r)).collect();
    for te in obfuscated_te {
        all.push((
            format!("obfuscated TE {te:?}"),
            format!(
                "POST /api/upload HTTP/1.1\r\nHost: x\r\n{te}\r\nContent-Length: {}\r\n\r\n\
                 0\r\n\r\n{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
        ));
    }
    for (name, request) in &all {
        let wire = assert_no_smuggling(&valet, name, request.as_bytes()).await;
        eprintln!("{name}: {:?}", wire.statuses());
        if wire.statuses() == [200] {
            // What the instance itself saw (the backend echoes it): one framing, never both.
            let text = wire.text();
            let echo: serde_json::Value =
                serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..])
                    .unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
            let headers = &echo["headers"];
            assert!(
                headers.get("content-length").is_none()
                    || headers.get("transfer-encoding").is_none(),
                "{name}: the instance got both framings: {headers}"
            );
            assert!(
                echo["body_len"].as_u64().unwrap() < SMUGGLED.len() as u64 + 16,
                "{name}: {echo}"
            );
        }
    }
    // After all that, the instance still serves ordinary requests.
    valet.echo("/api/echo").await;
}

#[tokio::test]
async fn underscore_lookalikes_of_framing_and_forwarded_headers_never_reach_the_instance() {
    let valet = Valet::with_config(&config("2s")).start().await;
    // A backend that reads `_` as `-` (CGI, WSGI) would take these for the real headers: a
    // chunked body the gateway framed by length, or a forged client address.
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let request = format!(
        "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
         Transfer_Encoding: chunked\r\nX_Forwarded_For: 6.6.6.6\r\nX_Request_Id: forged\r\n\
         Content_Length: 0\r\nX-App_Custom: kept\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(wire.statuses(), [200], "{}", wire.text());
    let echo = valet.echo("/api/echo").await;
    assert!(echo["headers"].get("x_forwarded_for").is_none(), "{echo}");

    let request = "GET /api/echo HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\n\
                   Transfer_Encoding: chunked\r\nX-App_Custom: kept\r\nConnection: close\r\n\r\n";
    let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(5)).await;
    let text = wire.text();
    let json: serde_json::Value = serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..])
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    let headers = &json["headers"];
    for name in ["x_forwarded_for", "transfer_encoding"] {
        assert!(headers.get(name).is_none(), "{name} passed: {headers}");
    }
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        headers["x-app_custom"], "kept",
        "other underscore names pass"
    );
    assert!(!valet.log().contains("path=/api/smuggled"));
}

#[tokio::test]
async fn bad_chunked_bodies_and_invalid_header_bytes_are_400() {
    let valet = Valet::with_config(&config("2s")).start().await;
    valet.echo("/api/echo").await;
    let chunked = "POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases = [
        (
            "a chunk size that is not hex",
            format!("{chunked}zz\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "a chunk longer than its size",
            format!("{chunked}3\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "a chunk size that overflows",
            format!("{chunked}fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "NUL in a header value",
            "GET /api/echo HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".into(),
        ),
        (
            "a space in a header name",
            "GET /api/echo HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n".into(),
        ),
        (
            "a bare CR in a header value",
            "GET /api/echo HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n".into(),
        ),
        (
            "a negative Content-Length",
            "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".into(),
        ),
        (
            "a signed Content-Length",
            "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello".into(),
        ),
        (
            "chunked over HTTP/1.0",
            "POST /api/upload HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .into(),
        ),
        (
            "a control byte in the path",
            "GET /api/\x01echo HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        ),
    ];
    for (name, request) in &cases {
        let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(wire.statuses(), [400], "{name}:\n{}", wire.text());
        assert!(wire.closed, "{name}: the connection closes after a 400");
    }
    valet.echo("/api/echo").await;
}

#[tokio::test]
async fn an_oversized_head_is_431_from_valet_itself() {
    let valet = Valet::with_config(&config("2s")).start().await;
    valet.echo("/api/echo").await;
    let big_value = format!(
        "GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /api/echo HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for (name, request) in [("a 200 KB header", big_value), ("200 headers", many)] {
        let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(wire.statuses(), [431], "{name}:\n{}", wire.text());
        assert!(
            !wire.text().contains("valet-test-backend"),
            "{name}: valet answers, the instance never sees it"
        );
    }
    // A 16 KB header is within the limit.
    let fine = valet
        .client
        .get(valet.url("/api/echo"))
        .header("x-fine", "f".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), reqwest::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_silent_clients_are_closed_while_others_are_served() {
    let valet = Valet::with_config(&config("1s")).start().await;
    valet.echo("/api/echo").await;
    let baseline = open_fds(valet.pid());

    // 20 clients sending their head a byte every 300 ms, and 20 sending nothing at all.
    let head =
        b"GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = valet.addr();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                for byte in head {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
                String::from_utf8_lossy(&rest).into_owned()
            })
        })
        .collect();
    let silent: Vec<_> = (0..20)
        .map(|_| {
            let addr = valet.addr();
            tokio::spawn(async move { exchange(addr, b"", Duration::from_secs(30)).await })
        })
        .collect();
    // Meanwhile ordinary clients are served.
    for _ in 0..20 {
        valet.echo("/api/echo").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for client in slow {
        let answer = client.await.unwrap();
        assert!(
            !answer.contains("200 OK"),
            "a slowloris head must never complete: {answer}"
        );
    }
    for client in silent {
        let wire = client.await.unwrap();
        assert!(
            wire.closed && wire.bytes.is_empty(),
            "a silent client is closed: {wire:?}"
        );
    }
    let pid = valet.pid();
    let after = eventually(
        Duration::from_secs(10),
        "valet's fds back after the slow clients",
        || async move { Some(open_fds(pid)).filter(|&n| n <= baseline + 4) },
    )
    .await;
    eprintln!("slowloris: valet fds {baseline} -> {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_do_not_stop_service() {
    let valet = Valet::with_config(&config("60s")).start().await;
    valet.echo("/api/echo").await;
    let pid = valet.pid();
    let (fds_before, rss_before) = (open_fds(pid), rss_bytes(pid));

    let mut holder = Holder::open(valet.addr(), 10_000);
    assert_eq!(holder.open, 10_000, "the holder could not open them all");
    let fds_held = eventually(
        Duration::from_secs(20),
        "valet to accept the 10,000 connections",
        || async move { Some(open_fds(pid)).filter(|&n| n >= fds_before + 10_000) },
    )
    .await;
    for _ in 0..20 {
        valet.echo("/api/echo").await;
    }
    let rss_held = rss_bytes(pid);
    assert_eq!(holder.closed(), 0, "idle within header_read: kept open");
    drop(holder);

    let fds_after = eventually(
        Duration::from_secs(20),
        "valet to close the 10,000 connections",
        || async move { Some(open_fds(pid)).filter(|&n| n <= fds_before + 4) },
    )
    .await;
    valet.echo("/api/echo").await;
    let mib = |b: u64| b / (1024 * 1024);
    eprintln!(
        "10k idle: fds {fds_before} -> {fds_held} -> {fds_after}; rss {} MiB -> {} MiB",
        mib(rss_before),
        mib(rss_held)
    );
    // Bounded: a few KiB per idle connection, not a buffer each.
    let per_connection = rss_held.saturating_sub(rss_before) / 10_000;
    assert!(
        per_connection < 32 * 1024,
        "{per_connection} bytes per idle connection"
    );
}
