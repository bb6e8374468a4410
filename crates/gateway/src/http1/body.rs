//! The instance's response body on its HTTP/1.1 connection ([`ResponseBody`]), read off the
//! socket by whoever polls it, which is the client connection's task.

use super::chunked::{decode_chunk, Chunk};
use super::response::{BadResponse, BodyFraming};
use crate::body::BoxError;
use crate::pool::{drained, Conn};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// A body that was read whole with the head, not yet handed out.
    Whole,
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// The instance's response body, read off its connection as it is polled. At its end the
/// connection goes back to its pool (if the instance keeps it open and sent nothing extra);
/// dropped before its end, the connection closes, since the rest of the body would be in the
/// way of the next answer.
pub struct ResponseBody {
    conn: Option<Conn>,
    reading: Reading,
    whole: Option<Bytes>,
    keep_alive: bool,
    /// A failure held back for one turn, see [`ResponseBody::fail`].
    failed: Option<BoxError>,
}

impl ResponseBody {
    /// The body that follows `head` on `conn`, whose buffer holds what was read past the head.
    pub fn new(mut conn: Conn, framing: BodyFraming, keep_alive: bool) -> Self {
        let reading = match framing {
            BodyFraming::Empty => Reading::Done,
            BodyFraming::Length(n) if conn.buf.len() as u64 >= n => {
                // The usual small answer: it arrived with its head, and the connection can go
                // back to the pool before the client has even been sent the head.
                let whole = conn.buf.split_to(n as usize).freeze();
                let mut body = Self {
                    conn: Some(conn),
                    reading: Reading::Whole,
                    whole: Some(whole),
                    keep_alive,
                    failed: None,
                };
                body.release();
                return body;
            }
            BodyFraming::Length(n) => Reading::Length(n),
            BodyFraming::Chunked => Reading::Chunked(Chunk::Size),
            BodyFraming::Close => Reading::Close,
        };
        let mut body = Self {
            conn: Some(conn),
            reading,
            whole: None,
            keep_alive,
            failed: None,
        };
        if reading == Reading::Done {
            body.release();
        }
        body
    }

    /// The body has been read to its end: the connection may carry the next request.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() {
                conn.release();
            }
        }
    }

    /// Ends the body with `error`, one turn later: the server writing to the client drops
    /// what it has not flushed when a body fails, and the bytes that came before the failure
    /// (often in the same read as the close) must reach the client first. Returning pending
    /// with a wake-up lets the server flush them.
    fn fail(
        &mut self,
        error: BoxError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.reading = Reading::Done;
        self.failed = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads more of the socket into the connection's buffer: `Ok(false)` at its end.
    fn read_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let conn = self.conn.as_mut().expect("reading with a connection");
        conn.buf.reserve(READ_SIZE);
        let room = conn.buf.capacity() - conn.buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut conn.stream),
            cx,
            &mut conn.buf
        ))?;
        if n > 0 && n < room {
            drained(&conn.stream);
        }
        Poll::Ready(Ok(n > 0))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        loop {
            let buffered = this.conn.as_ref().map_or(0, |c| c.buf.len());
            match this.reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Whole => {
                    this.reading = Reading::Done;
                    return Poll::Ready(this.whole.take().map(|b| Ok(Frame::data(b))));
                }
                Reading::Length(left) if buffered > 0 => {
                    let n = (buffered as u64).min(left);
                    let conn = this.conn.as_mut().expect("buffered");
                    let data = conn.buf.split_to(n as usize).freeze();
                    this.reading = Reading::Length(left - n);
                    if left == n {
                        this.reading = Reading::Done;
                        this.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Reading::Close if buffered > 0 => {
                    let conn = this.conn.as_mut().expect("buffered");
                    return Poll::Ready(Some(Ok(Frame::data(conn.buf.split().freeze()))));
                }
                Reading::Chunked(state) => {
                    let conn = this.conn.as_mut().expect("chunked body has its connection");
                    match decode_chunk(&mut conn.buf, state) {
                        Err(e) => return this.fail(Box::new(e), cx),
                        Ok((next, data)) => {
                            this.reading = Reading::Chunked(next);
                            if next == Chunk::Trailers(usize::MAX) {
                                this.reading = Reading::Done;
                                this.release();
                                return Poll::Ready(None);
                            }
                            if let Some(data) = data {
                                return Poll::Ready(Some(Ok(Frame::data(data))));
                            }
                            if next != state {
                                continue;
                            }
                        }
                    }
                }
                Reading::Length(_) | Reading::Close => {}
            }
            // Nothing buffered that makes progress: read.
            match ready!(this.read_more(cx)) {
                Ok(true) => {}
                Ok(false) if this.reading == Reading::Close => {
                    this.reading = Reading::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(false) => return this.fail(Box::new(BadResponse::Truncated), cx),
                Err(e) => return this.fail(Box::new(e), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reading == Reading::Done && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Done => SizeHint::with_exact(0),
            Reading::Whole => {
                SizeHint::with_exact(self.whole.as_ref().map_or(0, |b| b.len()) as u64)
            }
            Reading::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
