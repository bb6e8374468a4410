//! Keep-alive HTTP/1.1 connections to instances, one pool per gateway worker.
//!
//! Each worker thread has its own current-thread runtime, so its pool is only ever touched from
//! that thread: the mutex is never contended and is there only because the request futures
//! must be `Send` for the HTTP/2 server. A request takes an idle connection of its instance's
//! address, or dials a new one, and sends on it from its own task; the connection goes back to
//! the pool when the response body has been read to its end (see [`Pooled`]). A request that
//! finds its pooled connection closed before anything was written is handed back by hyper and
//! goes out on another connection, so no copy of it is kept for that case.

use crate::proxy::UpstreamBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle connections kept per instance address; more are closed when they come back.
const MAX_IDLE_PER_ADDR: usize = 512;
/// Every this many returns, connections that closed while idle (an instance that went to
/// sleep, an app that times out idle keep-alive) are dropped, with their addresses.
const SWEEP_EVERY: u32 = 4096;

/// Longest wait for a returned connection to take its next request.
const READY_WAIT: Duration = Duration::from_millis(50);

type Sender = SendRequest<UpstreamBody>;

/// One worker's idle connections, by instance address.
pub struct Pool {
    inner: Mutex<Idle>,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Idle {
    by_addr: HashMap<SocketAddr, Vec<Sender>, BuildHasherDefault<AddrHasher>>,
    returns: u32,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The connect timeout passed before the instance accepted.
    ConnectTimeout,
    /// Nothing reached the instance: connecting or the handshake failed.
    Connect(std::io::Error),
    /// The request was (maybe partly) written and then the exchange failed.
    Exchange(hyper::Error),
}

impl Pool {
    pub fn new(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Idle::default()),
            connect_timeout,
        })
    }

    /// Sends `req` (origin-form target) to `addr` on a pooled or new connection.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Pooled), SendError> {
        while let Some(mut sender) = self.take(addr) {
            // The previous response has ended; the connection's task may not have noticed yet,
            // which `ready` waits for. A closed connection answers with an error at once. One
            // still busy (its request body still going up after the answer) is let go.
            match tokio::time::timeout(READY_WAIT, sender.ready()).await {
                Ok(Ok(())) => {}
                _ => continue,
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, self.pooled(addr, sender))),
                Err(mut e) => match e.take_message() {
                    // Closed before a byte was written: the request goes out on the next one.
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
        let mut sender = self.connect(addr).await?;
        match sender.send_request(req).await {
            Ok(response) => Ok((response, self.pooled(addr, sender))),
            Err(e) => Err(SendError::Exchange(e)),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Sender, SendError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Err(_) => return Err(SendError::ConnectTimeout),
                Ok(Err(e)) => return Err(SendError::Connect(e)),
                Ok(Ok(stream)) => stream,
            };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(std::io::Error::other(e)))?;
        // The connection's task: it reads and writes the socket for every exchange on it, and
        // ends when the instance closes it or the last handle to it is dropped.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.lock();
        let list = idle.by_addr.get_mut(&addr)?;
        while let Some(sender) = list.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        idle.returns = idle.returns.wrapping_add(1);
        if idle.returns.is_multiple_of(SWEEP_EVERY) {
            idle.by_addr.retain(|_, list| {
                list.retain(|s| !s.is_closed());
                !list.is_empty()
            });
        }
        let list = idle.by_addr.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(sender);
        }
    }

    fn pooled(self: &Arc<Self>, addr: SocketAddr, sender: Sender) -> Pooled {
        Pooled {
            pool: self.clone(),
            addr,
            sender: Some(sender),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle connections held, for tests.
    #[cfg(test)]
    fn idle(&self, addr: SocketAddr) -> usize {
        self.lock().by_addr.get(&addr).map_or(0, Vec::len)
    }
}

/// A connection busy with one exchange. [`Pooled::release`] puts it back once the response
/// body has ended; dropped before that (the client went away mid-body), the connection closes,
/// since the rest of that body would be in the way of the next response.
pub struct Pooled {
    pool: Arc<Pool>,
    addr: SocketAddr,
    sender: Option<Sender>,
}

impl Pooled {
    /// The exchange is over: the connection may carry the next request.
    pub fn release(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.put(self.addr, sender);
        }
    }
}

/// FxHash-style multiply-rotate over the address's bytes: the keys are a worker's own instance
/// addresses, never chosen by clients, so a DoS-resistant hash buys nothing here.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Either, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn get() -> Request<UpstreamBody> {
        Request::builder()
            .uri("/")
            .header("host", "test")
            .body(Either::Right(Empty::new()))
            .unwrap()
    }

    /// An HTTP/1.1 server that answers every request on a connection with "ok" (or only the
    /// first, then closes, when `close_after_one`) and counts the connections it accepted.
    async fn server(close_after_one: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(reply).await.is_err() || close_after_one {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn a_released_connection_carries_the_next_request() {
        let (addr, accepted) = server(false).await;
        let pool = Pool::new(Duration::from_secs(1));
        for _ in 0..5 {
            let (response, mut pooled) = pool.send(addr, get()).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            pooled.release();
            assert_eq!(pool.idle(addr), 1);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_dropped_mid_exchange_is_not_reused() {
        let (addr, accepted) = server(false).await;
        let pool = Pool::new(Duration::from_secs(1));
        let (_response, pooled) = pool.send(addr, get()).await.unwrap();
        drop(pooled);
        assert_eq!(pool.idle(addr), 0);
        let (response, _) = pool.send(addr, get()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_idle_connection_the_instance_closed_is_skipped() {
        let (addr, accepted) = server(true).await;
        let pool = Pool::new(Duration::from_secs(1));
        let (response, mut pooled) = pool.send(addr, get()).await.unwrap();
        response.into_body().collect().await.unwrap();
        pooled.release();
        // The server closes after one answer; the connection's task sees it soon after.
        let all_closed = || {
            let idle = pool.lock();
            let list = idle.by_addr.get(&addr);
            list.is_none_or(|l| l.iter().all(|s| s.is_closed()))
        };
        for _ in 0..100 {
            if all_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (response, _) = pool.send(addr, get()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refused_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let pool = Pool::new(Duration::from_secs(1));
        match pool.send(addr, get()).await {
            Err(SendError::Connect(_)) => {}
            other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
        }
    }
}
