use super::*;
use http::header::HeaderName;

fn parse(bytes: &[u8], method: &Method) -> Result<Option<Head>, BadResponse> {
    parse_head(&mut BytesMut::from(bytes), method)
}

#[test]
fn a_head_is_parsed_with_its_framing() {
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"[..]);
    let head = parse_head(&mut buf, &Method::GET).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.framing, BodyFraming::Length(5));
    assert!(head.keep_alive);
    assert_eq!(head.fields.text(&HeaderName::from_static("x-a")), Some("b"));
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn partial_heads_wait_and_huge_ones_fail() {
    assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", &Method::GET)
        .unwrap()
        .is_none());
    let mut huge = b"HTTP/1.1 200 OK\r\nX-A: ".to_vec();
    huge.resize(MAX_RESPONSE_HEAD + 10, b'a');
    assert_eq!(
        parse(&huge, &Method::GET).err(),
        Some(BadResponse::TooLarge)
    );
    assert_eq!(
        parse(b"HTTP/1.1 2x0 OK\r\n\r\n", &Method::GET).err(),
        Some(BadResponse::Malformed)
    );
    // Fields stay as spans unchecked by `http`: what it refuses, httparse refuses too.
    for bad in [0u8, 1, 0x1f, 0x7f] {
        assert!(HeaderValue::from_bytes(&[b'a', bad]).is_err());
        let head = [&b"HTTP/1.1 200 OK\r\nX-Bad: a"[..], &[bad], b"\r\n\r\n"].concat();
        assert_eq!(
            parse(&head, &Method::GET).err(),
            Some(BadResponse::Malformed)
        );
    }
    assert!(parse(b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n", &Method::GET).is_err());
}

#[test]
fn interim_answers_are_skipped() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"[..],
    );
    let head = parse_head(&mut buf, &Method::POST).unwrap().unwrap();
    assert_eq!(head.status, 201);
    assert_eq!(head.framing, BodyFraming::Empty);
    assert!(buf.is_empty());
}

#[test]
fn framing_follows_rfc_9112() {
    let framing_of = |head: &[u8], method: &Method| {
        let h = parse(head, method).unwrap().unwrap();
        (h.framing, h.keep_alive)
    };
    assert_eq!(
        framing_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET
        ),
        (BodyFraming::Chunked, true)
    );
    // Both: chunked wins, and the connection is not reused.
    assert_eq!(
        framing_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET
        ),
        (BodyFraming::Chunked, false)
    );
    // HTTP/1.0 has no Transfer-Encoding: the body is read as chunked, and the connection
    // closes after it (RFC 9112 6.1).
    assert_eq!(
        framing_of(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET
        ),
        (BodyFraming::Chunked, false)
    );
    assert_eq!(
        framing_of(b"HTTP/1.1 200 OK\r\n\r\n", &Method::GET),
        (BodyFraming::Close, false)
    );
    assert_eq!(
        framing_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            &Method::HEAD
        ),
        (BodyFraming::Empty, true)
    );
    assert_eq!(
        framing_of(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            &Method::GET
        ),
        (BodyFraming::Empty, true)
    );
    assert_eq!(
        framing_of(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            &Method::GET
        ),
        (BodyFraming::Length(1), false)
    );
    assert_eq!(
        framing_of(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            &Method::GET
        ),
        (BodyFraming::Length(1), true)
    );
    assert_eq!(
        framing_of(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            &Method::GET
        ),
        (BodyFraming::Length(1), false)
    );
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1,2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        assert_eq!(parse(bad, &Method::GET).err(), Some(BadResponse::Length));
    }
    assert_eq!(
        parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &Method::GET).err(),
        Some(BadResponse::Switched)
    );
}

#[test]
fn a_length_beside_transfer_encoding_is_not_passed_on() {
    // The fuzz target `response_head` found the instance's Content-Length framing valet's
    // answer to the client while the body was the decoded chunks: a client told 5 bytes
    // got none and a closed connection.
    for (head, framing) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            BodyFraming::Chunked,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ncontent-length: 5\r\n\r\n",
            BodyFraming::Close,
        ),
    ] {
        let h = parse(head, &Method::GET).unwrap().unwrap();
        assert_eq!(h.framing, framing);
        assert_eq!(h.fields.get_all(&header::CONTENT_LENGTH).count(), 0);
        let names: Vec<_> = h.fields.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        assert!(names.contains(&b"transfer-encoding".to_vec()), "{names:?}");
    }
    // Without Transfer-Encoding the length stays, for the client's answer too.
    let h = parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        &Method::GET,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.fields.text(&header::CONTENT_LENGTH), Some("5"));
}

