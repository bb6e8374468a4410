//! `/v1/projects/{id}/secrets[/{name}]`: a project owner's secrets. Values go in (PUT, the raw
//! body) and never come out: listing gives names only, and no answer or error repeats a value.

use crate::deploy::{api, visible};
use crate::error::ApiError;
use crate::principal::Principal;
use crate::Admin;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /v1/projects/{id}/secrets`: the names.
pub async fn list(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deploy = api(&admin)?;
    let project = visible(deploy, &principal, &id).await?;
    let names = deploy.deployer.secret_names(&project).await?;
    Ok(Json(json!({ "project": project.id, "secrets": names })))
}

/// `PUT /v1/projects/{id}/secrets/{name}` with the value as the body. The project's current
/// version restarts with it (traffic moves once ready).
pub async fn put(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let deploy = api(&admin)?;
    let project = visible(deploy, &principal, &id).await?;
    let value = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("a secret's value must be UTF-8 text".into()))?;
    // A trailing newline from `echo value |` is not part of the value.
    let value = value.strip_suffix('\n').unwrap_or(value);
    deploy
        .deployer
        .set_secret(&project, &name, Some(value))
        .await?;
    Ok(Json(
        json!({ "project": project.id, "secret": name, "set": true }),
    ))
}

/// `DELETE /v1/projects/{id}/secrets/{name}`.
pub async fn remove(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let deploy = api(&admin)?;
    let project = visible(deploy, &principal, &id).await?;
    if !deploy.deployer.set_secret(&project, &name, None).await? {
        return Err(ApiError::NotFound(format!(
            "project {} has no secret {name:?}",
            project.id
        )));
    }
    Ok(Json(
        json!({ "project": project.id, "secret": name, "deleted": true }),
    ))
}
