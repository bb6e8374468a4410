//! The `Owned` extractor: the project named by a route's `{id}`, if the caller may touch it.
//! Others' projects are "not found", never "forbidden", so their ids cannot be probed.

use crate::deploy::{api, visible, DeployApi};
use crate::error::ApiError;
use crate::principal::Principal;
use crate::Admin;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use std::collections::HashMap;
use std::sync::Arc;
use valet_store::Project;

/// A project the caller owns (or any project, for the admin).
pub struct Owned {
    admin: Arc<Admin>,
    /// The project as stored.
    pub project: Project,
}

impl Owned {
    /// The deploy API (always on when an `Owned` exists).
    pub fn deploy(&self) -> &DeployApi {
        self.admin
            .deploy
            .as_ref()
            .expect("an Owned project exists only with the deploy API on")
    }
}

impl FromRequestParts<Arc<Admin>> for Owned {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, admin: &Arc<Admin>) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, admin)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let id = params
            .get("id")
            .ok_or_else(|| ApiError::NotFound("no project id in the path".into()))?;
        let project = visible(api(admin)?, &principal, id).await?;
        Ok(Self {
            admin: admin.clone(),
            project,
        })
    }
}
