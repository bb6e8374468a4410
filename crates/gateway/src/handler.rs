//! One request, from route lookup to response: assets, or key -> instance -> proxy.

use crate::auth;
use crate::dispatch::{acquire, exchange};
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::forward::{self, ClientInfo, Peer};
use crate::key;
use crate::message::{Answer, ClientRequest};
use crate::path;
use crate::proxy::{self, Pass, Upstream};
use crate::routes::{ContainerTarget, Route, Target};
pub use crate::state::GatewayState;
use crate::upgrade;
use http::uri::{Authority, Scheme};
use http::{header, HeaderValue, Uri, Version};
use http_body::Body as _;
use std::borrow::Cow;
use std::time::Instant;

/// Handles one request; never fails (errors become responses).
pub async fn handle(
    state: &GatewayState,
    upstream: &Upstream,
    peer: &Peer,
    mut req: ClientRequest,
) -> Answer {
    if let Some(token) = &state.peer_token {
        // Boxed: the peer listener's future is larger than the public one's, and every
        // request's future would otherwise be as large as the largest.
        return Box::pin(crate::peer::handle(state, upstream, peer, req, token)).await;
    }
    let started = Instant::now();
    let (request_id, new_id) = crate::message::request_id(&req.fields);
    // Before anything reads the path or the host: every later step (route, key, auth,
    // strip_prefix, the target the instance gets) reads them as `check` leaves them.
    let (host, refused) = match check(&mut req) {
        Ok(host) => (host, None),
        Err(error) => (None, Some(error)),
    };
    let log = state
        .access_log
        .then(|| (req.method.clone(), req.uri.path().to_string()));
    let host_name = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(host_without_port);
    let (route, refused) = match refused {
        None => match state.routes.route(host_name.as_deref(), req.uri.path()) {
            Ok(route) => (route, None),
            Err(error) => (None, Some(error)),
        },
        Some(error) => (None, Some(error)),
    };
    let mut class_key = None;
    // A deployed project's target is made per request from the in-memory project map.
    let mut project = None;
    let target = match route.map(|r| &r.target) {
        Some(Target::Container(target)) => Some(Ok(target)),
        Some(Target::Projects) => {
            project = ContainerTarget::project(&state.instances, req.uri.path());
            Some(
                project
                    .as_ref()
                    .ok_or_else(|| ContainerTarget::missing(&state.instances, req.uri.path())),
            )
        }
        _ => None,
    };
    let body_pending = !req.body.is_end_stream();
    let mut response = match (refused, route.zip(target)) {
        (Some(error), _) => refusal(error, body_pending),
        (None, Some((_, Err(not_found)))) => not_found.into_response().into(),
        (None, Some((route, Ok(target)))) => {
            let client = ClientInfo {
                peer: peer.addr.ip(),
                peer_header: peer.header.clone(),
                trusted: peer.trusted,
                https: state.https,
                host,
                // A new id goes to the instance in place of the client's.
                new_request_id: new_id.then(|| request_id.clone()),
            };
            let result =
                to_instance(state, upstream, route, target, req, client, &mut class_key).await;
            result.unwrap_or_else(|error| refusal(error, body_pending))
        }
        (None, None) => match &state.assets {
            Some(assets) => {
                let headers = req.fields.into_map();
                assets.serve(&req.method, &req.uri, &headers).await.into()
            }
            None => GatewayError::NotFound.into_response().into(),
        },
    };
    response.request_id = Some(request_id.clone());
    // A project's requests count as that project's (see ProjectRef), not as the shared
    // `/containers/*` route's, which keeps only the requests that found no project.
    let stats = match project.as_ref().and_then(|t| t.class.project.as_ref()) {
        Some(project) => &project.requests,
        None => route.map_or(&state.routes.unrouted, |r| &r.stats),
    };
    stats.record(response.status.as_u16(), started.elapsed());
    if let Some((method, path)) = log {
        let (class, key) = class_key.unwrap_or_default();
        tracing::info!(
            target: "valet::access",
            %method,
            %path,
            status = response.status.as_u16(),
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
    req: ClientRequest,
    client: ClientInfo,
    class_key: &mut Option<(String, String)>,
) -> Result<Answer, GatewayError> {
    // Before anything is decided by a field the instance would then not get.
    if let Some(named) = forward::connection_names_own(&req.fields, key::source(&target.rule)) {
        return Err(GatewayError::BadRequest {
            code: "connection_names_own_field",
            message: format!(
                "Connection names {}, a field valet routes by or sets itself",
                String::from_utf8_lossy(named)
            ),
        });
    }
    admit(state, route, &req, &client)?;
    let upgrade = upgrade::is_upgrade(&req.fields, &route.upgrades);
    if upgrade && !req.body.is_end_stream() {
        // The handshake goes to the instance without a body (a WebSocket handshake has none):
        // forwarded with its length, the instance would wait for bytes that never come.
        return Err(GatewayError::BadRequest {
            code: "upgrade_with_body",
            message: "a protocol upgrade request cannot carry a body".into(),
        });
    }
    let key = key::derive(&target.rule, route, &req.uri, &req.fields).map_err(|e| {
        GatewayError::BadRequest {
            code: e.1,
            message: e.0,
        }
    })?;
    if state.access_log {
        *class_key = Some((target.class.label().to_string(), key.to_string()));
    }
    // Cold starts are counted per client (server.cold_starts_per_client).
    let from = client_address(&client, &req.fields);
    let lease = match state
        .instances
        .acquire_ready(&target.class, &key, target.port)
    {
        Some(lease) => lease,
        // A start or a wait: boxed, so that the warm path's future neither carries nor moves
        // the cold path's.
        None => Box::pin(acquire(state, &target.class, &key, target.port, Some(from))).await?,
    };
    let (prefix, uri) = upstream_target(target, &req.uri)?;
    let pass = Pass {
        lease,
        uri,
        prefix,
        client,
        from_peer: false,
        port: target.port,
    };
    exchange(state, upstream, &target.class, req, pass, upgrade).await
}

/// What `strip_prefix` removes (for `X-Forwarded-Prefix`) and the target at the instance when
/// it differs from the request's own (`None`: the request's path and query go as they are).
fn upstream_target(
    target: &ContainerTarget,
    original: &Uri,
) -> Result<(Option<HeaderValue>, Option<Uri>), GatewayError> {
    let Some((stripped, rest)) = target.strip.as_ref().and_then(|s| s.apply(original.path()))
    else {
        return Ok((None, None));
    };
    let uri = proxy::upstream_uri(rest, original).map_err(|_| GatewayError::BadRequest {
        code: "bad_uri",
        message: "request target cannot be forwarded".into(),
    })?;
    Ok((HeaderValue::try_from(stripped).ok(), Some(uri)))
}

/// Rate limit and JWT, both checked before the instance is looked up, so neither a flood nor
/// an anonymous client can wake a sleeping backend.
fn admit(
    state: &GatewayState,
    route: &Route,
    req: &ClientRequest,
    client: &ClientInfo,
) -> Result<(), GatewayError> {
    if let Some(limiter) = &route.limiter {
        limiter
            .check(client_address(client, &req.fields))
            .map_err(|retry_after| GatewayError::TooManyRequests { retry_after })?;
    }
    if route.jwt {
        let verifier = state
            .jwt
            .as_ref()
            .ok_or_else(|| GatewayError::Unauthorized {
                message: "this route requires a token but no [auth] is configured".into(),
            })?;
        let token = auth::token_from(&req.fields, &req.uri)
            .map_err(|e| match e {
                auth::TokenError::NotBearer => GatewayError::Unauthorized {
                    message: "the Authorization field holds no bearer token".into(),
                },
                auth::TokenError::Ambiguous(message) => GatewayError::BadRequest {
                    code: "ambiguous_token",
                    message: message.into(),
                },
            })?
            .ok_or_else(|| GatewayError::Unauthorized {
                message: "a bearer token is required".into(),
            })?;
        verifier
            .verify(&token)
            .map_err(|e| GatewayError::Unauthorized {
                message: format!("invalid token: {e}"),
            })?;
    }
    Ok(())
}

/// The address a rate limit counts: the peer, or, behind a trusted proxy, the last address that
/// proxy added. A client's own `X-Forwarded-For` never changes its bucket.
fn client_address(client: &ClientInfo, headers: &Fields) -> std::net::IpAddr {
    if !client.trusted {
        return client.peer;
    }
    headers
        .text(&forward::X_FORWARDED_FOR)
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(client.peer)
}

/// An answer of valet's own in place of the instance's. Given without reading the whole
/// request body (400, 413, 503, ...), the connection cannot carry another request: it closes
/// after this answer, and the client is told, or it might reuse it and meet the close.
fn refusal(error: GatewayError, body_pending: bool) -> Answer {
    let mut response = error.into_response();
    if body_pending {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response.into()
}

/// What every request must be before it is routed, whichever path it came by (valet's own
/// HTTP/1.1, hyper's HTTP/1.1 or h2, TLS, an upgrade): one host and a path with one meaning,
/// which replaces the one sent (see [`path`]). Returns the host the client asked for.
///
/// One host: never two `Host` fields, and a `Host` that agrees with the target's authority (an
/// h2 `:authority`, an HTTP/1.1 absolute-form target) when both are sent. Routing reads one of
/// them and an instance may read the other: the two must not name different hosts. An HTTP/1.1
/// request without `Host` is refused too (RFC 9112 3.2); HTTP/1.0 has no such field and passes.
fn check(req: &mut ClientRequest) -> Result<Option<HeaderValue>, GatewayError> {
    let bad_host = |code, message: &str| GatewayError::BadRequest {
        code,
        message: message.into(),
    };
    let mut hosts = req.fields.get_all(&header::HOST);
    match (hosts.next(), hosts.next(), req.uri.authority()) {
        (Some(_), Some(_), _) => {
            return Err(bad_host(
                "duplicate_host",
                "a request carries one Host field",
            ))
        }
        (None, _, _) if req.version == Version::HTTP_11 => {
            return Err(bad_host(
                "missing_host",
                "an HTTP/1.1 request carries a Host field",
            ))
        }
        (Some(host), _, _) if !crate::fields::is_host(host) => {
            return Err(bad_host(
                "bad_host",
                "the Host field is not a host name or address with an optional port",
            ))
        }
        (Some(host), _, Some(authority)) if !same_authority(host, authority, req.uri.scheme()) => {
            return Err(bad_host(
                "host_mismatch",
                "the Host field names another host than the request target",
            ))
        }
        _ => {}
    }
    // RFC 9112 6.1: a transfer coding valet does not know is 501. hyper reads `gzip, chunked`
    // as chunked and removes only the chunking, so the instance would get a coded body with
    // nothing saying so. (A head valet parsed itself has no `Transfer-Encoding`: such a request
    // goes to hyper, so only a header map can hold one, and a map finds it without a scan.)
    let unknown_coding = matches!(&req.fields, Fields::Map(map) if map
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| crate::http1::framing::list(v.as_bytes()))
        .any(|coding| !coding.eq_ignore_ascii_case(b"chunked")));
    if unknown_coding {
        return Err(GatewayError::NotImplemented {
            message: "the only transfer coding valet passes on is chunked",
        });
    }
    let bad_path = |code| GatewayError::BadRequest {
        code,
        message: "the request path has no single meaning".into(),
    };
    if let Some(normal) = path::normalise(req.uri.path()).map_err(|e| bad_path(e.0))? {
        req.uri = with_path(&req.uri, &normal).map_err(|_| bad_path("bad_uri"))?;
    }
    Ok(request_host(req))
}

/// Whether a `Host` value names the same host and port as a target's authority (RFC 9113
/// 8.3.1: compared as RFC 3986 6.2 normalises them, so case and a default port do not count).
fn same_authority(host: &[u8], authority: &Authority, scheme: Option<&Scheme>) -> bool {
    let Ok(host) = Authority::try_from(host) else {
        return false;
    };
    let default = if scheme == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    };
    host.host().eq_ignore_ascii_case(authority.host())
        && host.port_u16().unwrap_or(default) == authority.port_u16().unwrap_or(default)
}

/// `uri` with its path replaced (scheme, authority and query kept).
fn with_path(uri: &Uri, path: &str) -> Result<Uri, http::Error> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = proxy::upstream_uri(path, uri)?.into_parts().path_and_query;
    Ok(Uri::from_parts(parts)?)
}

