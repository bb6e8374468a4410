//! Client-facing HTTP/1.1 for the common request, served in the connection's own task: the head
//! is parsed with `httparse` straight off the socket's buffer (header values are slices of it),
//! the request goes to [`handle`] in the same task, and the answer is written back with its head
//! and a body that is already there in one `send`. hyper's server runs a dispatcher state
//! machine, a service call and separate buffers around the same work; on the warm hop its share
//! was the largest part of valet's own CPU time per request.
//!
//! Only what this module fully understands is served here: HTTP/1.1 requests in origin form,
//! without `Transfer-Encoding`, `Expect` or `Upgrade`, with at most one plain `Content-Length`
//! of at most [`MAX_BUFFERED_BODY`] (read whole before the request is passed on). Anything else,
//! including every malformed head, an HTTP/2 preface and HTTP/1.0, hands the connection with
//! the bytes read so far to hyper, which answers it as it always did (400, 431, upgrades,
//! chunked uploads, `100 Continue`, h2) for the rest of the connection's life.

use crate::body::{Body, RequestBody};
use crate::error::GatewayError;
use crate::fields::{is_named, Answer, ClientRequest, Fields, Span};
use crate::forward::{self, Peer};
use crate::h1::{self, parse_length, LAST_CHUNK};
use crate::handler::handle;
use crate::server::Worker;
use crate::timer::LazyTimer;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_util::server::graceful::Watcher;
use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Instant;

/// Largest request body read whole before the request is passed on; a larger one streams
/// through hyper. Small bodies (JSON calls) are the common case, and reading them first costs
/// no more memory than the socket buffer that holds them anyway.
pub const MAX_BUFFERED_BODY: u64 = 64 * 1024;
/// A head still incomplete at this size goes to hyper, which allows up to the gateway's head
/// limit and answers 431 beyond it.
const MAX_FAST_HEAD: usize = 16 * 1024;
/// Most header fields served here; more go to hyper (which allows 100).
const MAX_HEADERS: usize = 64;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 8 * 1024;
/// Response bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;

