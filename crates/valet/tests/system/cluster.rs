//! Cluster mode (issue 16), healthy: real `valet up` replicas with `[cluster]` on a private
//! PostgreSQL, the process driver. A burst of first requests across replicas starts one
//! instance; a replica that does not own a key forwards HTTP, SSE, a WebSocket and a 100 MB
//! upload to the owner's peer listener, which refuses anything without the cluster's token;
//! two replicas cannot share a node name. The faults are in `cluster_faults.rs`.
//!
//! Keys are the first path segment: `/k/<key>/who` reaches the echo of `<key>`'s backend, which
//! says which replica started it (`VALET_NODE`) and under which epoch (`VALET_EPOCH`).

use crate::support::cluster::{served, who, Lab, PrivatePostgres, Replicas, Served, SECRET};
use crate::support::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// One backend per key; short upstream timeouts, so a test never waits on valet's defaults.
pub const CONFIG: &str = r#"
[server]
timeouts = { connect = "1s", first_byte = "10s" }

[[containers]]
class_name = "Echo"
readiness = { path = "/health" }

[[routes]]
pattern = "/k/*"
container = "Echo"
instance = "path:1"
strip_prefix = "/k/*"
"#;

/// `(owner, epoch)` of a key's live lease, as the store has it.
pub fn lease(pg: &PrivatePostgres, key: &str) -> Option<(String, u64)> {
    let row = pg.psql(&format!(
        "SELECT owner || ' ' || epoch FROM valet_leases \
         WHERE class = 'Echo' AND key = '{key}' AND expires_at > clock_timestamp()"
    ));
    let (owner, epoch) = row.trim().split_once(' ')?;
    Some((owner.to_string(), epoch.parse().ok()?))
}

/// GET `/k/<key>/who` on replica i; panics with the logs unless a backend answers.
pub async fn who_on(replicas: &Replicas, i: usize, key: &str) -> Served {
    who(
        replicas.client(),
        &replicas.url(i, &format!("/k/{key}/who")),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{key} on replica {i}: {e}\n{}", replicas.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_requests_across_three_replicas_starts_one_instance_per_key() {
    // A slow start: every request of the burst arrives while the winner's instance starts.
    let config = CONFIG.replace(
        "readiness = { path = \"/health\" }",
        "readiness = { path = \"/health\" }\nenv = { START_DELAY_MS = \"300\" }",
    );
    let replicas = Replicas::with_config(&config).replicas(3);
    let Some((pg, replicas)) = replicas.start_on_loopback().await else {
        return;
    };
    let keys = ["b1", "b2", "b3"];
    // 30 requests per key, spread over the three replicas, all at once.
    let burst = (0..90).map(|n| {
        let (key, replica) = (keys[n % 3], n / 3 % 3 + 1);
        let url = replicas.url(replica, &format!("/k/{key}/who"));
        let client = replicas.client().clone();
        async move { (key, who(&client, &url, Duration::from_secs(30)).await) }
    });
    let started = Instant::now();
    let answers = futures_util::future::join_all(burst).await;
    let took = started.elapsed();

    let failed: Vec<_> = answers.iter().filter(|(_, a)| a.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", replicas.logs());
    for key in keys {
        let by: BTreeSet<(String, u32, u64)> = answers
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, a)| a.as_ref().unwrap())
            .map(|s| (s.node.clone(), s.pid, s.epoch))
            .collect();
        assert_eq!(by.len(), 1, "{key} was served by {by:?}");
        let (node, pid, epoch) = by.into_iter().next().unwrap();
        let starts: Vec<_> = replicas
            .starts()
            .into_iter()
            .filter(|(_, s)| s.key == key)
            .collect();
        assert_eq!(starts.len(), 1, "{key}: {starts:?}\n{}", replicas.logs());
        assert_eq!(starts[0].1.pid, pid);
        assert_eq!(replicas.node(starts[0].0), node);
        assert_eq!(
            lease(&pg, key),
            Some((node.clone(), epoch)),
            "the store agrees"
        );
        // Every replica's listing names the owner; the others mark the key forwarded, not
        // with their own view's "stopped" (nothing of it runs there).
        for i in 1..=3 {
            let (status, list) = replicas.admin_get(i, "/v1/instances").await;
            assert_eq!(status, 200, "{list}");
            let entry = list
                .as_array()
                .and_then(|all| all.iter().find(|e| e["key"] == key))
                .unwrap_or_else(|| panic!("replica {i} lists no {key}: {list}"));
            assert_eq!(entry["owner"], node.as_str(), "replica {i}: {entry}");
            let mine = replicas.node(i) == node;
            assert_eq!(entry["forwarded"], !mine, "replica {i}: {entry}");
            if mine {
                assert_eq!(entry["state"], "ready", "replica {i}: {entry}");
            }
        }
    }
    eprintln!(
        "burst: 90 requests for 3 cold keys over 3 replicas, 90 x 200 in {took:?}, {} starts",
        replicas.starts().len()
    );
}

