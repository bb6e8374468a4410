//! Streams through the gateway: server-sent events arrive as they are sent, WebSockets echo, and
//! a gigabyte goes up and down without valet's memory growing with it.

use crate::support::procs::rss_bytes;
use crate::support::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

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

const GIB: u64 = 1 << 30;
/// How far above its idle baseline valet's resident memory may go while a gigabyte passes.
const RSS_HEADROOM: u64 = 64 << 20;

#[tokio::test]
async fn server_sent_events_arrive_one_by_one() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await; // warm: the stream's timing is the backend's alone

    let response = valet.get("/api/sse?n=5&delay_ms=300").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut text = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("stream chunk");
        arrivals.push(Instant::now());
        text.extend_from_slice(&chunk);
    }
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
    // The backend spaces the five events 300 ms apart: a buffering proxy would deliver them
    // together at the end, a streaming one spreads them over ~1.2 s.
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        arrivals.len() >= 5,
        "events arrived in {} chunks",
        arrivals.len()
    );
    assert!(
        spread >= Duration::from_millis(900),
        "first event only {spread:?} before the last"
    );
}

#[tokio::test]
async fn a_websocket_echoes_text_and_a_large_binary_message() {
    let valet = Valet::with_config(CONFIG).start().await;
    let url = format!("ws://{}/api/ws", valet.addr());
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("websocket handshake: {e}\n{}", valet.log()));
    assert_eq!(response.status(), 101);

    ws.send(Message::text("hello through valet")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::text("hello through valet")
    );

    let binary: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::binary(binary));

    ws.close(None).await.unwrap();
    assert_eq!(valet.starts().len(), 1);
}

async fn next_message<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .expect("the socket stays open")
        .expect("a message")
}

/// Samples a process's RSS every 20 ms until stopped; returns the peak.
fn sample_rss(pid: u32) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while !stopped.load(Ordering::Relaxed) {
            peak = peak.max(rss_bytes(pid));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    (stop, sampler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_up_and_down_keeps_valet_memory_bounded() {
    let valet = Valet::with_config(CONFIG).start().await;
    valet.echo("/api/echo").await;
    let baseline = rss_bytes(valet.pid());
    let (stop, sampler) = sample_rss(valet.pid());
    let started = Instant::now();

    // Up: a body made on the fly in 64 KiB pieces, so the test holds no gigabyte either.
    let piece = Bytes::from(vec![0x5a; 64 * 1024]);
    let pieces = GIB / piece.len() as u64;
    let upload = futures_util::stream::iter(
        (0..pieces).map(move |_| Ok::<_, std::io::Error>(piece.clone())),
    );
    let response = valet
        .client
        .post(valet.url("/api/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("upload");
    assert_eq!(json_of(response).await["bytes"], GIB);
    let up_took = started.elapsed();

    // Down: count as it streams; byte i of the body is i % 256, checked at each chunk start.
    let response = valet.get(&format!("/api/download?bytes={GIB}")).await;
    assert_eq!(response.status(), 200);
    let received = AtomicU64::new(0);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("download chunk");
        let offset = received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        assert_eq!(
            chunk.first().copied(),
            Some((offset % 256) as u8),
            "byte {offset}"
        );
    }
    assert_eq!(received.load(Ordering::Relaxed), GIB);

    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "1 GiB up in {up_took:?}, down in {:?}; valet RSS baseline {} MiB, peak {} MiB",
        started.elapsed() - up_took,
        baseline >> 20,
        peak >> 20
    );
    assert!(
        grown < RSS_HEADROOM,
        "valet grew by {} MiB while streaming",
        grown >> 20
    );
}
