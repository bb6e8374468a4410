//! `/v1/projects/{id}/secrets[/{name}]`: a project owner's secrets. Values go in (PUT, the raw
//! body) and never come out: listing gives names only, and no answer or error repeats a value.

use crate::error::ApiError;
use crate::owned::Owned;
use axum::body::Bytes;
use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};

/// `GET /v1/projects/{id}/secrets`: the names.
pub async fn list(owned: Owned) -> Result<Json<Value>, ApiError> {
    let names = owned.deploy().deployer.secret_names(&owned.project).await?;
    Ok(Json(
        json!({ "project": owned.project.id, "secrets": names }),
    ))
}

/// `PUT /v1/projects/{id}/secrets/{name}` with the value as the body. The project's current
/// version restarts with it (traffic moves once ready).
pub async fn put(
    owned: Owned,
    Path((_, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let value = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("a secret's value must be UTF-8 text".into()))?;
    // A trailing newline from `echo value |` is not part of the value.
    let value = value.strip_suffix('\n').unwrap_or(value);
    owned
        .deploy()
        .deployer
        .set_secret(&owned.project, &name, Some(value))
        .await?;
    Ok(Json(
        json!({ "project": owned.project.id, "secret": name, "set": true }),
    ))
}

/// `DELETE /v1/projects/{id}/secrets/{name}`.
pub async fn remove(
    owned: Owned,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let deployer = &owned.deploy().deployer;
    if !deployer.set_secret(&owned.project, &name, None).await? {
        return Err(ApiError::NotFound(format!(
            "project {} has no secret {name:?}",
            owned.project.id
        )));
    }
    Ok(Json(
        json!({ "project": owned.project.id, "secret": name, "deleted": true }),
    ))
}
