//! Keep-alive HTTP/1.1 connections to instances, one pool per gateway worker, and the exchange
//! on them (see [`crate::h1`] for the protocol).
//!
//! Each worker thread has its own current-thread runtime, so its pool is only ever touched from
//! that thread: the mutex is never contended and is there only because the request futures
//! must be `Send` for the HTTP/2 server. A request takes an idle connection of its instance's
//! address, or dials a new one, and sends on it from its own task; the connection goes back to
//! the pool when the response body has been read to its end (see [`crate::h1::ResponseBody`]).

use crate::body::BoxError;
use crate::fields::Answer;
use crate::h1::{self, BadResponse, RequestFraming, ResponseBody};
use crate::timer::LazyTimer;
use bytes::{Bytes, BytesMut};
use http::Method;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections kept per instance address; more are closed when they come back.
const MAX_IDLE_PER_ADDR: usize = 512;
/// Every this many returns, connections that closed while idle (an instance that went to
/// sleep, an app that times out idle keep-alive) are dropped, with their addresses.
const SWEEP_EVERY: u32 = 4096;
/// Request body bytes gathered into one write when they are at hand already.
const COALESCE: usize = 64 * 1024;

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
    timer: LazyTimer,
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

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The connect timeout passed before the instance accepted.
    ConnectTimeout,
    /// The deadline given to [`Pool::send_head`] passed before the response head came.
    Deadline,
    /// Nothing reached the instance: connecting failed.
    Connect(std::io::Error),
    /// The request was (maybe partly) written, and the connection failed or closed before a
    /// whole response head came back.
    Closed(std::io::Error),
    /// The client's request body failed: over the size limit, silent too long, bad framing.
    RequestBody(BoxError),
    /// The instance's answer cannot be passed on.
    BadResponse(BadResponse),
}

impl Pool {
    pub fn new(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Idle::default()),
            connect_timeout,
        })
    }

    /// Sends `req` (origin-form target) to `addr` on a pooled or new connection and returns
    /// the response head; its body reads the rest off the connection. The proxy encodes its
    /// heads itself (to keep them for resending) and calls [`Pool::send_head`]; this is the
    /// tests' shorthand.
    #[cfg(test)]
    async fn send<B>(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: http::Request<B>,
    ) -> Result<Answer<ResponseBody>, SendError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let fields = crate::fields::Fields::Map(parts.headers);
        let (head, framing) = encode(&parts.method, target, &fields, None, &body);
        self.send_head(addr, &head, &parts.method, framing, body, None)
            .await
    }

    /// Sends an encoded request head (see [`encode`]) and `body` to `addr`; with a `deadline`,
    /// [`SendError::Deadline`] if no response head has come by then.
    pub async fn send_head<B>(
        self: &Arc<Self>,
        addr: SocketAddr,
        head: &[u8],
        method: &Method,
        framing: RequestFraming,
        body: B,
        deadline: Option<Instant>,
    ) -> Result<Answer<ResponseBody>, SendError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut body = std::pin::pin!(body);
        // A bodiless idempotent request may go again once, on a new connection, when a pooled
        // one closes without an answer (RFC 9110 9.2.2): how an instance's idle keep-alive
        // timeout meets a request that was already on its way.
        let mut may_resend = framing == RequestFraming::None && method.is_idempotent();
        let mut pooled = true;
        loop {
            let taken = if pooled { self.take(addr) } else { None };
            let (mut conn, reused) = match (taken, deadline) {
                (Some(conn), _) => (conn, true),
                (None, None) => (self.connect(addr).await?, false),
                (None, Some(at)) => match tokio::time::timeout_at(at, self.connect(addr)).await {
                    Ok(conn) => (conn?, false),
                    Err(_) => return Err(SendError::Deadline),
                },
            };
            match exchange(&mut conn, head, &mut body, framing, method, deadline).await {
                Ok((head, keep_alive)) => {
                    let framing = head.framing;
                    return Ok(Answer {
                        status: head.status,
                        fields: head.fields,
                        request_id: None,
                        body: ResponseBody::new(conn, framing, keep_alive),
                    });
                }
                // A pooled connection the instance closed just as it was taken, before it read
                // a byte of this request: nothing reached the application, so the request goes
                // out again on a new connection (once: a new connection is not retried).
                Err(Failure::Unsent(_)) if reused => continue,
                Err(Failure::Closed(_)) if reused && may_resend => {
                    may_resend = false;
                    pooled = false;
                }
                Err(Failure::Unsent(e) | Failure::Closed(e)) => return Err(SendError::Closed(e)),
                Err(Failure::RequestBody(e)) => return Err(SendError::RequestBody(e)),
                Err(Failure::Deadline) => return Err(SendError::Deadline),
                Err(Failure::BadResponse(e)) => return Err(SendError::BadResponse(e)),
            }
        }
    }

    async fn connect(self: &Arc<Self>, addr: SocketAddr) -> Result<Conn, SendError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Err(_) => return Err(SendError::ConnectTimeout),
                Ok(Err(e)) => return Err(SendError::Connect(e)),
                Ok(Ok(stream)) => stream,
            };
        // Before a byte of the request is written: the port must still be the instance's.
        valet_instances::confirm_listener(addr).map_err(|e| SendError::Connect(e.into()))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            pool: self.clone(),
            addr,
            timer: LazyTimer::new(Instant::now() + self.connect_timeout),
        })
    }

    fn take(&self, addr: SocketAddr) -> Option<Conn> {
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
    fn idle(&self, addr: SocketAddr) -> usize {
        self.lock().by_addr.get(&addr).map_or(0, Vec::len)
    }
}

