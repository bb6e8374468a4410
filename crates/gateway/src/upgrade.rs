//! Protocol upgrades (WebSocket): the handshake goes to the instance on a connection of its own,
//! and after a 101 both sides are spliced byte for byte. The lease lives as long as the tunnel,
//! so an open WebSocket keeps its instance awake.

use crate::body::RequestBody;
use crate::body::{empty, Body};
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::forward;
use crate::http1::framing::list;
use crate::pool::ConnectError;
use crate::proxy::{leased_response, Pass, Upstream};
use valet_instances::PortConflict;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sends the upgrade request to the instance and, on 101, tunnels the two connections.
pub async fn tunnel(
    upstream: &Upstream,
    mut req: Request<RequestBody>,
    pass: Pass,
) -> Result<Response<Body>, GatewayError> {
    let Pass {
        lease,
        uri,
        prefix,
        client,
        from_peer,
        port,
    } = pass;
    let instance = lease.instance().id.to_string();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let stream = match crate::pool::dial(lease.addr(), upstream.connect, None).await {
        Ok(stream) => stream,
        Err(ConnectError::Timeout | ConnectError::Deadline) => {
            return Err(GatewayError::Timeout {
                instance,
                what: crate::proxy::CONNECT,
            })
        }
        Err(ConnectError::PortTaken(conflict)) => {
            tracing::warn!(%instance, %conflict, "the instance's port is not the instance's");
            let message = match conflict {
                PortConflict::Ended { .. } => "the instance has ended",
                _ => "the instance's port is held by another program",
            };
            return Err(GatewayError::BadGateway { instance, message });
        }
        Err(ConnectError::Io(e)) => {
            let message = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "the instance refused the connection"
            } else {
                "cannot connect to the instance"
            };
            return Err(GatewayError::BadGateway { instance, message });
        }
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        let message = "handshake with the instance failed";
        return Err(GatewayError::BadGateway { instance, message });
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });

    let upgrade = req.headers().get(header::UPGRADE).cloned();
    let (mut parts, _) = req.into_parts();
    let hop = forward::Hop::of(lease.via(), port, from_peer);
    forward::prepare_request(&mut parts.headers, &client, prefix, hop);
    if let Some(upgrade) = upgrade {
        parts.headers.insert(header::UPGRADE, upgrade);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // A direct connection takes the origin form of the target, not the absolute one.
    let uri = uri.unwrap_or_else(|| parts.uri.clone());
    parts.uri = uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    let upstream_req = Request::from_parts(parts, Empty::<bytes::Bytes>::new());

    let mut response =
        match tokio::time::timeout(upstream.first_byte, sender.send_request(upstream_req)).await {
            Err(_) => {
                return Err(GatewayError::Timeout {
                    instance,
                    what: "answer",
                })
            }
            Ok(Err(_)) => {
                let message = "the instance closed the connection";
                return Err(GatewayError::BadGateway { instance, message });
            }
            Ok(Ok(response)) => response,
        };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The instance declined the upgrade: its answer goes back as an ordinary response.
        return Ok(leased_response(response, lease, upstream.idle));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let (parts, _) = response.into_parts();
    tokio::spawn(async move {
        let (Ok(client_io), Ok(upstream_io)) = (client_upgrade.await, upstream_upgrade.await)
        else {
            return;
        };
        let stats = &lease.instance().class.stats;
        let _open = stats.websocket_opened();
        let mut client_io = Counted::new(TokioIo::new(client_io));
        let mut upstream_io = Counted::new(TokioIo::new(upstream_io));
        // Counted as they are read, not from copy_bidirectional's result: a tunnel that ends
        // in an error (a client that resets instead of closing) returns no counts at all.
        let _ = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await;
        stats.request_bytes.add(client_io.read);
        stats.response_bytes.add(upstream_io.read);
    });
    Ok(Response::from_parts(parts, empty()))
}

/// One side of a tunnel, counting the bytes read from it.
struct Counted<T> {
    inner: T,
    read: u64,
}

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        Self { inner, read: 0 }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether a request asks to switch protocols in a way its route allows (`upgrades`, lower
/// case; HTTP/1.1 only): every protocol its `Upgrade` offers must be allowed, since the instance
/// may pick any of them. Any other (`h2c` on a route that does not name it, `TLS/1.0`) would
/// turn the connection into a tunnel that later requests take past routing and auth: such a
/// request goes on as an ordinary one, its `Upgrade` dropped as a hop-by-hop field.
pub fn is_upgrade(headers: &Fields, allowed: &[Box<str>]) -> bool {
    if allowed.is_empty() {
        return false;
    }
    let mut protocols = headers.get_all(&header::UPGRADE).flat_map(list).peekable();
    protocols.peek().is_some()
        && protocols.all(|offered| allowed.iter().any(|a| allows(a, offered)))
        && headers
            .get_all(&header::CONNECTION)
            .flat_map(list)
            .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

/// Whether an `upgrades` entry allows an offered protocol: a bare name allows every version of
/// it (`websocket` allows `WebSocket/13`), a name with a version only that version.
fn allows(allowed: &str, offered: &[u8]) -> bool {
    let name = if allowed.contains('/') {
        offered
    } else {
        offered.split(|&b| b == b'/').next().unwrap_or(offered)
    };
    name.eq_ignore_ascii_case(allowed.as_bytes())
}
