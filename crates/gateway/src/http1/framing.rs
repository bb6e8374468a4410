//! The framing rules of HTTP/1.1 that both directions share, with no I/O: the elements of a
//! list field such as `Connection`, a `Content-Length` value, and how a header line and a
//! number are written. Every other part of the codec ([`super::request`],
//! [`super::response`], [`super::chunked`]) reads and writes through these, so each rule is
//! written once.

use bytes::{BufMut, BytesMut};
use http::HeaderMap;

/// How a body valet writes goes on the wire, a request's to an instance or an answer's to a
/// client (reading an instance's answer has one case more: until close, see
/// [`super::response::BodyFraming`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length`, this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The elements of a comma-separated header value (`Connection: keep-alive, Upgrade`), trimmed.
pub(crate) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// A `Content-Length` value: ASCII digits only (no sign, no spaces), at most 19 of them.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// One `name: value` line.
pub(crate) fn put_field(name: &[u8], value: &[u8], out: &mut BytesMut) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Bytes the header lines will take, for reserving them at once.
pub(crate) fn headers_len(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// `n` in decimal digits, written at the end of `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// An answer's declared `Content-Length`, from its values: it counts only when it is one valid
/// number. Two fields, a list (`2, 2`) or a value that is not digits count for nothing, and
/// the body's own size frames the answer to the client instead. The one rule for answers
/// written by valet's server and for those handed to hyper's.
pub fn one_length<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_length(first.trim_ascii())
}

/// Whether an answer of this status may say a length at all: a 204 or an interim answer never
/// does (RFC 9110 8.6), whatever the instance wrote.
pub fn says_length(status: http::StatusCode) -> bool {
    status != http::StatusCode::NO_CONTENT && !status.is_informational()
}
