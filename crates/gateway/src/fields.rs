//! A request's header fields as the gateway reads them: in hyper's [`HeaderMap`] when hyper
//! parsed the request (h2, TLS, streamed bodies), or as spans of the head's own bytes when
//! [`crate::http1::server`] did. A header map costs a hashed insert per field, an allocation for its
//! table and a drop per request; the common request has a handful of fields that the gateway
//! reads a few of and then writes to the instance in order, which a scan over the spans does
//! for a fraction of that. Names in spans keep the case the client sent them in; lookups
//! ignore case.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Where a field's name and value lie in its head's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

/// The header fields of one request.
pub enum Fields {
    Map(HeaderMap),
    /// Fields of a head parsed by valet, checked as `http` would check them (names are
    /// tokens, values have no control characters but tab).
    Spans {
        head: Bytes,
        spans: Vec<Span>,
    },
}

impl Fields {
    /// Every field, name and value, in order (a name with several values comes several times).
    pub fn iter(&self) -> Iter<'_> {
        match self {
            Fields::Map(map) => Iter::Map(map.iter()),
            Fields::Spans { head, spans } => Iter::Spans(head, spans.iter()),
        }
    }

    /// The values of the fields named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        let wanted = name.as_str().as_bytes();
        self.iter()
            .filter_map(move |(n, v)| is_named(n, wanted).then_some(v))
    }

    /// The first value of the fields named `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        match self {
            Fields::Map(map) => map.get(name).map(HeaderValue::as_bytes),
            Fields::Spans { head, spans } => Some(slice(head, find(head, spans, name)?.value)),
        }
    }

    /// The first value as text, if it is visible ASCII (as [`HeaderValue::to_str`] reads it).
    pub fn text(&self, name: &HeaderName) -> Option<&str> {
        self.get(name).and_then(text)
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// The declared `Content-Length`, if the first one is a valid length: read by the same
    /// strict rule that frames bodies ([`crate::http1::framing::parse_length`]: digits only), so the
    /// `max_body_size` check and the metrics never read `+5` or ` 5` as a length the framing
    /// would refuse.
    pub fn content_length(&self) -> Option<u64> {
        crate::http1::framing::parse_length(self.get(&http::header::CONTENT_LENGTH)?)
    }

    /// The first value, owned; a span's is a slice of the head, not a copy.
    pub fn value(&self, name: &HeaderName) -> Option<HeaderValue> {
        match self {
            Fields::Map(map) => map.get(name).cloned(),
            Fields::Spans { head, spans } => {
                let span = find(head, spans, name)?;
                HeaderValue::from_maybe_shared(head.slice(range(span.value))).ok()
            }
        }
    }

    /// Bytes the fields take as header lines, for reserving room to write them.
    pub fn wire_len(&self) -> usize {
        match self {
            Fields::Map(map) => crate::http1::framing::headers_len(map),
            Fields::Spans { head, .. } => head.len(),
        }
    }

    /// The fields as a header map, for the paths that hand a request to `http`'s types (assets,
    /// upgrades).
    pub fn into_map(self) -> HeaderMap {
        match self {
            Fields::Map(map) => map,
            Fields::Spans { head, spans } => {
                let mut map = HeaderMap::with_capacity(spans.len());
                for span in &spans {
                    // Both were checked when the spans were made.
                    let name = HeaderName::from_bytes(slice(&head, span.name));
                    let value = HeaderValue::from_maybe_shared(head.slice(range(span.value)));
                    if let (Ok(name), Ok(value)) = (name, value) {
                        map.append(name, value);
                    }
                }
                map
            }
        }
    }
}

/// The fields of [`Fields::iter`]: a plain enum rather than chained adapters, which cost more
/// per field than the field itself on the hot path.
pub enum Iter<'a> {
    Map(http::header::Iter<'a, HeaderValue>),
    Spans(&'a Bytes, std::slice::Iter<'a, Span>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Map(fields) => fields
                .next()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
            Iter::Spans(head, spans) => spans
                .next()
                .map(|s| (slice(head, s.name), slice(head, s.value))),
        }
    }
}

fn range((start, len): (u32, u32)) -> std::ops::Range<usize> {
    start as usize..(start + len) as usize
}

fn slice(head: &Bytes, span: (u32, u32)) -> &[u8] {
    &head[range(span)]
}

/// The first span named `name`.
fn find<'a>(head: &Bytes, spans: &'a [Span], name: &HeaderName) -> Option<&'a Span> {
    let wanted = name.as_str().as_bytes();
    spans.iter().find(|s| is_named(slice(head, s.name), wanted))
}

