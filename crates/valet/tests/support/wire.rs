//! Raw bytes on the wire, for requests no client library would send (smuggling patterns, bad
//! chunking, invalid header bytes), and a separate process that holds thousands of idle
//! connections (a test process cannot: its own open-file limit and runtime would be the test).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOLDER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/hold_connections.py"
);

/// What came back on one connection.
#[derive(Debug)]
pub struct Wire {
    pub bytes: Vec<u8>,
    /// Whether valet closed the connection (rather than the read timing out).
    pub closed: bool,
}

impl Wire {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status of every response on the connection, in order.
    pub fn statuses(&self) -> Vec<u16> {
        let text = self.text();
        text.match_indices("HTTP/1.1 ")
            .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
            .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
            .collect()
    }
}

/// Sends `request` as is and reads until valet closes the connection or stays silent for
/// `quiet`.
pub async fn exchange(addr: SocketAddr, request: &[u8], quiet: Duration) -> Wire {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Err(_) => {
                return Wire {
                    bytes,
                    closed: false,
                }
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Wire {
                    bytes,
                    closed: true,
                }
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// A python3 process holding `n` idle connections to an address; dropping it closes them.
pub struct Holder {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// How many connections it managed to open.
    pub open: usize,
}

impl Holder {
    /// Opens the connections; returns once all of them are open (or the rest failed).
    pub fn open(addr: SocketAddr, n: usize) -> Self {
        let mut child = Command::new("python3")
            .arg(HOLDER)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let open = read_count(&mut stdout, "open ");
        Self {
            child,
            stdin,
            stdout,
            open,
        }
    }

    /// How many of the connections the server has closed by now.
    pub fn closed(&mut self) -> usize {
        writeln!(self.stdin, "?").expect("holder stdin");
        self.stdin.flush().unwrap();
        read_count(&mut self.stdout, "closed ")
    }
}

fn read_count(stdout: &mut BufReader<ChildStdout>, prefix: &str) -> usize {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("holder output");
    line.trim()
        .strip_prefix(prefix)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("holder said {line:?}"))
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
