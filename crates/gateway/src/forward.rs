//! Header rewriting on the way to the instance and back: hop-by-hop headers removed,
//! `X-Forwarded-*` set (replaced unless the peer is a trusted proxy), a request id kept or made.
//!
//! Every field that tells an instance who the client is or what its connection was (every
//! `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, ...) follows one rule: from a trusted proxy it
//! passes (the ones valet sets extended or kept), from anyone else it is dropped, and valet sets
//! its own `X-Forwarded-For`, `X-Real-IP` and `Forwarded` from the peer address. Fields naming
//! another target than the one valet routed (`X-Original-URL`, `X-Forwarded-Uri`, ...) never pass.

use crate::fields::Fields;
use crate::http1::hop::{is_hop_by_hop, named_by_connection};
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

#[path = "forward_names.rs"]
mod names;
use names::OWN;
pub use names::GUARDED;

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
    // The hop-by-hop rule is the codec's, the same for requests and answers.
    if is_hop_by_hop(name) {
        return if is("connection") {
            Field::Connection
        } else {
            Field::Dropped
        };
    }
    match name.len() {
        4 if is("host") => Field::Host,
        9 if is("x-real-ip") => Field::RealIp,
        9 if is("forwarded") => Field::Forwarded,
        9 if is("client-ip") => Field::ClientAddress,
        11 if is("x-forwarded") => Field::ClientAddress,
        11 if is("x-client-ip") => Field::ClientAddress,
        12 if is("x-request-id") => Field::RequestId,
        12 if is("x-valet-peer") => Field::Peer,
        16 if is("x-valet-instance") => Field::Peer,
        13 if is("x-rewrite-url") => Field::TargetOverride,
        14 if is("content-length") => Field::ContentLength,
        14 if is("true-client-ip") => Field::ClientAddress,
        14 if is("x-original-url") || is("x-original-uri") => Field::TargetOverride,
        15 if is("x-forwarded-for") => Field::ForwardedFor,
        15 if is("x-forwarded-uri") => Field::TargetOverride,
        16 if is("x-forwarded-host") => Field::ForwardedHost,
        16 if is("x-forwarded-path") => Field::TargetOverride,
        16 if is("cf-connecting-ip") || is("fastly-client-ip") => Field::ClientAddress,
        17 if is("x-forwarded-proto") => Field::ForwardedProto,
        18 if is("x-forwarded-prefix") => Field::ForwardedPrefix,
        18 if is("x-forwarded-server") => Field::ClientAddress,
        19 if is("x-cluster-client-ip") => Field::ClientAddress,
        24 if is("x-original-forwarded-for") => Field::ClientAddress,
        // What the client's connection was, read by apps (Rack, Django) as the scheme or port
        // the way `X-Forwarded-Proto` is: these and every other `X-Forwarded-*` (`-Port`,
        // `-Ssl`, `-Scheme`, ...) are a trusted proxy's only.
        12 if is("x-url-scheme") => Field::ClientAddress,
        15 if is("front-end-https") => Field::ClientAddress,
        // Read the same way: Tornado's `X-Scheme`, IIS ARR's `X-Arr-Ssl`; and the host or
        // mount point an app builds its URLs from (`X-Host`, `X-Original-Host`, `X-Script-Name`).
        6 if is("x-host") => Field::ClientAddress,
        8 if is("x-scheme") => Field::ClientAddress,
        9 if is("x-arr-ssl") => Field::ClientAddress,
        13 if is("x-script-name") => Field::ClientAddress,
        15 if is("x-original-host") => Field::ClientAddress,
        _ if is_forwarded_family(name, false) => Field::ClientAddress,
        _ => Field::Other,
    }
}

/// Whether a name (any case; with `underscores`, `_` read as `-`) starts with `x-forwarded-`.
fn is_forwarded_family(name: &[u8], underscores: bool) -> bool {
    const FAMILY: &[u8] = b"x-forwarded-";
    name.len() > FAMILY.len()
        && name.iter().zip(FAMILY).all(|(&n, &f)| {
            n.to_ascii_lowercase() == f || (underscores && f == b'-' && n == b'_')
        })
}

/// Whether `name`, with `_` read as `-`, is one of [`GUARDED`] or of the `X-Forwarded-*`
/// family, and has a `_` (the name itself is not its own lookalike). Nearly no name has one, so
/// that is looked for first: one short scan instead of a comparison with every guarded name.
fn is_lookalike(name: &[u8]) -> bool {
    if !name.contains(&b'_') {
        return false;
    }
    let same = |guarded: &&str| {
        guarded.len() == name.len()
            && guarded
                .bytes()
                .zip(name)
                .all(|(g, &n)| g == n.to_ascii_lowercase() || (g == b'-' && n == b'_'))
    };
    GUARDED.iter().any(same) || is_forwarded_family(name, true)
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
        .flat_map(crate::http1::framing::list)
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

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