/// The test process's own address in the lab (`netns.sh up` gives it .254 of the subnet).
fn test_process_addr(lab: &Lab) -> IpAddr {
    match lab.db_addr() {
        IpAddr::V4(db) => {
            let [a, b, c, _] = db.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 254))
        }
        IpAddr::V6(_) => unreachable!("the lab is IPv4"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_owner_forwards_http_sse_a_websocket_and_a_100_mb_upload_to_the_owner() {
    let Some((lab, _pg, replicas)) = Replicas::with_config(CONFIG).start_in_lab().await else {
        return;
    };
    let owner = who_on(&replicas, 1, "fwd").await;
    assert_eq!(owner.node, "gw-1");

    // Plain HTTP through replica 2, with fields a client must not be able to set.
    let token = valet_cluster::peer_token(SECRET);
    let response = replicas
        .client()
        .get(replicas.url(2, "/k/fwd/who?x=1"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Valet-Peer", &token)
        .header("X-Valet-Instance", "1 0 Echo other")
        .header("x-request-id", "cluster-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "cluster-req-1");
    let text = response.text().await.unwrap();
    assert_eq!(served(&text), Some(owner.clone()), "{text}");
    let echo: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(echo["path"], "/who?x=1");
    let headers = echo["headers"].as_object().unwrap();
    let client_addr = test_process_addr(&lab).to_string();
    assert_eq!(
        headers["x-forwarded-for"],
        client_addr,
        "the client's address, once, not replica 2's ({}): {echo}",
        lab.addr(2)
    );
    assert_eq!(headers["x-real-ip"], client_addr);
    assert_eq!(headers["x-request-id"], "cluster-req-1");
    let peer_fields: Vec<_> = headers
        .keys()
        .filter(|k| k.starts_with("x-valet"))
        .collect();
    assert!(
        peer_fields.is_empty(),
        "reached the instance: {peer_fields:?}"
    );

    // An instance cannot pass for its replica's not_owner refusal: its 503 with that field
    // reaches the client once, as it was sent, and the request is not sent again.
    let response = replicas
        .get(2, "/k/fwd/status?code=503&header=x-valet-not-owner")
        .await;
    assert_eq!(response.status(), 503);
    assert!(!response.headers().contains_key("x-valet-not-owner"));
    let answer = json_of(response).await;
    assert_eq!(answer["hits"], 1, "sent to the instance again: {answer}");

    // Server-sent events arrive one by one through both hops.
    let response = replicas.get(2, "/k/fwd/sse?n=5&delay_ms=300").await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (mut text, mut arrivals) = (Vec::new(), Vec::new());
    while let Some(chunk) = body.next().await {
        text.extend_from_slice(&chunk.expect("event"));
        arrivals.push(Instant::now());
    }
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(arrivals.len() >= 5 && spread >= Duration::from_millis(900));

    // A WebSocket through replica 2: echoed by the owner's backend.
    let url = replicas.url(2, "/k/fwd/ws").replacen("http", "ws", 1);
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("websocket handshake: {e}\n{}", replicas.logs()));
    assert_eq!(response.status(), 101);
    ws.send(Message::text("across replicas")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::text("across replicas")
    );
    let binary: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::binary(binary));
    ws.close(None).await.unwrap();

    // 100 MB streamed up through replica 2; the owner's backend counts and hashes it.
    let (pieces, started) = (1600u64, Instant::now());
    let upload = futures_util::stream::iter((0..pieces).map(|i| Ok::<_, std::io::Error>(piece(i))));
    let response = replicas
        .client()
        .post(replicas.url(2, "/k/fwd/upload?hash=1"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("upload");
    let answer = json_of(response).await;
    let took = started.elapsed();
    assert_eq!(answer["bytes"], pieces * PIECE as u64, "{answer}");
    assert_eq!(answer["sha256"], expected_sha256(pieces), "{answer}");
    eprintln!("100 MB upload through the non-owner in {took:?}");

    let starts = replicas.starts();
    assert_eq!(starts.len(), 1, "one instance, the owner's: {starts:?}");
    assert_eq!((starts[0].0, starts[0].1.pid), (1, owner.pid));
}

const PIECE: usize = 64 * 1024;

/// Piece `i` of the upload: its number, then a fixed pattern (so a lost, doubled or reordered
/// piece changes the hash).
fn piece(i: u64) -> Bytes {
    let mut piece: Vec<u8> = (0..PIECE).map(|b| (b * 7 % 251) as u8).collect();
    piece[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(piece)
}

/// SHA-256 of the first `pieces` pieces, computed by Python (the tests have no hash crate).
fn expected_sha256(pieces: u64) -> String {
    let script = "import hashlib, struct, sys\n\
                  block = bytes(b * 7 % 251 for b in range(65536))\n\
                  h = hashlib.sha256()\n\
                  for i in range(int(sys.argv[1])): h.update(struct.pack('<Q', i) + block[8:])\n\
                  print(h.hexdigest())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &pieces.to_string()])
        .output()
        .expect("python3");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
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

/// A request straight to replica i's peer listener: status, `error` of the JSON body.
async fn to_peer(
    replicas: &Replicas,
    i: usize,
    token: Option<&str>,
    instance: Option<&str>,
) -> (u16, String) {
    let mut request = replicas
        .client()
        .get(format!("http://{}/who", replicas.peer_addr(i)));
    if let Some(token) = token {
        request = request.header("x-valet-peer", token);
    }
    if let Some(instance) = instance {
        request = request.header("x-valet-instance", instance);
    }
    let response = request.send().await.expect("the peer listener answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let error = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(text);
    (status, error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_listener_refuses_requests_without_the_token_or_a_well_formed_instance() {
    let Some((_pg, replicas)) = Replicas::with_config(CONFIG).start_on_loopback().await else {
        return;
    };
    let owner = who_on(&replicas, 2, "p2").await;
    let token = valet_cluster::peer_token(SECRET);
    let field = format!("{} 0 Echo p2", owner.epoch);

    let refused = (403, "peer_refused".to_string());
    assert_eq!(to_peer(&replicas, 2, None, Some(&field)).await, refused);
    let wrong = "0".repeat(token.len());
    assert_eq!(
        to_peer(&replicas, 2, Some(&wrong), Some(&field)).await,
        refused
    );
    // The secret itself is not the token: it never travels.
    assert_eq!(
        to_peer(&replicas, 2, Some(SECRET), Some(&field)).await,
        refused
    );
    for bad in [
        None,
        Some("x 0 Echo p2"),
        Some("1 0 Echo"),
        Some("1 0 Echo p2 extra"),
    ] {
        let (status, error) = to_peer(&replicas, 2, Some(&token), bad).await;
        assert_eq!(
            (status, error.as_str()),
            (400, "bad_peer_request"),
            "{bad:?}"
        );
    }
    let (status, _) = to_peer(&replicas, 2, Some(&token), Some("1 7 Echo p2")).await;
    assert_eq!(status, 400, "a port index the class does not have");

    // The right token and field reach the owner's instance ...
    let response = replicas
        .client()
        .get(format!("http://{}/who", replicas.peer_addr(2)))
        .header("x-valet-peer", &token)
        .header("x-valet-instance", &field)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(served(&response.text().await.unwrap()), Some(owner.clone()));
    // ... but not an epoch newer than the one it holds, nor a replica that does not own the
    // key, which refuses rather than forwarding again.
    let newer = format!("{} 0 Echo p2", owner.epoch + 1);
    let not_owner = (503, "not_owner".to_string());
    assert_eq!(
        to_peer(&replicas, 2, Some(&token), Some(&newer)).await,
        not_owner
    );
    assert_eq!(
        to_peer(&replicas, 1, Some(&token), Some(&field)).await,
        not_owner
    );
    assert_eq!(replicas.starts().len(), 1, "{:?}", replicas.starts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_with_a_node_name_in_use_refuses_to_start() {
    let replicas = Replicas::with_config(CONFIG).replicas(1);
    let Some((pg, replicas)) = replicas.start_on_loopback().await else {
        return;
    };
    // gw-1 again, on listeners of its own.
    let twin = Replicas::with_config(CONFIG).store(&pg.url()).config(1);
    let started = Instant::now();
    // With the cluster's key: only the node name is wrong.
    let key = replicas.valet(1).dir().join(".valet/secret.key");
    let log = match Valet::with_config(&twin)
        .env("VALET_SECRET_KEY_FILE", key.to_str().unwrap())
        .try_start()
        .await
    {
        Ok(_) => panic!("a second gw-1 started\n{}", replicas.logs()),
        Err(log) => log,
    };
    assert!(
        log.contains(r#"node "gw-1" is in use by a running replica"#),
        "{log}"
    );
    assert!(log.contains(&replicas.peer_addr(1).to_string()), "{log}");
    eprintln!("the twin gave up after {:?}", started.elapsed());
    // The first one is untouched.
    assert_eq!(who_on(&replicas, 1, "still").await.node, "gw-1");
}

#[tokio::test]
async fn a_replica_with_a_secret_key_of_its_own_refuses_to_start() {
    let replicas = Replicas::with_config(CONFIG).replicas(1);
    let Some((pg, replicas)) = replicas.start_on_loopback().await else {
        return;
    };
    // gw-2 with the key its own data_dir makes: project and class secrets sealed by gw-1
    // would not open there.
    let stranger = Replicas::with_config(CONFIG).store(&pg.url()).config(2);
    let log = match Valet::with_config(&stranger).try_start().await {
        Ok(_) => panic!(
            "a replica with another secret key started\n{}",
            replicas.logs()
        ),
        Err(log) => log,
    };
    assert!(
        log.contains("is not the one this store's secrets were sealed with"),
        "{log}"
    );
    assert!(log.contains("VALET_SECRET_KEY_FILE"), "{log}");
    // With the first replica's key it joins.
    let key = replicas.valet(1).dir().join(".valet/secret.key");
    let joined = Valet::with_config(&stranger)
        .env("VALET_SECRET_KEY_FILE", key.to_str().unwrap())
        .try_start()
        .await;
    assert!(joined.is_ok(), "{}", joined.err().unwrap_or_default());
}

#[test]
fn valet_check_explains_a_cluster_without_postgres_or_with_a_short_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("valet.toml");
    std::fs::write(
        &path,
        r#"
        [cluster]
        node = "gw-a"
        listen = "127.0.0.1:8789"
        secret = "too-short"
        "#,
    )
    .unwrap();
    let out = Valet::run(&["check", path.to_str().unwrap()], Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("server.store"), "{text}");
    assert!(text.contains("needs the PostgreSQL store"), "{text}");
    assert!(text.contains("cluster.secret"), "{text}");
    assert!(text.contains("at least 32"), "{text}");
}
