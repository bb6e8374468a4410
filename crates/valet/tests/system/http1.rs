//! The client side of HTTP/1.1 as valet serves it itself (crates/gateway/src/conn.rs): several
//! requests on one connection, pipelined, with small bodies, HEAD, `Connection: close`, and a
//! connection that moves to hyper mid-way (a chunked upload) and goes on being served.

use crate::support::wire::{exchange, Wire};
use crate::support::*;
use std::time::Duration;

const CONFIG: &str = r#"
[[containers]]
class_name = "General"
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "General"
instance = "name:general"
strip_prefix = "/api"
"#;

/// One answer read off a connection's bytes.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// The answers on a connection, framed by their Content-Length (every answer here has one);
/// `bodiless[i]`: answer i is to a HEAD request.
fn answers(wire: &Wire, bodiless: &[bool]) -> Vec<Answer> {
    let mut rest = &wire.bytes[..];
    let mut answers = Vec::new();
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head[9..12].parse().expect("a status code");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        let length = if bodiless.get(answers.len()) == Some(&true) {
            0
        } else {
            length
        };
        let body = rest[end + 4..end + 4 + length].to_vec();
        rest = &rest[end + 4 + length..];
        answers.push(Answer { status, head, body });
    }
    assert!(rest.is_empty(), "bytes after the last answer: {rest:?}");
    answers
}

/// Whether `got` holds one whole answer: a head and as many body bytes as it declares.
fn whole_answer(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    got.len() >= end + 4 + length
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    answers.iter().map(|a| a.status).collect()
}

#[tokio::test]
async fn pipelined_requests_with_small_bodies_are_answered_in_order_on_one_connection() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await;
    let wire = exchange(
        valet.addr(),
        b"GET /api/echo?i=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /api/echo?i=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /api/echo?i=3 HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let answers = answers(&wire, &[]);
    assert_eq!(statuses(&answers), [200, 200, 200], "{}", wire.text());
    assert!(!wire.closed, "a keep-alive connection stays open: {wire:?}");
    let bodies: Vec<_> = answers.iter().map(Answer::json).collect();
    let paths: Vec<_> = bodies.iter().map(|b| b["path"].clone()).collect();
    assert_eq!(
        paths,
        ["/echo?i=1", "/echo?i=2", "/echo?i=3"],
        "{}",
        wire.text()
    );
    assert_eq!(bodies[1]["method"], "POST");
    assert_eq!(bodies[1]["body_len"], 5);
    // Field names pass in the case the instance wrote them; they are case-insensitive.
    assert!(
        answers
            .iter()
            .all(|a| a.head.to_ascii_lowercase().contains("\r\ndate: ")),
        "{}",
        wire.text()
    );
}

#[tokio::test]
async fn a_connection_goes_on_after_a_chunked_upload_hands_it_to_hyper() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await;
    let wire = exchange(
        valet.addr(),
        b"GET /api/echo?i=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n\
          GET /api/echo?i=3 HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let answers = answers(&wire, &[]);
    assert_eq!(statuses(&answers), [200, 200, 200], "{}", wire.text());
    assert!(!wire.closed, "a keep-alive connection stays open: {wire:?}");
    let bodies: Vec<_> = answers.iter().map(Answer::json).collect();
    assert_eq!(bodies[0]["path"], "/echo?i=1");
    assert_eq!(bodies[1]["bytes"], 7, "{}", wire.text());
    assert_eq!(bodies[2]["path"], "/echo?i=3");
}

#[tokio::test]
async fn head_answers_carry_the_length_and_no_body() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await;
    let wire = exchange(
        valet.addr(),
        b"HEAD /api/echo?head HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /api/echo?after=head HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    // Framed as a HEAD answer, the next answer must start right after its head.
    let answers = answers(&wire, &[true, false]);
    assert_eq!(statuses(&answers), [200, 200], "{}", wire.text());
    // The instance's length of the body a GET would get (an echo of the request), passed on.
    let length = answers[0]
        .head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(length.is_some_and(|n| n > 100), "{}", answers[0].head);
    assert_eq!(answers[1].json()["path"], "/echo?after=head");
}

#[tokio::test]
async fn connection_close_is_answered_and_then_closed() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await;
    let wire = exchange(
        valet.addr(),
        b"GET /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
          GET /api/echo?never HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(wire.closed, "valet closes after a Connection: close answer");
    let answers = answers(&wire, &[]);
    assert_eq!(statuses(&answers), [200], "{}", wire.text());
    assert!(
        answers[0].head.contains("connection: close"),
        "{}",
        answers[0].head
    );
}

