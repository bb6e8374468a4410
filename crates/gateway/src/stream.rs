//! Bodies on their way through: the instance's response to the client ([`LeasedBody`]: it holds
//! the instance lease, so an unfinished stream (SSE, a large download) counts as activity, and it
//! ends the stream when the instance stays silent longer than the idle timeout), and the
//! client's request body to the instance ([`SentBody`]).

use crate::body::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use valet_instances::Lease;

pin_project! {
    /// A body that keeps a lease alive and times out on silence.
    pub struct LeasedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: Option<Sleep>,
        idle_timeout: Duration,
        lease: Option<Lease>,
    }
}

impl<B> LeasedBody<B> {
    pub fn new(inner: B, lease: Lease, idle_timeout: Duration) -> Self {
        Self {
            inner,
            idle: None,
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
                // The timer only exists while we wait, so a body that is always ready (most
                // small responses) never touches the timer wheel.
                this.idle.set(None);
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
            Poll::Pending => match idle_elapsed(this.idle, *this.idle_timeout, cx) {
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

use std::future::Future;

pin_project! {
    /// The client's body on its way to the instance. It reports when it has been sent in full,
    /// which is when the first-byte clock starts (an upload may take longer than `first_byte`
    /// to send), and it fails the exchange when the client goes silent for longer than the idle
    /// timeout mid-body, so a trickling client cannot hold an instance's turn forever.
    pub struct SentBody<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: Option<Sleep>,
        idle_timeout: Duration,
        sent: Option<oneshot::Sender<()>>,
    }
}

impl<B: Body> SentBody<B> {
    /// `sent` fires once the body has ended (or is dropped unsent).
    pub fn new(inner: B, idle_timeout: Duration, sent: Option<oneshot::Sender<()>>) -> Self {
        Self {
            inner,
            idle: None,
            idle_timeout,
            sent,
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
                this.idle.set(None);
                if frame.is_none() || this.inner.is_end_stream() {
                    if let Some(sent) = this.sent.take() {
                        let _ = sent.send(());
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match idle_elapsed(this.idle, *this.idle_timeout, cx) {
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

/// Ready once a body has waited `timeout` in a row. The timer only exists while the body waits
/// (callers clear it on every frame), so a body that is always ready never touches the timer
/// wheel.
fn idle_elapsed(
    mut idle: Pin<&mut Option<Sleep>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if idle.is_none() {
        idle.set(Some(tokio::time::sleep_until(Instant::now() + timeout)));
    }
    idle.as_pin_mut().expect("just set").poll(cx)
}