/// Serves one plain-TCP connection until the client closes it, it idles out, valet shuts down,
/// or it goes to hyper.
pub async fn serve(stream: TcpStream, peer: Peer, worker: Arc<Worker>, watcher: Watcher) {
    let mut conn = Connection {
        stream,
        buf: BytesMut::new(),
        out: BytesMut::new(),
        stop: Box::pin(worker.stop.clone().notified_owned()),
        timer: LazyTimer::new(Instant::now() + worker.config.header_read),
    };
    loop {
        let next = conn.read_request(&worker).await;
        let (req, close) = match next {
            Next::Request(req, close) => (req, close),
            Next::Answer(response) => {
                let _ = conn.respond(response.into(), &Method::GET, true).await;
                return;
            }
            Next::Close => return,
            Next::Hyper => return worker.hand_over(conn.stream, conn.buf, peer, watcher).await,
        };
        let method = req.method.clone();
        // Pinned here, where it is made: passed by value, the handler's future (2.5 KB) would
        // be copied twice more on every request.
        let handled = std::pin::pin!(handle(&worker.config.state, &worker.upstream, &peer, req));
        let Some(response) = conn.while_open(handled).await else {
            // The client left before its answer: dropping the handler cancels the exchange
            // (the instance sees its connection close) and gives back the instance's lease.
            return;
        };
        let close = close || worker.stopping();
        match conn.respond(response, &method, close).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// What the connection does next.
enum Next {
    Request(ClientRequest, bool),
    /// An answer of valet's own (a stalled body), after which the connection closes.
    Answer(Response<Body>),
    Close,
    Hyper,
}

struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed; empty (and unallocated) on an idle connection.
    buf: BytesMut,
    out: BytesMut,
    /// Resolves when the worker stops. One per connection, registered once: a new wait per
    /// request would take a lock every time.
    stop: Pin<Box<OwnedNotified>>,
    /// Ends waits for bytes: one per connection, moved lazily.
    timer: LazyTimer,
}

/// A head this module serves, as offsets into the buffer (taken while the parse borrows it).
struct Parsed {
    len: usize,
    method: Method,
    target: (usize, usize),
    fields: Vec<Span>,
    content_length: u64,
    close: bool,
}

impl Connection {
    async fn read_request(&mut self, worker: &Worker) -> Next {
        // `header_read` bounds both the wait for a request on an idle connection and the time a
        // head may take to arrive.
        let deadline = Instant::now() + worker.config.header_read;
        if worker.stopping() {
            return Next::Close;
        }
        // Bytes already looked at: a head that arrives in pieces is parsed again only when a
        // piece brings a line end, or a client trickling bytes could make every byte cost a
        // parse of all before it.
        let mut seen = 0;
        let mut parsed = loop {
            let fresh = &self.buf[seen..];
            if !fresh.is_empty() && (seen == 0 || fresh.contains(&b'\n')) {
                match parse(&self.buf) {
                    Parse::Complete(parsed) => break parsed,
                    Parse::Partial => {}
                    Parse::Other => return Next::Hyper,
                }
            }
            if self.buf.len() >= MAX_FAST_HEAD {
                return Next::Hyper;
            }
            seen = self.buf.len();
            match self.fill(deadline, self.buf.is_empty()).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return Next::Close,
            }
        };
        let upstream = &worker.upstream;
        if parsed.content_length > MAX_BUFFERED_BODY
            || (upstream.max_body > 0 && parsed.content_length > upstream.max_body)
        {
            return Next::Hyper;
        }
        let head = self.buf.split_to(parsed.len).freeze();
        let Some(mut req) = build(&head, &mut parsed) else {
            // Not what hyper would accept either (a target or header value `http` refuses).
            let error = GatewayError::BadRequest {
                code: "bad_request",
                message: "the request head is malformed".into(),
            };
            return Next::Answer(error.into_response());
        };
        if parsed.content_length > 0 {
            let want = parsed.content_length as usize;
            while self.buf.len() < want {
                // Like a streamed body's, each read may take up to the upstream idle timeout.
                let deadline = Instant::now() + upstream.idle;
                match self.fill(deadline, false).await {
                    Ok(true) => {}
                    Err(Stalled) => {
                        let idle = upstream.idle;
                        return Next::Answer(GatewayError::RequestTimeout { idle }.into_response());
                    }
                    Ok(false) => return Next::Close,
                }
            }
            req.body = RequestBody::Buffered(Some(self.buf.split_to(want).freeze()));
        }
        Next::Request(req, parsed.close)
    }

    /// Runs `work` (a request's handling) while watching the client: `None` if the client
    /// closes its connection first, or the connection fails. A long poll or a slow instance
    /// would otherwise hold the instance's connection, and a turn under
    /// `max_concurrent_requests`, for a client that is gone. Bytes that arrive meanwhile (the
    /// next request of a pipelining client) are kept for later, up to a bound; past it the
    /// client is no longer watched.
    async fn while_open<F: std::future::Future>(
        &mut self,
        mut work: Pin<&mut F>,
    ) -> Option<F::Output> {
        loop {
            if self.buf.len() >= MAX_FAST_HEAD + MAX_BUFFERED_BODY as usize {
                return Some(work.await);
            }
            // The socket's one reader slot, not `readable()`: that one adds and removes a
            // waiter in a locked list per wait, a cost every request would pay.
            let stream = &self.stream;
            let ready = std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
                Poll::Ready(out) => Poll::Ready(Ok(out)),
                Poll::Pending => stream.poll_read_ready(cx).map(Err),
            })
            .await;
            match ready {
                Ok(out) => return Some(out),
                Err(ready) => ready.ok()?,
            }
            self.read_ready()?;
        }
    }

    /// Reads what the socket holds once it turned readable. `Some(true)`: bytes were added to
    /// `buf`; `Some(false)`: none after all (the readiness was stale); `None`: the client closed
    /// or the read failed.
    fn read_ready(&mut self) -> Option<bool> {
        // The buffer is allocated only once there is something to read: an idle keep-alive
        // connection holds none.
        self.buf.reserve(READ_SIZE);
        let room = self.buf.capacity() - self.buf.len();
        match self.stream.try_read_buf(&mut self.buf) {
            Ok(0) => None,
            Ok(n) => {
                if n < room {
                    crate::pool::drained(&self.stream);
                }
                Some(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(false),
            Err(_) => None,
        }
    }

    /// Reads more bytes. `Ok(false)`: the client closed, the read failed, or (when `idle`, with
    /// nothing of a request read) valet shuts down or the wait ran out.
    async fn fill(&mut self, deadline: Instant, idle: bool) -> Result<bool, Stalled> {
        loop {
            let ready = tokio::select! {
                biased;
                ready = self.stream.readable() => ready,
                () = self.timer.reached(deadline) => {
                    return if idle { Ok(false) } else { Err(Stalled) };
                }
                _ = &mut self.stop, if idle => return Ok(false),
            };
            if ready.is_err() {
                return Ok(false);
            }
            match self.read_ready() {
                Some(true) => return Ok(true),
                Some(false) => continue,
                None => return Ok(false),
            }
        }
    }

    /// Writes what is gathered in `out`.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Writes the answer. `Ok(true)`: the connection may carry another request.
    async fn respond(&mut self, answer: Answer, method: &Method, close: bool) -> io::Result<bool> {
        let Answer {
            status,
            fields,
            request_id,
            mut body,
        } = answer;
        let out = &mut self.out;
        out.clear();
        let hint = body.size_hint().exact();
        let to_write = Head {
            status,
            fields: &fields,
            request_id: request_id.as_ref(),
            hint,
        };
        let (framing, close) = encode_head(&to_write, method, close, out);
        drop((fields, request_id));
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        if framing != Framing::None {
            loop {
                // A frame that is there already goes out with what precedes it; before waiting
                // for one, what is gathered is written (an event stream's event goes at once).
                let frame = match std::future::poll_fn(|cx| {
                    Poll::Ready(Pin::new(&mut body).poll_frame(cx))
                })
                .await
                {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        self.flush().await?;
                        body.frame().await
                    }
                };
                let data = match frame {
                    None => break,
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue, // trailers: not passed on over HTTP/1.1 here
                    },
                    Some(Err(e)) => {
                        // The answer cannot be finished: what was gathered goes out and the
                        // connection closes, so the client sees a truncated answer, never a
                        // wrong one.
                        tracing::debug!(error = %e, "response body failed; closing the connection");
                        let _ = self.stream.write_all(&self.out).await;
                        return Ok(false);
                    }
                };
                if data.is_empty() {
                    continue;
                }
                match framing {
                    Framing::Length(_) => {
                        if data.len() as u64 > left {
                            tracing::debug!("response body longer than its length; closing");
                            return Ok(false);
                        }
                        left -= data.len() as u64;
                        if data.len() >= WRITE_BATCH / 4 {
                            // Large pieces go as they are, not through a copy.
                            self.flush().await?;
                            self.stream.write_all(&data).await?;
                            continue;
                        }
                        self.out.put_slice(&data);
                    }
                    Framing::Chunked => h1::encode_chunk(&data, &mut self.out),
                    Framing::None => {}
                }
                if self.out.len() >= WRITE_BATCH {
                    self.flush().await?;
                }
            }
        }
        if framing == Framing::Chunked {
            self.out.put_slice(LAST_CHUNK);
        }
        self.flush().await?;
        if left > 0 {
            tracing::debug!(left, "response body shorter than its length; closing");
            return Ok(false);
        }
        if self.out.capacity() > WRITE_BATCH * 2 {
            self.out = BytesMut::new();
        }
        if close {
            let _ = self.stream.shutdown().await;
            return Ok(false);
        }
        Ok(true)
    }
}

