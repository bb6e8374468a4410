//! Header rewriting on the way to the instance and back: hop-by-hop headers removed,
//! `X-Forwarded-*` set (replaced unless the peer is a trusted proxy), a request id kept or made.
//!
//! Every field that tells an instance who the client is (`X-Forwarded-For`, `Forwarded`,
//! `X-Real-IP`, `True-Client-IP`, ...) follows one rule: from a trusted proxy it passes (and the
//! ones valet sets are extended or kept), from anyone else it is dropped, and valet sets its own
//! `X-Forwarded-For`, `X-Real-IP` and `Forwarded` from the peer address. Fields that name
//! another request target than the one valet routed (`X-Original-URL`, `X-Rewrite-URL`,
//! `X-Original-URI`, `X-Forwarded-Uri`, `X-Forwarded-Path`) never pass, whoever sent them.

use crate::fields::Fields;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};
use valet_config::IpNet;
use valet_instances::PeerRoute;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1). `HTTP2-Settings`
/// belongs to an `h2c` upgrade (RFC 7540 3.2.1), which valet never forwards.
pub static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
    &HTTP2_SETTINGS,
];

/// Headers that frame a message, that valet sets itself, or that it passes from trusted proxies
/// only or never. A backend that reads `-` and `_`
/// alike (CGI, WSGI, PHP: both become `HTTP_X_FORWARDED_FOR`) would take a client's
/// `X_Forwarded_For` or `Transfer_Encoding` for one of these, so such lookalikes never pass.
pub static GUARDED: [&str; 34] = [
    "x-valet-peer",
    "x-valet-instance",
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
    "http2-settings",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "client-ip",
    "x-forwarded",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
];

/// Fields valet reads to route a request or sets on its way to the instance. A request whose
/// `Connection` names one of them (or the field its key comes from) is refused: the field
/// would be dropped as hop-by-hop after valet decided by it, so the instance would see another
/// request than the one valet routed, keyed and authorised. RFC 9110 7.6.1 forbids naming a
/// field meant for every recipient there anyway; no client has a reason to.
static OWN: [&str; 8] = [
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-request-id",
];

/// Removes the hop-by-hop headers, plus the ones `Connection` names: the rule of
/// [`drops_on_the_way`], for answers that came in a header map (hyper's client, an answer
/// passed on through hyper's server).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let fields = || {
        headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    };
    // Most messages carry none of them: one pass over the names present, no allocation.
    if !fields().any(|(name, _)| is_hop_by_hop(name)) {
        return;
    }
    let connection = headers.contains_key(header::CONNECTION);
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| drops_on_the_way(fields(), name.as_str().as_bytes(), connection))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// Whether a field of a message passed on is dropped as describing the connection it came on:
/// one of [`HOP_BY_HOP`], or named by one of the message's `Connection` fields. The one rule
/// for answers on every path (valet's HTTP/1.1 server writing spans, and header maps).
/// `connection`: whether the message has a `Connection` field at all; almost none names
/// fields, and without one the scan of every field per field is skipped.
pub(crate) fn drops_on_the_way<'h>(
    fields: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    name: &[u8],
    connection: bool,
) -> bool {
    is_hop_by_hop(name) || (connection && named_by_connection(fields, name))
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
    /// A request id valet made because the client sent none it could keep: it replaces the
    /// client's on the way to the instance.
    pub new_request_id: Option<HeaderValue>,
}

/// How a client's request head changes on its way to an instance. It is applied as the head is
/// written ([`Rewrite::fields`] passes or drops each of the client's fields, [`Rewrite::added`]
/// gives valet's own), so that the common request costs one pass over its fields and no
/// header-map work; [`prepare_request`] applies the same rules to a map.
///
/// Dropped: hop-by-hop fields and those the client's `Connection` names, `_` lookalikes of
/// [`GUARDED`] names, the client's `X-Forwarded-For` (valet's value replaces it), an untrusted
/// peer's other `X-Forwarded-*` and client-address fields, a `X-Forwarded-Prefix` when valet
/// sets one, an `X-Request-Id` that valet replaces, and anyone's `X-Original-URL` and
/// `X-Rewrite-URL`.
pub struct Rewrite<'a> {
    pub client: &'a ClientInfo,
    /// What `strip_prefix` removed, for `X-Forwarded-Prefix`.
    pub prefix: Option<HeaderValue>,
    /// `Host` for a request that has none and no authority (HTTP/1.0): the instance's address.
    pub fallback_host: Option<SocketAddr>,
    /// Where the request goes next.
    pub hop: Hop<'a>,
}

