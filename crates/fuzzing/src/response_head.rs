//! An instance's answer head as valet reads it (crates/gateway/src/http1/response.rs `parse_head`: the
//! status line, the fields, the body's framing and whether the connection is kept), held to
//! RFC 9112 (`wire`), and the head valet then writes to the client (http1/response.rs), read back.

use crate::wire::{self, Reading};
use bytes::BytesMut;
use http::{Method, StatusCode, Version};
use valet_gateway::fields::Fields;
use valet_gateway::http1::hop::HOP_BY_HOP;
use valet_gateway::http1::response::write_answer_head;
use valet_gateway::http1::response::{parse_head, BodyFraming, Head};

/// Field slots valet reads an answer head into (http1/response.rs `MAX_RESPONSE_HEADERS`).
const MAX_RESPONSE_HEADERS: usize = 128;

/// Input: the bytes an instance answered with, head first. Read as the answer to a GET and to
/// a HEAD.
pub fn response_head(data: &[u8]) {
    for method in [Method::GET, Method::HEAD] {
        let mut buf = BytesMut::from(data);
        match parse_head(&mut buf, &method) {
            Ok(Some(head)) => {
                let used = data.len() - buf.len();
                accepted(data, used, &head, &method);
                written_back(&head, &method);
                in_pieces(data, used, &head, &method);
            }
            Ok(None) => {
                // Only whole interim heads are taken off while the final one is incomplete.
                let (at, reading) = reference(data);
                assert!(
                    matches!(reading, Reading::Incomplete),
                    "valet waits for more of {reading:?}"
                );
                assert_eq!(data.len() - buf.len(), at, "bytes taken off a partial head");
            }
            Err(_) => refused(data),
        }
    }
}

/// The final answer's head by the reference: interim (1xx) heads before it are skipped as
/// valet skips them.
fn reference(data: &[u8]) -> (usize, Reading<'_>) {
    let mut at = 0;
    loop {
        match wire::head(&data[at..], false) {
            Reading::Head(head) if head.start[1].starts_with(b"1") && head.start[1] != b"101" => {
                at += head.len;
            }
            other => return (at, other),
        }
    }
}

/// An answer valet refuses must be one RFC 9112 refuses, or past one of valet's rules: a
/// version other than 1.0 and 1.1, a status below 100, a `101` nobody asked for, more than 128
/// fields, a head of 64 KiB, or (without Transfer-Encoding) a Content-Length that is not one
/// number.
fn refused(data: &[u8]) {
    let (0, Reading::Head(head)) = reference(data) else {
        return; // an interim head before it: its own limits are not worth restating
    };
    let status: u16 = std::str::from_utf8(head.start[1])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let parts: Vec<_> = head
        .values("content-length")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(wire::ows_trim)
        // valet reads at most 19 digits, which always fit a u64.
        .map(|p| wire::length(p).filter(|_| p.len() <= 19))
        .collect();
    let framed = head.values("transfer-encoding").next().is_some()
        || parts.iter().all(|p| p.is_some() && *p == parts[0]);
    let valid = matches!(head.start[0], b"HTTP/1.0" | b"HTTP/1.1")
        && status >= 100
        && status != 101
        && head.fields.len() <= 128
        && head.len < 64 * 1024
        && framed;
    assert!(
        !valid,
        "valet refused a valid answer: {:?}",
        String::from_utf8_lossy(&data[..head.len])
    );
}

fn accepted(data: &[u8], used: usize, head: &Head, method: &Method) {
    let (at, reading) = reference(data);
    let reference = reading.accepted(data);
    assert_eq!(used, at + reference.len, "the head ends elsewhere");
    assert_eq!(head.status.as_str().as_bytes(), reference.start[1]);
    let http10 = reference.start[0] == b"HTTP/1.0";
    let encodings: Vec<_> = reference.values("transfer-encoding").collect();
    let lengths: Vec<_> = reference.values("content-length").collect();
    // The reference's fields, but a Content-Length that Transfer-Encoding overrides (valet
    // drops it: it would frame the client's answer wrongly).
    let fields: Vec<_> = head.fields.iter().collect();
    let want: Vec<_> = reference
        .fields
        .iter()
        .filter(|(n, _)| encodings.is_empty() || !n.eq_ignore_ascii_case(b"content-length"))
        .copied()
        .collect();
    assert_eq!(fields, want, "the fields differ");
    for (name, value) in &fields {
        assert!(name.iter().all(|&b| wire::tchar(b)), "name {name:?}");
        assert!(
            !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
            "a value holds CR, LF or NUL: {value:?}"
        );
    }

    // The framing, from RFC 9112 6.3 applied to the reference's fields.
    let bodiless = *method == Method::HEAD
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED;
    if bodiless {
        assert_eq!(head.framing, BodyFraming::Empty);
    } else if !encodings.is_empty() {
        let last = encodings
            .last()
            .and_then(|v| v.split(|&b| b == b',').next_back())
            .map(wire::ows_trim)
            .unwrap_or_default();
        let want = if last.eq_ignore_ascii_case(b"chunked") {
            BodyFraming::Chunked
        } else {
            BodyFraming::Close
        };
        assert_eq!(head.framing, want);
    } else {
        let parts: Vec<_> = lengths
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(wire::ows_trim)
            .collect();
        match parts.first() {
            None => assert_eq!(head.framing, BodyFraming::Close),
            Some(first) => {
                // Every element the same number of digits only (no sign, no overflow), or the
                // answer is refused (checked below: this one was accepted).
                let n = wire::length(first).expect("accepted a non-number Content-Length");
                for part in &parts {
                    assert_eq!(wire::length(part), Some(n), "Content-Length {part:?}");
                }
                let want = if n == 0 {
                    BodyFraming::Empty
                } else {
                    BodyFraming::Length(n)
                };
                assert_eq!(head.framing, want);
            }
        }
    }
    if !encodings.is_empty() && !bodiless {
        // Both framings at once may be a smuggling attempt; the length never counts and the
        // connection is not reused.
        assert!(!matches!(head.framing, BodyFraming::Length(_)));
        if !lengths.is_empty() {
            assert!(!head.keep_alive, "kept a connection that sent CL and TE");
        }
        // A Transfer-Encoding in an HTTP/1.0 answer is faulty framing: the connection closes
        // after it (RFC 9112 6.1).
        assert!(
            !(http10 && head.keep_alive),
            "kept an HTTP/1.0 connection with TE"
        );
    }
    if head.framing == BodyFraming::Close {
        assert!(!head.keep_alive, "a body until close on a kept connection");
    }
    if head.version == Version::HTTP_11 {
        assert!(!http10);
    }
}

