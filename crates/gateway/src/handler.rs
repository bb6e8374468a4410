//! One request, from route lookup to response: assets, or key -> instance -> proxy.

use crate::assets::Assets;
use crate::auth::{self, JwtVerifier};
use crate::body::Body;
use crate::error::GatewayError;
use crate::forward::{self, ClientInfo};
use crate::key;
use crate::proxy::{self, Pass, Upstream};
use crate::routes::{ContainerTarget, Route, RouteTable, Target};
use crate::upgrade;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;
use valet_config::IpNet;
use valet_instances::Instances;

/// Everything a request needs, shared by all connections of the listener.
pub struct GatewayState {
    pub routes: RouteTable,
    pub assets: Option<Assets>,
    pub instances: Instances,
    pub trusted_proxies: Vec<IpNet>,
    /// Checks tokens for routes with `auth = "jwt"`.
    pub jwt: Option<JwtVerifier>,
    /// Whether the listener terminates TLS (for `X-Forwarded-Proto`).
    pub https: bool,
    pub access_log: bool,
}

/// Handles one request; never fails (errors become responses).
pub async fn handle(
    state: &GatewayState,
    upstream: &Upstream,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = forward::request_id(req.headers_mut());
    let log = state.access_log.then(|| (req.method().clone(), req.uri().path().to_string()));
    let host = request_host(&req);
    let host_name = host.as_ref().and_then(|h| h.to_str().ok()).map(host_without_port);
    let route = state.routes.find(host_name.as_deref(), req.uri().path());
    let mut class_key = None;
    let mut response = match route.map(|r| (r, &r.target)) {
        Some((route, Target::Container(target))) => {
            let client = ClientInfo {
                peer: peer.ip(),
                trusted: state.trusted_proxies.iter().any(|net| net.contains(peer.ip())),
                https: state.https,
                host,
            };
            let result = to_instance(state, upstream, route, target, req, client, &mut class_key).await;
            result.unwrap_or_else(GatewayError::into_response)
        }
        Some((_, Target::Assets)) | None => match &state.assets {
            Some(assets) => assets.serve(req.method(), req.uri(), req.headers()).await,
            None => GatewayError::NotFound.into_response(),
        },
    };
    response.headers_mut().insert(forward::X_REQUEST_ID.clone(), request_id.clone());
    let stats = route.map_or(&state.routes.unrouted, |r| &r.stats);
    stats.record(response.status().as_u16(), started.elapsed());
    if let Some((method, path)) = log {
        let (class, key) = class_key.unwrap_or_default();
        tracing::info!(
            target: "valet::access",
            %method,
            %path,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            route = route.map_or("", |r| &r.pattern),
            %class,
            %key,
            request_id = request_id.to_str().unwrap_or(""),
            "request"
        );
    }
    response
}

/// Derives the key, gets a lease on the instance (waking it if needed) and passes the request.
async fn to_instance(
    state: &GatewayState,
    upstream: &Upstream,
    route: &Route,
    target: &ContainerTarget,
    req: Request<Incoming>,
    client: ClientInfo,
    class_key: &mut Option<(String, String)>,
) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = req.into_parts();
    admit(state, route, &parts, &client)?;
    let key = key::derive(&target.rule, route, &parts.uri, &parts.headers)
        .map_err(|e| GatewayError::BadRequest { code: "missing_instance_key", message: e.0 })?;
    if state.access_log {
        *class_key = Some((target.class.name.to_string(), key.to_string()));
    }
    let lease = state
        .instances
        .acquire(&target.class, &key, target.port)
        .await
        .map_err(|error| GatewayError::Instance { instance: format!("{}/{}", target.class.name, key), error })?;
    let path = parts.uri.path();
    let (prefix, rest) = match target.strip.as_ref().and_then(|s| s.apply(path)) {
        Some((stripped, rest)) => (HeaderValue::try_from(stripped).ok(), rest),
        None => (None, path),
    };
    let uri = proxy::upstream_uri(lease.addr(), rest, &parts.uri).map_err(|_| GatewayError::BadRequest {
        code: "bad_uri",
        message: "request target cannot be forwarded".into(),
    })?;
    let upgrading = forward::is_upgrade(&parts.headers);
    let req = Request::from_parts(parts, body);
    let pass = Pass { lease, uri, prefix, client };
    if upgrading {
        upgrade::tunnel(upstream, req, pass).await
    } else {
        proxy::pass(upstream, req, pass).await
    }
}

/// Rate limit and JWT, both checked before the instance is looked up, so neither a flood nor
/// an anonymous client can wake a sleeping backend.
fn admit(state: &GatewayState, route: &Route, parts: &http::request::Parts, client: &ClientInfo) -> Result<(), GatewayError> {
    if let Some(limiter) = &route.limiter {
        limiter
            .check(client_address(client, &parts.headers))
            .map_err(|retry_after| GatewayError::TooManyRequests { retry_after })?;
    }
    if route.jwt {
        let verifier = state.jwt.as_ref().ok_or_else(|| GatewayError::Unauthorized {
            message: "this route requires a token but no [auth] is configured".into(),
        })?;
        let token = auth::token_from(&parts.headers, &parts.uri)
            .ok_or_else(|| GatewayError::Unauthorized { message: "a bearer token is required".into() })?;
        verifier
            .verify(&token)
            .map_err(|e| GatewayError::Unauthorized { message: format!("invalid token: {e}") })?;
    }
    Ok(())
}

/// The address a rate limit counts: the peer, or, behind a trusted proxy, the last address that
/// proxy added. A client's own `X-Forwarded-For` never changes its bucket.
fn client_address(client: &ClientInfo, headers: &http::HeaderMap) -> std::net::IpAddr {
    if !client.trusted {
        return client.peer;
    }
    headers
        .get(&forward::X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(client.peer)
}

/// The host the client asked for: the Host header, or the authority of an h2 request.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(host) = req.headers().get(header::HOST) {
        return Some(host.clone());
    }
    req.uri().authority().and_then(|a| HeaderValue::try_from(a.as_str()).ok())
}

/// `Example.com:8787` -> `example.com`; `[::1]:80` -> `[::1]`.
fn host_without_port(host: &str) -> Cow<'_, str> {
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}
