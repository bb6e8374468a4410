//! Protocol upgrades (WebSocket): the handshake goes to the instance on a connection of its own,
//! and after a 101 both sides are spliced byte for byte. The lease lives as long as the tunnel,
//! so an open WebSocket keeps its instance awake.

use crate::body::RequestBody;
use crate::body::{empty, Body};
use crate::error::GatewayError;
use crate::forward;
use crate::proxy::{leased_response, Pass, Upstream};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
    } = pass;
    let instance = lease.instance().id.to_string();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let stream =
        match tokio::time::timeout(upstream.connect, TcpStream::connect(lease.addr())).await {
            Err(_) => {
                return Err(GatewayError::Timeout {
                    instance,
                    what: "accept a connection",
                })
            }
            Ok(Err(_)) => {
                let message = "the instance refused the connection";
                return Err(GatewayError::BadGateway { instance, message });
            }
            Ok(Ok(stream)) => stream,
        };
    let _ = stream.set_nodelay(true);
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
    forward::prepare_request(&mut parts.headers, &client, prefix);
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
        let mut client_io = TokioIo::new(client_io);
        let mut upstream_io = TokioIo::new(upstream_io);
        if let Ok((up, down)) =
            tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await
        {
            stats.request_bytes.add(up);
            stats.response_bytes.add(down);
        }
    });
    Ok(Response::from_parts(parts, empty()))
}