/// The next hop of a request, which decides what the rewrite adds.
#[derive(Clone, Copy)]
pub enum Hop<'a> {
    /// Straight to an instance of this replica.
    Instance,
    /// To the replica that owns the key (cluster mode): rewritten as for the instance, plus
    /// the peer token and the instance (epoch, port index, class, key) for the owner's peer
    /// listener.
    Owner(&'a PeerRoute, usize),
    /// From the peer listener to the instance: the forwarding replica already rewrote the
    /// request for the instance, so it passes as it came, without the peer's own fields.
    FromPeer,
}

impl<'a> Hop<'a> {
    /// The hop for a lease (`via`: the key is another replica's) of a request that came from
    /// a client or (`from_peer`) through the peer listener.
    pub fn of(via: Option<&'a std::sync::Arc<PeerRoute>>, port: usize, from_peer: bool) -> Self {
        match (via, from_peer) {
            (Some(route), _) => Hop::Owner(route, port),
            (None, true) => Hop::FromPeer,
            (None, false) => Hop::Instance,
        }
    }
}

/// The fields a forwarded request carries to the owner's peer listener. Never passed on from
/// a client, nor to an instance.
pub static X_VALET_PEER: HeaderName = HeaderName::from_static("x-valet-peer");
pub static X_VALET_INSTANCE: HeaderName = HeaderName::from_static("x-valet-instance");
/// On a peer listener's 503: this replica does not own the key; the forwarding replica looks
/// the owner up again rather than passing the 503 on.
pub static X_VALET_NOT_OWNER: HeaderName = HeaderName::from_static("x-valet-not-owner");

/// What a pass over a client's fields found that decides which fields valet adds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen<'h> {
    pub host: bool,
    pub content_length: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    real_ip: bool,
    /// The first `X-Forwarded-For` value, extended when the peer is trusted.
    forwarded_for: Option<&'h [u8]>,
}

/// A client field's part in the rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Other,
    Dropped,
    Connection,
    Host,
    ContentLength,
    ForwardedFor,
    ForwardedProto,
    ForwardedHost,
    ForwardedPrefix,
    RequestId,
    RealIp,
    /// `Forwarded` (RFC 7239): a trusted proxy's elements pass, valet's own follow them.
    Forwarded,
    /// Other fields that name the client's address or the hops before valet: passed from a
    /// trusted proxy only.
    ClientAddress,
    /// A request target other than the one sent (`X-Original-URL`, `X-Rewrite-URL`): some
    /// frameworks (Symfony, Laminas, IIS's URL Rewrite) route on it in place of the request
    /// line's; `X-Original-URI` (nginx's auth_request convention), `X-Forwarded-Uri` (Traefik's
    /// forward auth) and `X-Forwarded-Path` are read the same way by auth middleware and apps
    /// behind those proxies. Dropped always, from trusted proxies too: valet matched the route, checked
    /// `auth`, derived the key and applied `strip_prefix` on the request line's path, and an
    /// instance that routes on another path serves what valet never checked. A proxy in front
    /// of valet is trusted to say who the client is, not to route past valet's own decision;
    /// one that rewrites paths sends the rewritten one as its request target.
    TargetOverride,
    /// valet's own peer fields (cluster mode): only valet sets them, on its way to a peer.
    Peer,
}