/// The host the client asked for: the Host header, or the authority of an h2 request.
fn request_host(req: &ClientRequest) -> Option<HeaderValue> {
    if let Some(host) = req.fields.value(&header::HOST) {
        return Some(host);
    }
    req.uri
        .authority()
        .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
}

/// `Example.com:8787` -> `example.com`; `[::1]:80` -> `[::1]`; `example.com.` (the same name,
/// fully qualified) -> `example.com`, so that a route bound to a host is not missed by a dot.
fn host_without_port(host: &str) -> Cow<'_, str> {
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::RequestBody;

    fn request(version: Version, uri: &str, hosts: &[&str]) -> ClientRequest {
        let mut req = http::Request::new(RequestBody::Buffered(None));
        *req.version_mut() = version;
        *req.uri_mut() = uri.parse().unwrap();
        for host in hosts {
            req.headers_mut()
                .append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        req.into()
    }

    /// The error code `check` refuses with, or the host it found and the path it left.
    fn checked(version: Version, uri: &str, hosts: &[&str]) -> Result<(String, String), String> {
        let mut req = request(version, uri, hosts);
        match check(&mut req) {
            Ok(host) => {
                let host = host.map(|h| h.to_str().unwrap().to_string());
                Ok((host.unwrap_or_default(), req.uri.path().to_string()))
            }
            Err(GatewayError::BadRequest { code, .. }) => Err(code.to_string()),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_host_is_routed_without_its_port_its_case_or_a_final_dot() {
        for (host, name) in [
            ("Example.com:8787", "example.com"),
            ("example.com.", "example.com"),
            ("EXAMPLE.COM.:443", "example.com"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(host_without_port(host), name, "{host}");
        }
    }

    #[test]
    fn an_http11_request_needs_one_host_an_http10_one_none() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        let missing = Err("missing_host".to_string());
        assert_eq!(checked(HTTP_11, "/x", &[]), missing);
        assert_eq!(checked(HTTP_11, "http://a.test/x", &[]), missing);
        assert_eq!(
            checked(HTTP_10, "/x", &[]),
            Ok((String::new(), "/x".into()))
        );
        let duplicate = Err("duplicate_host".to_string());
        assert_eq!(checked(HTTP_11, "/x", &["a.test", "b.test"]), duplicate);
        assert_eq!(checked(HTTP_10, "/x", &["a.test", "a.test"]), duplicate);
        assert_eq!(
            checked(HTTP_11, "/x", &["a.test"]),
            Ok(("a.test".into(), "/x".into()))
        );
    }

    #[test]
    fn a_host_field_must_agree_with_the_targets_authority() {
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        // h2: `:authority` alone is the host; a Host beside it must name the same one.
        assert_eq!(
            checked(HTTP_2, "https://a.test/x", &[]),
            Ok(("a.test".into(), "/x".into()))
        );
        for same in ["a.test", "A.Test", "a.test:443"] {
            assert!(
                checked(HTTP_2, "https://a.test/x", &[same]).is_ok(),
                "{same}"
            );
        }
        assert!(checked(HTTP_2, "http://a.test:80/x", &["a.test"]).is_ok());
        let mismatch = Err("host_mismatch".to_string());
        for other in ["b.test", "a.test:8443", "a.test.", "a.test:80", ""] {
            assert_eq!(
                checked(HTTP_2, "https://a.test/x", &[other]),
                mismatch,
                "{other}"
            );
        }
        // HTTP/1.1 in absolute form: the same rule.
        assert_eq!(checked(HTTP_11, "http://a.test/x", &["b.test"]), mismatch);
        assert!(checked(HTTP_11, "http://a.test/x", &["a.test:80"]).is_ok());
    }

    #[test]
    fn the_path_every_later_step_reads_is_the_normalised_one() {
        let (_, path) = checked(Version::HTTP_11, "//private//x?q=//", &["a.test"]).unwrap();
        assert_eq!(path, "/private/x");
        let mut req = request(Version::HTTP_11, "//private/./x?q=//", &["a.test"]);
        check(&mut req).unwrap();
        assert_eq!(
            req.uri.path_and_query().unwrap().as_str(),
            "/private/x?q=//"
        );
    }
}
