//! Passing one request through to an instance and its answer back.

use crate::body::Body;
use crate::error::GatewayError;
use crate::forward::{self, ClientInfo};
use crate::pool::{Pool, SendError};
use crate::stream::{ClientBodyIdle, LeasedBody, SentBody};
use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Empty, Limited};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use valet_instances::Lease;

/// Body sent to instances: the client's body, limited when `max_body_size` is set, or none when
/// a bodiless request is sent again (see [`Resend`]).
pub type UpstreamBody = Either<SentBody<Either<Incoming, Limited<Incoming>>>, Empty<Bytes>>;

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
    /// `<path after strip_prefix>?<query>`, the origin form the instance gets.
    pub uri: Uri,
    /// What `strip_prefix` removed, for `X-Forwarded-Prefix`.
    pub prefix: Option<HeaderValue>,
    pub client: ClientInfo,
}

/// Rewrites the request for the instance and sends it; the response streams back.
pub async fn pass(
    upstream: &Upstream,
    req: Request<Incoming>,
    pass: Pass,
) -> Result<Response<Body>, GatewayError> {
    if upstream.max_body > 0 {
        if let Some(len) = content_length(&req) {
            if len > upstream.max_body {
                return Err(GatewayError::PayloadTooLarge {
                    limit: upstream.max_body,
                });
            }
        }
    }
    let (parts, body) = req.into_parts();
    // A body to send: the first-byte clock starts once it has gone out in full.
    let (sent, body_sent) = if body.is_end_stream() {
        (None, None)
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Some(tx), Some(rx))
    };
    let body = if upstream.max_body > 0 {
        Either::Right(Limited::new(body, upstream.max_body as usize))
    } else {
        Either::Left(body)
    };
    let body = Either::Left(SentBody::new(body, upstream.idle, sent));
    send(upstream, Request::from_parts(parts, body), pass, body_sent).await
}

/// The head of a request without a body, kept so that the request can be sent again when the
/// instance gives no answer: always when nothing reached it (refused), and for idempotent
/// methods when the connection closed before the answer (RFC 9110 9.2.2), which is how a
/// killed process looks on a pooled connection. A request with a body is not kept: the first
/// try consumes its body.
#[derive(Clone)]
pub struct Resend {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    client: ClientInfo,
}

impl Resend {
    /// `Some` for a request whose body is empty.
    pub fn of(parts: &Parts, body: &Incoming, client: &ClientInfo) -> Option<Self> {
        body.is_end_stream().then(|| Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            client: client.clone(),
        })
    }

    /// Whether the request may be repeated after it may have reached the instance.
    pub fn idempotent(&self) -> bool {
        self.method.is_idempotent()
    }

    /// The request target as the client sent it.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

/// Sends a kept request again, to the instance behind `lease`.
pub async fn resend(
    upstream: &Upstream,
    resend: Resend,
    lease: Lease,
    uri: Uri,
    prefix: Option<HeaderValue>,
) -> Result<Response<Body>, GatewayError> {
    let mut req = Request::new(Either::Right(Empty::new()));
    *req.method_mut() = resend.method;
    *req.headers_mut() = resend.headers;
    send(
        upstream,
        req,
        Pass {
            lease,
            uri,
            prefix,
            client: resend.client,
        },
        None,
    )
    .await
}

async fn send(
    upstream: &Upstream,
    mut req: Request<UpstreamBody>,
    pass: Pass,
    body_sent: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<Response<Body>, GatewayError> {
    forward::prepare_request(req.headers_mut(), &pass.client, pass.prefix.clone());
    let (mut parts, body) = req.into_parts();
    parts.uri = pass.uri;
    // Instances speak HTTP/1.1; an h2 client's request is translated.
    parts.version = Version::HTTP_11;
    let mut lease = pass.lease;
    let addr = lease.addr();
    if !parts.headers.contains_key(http::header::HOST) {
        // HTTP/1.1 requires a Host; a client that sent none (HTTP/1.0) gets the instance's.
        if let Ok(host) = HeaderValue::try_from(addr.to_string()) {
            parts.headers.insert(http::header::HOST, host);
        }
    }
    let request = Request::from_parts(parts, body);
    // Waiting for a turn under `max_concurrent_requests` counts against the first-byte
    // deadline: to the client it is part of waiting for the answer.
    let exchange = async {
        lease.take_turn().await;
        upstream.pool.send(addr, request).await
    };
    let answer = match body_sent {
        None => tokio::time::timeout(upstream.first_byte, exchange)
            .await
            .ok(),
        // The clock starts once the body is sent (or dropped unsent); until then the body's own
        // idle timeout is what stops a client that stalls.
        Some(body_sent) => {
            let deadline = async {
                let _ = body_sent.await;
                tokio::time::sleep(upstream.first_byte).await;
            };
            tokio::select! {
                biased;
                answer = exchange => Some(answer),
                () = deadline => None,
            }
        }
    };
    let response = match answer {
        None => {
            return Err(GatewayError::Timeout {
                instance: lease.instance().id.to_string(),
                what: "answer",
            })
        }
        Some(Err(e)) => {
            return Err(classify(
                e,
                upstream.max_body,
                lease.instance().id.to_string(),
            ))
        }
        Some(Ok(answer)) => answer,
    };
    let (mut parts, body) = response.into_parts();
    forward::remove_hop_by_hop(&mut parts.headers);
    let body = LeasedBody::new(body, lease, upstream.idle);
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}

/// The instance's answer on its way back: hop-by-hop headers dropped, lease kept by the body.
pub fn leased_response(
    response: Response<Incoming>,
    lease: Lease,
    idle: Duration,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    forward::remove_hop_by_hop(&mut parts.headers);
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

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Sorts a failed exchange into 413 (body limit), 408 (client silent mid-body), 400 (client's
/// body broken), 504 (connect timeout) or 502 (refused, closed, bad answer), saying whether the
/// request reached the instance (for [`Resend`]).
fn classify(e: SendError, max_body: u64, instance: String) -> GatewayError {
    match e {
        SendError::ConnectTimeout => GatewayError::Timeout {
            instance,
            what: "accept a connection",
        },
        SendError::Connect(e) => {
            tracing::debug!(%instance, error = %e, "cannot connect to the instance");
            GatewayError::Unanswered {
                instance,
                sent: false,
            }
        }
        SendError::Closed(e) => {
            tracing::debug!(%instance, error = %e, "the instance closed the exchange");
            GatewayError::Unanswered {
                instance,
                sent: true,
            }
        }
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
