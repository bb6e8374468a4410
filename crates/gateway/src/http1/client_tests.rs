use super::*;
use http::Request;
use http_body_util::{BodyExt, Empty};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn get() -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("/")
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap()
}

/// What a scripted test server does with a request.
#[derive(Clone, Copy)]
enum Act {
    Reply(&'static [u8]),
    ReplyAndClose(&'static [u8]),
    /// Closes the connection without answering.
    Close,
    /// Keeps the connection open and never answers.
    Silent,
}

/// An HTTP/1.1 server that does `script(connection, request)` for each request head it
/// reads (both counted from 0), and counts the connections it accepted.
async fn scripted(
    script: impl Fn(usize, usize) -> Act + Copy + Send + 'static,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let connection = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                let mut request = 0;
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let (reply, close) = match script(connection, request) {
                            Act::Reply(reply) => (reply, false),
                            Act::ReplyAndClose(reply) => (reply, true),
                            Act::Close => return,
                            Act::Silent => {
                                let _ = stream.read(&mut buf).await;
                                return;
                            }
                        };
                        request += 1;
                        if stream.write_all(reply).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Answers every request with `reply` (or only the first, then closes, when
/// `close_after_one`).
async fn server_with(
    reply: &'static [u8],
    close_after_one: bool,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    scripted(move |_, _| match close_after_one {
        true => Act::ReplyAndClose(reply),
        false => Act::Reply(reply),
    })
    .await
}

async fn server(close_after_one: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    server_with(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        close_after_one,
    )
    .await
}

#[tokio::test]
async fn a_deadline_ends_the_wait_for_an_answer_on_a_pooled_connection_and_drops_it() {
    // The first request is answered; the second, on the same connection, never is.
    let (addr, accepted) = scripted(|_, request| match request {
        0 => Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        _ => Act::Silent,
    })
    .await;
    // The connection's timer starts at the connect timeout (200 ms): the first wait's
    // later deadline leaves it there, so for the second it fires early and is set again.
    let pool = Pool::new(Duration::from_millis(200));
    let send = |deadline| {
        let (parts, body) = get().into_parts();
        let fields = crate::fields::Fields::Map(parts.headers);
        let (head, framing) = encode(&Method::GET, "/", &fields, None, &body);
        let pool = pool.clone();
        async move {
            pool.send_head(addr, &head, &Method::GET, framing, body, Deadline::At(deadline))
                .await
        }
    };
    let response = send(Instant::now() + Duration::from_secs(5)).await.unwrap();
    let body = response.body.collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(pool.idle(addr), 1);
    let asked = Instant::now();
    let failed = send(asked + Duration::from_millis(600)).await;
    let waited = asked.elapsed();
    assert!(
        matches!(failed, Err(SendError::Deadline)),
        "{:?}",
        failed.err()
    );
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "gave up after {waited:?}, asked for 600 ms"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        pool.idle(addr),
        0,
        "a connection with an answer pending is not reused"
    );
}

#[tokio::test]
async fn a_finished_body_returns_its_connection_for_the_next_request() {
    let (addr, accepted) = server(false).await;
    let pool = Pool::new(Duration::from_secs(1));
    for _ in 0..5 {
        let response = pool.send(addr, get()).await.unwrap();
        let body = response.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        assert_eq!(pool.idle(addr), 1);
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let (addr, accepted) = server_with(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n",
        false,
    )
    .await;
    let pool = Pool::new(Duration::from_secs(1));
    let response = pool.send(addr, get()).await.unwrap();
    drop(response);
    assert_eq!(pool.idle(addr), 0);
    let response = pool.send(addr, get()).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_the_instance_closed_is_skipped() {
    let (addr, accepted) = server(true).await;
    let pool = Pool::new(Duration::from_secs(1));
    let response = pool.send(addr, get()).await.unwrap();
    response.body.collect().await.unwrap();
    assert_eq!(pool.idle(addr), 1);
    // The server closes after one answer; give its FIN time to arrive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = pool.send(addr, get()).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_posted_in_pieces_arrives_chunked_and_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(seen).unwrap()
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(4);
    let stream_body = http_body_util::StreamBody::new(tokio_stream_of(rx));
    let body = crate::stream::SentBody::new(stream_body, Duration::from_secs(5));
    let req = Request::builder()
        .method("POST")
        .uri("/up")
        .header("host", "test")
        .body(body)
        .unwrap();
    let sender = tokio::spawn(async move {
        for part in ["hello", ", ", "world"] {
            tx.send(Ok(http_body::Frame::data(Bytes::from(part))))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let pool = Pool::new(Duration::from_secs(1));
    let response = pool.send(addr, req).await.unwrap();
    assert_eq!(response.status, 200);
    sender.await.unwrap();
    let seen = got.await.unwrap();
    assert!(seen.starts_with("POST /up HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    let (_, wire) = seen.split_once("\r\n\r\n").unwrap();
    assert_eq!(wire, "5\r\nhello\r\n2\r\n, \r\n5\r\nworld\r\n0\r\n\r\n");
}

/// A server whose first connection answers one request and then closes on reading the
/// next, unanswered (the race of an idle keep-alive timeout); later connections answer all.
async fn closes_on_the_second_request() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    scripted(|connection, request| match (connection, request) {
        (0, 1) => Act::Close,
        _ => Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    })
    .await
}

/// The session never sends a written request twice, whatever its method: it says the
/// pooled connection closed unanswered, and the proxy decides (`dispatch.rs`, one policy).
#[tokio::test]
async fn a_request_on_a_pooled_connection_closed_unanswered_is_reported_as_reused_not_resent() {
    for method in ["GET", "POST"] {
        let (addr, accepted) = closes_on_the_second_request().await;
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, get()).await.unwrap();
        response.body.collect().await.unwrap();
        let request = Request::builder()
            .method(method)
            .uri("/")
            .header("host", "test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        match pool.send(addr, request).await {
            Err(SendError::Closed { reused: true, .. }) => {}
            other => panic!("{method}: expected Closed on a reused connection, got {:?}", other.map(|r| r.status)),
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "{method}");
        // The next request dials a new connection and is answered.
        let response = pool.send(addr, get()).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "{method}");
    }
}

#[tokio::test]
async fn an_answer_given_before_the_upload_ends_is_passed_on() {
    // The instance refuses the upload from its head alone, without reading the body.
    let (addr, _) = server_with(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!",
        false,
    )
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(1);
    let body = http_body_util::StreamBody::new(tokio_stream_of(rx));
    let req = Request::builder()
        .method("POST")
        .uri("/up")
        .header("host", "test")
        .body(body)
        .unwrap();
    // The client sends one piece and then nothing: the answer must not wait for the rest.
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    let pool = Pool::new(Duration::from_secs(1));
    let response = tokio::time::timeout(Duration::from_secs(5), pool.send(addr, req))
        .await
        .expect("answered while the upload was still open")
        .unwrap();
    assert_eq!(response.status, 413);
    let body = response.body.collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"big!");
    // Part of the body was never sent: that connection must not carry another request.
    assert_eq!(pool.idle(addr), 0);
    drop(tx);
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_are_not_pooled() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let (addr, _) = server_with(reply, false).await;
        let pool = Pool::new(Duration::from_secs(1));
        let response = pool.send(addr, get()).await.unwrap();
        let body = response.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        assert_eq!(pool.idle(addr), 0, "{}", String::from_utf8_lossy(reply));
    }
}

#[tokio::test]
async fn a_body_delimited_by_close_is_read_to_the_end() {
    let (addr, _) = server_with(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true).await;
    let pool = Pool::new(Duration::from_secs(1));
    let response = pool.send(addr, get()).await.unwrap();
    let body = response.body.collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"until the end");
    assert_eq!(pool.idle(addr), 0);
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn refused_is_a_connect_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let pool = Pool::new(Duration::from_secs(1));
    match pool.send(addr, get()).await {
        Err(SendError::Connect(_)) => {}
        other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
    }
}

/// A writer whose every write fails, as a pooled connection the instance reset does.
struct Reset;

impl tokio::io::AsyncWrite for Reset {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failed_first_write_says_whether_it_took_frames_of_the_body() {
    // The body's frame was at hand and went into the write with the head: a second try on
    // another connection would be short of it, so it must not be told "nothing was taken".
    let mut reset = Reset;
    let progress = Upload::new();
    let mut body = http_body_util::Full::new(Bytes::from_static(b"hello"));
    let sent = send_body(
        &mut reset,
        b"POST / HTTP/1.1\r\n\r\n",
        &mut body,
        Framing::Length(5),
        &progress,
    );
    assert!(matches!(
        sent.await,
        Err(Failure::Unsent {
            body_taken: true,
            ..
        })
    ));
    // Without a body, nothing is lost with the write.
    let mut empty = http_body_util::Empty::<Bytes>::new();
    let sent = send_body(
        &mut reset,
        b"GET / HTTP/1.1\r\n\r\n",
        &mut empty,
        Framing::None,
        &progress,
    );
    assert!(matches!(
        sent.await,
        Err(Failure::Unsent {
            body_taken: false,
            ..
        })
    ));
}

#[tokio::test]
async fn the_wait_after_an_upload_is_timed_from_the_end_of_the_body_not_the_start() {
    // An instance that reads the whole body and then never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let instance = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = stream.read(&mut buf).await;
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(4);
    let body = http_body_util::StreamBody::new(tokio_stream_of(rx));
    let body = crate::stream::SentBody::new(body, Duration::from_secs(5));
    // Four pieces 150 ms apart: 450 ms to send, longer than the 200 ms wait for the answer.
    tokio::spawn(async move {
        for i in 0..4 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"piece"))))
                .await
                .unwrap();
        }
    });
    let fields = crate::fields::Fields::Map(http::HeaderMap::new());
    let (head, framing) = encode(&Method::POST, "/up", &fields, None, &body);
    let pool = Pool::new(Duration::from_secs(1));
    let start = Instant::now();
    let sent = pool
        .send_head(
            addr,
            &head,
            &Method::POST,
            framing,
            body,
            Deadline::AfterBody {
                answer: Duration::from_millis(200),
                stall: Duration::from_secs(5),
            },
        )
        .await;
    let waited = start.elapsed().as_millis();
    assert!(matches!(sent, Err(SendError::Deadline)), "{:?}", sent.map(|_| ()));
    assert!((650..1500).contains(&waited), "{waited} ms: 450 to send, then 200");
    instance.abort();
}

