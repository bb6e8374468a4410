//! Every admin endpoint but the probes and the dashboard's static page needs the admin token.

use crate::error::ApiError;
use crate::Admin;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Lets a request through only with `Authorization: Bearer <admin token>`.
pub async fn require_token(
    State(admin): State<Arc<Admin>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(token) if admin.token.matches(token) => Ok(next.run(req).await),
        _ => Err(ApiError::Unauthorized),
    }
}
