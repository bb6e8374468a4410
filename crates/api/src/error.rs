//! One error type for every admin endpoint: a status and a short JSON body
//! `{"error": code, "message": text}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use valet_instances::AcquireError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid admin token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The instance could not be started; operators see the whole reason.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
}

impl ApiError {
    pub fn no_class(class: &str) -> Self {
        Self::NotFound(format!("no container class named {class:?}"))
    }

    pub fn no_instance(class: &str, key: &str) -> Self {
        Self::NotFound(format!("no instance {class}/{key}"))
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::Unavailable { code, .. } => code,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<AcquireError> for ApiError {
    fn from(e: AcquireError) -> Self {
        if e.is_client_error() {
            return Self::BadRequest(e.to_string());
        }
        Self::Unavailable {
            code: e.code(),
            message: e.to_string(),
            retry_after: e.retry_after().as_secs().max(1),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"valet admin\""),
                );
            }
            Self::Unavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}
