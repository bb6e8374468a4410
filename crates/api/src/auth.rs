//! Every admin endpoint but the probes and the dashboard's static page needs an admin token:
//! the configured (or generated) one, or a stored token made with `valet token create --admin`.

use crate::error::ApiError;
use crate::principal::{identify, Principal};
use crate::Admin;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Lets a request through only with `Authorization: Bearer <admin token>`. The token is
/// resolved by the same rule as the deploy API's ([`identify`]), so an admin token is an admin
/// token on every endpoint; a user's token gets 403 naming what it lacks.
pub async fn require_token(
    State(admin): State<Arc<Admin>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = bearer(req.headers()) else {
        return Err(ApiError::Unauthorized);
    };
    match identify(&admin, token).await? {
        Some(Principal::Admin) => Ok(next.run(req).await),
        Some(Principal::User { user, .. }) => Err(ApiError::refuse(
            403,
            "forbidden",
            format!(
                "this endpoint needs an admin token; the token of user {user:?} opens only the deploy API"
            ),
        )),
        None => Err(ApiError::UnknownToken),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        // `Bearer ` with nothing after it is no token, not an unknown one.
        .filter(|t| !t.is_empty())
}
