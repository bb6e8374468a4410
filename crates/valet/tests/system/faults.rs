//! Faults of upstreams, instances and valet itself, against the real binary: an upstream that
//! accepts and never answers, one that drips a byte per second, one that closes mid-body; an
//! instance killed under load; valet killed under load and started again. Each time the client
//! gets a clear answer (504, 502, an aborted body), nothing hangs, other routes keep answering,
//! and connections and file descriptors are given back.

use crate::support::faults::{open_fds, FAULTY};
use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A misbehaving upstream behind `/f/*` and the well-behaved test backend behind `/api/*`.
fn faulty_config() -> String {
    config(r#"{ first_byte = "2s", idle = "500ms" }"#)
}

/// [`faulty_config`] with other timeouts.
fn config(timeouts: &str) -> String {
    format!(
        r#"
[server]
timeouts = {timeouts}

[[containers]]
class_name = "Faulty"
command = ["python3", "{FAULTY}"]
readiness = {{ timeout = "10s" }}

[[containers]]
class_name = "Echo"
readiness = {{ path = "/health" }}

[[routes]]
pattern = "/f/*"
container = "Faulty"
instance = "name:f"
strip_prefix = "/f"

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
strip_prefix = "/api"
"#
    )
}

/// Connections the faulty upstream holds open right now.
async fn upstream_open(valet: &Valet) -> u64 {
    let response = valet.get("/f/open").await;
    assert_eq!(response.status(), StatusCode::OK, "{}", valet.log());
    json_of(response).await["open"].as_u64().unwrap()
}

/// Waits until valet's open descriptors are back to at most `baseline` plus `slack`.
async fn fds_back_to(valet: &Valet, baseline: usize, slack: usize, what: &str) -> usize {
    let pid = valet.pid();
    eventually(Duration::from_secs(15), what, || async move {
        let now = open_fds(pid);
        (now <= baseline + slack).then_some(now)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_is_a_504_and_its_connections_are_released() {
    let valet = Valet::with_config(&faulty_config()).start().await;
    // Warm both instances, then count with no client connection open.
    assert_eq!(valet.get("/f/ok").await.status(), StatusCode::OK);
    valet.echo("/api/echo").await;
    let baseline = open_fds(valet.pid());

    // 20 requests that the upstream accepts and never answers, at once.
    let client = client();
    let hanging: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (client.clone(), valet.url("/f/hang"));
            tokio::spawn(async move { client.get(url).send().await })
        })
        .collect();
    // Meanwhile the other route answers, and so does the same instance on another path.
    for _ in 0..10 {
        valet.echo("/api/echo").await;
    }
    for task in hanging {
        let response = task.await.unwrap().expect("an answer, not a hang");
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = json_of(response).await;
        assert_eq!(body["error"], "gateway_timeout");
        assert_eq!(body["instance"], "Faulty/f");
    }
    drop(client);

    // valet dropped the 20 upstream connections (the upstream sees them closed) ...
    let open = eventually(
        Duration::from_secs(10),
        "the hung upstream connections to be closed by valet",
        || async { Some(upstream_open(&valet).await).filter(|&n| n <= 2) },
    )
    .await;
    // ... and its own descriptors are back where they were.
    let after = fds_back_to(
        &valet,
        baseline,
        4,
        "valet's fds to go back to the baseline",
    )
    .await;
    eprintln!("hang: upstream holds {open} connections, valet fds {baseline} -> {after}");
    assert_eq!(valet.get("/f/ok").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_upstream_dripping_its_head_is_a_504() {
    let valet = Valet::with_config(&faulty_config()).start().await;
    assert_eq!(valet.get("/f/ok").await.status(), StatusCode::OK);
    let response = valet.get("/f/drip-head").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json_of(response).await["error"], "gateway_timeout");
    valet.echo("/api/echo").await;
}

#[tokio::test]
async fn an_upstream_dripping_its_body_slower_than_idle_is_cut_off() {
    let valet = Valet::with_config(&faulty_config()).start().await;
    assert_eq!(valet.get("/f/ok").await.status(), StatusCode::OK);
    valet.echo("/api/echo").await;
    let baseline = open_fds(valet.pid());

    let client = client();
    let response = client.get(valet.url("/f/drip-body")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the head came in time");
    assert_eq!(response.content_length(), Some(100));
    // One byte a second against an idle timeout of 0.5 s: valet ends the stream with an
    // error, so the client sees a truncated body, never a complete-looking one.
    let body = response.bytes().await;
    assert!(body.is_err(), "a 100-byte body cannot arrive: {body:?}");
    drop(client);

    valet.echo("/api/echo").await;
    eventually(
        Duration::from_secs(10),
        "the dripping connection to be closed by valet",
        || async { Some(upstream_open(&valet).await).filter(|&n| n <= 1) },
    )
    .await;
    fds_back_to(&valet, baseline, 4, "valet's fds after the drip").await;
}

#[tokio::test]
async fn an_upstream_closing_mid_body_aborts_the_clients_body() {
    let valet = Valet::with_config(&faulty_config()).start().await;
    assert_eq!(valet.get("/f/ok").await.status(), StatusCode::OK);
    for path in ["/f/cut", "/f/cut-chunked"] {
        let response = valet.get(path).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{path}: the head arrived"
        );
        let body = tokio::time::timeout(Duration::from_secs(30), response.bytes())
            .await
            .unwrap_or_else(|_| panic!("{path}: the body hangs"));
        assert!(body.is_err(), "{path}: a cut body must not look complete");
    }
    // Over raw HTTP/1.1 the abort is visible too: the connection closes short of the length.
    let mut stream = tokio::net::TcpStream::connect(valet.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /f/cut HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut got))
        .await
        .expect("closed, not hanging")
        .ok();
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("content-length: 100000"), "{text}");
    let body_len = got.len() - text.find("\r\n\r\n").unwrap() - 4;
    assert!(body_len < 100_000, "only the bytes the upstream sent");
    valet.echo("/api/echo").await;
    assert_eq!(valet.get("/f/ok").await.status(), StatusCode::OK);
}

/// What a bounded load loop saw.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    bad_gateway: usize,
    /// Answers other than 200 and 502, and failed requests.
    failed: usize,
    /// The first few of those, for the failure message.
    other: Vec<String>,
}

