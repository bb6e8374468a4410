//! Bodies on their way through: the instance's response to the client ([`LeasedBody`]: it holds
//! the instance lease, so an unfinished stream (SSE, a large download) counts as activity, and it
//! ends the stream when the instance stays silent longer than the idle timeout), and the
//! client's request body to the instance ([`SentBody`]).

use crate::body::BoxError;
use crate::timer::IdleClock;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use valet_instances::Lease;

pin_project! {
    /// A body that keeps a lease alive and times out on silence.
    pub struct LeasedBody<B> {
        #[pin]
        inner: B,
        idle: IdleClock,
        idle_timeout: Duration,
        lease: Option<Lease>,
    }
}

impl<B> LeasedBody<B> {
    pub fn new(inner: B, lease: Lease, idle_timeout: Duration) -> Self {
        Self {
            inner,
            idle: IdleClock::default(),
            idle_timeout,
            lease: Some(lease),
        }
    }
}

/// The instance went quiet for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream body idle for longer than {0:?}")]
pub struct IdleTimeout(Duration);

impl<B> Body for LeasedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.frame();
                match (&frame, this.lease.as_ref()) {
                    (Some(Ok(f)), Some(lease)) => {
                        // One relaxed add on this thread's shard per frame.
                        let bytes = f.data_ref().map_or(0, |d| d.len() as u64);
                        lease.instance().class.stats.response_bytes.add(bytes);
                    }
                    (None, _) => drop(this.lease.take()),
                    _ => {}
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.idle.poll_idle(cx, *this.idle_timeout) {
                Poll::Ready(()) => {
                    this.lease.take();
                    Poll::Ready(Some(Err(Box::new(IdleTimeout(*this.idle_timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The client's body on its way to the instance. It fails the exchange when the client
    /// goes silent for longer than the idle timeout mid-body, so a trickling client cannot hold
    /// an instance's turn forever. (The first-byte clock starts once the body has gone out in
    /// full: the client session keeps it, `crate::http1::client::Deadline::AfterBody`.)
    pub struct SentBody<B> {
        #[pin]
        inner: B,
        idle: IdleClock,
        idle_timeout: Duration,
    }
}

impl<B: Body> SentBody<B> {
    pub fn new(inner: B, idle_timeout: Duration) -> Self {
        Self {
            inner,
            idle: IdleClock::default(),
            idle_timeout,
        }
    }
}

/// The client stayed silent mid-body for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of its request body for {0:?}")]
pub struct ClientBodyIdle(pub Duration);

impl<B> Body for SentBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.frame();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.idle.poll_idle(cx, *this.idle_timeout) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(Box::new(ClientBodyIdle(*this.idle_timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