/// The client stopped sending mid-body for longer than the idle timeout.
struct Stalled;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

enum Parse {
    Complete(Parsed),
    Partial,
    /// Valid or not, not for this module: hyper takes the connection.
    Other,
}

fn parse(buf: &[u8]) -> Parse {
    if buf.starts_with(b"PRI ") {
        return Parse::Other; // an HTTP/2 preface
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Other,
    };
    if req.version != Some(1) {
        return Parse::Other;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parse::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parse::Other;
    };
    if method == Method::CONNECT || !path.starts_with('/') {
        return Parse::Other;
    }
    let base = buf.as_ptr() as usize;
    // A head is at most MAX_FAST_HEAD bytes, so offsets fit in u32.
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let mut fields = Vec::with_capacity(req.headers.len());
    let mut content_length = None;
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match (content_length, parse_length(h.value)) {
                (None, Some(n)) => content_length = Some(n),
                _ => return Parse::Other,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parse::Other;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h1::list(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parse::Other;
                }
            }
        }
        fields.push(Span {
            name: (offset(name), name.len() as u32),
            value: (offset(h.value), h.value.len() as u32),
        });
    }
    Parse::Complete(Parsed {
        len,
        method,
        target: (offset(path.as_bytes()) as usize, path.len()),
        fields,
        content_length: content_length.unwrap_or(0),
        close,
    })
}