/// The request head as it goes on the wire (see [`h1::encode_request`]), and how its body is
/// framed.
pub fn encode<B: http_body::Body>(
    method: &Method,
    target: &str,
    headers: &crate::fields::Fields,
    rewrite: Option<&crate::forward::Rewrite<'_>>,
    body: &B,
) -> (Bytes, RequestFraming) {
    let mut head = BytesMut::new();
    let framing = h1::encode_request(method, target, headers, rewrite, body, &mut head);
    (head.freeze(), framing)
}

enum Failure {
    /// Writing the head failed: the instance has none of this request.
    Unsent(std::io::Error),
    Closed(std::io::Error),
    RequestBody(BoxError),
    BadResponse(BadResponse),
    Deadline,
}

/// Writes the request and reads the response head. The body goes up while the head is awaited,
/// so an instance that answers early (a 413 before reading an upload) is heard at once; the
/// connection is then not reused, since part of the body was never sent.
async fn exchange<B>(
    conn: &mut Conn,
    head: &[u8],
    body: &mut B,
    framing: RequestFraming,
    method: &Method,
    deadline: Option<Instant>,
) -> Result<(h1::Head, bool), Failure>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let Conn {
        stream, buf, timer, ..
    } = conn;
    if framing == RequestFraming::None {
        let answer = async {
            stream.write_all(head).await.map_err(Failure::Unsent)?;
            let (head, keep_alive, short) = read_head(stream, buf, method).await?;
            if short {
                drained(stream);
            }
            Ok((head, keep_alive))
        };
        let Some(at) = deadline else {
            return answer.await;
        };
        return tokio::select! {
            biased;
            answer = answer => answer,
            () = timer.reached(at) => Err(Failure::Deadline),
        };
    }
    let (mut reader, mut writer) = stream.split();
    let upload = send_body(&mut writer, head, body, framing);
    let answer = read_head(&mut reader, buf, method);
    tokio::pin!(upload, answer);
    let early = tokio::select! {
        biased;
        sent = &mut upload => match sent {
            Ok(()) => None,
            Err(Failure::Unsent(e) | Failure::Closed(e)) => Some(e),
            Err(other) => return Err(other),
        },
        head = &mut answer => {
            let (head, _, _) = head?;
            // Answered before the whole body went up: the connection carries no more requests.
            return Ok((head, false));
        }
    };
    match (answer.await, early) {
        (Ok((head, keep_alive, _)), None) => Ok((head, keep_alive)),
        // Writing failed, yet the instance may have answered before closing (a 413 for an
        // upload it would not read): that answer is the one the client gets.
        (Ok((head, _, _)), Some(_)) => Ok((head, false)),
        (Err(Failure::Closed(_)), Some(e)) => Err(Failure::Closed(e)),
        (Err(e), _) => Err(e),
    }
}

/// Writes the head and the client's body. Frames already at hand go out with the head in one
/// write.
async fn send_body<W, B>(
    writer: &mut W,
    head: &[u8],
    body: &mut B,
    framing: RequestFraming,
) -> Result<(), Failure>
where
    W: tokio::io::AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut out = BytesMut::with_capacity(head.len() + 1024);
    out.extend_from_slice(head);
    let mut unsent = true;
    loop {
        // Gather what is ready without waiting; wait only with nothing to write.
        let frame = if out.is_empty() {
            body.frame().await
        } else {
            match futures_util::FutureExt::now_or_never(body.frame()) {
                Some(frame) if out.len() < COALESCE => frame,
                Some(frame) => {
                    flush(writer, &mut out, &mut unsent).await?;
                    frame
                }
                None => {
                    flush(writer, &mut out, &mut unsent).await?;
                    continue;
                }
            }
        };
        match frame {
            None => break,
            Some(Err(e)) => return Err(Failure::RequestBody(e.into())),
            Some(Ok(frame)) => {
                // Trailers of the client's body are not passed on.
                if let Ok(data) = frame.into_data() {
                    if data.is_empty() {
                        continue;
                    }
                    match framing {
                        RequestFraming::Chunked => h1::encode_chunk(&data, &mut out),
                        _ => out.extend_from_slice(&data),
                    }
                }
            }
        }
    }
    if framing == RequestFraming::Chunked {
        out.extend_from_slice(h1::LAST_CHUNK);
    }
    flush(writer, &mut out, &mut unsent).await
}