/// Sorts a field name (any case) by what the rewrite does with it: one length-first match per
/// field instead of a hashed lookup per rule.
fn field(name: &[u8]) -> Field {
    let is = |want: &str| name.eq_ignore_ascii_case(want.as_bytes());
    match name.len() {
        2 if is("te") => Field::Dropped,
        4 if is("host") => Field::Host,
        7 if is("upgrade") || is("trailer") => Field::Dropped,
        9 if is("x-real-ip") => Field::RealIp,
        9 if is("forwarded") => Field::Forwarded,
        9 if is("client-ip") => Field::ClientAddress,
        11 if is("x-forwarded") => Field::ClientAddress,
        11 if is("x-client-ip") => Field::ClientAddress,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::Dropped,
        12 if is("x-request-id") => Field::RequestId,
        12 if is("x-valet-peer") => Field::Peer,
        16 if is("x-valet-instance") => Field::Peer,
        13 if is("x-rewrite-url") => Field::TargetOverride,
        14 if is("content-length") => Field::ContentLength,
        14 if is("http2-settings") => Field::Dropped,
        14 if is("true-client-ip") => Field::ClientAddress,
        14 if is("x-original-url") || is("x-original-uri") => Field::TargetOverride,
        15 if is("x-forwarded-for") => Field::ForwardedFor,
        15 if is("x-forwarded-uri") => Field::TargetOverride,
        16 if is("proxy-connection") => Field::Dropped,
        16 if is("x-forwarded-host") => Field::ForwardedHost,
        16 if is("x-forwarded-path") => Field::TargetOverride,
        16 if is("cf-connecting-ip") || is("fastly-client-ip") => Field::ClientAddress,
        17 if is("x-forwarded-proto") => Field::ForwardedProto,
        17 if is("transfer-encoding") => Field::Dropped,
        18 if is("x-forwarded-prefix") => Field::ForwardedPrefix,
        18 if is("x-forwarded-server") => Field::ClientAddress,
        19 if is("proxy-authorization") => Field::Dropped,
        19 if is("x-cluster-client-ip") => Field::ClientAddress,
        24 if is("x-original-forwarded-for") => Field::ClientAddress,
        _ => Field::Other,
    }
}

/// Whether a field name (any case) is one of [`HOP_BY_HOP`]: read off [`field`]'s one match per
/// name, which costs less per answer field than eight comparisons (a test holds the two to the
/// same names).
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    matches!(field(name), Field::Dropped | Field::Connection)
}

/// Whether `name`, with `_` read as `-`, is one of [`GUARDED`] (and has a `_`: the name itself
/// is not its own lookalike). Most names differ from every guarded one of their length in the
/// first byte, so this costs less than looking for a `_` first.
fn is_lookalike(name: &[u8]) -> bool {
    let mut underscore = false;
    let same = |guarded: &&str| {
        guarded.len() == name.len()
            && guarded.bytes().zip(name).all(|(g, &n)| {
                underscore |= n == b'_';
                g == n.to_ascii_lowercase() || (g == b'-' && n == b'_')
            })
    };
    GUARDED.iter().any(same) && underscore
}

/// Whether a `Connection` value among `fields` lists `name`.
pub(crate) fn named_by_connection<'h>(
    fields: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    name: &[u8],
) -> bool {
    fields
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| crate::h1::list(value))
        .any(|token| token.eq_ignore_ascii_case(name))
}

/// The first field a request's `Connection` names that valet routes by or sets ([`OWN`]), or
/// that its key comes from (`key_field`, lower case; see [`crate::key::source`]), each read
/// with `_` as `-` as the key rule reads them. Such a request is refused before anything is
/// decided by it (see [`OWN`] for why).
///
/// A byte comparison per `Connection` element and no allocation: nearly every request has
/// none or `keep-alive`/`close`, which no length here shares.
pub fn connection_names_own<'h>(fields: &'h Fields, key_field: Option<&[u8]>) -> Option<&'h [u8]> {
    let own = |token: &[u8]| {
        key_field.is_some_and(|key| crate::fields::same_field(token, key))
            || OWN
                .iter()
                .any(|own| crate::fields::same_field(token, own.as_bytes()))
    };
    fields
        .get_all(&header::CONNECTION)
        .flat_map(crate::h1::list)
        .find(|token| own(token))
}