/// An instance that closes a kept-alive connection just as valet sends on it (its idle
/// timeout meeting a request on its way): a GET goes again, once, on another connection and is
/// answered; a POST is not sent twice, and the client gets 502. One client connection, so
/// one gateway worker and one pooled upstream connection at a time.
#[tokio::test]
async fn a_pooled_connection_closed_unanswered_resends_a_get_and_not_a_post() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await;
    let wire = exchange(
        valet.addr(),
        b"GET /api/drop-next HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /api/echo?resent HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /api/drop-next HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /api/echo?once HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n\
          GET /api/peak HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let answers = answers(&wire, &[]);
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 502, 200],
        "{}",
        wire.text()
    );
    assert_eq!(answers[1].json()["path"], "/echo?resent");
    assert_eq!(answers[3].json()["error"], "bad_gateway");
    assert_eq!(
        answers[4].json()["dropped"],
        2,
        "each dropped request reached the instance once"
    );
}

#[tokio::test]
async fn a_large_answer_arrives_whole_and_the_connection_is_reused() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await;
    let total = 3_000_000usize;
    let request = format!(
        "GET /api/download?bytes={total} HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /api/echo?after=download HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    let wire = exchange(valet.addr(), request.as_bytes(), Duration::from_secs(3)).await;
    let answers = answers(&wire, &[]);
    assert_eq!(statuses(&answers), [200, 200]);
    let body = &answers[0].body;
    assert_eq!(body.len(), total);
    assert!(
        body.iter().enumerate().all(|(i, &b)| b == (i % 256) as u8),
        "the body is the instance's bytes, in order"
    );
    assert_eq!(answers[1].json()["path"], "/echo?after=download");
}

/// The idle limit (`header_read`) counts from the last answer, not from the connection's first
/// request: a client that keeps sending within it is served past it, and once it falls silent
/// the connection closes after about `header_read`.
#[tokio::test]
async fn the_idle_limit_counts_from_the_last_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = format!("[server]\ntimeouts = {{ header_read = \"1s\" }}\n{CONFIG}");
    let valet = Valet::with_config(&config).start().await;
    valet.echo("/api/echo").await;
    let mut stream = tokio::net::TcpStream::connect(valet.addr()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    // Six requests 400 ms apart: 2.4 s on one connection, well past the first deadline.
    for i in 0..6 {
        let request = format!("GET /api/echo?i={i} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        // Read until the whole answer is in: its head and Content-Length bytes.
        let mut got = Vec::new();
        while !whole_answer(&got) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            assert!(
                n > 0,
                "request {i}: closed after {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        let wire = Wire {
            bytes: got,
            closed: false,
        };
        let answers = answers(&wire, &[]);
        assert_eq!(statuses(&answers), [200], "request {i}");
        assert_eq!(answers[0].json()["path"], format!("/echo?i={i}"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Silent now (400 ms of it already): closed about 1 s after the last answer.
    let silent = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    let waited = silent.elapsed();
    assert_eq!(n, 0, "closed without another byte");
    assert!(
        waited >= Duration::from_millis(400) && waited <= Duration::from_millis(2500),
        "closed {waited:?} after the client fell silent (400 ms after the last answer)"
    );
}

/// A client that leaves while its request waits on the instance cancels it: the instance's
/// connection closes and its turn under `max_concurrent_requests` is given back at once, not
/// when the instance would have answered.
#[tokio::test]
async fn a_client_that_leaves_gives_back_its_turn_at_once() {
    use tokio::io::AsyncWriteExt;
    let valet = Valet::with_config(
        r#"
[[containers]]
class_name = "Narrow"
max_concurrent_requests = 1
readiness = { path = "/health" }

[[routes]]
pattern = "/api/*"
container = "Narrow"
instance = "name:one"
strip_prefix = "/api"
"#,
    )
    .start()
    .await;
    valet.echo("/api/echo").await;
    // The one turn goes to a request the instance answers after 5 s; its client leaves.
    let mut leaving = tokio::net::TcpStream::connect(valet.addr()).await.unwrap();
    leaving
        .write_all(b"GET /api/slow?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(leaving);
    let asked = std::time::Instant::now();
    let answer = valet.get("/api/slow?ms=10").await;
    let waited = asked.elapsed();
    assert_eq!(answer.status(), 200, "{}", valet.log());
    assert!(
        waited < Duration::from_secs(2),
        "the next request waited {waited:?} for a turn held for a client that had left"
    );
}
