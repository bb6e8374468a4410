//! Reaching a test valet's admin listener: its address (the support module picks a free one and
//! writes it into valet.toml), its token, authenticated requests, and the CLI beside the config.
#![allow(dead_code)]

use crate::support::{eventually, Valet};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// The admin token the tests configure (`server.admin_token`).
pub const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// `[server]` lines that give a test config the known token.
pub fn with_token(toml: &str) -> String {
    format!("[server]\nadmin_token = \"{TOKEN}\"\n\n{toml}")
}

pub struct Admin {
    pub addr: SocketAddr,
    pub token: String,
    pub client: reqwest::Client,
    config: PathBuf,
}

impl Admin {
    /// The admin side of `valet`, once it answers `/healthz`.
    pub async fn of(valet: &Valet, token: &str) -> Self {
        let config = valet.dir().join("valet.toml");
        let text = std::fs::read_to_string(&config).expect("valet.toml");
        let doc: toml_edit::DocumentMut = text.parse().expect("valet.toml is TOML");
        let addr = doc["server"]["admin_listen"]
            .as_str()
            .expect("admin_listen")
            .parse()
            .expect("address");
        let admin = Self {
            addr,
            token: token.to_string(),
            client: valet.client.clone(),
            config,
        };
        eventually(
            Duration::from_secs(10),
            "admin listener answers /healthz",
            || async {
                let r = admin.client.get(admin.url("/healthz")).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        admin
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET with the token: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin GET");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// POST with the token: status and JSON body.
    pub async fn post(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin POST");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// The one instance of a class and key from `/v1/instances/...`.
    pub async fn instance(&self, class: &str, key: &str) -> Value {
        let (status, body) = self.get(&instance_path(class, key)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Runs a valet CLI command against this valet's config (stdout and stderr together).
    pub fn cli(&self, args: &[&str]) -> Output {
        let config = self.config.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &config]);
        Valet::run(&all, Duration::from_secs(60))
    }
}

/// `/v1/instances/{class}/{key}` with the key percent-encoded.
pub fn instance_path(class: &str, key: &str) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    format!("/v1/instances/{}/{}", encode(class), encode(key))
}

/// The value of one series in a scrape (`name{labels}` exactly as rendered), if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Reads a Server-Sent Events response until something shows up.
pub struct SseReader {
    events:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    /// Everything read so far.
    pub seen: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            events: Box::pin(response.bytes_stream()),
            seen: String::new(),
        }
    }

    /// Reads until `needle` has arrived (anywhere in what was read), or panics after 20 s.
    pub async fn wait_for(&mut self, needle: &str) {
        use futures_util::StreamExt;
        let read = async {
            while !self.seen.contains(needle) {
                let chunk = self
                    .events
                    .next()
                    .await
                    .expect("stream still open")
                    .expect("chunk");
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .is_err()
        {
            panic!("{needle:?} never came; got:\n{}", self.seen);
        }
    }
}
