//! Header rewriting on the way to the instance and back: hop-by-hop headers removed,
//! `X-Forwarded-*` set (replaced unless the peer is a trusted proxy), a request id kept or made.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};
use valet_config::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Headers valet may add to a request on its way to the instance (`X-Request-Id`, the four
/// `X-Forwarded-*`, `Host`, `Content-Length`): a request's header map is made with room for
/// them, since each time a map outgrows its room it is reallocated and rehashed whole.
pub const ADDED_TO_REQUEST: usize = 7;
/// ... and to an answer on its way back (`X-Request-Id`, `Content-Length`, `Connection`).
pub const ADDED_TO_RESPONSE: usize = 3;
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
pub static HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
];

/// Headers that frame a message or that valet sets itself. A backend that reads `-` and `_`
/// alike (CGI, WSGI, PHP: both become `HTTP_X_FORWARDED_FOR`) would take a client's
/// `X_Forwarded_For` or `Transfer_Encoding` for one of these, so such lookalikes never pass.
pub static GUARDED: [&str; 17] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "content-length",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-request-id",
];

/// Removes headers whose name, with `_` read as `-`, is one of [`GUARDED`].
pub fn remove_underscore_lookalikes(headers: &mut HeaderMap) {
    // Almost no request has a `_` in a header name: one scan, no allocation.
    if !headers.keys().any(|name| name.as_str().contains('_')) {
        return;
    }
    let lookalikes: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .filter(|name| GUARDED.contains(&name.as_str().replace('_', "-").as_str()))
        .cloned()
        .collect();
    for name in lookalikes {
        headers.remove(name);
    }
}

/// Removes the hop-by-hop headers, plus the ones `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names present is cheaper than a
    // hashed removal per name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return;
    }
    // Split the raw bytes: a value with a non-ASCII byte elsewhere still names its headers.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| crate::h1::list(v.as_bytes()))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client end of one connection, worked out once per connection rather than per request.
pub struct Peer {
    pub addr: SocketAddr,
    /// The address as an `X-Forwarded-For` value.
    pub header: HeaderValue,
    /// Whether the address is in `trusted_proxies`.
    pub trusted: bool,
}

impl Peer {
    pub fn new(addr: SocketAddr, trusted_proxies: &[IpNet]) -> Self {
        let ip = addr.ip();
        Self {
            addr,
            header: HeaderValue::try_from(ip.to_string()).expect("an IP address is a header value"),
            trusted: trusted_proxies.iter().any(|net| net.contains(ip)),
        }
    }
}

/// What the gateway knows about the client side of a request.
#[derive(Clone)]
pub struct ClientInfo {
    pub peer: IpAddr,
    /// `peer` rendered for `X-Forwarded-For`.
    pub peer_header: HeaderValue,
    /// Whether `peer` is in `trusted_proxies`: then its `X-Forwarded-*` are kept and extended.
    pub trusted: bool,
    pub https: bool,
    /// Host the client asked for (Host header or h2 authority).
    pub host: Option<HeaderValue>,
}

/// Everything done to a client's request headers before they go to an instance.
pub fn prepare_request(headers: &mut HeaderMap, client: &ClientInfo, prefix: Option<HeaderValue>) {
    remove_hop_by_hop(headers);
    remove_underscore_lookalikes(headers);
    set_forwarded(headers, client);
    if let Some(prefix) = prefix {
        headers.insert(X_FORWARDED_PREFIX.clone(), prefix);
    }
    // h2 clients send no Host header, only an authority; instances speak HTTP/1.1 and need one.
    if let Some(host) = &client.host {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, host.clone());
        }
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` for the instance.
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientInfo) {
    // An untrusted peer's own X-Forwarded-For is replaced, not read.
    let prior = if client.trusted {
        headers.get(&X_FORWARDED_FOR)
    } else {
        None
    };
    let forwarded_for = match prior {
        Some(prior) => {
            let mut chain = prior.as_bytes().to_vec();
            chain.extend_from_slice(b", ");
            chain.extend_from_slice(client.peer_header.as_bytes());
            HeaderValue::from_bytes(&chain).ok()
        }
        None => Some(client.peer_header.clone()),
    };
    if let Some(v) = forwarded_for {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !(client.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if client.https { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(client.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match &client.host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    if !client.trusted {
        headers.remove(&X_FORWARDED_PREFIX);
    }
}

/// The client's request id if it sent a sane one, else a new one. Returned to be echoed back.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        if !id.is_empty() && id.len() <= 128 {
            return id.clone();
        }
    }
    let id = new_request_id();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// 128 random bits as 32 hex characters.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut out = [0u8; 32];
    for byte in out.iter_mut() {
        *byte = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&out).expect("hex is a valid header value")
}

/// Whether a request asks to switch protocols (WebSocket and friends, HTTP/1.1 only).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_value_with_a_non_ascii_byte_still_names_its_headers() {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"x-secret, caf\xc3\xa9").unwrap();
        headers.insert(header::CONNECTION, value);
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert!(!headers.contains_key("x-secret"));
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(headers.contains_key("x-kept"));
    }
}
