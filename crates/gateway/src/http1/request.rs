//! Request heads, with no I/O: [`parse`] reads a client's head as valet's own server serves it
//! (what it does not fully understand goes to hyper), and [`encode_request`] writes the head
//! of a request to an instance.

use super::framing::{list, parse_length, put_field, Framing};
use crate::body::RequestBody;
use crate::fields::{Fields, Span};
use crate::forward::Rewrite;
use crate::message::ClientRequest;
use bytes::{BufMut, Bytes, BytesMut};
use http::header;
use http::{Method, Uri, Version};
use std::mem::MaybeUninit;

/// Most header fields served here; more go to hyper (which allows 100).
const MAX_HEADERS: usize = 64;

/// A head this module serves, as offsets into the buffer (taken while the parse borrows it).
pub(crate) struct Parsed {
    pub len: usize,
    pub method: Method,
    pub target: (usize, usize),
    pub fields: Vec<Span>,
    pub content_length: u64,
    pub close: bool,
}

pub(crate) enum Parse {
    Complete(Parsed),
    Partial,
    /// Valid or not, not for this module: hyper takes the connection.
    Other,
}

pub(crate) fn parse(buf: &[u8]) -> Parse {
    if buf.starts_with(b"PRI ") {
        return Parse::Other; // an HTTP/2 preface
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Other,
    };
    if req.version != Some(1) {
        return Parse::Other;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parse::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parse::Other;
    };
    if method == Method::CONNECT || !path.starts_with('/') {
        return Parse::Other;
    }
    let base = buf.as_ptr() as usize;
    // A head is at most MAX_FAST_HEAD bytes, so offsets fit in u32.
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let mut fields = Vec::with_capacity(req.headers.len());
    let mut content_length = None;
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match (content_length, parse_length(h.value)) {
                (None, Some(n)) => content_length = Some(n),
                _ => return Parse::Other,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parse::Other;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in list(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parse::Other;
                }
            }
        }
        fields.push(Span {
            name: (offset(name), name.len() as u32),
            value: (offset(h.value), h.value.len() as u32),
        });
    }
    Parse::Complete(Parsed {
        len,
        method,
        target: (offset(path.as_bytes()) as usize, path.len()),
        fields,
        content_length: content_length.unwrap_or(0),
        close,
    })
}

/// What [`read_head`] made of a buffer.
#[cfg(any(test, feature = "internals"))]
pub enum HeadRead {
    /// More bytes are needed.
    Partial,
    /// Not served here: hyper takes the connection (and answers a malformed head 400).
    Hyper,
    /// Served here with valet's own 400 (a target or field value `http` refuses).
    Refused,
    /// Served here: the request, the head's length, the body's length and whether the
    /// connection closes after the answer.
    Served(Box<ClientRequest>, usize, u64, bool),
}

/// The request-head parser as `Connection::read_request` runs it (`parse`, then `build`),
/// without a socket: the fuzz targets in crates/fuzzing drive it with arbitrary bytes.
#[cfg(any(test, feature = "internals"))]
pub fn read_head(buf: &[u8]) -> HeadRead {
    let mut parsed = match parse(buf) {
        Parse::Complete(parsed) => parsed,
        Parse::Partial => return HeadRead::Partial,
        Parse::Other => return HeadRead::Hyper,
    };
    let head = Bytes::copy_from_slice(&buf[..parsed.len]);
    match build(&head, &mut parsed) {
        Some(req) => HeadRead::Served(
            Box::new(req),
            parsed.len,
            parsed.content_length,
            parsed.close,
        ),
        None => HeadRead::Refused,
    }
}

/// The request, its fields as spans of the head's bytes (see [`Fields`]). `None`: a target or
/// field value that `http` would refuse.
pub(crate) fn build(head: &Bytes, parsed: &mut Parsed) -> Option<ClientRequest> {
    let (start, len) = parsed.target;
    let uri = Uri::from_maybe_shared(head.slice(start..start + len)).ok()?;
    // httparse has checked the fields as `http` would: names are tokens, values hold no
    // control character but tab (a test below holds it to that).
    Some(ClientRequest {
        method: parsed.method.clone(),
        uri,
        version: Version::HTTP_11,
        fields: Fields::Spans {
            head: head.clone(),
            spans: std::mem::take(&mut parsed.fields),
        },
        extensions: http::Extensions::new(),
        body: RequestBody::Buffered(None),
    })
}

