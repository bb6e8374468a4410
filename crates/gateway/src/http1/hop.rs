//! Hop-by-hop fields (RFC 9110 7.6.1): the fields that describe one connection, not the
//! message, and so never pass from one connection to the next. The one rule for answers on
//! every path (valet's HTTP/1.1 server writing an instance's fields, and header maps around
//! hyper), and the one reading of which fields a `Connection` names.

use super::framing::list;
use http::header::{self, HeaderMap, HeaderName};

#[cfg(any(test, feature = "internals"))]
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
#[cfg(any(test, feature = "internals"))]
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
#[cfg(any(test, feature = "internals"))]
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1). `HTTP2-Settings`
/// belongs to an `h2c` upgrade (RFC 7540 3.2.1), which valet never forwards. The list form is
/// the tests' and fuzz targets' oracle for [`is_hop_by_hop`], which the paths call.
#[cfg(any(test, feature = "internals"))]
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
pub fn drops_on_the_way<'h>(
    fields: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    name: &[u8],
    connection: bool,
) -> bool {
    is_hop_by_hop(name) || (connection && named_by_connection(fields, name))
}

/// Whether a field name (any case) is one of [`HOP_BY_HOP`]: one comparison or two per name,
/// chosen by its length, which costs less per answer field than nine (a test holds the match to
/// the list).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |want: &[u8]| name.eq_ignore_ascii_case(want);
    match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        14 => is(b"http2-settings"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        19 => is(b"proxy-authorization"),
        _ => false,
    }
}

/// Whether a `Connection` value among `fields` lists `name`.
pub fn named_by_connection<'h>(
    fields: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    name: &[u8],
) -> bool {
    fields
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| list(value))
        .any(|token| token.eq_ignore_ascii_case(name))
}
