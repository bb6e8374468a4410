//! A bare HTTP/1.1 client on hyper's connection API: one TCP connection per [`Conn`], no pool,
//! so each benchmark decides exactly which requests share a connection.

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Empty<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends when the server closes or the sender is dropped.
        tokio::spawn(conn);
        Ok(Self { addr, sender })
    }

    /// Sends a GET and returns the response with its body still unread.
    pub async fn send(&mut self, path: &str) -> Result<http::Response<Incoming>, BoxError> {
        let req = Request::get(path)
            .header(header::HOST, self.addr.to_string())
            .body(Empty::new())?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// GET with the whole body read: status and the time until the response head arrived.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Duration), BoxError> {
        let started = Instant::now();
        let res = self.send(path).await?;
        let first_byte = started.elapsed();
        let status = res.status();
        res.into_body().collect().await?;
        Ok((status, first_byte))
    }
}

/// A fresh connection and one GET: (status, time from before connect to the response head).
pub async fn get_fresh(addr: SocketAddr, path: &str) -> Result<(StatusCode, Duration), BoxError> {
    let started = Instant::now();
    let mut conn = Conn::open(addr).await?;
    let res = conn.send(path).await?;
    let first_byte = started.elapsed();
    let status = res.status();
    res.into_body().collect().await?;
    Ok((status, first_byte))
}
