//! What every connection of a gateway worker shares ([`Worker`]): the worker's configuration,
//! its upstream pool, and hyper's server, which serves TLS, HTTP/2 and whatever valet's own
//! HTTP/1.1 server ([`crate::http1::server`]) hands over.

use crate::body::RequestBody;
use crate::forward::Peer;
use crate::handler::handle;
use crate::http1::rewind::Rewind;
use crate::proxy::{Upstream, UpstreamSettings};
use crate::state::GatewayState;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

/// Largest request head (request line and headers) read from a client; a larger one is
/// answered 431. hyper's own default (~400 KB) would pass 200 KB header values on to the
/// instance, which many backends refuse with an error page of their own, or not at all.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What every worker needs to serve.
pub struct ServerConfig {
    pub state: Arc<GatewayState>,
    pub tls: Option<TlsAcceptor>,
    pub header_read: Duration,
    pub upstream: UpstreamSettings,
}

/// What every connection of a worker shares.
pub struct Worker {
    pub config: Arc<ServerConfig>,
    pub upstream: Upstream,
    builder: auto::Builder<TokioExecutor>,
    /// Set, and `stop` notified, when the worker stops accepting. The worker's own: valet's
    /// shutdown signal is shared by every thread, and [`crate::http1::server`] looks at this on every
    /// request.
    stopping: AtomicBool,
    pub stop: Arc<Notify>,
}

impl Worker {
    /// A worker's shared state, with its own pool and hyper's server for what valet's
    /// HTTP/1.1 server hands over.
    pub fn new(config: Arc<ServerConfig>) -> Arc<Self> {
        let upstream = Upstream::new(&config.upstream);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        Arc::new(Self {
            config,
            upstream,
            builder,
            stopping: AtomicBool::new(false),
            stop: Arc::new(Notify::new()),
        })
    }

    /// The worker stops accepting: connections finish their request and close.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.notify_waiters();
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Serves the rest of a connection with hyper, `read` (bytes already taken off the socket)
    /// first: every request this gateway does not serve in [`crate::http1::server`], and HTTP/2.
    pub async fn hand_over(
        self: Arc<Self>,
        stream: TcpStream,
        read: bytes::BytesMut,
        peer: Peer,
        watcher: Watcher,
    ) {
        let io = Rewind::new(stream, read.freeze());
        self.serve_hyper(io, peer, watcher).await;
    }

    /// Serves a connection with hyper until it ends or a graceful shutdown finishes it.
    pub async fn serve_hyper<I>(self: Arc<Self>, io: I, peer: Peer, watcher: Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let addr = peer.addr;
        let service = self.service(Arc::new(peer));
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
        }
    }

    fn service(
        self: &Arc<Self>,
        client: Arc<Peer>,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<crate::body::Body>,
        Error = Infallible,
        Future = impl std::future::Future<Output = Result<Response<crate::body::Body>, Infallible>>
                     + Send,
    > + Clone
           + Send
           + 'static {
        let worker = self.clone();
        service_fn(move |req: Request<Incoming>| {
            let (worker, client) = (worker.clone(), client.clone());
            async move {
                let req = req.map(RequestBody::Streaming);
                let state = &worker.config.state;
                let req = crate::message::ClientRequest::from(req);
                let answer = handle(state, &worker.upstream, &client, req).await;
                Ok::<_, Infallible>(answer.into_http())
            }
        })
    }
}
