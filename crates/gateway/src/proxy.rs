//! Passing one request through to an instance and its answer back.

use crate::body::Body;
use crate::body::RequestBody;
use crate::error::GatewayError;
use crate::forward::{self, ClientInfo, Hop, Rewrite};
use crate::http1::client::{self, Deadline, SendError};
use crate::http1::framing::Framing;
use crate::message::{Answer, ClientRequest};
use crate::pool::Pool;
use crate::stream::{ClientBodyIdle, LeasedBody, SentBody};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Response, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Empty, Limited};
use hyper::body::Incoming;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use valet_instances::Lease;

/// The worker's connection pool to instances, and the limits it applies.
pub struct Upstream {
    pub pool: Arc<Pool>,
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub max_body: u64,
}

/// Timeouts and limits of the upstream side, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    /// 0: no limit.
    pub max_body: u64,
}

impl Upstream {
    pub fn new(settings: &UpstreamSettings) -> Self {
        let UpstreamSettings {
            connect,
            first_byte,
            idle,
            max_body,
        } = *settings;
        let pool = Pool::new(connect);
        Self {
            pool,
            connect,
            first_byte,
            idle,
            max_body,
        }
    }
}

/// What the gateway decided about a request before passing it on.
pub struct Pass {
    pub lease: Lease,
    /// `<path after strip_prefix>?<query>`, the origin form the instance gets, when
    /// `strip_prefix` changed the path; `None`: the request's own path and query.
    pub uri: Option<Uri>,
    /// What `strip_prefix` removed, for `X-Forwarded-Prefix`.
    pub prefix: Option<HeaderValue>,
    pub client: ClientInfo,
    /// The request came through the peer listener from a replica that rewrote it already.
    pub from_peer: bool,
    /// The class's port index the request is for (a forwarded request names it to the owner).
    pub port: usize,
}

/// A failed exchange, and the request again when it may be sent again (see [`Resend`]).
pub type Failed = (GatewayError, Option<Resend>);

/// Rewrites the request for the instance and sends it; the response streams back.
///
/// The rewriting happens when this is called, and only the exchange is left to the future:
/// every future is moved (copied) as it is nested into its caller's, so what it need not hold
/// across an await (the request and the decision as they came in) is kept out of it.
pub fn pass(
    upstream: &Upstream,
    req: ClientRequest,
    pass: Pass,
) -> impl Future<Output = Result<Answer, Failed>> + Send + '_ {
    let prepared = prepare(upstream, req, pass);
    async move {
        let Prepared {
            head,
            method,
            framing,
            body,
            lease,
        } = prepared.map_err(|e| (e, None))?;
        let bodiless = matches!(body, Either::Left(_));
        let result = send(upstream, &head, &method, framing, body, lease).await;
        result.map_err(|e| (e, bodiless.then_some(Resend { head, method })))
    }
}

/// A request rewritten and encoded for its instance.
struct Prepared {
    head: Bytes,
    method: Method,
    framing: Framing,
    body: UpstreamBody,
    lease: Lease,
}

fn prepare(upstream: &Upstream, req: ClientRequest, pass: Pass) -> Result<Prepared, GatewayError> {
    if upstream.max_body > 0 {
        if let Some(len) = req.fields.content_length() {
            if len > upstream.max_body {
                let limit = upstream.max_body;
                return Err(GatewayError::PayloadTooLarge { limit });
            }
        }
    }
    let ClientRequest {
        method,
        uri: client_uri,
        fields,
        body,
        ..
    } = req;
    let Pass {
        lease,
        uri,
        prefix,
        client,
        from_peer,
        port,
    } = pass;
    let rewrite = Rewrite {
        client: &client,
        prefix,
        // HTTP/1.1 requires a Host; a client that sent none (HTTP/1.0) gets the instance's.
        fallback_host: Some(lease.addr()),
        hop: Hop::of(lease.via(), port, from_peer),
    };
    let target = uri.as_ref().unwrap_or(&client_uri).path_and_query();
    let target = target.map_or("/", |pq| pq.as_str());
    // Instances speak HTTP/1.1 (an h2 client's request is translated); the head is encoded
    // once, rewritten as it is written, and, for a bodiless request, kept as it is to be sent
    // again if need be.
    let (head, framing) = client::encode(&method, target, &fields, Some(&rewrite), &body);
    // One call of `send` for both kinds of request: each call site of an async fn takes its
    // own room in the caller's future.
    let body = if body.is_end_stream() {
        Either::Left(Empty::new())
    } else {
        let body = if upstream.max_body > 0 {
            Either::Right(Limited::new(body, upstream.max_body as usize))
        } else {
            Either::Left(body)
        };
        Either::Right(SentBody::new(body, upstream.idle))
    };
    Ok(Prepared {
        head,
        method,
        framing,
        body,
        lease,
    })
}