async fn flush<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut BytesMut,
    unsent: &mut bool,
) -> Result<(), Failure> {
    if out.is_empty() {
        return Ok(());
    }
    let result = writer.write_all(out).await;
    out.clear();
    match result {
        Ok(()) => {
            *unsent = false;
            Ok(())
        }
        Err(e) if *unsent => Err(Failure::Unsent(e)),
        Err(e) => Err(Failure::Closed(e)),
    }
}

/// Reads until a whole response head is buffered and parses it.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<(h1::Head, bool, bool), Failure> {
    // Whether the last read took less than it had room for (see [`drained`]).
    let mut short = false;
    loop {
        if !buf.is_empty() {
            if let Some(head) = h1::parse_head(buf, method).map_err(Failure::BadResponse)? {
                let keep_alive = head.keep_alive;
                return Ok((head, keep_alive, short));
            }
        }
        buf.reserve(8 * 1024);
        let room = buf.capacity() - buf.len();
        match reader.read_buf(buf).await {
            Ok(0) => {
                return Err(Failure::Closed(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a response",
                )))
            }
            Ok(n) => short = n < room,
            Err(e) => return Err(Failure::Closed(e)),
        }
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
    use http::Request;
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    fn get() -> Request<Empty<Bytes>> {
        Request::builder()
            .uri("/")
            .header("host", "test")
            .body(Empty::<Bytes>::new())
            .unwrap()
    }

    /// What a scripted test server does with a request.
    #[derive(Clone, Copy)]
    enum Act {
        Reply(&'static [u8]),
        ReplyAndClose(&'static [u8]),
        /// Closes the connection without answering.
        Close,
        /// Keeps the connection open and never answers.
        Silent,
    }

    /// An HTTP/1.1 server that does `script(connection, request)` for each request head it
    /// reads (both counted from 0), and counts the connections it accepted.
    async fn scripted(
        script: impl Fn(usize, usize) -> Act + Copy + Send + 'static,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    let mut request = 0;
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let (reply, close) = match script(connection, request) {
                                Act::Reply(reply) => (reply, false),
                                Act::ReplyAndClose(reply) => (reply, true),
                                Act::Close => return,
                                Act::Silent => {
                                    let _ = stream.read(&mut buf).await;
                                    return;
                                }
                            };
                            request += 1;
                            if stream.write_all(reply).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// Answers every request with `reply` (or only the first, then closes, when
    /// `close_after_one`).
    async fn server_with(
        reply: &'static [u8],
        close_after_one: bool,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        scripted(move |_, _| match close_after_one {
            true => Act::ReplyAndClose(reply),
            false => Act::Reply(reply),
        })
        .await
    }

    async fn server(close_after_one: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        server_with(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            close_after_one,
        )
        .await
    }

    #[tokio::test]
    async fn a_deadline_ends_the_wait_for_an_answer_on_a_pooled_connection_and_drops_it() {
        // The first request is answered; the second, on the same connection, never is.
        let (addr, accepted) = scripted(|_, request| match request {
            0 => Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            _ => Act::Silent,
        })
        .await;
        // The connection's timer starts at the connect timeout (200 ms): the first wait's
        // later deadline leaves it there, so for the second it fires early and is set again.
        let pool = Pool::new(Duration::from_millis(200));
        let send = |deadline| {
            let (parts, body) = get().into_parts();
            let fields = crate::fields::Fields::Map(parts.headers);
            let (head, framing) = encode(&Method::GET, "/", &fields, None, &body);
            let pool = pool.clone();
            async move {
                pool.send_head(addr, &head, &Method::GET, framing, body, Some(deadline))
                    .await
            }
        };
        let response = send(Instant::now() + Duration::from_secs(5)).await.unwrap();
        let body = response.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        assert_eq!(pool.idle(addr), 1);
        let asked = Instant::now();
        let failed = send(asked + Duration::from_millis(600)).await;
        let waited = asked.elapsed();
        assert!(
            matches!(failed, Err(SendError::Deadline)),
            "{:?}",
            failed.err()
        );
        assert!(
            waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
            "gave up after {waited:?}, asked for 600 ms"
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            pool.idle(addr),
            0,
            "a connection with an answer pending is not reused"
        );
    }

    #[tokio::test]
    async fn a_finished_body_returns_its_connection_for_the_next_request() {
        let (addr, accepted) = server(false).await;
        let pool = Pool::new(Duration::from_secs(1));
        for _ in 0..5 {
            let response = pool.send(addr, get()).await.unwrap();
            let body = response.body.collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            assert_eq!(pool.idle(addr), 1);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        let (addr, accepted) = server_with(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n",
            false,
        )
        .await;
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, get()).await.unwrap();
        drop(response);
        assert_eq!(pool.idle(addr), 0);
        let response = pool.send(addr, get()).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_idle_connection_the_instance_closed_is_skipped() {
        let (addr, accepted) = server(true).await;
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, get()).await.unwrap();
        response.body.collect().await.unwrap();
        assert_eq!(pool.idle(addr), 1);
        // The server closes after one answer; give its FIN time to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = pool.send(addr, get()).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_posted_in_pieces_arrives_chunked_and_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.ends_with(b"0\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(seen).unwrap()
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(4);
        let stream_body = http_body_util::StreamBody::new(tokio_stream_of(rx));
        let body = crate::stream::SentBody::new(stream_body, Duration::from_secs(5), None);
        let req = Request::builder()
            .method("POST")
            .uri("/up")
            .header("host", "test")
            .body(body)
            .unwrap();
        let sender = tokio::spawn(async move {
            for part in ["hello", ", ", "world"] {
                tx.send(Ok(http_body::Frame::data(Bytes::from(part))))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, req).await.unwrap();
        assert_eq!(response.status, 200);
        sender.await.unwrap();
        let seen = got.await.unwrap();
        assert!(seen.starts_with("POST /up HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
        let (_, wire) = seen.split_once("\r\n\r\n").unwrap();
        assert_eq!(wire, "5\r\nhello\r\n2\r\n, \r\n5\r\nworld\r\n0\r\n\r\n");
    }

    /// A server whose first connection answers one request and then closes on reading the
    /// next, unanswered (the race of an idle keep-alive timeout); later connections answer all.
    async fn closes_on_the_second_request() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        scripted(|connection, request| match (connection, request) {
            (0, 1) => Act::Close,
            _ => Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        })
        .await
    }

    #[tokio::test]
    async fn a_get_on_a_pooled_connection_closed_unanswered_goes_again_on_a_new_one() {
        let (addr, accepted) = closes_on_the_second_request().await;
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, get()).await.unwrap();
        response.body.collect().await.unwrap();
        let response = pool.send(addr, get()).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_post_on_a_pooled_connection_closed_unanswered_is_not_sent_again() {
        let (addr, accepted) = closes_on_the_second_request().await;
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, get()).await.unwrap();
        response.body.collect().await.unwrap();
        let post = Request::builder()
            .method("POST")
            .uri("/")
            .header("host", "test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        match pool.send(addr, post).await {
            Err(SendError::Closed(_)) => {}
            other => panic!("expected Closed, got {:?}", other.map(|r| r.status)),
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_given_before_the_upload_ends_is_passed_on() {
        // The instance refuses the upload from its head alone, without reading the body.
        let (addr, _) = server_with(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!",
            false,
        )
        .await;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_of(rx));
        let req = Request::builder()
            .method("POST")
            .uri("/up")
            .header("host", "test")
            .body(body)
            .unwrap();
        // The client sends one piece and then nothing: the answer must not wait for the rest.
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part"))))
            .await
            .unwrap();
        let pool = Pool::new(Duration::from_secs(1));
        let response = tokio::time::timeout(Duration::from_secs(5), pool.send(addr, req))
            .await
            .expect("answered while the upload was still open")
            .unwrap();
        assert_eq!(response.status, 413);
        let body = response.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"big!");
        // Part of the body was never sent: that connection must not carry another request.
        assert_eq!(pool.idle(addr), 0);
        drop(tx);
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_answers_are_not_pooled() {
        for reply in [
            &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
            b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ] {
            let (addr, _) = server_with(reply, false).await;
            let pool = Pool::new(Duration::from_secs(1));
            let response = pool.send(addr, get()).await.unwrap();
            let body = response.body.collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            assert_eq!(pool.idle(addr), 0, "{}", String::from_utf8_lossy(reply));
        }
    }

    #[tokio::test]
    async fn a_body_delimited_by_close_is_read_to_the_end() {
        let (addr, _) = server_with(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true).await;
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, get()).await.unwrap();
        let body = response.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"until the end");
        assert_eq!(pool.idle(addr), 0);
    }

    fn tokio_stream_of<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
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