/// Whether a field name as sent (any case) is `wanted` (a lower-case name's bytes, taken out
/// of its `HeaderName` once per lookup, not once per field).
pub fn is_named(name: &[u8], wanted: &[u8]) -> bool {
    name.len() == wanted.len() && name.eq_ignore_ascii_case(wanted)
}

/// Whether a field name as sent (any case) is `wanted` (lower case), reading `_` as `-`: a
/// backend that reads both alike (CGI, WSGI, PHP) takes `X_Tenant` for `X-Tenant`, so every
/// rule about a field holds for its `_` spelling too.
pub fn same_field(name: &[u8], wanted: &[u8]) -> bool {
    name.len() == wanted.len()
        && name
            .iter()
            .zip(wanted)
            .all(|(&n, &w)| n.to_ascii_lowercase() == w || (n == b'_' && w == b'-'))
}

/// A value as text, if it is visible ASCII or tab (what [`HeaderValue::to_str`] accepts).
pub fn text(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}
/// Whether a `Host` value is what RFC 9112 3.2 allows: `uri-host [ ":" port ]` (RFC 3986: a
/// registered name of unreserved characters, escapes and sub-delimiters, or an IP literal in
/// brackets), or empty. Anything else (`x@y`, a space, a lone `[`, a non-ASCII byte) is 400: it
/// would otherwise be copied into `X-Forwarded-Host` and `Forwarded` for the instance to read.
pub fn is_host(value: &[u8]) -> bool {
    let (name, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => (&value[..=end], &value[end + 1..]),
            None => return false,
        },
        _ => match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let port_ok = port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit));
    let name_ok = if let Some(literal) = name.strip_prefix(b"[") {
        let literal = &literal[..literal.len() - 1];
        !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'))
    } else {
        name.iter().all(|&b| {
            b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
        })
    };
    port_ok && name_ok
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::header;

    /// Fields of `Name: value` lines, as spans the way http1/request.rs takes them from httparse.
    pub(crate) fn spans(raw: &str) -> Fields {
        let head = Bytes::copy_from_slice(raw.as_bytes());
        let mut spans = Vec::new();
        let mut at = 0;
        for line in raw.split("\r\n").filter(|l| !l.is_empty()) {
            let colon = line.find(':').unwrap();
            let value = line[colon + 1..].trim();
            let value_at = at + line[colon + 1..].find(value).unwrap() + colon + 1;
            spans.push(Span {
                name: (at as u32, colon as u32),
                value: (value_at as u32, value.len() as u32),
            });
            at += line.len() + 2;
        }
        Fields::Spans { head, spans }
    }

    #[test]
    fn spans_and_maps_answer_alike() {
        let raw = spans("Host: a.test\r\nCookie: x=1\r\nX-Many: 1\r\ncookie: y=2\r\n");
        let map = Fields::Map(
            spans("Host: a.test\r\nCookie: x=1\r\nX-Many: 1\r\ncookie: y=2\r\n").into_map(),
        );
        for fields in [&raw, &map] {
            assert_eq!(fields.text(&header::HOST), Some("a.test"));
            let cookies: Vec<_> = fields.get_all(&header::COOKIE).collect();
            assert_eq!(cookies, [&b"x=1"[..], b"y=2"]);
            assert_eq!(fields.value(&header::HOST).unwrap(), "a.test");
            assert!(!fields.contains(&header::AUTHORIZATION));
            assert_eq!(fields.iter().count(), 4);
        }
        // Names keep the case they came in; the map's are lower case.
        assert_eq!(raw.iter().next().unwrap().0, b"Host");
        assert_eq!(map.iter().next().unwrap().0, b"host");
    }

    #[test]
    fn content_length_is_read_by_the_framing_rule() {
        for (value, read) in [
            ("5", Some(5)),
            ("+5", None),
            ("-1", None),
            ("0x5", None),
            ("5 5", None),
        ] {
            let fields = spans(&format!("Content-Length: {value}\r\n"));
            assert_eq!(fields.content_length(), read, "{value:?}");
            assert_eq!(
                Fields::Map(fields.into_map()).content_length(),
                read,
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_host_is_a_name_or_an_ip_literal_with_an_optional_port() {
        for good in [
            "example.com",
            "Example.COM:8787",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "a_b.test",
            "x,y",
            "",
            "example.com.",
        ] {
            assert!(is_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "x@y", "x y", "[::1", "[::1]x", "[]", "a:b:c", "ex\u{e9}.com", "a:8x", "a/b", "a\\b",
        ] {
            assert!(!is_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn text_is_visible_ascii_only() {
        assert_eq!(text(b"a b\tc"), Some("a b\tc"));
        assert_eq!(text("café".as_bytes()), None);
    }
}