/// The head http1/response.rs writes for this answer reads back (as an answer to the same method) with
/// one framing that says what valet will send, and with the instance's fields that pass.
fn written_back(head: &Head, method: &Method) {
    // The body's size as `ResponseBody` knows it before it is read.
    let hint = match head.framing {
        BodyFraming::Empty => Some(0),
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Chunked | BodyFraming::Close => None,
    };
    let mut out = BytesMut::new();
    let (length, _close) = write_answer_head(head.status, &head.fields, method, hint, &mut out);
    let written = out.clone().freeze();
    // An answer at valet's field limit grows past them by the fields valet
    // adds; the client is not valet, so that head need only be whole by the RFC's reading.
    if let (_, Reading::Head(head)) = reference(&written) {
        if head.fields.len() > MAX_RESPONSE_HEADERS {
            assert_eq!(head.len, written.len(), "bytes after the written head");
            return;
        }
    }
    let again = match parse_head(&mut out, method) {
        Ok(Some(again)) => again,
        other => panic!(
            "valet's own head does not read back ({:?}): {:?}",
            other.err(),
            String::from_utf8_lossy(&written)
        ),
    };
    assert!(out.is_empty(), "the written head has bytes after it");
    let lengths = again.fields.get_all(&http::header::CONTENT_LENGTH).count();
    let chunked = again
        .fields
        .get_all(&http::header::TRANSFER_ENCODING)
        .count();
    assert!(
        lengths <= 1 && chunked <= 1 && lengths + chunked <= 1,
        "two framings"
    );
    match head.framing {
        // What valet sends is what it reads: a body of unknown length goes chunked, never with
        // a length the instance declared for another framing.
        BodyFraming::Chunked | BodyFraming::Close => {
            assert_eq!(length, None, "{:?}", String::from_utf8_lossy(&written));
            assert_eq!(again.framing, BodyFraming::Chunked);
        }
        BodyFraming::Length(n) => assert_eq!(again.framing, BodyFraming::Length(n)),
        BodyFraming::Empty => {}
    }
    // The instance's fields that pass come back in order, byte for byte.
    let dropped = |name: &[u8]| {
        name.eq_ignore_ascii_case(b"content-length")
            || HOP_BY_HOP
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
            || named_by_connection(&head.fields, name)
    };
    let passed: Vec<_> = head.fields.iter().filter(|(n, _)| !dropped(n)).collect();
    // valet adds a `date` of its own when the instance sent none.
    let dated = passed.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"date"));
    let back: Vec<_> = again
        .fields
        .iter()
        .filter(|(n, _)| !dropped(n) && (dated || *n != b"date"))
        .collect();
    assert_eq!(back, passed);
}

fn named_by_connection(fields: &Fields, name: &[u8]) -> bool {
    fields
        .get_all(&http::header::CONNECTION)
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| wire::ows_trim(t).eq_ignore_ascii_case(name))
}

/// The same answer read as the client session reads a socket, one byte more per read into one
/// buffer, gives the same head at the same byte (interim heads taken off as they complete).
fn in_pieces(data: &[u8], used: usize, whole: &Head, method: &Method) {
    let mut buf = BytesMut::new();
    for (i, &byte) in data[..used].iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        match parse_head(&mut buf, method) {
            Ok(None) => assert!(i + 1 < used, "the whole head still waits for more"),
            Ok(Some(head)) => {
                assert_eq!(i + 1, used, "a head read before its end");
                assert_eq!(head.status, whole.status);
                assert_eq!(head.version, whole.version);
                assert_eq!(head.framing, whole.framing);
                assert_eq!(head.keep_alive, whole.keep_alive);
                assert!(head.fields.iter().eq(whole.fields.iter()), "other fields");
                return;
            }
            Err(e) => panic!("refused at byte {i} of an answer read whole: {e}"),
        }
    }
    panic!("never read in pieces");
}
