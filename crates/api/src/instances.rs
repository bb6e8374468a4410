//! `/v1/classes` and `/v1/instances/...`: what runs, and start, stop, destroy (Cloudflare's
//! `start`, `stop`, `destroy`). Keys arrive percent-encoded in the path and are decoded by the
//! router, so any key a request can make can be named here.

use crate::error::ApiError;
use crate::views::{ClassView, InstanceView};
use crate::Admin;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use valet_instances::ClassRuntime;

pub async fn classes(State(admin): State<Arc<Admin>>) -> Json<Vec<ClassView>> {
    Json(
        admin
            .instances
            .classes()
            .iter()
            .map(|c| ClassView::of(c))
            .collect(),
    )
}

#[derive(Deserialize)]
pub struct ListQuery {
    class: Option<String>,
}

/// Every known instance (sleeping ones too), optionally of one class.
pub async fn list(
    State(admin): State<Arc<Admin>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    if let Some(class) = &q.class {
        admin.class(class)?;
    }
    let all = admin.instances.list().into_iter();
    let wanted = all.filter(|i| q.class.as_ref().is_none_or(|c| &i.class == c));
    Ok(Json(wanted.map(InstanceView::from).collect()))
}

pub async fn get(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    admin.view(&class, &key).map(Json)
}

/// Starts the instance (making the key known if it was not) and answers once it is ready or
/// has failed to start, like a first request would.
pub async fn start(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    let runtime = admin.class(&class)?;
    admin.instances.start(&runtime, &key).await?;
    tracing::info!(instance = %format!("{class}/{key}"), "started by the admin API");
    admin.view(&class, &key).map(Json)
}

/// Stops the instance gracefully; the next request starts it again.
pub async fn stop(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    let runtime = admin.class(&class)?;
    if !admin.instances.stop(&runtime, &key, false).await {
        return Err(ApiError::no_instance(&class, &key));
    }
    tracing::info!(instance = %format!("{class}/{key}"), "stopped by the admin API");
    admin.view(&class, &key).map(Json)
}

/// Stops the instance, deletes its persistent data and log, and forgets the key.
pub async fn destroy(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let runtime = admin.class(&class)?;
    if !admin.instances.stop(&runtime, &key, true).await {
        return Err(ApiError::no_instance(&class, &key));
    }
    tracing::info!(instance = %format!("{class}/{key}"), "destroyed by the admin API");
    Ok(Json(
        serde_json::json!({ "class": class, "key": key, "destroyed": true }),
    ))
}

impl Admin {
    pub(crate) fn class(&self, name: &str) -> Result<Arc<ClassRuntime>, ApiError> {
        self.instances
            .class(name)
            .cloned()
            .ok_or_else(|| ApiError::no_class(name))
    }

    fn view(&self, class: &str, key: &str) -> Result<InstanceView, ApiError> {
        self.class(class)?;
        let instance = self
            .instances
            .get(class, key)
            .ok_or_else(|| ApiError::no_instance(class, key))?;
        Ok(self.instances.info_of(&instance).into())
    }
}