/// What [`read_head`] made of a buffer.
#[doc(hidden)]
pub enum HeadRead {
    /// More bytes are needed.
    Partial,
    /// Not served here: hyper takes the connection (and answers a malformed head 400).
    Hyper,
    /// Served here with valet's own 400 (a target or field value `http` refuses).
    Refused,
    /// Served here: the request, the head's length, the body's length and whether the
    /// connection closes after the answer.
    Served(Box<ClientRequest>, usize, u64, bool),
}

/// The request-head parser as `Connection::read_request` runs it (`parse`, then `build`),
/// without a socket: the fuzz targets in crates/fuzzing drive it with arbitrary bytes.
#[doc(hidden)]
pub fn read_head(buf: &[u8]) -> HeadRead {
    let mut parsed = match parse(buf) {
        Parse::Complete(parsed) => parsed,
        Parse::Partial => return HeadRead::Partial,
        Parse::Other => return HeadRead::Hyper,
    };
    let head = Bytes::copy_from_slice(&buf[..parsed.len]);
    match build(&head, &mut parsed) {
        Some(req) => HeadRead::Served(
            Box::new(req),
            parsed.len,
            parsed.content_length,
            parsed.close,
        ),
        None => HeadRead::Refused,
    }
}

/// The request, its fields as spans of the head's bytes (see [`Fields`]). `None`: a target or
/// field value that `http` would refuse.
fn build(head: &Bytes, parsed: &mut Parsed) -> Option<ClientRequest> {
    let (start, len) = parsed.target;
    let uri = Uri::from_maybe_shared(head.slice(start..start + len)).ok()?;
    // httparse has checked the fields as `http` would: names are tokens, values hold no
    // control character but tab (a test below holds it to that).
    Some(ClientRequest {
        method: parsed.method.clone(),
        uri,
        version: Version::HTTP_11,
        fields: Fields::Spans {
            head: head.clone(),
            spans: std::mem::take(&mut parsed.fields),
        },
        extensions: http::Extensions::new(),
        body: RequestBody::Buffered(None),
    })
}

/// What the head of an answer is written from.
struct Head<'a> {
    status: StatusCode,
    fields: &'a Fields,
    request_id: Option<&'a HeaderValue>,
    /// The body's exact size, if known.
    hint: Option<u64>,
}