impl<'a> Rewrite<'a> {
    /// Goes through the client's fields (name, value), calling `each` with whether the field
    /// passes to the instance. `fields` makes the iterator again for each pass.
    pub fn fields<'h, I>(
        &self,
        fields: impl Fn() -> I,
        mut each: impl FnMut(&'h [u8], &'h [u8], bool),
    ) -> Seen<'h>
    where
        I: Iterator<Item = (&'h [u8], &'h [u8])>,
    {
        let trusted = self.client.trusted;
        let from_peer = matches!(self.hop, Hop::FromPeer);
        let mut seen = Seen::default();
        // Almost no request names fields in `Connection` (browsers send `keep-alive`): the
        // check per field runs only when there is one.
        let connection =
            fields().any(|(name, _)| name.len() == 10 && name.eq_ignore_ascii_case(b"connection"));
        for (name, value) in fields() {
            // A field the client's `Connection` names is dropped whatever it is, and one that
            // valet sets is then set as if the client had not sent it.
            if connection && named_by_connection(fields(), name) {
                each(name, value, false);
                continue;
            }
            let kind = field(name);
            if from_peer {
                // Rewritten by the forwarding replica already; only this hop's fields go.
                let keep = !matches!(kind, Field::Dropped | Field::Connection | Field::Peer);
                seen.host |= kind == Field::Host;
                seen.content_length |= kind == Field::ContentLength;
                each(name, value, keep);
                continue;
            }
            let keep = match kind {
                Field::Other => !is_lookalike(name),
                Field::Dropped | Field::Connection | Field::TargetOverride | Field::Peer => false,
                Field::Host => {
                    seen.host = true;
                    true
                }
                Field::ContentLength => {
                    seen.content_length = true;
                    true
                }
                Field::ForwardedFor => {
                    if seen.forwarded_for.is_none() {
                        seen.forwarded_for = Some(value);
                    }
                    false
                }
                Field::ForwardedProto => {
                    seen.forwarded_proto = true;
                    trusted
                }
                Field::ForwardedHost => {
                    seen.forwarded_host = true;
                    trusted
                }
                Field::ForwardedPrefix => trusted && self.prefix.is_none(),
                Field::RealIp => {
                    seen.real_ip = true;
                    trusted
                }
                Field::Forwarded | Field::ClientAddress => trusted,
                Field::RequestId => self.client.new_request_id.is_none(),
            };
            each(name, value, keep);
        }
        seen
    }

    /// valet's own fields, given what the pass over the client's found, each value in parts
    /// (written one after another): a value made of the client's and valet's costs no
    /// allocation when the head is written.
    pub fn added(&self, seen: &Seen<'_>, mut add: impl FnMut(&HeaderName, &[&[u8]])) {
        let client = self.client;
        match self.hop {
            Hop::FromPeer => {
                if !seen.host {
                    if let Some(addr) = self.fallback_host {
                        add(&header::HOST, &[addr.to_string().as_bytes()]);
                    }
                }
                return;
            }
            Hop::Owner(route, port) => {
                add(&X_VALET_PEER, &[route.token.as_bytes()]);
                let numbers = format!("{} {port} ", route.epoch);
                add(
                    &X_VALET_INSTANCE,
                    &[numbers.as_bytes(), route.target.as_bytes()],
                );
            }
            Hop::Instance => {}
        }
        let peer = client.peer_header.as_bytes();
        if let Some(id) = &client.new_request_id {
            add(&X_REQUEST_ID, &[id.as_bytes()]);
        }
        // An untrusted peer's own X-Forwarded-For is replaced, not read.
        match seen.forwarded_for.filter(|_| client.trusted) {
            Some(prior) => add(&X_FORWARDED_FOR, &[prior, b", ", peer]),
            None => add(&X_FORWARDED_FOR, &[peer]),
        }
        if !(client.trusted && seen.real_ip) {
            add(&X_REAL_IP, &[peer]);
        }
        let proto: &[u8] = if client.https { b"https" } else { b"http" };
        if !(client.trusted && seen.forwarded_proto) {
            add(&X_FORWARDED_PROTO, &[proto]);
        }
        if !(client.trusted && seen.forwarded_host) {
            if let Some(host) = &client.host {
                add(&X_FORWARDED_HOST, &[host.as_bytes()]);
            }
        }
        // This hop's element (RFC 7239 4): an IPv6 address is bracketed and quoted, and so is a
        // host (its `:port` is no token). A host that cannot be quoted as it is stays out.
        let (open, close): (&[u8], &[u8]) = match client.peer {
            IpAddr::V4(_) => (b"for=", b""),
            IpAddr::V6(_) => (b"for=\"[", b"]\""),
        };
        match client.host.as_ref().map(HeaderValue::as_bytes) {
            Some(host)
                if host
                    .iter()
                    .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\') =>
            {
                let value = [open, peer, close, b";host=\"", host, b"\";proto=", proto];
                add(&header::FORWARDED, &value);
            }
            _ => add(&header::FORWARDED, &[open, peer, close, b";proto=", proto]),
        }
        if let Some(prefix) = &self.prefix {
            add(&X_FORWARDED_PREFIX, &[prefix.as_bytes()]);
        }
        // h2 clients send no Host header, only an authority; instances speak HTTP/1.1 and need
        // one. A request with neither gets the instance's address.
        if !seen.host {
            if let Some(host) = &client.host {
                add(&header::HOST, &[host.as_bytes()]);
            } else if let Some(addr) = self.fallback_host {
                add(&header::HOST, &[addr.to_string().as_bytes()]);
            }
        }
    }
}

