//! One error type for every admin endpoint: a status and a short JSON body
//! `{"error": code, "message": text}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use valet_deploy::DeployError;
use valet_instances::AcquireError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid admin token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The deploy API without a token: any of three kinds opens it, so none is named alone.
    #[error("a token is required (Authorization: Bearer <token>): a user token from `valet token create`, an admin token, or a JWT")]
    NoToken,
    /// A token was sent but valet knows no such token: saying "an admin token is required"
    /// here would send a tenant with a mistyped token looking for the wrong thing.
    #[error("this token is not known to this valet (mistyped, revoked, or made by another valet's store)")]
    UnknownToken,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// A bearer token that was presented but is not valid (a forged or expired JWT).
    #[error("invalid token: {0}")]
    BadToken(String),
    /// Something failed on valet's side; the details are in valet's log, not in the answer.
    #[error("internal error; see valet's log")]
    Internal,
    /// A deploy endpoint refused or failed, with its own status and code.
    #[error("{message}")]
    Deploy {
        /// HTTP status.
        status: u16,
        /// Short code for scripts.
        code: &'static str,
        /// What went wrong, for people.
        message: String,
        /// A failed version's last log lines.
        log: Option<Vec<String>>,
    },
    /// A plan's rate limit (`deploys_per_hour`): 429, and `Retry-After` says when the next
    /// try can pass.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
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
            Self::Unauthorized | Self::NoToken | Self::UnknownToken | Self::BadToken(_) => {
                "unauthorized"
            }
            Self::Internal => "internal",
            Self::Deploy { code, .. } => code,
            Self::NotFound(_) => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::Unavailable { code, .. } => code,
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::NoToken | Self::UnknownToken | Self::BadToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Deploy { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
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

/// The HTTP status a deploy error is answered with.
fn deploy_status(e: &DeployError) -> u16 {
    match e {
        DeployError::BadUpload(_) | DeployError::UnknownRuntime(_) | DeployError::BadName(_) => 400,
        DeployError::UnsafeArchive(_) => 400,
        DeployError::UnsupportedFile(_) => 415,
        DeployError::TooLarge { .. } => 413,
        DeployError::Install { .. } | DeployError::Compile(_) | DeployError::NotReady { .. } => 422,
        DeployError::NotFound(_) => 404,
        DeployError::Forbidden(_) => 403,
        DeployError::Unavailable(_) => 503,
        DeployError::Store(_) | DeployError::Io { .. } => 500,
    }
}

impl From<valet_deploy::PlanRefusal> for ApiError {
    fn from(e: valet_deploy::PlanRefusal) -> Self {
        use valet_deploy::PlanRefusal as R;
        let message = e.to_string();
        match e {
            R::UnknownPlan { .. } => Self::refuse(403, "unknown_plan", message),
            R::TooLarge { .. } => Self::refuse(413, "too_large", message),
            R::TooManyProjects { .. } => Self::refuse(403, "plan_limit", message),
            R::TooManyDeploys { retry_after, .. } => Self::RateLimited {
                message,
                retry_after,
            },
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        let status = deploy_status(&e);
        if status >= 500 {
            tracing::error!(error = %e, "deploy failed");
        }
        let log = match &e {
            DeployError::NotReady { log, .. } => Some(log.clone()),
            _ => None,
        };
        Self::Deploy {
            status,
            code: e.code(),
            message: e.public_message(),
            log,
        }
    }
}

impl From<valet_store::StoreError> for ApiError {
    fn from(e: valet_store::StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::Internal
    }
}

impl ApiError {
    /// A refusal with its own status (403 plan limit, 413, 429) and a message naming the limit.
    pub fn refuse(status: u16, code: &'static str, message: String) -> Self {
        Self::Deploy {
            status,
            code,
            message,
            log: None,
        }
    }
}

impl ApiError {
    /// The HTTP status of this answer.
    pub fn status_code(&self) -> StatusCode {
        self.status()
    }

    /// The JSON body of this answer: `{error, message}`, plus `log` for a failed version.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let Self::Deploy { log: Some(log), .. } = self {
            body["log"] = serde_json::json!(log);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized | Self::NoToken | Self::UnknownToken | Self::BadToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"valet admin\""),
                );
            }
            Self::Unavailable { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}
