//! The benchmark upstream: the same fixed, fast HTTP/1.1 server behind every target, so the
//! only difference between "direct", nginx and valet is the hop in between.
//!
//! `valet-bench-upstream PORT` (or `$PORT`), listening on 127.0.0.1:
//! - `/ws`: WebSocket echo (every text or binary message comes straight back);
//! - `/sse?n=N&interval_ms=M`: N server-sent events, one every M ms, each carrying the Unix
//!   time in nanoseconds when it was written, so a client on this machine can measure delivery;
//! - anything else: 200 with a fixed 100-byte body.
//!
//! With `$STARTS_FILE` set, each start appends one line to that file: the burst benchmark
//! counts instance starts that way, outside valet, so valet's own accounting is not trusted.
#![forbid(unsafe_code)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// 100 bytes: small enough that the benchmark measures per-request overhead, not copying.
const BODY: &[u8; 100] = b"valet-bench upstream: a fixed body of exactly one hundred bytes, for every plain GET request.......\n";

type EventStream = futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>;
type Body = Either<Full<Bytes>, StreamBody<EventStream>>;

fn main() {
    let port = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: valet-bench-upstream PORT (or set $PORT)");
            std::process::exit(2);
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(port));
}

async fn serve(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        });
    // Count the start only once the port is bound: a start that fails is not an instance.
    record_start();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Without it, small responses wait on Nagle + delayed ACK and every target looks slow.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

fn record_start() {
    let Some(path) = std::env::var_os("STARTS_FILE") else {
        return;
    };
    // One short O_APPEND write per start, so concurrent starts never interleave lines.
    let line = format!("{}\n", std::process::id());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "cannot append to STARTS_FILE {}: {e}",
            path.to_string_lossy()
        );
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match req.uri().path() {
        "/ws" => websocket(req),
        "/sse" => events(req.uri().query().unwrap_or("")),
        _ => fixed(),
    })
}

fn fixed() -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::from_static(BODY))));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

/// Accepts the upgrade, then echoes on the raw connection hyper hands over.
fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    return;
                }
            } else if msg.is_close() {
                return;
            }
        }
    });
    let mut res = status(StatusCode::SWITCHING_PROTOCOLS);
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::try_from(accept).expect("base64 is a header value"),
    );
    res
}

/// `n` events, `interval_ms` apart, each stamped with the time it was written.
fn events(query: &str) -> Response<Body> {
    let n: u64 = param(query, "n").unwrap_or(100);
    let interval = Duration::from_millis(param(query, "interval_ms").unwrap_or(10));
    let stream = futures_util::stream::unfold(
        (0u64, tokio::time::interval(interval)),
        move |(i, mut tick)| async move {
            if i >= n {
                return None;
            }
            tick.tick().await;
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let event = Frame::data(Bytes::from(format!("id: {i}\ndata: {nanos}\n\n")));
            Some((Ok(event), (i + 1, tick)))
        },
    );
    let mut res = Response::new(Either::Right(StreamBody::new(stream.boxed())));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn status(code: StatusCode) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::new())));
    *res.status_mut() = code;
    res
}
