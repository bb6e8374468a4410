//! Burst: N clients, each on its own connection, send their first request to one cold key at
//! the same moment. Connections are opened first so the requests, not the TCP handshakes,
//! are what races.

use crate::http::{BoxError, Conn};
use crate::stats::{ResultLine, Samples};
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub async fn run(addr: SocketAddr, path: &str, clients: usize) -> Result<(), BoxError> {
    let conns = join_all((0..clients).map(|_| Conn::open(addr))).await;
    let connect_failed = conns.iter().filter(|c| c.is_err()).count();
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .flatten()
        .map(|mut conn| {
            let path = path.to_string();
            tokio::spawn(async move {
                let result = conn.get(&path).await;
                (result.map(|(status, _)| status.as_u16()), started.elapsed())
            })
        })
        .collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut done: Vec<Duration> = Vec::with_capacity(clients);
    for task in tasks {
        let (result, at) = task.await?;
        let label = match result {
            Ok(code) => code.to_string(),
            Err(_) => "error".to_string(),
        };
        *statuses.entry(label).or_default() += 1;
        done.push(at);
    }
    let done = Samples::from_durations_ms(&done);
    ResultLine::new()
        .int("clients", clients)
        .int("ok", statuses.get("200").copied().unwrap_or(0))
        .int("connect_failed", connect_failed)
        .int("statuses", tally(&statuses))
        .num("p50_ms", done.pct(50.0))
        .num("last_ms", done.max())
        .print();
    Ok(())
}

/// `200:998,503:2`: every outcome with its count, in one token.
pub fn tally(statuses: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}
