//! The client session of HTTP/1.1 towards instances: a request head and body written on a
//! pooled connection, the answer's head read back, and its body handed out to be read off the
//! same connection by whoever polls it ([`super::body::ResponseBody`]). Spoken in the request's
//! own task: nothing hops to another task or through a channel between the client's request
//! and the instance's answer (hyper's client needs a connection task, a request channel and a
//! body channel for the same exchange). The connections themselves are [`crate::pool`]'s.

use super::body::ResponseBody;
use super::chunked::{encode_chunk, LAST_CHUNK};
use super::framing::Framing;
use super::request::encode_request;
use super::response::{parse_head, BadResponse, Head};
use crate::body::BoxError;
use crate::message::Answer;
use crate::pool::{drained, Conn, ConnectError, Pool};
use bytes::{Bytes, BytesMut};
use http::Method;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Request body bytes gathered into one write when they are at hand already.
const COALESCE: usize = 64 * 1024;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The connect timeout passed before the instance accepted.
    ConnectTimeout,
    /// The deadline given to [`Pool::send_head`] passed before the response head came.
    Deadline,
    /// Nothing reached the instance: connecting failed.
    Connect(std::io::Error),
    /// Nothing reached the instance: what listens on its port is not the instance.
    PortTaken(valet_instances::PortConflict),
    /// The request was (maybe partly) written, and the connection failed or closed before a
    /// whole response head came back. `reused`: it was a pooled connection, which the instance
    /// may have closed for idleness just as it was taken (whether to send again is the
    /// proxy's decision, `crate::dispatch`: this session never sends a written request twice).
    Closed { error: std::io::Error, reused: bool },
    /// The client's request body failed: over the size limit, silent too long, bad framing.
    RequestBody(BoxError),
    /// The instance's answer cannot be passed on.
    BadResponse(BadResponse),
    /// The instance took no byte of the request's body for the stall time.
    Stalled,
}

/// How long a request waits for its answer's head ([`SendError::Deadline`] after that).
#[derive(Clone, Copy, Debug)]
pub enum Deadline {
    /// As long as it takes (tests).
    None,
    /// Until then, whatever the request's size: connecting and sending count against it.
    At(Instant),
    /// `answer` from when the client's body was read to its end: an upload may take longer to
    /// send than an answer may take to come, and a client that stalls mid-body is the body's
    /// idle timeout's to stop. An instance that takes no byte of the upload for `stall` ends
    /// it too ([`SendError::Stalled`]).
    AfterBody {
        answer: std::time::Duration,
        stall: std::time::Duration,
    },
}

impl Deadline {
    /// The fixed deadline, if there is one before the body is sent.
    pub(crate) fn fixed(self) -> Option<Instant> {
        match self {
            Deadline::At(at) => Some(at),
            _ => None,
        }
    }

    /// The deadline while the body goes up, and whether it is the instance's stall: the
    /// answer's deadline once the body's end has been read, or a write waiting `stall`.
    fn during_upload(self, upload: &Upload) -> Option<(Instant, bool)> {
        match self {
            Deadline::None => None,
            Deadline::At(at) => Some((at, false)),
            Deadline::AfterBody { answer, stall } => {
                let answer = upload.ended.get().map(|&at| (at + answer, false));
                let stall = upload.writing_since().map(|at| (at + stall, true));
                match (answer, stall) {
                    (Some(a), Some(s)) => Some(if s.0 < a.0 { s } else { a }),
                    (a, s) => a.or(s),
                }
            }
        }
    }

    /// The deadline once the body is sent (or its write failed), its end read at `ended`.
    fn after_body(self, ended: Option<Instant>) -> Option<Instant> {
        match self {
            Deadline::None => None,
            Deadline::At(at) => Some(at),
            Deadline::AfterBody { answer, .. } => Some(ended.unwrap_or_else(Instant::now) + answer),
        }
    }
}

impl From<ConnectError> for SendError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Timeout => SendError::ConnectTimeout,
            ConnectError::Deadline => SendError::Deadline,
            ConnectError::Io(e) => SendError::Connect(e),
            ConnectError::PortTaken(conflict) => SendError::PortTaken(conflict),
        }
    }
}