/// What goes up to an instance: nothing, or the client's body (limited when `max_body_size`
/// is set).
type UpstreamBody = Either<Empty<Bytes>, SentBody<Either<RequestBody, Limited<RequestBody>>>>;

/// A request without a body, as encoded for the instance, kept so that it can be sent again
/// when the instance gives no answer: always when nothing reached it (refused), and for
/// idempotent methods when the connection closed before the answer (RFC 9110 9.2.2), which is
/// how a killed process looks on a pooled connection. A request with a body is not kept: the
/// first try consumes its body. Keeping the encoded head costs a reference count, where a copy
/// of the request's headers would cost allocations on every request.
#[derive(Clone)]
pub struct Resend {
    head: Bytes,
    method: Method,
}

impl Resend {
    /// Whether the request may be repeated after it may have reached the instance.
    pub fn idempotent(&self) -> bool {
        self.method.is_idempotent()
    }
}

/// Sends a kept request again, to the instance behind `lease`. (A request that came without
/// a Host keeps the first instance address it was given as its Host.)
pub async fn resend(upstream: &Upstream, resend: Resend, lease: Lease) -> Result<Answer, Failed> {
    let result = send(
        upstream,
        &resend.head,
        &resend.method,
        Framing::None,
        Either::Left(Empty::new()),
        lease,
    )
    .await;
    result.map_err(|e| (e, Some(resend)))
}

/// How a sent request's wait ended. (Held for a moment only: boxing the answer to even out
/// the variants would cost an allocation per request.)
#[allow(clippy::large_enum_variant)]
enum Outcome {
    /// The first-byte deadline passed while waiting for a turn under `max_concurrent_requests`.
    NoTurn,
    /// The key left the owner the request was forwarded to (see `PeerRoute::moved`).
    Moved,
    Sent(Result<Answer<crate::http1::body::ResponseBody>, SendError>),
}

async fn send(
    upstream: &Upstream,
    head: &[u8],
    method: &Method,
    framing: Framing,
    body: UpstreamBody,
    mut lease: Lease,
) -> Result<Answer, GatewayError> {
    let addr = lease.addr();
    let (deadline, moved) = match body {
        // The first-byte deadline runs from now, and the pooled connection's own timer keeps
        // it: no timer per request. Waiting for a turn under `max_concurrent_requests` counts
        // against it: to the client it is part of waiting for the answer. A forwarded request
        // that may go twice stops waiting when its key leaves the owner it was sent to (see
        // `PeerRoute::moved`), and goes to the new owner.
        Either::Left(_) => (
            Deadline::At(Instant::now() + upstream.first_byte),
            match lease.via() {
                Some(route) if method.is_idempotent() => Some(route.moved.clone()),
                _ => None,
            },
        ),
        // With a body, the clock starts once the client's body has been read to its end; until
        // then the body's own idle timeout stops a client that stalls, and `idle` an instance
        // that takes nothing of the upload.
        Either::Right(_) => (
            Deadline::AfterBody {
                answer: upstream.first_byte,
                stall: upstream.idle,
            },
            None,
        ),
    };
    // Pinned in place, not boxed: both callers (`pass`, `resend`) are boxed by theirs
    // (`crate::dispatch`), so a box here would be a second allocation per request.
    let outcome = {
        let mut exchange = std::pin::pin!(async {
            if lease.needs_turn() {
                match deadline.fixed() {
                    Some(at) => {
                        if tokio::time::timeout_at(at, lease.take_turn())
                            .await
                            .is_err()
                        {
                            return Outcome::NoTurn;
                        }
                    }
                    None => lease.take_turn().await,
                }
            }
            let sent = upstream
                .pool
                .send_head(addr, head, method, framing, body, deadline);
            Outcome::Sent(sent.await)
        });
        match moved {
            None => exchange.await,
            Some(moved) => tokio::select! {
                biased;
                outcome = exchange.as_mut() => outcome,
                () = moved.cancelled() => Outcome::Moved,
            },
        }
    };
    let instance = || lease.instance().id.to_string();
    let response = match outcome {
        Outcome::NoTurn => {
            return Err(GatewayError::Timeout {
                instance: instance(),
                what: "answer",
            })
        }
        Outcome::Moved => {
            return Err(GatewayError::NotOwner {
                instance: instance(),
            })
        }
        Outcome::Sent(Err(e)) => return Err(classify(e, upstream.max_body, instance())),
        Outcome::Sent(Ok(answer)) => answer,
    };
    if lease.via().is_some()
        && response.status == http::StatusCode::SERVICE_UNAVAILABLE
        && response.fields.value(&forward::X_VALET_NOT_OWNER).is_some()
    {
        // The replica this one took for the owner is not (any more): the request was refused
        // before its body was read, so it may go again once the owner is looked up anew.
        return Err(GatewayError::NotOwner {
            instance: lease.instance().id.to_string(),
        });
    }
    // Hop-by-hop fields are dropped as the answer is written (see [`Answer`]).
    let body = LeasedBody::new(response.body, lease, upstream.idle);
    Ok(Answer {
        status: response.status,
        fields: response.fields,
        request_id: None,
        body: body.boxed_unsync(),
    })
}

