//! The client's request head as valet's own connection code reads it (crates/gateway/src/
//! http1/request.rs: httparse, then the framing rules of the fast path), held to RFC 9112 (`wire`) and
//! to a plain httparse reading, and read again after http1/request.rs writes it to an instance.

use crate::wire::{self, Reading};
use bytes::BytesMut;
use http::Method;
use valet_gateway::body::{empty, full};
use valet_gateway::http1::framing::Framing;
use valet_gateway::http1::request::encode_request;
use valet_gateway::http1::request::{read_head, HeadRead};
use valet_gateway::message::ClientRequest;

/// Field slots valet's fast path has (http1/request.rs `MAX_HEADERS`); more go to hyper.
const MAX_FIELDS: usize = 64;

/// Input: the bytes a client sent, head first.
pub fn request_head(data: &[u8]) {
    let reference = wire::head(data, true);
    match read_head(data) {
        HeadRead::Served(req, len, content_length, close) => {
            served(data, &reference, &req, len, content_length, close);
            rewritten(&req, content_length, close);
            in_pieces(data, len);
        }
        HeadRead::Partial => {
            // Waiting for more bytes while a whole head is there would hang the client.
            assert!(
                !matches!(reference, Reading::Head(_)),
                "valet waits for more of a complete head: {reference:?}"
            );
        }
        HeadRead::Refused => {
            // valet answers 400 itself only for a target `http` refuses in a head that is
            // otherwise whole.
            let Reading::Head(head) = &reference else {
                return;
            };
            assert!(
                http::uri::PathAndQuery::try_from(head.start[1]).is_err(),
                "refused a head whose target `http` takes"
            );
        }
        HeadRead::Hyper => {
            // hyper takes whatever the fast path does not fully understand; a plain request
            // going there costs speed, not correctness, but it must be for one of the reasons
            // http1/request.rs gives.
            if let Reading::Head(head) = &reference {
                assert!(
                    !plain(head),
                    "a plain request went to hyper: {:?}",
                    String::from_utf8_lossy(&data[..head.len])
                );
            }
        }
    }
}