#[tokio::test]
async fn a_deadline_sooner_than_the_connect_timeout_bounds_the_connect_as_a_deadline() {
    // A listener whose backlog is full: a further connect is never accepted.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    let pool = Pool::new(Duration::from_secs(10));
    let start = Instant::now();
    let (head, framing) = encode(
        &Method::GET,
        "/",
        &crate::fields::Fields::Map(http::HeaderMap::new()),
        None,
        &Empty::<Bytes>::new(),
    );
    let sent = pool
        .send_head(
            addr,
            &head,
            &Method::GET,
            framing,
            Empty::<Bytes>::new(),
            Deadline::At(start + Duration::from_millis(300)),
        )
        .await;
    let waited = start.elapsed().as_millis();
    assert!(matches!(sent, Err(SendError::Deadline)), "{:?}", sent.map(|_| ()));
    assert!((300..2000).contains(&waited), "{waited} ms, the deadline was 300");
    drop(listener);
}

#[tokio::test]
async fn an_instance_that_stops_reading_an_upload_gets_its_deadline_from_the_body_s_end() {
    // An instance that accepts and never reads: the last write of a large body blocks.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let instance = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let body = http_body_util::Full::new(Bytes::from(vec![b'x'; 64 << 20]));
    let deadline = Deadline::AfterBody {
        answer: Duration::from_millis(300),
        stall: Duration::from_secs(5),
    };
    let (sent, waited) = post_until_given_up(addr, body, deadline).await;
    assert!(matches!(sent, Err(SendError::Deadline)), "{:?}", sent.map(|_| ()));
    assert!((300..3000).contains(&waited), "{waited} ms, the deadline was 300");
    instance.abort();
}

