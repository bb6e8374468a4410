//! Every admin endpoint but the probes and the dashboard's static page needs the admin token.

use crate::error::ApiError;
use crate::Admin;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Lets a request through only with `Authorization: Bearer <admin token>`.
pub async fn require_token(
    State(admin): State<Arc<Admin>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match bearer(req.headers()) {
        Some(token) if admin.token.matches(token) => Ok(next.run(req).await),
        _ => Err(ApiError::Unauthorized),
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
}