/// What valet accepted: the same head as RFC 9112 and httparse read it, with one framing.
fn served(
    data: &[u8],
    reference: &Reading<'_>,
    req: &ClientRequest,
    len: usize,
    content_length: u64,
    close: bool,
) {
    let head = reference.accepted(data);
    assert_eq!(len, head.len, "the head ends elsewhere");
    assert_eq!(req.method.as_str().as_bytes(), head.start[0]);
    // `http` drops a fragment (`#...`, which RFC 9112 has no place for in a request target)
    // as hyper's path does too: what is left is the client's target up to it, byte for byte.
    let target = head.start[1];
    let kept = target.split(|&b| b == b'#').next().unwrap_or_default();
    assert_eq!(req.uri.to_string().as_bytes(), kept);
    assert_eq!(head.start[2], b"HTTP/1.1");
    let fields: Vec<_> = req.fields.iter().collect();
    assert_eq!(fields, head.fields, "the fields differ");
    for (name, value) in &fields {
        assert!(name.iter().all(|&b| wire::tchar(b)), "name {name:?}");
        assert!(
            !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
            "a value holds CR, LF or NUL: {value:?}"
        );
    }
    // One framing: no Transfer-Encoding, and a body length from exactly one Content-Length of
    // digits only, or none.
    assert_eq!(head.values("transfer-encoding").count(), 0);
    let lengths: Vec<_> = head.values("content-length").collect();
    match lengths[..] {
        [] => assert_eq!(content_length, 0),
        [one] => assert_eq!(wire::length(one), Some(content_length), "{one:?}"),
        _ => panic!("served {} Content-Length fields", lengths.len()),
    }
    // The handler reads the length again off the fields (a lenient `str::parse`, which takes
    // `+5`): on what the fast path serves it must read the same.
    let again = req.fields.content_length();
    assert_eq!(again, (!lengths.is_empty()).then_some(content_length));
    for name in ["expect", "upgrade"] {
        assert_eq!(head.values(name).count(), 0, "served a request with {name}");
    }
    let closes = head
        .values("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| wire::ows_trim(t).eq_ignore_ascii_case(b"close"));
    assert_eq!(close, closes);

    // httparse (the same crate hyper reads heads with, as a separate parse with its default
    // settings) must read the same head.
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut other = httparse::Request::new(&mut slots);
    assert_eq!(
        other.parse(data),
        Ok(httparse::Status::Complete(len)),
        "httparse reads another head"
    );
    assert_eq!(other.method, Some(req.method.as_str()));
    assert_eq!(other.version, Some(1));
    let theirs: Vec<_> = other
        .headers
        .iter()
        .map(|h| (h.name.as_bytes(), h.value))
        .collect();
    assert_eq!(fields, theirs, "httparse reads other fields");
}

/// Whether valet's fast path should have served `head`: an HTTP/1.1 request in origin form
/// (ASCII only: httparse sends a target that is no UTF-8 to hyper) that is no CONNECT, with no more fields than it has room for, at most one valid
/// `Content-Length`, and no `Transfer-Encoding`, `Expect`, `Upgrade` or `Connection: upgrade`.
fn plain(head: &wire::Head<'_>) -> bool {
    let [method, target, version] = head.start;
    let lengths: Vec<_> = head.values("content-length").collect();
    version == b"HTTP/1.1"
        && method != b"CONNECT"
        && method != b"PRI"
        && target.starts_with(b"/")
        && target.is_ascii()
        && head.fields.len() <= MAX_FIELDS
        && lengths.len() <= 1
        && lengths
            .iter()
            .all(|v| v.len() <= 19 && wire::length(v).is_some())
        && ["transfer-encoding", "expect", "upgrade"]
            .iter()
            .all(|name| head.values(name).count() == 0)
        && !head
            .values("connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| wire::ows_trim(t).eq_ignore_ascii_case(b"upgrade"))
}

/// The request as http1/request.rs writes it to an instance (with all its fields: the rewrite itself is
/// the `headers` target's) must read back as the same request.
fn rewritten(req: &ClientRequest, content_length: u64, close: bool) {
    let body = if content_length > 0 {
        full(&b"x"[..])
    } else {
        empty()
    };
    let target = req.uri.to_string();
    let mut out = BytesMut::new();
    let framing = encode_request(&req.method, &target, &req.fields, None, &body, &mut out);
    // A head at the fast path's field limit grows past it by the fields valet adds; the instance
    // is not valet, so that head need only be whole, with one framing, by the RFC's reading.
    if let Reading::Head(head) = wire::head(&out, true) {
        if head.fields.len() > MAX_FIELDS {
            assert_eq!(head.len, out.len(), "bytes after the written head");
            let framings =
                head.values("content-length").count() + head.values("transfer-encoding").count();
            assert!(
                framings <= 1,
                "valet wrote a head with two framings: {:?}",
                String::from_utf8_lossy(&out)
            );
            return;
        }
    }
    let HeadRead::Served(again, len, length_again, close_again) = read_head(&out) else {
        panic!(
            "valet does not serve the head it writes: {:?}",
            String::from_utf8_lossy(&out)
        );
    };
    assert_eq!(len, out.len());
    assert_eq!(again.method, req.method);
    assert_eq!(again.uri, req.uri);
    assert_eq!((length_again, close_again), (content_length, close));
    let before: Vec<_> = req.fields.iter().collect();
    let after: Vec<_> = again.fields.iter().collect();
    let added = &after[before.len().min(after.len())..];
    assert_eq!(&after[..after.len() - added.len()], &before[..]);
    match framing {
        Framing::Length(n) => {
            assert_eq!(n, content_length);
            assert!(content_length > 0 && added.is_empty());
        }
        Framing::None => {
            // Only an empty POST, PUT or PATCH without a length gets `content-length: 0`.
            let needs = matches!(req.method, Method::POST | Method::PUT | Method::PATCH)
                && !req.fields.contains(&http::header::CONTENT_LENGTH);
            let want: &[(&[u8], &[u8])] = if needs {
                &[(b"content-length", b"0")]
            } else {
                &[]
            };
            assert_eq!(added, want);
        }
        Framing::Chunked => panic!("a body of known length went chunked"),
    }
}

/// The same head arriving in pieces reads the same: every prefix short of its end waits for
/// more (the server session parses again as bytes come, and would otherwise serve a head it
/// has only part of, or send a head to hyper that it serves whole). Byte by byte for short
/// heads; for long ones at each line end and its neighbours, where a parse can first succeed.
fn in_pieces(data: &[u8], len: usize) {
    let cuts: Vec<usize> = if len <= 512 {
        (0..len).collect()
    } else {
        (0..len)
            .filter(|&i| data[i] == b'\n' || data.get(i + 1) == Some(&b'\n'))
            .chain([1, len - 1])
            .collect()
    };
    for cut in cuts {
        assert!(
            matches!(read_head(&data[..cut]), HeadRead::Partial),
            "the first {cut} of {len} bytes did not wait for more"
        );
    }
}