/// Writes the response head in one pass over its fields. Hop-by-hop fields and those a
/// `Connection` names describe the instance's connection and are dropped; the framing fields
/// (`Connection`, `Transfer-Encoding`, `Content-Length`) are valet's to write for this one. The
/// answer's framing is its one valid `Content-Length`, else the body's exact size, else
/// chunked; none for a bodiless answer. Returns the framing and whether the connection closes
/// after this answer (asked by the caller or by a `Connection: close`).
fn encode_head(
    head: &Head<'_>,
    method: &Method,
    mut close: bool,
    out: &mut BytesMut,
) -> (Framing, bool) {
    let Head {
        status,
        fields,
        request_id,
        hint,
    } = *head;
    out.reserve(fields.wire_len() + 128);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    let (mut lengths, mut declared, mut date) = (0, None, false);
    let [content_length, request_id_name, date_name] = [
        &header::CONTENT_LENGTH,
        &forward::X_REQUEST_ID,
        &header::DATE,
    ]
    .map(|name| name.as_str().as_bytes());
    // Almost no answer names fields in `Connection`: the check per field runs only when one
    // does.
    let mut connection = false;
    for value in fields.get_all(&header::CONNECTION) {
        connection = true;
        close |= h1::list(value).any(|t| t.eq_ignore_ascii_case(b"close"));
    }
    for (name, value) in fields.iter() {
        // The hop-by-hop rule first, as for answers in a header map: a `Content-Length` the
        // instance's `Connection` names goes too, and the answer is framed without it.
        if forward::drops_on_the_way(fields.iter(), name, connection)
            || (request_id.is_some() && is_named(name, request_id_name))
        {
            continue;
        } else if is_named(name, content_length) {
            lengths += 1;
            declared = parse_length(value.trim_ascii());
        } else {
            date |= is_named(name, date_name);
            h1::put_field(name, value, out);
        }
    }
    if let Some(id) = request_id {
        h1::put_field(
            forward::X_REQUEST_ID.as_str().as_bytes(),
            id.as_bytes(),
            out,
        );
    }
    let declared = declared.filter(|_| lengths == 1);
    let bodiless = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let (framing, length) = if bodiless {
        // A HEAD answer says the length a GET would have; a 204 says none.
        let length = match declared {
            _ if status == StatusCode::NO_CONTENT => None,
            Some(n) => Some(n),
            None if method == Method::HEAD => hint.filter(|&n| n > 0),
            None => None,
        };
        (Framing::None, length)
    } else if let Some(n) = declared.or(hint) {
        (Framing::Length(n), Some(n))
    } else {
        (Framing::Chunked, None)
    };
    if let Some(n) = length {
        let mut digits = [0u8; 20];
        h1::put_field(b"content-length", decimal(n, &mut digits), out);
    }
    if !date {
        out.put_slice(b"date: ");
        put_date(out);
        out.put_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    (framing, close)
}

/// The head `encode_head` writes to the client for an answer with these fields, for the fuzz
/// targets in crates/fuzzing: the body's length if it is framed by one (`None`: chunked or no
/// body), and whether the connection closes after it.
#[doc(hidden)]
pub fn write_answer_head(
    status: StatusCode,
    fields: &Fields,
    method: &Method,
    hint: Option<u64>,
    out: &mut BytesMut,
) -> (Option<u64>, bool) {
    let head = Head {
        status,
        fields,
        request_id: None,
        hint,
    };
    let (framing, close) = encode_head(&head, method, false, out);
    let length = match framing {
        Framing::Length(n) => Some(n),
        Framing::None | Framing::Chunked => None,
    };
    (length, close)
}

/// `n` in decimal digits, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

thread_local! {
    /// The `Date` value of the current second, formatted once per second per worker.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn put_date(out: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second || date.1.is_empty() {
            *date = (second, httpdate::fmt_http_date(now));
        }
        out.put_slice(date.1.as_bytes());
    });
}