/// The instance's answer on its way back: hop-by-hop headers dropped, lease kept by the body.
pub fn leased_response(
    response: Response<Incoming>,
    lease: Lease,
    idle: Duration,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    crate::http1::hop::remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, LeasedBody::new(body, lease, idle).boxed_unsync())
}

/// `<path>?<query>`: the (stripped) path in the origin form an instance gets.
pub fn upstream_uri(path: &str, original: &Uri) -> Result<Uri, http::Error> {
    let path_and_query = match original.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}"))?,
        None => PathAndQuery::try_from(path)?,
    };
    Ok(Uri::from(path_and_query))
}

/// What an instance failed to do in time when its connect timed out (the request never left).
pub const CONNECT: &str = "accept a connection";

/// Sorts a failed exchange into 413 (body limit), 408 (client silent mid-body), 400 (client's
/// body broken), 504 (connect timeout) or 502 (refused, closed, bad answer), saying whether the
/// request reached the instance (for [`Resend`]).
fn classify(e: SendError, max_body: u64, instance: String) -> GatewayError {
    match e {
        SendError::ConnectTimeout => GatewayError::Timeout {
            instance,
            what: CONNECT,
        },
        SendError::Deadline => GatewayError::Timeout {
            instance,
            what: "answer",
        },
        SendError::Connect(_) | SendError::PortTaken(_) => {
            if let SendError::PortTaken(conflict) = &e {
                // Worth an operator's look: see valet_instances::confirm_listener.
                tracing::warn!(%instance, %conflict, "the instance's port is not the instance's");
            } else if let SendError::Connect(error) = &e {
                tracing::debug!(%instance, %error, "cannot connect to the instance");
            }
            GatewayError::Unanswered {
                instance,
                sent: false,
                reused: false,
            }
        }
        SendError::Closed { error, reused } => {
            tracing::debug!(%instance, %error, reused, "the instance closed the exchange");
            GatewayError::Unanswered {
                instance,
                sent: true,
                reused,
            }
        }
        SendError::Stalled => GatewayError::Timeout {
            instance,
            what: "take the request body",
        },
        SendError::BadResponse(e) => {
            tracing::debug!(%instance, error = %e, "the instance's answer cannot be passed on");
            GatewayError::BadGateway {
                instance,
                message: "the instance's answer is not valid HTTP/1.1",
            }
        }
        SendError::RequestBody(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return GatewayError::PayloadTooLarge { limit: max_body };
                }
                if let Some(idle) = err.downcast_ref::<ClientBodyIdle>() {
                    return GatewayError::RequestTimeout { idle: idle.0 };
                }
                source = err.source();
            }
            tracing::debug!(%instance, error = %e, "the client's request body failed");
            // The client's own body failed (bad chunked framing, gone mid-upload): its fault.
            GatewayError::BadRequest {
                code: "bad_request_body",
                message: "the request body could not be read".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valet_instances::PortConflict;

    #[test]
    fn a_port_that_is_not_the_instances_and_a_failed_connect_both_leave_the_request_unsent() {
        // Unsent, so the dispatcher may send a bodiless request again once the instance is
        // back; the two causes differ only in what the log says.
        let causes = [
            SendError::PortTaken(PortConflict::Ended { port: 9 }),
            SendError::PortTaken(PortConflict::Foreign {
                port: 9,
                holder: Some(1),
            }),
            SendError::Connect(std::io::ErrorKind::PermissionDenied.into()),
            SendError::Connect(std::io::ErrorKind::ConnectionRefused.into()),
        ];
        for cause in causes {
            let described = format!("{cause:?}");
            let error = classify(cause, 0, "Class/key".into());
            assert!(
                matches!(
                    error,
                    GatewayError::Unanswered {
                        sent: false,
                        reused: false,
                        ..
                    }
                ),
                "{described} -> {error:?}"
            );
        }
    }
}