/// Writes the head of a request to an instance into `out`: the request line, the client's
/// fields as `rewrite` passes them (all of them without one), valet's own, and the framing:
/// the client's `Content-Length` when it sent one, else the body's exact size if known, else
/// chunked.
pub fn encode_request<B: http_body::Body>(
    method: &Method,
    target: &str,
    headers: &Fields,
    rewrite: Option<&Rewrite<'_>>,
    body: &B,
    out: &mut BytesMut,
) -> Framing {
    out.reserve(method.as_str().len() + target.len() + headers.wire_len() + 256);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let fields = || headers.iter();
    let has_length = match rewrite {
        Some(rewrite) => {
            let seen = rewrite.fields(fields, |name, value, keep| {
                if keep {
                    put_field(name, value, out);
                }
            });
            rewrite.added(&seen, |name, parts| {
                out.put_slice(name.as_str().as_bytes());
                out.put_slice(b": ");
                for part in parts {
                    out.put_slice(part);
                }
                out.put_slice(b"\r\n");
            });
            seen.content_length
        }
        None => {
            for (name, value) in headers.iter() {
                put_field(name, value, out);
            }
            headers.contains(&header::CONTENT_LENGTH)
        }
    };
    let framing = if body.is_end_stream() {
        // Servers may refuse a POST without a length (411); an empty one says 0.
        if matches!(*method, Method::POST | Method::PUT | Method::PATCH) && !has_length {
            out.put_slice(b"content-length: 0\r\n");
        }
        Framing::None
    } else if has_length {
        // The client's own length (already among the fields): its body, checked against it by
        // the server side, is passed as it comes.
        Framing::Length(headers.content_length().unwrap_or_default())
    } else if let Some(len) = body.size_hint().exact() {
        // Rare (an h2 client's body of known size without a length): formatting may allocate.
        let _ = std::fmt::Write::write_fmt(out, format_args!("content-length: {len}\r\n"));
        Framing::Length(len)
    } else {
        out.put_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    out.put_slice(b"\r\n");
    framing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::BoxError;
    use crate::http1::chunked::encode_chunk;
    use http::header::{HeaderName, HeaderValue};
    use http::HeaderMap;
    use http_body::{Body as _, Frame};

    fn complete(raw: &str) -> Parsed {
        match parse(raw.as_bytes()) {
            Parse::Complete(parsed) => parsed,
            Parse::Partial => panic!("partial: {raw:?}"),
            Parse::Other => panic!("other: {raw:?}"),
        }
    }

    fn other(raw: &str) -> bool {
        matches!(parse(raw.as_bytes()), Parse::Other)
    }

    #[test]
    fn plain_requests_are_served_here_with_their_headers_as_slices() {
        let raw = "GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nX-One: 1\r\nX-One: 2\r\n\r\nNEXT";
        let mut parsed = complete(raw);
        assert_eq!(parsed.len, raw.len() - 4);
        assert!(!parsed.close);
        let head = Bytes::copy_from_slice(raw.as_bytes());
        let req = build(&head, &mut parsed).unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.uri.path(), "/a/b");
        assert_eq!(req.uri.query(), Some("c=d"));
        let one = HeaderName::from_static("x-one");
        let ones: Vec<_> = req.fields.get_all(&one).collect();
        assert_eq!(ones, [b"1", b"2"]);
        assert!(req.body.is_end_stream());
        // Field values are not checked again here: what `http` refuses in a value, httparse
        // refuses too, and such a head goes to hyper, which answers 400.
        for bad in [0u8, 1, 0x1f, 0x7f] {
            let raw = format!("GET / HTTP/1.1\r\nX-Bad: a{}b\r\n\r\n", bad as char);
            assert!(HeaderValue::from_bytes(&[b'a', bad]).is_err());
            assert!(other(&raw), "{raw:?}");
        }
        // ... and what it takes (obs-text, a tab inside), `http` takes as well.
        let raw = "GET / HTTP/1.1\r\nX-Fine: caf\u{e9}\t!\r\n\r\n";
        let mut parsed = complete(raw);
        let req = build(&Bytes::copy_from_slice(raw.as_bytes()), &mut parsed).unwrap();
        let fine = req.fields.value(&HeaderName::from_static("x-fine"));
        assert_eq!(fine.unwrap().as_bytes(), "caf\u{e9}\t!".as_bytes());
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parse::Partial
        ));
        assert!(matches!(parse(b"GE"), Parse::Partial));
    }

    #[test]
    fn framing_upgrades_and_odd_versions_go_to_hyper() {
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "G@T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(other(raw), "{raw:?}");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert!(other(&format!("GET / HTTP/1.1\r\n{many}\r\n")));
    }

    #[test]
    fn a_length_and_a_close_are_read() {
        let parsed = complete(
            "POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: keep-alive, Close\r\n\r\n",
        );
        assert_eq!(parsed.content_length, 12);
        assert!(parsed.close);
    }

    #[test]
    fn heads_encode_with_their_framing() {
        use http_body_util::{Empty, Full, StreamBody};
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a"));
        let headers = Fields::Map(headers);
        let mut out = BytesMut::new();
        let stream =
            StreamBody::new(futures_util::stream::empty::<Result<Frame<Bytes>, BoxError>>());
        let framing = encode_request(&Method::POST, "/x?y", &headers, None, &stream, &mut out);
        assert_eq!(framing, Framing::Chunked);
        assert_eq!(
            &out[..],
            b"POST /x?y HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut out = BytesMut::new();
        let full = Full::new(Bytes::from_static(b"hello"));
        let framing = encode_request(&Method::PUT, "/", &headers, None, &full, &mut out);
        assert_eq!(framing, Framing::Length(5));
        assert_eq!(
            &out[..],
            b"PUT / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n"
        );
        let mut out = BytesMut::new();
        let empty = Empty::<Bytes>::new();
        let framing = encode_request(&Method::POST, "/", &headers, None, &empty, &mut out);
        assert_eq!(framing, Framing::None);
        assert_eq!(
            &out[..],
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"
        );
        let mut out = BytesMut::new();
        encode_chunk(&[7u8; 26], &mut out);
        assert!(out.starts_with(b"1a\r\n"));
        assert!(out.ends_with(b"\r\n"));
    }
}
