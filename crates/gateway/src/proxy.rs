//! Passing one request through to an instance and its answer back.

use crate::body::Body;
use crate::error::GatewayError;
use crate::forward::{self, ClientInfo};
use crate::stream::LeasedBody;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Either, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::net::SocketAddr;
use std::time::Duration;
use valet_instances::Lease;

/// Body sent to instances: the client's body, limited when `max_body_size` is set.
pub type UpstreamBody = Either<Incoming, Limited<Incoming>>;

/// The pooled client that reaches instances, and the limits it applies.
pub struct Upstream {
    pub client: Client<HttpConnector, UpstreamBody>,
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
        let UpstreamSettings { connect, first_byte, idle, max_body } = *settings;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect));
        connector.enforce_http(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Self { client, connect, first_byte, idle, max_body }
    }
}

/// What the gateway decided about a request before passing it on.
pub struct Pass {
    pub lease: Lease,
    /// `http://<instance><path after strip_prefix>?<query>`.
    pub uri: Uri,
    /// What `strip_prefix` removed, for `X-Forwarded-Prefix`.
    pub prefix: Option<HeaderValue>,
    pub client: ClientInfo,
}

/// Rewrites the request for the instance and sends it; the response streams back.
pub async fn pass(
    upstream: &Upstream,
    mut req: Request<Incoming>,
    pass: Pass,
) -> Result<Response<Body>, GatewayError> {
    let instance = || pass.lease.instance().id.to_string();
    if upstream.max_body > 0 {
        if let Some(len) = content_length(&req) {
            if len > upstream.max_body {
                return Err(GatewayError::PayloadTooLarge { limit: upstream.max_body });
            }
        }
    }
    forward::prepare_request(req.headers_mut(), &pass.client, pass.prefix.clone());
    let (mut parts, body) = req.into_parts();
    parts.uri = pass.uri;
    // Instances speak HTTP/1.1; an h2 client's request is translated.
    parts.version = Version::HTTP_11;
    let body = if upstream.max_body > 0 {
        Either::Right(Limited::new(body, upstream.max_body as usize))
    } else {
        Either::Left(body)
    };
    let sent = upstream.client.request(Request::from_parts(parts, body));
    let response = match tokio::time::timeout(upstream.first_byte, sent).await {
        Err(_) => return Err(GatewayError::Timeout { instance: instance(), what: "answer" }),
        Ok(Err(e)) => return Err(classify(e, upstream.max_body, instance())),
        Ok(Ok(response)) => response,
    };
    Ok(leased_response(response, pass.lease, upstream.idle))
}

/// The instance's answer on its way back: hop-by-hop headers dropped, lease kept by the body.
pub fn leased_response(response: Response<Incoming>, lease: Lease, idle: Duration) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    forward::remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, LeasedBody::new(body, lease, idle).boxed_unsync())
}

/// `http://<addr><path>?<query>`: the instance's address with the (stripped) path.
pub fn upstream_uri(addr: SocketAddr, path: &str, original: &Uri) -> Result<Uri, http::Error> {
    let path_and_query = match original.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}"))?,
        None => PathAndQuery::try_from(path)?,
    };
    let authority = Authority::try_from(addr.to_string())?;
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Sorts a client error into 413 (body limit), 504 (connect timeout) or 502 (refused, reset).
fn classify(e: hyper_util::client::legacy::Error, max_body: u64, instance: String) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return GatewayError::PayloadTooLarge { limit: max_body };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return GatewayError::Timeout { instance, what: "accept a connection" };
            }
        }
        source = err.source();
    }
    let message = if e.is_connect() { "the instance refused the connection" } else { "the instance closed the connection" };
    tracing::debug!(%instance, error = %e, "upstream request failed");
    GatewayError::BadGateway { instance, message }
}