impl Pool {
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
        self.send_head(addr, &head, &parts.method, framing, body, Deadline::None)
            .await
    }

    /// Sends an encoded request head (see [`encode`]) and `body` to `addr`, waiting for the
    /// answer's head as long as `deadline` says.
    pub async fn send_head<B>(
        self: &Arc<Self>,
        addr: SocketAddr,
        head: &[u8],
        method: &Method,
        framing: Framing,
        body: B,
        deadline: Deadline,
    ) -> Result<Answer<ResponseBody>, SendError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut body = std::pin::pin!(body);
        loop {
            let (mut conn, reused) = match self.take(addr) {
                Some(conn) => (conn, true),
                None => (self.connect(addr, deadline.fixed()).await?, false),
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
                // A pooled connection found dead by the first write, before a byte of this
                // request left valet: the connection is replaced, as taking it would have done
                // had it died a moment sooner. Not a resend (nothing was sent), and only while
                // all of the request is still at hand: not when frames of the client's body went
                // into the failed write, which would leave the next try short of its length.
                Err(Failure::Unsent {
                    body_taken: false, ..
                }) if reused => continue,
                Err(Failure::Unsent { error, .. } | Failure::Closed(error)) => {
                    return Err(SendError::Closed { error, reused })
                }
                Err(Failure::RequestBody(e)) => return Err(SendError::RequestBody(e)),
                Err(Failure::Deadline) => return Err(SendError::Deadline),
                Err(Failure::BadResponse(e)) => return Err(SendError::BadResponse(e)),
                Err(Failure::Stalled) => return Err(SendError::Stalled),
            }
        }
    }
}

/// The request head as it goes on the wire (see [`encode_request`]), and how its body is
/// framed.
pub fn encode<B: http_body::Body>(
    method: &Method,
    target: &str,
    headers: &crate::fields::Fields,
    rewrite: Option<&crate::forward::Rewrite<'_>>,
    body: &B,
) -> (Bytes, Framing) {
    let mut head = BytesMut::new();
    let framing = encode_request(method, target, headers, rewrite, body, &mut head);
    (head.freeze(), framing)
}

enum Failure {
    /// Writing the head failed: the instance has none of this request. `body_taken`: frames
    /// of the client's body were in that write, and are gone with it.
    Unsent {
        error: std::io::Error,
        body_taken: bool,
    },
    Closed(std::io::Error),
    RequestBody(BoxError),
    BadResponse(BadResponse),
    Deadline,
    Stalled,
}

/// What the exchange's deadline needs to know of an upload on its way.
struct Upload {
    /// When the client's body was read to its end.
    ended: std::sync::OnceLock<Instant>,
    /// Since when a write to the instance has waited: nanoseconds after `base`, plus one; 0
    /// while none waits. (Atomic, not a `Cell`: the exchange's future must be `Send`.)
    writing: std::sync::atomic::AtomicU64,
    base: Instant,
}

