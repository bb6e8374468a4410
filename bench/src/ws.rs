//! WebSocket throughput and round trip against the upstream's echo endpoint.
//!
//! Throughput: each connection keeps up to `window` messages in flight (a writer and a reader
//! per connection, a semaphore between them), so the number measures the hop, not one round
//! trip at a time. Round trip: one message at a time on one connection.

use crate::http::BoxError;
use crate::stats::{ResultLine, Samples};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Ws {
    /// e.g. `ws://127.0.0.1:19082/ws`.
    pub url: String,
    pub connections: usize,
    /// Messages per connection in the throughput phase.
    pub messages: usize,
    pub size: usize,
    pub window: usize,
    pub round_trips: usize,
}

impl Ws {
    pub async fn run(&self) -> Result<(), BoxError> {
        let started = Instant::now();
        let tasks: Vec<_> = (0..self.connections)
            .map(|_| {
                tokio::spawn(pipelined(
                    self.url.clone(),
                    self.messages,
                    self.size,
                    self.window,
                ))
            })
            .collect();
        let mut echoed = 0;
        for t in tasks {
            echoed += t.await??;
        }
        let seconds = started.elapsed().as_secs_f64();
        let rtt = Samples::new(round_trips(&self.url, self.round_trips, self.size).await?);
        ResultLine::new()
            .int("echoed", echoed)
            .num("msgs_per_s", echoed as f64 / seconds)
            .num("rtt_p50_us", rtt.pct(50.0))
            .num("rtt_p99_us", rtt.pct(99.0))
            .print();
        Ok(())
    }
}

/// Connects with Nagle off, as browsers do: small messages must not wait for an ACK.
async fn connect(url: &str) -> Result<Socket, BoxError> {
    Ok(
        tokio_tungstenite::connect_async_with_config(url, None, true)
            .await?
            .0,
    )
}

async fn pipelined(
    url: String,
    messages: usize,
    size: usize,
    window: usize,
) -> Result<usize, BoxError> {
    let ws = connect(&url).await?;
    let (mut tx, mut rx) = ws.split();
    let credit = Arc::new(Semaphore::new(window.max(1)));
    let writer_credit = credit.clone();
    let payload = vec![b'x'; size];
    let writer = tokio::spawn(async move {
        for _ in 0..messages {
            writer_credit.acquire().await?.forget();
            tx.send(Message::Binary(payload.clone())).await?;
        }
        Ok::<_, BoxError>(tx)
    });
    let mut echoed = 0;
    while echoed < messages {
        match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
            Ok(Some(Ok(m))) if m.is_binary() => {
                echoed += 1;
                credit.add_permits(1);
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err("the echo connection closed early".into()),
            Err(_) => return Err("no echo within 10 s".into()),
        }
    }
    let mut tx = writer.await??;
    let _ = tx.send(Message::Close(None)).await;
    Ok(echoed)
}

/// Round-trip times in microseconds, one message in flight.
async fn round_trips(url: &str, n: usize, size: usize) -> Result<Vec<f64>, BoxError> {
    let mut ws = connect(url).await?;
    let payload = vec![b'x'; size];
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        ws.send(Message::Binary(payload.clone())).await?;
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_binary() => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err("the echo connection closed early".into()),
            }
        }
        rtts.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    let _ = ws.close(None).await;
    Ok(rtts)
}
