//! The public listener: accepts TCP (optionally TLS), speaks HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge, or ALPN over TLS) and hands every request to [`crate::handler::handle`]. On
//! shutdown it stops accepting and lets open connections finish for a grace period.

use crate::handler::{handle, GatewayState};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use valet_core::Shutdown;

/// How long open connections may take to finish once shutdown begins.
const GRACE: Duration = Duration::from_secs(10);

/// A bound public listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    state: Arc<GatewayState>,
    tls: Option<TlsAcceptor>,
    header_read: Duration,
}

impl Server {
    pub fn new(listener: TcpListener, state: Arc<GatewayState>, tls: Option<TlsAcceptor>, header_read: Duration) -> Self {
        Self { listener, state, tls, header_read }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, then drains connections for up to [`GRACE`].
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.wait() => break,
            };
            let _ = stream.set_nodelay(true);
            self.serve_connection(stream, peer, &builder, &graceful);
        }
        drop(self.listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(GRACE) => tracing::warn!("connections still open after the grace period"),
        }
    }

    fn serve_connection(&self, stream: TcpStream, peer: SocketAddr, builder: &Arc<auto::Builder<TokioExecutor>>, graceful: &GracefulShutdown) {
        let state = self.state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&state, peer, req).await) }
        });
        match &self.tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let header_read = self.header_read;
                // The TLS handshake happens in the connection's own task; a client that never
                // finishes it is dropped after the header read timeout.
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(header_read, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        _ => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
}
