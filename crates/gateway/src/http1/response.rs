//! Response heads, with no I/O: [`parse_head`] reads an instance's answer head and what it says
//! of the body and the connection (RFC 9112 6), and [`write_answer_head`]'s rule writes the head
//! of an answer to a client, framed by valet.

use super::framing::{decimal, list, one_length, parse_length, put_field, says_length, Framing};
use super::hop::drops_on_the_way;
use crate::fields::{is_named, Fields, Span};
use crate::forward;
use bytes::{Buf, BufMut, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest response head accepted from an instance.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most response header fields accepted from an instance.
const MAX_RESPONSE_HEADERS: usize = 128;

/// Why an instance's answer cannot be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("the instance's response head is not valid HTTP/1.x")]
    Malformed,
    #[error("the instance's response head is larger than 64 KiB")]
    TooLarge,
    #[error("the instance answered with conflicting or invalid Content-Length")]
    Length,
    #[error("the instance switched protocols on a request that asked for no upgrade")]
    Switched,
    #[error("the instance's chunked body is malformed")]
    Chunked,
    #[error("the instance closed the connection before the end of its body")]
    Truncated,
}

/// A parsed response head and what it says about the body and the connection.
pub struct Head {
    pub status: StatusCode,
    // Read by the fuzz invariants (a head read whole and in pieces has one version).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub version: Version,
    pub fields: Fields,
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this body.
    pub keep_alive: bool,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Until the instance closes the connection.
    Close,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: more bytes are needed. On
/// success the head's bytes are taken off `buf`; an interim 1xx answer is consumed and
/// skipped, as nothing of the client's asked for it (`100 Continue` is the gateway's own
/// business with the client).
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, BadResponse> {
    loop {
        // Uninitialised slots: a zeroed array of 128 headers would be 4 KiB of memset per
        // response.
        let mut slots =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
                return Err(BadResponse::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(BadResponse::TooLarge),
            Err(_) => return Err(BadResponse::Malformed),
        };
        let code = response.code.ok_or(BadResponse::Malformed)?;
        let status = StatusCode::from_u16(code).map_err(|_| BadResponse::Malformed)?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(BadResponse::Switched);
        }
        if status.is_informational() {
            buf.advance(len);
            continue;
        }
        let version = match response.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let raw = || {
            response
                .headers
                .iter()
                .map(|h| (h.name.as_bytes(), h.value))
        };
        let (framing, keep_alive) = framing(raw, version, status, method)?;
        // The fields stay in the head's bytes, as spans noted while the parse borrows the
        // buffer (see [`Fields`]); httparse has checked them as `http` would.
        let base = buf.as_ptr() as usize;
        // A head is at most MAX_RESPONSE_HEAD bytes, so offsets fit in u32.
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        // Transfer-Encoding overrides Content-Length (RFC 9112 6.3): the instance's length
        // says nothing of the body passed on, and would frame valet's answer to the client
        // wrongly, so it goes (an intermediary must remove it before forwarding).
        let encoded = raw().any(|(name, _)| name.eq_ignore_ascii_case(b"transfer-encoding"));
        let spans = response
            .headers
            .iter()
            .filter(|h| !(encoded && h.name.eq_ignore_ascii_case("content-length")))
            .map(|h| Span {
                name: (offset(h.name.as_bytes()), h.name.len() as u32),
                value: (offset(h.value), h.value.len() as u32),
            })
            .collect();
        let head = buf.split_to(len).freeze();
        return Ok(Some(Head {
            status,
            version,
            fields: Fields::Spans { head, spans },
            framing,
            keep_alive,
        }));
    }
}

/// The body's framing (RFC 9112 6.3) and whether the connection stays open after it, from the
/// head's fields as parsed (names in any case); `fields` makes the iterator again for each
/// pass, which is cheaper than hashed lookups in a map of a handful of fields.
fn framing<'h, I>(
    fields: impl Fn() -> I,
    version: Version,
    status: StatusCode,
    method: &Method,
) -> Result<(BodyFraming, bool), BadResponse>
where
    I: Iterator<Item = (&'h [u8], &'h [u8])>,
{
    let named = |want: &'static [u8]| {
        fields()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(want))
            .map(|(_, value)| value)
    };
    let mut keep_alive = version == Version::HTTP_11;
    for value in named(b"connection") {
        for token in list(value) {
            if token.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                keep_alive = true;
            }
        }
    }
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((BodyFraming::Empty, keep_alive));
    }
    if let Some(last) = named(b"transfer-encoding").last() {
        let last = last
            .rsplit(|&b| b == b',')
            .next()
            .map(<[u8]>::trim_ascii)
            .unwrap_or_default();
        // Transfer-Encoding overrides Content-Length, and a message with both may be an attempt
        // to desynchronise whoever reads the connection next: it is not reused. Nor is an
        // HTTP/1.0 connection that sent one: HTTP/1.0 has no Transfer-Encoding, so its framing
        // is faulty (RFC 9112 6.1).
        let both = named(b"content-length").next().is_some();
        let faulty = both || version == Version::HTTP_10;
        return Ok(if last.eq_ignore_ascii_case(b"chunked") {
            (BodyFraming::Chunked, keep_alive && !faulty)
        } else {
            (BodyFraming::Close, false)
        });
    }
    let mut length = None;
    for value in named(b"content-length") {
        for part in value.split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii()).ok_or(BadResponse::Length)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadResponse::Length);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (BodyFraming::Empty, keep_alive),
        Some(n) => (BodyFraming::Length(n), keep_alive),
        None => (BodyFraming::Close, false),
    })
}