#[tokio::test]
async fn an_instance_that_stops_reading_mid_upload_ends_the_exchange_after_the_stall_time() {
    // The instance reads 64 KiB and then nothing; the client's body keeps coming.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let instance = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 << 10];
        stream.read_exact(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(2);
    let feeder = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        while tx
            .send(Ok(http_body::Frame::data(chunk.clone())))
            .await
            .is_ok()
        {}
    });
    let body = http_body_util::StreamBody::new(tokio_stream_of(rx));
    let body = crate::stream::SentBody::new(body, Duration::from_secs(5));
    let deadline = Deadline::AfterBody {
        answer: Duration::from_secs(5),
        stall: Duration::from_millis(300),
    };
    let (sent, waited) = post_until_given_up(addr, body, deadline).await;
    assert!(matches!(sent, Err(SendError::Stalled)), "{:?}", sent.map(|_| ()));
    assert!((300..3000).contains(&waited), "{waited} ms, the stall time was 300");
    instance.abort();
    feeder.abort();
}

/// POSTs `body` to `addr` with `deadline`; what came of it and how many milliseconds it took.
/// Fails the test if nothing ends the exchange within 10 s.
async fn post_until_given_up<B>(
    addr: SocketAddr,
    body: B,
    deadline: Deadline,
) -> (Result<Answer<ResponseBody>, SendError>, u128)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let fields = crate::fields::Fields::Map(http::HeaderMap::new());
    let (head, framing) = encode(&Method::POST, "/up", &fields, None, &body);
    let pool = Pool::new(Duration::from_secs(1));
    let start = Instant::now();
    let sent = pool.send_head(addr, &head, &Method::POST, framing, body, deadline);
    let sent = tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .expect("nothing ended the exchange");
    (sent, start.elapsed().as_millis())
}
