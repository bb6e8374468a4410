//! The CLI's side of the admin API: finds the running valet from the config beside it (its
//! `admin_listen`, and the token from `server.admin_token` or `<data_dir>/admin-token`) and
//! makes authenticated requests. `VALET_ADMIN_URL` and `VALET_ADMIN_TOKEN` override both, for
//! a valet on another machine.

use crate::cli::AdminArgs;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// A path segment keeps only unreserved characters: `/`, `%`, `?` and spaces in a key are
/// encoded so the key arrives as one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `/v1/instances/{class}/{key}`, encoded.
pub fn instance_path(class: &str, key: &str) -> String {
    format!("/v1/instances/{}/{}", segment(class), segment(key))
}

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> Result<Self, String> {
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let (base, token) = match (env("VALET_ADMIN_URL"), env("VALET_ADMIN_TOKEN")) {
            (Some(url), Some(token)) => (url.trim_end_matches('/').to_string(), token),
            (url, token) => {
                if !args.config.exists() {
                    return Err(format!(
                        "no {} here: run beside the valet.toml of the running valet, or pass --config PATH",
                        args.config.display()
                    ));
                }
                let config = valet_config::load(&args.config).map_err(|errors| {
                    valet_config::render_report(&errors).trim_end().to_string()
                })?;
                let base = match url {
                    Some(url) => url.trim_end_matches('/').to_string(),
                    None => base_url(&config.server.admin_listen)?,
                };
                let token = match token {
                    Some(token) => token,
                    None => valet_api::token::read_token(&config)?,
                };
                (base, token)
            }
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Self { base, token, http })
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.post(self.url(path))).await
    }

    /// POST with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// PUT with a raw body.
    pub async fn put_body(&self, path: &str, body: Vec<u8>) -> Result<Value, String> {
        self.send(self.http.put(self.url(path)).body(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.delete(self.url(path))).await
    }

    /// POST a multipart form and hand back the response to read as a stream (`?progress=1`).
    pub async fn post_form_stream(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<reqwest::Response, String> {
        let response = self
            .request(self.http.post(self.url(path)).multipart(form))
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_of(response).await)
        }
    }

    /// A response whose body the caller reads as a stream (log follow).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, String> {
        let response = self.request(self.http.get(self.url(path))).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_of(response).await)
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn request(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        req.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                format!("cannot reach valet's admin listener at {}: is `valet up` running with this config?", self.base)
            } else {
                format!("request to {} failed: {e}", self.base)
            }
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let response = self.request(req).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| format!("unreadable answer from valet: {e}"))
    }
}

/// The API's `{error, message}` as one line.
async fn error_of(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    // A version that failed to start comes with its last log lines.
    let log: Vec<&str> = body["log"]
        .as_array()
        .map(|lines| lines.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match body["message"].as_str() {
        Some(message) if !log.is_empty() => {
            format!("{message} ({status})\n--- its log ---\n{}", log.join("\n"))
        }
        Some(message) => format!("{message} ({status})"),
        None => format!("valet answered {status}"),
    }
}

/// `admin_listen` as a URL to connect to: a wildcard address means "this machine".
fn base_url(admin_listen: &str) -> Result<String, String> {
    let mut addr: SocketAddr = admin_listen
        .parse()
        .map_err(|e| format!("server.admin_listen {admin_listen:?}: {e}"))?;
    if addr.ip().is_unspecified() {
        let loopback = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        addr.set_ip(loopback);
    }
    Ok(format!("http://{addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_one_path_segment() {
        assert_eq!(
            instance_path("Api", "a/b c%"),
            "/v1/instances/Api/a%2Fb%20c%25"
        );
        assert_eq!(segment("project-42_x.y~"), "project-42_x.y~");
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(base_url("0.0.0.0:8788").unwrap(), "http://127.0.0.1:8788");
        assert_eq!(base_url("[::]:8788").unwrap(), "http://[::1]:8788");
        assert_eq!(base_url("10.0.0.2:9000").unwrap(), "http://10.0.0.2:9000");
    }
}
