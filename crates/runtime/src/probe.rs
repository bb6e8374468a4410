//! Readiness and liveness probes: a TCP connect, or an HTTP GET that must answer 2xx or 3xx.
//! Written by hand over a TcpStream because a probe needs only the status line.
//!
//! A [`Running`](crate::Running) instance says how it is probed ([`Probe`]): over the network
//! ([`NetProbe`]) for every real engine, by its own state for the test fake.

use async_trait::async_trait;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// Not (yet) answering as it should; probing again may pass. Says what failed.
    Failed(String),
    /// Something other than the instance holds its port: probing again must not pass it.
    Conflict(crate::PortConflict),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(why) => f.write_str(why),
            Self::Conflict(conflict) => write!(f, "port conflict: {conflict}"),
        }
    }
}

impl From<String> for ProbeError {
    fn from(why: String) -> Self {
        Self::Failed(why)
    }
}

/// How an instance is probed.
#[async_trait]
pub trait Probe: Send + Sync {
    /// One probe of `addr` (an endpoint of the instance), bounded by `timeout`.
    async fn probe(
        &self,
        addr: SocketAddr,
        path: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ProbeError>;
}

/// The probe of every real engine: a TCP connect to the endpoint, then `GET path` if set.
pub struct NetProbe;

#[async_trait]
impl Probe for NetProbe {
    async fn probe(
        &self,
        addr: SocketAddr,
        path: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        probe_once(addr, path, timeout).await
    }
}

/// One probe, bounded by `timeout`.
pub async fn probe_once(
    addr: SocketAddr,
    path: Option<&str>,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, probe(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Failed(format!("no answer within {timeout:?}"))),
    }
}

async fn probe(addr: SocketAddr, path: Option<&str>) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // A connection accepted by another program's listener must not count as the instance
    // answering (see valet_runtime's listeners module), with or without a path.
    crate::confirm_listener(addr).map_err(ProbeError::Conflict)?;
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
            return Err(ProbeError::Failed(
                "connection closed before a status line".into(),
            ));
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ProbeError::Failed("malformed status line".into()))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(ProbeError::Failed(format!("{path} answered {code}")))
    }
}
