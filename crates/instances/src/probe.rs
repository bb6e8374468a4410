//! Readiness and liveness probes: a TCP connect, or an HTTP GET that must answer 2xx or 3xx.
//! Written by hand over a TcpStream because a probe needs only the status line.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One probe, bounded by `timeout`. `Err` says what failed, for the instance's status.
pub async fn probe_once(
    addr: SocketAddr,
    path: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn probe(addr: SocketAddr, path: Option<&str>) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Some(path) = path else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: valet-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut head = [0u8; 64];
    let mut len = 0;
    // The status code sits in the first 12 bytes ("HTTP/1.1 200"); read until we have them.
    while len < 12 {
        let n = stream
            .read(&mut head[len..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a status line".into());
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "malformed status line".to_string())?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("{path} answered {code}"))
    }
}
