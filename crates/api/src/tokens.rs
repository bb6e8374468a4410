//! `valet token list` and `valet token revoke` on the API: stored tokens by id (never the
//! token itself), every one for an admin, its own for a user.

use crate::deploy::api;
use crate::error::ApiError;
use crate::principal::Principal;
use crate::Admin;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /v1/tokens`: the stored tokens (never the tokens themselves, only their ids): every
/// one for an admin, a user's own for a user. The configured admin token is not stored and
/// not listed.
pub async fn list(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let store = api(&admin)?.deployer.store();
    let user = match &principal {
        Principal::Admin => None,
        Principal::User { user, .. } => Some(user.as_str()),
    };
    Ok(Json(json!(store.tokens(user).await?)))
}

/// `DELETE /v1/tokens/{id}`: revokes a token by its id (or its whole text); an admin any, a
/// user only its own user tokens. It stops working at once.
pub async fn revoke(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = api(&admin)?.deployer.store();
    let user = match &principal {
        Principal::Admin => None,
        Principal::User { user, .. } => Some(user.as_str()),
    };
    match store.revoke_token(&id, user).await? {
        Some(token) => {
            tracing::info!(token = %token.id, user = %token.user, "token revoked");
            Ok(Json(json!({ "revoked": token })))
        }
        None => Err(ApiError::NotFound(match user {
            None => format!("no token {id:?} (see `valet token list`)"),
            Some(_) => format!("no token {id:?} of yours (see `valet token list`)"),
        })),
    }
}
