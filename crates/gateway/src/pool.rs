//! Keep-alive HTTP/1.1 connections to instances, one pool per gateway worker: only the pool.
//! The exchange on a connection is [`crate::http1::client`]'s.
//!
//! Each worker thread has its own current-thread runtime, so its pool is only ever touched from
//! that thread: the mutex is never contended and is there only because the request futures
//! must be `Send` for the HTTP/2 server. A request takes an idle connection of its instance's
//! address, or dials a new one, and sends on it from its own task; the connection comes back
//! ([`Conn::release`]) when the response body has been read to its end.

use crate::timer::LazyTimer;
use bytes::BytesMut;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections kept per instance address; more are closed when they come back.
const MAX_IDLE_PER_ADDR: usize = 512;
/// Every this many returns, connections that closed while idle (an instance that went to
/// sleep, an app that times out idle keep-alive) are dropped, with their addresses.
const SWEEP_EVERY: u32 = 4096;

/// Why no connection to an instance could be had: nothing of a request reached it.
#[derive(Debug)]
pub enum ConnectError {
    /// The connect timeout passed before the instance accepted.
    Timeout,
    /// The caller's own deadline (earlier than the connect timeout) passed first.
    Deadline,
    /// Refused or unreachable (a firewall rule's `EACCES` included).
    Io(std::io::Error),
    /// Something answered on the instance's port, but it is not the instance (another
    /// program, or the instance has ended): see `valet_instances::confirm_listener`.
    PortTaken(valet_instances::PortConflict),
}

/// Dials an instance: the one way valet opens a connection to one (pooled exchanges and
/// upgrade tunnels alike). Bounded by `connect_timeout` or, when it comes sooner, by `by`; and
/// before a byte is written the port is checked to still be the instance's.
pub async fn dial(
    addr: SocketAddr,
    connect_timeout: Duration,
    by: Option<Instant>,
) -> Result<TcpStream, ConnectError> {
    let limit = Instant::now() + connect_timeout;
    let (at, late) = match by {
        Some(by) if by < limit => (by, ConnectError::Deadline),
        _ => (limit, ConnectError::Timeout),
    };
    let stream = match tokio::time::timeout_at(at, TcpStream::connect(addr)).await {
        Err(_) => return Err(late),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(stream)) => stream,
    };
    valet_instances::confirm_listener(addr).map_err(ConnectError::PortTaken)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One worker's idle connections, by instance address.
pub struct Pool {
    inner: Mutex<Idle>,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Idle {
    by_addr: HashMap<SocketAddr, Vec<Conn>, BuildHasherDefault<AddrHasher>>,
    returns: u32,
}

/// A connection to an instance and what has been read from it and not yet used.
pub struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    pool: Arc<Pool>,
    addr: SocketAddr,
    /// Bounds the wait for an answer (the first-byte deadline); kept with the connection so
    /// that a request costs no timer of its own.
    pub(crate) timer: LazyTimer,
}

impl Conn {
    /// The exchange is over: the connection may carry the next request.
    pub(crate) fn release(self) {
        let pool = self.pool.clone();
        pool.put(self);
    }

    /// Whether an idle connection can still carry a request: the instance has not closed it
    /// and has sent nothing unasked. Costs no system call while the socket has not turned
    /// readable (tokio keeps the readiness it last saw).
    fn usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl Pool {
    pub fn new(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Idle::default()),
            connect_timeout,
        })
    }

    /// A new connection to `addr` (see [`dial`]).
    pub(crate) async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        by: Option<Instant>,
    ) -> Result<Conn, ConnectError> {
        let stream = dial(addr, self.connect_timeout, by).await?;
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            pool: self.clone(),
            addr,
            timer: LazyTimer::new(Instant::now() + self.connect_timeout),
        })
    }

    pub(crate) fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.lock();
        let list = idle.by_addr.get_mut(&addr)?;
        while let Some(conn) = list.pop() {
            if conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, conn: Conn) {
        let mut idle = self.lock();
        idle.returns = idle.returns.wrapping_add(1);
        if idle.returns.is_multiple_of(SWEEP_EVERY) {
            idle.by_addr.retain(|_, list| {
                list.retain(Conn::usable);
                !list.is_empty()
            });
        }
        let list = idle.by_addr.entry(conn.addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle connections held, for tests.
    #[cfg(test)]
    pub(crate) fn idle(&self, addr: SocketAddr) -> usize {
        self.lock().by_addr.get(&addr).map_or(0, Vec::len)
    }
}

/// Called after a read that took less than it had room for: the socket's receive queue was
/// empty then, so tokio's cached readiness is cleared. Otherwise the next look at the socket
/// (the pooled connection's check before reuse, the client connection's wait for its next
/// request) would cost a `recv` that answers EAGAIN. Safe with edge-triggered epoll: bytes that
/// arrive after the read raise a new event, which tokio records as newer than this clear.
pub(crate) fn drained(stream: &TcpStream) {
    let _ = stream.try_io(Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
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
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_drained_socket_still_wakes_for_bytes_that_come_later() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        peer.write_all(b"one").await.unwrap();
        stream.readable().await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(stream.try_read(&mut buf).unwrap(), 3);
        drained(&stream);
        // Cleared: a look costs nothing and finds nothing.
        let err = stream.try_read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        // Bytes sent after the clear wake the reader.
        peer.write_all(b"two").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.readable())
            .await
            .expect("woken by the later bytes")
            .unwrap();
        assert_eq!(stream.try_read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        // And a close after a clear is seen too.
        drained(&stream);
        drop(peer);
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.readable())
            .await
            .expect("woken by the close")
            .unwrap();
        assert_eq!(stream.try_read(&mut buf).unwrap(), 0);
    }
}
