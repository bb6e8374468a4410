//! SSE delivery delay: the upstream stamps each event with the time it wrote it; the client
//! subtracts that from the time the event arrived. Same machine, same clock.

use crate::http::{BoxError, Conn};
use crate::stats::{ResultLine, Samples};
use futures_util::future::try_join_all;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

pub async fn run(
    addr: SocketAddr,
    streams: usize,
    events: u64,
    interval_ms: u64,
) -> Result<(), BoxError> {
    let path = format!("/sse?n={events}&interval_ms={interval_ms}");
    let all = try_join_all((0..streams).map(|_| one_stream(addr, &path))).await?;
    let received: usize = all.iter().map(Vec::len).sum();
    let delays = Samples::new(all.into_iter().flatten().collect());
    ResultLine::new()
        .int("events", received)
        .int("expected", streams as u64 * events)
        .num("p50_us", delays.pct(50.0))
        .num("p99_us", delays.pct(99.0))
        .num("max_us", delays.max())
        .print();
    Ok(())
}

/// Delays in microseconds of every event on one stream.
async fn one_stream(addr: SocketAddr, path: &str) -> Result<Vec<f64>, BoxError> {
    let mut conn = Conn::open(addr).await?;
    let res = conn.send(path).await?;
    if !res.status().is_success() {
        return Err(format!("{path} answered {}", res.status()).into());
    }
    let mut body = res.into_body();
    let mut pending: Vec<u8> = Vec::new();
    let mut delays = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        pending.extend_from_slice(&data);
        // An event ends at a blank line; a chunk may hold several events or part of one.
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            if let Some(sent) = stamp(&event) {
                delays.push(now.saturating_sub(sent) as f64 / 1e3);
            }
        }
    }
    Ok(delays)
}

fn stamp(event: &[u8]) -> Option<u128> {
    std::str::from_utf8(event)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|v| v.trim().parse().ok())
}
