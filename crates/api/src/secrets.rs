//! `/v1/projects/{id}/secrets[/{name}]`: a project owner's secrets; `/v1/classes/{class}/
//! secrets[/{name}]` and `/v1/registries/secrets[/{name}]`: the admin's, for a `[[containers]]`
//! class and for `[[registries]]` passwords. Values go in (PUT, the raw body) and never come
//! out: listing gives names only, and no answer or error repeats a value.

use crate::deploy::api;
use crate::error::ApiError;
use crate::owned::Owned;
use crate::principal::Principal;
use crate::Admin;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::sync::Arc;

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
    let value = value_of(&body)?;
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

/// Only the admin manages the secrets of valet.toml's classes and registries.
fn admin_only(principal: &Principal, whose: &str) -> Result<(), ApiError> {
    match principal {
        Principal::Admin => Ok(()),
        Principal::User { .. } => Err(ApiError::refuse(
            403,
            "forbidden",
            format!("only an admin may manage {whose}"),
        )),
    }
}

/// The value of a PUT: UTF-8 text, without the trailing newline `echo value |` adds.
fn value_of(body: &Bytes) -> Result<&str, ApiError> {
    let value = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("a secret's value must be UTF-8 text".into()))?;
    Ok(value.strip_suffix('\n').unwrap_or(value))
}

/// `GET /v1/classes/{class}/secrets`: the names stored for a `[[containers]]` class.
pub async fn class_list(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path(class): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal, CLASS_SECRETS)?;
    let names = api(&admin)?
        .deployer
        .class_secret_names(&class)
        .await?
        .ok_or_else(|| ApiError::no_class(&class))?;
    Ok(Json(json!({ "class": class, "secrets": names })))
}

/// `PUT /v1/classes/{class}/secrets/{name}`: stored sealed; reaches the class's instances
/// from valet's next start.
pub async fn class_put(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path((class, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal, CLASS_SECRETS)?;
    let value = value_of(&body)?;
    api(&admin)?
        .deployer
        .set_class_secret(&class, &name, Some(value))
        .await?;
    Ok(Json(json!({
        "class": class,
        "secret": name,
        "set": true,
        "applies": "from valet's next start",
    })))
}

/// `DELETE /v1/classes/{class}/secrets/{name}`.
pub async fn class_remove(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path((class, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal, CLASS_SECRETS)?;
    if !api(&admin)?
        .deployer
        .set_class_secret(&class, &name, None)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "class {class} has no stored secret {name:?}"
        )));
    }
    Ok(Json(
        json!({ "class": class, "secret": name, "deleted": true }),
    ))
}

const CLASS_SECRETS: &str = "a container class's secrets";
const REGISTRY_SECRETS: &str = "registry passwords";

/// `GET /v1/registries/secrets`: the names of the `[[registries]]` passwords stored.
pub async fn registry_list(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal, REGISTRY_SECRETS)?;
    let names = api(&admin)?.deployer.registry_secret_names().await?;
    Ok(Json(json!({ "secrets": names })))
}

/// `PUT /v1/registries/secrets/{name}`: the password of the `[[registries]]` entries whose
/// `password_secret` is `name`, stored sealed; pulls use it from valet's next start.
pub async fn registry_put(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal, REGISTRY_SECRETS)?;
    let value = value_of(&body)?;
    let deployer = &api(&admin)?.deployer;
    deployer.set_registry_secret(&name, Some(value)).await?;
    let mut answer = json!({
        "secret": name,
        "set": true,
        "applies": "from valet's next start",
    });
    if !deployer.names_registry_password(&name) {
        // Stored all the same: valet.toml may be edited before that start.
        answer["note"] = format!(
            "no [[registries]] entry of the running valet.toml has password_secret = \"{name}\" yet"
        )
        .into();
    }
    Ok(Json(answer))
}

/// `DELETE /v1/registries/secrets/{name}`.
pub async fn registry_remove(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&principal, REGISTRY_SECRETS)?;
    if !api(&admin)?
        .deployer
        .set_registry_secret(&name, None)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no registry password {name:?} is stored"
        )));
    }
    Ok(Json(json!({ "secret": name, "deleted": true })))
}
