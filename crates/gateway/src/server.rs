//! The public listener, thread per core: each worker thread runs its own current-thread Tokio
//! runtime with its own SO_REUSEPORT listener and its own upstream connection pool, so a warm
//! request never crosses threads and no pool lock is shared between cores. The kernel spreads
//! new connections over the workers' listeners, and [`crate::balance`] evens out what its hash
//! leaves uneven.
//!
//! Each worker speaks HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN over TLS) and hands every
//! request to [`crate::handler::handle`]. Plain HTTP/1.1 is served by [`crate::http1::server`] in the
//! connection's own task; what it leaves (HTTP/2, upgrades, streamed uploads, malformed heads)
//! and TLS go through hyper. On shutdown a worker stops accepting and lets open connections
//! finish for a grace period.

use crate::balance::{Arrival, Balance};
use crate::forward::Peer;
pub use crate::worker::ServerConfig;
use crate::worker::Worker;
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use valet_core::Shutdown;

/// `VALET_HTTP1_ENGINE=hyper`: every plain connection is served by hyper, none by valet's own
/// HTTP/1.1 server. A diagnostic (is a fault valet's HTTP/1.1 or not?) and the second side of
/// the differential test that holds both to the same answers; slower, never the default.
fn hyper_only() -> bool {
    std::env::var_os("VALET_HTTP1_ENGINE").is_some_and(|v| v == "hyper")
}

/// How long open connections may take to finish once shutdown begins.
const GRACE: Duration = Duration::from_secs(10);

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
        let (balance, inboxes) = Balance::new(self.listeners.len());
        let workers = self.listeners.into_iter().zip(inboxes).enumerate();
        for (index, (listener, inbox)) in workers {
            let config = self.config.clone();
            let shutdown = shutdown.clone();
            let seat = Seat {
                index,
                balance: balance.clone(),
                inbox,
            };
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("valet-gw-{index}"))
                .spawn(move || {
                    worker(listener, seat, config, shutdown);
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

/// A worker's place among the others: its index, the shared balance, its inbox of connections
/// passed to it.
struct Seat {
    index: usize,
    balance: Arc<Balance>,
    inbox: tokio::sync::mpsc::UnboundedReceiver<Arrival>,
}

/// One worker thread: its runtime, its pool, its accept loop.
fn worker(
    listener: std::net::TcpListener,
    seat: Seat,
    config: Arc<ServerConfig>,
    shutdown: Shutdown,
) {
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
        accept_loop(listener, seat, config, shutdown).await;
    });
}

async fn accept_loop(
    listener: TcpListener,
    mut seat: Seat,
    config: Arc<ServerConfig>,
    mut shutdown: Shutdown,
) {
    let worker = Worker::new(config.clone());
    let hyper_only = hyper_only();
    let graceful = GracefulShutdown::new();
    let tracker = TaskTracker::new();
    // Each connection gets its own task; `open` counts it as this worker's while it lives.
    let serve = |stream: tokio::net::TcpStream, peer: SocketAddr, open: crate::balance::Open| {
        let _ = stream.set_nodelay(true);
        let client = Peer::new(peer, &config.state.trusted_proxies);
        let watcher = graceful.watcher();
        match &config.tls {
            // Plain HTTP/1.1 is served in the connection's task (crate::http1::server), which hands
            // anything else to hyper; it also stops a client that connects and never sends a
            // request after `header_read`.
            None if hyper_only => {
                let worker = worker.clone();
                tracker.spawn(async move {
                    let _open = open;
                    worker
                        .hand_over(stream, bytes::BytesMut::new(), client, watcher)
                        .await
                });
            }
            None => {
                let served = crate::http1::server::serve(stream, client, worker.clone(), watcher);
                tracker.spawn(async move {
                    let _open = open;
                    served.await
                });
            }
            Some(acceptor) => {
                let (acceptor, worker) = (acceptor.clone(), worker.clone());
                // The TLS handshake happens in the connection's own task; a client that never
                // finishes it is dropped after the header read timeout.
                tracker.spawn(async move {
                    let _open = open;
                    let header_read = worker.config.header_read;
                    let tls = match tokio::time::timeout(header_read, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => tls,
                        _ => return,
                    };
                    worker.serve_hyper(tls, client, watcher).await;
                });
            }
        }
    };
    loop {
        let (stream, peer, open) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let to = seat.balance.place(seat.index);
                    if to == seat.index {
                        (stream, peer, seat.balance.open(seat.index))
                    } else {
                        match seat.balance.pass(to, stream, peer) {
                            Ok(()) => continue,
                            // That worker has stopped: this one serves it after all.
                            Err(stream) => (stream, peer, seat.balance.open(seat.index)),
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some((stream, peer)) = seat.inbox.recv() => {
                let open = seat.balance.arrived(seat.index);
                match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => (stream, peer, open),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take over a connection from another worker");
                        continue;
                    }
                }
            },
            _ = shutdown.wait() => break,
        };
        serve(stream, peer, open);
    }
    // Passed connections already on their way are served here; later ones stay where they
    // were accepted (the inbox is closed, and this worker is no longer chosen).
    seat.balance.leave(seat.index);
    seat.inbox.close();
    while let Ok((stream, peer)) = seat.inbox.try_recv() {
        let open = seat.balance.arrived(seat.index);
        if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
            serve(stream, peer, open);
        }
    }
    drop(listener);
    worker.begin_stop();
    tracker.close();
    let drained = async {
        graceful.shutdown().await;
        tracker.wait().await;
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(GRACE) => tracing::warn!("connections still open after the grace period"),
    }
}
