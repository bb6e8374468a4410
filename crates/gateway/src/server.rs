//! The public listener, thread per core: each worker thread runs its own current-thread Tokio
//! runtime with its own SO_REUSEPORT listener and its own upstream connection pool, so a warm
//! request never crosses threads and no pool lock is shared between cores. The kernel spreads
//! new connections over the workers' listeners.
//!
//! Each worker speaks HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN over TLS) and hands every
//! request to [`crate::handler::handle`]. On shutdown it stops accepting and lets open
//! connections finish for a grace period.

use crate::forward::Peer;
use crate::handler::{handle, GatewayState};
use crate::proxy::{Upstream, UpstreamSettings};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use valet_core::Shutdown;

/// How long open connections may take to finish once shutdown begins.
const GRACE: Duration = Duration::from_secs(10);
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

/// Bound listeners, one per worker, ready to serve.
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    config: Arc<ServerConfig>,
}

impl Server {
    /// Binds `workers` listeners to `addr`. A port already taken by anyone (even another
    /// process that also uses SO_REUSEPORT) is an error, never a silent share.
    pub fn bind(addr: SocketAddr, workers: usize, config: ServerConfig) -> std::io::Result<Self> {
        if addr.port() != 0 {
            // Probe without SO_REUSEPORT: it fails if any socket holds the port.
            drop(std::net::TcpListener::bind(addr)?);
        }
        let first = reuseport_listener(addr)?;
        let bound = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers.max(1) {
            listeners.push(reuseport_listener(bound)?);
        }
        Ok(Self {
            listeners,
            config: Arc::new(config),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }

    /// Serves until `shutdown` fires, then drains connections for up to [`GRACE`]. Returns once
    /// every worker has finished.
    pub async fn run(self, shutdown: Shutdown) {
        let mut done = Vec::new();
        for (index, listener) in self.listeners.into_iter().enumerate() {
            let config = self.config.clone();
            let shutdown = shutdown.clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("valet-gw-{index}"))
                .spawn(move || {
                    worker(listener, config, shutdown);
                    drop(tx);
                });
            match spawned {
                Ok(_) => done.push(rx),
                Err(e) => tracing::error!(error = %e, "cannot start a gateway worker thread"),
            }
        }
        for rx in done {
            let _ = rx.await;
        }
    }
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// One worker thread: its runtime, its pool, its accept loop.
fn worker(listener: std::net::TcpListener, config: Arc<ServerConfig>, shutdown: Shutdown) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!(error = %e, "cannot start a gateway worker runtime"),
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "cannot register the listener"),
        };
        accept_loop(listener, config, shutdown).await;
    });
}

async fn accept_loop(listener: TcpListener, config: Arc<ServerConfig>, mut shutdown: Shutdown) {
    let upstream = Arc::new(Upstream::new(&config.upstream));
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
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        serve_connection(
            stream, peer, &config, &upstream, &builder, &graceful, &shutdown,
        );
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(GRACE) => tracing::warn!("connections still open after the grace period"),
    }
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Arc<ServerConfig>,
    upstream: &Arc<Upstream>,
    builder: &Arc<auto::Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
    shutdown: &Shutdown,
) {
    let state = config.state.clone();
    let upstream = upstream.clone();
    let client = Arc::new(Peer::new(peer, &state.trusted_proxies));
    let service = service_fn(move |req| {
        let state = state.clone();
        let upstream = upstream.clone();
        let client = client.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&state, &upstream, &client, req).await) }
    });
    match &config.tls {
        None => {
            let (builder, watcher) = (builder.clone(), graceful.watcher());
            let (header_read, mut shutdown) = (config.header_read, shutdown.clone());
            tokio::spawn(async move {
                // hyper starts its header read timeout with the first byte of a request: a
                // client that connects and never sends one would hold its descriptor forever.
                // (`readable()` may wake without data on a fresh socket; a peek does not.)
                let mut first = [0u8; 1];
                let first_byte = tokio::time::timeout(header_read, stream.peek(&mut first));
                tokio::select! {
                    sent = first_byte => if sent.is_err() {
                        return tracing::debug!(%peer, "connection sent nothing; closed");
                    },
                    _ = shutdown.wait() => return,
                }
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        Some(acceptor) => {
            let acceptor = acceptor.clone();
            let header_read = config.header_read;
            let builder = builder.as_ref().clone();
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
