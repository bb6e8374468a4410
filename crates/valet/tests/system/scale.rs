//! `scale` (issue 21) on the process driver: a worker-bound backend (one request at a time,
//! 200 ms each) behind one key gets its throughput from replicas, never more than
//! `max_replicas` of them, and every replica sleeps again once the load is gone; a WebSocket
//! stays on the replica that accepted it and keeps that one awake. `/metrics` shows the
//! key's running replicas (`valet_key_replicas`) while they run, and no series once they sleep.

use crate::admin_support::{sample, with_token, Admin, TOKEN};
use crate::support::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves one request at a time (a lock around each answer), each 200 ms: a backend with one
/// worker, which only more processes make faster. Records its start in `STARTS_FILE` as the
/// shared test backend does, with its replica number after the key.
const WORKER: &str = r#"
import os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
REPLICA = os.environ.get("VALET_REPLICA", "?")

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with LOCK:
            time.sleep(0.2)
            body = REPLICA.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

line = f"{os.getpid()} {os.environ['VALET_INSTANCE_KEY']}#{REPLICA}\n"
fd = os.open(os.environ["STARTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, line.encode())
os.close(fd)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

const CLIENTS: usize = 16;
const WINDOW: Duration = Duration::from_secs(5);

fn config(scale: &str) -> String {
    format!(
        r#"
[[containers]]
class_name = "Worker"
command = ["python3", "worker.py"]
sleep_after = "2s"
{scale}

[[routes]]
pattern = "/api/*"
container = "Worker"
instance = "name:w"
"#
    )
}

/// The scaled key's series; unscaled classes have none.
const KEY_REPLICAS: &str = "valet_key_replicas{class=\"Worker\",key=\"w\"}";

/// The most `valet_key_replicas` of key `w` scraped (every 250 ms) during `WINDOW`: `None`
/// if no scrape had the series.
async fn most_key_replicas(admin: &Admin) -> Option<f64> {
    let until = Instant::now() + WINDOW;
    let mut most = None;
    while Instant::now() < until {
        if let Some(n) = sample(&admin.metrics().await, KEY_REPLICAS) {
            most = Some(most.map_or(n, |m: f64| m.max(n)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    most
}

/// Answers to `CLIENTS` clients sending one request after another for `WINDOW`, and the
/// replica numbers that answered.
async fn load(valet: &Valet) -> (usize, Vec<String>) {
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + WINDOW;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, done) = (valet.client.clone(), valet.url("/api/work"), done.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < until {
                let response = client.get(&url).send().await.expect("an answer");
                assert_eq!(response.status(), 200);
                let replica = response.text().await.expect("a body");
                // Only answers inside the window count: the last ones may end after it.
                if Instant::now() <= until {
                    done.fetch_add(1, Ordering::Relaxed);
                    seen.push(replica);
                }
            }
            seen
        }));
    }
    let mut replicas = Vec::new();
    for client in clients {
        replicas.extend(client.await.expect("client task"));
    }
    replicas.sort();
    replicas.dedup();
    (done.load(Ordering::Relaxed), replicas)
}

#[tokio::test]
async fn replicas_multiply_a_worker_bound_backends_throughput_and_sleep_after_idle() {
    let one = Valet::with_config(&with_token(&config("")))
        .assets(&[("worker.py", WORKER)])
        .start()
        .await;
    let admin = Admin::of(&one, TOKEN).await;
    let ((alone, replicas), series) = tokio::join!(load(&one), most_key_replicas(&admin));
    assert_eq!(replicas, ["0"], "without scale the key has one instance");
    assert_eq!(one.starts().len(), 1);
    assert_eq!(series, None, "no per-key series for a class without scale");
    drop(one);

    let valet = Valet::with_config(&with_token(&config(
        "scale = { max_replicas = 8, target_concurrency = 1 }",
    )))
    .assets(&[("worker.py", WORKER)])
    .start()
    .await;
    let admin = Admin::of(&valet, TOKEN).await;
    let ((scaled, replicas), most) = tokio::join!(load(&valet), most_key_replicas(&admin));
    let starts = valet.starts();
    eprintln!(
        "{CLIENTS} clients for {WINDOW:?}: {alone} answers with one instance, {scaled} with \
         scale (replicas {replicas:?}, {} starts)",
        starts.len()
    );
    assert!(
        scaled >= 4 * alone,
        "at least 4x the throughput of one instance: {scaled} vs {alone}"
    );
    assert!(
        starts.len() <= 8,
        "no more than max_replicas starts: {starts:?}"
    );
    assert!(replicas.len() > 1, "replicas answered: {replicas:?}");
    let most = most.expect("the scaled key's series while it runs");
    assert!(
        (2.0..=8.0).contains(&most),
        "valet_key_replicas rose with the load, within max_replicas: {most}"
    );

    // Idle for sleep_after (2 s): every replica sleeps again.
    eventually(
        Duration::from_secs(15),
        "every replica to sleep after idle",
        || {
            let alive: Vec<_> = starts
                .iter()
                .filter(|s| pid_alive(s.pid))
                .cloned()
                .collect();
            async move { alive.is_empty().then_some(()) }
        },
    )
    .await;
    assert_eq!(
        valet.starts().len(),
        starts.len(),
        "nothing started while idle"
    );
    // The processes are gone; their tasks record the stop a moment later, and the series
    // follow the tasks.
    let admin = &admin;
    eventually(
        Duration::from_secs(5),
        "no key series and no replicas once every task has stopped",
        || async move {
            let metrics = admin.metrics().await;
            let idle = sample(&metrics, KEY_REPLICAS).is_none()
                && sample(&metrics, "valet_replicas{class=\"Worker\"}") == Some(0.0);
            idle.then_some(())
        },
    )
    .await;
}

/// The shared test backend (`/ws` echoes, `/env` shows `VALET_REPLICA`) behind one key that
/// may have two replicas, each wanted for one request in flight.
const PINNED: &str = r#"
[[containers]]
class_name = "Echo"
readiness = { path = "/health" }
sleep_after = "1s"
scale = { max_replicas = 2, target_concurrency = 1 }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:w"
strip_prefix = "/api"
"#;

/// Sends `text` and expects it back within 10 s.
async fn echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .expect("the socket stays open")
        .expect("a message");
    assert_eq!(got, Message::text(text));
}

#[tokio::test]
async fn a_websocket_stays_on_its_replica_and_keeps_it_awake() {
    let valet = Valet::with_config(&with_token(PINNED)).start().await;
    let admin = Admin::of(&valet, TOKEN).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", valet.addr()))
        .await
        .unwrap_or_else(|e| panic!("websocket handshake: {e}\n{}", valet.log()));
    echo(&mut ws, "first").await;
    let first = valet.starts();
    assert_eq!(first.len(), 1);

    // The open WebSocket is the first replica's one request in flight: a plain request now
    // is past target_concurrency and gets a replica of its own.
    let env = valet
        .client
        .get(valet.url("/api/env"))
        .send()
        .await
        .unwrap();
    let env: serde_json::Value = env.json().await.unwrap();
    assert_eq!(env["VALET_REPLICA"], "1", "{env}");
    let starts = valet.starts();
    assert_eq!(starts.len(), 2);
    // Listed as one key with a row per replica, and counted as a scale-up.
    let listed = admin.cli(&["instances"]);
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|head| head.contains("REPLICA")),
        "{table}"
    );
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("Echo")).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter()
            .all(|row| row.split_whitespace().nth(1) == Some("w")),
        "{table}"
    );
    let metrics = admin.metrics().await;
    assert_eq!(
        sample(&metrics, "valet_scale_ups_total{class=\"Echo\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "valet_replicas{class=\"Echo\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "valet_key_replicas{class=\"Echo\",key=\"w\"}"),
        Some(2.0)
    );

    // Idle past sleep_after: the second replica sleeps; the WebSocket's does not, and the
    // socket still echoes through it.
    let second = starts[1].pid;
    eventually(
        Duration::from_secs(10),
        "the idle replica to sleep",
        || async move { (!pid_alive(second)).then_some(()) },
    )
    .await;
    assert!(pid_alive(first[0].pid), "the WebSocket's replica stays up");
    echo(&mut ws, "still here").await;
    assert_eq!(
        valet.starts().len(),
        2,
        "the socket never moved to another replica"
    );
    // The process ends before the stop is recorded: the counts follow a moment later.
    let admin = &admin;
    eventually(
        Duration::from_secs(10),
        "the scale-down to be counted",
        || async move {
            let metrics = admin.metrics().await;
            let counted = [
                ("valet_scale_downs_total{class=\"Echo\"}", 1.0),
                ("valet_replicas{class=\"Echo\"}", 0.0),
                ("valet_key_replicas{class=\"Echo\",key=\"w\"}", 1.0),
            ];
            counted
                .iter()
                .all(|(name, want)| sample(&metrics, name) == Some(*want))
                .then_some(())
        },
    )
    .await;

    ws.close(None).await.unwrap();
    drop(ws);
    let pid = first[0].pid;
    eventually(
        Duration::from_secs(10),
        "the closed socket's replica to sleep",
        || async move { (!pid_alive(pid)).then_some(()) },
    )
    .await;
}
