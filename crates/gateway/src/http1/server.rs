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

use super::chunked::{encode_chunk, LAST_CHUNK};
use super::framing::Framing;
use super::request::{build, parse, Parse};
use super::response::{encode_head, AnswerHead};
use crate::body::{Body, RequestBody};
use crate::error::GatewayError;
use crate::forward::Peer;
use crate::handler::handle;
use crate::message::{Answer, ClientRequest};
use crate::pool::drained;
use crate::timer::LazyTimer;
use crate::worker::Worker;
use bytes::{BufMut, BytesMut};
use http::{Method, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_util::server::graceful::Watcher;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::AsyncWriteExt;
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
                    drained(&self.stream);
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
        let to_write = AnswerHead {
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
                    Framing::Chunked => encode_chunk(&data, &mut self.out),
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