impl Tally {
    fn other(&mut self, what: String) {
        self.failed += 1;
        if self.other.len() < 5 {
            self.other.push(what);
        }
    }
}

/// `tasks` clients sending requests to `paths` in turn (POST of 1 KB to an `upload` path, GET
/// otherwise) until `stop` is set, and never longer than `bound`; every answer is tallied.
fn load(
    valet: &Valet,
    tasks: usize,
    paths: &[&str],
    stop: Arc<std::sync::atomic::AtomicBool>,
    bound: Duration,
) -> tokio::task::JoinHandle<Tally> {
    let client = client();
    let urls: Vec<String> = paths.iter().map(|p| valet.url(p)).collect();
    tokio::spawn(async move {
        let started = Instant::now();
        let workers: Vec<_> = (0..tasks)
            .map(|i| {
                let (client, urls, stop) = (client.clone(), urls.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut n = i;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && started.elapsed() < bound
                    {
                        let url = &urls[n % urls.len()];
                        n += 1;
                        let request = if url.contains("upload") {
                            client.post(url).body(vec![1u8; 1024])
                        } else {
                            client.get(url)
                        };
                        match request.send().await {
                            Ok(r) if r.status() == StatusCode::OK => tally.ok += 1,
                            Ok(r) if r.status() == StatusCode::BAD_GATEWAY => {
                                tally.bad_gateway += 1
                            }
                            Ok(r) => tally.other(format!("{url}: {}", r.status())),
                            Err(e) => tally.other(format!("{url}: {e:?}")),
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for worker in workers {
            let tally = worker.await.unwrap();
            total.ok += tally.ok;
            total.bad_gateway += tally.bad_gateway;
            total.failed += tally.failed;
            total.other.extend(tally.other);
        }
        total
    })
}

/// A request body that takes `chunks` x 100 ms to send.
fn slow_body(chunks: usize) -> reqwest::Body {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![2u8; 1024])),
            i + 1,
        ))
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_load_fails_in_flight_uploads_fast_and_serves_the_rest() {
    let valet = Valet::with_config(&config(r#"{ first_byte = "30s" }"#))
        .start()
        .await;
    let first = valet.echo("/api/echo").await["pid"].as_u64().unwrap() as u32;

    // In flight when the process dies: an upload still streaming its body (cannot be sent
    // again), and slow GETs (idempotent: sent again to the new process).
    let upload = {
        let request = valet
            .client
            .post(valet.url("/api/upload"))
            .body(slow_body(40));
        tokio::spawn(async move { (request.send().await, Instant::now()) })
    };
    let slow_gets: Vec<_> = (0..4)
        .map(|_| {
            let request = valet.client.get(valet.url("/api/slow?ms=3000"));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(
        &valet,
        8,
        &["/api/echo", "/api/upload"],
        stop.clone(),
        Duration::from_secs(30),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    kill(Pid::from_raw(first as i32), Signal::SIGKILL).expect("kill the instance");
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let (upload, answered_at) = upload.await.unwrap();
    let upload = upload.expect("the upload gets an answer");
    assert_eq!(upload.status(), StatusCode::BAD_GATEWAY, "{}", valet.log());
    assert_eq!(json_of(upload).await["error"], "bad_gateway");
    let failed_after = answered_at - killed_at;
    // A hang would take first_byte (30 s); the answer comes as soon as the connection resets.
    assert!(failed_after < Duration::from_secs(10), "{failed_after:?}");

    for get in slow_gets {
        let response = get.await.unwrap().expect("an answer");
        let echo = response.status();
        assert_eq!(echo, StatusCode::OK, "an idempotent GET is sent again");
    }
    let tally = running.await.unwrap();
    eprintln!("killed under load: {tally:?}, in-flight upload failed after {failed_after:?}");
    assert_eq!(tally.failed, 0, "only 200 and 502: {:?}", tally.other);
    assert!(tally.ok > 0);

    let after = valet.echo("/api/echo").await["pid"].as_u64().unwrap() as u32;
    assert_ne!(after, first);
    let starts = valet.starts();
    assert_eq!(starts.len(), 2, "one restart, no duplicate: {starts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valet_killed_under_load_leaves_no_orphan_and_no_duplicate_after_restart() {
    // `sh` runs the backend as a grandchild of valet: the parent-death signal reaches only
    // `sh`, so the backend outlives a SIGKILLed valet until the next valet cleans up.
    let mut valet = Valet::with_config(&format!(
        r#"
[[containers]]
class_name = "Wrapped"
command = ["sh", "-c", "python3 {BACKEND} & wait"]
readiness = {{ path = "/health" }}

[[routes]]
pattern = "/k/*"
container = "Wrapped"
instance = "path:1"
"#
    ))
    .start()
    .await;
    let keys = ["a", "b", "c"];
    for key in keys {
        valet.echo(&format!("/k/{key}/echo")).await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(
        &valet,
        6,
        &["/k/a/echo", "/k/b/upload", "/k/c/slow?ms=200"],
        stop.clone(),
        Duration::from_secs(20),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    valet.sigkill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let before = running.await.unwrap();
    assert!(before.ok > 0, "{before:?}");

    let old: Vec<u32> = valet.starts().iter().map(|s| s.pid).collect();
    assert_eq!(old.len(), 3, "{:?}", valet.starts());
    let survivors: Vec<u32> = old.iter().copied().filter(|&p| pid_alive(p)).collect();
    eprintln!(
        "after SIGKILL of valet: {} of 3 grandchildren alive",
        survivors.len()
    );

    valet.restart().await;
    for pid in &old {
        let pid = *pid;
        eventually(
            Duration::from_secs(10),
            "the next valet to kill the old backend",
            || async move { (!pid_alive(pid)).then_some(()) },
        )
        .await;
    }

    // A burst per key after the restart: exactly one new instance each.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let after = load(
        &valet,
        12,
        &["/k/a/echo", "/k/b/upload", "/k/c/echo"],
        stop.clone(),
        Duration::from_secs(3),
    );
    let after = after.await.unwrap();
    assert!(after.failed == 0 && after.bad_gateway == 0, "{after:?}");
    let starts = valet.starts();
    let new: Vec<&Start> = starts.iter().filter(|s| !old.contains(&s.pid)).collect();
    let mut new_keys: Vec<&str> = new.iter().map(|s| s.key.as_str()).collect();
    new_keys.sort();
    assert_eq!(new_keys, keys, "one new instance per key: {starts:?}");
    eprintln!(
        "valet killed under load: {} ok before the kill, {} failed after it (valet gone); {} ok after the restart",
        before.ok, before.failed, after.ok
    );
}