/// The head written for an answer with these fields (as an instance's, spans of its
/// head), and what it decided.
fn head(
    status: u16,
    fields: &[(&str, &str)],
    method: Method,
    hint: Option<u64>,
) -> (String, Framing, bool) {
    let raw: String = fields
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let fields = crate::fields::tests::spans(&raw);
    let head = AnswerHead {
        status: StatusCode::from_u16(status).unwrap(),
        fields: &fields,
        request_id: None,
        hint,
    };
    let mut out = BytesMut::new();
    let (framing, close) = encode_head(&head, &method, false, &mut out);
    (String::from_utf8(out.to_vec()).unwrap(), framing, close)
}

#[test]
fn an_instances_connection_fields_stay_behind_and_the_request_id_is_valets() {
    let raw = "X-Request-Id: theirs\r\nKeep-Alive: timeout=5\r\nConnection: X-Hop\r\nX-Hop: 1\r\nUpgrade: h2c\r\nX-Kept: 1\r\nDate: today\r\n";
    let fields = crate::fields::tests::spans(raw);
    let id = HeaderValue::from_static("ours");
    let head = AnswerHead {
        status: StatusCode::OK,
        fields: &fields,
        request_id: Some(&id),
        hint: Some(0),
    };
    let mut out = BytesMut::new();
    let (framing, close) = encode_head(&head, &Method::GET, false, &mut out);
    assert_eq!((framing, close), (Framing::Length(0), false));
    assert_eq!(
        String::from_utf8(out.to_vec()).unwrap(),
        "HTTP/1.1 200 OK\r\nX-Kept: 1\r\nDate: today\r\nx-request-id: ours\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn the_head_says_date_framing_and_close() {
    let (text, framing, close) = head(
        200,
        &[
            ("x-a", "b"),
            ("connection", "close"),
            ("transfer-encoding", "gzip"),
        ],
        Method::GET,
        None,
    );
    // The instance's `Connection: close` is about its own connection to valet: the client's
    // stays open, as when hyper writes the answer.
    assert_eq!((framing, close), (Framing::Chunked, false));
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nx-a: b\r\ndate: "),
        "{text}"
    );
    assert!(
        text.ends_with("GMT\r\ntransfer-encoding: chunked\r\n\r\n"),
        "{text}"
    );
    // valet's own answer (a header map) that asks to close the client's connection does.
    let mut map = http::HeaderMap::new();
    map.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    let fields = Fields::Map(map);
    let own = AnswerHead {
        status: StatusCode::BAD_REQUEST,
        fields: &fields,
        request_id: None,
        hint: Some(0),
    };
    let mut out = BytesMut::new();
    let (_, close) = encode_head(&own, &Method::GET, false, &mut out);
    assert!(close);
    assert!(String::from_utf8_lossy(&out).ends_with("connection: close\r\n\r\n"));
    let (text, framing, close) = head(599, &[], Method::GET, Some(0));
    assert_eq!((framing, close), (Framing::Length(0), false));
    assert!(text.starts_with("HTTP/1.1 599 \r\ncontent-length: 0\r\ndate: "));
    let (text, _, _) = head(200, &[("date", "yesterday")], Method::GET, Some(3));
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\ndate: yesterday\r\ncontent-length: 3\r\n\r\n"
    );
}

#[test]
fn a_response_length_counts_only_when_it_is_one_valid_number() {
    let length = |fields: &[(&str, &str)], method, hint| {
        let (text, framing, _) = head(200, fields, method, hint);
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("content-length"))
            .map(str::to_string)
            .collect();
        (framing, lines)
    };
    let one = |n: &str| vec![format!("content-length: {n}")];
    assert_eq!(
        length(&[("content-length", "42")], Method::GET, Some(1)),
        (Framing::Length(42), one("42"))
    );
    // Two lengths, or one that is not a number, count for nothing: the body's own size
    // frames the answer, else it is chunked.
    let two = [("content-length", "42"), ("content-length", "42")];
    assert_eq!(
        length(&two, Method::GET, Some(7)),
        (Framing::Length(7), one("7"))
    );
    assert_eq!(
        length(&[("content-length", "4x")], Method::GET, None),
        (Framing::Chunked, vec![])
    );
    // Bodiless: a HEAD answer keeps the length a GET would have.
    assert_eq!(
        length(&[("content-length", "42")], Method::HEAD, Some(0)),
        (Framing::None, one("42"))
    );
    assert_eq!(
        length(&[], Method::HEAD, Some(9)),
        (Framing::None, one("9"))
    );
}
