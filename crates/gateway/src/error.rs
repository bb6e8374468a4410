//! The one error type of the gateway. Each variant says who failed (client, instance, upstream)
//! and turns into a short JSON answer; no internal path or stack trace ever reaches a client.

use crate::body::{full, Body};
use http::{header, HeaderValue, Response, StatusCode};
use std::time::{Duration, SystemTime};
use valet_instances::AcquireError;

#[derive(Debug)]
pub enum GatewayError {
    /// No route and no assets for this path.
    NotFound,
    /// Cluster mode: a deployed project this replica is still building (another replica
    /// deployed it); it serves it once built.
    ProjectArriving,
    /// The request cannot be served as sent (missing instance key, bad key).
    BadRequest { code: &'static str, message: String },
    /// A JWT route without a valid token.
    Unauthorized { message: String },
    /// Over the route's rate limit.
    TooManyRequests { retry_after: Duration },
    /// Body larger than `max_body_size`.
    PayloadTooLarge { limit: u64 },
    /// The client went silent mid-body for longer than `timeouts.idle`.
    RequestTimeout { idle: Duration },
    /// The instance could not be had.
    Instance {
        instance: String,
        error: AcquireError,
    },
    /// The instance closed or reset the connection.
    BadGateway {
        instance: String,
        message: &'static str,
    },
    /// The instance gave no answer: nothing listened at its address (`sent: false`, the request
    /// never left), or the connection closed before a response head came (`sent: true`; on a
    /// pooled connection: `reused`).
    Unanswered {
        instance: String,
        sent: bool,
        reused: bool,
    },
    /// The instance did not answer in time.
    Timeout {
        instance: String,
        what: &'static str,
    },
    /// Cluster mode, on the peer listener: this replica does not hold the key's lease (any
    /// more, or under the epoch the forwarding replica named). The forwarding replica looks
    /// the owner up again; a client may retry at once.
    NotOwner { instance: String },
    /// Cluster mode, on the peer listener: the request lacks the cluster's peer token.
    PeerRefused,
    /// A request valet cannot pass on as sent (a transfer coding other than chunked).
    NotImplemented { message: &'static str },
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::ProjectArriving => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Instance { error, .. } if error.is_client_error() => StatusCode::BAD_REQUEST,
            Self::Instance {
                error: AcquireError::TooManyStarts { .. },
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            Self::Instance { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway { .. } | Self::Unanswered { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::NotOwner { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::PeerRefused => StatusCode::FORBIDDEN,
            Self::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let not_owner = matches!(self, Self::NotOwner { .. });
        let timestamp = httpdate::fmt_http_date(SystemTime::now());
        let mut retry_after = None;
        let body = match self {
            Self::NotFound => json(&[
                ("error", "not_found"),
                ("message", "no route matches this path"),
            ]),
            Self::ProjectArriving => {
                retry_after = Some(1);
                json(&[
                    ("error", "project_building"),
                    (
                        "message",
                        "this replica is still building the project's current version; retry shortly",
                    ),
                ])
            }
            Self::BadRequest { code, message } => json(&[("error", code), ("message", &message)]),
            Self::Unauthorized { message } => {
                json(&[("error", "unauthorized"), ("message", &message)])
            }
            Self::NotImplemented { message } => {
                json(&[("error", "not_implemented"), ("message", message)])
            }
            Self::TooManyRequests { retry_after: wait } => {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                retry_after = Some(secs);
                json(&[
                    ("error", "rate_limited"),
                    ("message", "too many requests; retry later"),
                ])
            }
            Self::PayloadTooLarge { limit } => json(&[
                ("error", "payload_too_large"),
                (
                    "message",
                    &format!("request body exceeds the limit of {limit} bytes"),
                ),
            ]),
            Self::RequestTimeout { idle } => json(&[
                ("error", "request_timeout"),
                (
                    "message",
                    &format!(
                        "the request body stalled for more than {} s",
                        idle.as_secs_f64()
                    ),
                ),
            ]),
            Self::Instance { instance, error } => {
                let secs = error.retry_after().max(Duration::from_secs(1)).as_secs();
                if !error.is_client_error() {
                    retry_after = Some(secs);
                }
                serde_json::json!({
                    "error": error.code(),
                    "message": error.public_message(),
                    "instance": instance,
                    "state": error.state().as_str(),
                    "timestamp": timestamp,
                    "retry_after": secs,
                })
                .to_string()
            }
            Self::Unanswered { instance, sent, .. } => json(&[
                ("error", "bad_gateway"),
                (
                    "message",
                    if sent {
                        "the instance closed the connection"
                    } else {
                        "the instance refused the connection"
                    },
                ),
                ("instance", &instance),
            ]),
            Self::BadGateway { instance, message } => json(&[
                ("error", "bad_gateway"),
                ("message", message),
                ("instance", &instance),
            ]),
            Self::Timeout { instance, what } => json(&[
                ("error", "gateway_timeout"),
                ("message", &format!("the instance did not {what} in time")),
                ("instance", &instance),
            ]),
            Self::NotOwner { instance } => {
                retry_after = Some(1);
                json(&[
                    ("error", "not_owner"),
                    (
                        "message",
                        "another replica owns this instance now; send the request again",
                    ),
                    ("instance", &instance),
                ])
            }
            Self::PeerRefused => json(&[
                ("error", "peer_refused"),
                (
                    "message",
                    "the peer listener serves other replicas of this cluster only",
                ),
            ]),
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if not_owner {
            headers.insert(
                crate::forward::X_VALET_NOT_OWNER.clone(),
                HeaderValue::from_static("1"),
            );
        }
        response
    }
}

fn json(fields: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}