/// What the head of an answer is written from.
pub(crate) struct AnswerHead<'a> {
    pub status: StatusCode,
    pub fields: &'a Fields,
    pub request_id: Option<&'a HeaderValue>,
    /// The body's exact size, if known.
    pub hint: Option<u64>,
}

/// Writes the response head in one pass over its fields. Hop-by-hop fields and those a
/// `Connection` names describe the instance's connection and are dropped; the framing fields
/// (`Connection`, `Transfer-Encoding`, `Content-Length`) are valet's to write for this one. The
/// answer's framing is its one valid `Content-Length`, else the body's exact size, else
/// chunked; none for a bodiless answer. Returns the framing and whether the connection closes
/// after this answer (asked by the caller or by a `Connection: close`).
pub(crate) fn encode_head(
    head: &AnswerHead<'_>,
    method: &Method,
    mut close: bool,
    out: &mut BytesMut,
) -> (Framing, bool) {
    let AnswerHead {
        status,
        fields,
        request_id,
        hint,
    } = *head;
    out.reserve(fields.wire_len() + 128);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    let mut date = false;
    let [content_length, request_id_name, date_name] = [
        &header::CONTENT_LENGTH,
        &forward::X_REQUEST_ID,
        &header::DATE,
    ]
    .map(|name| name.as_str().as_bytes());
    // Almost no answer names fields in `Connection`: the check per field runs only when one
    // does.
    let mut connection = false;
    // An instance's `Connection: close` is about its connection to valet (hop-by-hop, dropped
    // like the rest); only valet's own answers (a header map) close the client's with it.
    let own = matches!(fields, Fields::Map(_));
    for value in fields.get_all(&header::CONNECTION) {
        connection = true;
        close |= own && list(value).any(|t| t.eq_ignore_ascii_case(b"close"));
    }
    let declared = if drops_on_the_way(fields.iter(), content_length, connection) {
        None
    } else {
        one_length(fields.get_all(&header::CONTENT_LENGTH))
    };
    for (name, value) in fields.iter() {
        // The hop-by-hop rule first, as for answers in a header map: a `Content-Length` the
        // instance's `Connection` names goes too, and the answer is framed without it.
        if drops_on_the_way(fields.iter(), name, connection)
            || (request_id.is_some() && is_named(name, request_id_name))
        {
            continue;
        } else if is_named(name, content_length) {
            // Valet's to write, from `declared`.
            continue;
        } else {
            date |= is_named(name, date_name);
            put_field(name, value, out);
        }
    }
    if let Some(id) = request_id {
        put_field(
            forward::X_REQUEST_ID.as_str().as_bytes(),
            id.as_bytes(),
            out,
        );
    }
    let bodiless = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let (framing, length) = if bodiless {
        // A HEAD answer says the length a GET would have; a 204 says none.
        let length = match declared {
            _ if !says_length(status) => None,
            Some(n) => Some(n),
            None if method == Method::HEAD => hint.filter(|&n| n > 0),
            None => None,
        };
        (Framing::None, length)
    } else if let Some(n) = declared.or(hint) {
        (Framing::Length(n), Some(n))
    } else {
        (Framing::Chunked, None)
    };
    if let Some(n) = length {
        let mut digits = [0u8; 20];
        put_field(b"content-length", decimal(n, &mut digits), out);
    }
    if !date {
        out.put_slice(b"date: ");
        put_date(out);
        out.put_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    (framing, close)
}

/// The head `encode_head` writes to the client for an answer with these fields, for the fuzz
/// targets in crates/fuzzing: the body's length if it is framed by one (`None`: chunked or no
/// body), and whether the connection closes after it.
#[cfg(any(test, feature = "internals"))]
pub fn write_answer_head(
    status: StatusCode,
    fields: &Fields,
    method: &Method,
    hint: Option<u64>,
    out: &mut BytesMut,
) -> (Option<u64>, bool) {
    let head = AnswerHead {
        status,
        fields,
        request_id: None,
        hint,
    };
    let (framing, close) = encode_head(&head, method, false, out);
    let length = match framing {
        Framing::Length(n) => Some(n),
        Framing::None | Framing::Chunked => None,
    };
    (length, close)
}

thread_local! {
    /// The `Date` value of the current second, formatted once per second per worker.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn put_date(out: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second || date.1.is_empty() {
            *date = (second, httpdate::fmt_http_date(now));
        }
        out.put_slice(date.1.as_bytes());
    });
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