/// [`Rewrite`] applied to a header map (the upgrade handshake goes through hyper's client).
pub fn prepare_request(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    prefix: Option<HeaderValue>,
    hop: Hop<'_>,
) {
    let rewrite = Rewrite {
        client,
        prefix,
        fallback_host: None,
        hop,
    };
    let mut dropped = Vec::new();
    let mut added = Vec::new();
    let fields = || {
        headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    };
    let seen = rewrite.fields(fields, |name, _, keep| {
        if !keep {
            dropped.extend(HeaderName::from_bytes(name).ok());
        }
    });
    rewrite.added(&seen, |name, parts| {
        if let Ok(value) = HeaderValue::from_bytes(&parts.concat()) {
            added.push((name.clone(), value));
        }
    });
    for name in dropped {
        headers.remove(name);
    }
    // Appended: a name valet sets is either dropped from the client's above or, like a
    // trusted proxy's `Forwarded`, extended by valet's value after the client's.
    for (name, value) in added {
        headers.append(name, value);
    }
}

/// The client's request id if it sent a sane one, else a new one (`true`: new, to be sent to
/// the instance in place of the client's). Returned to be echoed back.
pub fn request_id(headers: &Fields) -> (HeaderValue, bool) {
    if let Some(id) = headers.value(&X_REQUEST_ID) {
        if !id.is_empty() && id.len() <= 128 {
            return (id, false);
        }
    }
    (new_request_id(), true)
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

/// Whether a request asks to switch protocols in a way its route allows (`upgrades`, lower
/// case; HTTP/1.1 only): every protocol its `Upgrade` offers must be allowed, since the instance
/// may pick any of them. Any other (`h2c` on a route that does not name it, `TLS/1.0`) would
/// turn the connection into a tunnel that later requests take past routing and auth: such a
/// request goes on as an ordinary one, its `Upgrade` dropped as a hop-by-hop field.
pub fn is_upgrade(headers: &Fields, allowed: &[Box<str>]) -> bool {
    if allowed.is_empty() {
        return false;
    }
    let mut protocols = headers
        .get_all(&header::UPGRADE)
        .flat_map(crate::h1::list)
        .peekable();
    protocols.peek().is_some()
        && protocols.all(|offered| allowed.iter().any(|a| allows(a, offered)))
        && headers
            .get_all(&header::CONNECTION)
            .filter_map(crate::fields::text)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use http_body_util::Empty;

    fn client(trusted: bool) -> ClientInfo {
        ClientInfo {
            peer: IpAddr::from([10, 0, 0, 9]),
            peer_header: HeaderValue::from_static("10.0.0.9"),
            trusted,
            https: true,
            host: Some(HeaderValue::from_static("app.test")),
            new_request_id: None,
        }
    }

    /// The request head as it goes to the instance, its field lines sorted, with the
    /// client's fields parsed by valet (names as sent) and, the same again, by hyper (names
    /// lower-cased): both must come out alike, but for the case of the client's own names.
    fn written(fields: &[(&str, &str)], rewrite: &Rewrite<'_>) -> Vec<String> {
        let raw: String = fields
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let spans = crate::fields::tests::spans(&raw);
        let map = Fields::Map(crate::fields::tests::spans(&raw).into_map());
        let [from_spans, from_map] = [spans, map].map(|fields| {
            let mut out = BytesMut::new();
            let body = Empty::<bytes::Bytes>::new();
            crate::h1::encode_request(
                &http::Method::GET,
                "/",
                &fields,
                Some(rewrite),
                &body,
                &mut out,
            );
            let text = String::from_utf8(out.to_vec()).unwrap();
            let mut lines: Vec<String> = text
                .split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            lines.sort();
            lines
        });
        let lower = |lines: &[String]| -> Vec<String> {
            let mut lower: Vec<String> = lines.iter().map(|l| l.to_ascii_lowercase()).collect();
            lower.sort();
            lower
        };
        assert_eq!(lower(&from_spans), lower(&from_map));
        from_map
    }

    #[test]
    fn an_untrusted_clients_head_is_rewritten_as_it_is_written() {
        let mut client = client(false);
        client.new_request_id = Some(HeaderValue::from_static("new-id"));
        let rewrite = Rewrite {
            client: &client,
            prefix: Some(HeaderValue::from_static("/api")),
            fallback_host: None,
            hop: Hop::Instance,
        };
        let lines = written(
            &[
                ("Host", "app.test"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "evil.test"),
                ("x-forwarded-prefix", "/evil"),
                ("x-request-id", "client-id"),
                ("x_forwarded_for", "7.7.7.7"),
                ("transfer_encoding", "chunked"),
                ("Connection", "keep-alive, X-Secret"),
                ("Keep-Alive", "timeout=5"),
                ("x-secret", "1"),
                ("te", "trailers"),
                ("x-kept", "yes"),
                ("x_kept_too", "yes"),
                ("X-Real-IP", "6.6.6.6"),
                ("Forwarded", "for=6.6.6.6;proto=https"),
                ("True-Client-IP", "6.6.6.6"),
                ("X-Client-IP", "6.6.6.6"),
                ("CF-Connecting-IP", "6.6.6.6"),
                ("Fastly-Client-IP", "6.6.6.6"),
                ("X-Cluster-Client-IP", "6.6.6.6"),
                ("X-Original-Forwarded-For", "6.6.6.6"),
                ("x_real_ip", "6.6.6.6"),
                ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
                ("Client-IP", "6.6.6.6"),
                ("X-Forwarded", "for=6.6.6.6"),
                ("X-Forwarded-Server", "evil.test"),
                ("X-Original-URL", "/admin"),
                ("X-Rewrite-URL", "/admin"),
                ("X-Original-URI", "/admin"),
                ("X-Forwarded-Uri", "/admin"),
                ("X-Forwarded-Path", "/admin"),
                ("x_forwarded_uri", "/admin"),
                ("client_ip", "6.6.6.6"),
                ("X_Original_URL", "/admin"),
                ("x_rewrite_url", "/admin"),
            ],
            &rewrite,
        );
        assert_eq!(
            lines,
            [
                "forwarded: for=10.0.0.9;host=\"app.test\";proto=https",
                "host: app.test",
                "x-forwarded-for: 10.0.0.9",
                "x-forwarded-host: app.test",
                "x-forwarded-prefix: /api",
                "x-forwarded-proto: https",
                "x-kept: yes",
                "x-real-ip: 10.0.0.9",
                "x-request-id: new-id",
                "x_kept_too: yes",
            ]
        );
    }

    #[test]
    fn a_trusted_proxys_forwarded_fields_are_kept_and_extended() {
        let client = client(true);
        let rewrite = Rewrite {
            client: &client,
            prefix: None,
            fallback_host: None,
            hop: Hop::Instance,
        };
        let lines = written(
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-for", "5.6.7.8"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "outer.test"),
                ("x-forwarded-prefix", "/outer"),
                ("x-request-id", "client-id"),
                ("x-real-ip", "1.2.3.4"),
                ("forwarded", "for=1.2.3.4"),
                ("true-client-ip", "1.2.3.4"),
                ("client-ip", "1.2.3.4"),
                ("x-forwarded", "for=1.2.3.4"),
                ("x-forwarded-server", "outer.test"),
                // A trusted proxy still cannot send the instance to another path.
                ("x-original-url", "/admin"),
                ("x-rewrite-url", "/admin"),
                ("x_forwarded_server", "outer.test"),
            ],
            &rewrite,
        );
        assert_eq!(
            lines,
            [
                "client-ip: 1.2.3.4",
                "forwarded: for=1.2.3.4",
                "forwarded: for=10.0.0.9;host=\"app.test\";proto=https",
                "host: app.test",
                "true-client-ip: 1.2.3.4",
                "x-forwarded-for: 1.2.3.4, 10.0.0.9",
                "x-forwarded-host: outer.test",
                "x-forwarded-prefix: /outer",
                "x-forwarded-proto: http",
                "x-forwarded-server: outer.test",
                "x-forwarded: for=1.2.3.4",
                "x-real-ip: 1.2.3.4",
                "x-request-id: client-id",
            ]
        );
    }

    #[test]
    fn connection_may_not_name_a_field_valet_routes_by_or_sets() {
        let named = |raw: &str, key: Option<&[u8]>| {
            let spans = crate::fields::tests::spans(raw);
            let map = Fields::Map(crate::fields::tests::spans(raw).into_map());
            let found = connection_names_own(&spans, key).map(<[u8]>::to_vec);
            assert_eq!(found, connection_names_own(&map, key).map(<[u8]>::to_vec));
            found.map(|n| String::from_utf8(n).unwrap())
        };
        let key = Some(&b"x-tenant"[..]);
        let with = |connection: &str| format!("X-Tenant: a\r\nConnection: {connection}\r\n");
        assert_eq!(named(&with("X-Tenant"), key).as_deref(), Some("X-Tenant"));
        assert_eq!(
            named(&with("close, x_tenant"), key).as_deref(),
            Some("x_tenant")
        );
        // Any `Connection` field counts, not only the first.
        let two = "Connection: keep-alive\r\nX-Tenant: a\r\nConnection: X-TENANT\r\n";
        assert_eq!(named(two, key).as_deref(), Some("X-TENANT"));
        for own in OWN {
            let upper = own.to_ascii_uppercase().replace('-', "_");
            assert_eq!(named(&with(own), None).as_deref(), Some(own));
            assert_eq!(named(&with(&upper), None), Some(upper));
        }
        assert_eq!(
            named("Connection: Cookie\r\n", Some(b"cookie")).as_deref(),
            Some("Cookie")
        );
        // What clients really send, and fields valet neither reads nor sets, are no reason.
        for fine in [
            "keep-alive",
            "close",
            "Upgrade",
            "X-Other, TE",
            "x-tenants",
            "",
        ] {
            assert_eq!(named(&with(fine), key), None, "{fine}");
        }
        assert_eq!(named("X-Tenant: a\r\n", key), None);
        assert_eq!(named("Connection: Cookie\r\n", key), None);
    }

    #[test]
    fn a_field_that_connection_names_is_set_by_valet_as_if_never_sent() {
        let mut client = client(true);
        client.host = None;
        let rewrite = Rewrite {
            client: &client,
            prefix: None,
            fallback_host: Some("127.0.0.1:4000".parse().unwrap()),
            hop: Hop::Instance,
        };
        let lines = written(
            &[
                ("host", "named.test"),
                ("x-forwarded-proto", "http"),
                ("connection", "Host, X-Forwarded-Proto"),
            ],
            &rewrite,
        );
        assert_eq!(
            lines,
            [
                "forwarded: for=10.0.0.9;proto=https",
                "host: 127.0.0.1:4000",
                "x-forwarded-for: 10.0.0.9",
                "x-forwarded-proto: https",
                "x-real-ip: 10.0.0.9",
            ]
        );
    }

    #[test]
    fn the_rewrite_drops_exactly_the_hop_by_hop_names() {
        // `field` sorts names with a match of its own; it must agree with HOP_BY_HOP, which
        // header maps are filtered by.
        for name in GUARDED {
            let upper = name.to_ascii_uppercase();
            let hop = HOP_BY_HOP.iter().any(|h| h.as_str() == name);
            for spelled in [name.as_bytes(), upper.as_bytes()] {
                let dropped = matches!(field(spelled), Field::Dropped | Field::Connection);
                assert_eq!(dropped, hop, "{name}");
                assert_eq!(is_hop_by_hop(spelled), hop, "{name}");
            }
        }
        assert!(!is_hop_by_hop(b"x-kept"));
    }

    #[test]
    fn the_map_version_applies_the_same_rules() {
        let mut client = client(false);
        client.new_request_id = Some(HeaderValue::from_static("id"));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.insert("x_real_ip", HeaderValue::from_static("6.6.6.6"));
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        headers.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        headers.insert("x-client-ip", HeaderValue::from_static("6.6.6.6"));
        headers.insert("http2-settings", HeaderValue::from_static("AAMAAABk"));
        prepare_request(&mut headers, &client, None, Hop::Instance);
        let mut names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "forwarded",
                "host",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-kept",
                "x-real-ip",
                "x-request-id"
            ]
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.9");
        assert_eq!(headers["x-real-ip"], "10.0.0.9");
        let forwarded: Vec<_> = headers.get_all("forwarded").iter().collect();
        assert_eq!(forwarded, ["for=10.0.0.9;host=\"app.test\";proto=https"]);
    }

    #[test]
    fn forwarded_quotes_an_ipv6_peer_and_follows_a_trusted_proxys_elements() {
        let mut client = client(true);
        client.peer = "2001:db8::7".parse().unwrap();
        client.peer_header = HeaderValue::from_static("2001:db8::7");
        client.host = Some(HeaderValue::from_static("app.test:8787"));
        client.https = false;
        let mut headers = HeaderMap::new();
        headers.append("forwarded", HeaderValue::from_static("for=192.0.2.1"));
        headers.append("forwarded", HeaderValue::from_static("for=192.0.2.2"));
        prepare_request(&mut headers, &client, None, Hop::Instance);
        let forwarded: Vec<_> = headers.get_all("forwarded").iter().collect();
        assert_eq!(
            forwarded,
            [
                "for=192.0.2.1",
                "for=192.0.2.2",
                "for=\"[2001:db8::7]\";host=\"app.test:8787\";proto=http"
            ]
        );
    }

    #[test]
    fn only_upgrades_the_route_allows_are_upgrades() {
        let websocket: &[Box<str>] = &["websocket".into()];
        let upgrade = |raw: &str, allowed| is_upgrade(&crate::fields::tests::spans(raw), allowed);
        assert!(upgrade(
            "Connection: Upgrade\r\nUpgrade: websocket\r\n",
            websocket
        ));
        assert!(upgrade(
            "Connection: keep-alive, upgrade\r\nUpgrade: WebSocket/13\r\n",
            websocket
        ));
        let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n";
        let both = "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n";
        for raw in [
            h2c,
            both,
            "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n",
            "Connection: Upgrade\r\nUpgrade: TLS/1.0\r\n",
            "Connection: Upgrade\r\nUpgrade: websocketx\r\n",
            "Connection: Upgrade\r\nUpgrade: ,\r\n",
            "Upgrade: websocket\r\n",
        ] {
            assert!(!upgrade(raw, websocket), "{raw}");
        }
        // A route that names more allows them, alone or together; none: not even WebSocket.
        let more: &[Box<str>] = &["websocket".into(), "h2c".into(), "tls/1.0".into()];
        for raw in [h2c, both, "Connection: Upgrade\r\nUpgrade: TLS/1.0\r\n"] {
            assert!(upgrade(raw, more), "{raw}");
        }
        assert!(!upgrade(
            "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n",
            more
        ));
        assert!(!upgrade(
            "Connection: Upgrade\r\nUpgrade: websocket\r\n",
            &[]
        ));
    }

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