impl Upload {
    fn new() -> Self {
        Self {
            ended: std::sync::OnceLock::new(),
            writing: std::sync::atomic::AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn write_begins(&self) {
        let since = self.base.elapsed().as_nanos() as u64 + 1;
        self.writing
            .store(since, std::sync::atomic::Ordering::Relaxed);
    }

    fn write_ends(&self) {
        self.writing.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn writing_since(&self) -> Option<Instant> {
        match self.writing.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + std::time::Duration::from_nanos(n - 1)),
        }
    }
}

/// Writes the request and reads the response head. The body goes up while the head is awaited,
/// so an instance that answers early (a 413 before reading an upload) is heard at once; the
/// connection is then not reused, since part of the body was never sent.
async fn exchange<B>(
    conn: &mut Conn,
    head: &[u8],
    body: &mut B,
    framing: Framing,
    method: &Method,
    deadline: Deadline,
) -> Result<(Head, bool), Failure>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let Conn {
        stream, buf, timer, ..
    } = conn;
    if framing == Framing::None {
        let answer = async {
            stream
                .write_all(head)
                .await
                .map_err(|error| Failure::Unsent {
                    error,
                    body_taken: false,
                })?;
            let (head, keep_alive, short) = read_head(stream, buf, method).await?;
            if short {
                drained(stream);
            }
            Ok((head, keep_alive))
        };
        return match deadline.after_body(None) {
            None => answer.await,
            Some(at) => tokio::select! {
                biased;
                answer = answer => answer,
                () = timer.reached(at) => Err(Failure::Deadline),
            },
        };
    }
    let (mut reader, mut writer) = stream.split();
    // When the client's body was read to its end (an `AfterBody` deadline runs from then, and
    // so bounds the last write too), and since when a write has waited for the instance.
    let progress = Upload::new();
    let upload = send_body(&mut writer, head, body, framing, &progress);
    let answer = read_head(&mut reader, buf, method);
    tokio::pin!(upload, answer);
    // Biased, the deadline last: it is looked at in the same turn as the upload that set
    // `ended`.
    let early = tokio::select! {
        biased;
        sent = &mut upload => match sent {
            Ok(()) => None,
            Err(Failure::Unsent { error: e, .. } | Failure::Closed(e)) => Some(e),
            Err(other) => return Err(other),
        },
        head = &mut answer => {
            let (head, _, _) = head?;
            // Answered before the whole body went up: the connection carries no more requests.
            return Ok((head, false));
        }
        stalled = std::future::poll_fn(|cx| match deadline.during_upload(&progress) {
            Some((at, stalled)) => timer.poll_reached(cx, at).map(|()| stalled),
            None => std::task::Poll::Pending,
        }) => return Err(if stalled { Failure::Stalled } else { Failure::Deadline }),
    };
    // The body is sent (or its write failed): from now on the answer has its deadline.
    let answer = match deadline.after_body(progress.ended.get().copied()) {
        None => answer.await,
        Some(at) => tokio::select! {
            biased;
            answer = &mut answer => answer,
            () = timer.reached(at) => return Err(Failure::Deadline),
        },
    };
    match (answer, early) {
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
    framing: Framing,
    progress: &Upload,
) -> Result<(), Failure>
where
    W: tokio::io::AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut out = BytesMut::with_capacity(head.len() + 1024);
    out.extend_from_slice(head);
    let mut unsent = true;
    // Whether a frame of the body has been taken into `out` (see `Failure::Unsent`).
    let mut taken = false;
    loop {
        // Gather what is ready without waiting; wait only with nothing to write.
        let frame = if out.is_empty() {
            body.frame().await
        } else {
            match futures_util::FutureExt::now_or_never(body.frame()) {
                Some(frame) if out.len() < COALESCE => frame,
                Some(frame) => {
                    // The body's end, read before a write that may block: the clock starts.
                    if frame.is_none() || body.is_end_stream() {
                        let _ = progress.ended.set(Instant::now());
                    }
                    flush(writer, &mut out, &mut unsent, taken, progress).await?;
                    frame
                }
                None => {
                    flush(writer, &mut out, &mut unsent, taken, progress).await?;
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
                    taken = true;
                    match framing {
                        Framing::Chunked => encode_chunk(&data, &mut out),
                        _ => out.extend_from_slice(&data),
                    }
                }
            }
        }
    }
    // Read to its end (the first time it was seen to end counts, if that was earlier).
    let _ = progress.ended.set(Instant::now());
    if framing == Framing::Chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    flush(writer, &mut out, &mut unsent, taken, progress).await
}

async fn flush<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut BytesMut,
    unsent: &mut bool,
    body_taken: bool,
    progress: &Upload,
) -> Result<(), Failure> {
    if out.is_empty() {
        return Ok(());
    }
    // Write by write, so that the exchange sees how long the instance has taken nothing.
    let mut result = Ok(());
    while !out.is_empty() {
        progress.write_begins();
        let written = writer.write(out).await;
        progress.write_ends();
        match written {
            Ok(0) => {
                result = Err(std::io::ErrorKind::WriteZero.into());
                break;
            }
            Ok(n) => bytes::Buf::advance(out, n),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    out.clear();
    match result {
        Ok(()) => {
            *unsent = false;
            Ok(())
        }
        Err(error) if *unsent => Err(Failure::Unsent { error, body_taken }),
        Err(e) => Err(Failure::Closed(e)),
    }
}

/// Reads until a whole response head is buffered and parses it.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<(Head, bool, bool), Failure> {
    // Whether the last read took less than it had room for (see [`drained`]).
    let mut short = false;
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse_head(buf, method).map_err(Failure::BadResponse)? {
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

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