/// A connection handed to hyper, with the bytes already read from it put back in front.
pub struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    pub fn new(inner: TcpStream, prefix: Bytes) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};

    fn complete(raw: &str) -> Parsed {
        match parse(raw.as_bytes()) {
            Parse::Complete(parsed) => parsed,
            Parse::Partial => panic!("partial: {raw:?}"),
            Parse::Other => panic!("other: {raw:?}"),
        }
    }

    fn other(raw: &str) -> bool {
        matches!(parse(raw.as_bytes()), Parse::Other)
    }

    #[test]
    fn plain_requests_are_served_here_with_their_headers_as_slices() {
        let raw = "GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nX-One: 1\r\nX-One: 2\r\n\r\nNEXT";
        let mut parsed = complete(raw);
        assert_eq!(parsed.len, raw.len() - 4);
        assert!(!parsed.close);
        let head = Bytes::copy_from_slice(raw.as_bytes());
        let req = build(&head, &mut parsed).unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.uri.path(), "/a/b");
        assert_eq!(req.uri.query(), Some("c=d"));
        let one = HeaderName::from_static("x-one");
        let ones: Vec<_> = req.fields.get_all(&one).collect();
        assert_eq!(ones, [b"1", b"2"]);
        assert!(req.body.is_end_stream());
        // Field values are not checked again here: what `http` refuses in a value, httparse
        // refuses too, and such a head goes to hyper, which answers 400.
        for bad in [0u8, 1, 0x1f, 0x7f] {
            let raw = format!("GET / HTTP/1.1\r\nX-Bad: a{}b\r\n\r\n", bad as char);
            assert!(HeaderValue::from_bytes(&[b'a', bad]).is_err());
            assert!(other(&raw), "{raw:?}");
        }
        // ... and what it takes (obs-text, a tab inside), `http` takes as well.
        let raw = "GET / HTTP/1.1\r\nX-Fine: caf\u{e9}\t!\r\n\r\n";
        let mut parsed = complete(raw);
        let req = build(&Bytes::copy_from_slice(raw.as_bytes()), &mut parsed).unwrap();
        let fine = req.fields.value(&HeaderName::from_static("x-fine"));
        assert_eq!(fine.unwrap().as_bytes(), "caf\u{e9}\t!".as_bytes());
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parse::Partial
        ));
        assert!(matches!(parse(b"GE"), Parse::Partial));
    }

    #[test]
    fn framing_upgrades_and_odd_versions_go_to_hyper() {
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "G@T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(other(raw), "{raw:?}");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert!(other(&format!("GET / HTTP/1.1\r\n{many}\r\n")));
    }

    #[test]
    fn a_length_and_a_close_are_read() {
        let parsed = complete(
            "POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: keep-alive, Close\r\n\r\n",
        );
        assert_eq!(parsed.content_length, 12);
        assert!(parsed.close);
    }

    /// The head written for an answer with these fields (as an instance's, spans of its
    /// head), and what it decided.
    fn head(
        status: u16,
        fields: &[(&str, &str)],
        method: Method,
        hint: Option<u64>,
    ) -> (String, Framing, bool) {
        let raw: String = fields
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let fields = crate::fields::tests::spans(&raw);
        let head = Head {
            status: StatusCode::from_u16(status).unwrap(),
            fields: &fields,
            request_id: None,
            hint,
        };
        let mut out = BytesMut::new();
        let (framing, close) = encode_head(&head, &method, false, &mut out);
        (String::from_utf8(out.to_vec()).unwrap(), framing, close)
    }

    #[test]
    fn an_instances_connection_fields_stay_behind_and_the_request_id_is_valets() {
        let raw = "X-Request-Id: theirs\r\nKeep-Alive: timeout=5\r\nConnection: X-Hop\r\nX-Hop: 1\r\nUpgrade: h2c\r\nX-Kept: 1\r\nDate: today\r\n";
        let fields = crate::fields::tests::spans(raw);
        let id = HeaderValue::from_static("ours");
        let head = Head {
            status: StatusCode::OK,
            fields: &fields,
            request_id: Some(&id),
            hint: Some(0),
        };
        let mut out = BytesMut::new();
        let (framing, close) = encode_head(&head, &Method::GET, false, &mut out);
        assert_eq!((framing, close), (Framing::Length(0), false));
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "HTTP/1.1 200 OK\r\nX-Kept: 1\r\nDate: today\r\nx-request-id: ours\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn the_head_says_date_framing_and_close() {
        let (text, framing, close) = head(
            200,
            &[
                ("x-a", "b"),
                ("connection", "close"),
                ("transfer-encoding", "gzip"),
            ],
            Method::GET,
            None,
        );
        assert_eq!((framing, close), (Framing::Chunked, true));
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nx-a: b\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with("GMT\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        let (text, framing, close) = head(599, &[], Method::GET, Some(0));
        assert_eq!((framing, close), (Framing::Length(0), false));
        assert!(text.starts_with("HTTP/1.1 599 \r\ncontent-length: 0\r\ndate: "));
        let (text, _, _) = head(200, &[("date", "yesterday")], Method::GET, Some(3));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: yesterday\r\ncontent-length: 3\r\n\r\n"
        );
    }

    #[test]
    fn a_response_length_counts_only_when_it_is_one_valid_number() {
        let length = |fields: &[(&str, &str)], method, hint| {
            let (text, framing, _) = head(200, fields, method, hint);
            let lines: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("content-length"))
                .map(str::to_string)
                .collect();
            (framing, lines)
        };
        let one = |n: &str| vec![format!("content-length: {n}")];
        assert_eq!(
            length(&[("content-length", "42")], Method::GET, Some(1)),
            (Framing::Length(42), one("42"))
        );
        // Two lengths, or one that is not a number, count for nothing: the body's own size
        // frames the answer, else it is chunked.
        let two = [("content-length", "42"), ("content-length", "42")];
        assert_eq!(
            length(&two, Method::GET, Some(7)),
            (Framing::Length(7), one("7"))
        );
        assert_eq!(
            length(&[("content-length", "4x")], Method::GET, None),
            (Framing::Chunked, vec![])
        );
        // Bodiless: a HEAD answer keeps the length a GET would have.
        assert_eq!(
            length(&[("content-length", "42")], Method::HEAD, Some(0)),
            (Framing::None, one("42"))
        );
        assert_eq!(
            length(&[], Method::HEAD, Some(9)),
            (Framing::None, one("9"))
        );
    }
}
