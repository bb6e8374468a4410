//! Clients for talking to valet: reqwest for ordinary requests, and a raw socket for requests
//! that a well-behaved client would refuse to send (dot segments, hop-by-hop headers).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reqwest client for tests: no proxy from the environment, and no cap on connections per
/// host, so a burst of N concurrent requests really opens N connections.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}

/// The JSON body of a response, whatever its status.
pub async fn json_of(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let text = response.text().await.expect("response body");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}, body is not JSON ({e}): {text}"))
}

/// The answer to a request for an instance in a crash loop: 503, `Retry-After` in seconds, and
/// the JSON body DESIGN.md names, whatever the driver.
pub async fn assert_crash_loop_answer(response: reqwest::Response, instance: &str, log: &str) {
    assert_eq!(
        response.status(),
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "{log}"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let body = json_of(response).await;
    for field in [
        "error",
        "message",
        "instance",
        "state",
        "timestamp",
        "retry_after",
    ] {
        assert!(
            body.get(field).is_some(),
            "field {field} missing from {body}"
        );
    }
    assert_eq!(body["error"], "instance_unavailable");
    assert_eq!(body["instance"], instance);
    assert_eq!(body["retry_after"], retry_after);
    let state = body["state"].as_str().unwrap();
    assert!(["backoff", "crashed"].contains(&state), "state {state}");
    assert!(
        body["message"].as_str().unwrap().contains("failing"),
        "{body}"
    );
}

/// The backend's echo JSON; panics (with `log`) unless the answer is 200.
pub async fn echo_of(response: reqwest::Response, log: &str) -> serde_json::Value {
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let body = response.text().await.unwrap_or_default();
        panic!("expected 200 from the backend, got {status}: {body}\n--- valet log ---\n{log}");
    }
    json_of(response).await
}

/// One response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}, body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends `head` (request line and headers, without the final blank line) exactly as written,
/// with `Connection: close` added, and reads the whole answer.
pub async fn raw(addr: SocketAddr, head: &str) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to valet");
    let request = format!(
        "{}\r\nConnection: close\r\n\r\n",
        head.trim_end().replace('\n', "\r\n")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes))
        .await
        .expect("answer within 30 s")
        .expect("read answer");
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> RawResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
}

/// `GET /` over HTTP/1.0 to `ip:port` from a blocking test: the whole response as text, or
/// `None` while nothing answers (a refused or silent port, an empty answer).
pub fn get_blocking(ip: std::net::IpAddr, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = SocketAddr::new(ip, port);
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    (!response.is_empty()).then_some(response)
}
