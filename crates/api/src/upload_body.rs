//! An upload's body with a byte cap. Past the cap the body is read on and dropped (up to
//! [`DRAIN_MAX`] more bytes) before the stream fails: a client still sending then receives the
//! 413 answer, where closing at once would reset its connection and lose the answer.

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Most bytes read and dropped past the cap before the connection is given up on.
pub const DRAIN_MAX: u64 = 64 * 1024 * 1024;

/// The request with its body capped at `limit` bytes, and a flag that turns true once the
/// body went past it.
pub fn capped(req: Request, limit: u64) -> (Request, Arc<AtomicBool>) {
    let over = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let stream = Capped {
        inner: body.into_data_stream(),
        read: 0,
        limit,
        drained: 0,
        over: over.clone(),
        done: false,
    };
    (Request::from_parts(parts, Body::from_stream(stream)), over)
}

struct Capped {
    inner: BodyDataStream,
    read: u64,
    limit: u64,
    drained: u64,
    over: Arc<AtomicBool>,
    done: bool,
}

fn too_large() -> std::io::Error {
    std::io::Error::other("the upload is larger than the limit")
}

impl Stream for Capped {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let next = match this.inner.poll_next_unpin(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Poll::Pending,
            };
            let over = this.over.load(Ordering::Relaxed);
            match next {
                Some(Ok(chunk)) if over => {
                    this.drained += chunk.len() as u64;
                    if this.drained > DRAIN_MAX {
                        this.done = true;
                        return Poll::Ready(Some(Err(too_large())));
                    }
                }
                Some(Ok(chunk)) => {
                    this.read += chunk.len() as u64;
                    if this.read <= this.limit {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    this.over.store(true, Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                None => {
                    this.done = true;
                    return Poll::Ready(over.then(|| Err(too_large())));
                }
            }
        }
    }
}
